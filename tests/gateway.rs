//! The gateway through the real binary: transparency, errors, routing and failover,
//! against simulated Ollama nodes on loopback.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const CHAT: &str =
    r#"{"model":"llama3.2","messages":[{"role":"user","content":"why is the sky blue?"}]}"#;

#[actix_rt::test]
async fn ollama_routes_pass_through_unchanged() {
    let a = sim_node("llama3.2,nomic-embed-text", &["--loaded", "llama3.2"]);
    let b = sim_node("llama3.2,qwen2.5", &[]);
    let gw = gateway(&[&a, &b], &["--workers", "0"], &[]);

    let root = client()
        .get(format!("{}/", gw.url))
        .send()
        .await
        .expect("GET /");
    assert_eq!(header(&root, "content-type"), "text/plain; charset=utf-8");
    assert_eq!(root.text().await.expect("body"), "Ollama is running");
    let head = client()
        .head(format!("{}/", gw.url))
        .send()
        .await
        .expect("HEAD /");
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), "17");

    let version = get_json(&format!("{}/api/version", gw.url)).await;
    assert!(version["version"].is_string(), "{version}");

    let tags = get_json(&format!("{}/api/tags", gw.url)).await;
    let mut names: Vec<&str> = tags["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["model"].as_str().expect("model"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "llama3.2:latest",
            "nomic-embed-text:latest",
            "qwen2.5:latest"
        ],
        "union across nodes, no duplicates"
    );

    let ps = get_json(&format!("{}/api/ps", gw.url)).await;
    assert_eq!(ps["models"][0]["name"], "llama3.2:latest");

    // A non-streamed reply is byte-identical to the node's own, minus timings.
    let show = r#"{"model":"qwen2.5"}"#;
    let through = post(&format!("{}/api/show", gw.url), show).await;
    assert_eq!(
        header(&through, "x-sollol-node"),
        b.key(),
        "only node b has qwen2.5"
    );
    assert_eq!(
        header(&through, "content-type"),
        "application/json; charset=utf-8"
    );
    let through = through.bytes().await.expect("body");
    let direct = post(&format!("{}/api/show", b.url), show)
        .await
        .bytes()
        .await
        .expect("body");
    assert_eq!(through, direct);

    let embed = r#"{"model":"nomic-embed-text","input":["alpha","beta"]}"#;
    let through = post(&format!("{}/api/embed", gw.url), embed)
        .await
        .text()
        .await
        .expect("body");
    let direct = post(&format!("{}/api/embed", a.url), embed)
        .await
        .text()
        .await
        .expect("body");
    assert_eq!(without_timings(&through), without_timings(&direct));

    // A stream arrives as the node's NDJSON lines, with the node's content type.
    let streamed = post(&format!("{}/api/chat", gw.url), CHAT).await;
    assert_eq!(streamed.status(), 200);
    assert_eq!(header(&streamed, "content-type"), "application/x-ndjson");
    let node = header(&streamed, "x-sollol-node");
    let through = streamed.text().await.expect("body");
    let direct_url = if node == a.key() { &a.url } else { &b.url };
    let direct = post(&format!("{direct_url}/api/chat"), CHAT)
        .await
        .text()
        .await
        .expect("body");
    let normalise = |text: &str| text.lines().map(without_timings).collect::<Vec<_>>();
    assert_eq!(normalise(&through), normalise(&direct));
    assert!(through.ends_with('\n'));
    let last: Value = serde_json::from_str(through.lines().last().expect("lines")).expect("json");
    assert_eq!(last["done"], true);

    // The node saw its own address as Host, not the gateway's.
    let stats = get_json(&format!("{direct_url}/sim/stats")).await;
    assert_eq!(stats["last_host"], node);

    // OpenAI layer: models list and an SSE stream ending in [DONE].
    let models = get_json(&format!("{}/v1/models", gw.url)).await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"].as_array().expect("data").len(), 3);
    let sse = post(
        &format!("{}/v1/chat/completions", gw.url),
        r#"{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(header(&sse, "content-type"), "text/event-stream");
    let text = sse.text().await.expect("body");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[actix_rt::test]
async fn gateway_errors_use_ollama_format_and_status() {
    let a = sim_node("llama3.2", &[]);
    let gw = gateway(
        &[&a],
        &["--workers", "0"],
        &[("SOLLOL_MAX_BODY_BYTES", "2048")],
    );
    let chat = format!("{}/api/chat", gw.url);

    let cases = [
        (
            r#"{"model":"nope","messages":[]}"#,
            404,
            json!({"error": "model 'nope' not found"}),
        ),
        (
            r#"{"messages":[]}"#,
            400,
            json!({"error": "model is required"}),
        ),
        ("", 400, json!({"error": "missing request body"})),
    ];
    for (body, status, expected) in cases {
        let response = post(&chat, body).await;
        assert_eq!(response.status(), status, "body {body:?}");
        assert_eq!(
            header(&response, "content-type"),
            "application/json; charset=utf-8"
        );
        assert_eq!(response.json::<Value>().await.expect("json"), expected);
    }
    let bad = post(&chat, "{not json").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.json::<Value>().await.expect("json")["error"]
        .as_str()
        .expect("error")
        .contains("invalid json"));

    let big = format!(r#"{{"model":"llama3.2","prompt":"{}"}}"#, "x".repeat(4096));
    let too_large = post(&format!("{}/api/generate", gw.url), &big).await;
    assert_eq!(too_large.status(), 413);
    let message = too_large.json::<Value>().await.expect("json")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(message.contains("max_body_bytes"), "{message}");

    let wrong_method = client().get(&chat).send().await.expect("GET");
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(header(&wrong_method, "allow"), "POST");
    let unknown = client()
        .get(format!("{}/api/nope", gw.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.text().await.expect("body"), "404 page not found");

    let openai = post(
        &format!("{}/v1/chat/completions", gw.url),
        r#"{"model":"nope","messages":[]}"#,
    )
    .await;
    assert_eq!(openai.status(), 404);
    let body = openai.json::<Value>().await.expect("json");
    assert_eq!(body["error"]["type"], "not_found_error");
    assert_eq!(body["error"]["message"], "model 'nope' not found");
}

#[actix_rt::test]
async fn round_robin_spreads_requests_and_names_the_node() {
    let a = sim_node("llama3.2", &[]);
    let b = sim_node("llama3.2", &[]);
    let gw = gateway(
        &[&a, &b],
        &["--workers", "0", "--strategy", "round_robin"],
        &[],
    );
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..10 {
        let response = post(
            &format!("{}/api/generate", gw.url),
            r#"{"model":"llama3.2","prompt":"hi","stream":false}"#,
        )
        .await;
        assert_eq!(response.status(), 200);
        *counts
            .entry(header(&response, "x-sollol-node"))
            .or_default() += 1;
    }
    assert_eq!(counts.get(&a.key()), Some(&5), "{counts:?}");
    assert_eq!(counts.get(&b.key()), Some(&5), "{counts:?}");
    let stats = get_json(&format!("{}/sollol/stats", gw.url)).await;
    assert_eq!(stats["requests"]["by_status"]["200"], 10);
}

#[actix_rt::test]
async fn a_refused_connection_is_retried_on_another_node() {
    let a = sim_node("llama3.2", &[]);
    let mut b = sim_node("llama3.2", &[]);
    // Health checks are slow here, so the router still believes in b when it dies.
    let gw = gateway(
        &[&a, &b],
        &["--workers", "0", "--strategy", "round_robin"],
        &[("SOLLOL_HEALTH_INTERVAL_MS", "60000")],
    );
    b.kill();
    for _ in 0..4 {
        let response = post(
            &format!("{}/api/generate", gw.url),
            r#"{"model":"llama3.2","prompt":"hi","stream":false}"#,
        )
        .await;
        assert_eq!(
            response.status(),
            200,
            "every request is served by the live node"
        );
        assert_eq!(header(&response, "x-sollol-node"), a.key());
    }
    let nodes = get_json(&format!("{}/sollol/nodes", gw.url)).await;
    let dead = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"] == b.key())
        .expect("node b");
    // A refused connection marks the node down; failures on pooled connections it had
    // (closed by its death) count towards its breaker.
    assert!(
        dead["state"] == "unhealthy" || dead["breaker"] == "open",
        "{dead}"
    );
    assert!(dead["failures"].as_u64() >= Some(1), "{dead}");
    let stats = get_json(&format!("{}/sollol/stats", gw.url)).await;
    assert!(
        stats["observer"]["routing_events"]["FALLBACK_TRIGGERED"].as_u64() >= Some(1),
        "{stats}"
    );
    assert_eq!(
        stats["observer"]["routing_events"]["OLLAMA_NODE_SELECTED"], 4,
        "one per request"
    );
}

#[actix_rt::test]
async fn unreachable_nodes_give_502() {
    let dead = dead_address();
    let mut command = sollol_command();
    command.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "0",
        "--node",
        &dead,
    ]);
    let gw = start_and_wait(command, "gateway");
    let response = post(&format!("{}/api/chat", gw.url), CHAT).await;
    assert_eq!(response.status(), 502);
    let body = response.json::<Value>().await.expect("json");
    assert!(
        body["error"].as_str().expect("error").contains("reachable"),
        "{body}"
    );
    let health = client()
        .get(format!("{}/sollol/health", gw.url))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 503);
}

