//! Events: one typed value for each thing that happened, from which every sink takes its
//! form.
//!
//! An [`Event`] is what the request path, the node handles, the supervisor and the router
//! hand to the observer. Its [`EventKind`] carries typed fields (durations, status codes,
//! states), and each sink derives its own view from the same value:
//!
//! - the Redis JSON ([`Event::to_json`], in [`wire`]): SOLLOL's five-field shape
//!   `{"timestamp", "backend", "event_type", "severity", "details"}` for activity and worker
//!   events, SOLLOL's routing shape for routing decisions;
//! - the log line ([`Event::log`], in [`log`]): a level that says how much it matters and
//!   structured fields;
//! - the Prometheus samples ([`Metrics::record`](crate::metrics::Metrics::record)).
//!
//! Severity follows SOLLOL's rules (slow responses are warnings, errors are errors, a node
//! that leaves `healthy` is a warning), with the thresholds in [`SeverityRules`], which the
//! observer applies from its configuration.

mod log;
mod wire;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::routing_event::{RoutingEvent, RoutingEventType};

pub use wire::{ACTIVITY_CHANNEL, ACTIVITY_STREAM, WORKER_CHANNEL};

/// A response slower than this is reported as a warning unless configured otherwise
/// (SOLLOL's rule).
pub const SLOW_RESPONSE: Duration = Duration::from_secs(10);
/// Time in the admission queue after which admission is reported as a warning.
pub const SLOW_QUEUE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity `{0}`; expected one of: info, warning, error, critical")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "info" => Ok(Self::Info),
            "warning" | "warn" => Ok(Self::Warning),
            "error" => Ok(Self::Error),
            "critical" => Ok(Self::Critical),
            _ => Err(UnknownSeverity(text.to_string())),
        }
    }
}

/// Thresholds that turn an `info` event into a `warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeverityRules {
    /// Responses slower than this are warnings (`SOLLOL_SLOW_RESPONSE_MS`).
    pub slow_response: Duration,
    /// Admissions after a longer wait in the queue are warnings (`SOLLOL_SLOW_QUEUE_MS`).
    pub slow_queue_wait: Duration,
}

impl Default for SeverityRules {
    fn default() -> Self {
        Self {
            slow_response: SLOW_RESPONSE,
            slow_queue_wait: SLOW_QUEUE_WAIT,
        }
    }
}

/// The state of a node's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [Self::Closed, Self::Open, Self::HalfOpen];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// What happened to a request in the admission queue.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueChange {
    /// It had to wait: no node could take it at once.
    Queued,
    /// It left the queue for a node after `waited`.
    Admitted { waited: Duration },
    /// It was refused (queue full, or waited too long).
    Rejected { reason: String },
}

/// What happened to a worker process.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerChange {
    Spawned,
    Ready,
    /// It exited; `expected` when it was told to (shutdown, rolling restart).
    Exited {
        reason: String,
        expected: bool,
    },
    Restarting {
        delay: Duration,
    },
    /// It exited too often and is not restarted any more.
    Failed {
        error: String,
    },
}

/// Everything the observer knows how to report, with its own fields.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A request was sent to a node.
    OllamaRequest {
        model: String,
        operation: String,
        streaming: bool,
        priority: u8,
    },
    /// A node answered and the answer reached the client (any status below 400).
    OllamaResponse {
        model: String,
        operation: String,
        status: u16,
        streaming: bool,
        /// From sending the request to the node until the last byte.
        latency: Duration,
        /// From sending the request to the node until its response headers.
        first_byte: Option<Duration>,
        /// Time the gateway spent before the request left for the node.
        gateway_overhead: Option<Duration>,
    },
    /// A request to a node failed: transport error, error status, or the client left.
    OllamaError {
        model: String,
        operation: Option<String>,
        /// The status the node answered with, if it answered.
        status: Option<u16>,
        error: String,
        latency: Duration,
        gateway_overhead: Option<Duration>,
    },
    NodeStatusChange {
        from: String,
        to: String,
        reason: String,
    },
    BreakerStateChange {
        from: BreakerState,
        to: BreakerState,
        reason: String,
    },
    Queue {
        model: String,
        change: QueueChange,
        /// Requests waiting after this change.
        depth: usize,
    },
    Worker {
        worker_id: usize,
        pid: Option<u32>,
        restarts: u32,
        change: WorkerChange,
    },
    /// A routing decision (`OLLAMA_NODE_SELECTED`, `FALLBACK_TRIGGERED`, `TASK_QUEUED`).
    Routing(RoutingEvent),
}

