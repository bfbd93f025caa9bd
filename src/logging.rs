//! Tracing setup: structured logs on stderr, filtered by `RUST_LOG` (default `info`),
//! as text or JSON. Standard output is left free: the gateway prints only its address
//! there, and a worker's stdout carries frames only.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Logging for the gateway and the other commands.
pub fn init(format: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = if format.eq_ignore_ascii_case("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    drop(result);
}

/// Logging inside a worker process: plain lines that the supervisor forwards into its
/// own log, so no timestamps or colours of their own.
pub fn init_worker(format: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time();
    let result = if format.eq_ignore_ascii_case("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    drop(result);
}
