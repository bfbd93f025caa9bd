//! An application's own job type, run in worker processes by sollol's supervisor.
//!
//! The same binary is both parent and worker: `main` first checks whether it was started
//! as a worker and, if so, serves jobs; otherwise it starts a supervisor whose children
//! are this very program, with an environment snapshot applied before each child runs.
//! The job here counts words; each worker answers with its pid and the `GREETING` it
//! found in its own environment. One job crashes its worker on purpose: it is retried on
//! other workers, then failed as a poison job, while the workers are restarted.
//!
//! Run: `cargo run --example custom_supervisor`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sollol::actors::supervisor::{StopWorkers, Supervisor, SupervisorHandle, WorkerState};
use sollol::actors::worker::child::{run_if_worker, JobFuture, JobHandler};
use sollol::actors::worker::launcher::{ChildSpec, ProcessLauncher};
use sollol::actors::EnvSnapshot;

struct CountWords;

impl JobHandler for CountWords {
    fn handle(&self, payload: Value) -> JobFuture {
        Box::pin(async move {
            // A job that brings its worker down, to show what the supervisor does with it.
            if payload["crash"] == true {
                std::process::exit(101);
            }
            let text = payload["text"]
                .as_str()
                .ok_or("job needs a `text` string")?;
            Ok(json!({
                "words": text.split_whitespace().count(),
                "pid": std::process::id(),
                "greeting": std::env::var("GREETING").unwrap_or_default(),
            }))
        })
    }
}

fn main() -> std::io::Result<()> {
    // A worker child enters its job loop here, before anything else happens.
    if let Some(code) = run_if_worker("example", || CountWords) {
        std::process::exit(code);
    }

    actix::System::new().block_on(async {
        let program = std::env::current_exe()?;
        let snapshot = EnvSnapshot::capture().with("GREETING", "hello from the snapshot");
        let supervisor = Supervisor::new(
            ChildSpec::new(program, vec![]),
            snapshot,
            2,
            Arc::new(ProcessLauncher),
            None,
        )
        .map_err(std::io::Error::other)?;
        let handle = SupervisorHandle::new(actix::Actor::start(supervisor));

        // This job kills every worker that takes it: after three deaths it fails as a
        // poison job, and the other jobs are not affected.
        match handle
            .run(json!({ "crash": true }), Some(Duration::from_secs(30)))
            .await
        {
            Ok(result) => println!("crash job -> {result}"),
            Err(err) => println!("crash job failed: {err}"),
        }
        for text in ["one two three", "a longer sentence with six words", "short"] {
            match handle
                .run(json!({ "text": text }), Some(Duration::from_secs(10)))
                .await
            {
                Ok(result) => println!("{text:?} -> {result}"),
                Err(err) => eprintln!("{text:?} failed: {err}"),
            }
        }
        // Jobs start as soon as one worker is ready; give the others a moment too.
        for _ in 0..100 {
            if handle
                .workers()
                .await
                .iter()
                .all(|w| w.state == WorkerState::Ready)
            {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        for worker in handle.workers().await {
            let ready = worker.state == WorkerState::Ready;
            println!(
                "worker {} pid {:?} ready={ready} restarts={}",
                worker.id, worker.pid, worker.restarts
            );
        }
        let _ = handle.addr.send(StopWorkers).await;
        Ok(())
    })
}
