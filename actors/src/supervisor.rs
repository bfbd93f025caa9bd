//! The supervisor: starts worker processes from its [`EnvSnapshot`], restarts them, and
//! hands them jobs.
//!
//! Every start (first start, restart after a crash, rolling restart after a new snapshot)
//! goes through the [`Launcher`], which applies the snapshot to the child before it runs;
//! there is no other way to start a worker, so a worker cannot come up with a stale or
//! inherited environment. A worker counts as ready only after it answered the handshake.
//! An exited worker is restarted after an exponential backoff; after
//! `restart.max_exits` exits within `restart.window` the supervisor stops restarting it
//! and reports it as failed. Jobs go to ready workers through [`SupervisorHandle::run`],
//! which hands a job to another worker if the one running it dies.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::env_snapshot::EnvSnapshot;
use crate::event::{Event, WorkerChange};
use crate::observer::Emit;
use crate::worker::actor::{JobError, Retire, RunJob, WorkerActor, WorkerReport};
use crate::worker::launcher::{ChildSpec, Launcher};
use crate::worker::WORKER_ID_VAR;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    Starting,
    Ready,
    Restarting,
    Failed,
    Stopped,
}

/// What `/sollol/workers` shows of a worker.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    pub id: usize,
    pub pid: Option<u32>,
    pub state: WorkerState,
    pub restarts: u32,
    /// The `SOLLOL_*` variables the worker reported in its handshake, redacted.
    pub env: BTreeMap<String, String>,
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("this process is a worker ({WORKER_ID_VAR} is set) and may not start worker processes of its own")]
    NestedSupervisor,
}

#[derive(Message)]
#[rtype(result = "Vec<WorkerInfo>")]
pub struct ListWorkers;

/// A ready worker to run a job on, or why there is none.
#[derive(Message)]
#[rtype(result = "Result<Addr<WorkerActor>, JobError>")]
struct AcquireWorker;

/// Stops every worker (shutdown frame, grace period, then kill) and answers when all
/// have exited.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopWorkers;

struct Slot {
    id: usize,
    generation: u64,
    worker: Option<Addr<WorkerActor>>,
    pid: Option<u32>,
    state: WorkerState,
    restarts: u32,
    recent_exits: VecDeque<Instant>,
    env: BTreeMap<String, String>,
    last_error: Option<String>,
    /// Retired on purpose (new snapshot); its exit is not a failure.
    replacing: bool,
}

pub struct Supervisor {
    spec: Arc<ChildSpec>,
    snapshot: EnvSnapshot,
    launcher: Arc<dyn Launcher>,
    slots: Vec<Slot>,
    observer: Option<Recipient<Emit>>,
    turn: usize,
    /// Slots still to be replaced by a rolling restart.
    rolling: VecDeque<usize>,
    stopping: bool,
    stop_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Supervisor {
    /// A supervisor of `workers` processes. Refuses to exist inside a worker process, so a
    /// worker that runs the normal start-up path cannot multiply itself.
    pub fn new(
        spec: ChildSpec,
        snapshot: EnvSnapshot,
        workers: usize,
        launcher: Arc<dyn Launcher>,
        observer: Option<Recipient<Emit>>,
    ) -> Result<Self, SupervisorError> {
        if crate::worker::child::is_worker_process() {
            return Err(SupervisorError::NestedSupervisor);
        }
        let slots = (0..workers)
            .map(|id| Slot {
                id,
                generation: 0,
                worker: None,
                pid: None,
                state: WorkerState::Starting,
                restarts: 0,
                recent_exits: VecDeque::new(),
                env: BTreeMap::new(),
                last_error: None,
                replacing: false,
            })
            .collect();
        Ok(Self {
            spec: Arc::new(spec),
            snapshot,
            launcher,
            slots,
            observer,
            turn: 0,
            rolling: VecDeque::new(),
            stopping: false,
            stop_waiters: Vec::new(),
        })
    }

    /// Reports a lifecycle change of `slot`'s worker; the observer logs and publishes it.
    fn emit(&self, slot: &Slot, change: WorkerChange) {
        if let Some(observer) = &self.observer {
            let event = Event::worker(slot.id, slot.pid, slot.restarts, change);
            observer.do_send(Emit(event));
        }
    }

    fn spawn_slot(&mut self, index: usize, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let launched = self.launcher.launch(&self.spec, &self.snapshot, index);
        let spec = self.spec.clone();
        let me = ctx.address().recipient();
        let slot = &mut self.slots[index];
        slot.generation += 1;
        slot.replacing = false;
        slot.env.clear();
        match launched {
            Ok(child) => {
                slot.pid = child.pid;
                slot.state = WorkerState::Starting;
                let actor = WorkerActor::new(index, slot.generation, spec, child, me);
                slot.worker = Some(actor.start());
                let slot = &self.slots[index];
                self.emit(slot, WorkerChange::Spawned);
            }
            Err(err) => {
                let message = format!("could not start `{}`: {err}", self.spec.command_line());
                tracing::error!(worker = index, error = %message, "worker start failed");
                slot.last_error = Some(message);
                slot.worker = None;
                slot.pid = None;
                self.after_exit(index, ctx);
            }
        }
    }

    /// Restart with backoff, or give up when the worker exits too often.
    fn after_exit(&mut self, index: usize, ctx: &mut Context<Self>) {
        let policy = self.spec.restart.clone();
        let now = Instant::now();
        let slot = &mut self.slots[index];
        slot.recent_exits.push_back(now);
        while slot
            .recent_exits
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            slot.recent_exits.pop_front();
        }
        if slot.recent_exits.len() >= policy.max_exits {
            slot.state = WorkerState::Failed;
            let error = format!(
                "exited {} times within {} s; last error: {}",
                slot.recent_exits.len(),
                policy.window.as_secs(),
                slot.last_error.as_deref().unwrap_or("none")
            );
            if self.observer.is_none() {
                tracing::error!(worker = index, error = %error, "worker keeps exiting; giving up on it");
            }
            let slot = &self.slots[index];
            self.emit(slot, WorkerChange::Failed { error });
            return;
        }
        let exponent = slot.recent_exits.len().saturating_sub(1).min(16) as u32;
        let backoff = (policy.base_backoff * 2u32.pow(exponent)).min(policy.max_backoff);
        let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
        let delay = backoff + jitter;
        slot.state = WorkerState::Restarting;
        slot.restarts += 1;
        let slot = &self.slots[index];
        self.emit(slot, WorkerChange::Restarting { delay });
        ctx.run_later(delay, move |act, ctx| act.spawn_slot(index, ctx));
    }

