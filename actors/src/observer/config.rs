//! How an observer samples, remembers and classifies, read once from `SOLLOL_*` variables.

use std::time::Duration;

use crate::env_snapshot::EnvSnapshot;
use crate::event::SeverityRules;

pub const DEFAULT_APP_NAME: &str = "sollol";

#[derive(Debug, Clone, PartialEq)]
pub struct ObserverConfig {
    /// `details.app` of every event (`SOLLOL_APP_NAME`).
    pub app_name: String,
    /// `details.pid` of every event.
    pub pid: u32,
    /// Whether per-request `info` events are sampled (`SOLLOL_OBSERVER_SAMPLING`, default
    /// true).
    pub sampling: bool,
    /// Fraction of those events kept when sampling (`SOLLOL_OBSERVER_SAMPLE_RATE`, default
    /// 1.0, which keeps everything: the rate SOLLOL's own observer used).
    pub sample_rate: f64,
    /// Size of the ring of recent events (`SOLLOL_OBSERVER_MAX_EVENTS`, default 10000).
    pub max_events: usize,
    /// Thresholds for warnings (`SOLLOL_SLOW_RESPONSE_MS`, `SOLLOL_SLOW_QUEUE_MS`).
    pub rules: SeverityRules,
    /// Entries kept in the activity stream, approximately (`SOLLOL_ACTIVITY_STREAM_LEN`,
    /// default 10000; 0 publishes to the channels only).
    pub activity_stream_len: usize,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        Self {
            app_name: DEFAULT_APP_NAME.to_string(),
            pid: std::process::id(),
            sampling: true,
            sample_rate: 1.0,
            max_events: 10_000,
            rules: SeverityRules::default(),
            activity_stream_len: 10_000,
        }
    }
}

impl ObserverConfig {
    /// Reads the `SOLLOL_*` variables. A value that does not parse keeps the default and
    /// is reported with a warning naming the variable.
    pub fn from_env(env: &EnvSnapshot) -> Self {
        let defaults = Self::default();
        let millis = |v: &str| v.trim().parse::<u64>().ok().map(Duration::from_millis);
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
            rules: SeverityRules {
                slow_response: read_var(
                    env,
                    "SOLLOL_SLOW_RESPONSE_MS",
                    millis,
                    defaults.rules.slow_response,
                ),
                slow_queue_wait: read_var(
                    env,
                    "SOLLOL_SLOW_QUEUE_MS",
                    millis,
                    defaults.rules.slow_queue_wait,
                ),
            },
            activity_stream_len: read_var(
                env,
                "SOLLOL_ACTIVITY_STREAM_LEN",
                |v| v.trim().parse().ok(),
                defaults.activity_stream_len,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sollol_variables_and_keeps_defaults_on_bad_values() {
        let env = EnvSnapshot::from_vars([
            ("SOLLOL_APP_NAME", "indexer"),
            ("SOLLOL_OBSERVER_SAMPLING", "off"),
            ("SOLLOL_OBSERVER_SAMPLE_RATE", "7"),
            ("SOLLOL_SLOW_RESPONSE_MS", "2500"),
            ("SOLLOL_ACTIVITY_STREAM_LEN", "0"),
        ]);
        let config = ObserverConfig::from_env(&env);
        assert_eq!(config.app_name, "indexer");
        assert!(!config.sampling);
        assert_eq!(config.sample_rate, 1.0);
        assert_eq!(config.rules.slow_response, Duration::from_millis(2500));
        assert_eq!(config.activity_stream_len, 0);
        assert_eq!(
            ObserverConfig::from_env(&EnvSnapshot::default()).app_name,
            "sollol"
        );
    }
}
