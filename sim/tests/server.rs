//! Behaviour that needs a real socket or a clock: the mid-stream drop, delays, counters, and
//! several nodes in one actix system.

mod common;

use std::time::{Duration, Instant};

use actix_web::{test, App};
use common::Node;
use sollol_sim::{Sim, SimConfig, SimStats};

const CHAT: &str =
    r#"{"model":"llama3.2","messages":[{"role":"user","content":"why is the sky blue?"}]}"#;

#[actix_rt::test]
async fn drop_after_chunks_cuts_the_stream_without_an_ending() {
    let node = Node::start(SimConfig {
        drop_after_chunks: Some(2),
        ..SimConfig::default()
    });

    let cut = node.post("/api/chat", CHAT).await;
    assert_eq!(cut.status, 200);
    assert_eq!(cut.content_type(), Some("application/x-ndjson"));
    assert!(!cut.complete, "the chunked body must lack its terminator");
    let lines = cut.lines();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|line| line["done"] == false));
    assert!(!cut.text().contains("error"));

    let sse = node
        .post(
            "/v1/chat/completions",
            r#"{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert!(!sse.complete);
    assert_eq!(sse.events().len(), 2);
    assert!(!sse.text().contains("[DONE]"));

    // Replies that do not stream are whole.
    let whole = node
        .post(
            "/api/chat",
            r#"{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert!(whole.complete);
    assert_eq!(whole.json()["done"], true);
    node.stop().await;
}

#[actix_rt::test]
async fn drop_after_zero_chunks_sends_only_the_head() {
    let node = Node::start(SimConfig {
        drop_after_chunks: Some(0),
        ..SimConfig::default()
    });
    let cut = node.post("/api/chat", CHAT).await;
    assert_eq!(cut.status, 200);
    assert!(!cut.complete);
    assert!(cut.body.is_empty());
    node.stop().await;
}

#[actix_rt::test]
async fn latency_token_delay_and_load_delay_are_honoured() {
    let node = Node::start(SimConfig {
        latency: Duration::from_millis(40),
        token_delay: Duration::from_millis(5),
        load_delay: Duration::from_millis(60),
        ..SimConfig::default()
    });
    let body = r#"{"model":"llama3.2","prompt":"hi","options":{"num_predict":4}}"#;

    // First use: load, latency, three gaps between five frames.
    let started = Instant::now();
    let first = node.post("/api/generate", body).await;
    let cold = started.elapsed();
    assert!(cold >= Duration::from_millis(60 + 40 + 15), "{cold:?}");
    let last = first.lines().pop().expect("final line");
    assert!(last["load_duration"].as_u64() >= Some(60_000_000));
    assert_eq!(last["eval_duration"].as_u64(), Some(4 * 5_000_000));

    // The model is resident now: no load this time.
    let started = Instant::now();
    let second = node.post("/api/generate", body).await;
    let warm = started.elapsed();
    assert!(warm >= Duration::from_millis(40 + 15), "{warm:?}");
    assert!(warm < cold, "warm {warm:?} vs cold {cold:?}");
    let last = second.lines().pop().expect("final line");
    assert!(last["load_duration"].as_u64() < Some(60_000_000));
    node.stop().await;
}

#[actix_rt::test]
async fn stats_count_requests_and_remember_the_host() {
    let node = Node::start(SimConfig::default());
    node.get("/api/tags").await;
    node.get("/api/tags").await;
    node.post("/api/chat", CHAT).await;
    node.get("/api/nope").await;
    node.send("GET", "/api/version", None, &[("Host", "localhost:11434")])
        .await;

    let reply = node.get("/sim/stats").await;
    assert_eq!(
        reply.content_type(),
        Some("application/json; charset=utf-8")
    );
    let stats: SimStats = serde_json::from_slice(&reply.body).expect("stats JSON");
    assert_eq!(stats.count("GET /api/tags"), 2);
    assert_eq!(stats.count("POST /api/chat"), 1);
    assert_eq!(stats.count("GET /api/nope"), 1);
    assert_eq!(stats.total, 5, "reading /sim/stats is not counted");
    assert_eq!(stats.last_host, "localhost:11434");
    assert_eq!(stats, node.sim.stats());
    node.stop().await;
}

#[actix_rt::test]
async fn several_nodes_share_one_system_and_agree() {
    let nodes = [
        Node::start(SimConfig::default()),
        Node::start(SimConfig::default()),
    ];
    let body = r#"{"model":"llama3.2","prompt":"same prompt","stream":false}"#;
    let mut answers = Vec::new();
    for node in &nodes {
        let reply = node.post("/api/generate", body).await.json();
        answers.push(reply["response"].clone());
    }
    assert_eq!(answers[0], answers[1]);
    for node in nodes {
        node.stop().await;
    }
}

#[actix_rt::test]
async fn configure_mounts_the_node_on_any_app() {
    let sim = Sim::new(SimConfig::default());
    let app = test::init_service(App::new().configure(sollol_sim::configure(sim.clone()))).await;

    let request = test::TestRequest::get().uri("/api/version").to_request();
    let body = test::call_and_read_body(&app, request).await;
    assert_eq!(&body[..], br#"{"version":"0.12.6"}"#);

    let request = test::TestRequest::post()
        .uri("/api/chat")
        .set_payload(r#"{"model":"nope","messages":[]}"#)
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), 404);
    assert_eq!(sim.stats().total, 2);
}
