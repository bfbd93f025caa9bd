//! The parent-side handle of one worker process.
//!
//! A [`WorkerActor`] owns the pipes of one child: it sends the handshake, correlates job
//! results with their callers, forwards the child's stderr to tracing, and when the child
//! exits (or must be killed) fails every job still in its hands with an error the caller
//! sees. It reports readiness and exit to its supervisor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::frame::{read_frame, write_frame, FrameError};
use super::launcher::{ChildSpec, ExitReason, LaunchedChild};
use super::protocol::{FromChild, JobOutcome, ToChild};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("worker {worker} exited ({reason}) before finishing the job")]
    WorkerExited { worker: usize, reason: String },
    #[error("worker {0} is not accepting jobs")]
    NotAccepting(usize),
    #[error("job timed out after {0:?}")]
    TimedOut(Duration),
    #[error("no worker is ready: {0}")]
    NoWorker(String),
    #[error("the job was running on {deaths} workers that died; giving up on it as a poison job")]
    Poison { deaths: u32 },
    #[error("the job was cancelled")]
    Cancelled,
    #[error("{0}")]
    Failed(String),
}

impl JobError {
    /// Whether the job may be handed to another worker.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::WorkerExited { .. } | Self::NotAccepting(_))
    }
}

/// What a worker tells its supervisor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum WorkerReport {
    Ready {
        slot: usize,
        generation: u64,
        pid: u32,
        version: String,
        env: BTreeMap<String, String>,
    },
    Exited {
        slot: usize,
        generation: u64,
        reason: ExitReason,
        /// Why the parent gave up on the child, if it did (handshake, bad frame).
        failure: Option<String>,
    },
}

/// Runs one job on this worker.
#[derive(Debug, Message)]
#[rtype(result = "Result<Value, JobError>")]
pub struct RunJob {
    pub payload: Value,
    pub timeout: Option<Duration>,
}

/// Kills the worker now (it is presumed stuck); the reason is reported with its exit.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Kill(pub String);

/// Asks the worker to finish its jobs and exit; it is killed after the grace period.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Retire;

pub struct WorkerActor {
    slot: usize,
    generation: u64,
    spec: Arc<ChildSpec>,
    pid: Option<u32>,
    supervisor: Recipient<WorkerReport>,
    child: Option<LaunchedChild>,
    to_child: Option<mpsc::UnboundedSender<ToChild>>,
    terminate: Option<Box<dyn FnOnce() + Send>>,
    kill: Option<oneshot::Sender<()>>,
    pending: HashMap<u64, oneshot::Sender<Result<Value, JobError>>>,
    next_job: u64,
    ready: bool,
    retiring: bool,
    /// Set when the parent decides to kill the child; reported with the exit.
    failure: Option<String>,
}

impl WorkerActor {
    pub fn new(
        slot: usize,
        generation: u64,
        spec: Arc<ChildSpec>,
        child: LaunchedChild,
        supervisor: Recipient<WorkerReport>,
    ) -> Self {
        Self {
            slot,
            generation,
            pid: child.pid,
            spec,
            supervisor,
            child: Some(child),
            to_child: None,
            terminate: None,
            kill: None,
            pending: HashMap::new(),
            next_job: 1,
            ready: false,
            retiring: false,
            failure: None,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Gives up on the child: records why and kills it. The exit report follows.
    fn fail(&mut self, reason: String) {
        tracing::error!(worker = self.slot, pid = ?self.pid, reason = %reason, "killing worker");
        self.failure.get_or_insert(reason);
        self.retiring = true;
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }

    fn on_exit(&mut self, reason: ExitReason, ctx: &mut Context<Self>) {
        // The supervisor reports the exit as a `worker_exited` event, which is logged.
        let jobs_in_flight = self.pending.len();
        tracing::debug!(worker = self.slot, pid = ?self.pid, %reason, jobs_in_flight, retiring = self.retiring, "worker process ended");
        for (_, waiter) in self.pending.drain() {
            let _ = waiter.send(Err(JobError::WorkerExited {
                worker: self.slot,
                reason: reason.to_string(),
            }));
        }
        self.supervisor.do_send(WorkerReport::Exited {
            slot: self.slot,
            generation: self.generation,
            reason,
            failure: self.failure.take(),
        });
        ctx.stop();
    }
}

impl Actor for WorkerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(child) = self.child.take() else {
            ctx.stop();
            return;
        };
        let LaunchedChild {
            stdin,
            stdout,
            stderr,
            exited,
            kill,
            ..
        } = child;
        self.kill = Some(kill);

        // Writer: one task owns stdin, so frames never interleave.
        let (to_child, mut outbox) = mpsc::unbounded_channel::<ToChild>();
        let mut stdin = stdin;
        actix_rt::spawn(async move {
            while let Some(message) = outbox.recv().await {
                if write_frame(&mut stdin, &message).await.is_err() {
                    break;
                }
            }
        });
        let _ = to_child.send(ToChild::Handshake {
            worker_id: self.slot,
        });
        self.to_child = Some(to_child);

        // Reader: frames from stdout become messages to this actor.
        let max_frame = self.spec.max_frame;
        let frames = futures_util::stream::unfold(Some(stdout), move |reader| async move {
            let mut reader = reader?;
            match read_frame::<_, FromChild>(&mut reader, max_frame).await {
                Ok(message) => Some((Ok(message), Some(reader))),
                Err(FrameError::Closed) => None,
                Err(err) => Some((Err(err), None)),
            }
        });
        ctx.add_stream(frames);

        if let Some(stderr) = stderr {
            let (slot, pid) = (self.slot, self.pid);
            actix_rt::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    forward_log_line(slot, pid, &line);
                }
            });
        }

        ctx.spawn(
            exited
                .into_actor(self)
                .map(|reason, act, ctx| act.on_exit(reason, ctx)),
        );

        let timeout = self.spec.handshake_timeout;
        ctx.run_later(timeout, move |act, _ctx| {
            if !act.ready {
                act.fail(format!(
                    "worker {} (pid {}) did not answer the start-up handshake within {:?}: \
                     `{}` does not seem to run the sollol worker entry point; a worker program \
                     must call the worker entry point first and write nothing else to stdout",
                    act.slot,
                    act.pid
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                    timeout,
                    act.spec.command_line(),
                ));
            }
        });
    }
}

