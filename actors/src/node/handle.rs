//! The shared view of one node that the router and the request path use.
//!
//! A [`NodeHandle`] is a cheap clone. The in-flight count is an atomic; everything else
//! sits behind one short-lived lock that is never held across an await. Outcomes are
//! recorded here directly by whoever made the request, without a message.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use actix::{Message, Recipient};
use reqwest::Url;
use serde::Serialize;

use super::address::node_key;
use super::breaker::{Admission, Breaker, BreakerSettings, BreakerState};
use super::stats::{ModelStats, RequestKind};
use crate::event::Event;
use crate::model_name::normalize_model;
use crate::observer::Emit;

/// Successes with the node full at its learned capacity before that capacity grows by one.
const CAPACITY_PROBE_SUCCESSES: usize = 20;

/// Weight of the newest sample in the node-wide latency average.
const LATENCY_SMOOTHING: f64 = 0.2;

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

/// How one request to the node ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    /// The node produced an answer (2xx or 3xx).
    Success,
    /// A 4xx: the request was wrong, not the node. Counts neither way.
    ClientError,
    /// A 5xx, or a stream that broke after it began.
    ServerError(String),
    /// A 503: the node said it is saturated. Counts as a failure, and teaches the node's
    /// capacity.
    Busy(String),
    /// The node could not be reached or did not answer in time.
    Transport { message: String, refused: bool },
}

/// A finished request, for the node's statistics.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    /// Normalised model name, if the request named one.
    pub model: Option<String>,
    pub kind: RequestKind,
    /// Size of the request in weight units (1 for a small one).
    pub weight: f64,
    pub latency: Duration,
    pub ttfb: Option<Duration>,
    /// Whether the model was not resident when the request was sent.
    pub cold: bool,
    pub kind_of_end: OutcomeKind,
}

#[derive(Debug, Clone)]
struct NodeState {
    health: Health,
    models: BTreeSet<String>,
    loaded: BTreeSet<String>,
    version: Option<String>,
    latency_ms: Option<f64>,
    requests: u64,
    failures: u64,
    last_error: Option<String>,
    breaker: Breaker,
    stats: HashMap<(String, RequestKind), ModelStats>,
    /// Cold loads in flight, per model.
    loading: HashMap<String, usize>,
    /// Health checks failed in a row.
    failed_checks: u32,
}

/// What `/sollol/nodes` shows of a node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub url: String,
    pub state: Health,
    pub breaker: BreakerState,
    pub in_flight: usize,
    /// Requests the node is given at once now: the configured capacity, lowered when the
    /// node answers "busy" and raised back as it copes.
    pub capacity: usize,
    pub configured_capacity: usize,
    pub latency_ms: Option<f64>,
    pub requests: u64,
    pub failures: u64,
    pub version: Option<String>,
    pub models: Vec<String>,
    pub loaded_models: Vec<String>,
    pub loading_models: Vec<String>,
    pub last_error: Option<String>,
}

/// Sent to the router when a slot frees up while requests wait for one.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct CapacityFreed;

struct ReleaseHook {
    recipient: Recipient<CapacityFreed>,
    /// Requests waiting in the router's queue; the hook fires only when some do.
    waiting: Arc<AtomicUsize>,
}

struct NodeInner {
    key: String,
    base: String,
    url: Url,
    client: reqwest::Client,
    /// The configured capacity: the most requests the node is ever given at once.
    capacity: usize,
    /// The capacity learned from the node's answers, at most `capacity`.
    learned_capacity: AtomicUsize,
    /// Successes since the learned capacity last changed.
    successes_at_capacity: AtomicUsize,
    in_flight: AtomicUsize,
    state: RwLock<NodeState>,
    observer: Option<Recipient<Emit>>,
    release_hook: OnceLock<ReleaseHook>,
}

/// A cheap, cloneable handle on one node.
#[derive(Clone)]
pub struct NodeHandle(Arc<NodeInner>);

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NodeHandle").field(&self.0.key).finish()
    }
}

/// Per-node settings that shape routing.
#[derive(Debug, Clone)]
pub struct NodeLimits {
    /// Requests the node serves at once; more wait in the router's queue.
    pub capacity: usize,
    pub breaker: BreakerSettings,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self {
            capacity: 4,
            breaker: BreakerSettings::default(),
        }
    }
}

