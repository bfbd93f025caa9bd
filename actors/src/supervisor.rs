//! The supervisor: starts worker processes from its [`EnvSnapshot`], restarts them, and
//! runs jobs on them without losing any.
//!
//! Every start (first start, restart after a crash, rolling restart after a new snapshot)
//! goes through the [`Launcher`], which applies the snapshot to the child before it runs;
//! there is no other way to start a worker, so a worker cannot come up with a stale or
//! inherited environment. A worker counts as ready only after it answered the handshake.
//!
//! **Restarts.** An exited worker is restarted according to its [`Restart`] type, after
//! an exponential backoff with jitter ([`Backoff`]); after `intensity.max_exits` exits
//! within `intensity.window` the supervisor gives up on it and reports it as failed. A
//! worker that stayed up for `backoff.reset_after` starts its count afresh.
//!
//! **Jobs.** Jobs wait in the supervisor's queue, not in a pipe: each ready worker is given
//! at most `jobs_per_worker` at a time. When a worker dies, the jobs it held go back to
//! the front of the queue; a job that was on three workers that died is failed as a
//! poison job. Jobs have deadlines, and a batch can be cancelled: its queued jobs are
//! dropped at once. A new snapshot restarts the workers one at a time, each finishing
//! its jobs first, so a rolling restart loses nothing.
//!
//! **Memory.** With `memory_limit_bytes` set, a worker whose resident set grows past it
//! gets no new jobs and is replaced once its current ones are done.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::env_snapshot::EnvSnapshot;
use crate::event::{Event, WorkerChange};
use crate::observer::Emit;
use crate::worker::actor::{JobError, Kill, Retire, RunJob, WorkerActor, WorkerReport};
use crate::worker::launcher::{ChildSpec, ExitReason, Launcher, Restart};
use crate::worker::WORKER_ID_VAR;

/// Worker deaths a job may witness before it is failed as a poison job.
pub const POISON_DEATHS: u32 = 3;

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
    pub jobs_running: usize,
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

/// Runs one job; answers its result once a worker has produced it (or why none will).
#[derive(Message)]
#[rtype(result = "Result<Value, JobError>")]
pub struct SubmitJob {
    pub payload: Value,
    /// Time the job may take from submission, queueing included.
    pub timeout: Option<Duration>,
    /// The batch the job belongs to, for [`CancelBatch`].
    pub batch: Option<u64>,
}

/// Drops the queued jobs of a batch (they fail as cancelled); answers how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CancelBatch(pub u64);

/// The snapshot workers are started with now.
#[derive(Message)]
#[rtype(result = "EnvSnapshot")]
pub struct GetSnapshot;

/// Jobs waiting and running, for status pages.
#[derive(Message)]
#[rtype(result = "JobCounts")]
pub struct GetJobCounts;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct JobCounts {
    pub queued: usize,
    pub running: usize,
    pub poisoned: u64,
    pub requeued: u64,
}

/// Stops every worker (shutdown frame, grace, SIGTERM, grace, SIGKILL) and answers when
/// all have exited. Queued jobs fail.
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
    ready_at: Option<Instant>,
    env: BTreeMap<String, String>,
    last_error: Option<String>,
    /// Retired on purpose (new snapshot, memory limit); its exit is not a failure.
    replacing: bool,
    /// Gets no new jobs (over its memory limit); retired once idle.
    draining: bool,
    running: usize,
    /// Runs a suspect job (one that was on a worker that died) alone, so that another
    /// death can be blamed on it and on nothing else.
    isolated: bool,
}

struct Job {
    id: u64,
    payload: Value,
    batch: Option<u64>,
    deadline: Option<Instant>,
    deaths: u32,
    reply: oneshot::Sender<Result<Value, JobError>>,
}

/// A job handed to a worker, and where and when.
struct RunningJob {
    job: Job,
    slot: usize,
    started: Instant,
}

/// A worker that held a job at least this long past its deadline without answering is
/// presumed stuck and replaced.
const STUCK_AFTER: Duration = Duration::from_secs(5);

