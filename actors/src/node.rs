//! Ollama nodes: one [`NodeActor`] per server, and the [`NodeHandle`] the request path uses.
//!
//! The actor owns the periodic work: every `health_interval` it reads `/api/version`,
//! `/api/tags` (which models the node has) and `/api/ps` (which are resident) and records
//! the result. The handle is a cheap clone shared with the router and the gateway; it
//! carries the pooled HTTP client, the in-flight count and the latency statistics, which
//! the request path updates without sending a message. No lock is held across an await.

mod address;
mod handle;
mod health;

pub use address::{parse_node_url, NodeUrlError};
pub use handle::{Health, InFlight, NodeHandle, NodeStatus};
pub use health::{describe_reqwest_error, CheckNow, NodeActor, NodeSettings};
