//! Conversation affinity: a multi-turn conversation keeps going to the node that has its
//! prompt cached.
//!
//! Keys are scoped per model. The table is bounded: past `capacity` entries the least
//! recently used is dropped, and an entry idle longer than `ttl` is forgotten. Entries
//! pointing at a node that is no longer usable are dropped when met.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What affinity did for one request; sent back in `X-Sollol-Affinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AffinityOutcome {
    /// The request had no affinity key (or the route does not use affinity).
    None,
    /// First request of its conversation: the chosen node is remembered.
    New,
    /// Sent to the node that served the conversation before.
    Hit,
    /// The remembered node could not take it (down or full); another node was chosen
    /// and is remembered instead.
    Miss,
}

impl AffinityOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::New => "new",
            Self::Hit => "hit",
            Self::Miss => "miss",
        }
    }
}

struct Entry {
    node: String,
    last_used: Instant,
}

pub struct AffinityTable {
    entries: HashMap<(String, u64), Entry>,
    capacity: usize,
    ttl: Duration,
}

impl AffinityTable {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The node remembered for this conversation, if still fresh.
    pub fn lookup(&mut self, model: &str, key: u64, now: Instant) -> Option<String> {
        let id = (model.to_string(), key);
        match self.entries.get(&id) {
            Some(entry) if now.duration_since(entry.last_used) <= self.ttl => {
                Some(entry.node.clone())
            }
            Some(_) => {
                self.entries.remove(&id);
                None
            }
            None => None,
        }
    }

    pub fn remember(&mut self, model: &str, key: u64, node: &str, now: Instant) {
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&(model.to_string(), key))
        {
            self.evict_oldest();
        }
        self.entries.insert(
            (model.to_string(), key),
            Entry {
                node: node.to_string(),
                last_used: now,
            },
        );
    }

    pub fn forget(&mut self, model: &str, key: u64) {
        self.entries.remove(&(model.to_string(), key));
    }

    /// Drops every entry that points at `node` (it became unusable).
    pub fn forget_node(&mut self, node: &str) {
        self.entries.retain(|_, entry| entry.node != node);
    }

    /// Drops entries idle past the TTL.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.entries
            .retain(|_, entry| now.duration_since(entry.last_used) <= ttl);
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            self.entries.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_model_expires_and_stays_bounded() {
        let now = Instant::now();
        let mut table = AffinityTable::new(2, Duration::from_secs(10));
        table.remember("a", 1, "n1", now);
        assert_eq!(table.lookup("a", 1, now), Some("n1".into()));
        assert_eq!(table.lookup("b", 1, now), None, "scoped per model");
        table.remember("a", 2, "n2", now + Duration::from_secs(1));
        table.remember("a", 3, "n3", now + Duration::from_secs(2));
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.lookup("a", 1, now + Duration::from_secs(2)),
            None,
            "oldest evicted"
        );
        assert_eq!(
            table.lookup("a", 3, now + Duration::from_secs(30)),
            None,
            "idle past the ttl"
        );
        table.remember("a", 4, "n4", now);
        table.forget_node("n4");
        assert_eq!(table.lookup("a", 4, now), None);
    }
}
