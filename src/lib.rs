//! sollol: one fast, observable, fault-tolerant Ollama endpoint over many Ollama servers.
//!
//! This crate is the application around [`sollol_actors`] (re-exported as [`actors`]):
//!
//! - [`config`]: settings from defaults, a TOML file, `SOLLOL_*` variables and flags.
//! - [`cluster`]: starts the observer, Redis publisher, node actors and router.
//! - [`gateway`]: the Ollama-compatible HTTP server (proxy, aggregate routes, sollol's
//!   own `/sollol/*` routes, batch embedding through worker processes).
//! - [`worker_main`]: what a worker process runs (`sollol worker`).
//! - [`embed`]: embedding calls sollol makes itself; [`embed_cmd`]: `sollol embed`.
//! - [`events_cmd`]: `sollol events`, the Redis event feed in a terminal.
//! - [`demo`], [`cli`], [`logging`]: the binary's shell.
//!
//! An actix application can embed the gateway ([`gateway::start`]) or use the actors
//! directly; see `examples/`.

pub use sollol_actors as actors;

pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod embed;
pub mod embed_cmd;
pub mod events_cmd;
pub mod gateway;
pub mod logging;
pub mod timestamp;
pub mod worker_main;
