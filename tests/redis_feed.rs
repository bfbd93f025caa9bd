//! What sollol writes to Redis, read back from a real Redis: the exact JSON of each
//! channel, stream and key; metadata and registrations that stay fresh while idle and
//! expire after a kill; the backlog flushed after Redis restarts, with drops counted;
//! and no secret in any byte written or logged.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use common::redis_support::*;
use common::*;
use redis::Commands;
use serde_json::Value;

const ACTIVITY: &str = "sollol:dashboard:ollama:activity";
const WORKERS: &str = "sollol:dashboard:workers";

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn sorted(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

const CHAT: &str =
    r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false}"#;

#[actix_rt::test]
async fn channels_and_the_activity_stream_carry_sollols_shapes() {
    let node = sim_node("llama3.2", &[]);
    let breaks = sim_node("phi3", &["--drop-after", "1"]);
    let app = format!("shape-test-{}", std::process::id());
    let received = subscribe(
        SHARED_REDIS,
        &["sollol:dashboard:*"],
        Duration::from_secs(60),
    );
    let gw = gateway(
        &[&node, &breaks],
        &[
            "--workers",
            "1",
            "--redis-url",
            SHARED_REDIS,
            "--app-name",
            &app,
        ],
        &[("SOLLOL_OBSERVER_SAMPLING", "false")],
    );
    eventually(Duration::from_secs(20), "a ready worker", || async {
        let body = get_json(&format!("{}/sollol/workers", gw.url)).await;
        (body["workers"][0]["state"] == "ready").then_some(())
    })
    .await;
    assert_eq!(
        post_status(&format!("{}/api/chat", gw.url), CHAT).await,
        200
    );
    post_status(
        &format!("{}/api/generate", gw.url),
        r#"{"model":"phi3","prompt":"x","stream":true}"#,
    )
    .await;

    // Each (channel, type) with the fields of its `details` besides `app` and `pid`.
    let shapes: [(&str, &str, &[&str]); 6] = [
        (
            ACTIVITY,
            "node_status_change",
            &["old_status", "new_status", "reason"][..],
        ),
        (
            WORKERS,
            "worker_spawned",
            &["worker_id", "restarts", "worker_pid"][..],
        ),
        (
            WORKERS,
            "worker_ready",
            &["worker_id", "restarts", "worker_pid"][..],
        ),
        (
            ACTIVITY,
            "ollama_request",
            &["model", "operation", "priority"][..],
        ),
        (
            ACTIVITY,
            "ollama_response",
            &["model", "latency_ms", "status_code", "operation"][..],
        ),
        (
            ACTIVITY,
            "ollama_error",
            &["model", "error", "latency_ms"][..],
        ),
    ];
    let mut events: Vec<(String, Value)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && !shapes.iter().all(|(c, t, _)| {
            events
                .iter()
                .any(|(ch, e)| ch == c && e["event_type"] == *t)
        })
    {
        let ours = |_: &str, event: &Value| event["details"]["app"] == app.as_str();
        events.extend(collect(&received, Duration::from_millis(200), 1, ours));
    }
    let find = |channel: &str, event_type: &str| -> Value {
        events
            .iter()
            .find(|(c, e)| c == channel && e["event_type"] == event_type)
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| panic!("no {event_type} on {channel} in {events:?}"))
    };
    let gateway_pid = u64::from(gw.pid());
    for (channel, event_type, details) in shapes {
        let event = find(channel, event_type);
        assert_eq!(
            sorted(&keys(&event)),
            sorted(&["timestamp", "backend", "event_type", "severity", "details"]),
            "{event}"
        );
        assert!(event["timestamp"].is_f64(), "{event}");
        let mut expected = details.to_vec();
        expected.extend(["app", "pid"]);
        if event["details"]["streaming"] == true {
            expected.push("streaming");
        }
        assert_eq!(
            sorted(&keys(&event["details"])),
            sorted(&expected),
            "{event_type}: {event}"
        );
        if channel == ACTIVITY && event_type != "node_status_change" {
            assert_eq!(event["details"]["pid"], gateway_pid);
        }
    }
    let response = find(ACTIVITY, "ollama_response");
    assert_eq!(response["severity"], "info");
    assert_eq!(response["backend"], node.key());
    assert_eq!(response["details"]["operation"], "chat");
    assert_eq!(response["details"]["status_code"], 200);
    assert_eq!(response["details"]["priority"], Value::Null);
    let error = find(ACTIVITY, "ollama_error");
    assert_eq!(error["severity"], "error");
    assert_eq!(error["backend"], breaks.key());

    // The same events, in the same JSON, are kept in the activity stream.
    let mut connection = connection(SHARED_REDIS);
    let entries: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg("sollol:dashboard:activity_stream")
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(500)
        .query(&mut connection)
        .expect("xrevrange");
    let stored = entries
        .ids
        .iter()
        .filter_map(|entry| entry.get::<String>("event"))
        .filter_map(|text| serde_json::from_str::<Value>(&text).ok())
        .find(|event| {
            event["details"]["app"] == app.as_str() && event["event_type"] == "ollama_response"
        })
        .expect("the response in the activity stream");
    assert_eq!(stored, response);
}

