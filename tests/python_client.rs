//! The official ollama Python client against the gateway, as a user would run it.
//!
//! Needs `python3` with the `ollama` package (`pip install ollama`; `.ci/run` installs it).

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_official_python_client_sees_one_ollama_server() {
    let a = sim_node("llama3.2,nomic-embed-text", &["--loaded", "llama3.2"]);
    let b = sim_node("llama3.2,nomic-embed-text", &[]);
    let gw = gateway(&[&a, &b], &["--workers", "0"], &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_check.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&gw.url)
        .env_remove("OLLAMA_HOST")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'ollama'"),
        "the ollama python package is missing: run `pip install ollama`"
    );
    assert!(
        output.status.success(),
        "client check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: list, ps"), "{stdout}");
}
