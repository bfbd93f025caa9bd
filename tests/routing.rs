//! Routing through the real binary over simulated nodes that differ in speed, residency
//! and failures: strategies, warm first, affinity, admission and priority, failover,
//! circuit breaking, re-admission, fan-out and routing events.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

fn generate(prompt: &str) -> String {
    json!({ "model": "llama3.2", "prompt": prompt, "stream": false }).to_string()
}

/// Sends `n` generate requests one after another and counts them by serving node.
async fn distribution(gateway: &str, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for i in 0..n {
        let response = send(
            &format!("{gateway}/api/generate"),
            &generate(&format!("question {i}")),
            headers,
        )
        .await;
        assert_eq!(response.status(), 200);
        *counts
            .entry(header(&response, "x-sollol-node"))
            .or_default() += 1;
    }
    counts
}

async fn node_status(gateway: &str, key: &str) -> Value {
    let nodes = get_json(&format!("{gateway}/sollol/nodes")).await;
    nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"] == key)
        .cloned()
        .expect("node listed")
}

async fn set_failure(node: &Running, status: Option<u16>) {
    let response = client()
        .post(format!("{}/sim/control", node.url))
        .json(&json!({ "fail_status": status }))
        .send()
        .await
        .expect("control");
    assert_eq!(response.status(), 200);
}

#[actix_rt::test]
async fn simple_strategies_spread_evenly() {
    let nodes = [
        sim_node("llama3.2", &[]),
        sim_node("llama3.2", &[]),
        sim_node("llama3.2", &[]),
    ];
    let gw = gateway(&[&nodes[0], &nodes[1], &nodes[2]], &["--workers", "0"], &[]);
    for strategy in ["round_robin", "least_loaded", "fairness"] {
        let counts = distribution(&gw.url, 9, &[("x-sollol-strategy", strategy)]).await;
        for node in &nodes {
            assert_eq!(counts.get(&node.key()), Some(&3), "{strategy}: {counts:?}");
        }
    }
    let bad = send(
        &format!("{}/api/generate", gw.url),
        &generate("x"),
        &[("x-sollol-strategy", "fastest")],
    )
    .await;
    assert_eq!(bad.status(), 400);
}

#[actix_rt::test]
async fn measured_strategies_prefer_the_fast_node() {
    let fast = sim_node("llama3.2", &["--loaded", "llama3.2", "--latency-ms", "5"]);
    let slow = sim_node("llama3.2", &["--loaded", "llama3.2", "--latency-ms", "200"]);
    let gw = gateway(&[&fast, &slow], &["--workers", "0"], &[]);
    // Let both nodes be measured.
    distribution(&gw.url, 4, &[("x-sollol-strategy", "round_robin")]).await;
    let latency_first = distribution(&gw.url, 6, &[("x-sollol-strategy", "latency_first")]).await;
    assert_eq!(
        latency_first.get(&fast.key()),
        Some(&6),
        "{latency_first:?}"
    );
    let intelligent = distribution(&gw.url, 6, &[]).await;
    assert_eq!(intelligent.get(&fast.key()), Some(&6), "{intelligent:?}");
}

#[actix_rt::test]
async fn warm_nodes_are_preferred_over_cold_loads() {
    let cold = sim_node("llama3.2", &["--load-ms", "300"]);
    let warm = sim_node("llama3.2", &["--loaded", "llama3.2"]);
    let gw = gateway(&[&cold, &warm], &["--workers", "0"], &[]);
    let counts = distribution(&gw.url, 6, &[]).await;
    assert_eq!(counts.get(&warm.key()), Some(&6), "{counts:?}");
    let stats = get_json(&format!("{}/sim/stats", cold.url)).await;
    assert_eq!(
        stats["requests"]["POST /api/generate"],
        Value::Null,
        "the cold node was never asked to load"
    );
}

