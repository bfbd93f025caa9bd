//! Supervisor tests with in-memory children: the launcher records the environment each
//! child was started with, and the children run the real worker entry point over pipes.

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::oneshot;

use super::*;
use crate::worker::child::{serve, JobFuture, JobHandler};
use crate::worker::launcher::{ExitReason, LaunchedChild, RestartPolicy};

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers the handshake and doubles `n` in each job.
    Work,
    /// Answers the handshake, then exits with code 3.
    CrashAfterHello,
    /// Never answers the handshake.
    Silent,
}

struct FakeLauncher {
    behaviour: Behaviour,
    launches: Arc<Mutex<Vec<(usize, EnvSnapshot)>>>,
    /// One switch per launched child; firing it makes the child die as if `kill -9`ed.
    crash_switches: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
}

struct Doubler;

impl JobHandler for Doubler {
    fn handle(&self, payload: Value) -> JobFuture {
        Box::pin(async move {
            if payload["sleep_ms"].is_u64() {
                let ms = payload["sleep_ms"].as_u64().unwrap_or(0);
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
            let run = async {
                match behaviour {
                    Behaviour::Silent => std::future::pending::<i32>().await,
                    Behaviour::CrashAfterHello => {
                        let handler: Rc<dyn JobHandler> = Rc::new(Doubler);
                        drop(child_in);
                        // Answer the handshake over the real pipes, then "crash".
                        serve_hello_only(parent_handshake(), child_out, &env, handler).await;
                        3
                    }
                    Behaviour::Work => {
                        let handler: Rc<dyn JobHandler> = Rc::new(Doubler);
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
            kill,
        })
    }
}

/// A handshake frame as the parent sends it, for a child that ignores its real stdin.
fn parent_handshake() -> std::io::Cursor<Vec<u8>> {
    let frame =
        crate::worker::frame::encode(&crate::worker::protocol::ToChild::Handshake { worker_id: 0 })
            .expect("encode");
    std::io::Cursor::new(frame)
}

async fn serve_hello_only(
    input: std::io::Cursor<Vec<u8>>,
    output: tokio::io::DuplexStream,
    env: &EnvSnapshot,
    handler: Rc<dyn JobHandler>,
) {
    // The cursor ends right after the handshake, which `serve` reads as a clean close.
    let _ = serve(input, output, env, handler, "test").await;
}

fn fast_spec() -> ChildSpec {
    let mut spec = ChildSpec::new("fake-worker", vec![]);
    spec.handshake_timeout = Duration::from_millis(300);
    spec.shutdown_grace = Duration::from_millis(200);
    spec.restart = RestartPolicy {
        max_exits: 5,
        window: Duration::from_secs(30),
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
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

type Launches = Arc<Mutex<Vec<(usize, EnvSnapshot)>>>;
type CrashSwitches = Arc<Mutex<Vec<oneshot::Sender<()>>>>;

fn start_with_switches(
    behaviour: Behaviour,
    workers: usize,
    env: EnvSnapshot,
) -> (Addr<Supervisor>, Launches, CrashSwitches) {
    let launches = Arc::new(Mutex::new(Vec::new()));
    let crash_switches = Arc::new(Mutex::new(Vec::new()));
    let launcher = Arc::new(FakeLauncher {
        behaviour,
        launches: launches.clone(),
        crash_switches: crash_switches.clone(),
    });
    let supervisor =
        Supervisor::new(fast_spec(), env, workers, launcher, None).expect("not a worker");
    (supervisor.start(), launches, crash_switches)
}

fn start(behaviour: Behaviour, workers: usize, env: EnvSnapshot) -> (Addr<Supervisor>, Launches) {
    let (addr, launches, _) = start_with_switches(behaviour, workers, env);
    (addr, launches)
}

async fn wait_for<F: Fn(&[WorkerInfo]) -> bool>(
    addr: &Addr<Supervisor>,
    what: &str,
    done: F,
) -> Vec<WorkerInfo> {
    for _ in 0..200 {
        let workers = addr.send(ListWorkers).await.expect("supervisor alive");
        if done(&workers) {
            return workers;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn workers_become_ready_and_report_their_redacted_environment() {
    System::new().block_on(async {
        let (addr, launches) = start(Behaviour::Work, 2, snapshot("indexer"));
        let workers = wait_for(&addr, "two ready workers", |w| {
            w.iter().all(|w| w.state == WorkerState::Ready)
        })
        .await;
        assert_eq!(workers[0].env["SOLLOL_APP_NAME"], "indexer");
        assert_eq!(
            workers[0].env["SOLLOL_REDIS_URL"],
            "redis://:***@127.0.0.1:6379/0"
        );
        let launches = launches.lock().expect("lock");
        assert_eq!(launches.len(), 2);
        assert!(launches.iter().all(|(_, env)| *env == snapshot("indexer")));
    });
}

#[test]
fn jobs_run_on_workers_and_return_results() {
    System::new().block_on(async {
        let (addr, _) = start(Behaviour::Work, 2, snapshot("a"));
        let handle = SupervisorHandle::new(addr);
        let mut results = Vec::new();
        for n in 0..6 {
            results.push(handle.run(json!({ "n": n }), None).await.expect("job runs"));
        }
        assert_eq!(results[5], json!({ "n": 10 }));
        let err = handle.run(json!({ "x": 1 }), None).await.unwrap_err();
        assert_eq!(err, JobError::Failed("missing n".into()));
    });
}

#[test]
fn a_crashing_worker_is_restarted_with_the_same_snapshot_then_given_up() {
    System::new().block_on(async {
        let (addr, launches) = start(Behaviour::CrashAfterHello, 1, snapshot("crashy"));
        let workers = wait_for(&addr, "worker to fail", |w| {
            w[0].state == WorkerState::Failed
        })
        .await;
        assert_eq!(
            workers[0].restarts, 4,
            "5 exits in the window: 4 restarts, then give up"
        );
        let launches = launches.lock().expect("lock");
        assert_eq!(launches.len(), 5);
        assert!(launches
            .iter()
            .all(|(id, env)| *id == 0 && *env == snapshot("crashy")));
        assert!(
            workers[0]
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("exit code 3"),
            "{workers:?}"
        );
    });
}

#[test]
fn a_child_that_never_answers_the_handshake_is_killed_with_a_clear_error() {
    System::new().block_on(async {
        let (addr, _) = start(Behaviour::Silent, 1, snapshot("silent"));
        let workers = wait_for(&addr, "a handshake failure", |w| w[0].last_error.is_some()).await;
        let error = workers[0].last_error.clone().unwrap_or_default();
        assert!(
            error.contains("did not answer the start-up handshake"),
            "{error}"
        );
        assert!(error.contains("fake-worker"), "{error}");
        let _ = addr.send(StopWorkers).await;
    });
}

#[test]
fn a_new_snapshot_restarts_every_worker_with_it() {
    System::new().block_on(async {
        let (addr, launches) = start(Behaviour::Work, 2, snapshot("old"));
        wait_for(&addr, "ready", |w| {
            w.iter().all(|w| w.state == WorkerState::Ready)
        })
        .await;
        addr.do_send(snapshot("new"));
        let workers = wait_for(&addr, "both workers on the new snapshot", |w| {
            w.iter().all(|w| {
                w.state == WorkerState::Ready
                    && w.env.get("SOLLOL_APP_NAME").map(String::as_str) == Some("new")
            })
        })
        .await;
        assert_eq!(workers.len(), 2);
        let launches = launches.lock().expect("lock");
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
fn a_job_on_a_killed_worker_moves_to_a_replacement() {
    System::new().block_on(async {
        let (addr, launches, switches) = start_with_switches(Behaviour::Work, 2, snapshot("a"));
        let handle = SupervisorHandle::new(addr.clone());
        wait_for(&addr, "ready", |w| {
            w.iter().all(|w| w.state == WorkerState::Ready)
        })
        .await;
        let slow = {
            let handle = handle.clone();
            actix_rt::spawn(
                async move { handle.run(json!({ "n": 21, "sleep_ms": 300 }), None).await },
            )
        };
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        // Kill both first-generation workers while the job is in the hands of one of them.
        for switch in switches.lock().expect("lock").drain(..) {
            let _ = switch.send(());
        }
        let result = slow
            .await
            .expect("task")
            .expect("job finishes on a replacement");
        assert_eq!(result, json!({ "n": 42 }));
        let workers = wait_for(&addr, "replacements ready", |w| {
            w.iter().all(|w| w.state == WorkerState::Ready)
        })
        .await;
        assert_eq!(workers.iter().map(|w| w.restarts).sum::<u32>(), 2);
        let launches = launches.lock().expect("lock");
        assert!(launches.len() >= 4);
        assert!(
            launches.iter().all(|(_, env)| *env == snapshot("a")),
            "replacements get the same snapshot"
        );
    });
}
