//! The log form of an event: a level that says how much it matters, structured fields.
//!
//! Levels: traffic that went well is `debug`; lifecycle news (a worker ready, a node back)
//! is `info`; anything slow, refused or retried is `warn`; `error` only when work was lost
//! for good or an operator must act (a node's 5xx reached a client, a worker was given
//! up on). Every line has the target `sollol::event`, so `RUST_LOG=sollol::event=debug`
//! shows all of them.

use tracing::Level;

use super::{millis, Event, EventKind, QueueChange, Severity, WorkerChange};

/// Emits one tracing event at a level chosen at run time.
macro_rules! at_level {
    ($level:expr, $($rest:tt)+) => {
        match $level {
            Level::ERROR => tracing::error!(target: "sollol::event", $($rest)+),
            Level::WARN => tracing::warn!(target: "sollol::event", $($rest)+),
            Level::INFO => tracing::info!(target: "sollol::event", $($rest)+),
            _ => tracing::debug!(target: "sollol::event", $($rest)+),
        }
    };
}

impl Event {
    /// How much the event matters to someone reading the log.
    pub fn log_level(&self) -> Level {
        match &self.kind {
            EventKind::OllamaRequest { .. } => Level::DEBUG,
            EventKind::OllamaResponse { .. } if self.severity > Severity::Info => Level::WARN,
            EventKind::OllamaResponse { .. } => Level::DEBUG,
            // A client's own mistake (404 model, 400) or a client leaving is not the node's.
            EventKind::OllamaError {
                status: Some(400..=499),
                ..
            } => Level::DEBUG,
            EventKind::OllamaError { error, .. } if error.starts_with("client closed") => {
                Level::DEBUG
            }
            // The node answered with an error status, which reached the client.
            EventKind::OllamaError {
                status: Some(500..),
                ..
            } => Level::ERROR,
            // Connection failures (retried) and streams cut short.
            EventKind::OllamaError { .. } => Level::WARN,
            EventKind::Queue {
                change: QueueChange::Queued,
                ..
            } => Level::DEBUG,
            EventKind::Worker {
                change: WorkerChange::Failed { .. },
                ..
            } => Level::ERROR,
            EventKind::Routing(_) if self.severity == Severity::Info => Level::DEBUG,
            _ if self.severity == Severity::Info => Level::INFO,
            _ => Level::WARN,
        }
    }

    /// Writes the event to the log with its fields.
    pub fn log(&self) {
        let level = self.log_level();
        if !log_enabled(level) {
            return;
        }
        let backend = self.backend.as_str();
        let event_type = self.event_type().as_str();
        let severity = self.severity.as_str();
        match &self.kind {
            EventKind::OllamaRequest {
                model,
                operation,
                streaming,
                ..
            } => {
                at_level!(level, backend, model = %model, operation = %operation, streaming, "request sent to node")
            }
            EventKind::OllamaResponse {
                model,
                operation,
                status,
                latency,
                first_byte,
                ..
            } => at_level!(
                level,
                backend,
                model = %model,
                operation = %operation,
                status,
                latency_ms = millis(*latency),
                first_byte_ms = first_byte.map(millis),
                severity,
                "response relayed"
            ),
            EventKind::OllamaError {
                model,
                operation,
                status,
                error,
                latency,
                ..
            } => at_level!(
                level,
                backend,
                model = %model,
                operation = operation.as_deref(),
                status,
                error = %error,
                latency_ms = millis(*latency),
                "request failed"
            ),
            EventKind::NodeStatusChange { from, to, reason } => {
                at_level!(level, node = backend, from = %from, to = %to, reason = %reason, "node state changed")
            }
            EventKind::BreakerStateChange { from, to, reason } => at_level!(
                level,
                node = backend,
                from = from.as_str(),
                to = to.as_str(),
                reason = %reason,
                "circuit breaker changed"
            ),
            EventKind::Queue {
                model,
                change,
                depth,
            } => match change {
                QueueChange::Queued => at_level!(level, model = %model, depth, "request queued"),
                QueueChange::Admitted { waited } => at_level!(
                    level,
                    model = %model,
                    depth,
                    waited_ms = millis(*waited),
                    "request left the queue"
                ),
                QueueChange::Rejected { reason } => {
                    at_level!(level, model = %model, depth, reason = %reason, "request refused by the queue")
                }
            },
            EventKind::Worker {
                worker_id,
                pid,
                restarts,
                change,
            } => {
                let detail = match change {
                    WorkerChange::Exited { reason, .. } => Some(reason.clone()),
                    WorkerChange::Restarting { delay } => {
                        Some(format!("in {} ms", delay.as_millis()))
                    }
                    WorkerChange::Failed { error } => Some(error.clone()),
                    WorkerChange::Spawned | WorkerChange::Ready => None,
                };
                at_level!(
                    level,
                    worker = worker_id,
                    pid,
                    restarts,
                    detail = detail.as_deref(),
                    event_type,
                    "worker {}",
                    worker_verb(change)
                )
            }
            EventKind::Routing(routing) => at_level!(
                level,
                node = backend,
                model = %routing.model,
                reason = %routing.reason,
                event_type,
                "routing decision"
            ),
        }
    }
}

fn worker_verb(change: &WorkerChange) -> &'static str {
    match change {
        WorkerChange::Spawned => "spawned",
        WorkerChange::Ready => "ready",
        WorkerChange::Exited { .. } => "exited",
        WorkerChange::Restarting { .. } => "restarting",
        WorkerChange::Failed { .. } => "failed; not restarting it",
    }
}

fn log_enabled(level: Level) -> bool {
    match level {
        Level::ERROR => tracing::enabled!(target: "sollol::event", Level::ERROR),
        Level::WARN => tracing::enabled!(target: "sollol::event", Level::WARN),
        Level::INFO => tracing::enabled!(target: "sollol::event", Level::INFO),
        _ => tracing::enabled!(target: "sollol::event", Level::DEBUG),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn levels_say_how_much_an_event_matters() {
        let ok = Event::ollama_response("n", "m", "chat", Duration::from_millis(5), 200, false);
        assert_eq!(ok.log_level(), Level::DEBUG);
        let not_found = Event::ollama_error("n", "m", "HTTP 404", Duration::ZERO).with_status(404);
        assert_eq!(not_found.log_level(), Level::DEBUG);
        let broken = Event::ollama_error("n", "m", "HTTP 500", Duration::ZERO).with_status(500);
        assert_eq!(broken.log_level(), Level::ERROR);
        let refused = Event::ollama_error("n", "m", "connection failed", Duration::ZERO);
        assert_eq!(refused.log_level(), Level::WARN);
        let cut = Event::ollama_error("n", "m", "stream ended", Duration::ZERO).with_status(200);
        assert_eq!(cut.log_level(), Level::WARN);
        let back = Event::node_status_change("n", "unhealthy", "healthy", "ok");
        assert_eq!(back.log_level(), Level::INFO);
        let gone = Event::worker(
            0,
            None,
            5,
            WorkerChange::Failed {
                error: "exit code 3".into(),
            },
        );
        assert_eq!(gone.log_level(), Level::ERROR);
    }
}
