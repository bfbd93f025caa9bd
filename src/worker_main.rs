//! `sollol worker`: the entry point of a worker process.
//!
//! The supervisor starts this with its environment snapshot already applied, so the
//! settings read here (nodes, Redis URL, application name, observer sampling) are the
//! snapshot's. The worker starts its own observer, Redis publisher, node actors and
//! router, answers the handshake, and then embeds the chunks it is sent.

use std::rc::Rc;

use actix::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use sollol_actors::worker::child::{serve_stdio, JobFuture, JobHandler};
use sollol_actors::EnvSnapshot;
use tokio::sync::OnceCell;

use crate::cluster::{Cluster, Telemetry};
use crate::config::{Overrides, Settings};
use crate::embed::Embedder;

/// Jobs a sollol worker understands.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Job {
    Embed {
        model: String,
        input: Vec<Value>,
        /// Other `/api/embed` fields (`dimensions`, `truncate`, `options`, `keep_alive`).
        #[serde(default)]
        extra: serde_json::Map<String, Value>,
    },
}

struct Jobs {
    embedder: Embedder,
    cluster: Cluster,
    /// The first job waits for one round of node checks so the router knows the models.
    checked: OnceCell<()>,
}

impl Jobs {
    async fn run(self: Rc<Self>, payload: Value) -> Result<Value, String> {
        self.checked
            .get_or_init(|| async {
                self.cluster.check_all().await;
            })
            .await;
        let job: Job =
            serde_json::from_value(payload).map_err(|err| format!("invalid job: {err}"))?;
        match job {
            Job::Embed {
                model,
                input,
                extra,
            } => {
                let vectors = self
                    .embedder
                    .embed(&model, &input, &extra)
                    .await
                    .map_err(|err| err.message)?;
                Ok(json!({ "embeddings": vectors }))
            }
        }
    }
}

struct SharedJobs(Rc<Jobs>);

impl JobHandler for SharedJobs {
    fn handle(&self, payload: Value) -> JobFuture {
        Box::pin(self.0.clone().run(payload))
    }
}

/// Runs the worker until the supervisor says to stop; returns the process exit code.
pub fn run() -> i32 {
    let env = EnvSnapshot::capture();
    let settings = match Settings::load(&env, &Overrides::default()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("sollol worker: {err}");
            return 2;
        }
    };
    crate::logging::init_worker(&settings.log_format);
    let system = System::new();
    let code = system.block_on(async move {
        let telemetry = match Telemetry::start(&settings, &env) {
            Ok(telemetry) => telemetry,
            Err(err) => {
                tracing::error!(error = %err, "worker cannot start");
                return 2;
            }
        };
        let cluster = match Cluster::start(&settings, &telemetry.observer) {
            Ok(cluster) => cluster,
            Err(err) => {
                tracing::error!(error = %err, "worker cannot start");
                return 2;
            }
        };
        let jobs = Jobs {
            embedder: Embedder::new(cluster.router.clone(), telemetry.observer.clone()),
            cluster,
            checked: OnceCell::new(),
        };
        let handler: Rc<dyn JobHandler> = Rc::new(SharedJobs(Rc::new(jobs)));
        let result = serve_stdio(handler, env!("CARGO_PKG_VERSION")).await;
        telemetry.flush().await;
        match result {
            Ok(()) => 0,
            Err(err) => {
                tracing::error!(error = %err, "worker stopped");
                1
            }
        }
    });
    code
}
