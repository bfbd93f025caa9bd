//! Prometheus metrics, derived from the observer's events, in the Prometheus text format.
//!
//! The observer calls [`Metrics::record`] with every event before sampling, so counts are
//! exact whatever the sampling rate. A few values are read when scraped instead: requests
//! in flight and node health come from the [`NodeHandle`]s given to
//! [`Metrics::track_nodes`]. The Redis publisher updates its own counters. Every metric is
//! an atomic or a short-lived map lock: recording never waits on anything slow, and
//! encoding ([`Metrics::encode`]) holds no lock across an await.
//!
//! Labels are low-cardinality by construction: node keys, model names, route names
//! (`chat`, `generate`, ...), status codes, event types, worker ids. Request bodies,
//! error texts and reasons never become labels.

use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::event::{BreakerState, Event, EventKind, QueueChange, WorkerChange};
use crate::node::{Health, NodeHandle};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Seconds, for whole requests: from a few milliseconds to five minutes.
const REQUEST_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Seconds, for the gateway's own work: from 100 µs to one second.
const OVERHEAD_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn overhead_histogram() -> Histogram {
    Histogram::new(OVERHEAD_BUCKETS)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    node: String,
    model: String,
    route: String,
    /// The node's HTTP status, or `none` when it never answered.
    status: String,
    /// `ok` for a relayed answer, `error` for a failed attempt.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeRouteLabels {
    node: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    node: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event_type: &'static str,
    severity: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoutingLabels {
    event_type: &'static str,
    node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<NodeRouteLabels, Histogram, fn() -> Histogram>,
    first_byte: Family<NodeRouteLabels, Histogram, fn() -> Histogram>,
    overhead: Family<RouteLabels, Histogram, fn() -> Histogram>,
    http_responses: Family<HttpLabels, Counter>,
    queued: Gauge,
    queue_wait: Histogram,
    breaker: Family<BreakerLabels, Gauge>,
    worker_up: Family<WorkerLabels, Gauge>,
    worker_restarts: Family<WorkerLabels, Counter>,
    routing: Family<RoutingLabels, Counter>,
    events: Family<EventLabels, Counter>,
    dropped: Family<DropLabels, Counter>,
    published: Counter,
    redis_backlog: Gauge,
    redis_connected: Gauge,
    redis_reconnects: Counter,
    nodes: Arc<NodeCollector>,
    /// Handles of the series a successful response touches, found by plain comparison
    /// (no label set built, cloned or hashed on the hot path).
    responses: Mutex<Vec<ResponseSeries>>,
    http_response_counters: CounterCache<HttpLabels>,
    event_counters: CounterCache<EventLabels>,
    routing_counters: CounterCache<RoutingLabels>,
}

/// Handles of the counters of one family that the hot path uses, found by comparing
/// fields (no label set built, cloned or hashed for a counter seen before). At most
/// [`MAX_CACHED_SERIES`] are kept; past that, lookups go to the family.
struct CounterCache<L>(Mutex<Vec<(L, Counter)>>);

impl<L> Default for CounterCache<L> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<L: Clone + std::hash::Hash + Eq> CounterCache<L> {
    /// Adds one to the counter whose labels `matches`, made with `labels` the first time.
    fn inc(
        &self,
        family: &Family<L, Counter>,
        matches: impl Fn(&L) -> bool,
        labels: impl FnOnce() -> L,
    ) {
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, counter)) = cache.iter().find(|(known, _)| matches(known)) {
            counter.inc();
            return;
        }
        let labels = labels();
        let counter = family.get_or_create(&labels).clone();
        counter.inc();
        if cache.len() < MAX_CACHED_SERIES {
            cache.push((labels, counter));
        }
    }
}

/// Series kept in each cache of handles at most; past this, lookups go to the families.
const MAX_CACHED_SERIES: usize = 256;

/// The series one kind of successful response updates (handles share the families'
/// values).
struct ResponseSeries {
    node: String,
    model: String,
    route: String,
    status: u16,
    requests: Counter,
    latency: Histogram,
    first_byte: Histogram,
    overhead: Histogram,
}

