//! The observer: the one place every [`Event`] goes, and from which every sink is fed.
//!
//! Everything on the request path reaches the observer through an [`EventSink`] (a
//! buffer the observer drains every few milliseconds, see [`sink`]) or with `do_send`, so
//! a request never waits for it, and the observer never waits for anything: for each
//! event it
//!
//! 1. stamps the process (`app`, `pid`) and applies the configured severity rules;
//! 2. records the Prometheus metrics and the latency analytics, and writes the log line
//!    (all before sampling, so counts are exact);
//! 3. samples per-request `info` events, counting what it drops;
//! 4. hands the kept event to the [`RedisPublisher`](crate::redis_publisher::RedisPublisher)
//!    (which batches on its own), to the live-feed subscribers, and to its ring of recent
//!    events.
//!
//! Live-feed subscribers ([`Subscribe`]) each get a bounded channel; a subscriber that
//! does not keep up is dropped rather than waited for. Events other processes published
//! reach the subscribers through [`Relay`], without being counted or published again.
//! The configuration is read once, when the process starts; worker processes therefore
//! get theirs from the supervisor's [`EnvSnapshot`](crate::EnvSnapshot).

mod analytics;
mod config;
pub mod sink;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::mpsc;

pub use analytics::Analytics;
use analytics::AnalyticsWindow;
pub use config::{parse_bool, ObserverConfig, DEFAULT_APP_NAME};
use sink::{DrainSoon, Pending, PendingEvents, DRAIN_DELAY};
pub use sink::{EventSink, FlushEvents};

use crate::event::{Event, EventKind, Origin, Severity};
use crate::feed::{FeedFilter, FeedItem};
use crate::metrics::Metrics;
use crate::redis_publisher::Publish;
use crate::routing_event::{RoutingEvent, ROUTING_STREAM_MAX_LEN};

/// Items from other processes kept for new subscribers.
const RECENT_REMOTE: usize = 200;

/// Records one event. Send it with `do_send`: nothing waits for the observer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Emit(pub Event);

/// Records one routing decision (channel and stream). Send it with `do_send`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EmitRouting(pub RoutingEvent);

/// Passes an event another process published to the live-feed subscribers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relay(pub FeedItem);

/// Opens a live feed: the most recent matching items (oldest first), then every new one
/// until the receiver is dropped or falls `capacity` items behind.
#[derive(Message)]
#[rtype(result = "FeedSubscription")]
pub struct Subscribe {
    pub filter: FeedFilter,
    pub capacity: usize,
    /// How many recent items to send first.
    pub backlog: usize,
}

pub struct FeedSubscription {
    pub recent: Vec<FeedItem>,
    pub receiver: mpsc::Receiver<FeedItem>,
}

/// Ends every live feed (their streams finish), so a server stopping gracefully does not
/// wait for clients that would never leave on their own.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseFeeds;

#[derive(Message)]
#[rtype(result = "ObserverStats")]
pub struct GetObserverStats;

#[derive(Message)]
#[rtype(result = "Analytics")]
pub struct GetAnalytics;

/// The most recent events, newest first.
#[derive(Message)]
#[rtype(result = "Vec<Event>")]
pub struct RecentEvents {
    pub limit: usize,
}

/// Counters the observer keeps; served by `/sollol/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ObserverStats {
    pub app_name: String,
    pub pid: u32,
    pub total_events: u64,
    /// Per-request `info` events dropped on purpose by sampling.
    pub dropped_by_sampling: u64,
    /// Events dropped because the observer fell too far behind its sinks.
    pub dropped_by_overflow: u64,
    pub events_in_memory: usize,
    pub events_by_type: BTreeMap<String, u64>,
    pub events_by_backend: BTreeMap<String, u64>,
    pub errors_by_backend: BTreeMap<String, u64>,
    /// Routing events (`OLLAMA_NODE_SELECTED`, ...) by type.
    pub routing_events: BTreeMap<String, u64>,
    pub sampling_enabled: bool,
    pub sample_rate: f64,
    pub feed_subscribers: usize,
    /// Live-feed subscribers dropped because they did not keep up.
    pub feed_subscribers_dropped: u64,
}

struct Subscriber {
    filter: FeedFilter,
    sender: mpsc::Sender<FeedItem>,
}

