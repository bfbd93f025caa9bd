//! Events as the observer keeps them and as SOLLOL dashboards read them from Redis.
//!
//! The JSON form is SOLLOL's five-field shape:
//! `{"timestamp": <epoch seconds>, "backend": "host:port", "event_type": "...",
//! "severity": "info|warning|error|critical", "details": {...}}`. The observer adds
//! `details.app` and `details.pid` for the process that emitted the event.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Map, Value};

/// Channel SOLLOL dashboards subscribe to for Ollama traffic and node changes.
pub const ACTIVITY_CHANNEL: &str = "sollol:dashboard:ollama:activity";
/// Channel for worker-process lifecycle events.
pub const WORKER_CHANNEL: &str = "sollol:dashboard:workers";

/// A response slower than this is reported as a warning (SOLLOL's rule).
pub const SLOW_RESPONSE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    OllamaRequest,
    OllamaResponse,
    OllamaError,
    NodeStatusChange,
    WorkerSpawned,
    WorkerReady,
    WorkerExited,
    WorkerRestarting,
    WorkerFailed,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OllamaRequest => "ollama_request",
            Self::OllamaResponse => "ollama_response",
            Self::OllamaError => "ollama_error",
            Self::NodeStatusChange => "node_status_change",
            Self::WorkerSpawned => "worker_spawned",
            Self::WorkerReady => "worker_ready",
            Self::WorkerExited => "worker_exited",
            Self::WorkerRestarting => "worker_restarting",
            Self::WorkerFailed => "worker_failed",
        }
    }

    /// The Redis channel the event is published on.
    pub fn channel(self) -> &'static str {
        match self {
            Self::WorkerSpawned
            | Self::WorkerReady
            | Self::WorkerExited
            | Self::WorkerRestarting
            | Self::WorkerFailed => WORKER_CHANNEL,
            _ => ACTIVITY_CHANNEL,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub timestamp: f64,
    pub backend: String,
    pub event_type: EventType,
    pub severity: Severity,
    pub details: Map<String, Value>,
}

impl Event {
    pub fn new(event_type: EventType, severity: Severity, backend: impl Into<String>) -> Self {
        Self {
            timestamp: epoch_seconds(),
            backend: backend.into(),
            event_type,
            severity,
            details: Map::new(),
        }
    }

    /// Adds one detail field.
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    pub fn ollama_request(backend: &str, model: &str, operation: &str, streaming: bool) -> Self {
        let event = Self::new(EventType::OllamaRequest, Severity::Info, backend)
            .detail("model", model)
            .detail("operation", operation)
            .detail("priority", 5);
        if streaming {
            event.detail("streaming", true)
        } else {
            event
        }
    }

    pub fn ollama_response(
        backend: &str,
        model: &str,
        operation: &str,
        latency: Duration,
        status_code: u16,
        streaming: bool,
    ) -> Self {
        let severity = if latency > SLOW_RESPONSE {
            Severity::Warning
        } else {
            Severity::Info
        };
        let event = Self::new(EventType::OllamaResponse, severity, backend)
            .detail("model", model)
            .detail("latency_ms", millis(latency))
            .detail("status_code", status_code)
            .detail("operation", operation);
        if streaming {
            event.detail("streaming", true)
        } else {
            event
        }
    }

    pub fn ollama_error(backend: &str, model: &str, error: &str, latency: Duration) -> Self {
        Self::new(EventType::OllamaError, Severity::Error, backend)
            .detail("model", model)
            .detail("error", error)
            .detail("latency_ms", millis(latency))
    }

    pub fn node_status_change(backend: &str, from: &str, to: &str, reason: &str) -> Self {
        let severity = if to == "healthy" {
            Severity::Info
        } else {
            Severity::Warning
        };
        Self::new(EventType::NodeStatusChange, severity, backend)
            .detail("old_status", from)
            .detail("new_status", to)
            .detail("reason", reason)
    }

    /// The JSON text published to Redis.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| {
            json!({"event_type": self.event_type.as_str(), "error": err.to_string()}).to_string()
        })
    }
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

pub fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_event_has_sollol_shape() {
        let event = Event::ollama_request("127.0.0.1:11434", "llama3.2", "chat", false);
        let text = event.to_json();
        let value: Value = serde_json::from_str(&text).expect("valid json");
        let positions: Vec<usize> = ["timestamp", "backend", "event_type", "severity", "details"]
            .iter()
            .map(|key| text.find(&format!("\"{key}\":")).expect("key present"))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "key order: {text}"
        );
        assert_eq!(value["event_type"], "ollama_request");
        assert_eq!(value["severity"], "info");
        assert_eq!(value["details"]["operation"], "chat");
        assert_eq!(value["details"]["priority"], 5);
        assert!(value["details"].get("streaming").is_none());
    }

    #[test]
    fn slow_response_is_a_warning_and_errors_are_errors() {
        let slow = Event::ollama_response("n", "m", "chat", Duration::from_secs(11), 200, true);
        assert_eq!(slow.severity, Severity::Warning);
        assert_eq!(slow.details["streaming"], true);
        let fast = Event::ollama_response("n", "m", "chat", Duration::from_millis(5), 200, false);
        assert_eq!(fast.severity, Severity::Info);
        assert_eq!(fast.details["latency_ms"], 5.0);
        let error = Event::ollama_error("n", "m", "HTTP 500", Duration::ZERO);
        assert_eq!(error.severity, Severity::Error);
        assert!(error.details.get("operation").is_none());
    }
}