#[actix_rt::test]
async fn metadata_and_registrations_stay_fresh_while_idle_and_go_away() {
    let redis = RedisServer::start(&[]);
    let url = redis.url(None);
    let node = sim_node("llama3.2", &[]);
    let env = [("SOLLOL_METADATA_INTERVAL_MS", "300")];
    let first = format!("meta-one-{}", std::process::id());
    let second = format!("meta-two-{}", std::process::id());
    let mut one = gateway(
        &[&node],
        &["--workers", "0", "--redis-url", &url, "--app-name", &first],
        &env,
    );
    let mut two = gateway(
        &[&node],
        &["--workers", "0", "--redis-url", &url, "--app-name", &second],
        &env,
    );
    assert_eq!(
        post_status(&format!("{}/api/chat", one.url), CHAT).await,
        200
    );

    let mut connection = connection(&url);
    let metadata = |connection: &mut redis::Connection| -> Option<Value> {
        let text: Option<String> = connection.get("sollol:router:metadata").ok()?;
        serde_json::from_str(&text?).ok()
    };
    let listed = |document: &Value, name: &str| {
        document["applications"]
            .as_array()
            .is_some_and(|apps| apps.iter().any(|app| app["name"] == name))
    };
    let document = eventually(
        Duration::from_secs(10),
        "metadata listing both applications",
        || {
            let found =
                metadata(&mut connection).filter(|d| listed(d, &first) && listed(d, &second));
            async move { found }
        },
    )
    .await;

    // SOLLOL's shape, with p50/p95/p99, success rate and per-node statistics.
    assert_eq!(
        sorted(&keys(&document)),
        sorted(&[
            "source",
            "app_name",
            "metrics",
            "nodes",
            "applications",
            "timestamp"
        ])
    );
    assert_eq!(
        sorted(&keys(&document["metrics"]["analytics"])),
        sorted(&[
            "p50_latency_ms",
            "p95_latency_ms",
            "p99_latency_ms",
            "success_rate",
            "avg_duration_ms",
            "total_requests",
            "successful_requests"
        ])
    );
    let node_entry = &document["nodes"][0];
    for key in [
        "url",
        "host",
        "available",
        "latency_ms",
        "success_rate",
        "total_requests",
        "failed_requests",
        "gpu_free_mem",
        "active_requests",
        "priority",
    ] {
        assert!(node_entry.get(key).is_some(), "{key} in {node_entry}");
    }
    assert_eq!(node_entry["host"], node.key());
    for key in ["app_id", "name", "version", "last_heartbeat"] {
        assert!(document["applications"][0].get(key).is_some(), "{key}");
    }

    // Refreshed while idle, always with a TTL of six intervals.
    let ttl: i64 = redis::cmd("PTTL")
        .arg("sollol:router:metadata")
        .query(&mut connection)
        .expect("pttl");
    assert!(ttl > 0 && ttl <= 2_000, "ttl {ttl} ms");
    let before = document["timestamp"].as_f64().expect("timestamp");
    let idle_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < idle_until {
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let later = metadata(&mut connection).expect("still there while idle");
    assert!(later["timestamp"].as_f64().expect("timestamp") > before + 0.5);

    // The applications, their keys and the index that finds them without KEYS.
    let ids: Vec<String> = connection
        .zrange("sollol:applications", 0, -1)
        .expect("zrange");
    let id_of = |name: &str| {
        document["applications"]
            .as_array()
            .expect("apps")
            .iter()
            .find(|app| app["name"] == name)
            .and_then(|app| app["app_id"].as_str())
            .expect("app id")
            .to_string()
    };
    let (first_id, second_id) = (id_of(&first), id_of(&second));
    assert!(
        ids.contains(&first_id) && ids.contains(&second_id),
        "{ids:?}"
    );
    let registration: String = connection
        .get(format!("sollol:application:{first_id}"))
        .expect("registration");
    let registration: Value = serde_json::from_str(&registration).expect("json");
    assert_eq!(registration["pid"], one.pid());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("sollol:application:{first_id}"))
        .query(&mut connection)
        .expect("pttl");
    assert!(ttl > 0 && ttl <= 2_000, "ttl {ttl} ms");

    // Killed without a goodbye: the heartbeat expires and the others stop listing it.
    one.kill();
    eventually(
        Duration::from_secs(10),
        "the killed application to expire",
        || {
            let exists: bool = connection
                .exists(format!("sollol:application:{first_id}"))
                .expect("exists");
            let document = metadata(&mut connection);
            let gone =
                !exists && document.is_some_and(|d| listed(&d, &second) && !listed(&d, &first));
            async move { gone.then_some(()) }
        },
    )
    .await;

    // Stopped gracefully: unregistered at once, long before the TTL.
    let stopped = Instant::now();
    stop_gracefully(&mut two).await;
    let exists: bool = connection
        .exists(format!("sollol:application:{second_id}"))
        .expect("exists");
    assert!(!exists, "unregistered on shutdown");
    let ids: Vec<String> = connection
        .zrange("sollol:applications", 0, -1)
        .expect("zrange");
    assert!(!ids.contains(&second_id), "{ids:?}");
    assert!(stopped.elapsed() < Duration::from_secs(5));
}