pub struct ObserverActor {
    config: ObserverConfig,
    recent: VecDeque<Event>,
    recent_remote: VecDeque<FeedItem>,
    stats: ObserverStats,
    analytics: AnalyticsWindow,
    metrics: Metrics,
    subscribers: Vec<Subscriber>,
    /// Where kept events go next; `None` when Redis is not configured.
    publisher: Option<Recipient<Publish>>,
    /// What [`EventSink`]s have buffered for this observer.
    pending: Arc<PendingEvents>,
}

impl ObserverActor {
    pub fn new(config: ObserverConfig, publisher: Option<Recipient<Publish>>) -> Self {
        let stats = ObserverStats {
            app_name: config.app_name.clone(),
            pid: config.pid,
            sampling_enabled: config.sampling,
            sample_rate: config.sample_rate,
            ..ObserverStats::default()
        };
        Self {
            recent: VecDeque::with_capacity(config.max_events.min(1024)),
            recent_remote: VecDeque::new(),
            config,
            stats,
            analytics: AnalyticsWindow::default(),
            metrics: Metrics::new(),
            subscribers: Vec::new(),
            publisher,
            pending: Arc::new(PendingEvents::default()),
        }
    }

    /// Starts the observer and returns, with its address, a sink that feeds it without a
    /// message per event (the way the request path should use it).
    pub fn start_with_sink(self) -> (Addr<Self>, EventSink) {
        let pending = self.pending.clone();
        let addr = self.start();
        let sink = EventSink::new(pending, addr.clone().recipient());
        (addr, sink)
    }

    /// Processes what the sinks buffered, oldest first.
    fn drain(&mut self) {
        let dropped = self.pending.take_dropped();
        if dropped > 0 {
            self.stats.dropped_by_overflow += dropped;
            tracing::warn!(
                dropped,
                "the observer fell behind; events were dropped to bound memory"
            );
        }
        for item in self.pending.take() {
            match item {
                Pending::Event(event) => self.record(event),
                Pending::Routing(routing) => self.record(Event::from(routing)),
            }
        }
    }

