//! Routing strategies on a simulated mixed cluster, against an oracle.
//!
//! Three simulated nodes of very different speeds (a GPU box, a workstation, a mini-PC),
//! each running two generations at once like `OLLAMA_NUM_PARALLEL=2`. The same workload
//! (non-streamed generate requests arriving at a steady rate, as from many independent
//! clients) goes through a gateway with each strategy, and once through an oracle that
//! knows every node's true speed and when each of its slots frees up, and sends each
//! request, directly, where it will finish first. It prints mean and p99 latency per
//! strategy and each strategy's mean relative to the oracle's. Everything runs on
//! loopback, in this process.
//!
//! The oracle is greedy: each request takes the earliest finish it can get, given the
//! requests already placed. Near saturation that is myopic (a request that queues for
//! the fast node delays everything behind it), so there a strategy can beat it; at the
//! default rate it is close to the best any router can do.
//!
//! Run: `cargo bench --bench strategies` (optionally `-- REQUESTS INTERVAL_MS`).

use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sollol::actors::EnvSnapshot;
use sollol::config::{Overrides, Settings};
use sollol::gateway::{self, WorkerProgram};
use sollol_sim::SimConfig;

/// Tokens each request asks for (`options.num_predict`).
const TOKENS: u64 = 8;
const PARALLEL: usize = 2;

struct SimulatedNode {
    name: &'static str,
    latency_ms: u64,
    token_ms: u64,
}

impl SimulatedNode {
    /// What one request costs on this node when it has a free slot.
    fn service_ms(&self) -> f64 {
        (self.latency_ms + self.token_ms * TOKENS) as f64
    }
}

const CLUSTER: [SimulatedNode; 3] = [
    SimulatedNode {
        name: "gpu-box",
        latency_ms: 20,
        token_ms: 8,
    },
    SimulatedNode {
        name: "workstation",
        latency_ms: 60,
        token_ms: 25,
    },
    SimulatedNode {
        name: "mini-pc",
        latency_ms: 150,
        token_ms: 70,
    },
];

fn body(i: usize) -> String {
    serde_json::json!({
        "model": "llama3.2",
        "prompt": format!("benchmark question {i}"),
        "stream": false,
        "options": { "num_predict": TOKENS },
    })
    .to_string()
}

/// Mean and 99th percentile of `samples`, in milliseconds.
fn summary(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let index = ((samples.len() as f64 * 0.99).ceil() as usize).saturating_sub(1);
    (mean, samples[index.min(samples.len() - 1)])
}