#[actix_rt::test]
async fn after_redis_restarts_the_backlog_is_flushed_and_drops_are_counted() {
    let mut redis = RedisServer::start(&[]);
    let url = redis.url(None);
    let node = sim_node("llama3.2", &[]);
    let app = format!("restart-test-{}", std::process::id());
    let gw = gateway(
        &[&node],
        &["--workers", "0", "--redis-url", &url, "--app-name", &app],
        &[
            ("SOLLOL_REDIS_MAX_BACKLOG", "20"),
            ("SOLLOL_METADATA_INTERVAL_MS", "60000"),
        ],
    );
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    };
    let scrape = || async {
        client()
            .get(format!("{}/metrics", gw.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    eventually(Duration::from_secs(10), "the first connection", || async {
        (metric(&scrape().await, "sollol_redis_connected") == 1.0).then_some(())
    })
    .await;

    redis.stop();
    for _ in 0..30 {
        assert_eq!(
            post_status(&format!("{}/api/chat", gw.url), CHAT).await,
            200,
            "requests go on without redis"
        );
    }
    let text = eventually(
        Duration::from_secs(10),
        "the publisher to notice",
        || async {
            let text = scrape().await;
            (metric(&text, "sollol_redis_connected") == 0.0
                && metric(&text, "sollol_redis_backlog") == 20.0)
                .then_some(text)
        },
    )
    .await;
    let dropped = metric(&text, r#"sollol_events_dropped_total{reason="backlog"}"#);
    assert!(
        dropped > 0.0,
        "60 events for a backlog of 20: {dropped} dropped\n{text}"
    );
    // The publisher may still be taking the last events it was handed; once it is done,
    // the stats and the metrics give the same count.
    eventually(
        Duration::from_secs(5),
        "the stats and the metrics to agree on drops",
        || async {
            let stats = get_json(&format!("{}/sollol/stats", gw.url)).await;
            let counted = metric(
                &scrape().await,
                r#"sollol_events_dropped_total{reason="backlog"}"#,
            );
            (stats["redis"]["dropped_by_backlog"].as_f64() == Some(counted)).then_some(())
        },
    )
    .await;

    // The last request's events were kept and arrive once Redis is back.
    redis.restart();
    eventually(
        Duration::from_secs(20),
        "the backlog to be flushed",
        || async {
            let text = scrape().await;
            (metric(&text, "sollol_redis_connected") == 1.0
                && metric(&text, "sollol_redis_backlog") == 0.0)
                .then_some(())
        },
    )
    .await;
    let mut connection = connection(&url);
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("sollol:dashboard:activity_stream")
        .arg("-")
        .arg("+")
        .query(&mut connection)
        .expect("xrange");
    let ours: Vec<Value> = entries
        .ids
        .iter()
        .filter_map(|entry| entry.get::<String>("event"))
        .filter_map(|text| serde_json::from_str::<Value>(&text).ok())
        .filter(|event| event["details"]["app"] == app.as_str())
        .collect();
    assert!(!ours.is_empty() && ours.len() <= 20, "{} kept", ours.len());
    let last = ours.last().expect("an event");
    assert_eq!(
        last["event_type"], "ollama_response",
        "the newest survive: {last}"
    );
}

#[actix_rt::test]
async fn no_secret_reaches_redis_logs_or_pages() {
    let secret = format!("s3cret-{}-pw", std::process::id());
    let token = format!("dash-{}-token", std::process::id());
    let redis = RedisServer::start(&["--requirepass", &secret]);
    let url = redis.url(Some(&secret));

    // Everything written to this Redis, as MONITOR shows it (commands and arguments).
    let (lines, monitored) = std::sync::mpsc::channel::<String>();
    let mut monitor = std::net::TcpStream::connect(("127.0.0.1", redis.port)).expect("monitor");
    monitor
        .write_all(format!("AUTH {secret}\r\nMONITOR\r\n").as_bytes())
        .expect("monitor");
    let reader = monitor.try_clone().expect("clone");
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });

    let node = sim_node("llama3.2", &[]);
    let dead_dashboard = dead_address().replace("http://", &format!("http://user:{token}@"));
    let mut gw = gateway(
        &[&node],
        &[
            "--workers",
            "1",
            "--redis-url",
            &url,
            "--app-name",
            "secret-test",
        ],
        &[
            ("RUST_LOG", "debug"),
            ("SOLLOL_METADATA_INTERVAL_MS", "300"),
            ("SOLLOL_DASHBOARD_URL", &dead_dashboard),
            ("TEST_API_TOKEN", &token),
        ],
    );
    eventually(Duration::from_secs(20), "a ready worker", || async {
        let body = get_json(&format!("{}/sollol/workers", gw.url)).await;
        (body["workers"][0]["state"] == "ready").then_some(())
    })
    .await;
    assert_eq!(
        post_status(&format!("{}/api/chat", gw.url), CHAT).await,
        200
    );
    post_status(
        &format!("{}/api/chat", gw.url),
        r#"{"model":"nope","messages":[]}"#,
    )
    .await;

    let mut pages = String::new();
    for path in [
        "/metrics",
        "/sollol/health",
        "/sollol/stats",
        "/sollol/workers",
        "/sollol/nodes",
        "/sollol/metadata",
        "/sollol/dashboard",
    ] {
        let body = client()
            .get(format!("{}{path}", gw.url))
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("text");
        pages.push_str(&body);
    }
    let mut feed = client()
        .get(format!("{}/sollol/events", gw.url))
        .send()
        .await
        .expect("feed");
    if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(2), feed.chunk()).await {
        pages.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(feed);
    let mut written = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && !(written
            .iter()
            .any(|l: &String| l.contains("\"sollol:router:metadata\""))
            && written.iter().any(|l| l.contains("\"PUBLISH\"")))
    {
        if let Ok(line) = monitored.recv_timeout(Duration::from_millis(100)) {
            written.push(line);
        }
    }
    // A graceful stop logs and writes its goodbyes too.
    stop_gracefully(&mut gw).await;
    while let Ok(line) = monitored.recv_timeout(Duration::from_millis(300)) {
        written.push(line);
    }
    let written = written.join("\n");
    let logs = gw.logs();
    gw.kill();

    assert!(
        written.contains("\"PUBLISH\"") && written.contains("\"XADD\""),
        "monitor saw the writes"
    );
    assert!(
        logs.contains("redis://:***@127.0.0.1"),
        "the url is logged, redacted"
    );
    assert!(logs.contains("worker_log"), "worker logs are included");
    for (what, text) in [("redis", &written), ("logs", &logs), ("pages", &pages)] {
        assert!(
            !text.contains(&secret),
            "the redis password appears in the {what}"
        );
        assert!(
            !text.contains(&token),
            "the dashboard token appears in the {what}"
        );
    }
}

#[actix_rt::test]
async fn sollol_events_tails_the_feed_with_filters() {
    let node = sim_node("llama3.2", &[]);
    let breaks = sim_node("phi3", &["--drop-after", "1"]);
    let app = format!("tail-test-{}", std::process::id());
    let gw = gateway(
        &[&node, &breaks],
        &[
            "--workers",
            "0",
            "--redis-url",
            SHARED_REDIS,
            "--app-name",
            &app,
        ],
        &[],
    );
    let tail = |args: &[&str]| {
        let mut command = sollol_command();
        command.args([
            "events",
            "--redis-url",
            SHARED_REDIS,
            "--app",
            &app,
            "--duration",
            "30",
        ]);
        command.args(args);
        let mut child = command.spawn().expect("sollol events");
        let stderr = child.stderr.take().expect("stderr");
        let mut stderr = BufReader::new(stderr);
        let mut first = String::new();
        stderr.read_line(&mut first).expect("stderr line");
        assert!(first.starts_with("sollol events: subscribed to"), "{first}");
        child
    };
    let readable = tail(&["--type", "ollama_response", "--count", "2"]);
    let errors_as_json = tail(&["--json", "--severity", "error", "--count", "1"]);

    for _ in 0..2 {
        assert_eq!(
            post_status(&format!("{}/api/chat", gw.url), CHAT).await,
            200
        );
    }
    post_status(
        &format!("{}/api/generate", gw.url),
        r#"{"model":"phi3","prompt":"x","stream":true}"#,
    )
    .await;

    let output = readable.wait_with_output().expect("exits after 2 events");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        assert!(line.contains("ollama_response"), "{line}");
        assert!(line.contains(&node.key()), "{line}");
        assert!(line.contains("response chat llama3.2 200 in"), "{line}");
        assert!(line.contains(&format!("[{app} {}]", gw.pid())), "{line}");
    }
    let output = errors_as_json
        .wait_with_output()
        .expect("exits after 1 event");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let event: Value = serde_json::from_str(text.trim()).expect("one json event");
    assert_eq!(event["event_type"], "ollama_error");
    assert_eq!(event["backend"], breaks.key());

    // History from the activity stream, for events that happened before it started.
    let mut command = sollol_command();
    command.args([
        "events",
        "--redis-url",
        SHARED_REDIS,
        "--app",
        &app,
        "--history",
        "1000",
        "--type",
        "ollama_request",
        "--duration",
        "1",
    ]);
    let output = command.output().expect("sollol events --history");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 3, "{text}");

    // A wrong password is reported without the password.
    let mut command = sollol_command();
    command.args([
        "events",
        "--redis-url",
        "redis://:wrong-pw-xyz@127.0.0.1:1/0",
        "--duration",
        "1",
    ]);
    let output = command.output().expect("sollol events");
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("redis://:***@127.0.0.1:1/0"), "{error}");
    assert!(!error.contains("wrong-pw-xyz"), "{error}");
}
