//! Batch embedding through worker processes, and what worker processes cost to start.
//!
//! Three simulated nodes with a fixed cost per request (each runs two requests at once)
//! take a 20,000-input batch, first one node alone, then all three; the three-node
//! throughput is compared with three times the one-node throughput (the sum of the
//! nodes' capacity). Then: the time for a supervisor to start eight workers until every
//! one has answered its handshake, and the time to replace one killed with SIGKILL.
//! Everything runs on loopback, with the `sollol` binary as the worker program.
//!
//! Run: `cargo bench --bench workers` (optionally `-- INPUTS`).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sollol::actors::supervisor::{ListWorkers, StopWorkers, Supervisor, WorkerState};
use sollol::actors::worker::launcher::{ChildSpec, ProcessLauncher};
use sollol::actors::EnvSnapshot;
use sollol::config::{Overrides, Settings};
use sollol::gateway::{self, WorkerProgram};
use sollol_sim::SimConfig;

const SOLLOL: &str = env!("CARGO_BIN_EXE_sollol");
/// Fixed cost of one embed request on a simulated node.
const REQUEST_MS: u64 = 20;
const PARALLEL: usize = 2;
const CHUNK: usize = 16;
const WORKERS: usize = 3;

fn start_node() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let config = SimConfig {
        models: vec!["nomic-embed-text".into()],
        loaded: vec!["nomic-embed-text".into()],
        latency: Duration::from_millis(REQUEST_MS),
        parallel: Some(PARALLEL),
        ..SimConfig::default()
    };
    actix_rt::spawn(sollol_sim::start(config, listener).expect("sim node"));
    url
}

/// Inputs per second for one batch of `inputs` through a gateway over `nodes`.
async fn batch_throughput(nodes: &[String], inputs: usize) -> f64 {
    let env = EnvSnapshot::capture().with("SOLLOL_BATCH_CHUNK_SIZE", CHUNK.to_string());
    let overrides = Overrides {
        bind: Some("127.0.0.1:0".into()),
        nodes: nodes.to_vec(),
        workers: Some(WORKERS),
        ..Overrides::default()
    };
    let settings = Settings::load(&env, &overrides).expect("settings");
    let program = WorkerProgram {
        program: SOLLOL.into(),
        args: vec!["worker".into()],
    };
    let running = gateway::start(settings, env, program)
        .await
        .expect("gateway");
    let url = format!("http://{}/sollol/batch/embed", running.local_addr);
    let workers = running.workers.clone().expect("workers");
    let handle = running.server.handle();
    actix_rt::spawn(running.server);
    while workers
        .workers()
        .await
        .iter()
        .any(|w| w.state != WorkerState::Ready)
    {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let texts: Vec<String> = (0..inputs)
        .map(|i| format!("benchmark passage {i}"))
        .collect();
    let body = serde_json::json!({ "model": "nomic-embed-text", "input": texts }).to_string();
    let started = Instant::now();
    let response = client.post(&url).body(body).send().await.expect("batch");
    assert_eq!(response.status(), 200, "the batch must succeed");
    response.bytes().await.expect("body");
    let elapsed = started.elapsed();
    let _ = workers.addr.send(StopWorkers).await;
    handle.stop(false).await;
    inputs as f64 / elapsed.as_secs_f64()
}

async fn spawn_and_replace(nodes: &[String]) -> (Duration, Duration) {
    let env = EnvSnapshot::capture().with("SOLLOL_NODES", nodes.join(","));
    let spec = ChildSpec::new(SOLLOL, vec!["worker".into()]);
    let started = Instant::now();
    let supervisor =
        Supervisor::new(spec, env, 8, Arc::new(ProcessLauncher), None).expect("supervisor");
    let addr = actix::Actor::start(supervisor);
    let all_ready = |workers: &[sollol::actors::supervisor::WorkerInfo]| {
        workers.iter().all(|w| w.state == WorkerState::Ready)
    };
    loop {
        let workers = addr.send(ListWorkers).await.expect("alive");
        if all_ready(&workers) {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    let spawn_time = started.elapsed();

    let victim = addr.send(ListWorkers).await.expect("alive")[0]
        .pid
        .expect("pid");
    let killed_at = Instant::now();
    // SAFETY: kill(2) on a pid this supervisor started.
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    loop {
        let workers = addr.send(ListWorkers).await.expect("alive");
        if workers[0].pid != Some(victim) && workers[0].state == WorkerState::Ready {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    let replace_time = killed_at.elapsed();
    let _ = addr.send(StopWorkers).await;
    (spawn_time, replace_time)
}

fn main() {
    let inputs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    actix_rt::System::new().block_on(async move {
        let nodes: Vec<String> = (0..3).map(|_| start_node()).collect();
        println!(
            "nodes: 3 simulated, {REQUEST_MS} ms per request, {PARALLEL} at once; batch: {inputs} inputs, {CHUNK} per request, {WORKERS} worker processes\n"
        );
        let one = batch_throughput(&nodes[..1], inputs).await;
        let three = batch_throughput(&nodes, inputs).await;
        let ideal = one * 3.0;
        println!("{:<28} {:>12}", "", "inputs/s");
        println!("{:<28} {:>12.0}", "one node", one);
        println!("{:<28} {:>12.0}", "three nodes", three);
        println!("{:<28} {:>12.0}", "sum of the nodes' capacity", ideal);
        println!(
            "three nodes reach {:.0}% of the sum (goal: at least 90%): {}\n",
            three / ideal * 100.0,
            if three >= ideal * 0.9 { "met" } else { "not met" }
        );
        let (spawn, replace) = spawn_and_replace(&nodes).await;
        println!("start eight workers until all are ready: {:>8.1} ms", spawn.as_secs_f64() * 1000.0);
        println!("replace a worker killed with SIGKILL:    {:>8.1} ms (includes the restart backoff)", replace.as_secs_f64() * 1000.0);
    });
}