    /// Starts the next step of a rolling restart: retire one ready worker.
    fn roll_next(&mut self, ctx: &mut Context<Self>) {
        while let Some(index) = self.rolling.pop_front() {
            let slot = &mut self.slots[index];
            match (&slot.worker, slot.state) {
                (Some(worker), WorkerState::Ready | WorkerState::Starting) => {
                    slot.replacing = true;
                    worker.do_send(Retire);
                    return;
                }
                (_, WorkerState::Failed) => {
                    slot.recent_exits.clear();
                    self.spawn_slot(index, ctx);
                    return;
                }
                _ => continue,
            }
        }
    }

    fn check_stopped(&mut self) {
        if self.stopping && self.slots.iter().all(|slot| slot.worker.is_none()) {
            for waiter in self.stop_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(
            workers = self.slots.len(),
            program = %self.spec.command_line(),
            env_vars = self.snapshot.len(),
            sollol_env = ?self.snapshot.sollol_vars_redacted(),
            "starting workers"
        );
        for index in 0..self.slots.len() {
            self.spawn_slot(index, ctx);
        }
    }
}

impl Handler<WorkerReport> for Supervisor {
    type Result = ();

    fn handle(&mut self, report: WorkerReport, ctx: &mut Self::Context) {
        match report {
            WorkerReport::Ready {
                slot: index,
                generation,
                pid,
                env,
                ..
            } => {
                let Some(slot) = self
                    .slots
                    .get_mut(index)
                    .filter(|s| s.generation == generation)
                else {
                    return;
                };
                slot.state = WorkerState::Ready;
                slot.pid = Some(pid);
                slot.env = env;
                let slot = &self.slots[index];
                self.emit(slot, WorkerChange::Ready);
                if !self.rolling.is_empty() || self.slots.iter().any(|s| s.replacing) {
                    self.roll_next(ctx);
                }
            }
            WorkerReport::Exited {
                slot: index,
                generation,
                reason,
                failure,
            } => {
                let Some(slot) = self
                    .slots
                    .get_mut(index)
                    .filter(|s| s.generation == generation)
                else {
                    return;
                };
                slot.worker = None;
                if let Some(failure) = &failure {
                    slot.last_error = Some(failure.clone());
                } else if !slot.replacing && !self.stopping {
                    slot.last_error = Some(format!("worker exited with {reason}"));
                }
                let replacing = slot.replacing;
                let slot = &self.slots[index];
                let change = WorkerChange::Exited {
                    reason: reason.to_string(),
                    expected: replacing || self.stopping,
                };
                self.emit(slot, change);
                if self.stopping {
                    self.slots[index].state = WorkerState::Stopped;
                    self.check_stopped();
                } else if replacing {
                    self.spawn_slot(index, ctx);
                } else {
                    self.after_exit(index, ctx);
                }
            }
        }
    }
}

impl Handler<EnvSnapshot> for Supervisor {
    type Result = ();