/// The metrics of one process; cheap to clone, every clone records into the same values.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "sollol_requests",
            "Requests sent to Ollama nodes, by node, model, route, the node's status and outcome",
            requests.clone(),
        );
        let latency = Family::new_with_constructor(request_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "sollol_request_duration",
            "Time from sending a request to a node until its last byte",
            Unit::Seconds,
            latency.clone(),
        );
        let first_byte = Family::new_with_constructor(request_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "sollol_time_to_first_byte",
            "Time from sending a request to a node until its response headers",
            Unit::Seconds,
            first_byte.clone(),
        );
        let overhead = Family::new_with_constructor(overhead_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "sollol_gateway_overhead",
            "Time the gateway spent on a request before it left for a node (body, routing, queue)",
            Unit::Seconds,
            overhead.clone(),
        );
        let http_responses = Family::<HttpLabels, Counter>::default();
        registry.register(
            "sollol_http_responses",
            "Responses the gateway sent to its clients, by route pattern and status",
            http_responses.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "sollol_queued_requests",
            "Requests waiting in the admission queue",
            queued.clone(),
        );
        let queue_wait = request_histogram();
        registry.register_with_unit(
            "sollol_queue_wait",
            "Time requests waited in the admission queue",
            Unit::Seconds,
            queue_wait.clone(),
        );
        let breaker = Family::<BreakerLabels, Gauge>::default();
        registry.register(
            "sollol_breaker_state",
            "Circuit breaker state per node: 1 for the current state, 0 for the others",
            breaker.clone(),
        );
        let worker_up = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "sollol_worker_ready",
            "Whether a worker process is ready (1) or not (0)",
            worker_up.clone(),
        );
        let worker_restarts = Family::<WorkerLabels, Counter>::default();
        registry.register(
            "sollol_worker_restarts",
            "Restarts of worker processes",
            worker_restarts.clone(),
        );
        let routing = Family::<RoutingLabels, Counter>::default();
        registry.register(
            "sollol_routing_decisions",
            "Routing decisions by type and node",
            routing.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "sollol_events",
            "Events emitted, by type and severity, before sampling",
            events.clone(),
        );
        let dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "sollol_events_dropped",
            "Events dropped on purpose: by sampling, or from the Redis backlog while Redis was unreachable (counted in Redis messages)",
            dropped.clone(),
        );
        let published = Counter::default();
        registry.register(
            "sollol_events_published",
            "Messages written to Redis (one per event, plus key updates for metadata and registration)",
            published.clone(),
        );
        let redis_backlog = Gauge::default();
        registry.register(
            "sollol_redis_backlog",
            "Messages waiting to be written to Redis",
            redis_backlog.clone(),
        );
        let redis_connected = Gauge::default();
        registry.register(
            "sollol_redis_connected",
            "Whether the Redis publisher is connected (1) or not (0)",
            redis_connected.clone(),
        );
        let redis_reconnects = Counter::default();
        registry.register(
            "sollol_redis_connections",
            "Connections the Redis publisher made, the first one included",
            redis_reconnects.clone(),
        );
        let nodes = Arc::new(NodeCollector::default());
        registry.register_collector(Box::new(nodes.clone()));
        Self(Arc::new(Inner {
            registry,
            requests,
            latency,
            first_byte,
            overhead,
            http_responses,
            queued,
            queue_wait,
            breaker,
            worker_up,
            worker_restarts,
            routing,
            events,
            dropped,
            published,
            redis_backlog,
            redis_connected,
            redis_reconnects,
            nodes,
            responses: Mutex::new(Vec::new()),
            http_response_counters: CounterCache::default(),
            event_counters: CounterCache::default(),
            routing_counters: CounterCache::default(),
        }))
    }

    /// The cached series of a successful response, created on first use.
    fn response_series<T>(
        &self,
        node: &str,
        model: &str,
        route: &str,
        status: u16,
        record: impl FnOnce(&ResponseSeries) -> T,
    ) -> T {
        let mut cache = self.0.responses.lock().unwrap_or_else(|p| p.into_inner());
        let found = cache.iter().position(|series| {
            series.status == status
                && series.route == route
                && series.model == model
                && series.node == node
        });
        if let Some(index) = found {
            return record(&cache[index]);
        }
        let metrics = &self.0;
        let by_route = NodeRouteLabels {
            node: node.to_string(),
            route: route.to_string(),
        };
        let series = ResponseSeries {
            node: node.to_string(),
            model: model.to_string(),
            route: route.to_string(),
            status,
            requests: metrics
                .requests
                .get_or_create(&RequestLabels {
                    node: node.to_string(),
                    model: model.to_string(),
                    route: route.to_string(),
                    status: status.to_string(),
                    outcome: "ok",
                })
                .clone(),
            latency: metrics.latency.get_or_create(&by_route).clone(),
            first_byte: metrics.first_byte.get_or_create(&by_route).clone(),
            overhead: metrics
                .overhead
                .get_or_create(&RouteLabels {
                    route: route.to_string(),
                })
                .clone(),
        };
        let result = record(&series);
        if cache.len() < MAX_CACHED_SERIES {
            cache.push(series);
        }
        result
    }

    /// Reads in-flight counts and health from these nodes at each scrape.
    pub fn track_nodes(&self, nodes: Vec<NodeHandle>) {
        *self
            .0
            .nodes
            .nodes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = nodes;
    }

    /// Counts one event and whatever it measures.
    pub fn record(&self, event: &Event) {
        let metrics = &self.0;
        self.count_event(event.event_type().as_str(), event.severity.as_str());
        let node = &event.backend;
        match &event.kind {
            EventKind::OllamaResponse {
                model,
                operation,
                status,
                latency,
                first_byte,
                gateway_overhead,
                ..
            } => {
                self.response_series(node, model, operation, *status, |series| {
                    series.requests.inc();
                    series.latency.observe(latency.as_secs_f64());
                    if let Some(first_byte) = first_byte {
                        series.first_byte.observe(first_byte.as_secs_f64());
                    }
                    if let Some(overhead) = gateway_overhead {
                        series.overhead.observe(overhead.as_secs_f64());
                    }
                });
            }
            EventKind::OllamaError {
                model,
                operation,
                status,
                gateway_overhead,
                ..
            } => {
                let route = operation.as_deref().unwrap_or("unknown");
                let status = status.map_or_else(|| "none".to_string(), |s| s.to_string());
                self.count_request(node, model, route, status, "error");
                self.observe_overhead(route, *gateway_overhead);
            }
            EventKind::BreakerStateChange { to, .. } => {
                for state in BreakerState::ALL {
                    let labels = BreakerLabels {
                        node: node.clone(),
                        state: state.as_str(),
                    };
                    metrics
                        .breaker
                        .get_or_create(&labels)
                        .set(i64::from(state == *to));
                }
            }
            EventKind::Queue { change, depth, .. } => {
                metrics.queued.set(*depth as i64);
                if let QueueChange::Admitted { waited } = change {
                    metrics.queue_wait.observe(waited.as_secs_f64());
                }
            }
            EventKind::Worker {
                worker_id, change, ..
            } => {
                let labels = WorkerLabels {
                    worker: worker_id.to_string(),
                };
                let ready = matches!(change, WorkerChange::Ready);
                metrics
                    .worker_up
                    .get_or_create(&labels)
                    .set(i64::from(ready));
                if matches!(change, WorkerChange::Restarting { .. }) {
                    metrics.worker_restarts.get_or_create(&labels).inc();
                }
            }
            EventKind::Routing(routing) => {
                self.count_routing(routing.event_type.as_str(), &routing.node);
            }
            EventKind::OllamaRequest { .. } | EventKind::NodeStatusChange { .. } => {}
        }
    }

    fn count_request(
        &self,
        node: &str,
        model: &str,
        route: &str,
        status: String,
        outcome: &'static str,
    ) {
        let labels = RequestLabels {
            node: node.to_string(),
            model: model.to_string(),
            route: route.to_string(),
            status,
            outcome,
        };
        self.0.requests.get_or_create(&labels).inc();
    }

    fn observe_overhead(&self, route: &str, overhead: Option<std::time::Duration>) {
        if let Some(overhead) = overhead {
            let labels = RouteLabels {
                route: route.to_string(),
            };
            self.0
                .overhead
                .get_or_create(&labels)
                .observe(overhead.as_secs_f64());
        }
    }

    fn count_event(&self, event_type: &'static str, severity: &'static str) {
        self.0.event_counters.inc(
            &self.0.events,
            |known| known.event_type == event_type && known.severity == severity,
            || EventLabels {
                event_type,
                severity,
            },
        );
    }

    fn count_routing(&self, event_type: &'static str, node: &str) {
        self.0.routing_counters.inc(
            &self.0.routing,
            |known| known.event_type == event_type && known.node == node,
            || RoutingLabels {
                event_type,
                node: node.to_string(),
            },
        );
    }

    /// Counts one response the gateway sent; `route` is the route pattern, not the path.
    pub fn record_http_response(&self, route: &str, status: u16) {
        self.0.http_response_counters.inc(
            &self.0.http_responses,
            |known| known.status == status && known.route == route,
            || HttpLabels {
                route: route.to_string(),
                status,
            },
        );
    }

    pub fn dropped_by_sampling(&self) {
        self.drop_count("sampling").inc();
    }

    pub(crate) fn dropped_by_backlog(&self, count: u64) {
        self.drop_count("backlog").inc_by(count);
    }

    fn drop_count(&self, reason: &'static str) -> Counter {
        self.0.dropped.get_or_create_owned(&DropLabels { reason })
    }

    pub(crate) fn published(&self, count: u64) {
        self.0.published.inc_by(count);
    }

    pub(crate) fn redis_backlog(&self, backlog: usize) {
        self.0.redis_backlog.set(backlog as i64);
    }

    pub(crate) fn redis_connected(&self, connected: bool) {
        self.0.redis_connected.set(i64::from(connected));
        if connected {
            self.0.redis_reconnects.inc();
        }
    }

    /// The whole registry in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        if let Err(err) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.0.registry)
        {
            tracing::warn!(error = %err, "cannot encode metrics");
        }
        text
    }
}