/// The name of an event's kind, as published in `event_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    OllamaRequest,
    OllamaResponse,
    OllamaError,
    NodeStatusChange,
    BreakerStateChange,
    RequestQueued,
    RequestAdmitted,
    RequestRejected,
    WorkerSpawned,
    WorkerReady,
    WorkerExited,
    WorkerRestarting,
    WorkerFailed,
    Routing(RoutingEventType),
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OllamaRequest => "ollama_request",
            Self::OllamaResponse => "ollama_response",
            Self::OllamaError => "ollama_error",
            Self::NodeStatusChange => "node_status_change",
            Self::BreakerStateChange => "breaker_state_change",
            Self::RequestQueued => "request_queued",
            Self::RequestAdmitted => "request_admitted",
            Self::RequestRejected => "request_rejected",
            Self::WorkerSpawned => "worker_spawned",
            Self::WorkerReady => "worker_ready",
            Self::WorkerExited => "worker_exited",
            Self::WorkerRestarting => "worker_restarting",
            Self::WorkerFailed => "worker_failed",
            Self::Routing(routing) => routing.as_str(),
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventKind {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::OllamaRequest { .. } => EventType::OllamaRequest,
            Self::OllamaResponse { .. } => EventType::OllamaResponse,
            Self::OllamaError { .. } => EventType::OllamaError,
            Self::NodeStatusChange { .. } => EventType::NodeStatusChange,
            Self::BreakerStateChange { .. } => EventType::BreakerStateChange,
            Self::Queue { change, .. } => match change {
                QueueChange::Queued => EventType::RequestQueued,
                QueueChange::Admitted { .. } => EventType::RequestAdmitted,
                QueueChange::Rejected { .. } => EventType::RequestRejected,
            },
            Self::Worker { change, .. } => match change {
                WorkerChange::Spawned => EventType::WorkerSpawned,
                WorkerChange::Ready => EventType::WorkerReady,
                WorkerChange::Exited { .. } => EventType::WorkerExited,
                WorkerChange::Restarting { .. } => EventType::WorkerRestarting,
                WorkerChange::Failed { .. } => EventType::WorkerFailed,
            },
            Self::Routing(routing) => EventType::Routing(routing.event_type),
        }
    }

    /// SOLLOL's severity rules, with `rules` for the thresholds.
    pub fn severity(&self, rules: &SeverityRules) -> Severity {
        match self {
            Self::OllamaRequest { .. } => Severity::Info,
            Self::OllamaResponse { latency, .. } if *latency > rules.slow_response => {
                Severity::Warning
            }
            Self::OllamaResponse { .. } => Severity::Info,
            Self::OllamaError { .. } => Severity::Error,
            Self::NodeStatusChange { to, .. } if to == "healthy" => Severity::Info,
            Self::NodeStatusChange { .. } => Severity::Warning,
            Self::BreakerStateChange { to, .. } if *to == BreakerState::Open => Severity::Warning,
            Self::BreakerStateChange { .. } => Severity::Info,
            Self::Queue { change, .. } => match change {
                QueueChange::Queued => Severity::Info,
                QueueChange::Admitted { waited } if *waited > rules.slow_queue_wait => {
                    Severity::Warning
                }
                QueueChange::Admitted { .. } => Severity::Info,
                QueueChange::Rejected { .. } => Severity::Error,
            },
            Self::Worker { change, .. } => match change {
                WorkerChange::Spawned | WorkerChange::Ready => Severity::Info,
                WorkerChange::Exited { expected: true, .. } => Severity::Info,
                WorkerChange::Exited { .. } | WorkerChange::Restarting { .. } => Severity::Warning,
                WorkerChange::Failed { .. } => Severity::Error,
            },
            Self::Routing(routing) => match routing.event_type {
                RoutingEventType::FallbackTriggered => Severity::Warning,
                _ => Severity::Info,
            },
        }
    }

    /// The model the event is about, if any.
    pub fn model(&self) -> Option<&str> {
        match self {
            Self::OllamaRequest { model, .. }
            | Self::OllamaResponse { model, .. }
            | Self::OllamaError { model, .. }
            | Self::Queue { model, .. } => Some(model),
            Self::Routing(routing) => Some(&routing.model),
            _ => None,
        }
    }

    /// Whether the event is one of the many that each request produces, which sampling
    /// may drop; lifecycle events (nodes, breakers, queues, workers) are always kept.
    pub fn is_per_request(&self) -> bool {
        matches!(
            self,
            Self::OllamaRequest { .. }
                | Self::OllamaResponse { .. }
                | Self::OllamaError { .. }
                | Self::Routing(_)
        )
    }
}