pub struct Supervisor {
    spec: Arc<ChildSpec>,
    snapshot: EnvSnapshot,
    launcher: Arc<dyn Launcher>,
    slots: Vec<Slot>,
    observer: Option<Recipient<Emit>>,
    queue: VecDeque<Job>,
    running: HashMap<u64, RunningJob>,
    next_job: u64,
    counts: JobCounts,
    turn: usize,
    /// Slots still to be replaced by a rolling restart.
    rolling: VecDeque<usize>,
    stopping: bool,
    stop_waiters: Vec<oneshot::Sender<()>>,
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
                ready_at: None,
                env: BTreeMap::new(),
                last_error: None,
                replacing: false,
                draining: false,
                running: 0,
                isolated: false,
            })
            .collect();
        Ok(Self {
            spec: Arc::new(spec),
            snapshot,
            launcher,
            slots,
            observer,
            queue: VecDeque::new(),
            running: HashMap::new(),
            next_job: 1,
            counts: JobCounts::default(),
            turn: 0,
            rolling: VecDeque::new(),
            stopping: false,
            stop_waiters: Vec::new(),
        })
    }

    /// Reports a lifecycle change of a worker; the observer logs, counts and publishes it.
    fn emit(&self, index: usize, change: WorkerChange) {
        if let Some(observer) = &self.observer {
            let slot = &self.slots[index];
            observer.do_send(Emit(Event::worker(
                slot.id,
                slot.pid,
                slot.restarts,
                change,
            )));
        } else {
            tracing::info!(worker = index, change = ?change, "worker lifecycle");
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
        slot.draining = false;
        slot.ready_at = None;
        slot.env.clear();
        match launched {
            Ok(child) => {
                slot.pid = child.pid;
                slot.state = WorkerState::Starting;
                let actor = WorkerActor::new(index, slot.generation, spec, child, me);
                slot.worker = Some(actor.start());
                tracing::info!(worker = index, pid = ?slot.pid, "worker spawned");
                self.emit(index, WorkerChange::Spawned);
            }
            Err(err) => {
                let message = format!("could not start `{}`: {err}", self.spec.command_line());
                tracing::error!(worker = index, error = %message, "worker start failed");
                slot.last_error = Some(message);
                slot.worker = None;
                slot.pid = None;
                self.after_exit(index, true, ctx);
            }
        }
    }

    /// Restart with backoff, or not (restart type), or give up (intensity).
    fn after_exit(&mut self, index: usize, abnormal: bool, ctx: &mut Context<Self>) {
        let restart = match self.spec.restart {
            Restart::Permanent => true,
            Restart::Transient => abnormal,
            Restart::Temporary => false,
        };
        if !restart {
            self.slots[index].state = WorkerState::Stopped;
            tracing::info!(
                worker = index,
                "worker exited and is not restarted (restart type)"
            );
            self.fail_if_no_workers();
            return;
        }
        let now = Instant::now();
        let intensity = self.spec.intensity.clone();
        let backoff = self.spec.backoff.clone();
        let slot = &mut self.slots[index];
        if slot
            .ready_at
            .is_some_and(|at| now.duration_since(at) >= backoff.reset_after)
        {
            slot.recent_exits.clear();
        }
        slot.recent_exits.push_back(now);
        while slot
            .recent_exits
            .front()
            .is_some_and(|t| now.duration_since(*t) > intensity.window)
        {
            slot.recent_exits.pop_front();
        }
        if slot.recent_exits.len() >= intensity.max_exits {
            slot.state = WorkerState::Failed;
            tracing::error!(
                worker = index,
                exits = slot.recent_exits.len(),
                window_secs = intensity.window.as_secs(),
                last_error = ?slot.last_error,
                "worker keeps exiting; giving up on it"
            );
            let error = format!(
                "exited {} times within {} s; last error: {}",
                slot.recent_exits.len(),
                intensity.window.as_secs(),
                slot.last_error.as_deref().unwrap_or("none")
            );
            self.emit(index, WorkerChange::Failed { error });
            self.fail_if_no_workers();
            return;
        }
        let delay = backoff.delay(slot.recent_exits.len());
        slot.state = WorkerState::Restarting;
        slot.restarts += 1;
        tracing::info!(
            worker = index,
            delay_ms = delay.as_millis() as u64,
            "restarting worker"
        );
        self.emit(index, WorkerChange::Restarting { delay });
        ctx.run_later(delay, move |act, ctx| act.spawn_slot(index, ctx));
    }

    /// With no worker left that could ever take a job, queued jobs fail now.
    fn fail_if_no_workers(&mut self) {
        let none_left = self
            .slots
            .iter()
            .all(|s| matches!(s.state, WorkerState::Failed | WorkerState::Stopped));
        if !none_left {
            return;
        }
        let last = self
            .slots
            .iter()
            .find_map(|s| s.last_error.clone())
            .unwrap_or_default();
        for job in self.queue.drain(..) {
            let reason = if self.slots.is_empty() {
                "no workers are configured".to_string()
            } else {
                format!("every worker failed or stopped; last error: {last}")
            };
            let _ = job.reply.send(Err(JobError::NoWorker(reason)));
        }
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
                (_, WorkerState::Failed | WorkerState::Stopped) => {
                    slot.recent_exits.clear();
                    self.spawn_slot(index, ctx);
                    return;
                }
                _ => continue,
            }
        }
    }

    /// Hands queued jobs to ready workers with free room, in turn. A suspect job (it was
    /// on a worker that died) only goes to an idle worker, and runs there alone.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let per_worker = self.spec.jobs_per_worker.max(1);
        loop {
            let mut placed = None;
            let mut index = 0;
            while index < self.queue.len() {
                let job = &self.queue[index];
                if job.reply.is_closed() || job.deadline.is_some_and(|d| d <= now) {
                    if let Some(job) = self.queue.remove(index) {
                        let _ = job.reply.send(Err(JobError::TimedOut(Duration::ZERO)));
                    }
                    continue;
                }
                let suspect = job.deaths > 0;
                let room = |slot: &Slot| {
                    slot.state == WorkerState::Ready
                        && !slot.replacing
                        && !slot.draining
                        && !slot.isolated
                        && if suspect {
                            slot.running == 0
                        } else {
                            slot.running < per_worker
                        }
                };
                self.turn = self.turn.wrapping_add(1);
                let count = self.slots.len();
                let turn = self.turn;
                let best = self
                    .slots
                    .iter()
                    .filter(|slot| room(slot))
                    .min_by_key(|slot| (slot.running, (slot.id + count - turn % count) % count))
                    .map(|slot| slot.id);
                if let Some(slot) = best {
                    placed = Some((index, slot));
                    break;
                }
                index += 1;
            }
            let Some((index, slot)) = placed else { return };
            let Some(job) = self.queue.remove(index) else {
                return;
            };
            self.start_job(slot, job, ctx);
        }
    }

    fn start_job(&mut self, index: usize, job: Job, ctx: &mut Context<Self>) {
        let Some(worker) = self.slots[index].worker.clone() else {
            self.queue.push_front(job);
            return;
        };
        let timeout = job
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        let run = RunJob {
            payload: job.payload.clone(),
            timeout,
        };
        let id = job.id;
        self.slots[index].running += 1;
        self.slots[index].isolated = job.deaths > 0;
        self.running.insert(
            id,
            RunningJob {
                job,
                slot: index,
                started: Instant::now(),
            },
        );
        ctx.spawn(
            worker
                .send(run)
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let outcome = result.unwrap_or_else(|_| {
                        Err(JobError::WorkerExited {
                            worker: index,
                            reason: "worker handle stopped".into(),
                        })
                    });
                    act.finish_job(id, outcome, ctx);
                }),
        );
    }

    fn finish_job(&mut self, id: u64, outcome: Result<Value, JobError>, ctx: &mut Context<Self>) {
        let Some(RunningJob {
            mut job,
            slot,
            started,
        }) = self.running.remove(&id)
        else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(slot) {
            slot.running = slot.running.saturating_sub(1);
            if slot.running == 0 {
                slot.isolated = false;
            }
        }
        match outcome {
            Err(JobError::WorkerExited { worker, reason }) => {
                job.deaths += 1;
                if job.deaths >= POISON_DEATHS {
                    tracing::error!(job = id, deaths = job.deaths, last_worker = worker, %reason, "poison job");
                    self.counts.poisoned += 1;
                    let _ = job.reply.send(Err(JobError::Poison { deaths: job.deaths }));
                } else {
                    tracing::warn!(job = id, worker, %reason, "worker died holding a job; queueing it again");
                    self.counts.requeued += 1;
                    self.queue.push_front(job);
                }
            }
            Err(JobError::NotAccepting(_)) => self.queue.push_front(job),
            Err(JobError::TimedOut(limit)) => {
                // A worker that leaves a job unanswered past its deadline is presumed stuck
                // (a stopped process answers nothing): replace it.
                let held_long = started.elapsed() >= STUCK_AFTER;
                if let Some(worker) = self
                    .slots
                    .get(slot)
                    .and_then(|s| s.worker.clone())
                    .filter(|_| held_long)
                {
                    worker.do_send(Kill(format!(
                        "a job got no answer within {limit:?}; the worker is presumed stuck"
                    )));
                }
                let _ = job.reply.send(Err(JobError::TimedOut(limit)));
            }
            other => {
                let _ = job.reply.send(other);
            }
        }
        self.retire_drained(ctx);
        self.dispatch(ctx);
    }

    /// Replaces draining workers once they hold no job.
    fn retire_drained(&mut self, _ctx: &mut Context<Self>) {
        for slot in &mut self.slots {
            if slot.draining && !slot.replacing && slot.running == 0 {
                if let Some(worker) = &slot.worker {
                    slot.replacing = true;
                    worker.do_send(Retire);
                }
            }
        }
    }

    /// Marks workers over their memory limit for replacement.
    fn check_memory(&mut self, ctx: &mut Context<Self>) {
        let Some(limit) = self.spec.memory_limit_bytes else {
            return;
        };
        let mut over = Vec::new();
        for slot in &mut self.slots {
            if slot.state != WorkerState::Ready || slot.draining || slot.replacing {
                continue;
            }
            let Some(resident) = slot.pid.and_then(resident_bytes) else {
                continue;
            };
            if resident > limit {
                tracing::warn!(worker = slot.id, pid = ?slot.pid, resident, limit, "worker is over its memory limit; replacing it after its current jobs");
                slot.draining = true;
                over.push((slot.id, resident));
            }
        }
        for (index, resident) in over {
            tracing::info!(
                worker = index,
                resident,
                "worker will be replaced for its memory use"
            );
        }
        self.retire_drained(ctx);
    }

    fn expire_queued(&mut self) {
        let now = Instant::now();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for job in self.queue.drain(..) {
            if job.reply.is_closed() {
                continue;
            }
            if job.deadline.is_some_and(|d| d <= now) {
                let _ = job.reply.send(Err(JobError::TimedOut(Duration::ZERO)));
                continue;
            }
            kept.push_back(job);
        }
        self.queue = kept;
    }

    fn check_stopped(&mut self) {
        if self.stopping && self.slots.iter().all(|slot| slot.worker.is_none()) {
            for waiter in self.stop_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

/// The slot `index` if a report is about its current worker (a report from a replaced
/// generation is stale).
fn current_slot(slots: &mut [Slot], index: usize, generation: u64) -> Option<&mut Slot> {
    slots.get_mut(index).filter(|s| s.generation == generation)
}

/// The resident set of a process, from `/proc/<pid>/statm` (Linux).
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
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
        ctx.run_interval(Duration::from_millis(200), |act, _ctx| act.expire_queued());
        if self.spec.memory_limit_bytes.is_some() {
            ctx.run_interval(Duration::from_secs(1), |act, ctx| act.check_memory(ctx));
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
                let Some(slot) = current_slot(&mut self.slots, index, generation) else {
                    return;
                };
                slot.state = WorkerState::Ready;
                slot.pid = Some(pid);
                slot.env = env;
                slot.ready_at = Some(Instant::now());
                self.emit(index, WorkerChange::Ready);
                if !self.rolling.is_empty() && !self.slots.iter().any(|s| s.replacing) {
                    self.roll_next(ctx);
                }
                self.dispatch(ctx);
            }
            WorkerReport::Exited {
                slot: index,
                generation,
                reason,
                failure,
            } => {
                let Some(slot) = current_slot(&mut self.slots, index, generation) else {
                    return;
                };
                slot.worker = None;
                let abnormal = failure.is_some() || !reason.is_normal();
                if let Some(failure) = &failure {
                    slot.last_error = Some(failure.clone());
                } else if !slot.replacing && !self.stopping {
                    slot.last_error = Some(format!("worker exited with {reason}"));
                }
                let replacing = slot.replacing;
                let expected = replacing || self.stopping;
                self.emit(
                    index,
                    WorkerChange::Exited {
                        reason: exit_text(&reason),
                        expected,
                    },
                );
                if self.stopping {
                    self.slots[index].state = WorkerState::Stopped;
                    self.check_stopped();
                } else if replacing {
                    // A rolling restart retires the next worker once this one is ready.
                    self.spawn_slot(index, ctx);
                } else {
                    self.after_exit(index, abnormal, ctx);
                }
            }
        }
    }
}

