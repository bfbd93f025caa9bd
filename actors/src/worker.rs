//! Worker processes: the wire between parent and child, and both ends of it.
//!
//! - [`frame`]: length-prefixed, versioned JSON frames with a maximum size.
//! - [`protocol`]: the messages parent and child exchange.
//! - [`launcher`]: [`ChildSpec`](launcher::ChildSpec) and the one function that starts a
//!   worker process with an [`EnvSnapshot`](crate::EnvSnapshot) applied.
//! - [`actor`]: [`WorkerActor`](actor::WorkerActor), the parent-side handle of one process.
//! - [`child`]: the entry point a worker process runs.

pub mod actor;
pub mod child;
pub mod frame;
pub mod launcher;
pub mod protocol;

/// Set in every worker's environment to its slot number; a process that has it is a
/// worker and may not start a supervisor of its own.
pub const WORKER_ID_VAR: &str = "SOLLOL_WORKER_ID";