/// A gauge read from each node at scrape time: name, help, and how to read it.
type NodeGauge = (&'static str, &'static str, fn(&NodeHandle) -> i64);

/// Reads node state at scrape time.
#[derive(Debug, Default)]
struct NodeCollector {
    nodes: RwLock<Vec<NodeHandle>>,
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let nodes = self
            .nodes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let gauges: [NodeGauge; 2] = [
            (
                "sollol_in_flight_requests",
                "Requests being served by each node",
                |node| node.in_flight() as i64,
            ),
            (
                "sollol_node_up",
                "Whether a node is healthy (1) or not (0)",
                |node| i64::from(node.health() == Health::Healthy),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for node in &nodes {
                let labels = NodeLabels {
                    node: node.key().to_string(),
                };
                ConstGauge::new(value(node)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(name_and_labels))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn responses_and_errors_count_by_node_model_route_status_and_outcome() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            let event = Event::ollama_response(
                "n1",
                "llama3.2",
                "chat",
                Duration::from_millis(20),
                200,
                true,
            )
            .with_first_byte(Duration::from_millis(5))
            .with_gateway_overhead(Duration::from_micros(300));
            metrics.record(&event);
        }
        metrics.record(
            &Event::ollama_error("n2", "llama3.2", "HTTP 500", Duration::ZERO)
                .on_route("generate")
                .with_status(500),
        );
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"sollol_requests_total{node="n1",model="llama3.2",route="chat",status="200",outcome="ok"}"#
            ),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"sollol_requests_total{node="n2",model="llama3.2",route="generate",status="500",outcome="error"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"sollol_time_to_first_byte_seconds_count{node="n1",route="chat"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"sollol_events_total{event_type="ollama_error",severity="error"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn breaker_and_worker_states_are_state_sets() {
        let metrics = Metrics::new();
        metrics.record(&Event::breaker_state_change(
            "n",
            BreakerState::Closed,
            BreakerState::Open,
            "failures",
        ));
        metrics.record(&Event::worker(
            1,
            None,
            1,
            WorkerChange::Restarting {
                delay: Duration::ZERO,
            },
        ));
        let text = metrics.encode();
        assert_eq!(
            sample(&text, r#"sollol_breaker_state{node="n",state="open"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"sollol_breaker_state{node="n",state="closed"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, r#"sollol_worker_restarts_total{worker="1"}"#),
            Some(1.0)
        );
        assert!(
            text.contains("# TYPE sollol_in_flight_requests gauge"),
            "{text}"
        );
    }
}
