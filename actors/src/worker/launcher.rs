//! Starting worker processes.
//!
//! [`spawn_command`] is the only place that builds a worker's command: it clears the
//! inherited environment, applies the [`EnvSnapshot`], adds the worker's slot number, and
//! arranges for the child to die with its parent. The [`Launcher`] trait lets tests
//! replace real processes with in-memory children that see the same environment.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::frame::DEFAULT_MAX_FRAME;
use super::WORKER_ID_VAR;
use crate::env_snapshot::EnvSnapshot;

/// How many exits within how long make the supervisor give up on a worker, and how long
/// it waits before each restart.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    pub max_exits: usize,
    pub window: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_exits: 5,
            window: Duration::from_secs(30),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Everything needed to start one worker, as data.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub working_dir: Option<PathBuf>,
    /// Time the child has to answer the start-up handshake.
    pub handshake_timeout: Duration,
    /// Time a child has to exit after a shutdown frame before it is killed.
    pub shutdown_grace: Duration,
    pub max_frame: usize,
    pub restart: RestartPolicy,
}

impl ChildSpec {
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            program: program.into(),
            args,
            working_dir: None,
            handshake_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            max_frame: DEFAULT_MAX_FRAME,
            restart: RestartPolicy::default(),
        }
    }

    /// The human-readable command line, for errors and logs.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReason {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) => f.write_str("unknown exit"),
        }
    }
}

pub type BoxedReader = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxedWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A started child: its pipes, a future that resolves when it exits, and a switch that
/// kills it.
pub struct LaunchedChild {
    pub pid: Option<u32>,
    pub stdin: BoxedWriter,
    pub stdout: BoxedReader,
    pub stderr: Option<BoxedReader>,
    pub exited: Pin<Box<dyn Future<Output = ExitReason> + Send>>,
    pub kill: oneshot::Sender<()>,
}

pub trait Launcher: Send + Sync + 'static {
    /// Starts worker `worker_id` with exactly the environment in `env`.
    fn launch(
        &self,
        spec: &ChildSpec,
        env: &EnvSnapshot,
        worker_id: usize,
    ) -> std::io::Result<LaunchedChild>;
}

/// Starts real operating-system processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessLauncher;

impl Launcher for ProcessLauncher {
    fn launch(
        &self,
        spec: &ChildSpec,
        env: &EnvSnapshot,
        worker_id: usize,
    ) -> std::io::Result<LaunchedChild> {
        let mut child = spawn_command(spec, env, worker_id).spawn()?;
        let pid = child.id();
        let stdin = child.stdin.take().ok_or_else(|| missing_pipe("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| missing_pipe("stdout"))?;
        let stderr = child.stderr.take();
        let (kill, kill_requested) = oneshot::channel::<()>();
        let exited = async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = kill_requested => {
                    kill_process_group(pid);
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            exit_reason(status)
        };
        Ok(LaunchedChild {
            pid,
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: stderr.map(|s| Box::pin(s) as BoxedReader),
            exited: Box::pin(exited),
            kill,
        })
    }
}

/// The command for worker `worker_id`: the only way a worker process is built.
///
/// The child's environment is exactly `env` plus [`WORKER_ID_VAR`]; nothing is inherited.
/// The child gets its own process group (so a terminal's Ctrl-C reaches the parent, which
/// then stops workers in order) and, on Linux, is killed if the parent dies.
pub fn spawn_command(
    spec: &ChildSpec,
    env: &EnvSnapshot,
    worker_id: usize,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(env.iter())
        .env(WORKER_ID_VAR, worker_id.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    #[cfg(unix)]
    command.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs between fork and exec and only calls prctl and getppid,
    // both async-signal-safe.
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command
}

fn kill_process_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) with a negative pid signals the group the child leads.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

fn exit_reason(status: std::io::Result<std::process::ExitStatus>) -> ExitReason {
    match status {
        Ok(status) => {
            #[cfg(unix)]
            let signal = std::os::unix::process::ExitStatusExt::signal(&status);
            #[cfg(not(unix))]
            let signal = None;
            ExitReason {
                code: status.code(),
                signal,
            }
        }
        Err(_) => ExitReason {
            code: None,
            signal: None,
        },
    }
}

fn missing_pipe(name: &str) -> std::io::Error {
    std::io::Error::other(format!("worker process has no {name} pipe"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_command_applies_exactly_the_snapshot() {
        let spec = ChildSpec::new("/bin/true", vec![]);
        let env = EnvSnapshot::from_vars([("SOLLOL_APP_NAME", "x"), ("PATH", "/bin")]);
        let command = spawn_command(&spec, &env, 3);
        let std_command = command.as_std();
        let envs: Vec<(String, Option<String>)> = std_command
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert!(envs.contains(&("SOLLOL_APP_NAME".into(), Some("x".into()))));
        assert!(envs.contains(&(WORKER_ID_VAR.into(), Some("3".into()))));
        assert_eq!(envs.len(), 3, "{envs:?}");
    }

    #[test]
    fn a_real_child_sees_only_the_snapshot() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let spec = ChildSpec::new("/usr/bin/env", vec![]);
            let env = EnvSnapshot::from_vars([("SOLLOL_APP_NAME", "probe")]);
            let output = spawn_command(&spec, &env, 0)
                .output()
                .await
                .expect("env runs");
            let text = String::from_utf8_lossy(&output.stdout);
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort();
            assert_eq!(lines, ["SOLLOL_APP_NAME=probe", "SOLLOL_WORKER_ID=0"]);
        });
    }
}
