//! The shared, lock-light view of one node that the request path uses.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use actix::Recipient;
use reqwest::Url;
use serde::Serialize;

use super::address::node_key;
use crate::event::Event;
use crate::model_name::normalize_model;
use crate::observer::Emit;

/// Weight of the newest sample in the latency moving average.
const LATENCY_SMOOTHING: f64 = 0.2;
/// Consecutive request failures after which a node is taken out until a health check
/// succeeds again.
const FAILURES_BEFORE_DOWN: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not checked yet.
    Unknown,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone)]
struct NodeState {
    health: Health,
    /// Normalised names of the models the node has (`/api/tags`).
    models: BTreeSet<String>,
    /// Normalised names of the resident models (`/api/ps`).
    loaded: BTreeSet<String>,
    version: Option<String>,
    latency_ms: Option<f64>,
    requests: u64,
    failures: u64,
    consecutive_failures: u32,
    last_error: Option<String>,
}

/// What `/sollol/nodes` shows of a node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub url: String,
    pub state: Health,
    pub in_flight: usize,
    pub latency_ms: Option<f64>,
    pub requests: u64,
    pub failures: u64,
    pub version: Option<String>,
    pub models: Vec<String>,
    pub loaded_models: Vec<String>,
    pub last_error: Option<String>,
}

struct NodeInner {
    key: String,
    base: String,
    url: Url,
    client: reqwest::Client,
    in_flight: AtomicUsize,
    state: RwLock<NodeState>,
    observer: Option<Recipient<Emit>>,
}

/// A cheap, cloneable handle on one node.
#[derive(Clone)]
pub struct NodeHandle(Arc<NodeInner>);

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NodeHandle").field(&self.0.key).finish()
    }
}

impl NodeHandle {
    /// `client` is shared by all nodes so connections are pooled per process.
    pub fn new(url: Url, client: reqwest::Client, observer: Option<Recipient<Emit>>) -> Self {
        let base = url.as_str().trim_end_matches('/').to_string();
        Self(Arc::new(NodeInner {
            key: node_key(&url),
            base,
            url,
            client,
            in_flight: AtomicUsize::new(0),
            state: RwLock::new(NodeState {
                health: Health::Unknown,
                models: BTreeSet::new(),
                loaded: BTreeSet::new(),
                version: None,
                latency_ms: None,
                requests: 0,
                failures: 0,
                consecutive_failures: 0,
                last_error: None,
            }),
            observer,
        }))
    }

    /// `host:port`, the node's name everywhere.
    pub fn key(&self) -> &str {
        &self.0.key
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.0.client
    }

    /// The address of `path_and_query` (which starts with `/`) on this node.
    pub fn endpoint(&self, path_and_query: &str) -> String {
        format!("{}{}", self.0.base, path_and_query)
    }

    /// The `Host` header value the node expects.
    pub fn host_header(&self) -> &str {
        &self.0.key
    }

