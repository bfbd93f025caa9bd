//! Settings, from built-in defaults < a TOML file (`--config`) < `SOLLOL_*` environment
//! variables < command-line flags.
//!
//! The environment is read from an [`EnvSnapshot`], never from globals, so a worker
//! process reads exactly the snapshot its supervisor gave it and tests need no
//! `set_var`. Every bound has a default and a setting that names it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sollol_actors::router::Strategy;
use sollol_actors::{EnvSnapshot, RedactedUrl};

/// Where clients reach the gateway unless told otherwise: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";
/// The node used when none is configured and `OLLAMA_HOST` is not set.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:11434";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("setting `strategy`: {0}")]
    Strategy(#[from] sollol_actors::router::UnknownStrategy),
    #[error("setting `{setting}` must be greater than zero")]
    Zero { setting: &'static str },
    #[error("unknown setting `{key}` in {file}; known settings: {known}")]
    UnknownSetting {
        key: String,
        file: String,
        known: String,
    },
    #[error("setting `{setting}`: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

/// Values given on the command line; `None` leaves the lower layers in charge.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub bind: Option<String>,
    pub nodes: Vec<String>,
    pub workers: Option<usize>,
    pub strategy: Option<String>,
    pub redis_url: Option<String>,
    pub app_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawSettings {
    bind: String,
    port: Option<u16>,
    nodes: Vec<String>,
    workers: usize,
    strategy: String,
    redis_url: Option<String>,
    app_name: String,
    max_body_bytes: usize,
    server_threads: usize,
    health_interval_ms: u64,
    health_timeout_ms: u64,
    connect_timeout_ms: u64,
    batch_chunk_size: usize,
    batch_max_inputs: usize,
    job_timeout_secs: u64,
    handshake_timeout_ms: u64,
    log_format: String,
    node_capacity: usize,
    queue_max: usize,
    queue_timeout_ms: u64,
    priority_aging_ms: u64,
    attempts: usize,
    ttfb_timeout_ms: u64,
    idle_timeout_ms: u64,
    breaker_threshold: u32,
    breaker_cooldown_ms: u64,
    affinity_max: usize,
    affinity_ttl_secs: u64,
    pull_to_all: bool,
    max_blob_bytes: u64,
    origins: Vec<String>,
    worker_memory_mb: u64,
    #[serde(default)]
    observer_sampling: Option<bool>,
    #[serde(default)]
    observer_sample_rate: Option<f64>,
    #[serde(default)]
    observer_max_events: Option<usize>,
    metadata_interval_ms: u64,
    redis_max_backlog: usize,
    dashboard_url: Option<String>,
    #[serde(default)]
    worker_env: BTreeMap<String, String>,
}

/// Every setting a TOML file may name.
const KNOWN_SETTINGS: &[&str] = &[
    "bind",
    "port",
    "nodes",
    "workers",
    "strategy",
    "redis_url",
    "app_name",
    "max_body_bytes",
    "server_threads",
    "health_interval_ms",
    "health_timeout_ms",
    "connect_timeout_ms",
    "batch_chunk_size",
    "batch_max_inputs",
    "job_timeout_secs",
    "handshake_timeout_ms",
    "log_format",
    "node_capacity",
    "queue_max",
    "queue_timeout_ms",
    "priority_aging_ms",
    "attempts",
    "ttfb_timeout_ms",
    "idle_timeout_ms",
    "breaker_threshold",
    "breaker_cooldown_ms",
    "affinity_max",
    "affinity_ttl_secs",
    "pull_to_all",
    "max_blob_bytes",
    "origins",
    "observer_sampling",
    "observer_sample_rate",
    "observer_max_events",
    "worker_env",
    "worker_memory_mb",
    "metadata_interval_ms",
    "redis_max_backlog",
    "dashboard_url",
];

/// The resolved settings of a gateway or worker process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: String,
    /// Node addresses as given (parsed later, when the nodes start).
    pub nodes: Vec<String>,
    pub workers: usize,
    pub strategy: Strategy,
    pub redis_url: Option<RedactedUrl>,
    pub app_name: String,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Threads serving HTTP; 0 means one per CPU core.
    pub server_threads: usize,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub connect_timeout: Duration,
    /// Inputs per job when a batch is split over the workers.
    pub batch_chunk_size: usize,
    /// Most inputs one batch request may carry.
    pub batch_max_inputs: usize,
    pub job_timeout: Duration,
    pub handshake_timeout: Duration,
    /// `text` or `json`.
    pub log_format: String,
    /// Requests each node serves at once; more wait in the admission queue.
    pub node_capacity: usize,
    /// Requests that may wait for a slot; more get 429.
    pub queue_max: usize,
    /// Longest wait for a slot; then 503.
    pub queue_timeout: Duration,
    /// A waiting request gains one priority point per this much waiting.
    pub priority_aging: Duration,
    /// Nodes tried per request before the client is told it failed.
    pub attempts: usize,
    /// Longest wait for a node's first byte (a model load can take minutes).
    pub ttfb_timeout: Duration,
    /// Longest silence between two chunks of a node's answer.
    pub idle_timeout: Duration,
    /// Consecutive failures that open a node's circuit breaker.
    pub breaker_threshold: u32,
    /// First cooldown of an open breaker (doubles on each failed probe).
    pub breaker_cooldown: Duration,
    pub affinity_max: usize,
    pub affinity_ttl: Duration,
    /// Send `/api/pull` to every node (with each node's progress) instead of one.
    pub pull_to_all: bool,
    /// Largest blob upload accepted (`/api/blobs`).
    pub max_blob_bytes: u64,
    /// Browser origins allowed on top of the local ones (`*` for any); `OLLAMA_ORIGINS`
    /// is read too, as Ollama users set it.
    pub origins: Vec<String>,
    /// A worker whose resident set grows past this is replaced after its current jobs;
    /// 0 sets no limit.
    pub worker_memory_mb: u64,
    /// Time between refreshes of `sollol:router:metadata` and of the application's
    /// registration (which both live six intervals).
    pub metadata_interval: Duration,
    /// Redis messages kept while Redis is unreachable; older ones are dropped and counted.
    pub redis_max_backlog: usize,
    /// A SOLLOL dashboard to register with over HTTP; off when not set.
    pub dashboard_url: Option<RedactedUrl>,
    /// Extra variables for worker processes, on top of the captured environment.
    pub worker_env: BTreeMap<String, String>,
    /// Observer settings from the file or `SOLLOL_OBSERVER_*`; unset keeps the default.
    pub observer_sampling: Option<bool>,
    pub observer_sample_rate: Option<f64>,
    pub observer_max_events: Option<usize>,
}

/// Refuses a configuration file that names a setting sollol does not have (a typo would
/// otherwise be ignored without a word).
fn check_file_keys(path: &std::path::Path) -> Result<(), ConfigError> {
    let table: BTreeMap<String, config::Value> = config::Config::builder()
        .add_source(config::File::from(path).required(true))
        .build()?
        .try_deserialize()?;
    if let Some(key) = table
        .keys()
        .find(|key| !KNOWN_SETTINGS.contains(&key.as_str()))
    {
        return Err(ConfigError::UnknownSetting {
            key: key.clone(),
            file: path.display().to_string(),
            known: KNOWN_SETTINGS.join(", "),
        });
    }
    Ok(())
}

impl Settings {
    /// Resolves all layers. `env` is the process environment (or a test's stand-in).
    pub fn load(env: &EnvSnapshot, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .set_default("bind", DEFAULT_BIND)?
            .set_default("nodes", Vec::<String>::new())?
            .set_default("workers", 2)?
            .set_default("strategy", "intelligent")?
            .set_default("app_name", sollol_actors::observer::DEFAULT_APP_NAME)?
            .set_default("max_body_bytes", 64 * 1024 * 1024)?
            .set_default("server_threads", 0)?
            .set_default("health_interval_ms", 5_000)?
            .set_default("health_timeout_ms", 3_000)?
            .set_default("connect_timeout_ms", 3_000)?
            .set_default("batch_chunk_size", 16)?
            .set_default("batch_max_inputs", 100_000)?
            .set_default("job_timeout_secs", 600)?
            .set_default("handshake_timeout_ms", 5_000)?
            .set_default("log_format", "text")?
            .set_default("node_capacity", 4)?
            .set_default("queue_max", 256)?
            .set_default("queue_timeout_ms", 60_000)?
            .set_default("priority_aging_ms", 5_000)?
            .set_default("attempts", 3)?
            .set_default("ttfb_timeout_ms", 300_000)?
            .set_default("idle_timeout_ms", 300_000)?
            .set_default("breaker_threshold", 3)?
            .set_default("breaker_cooldown_ms", 2_000)?
            .set_default("affinity_max", 10_000)?
            .set_default("affinity_ttl_secs", 1_800)?
            .set_default("pull_to_all", false)?
            .set_default("max_blob_bytes", 64u64 * 1024 * 1024 * 1024)?
            .set_default("origins", Vec::<String>::new())?
            .set_default("worker_memory_mb", 0)?
            .set_default("metadata_interval_ms", 5_000)?
            .set_default("redis_max_backlog", 10_000)?;
        if let Some(path) = &overrides.config_file {
            check_file_keys(path)?;
            builder = builder.add_source(config::File::from(path.as_path()).required(true));
        }
        let sollol_vars = env
            .iter()
            .filter(|(name, _)| name.starts_with("SOLLOL_"))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("SOLLOL")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("nodes")
                .with_list_parse_key("origins")
                .source(Some(sollol_vars)),
        );
        builder = builder
            .set_override_option("bind", overrides.bind.clone())?
            .set_override_option("workers", overrides.workers.map(|w| w as u64))?
            .set_override_option("strategy", overrides.strategy.clone())?
            .set_override_option("redis_url", overrides.redis_url.clone())?
            .set_override_option("app_name", overrides.app_name.clone())?;
        if !overrides.nodes.is_empty() {
            builder = builder.set_override("nodes", overrides.nodes.clone())?;
        }
        let raw: RawSettings = builder.build()?.try_deserialize()?;
        Self::resolve(raw, env, overrides)
    }

    fn resolve(
        raw: RawSettings,
        env: &EnvSnapshot,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        // SOLLOL's `SOLLOL_PORT` keeps its meaning when no explicit bind address is given.
        let bind = match (
            raw.port,
            overrides.bind.is_none() && env.get("SOLLOL_BIND").is_none(),
        ) {
            (Some(port), true) => format!("127.0.0.1:{port}"),
            _ => raw.bind,
        };
        let mut nodes: Vec<String> = raw
            .nodes
            .iter()
            .flat_map(|n| n.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        if nodes.is_empty() {
            nodes.push(
                env.get("OLLAMA_HOST")
                    .filter(|h| !h.trim().is_empty())
                    .unwrap_or(DEFAULT_NODE)
                    .to_string(),
            );
        }
        for (setting, value) in [
            ("max_body_bytes", raw.max_body_bytes),
            ("batch_chunk_size", raw.batch_chunk_size),
            ("batch_max_inputs", raw.batch_max_inputs),
            ("node_capacity", raw.node_capacity),
            ("attempts", raw.attempts),
            ("redis_max_backlog", raw.redis_max_backlog),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { setting });
            }
        }
        if !matches!(raw.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid {
                setting: "log_format",
                message: format!("`{}` is neither `text` nor `json`", raw.log_format),
            });
        }
        if raw
            .observer_sample_rate
            .is_some_and(|rate| !(0.0..=1.0).contains(&rate))
        {
            return Err(ConfigError::Invalid {
                setting: "observer_sample_rate",
                message: "must be between 0 and 1".into(),
            });
        }
        Ok(Self {
            bind,
            nodes,
            workers: raw.workers,
            strategy: raw.strategy.parse()?,
            redis_url: raw
                .redis_url
                .filter(|u| !u.trim().is_empty())
                .map(RedactedUrl::new),
            app_name: raw.app_name,
            max_body_bytes: raw.max_body_bytes,
            server_threads: raw.server_threads,
            health_interval: Duration::from_millis(raw.health_interval_ms.max(100)),
            health_timeout: Duration::from_millis(raw.health_timeout_ms.max(100)),
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms.max(100)),
            batch_chunk_size: raw.batch_chunk_size,
            batch_max_inputs: raw.batch_max_inputs,
            job_timeout: Duration::from_secs(raw.job_timeout_secs.max(1)),
            handshake_timeout: Duration::from_millis(raw.handshake_timeout_ms.max(100)),
            log_format: raw.log_format,
            node_capacity: raw.node_capacity,
            queue_max: raw.queue_max,
            queue_timeout: Duration::from_millis(raw.queue_timeout_ms.max(1)),
            priority_aging: Duration::from_millis(raw.priority_aging_ms.max(1)),
            attempts: raw.attempts,
            ttfb_timeout: Duration::from_millis(raw.ttfb_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(raw.idle_timeout_ms.max(1)),
            breaker_threshold: raw.breaker_threshold.max(1),
            breaker_cooldown: Duration::from_millis(raw.breaker_cooldown_ms.max(1)),
            affinity_max: raw.affinity_max,
            affinity_ttl: Duration::from_secs(raw.affinity_ttl_secs),
            pull_to_all: raw.pull_to_all,
            max_blob_bytes: raw.max_blob_bytes,
            worker_memory_mb: raw.worker_memory_mb,
            origins: raw
                .origins
                .iter()
                .map(String::as_str)
                .chain(
                    env.get("OLLAMA_ORIGINS")
                        .into_iter()
                        .flat_map(|o| o.split(',')),
                )
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(String::from)
                .collect(),
            metadata_interval: Duration::from_millis(raw.metadata_interval_ms.max(100)),
            redis_max_backlog: raw.redis_max_backlog,
            dashboard_url: raw
                .dashboard_url
                .filter(|u| !u.trim().is_empty())
                .map(RedactedUrl::new),
            worker_env: raw.worker_env,
            observer_sampling: raw.observer_sampling,
            observer_sample_rate: raw.observer_sample_rate,
            observer_max_events: raw.observer_max_events,
        })
    }

    /// The environment worker processes start with: the captured parent environment, the
    /// resolved settings they need (so a flag reaches them as surely as a variable), and
    /// the configured `worker_env` entries, which win.
    pub fn worker_snapshot(&self, parent: EnvSnapshot) -> EnvSnapshot {
        let mut snapshot = parent;
        for (name, value) in &self.worker_env {
            snapshot = snapshot.with(name.clone(), value.clone());
        }
        // The resolved settings win: a worker observes and routes as its gateway does.
        let owned = [
            ("SOLLOL_NODES", Some(self.nodes.join(","))),
            ("SOLLOL_STRATEGY", Some(self.strategy.as_str().to_string())),
            ("SOLLOL_APP_NAME", Some(self.app_name.clone())),
            (
                "SOLLOL_HEALTH_INTERVAL_MS",
                Some(self.health_interval.as_millis().to_string()),
            ),
            (
                "SOLLOL_HEALTH_TIMEOUT_MS",
                Some(self.health_timeout.as_millis().to_string()),
            ),
            (
                "SOLLOL_CONNECT_TIMEOUT_MS",
                Some(self.connect_timeout.as_millis().to_string()),
            ),
            ("SOLLOL_LOG_FORMAT", Some(self.log_format.clone())),
            ("SOLLOL_NODE_CAPACITY", Some(self.node_capacity.to_string())),
            (
                "SOLLOL_REDIS_MAX_BACKLOG",
                Some(self.redis_max_backlog.to_string()),
            ),
            (
                "SOLLOL_OBSERVER_SAMPLING",
                self.observer_sampling.map(|v| v.to_string()),
            ),
            (
                "SOLLOL_OBSERVER_SAMPLE_RATE",
                self.observer_sample_rate.map(|v| v.to_string()),
            ),
            (
                "SOLLOL_OBSERVER_MAX_EVENTS",
                self.observer_max_events.map(|v| v.to_string()),
            ),
        ];
        for (name, value) in owned {
            if self.worker_env.contains_key(name) {
                tracing::warn!(variable = name, "worker_env cannot override a setting sollol passes to workers itself; ignoring it");
            }
            if let Some(value) = value {
                snapshot = snapshot.with(name, value);
            }
        }
        match &self.redis_url {
            Some(url) => snapshot.with("SOLLOL_REDIS_URL", url.expose()),
            None => snapshot.without("SOLLOL_REDIS_URL"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> EnvSnapshot {
        EnvSnapshot::from_vars(vars.iter().copied())
    }

    #[test]
    fn defaults_bind_loopback_and_use_the_local_ollama() {
        let settings = Settings::load(&env(&[]), &Overrides::default()).expect("defaults load");
        assert_eq!(settings.bind, "127.0.0.1:8000");
        assert_eq!(settings.nodes, vec![DEFAULT_NODE.to_string()]);
        assert_eq!(settings.strategy, Strategy::Intelligent);
        assert!(settings.redis_url.is_none());
    }

    #[test]
    fn environment_beats_file_and_flags_beat_environment() {
        let dir = std::env::temp_dir().join(format!("sollol-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("sollol.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:9001\"\nworkers = 7\napp_name = \"from-file\"\n[worker_env]\nEXTRA = \"1\"\n",
        )
        .expect("write config");
        let vars = env(&[
            ("SOLLOL_WORKERS", "3"),
            ("SOLLOL_NODES", "127.0.0.1:1, 127.0.0.1:2"),
            ("SOLLOL_STRATEGY", "least_loaded"),
            ("SOLLOL_REDIS_URL", "redis://:pw@127.0.0.1:6379/0"),
        ]);
        let overrides = Overrides {
            config_file: Some(file),
            app_name: Some("from-flag".into()),
            ..Overrides::default()
        };
        let settings = Settings::load(&vars, &overrides).expect("loads");
        assert_eq!(settings.bind, "127.0.0.1:9001");
        assert_eq!(settings.workers, 3);
        assert_eq!(settings.nodes, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(settings.strategy, Strategy::LeastLoaded);
        assert_eq!(settings.app_name, "from-flag");
        assert_eq!(settings.worker_env["EXTRA"], "1");
        assert!(!format!("{settings:?}").contains("pw@"));
    }

    #[test]
    fn ollama_host_and_sollol_port_keep_their_meaning() {
        let settings = Settings::load(
            &env(&[("OLLAMA_HOST", "10.1.2.3"), ("SOLLOL_PORT", "11500")]),
            &Overrides::default(),
        )
        .expect("loads");
        assert_eq!(settings.nodes, vec!["10.1.2.3"]);
        assert_eq!(settings.bind, "127.0.0.1:11500");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Settings::load(
            &env(&[("SOLLOL_STRATEGY", "fastest")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("strategy") && err.contains("round_robin"),
            "{err}"
        );
        let err = Settings::load(&env(&[("SOLLOL_WORKERS", "many")]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("workers"), "{err}");
    }

    #[test]
    fn unknown_file_settings_and_bad_formats_are_refused() {
        let dir = std::env::temp_dir().join(format!("sollol-config-typo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("typo.toml");
        std::fs::write(&file, "workerz = 4\n").expect("write");
        let overrides = Overrides {
            config_file: Some(file),
            ..Overrides::default()
        };
        let err = Settings::load(&env(&[]), &overrides)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown setting `workerz`"), "{err}");
        let err = Settings::load(
            &env(&[("SOLLOL_LOG_FORMAT", "yaml")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("log_format"), "{err}");
    }

    #[test]
    fn file_observer_settings_reach_the_workers() {
        let dir =
            std::env::temp_dir().join(format!("sollol-config-observer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("observer.toml");
        std::fs::write(
            &file,
            "observer_sampling = false\n[worker_env]\nSOLLOL_APP_NAME = \"sneaky\"\n",
        )
        .expect("write");
        let overrides = Overrides {
            config_file: Some(file),
            app_name: Some("flag".into()),
            ..Overrides::default()
        };
        let settings = Settings::load(&env(&[]), &overrides).expect("loads");
        assert_eq!(settings.observer_sampling, Some(false));
        let snapshot = settings.worker_snapshot(env(&[]));
        assert_eq!(snapshot.get("SOLLOL_OBSERVER_SAMPLING"), Some("false"));
        assert_eq!(
            snapshot.get("SOLLOL_APP_NAME"),
            Some("flag"),
            "the flag wins over worker_env"
        );
    }

    #[test]
    fn worker_snapshot_carries_resolved_settings() {
        let overrides = Overrides {
            redis_url: Some("redis://127.0.0.1:6379/2".into()),
            nodes: vec!["127.0.0.1:5".into()],
            ..Overrides::default()
        };
        let settings = Settings::load(&env(&[]), &overrides).expect("loads");
        let snapshot =
            settings.worker_snapshot(env(&[("PATH", "/bin"), ("SOLLOL_APP_NAME", "old")]));
        assert_eq!(
            snapshot.get("SOLLOL_REDIS_URL"),
            Some("redis://127.0.0.1:6379/2")
        );
        assert_eq!(snapshot.get("SOLLOL_NODES"), Some("127.0.0.1:5"));
        assert_eq!(snapshot.get("SOLLOL_APP_NAME"), Some("sollol"));
        assert_eq!(snapshot.get("PATH"), Some("/bin"));
    }
}
