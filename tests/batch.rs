//! Batch work through the real binary: asynchronous jobs with progress, streamed results
//! and cancellation; a synchronous batch that survives workers being killed at random;
//! and `sollol embed`, resumed after an interruption.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn post_json(url: &str, body: &Value) -> reqwest::Response {
    client()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {url}: {err}"))
}

async fn direct_embedding(node: &Running, text: &str) -> Value {
    let body: Value = post_json(
        &format!("{}/api/embed", node.url),
        &json!({ "model": "nomic-embed-text", "input": text }),
    )
    .await
    .json()
    .await
    .expect("json");
    body["embeddings"][0].clone()
}

async fn ready_workers(gateway: &str, expected: usize) -> Vec<u64> {
    eventually(Duration::from_secs(20), "workers to be ready", || async {
        let body = get_json(&format!("{gateway}/sollol/workers")).await;
        let workers = body["workers"].as_array()?.clone();
        let ready = workers.len() == expected && workers.iter().all(|w| w["state"] == "ready");
        ready.then(|| workers.iter().filter_map(|w| w["pid"].as_u64()).collect())
    })
    .await
}

#[actix_rt::test]
async fn an_asynchronous_job_reports_progress_and_streams_ordered_results() {
    let a = sim_node("nomic-embed-text", &[]);
    let b = sim_node("nomic-embed-text", &[]);
    let gw = gateway(
        &[&a, &b],
        &["--workers", "2"],
        &[("SOLLOL_BATCH_CHUNK_SIZE", "25")],
    );
    ready_workers(&gw.url, 2).await;
    let inputs: Vec<String> = (0..1000).map(|i| format!("passage {i}")).collect();
    let created = post_json(
        &format!("{}/sollol/batch/jobs", gw.url),
        &json!({ "model": "nomic-embed-text", "input": inputs }),
    )
    .await;
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["total"], 1000);

    let status = eventually(Duration::from_secs(30), "the job to complete", || async {
        let status = get_json(&format!("{}/sollol/batch/jobs/{id}", gw.url)).await;
        (status["state"] == "completed").then_some(status)
    })
    .await;
    assert_eq!(status["done"], 1000);
    assert_eq!(status["failed"], 0);

    let results = client()
        .get(format!("{}/sollol/batch/jobs/{id}/results", gw.url))
        .send()
        .await
        .expect("results");
    assert_eq!(results.headers()["content-type"], "application/x-ndjson");
    let text = results.text().await.expect("body");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1000);
    assert!(
        lines.iter().enumerate().all(|(i, l)| l["index"] == i),
        "in input order"
    );
    for i in [0usize, 499, 999] {
        assert_eq!(
            lines[i]["embedding"],
            direct_embedding(&a, &inputs[i]).await,
            "input {i}"
        );
    }
    let missing = client()
        .get(format!("{}/sollol/batch/jobs/nope", gw.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);
}

#[actix_rt::test]
async fn a_cancelled_job_stops_its_remaining_work() {
    let slow = sim_node("nomic-embed-text", &["--latency-ms", "100"]);
    let gw = gateway(
        &[&slow],
        &["--workers", "1"],
        &[("SOLLOL_BATCH_CHUNK_SIZE", "5")],
    );
    ready_workers(&gw.url, 1).await;
    let inputs: Vec<String> = (0..2000).map(|i| format!("slow {i}")).collect();
    let created: Value = post_json(
        &format!("{}/sollol/batch/jobs", gw.url),
        &json!({ "model": "nomic-embed-text", "input": inputs }),
    )
    .await
    .json()
    .await
    .expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let cancelled: Value = client()
        .delete(format!("{}/sollol/batch/jobs/{id}", gw.url))
        .send()
        .await
        .expect("DELETE")
        .json()
        .await
        .expect("json");
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let done_then = cancelled["done"].as_u64().expect("done");
    assert!(done_then < 2000);
    let asked_then = get_json(&format!("{}/sim/stats", slow.url)).await["requests"]
        ["POST /api/embed"]
        .as_u64()
        .unwrap_or(0);
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    let asked_later = get_json(&format!("{}/sim/stats", slow.url)).await["requests"]
        ["POST /api/embed"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        asked_later <= asked_then + 4,
        "no new chunks after the cancel ({asked_then} then {asked_later})"
    );
    let text = client()
        .get(format!("{}/sollol/batch/jobs/{id}/results", gw.url))
        .send()
        .await
        .expect("results")
        .text()
        .await
        .expect("body");
    assert_eq!(
        text.lines().count() as u64,
        done_then,
        "the stream ends with what was done"
    );
}

