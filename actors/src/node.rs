//! Ollama nodes: one [`NodeActor`] per server, and the [`NodeHandle`] the request path uses.
//!
//! The actor owns the periodic work: it reads `/api/version`, `/api/tags` (which models
//! the node has) and `/api/ps` (which are resident), every `health_interval` while the
//! node answers and with a growing delay while it does not, forever, so a dead node comes
//! back on its own. The handle is shared with the router and the gateway; it carries the
//! pooled HTTP client, the in-flight count, the circuit [`breaker`] and what the node
//! has measured per model ([`stats`]), all updated by the request path without messages.

mod address;
pub mod breaker;
mod handle;
mod health;
pub mod stats;

pub use address::{parse_node_url, NodeUrlError};
pub use breaker::{BreakerSettings, BreakerState};
pub use handle::{
    CapacityFreed, Health, InFlight, NodeHandle, NodeLimits, NodeStatus, OutcomeKind,
    RequestOutcome,
};
pub use health::{describe_reqwest_error, CheckNow, NodeActor, NodeSettings};
pub use stats::{ModelStats, RequestKind};
