//! The examples do what their docs say (cargo builds them before the tests run).

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("test binary path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    profile_dir.join("examples").join(name)
}

#[test]
fn custom_supervisor_runs_jobs_in_workers_started_from_the_snapshot_and_fails_a_poison_job() {
    let output = Command::new(example("custom_supervisor"))
        .env_remove("SOLLOL_WORKER_ID")
        .output()
        .expect("the example is built by cargo test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(r#""one two three" -> {"greeting":"hello from the snapshot""#),
        "{stdout}"
    );
    assert!(stdout.contains(r#""words":6"#), "{stdout}");
    assert_eq!(stdout.matches("ready=true").count(), 2, "{stdout}");
    assert!(
        stdout.contains("crash job failed: the job was running on 3 workers that died"),
        "{stdout}"
    );
    let restarts: u32 = stdout
        .lines()
        .filter_map(|line| line.split("restarts=").nth(1))
        .filter_map(|n| n.trim().parse::<u32>().ok())
        .sum();
    assert_eq!(restarts, 3, "each death restarted a worker: {stdout}");
}