    pub fn url(&self) -> &Url {
        &self.0.url
    }

    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn begin(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub fn health(&self) -> Health {
        self.read().health
    }

    pub fn is_available(&self) -> bool {
        self.read().health == Health::Healthy
    }

    /// Whether the node has `model` (already normalised).
    pub fn has_model(&self, normalized_model: &str) -> bool {
        self.read().models.contains(normalized_model)
    }

    pub fn has_model_named(&self, model: &str) -> bool {
        self.has_model(&normalize_model(model))
    }

    pub fn version(&self) -> Option<String> {
        self.read().version.clone()
    }

    pub fn latency_ms(&self) -> Option<f64> {
        self.read().latency_ms
    }

    /// A request finished well (any response the node produced, 4xx included).
    pub fn record_success(&self, latency: Duration) {
        let mut state = self.write();
        let sample = latency.as_secs_f64() * 1000.0;
        state.latency_ms = Some(match state.latency_ms {
            Some(old) => old + LATENCY_SMOOTHING * (sample - old),
            None => sample,
        });
        state.requests += 1;
        state.consecutive_failures = 0;
    }

    /// A request failed because of the node (transport error or 5xx).
    ///
    /// A refused connection takes the node out at once; other failures do so after
    /// a few in a row. The health check brings it back.
    pub fn record_failure(&self, error: &str, connection_refused: bool) {
        let down = {
            let mut state = self.write();
            state.requests += 1;
            state.failures += 1;
            state.consecutive_failures += 1;
            state.last_error = Some(error.to_string());
            connection_refused || state.consecutive_failures >= FAILURES_BEFORE_DOWN
        };
        if down {
            self.set_health(Health::Unhealthy, error);
        }
    }

    /// Records the result of a health check.
    pub(crate) fn record_check(
        &self,
        version: Option<String>,
        models: BTreeSet<String>,
        loaded: BTreeSet<String>,
    ) {
        {
            let mut state = self.write();
            state.version = version.or(state.version.take());
            state.models = models;
            state.loaded = loaded;
            state.consecutive_failures = 0;
        }
        self.set_health(Health::Healthy, "health check passed");
    }

    pub(crate) fn record_check_failure(&self, error: &str) {
        self.write().last_error = Some(error.to_string());
        self.set_health(Health::Unhealthy, error);
    }

    /// Changes the health state and reports a change as a `node_status_change` event.
    fn set_health(&self, health: Health, reason: &str) {
        let previous = {
            let mut state = self.write();
            std::mem::replace(&mut state.health, health)
        };
        if previous == health {
            return;
        }
        tracing::info!(node = %self.key(), from = previous.as_str(), to = health.as_str(), reason, "node state changed");
        if let Some(observer) = &self.0.observer {
            let event =
                Event::node_status_change(self.key(), previous.as_str(), health.as_str(), reason);
            observer.do_send(Emit(event));
        }
    }

    pub fn status(&self) -> NodeStatus {
        let state = self.read();
        NodeStatus {
            node: self.0.key.clone(),
            url: self.0.base.clone(),
            state: state.health,
            in_flight: self.in_flight(),
            latency_ms: state.latency_ms.map(|ms| (ms * 1000.0).round() / 1000.0),
            requests: state.requests,
            failures: state.failures,
            version: state.version.clone(),
            models: state.models.iter().cloned().collect(),
            loaded_models: state.loaded.iter().cloned().collect(),
            last_error: state.last_error.clone(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, NodeState> {
        self.0
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, NodeState> {
        self.0
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keeps a request counted as in flight on its node while alive.
#[derive(Debug)]
pub struct InFlight(NodeHandle);

impl InFlight {
    pub fn node(&self) -> &NodeHandle {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0 .0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
impl NodeHandle {
    /// A node marked healthy with the given models, for router tests.
    pub(crate) fn for_tests(url: &str, models: &[&str]) -> Self {
        let url = super::parse_node_url(url).expect("test url");
        let node = Self::new(url, reqwest::Client::new(), None);
        let models = models.iter().map(|m| normalize_model(m)).collect();
        node.record_check(Some("0.12.6".into()), models, BTreeSet::new());
        node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_guard_counts_and_releases() {
        let node = NodeHandle::for_tests("127.0.0.1:1", &["m"]);
        let first = node.begin();
        let second = node.begin();
        assert_eq!(node.in_flight(), 2);
        drop(first);
        assert_eq!(node.in_flight(), 1);
        drop(second);
        assert_eq!(node.in_flight(), 0);
    }

    #[test]
    fn refused_connection_takes_node_down_and_check_brings_it_back() {
        let node = NodeHandle::for_tests("127.0.0.1:1", &["Llama3.2"]);
        assert!(node.is_available());
        assert!(node.has_model_named("llama3.2:latest"));
        node.record_failure("connection refused", true);
        assert_eq!(node.health(), Health::Unhealthy);
        node.record_check(None, BTreeSet::new(), BTreeSet::new());
        assert!(node.is_available());
        assert_eq!(node.status().version.as_deref(), Some("0.12.6"));
    }

    #[test]
    fn latency_is_a_moving_average_untouched_by_failures() {
        let node = NodeHandle::for_tests("127.0.0.1:1", &[]);
        node.record_success(Duration::from_millis(100));
        node.record_failure("HTTP 500", false);
        node.record_success(Duration::from_millis(200));
        let latency = node.latency_ms().expect("measured");
        assert!((latency - 120.0).abs() < 1e-6, "{latency}");
        assert!(node.is_available(), "one failure does not take a node down");
    }
}
