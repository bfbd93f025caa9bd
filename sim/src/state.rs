//! The mutable state of one node: which models it has, which are resident, and the request
//! counters.
//!
//! Everything sits behind `std::sync::Mutex`es whose guards never live across an `.await`:
//! every method here is synchronous, and handlers sleep only after it returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::catalog::{self, ModelEntry};
use crate::clock;
use crate::config::SimConfig;
use crate::keep_alive::{self, KeepAlive};
use crate::stats::SimStats;

/// A handle to one simulated node, cheap to clone and shared by all its workers.
#[derive(Debug, Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SimConfig,
    models: Mutex<Models>,
    stats: Mutex<SimStats>,
    /// The status inference requests fail with now, if any.
    fail_status: Mutex<Option<u16>>,
    /// Digests of the blobs uploaded to this node.
    blobs: Mutex<std::collections::HashSet<String>>,
    /// Generation slots when `parallel` is set.
    slots: Option<Arc<tokio::sync::Semaphore>>,
}

#[derive(Debug, Default)]
struct Models {
    /// Every model the node has, in no particular order.
    catalog: Vec<ModelEntry>,
    /// Resident models by key.
    resident: HashMap<String, Resident>,
}

/// A model held in memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resident {
    /// When it leaves memory, in Unix nanoseconds; `None` is never.
    pub(crate) expires_nanos: Option<i128>,
    /// When its (simulated) load finishes; requests wait until then.
    ready_at: Instant,
    pub(crate) context_length: u64,
}

impl Resident {
    fn alive(&self, now_nanos: i128) -> bool {
        self.expires_nanos.is_none_or(|expires| expires > now_nanos)
    }
}

/// What using a model cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// How long the request must still wait for the model to be ready.
    pub(crate) wait: Duration,
    /// Whether this request started the load.
    pub(crate) started: bool,
}

impl Sim {
    /// A node with the models and resident set of `config`.
    pub fn new(config: SimConfig) -> Self {
        let mut models = Models::default();
        for name in config.models.iter().chain(&config.loaded) {
            models.add(name);
        }

        let now = Instant::now();
        let expires_nanos = Some(clock::now_nanos() + keep_alive::DEFAULT.as_nanos() as i128);
        for name in &config.loaded {
            let Some(entry) = models.find(name).cloned() else {
                continue;
            };
            let context_length = entry.profile(config.embedding_dim).context_length;
            let resident = Resident {
                expires_nanos,
                ready_at: now,
                context_length: context_length.min(4096),
            };
            models.resident.insert(entry.key, resident);
        }

        Self {
            inner: Arc::new(Inner {
                fail_status: Mutex::new(config.fail_status),
                slots: config
                    .parallel
                    .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1)))),
                config,
                models: Mutex::new(models),
                stats: Mutex::new(SimStats::default()),
                blobs: Mutex::new(std::collections::HashSet::new()),
            }),
        }
    }

    /// Waits for a generation slot when the node's parallelism is limited.
    pub(crate) async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slots = self.inner.slots.clone()?;
        slots.acquire_owned().await.ok()
    }

    /// The status inference requests fail with now, if any.
    pub fn fail_status(&self) -> Option<u16> {
        *lock(&self.inner.fail_status)
    }

    /// Makes inference requests fail with `status` (or succeed again with `None`).
    pub fn set_fail_status(&self, status: Option<u16>) {
        *lock(&self.inner.fail_status) = status;
    }

    /// Stores a blob's digest; returns whether it was new.
    pub(crate) fn store_blob(&self, digest: &str) -> bool {
        lock(&self.inner.blobs).insert(digest.replacen("sha256-", "sha256:", 1))
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        lock(&self.inner.blobs).contains(&digest.replacen("sha256-", "sha256:", 1))
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// A copy of the request counters, as `GET /sim/stats` reports them.
    pub fn stats(&self) -> SimStats {
        lock(&self.inner.stats).clone()
    }

    /// Names of the models the node has now (with tags), sorted.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<_> = lock(&self.inner.models)
            .catalog
            .iter()
            .map(|entry| entry.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Names of the resident models (with tags), sorted.
    pub fn resident_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self
            .running()
            .into_iter()
            .map(|(entry, _)| entry.name)
            .collect();
        names.sort();
        names
    }

    pub(crate) fn record(&self, method: &str, path: &str, host: &str) {
        lock(&self.inner.stats).record(method, path, host);
    }

    pub(crate) fn find(&self, name: &str) -> Option<ModelEntry> {
        lock(&self.inner.models).find(name).cloned()
    }

    /// All models, most recently modified first.
    pub(crate) fn catalog(&self) -> Vec<ModelEntry> {
        let mut entries = lock(&self.inner.models).catalog.clone();
        let dim = self.inner.config.embedding_dim;
        entries.sort_by_cached_key(|entry| std::cmp::Reverse(entry.profile(dim).modified_nanos));
        entries
    }

    /// Resident models, the one that stays longest first.
    pub(crate) fn running(&self) -> Vec<(ModelEntry, Resident)> {
        let now_nanos = clock::now_nanos();
        let mut models = lock(&self.inner.models);
        models
            .resident
            .retain(|_, resident| resident.alive(now_nanos));

        let mut running: Vec<_> = models
            .catalog
            .iter()
            .filter_map(|entry| Some((entry.clone(), *models.resident.get(&entry.key)?)))
            .collect();
        running.sort_by_key(|(_, resident)| {
            std::cmp::Reverse(resident.expires_nanos.unwrap_or(i128::MAX))
        });
        running
    }

    /// Marks `entry` as used now: loads it if it is not resident and restarts its keep-alive.
    pub(crate) fn touch(
        &self,
        entry: &ModelEntry,
        keep_alive: KeepAlive,
        num_ctx: Option<u64>,
    ) -> Load {
        let now = Instant::now();
        let now_nanos = clock::now_nanos();
        let expires_nanos = keep_alive
            .duration()
            .map(|duration| now_nanos + duration.as_nanos() as i128);
        let default_context = entry
            .profile(self.inner.config.embedding_dim)
            .context_length
            .min(4096);

        let mut models = lock(&self.inner.models);
        let current = models
            .resident
            .get(&entry.key)
            .filter(|resident| resident.alive(now_nanos))
            .copied();
        let (resident, started) = match current {
            Some(resident) => (resident, false),
            None => {
                let resident = Resident {
                    expires_nanos,
                    ready_at: now + self.inner.config.load_delay,
                    context_length: num_ctx.unwrap_or(default_context),
                };
                (resident, true)
            }
        };
        let resident = Resident {
            expires_nanos,
            context_length: num_ctx.unwrap_or(resident.context_length),
            ..resident
        };
        models.resident.insert(entry.key.clone(), resident);

        Load {
            wait: resident.ready_at.saturating_duration_since(now),
            started,
        }
    }

    /// Drops `entry` from memory.
    pub(crate) fn unload(&self, entry: &ModelEntry) {
        lock(&self.inner.models).resident.remove(&entry.key);
    }

    /// Adds a model (as a pull does) and returns its entry; an existing model is kept as is.
    pub(crate) fn add(&self, name: &str) -> Option<ModelEntry> {
        lock(&self.inner.models).add(name)
    }

    /// Removes a model and unloads it. Returns whether it existed.
    pub(crate) fn remove(&self, name: &str) -> bool {
        let mut models = lock(&self.inner.models);
        let Some(key) = catalog::key_of(name) else {
            return false;
        };
        let before = models.catalog.len();
        models.catalog.retain(|entry| entry.key != key);
        models.resident.remove(&key);
        models.catalog.len() != before
    }

    /// Copies `source` to `destination`, which gets the source's details. Returns `false` when
    /// the source does not exist.
    pub(crate) fn copy(&self, source: &ModelEntry, destination: &str) -> bool {
        let mut models = lock(&self.inner.models);
        let Some(mut copy) = ModelEntry::new(destination) else {
            return false;
        };
        copy.origin = source.origin.clone();
        models.catalog.retain(|entry| entry.key != copy.key);
        models.catalog.push(copy);
        true
    }
}