#[actix_rt::test]
async fn a_node_dying_mid_stream_ends_the_stream_with_an_error_line() {
    let a = sim_node("llama3.2", &["--drop-after", "2", "--token-ms", "20"]);
    let gw = gateway(&[&a], &["--workers", "0"], &[]);
    let response = post(&format!("{}/api/chat", gw.url), CHAT).await;
    assert_eq!(response.status(), 200);
    let text = response
        .text()
        .await
        .expect("the gateway ends the body cleanly");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is json"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["done"], false);
    assert!(
        lines[2]["error"]
            .as_str()
            .expect("error line")
            .contains("mid-stream"),
        "{text}"
    );
    assert!(lines.iter().all(|l| l["done"] != true));
}

#[actix_rt::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let a = sim_node("llama3.2", &["--token-ms", "300"]);
    let gw = gateway(&[&a], &["--workers", "0"], &[]);
    let body = r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":40}}"#;
    let response = post(&format!("{}/api/chat", gw.url), body).await;
    let mut stream = response.bytes_stream();
    let first = stream.next().await.expect("a first chunk").expect("bytes");
    assert!(!first.is_empty());
    let in_flight = |nodes: Value| nodes["nodes"][0]["in_flight"].as_u64();
    assert_eq!(
        in_flight(get_json(&format!("{}/sollol/nodes", gw.url)).await),
        Some(1)
    );
    drop(stream);
    // 40 tokens at 300 ms would take 12 s; a cancelled request is gone long before.
    eventually(
        Duration::from_secs(5),
        "the request to leave the node",
        || async {
            (in_flight(get_json(&format!("{}/sollol/nodes", gw.url)).await) == Some(0))
                .then_some(())
        },
    )
    .await;
    let stats = get_json(&format!("{}/sollol/stats", gw.url)).await;
    assert_eq!(
        stats["observer"]["errors_by_backend"][a.key()],
        1,
        "{stats}"
    );
}

