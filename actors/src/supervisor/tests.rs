//! Supervisor tests with in-memory children: the launcher records the environment each
//! child was started with, and the children run the real worker entry point over pipes.
//! Timing tests run on tokio's paused clock, so backoff delays are exact.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::oneshot;

use super::*;
use crate::worker::child::{serve, JobFuture, JobHandler};
use crate::worker::launcher::{Backoff, ExitReason, LaunchedChild, RestartIntensity};

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers the handshake and doubles `n` in each job; `{"crash": true}` kills it.
    Work,
    /// Answers the handshake, then exits with `code`.
    ExitAfterHello { code: i32 },
    /// Never answers the handshake.
    Silent,
}

type Launches = Arc<Mutex<Vec<(usize, EnvSnapshot)>>>;
type CrashSwitches = Arc<Mutex<Vec<oneshot::Sender<()>>>>;

struct FakeLauncher {
    behaviour: Behaviour,
    launches: Launches,
    /// One switch per launched child; firing it makes the child die as if `kill -9`ed.
    crash_switches: CrashSwitches,
}

/// The job handler inside a fake child.
struct Doubler {
    /// Fired by a `{"crash": true}` job: the child dies with it in hand.
    die: RefCell<Option<oneshot::Sender<()>>>,
}

impl JobHandler for Doubler {
    fn handle(&self, payload: Value) -> JobFuture {
        if payload["crash"] == true {
            if let Some(die) = self.die.borrow_mut().take() {
                let _ = die.send(());
            }
            return Box::pin(std::future::pending());
        }
        Box::pin(async move {
            if let Some(ms) = payload["sleep_ms"].as_u64() {
                actix_rt::time::sleep(Duration::from_millis(ms)).await;
            }
            let n = payload["n"].as_i64().ok_or("missing n")?;
            Ok(json!({ "n": n * 2 }))
        })
    }
}

impl Launcher for FakeLauncher {
    fn launch(
        &self,
        _spec: &ChildSpec,
        env: &EnvSnapshot,
        worker_id: usize,
    ) -> std::io::Result<LaunchedChild> {
        self.launches
            .lock()
            .expect("lock")
            .push((worker_id, env.clone()));
        let (parent_in, child_in) = tokio::io::duplex(64 * 1024);
        let (child_out, parent_out) = tokio::io::duplex(64 * 1024);
        let (kill, killed) = oneshot::channel::<()>();
        let (crash, crashed) = oneshot::channel::<()>();
        self.crash_switches.lock().expect("lock").push(crash);
        let (exit_tx, exit_rx) = oneshot::channel::<ExitReason>();
        let behaviour = self.behaviour;
        let env = env.clone();
        actix_rt::spawn(async move {
            let (die, died) = oneshot::channel::<()>();
            let run = async {
                match behaviour {
                    Behaviour::Silent => std::future::pending::<i32>().await,
                    Behaviour::ExitAfterHello { code } => {
                        drop(child_in);
                        let handler: Rc<dyn JobHandler> = Rc::new(Doubler {
                            die: RefCell::new(None),
                        });
                        // The handshake is read from a cursor that ends right after it.
                        let _ = serve(handshake_frame(), child_out, &env, handler, "test").await;
                        code
                    }
                    Behaviour::Work => {
                        let handler: Rc<dyn JobHandler> = Rc::new(Doubler {
                            die: RefCell::new(Some(die)),
                        });
                        match serve(child_in, child_out, &env, handler, "test").await {
                            Ok(()) => 0,
                            Err(_) => 1,
                        }
                    }
                }
            };
            let reason = tokio::select! {
                code = run => ExitReason { code: Some(code), signal: None },
                _ = killed => ExitReason { code: None, signal: Some(9) },
                Ok(()) = crashed => ExitReason { code: None, signal: Some(9) },
                Ok(()) = died => ExitReason { code: None, signal: Some(11) },
            };
            let _ = exit_tx.send(reason);
        });
        Ok(LaunchedChild {
            pid: Some(10_000 + worker_id as u32),
            stdin: Box::pin(parent_in),
            stdout: Box::pin(parent_out),
            stderr: None,
            exited: Box::pin(async move {
                exit_rx.await.unwrap_or(ExitReason {
                    code: None,
                    signal: None,
                })
            }),
            terminate: None,
            kill,
        })
    }
}