fn exit_text(reason: &ExitReason) -> String {
    reason.to_string()
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

impl Handler<SubmitJob> for Supervisor {
    type Result = ResponseFuture<Result<Value, JobError>>;

    fn handle(&mut self, submit: SubmitJob, ctx: &mut Self::Context) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        if self.stopping {
            return Box::pin(async {
                Err(JobError::NoWorker("the supervisor is stopping".into()))
            });
        }
        let job = Job {
            id: self.next_job,
            payload: submit.payload,
            batch: submit.batch,
            deadline: submit.timeout.map(|t| Instant::now() + t),
            deaths: 0,
            reply,
        };
        self.next_job += 1;
        self.queue.push_back(job);
        self.fail_if_no_workers();
        self.dispatch(ctx);
        let timeout = submit.timeout;
        Box::pin(async move {
            match answer.await {
                Ok(result) => result.map_err(|err| match err {
                    JobError::TimedOut(_) => JobError::TimedOut(timeout.unwrap_or_default()),
                    other => other,
                }),
                Err(_) => Err(JobError::NoWorker("the supervisor dropped the job".into())),
            }
        })
    }
}

impl Handler<CancelBatch> for Supervisor {
    type Result = usize;

    fn handle(&mut self, CancelBatch(batch): CancelBatch, _ctx: &mut Self::Context) -> usize {
        let before = self.queue.len();
        let mut kept = VecDeque::with_capacity(before);
        for job in self.queue.drain(..) {
            if job.batch == Some(batch) {
                let _ = job.reply.send(Err(JobError::Cancelled));
            } else {
                kept.push_back(job);
            }
        }
        self.queue = kept;
        before - self.queue.len()
    }
}