impl StreamHandler<Result<FromChild, FrameError>> for WorkerActor {
    fn handle(&mut self, item: Result<FromChild, FrameError>, _ctx: &mut Self::Context) {
        match item {
            Ok(FromChild::Hello { pid, version, env }) if !self.ready => {
                self.ready = true;
                tracing::debug!(worker = self.slot, pid, version = %version, "worker answered the handshake");
                self.supervisor.do_send(WorkerReport::Ready {
                    slot: self.slot,
                    generation: self.generation,
                    pid,
                    version,
                    env,
                });
            }
            Ok(FromChild::Hello { .. }) => self.fail("worker sent a second handshake".into()),
            Ok(FromChild::Done { id, outcome }) => {
                if let Some(waiter) = self.pending.remove(&id) {
                    let result = match outcome {
                        JobOutcome::Ok(value) => Ok(value),
                        JobOutcome::Error(message) => Err(JobError::Failed(message)),
                    };
                    let _ = waiter.send(result);
                }
            }
            Err(err) => self.fail(format!(
                "worker wrote a malformed frame ({err}); worker output on stdout must be frames only, logs go to stderr"
            )),
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {
        // End of stdout: the exit future reports the rest.
    }
}

impl Handler<RunJob> for WorkerActor {
    type Result = ResponseActFuture<Self, Result<Value, JobError>>;

    fn handle(&mut self, job: RunJob, _ctx: &mut Self::Context) -> Self::Result {
        let Some(to_child) = self
            .to_child
            .as_ref()
            .filter(|_| self.ready && !self.retiring)
        else {
            return Box::pin(fut::ready(Err(JobError::NotAccepting(self.slot))));
        };
        let id = self.next_job;
        self.next_job += 1;
        let (waiter, result) = oneshot::channel();
        if to_child
            .send(ToChild::Job {
                id,
                payload: job.payload,
            })
            .is_err()
        {
            return Box::pin(fut::ready(Err(JobError::NotAccepting(self.slot))));
        }
        self.pending.insert(id, waiter);
        let slot = self.slot;
        let wait = async move {
            let outcome = match job.timeout {
                Some(limit) => match tokio::time::timeout(limit, result).await {
                    Ok(received) => received,
                    Err(_) => return Err(JobError::TimedOut(limit)),
                },
                None => result.await,
            };
            outcome.unwrap_or(Err(JobError::WorkerExited {
                worker: slot,
                reason: "worker handle stopped".into(),
            }))
        };
        Box::pin(wait.into_actor(self).map(move |result, act, _ctx| {
            act.pending.remove(&id);
            result
        }))
    }
}

impl Handler<Kill> for WorkerActor {
    type Result = ();

    fn handle(&mut self, Kill(reason): Kill, _ctx: &mut Self::Context) {
        self.fail(reason);
    }
}

impl Handler<Retire> for WorkerActor {
    type Result = ();

    /// Stops in three steps, each after the grace period if the child is still there: a
    /// shutdown frame (finish the jobs in hand), SIGTERM to its process group, SIGKILL.
    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        if self.retiring {
            return;
        }
        self.retiring = true;
        if let Some(to_child) = &self.to_child {
            let _ = to_child.send(ToChild::Shutdown);
        }
        let grace = self.spec.shutdown_grace;
        ctx.run_later(grace, move |act, ctx| {
            if let Some(terminate) = act.terminate.take() {
                tracing::warn!(worker = act.slot, pid = ?act.pid, "worker did not stop within its grace period; sending SIGTERM");
                terminate();
            }
            ctx.run_later(grace, |act, _ctx| {
                if let Some(kill) = act.kill.take() {
                    tracing::warn!(worker = act.slot, pid = ?act.pid, "worker ignored SIGTERM; killing it");
                    let _ = kill.send(());
                }
            });
        });
    }
}

/// Logs a line from a worker's stderr at the level the worker logged it.
fn forward_log_line(slot: usize, pid: Option<u32>, line: &str) {
    let pid = pid.unwrap_or_default();
    let level = line
        .split_whitespace()
        .next()
        .map(|word| word.trim_matches(|c: char| !c.is_ascii_alphabetic()))
        .unwrap_or_default();
    let json_level = line
        .find("\"level\":\"")
        .map(|at| &line[at + 9..])
        .and_then(|rest| rest.split('"').next());
    match json_level.unwrap_or(level) {
        "ERROR" => tracing::error!(target: "sollol::worker_log", worker = slot, pid, "{line}"),
        "WARN" => tracing::warn!(target: "sollol::worker_log", worker = slot, pid, "{line}"),
        "DEBUG" => tracing::debug!(target: "sollol::worker_log", worker = slot, pid, "{line}"),
        "TRACE" => tracing::trace!(target: "sollol::worker_log", worker = slot, pid, "{line}"),
        _ => tracing::info!(target: "sollol::worker_log", worker = slot, pid, "{line}"),
    }
}
