//! `sollol:router:metadata` and the registry of applications that use the cluster.
//!
//! A [`MetadataActor`] runs in each application (each gateway, each program embedding the
//! actors). Every `interval`, also when no request comes in, it
//!
//! 1. renews the application's registration: `SET sollol:application:<app_id> <json> EX
//!    <ttl>` and `ZADD sollol:applications <now> <app_id>`, so the registration expires
//!    on its own when the process stops without saying goodbye;
//! 2. reads the registry: members of `sollol:applications` seen within the TTL (older ones
//!    are trimmed), then their keys with one `MGET`; no `KEYS` scan anywhere;
//! 3. writes `sollol:router:metadata` with `EX <ttl>` in SOLLOL's shape: latency
//!    percentiles and success rate from the observer, per-node statistics, and the
//!    registered applications.
//!
//! The TTL is six intervals (30 s by default, as SOLLOL's). Writes go through the
//! [`RedisPublisher`]; reads use its connection and are skipped while Redis is down, when
//! the registry falls back to what was last read. [`Unregister`] removes the registration
//! at shutdown. Without Redis the actor still answers [`GetMetadata`] for the gateway's
//! own pages.

use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::event::epoch_seconds;
use crate::node::{Health, NodeHandle};
use crate::observer::{Analytics, GetAnalytics, ObserverActor};
use crate::redis_publisher::{Fetch, Publish, RedisCommand, RedisPublisher};

pub const METADATA_KEY: &str = "sollol:router:metadata";
/// Sorted set of registered application ids, scored by their last heartbeat.
pub const APPLICATIONS_KEY: &str = "sollol:applications";
/// Prefix of each application's own key (`sollol:application:<app_id>`).
pub const APPLICATION_KEY_PREFIX: &str = "sollol:application:";
/// Intervals a registration or the metadata outlives its last refresh.
const TTL_INTERVALS: u32 = 6;

/// One application as the registry and SOLLOL's dashboards know it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub app_id: String,
    pub name: String,
    pub router_type: String,
    pub version: String,
    pub hostname: String,
    pub pid: u32,
    /// Epoch seconds.
    pub started_at: f64,
    pub last_heartbeat: f64,
    #[serde(default)]
    pub metadata: Value,
}

impl Application {
    /// This process as an application named `name` (`SOLLOL_APP_NAME`).
    pub fn this_process(name: &str, version: &str, metadata: Value) -> Self {
        let hostname = crate::clock::hostname();
        let pid = std::process::id();
        let slug: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let now = epoch_seconds();
        Self {
            app_id: format!("{slug}-{hostname}-{pid}"),
            name: name.to_string(),
            router_type: "sollol".into(),
            version: version.to_string(),
            hostname,
            pid,
            started_at: now,
            last_heartbeat: now,
            metadata,
        }
    }

    pub fn key(&self) -> String {
        format!("{APPLICATION_KEY_PREFIX}{}", self.app_id)
    }
}

#[derive(Debug, Clone)]
pub struct MetadataConfig {
    /// Time between refreshes (`SOLLOL_METADATA_INTERVAL_MS`, default 5 s).
    pub interval: Duration,
    /// `ollama_pool.strategy` in the metadata.
    pub strategy: String,
}

impl MetadataConfig {
    pub fn new(interval: Duration, strategy: impl Into<String>) -> Self {
        Self {
            interval,
            strategy: strategy.into(),
        }
    }

    /// How long the metadata and a registration live after their last refresh.
    pub fn ttl(&self) -> Duration {
        (self.interval * TTL_INTERVALS).max(Duration::from_secs(1))
    }
}

/// The metadata document as it is published now.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct GetMetadata;

/// Removes this application's registration; answers once the commands are queued (send
/// [`Flush`](crate::redis_publisher::Flush) to the publisher after it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister;

pub struct MetadataActor {
    config: MetadataConfig,
    me: Application,
    observer: Addr<ObserverActor>,
    nodes: Vec<NodeHandle>,
    publisher: Option<Addr<RedisPublisher>>,
    /// Other applications, as last read from the registry.
    others: Vec<Application>,
    refreshing: bool,
    unregistered: bool,
}