#[actix_rt::test]
async fn a_client_that_leaves_before_any_byte_frees_the_node() {
    // A non-streamed answer sends nothing until it is complete (40 tokens at 300 ms).
    let a = sim_node("llama3.2", &["--token-ms", "300"]);
    let gw = gateway(&[&a], &["--workers", "0"], &[]);
    let body = r#"{"model":"llama3.2","prompt":"hi","stream":false,"options":{"num_predict":40}}"#;
    let url = format!("{}/api/generate", gw.url);
    let gave_up = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client gave up before the answer");
    let in_flight = |nodes: Value| nodes["nodes"][0]["in_flight"].as_u64();
    eventually(
        Duration::from_secs(4),
        "the abandoned request to leave the node",
        || async {
            (in_flight(get_json(&format!("{}/sollol/nodes", gw.url)).await) == Some(0))
                .then_some(())
        },
    )
    .await;
    let stats = get_json(&format!("{}/sollol/stats", gw.url)).await;
    assert_eq!(stats["requests"]["by_status"]["499"], 1, "{stats}");
    let nodes = get_json(&format!("{}/sollol/nodes", gw.url)).await;
    assert_eq!(nodes["nodes"][0]["breaker"], "closed", "{nodes}");
}

#[actix_rt::test]
async fn an_upload_past_the_limit_is_the_clients_fault_not_the_nodes() {
    let a = sim_node("llama3.2", &[]);
    let gw = gateway(
        &[&a],
        &["--workers", "0"],
        &[("SOLLOL_MAX_BLOB_BYTES", "1000")],
    );
    let digest = format!("sha256:{}", "cd".repeat(32));
    for _ in 0..4 {
        // Sent chunked, without a length, so the limit is met while passing it on.
        let chunks =
            futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![7u8; 600])));
        let upload = client()
            .post(format!("{}/api/blobs/{digest}", gw.url))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .expect("upload");
        assert_eq!(upload.status(), 413);
        let error: Value = upload.json().await.expect("json error");
        assert!(
            error["error"]
                .as_str()
                .unwrap_or_default()
                .contains("max_blob_bytes"),
            "{error}"
        );
    }
    let nodes = get_json(&format!("{}/sollol/nodes", gw.url)).await;
    assert_eq!(nodes["nodes"][0]["breaker"], "closed", "{nodes}");
    let answer = post(
        &format!("{}/api/generate", gw.url),
        r#"{"model":"llama3.2","prompt":"hi","stream":false}"#,
    )
    .await;
    assert_eq!(answer.status(), 200);
}

