//! What every gateway handler shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::Addr;
use serde::Serialize;
use sollol_actors::metadata::MetadataActor;
use sollol_actors::metrics::Metrics;
use sollol_actors::node::NodeHandle;
use sollol_actors::observer::{EventSink, ObserverActor};
use sollol_actors::redis_publisher::RedisPublisher;
use sollol_actors::router::RouterHandle;
use sollol_actors::supervisor::SupervisorHandle;

use crate::cluster::{Cluster, Telemetry};
use crate::config::Settings;

pub struct AppState {
    pub router: RouterHandle,
    pub nodes: Vec<NodeHandle>,
    pub observer: Addr<ObserverActor>,
    /// The request path's events go here rather than to `observer` one message each.
    pub events: EventSink,
    pub publisher: Option<Addr<RedisPublisher>>,
    pub metrics: Metrics,
    /// Builds `sollol:router:metadata`; `None` only in a gateway that was not announced.
    pub metadata: Option<Addr<MetadataActor>>,
    pub workers: Option<SupervisorHandle>,
    pub settings: Arc<Settings>,
    pub started: Instant,
    pub counts: Mutex<RequestCounts>,
    /// Which node holds each blob uploaded through the gateway (digest to `host:port`).
    blobs: Mutex<HashMap<String, String>>,
    pub batch_jobs: super::jobs::BatchJobs,
}

/// Blobs remembered at most; past this the oldest half is forgotten.
const MAX_BLOBS: usize = 10_000;

impl AppState {
    pub fn new(
        settings: Arc<Settings>,
        cluster: &Cluster,
        telemetry: &Telemetry,
        workers: Option<SupervisorHandle>,
    ) -> Self {
        Self {
            router: cluster.router.clone(),
            nodes: cluster.nodes.clone(),
            observer: telemetry.observer.clone(),
            events: telemetry.events.clone(),
            publisher: telemetry.publisher.clone(),
            metrics: telemetry.metrics.clone(),
            metadata: telemetry.metadata.clone(),
            workers,
            settings,
            started: Instant::now(),
            counts: Mutex::new(RequestCounts::default()),
            blobs: Mutex::new(HashMap::new()),
            batch_jobs: super::jobs::BatchJobs::new(),
        }
    }

    /// The node holding the first of `digests` that the gateway has seen.
    pub fn blob_node(&self, digests: &[String]) -> Option<String> {
        let blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        digests
            .iter()
            .find_map(|digest| blobs.get(&normalize_digest(digest)).cloned())
    }

    pub fn remember_blob(&self, digest: &str, node: &str) {
        let mut blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        if blobs.len() >= MAX_BLOBS {
            let forget: Vec<String> = blobs.keys().take(MAX_BLOBS / 2).cloned().collect();
            for key in forget {
                blobs.remove(&key);
            }
        }
        blobs.insert(normalize_digest(digest), node.to_string());
    }

    /// Counts one finished request; `node` is `None` when no node was reached.
    pub fn count(&self, node: Option<&str>, status: u16) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total += 1;
        *counts.by_status.entry(status).or_default() += 1;
        let node = node.unwrap_or("none");
        match counts.by_node.get_mut(node) {
            Some(count) => *count += 1,
            None => {
                counts.by_node.insert(node.to_string(), 1);
            }
        }
    }
}

/// Routed requests by node and by final status; served by `/sollol/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestCounts {
    pub total: u64,
    pub by_node: BTreeMap<String, u64>,
    /// Keyed by status code (written as a string in JSON).
    pub by_status: BTreeMap<u16, u64>,
}

/// `sha256:abc` and `sha256-abc` name the same blob.
fn normalize_digest(digest: &str) -> String {
    digest
        .replacen("sha256-", "sha256:", 1)
        .to_ascii_lowercase()
}
