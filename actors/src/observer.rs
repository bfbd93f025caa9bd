//! The observer: counts, samples and keeps recent events, and fans them out.
//!
//! Everything on the request path reaches the observer with `do_send`, so a request never
//! waits for it, and the observer never waits for Redis: it hands each kept event to the
//! [`RedisPublisher`](crate::redis_publisher::RedisPublisher), which batches on its own.
//! Its configuration is read once, from the process environment, when the process starts;
//! worker processes therefore get theirs from the supervisor's
//! [`EnvSnapshot`](crate::EnvSnapshot).

use std::collections::{BTreeMap, VecDeque};

use actix::prelude::*;
use serde::Serialize;

use crate::env_snapshot::EnvSnapshot;
use crate::event::{Event, Severity};
use crate::redis_publisher::Publish;
use crate::routing_event::{RoutingEvent, ROUTING_CHANNEL, ROUTING_STREAM, ROUTING_STREAM_MAX_LEN};

/// How an observer samples and how much it remembers.
#[derive(Debug, Clone, PartialEq)]
pub struct ObserverConfig {
    /// `details.app` of every event (`SOLLOL_APP_NAME`).
    pub app_name: String,
    /// `details.pid` of every event.
    pub pid: u32,
    /// Whether `info` events are sampled (`SOLLOL_OBSERVER_SAMPLING`, default true).
    pub sampling: bool,
    /// Fraction of `info` events kept when sampling (`SOLLOL_OBSERVER_SAMPLE_RATE`,
    /// default 1.0, which keeps everything: the rate SOLLOL's own observer used).
    pub sample_rate: f64,
    /// Size of the ring of recent events (`SOLLOL_OBSERVER_MAX_EVENTS`, default 10000).
    pub max_events: usize,
}

pub const DEFAULT_APP_NAME: &str = "sollol";

impl Default for ObserverConfig {
    fn default() -> Self {
        Self {
            app_name: DEFAULT_APP_NAME.to_string(),
            pid: std::process::id(),
            sampling: true,
            sample_rate: 1.0,
            max_events: 10_000,
        }
    }
}

impl ObserverConfig {
    /// Reads the `SOLLOL_*` variables SOLLOL users already set. A value that does not
    /// parse keeps the default and is reported with a warning naming the variable.
    pub fn from_env(env: &EnvSnapshot) -> Self {
        let defaults = Self::default();
        Self {
            app_name: env
                .get("SOLLOL_APP_NAME")
                .filter(|name| !name.is_empty())
                .unwrap_or(DEFAULT_APP_NAME)
                .to_string(),
            pid: defaults.pid,
            sampling: read_var(
                env,
                "SOLLOL_OBSERVER_SAMPLING",
                parse_bool,
                defaults.sampling,
            ),
            sample_rate: read_var(
                env,
                "SOLLOL_OBSERVER_SAMPLE_RATE",
                |v| v.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)),
                defaults.sample_rate,
            ),
            max_events: read_var(
                env,
                "SOLLOL_OBSERVER_MAX_EVENTS",
                |v| v.parse().ok(),
                defaults.max_events,
            ),
        }
    }
}

/// Parses the boolean spellings SOLLOL accepted (`true/1/yes/on`, `false/0/no/off`).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn read_var<T>(env: &EnvSnapshot, name: &str, parse: impl Fn(&str) -> Option<T>, default: T) -> T {
    match env.get(name) {
        None => default,
        Some(raw) => parse(raw).unwrap_or_else(|| {
            tracing::warn!(
                variable = name,
                value = raw,
                "ignoring invalid value, using the default"
            );
            default
        }),
    }
}

/// Publishes one routing decision (channel and stream). Send it with `do_send`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EmitRouting(pub RoutingEvent);

/// Counters the observer keeps; served by `/sollol/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ObserverStats {
    pub app_name: String,
    pub pid: u32,
    pub total_events: u64,
    /// `info` events dropped on purpose by sampling.
    pub dropped_by_sampling: u64,
    pub events_in_memory: usize,
    pub events_by_type: BTreeMap<String, u64>,
    pub events_by_backend: BTreeMap<String, u64>,
    pub errors_by_backend: BTreeMap<String, u64>,
    /// Routing events (`OLLAMA_NODE_SELECTED`, ...) by type.
    pub routing_events: BTreeMap<String, u64>,
    pub sampling_enabled: bool,
    pub sample_rate: f64,
}

/// Records one event. Send it with `do_send`: nothing waits for the observer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Emit(pub Event);

#[derive(Message)]
#[rtype(result = "ObserverStats")]
pub struct GetObserverStats;

/// The most recent events, newest first.
#[derive(Message)]
#[rtype(result = "Vec<Event>")]
pub struct RecentEvents {
    pub limit: usize,
}

pub struct ObserverActor {
    config: ObserverConfig,
    recent: VecDeque<Event>,
    stats: ObserverStats,
    /// Where kept events go next; `None` when Redis is not configured.
    publisher: Option<Recipient<Publish>>,
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
            config,
            stats,
            publisher,
        }
    }

    pub fn config(&self) -> &ObserverConfig {
        &self.config
    }

    fn sampled_out(&self, event: &Event) -> bool {
        self.config.sampling
            && event.severity == Severity::Info
            && self.config.sample_rate < 1.0
            && rand::random::<f64>() >= self.config.sample_rate
    }
}

