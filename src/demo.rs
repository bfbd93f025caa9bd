//! `sollol demo`: a gateway over three simulated nodes of different speeds, all on
//! loopback, so a first try needs no GPU and no Ollama install.

use std::net::TcpListener;
use std::time::Duration;

use sollol_actors::EnvSnapshot;
use sollol_sim::SimConfig;

use crate::cli::DemoArgs;
use crate::config::{Overrides, Settings};
use crate::gateway::{self, WorkerProgram};

struct DemoNode {
    name: &'static str,
    models: &'static [&'static str],
    latency_ms: u64,
    token_ms: u64,
}

const NODES: [DemoNode; 3] = [
    DemoNode {
        name: "gpu-box",
        models: &["llama3.2", "nomic-embed-text"],
        latency_ms: 20,
        token_ms: 15,
    },
    DemoNode {
        name: "workstation",
        models: &["llama3.2", "nomic-embed-text", "qwen2.5"],
        latency_ms: 60,
        token_ms: 40,
    },
    DemoNode {
        name: "mini-pc",
        models: &["llama3.2", "nomic-embed-text"],
        latency_ms: 150,
        token_ms: 90,
    },
];

pub async fn run(args: DemoArgs) -> Result<(), String> {
    let mut addresses = Vec::new();
    for node in &NODES {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|err| format!("cannot start a simulated node: {err}"))?;
        let address = listener.local_addr().map_err(|err| err.to_string())?;
        let config = SimConfig {
            models: node.models.iter().map(|m| m.to_string()).collect(),
            loaded: vec![node.models[0].to_string()],
            latency: Duration::from_millis(node.latency_ms),
            token_delay: Duration::from_millis(node.token_ms),
            ..SimConfig::default()
        };
        let server = sollol_sim::start(config, listener)
            .map_err(|err| format!("cannot start a simulated node: {err}"))?;
        actix_rt::spawn(server);
        tracing::info!(node = node.name, %address, latency_ms = node.latency_ms, token_ms = node.token_ms, "simulated node started");
        addresses.push(format!("http://{address}"));
    }

    let overrides = Overrides {
        bind: Some(args.bind),
        nodes: addresses.clone(),
        workers: Some(args.workers),
        redis_url: args.redis_url,
        app_name: Some("sollol-demo".into()),
        ..Overrides::default()
    };
    let env = EnvSnapshot::capture();
    let settings = Settings::load(&env, &overrides).map_err(|err| err.to_string())?;
    let running = gateway::start(
        settings,
        env,
        WorkerProgram::current_exe().map_err(|e| e.to_string())?,
    )
    .await
    .map_err(|err| err.to_string())?;
    let url = format!("http://{}", running.local_addr);
    println!("sollol demo: a gateway at {url} over three simulated Ollama nodes:");
    for (node, address) in NODES.iter().zip(&addresses) {
        println!(
            "  {:<12} {address}  (first byte after {} ms, a token every {} ms)",
            node.name, node.latency_ms, node.token_ms
        );
    }
    println!();
    println!("Try:");
    println!("  curl {url}/api/tags");
    println!("  curl {url}/api/chat -d '{{\"model\":\"llama3.2\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'");
    println!("  curl -i {url}/api/generate -d '{{\"model\":\"llama3.2\",\"prompt\":\"why is the sky blue?\",\"stream\":false}}'");
    println!("  curl {url}/sollol/batch/embed -d '{{\"model\":\"nomic-embed-text\",\"input\":[\"a\",\"b\",\"c\"]}}'");
    println!("  curl {url}/sollol/nodes");
    println!("  curl {url}/sollol/workers");
    println!("  curl {url}/metrics");
    println!("  open {url}/sollol/dashboard in a browser (live page)");
    println!("  OLLAMA_HOST={url} python3 -c 'import ollama; print(ollama.list())'");
    println!("Press Ctrl-C to stop.");
    running.run().await.map_err(|err| err.to_string())
}
