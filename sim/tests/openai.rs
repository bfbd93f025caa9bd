//! The `/v1/*` compatibility layer.

mod common;

use common::{norm, Node};
use serde_json::Value;
use sollol_sim::SimConfig;

#[actix_rt::test]
async fn chat_completion_without_stream_ends_with_a_newline() {
    let node = Node::start(SimConfig::default());
    let body = r#"{"model":"llama3.2","messages":[{"role":"user","content":"Say hi"}]}"#;
    let reply = node.post("/v1/chat/completions", body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type(), Some("application/json"));
    assert!(reply.text().ends_with("}\n"));
    assert!(reply.text().starts_with(r#"{"id":"chatcmpl-"#));

    let completion = reply.json();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["system_fingerprint"], "fp_ollama");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["choices"][0]["message"]["role"], "assistant");
    let usage = &completion["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap_or(0)
                + usage["completion_tokens"].as_u64().unwrap_or(0)
        )
    );

    // The OpenAI layer says what the native API says for the same message.
    let native =
        r#"{"model":"llama3.2","messages":[{"role":"user","content":"Say hi"}],"stream":false}"#;
    let native = node.post("/api/chat", native).await.json();
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        native["message"]["content"]
    );
    node.stop().await;
}

#[actix_rt::test]
async fn chat_completion_stream_uses_the_current_chunk_layout() {
    let node = Node::start(SimConfig::default());
    let body = r#"{"model":"llama3.2","stream":true,"stream_options":{"include_usage":true},"max_tokens":4,"messages":[{"role":"user","content":"Say hi"}]}"#;
    let reply = node.post("/v1/chat/completions", body).await;
    assert_eq!(reply.content_type(), Some("text/event-stream"));
    assert!(reply.complete);

    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|event| serde_json::from_str(event).expect("JSON chunk"))
        .collect();
    // Four tokens, the finish chunk, the usage chunk.
    assert_eq!(chunks.len(), 6);
    assert!(chunks
        .iter()
        .all(|chunk| chunk["object"] == "chat.completion.chunk"));
    assert!(chunks
        .iter()
        .all(|chunk| chunk["created"] == chunks[0]["created"]));

    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks[1]["choices"][0]["delta"].get("role").is_none());
    assert!(chunks[..4]
        .iter()
        .all(|chunk| chunk["choices"][0]["finish_reason"].is_null()));
    assert!(events[4].contains(r#""delta":{},"finish_reason":"length""#));
    assert_eq!(chunks[5]["choices"], serde_json::json!([]));
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 4);
    node.stop().await;
}

#[actix_rt::test]
async fn errors_use_the_openai_shape() {
    let node = Node::with_models(&["llama3.2"]);
    let unknown = node
        .post(
            "/v1/chat/completions",
            r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.content_type(), Some("application/json"));
    assert_eq!(
        unknown.text(),
        "{\"error\":{\"message\":\"model 'nope' not found\",\"type\":\"not_found_error\",\"param\":null,\"code\":null}}\n"
    );

    let empty = node
        .post(
            "/v1/chat/completions",
            r#"{"model":"llama3.2","messages":[]}"#,
        )
        .await;
    assert_eq!(empty.status, 400);
    assert_eq!(
        empty.text(),
        "{\"error\":{\"message\":\"[] is too short - 'messages'\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}\n"
    );

    let bad = node
        .post("/v1/embeddings", r#"{"model":"llama3.2","input":[]}"#)
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["message"], "invalid input");
    node.stop().await;
}

#[actix_rt::test]
async fn models_list_and_retrieve() {
    let node = Node::start(SimConfig::default());
    let list = node.get("/v1/models").await;
    assert_eq!(list.content_type(), Some("application/json"));
    let created = list.json()["data"][0]["created"].as_i64().expect("created");
    assert_eq!(
        list.text(),
        format!(
            "{{\"object\":\"list\",\"data\":[{{\"id\":\"llama3.2:latest\",\"object\":\"model\",\"created\":{created},\"owned_by\":\"library\"}}]}}\n"
        )
    );

    let one = node.get("/v1/models/llama3.2").await.json();
    assert_eq!(one["id"], "llama3.2:latest");
    assert_eq!(one["created"], created);

    let missing = node.get("/v1/models/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["type"], "not_found_error");

    let none = Node::with_models(&[]);
    assert_eq!(
        none.get("/v1/models").await.text(),
        "{\"object\":\"list\",\"data\":null}\n"
    );
    none.stop().await;
    node.stop().await;
}

#[actix_rt::test]
async fn embeddings_and_completions() {
    let node = Node::with_models(&["llama3.2", "nomic-embed-text"]);
    let reply = node
        .post(
            "/v1/embeddings",
            r#"{"model":"nomic-embed-text","input":["one","two"]}"#,
        )
        .await;
    assert!(reply
        .text()
        .starts_with(r#"{"object":"list","data":[{"object":"embedding","embedding":["#));
    let body = reply.json();
    assert_eq!(body["data"][1]["index"], 1);
    assert!((norm(&body["data"][0]["embedding"]) - 1.0).abs() < 1e-5);
    assert_eq!(body["usage"]["prompt_tokens"], 2);

    let base64 = node
        .post(
            "/v1/embeddings",
            r#"{"model":"nomic-embed-text","input":"one","encoding_format":"base64"}"#,
        )
        .await
        .json();
    // Eight f32 values are 32 bytes, 44 base64 characters.
    assert_eq!(
        base64["data"][0]["embedding"].as_str().map(str::len),
        Some(44)
    );

    let completion = node
        .post("/v1/completions", r#"{"model":"llama3.2","prompt":"Once"}"#)
        .await;
    assert!(completion.text().ends_with('\n'));
    let completion = completion.json();
    assert_eq!(completion["object"], "text_completion");
    assert!(completion["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("cmpl-")));
    assert!(completion["choices"][0]["text"]
        .as_str()
        .is_some_and(|text| !text.is_empty()));

    let stream = node
        .post(
            "/v1/completions",
            r#"{"model":"llama3.2","prompt":"Once","stream":true}"#,
        )
        .await;
    let events = stream.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(events[events.len() - 2].contains(r#""finish_reason":"stop""#));
    node.stop().await;
}
