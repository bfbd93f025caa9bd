//! The worker side: what runs inside a worker process.
//!
//! [`serve`] answers the handshake first, with the process id, the version and the
//! `SOLLOL_*` variables of the child's own environment (redacted), then runs each job
//! through the [`JobHandler`] and writes its outcome back. Jobs run concurrently; a
//! shutdown frame or the end of stdin stops intake, and `serve` returns once the jobs in
//! hand have finished. Nothing but frames is ever written to stdout.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::frame::{read_frame, write_frame, FrameError, DEFAULT_MAX_FRAME};
use super::protocol::{FromChild, JobOutcome, ToChild};
use super::WORKER_ID_VAR;
use crate::env_snapshot::EnvSnapshot;

pub type JobFuture = Pin<Box<dyn Future<Output = Result<Value, String>>>>;

/// What a worker does with each job's payload.
pub trait JobHandler: 'static {
    fn handle(&self, payload: Value) -> JobFuture;
}

impl<F> JobHandler for F
where
    F: Fn(Value) -> JobFuture + 'static,
{
    fn handle(&self, payload: Value) -> JobFuture {
        self(payload)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("this process is not a worker: {WORKER_ID_VAR} is not set (workers are started by a supervisor)")]
    NotAWorker,
    #[error("the supervisor sent {0} instead of the handshake")]
    UnexpectedFirstFrame(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// The entry point an application calls first thing in `main`: in a worker process it
/// serves jobs with the handler `make_handler` builds and returns the exit code the
/// process should end with; in any other process it returns `None` at once and the
/// normal start carries on.
///
/// ```no_run
/// # use sollol_actors::worker::child::{run_if_worker, JobFuture, JobHandler};
/// struct Echo;
/// impl JobHandler for Echo {
///     fn handle(&self, payload: serde_json::Value) -> JobFuture {
///         Box::pin(async move { Ok(payload) })
///     }
/// }
/// fn main() {
///     if let Some(code) = run_if_worker("1.0", || Echo) {
///         std::process::exit(code);
///     }
///     // ... the application's normal start, which may start a supervisor ...
/// }
/// ```
pub fn run_if_worker<H, F>(version: &str, make_handler: F) -> Option<i32>
where
    H: JobHandler,
    F: FnOnce() -> H,
{
    if !is_worker_process() {
        return None;
    }
    let handler: Rc<dyn JobHandler> = Rc::new(make_handler());
    let result = actix::System::new().block_on(serve_stdio(handler, version));
    Some(match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("worker: {err}");
            1
        }
    })
}

/// Whether this process was started as a worker by a supervisor.
pub fn is_worker_process() -> bool {
    std::env::var_os(WORKER_ID_VAR).is_some()
}

/// Serves jobs on this process's stdin and stdout until shutdown.
pub async fn serve_stdio(handler: Rc<dyn JobHandler>, version: &str) -> Result<(), WorkerError> {
    if !is_worker_process() {
        return Err(WorkerError::NotAWorker);
    }
    let env = EnvSnapshot::capture();
    serve(
        tokio::io::stdin(),
        tokio::io::stdout(),
        &env,
        handler,
        version,
    )
    .await
}

/// Serves jobs on the given pipes. `env` is what the handshake reports.
pub async fn serve<R, W>(
    mut input: R,
    output: W,
    env: &EnvSnapshot,
    handler: Rc<dyn JobHandler>,
    version: &str,
) -> Result<(), WorkerError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    match read_frame::<_, ToChild>(&mut input, DEFAULT_MAX_FRAME).await? {
        ToChild::Handshake { .. } => {}
        other => return Err(WorkerError::UnexpectedFirstFrame(format!("{other:?}"))),
    }

    let (outbox, mut outgoing) = mpsc::unbounded_channel::<FromChild>();
    let writer = tokio::task::spawn_local(async move {
        let mut output = output;
        while let Some(message) = outgoing.recv().await {
            write_frame(&mut output, &message).await?;
        }
        Ok::<(), FrameError>(())
    });
    let _ = outbox.send(FromChild::Hello {
        pid: std::process::id(),
        version: version.to_string(),
        env: env.sollol_vars_redacted(),
    });

    let mut jobs = Vec::new();
    loop {
        match read_frame::<_, ToChild>(&mut input, DEFAULT_MAX_FRAME).await {
            Ok(ToChild::Job { id, payload }) => {
                let handler = handler.clone();
                let outbox = outbox.clone();
                jobs.push(tokio::task::spawn_local(async move {
                    let outcome = match handler.handle(payload).await {
                        Ok(value) => JobOutcome::Ok(value),
                        Err(message) => JobOutcome::Error(message),
                    };
                    let _ = outbox.send(FromChild::Done { id, outcome });
                }));
                jobs.retain(|job| !job.is_finished());
            }
            Ok(ToChild::Shutdown) | Err(FrameError::Closed) => break,
            Ok(ToChild::Handshake { .. }) => {
                tracing::warn!("ignoring a second handshake");
            }
            Err(err) => return Err(err.into()),
        }
    }

    for job in jobs {
        let _ = job.await;
    }
    drop(outbox);
    match writer.await {
        Ok(result) => result.map_err(WorkerError::from),
        Err(_) => Ok(()),
    }
}