#[actix_rt::test]
async fn conversations_stick_to_their_node() {
    let a = sim_node("llama3.2", &[]);
    let b = sim_node("llama3.2", &[]);
    let gw = gateway(
        &[&a, &b],
        &["--workers", "0", "--strategy", "round_robin"],
        &[],
    );
    let chat = format!("{}/api/chat", gw.url);
    let first = json!({"model": "llama3.2", "stream": false, "messages": [{"role": "user", "content": "tell me about tides"}]});
    let response = send(&chat, &first.to_string(), &[]).await;
    assert_eq!(header(&response, "x-sollol-affinity"), "new");
    let home = header(&response, "x-sollol-node");
    for turn in 0..4 {
        let next = json!({"model": "llama3.2", "stream": false, "messages": [
            {"role": "user", "content": "tell me about tides"},
            {"role": "assistant", "content": "they follow the moon"},
            {"role": "user", "content": format!("and then {turn}?")}
        ]});
        let response = send(&chat, &next.to_string(), &[]).await;
        assert_eq!(header(&response, "x-sollol-affinity"), "hit");
        assert_eq!(
            header(&response, "x-sollol-node"),
            home,
            "round robin alone would alternate"
        );
    }
    let session = [("x-sollol-session", "agent-7")];
    let first = send(&chat, &first.to_string(), &session).await;
    assert_eq!(header(&first, "x-sollol-affinity"), "new");
    let node = header(&first, "x-sollol-node");
    for _ in 0..3 {
        let again = send(
            &chat,
            &json!({"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"x"}]})
                .to_string(),
            &session,
        )
        .await;
        assert_eq!(header(&again, "x-sollol-affinity"), "hit");
        assert_eq!(header(&again, "x-sollol-node"), node);
    }
}

#[actix_rt::test]
async fn saturated_nodes_serve_waiting_requests_by_priority() {
    let node = sim_node("llama3.2", &["--loaded", "llama3.2", "--latency-ms", "400"]);
    let gw = gateway(
        &[&node],
        &["--workers", "0"],
        &[("SOLLOL_NODE_CAPACITY", "1")],
    );
    let url = format!("{}/api/generate", gw.url);
    let started = Instant::now();
    let spawn = |priority: &'static str, prompt: &'static str| {
        let url = url.clone();
        actix_rt::spawn(async move {
            let response = send(&url, &generate(prompt), &[("x-sollol-priority", priority)]).await;
            assert_eq!(response.status(), 200);
            response.bytes().await.expect("body");
            Instant::now()
        })
    };
    let blocker = spawn("5", "first");
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    let low = spawn("2", "low");
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    let high = spawn("9", "high");
    let (blocker, low, high) = (
        blocker.await.expect("task"),
        low.await.expect("task"),
        high.await.expect("task"),
    );
    assert!(
        blocker < high && high < low,
        "high priority overtakes the earlier low one ({:?} {:?} {:?})",
        blocker - started,
        high - started,
        low - started
    );
    // The two that waited are counted as admitted after a wait.
    let metrics = client()
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let admitted = metrics
        .lines()
        .find(|line| line.starts_with("sollol_queue_wait_seconds_count"))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|value| value.parse::<f64>().ok());
    assert_eq!(admitted, Some(2.0), "{metrics}");
}

#[actix_rt::test]
async fn a_full_queue_gets_429_and_a_long_wait_gets_503() {
    let node = sim_node(
        "llama3.2",
        &["--loaded", "llama3.2", "--latency-ms", "1500"],
    );
    let gw = gateway(
        &[&node],
        &["--workers", "0"],
        &[
            ("SOLLOL_NODE_CAPACITY", "1"),
            ("SOLLOL_QUEUE_MAX", "1"),
            ("SOLLOL_QUEUE_TIMEOUT_MS", "300"),
        ],
    );
    let url = format!("{}/api/generate", gw.url);
    let blocker = {
        let url = url.clone();
        actix_rt::spawn(async move { send(&url, &generate("slow"), &[]).await.status() })
    };
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    let waiting = {
        let url = url.clone();
        actix_rt::spawn(async move {
            let response = send(&url, &generate("waits"), &[]).await;
            (
                response.status(),
                header(&response, "retry-after"),
                response.json::<Value>().await.expect("json"),
            )
        })
    };
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    let refused = send(&url, &generate("refused"), &[]).await;
    assert_eq!(refused.status(), 429);
    assert!(!header(&refused, "retry-after").is_empty());
    assert_eq!(
        header(&refused, "content-type"),
        "application/json; charset=utf-8"
    );
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["error"].as_str().expect("error").contains("queue_max"),
        "{body}"
    );

    let (status, retry_after, body) = waiting.await.expect("task");
    assert_eq!(status, 503);
    assert!(!retry_after.is_empty());
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("queue_timeout_ms"),
        "{body}"
    );
    assert_eq!(blocker.await.expect("task"), 200);
}