#[actix_rt::test]
async fn redis_down_does_not_slow_or_stop_the_gateway() {
    let a = sim_node("llama3.2", &[]);
    let redis = dead_address().replace("http://", "redis://");
    let gw = gateway(&[&a], &["--workers", "0", "--redis-url", &redis], &[]);
    for _ in 0..20 {
        let response = post(
            &format!("{}/api/generate", gw.url),
            r#"{"model":"llama3.2","prompt":"hi","stream":false}"#,
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    let stats = eventually(
        Duration::from_secs(5),
        "events to wait in the backlog",
        || async {
            let stats = get_json(&format!("{}/sollol/stats", gw.url)).await;
            let backlog = stats["redis"]["backlog"].as_u64()?;
            // Everything waits for Redis: each event (40 from the requests, plus node
            // changes), each routing event (published and appended to the stream), and
            // the application's registration and metadata updates.
            let events = stats["observer"]["total_events"].as_u64()?;
            let routing: u64 = stats["observer"]["routing_events"]
                .as_object()
                .map(|counts| counts.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0);
            (events >= 40 && routing >= 20 && backlog >= events).then_some(stats)
        },
    )
    .await;
    assert_eq!(stats["redis"]["connected"], false);
    assert_eq!(stats["redis"]["published"], 0);
    let health = get_json(&format!("{}/sollol/health", gw.url)).await;
    assert_eq!(health["redis"]["connected"], false);
    assert_eq!(health["status"], "ok");
}

#[actix_rt::test]
async fn the_demo_serves_chat_and_batch_work() {
    let mut command = sollol_command();
    command.args(["demo", "--bind", "127.0.0.1:0"]);
    let demo = start_and_wait(command, "demo");
    let chat = post(&format!("{}/api/chat", demo.url), CHAT).await;
    assert_eq!(chat.status(), 200);
    assert!(!header(&chat, "x-sollol-node").is_empty());
    let text = chat.text().await.expect("body");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.contains("\"done\":true")),
        "{text}"
    );
    let batch = post(
        &format!("{}/sollol/batch/embed", demo.url),
        r#"{"model":"nomic-embed-text","input":["a","b","c"]}"#,
    )
    .await;
    assert_eq!(batch.status(), 200);
    let body: Value = batch.json().await.expect("json");
    assert_eq!(body["embeddings"].as_array().map(Vec::len), Some(3));
    let nodes = get_json(&format!("{}/sollol/nodes", demo.url)).await;
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(3));
}

#[actix_rt::test]
async fn foreign_hosts_and_origins_are_refused_like_ollama_does() {
    let a = sim_node("llama3.2", &[]);
    let gw = gateway(
        &[&a],
        &["--workers", "0"],
        &[("OLLAMA_ORIGINS", "https://chat.example.com")],
    );
    let tags = format!("{}/api/tags", gw.url);
    let foreign = client()
        .get(&tags)
        .header("host", "attacker.example:8000")
        .send()
        .await
        .expect("GET");
    assert_eq!(foreign.status(), 403);
    assert_eq!(foreign.text().await.expect("body"), "");
    let evil = client()
        .get(&tags)
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(evil.status(), 403);

    let local = client()
        .get(&tags)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("GET");
    assert_eq!(local.status(), 200);
    assert_eq!(
        header(&local, "access-control-allow-origin"),
        "http://localhost:3000"
    );
    let configured = client()
        .get(&tags)
        .header("origin", "https://chat.example.com")
        .send()
        .await
        .expect("GET");
    assert_eq!(configured.status(), 200);

    let preflight = client()
        .request(reqwest::Method::OPTIONS, format!("{}/api/chat", gw.url))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(preflight.status(), 204);
    assert!(header(&preflight, "access-control-allow-methods").contains("POST"));
}