impl Handler<GetSnapshot> for Supervisor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.snapshot.clone())
    }
}

impl Handler<GetJobCounts> for Supervisor {
    type Result = MessageResult<GetJobCounts>;

    fn handle(&mut self, _: GetJobCounts, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(JobCounts {
            queued: self.queue.len(),
            running: self.running.len(),
            ..self.counts
        })
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
                    jobs_running: slot.running,
                    env: slot.env.clone(),
                    last_error: slot.last_error.clone(),
                })
                .collect(),
        )
    }
}

impl Handler<StopWorkers> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopWorkers, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        self.rolling.clear();
        for job in self.queue.drain(..) {
            let _ = job
                .reply
                .send(Err(JobError::NoWorker("the supervisor is stopping".into())));
        }
        for slot in &self.slots {
            if let Some(worker) = &slot.worker {
                worker.do_send(Retire);
            }
        }
        let (done, wait) = oneshot::channel();
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
}

impl SupervisorHandle {
    pub fn new(addr: Addr<Supervisor>) -> Self {
        Self { addr }
    }

    /// Runs one job; it moves to another worker if the one running it dies.
    pub async fn run(&self, payload: Value, timeout: Option<Duration>) -> Result<Value, JobError> {
        self.run_in_batch(payload, timeout, None).await
    }

    pub async fn run_in_batch(
        &self,
        payload: Value,
        timeout: Option<Duration>,
        batch: Option<u64>,
    ) -> Result<Value, JobError> {
        self.addr
            .send(SubmitJob {
                payload,
                timeout,
                batch,
            })
            .await
            .unwrap_or_else(|_| Err(JobError::NoWorker("the supervisor has stopped".into())))
    }

    /// Drops the queued jobs of `batch`; answers how many.
    pub async fn cancel_batch(&self, batch: u64) -> usize {
        self.addr.send(CancelBatch(batch)).await.unwrap_or(0)
    }

    pub async fn workers(&self) -> Vec<WorkerInfo> {
        self.addr.send(ListWorkers).await.unwrap_or_default()
    }

    pub async fn job_counts(&self) -> JobCounts {
        self.addr.send(GetJobCounts).await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