#[actix_rt::test]
async fn killing_a_node_under_load_loses_no_request() {
    let a = sim_node("llama3.2", &["--loaded", "llama3.2", "--latency-ms", "20"]);
    let b = sim_node("llama3.2", &["--loaded", "llama3.2", "--latency-ms", "20"]);
    let mut c = sim_node("llama3.2", &["--loaded", "llama3.2", "--latency-ms", "20"]);
    let gw = gateway(
        &[&a, &b, &c],
        &["--workers", "0", "--strategy", "round_robin"],
        &[],
    );
    let url = format!("{}/api/generate", gw.url);
    let requests = futures_util::stream::iter(0..90)
        .map(|i| {
            let url = url.clone();
            async move {
                send(&url, &generate(&format!("load {i}")), &[])
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(6);
    let mut statuses = Vec::new();
    futures_util::pin_mut!(requests);
    while let Some(status) = requests.next().await {
        statuses.push(status);
        if statuses.len() == 30 {
            c.kill();
        }
    }
    assert_eq!(statuses.len(), 90);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[actix_rt::test]
async fn output_already_sent_is_never_replayed_elsewhere() {
    let dying = sim_node("llama3.2", &["--drop-after", "2", "--token-ms", "10"]);
    let other = sim_node("llama3.2", &[]);
    let gw = gateway(&[&dying, &other], &["--workers", "0"], &[]);
    let body = r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#;
    let response = send(
        &format!("{}/api/chat", gw.url),
        body,
        &[("x-sollol-node", &dying.key())],
    )
    .await;
    let text = response.text().await.expect("body");
    assert!(
        text.lines().last().is_some_and(|l| l.contains("\"error\"")),
        "{text}"
    );
    let stats = get_json(&format!("{}/sim/stats", other.url)).await;
    assert_eq!(
        stats["requests"]["POST /api/chat"],
        Value::Null,
        "not retried on the other node"
    );
    let gateway_stats = get_json(&format!("{}/sollol/stats", gw.url)).await;
    assert_eq!(
        gateway_stats["observer"]["routing_events"]["FALLBACK_TRIGGERED"],
        Value::Null
    );
}

#[actix_rt::test]
async fn a_failing_node_is_cut_off_by_its_breaker_and_comes_back() {
    let good = sim_node("llama3.2", &["--loaded", "llama3.2"]);
    let flaky = sim_node("llama3.2", &["--loaded", "llama3.2"]);
    let gw = gateway(
        &[&good, &flaky],
        &["--workers", "0", "--strategy", "round_robin"],
        &[("SOLLOL_BREAKER_COOLDOWN_MS", "300")],
    );
    set_failure(&flaky, Some(500)).await;
    let counts = distribution(&gw.url, 10, &[]).await;
    assert_eq!(
        counts.get(&good.key()),
        Some(&10),
        "5xx answers are retried on the good node: {counts:?}"
    );
    let status = node_status(&gw.url, &flaky.key()).await;
    assert_eq!(status["breaker"], "open", "{status}");
    assert_eq!(status["state"], "healthy", "it still answers health checks");
    let asked = get_json(&format!("{}/sim/stats", flaky.url)).await["requests"]
        ["POST /api/generate"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(asked, 3, "no traffic once the breaker opened");

    set_failure(&flaky, None).await;
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    eventually(
        Duration::from_secs(10),
        "the breaker to close after a probe",
        || async {
            distribution(&gw.url, 2, &[]).await;
            (node_status(&gw.url, &flaky.key()).await["breaker"] == "closed").then_some(())
        },
    )
    .await;
    let counts = distribution(&gw.url, 4, &[]).await;
    assert_eq!(
        counts.get(&flaky.key()),
        Some(&2),
        "back in rotation: {counts:?}"
    );
}

#[actix_rt::test]
async fn a_dead_node_is_readmitted_when_it_comes_back() {
    let a = sim_node("llama3.2", &[]);
    let mut b = sim_node("llama3.2", &[]);
    let gw = gateway(
        &[&a, &b],
        &["--workers", "0", "--strategy", "round_robin"],
        &[("SOLLOL_HEALTH_INTERVAL_MS", "100")],
    );
    let address = b.key();
    b.kill();
    eventually(
        Duration::from_secs(10),
        "the dead node to be marked down",
        || async { (node_status(&gw.url, &address).await["state"] == "unhealthy").then_some(()) },
    )
    .await;
    let counts = distribution(&gw.url, 4, &[]).await;
    assert_eq!(counts.get(&a.key()), Some(&4));

    let revived = sim_node_on(&address, "llama3.2", &[]);
    eventually(
        Duration::from_secs(15),
        "the node to be checked healthy again",
        || async { (node_status(&gw.url, &address).await["state"] == "healthy").then_some(()) },
    )
    .await;
    let counts = distribution(&gw.url, 4, &[]).await;
    assert_eq!(counts.get(&revived.key()), Some(&2), "{counts:?}");
}

#[actix_rt::test]
async fn unload_reaches_every_node_holding_the_model() {
    let a = sim_node("llama3.2", &["--loaded", "llama3.2"]);
    let b = sim_node("llama3.2", &["--loaded", "llama3.2"]);
    let gw = gateway(&[&a, &b], &["--workers", "0"], &[]);
    let response = send(
        &format!("{}/api/generate", gw.url),
        r#"{"model":"llama3.2","prompt":"","keep_alive":0}"#,
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    let nodes = header(&response, "x-sollol-node");
    assert!(
        nodes.contains(&a.key()) && nodes.contains(&b.key()),
        "{nodes}"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["done_reason"], "unload");
    for node in [&a, &b] {
        let ps = get_json(&format!("{}/api/ps", node.url)).await;
        assert_eq!(
            ps["models"],
            json!([]),
            "{} still holds the model",
            node.key()
        );
    }
}

#[actix_rt::test]
async fn pulls_go_to_the_named_node_or_to_all() {
    let a = sim_node("llama3.2", &[]);
    let b = sim_node("llama3.2", &[]);
    let gw = gateway(&[&a, &b], &["--workers", "0"], &[]);
    let pull = send(
        &format!("{}/api/pull", gw.url),
        r#"{"model":"qwen2.5","stream":false}"#,
        &[("x-sollol-node", &b.key())],
    )
    .await;
    assert_eq!(pull.status(), 200);
    let has = |node: &Running, model: &'static str| {
        let url = format!("{}/api/tags", node.url);
        async move {
            get_json(&url).await["models"]
                .as_array()
                .expect("models")
                .iter()
                .any(|m| m["model"] == format!("{model}:latest"))
        }
    };
    assert!(has(&b, "qwen2.5").await && !has(&a, "qwen2.5").await);

    let everywhere = gateway(
        &[&a, &b],
        &["--workers", "0"],
        &[("SOLLOL_PULL_TO_ALL", "true")],
    );
    let pull = send(
        &format!("{}/api/pull", everywhere.url),
        r#"{"model":"mistral"}"#,
        &[],
    )
    .await;
    assert_eq!(header(&pull, "content-type"), "application/x-ndjson");
    let text = pull.text().await.expect("body");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.last().expect("lines")["status"], "success", "{text}");
    assert!(
        lines.iter().any(|l| l["node"] == a.key()) && lines.iter().any(|l| l["node"] == b.key()),
        "{text}"
    );
    assert!(has(&a, "mistral").await && has(&b, "mistral").await);
}

#[actix_rt::test]
async fn a_blob_and_the_create_that_uses_it_reach_the_same_node() {
    let a = sim_node("llama3.2", &[]);
    let b = sim_node("llama3.2", &[]);
    let gw = gateway(&[&a, &b], &["--workers", "0"], &[]);
    let digest = format!("sha256:{}", "ab".repeat(32));
    let upload = client()
        .post(format!("{}/api/blobs/{digest}", gw.url))
        .body(vec![7u8; 4096])
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 201);
    let holder = header(&upload, "x-sollol-node");
    for _ in 0..3 {
        let check = client()
            .head(format!("{}/api/blobs/{digest}", gw.url))
            .send()
            .await
            .expect("head");
        assert_eq!(check.status(), 200);
        assert_eq!(header(&check, "x-sollol-node"), holder);
    }
    let create = json!({ "model": "custom", "files": { "model.gguf": digest }, "stream": false });
    let created = send(&format!("{}/api/create", gw.url), &create.to_string(), &[]).await;
    assert_eq!(
        created.status(),
        200,
        "{}",
        created.text().await.unwrap_or_default()
    );
}

#[actix_rt::test]
async fn each_routed_request_publishes_one_selection_event() {
    let a = sim_node("llama3.2", &[]);
    let b = sim_node("llama3.2", &[]);
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let client = redis::Client::open("redis://127.0.0.1:6379/0").expect("url");
        let mut connection = client.get_connection().expect("redis at 127.0.0.1:6379");
        let mut pubsub = connection.as_pubsub();
        pubsub
            .subscribe("sollol:routing_events")
            .expect("subscribe");
        pubsub
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let _ = ready_tx.send(());
        while let Ok(message) = pubsub.get_message() {
            let payload: String = message.get_payload().expect("text");
            if tx
                .send(serde_json::from_str(&payload).expect("json"))
                .is_err()
            {
                return;
            }
        }
    });
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    let gw = gateway(
        &[&a, &b],
        &["--workers", "0", "--redis-url", "redis://127.0.0.1:6379/0"],
        &[],
    );
    let mut served = Vec::new();
    for i in 0..3 {
        let response = send(
            &format!("{}/api/generate", gw.url),
            &generate(&format!("event {i}")),
            &[],
        )
        .await;
        served.push(header(&response, "x-sollol-node"));
    }
    let mut selected = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while selected.len() < 3 && Instant::now() < deadline {
        let Ok(event) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if event["pid"] == gw.pid() && event["event_type"] == "OLLAMA_NODE_SELECTED" {
            assert_eq!(event["backend"], "ollama");
            assert_eq!(event["model"], "llama3.2");
            assert!(
                event["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("Strategy: ")),
                "{event}"
            );
            selected.push(event["node_url"].as_str().expect("node").to_string());
        }
    }
    assert_eq!(
        selected, served,
        "one event per request, naming the node that answered"
    );
}

#[actix_rt::test]
async fn a_busy_node_teaches_its_capacity_and_its_requests_go_elsewhere() {
    let steady = sim_node("llama3.2", &["--loaded", "llama3.2"]);
    let busy = sim_node(
        "llama3.2",
        &["--loaded", "llama3.2", "--fail-status", "503"],
    );
    let gw = gateway(
        &[&steady, &busy],
        &["--workers", "0", "--strategy", "round_robin"],
        &[],
    );
    let url = format!("{}/api/generate", gw.url);
    let answers = futures_util::future::join_all((0..6).map(|i| {
        let url = url.clone();
        async move {
            send(&url, &generate(&format!("busy {i}")), &[])
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert!(
        answers.iter().all(|s| *s == 200),
        "503s are retried elsewhere: {answers:?}"
    );
    let status = node_status(&gw.url, &busy.key()).await;
    assert_eq!(status["configured_capacity"], 4);
    assert!(
        status["capacity"].as_u64() < Some(4),
        "the busy node's capacity was lowered: {status}"
    );
}