impl Models {
    fn find(&self, name: &str) -> Option<&ModelEntry> {
        let key = catalog::key_of(name)?;
        self.catalog.iter().find(|entry| entry.key == key)
    }

    fn add(&mut self, name: &str) -> Option<ModelEntry> {
        if let Some(existing) = self.find(name) {
            return Some(existing.clone());
        }
        let entry = ModelEntry::new(name)?;
        self.catalog.push(entry.clone());
        Some(entry)
    }
}

/// Locks `mutex`, ignoring poisoning: every critical section here leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(models: &[&str], loaded: &[&str]) -> Sim {
        Sim::new(SimConfig {
            models: models.iter().map(|name| (*name).to_owned()).collect(),
            loaded: loaded.iter().map(|name| (*name).to_owned()).collect(),
            ..SimConfig::default()
        })
    }

    #[test]
    fn loaded_models_are_resident_and_added() {
        let sim = sim(&["llama3.2"], &["Mistral"]);
        assert_eq!(sim.model_names(), ["Mistral:latest", "llama3.2:latest"]);
        assert_eq!(sim.resident_names(), ["Mistral:latest"]);
    }

    #[test]
    fn touching_loads_once_and_zero_keep_alive_expires() {
        let sim = sim(&["llama3.2"], &[]);
        let entry = sim.find("LLAMA3.2:latest").expect("case-insensitive match");

        assert!(sim.touch(&entry, KeepAlive::Default, None).started);
        assert!(!sim.touch(&entry, KeepAlive::Default, None).started);
        assert_eq!(sim.resident_names(), ["llama3.2:latest"]);

        sim.touch(&entry, KeepAlive::For(Duration::ZERO), None);
        assert!(sim.resident_names().is_empty());
    }

    #[test]
    fn copy_and_remove() {
        let sim = sim(&["llama3.2"], &[]);
        let source = sim.find("llama3.2").expect("exists");
        assert!(sim.copy(&source, "backup"));
        let copy = sim.find("backup").expect("copied");
        assert_eq!(copy.profile(8).digest, source.profile(8).digest);
        assert!(sim.remove("backup:latest"));
        assert!(!sim.remove("backup"));
    }
}