fn handshake_frame() -> std::io::Cursor<Vec<u8>> {
    let frame =
        crate::worker::frame::encode(&crate::worker::protocol::ToChild::Handshake { worker_id: 0 })
            .expect("encode");
    std::io::Cursor::new(frame)
}

fn fast_spec() -> ChildSpec {
    let mut spec = ChildSpec::new("fake-worker", vec![]);
    spec.handshake_timeout = Duration::from_millis(300);
    spec.shutdown_grace = Duration::from_millis(200);
    spec.intensity = RestartIntensity {
        max_exits: 5,
        window: Duration::from_secs(30),
    };
    spec.backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(5),
        jitter: 0.0,
        reset_after: Duration::from_secs(60),
    };
    spec
}

fn snapshot(app: &str) -> EnvSnapshot {
    EnvSnapshot::from_vars([
        ("SOLLOL_APP_NAME", app),
        ("SOLLOL_REDIS_URL", "redis://:secret@127.0.0.1:6379/0"),
        ("SOLLOL_OBSERVER_SAMPLING", "false"),
    ])
}

/// Collects the supervisor's events.
struct Collector(Arc<Mutex<Vec<Event>>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Emit> for Collector {
    type Result = ();

    fn handle(&mut self, Emit(event): Emit, _ctx: &mut Self::Context) {
        self.0.lock().expect("lock").push(event);
    }
}

struct Started {
    addr: Addr<Supervisor>,
    launches: Launches,
    switches: CrashSwitches,
    events: Arc<Mutex<Vec<Event>>>,
}

fn start_with(behaviour: Behaviour, workers: usize, env: EnvSnapshot, spec: ChildSpec) -> Started {
    let launches = Arc::new(Mutex::new(Vec::new()));
    let switches = Arc::new(Mutex::new(Vec::new()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let launcher = Arc::new(FakeLauncher {
        behaviour,
        launches: launches.clone(),
        crash_switches: switches.clone(),
    });
    let collector = Collector(events.clone()).start().recipient();
    let supervisor =
        Supervisor::new(spec, env, workers, launcher, Some(collector)).expect("not a worker");
    Started {
        addr: supervisor.start(),
        launches,
        switches,
        events,
    }
}

fn start(behaviour: Behaviour, workers: usize, env: EnvSnapshot) -> Started {
    start_with(behaviour, workers, env, fast_spec())
}

async fn wait_for<F: Fn(&[WorkerInfo]) -> bool>(
    addr: &Addr<Supervisor>,
    what: &str,
    done: F,
) -> Vec<WorkerInfo> {
    for _ in 0..400 {
        let workers = addr.send(ListWorkers).await.expect("supervisor alive");
        if done(&workers) {
            return workers;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn all_ready(workers: &[WorkerInfo]) -> bool {
    workers.iter().all(|w| w.state == WorkerState::Ready)
}

#[test]
fn workers_become_ready_and_report_their_redacted_environment() {
    System::new().block_on(async {
        let started = start(Behaviour::Work, 2, snapshot("indexer"));
        let workers = wait_for(&started.addr, "two ready workers", all_ready).await;
        assert_eq!(workers[0].env["SOLLOL_APP_NAME"], "indexer");
        assert_eq!(
            workers[0].env["SOLLOL_REDIS_URL"],
            "redis://:***@127.0.0.1:6379/0"
        );
        let launches = started.launches.lock().expect("lock");
        assert_eq!(launches.len(), 2);
        assert!(launches.iter().all(|(_, env)| *env == snapshot("indexer")));
    });
}

#[test]
fn jobs_run_on_workers_and_return_results() {
    System::new().block_on(async {
        let started = start(Behaviour::Work, 2, snapshot("a"));
        let handle = SupervisorHandle::new(started.addr);
        let jobs = (0..20).map(|n| handle.run(json!({ "n": n }), None));
        let results = futures_util::future::join_all(jobs).await;
        assert_eq!(results[19], Ok(json!({ "n": 38 })));
        let err = handle.run(json!({ "x": 1 }), None).await.unwrap_err();
        assert_eq!(err, JobError::Failed("missing n".into()));
    });
}

#[test]
fn restarts_back_off_exactly_then_give_up() {
    System::new().block_on(async {
        tokio::time::pause();
        let started = start(Behaviour::ExitAfterHello { code: 3 }, 1, snapshot("crashy"));
        let workers = wait_for(&started.addr, "worker to fail", |w| {
            w[0].state == WorkerState::Failed
        })
        .await;
        assert_eq!(
            workers[0].restarts, 4,
            "5 exits in the window: 4 restarts, then give up"
        );
        assert!(
            workers[0]
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("exit code 3"),
            "{workers:?}"
        );
        let launches = started.launches.lock().expect("lock");
        assert_eq!(launches.len(), 5, "five starts");
        assert!(launches
            .iter()
            .all(|(id, env)| *id == 0 && *env == snapshot("crashy")));
        let delays: Vec<u64> = started
            .events
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| e.event_type() == crate::event::EventType::WorkerRestarting)
            .filter_map(|e| e.details().get("delay_ms").and_then(Value::as_u64))
            .collect();
        assert_eq!(
            delays,
            vec![100, 200, 400, 800],
            "exponential backoff from the base"
        );
        let gave_up = started
            .events
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| e.event_type() == crate::event::EventType::WorkerFailed)
            .count();
        assert_eq!(gave_up, 1);
    });
}

#[test]
fn restart_types_decide_who_comes_back() {
    System::new().block_on(async {
        tokio::time::pause();
        let mut transient = fast_spec();
        transient.restart = Restart::Transient;
        let clean = start_with(
            Behaviour::ExitAfterHello { code: 0 },
            1,
            snapshot("t"),
            transient.clone(),
        );
        wait_for(&clean.addr, "a clean exit to stay down", |w| {
            w[0].state == WorkerState::Stopped
        })
        .await;
        assert_eq!(
            clean.launches.lock().expect("lock").len(),
            1,
            "transient: a clean exit is final"
        );

        let crashing = start_with(
            Behaviour::ExitAfterHello { code: 1 },
            1,
            snapshot("t"),
            transient,
        );
        wait_for(
            &crashing.addr,
            "a crashing transient worker to be restarted",
            |w| w[0].restarts >= 1,
        )
        .await;

        let mut temporary = fast_spec();
        temporary.restart = Restart::Temporary;
        let once = start_with(
            Behaviour::ExitAfterHello { code: 1 },
            1,
            snapshot("t"),
            temporary,
        );
        wait_for(&once.addr, "a temporary worker to stay down", |w| {
            w[0].state == WorkerState::Stopped
        })
        .await;
        assert_eq!(
            once.launches.lock().expect("lock").len(),
            1,
            "temporary: never restarted"
        );
        let err = SupervisorHandle::new(once.addr)
            .run(json!({ "n": 1 }), None)
            .await
            .unwrap_err();
        assert!(matches!(err, JobError::NoWorker(_)), "{err:?}");
    });
}

#[test]
fn a_child_that_never_answers_the_handshake_is_killed_with_a_clear_error() {
    System::new().block_on(async {
        let started = start(Behaviour::Silent, 1, snapshot("silent"));
        let workers = wait_for(&started.addr, "a handshake failure", |w| {
            w[0].last_error.is_some()
        })
        .await;
        let error = workers[0].last_error.clone().unwrap_or_default();
        assert!(
            error.contains("did not answer the start-up handshake"),
            "{error}"
        );
        assert!(error.contains("fake-worker"), "{error}");
        let _ = started.addr.send(StopWorkers).await;
    });
}

#[test]
fn a_new_snapshot_rolls_through_the_workers_during_a_batch_without_a_failed_job() {
    System::new().block_on(async {
        let started = start(Behaviour::Work, 2, snapshot("old"));
        let handle = SupervisorHandle::new(started.addr.clone());
        wait_for(&started.addr, "ready", all_ready).await;
        let batch = (0..60).map(|n| {
            let handle = handle.clone();
            async move { handle.run(json!({ "n": n, "sleep_ms": 5 }), None).await }
        });
        let batch = actix_rt::spawn(futures_util::future::join_all(batch));
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        started.addr.do_send(snapshot("new"));
        let results = batch.await.expect("task");
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let workers = wait_for(&started.addr, "both workers on the new snapshot", |w| {
            w.iter().all(|w| {
                w.state == WorkerState::Ready
                    && w.env.get("SOLLOL_APP_NAME").map(String::as_str) == Some("new")
            })
        })
        .await;
        let launches = started.launches.lock().expect("lock");
        assert_eq!(launches.len(), 4);
        assert!(launches[2..].iter().all(|(_, env)| *env == snapshot("new")));
        assert_eq!(
            workers.iter().map(|w| w.restarts).sum::<u32>(),
            0,
            "a planned replacement is not a restart"
        );
    });
}

#[test]
fn jobs_on_a_killed_worker_move_to_a_replacement() {
    System::new().block_on(async {
        let started = start(Behaviour::Work, 2, snapshot("a"));
        let handle = SupervisorHandle::new(started.addr.clone());
        wait_for(&started.addr, "ready", all_ready).await;
        let jobs = (0..8).map(|n| {
            let handle = handle.clone();
            async move { handle.run(json!({ "n": n, "sleep_ms": 300 }), None).await }
        });
        let jobs = actix_rt::spawn(futures_util::future::join_all(jobs));
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        for switch in started.switches.lock().expect("lock").drain(..) {
            let _ = switch.send(());
        }
        let results = jobs.await.expect("task");
        let expected: Vec<Result<Value, JobError>> =
            (0..8).map(|n| Ok(json!({ "n": n * 2 }))).collect();
        assert_eq!(
            results, expected,
            "every job finishes on a replacement, none lost"
        );
        let counts = handle.job_counts().await;
        assert!(counts.requeued >= 8, "{counts:?}");
        let launches = started.launches.lock().expect("lock");
        assert!(
            launches.iter().all(|(_, env)| *env == snapshot("a")),
            "replacements get the same snapshot"
        );
    });
}

#[test]
fn a_job_that_kills_three_workers_fails_as_poison_and_the_others_finish() {
    System::new().block_on(async {
        let started = start(Behaviour::Work, 2, snapshot("a"));
        let handle = SupervisorHandle::new(started.addr.clone());
        wait_for(&started.addr, "ready", all_ready).await;
        let poison = handle.run(json!({ "crash": true }), None);
        let fine =
            futures_util::future::join_all((0..10).map(|n| handle.run(json!({ "n": n }), None)));
        let (poison, fine) = futures_util::join!(poison, fine);
        assert_eq!(
            poison,
            Err(JobError::Poison {
                deaths: POISON_DEATHS
            })
        );
        assert!(poison.unwrap_err().to_string().contains("poison job"));
        assert!(fine.iter().all(Result::is_ok), "{fine:?}");
        assert_eq!(handle.job_counts().await.poisoned, 1);
    });
}

#[test]
fn cancelling_a_batch_drops_its_queued_jobs_and_deadlines_expire() {
    System::new().block_on(async {
        let mut spec = fast_spec();
        spec.jobs_per_worker = 1;
        let started = start_with(Behaviour::Work, 1, snapshot("a"), spec);
        let handle = SupervisorHandle::new(started.addr.clone());
        wait_for(&started.addr, "ready", all_ready).await;
        let batch = (0..10).map(|n| {
            let handle = handle.clone();
            async move {
                handle
                    .run_in_batch(json!({ "n": n, "sleep_ms": 50 }), None, Some(7))
                    .await
            }
        });
        let batch = actix_rt::spawn(futures_util::future::join_all(batch));
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        let dropped = handle.cancel_batch(7).await;
        assert!(dropped >= 8, "{dropped}");
        let results = batch.await.expect("task");
        let cancelled = results
            .iter()
            .filter(|r| **r == Err(JobError::Cancelled))
            .count();
        assert_eq!(cancelled, dropped);
        assert!(results.iter().filter(|r| r.is_ok()).count() <= 2);

        let late = handle
            .run(
                json!({ "n": 1, "sleep_ms": 500 }),
                Some(Duration::from_millis(100)),
            )
            .await;
        assert!(matches!(late, Err(JobError::TimedOut(_))), "{late:?}");
    });
}
