//! Runs one simulated Ollama node until Ctrl-C, for poking at it with curl or a client.
//!
//! ```text
//! cargo run -p sollol-sim --example sim_node -- 11500 llama3.2 nomic-embed-text
//! curl http://127.0.0.1:11500/api/chat -d '{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}'
//! ```
//!
//! The first argument is the port (0 picks a free one); the rest are model names. The node
//! binds 127.0.0.1 only.

use std::net::TcpListener;
use std::time::Duration;

use sollol_sim::SimConfig;

#[actix_rt::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|port| port.parse().ok()).unwrap_or(0);
    let models: Vec<String> = args.collect();

    let mut config = SimConfig {
        token_delay: Duration::from_millis(30),
        ..SimConfig::default()
    };
    if !models.is_empty() {
        config.models = models;
    }

    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("simulated ollama node on http://{}", listener.local_addr()?);
    let server = sollol_sim::start(config, listener)?;
    let handle = server.handle();
    actix_rt::spawn(server);

    actix_rt::signal::ctrl_c().await?;
    handle.stop(true).await;
    Ok(())
}