/// The process that emitted an event; the observer stamps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub app: String,
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Epoch seconds.
    pub timestamp: f64,
    /// `host:port` of the node, `worker:<id>` for workers, the node for routing events.
    pub backend: String,
    pub severity: Severity,
    pub kind: EventKind,
    /// `None` until the observer has stamped it.
    pub origin: Option<Origin>,
}

impl Event {
    /// An event of `kind` about `backend`, now, with the default severity rules.
    pub fn new(backend: impl Into<String>, kind: EventKind) -> Self {
        Self {
            timestamp: epoch_seconds(),
            backend: backend.into(),
            severity: kind.severity(&SeverityRules::default()),
            kind,
            origin: None,
        }
    }

    pub fn event_type(&self) -> EventType {
        self.kind.event_type()
    }

    pub fn ollama_request(backend: &str, model: &str, operation: &str, streaming: bool) -> Self {
        Self::new(
            backend,
            EventKind::OllamaRequest {
                model: model.to_string(),
                operation: operation.to_string(),
                streaming,
                priority: 5,
            },
        )
    }

    pub fn ollama_response(
        backend: &str,
        model: &str,
        operation: &str,
        latency: Duration,
        status_code: u16,
        streaming: bool,
    ) -> Self {
        Self::new(
            backend,
            EventKind::OllamaResponse {
                model: model.to_string(),
                operation: operation.to_string(),
                status: status_code,
                streaming,
                latency,
                first_byte: None,
                gateway_overhead: None,
            },
        )
    }

    pub fn ollama_error(backend: &str, model: &str, error: &str, latency: Duration) -> Self {
        Self::new(
            backend,
            EventKind::OllamaError {
                model: model.to_string(),
                operation: None,
                status: None,
                error: error.to_string(),
                latency,
                gateway_overhead: None,
            },
        )
    }

    pub fn node_status_change(backend: &str, from: &str, to: &str, reason: &str) -> Self {
        Self::new(
            backend,
            EventKind::NodeStatusChange {
                from: from.to_string(),
                to: to.to_string(),
                reason: reason.to_string(),
            },
        )
    }

    pub fn breaker_state_change(
        node: &str,
        from: BreakerState,
        to: BreakerState,
        reason: &str,
    ) -> Self {
        let reason = reason.to_string();
        Self::new(node, EventKind::BreakerStateChange { from, to, reason })
    }

    /// An admission-queue change; `depth` is the number of requests waiting after it.
    pub fn queue(model: &str, change: QueueChange, depth: usize) -> Self {
        let model = model.to_string();
        Self::new(
            "queue",
            EventKind::Queue {
                model,
                change,
                depth,
            },
        )
    }