impl NodeHandle {
    /// `client` is shared by all nodes so connections are pooled per process.
    pub fn new(url: Url, client: reqwest::Client, observer: Option<Recipient<Emit>>) -> Self {
        Self::with_limits(url, client, observer, NodeLimits::default())
    }

    pub fn with_limits(
        url: Url,
        client: reqwest::Client,
        observer: Option<Recipient<Emit>>,
        limits: NodeLimits,
    ) -> Self {
        let base = url.as_str().trim_end_matches('/').to_string();
        Self(Arc::new(NodeInner {
            key: node_key(&url),
            base,
            url,
            client,
            capacity: limits.capacity.max(1),
            learned_capacity: AtomicUsize::new(limits.capacity.max(1)),
            successes_at_capacity: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            state: RwLock::new(NodeState {
                health: Health::Unknown,
                models: BTreeSet::new(),
                loaded: BTreeSet::new(),
                version: None,
                latency_ms: None,
                requests: 0,
                failures: 0,
                last_error: None,
                breaker: Breaker::new(limits.breaker),
                stats: HashMap::new(),
                loading: HashMap::new(),
                failed_checks: 0,
            }),
            observer,
            release_hook: OnceLock::new(),
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

    /// Requests the node is given at once: configured, and lowered while the node says
    /// it is busy.
    pub fn capacity(&self) -> usize {
        self.0.learned_capacity.load(Ordering::Relaxed)
    }

    /// A 503 with `in_flight` requests running: the node holds fewer than that.
    fn learn_busy(&self) {
        let running = self.in_flight();
        let lowered = running.saturating_sub(1).clamp(1, self.0.capacity);
        let previous = self
            .0
            .learned_capacity
            .fetch_min(lowered, Ordering::Relaxed);
        self.0.successes_at_capacity.store(0, Ordering::Relaxed);
        if lowered < previous {
            tracing::info!(node = %self.key(), capacity = lowered, "node is busy; lowering its capacity");
        }
    }

    /// Successes at the learned capacity raise it back, one step per twenty.
    fn learn_success(&self) {
        let learned = self.capacity();
        if learned >= self.0.capacity || self.in_flight() < learned {
            return;
        }
        if self.0.successes_at_capacity.fetch_add(1, Ordering::Relaxed) + 1
            >= CAPACITY_PROBE_SUCCESSES
        {
            self.0.successes_at_capacity.store(0, Ordering::Relaxed);
            self.0
                .learned_capacity
                .store(learned + 1, Ordering::Relaxed);
        }
    }

    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::Relaxed)
    }

    pub fn has_free_slot(&self) -> bool {
        self.in_flight() < self.capacity()
    }

    /// Lets the router know when slots free up while requests wait.
    pub fn set_release_hook(&self, recipient: Recipient<CapacityFreed>, waiting: Arc<AtomicUsize>) {
        let _ = self.0.release_hook.set(ReleaseHook { recipient, waiting });
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn begin(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            node: self.clone(),
            loading: None,
        }
    }

    /// Like [`begin`](Self::begin), also marking a cold load of `model` until the guard drops.
    pub fn begin_cold_load(&self, model: &str) -> InFlight {
        *self.write().loading.entry(model.to_string()).or_default() += 1;
        let mut guard = self.begin();
        guard.loading = Some(model.to_string());
        guard
    }

    pub fn health(&self) -> Health {
        self.read().health
    }

    /// Reachable by the last check and not shut out by its breaker (a breaker whose
    /// cooldown is over counts as available: it admits a probe).
    pub fn is_available(&self) -> bool {
        let state = self.read();
        state.health == Health::Healthy && state.breaker.would_admit(Instant::now())
    }

    pub fn is_healthy(&self) -> bool {
        self.read().health == Health::Healthy
    }

    /// Asks the breaker whether a request may go now; a granted probe is recorded.
    pub fn admit(&self, now: Instant) -> bool {
        let (admission, changed) = {
            let mut state = self.write();
            if state.health != Health::Healthy {
                return false;
            }
            let before = state.breaker.state();
            let admission = state.breaker.admission(now);
            if admission == Admission::Probe {
                state.breaker.probe_started();
            }
            (
                admission,
                (state.breaker.state() != before).then(|| (before, state.breaker.state())),
            )
        };
        if let Some((from, to)) = changed {
            self.report_breaker(from, to, "cooldown over; sending a probe");
        }
        admission != Admission::Refused
    }

    /// Whether the node could be admitted without changing anything (for planning).
    pub fn breaker_state(&self) -> BreakerState {
        self.read().breaker.state()
    }

    /// Whether the node has `model` (already normalised).
    pub fn has_model(&self, normalized_model: &str) -> bool {
        self.read().models.contains(normalized_model)
    }

    pub fn has_model_named(&self, model: &str) -> bool {
        self.has_model(&normalize_model(model))
    }

    /// Records that the node now has `model` (after a pull, copy or create through the
    /// gateway), ahead of the next check.
    pub fn add_model(&self, model: &str) {
        self.write().models.insert(normalize_model(model));
    }

    /// Records that the node no longer has `model` (after a delete through the gateway).
    pub fn remove_model(&self, model: &str) {
        let model = normalize_model(model);
        let mut state = self.write();
        state.models.remove(&model);
        state.loaded.remove(&model);
    }

    /// Whether `model` (normalised) is resident in the node's memory.
    pub fn is_resident(&self, normalized_model: &str) -> bool {
        self.read().loaded.contains(normalized_model)
    }

    /// Whether a cold load of `model` (normalised) is under way on this node.
    pub fn is_loading(&self, normalized_model: &str) -> bool {
        self.read()
            .loading
            .get(normalized_model)
            .is_some_and(|n| *n > 0)
    }

    pub fn resident_models(&self) -> Vec<String> {
        self.read().loaded.iter().cloned().collect()
    }

    pub fn version(&self) -> Option<String> {
        self.read().version.clone()
    }

    pub fn latency_ms(&self) -> Option<f64> {
        self.read().latency_ms
    }

    pub fn requests(&self) -> u64 {
        self.read().requests
    }

    /// What the node has measured for `model` and `kind`.
    pub fn model_stats(&self, normalized_model: &str, kind: RequestKind) -> Option<ModelStats> {
        self.read()
            .stats
            .get(&(normalized_model.to_string(), kind))
            .cloned()
    }

    /// Records a finished request.
    pub fn record(&self, outcome: &RequestOutcome) {
        let now = Instant::now();
        let (breaker_change, down) = {
            let mut state = self.write();
            state.requests += 1;
            let key = outcome.model.clone().map(|m| (m, outcome.kind));
            match &outcome.kind_of_end {
                OutcomeKind::Success => {
                    let sample = outcome.latency.as_secs_f64() * 1000.0;
                    state.latency_ms = Some(match state.latency_ms {
                        Some(old) => old + LATENCY_SMOOTHING * (sample - old),
                        None => sample,
                    });
                    if let Some(key) = key {
                        if !state.loaded.contains(&key.0) {
                            state.loaded.insert(key.0.clone());
                        }
                        let stats = state.stats.entry(key).or_default();
                        stats.record_success(
                            outcome.weight,
                            outcome.latency,
                            outcome.ttfb,
                            outcome.cold,
                        );
                    }
                    let before = state.breaker.state();
                    (state.breaker.on_success().map(|to| (before, to)), false)
                }
                OutcomeKind::ClientError => (None, false),
                OutcomeKind::ServerError(message)
                | OutcomeKind::Busy(message)
                | OutcomeKind::Transport { message, .. } => {
                    state.failures += 1;
                    state.last_error = Some(message.clone());
                    if let Some(key) = key {
                        state.stats.entry(key).or_default().record_failure();
                    }
                    let refused = matches!(
                        outcome.kind_of_end,
                        OutcomeKind::Transport { refused: true, .. }
                    );
                    let before = state.breaker.state();
                    (
                        state.breaker.on_failure(now).map(|to| (before, to)),
                        refused,
                    )
                }
            }
        };
        match outcome.kind_of_end {
            OutcomeKind::Success => self.learn_success(),
            OutcomeKind::Busy(_) => self.learn_busy(),
            _ => {}
        }
        if let Some((from, to)) = breaker_change {
            let reason = match &outcome.kind_of_end {
                OutcomeKind::Success => "a request succeeded".to_string(),
                OutcomeKind::ServerError(message)
                | OutcomeKind::Busy(message)
                | OutcomeKind::Transport { message, .. } => message.clone(),
                OutcomeKind::ClientError => String::new(),
            };
            self.report_breaker(from, to, &reason);
        }
        if down {
            if let OutcomeKind::Transport { message, .. } = &outcome.kind_of_end {
                self.set_health(Health::Unhealthy, message);
            }
        }
    }

    /// A request finished well (kept for callers that do not track models).
    pub fn record_success(&self, latency: Duration) {
        self.record(&RequestOutcome {
            model: None,
            kind: RequestKind::Other,
            weight: 1.0,
            latency,
            ttfb: None,
            cold: false,
            kind_of_end: OutcomeKind::Success,
        });
    }

    /// A request failed because of the node.
    pub fn record_failure(&self, error: &str, connection_refused: bool) {
        let kind_of_end = if connection_refused {
            OutcomeKind::Transport {
                message: error.to_string(),
                refused: true,
            }
        } else {
            OutcomeKind::ServerError(error.to_string())
        };
        self.record(&RequestOutcome {
            model: None,
            kind: RequestKind::Other,
            weight: 1.0,
            latency: Duration::ZERO,
            ttfb: None,
            cold: false,
            kind_of_end,
        });
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
            state.failed_checks = 0;
        }
        self.set_health(Health::Healthy, "health check passed");
    }

    /// A failed check takes the node out if nothing listens there, or if the previous
    /// check failed too: one lost check is not enough to drop a node that answers.
    pub(crate) fn record_check_failure(&self, error: &str, refused: bool) {
        let down = {
            let mut state = self.write();
            state.last_error = Some(error.to_string());
            state.failed_checks += 1;
            refused || state.failed_checks >= 2 || state.health != Health::Healthy
        };
        if down {
            self.set_health(Health::Unhealthy, error);
        }
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
        self.emit(Event::node_status_change(
            self.key(),
            previous.as_str(),
            health.as_str(),
            reason,
        ));
    }

    fn report_breaker(&self, from: BreakerState, to: BreakerState, reason: &str) {
        self.emit(Event::breaker_state_change(self.key(), from, to, reason));
    }

    fn emit(&self, event: Event) {
        if let Some(observer) = &self.0.observer {
            observer.do_send(Emit(event));
        }
    }

    pub fn status(&self) -> NodeStatus {
        let state = self.read();
        NodeStatus {
            node: self.0.key.clone(),
            url: self.0.base.clone(),
            state: state.health,
            breaker: state.breaker.state(),
            in_flight: self.in_flight(),
            capacity: self.capacity(),
            configured_capacity: self.0.capacity,
            latency_ms: state.latency_ms.map(|ms| (ms * 1000.0).round() / 1000.0),
            requests: state.requests,
            failures: state.failures,
            version: state.version.clone(),
            models: state.models.iter().cloned().collect(),
            loaded_models: state.loaded.iter().cloned().collect(),
            loading_models: state
                .loading
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(m, _)| m.clone())
                .collect(),
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
pub struct InFlight {
    node: NodeHandle,
    /// The model whose cold load this request is, if it is one.
    loading: Option<String>,
}

impl InFlight {
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    pub fn is_cold_load(&self) -> bool {
        self.loading.is_some()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(model) = self.loading.take() {
            let mut state = self.node.write();
            if let Some(count) = state.loading.get_mut(&model) {
                *count = count.saturating_sub(1);
            }
        }
        self.node.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(hook) = self.node.0.release_hook.get() {
            if hook.waiting.load(Ordering::Relaxed) > 0 {
                hook.recipient.do_send(CapacityFreed);
            }
        }
    }
}

#[cfg(test)]
impl NodeHandle {
    /// A node marked healthy with the given models, for router tests.
    pub(crate) fn for_tests(url: &str, models: &[&str]) -> Self {
        Self::for_tests_with(url, models, &[], 4)
    }

    pub(crate) fn for_tests_with(
        url: &str,
        models: &[&str],
        resident: &[&str],
        capacity: usize,
    ) -> Self {
        let url = super::parse_node_url(url).expect("test url");
        let limits = NodeLimits {
            capacity,
            ..NodeLimits::default()
        };
        let node = Self::with_limits(url, reqwest::Client::new(), None, limits);
        let models = models.iter().map(|m| normalize_model(m)).collect();
        let resident = resident.iter().map(|m| normalize_model(m)).collect();
        node.record_check(Some("0.12.6".into()), models, resident);
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
        let second = node.begin_cold_load("m:latest");
        assert_eq!(node.in_flight(), 2);
        assert!(node.is_loading("m:latest"));
        drop(first);
        assert_eq!(node.in_flight(), 1);
        drop(second);
        assert_eq!(node.in_flight(), 0);
        assert!(!node.is_loading("m:latest"));
    }

    #[test]
    fn refused_connection_takes_node_down_and_check_brings_it_back() {
        let node = NodeHandle::for_tests("127.0.0.1:1", &["Llama3.2"]);
        assert!(node.is_available());
        assert!(node.has_model_named("llama3.2:latest"));
        node.record_failure("connection refused", true);
        assert_eq!(node.health(), Health::Unhealthy);
        node.record_check(None, BTreeSet::new(), BTreeSet::new());
        assert!(node.is_healthy());
        assert_eq!(node.status().version.as_deref(), Some("0.12.6"));
    }

    #[test]
    fn server_errors_open_the_breaker_and_a_probe_closes_it() {
        let node = NodeHandle::for_tests("127.0.0.1:1", &["m"]);
        for _ in 0..3 {
            node.record_failure("HTTP 500", false);
        }
        assert_eq!(node.breaker_state(), BreakerState::Open);
        assert!(!node.is_available());
        assert!(
            node.is_healthy(),
            "the node still answers its health checks"
        );
        assert!(!node.admit(Instant::now()));
        let after_cooldown = Instant::now() + Duration::from_secs(3);
        assert!(node.admit(after_cooldown), "one probe after the cooldown");
        assert!(!node.admit(after_cooldown), "only one probe");
        node.record_success(Duration::from_millis(5));
        assert_eq!(node.breaker_state(), BreakerState::Closed);
    }

    #[test]
    fn busy_answers_lower_the_capacity_and_successes_raise_it_back() {
        let node = NodeHandle::for_tests_with("127.0.0.1:1", &["m"], &["m"], 4);
        let running: Vec<InFlight> = (0..3).map(|_| node.begin()).collect();
        node.record(&RequestOutcome {
            model: None,
            kind: RequestKind::Chat,
            weight: 1.0,
            latency: Duration::from_millis(5),
            ttfb: None,
            cold: false,
            kind_of_end: OutcomeKind::Busy("HTTP 503".into()),
        });
        assert_eq!(
            node.capacity(),
            2,
            "three running and it said busy: it holds two"
        );
        assert_eq!(node.status().configured_capacity, 4);
        drop(running);
        let full: Vec<InFlight> = (0..2).map(|_| node.begin()).collect();
        for _ in 0..CAPACITY_PROBE_SUCCESSES {
            node.record_success(Duration::from_millis(5));
        }
        assert_eq!(node.capacity(), 3);
        drop(full);
    }

    #[test]
    fn a_success_marks_the_model_resident_and_learns_its_speed() {
        let node = NodeHandle::for_tests("127.0.0.1:1", &["m"]);
        assert!(!node.is_resident("m:latest"));
        node.record(&RequestOutcome {
            model: Some("m:latest".into()),
            kind: RequestKind::Chat,
            weight: 1.0,
            latency: Duration::from_millis(300),
            ttfb: Some(Duration::from_millis(30)),
            cold: false,
            kind_of_end: OutcomeKind::Success,
        });
        assert!(node.is_resident("m:latest"));
        let stats = node
            .model_stats("m:latest", RequestKind::Chat)
            .expect("stats");
        assert_eq!(stats.unit_latency_ms, Some(300.0));
    }
}
