//! Starting the actors a sollol process runs: telemetry (observer and Redis publisher)
//! and the cluster (one node actor per Ollama server, and the router).
//!
//! The gateway and every worker process start the same pieces from their own
//! [`Settings`], so a worker observes and routes exactly as the gateway does.

use std::time::Duration;

use actix::prelude::*;
use serde_json::json;
use sollol_actors::dashboard_client::{DashboardClient, DashboardClientConfig};
use sollol_actors::metadata::{Application, MetadataActor, MetadataConfig, Unregister};
use sollol_actors::metrics::Metrics;
use sollol_actors::node::{
    parse_node_url, BreakerSettings, CheckNow, NodeActor, NodeHandle, NodeLimits, NodeSettings,
    NodeUrlError,
};
use sollol_actors::observer::{Emit, EventSink, FlushEvents, ObserverActor, ObserverConfig};
use sollol_actors::redis_feed::{self, OwnProcess};
use sollol_actors::redis_publisher::{Flush, PublisherConfig, PublisherError, RedisPublisher};
use sollol_actors::router::{RouterActor, RouterHandle, RouterSettings};
use sollol_actors::EnvSnapshot;

use crate::config::Settings;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Node(#[from] NodeUrlError),
    #[error(transparent)]
    Redis(#[from] PublisherError),
    #[error("cannot build the http client: {0}")]
    HttpClient(String),
}

/// The observer, its metrics and, when Redis is configured, its publisher; once
/// [`announced`](Telemetry::announce), also the metadata publisher, the live feed from
/// Redis and the optional dashboard registration.
#[derive(Clone)]
pub struct Telemetry {
    pub observer: Addr<ObserverActor>,
    /// The request path's way to the observer (buffered, no message per event).
    pub events: EventSink,
    pub publisher: Option<Addr<RedisPublisher>>,
    pub metrics: Metrics,
    pub metadata: Option<Addr<MetadataActor>>,
    dashboard: Option<Addr<DashboardClient>>,
}

impl Telemetry {
    /// Starts the observer, configured once from `env` (`SOLLOL_OBSERVER_*`,
    /// `SOLLOL_SLOW_*`) and the settings' application name.
    pub fn start(settings: &Settings, env: &EnvSnapshot) -> Result<Self, StartError> {
        let metrics = Metrics::new();
        let publisher = match &settings.redis_url {
            Some(url) => {
                let mut config = PublisherConfig::new(url.clone());
                config.max_backlog = settings.redis_max_backlog;
                let publisher = RedisPublisher::new(config)?.with_metrics(metrics.clone());
                Some(publisher.start())
            }
            None => None,
        };
        let mut config = ObserverConfig::from_env(env);
        config.app_name = settings.app_name.clone();
        config.sampling = settings.observer_sampling.unwrap_or(config.sampling);
        config.sample_rate = settings.observer_sample_rate.unwrap_or(config.sample_rate);
        config.max_events = settings.observer_max_events.unwrap_or(config.max_events);
        tracing::info!(
            app = %config.app_name,
            sampling = config.sampling,
            sample_rate = config.sample_rate,
            slow_response_ms = config.rules.slow_response.as_millis() as u64,
            redis = ?settings.redis_url.as_ref().map(ToString::to_string),
            "observer started"
        );
        let (observer, events) = ObserverActor::new(config, publisher.clone().map(Addr::recipient))
            .with_metrics(metrics.clone())
            .start_with_sink();
        Ok(Self {
            observer,
            events,
            publisher,
            metrics,
            metadata: None,
            dashboard: None,
        })
    }

    pub fn emitter(&self) -> Recipient<Emit> {
        self.observer.clone().recipient()
    }

    /// Makes this process known as an application: registration and metadata in Redis,
    /// the live feed of other processes' events, node gauges in the metrics, and the
    /// dashboard registration when `dashboard_url` is set. Worker processes do not call
    /// this: they are part of their gateway.
    pub fn announce(&mut self, settings: &Settings, cluster: &Cluster) {
        self.metrics.track_nodes(cluster.nodes.clone());
        let app = Application::this_process(
            &settings.app_name,
            env!("CARGO_PKG_VERSION"),
            json!({
                "nodes": cluster.nodes.len(),
                "strategy": settings.strategy.as_str(),
                "workers": settings.workers,
            }),
        );
        if let Some(url) = &settings.dashboard_url {
            let mut config = DashboardClientConfig::new(url.clone());
            config.heartbeat_interval = settings.metadata_interval;
            self.dashboard = Some(DashboardClient::new(config, app.clone()).start());
        }
        if let Some(url) = &settings.redis_url {
            let own = OwnProcess {
                app: settings.app_name.clone(),
                pid: app.pid,
                hostname: app.hostname.clone(),
            };
            redis_feed::spawn(url.clone(), self.observer.clone(), own);
        }
        tracing::info!(app_id = %app.app_id, interval_ms = settings.metadata_interval.as_millis() as u64, "application registered");
        let config = MetadataConfig::new(settings.metadata_interval, settings.strategy.as_str());
        let metadata = MetadataActor::new(
            config,
            app,
            self.observer.clone(),
            cluster.nodes.clone(),
            self.publisher.clone(),
        );
        self.metadata = Some(metadata.start());
    }

    /// Says goodbye (registration removed, dashboard told), then flushes what waits
    /// for Redis. Bounded, so a dead Redis or dashboard cannot hold up shutdown.
    pub async fn shutdown(&self) {
        let goodbyes = async {
            if let Some(metadata) = &self.metadata {
                let _ = metadata.send(Unregister).await;
            }
            if let Some(dashboard) = &self.dashboard {
                let _ = dashboard.send(Unregister).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), goodbyes).await;
        self.flush().await;
    }

    /// Writes what waits for Redis; bounded so a dead Redis cannot hold up shutdown.
    pub async fn flush(&self) {
        let events = tokio::time::timeout(Duration::from_secs(3), self.observer.send(FlushEvents));
        let _ = events.await;
        if let Some(publisher) = &self.publisher {
            let flushed = tokio::time::timeout(Duration::from_secs(3), publisher.send(Flush)).await;
            if let Ok(Ok(count)) = flushed {
                tracing::debug!(messages = count, "final redis flush");
            }
        }
    }
}

/// The router and one node actor per configured Ollama server.
#[derive(Clone)]
pub struct Cluster {
    /// Places requests on the calling thread when a node has room; `router.addr` is the
    /// actor, for the other messages.
    pub router: RouterHandle,
    pub nodes: Vec<NodeHandle>,
    node_actors: Vec<Addr<NodeActor>>,
}

impl Cluster {
    pub fn start(settings: &Settings, observer: &Addr<ObserverActor>) -> Result<Self, StartError> {
        let emitter: Recipient<Emit> = observer.clone().recipient();
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|err| StartError::HttpClient(err.to_string()))?;
        let limits = NodeLimits {
            capacity: settings.node_capacity,
            breaker: BreakerSettings {
                threshold: settings.breaker_threshold,
                base_cooldown: settings.breaker_cooldown,
                max_cooldown: settings.breaker_cooldown * 30,
            },
        };
        let mut nodes: Vec<NodeHandle> = Vec::new();
        for address in &settings.nodes {
            let url = parse_node_url(address)?;
            let node =
                NodeHandle::with_limits(url, client.clone(), Some(emitter.clone()), limits.clone());
            if nodes.iter().all(|known| known.key() != node.key()) {
                nodes.push(node);
            }
        }
        let node_settings = NodeSettings {
            health_interval: settings.health_interval,
            health_timeout: settings.health_timeout,
        };
        let node_actors = nodes
            .iter()
            .map(|node| NodeActor::new(node.clone(), node_settings.clone()).start())
            .collect();
        let router_settings = RouterSettings {
            strategy: settings.strategy,
            queue_max: settings.queue_max,
            queue_timeout: settings.queue_timeout,
            aging: settings.priority_aging,
            affinity_capacity: settings.affinity_max,
            affinity_ttl: settings.affinity_ttl,
            ..RouterSettings::default()
        };
        let router = RouterActor::with_settings(
            nodes.clone(),
            router_settings,
            Some(observer.clone().recipient()),
        )
        .with_events(observer.clone().recipient())
        .start_with_handle();
        Ok(Self {
            router,
            nodes,
            node_actors,
        })
    }

    /// Checks every node now, in parallel; returns how many are healthy.
    pub async fn check_all(&self) -> usize {
        let checks = self.node_actors.iter().map(|actor| actor.send(CheckNow));
        futures_util::future::join_all(checks).await;
        self.nodes.iter().filter(|node| node.is_available()).count()
    }
}
