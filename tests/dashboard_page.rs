//! The live page at `/sollol/dashboard`, loaded in headless Chromium as a person would
//! open it: nodes, workers and applications appear, events show up in the feed as
//! traffic happens (this process's own without Redis, other processes' through Redis),
//! and the feed filters by node. Screenshots go to `<target>/tmp/test-output/`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::browser::Browser;
use common::redis_support::SHARED_REDIS;
use common::*;

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("test-output")
        .join(name)
}

async fn chat(gateway: &str, model: &str) {
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"stream":false}}"#
    );
    let response = client()
        .post(format!("{gateway}/api/chat"))
        .body(body)
        .send()
        .await
        .expect("chat");
    assert_eq!(response.status(), 200);
}

/// Waits until the page's live feed is subscribed at the gateway.
async fn feed_open(gateway: &str) {
    eventually(
        Duration::from_secs(20),
        "the page to open its live feed",
        || async {
            let stats = get_json(&format!("{gateway}/sollol/stats")).await;
            (stats["observer"]["feed_subscribers"].as_u64()? >= 1).then_some(())
        },
    )
    .await;
}

#[actix_rt::test]
async fn the_page_shows_nodes_workers_and_live_events_without_redis() {
    let a = sim_node("llama3.2", &["--loaded", "llama3.2"]);
    let b = sim_node("llama3.2,qwen2.5", &[]);
    let app = format!("page-test-{}", std::process::id());
    let gw = gateway(&[&a, &b], &["--workers", "1", "--app-name", &app], &[]);

    let mut page = Browser::open(&format!("{}/sollol/dashboard", gw.url));
    let nodes = page.wait_for_text("nodes", Duration::from_secs(20), "both nodes", |text| {
        text.contains(&a.key()) && text.contains(&b.key()) && text.contains("healthy")
    });
    assert!(
        nodes.contains("llama3.2:latest"),
        "resident models: {nodes}"
    );
    page.wait_for_text(
        "workers",
        Duration::from_secs(20),
        "a ready worker",
        |text| text.contains("ready") && text.contains("SOLLOL_APP_NAME="),
    );
    let apps = page.text("apps");
    assert!(apps.contains(&app), "{apps}");
    assert!(page.text("redis").contains("not configured"));

    // Traffic after the page is open arrives through the live feed.
    feed_open(&gw.url).await;
    for _ in 0..4 {
        chat(&gw.url, "llama3.2").await;
    }
    let feed = page.wait_for_text("feed", Duration::from_secs(10), "live events", |text| {
        text.matches("response chat llama3.2 200").count() >= 4
    });
    assert!(feed.contains(&format!("[{app}")), "{feed}");
    page.wait_for_text(
        "total",
        Duration::from_secs(10),
        "the request count",
        |text| text.trim() == "4",
    );
    assert_ne!(page.text("p50"), "-");

    // Filtering by node keeps only that node's events.
    let only_a = format!(
        "(() => {{ const s = document.getElementById('f-node'); s.value = '{}'; \
         s.dispatchEvent(new Event('change')); return s.value; }})()",
        a.key()
    );
    assert_eq!(page.eval(&only_a), a.key().as_str());
    let filtered = page.wait_for_text("feed", Duration::from_secs(10), "node a's events", |text| {
        text.contains("response chat") && !text.contains(&b.key())
    });
    assert!(filtered.contains(&a.key()));
    page.screenshot(&screenshot_path("dashboard-without-redis.png"));
}

#[actix_rt::test]
async fn with_redis_the_page_shows_other_processes_events_and_applications() {
    let node = sim_node("llama3.2", &[]);
    let here = format!("page-here-{}", std::process::id());
    let there = format!("page-there-{}", std::process::id());
    let env = [("SOLLOL_METADATA_INTERVAL_MS", "500")];
    let gw = gateway(
        &[&node],
        &[
            "--workers",
            "1",
            "--redis-url",
            SHARED_REDIS,
            "--app-name",
            &here,
        ],
        &env,
    );
    let other = gateway(
        &[&node],
        &[
            "--workers",
            "0",
            "--redis-url",
            SHARED_REDIS,
            "--app-name",
            &there,
        ],
        &env,
    );

    let mut page = Browser::open(&format!("{}/sollol/dashboard", gw.url));
    page.wait_for_text(
        "apps",
        Duration::from_secs(20),
        "both applications",
        |text| text.contains(&here) && text.contains(&there),
    );
    page.wait_for_text(
        "redis",
        Duration::from_secs(10),
        "redis connected",
        |text| text.contains("redis connected"),
    );
    feed_open(&gw.url).await;

    // The other gateway's events reach this page through Redis; the feed's subscription
    // to Redis may take a moment, so traffic repeats until one shows.
    let mut seen = String::new();
    for _ in 0..40 {
        chat(&other.url, "llama3.2").await;
        seen = page.text("feed");
        if seen.contains(&format!("[{there}")) {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        seen.contains(&format!("[{there}")),
        "other process's events: {seen}"
    );
    // This gateway's own events show next to them.
    chat(&gw.url, "llama3.2").await;
    page.wait_for_text(
        "feed",
        Duration::from_secs(10),
        "this gateway's event",
        |text| text.contains(&format!("[{here}")),
    );
    page.screenshot(&screenshot_path("dashboard-with-redis.png"));
}