impl MetadataActor {
    pub fn new(
        config: MetadataConfig,
        me: Application,
        observer: Addr<ObserverActor>,
        nodes: Vec<NodeHandle>,
        publisher: Option<Addr<RedisPublisher>>,
    ) -> Self {
        Self {
            config,
            me,
            observer,
            nodes,
            publisher,
            others: Vec::new(),
            refreshing: false,
            unregistered: false,
        }
    }

    fn ttl_secs(&self) -> u64 {
        self.config.ttl().as_secs_f64().ceil() as u64
    }

    fn heartbeat(&mut self) {
        let now = epoch_seconds();
        self.me.last_heartbeat = now;
        let Some(publisher) = &self.publisher else {
            return;
        };
        let payload = serde_json::to_string(&self.me).unwrap_or_default();
        publisher.do_send(Publish(vec![
            RedisCommand::SetEx {
                key: self.me.key().into(),
                payload,
                ttl_secs: self.ttl_secs(),
            },
            RedisCommand::SortedSetAdd {
                key: APPLICATIONS_KEY.into(),
                member: self.me.app_id.clone(),
                score: now,
            },
            RedisCommand::SortedSetTrim {
                key: APPLICATIONS_KEY.into(),
                below: now - self.config.ttl().as_secs_f64(),
            },
        ]));
    }

    fn refresh(&mut self, ctx: &mut Context<Self>) {
        if self.refreshing || self.unregistered {
            return;
        }
        self.refreshing = true;
        self.heartbeat();
        let observer = self.observer.clone();
        let publisher = self.publisher.clone();
        let since = epoch_seconds() - self.config.ttl().as_secs_f64();
        let work = async move {
            let analytics = observer.send(GetAnalytics).await.unwrap_or_default();
            let registry = match &publisher {
                Some(publisher) => read_registry(publisher, since).await,
                None => None,
            };
            (analytics, registry)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |(analytics, registry), act, _ctx| {
                    act.refreshing = false;
                    match registry {
                        Some(apps) => act.others = apps,
                        None => act.others.retain(|app| app.last_heartbeat >= since),
                    }
                    act.others.retain(|app| app.app_id != act.me.app_id);
                    if let (Some(publisher), false) = (&act.publisher, act.unregistered) {
                        let document = act.document(&analytics).to_string();
                        publisher.do_send(Publish::set_ex(METADATA_KEY, document, act.ttl_secs()));
                    }
                }),
        );
    }

    /// This application first, then the others that are registered.
    fn applications(&self) -> Vec<&Application> {
        std::iter::once(&self.me).chain(&self.others).collect()
    }

    /// SOLLOL's metadata shape, with sollol's extra node fields (`state`, models).
    fn document(&self, analytics: &Analytics) -> Value {
        let nodes: Vec<Value> = self.nodes.iter().map(node_entry).collect();
        let applications: Vec<Value> = self
            .applications()
            .into_iter()
            .map(|app| {
                json!({
                    "app_id": app.app_id,
                    "name": app.name,
                    "router_type": app.router_type,
                    "version": app.version,
                    "hostname": app.hostname,
                    "pid": app.pid,
                    "started_at": app.started_at,
                    "last_heartbeat": app.last_heartbeat,
                    "status": "active",
                })
            })
            .collect();
        json!({
            "source": self.me.app_id,
            "app_name": self.me.name,
            "metrics": {
                "analytics": analytics,
                "ollama_pool": {
                    "nodes_configured": self.nodes.len(),
                    "strategy": self.config.strategy,
                    "http2_enabled": false,
                    "dask_enabled": false,
                },
                "total_pools": self.nodes.len(),
            },
            "nodes": nodes,
            "applications": applications,
            "timestamp": epoch_seconds(),
        })
    }
}

