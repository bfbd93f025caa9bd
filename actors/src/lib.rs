//! Actors of sollol.
//!
//! The pieces, in the order a request meets them:
//!
//! - [`router`]: the [`RouterActor`](router::RouterActor) picks a node for each request
//!   from the nodes that have the model, by [`Strategy`](router::Strategy).
//! - [`node`]: one [`NodeActor`](node::NodeActor) per Ollama server keeps its health,
//!   model inventory and residency fresh; a cheap [`NodeHandle`](node::NodeHandle) carries
//!   the HTTP client, in-flight count and latency statistics to the request path.
//! - [`event`]: every thing worth reporting is one typed [`Event`](event::Event), from
//!   which the Redis JSON, the log line and the [`metrics`] are all derived.
//! - [`observer`]: the [`ObserverActor`](observer::ObserverActor) classifies, counts,
//!   samples and keeps recent events, feeds the Prometheus [`metrics`] and the live
//!   [`feed`], and hands kept events to the
//!   [`RedisPublisher`](redis_publisher::RedisPublisher), which batches them to Redis.
//! - [`metadata`] and [`dashboard_client`]: `sollol:router:metadata`, the application
//!   registry with its heartbeat, and the optional registration with a SOLLOL dashboard;
//!   [`redis_feed`] brings other processes' events into the live feed.
//! - [`supervisor`] and [`worker`]: the [`Supervisor`](supervisor::Supervisor) starts worker
//!   processes with its [`EnvSnapshot`] applied before each child runs, restarts them with
//!   backoff, and hands them jobs; [`worker::child`] is the entry point inside the child.
//! - [`secret`] and [`env_snapshot`]: values that print redacted by construction.

pub mod clock;
pub mod dashboard_client;
pub mod env_snapshot;
pub mod event;
pub mod feed;
pub mod metadata;
pub mod metrics;
pub mod model_name;
pub mod node;
pub mod observer;
pub mod redis_feed;
pub mod redis_publisher;
pub mod router;
pub mod routing_event;
pub mod secret;
pub mod supervisor;
pub mod worker;

pub use env_snapshot::{EnvDiff, EnvSnapshot};
pub use secret::RedactedUrl;
