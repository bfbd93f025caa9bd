//! The Redis form of an event: which channel and stream it goes to, and its JSON.
//!
//! Activity and worker events use SOLLOL's five-field shape, with the fields of `details`
//! as SOLLOL's dashboards read them (`model`, `operation`, `latency_ms`, `status_code`,
//! ...), plus `app` and `pid` of the emitting process. Routing decisions use SOLLOL's
//! routing-log shape ([`RoutingEvent::to_json`](crate::routing_event::RoutingEvent::to_json)).

use serde::Serialize;
use serde_json::{Map, Value};

use super::{millis, Event, EventKind, QueueChange, WorkerChange};
use crate::routing_event::{ROUTING_CHANNEL, ROUTING_STREAM};

/// Channel SOLLOL dashboards subscribe to for Ollama traffic and node changes.
pub const ACTIVITY_CHANNEL: &str = "sollol:dashboard:ollama:activity";
/// Channel for worker-process lifecycle events.
pub const WORKER_CHANNEL: &str = "sollol:dashboard:workers";
/// Stream keeping recent activity and worker events (field `event`), so a reader that
/// was not subscribed when they happened can still read them.
pub const ACTIVITY_STREAM: &str = "sollol:dashboard:activity_stream";

#[derive(Serialize)]
struct Wire<'a> {
    timestamp: f64,
    backend: &'a str,
    event_type: &'static str,
    severity: super::Severity,
    details: Map<String, Value>,
}

impl Event {
    /// The pub/sub channel the event is published on.
    pub fn channel(&self) -> &'static str {
        match &self.kind {
            EventKind::Worker { .. } => WORKER_CHANNEL,
            EventKind::Routing(_) => ROUTING_CHANNEL,
            _ => ACTIVITY_CHANNEL,
        }
    }

    /// The stream the event is appended to.
    pub fn stream(&self) -> &'static str {
        match &self.kind {
            EventKind::Routing(_) => ROUTING_STREAM,
            _ => ACTIVITY_STREAM,
        }
    }

    /// The JSON text published to Redis.
    pub fn to_json(&self) -> String {
        if let EventKind::Routing(routing) = &self.kind {
            return routing.to_json();
        }
        let wire = Wire {
            timestamp: self.timestamp,
            backend: &self.backend,
            event_type: self.event_type().as_str(),
            severity: self.severity,
            details: self.details(),
        };
        serde_json::to_string(&wire).unwrap_or_else(|err| {
            serde_json::json!({ "event_type": wire.event_type, "error": err.to_string() })
                .to_string()
        })
    }

    /// The `details` object: the kind's fields, then `app` and `pid` once stamped.
    pub fn details(&self) -> Map<String, Value> {
        let mut details = Map::new();
        let mut put = |key: &str, value: Value| {
            details.insert(key.to_string(), value);
        };
        match &self.kind {
            EventKind::OllamaRequest {
                model,
                operation,
                streaming,
                priority,
            } => {
                put("model", model.as_str().into());
                put("operation", operation.as_str().into());
                put("priority", (*priority).into());
                if *streaming {
                    put("streaming", true.into());
                }
            }
            EventKind::OllamaResponse {
                model,
                operation,
                status,
                streaming,
                latency,
                ..
            } => {
                put("model", model.as_str().into());
                put("latency_ms", millis(*latency).into());
                put("status_code", (*status).into());
                put("operation", operation.as_str().into());
                if *streaming {
                    put("streaming", true.into());
                }
            }
            // SOLLOL's error events carry no operation or status; dashboards key on these three.
            EventKind::OllamaError {
                model,
                error,
                latency,
                ..
            } => {
                put("model", model.as_str().into());
                put("error", error.as_str().into());
                put("latency_ms", millis(*latency).into());
            }
            EventKind::NodeStatusChange { from, to, reason } => {
                put("old_status", from.as_str().into());
                put("new_status", to.as_str().into());
                put("reason", reason.as_str().into());
            }
            EventKind::BreakerStateChange { from, to, reason } => {
                put("old_state", from.as_str().into());
                put("new_state", to.as_str().into());
                put("reason", reason.as_str().into());
            }
            EventKind::Queue {
                model,
                change,
                depth,
            } => {
                put("model", model.as_str().into());
                put("queue_depth", (*depth).into());
                match change {
                    QueueChange::Queued => {}
                    QueueChange::Admitted { waited } => put("waited_ms", millis(*waited).into()),
                    QueueChange::Rejected { reason } => put("reason", reason.as_str().into()),
                }
            }
            EventKind::Worker {
                worker_id,
                pid,
                restarts,
                change,
            } => {
                put("worker_id", (*worker_id).into());
                put("restarts", (*restarts).into());
                if let Some(pid) = pid {
                    put("worker_pid", (*pid).into());
                }
                match change {
                    WorkerChange::Spawned | WorkerChange::Ready => {}
                    WorkerChange::Exited { reason, .. } => put("reason", reason.as_str().into()),
                    WorkerChange::Restarting { delay } => {
                        put("delay_ms", (delay.as_millis() as u64).into())
                    }
                    WorkerChange::Failed { error } => put("error", error.as_str().into()),
                }
            }
            EventKind::Routing(routing) => {
                put("model", routing.model.as_str().into());
                put("node_url", routing.node.as_str().into());
                put("reason", routing.reason.as_str().into());
            }
        }
        if let Some(origin) = &self.origin {
            put("app", origin.app.as_str().into());
            put("pid", origin.pid.into());
        }
        details
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::Origin;
    use super::*;

    fn parse(event: &Event) -> Value {
        serde_json::from_str(&event.to_json()).expect("valid json")
    }

    #[test]
    fn request_event_has_sollols_shape_and_key_order() {
        let mut event = Event::ollama_request("127.0.0.1:11434", "llama3.2", "chat", false);
        event.origin = Some(Origin {
            app: "a".into(),
            pid: 9,
        });
        let text = event.to_json();
        let positions: Vec<usize> = ["timestamp", "backend", "event_type", "severity", "details"]
            .iter()
            .map(|key| text.find(&format!("\"{key}\":")).expect("key present"))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "key order: {text}"
        );
        let value = parse(&event);
        assert_eq!(
            value["details"],
            json!({"model": "llama3.2", "operation": "chat", "priority": 5, "app": "a", "pid": 9})
        );
        assert_eq!(event.channel(), ACTIVITY_CHANNEL);
    }

    #[test]
    fn error_details_are_sollols_three_fields_whatever_the_proxy_knew() {
        let event = Event::ollama_error("n", "m", "HTTP 500", Duration::from_millis(3))
            .on_route("chat")
            .with_status(500);
        assert_eq!(
            parse(&event)["details"],
            json!({"model": "m", "error": "HTTP 500", "latency_ms": 3.0})
        );
    }

    #[test]
    fn worker_events_go_to_the_worker_channel() {
        let event = Event::worker(
            0,
            Some(42),
            2,
            WorkerChange::Exited {
                reason: "signal 9".into(),
                expected: false,
            },
        );
        assert_eq!(event.channel(), WORKER_CHANNEL);
        assert_eq!(event.stream(), ACTIVITY_STREAM);
        let value = parse(&event);
        assert_eq!(value["event_type"], "worker_exited");
        assert_eq!(value["severity"], "warning");
        assert_eq!(
            value["details"],
            json!({"worker_id": 0, "restarts": 2, "worker_pid": 42, "reason": "signal 9"})
        );
    }
}