fn node_entry(node: &NodeHandle) -> Value {
    let status = node.status();
    let success_rate = if status.requests == 0 {
        1.0
    } else {
        (status.requests - status.failures) as f64 / status.requests as f64
    };
    json!({
        "url": status.url,
        "host": status.node,
        "available": status.state == Health::Healthy,
        "state": status.state,
        "latency_ms": status.latency_ms.unwrap_or(0.0),
        "success_rate": success_rate,
        "total_requests": status.requests,
        "failed_requests": status.failures,
        "gpu_free_mem": 0,
        "active_requests": status.in_flight,
        "priority": 0,
        "models": status.models,
        "loaded_models": status.loaded_models,
        "version": status.version,
    })
}

/// Applications registered since `since` (epoch seconds); `None` when Redis cannot be read.
async fn read_registry(publisher: &Addr<RedisPublisher>, since: f64) -> Option<Vec<Application>> {
    let mut members = redis::pipe();
    members
        .cmd("ZRANGEBYSCORE")
        .arg(APPLICATIONS_KEY)
        .arg(since)
        .arg("+inf");
    let ids: Vec<String> = match publisher.send(Fetch(members)).await {
        Ok(Ok(mut replies)) if !replies.is_empty() => {
            redis::from_redis_value(replies.swap_remove(0)).ok()?
        }
        _ => return None,
    };
    if ids.is_empty() {
        return Some(Vec::new());
    }
    let mut values = redis::pipe();
    let keys: Vec<String> = ids
        .iter()
        .map(|id| format!("{APPLICATION_KEY_PREFIX}{id}"))
        .collect();
    values.cmd("MGET").arg(keys);
    let texts: Vec<Option<String>> = match publisher.send(Fetch(values)).await {
        Ok(Ok(mut replies)) if !replies.is_empty() => {
            redis::from_redis_value(replies.swap_remove(0)).ok()?
        }
        _ => return None,
    };
    Some(
        texts
            .into_iter()
            .flatten()
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect(),
    )
}

impl Actor for MetadataActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.refresh(ctx);
        ctx.run_interval(self.config.interval, |act, ctx| act.refresh(ctx));
    }
}

impl Handler<GetMetadata> for MetadataActor {
    type Result = ResponseActFuture<Self, Value>;

    fn handle(&mut self, _: GetMetadata, _ctx: &mut Self::Context) -> Self::Result {
        let analytics = self.observer.send(GetAnalytics);
        Box::pin(
            async move { analytics.await.unwrap_or_default() }
                .into_actor(self)
                .map(|analytics, act, _ctx| act.document(&analytics)),
        )
    }
}

impl Handler<Unregister> for MetadataActor {
    type Result = ();

    fn handle(&mut self, _: Unregister, _ctx: &mut Self::Context) {
        self.unregistered = true;
        if let Some(publisher) = &self.publisher {
            publisher.do_send(Publish(vec![
                RedisCommand::Del {
                    key: self.me.key().into(),
                },
                RedisCommand::SortedSetRemove {
                    key: APPLICATIONS_KEY.into(),
                    member: self.me.app_id.clone(),
                },
            ]));
        }
        tracing::info!(app_id = %self.me.app_id, "application unregistered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::ObserverConfig;

    #[test]
    fn metadata_has_sollols_shape_without_redis() {
        System::new().block_on(async {
            let observer = ObserverActor::new(ObserverConfig::default(), None).start();
            let me = Application::this_process("My App", "0.1.0", json!({"nodes": 0}));
            assert!(me.app_id.starts_with("my_app-"), "{}", me.app_id);
            let config = MetadataConfig::new(Duration::from_secs(5), "round_robin");
            assert_eq!(config.ttl(), Duration::from_secs(30));
            let actor = MetadataActor::new(config, me, observer, Vec::new(), None).start();
            let document = actor.send(GetMetadata).await.expect("alive");
            assert_eq!(document["app_name"], "My App");
            let analytics = &document["metrics"]["analytics"];
            for key in [
                "p50_latency_ms",
                "p95_latency_ms",
                "p99_latency_ms",
                "success_rate",
                "avg_duration_ms",
                "total_requests",
                "successful_requests",
            ] {
                assert!(analytics.get(key).is_some(), "{key} in {analytics}");
            }
            assert_eq!(document["applications"][0]["name"], "My App");
            assert_eq!(document["nodes"], json!([]));
        });
    }
}