/// Sends `requests` requests, one every `interval`; `target` picks each one's URL when it
/// is sent and returns a guard that is dropped when the request is done.
async fn workload<F, G>(requests: usize, interval: Duration, target: F) -> Vec<f64>
where
    F: Fn(usize) -> (String, G),
    G: 'static,
{
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let started = Instant::now();
    let mut running = Vec::with_capacity(requests);
    for i in 0..requests {
        let due = started + interval * i as u32;
        actix_rt::time::sleep(due.saturating_duration_since(Instant::now())).await;
        let (url, guard) = target(i);
        let client = client.clone();
        running.push(actix_rt::spawn(async move {
            let sent = Instant::now();
            let response = client
                .post(url)
                .body(body(i))
                .send()
                .await
                .expect("request");
            assert_eq!(
                response.status(),
                200,
                "every benchmark request must succeed"
            );
            response.bytes().await.expect("body");
            drop(guard);
            sent.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut samples = Vec::with_capacity(requests);
    for task in running {
        samples.push(task.await.expect("request task"));
    }
    samples
}

async fn start_nodes() -> Vec<String> {
    let mut urls = Vec::new();
    for node in &CLUSTER {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        urls.push(format!(
            "http://{}",
            listener.local_addr().expect("address")
        ));
        let config = SimConfig {
            models: vec!["llama3.2".into()],
            loaded: vec!["llama3.2".into()],
            latency: Duration::from_millis(node.latency_ms),
            token_delay: Duration::from_millis(node.token_ms),
            parallel: Some(PARALLEL),
            ..SimConfig::default()
        };
        actix_rt::spawn(sollol_sim::start(config, listener).expect("sim node"));
    }
    urls
}

async fn through_gateway(
    nodes: &[String],
    strategy: &str,
    requests: usize,
    interval: Duration,
) -> Vec<f64> {
    let env = EnvSnapshot::from_vars([("SOLLOL_NODE_CAPACITY", PARALLEL.to_string())]);
    let overrides = Overrides {
        bind: Some("127.0.0.1:0".into()),
        nodes: nodes.to_vec(),
        workers: Some(0),
        strategy: Some(strategy.into()),
        ..Overrides::default()
    };
    let settings = Settings::load(&env, &overrides).expect("settings");
    let program = WorkerProgram::current_exe().expect("executable");
    let running = gateway::start(settings, env, program)
        .await
        .expect("gateway");
    let url = format!("http://{}/api/generate", running.local_addr);
    let handle = running.server.handle();
    actix_rt::spawn(running.server);
    // Warm-up: every strategy gets the same chance to measure the nodes.
    workload(12, Duration::from_millis(100), |_| (url.clone(), ())).await;
    let samples = workload(requests, interval, |_| (url.clone(), ())).await;
    handle.stop(false).await;
    samples
}

/// Sends each request directly to the node where it will finish first, knowing each
/// node's true service time and when each of its slots frees up.
async fn oracle(nodes: &[String], requests: usize, interval: Duration) -> Vec<f64> {
    let now = Instant::now();
    let slots: Mutex<Vec<Vec<Instant>>> = Mutex::new(vec![vec![now; PARALLEL]; nodes.len()]);
    let pick = |_: usize| {
        let mut slots = slots.lock().expect("lock");
        let now = Instant::now();
        let (mut best, mut best_slot, mut best_finish) = (0, 0, None::<Instant>);
        for (node, node_slots) in slots.iter().enumerate() {
            let (slot, free_at) = node_slots
                .iter()
                .enumerate()
                .min_by_key(|(_, at)| **at)
                .expect("slots");
            let start = (*free_at).max(now);
            let finish = start + Duration::from_secs_f64(CLUSTER[node].service_ms() / 1000.0);
            if best_finish.is_none_or(|b| finish < b) {
                (best, best_slot, best_finish) = (node, slot, Some(finish));
            }
        }
        slots[best][best_slot] = best_finish.expect("a node");
        (format!("{}/api/generate", nodes[best]), ())
    };
    workload(requests, interval, pick).await
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(120);
    let interval_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let interval = Duration::from_millis(interval_ms);
    actix_rt::System::new().block_on(async move {
        let nodes = start_nodes().await;
        println!("cluster (each node runs {PARALLEL} generations at once):");
        for node in &CLUSTER {
            println!(
                "  {:<12} {:>5.0} ms per request",
                node.name,
                node.service_ms()
            );
        }
        println!(
            "workload: {requests} requests, one every {interval_ms} ms, {TOKENS} tokens each\n"
        );

        let (oracle_mean, oracle_p99) = summary(oracle(&nodes, requests, interval).await);
        println!(
            "{:<14} {:>10} {:>10} {:>12}",
            "strategy", "mean ms", "p99 ms", "vs oracle"
        );
        println!(
            "{:<14} {:>10.1} {:>10.1} {:>12}",
            "oracle", oracle_mean, oracle_p99, "1.00x"
        );
        let mut results = Vec::new();
        for strategy in [
            "round_robin",
            "least_loaded",
            "latency_first",
            "fairness",
            "intelligent",
        ] {
            let (mean, p99) = summary(through_gateway(&nodes, strategy, requests, interval).await);
            println!(
                "{strategy:<14} {mean:>10.1} {p99:>10.1} {:>11.2}x",
                mean / oracle_mean
            );
            results.push((strategy, mean));
        }
        let mean_of = |name: &str| {
            results
                .iter()
                .find(|(s, _)| *s == name)
                .map_or(f64::NAN, |(_, m)| *m)
        };
        let intelligent = mean_of("intelligent");
        println!();
        println!(
            "intelligent within 15% of the oracle's mean: {} ({:+.1}%)",
            if intelligent <= oracle_mean * 1.15 {
                "yes"
            } else {
                "no"
            },
            (intelligent / oracle_mean - 1.0) * 100.0
        );
        println!(
            "intelligent ahead of round robin: {} ({:.2}x faster)",
            if intelligent < mean_of("round_robin") {
                "yes"
            } else {
                "no"
            },
            mean_of("round_robin") / intelligent
        );
    });
}