    /// Records into `metrics` (shared with `/metrics` and the Redis publisher).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn config(&self) -> &ObserverConfig {
        &self.config
    }

    fn sampled_out(&self, event: &Event) -> bool {
        self.config.sampling
            && event.severity == Severity::Info
            && event.kind.is_per_request()
            && self.config.sample_rate < 1.0
            && rand::random::<f64>() >= self.config.sample_rate
    }

    fn count(&mut self, event: &Event) {
        let stats = &mut self.stats;
        let type_name = event.event_type().as_str();
        if let EventKind::Routing(_) = event.kind {
            bump(&mut stats.routing_events, type_name);
            return;
        }
        bump(&mut stats.events_by_type, type_name);
        bump(&mut stats.events_by_backend, &event.backend);
        if event.severity >= Severity::Error {
            bump(&mut stats.errors_by_backend, &event.backend);
        }
    }

    fn publish(&self, event: &Event) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let stream_len = match event.kind {
            EventKind::Routing(_) => ROUTING_STREAM_MAX_LEN,
            _ => self.config.activity_stream_len,
        };
        publisher.do_send(Publish::event(
            event.channel(),
            event.stream(),
            event.to_json(),
            stream_len,
        ));
    }

    /// Sends `item` to every subscriber that wants it; drops those that fell behind or left.
    fn fan_out(&mut self, item: &FeedItem) {
        let before = self.subscribers.len();
        self.subscribers.retain(|subscriber| {
            if !subscriber.filter.matches(item) {
                return !subscriber.sender.is_closed();
            }
            match subscriber.sender.try_send(item.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!("live feed subscriber fell behind; dropping it");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        let gone = before - self.subscribers.len();
        self.stats.feed_subscribers_dropped += gone as u64;
    }
}

/// Adds one to `key`'s count, allocating the key only the first time it is seen.
fn bump(counts: &mut BTreeMap<String, u64>, key: &str) {
    match counts.get_mut(key) {
        Some(count) => *count += 1,
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}

impl Actor for ObserverActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.drain();
    }
}

impl ObserverActor {
    fn record(&mut self, mut event: Event) {
        self.stats.total_events += 1;
        event.classify(&self.config.rules);
        event.origin = Some(Origin {
            app: self.config.app_name.clone(),
            pid: self.config.pid,
        });
        self.metrics.record(&event);
        self.analytics.record(&event);
        event.log();
        if self.sampled_out(&event) {
            self.stats.dropped_by_sampling += 1;
            self.metrics.dropped_by_sampling();
            return;
        }

        self.count(&event);
        self.publish(&event);
        if !self.subscribers.is_empty() {
            self.fan_out(&FeedItem::from_event(&event));
        }
        if self.config.max_events > 0 {
            if self.recent.len() == self.config.max_events {
                self.recent.pop_front();
            }
            self.recent.push_back(event);
        }
    }
}

impl Handler<Emit> for ObserverActor {
    type Result = ();

    fn handle(&mut self, Emit(event): Emit, _ctx: &mut Self::Context) {
        // Buffered events are older than this one.
        self.drain();
        self.record(event);
    }
}

impl Handler<EmitRouting> for ObserverActor {
    type Result = ();

    fn handle(&mut self, EmitRouting(routing): EmitRouting, _ctx: &mut Self::Context) {
        self.drain();
        self.record(Event::from(routing));
    }
}

impl Handler<DrainSoon> for ObserverActor {
    type Result = ();

    fn handle(&mut self, _: DrainSoon, ctx: &mut Self::Context) {
        // Let the batch fill for a moment: one wake-up of this thread per batch.
        ctx.run_later(DRAIN_DELAY, |act, _ctx| act.drain());
    }
}

impl Handler<FlushEvents> for ObserverActor {
    type Result = ();

    fn handle(&mut self, _: FlushEvents, _ctx: &mut Self::Context) {
        self.drain();
    }
}

impl Handler<Relay> for ObserverActor {
    type Result = ();

    fn handle(&mut self, Relay(item): Relay, _ctx: &mut Self::Context) {
        self.drain();
        if !self.subscribers.is_empty() {
            self.fan_out(&item);
        }
        if self.recent_remote.len() == RECENT_REMOTE {
            self.recent_remote.pop_front();
        }
        self.recent_remote.push_back(item);
    }
}

impl Handler<Subscribe> for ObserverActor {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, request: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        self.drain();
        let local = self.recent.iter().rev().map(FeedItem::from_event);
        let remote = self.recent_remote.iter().rev().cloned();
        let mut recent: Vec<FeedItem> = local
            .take(request.backlog * 4)
            .chain(remote.take(request.backlog * 4))
            .filter(|item| request.filter.matches(item))
            .collect();
        recent.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
        let skip = recent.len().saturating_sub(request.backlog);
        recent.drain(..skip);

        let (sender, receiver) = mpsc::channel(request.capacity.max(1));
        self.subscribers.push(Subscriber {
            filter: request.filter,
            sender,
        });
        MessageResult(FeedSubscription { recent, receiver })
    }
}

impl Handler<CloseFeeds> for ObserverActor {
    type Result = ();

    fn handle(&mut self, _: CloseFeeds, _ctx: &mut Self::Context) {
        self.subscribers.clear();
    }
}

impl Handler<GetObserverStats> for ObserverActor {
    type Result = MessageResult<GetObserverStats>;

    fn handle(&mut self, _: GetObserverStats, _ctx: &mut Self::Context) -> Self::Result {
        self.drain();
        let mut stats = self.stats.clone();
        stats.events_in_memory = self.recent.len();
        stats.feed_subscribers = self.subscribers.len();
        MessageResult(stats)
    }
}

impl Handler<GetAnalytics> for ObserverActor {
    type Result = MessageResult<GetAnalytics>;

    fn handle(&mut self, _: GetAnalytics, _ctx: &mut Self::Context) -> Self::Result {
        self.drain();
        MessageResult(self.analytics.snapshot())
    }
}

impl Handler<RecentEvents> for ObserverActor {
    type Result = MessageResult<RecentEvents>;

    fn handle(&mut self, msg: RecentEvents, _ctx: &mut Self::Context) -> Self::Result {
        self.drain();
        MessageResult(self.recent.iter().rev().take(msg.limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests;
