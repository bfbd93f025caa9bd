//! The live activity feed: one flat item per event, whether this process emitted it or
//! it was read from Redis, with a one-line summary for people.
//!
//! The observer turns its own [`Event`]s into [`FeedItem`]s for its subscribers (the
//! dashboard's server-sent events); events other processes published are parsed from
//! their Redis JSON by [`FeedItem::from_redis`], which `sollol events` uses too. A
//! [`FeedFilter`] selects items by node, model, type, application and least severity.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{epoch_seconds, Event, Severity};

/// Where a feed item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Emitted by this process.
    Local,
    /// Read from Redis, published by another process.
    Redis,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedItem {
    /// Epoch seconds.
    pub timestamp: f64,
    pub channel: String,
    pub event_type: String,
    pub severity: Severity,
    /// The node (`host:port`), worker (`worker:<id>`) or other subject of the event.
    pub node: String,
    pub model: Option<String>,
    pub app: Option<String>,
    pub pid: Option<u32>,
    pub summary: String,
    pub source: Source,
    pub details: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedParseError {
    #[error("payload is not json: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("payload is not a json object")]
    NotAnObject,
}

impl FeedItem {
    pub fn from_event(event: &Event) -> Self {
        let details = event.details();
        let event_type = event.event_type().as_str().to_string();
        let summary = summarize(&event_type, &details);
        Self {
            timestamp: event.timestamp,
            channel: event.channel().to_string(),
            event_type,
            severity: event.severity,
            node: event.backend.clone(),
            model: event.kind.model().map(String::from),
            app: event.origin.as_ref().map(|origin| origin.app.clone()),
            pid: event.origin.as_ref().map(|origin| origin.pid),
            summary,
            source: Source::Local,
            details,
        }
    }

    /// Reads a message published on `channel`: SOLLOL's activity shape
    /// (`timestamp, backend, event_type, severity, details`), its routing shape
    /// (`event_type, node_url, model, reason, ...`), or anything else as a plain message.
    pub fn from_redis(channel: &str, payload: &str) -> Result<Self, FeedParseError> {
        let value: Value = serde_json::from_str(payload)?;
        let Value::Object(object) = value else {
            return Err(FeedParseError::NotAnObject);
        };
        let text = |key: &str| object.get(key).and_then(Value::as_str).map(String::from);
        let severity = text("severity")
            .or_else(|| text("level"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(Severity::Info);
        // Routing events carry an ISO timestamp; the moment they are read is close enough.
        let timestamp = object
            .get("timestamp")
            .and_then(Value::as_f64)
            .unwrap_or_else(epoch_seconds);

        let (event_type, node, details) = match object.get("details") {
            Some(Value::Object(details)) => (
                text("event_type").unwrap_or_else(|| "event".into()),
                text("backend").unwrap_or_default(),
                details.clone(),
            ),
            _ if object.contains_key("node_url") => {
                let mut details = object.clone();
                details.remove("timestamp");
                (
                    text("event_type").unwrap_or_else(|| "routing".into()),
                    text("node_url").unwrap_or_default(),
                    details,
                )
            }
            _ => (
                text("event_type").unwrap_or_else(|| "message".into()),
                text("backend").or_else(|| text("node")).unwrap_or_default(),
                object.clone(),
            ),
        };
        let routing_severity = match event_type.as_str() {
            "FALLBACK_TRIGGERED" => Severity::Warning,
            _ => severity,
        };
        let detail_text = |key: &str| details.get(key).and_then(Value::as_str).map(String::from);
        Ok(Self {
            timestamp,
            channel: channel.to_string(),
            summary: summarize(&event_type, &details),
            severity: routing_severity,
            model: detail_text("model"),
            app: detail_text("app"),
            pid: details
                .get("pid")
                .and_then(Value::as_u64)
                .map(|pid| pid as u32),
            event_type,
            node,
            source: Source::Redis,
            details,
        })
    }

    /// `12:34:56.789 warning ollama_response 127.0.0.1:11434 response chat llama3.2 ...`
    pub fn line(&self) -> String {
        let clock = crate::clock::naive_utc_micros(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(self.timestamp.max(0.0)),
        );
        let time = clock.get(11..23).unwrap_or(&clock);
        let mut line = format!(
            "{time} {:<8} {:<20} {:<21} {}",
            self.severity.as_str(),
            self.event_type,
            self.node,
            self.summary
        );
        if let (Some(app), Some(pid)) = (&self.app, self.pid) {
            line.push_str(&format!(" [{app} {pid}]"));
        }
        line
    }
}

/// A one-line description of an event from its type and details.
fn summarize(event_type: &str, details: &Map<String, Value>) -> String {
    let field = |key: &str| match details.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let model = field("model");
    match event_type {
        "ollama_request" => {
            let stream = if details.get("streaming") == Some(&Value::Bool(true)) {
                " (stream)"
            } else {
                ""
            };
            format!("request {} {model}{stream}", field("operation"))
        }
        "ollama_response" => format!(
            "response {} {model} {} in {} ms",
            field("operation"),
            field("status_code"),
            field("latency_ms")
        ),
        "ollama_error" => format!(
            "error {model}: {} after {} ms",
            field("error"),
            field("latency_ms")
        ),
        "node_status_change" => format!(
            "node {} -> {}: {}",
            field("old_status"),
            field("new_status"),
            field("reason")
        ),
        "breaker_state_change" => format!(
            "breaker {} -> {}: {}",
            field("old_state"),
            field("new_state"),
            field("reason")
        ),
        "request_queued" => format!("queued {model} (depth {})", field("queue_depth")),
        "request_admitted" => format!(
            "admitted {model} after {} ms (depth {})",
            field("waited_ms"),
            field("queue_depth")
        ),
        "request_rejected" => format!("refused {model}: {}", field("reason")),
        worker if worker.starts_with("worker_") => {
            let mut text = format!("worker {} {}", field("worker_id"), &worker[7..]);
            for key in ["worker_pid", "reason", "delay_ms", "error"] {
                let value = field(key);
                if !value.is_empty() {
                    text.push_str(&format!(" {key}={value}"));
                }
            }
            text
        }
        _ if details.contains_key("node_url") => {
            format!("{model} -> {}: {}", field("node_url"), field("reason"))
        }
        _ => {
            let message = field("message");
            if message.is_empty() {
                Value::Object(details.clone()).to_string()
            } else {
                message
            }
        }
    }
}

/// Which feed items a reader wants; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedFilter {
    /// Part of the node key (`11434`, `127.0.0.1:11434`).
    pub node: Option<String>,
    pub model: Option<String>,
    pub event_type: Option<String>,
    pub app: Option<String>,
    pub min_severity: Option<Severity>,
}

impl FeedFilter {
    pub fn matches(&self, item: &FeedItem) -> bool {
        let contains = |wanted: &Option<String>, actual: Option<&str>| match wanted {
            None => true,
            Some(wanted) => actual.is_some_and(|actual| {
                actual
                    .to_ascii_lowercase()
                    .contains(&wanted.to_ascii_lowercase())
            }),
        };
        contains(&self.node, Some(&item.node))
            && contains(&self.model, item.model.as_deref())
            && contains(&self.app, item.app.as_deref())
            && self
                .event_type
                .as_ref()
                .is_none_or(|wanted| wanted.eq_ignore_ascii_case(&item.event_type))
            && self.min_severity.is_none_or(|least| item.severity >= least)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::Origin;

    #[test]
    fn local_and_redis_items_of_one_event_agree() {
        let mut event = Event::ollama_response(
            "127.0.0.1:1",
            "llama3.2",
            "chat",
            Duration::from_millis(12),
            200,
            false,
        );
        event.origin = Some(Origin {
            app: "a".into(),
            pid: 7,
        });
        let local = FeedItem::from_event(&event);
        let remote = FeedItem::from_redis(event.channel(), &event.to_json()).expect("parses");
        assert_eq!(local.summary, "response chat llama3.2 200 in 12.0 ms");
        assert_eq!(remote.summary, local.summary);
        assert_eq!(remote.app.as_deref(), Some("a"));
        assert_eq!(remote.pid, Some(7));
        assert_eq!(remote.source, Source::Redis);
        assert_eq!(remote.model, local.model);
    }

    #[test]
    fn routing_events_and_unknown_shapes_are_read_too() {
        let routing = r#"{"timestamp":"2026-01-01T00:00:00.000000","pid":3,"event_type":"FALLBACK_TRIGGERED","model":"m","backend":"ollama","node_url":"h:1","reason":"refused"}"#;
        let item = FeedItem::from_redis("sollol:routing_events", routing).expect("parses");
        assert_eq!(item.node, "h:1");
        assert_eq!(item.severity, Severity::Warning);
        assert_eq!(item.summary, "m -> h:1: refused");
        let log = FeedItem::from_redis(
            "sollol:dashboard:logs",
            r#"{"level":"ERROR","message":"boom"}"#,
        )
        .expect("parses");
        assert_eq!(log.severity, Severity::Error);
        assert_eq!(log.summary, "boom");
        assert!(FeedItem::from_redis("c", "not json").is_err());
    }

    #[test]
    fn filters_match_by_node_model_and_least_severity() {
        let item = FeedItem::from_event(&Event::ollama_error(
            "127.0.0.1:11434",
            "llama3.2",
            "HTTP 500",
            Duration::ZERO,
        ));
        let filter = |node: Option<&str>, model: Option<&str>, severity: Option<Severity>| {
            FeedFilter {
                node: node.map(String::from),
                model: model.map(String::from),
                min_severity: severity,
                ..FeedFilter::default()
            }
            .matches(&item)
        };
        assert!(filter(
            Some("11434"),
            Some("LLAMA3.2"),
            Some(Severity::Error)
        ));
        assert!(!filter(Some("11435"), None, None));
        assert!(!filter(None, Some("qwen"), None));
        assert!(!filter(None, None, Some(Severity::Critical)));
    }
}
