//! The native `/api/*` routes, checked byte for byte where the reference gives exact bytes.

mod common;

use common::{norm, Node};
use serde_json::Value;
use sollol_sim::SimConfig;

const METRICS: [&str; 6] = [
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
];

/// The keys of a JSON object in wire order (serde_json would sort them).
fn key_order(line: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut depth = 0;
    let mut chars = line.char_indices().peekable();
    while let Some((index, ch)) = chars.next() {
        match ch {
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            '"' => {
                let start = index + 1;
                let mut end = start;
                while let Some((position, next)) = chars.next() {
                    if next == '\\' {
                        chars.next();
                    } else if next == '"' {
                        end = position;
                        break;
                    }
                }
                if depth == 1 && chars.peek().map(|(_, next)| *next) == Some(':') {
                    keys.push(line[start..end].to_owned());
                }
            }
            _ => {}
        }
    }
    keys
}

#[actix_rt::test]
async fn root_and_version_answer_like_ollama() {
    let node = Node::start(SimConfig::default());

    let root = node.get("/").await;
    assert_eq!(root.status, 200);
    assert_eq!(root.content_type(), Some("text/plain; charset=utf-8"));
    assert_eq!(root.text(), "Ollama is running");

    let head = node.send("HEAD", "/", None, &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("17"));
    assert!(head.body.is_empty());

    let version = node.get("/api/version").await;
    assert_eq!(
        version.content_type(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(version.text(), r#"{"version":"0.12.6"}"#);
    node.stop().await;
}

#[actix_rt::test]
async fn router_pages_match_gin() {
    let node = Node::start(SimConfig::default());

    let missing = node.get("/api/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.content_type(), Some("text/plain"));
    assert_eq!(missing.text(), "404 page not found");

    let wrong_method = node.get("/api/chat").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.content_type(), Some("text/plain"));
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    assert_eq!(wrong_method.text(), "405 method not allowed");

    let delete = node.post("/api/delete", "{}").await;
    assert_eq!(delete.status, 405);
    assert_eq!(delete.header("allow"), Some("DELETE"));

    let slash = node.get("/api/tags/").await;
    assert_eq!(slash.status, 301);
    assert_eq!(slash.header("location"), Some("/api/tags"));
    let slash = node.post("/api/chat/", "{}").await;
    assert_eq!(slash.status, 307);
    node.stop().await;
}

#[actix_rt::test]
async fn tags_list_models_in_wire_order_newest_first() {
    let node = Node::with_models(&["llama3.2", "nomic-embed-text", "qwen2.5:7b"]);
    let tags = node.get("/api/tags").await;
    assert_eq!(tags.content_type(), Some("application/json; charset=utf-8"));
    assert!(!tags.text().ends_with('\n'));
    assert!(tags.text().starts_with(r#"{"models":[{"name":""#));

    let body = tags.json();
    let models = body["models"].as_array().expect("models array");
    assert_eq!(models.len(), 3);
    let modified: Vec<&str> = models
        .iter()
        .map(|model| model["modified_at"].as_str().expect("timestamp"))
        .collect();
    // The fixed -07:00 offset makes the strings sort like the instants.
    assert!(
        modified.windows(2).all(|pair| pair[0] > pair[1]),
        "{modified:?}"
    );

    let entry = models
        .iter()
        .find(|model| model["model"] == "llama3.2:latest")
        .expect("llama3.2 listed with its tag");
    let entry_text = serde_json::to_string(entry).expect("re-encode");
    assert_eq!(entry["name"], "llama3.2:latest");
    assert_eq!(entry["digest"].as_str().map(str::len), Some(64));
    assert_eq!(entry["details"]["family"], "llama");
    assert!(entry["size"]
        .as_u64()
        .is_some_and(|size| size > 1_000_000_000));
    assert!(entry_text.contains("\"families\":[\"llama\"]"));

    let raw = tags.text();
    let first = &raw[raw.find("[{").expect("an entry") + 1..];
    assert_eq!(
        key_order(first),
        ["name", "model", "modified_at", "size", "digest", "details"]
    );
    let details = &first[first.find("\"details\":").expect("details") + 10..];
    assert_eq!(
        key_order(details),
        [
            "parent_model",
            "format",
            "family",
            "families",
            "parameter_size",
            "quantization_level"
        ]
    );
    node.stop().await;
}

#[actix_rt::test]
async fn ps_shows_loaded_models_and_models_used_since() {
    let node = Node::start(SimConfig {
        models: vec!["llama3.2".into(), "mistral".into()],
        loaded: vec!["mistral".into()],
        ..SimConfig::default()
    });

    let ps = node.get("/api/ps").await;
    let models = ps.json()["models"].clone();
    assert_eq!(models.as_array().map(Vec::len), Some(1));
    assert_eq!(models[0]["name"], "mistral:latest");
    assert_eq!(models[0]["size_vram"], models[0]["size"]);
    assert!(models[0]["context_length"].as_u64().is_some());
    assert!(models[0]["expires_at"]
        .as_str()
        .is_some_and(|text| text.ends_with("-07:00")));
    assert_eq!(
        key_order(&ps.text()[11..]),
        [
            "name",
            "model",
            "size",
            "digest",
            "details",
            "expires_at",
            "size_vram",
            "context_length"
        ]
    );

    let chat = r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false,"keep_alive":-1}"#;
    assert_eq!(node.post("/api/chat", chat).await.status, 200);
    let ps = node.get("/api/ps").await.json();
    let names: Vec<&str> = ps["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|model| model["name"].as_str())
        .collect();
    // Kept forever, so it sorts before the five-minute model.
    assert_eq!(names, ["llama3.2:latest", "mistral:latest"]);
    node.stop().await;
}

#[actix_rt::test]
async fn generate_streams_ndjson_and_ends_with_done() {
    let node = Node::start(SimConfig::default());
    let stream = node
        .post(
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"Why is the sky blue?"}"#,
        )
        .await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.content_type(), Some("application/x-ndjson"));
    assert!(stream.complete);

    let lines = stream.lines();
    assert!(
        (6..=9).contains(&lines.len()),
        "5 to 8 tokens and a final line"
    );
    let (last, chunks) = lines.split_last().expect("lines");
    assert!(chunks.iter().all(|chunk| chunk["done"] == false));
    assert!(chunks.iter().all(|chunk| chunk["model"] == "llama3.2"));
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["response"], "");
    assert!(last["context"]
        .as_array()
        .is_some_and(|ids| !ids.is_empty()));
    for metric in METRICS {
        assert!(
            last[metric].as_u64().is_some_and(|value| value > 0),
            "{metric}"
        );
    }
    assert_eq!(last["eval_count"].as_u64(), Some(chunks.len() as u64));

    let final_line = stream.text().lines().last().expect("final line");
    let mut expected = vec![
        "model",
        "created_at",
        "response",
        "done",
        "done_reason",
        "context",
    ];
    expected.extend(METRICS);
    assert_eq!(key_order(final_line), expected);
    assert!(last["created_at"]
        .as_str()
        .is_some_and(|at| at.ends_with('Z')));

    // The same prompt gives the same text without streaming, with no trailing newline.
    let streamed: String = chunks
        .iter()
        .filter_map(|chunk| chunk["response"].as_str())
        .collect();
    let single = node
        .post(
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"Why is the sky blue?","stream":false}"#,
        )
        .await;
    assert_eq!(
        single.content_type(),
        Some("application/json; charset=utf-8")
    );
    assert!(!single.text().ends_with('\n'));
    assert!(single
        .text()
        .starts_with(r#"{"model":"llama3.2","created_at":""#));
    assert_eq!(single.json()["response"], streamed.as_str());
    assert_eq!(single.json()["context"], last["context"]);
    node.stop().await;
}

#[actix_rt::test]
async fn chat_streams_message_chunks_and_honours_num_predict() {
    let node = Node::start(SimConfig::default());
    let body = r#"{"model":"llama3.2","messages":[{"role":"user","content":"why is the sky blue?"}],"options":{"num_predict":3}}"#;
    let stream = node.post("/api/chat", body).await;
    assert_eq!(stream.content_type(), Some("application/x-ndjson"));

    let lines = stream.lines();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["message"]["role"], "assistant");
    assert!(lines[0]["message"]["content"]
        .as_str()
        .is_some_and(|text| !text.is_empty()));
    let last = &lines[3];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["message"]["content"], "");
    assert_eq!(last["eval_count"], 3);
    assert!(last.get("context").is_none());

    let final_line = stream.text().lines().last().expect("final line");
    let mut expected = vec!["model", "created_at", "message", "done", "done_reason"];
    expected.extend(METRICS);
    assert_eq!(key_order(final_line), expected);
    node.stop().await;
}

#[actix_rt::test]
async fn different_prompts_and_models_give_different_text() {
    let node = Node::with_models(&["llama3.2", "mistral"]);
    let mut answers = Vec::new();
    for (model, prompt) in [("llama3.2", "a"), ("llama3.2", "b"), ("mistral", "a")] {
        let body = format!(r#"{{"model":"{model}","prompt":"{prompt}","stream":false}}"#);
        let reply = node.post("/api/generate", &body).await.json();
        answers.push(reply["response"].as_str().expect("text").to_owned());
    }
    assert_ne!(answers[0], answers[1]);
    assert_ne!(answers[0], answers[2]);
    assert!(answers.iter().all(|text| text.ends_with('.')));
    node.stop().await;
}

#[actix_rt::test]
async fn load_and_unload_replies_are_single_objects() {
    let node = Node::start(SimConfig::default());

    let load = node.post("/api/generate", r#"{"model":"llama3.2"}"#).await;
    assert_eq!(load.content_type(), Some("application/json; charset=utf-8"));
    let text = load.text();
    assert!(text.starts_with(r#"{"model":"llama3.2","created_at":""#));
    assert!(text.ends_with(r#"","response":"","done":true,"done_reason":"load"}"#));
    assert_eq!(node.sim.resident_names(), ["llama3.2:latest"]);

    let unload = node
        .post(
            "/api/chat",
            r#"{"model":"llama3.2","messages":[],"keep_alive":0}"#,
        )
        .await;
    assert!(unload.text().ends_with(
        r#"","message":{"role":"assistant","content":""},"done":true,"done_reason":"unload"}"#
    ));
    assert!(node.sim.resident_names().is_empty());
    node.stop().await;
}

#[actix_rt::test]
async fn errors_have_the_exact_bodies_of_a_real_server() {
    let node = Node::with_models(&["llama3.2", "all-minilm"]);
    let cases = [
        (
            "/api/chat",
            r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#,
            404,
            r#"{"error":"model 'nope' not found"}"#,
        ),
        (
            "/api/chat",
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            400,
            r#"{"error":"model is required"}"#,
        ),
        (
            "/api/generate",
            r#"{"prompt":"hi"}"#,
            404,
            r#"{"error":"model '' not found"}"#,
        ),
        (
            "/api/generate",
            "",
            400,
            r#"{"error":"missing request body"}"#,
        ),
        (
            "/api/chat",
            "xyz",
            400,
            r#"{"error":"invalid character 'x' looking for beginning of value"}"#,
        ),
        (
            "/api/chat",
            r#"{"model":"llama3.2","stream":"yes"}"#,
            400,
            r#"{"error":"json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool"}"#,
        ),
        (
            "/api/show",
            r#"{"model":"nope"}"#,
            404,
            r#"{"error":"model 'nope:latest' not found"}"#,
        ),
        ("/api/show", "{}", 400, r#"{"error":"model is required"}"#),
        (
            "/api/chat",
            r#"{"model":"all-minilm","messages":[{"role":"user","content":"hi"}]}"#,
            400,
            r#"{"error":"\"all-minilm\" does not support chat"}"#,
        ),
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"hi","think":true}"#,
            400,
            r#"{"error":"\"llama3.2\" does not support thinking"}"#,
        ),
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"hi","keep_alive":"300"}"#,
            400,
            r#"{"error":"time: missing unit in duration \"300\""}"#,
        ),
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"hi","options":{"num_predict":"x"}}"#,
            500,
            r#"{"error":"option \"num_predict\" must be of type integer"}"#,
        ),
    ];
    for (path, body, status, expected) in cases {
        let reply = node.post(path, body).await;
        assert_eq!(reply.status, status, "{path} {body}");
        assert_eq!(
            reply.content_type(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(reply.text(), expected, "{path} {body}");
    }
    node.stop().await;
}

#[actix_rt::test]
async fn show_reports_model_info_and_capabilities() {
    let node = Node::with_models(&["llama3.2", "nomic-embed-text"]);
    let show = node
        .post("/api/show", r#"{"model":"llama3.2"}"#)
        .await
        .json();
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    assert_eq!(show["model_info"]["llama.embedding_length"], 8);
    assert_eq!(
        show["capabilities"],
        serde_json::json!(["completion", "tools"])
    );
    assert_eq!(show["details"]["quantization_level"], "Q4_K_M");

    // ollama-js sends the legacy `name`.
    let embedder = node
        .post("/api/show", r#"{"name":"nomic-embed-text"}"#)
        .await
        .json();
    assert_eq!(embedder["capabilities"], serde_json::json!(["embedding"]));
    assert!(embedder.get("template").is_none());
    node.stop().await;
}

#[actix_rt::test]
async fn chat_with_tools_answers_with_a_tool_call() {
    let node = Node::start(SimConfig::default());
    let body = r#"{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"what is the weather in tokyo?"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather in a given city","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string","description":"The city to get the weather for"}}}}}]}"#;
    let reply = node.post("/api/chat", body).await;
    let text = reply.text();
    assert!(
        text.contains(r#""message":{"role":"assistant","content":"","tool_calls":[{"id":"call_"#)
    );
    let call = &reply.json()["message"]["tool_calls"][0];
    assert_eq!(call["id"].as_str().map(str::len), Some(13));
    assert_eq!(call["function"]["index"], 0);
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(call["function"]["arguments"]["city"].is_string());

    // An empty `tools` array, as ollama-python always sends, means plain text.
    let plain = r#"{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"hi"}],"tools":[]}"#;
    let reply = node.post("/api/chat", plain).await.json();
    assert!(reply["message"].get("tool_calls").is_none());
    assert!(reply["message"]["content"]
        .as_str()
        .is_some_and(|text| !text.is_empty()));
    node.stop().await;
}

#[actix_rt::test]
async fn embed_returns_unit_vectors_deterministically() {
    let node = Node::with_models(&["all-minilm"]);
    let reply = node
        .post(
            "/api/embed",
            r#"{"model":"all-minilm","input":["Why is the sky blue?","Why is grass green?"]}"#,
        )
        .await;
    assert_eq!(
        reply.content_type(),
        Some("application/json; charset=utf-8")
    );
    assert!(reply
        .text()
        .starts_with(r#"{"model":"all-minilm","embeddings":[["#));
    let body = reply.json();
    let vectors = body["embeddings"].as_array().expect("embeddings");
    assert_eq!(vectors.len(), 2);
    for vector in vectors {
        assert_eq!(vector.as_array().map(Vec::len), Some(8));
        assert!((norm(vector) - 1.0).abs() < 1e-5);
    }
    assert_ne!(vectors[0], vectors[1]);
    assert!(body["prompt_eval_count"]
        .as_u64()
        .is_some_and(|count| count > 0));

    // The same text on another node embeds to the same vector.
    let other = Node::with_models(&["all-minilm"]);
    let single = other
        .post(
            "/api/embed",
            r#"{"model":"all-minilm","input":"Why is the sky blue?","dimensions":4}"#,
        )
        .await
        .json();
    let short = &single["embeddings"][0];
    assert_eq!(short.as_array().map(Vec::len), Some(4));
    assert!((norm(short) - 1.0).abs() < 1e-5);
    let again = other
        .post(
            "/api/embed",
            r#"{"model":"all-minilm","input":"Why is the sky blue?"}"#,
        )
        .await
        .json();
    assert_eq!(again["embeddings"][0], vectors[0]);
    other.stop().await;
    node.stop().await;
}

#[actix_rt::test]
async fn embed_edge_cases_and_legacy_embeddings() {
    let node = Node::with_models(&["all-minilm"]);
    let empty = node
        .post("/api/embed", r#"{"model":"all-minilm","input":""}"#)
        .await;
    assert_eq!(empty.text(), r#"{"model":"all-minilm","embeddings":[]}"#);

    let unknown = node
        .post("/api/embed", r#"{"model":"nope","input":"x"}"#)
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.text(),
        r#"{"error":"model \"nope\" not found, try pulling it first"}"#
    );

    let bad = node
        .post("/api/embed", r#"{"model":"all-minilm","input":["a",1]}"#)
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.text(), r#"{"error":"invalid input type"}"#);

    let legacy = node
        .post(
            "/api/embeddings",
            r#"{"model":"all-minilm","prompt":"Why is the sky blue?"}"#,
        )
        .await;
    assert!(legacy.text().starts_with(r#"{"embedding":["#));
    let vector = &legacy.json()["embedding"];
    assert_eq!(vector.as_array().map(Vec::len), Some(8));
    assert!(
        (norm(vector) - 1.0).abs() > 0.01,
        "legacy vectors are not normalised"
    );
    node.stop().await;
}

#[actix_rt::test]
async fn pull_delete_and_copy_manage_models() {
    let node = Node::start(SimConfig::default());

    let pull = node.post("/api/pull", r#"{"model":"mistral"}"#).await;
    assert_eq!(pull.content_type(), Some("application/x-ndjson"));
    let lines = pull.lines();
    assert_eq!(lines[0], serde_json::json!({"status":"pulling manifest"}));
    assert!(lines[1]["status"]
        .as_str()
        .is_some_and(|status| status.starts_with("pulling ")));
    assert!(
        lines[1].get("completed").is_none(),
        "no completed while it is 0"
    );
    assert_eq!(lines.last(), Some(&serde_json::json!({"status":"success"})));
    assert!(node
        .sim
        .model_names()
        .contains(&"mistral:latest".to_owned()));

    let quiet = node
        .post("/api/pull", r#"{"name":"phi3","stream":false}"#)
        .await;
    assert_eq!(quiet.content_type(), Some("application/json"));
    assert_eq!(quiet.text(), r#"{"status":"success"}"#);

    let copy = node
        .post(
            "/api/copy",
            r#"{"source":"llama3.2","destination":"llama3-backup"}"#,
        )
        .await;
    assert_eq!(copy.status, 200);
    assert_eq!(copy.content_type(), None);
    assert!(copy.body.is_empty());
    let missing = node
        .post("/api/copy", r#"{"source":"nope","destination":"x"}"#)
        .await;
    assert_eq!(missing.text(), r#"{"error":"model \"nope\" not found"}"#);

    let delete = node
        .send(
            "DELETE",
            "/api/delete",
            Some(r#"{"name":"llama3-backup"}"#),
            &[],
        )
        .await;
    assert_eq!(delete.status, 200);
    assert!(delete.body.is_empty());
    let again = node
        .send(
            "DELETE",
            "/api/delete",
            Some(r#"{"model":"llama3-backup"}"#),
            &[],
        )
        .await;
    assert_eq!(again.status, 404);
    assert_eq!(
        again.text(),
        r#"{"error":"model 'llama3-backup' not found"}"#
    );

    let names = node.sim.model_names();
    assert_eq!(names, ["llama3.2:latest", "mistral:latest", "phi3:latest"]);
    let tags: Value = node.get("/api/tags").await.json();
    assert_eq!(tags["models"].as_array().map(Vec::len), Some(3));
    node.stop().await;
}