#[actix_rt::test]
async fn model_changes_through_the_gateway_are_seen_at_once() {
    let a = sim_node("llama3.2", &[]);
    let b = sim_node("llama3.2", &[]);
    // Slow checks: only the gateway's own bookkeeping can explain what follows.
    let gw = gateway(
        &[&a, &b],
        &["--workers", "0"],
        &[("SOLLOL_HEALTH_INTERVAL_MS", "60000")],
    );
    let pulled = post(
        &format!("{}/api/pull", gw.url),
        r#"{"model":"mistral","stream":false}"#,
    )
    .await;
    assert_eq!(pulled.status(), 200);
    let generate = post(
        &format!("{}/api/generate", gw.url),
        r#"{"model":"mistral","prompt":"hi","stream":false}"#,
    )
    .await;
    assert_eq!(
        generate.status(),
        200,
        "the pulled model is routable at once"
    );

    let copied = post(
        &format!("{}/api/copy", gw.url),
        r#"{"source":"llama3.2","destination":"llama3-backup"}"#,
    )
    .await;
    assert_eq!(copied.status(), 200);
    let delete = client()
        .delete(format!("{}/api/delete", gw.url))
        .body(r#"{"model":"llama3-backup"}"#)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(delete.status(), 200);

    // A model on both nodes is deleted from both.
    let everywhere = client()
        .delete(format!("{}/api/delete", gw.url))
        .body(r#"{"name":"llama3.2"}"#)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(everywhere.status(), 200);
    let nodes = header(&everywhere, "x-sollol-node");
    assert!(
        nodes.contains(&a.key()) && nodes.contains(&b.key()),
        "{nodes}"
    );
    for node in [&a, &b] {
        let tags = get_json(&format!("{}/api/tags", node.url)).await;
        assert!(!tags["models"]
            .as_array()
            .expect("models")
            .iter()
            .any(|m| m["model"] == "llama3.2:latest"));
    }
    let gone = post(
        &format!("{}/api/generate", gw.url),
        r#"{"model":"llama3.2","prompt":"hi"}"#,
    )
    .await;
    assert_eq!(gone.status(), 404);
}

#[actix_rt::test]
async fn names_slashes_and_wording_match_ollama() {
    let a = sim_node("llama3.2,nomic-embed-text", &[]);
    let gw = gateway(&[&a], &["--workers", "0"], &[]);
    for name in [
        "library/llama3.2",
        "registry.ollama.ai/library/llama3.2:latest",
        "LLAMA3.2",
    ] {
        let body = serde_json::json!({ "model": name }).to_string();
        assert_eq!(
            post(&format!("{}/api/show", gw.url), &body).await.status(),
            200,
            "{name}"
        );
    }
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let slash = no_redirects
        .get(format!("{}/api/tags/", gw.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(slash.status(), 301);
    assert_eq!(header(&slash, "location"), "/api/tags");
    let slash = no_redirects
        .post(format!("{}/api/chat/", gw.url))
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(slash.status(), 307);

    let messages = [
        (
            "/api/show",
            r#"{"model":"nope"}"#,
            "model 'nope:latest' not found",
        ),
        (
            "/api/embed",
            r#"{"model":"nope","input":"x"}"#,
            "model \"nope\" not found, try pulling it first",
        ),
        (
            "/api/generate",
            r#"{"model":"","prompt":"x"}"#,
            "model '' not found",
        ),
    ];
    for (path, body, expected) in messages {
        let response = post(&format!("{}{path}", gw.url), body).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.json::<Value>().await.expect("json")["error"],
            expected
        );
    }
    let trailing = post(
        &format!("{}/api/show", gw.url),
        "{\"model\":\"llama3.2\"} trailing",
    )
    .await;
    assert_eq!(
        trailing.status(),
        200,
        "data after the JSON value is ignored, as by Go's decoder"
    );

    let batch = post(
        &format!("{}/sollol/batch/embed", gw.url),
        r#"{"model":"nomic-embed-text","input":["a","b"],"dimensions":4}"#,
    )
    .await;
    let body: Value = batch.json().await.expect("json");
    assert_eq!(
        body["embeddings"][0].as_array().map(Vec::len),
        Some(4),
        "dimensions reach the node"
    );
}

#[actix_rt::test]
async fn idle_connections_closed_by_a_node_do_not_take_it_down() {
    // The simulated node closes idle connections after 5 s, as many servers do; the
    // health checks run every second, so they meet closed pooled connections often.
    let a = sim_node("llama3.2", &[]);
    let gw = gateway(
        &[&a],
        &["--workers", "0"],
        &[("SOLLOL_HEALTH_INTERVAL_MS", "1000")],
    );
    actix_rt::time::sleep(Duration::from_secs(12)).await;
    let stats = get_json(&format!("{}/sollol/stats", gw.url)).await;
    assert_eq!(
        stats["observer"]["events_by_type"]["node_status_change"], 1,
        "only unknown to healthy: {stats}"
    );
    let response = post(
        &format!("{}/api/generate", gw.url),
        r#"{"model":"llama3.2","prompt":"hi","stream":false}"#,
    )
    .await;
    assert_eq!(response.status(), 200);
}
