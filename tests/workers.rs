//! Worker processes through the real binary: the environment snapshot reaches every
//! worker (restarts included), workers publish their own events to Redis, and batch
//! embedding through them returns every result in order.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
const ACTIVITY: &str = "sollol:dashboard:ollama:activity";

fn environ(pid: u64) -> BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|err| panic!("read environ of {pid}: {err}"));
    raw.split(|b| *b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (name, value) = text.split_once('=')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

async fn ready_workers(gateway: &str, expected: usize) -> Vec<Value> {
    eventually(Duration::from_secs(20), "workers to be ready", || async {
        let body = get_json(&format!("{gateway}/sollol/workers")).await;
        let workers = body["workers"].as_array()?.clone();
        (workers.len() == expected && workers.iter().all(|w| w["state"] == "ready"))
            .then_some(workers)
    })
    .await
}

/// Collects messages from a Redis channel on a thread until `until` returns true or time runs out.
fn subscribe(
    channel: &'static str,
) -> (
    std::sync::mpsc::Receiver<Value>,
    std::sync::mpsc::Receiver<()>,
) {
    let (messages, received) = std::sync::mpsc::channel();
    let (ready, subscribed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let client = redis::Client::open(REDIS_URL).expect("redis url");
        let mut connection = client
            .get_connection()
            .expect("redis at 127.0.0.1:6379 (started by .ci/run)");
        let mut pubsub = connection.as_pubsub();
        pubsub.subscribe(channel).expect("subscribe");
        pubsub
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let _ = ready.send(());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(message) = pubsub.get_message() {
                let payload: String = message.get_payload().expect("text payload");
                if messages
                    .send(serde_json::from_str(&payload).expect("json event"))
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    (received, subscribed)
}

#[actix_rt::test]
async fn workers_start_with_the_snapshot_and_keep_it_across_restarts() {
    let node = sim_node("nomic-embed-text", &[]);
    let app = format!("env-test-{}", std::process::id());
    let gw = gateway(
        &[&node],
        &["--workers", "2"],
        &[
            ("SOLLOL_APP_NAME", app.as_str()),
            ("SOLLOL_REDIS_URL", REDIS_URL),
            ("SOLLOL_OBSERVER_SAMPLING", "false"),
        ],
    );
    let workers = ready_workers(&gw.url, 2).await;
    let check = |pid: u64, reported: &Value| {
        let env = environ(pid);
        assert_eq!(env.get("SOLLOL_APP_NAME"), Some(&app), "pid {pid}");
        assert_eq!(
            env.get("SOLLOL_REDIS_URL").map(String::as_str),
            Some(REDIS_URL)
        );
        assert_eq!(
            env.get("SOLLOL_OBSERVER_SAMPLING").map(String::as_str),
            Some("false")
        );
        assert_eq!(
            reported["SOLLOL_APP_NAME"],
            app.as_str(),
            "the handshake reports the same"
        );
        assert_eq!(reported["SOLLOL_OBSERVER_SAMPLING"], "false");
    };
    for worker in &workers {
        check(worker["pid"].as_u64().expect("pid"), &worker["env"]);
    }

    let victim = workers[0]["pid"].as_u64().expect("pid");
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    let replaced = eventually(Duration::from_secs(20), "a replacement worker", || async {
        let body = get_json(&format!("{}/sollol/workers", gw.url)).await;
        let worker = body["workers"][0].clone();
        (worker["state"] == "ready" && worker["pid"].as_u64() != Some(victim)).then_some(worker)
    })
    .await;
    assert_eq!(replaced["restarts"], 1);
    check(replaced["pid"].as_u64().expect("pid"), &replaced["env"]);
}

#[actix_rt::test]
async fn batch_embedding_through_workers_is_complete_ordered_and_observed() {
    let a = sim_node("nomic-embed-text,llama3.2", &[]);
    let b = sim_node("nomic-embed-text", &[]);
    let app = format!("batch-test-{}", std::process::id());
    let (events, subscribed) = subscribe(ACTIVITY);
    subscribed
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed to redis");
    let gw = gateway(
        &[&a, &b],
        &[
            "--workers",
            "2",
            "--redis-url",
            REDIS_URL,
            "--app-name",
            &app,
        ],
        &[
            ("SOLLOL_BATCH_CHUNK_SIZE", "5"),
            ("SOLLOL_OBSERVER_SAMPLING", "false"),
        ],
    );
    let workers = ready_workers(&gw.url, 2).await;
    let worker_pids: HashSet<u64> = workers
        .iter()
        .map(|w| w["pid"].as_u64().expect("pid"))
        .collect();

    let inputs: Vec<String> = (0..37).map(|i| format!("document number {i}")).collect();
    let response = client()
        .post(format!("{}/sollol/batch/embed", gw.url))
        .json(&json!({ "model": "nomic-embed-text", "input": inputs }))
        .send()
        .await
        .expect("batch");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["model"], "nomic-embed-text");
    let vectors = body["embeddings"].as_array().expect("embeddings");
    assert_eq!(vectors.len(), inputs.len());
    for (index, input) in inputs.iter().enumerate().step_by(6) {
        let direct: Value = client()
            .post(format!("{}/api/embed", a.url))
            .json(&json!({ "model": "nomic-embed-text", "input": input }))
            .send()
            .await
            .expect("direct")
            .json()
            .await
            .expect("json");
        assert_eq!(
            vectors[index], direct["embeddings"][0],
            "input {index} in its place"
        );
    }

    // A chat through the gateway itself, so the gateway's own events show too.
    let chat = client()
        .post(format!("{}/api/chat", gw.url))
        .body(r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false}"#)
        .send()
        .await
        .expect("chat");
    assert_eq!(chat.status(), 200);

    let mut seen_worker_pids = HashSet::new();
    let mut gateway_events = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && (seen_worker_pids.is_empty() || gateway_events == 0) {
        let Ok(event) = events.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if event["details"]["app"] != app.as_str() {
            continue;
        }
        assert!(
            [
                "ollama_request",
                "ollama_response",
                "ollama_error",
                "node_status_change"
            ]
            .contains(&event["event_type"].as_str().unwrap_or_default()),
            "{event}"
        );
        let pid = event["details"]["pid"].as_u64().expect("pid in details");
        if worker_pids.contains(&pid) {
            assert_ne!(event["event_type"], "ollama_error", "{event}");
            seen_worker_pids.insert(pid);
        } else if pid == u64::from(gw.pid()) && event["details"]["operation"] == "chat" {
            gateway_events += 1;
        }
    }
    assert!(
        !seen_worker_pids.is_empty(),
        "events from worker processes reach redis with the app name"
    );
    assert!(
        gateway_events > 0,
        "events from the gateway process reach redis with the app name"
    );
}

#[actix_rt::test]
async fn batch_errors_are_reported_not_hidden() {
    let a = sim_node("nomic-embed-text", &[]);
    let gw = gateway(&[&a], &["--workers", "1"], &[]);
    ready_workers(&gw.url, 1).await;
    let post = |body: Value| {
        let url = format!("{}/sollol/batch/embed", gw.url);
        async move { client().post(url).json(&body).send().await.expect("batch") }
    };
    let unknown = post(json!({ "model": "nope", "input": ["a"] })).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.expect("json")["error"],
        "model 'nope' not found"
    );
    let bad = post(json!({ "model": "nomic-embed-text", "input": [1, 2] })).await;
    assert_eq!(bad.status(), 400);
    let missing = post(json!({ "input": ["a"] })).await;
    assert_eq!(missing.status(), 400);
}

#[actix_rt::test]
async fn workers_die_with_the_gateway() {
    let node = sim_node("nomic-embed-text", &[]);
    let mut gw = gateway(&[&node], &["--workers", "2"], &[]);
    let pids: Vec<u64> = ready_workers(&gw.url, 2)
        .await
        .iter()
        .map(|w| w["pid"].as_u64().expect("pid"))
        .collect();
    // No graceful stop: the gateway is killed outright.
    gw.kill();
    let alive = |pid: &u64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    eventually(Duration::from_secs(5), "workers to exit", || async {
        (!pids.iter().any(alive)).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_worker_over_its_memory_limit_is_replaced_without_losing_work() {
    let node = sim_node("nomic-embed-text", &[]);
    // One megabyte is below any real worker's resident set: every worker gets replaced.
    let gw = gateway(
        &[&node],
        &["--workers", "1"],
        &[("SOLLOL_WORKER_MEMORY_MB", "1")],
    );
    let first = ready_workers(&gw.url, 1).await[0]["pid"]
        .as_u64()
        .expect("pid");
    let replaced = eventually(
        Duration::from_secs(10),
        "a replacement for memory",
        || async {
            let body = get_json(&format!("{}/sollol/workers", gw.url)).await;
            let worker = body["workers"][0].clone();
            (worker["state"] == "ready" && worker["pid"].as_u64() != Some(first)).then_some(worker)
        },
    )
    .await;
    assert_eq!(
        replaced["restarts"], 0,
        "a planned replacement is not a crash"
    );
    let response = client()
        .post(format!("{}/sollol/batch/embed", gw.url))
        .json(&json!({ "model": "nomic-embed-text", "input": ["a", "b", "c"] }))
        .send()
        .await
        .expect("batch");
    assert_eq!(
        response.status(),
        200,
        "jobs wait for a fresh worker instead of failing"
    );
}
