//! The Ollama-compatible HTTP gateway.
//!
//! [`start`] brings up a whole gateway from [`Settings`]: telemetry, the node actors and
//! router (checked once before the first request), the worker supervisor, and the
//! actix-web server on an already-bound loopback listener. [`RunningGateway::run`] serves
//! until a signal, then stops workers in order and flushes what waits for Redis.

pub mod access;
mod aggregate;
mod batch;
mod blobs;
mod client_watch;
pub mod controls;
mod dashboard;
pub mod error;
mod fanout;
mod jobs;
mod live;
mod node_client;
mod observe;
mod own;
pub mod proxy;
mod relay;
pub mod routes;
mod sniff;
pub mod state;
mod upstream;
mod worker_env;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use sollol_actors::supervisor::{StopWorkers, Supervisor, SupervisorError, SupervisorHandle};
use sollol_actors::worker::launcher::{ChildSpec, ProcessLauncher};
use sollol_actors::EnvSnapshot;

use crate::cluster::{Cluster, StartError, Telemetry};
use crate::config::Settings;
use state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum GatewayStartError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("cannot listen on {bind}: {source} (setting bind)")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
    #[error("cannot find the sollol executable to start workers: {0}")]
    Executable(std::io::Error),
}

/// The program worker processes run: this binary with `worker`, unless told otherwise.
#[derive(Debug, Clone)]
pub struct WorkerProgram {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl WorkerProgram {
    pub fn current_exe() -> Result<Self, GatewayStartError> {
        let program = std::env::current_exe().map_err(GatewayStartError::Executable)?;
        Ok(Self {
            program,
            args: vec!["worker".into()],
        })
    }
}

pub struct RunningGateway {
    pub local_addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub workers: Option<SupervisorHandle>,
    pub telemetry: Telemetry,
    pub cluster: Cluster,
}

/// Starts everything a gateway needs. Call inside an actix `System`.
pub async fn start(
    settings: Settings,
    parent_env: EnvSnapshot,
    worker_program: WorkerProgram,
) -> Result<RunningGateway, GatewayStartError> {
    let listener = TcpListener::bind(&settings.bind).map_err(|source| GatewayStartError::Bind {
        bind: settings.bind.clone(),
        source,
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| GatewayStartError::Bind {
            bind: settings.bind.clone(),
            source,
        })?;

    let mut telemetry = Telemetry::start(&settings, &parent_env)?;
    let cluster = Cluster::start(&settings, &telemetry.observer)?;
    telemetry.announce(&settings, &cluster);
    let healthy = cluster.check_all().await;
    for node in &cluster.nodes {
        let status = node.status();
        tracing::info!(node = %status.node, state = status.state.as_str(), models = status.models.len(), "node");
    }
    if healthy == 0 {
        tracing::warn!(
            nodes = cluster.nodes.len(),
            "no ollama node is reachable yet; requests get 502 until one is"
        );
    }

    let workers = if settings.workers > 0 {
        let mut spec = ChildSpec::new(worker_program.program, worker_program.args);
        spec.handshake_timeout = settings.handshake_timeout;
        spec.memory_limit_bytes =
            (settings.worker_memory_mb > 0).then(|| settings.worker_memory_mb * 1024 * 1024);
        let snapshot = settings.worker_snapshot(parent_env);
        let supervisor = Supervisor::new(
            spec,
            snapshot,
            settings.workers,
            Arc::new(ProcessLauncher),
            Some(telemetry.emitter()),
        )?;
        Some(SupervisorHandle::new(supervisor.start()))
    } else {
        None
    };

    let settings = Arc::new(settings);
    let state = web::Data::new(AppState::new(
        settings.clone(),
        &cluster,
        &telemetry,
        workers.clone(),
    ));
    let access = web::Data::new(Arc::new(access::AccessPolicy::new(
        &settings.bind,
        settings.origins.clone(),
    )));
    let connect_timeout = settings.connect_timeout;
    let server = HttpServer::new(move || {
        // One client per worker thread: its pooled connections stay on this thread.
        let client = web::Data::new(node_client::NodeClient::new(connect_timeout));
        App::new()
            .app_data(state.clone())
            .app_data(client)
            .app_data(access.clone())
            .wrap(from_fn(access::guard))
            .wrap(from_fn(observe::observe))
            .configure(routes::configure)
    })
    .shutdown_timeout(10)
    .workers(if settings.server_threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        settings.server_threads
    })
    .on_connect(|connection, data| {
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            // Each relayed line goes out when written, not held back for the client's ACK.
            let _ = tcp.set_nodelay(true);
            // Lets a request waiting for a node notice that its client left.
            data.insert(client_watch::ClientSocket(std::os::fd::AsRawFd::as_raw_fd(
                tcp,
            )));
        }
    })
    .listen(listener)
    .map_err(|source| GatewayStartError::Bind {
        bind: settings.bind.clone(),
        source,
    })?
    .run();
    tracing::info!(address = %local_addr, nodes = cluster.nodes.len(), healthy, workers = settings.workers, strategy = %settings.strategy, "gateway listening");
    Ok(RunningGateway {
        local_addr,
        server,
        workers,
        telemetry,
        cluster,
    })
}

impl RunningGateway {
    /// Serves until the server stops (SIGINT or SIGTERM), then stops the workers,
    /// unregisters the application and flushes the Redis backlog.
    pub async fn run(self) -> std::io::Result<()> {
        actix_rt::spawn(close_feeds_on_signal(self.telemetry.observer.clone()));
        let result = self.server.await;
        tracing::info!("gateway stopping");
        if let Some(workers) = &self.workers {
            let stop = workers.addr.send(StopWorkers);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(8), stop).await;
        }
        self.telemetry.shutdown().await;
        jobs::BatchJobs::new().clean_up();
        result
    }
}

/// Ends the live feeds when a stop signal arrives, while the server drains its
/// connections: a page left open must not hold up a graceful stop.
async fn close_feeds_on_signal(observer: Addr<sollol_actors::observer::ObserverActor>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    observer.do_send(sollol_actors::observer::CloseFeeds);
}