    pub fn worker(worker_id: usize, pid: Option<u32>, restarts: u32, change: WorkerChange) -> Self {
        Self::new(
            format!("worker:{worker_id}"),
            EventKind::Worker {
                worker_id,
                pid,
                restarts,
                change,
            },
        )
    }

    /// The route (`chat`, `generate`, ...) an error happened on.
    pub fn on_route(mut self, route: &str) -> Self {
        if let EventKind::OllamaError { operation, .. } = &mut self.kind {
            *operation = Some(route.to_string());
        }
        self
    }

    /// The status the node answered an erroneous request with.
    pub fn with_status(mut self, code: u16) -> Self {
        if let EventKind::OllamaError { status, .. } = &mut self.kind {
            *status = Some(code);
        }
        self
    }

    /// Time from sending the request to the node until its response headers arrived.
    pub fn with_first_byte(mut self, elapsed: Duration) -> Self {
        if let EventKind::OllamaResponse { first_byte, .. } = &mut self.kind {
            *first_byte = Some(elapsed);
        }
        self
    }

    /// Time the gateway spent on the request before it left for the node.
    pub fn with_gateway_overhead(mut self, elapsed: Duration) -> Self {
        match &mut self.kind {
            EventKind::OllamaResponse {
                gateway_overhead, ..
            }
            | EventKind::OllamaError {
                gateway_overhead, ..
            } => *gateway_overhead = Some(elapsed),
            _ => {}
        }
        self
    }

    /// Recomputes the severity with the observer's thresholds.
    pub fn classify(&mut self, rules: &SeverityRules) {
        self.severity = self.kind.severity(rules);
    }
}

impl From<RoutingEvent> for Event {
    fn from(routing: RoutingEvent) -> Self {
        let node = routing.node.clone();
        Self::new(node, EventKind::Routing(routing))
    }
}

/// Milliseconds with microsecond precision, as SOLLOL's `latency_ms`.
pub fn millis(duration: Duration) -> f64 {
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
    fn slow_responses_are_warnings_by_the_configured_threshold() {
        let slow = Event::ollama_response("n", "m", "chat", Duration::from_secs(11), 200, true);
        assert_eq!(slow.severity, Severity::Warning);
        let mut fast =
            Event::ollama_response("n", "m", "chat", Duration::from_millis(50), 200, false);
        assert_eq!(fast.severity, Severity::Info);
        fast.classify(&SeverityRules {
            slow_response: Duration::from_millis(10),
            ..SeverityRules::default()
        });
        assert_eq!(fast.severity, Severity::Warning);
    }

    #[test]
    fn errors_node_changes_and_workers_follow_sollols_rules() {
        let error = Event::ollama_error("n", "m", "HTTP 500", Duration::ZERO);
        assert_eq!(error.severity, Severity::Error);
        assert_eq!(
            Event::node_status_change("n", "healthy", "unhealthy", "refused").severity,
            Severity::Warning
        );
        assert_eq!(
            Event::node_status_change("n", "unhealthy", "healthy", "ok").severity,
            Severity::Info
        );
        let restarting = Event::worker(
            1,
            Some(7),
            1,
            WorkerChange::Restarting {
                delay: Duration::from_millis(100),
            },
        );
        assert_eq!(restarting.severity, Severity::Warning);
        assert_eq!(restarting.backend, "worker:1");
        let opened = Event::breaker_state_change(
            "n",
            BreakerState::Closed,
            BreakerState::Open,
            "5 failures",
        );
        assert_eq!(opened.severity, Severity::Warning);
        assert_eq!(opened.event_type().as_str(), "breaker_state_change");
    }

    #[test]
    fn severities_parse_with_sollols_spellings() {
        assert_eq!("WARN".parse::<Severity>(), Ok(Severity::Warning));
        assert_eq!("critical".parse::<Severity>(), Ok(Severity::Critical));
        assert!("loud".parse::<Severity>().is_err());
        assert!(Severity::Error > Severity::Warning);
    }
}