    fn handle(&mut self, snapshot: EnvSnapshot, ctx: &mut Self::Context) {
        let diff = self.snapshot.diff(&snapshot);
        if diff.is_empty() {
            tracing::info!("new environment snapshot is identical; workers keep running");
            return;
        }
        tracing::info!(changes = %diff, "new environment snapshot; restarting workers one at a time");
        self.snapshot = snapshot;
        self.rolling = (0..self.slots.len()).collect();
        if !self.slots.iter().any(|s| s.replacing) {
            self.roll_next(ctx);
        }
    }
}

impl Handler<ListWorkers> for Supervisor {
    type Result = MessageResult<ListWorkers>;

    fn handle(&mut self, _: ListWorkers, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.slots
                .iter()
                .map(|slot| WorkerInfo {
                    id: slot.id,
                    pid: slot.pid,
                    state: slot.state,
                    restarts: slot.restarts,
                    env: slot.env.clone(),
                    last_error: slot.last_error.clone(),
                })
                .collect(),
        )
    }
}

impl Handler<AcquireWorker> for Supervisor {
    type Result = Result<Addr<WorkerActor>, JobError>;

    fn handle(&mut self, _: AcquireWorker, _ctx: &mut Self::Context) -> Self::Result {
        let ready: Vec<&Slot> = self
            .slots
            .iter()
            .filter(|slot| slot.state == WorkerState::Ready && !slot.replacing)
            .collect();
        if ready.is_empty() {
            let all_failed = self
                .slots
                .iter()
                .all(|slot| slot.state == WorkerState::Failed);
            let reason = if self.slots.is_empty() {
                "no workers are configured".to_string()
            } else if all_failed {
                let last = self
                    .slots
                    .iter()
                    .find_map(|s| s.last_error.clone())
                    .unwrap_or_default();
                format!("every worker failed; last error: {last}")
            } else {
                "workers are starting".to_string()
            };
            return Err(JobError::NoWorker(reason));
        }
        self.turn = self.turn.wrapping_add(1);
        let slot = ready[self.turn % ready.len()];
        slot.worker.clone().ok_or(JobError::NotAccepting(slot.id))
    }
}

impl Handler<StopWorkers> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopWorkers, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        self.rolling.clear();
        for slot in &self.slots {
            if let Some(worker) = &slot.worker {
                worker.do_send(Retire);
            }
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        self.stop_waiters.push(done);
        self.check_stopped();
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}

/// Runs jobs on a supervisor's workers.
#[derive(Clone)]
pub struct SupervisorHandle {
    pub addr: Addr<Supervisor>,
    /// Attempts per job when workers die under it.
    pub attempts: usize,
    /// How long a job waits for a worker to become ready.
    pub ready_wait: Duration,
}

impl SupervisorHandle {
    pub fn new(addr: Addr<Supervisor>) -> Self {
        Self {
            addr,
            attempts: 3,
            ready_wait: Duration::from_secs(10),
        }
    }

    /// Runs one job, moving it to another worker if the one running it exits.
    pub async fn run(&self, payload: Value, timeout: Option<Duration>) -> Result<Value, JobError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let worker = match self.addr.send(AcquireWorker).await {
                Ok(Ok(worker)) => worker,
                Ok(Err(JobError::NoWorker(reason)))
                    if reason == "workers are starting" && started.elapsed() < self.ready_wait =>
                {
                    actix_rt::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(JobError::NoWorker("the supervisor has stopped".into())),
            };
            attempt += 1;
            let job = RunJob {
                payload: payload.clone(),
                timeout,
            };
            match worker.send(job).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) if err.is_retryable() && attempt < self.attempts => {
                    tracing::debug!(attempt, error = %err, "retrying job on another worker");
                }
                Ok(Err(err)) => return Err(err),
                Err(_) if attempt < self.attempts => {}
                Err(_) => {
                    return Err(JobError::WorkerExited {
                        worker: usize::MAX,
                        reason: "worker handle stopped".into(),
                    })
                }
            }
        }
    }

    pub async fn workers(&self) -> Vec<WorkerInfo> {
        self.addr.send(ListWorkers).await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
