//! A simulated Ollama server, for sollol's tests, demos and benchmarks.
//!
//! One [`start`] call serves a node on a bound listener. It speaks the Ollama HTTP API as real
//! servers do (content types, key order, Go's JSON escaping, NDJSON and SSE framing, error
//! texts), but its "model" is a hash: the answer to a prompt is a few words picked from a fixed
//! vocabulary by hashing the model name and the prompt, and embeddings are vectors derived the
//! same way. Every node therefore gives the same answer to the same request, and tests can
//! assert on it. Delays, model loads and a node dying mid-stream are set in [`SimConfig`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//! let server = sollol_sim::start(sollol_sim::SimConfig::default(), listener)?;
//! actix_rt::spawn(server);
//! // Talk to http://{addr}; GET /sim/stats shows what the node was asked.
//! # let _ = addr;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! In reading order:
//!
//! - `config`: [`SimConfig`], what a node has and how slowly it answers.
//! - `routes`: the route table ([`configure`]) and the router's 404, 405 and redirects.
//! - `native`: `/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`, pull, delete, copy.
//! - `generate`: `/api/generate` and `/api/chat`.
//! - `embed`: `/api/embed` and `/api/embeddings`.
//! - `openai`: the `/v1/*` compatibility layer.
//! - `inference`: what a model answers and how long it takes, shared by the two APIs.
//! - `state`: [`Sim`], the node's models, resident set and counters behind std mutexes.
//! - `stats`: [`SimStats`] and `GET /sim/stats`.
//! - `faults`: injected failures and `POST /sim/control`.
//! - `blobs`: blob uploads and `/api/create` (blobs must be on the node that creates).
//! - `catalog`: model names and the details derived from them.
//! - `text`: deterministic words, token ids and vectors.
//! - `body`, `keep_alive`: request decoding with Go's rules and error texts.
//! - `json`, `clock`, `reply`, `stream`, `error`: Go-style encoding, timestamps, response
//!   framing, pacing and the simulated connection drop, error bodies.
//!
//! # Not simulated
//!
//! Push, thinking models, `format` (structured output), logprobs, the
//! `Host` and CORS guards, image inputs (accepted, ignored) and the queue limit are left out: the
//! gateway only forwards them, so its tests do not need a node that implements them.

use std::io;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer};

mod blobs;
mod body;
mod catalog;
mod clock;
mod config;
mod embed;
mod error;
mod faults;
mod generate;
mod inference;
mod json;
mod keep_alive;
mod native;
mod openai;
mod reply;
mod routes;
mod state;
mod stats;
mod stream;
mod text;

pub use config::SimConfig;
pub use routes::configure;
pub use state::Sim;
pub use stats::SimStats;

/// Serves a node with `config` on `listener`, which must already be bound (tests bind
/// `127.0.0.1:0`).
///
/// The returned server does nothing until it is awaited or spawned, which works inside an
/// existing actix `System`, next to other nodes and a gateway. It runs one worker thread and
/// does not install signal handlers; stop it through [`Server::handle`].
pub fn start(config: SimConfig, listener: TcpListener) -> io::Result<Server> {
    serve(Sim::new(config), listener)
}

/// Like [`start`], for a [`Sim`] the caller keeps a handle to (to read its stats or models).
pub fn serve(sim: Sim, listener: TcpListener) -> io::Result<Server> {
    let addr = listener.local_addr()?;
    let models = sim.model_names();
    let server = HttpServer::new(move || App::new().configure(configure(sim.clone())))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
    tracing::info!(%addr, ?models, "simulated ollama node listening");
    Ok(server)
}