impl Actor for ObserverActor {
    type Context = Context<Self>;
}

impl Handler<Emit> for ObserverActor {
    type Result = ();

    fn handle(&mut self, Emit(mut event): Emit, _ctx: &mut Self::Context) {
        self.stats.total_events += 1;
        if self.sampled_out(&event) {
            self.stats.dropped_by_sampling += 1;
            return;
        }

        event
            .details
            .insert("app".into(), self.config.app_name.clone().into());
        event.details.insert("pid".into(), self.config.pid.into());

        let type_name = event.event_type.as_str();
        *self
            .stats
            .events_by_type
            .entry(type_name.into())
            .or_default() += 1;
        *self
            .stats
            .events_by_backend
            .entry(event.backend.clone())
            .or_default() += 1;
        if event.severity >= Severity::Error {
            *self
                .stats
                .errors_by_backend
                .entry(event.backend.clone())
                .or_default() += 1;
        }

        if let Some(publisher) = &self.publisher {
            publisher.do_send(Publish::new(event.event_type.channel(), event.to_json()));
        }
        if self.config.max_events > 0 {
            if self.recent.len() == self.config.max_events {
                self.recent.pop_front();
            }
            self.recent.push_back(event);
        }
    }
}

impl Handler<EmitRouting> for ObserverActor {
    type Result = ();

    fn handle(&mut self, EmitRouting(event): EmitRouting, _ctx: &mut Self::Context) {
        *self
            .stats
            .routing_events
            .entry(event.event_type.as_str().into())
            .or_default() += 1;
        if let Some(publisher) = &self.publisher {
            let payload = event.to_json();
            publisher.do_send(Publish::stream_add(
                ROUTING_STREAM,
                "event",
                payload.clone(),
                ROUTING_STREAM_MAX_LEN,
            ));
            publisher.do_send(Publish::new(ROUTING_CHANNEL, payload));
        }
    }
}

impl Handler<GetObserverStats> for ObserverActor {
    type Result = MessageResult<GetObserverStats>;

    fn handle(&mut self, _: GetObserverStats, _ctx: &mut Self::Context) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.events_in_memory = self.recent.len();
        MessageResult(stats)
    }
}

impl Handler<RecentEvents> for ObserverActor {
    type Result = MessageResult<RecentEvents>;

    fn handle(&mut self, msg: RecentEvents, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.recent.iter().rev().take(msg.limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;

    #[test]
    fn config_reads_sollol_variables_and_keeps_defaults_on_bad_values() {
        let env = EnvSnapshot::from_vars([
            ("SOLLOL_APP_NAME", "indexer"),
            ("SOLLOL_OBSERVER_SAMPLING", "off"),
            ("SOLLOL_OBSERVER_SAMPLE_RATE", "7"),
        ]);
        let config = ObserverConfig::from_env(&env);
        assert_eq!(config.app_name, "indexer");
        assert!(!config.sampling);
        assert_eq!(config.sample_rate, 1.0);
        assert_eq!(
            ObserverConfig::from_env(&EnvSnapshot::default()).app_name,
            "sollol"
        );
    }

    #[test]
    fn stamps_app_and_pid_counts_and_keeps_a_bounded_ring() {
        let system = System::new();
        system.block_on(async {
            let config = ObserverConfig {
                app_name: "t".into(),
                pid: 42,
                max_events: 3,
                ..ObserverConfig::default()
            };
            let observer = ObserverActor::new(config, None).start();
            for i in 0..5 {
                let event =
                    Event::ollama_error(&format!("n{i}"), "m", "HTTP 500", Default::default());
                observer.do_send(Emit(event));
            }
            let stats = observer
                .send(GetObserverStats)
                .await
                .expect("observer alive");
            assert_eq!(stats.total_events, 5);
            assert_eq!(stats.events_in_memory, 3);
            assert_eq!(stats.events_by_type["ollama_error"], 5);
            assert_eq!(stats.errors_by_backend["n4"], 1);
            let recent = observer
                .send(RecentEvents { limit: 10 })
                .await
                .expect("alive");
            assert_eq!(recent.len(), 3);
            assert_eq!(recent[0].backend, "n4");
            assert_eq!(recent[0].details["app"], "t");
            assert_eq!(recent[0].details["pid"], 42);
            assert_eq!(recent[0].event_type, EventType::OllamaError);
        });
    }

    #[test]
    fn sampling_drops_only_info_events_and_counts_them() {
        let system = System::new();
        system.block_on(async {
            let config = ObserverConfig {
                sample_rate: 0.0,
                ..ObserverConfig::default()
            };
            let observer = ObserverActor::new(config, None).start();
            observer.do_send(Emit(Event::ollama_request("n", "m", "chat", false)));
            observer.do_send(Emit(Event::ollama_error(
                "n",
                "m",
                "boom",
                Default::default(),
            )));
            let stats = observer
                .send(GetObserverStats)
                .await
                .expect("observer alive");
            assert_eq!(stats.total_events, 2);
            assert_eq!(stats.dropped_by_sampling, 1);
            assert_eq!(stats.events_in_memory, 1);
        });
    }
}
