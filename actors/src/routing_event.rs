//! Routing decisions as SOLLOL's routing log publishes them.
//!
//! Each routed request produces exactly one `OLLAMA_NODE_SELECTED` event naming the node
//! that actually answered and why it was chosen; retries add `FALLBACK_TRIGGERED` and
//! waiting in the admission queue adds `TASK_QUEUED`. The observer publishes them on the
//! `sollol:routing_events` channel and appends them to the `sollol:routing_stream` stream.

use std::sync::OnceLock;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::clock::{hostname, naive_utc_micros};

pub const ROUTING_CHANNEL: &str = "sollol:routing_events";
pub const ROUTING_STREAM: &str = "sollol:routing_stream";
/// Entries the routing stream keeps (approximately, as `MAXLEN ~`).
pub const ROUTING_STREAM_MAX_LEN: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingEventType {
    NodeSelected,
    FallbackTriggered,
    TaskQueued,
}

impl RoutingEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeSelected => "OLLAMA_NODE_SELECTED",
            Self::FallbackTriggered => "FALLBACK_TRIGGERED",
            Self::TaskQueued => "TASK_QUEUED",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoutingEvent {
    pub event_type: RoutingEventType,
    pub model: String,
    pub node: String,
    pub reason: String,
    pub priority: u8,
    /// Fields beyond the seven SOLLOL shares across types (`from_backend`, ...).
    pub extra: Map<String, Value>,
}

struct Identity {
    instance_id: String,
    hostname: String,
    pid: u32,
}

fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let hostname = hostname();
        let pid = std::process::id();
        let suffix: u32 = rand::random();
        Identity {
            instance_id: format!("{hostname}_{pid}_{suffix:08x}"),
            hostname,
            pid,
        }
    })
}

impl RoutingEvent {
    pub fn new(
        event_type: RoutingEventType,
        model: &str,
        node: &str,
        reason: impl Into<String>,
        priority: u8,
    ) -> Self {
        Self {
            event_type,
            model: model.to_string(),
            node: node.to_string(),
            reason: reason.into(),
            priority,
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// SOLLOL's JSON: `timestamp` (naive UTC ISO), `instance_id`, `hostname`, `pid`,
    /// `event_type`, `model`, `backend`, `node_url`, `reason`, `confidence`, `priority`.
    pub fn to_json(&self) -> String {
        let identity = identity();
        let mut object = Map::new();
        object.insert(
            "timestamp".into(),
            naive_utc_micros(SystemTime::now()).into(),
        );
        object.insert("instance_id".into(), identity.instance_id.clone().into());
        object.insert("hostname".into(), identity.hostname.clone().into());
        object.insert("pid".into(), identity.pid.into());
        object.insert("event_type".into(), self.event_type.as_str().into());
        object.insert("model".into(), self.model.clone().into());
        object.insert("backend".into(), "ollama".into());
        object.insert("node_url".into(), self.node.clone().into());
        object.insert("reason".into(), self.reason.clone().into());
        object.insert("confidence".into(), 0.into());
        object.insert("priority".into(), self.priority.into());
        for (key, value) in &self.extra {
            object.insert(key.clone(), value.clone());
        }
        Value::Object(object).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_selected_has_sollol_fields() {
        let event = RoutingEvent::new(
            RoutingEventType::NodeSelected,
            "llama3.2",
            "127.0.0.1:11434",
            "Strategy: round_robin",
            5,
        );
        let value: Value = serde_json::from_str(&event.to_json()).expect("json");
        assert_eq!(value["event_type"], "OLLAMA_NODE_SELECTED");
        assert_eq!(value["backend"], "ollama");
        assert_eq!(value["node_url"], "127.0.0.1:11434");
        assert_eq!(value["confidence"], 0);
        assert_eq!(value["pid"], std::process::id());
        let id = value["instance_id"].as_str().expect("id");
        assert!(id.contains(&format!("_{}_", std::process::id())), "{id}");
        assert_eq!(value["timestamp"].as_str().expect("ts").len(), 26);
    }
}
