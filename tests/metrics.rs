//! `/metrics` read as Prometheus reads it: the text is parsed with a Prometheus
//! text-format parser, and the values must match the traffic the test sent.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use prometheus_parse::{Scrape, Value};

/// One parsed scrape, looked up by metric name and labels.
struct Metrics(Scrape);

impl Metrics {
    async fn scrape(gateway: &str) -> Self {
        let response = client()
            .get(format!("{gateway}/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = response.text().await.expect("text");
        let lines = text.lines().map(|line| Ok(line.to_string()));
        Self(Scrape::parse(lines).expect("valid prometheus text format"))
    }

    /// The value of the sample `name` whose labels include all of `labels`; for a
    /// histogram, its count of observations.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let sample = self.0.samples.iter().find(|sample| {
            sample.metric == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })?;
        Some(match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
            Value::Summary(_) => panic!("{name} is not a summary"),
        })
    }

    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

#[actix_rt::test]
async fn metrics_match_the_traffic_sent() {
    let a = sim_node("llama3.2", &[]);
    let b = sim_node("llama3.2,qwen2.5", &[]);
    let breaks = sim_node("phi3", &["--drop-after", "1"]);
    let gw = gateway(
        &[&a, &b, &breaks],
        &["--workers", "1", "--strategy", "round_robin"],
        &[],
    );
    let ready = eventually(Duration::from_secs(20), "a ready worker", || async {
        let body = get_json(&format!("{}/sollol/workers", gw.url)).await;
        let worker = body["workers"][0].clone();
        (worker["state"] == "ready").then_some(worker)
    })
    .await;

    let chat = r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false}"#;
    for _ in 0..6 {
        assert_eq!(
            post_status(&format!("{}/api/chat", gw.url), chat).await,
            200
        );
    }
    let generate = r#"{"model":"qwen2.5","prompt":"why"}"#;
    for _ in 0..2 {
        assert_eq!(
            post_status(&format!("{}/api/generate", gw.url), generate).await,
            200
        );
    }
    let broken = r#"{"model":"phi3","prompt":"why","stream":true}"#;
    post_status(&format!("{}/api/generate", gw.url), broken).await;
    let unknown = r#"{"model":"mistral","messages":[]}"#;
    assert_eq!(
        post_status(&format!("{}/api/chat", gw.url), unknown).await,
        404
    );

    // A worker killed outright is restarted once.
    let victim = ready["pid"].as_u64().expect("pid");
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    let (na, nb, nc) = (a.key(), b.key(), breaks.key());
    let metrics = eventually(
        Duration::from_secs(20),
        "the restart to be counted",
        || async {
            let metrics = Metrics::scrape(&gw.url).await;
            let restarted = metrics.count("sollol_worker_restarts_total", &[("worker", "0")]);
            (restarted == 1.0).then_some(metrics)
        },
    )
    .await;

    let requests = |node: &str, model: &str, route: &str, status: &str, outcome: &str| {
        metrics.count(
            "sollol_requests_total",
            &[
                ("node", node),
                ("model", model),
                ("route", route),
                ("status", status),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(requests(&na, "llama3.2", "chat", "200", "ok"), 3.0);
    assert_eq!(requests(&nb, "llama3.2", "chat", "200", "ok"), 3.0);
    assert_eq!(requests(&nb, "qwen2.5", "generate", "200", "ok"), 2.0);
    assert_eq!(
        requests(&nc, "phi3", "generate", "200", "error"),
        1.0,
        "a stream cut by the node is an error with the status it started with"
    );

    for node in [&na, &nb] {
        let labels = [("node", node.as_str()), ("route", "chat")];
        assert_eq!(
            metrics.count("sollol_request_duration_seconds", &labels),
            3.0
        );
        assert_eq!(
            metrics.count("sollol_time_to_first_byte_seconds", &labels),
            3.0
        );
        assert_eq!(
            metrics.value("sollol_in_flight_requests", &[("node", node)]),
            Some(0.0)
        );
        assert_eq!(
            metrics.value("sollol_node_up", &[("node", node)]),
            Some(1.0)
        );
    }
    assert_eq!(
        metrics.count("sollol_gateway_overhead_seconds", &[("route", "chat")]),
        6.0
    );
    let responses = |route: &str, status: &str| {
        metrics.count(
            "sollol_http_responses_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(responses("/api/chat", "200"), 6.0);
    assert_eq!(
        responses("/api/chat", "404"),
        1.0,
        "refused before any node"
    );
    assert_eq!(responses("/api/generate", "200"), 3.0);

    let events = |event_type: &str, severity: &str| {
        metrics.count(
            "sollol_events_total",
            &[("event_type", event_type), ("severity", severity)],
        )
    };
    assert_eq!(events("ollama_request", "info"), 9.0);
    assert_eq!(events("ollama_response", "info"), 8.0);
    assert_eq!(events("ollama_error", "error"), 1.0);
    assert_eq!(events("worker_restarting", "warning"), 1.0);
    assert_eq!(
        metrics.count("sollol_events_dropped_total", &[("reason", "sampling")]),
        0.0
    );
    assert_eq!(metrics.value("sollol_queued_requests", &[]), Some(0.0));

    // Every metric has help text and a type, and no label holds free text.
    let names: HashMap<&str, usize> =
        metrics
            .0
            .samples
            .iter()
            .fold(HashMap::new(), |mut seen, sample| {
                *seen.entry(sample.metric.as_str()).or_default() += 1;
                seen
            });
    for name in names.keys() {
        let documented = ["", "_total", "_sum", "_count"].iter().any(|suffix| {
            let base = name.strip_suffix(suffix).unwrap_or(name);
            metrics.0.docs.contains_key(*name) || metrics.0.docs.contains_key(base)
        });
        assert!(documented, "{name} has no HELP");
        assert!(name.starts_with("sollol_"), "{name}");
    }
    for sample in &metrics.0.samples {
        for label in ["error", "message", "path"] {
            assert!(
                sample.labels.get(label).is_none(),
                "{} has a {label} label",
                sample.metric
            );
        }
    }
}