#[actix_rt::test]
async fn a_batch_completes_in_order_while_workers_are_killed_at_random() {
    let a = sim_node("nomic-embed-text", &["--latency-ms", "2"]);
    let b = sim_node("nomic-embed-text", &["--latency-ms", "2"]);
    let gw = gateway(
        &[&a, &b],
        &["--workers", "3"],
        &[("SOLLOL_BATCH_CHUNK_SIZE", "10")],
    );
    ready_workers(&gw.url, 3).await;
    let inputs: Vec<String> = (0..3000).map(|i| format!("document {i}")).collect();
    let url = format!("{}/sollol/batch/embed", gw.url);
    let body = json!({ "model": "nomic-embed-text", "input": inputs });
    let batch = actix_rt::spawn(async move { post_json(&url, &body).await });

    let gateway_url = gw.url.clone();
    let mut killed = Vec::new();
    let started = Instant::now();
    while killed.len() < 4 && started.elapsed() < Duration::from_secs(20) && !batch.is_finished() {
        actix_rt::time::sleep(Duration::from_millis(150)).await;
        let workers = get_json(&format!("{gateway_url}/sollol/workers")).await;
        let pids: Vec<u64> = workers["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .filter(|w| w["state"] == "ready")
            .filter_map(|w| w["pid"].as_u64())
            .collect();
        if pids.is_empty() {
            continue;
        }
        let victim = pids[rand_index(pids.len(), killed.len())];
        unsafe {
            libc::kill(victim as i32, libc::SIGKILL);
        }
        killed.push(victim);
    }
    let response = batch.await.expect("task");
    assert_eq!(
        response.status(),
        200,
        "the batch survives {} killed workers",
        killed.len()
    );
    let body: Value = response.json().await.expect("json");
    let vectors = body["embeddings"].as_array().expect("embeddings");
    assert_eq!(vectors.len(), 3000);
    for i in [0usize, 1234, 2999] {
        assert_eq!(
            vectors[i],
            direct_embedding(&a, &inputs[i]).await,
            "input {i} in its place"
        );
    }
    assert!(!killed.is_empty(), "the test killed workers");
    let workers = ready_workers(&gw.url, 3).await;
    for pid in workers {
        let env = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
        assert!(
            String::from_utf8_lossy(&env).contains("SOLLOL_NODES="),
            "replacements carry the snapshot"
        );
    }
}

/// A spread of indexes without a random number generator.
fn rand_index(len: usize, round: usize) -> usize {
    (round * 7 + std::process::id() as usize) % len
}

#[actix_rt::test]
async fn sollol_embed_writes_every_input_and_resumes_after_an_interruption() {
    let a = sim_node("nomic-embed-text", &[]);
    let gw = gateway(&[&a], &["--workers", "0"], &[]);
    let dir = std::env::temp_dir().join(format!("sollol-embed-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let input = dir.join("texts.jsonl");
    let output = dir.join("vectors.jsonl");
    let _ = std::fs::remove_file(&output);
    let texts: Vec<String> = (0..300)
        .map(|i| {
            if i % 2 == 0 {
                format!("plain line {i}")
            } else {
                json!({ "text": format!("json line {i}") }).to_string()
            }
        })
        .collect();
    std::fs::write(&input, texts.join("\n") + "\n").expect("write input");

    let run = || {
        let mut command = sollol_command();
        command.args([
            "embed",
            "--model",
            "nomic-embed-text",
            "--gateway",
            &gw.url,
            "--batch-size",
            "64",
        ]);
        command
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output);
        command.output().expect("sollol embed runs")
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let complete = std::fs::read_to_string(&output).expect("output");
    assert_eq!(complete.lines().count(), 300);

    // An interruption: keep 100 lines and half of the next one.
    let mut lines: Vec<&str> = complete.lines().collect();
    let half = &lines[100][..lines[100].len() / 2];
    lines.truncate(100);
    std::fs::write(&output, lines.join("\n") + "\n" + half).expect("truncate");
    let second = run();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("resuming: 100 of 300"), "{stderr}");
    let resumed = std::fs::read_to_string(&output).expect("output");
    assert_eq!(
        resumed, complete,
        "the resumed file equals an uninterrupted run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_new_worker_environment_rolls_through_during_a_batch_without_a_failed_item() {
    let a = sim_node("nomic-embed-text", &["--latency-ms", "5"]);
    let gw = gateway(
        &[&a],
        &["--workers", "2"],
        &[("SOLLOL_BATCH_CHUNK_SIZE", "5")],
    );
    let before = ready_workers(&gw.url, 2).await;
    let inputs: Vec<String> = (0..2000).map(|i| format!("rolling {i}")).collect();
    let url = format!("{}/sollol/batch/embed", gw.url);
    let body = json!({ "model": "nomic-embed-text", "input": inputs });
    let batch = actix_rt::spawn(async move { post_json(&url, &body).await });
    actix_rt::time::sleep(Duration::from_millis(200)).await;

    let change = post_json(
        &format!("{}/sollol/workers/env", gw.url),
        &json!({ "set": { "SOLLOL_ROLLOUT": "blue", "DEPLOY_TOKEN": "s3cret" } }),
    )
    .await;
    assert_eq!(change.status(), 202);
    let change: Value = change.json().await.expect("json");
    let changes = change["changes"].as_str().expect("changes");
    assert!(changes.contains("+SOLLOL_ROLLOUT=blue"), "{changes}");
    assert!(
        !changes.contains("s3cret"),
        "secrets stay hidden: {changes}"
    );

    let response = batch.await.expect("task");
    assert_eq!(
        response.status(),
        200,
        "no item failed while the workers were replaced"
    );
    let vectors: Value = response.json().await.expect("json");
    assert_eq!(vectors["embeddings"].as_array().map(Vec::len), Some(2000));

    let workers = eventually(
        Duration::from_secs(20),
        "both workers on the new environment",
        || async {
            let body = get_json(&format!("{}/sollol/workers", gw.url)).await;
            let workers = body["workers"].as_array()?.clone();
            workers
                .iter()
                .all(|w| w["state"] == "ready" && w["env"]["SOLLOL_ROLLOUT"] == "blue")
                .then_some(workers)
        },
    )
    .await;
    for worker in &workers {
        let pid = worker["pid"].as_u64().expect("pid");
        assert!(!before.contains(&pid), "a new process");
        let env = String::from_utf8_lossy(
            &std::fs::read(format!("/proc/{pid}/environ")).expect("environ"),
        )
        .into_owned();
        assert!(env.contains("SOLLOL_ROLLOUT=blue") && env.contains("DEPLOY_TOKEN=s3cret"));
        assert_eq!(
            worker["restarts"], 0,
            "a planned replacement is not a crash"
        );
    }
    let refused = post_json(
        &format!("{}/sollol/workers/env", gw.url),
        &json!({ "set": { "A=B": "x" } }),
    )
    .await;
    assert_eq!(refused.status(), 400);
}
