//! The complete environment a worker process is started with.
//!
//! An [`EnvSnapshot`] is captured once from the parent (plus explicit overrides) and is
//! the only source of a worker's environment: the launcher clears the child's inherited
//! environment and applies the snapshot before the child runs, on every start and restart.
//! The parent's own environment is never modified to pass values on.
//!
//! It is also an actix message: sending one to the
//! [`Supervisor`](crate::supervisor::Supervisor) replaces its snapshot and restarts the
//! workers one at a time so that each picks the new values up. Every printed form
//! (`Debug`, [`EnvSnapshot::redacted`], [`EnvDiff`]) hides secrets.

use std::collections::BTreeMap;
use std::fmt;

use actix::Message;

use crate::secret::redact_env_value;

/// Prefix of the variables that configure sollol processes.
pub const SOLLOL_PREFIX: &str = "SOLLOL_";

#[derive(Clone, Default, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct EnvSnapshot {
    vars: BTreeMap<String, String>,
}

impl EnvSnapshot {
    /// Captures the current process environment. Variables whose name or value is not
    /// valid UTF-8 are left out (they cannot be configuration sollol reads).
    pub fn capture() -> Self {
        let vars = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        Self { vars }
    }

    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self { vars }
    }

    /// Returns the snapshot with `name` set to `value`, replacing any captured value.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Returns the snapshot without `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.vars.remove(name);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// All variables with their real values, for the launcher that applies them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// All variables with secrets hidden.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), redact_env_value(k, v)))
            .collect()
    }

    /// The `SOLLOL_*` variables with secrets hidden: what a worker reports in its handshake.
    pub fn sollol_vars_redacted(&self) -> BTreeMap<String, String> {
        self.vars
            .iter()
            .filter(|(k, _)| k.starts_with(SOLLOL_PREFIX))
            .map(|(k, v)| (k.clone(), redact_env_value(k, v)))
            .collect()
    }

    /// What changes when `self` is replaced by `next`.
    pub fn diff(&self, next: &EnvSnapshot) -> EnvDiff {
        let mut diff = EnvDiff::default();
        for (name, value) in &next.vars {
            match self.vars.get(name) {
                None => diff
                    .added
                    .push((name.clone(), redact_env_value(name, value))),
                Some(old) if old != value => diff.changed.push((
                    name.clone(),
                    redact_env_value(name, old),
                    redact_env_value(name, value),
                )),
                Some(_) => {}
            }
        }
        for name in self.vars.keys() {
            if !next.vars.contains_key(name) {
                diff.removed.push(name.clone());
            }
        }
        diff
    }
}

impl fmt::Debug for EnvSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

/// The difference between two snapshots, values already redacted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnvDiff {
    pub added: Vec<(String, String)>,
    /// Name, old value, new value.
    pub changed: Vec<(String, String, String)>,
    pub removed: Vec<String>,
}

impl EnvDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl fmt::Display for EnvDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        parts.extend(self.added.iter().map(|(k, v)| format!("+{k}={v}")));
        parts.extend(
            self.changed
                .iter()
                .map(|(k, old, new)| format!("~{k}={old}->{new}")),
        );
        parts.extend(self.removed.iter().map(|k| format!("-{k}")));
        if parts.is_empty() {
            f.write_str("no change")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EnvSnapshot {
        EnvSnapshot::from_vars([
            ("PATH", "/usr/bin"),
            ("SOLLOL_APP_NAME", "indexer"),
            ("SOLLOL_REDIS_URL", "redis://:pw@127.0.0.1:6379/0"),
            ("OLLAMA_API_KEY", "sk-123"),
        ])
    }

    #[test]
    fn debug_never_shows_secrets() {
        let shown = format!("{:?}", sample());
        assert!(!shown.contains("pw@"), "{shown}");
        assert!(!shown.contains("sk-123"), "{shown}");
        assert!(shown.contains("indexer"), "{shown}");
        assert_eq!(sample().get("OLLAMA_API_KEY"), Some("sk-123"));
    }

    #[test]
    fn sollol_vars_are_filtered_and_redacted() {
        let vars = sample().sollol_vars_redacted();
        assert_eq!(vars.len(), 2);
        assert_eq!(vars["SOLLOL_REDIS_URL"], "redis://:***@127.0.0.1:6379/0");
    }

    #[test]
    fn diff_lists_added_changed_removed() {
        let next = sample()
            .with("SOLLOL_APP_NAME", "search")
            .with("SOLLOL_OBSERVER_SAMPLING", "false")
            .without("PATH")
            .with("OLLAMA_API_KEY", "sk-456");
        let diff = sample().diff(&next);
        assert_eq!(
            diff.added,
            vec![("SOLLOL_OBSERVER_SAMPLING".into(), "false".into())]
        );
        assert_eq!(diff.removed, vec!["PATH".to_string()]);
        assert_eq!(diff.changed.len(), 2);
        let text = diff.to_string();
        assert!(text.contains("~SOLLOL_APP_NAME=indexer->search"), "{text}");
        assert!(!text.contains("sk-456"), "{text}");
        assert!(sample().diff(&sample()).is_empty());
    }
}
