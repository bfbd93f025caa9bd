//! Messages between the supervisor (parent) and a worker process (child).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Parent to child.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToChild {
    /// The first frame: the child must answer [`FromChild::Hello`] before anything else.
    Handshake {
        worker_id: usize,
    },
    Job {
        id: u64,
        payload: Value,
    },
    /// Finish the jobs in hand, then exit.
    Shutdown,
}

/// Child to parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromChild {
    Hello {
        pid: u32,
        version: String,
        /// The `SOLLOL_*` variables the child found in its own environment, redacted.
        env: BTreeMap<String, String>,
    },
    Done {
        id: u64,
        #[serde(flatten)]
        outcome: JobOutcome,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Ok(Value),
    Error(String),
}
