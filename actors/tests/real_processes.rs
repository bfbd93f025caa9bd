//! The supervisor with real operating-system processes that are not sollol workers: it
//! must kill them with an error that says what is wrong, and survive whatever they write.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use sollol_actors::supervisor::{ListWorkers, StopWorkers, Supervisor, WorkerInfo};
use sollol_actors::worker::launcher::{Backoff, ChildSpec, ProcessLauncher, RestartIntensity};
use sollol_actors::EnvSnapshot;

fn spec(program: &str, args: &[&str]) -> ChildSpec {
    let mut spec = ChildSpec::new(program, args.iter().map(|a| a.to_string()).collect());
    spec.handshake_timeout = Duration::from_millis(400);
    spec.intensity = RestartIntensity {
        max_exits: 2,
        window: Duration::from_secs(30),
    };
    spec.backoff = Backoff {
        base: Duration::from_millis(10),
        max: Duration::from_millis(20),
        jitter: 0.0,
        reset_after: Duration::from_secs(60),
    };
    spec
}

async fn first_error(spec: ChildSpec) -> (WorkerInfo, Addr<Supervisor>) {
    let env = EnvSnapshot::from_vars([("PATH", "/usr/bin:/bin")]);
    let supervisor = Supervisor::new(spec, env, 1, Arc::new(ProcessLauncher), None)
        .expect("not a worker")
        .start();
    for _ in 0..100 {
        let workers = supervisor.send(ListWorkers).await.expect("alive");
        if workers[0].last_error.is_some() {
            return (workers[0].clone(), supervisor);
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no worker error was reported");
}

fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn a_program_that_never_answers_is_killed_with_a_clear_error() {
    System::new().block_on(async {
        let (worker, supervisor) = first_error(spec("/bin/sleep", &["30"])).await;
        let error = worker.last_error.expect("error");
        assert!(
            error.contains("did not answer the start-up handshake"),
            "{error}"
        );
        assert!(error.contains("/bin/sleep 30"), "{error}");
        let pid = worker.pid.expect("pid");
        for _ in 0..50 {
            if !is_alive(pid) {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!is_alive(pid), "the silent child was killed");
        supervisor.send(StopWorkers).await.expect("stops");
    });
}

#[test]
fn a_program_that_writes_garbage_is_killed_and_the_parent_survives() {
    System::new().block_on(async {
        let (worker, supervisor) = first_error(spec(
            "/bin/sh",
            &["-c", "echo 'hello, I am not a worker'; sleep 30"],
        ))
        .await;
        let error = worker.last_error.expect("error");
        assert!(error.contains("malformed frame"), "{error}");
        assert!(error.contains("stdout must be frames only"), "{error}");
        supervisor
            .send(StopWorkers)
            .await
            .expect("the supervisor still answers");
    });
}
