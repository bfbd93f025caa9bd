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

/// When an exited worker is started again (Erlang/OTP's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always, whatever the exit.
    Permanent,
    /// Only after an abnormal exit (a non-zero code, a signal, or a kill by the parent).
    Transient,
    /// Never.
    Temporary,
}

/// How many exits within how long make the supervisor give up on a worker.
#[derive(Debug, Clone)]
pub struct RestartIntensity {
    pub max_exits: usize,
    pub window: Duration,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        Self {
            max_exits: 5,
            window: Duration::from_secs(30),
        }
    }
}

/// How long the supervisor waits before a restart: `base × 2^(exits in the window − 1)`,
/// at most `max`, plus up to `jitter` of that at random. A worker that stayed up for
/// `reset_after` starts again from `base`.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// Fraction of the delay added at random (0 to 1), so workers do not restart in step.
    pub jitter: f64,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            jitter: 0.2,
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before the restart that follows the `exits`-th exit in the window.
    pub fn delay(&self, exits: usize) -> Duration {
        let exponent = exits.saturating_sub(1).min(16) as u32;
        let delay = (self.base * 2u32.pow(exponent)).min(self.max);
        delay + delay.mul_f64(rand::random::<f64>() * self.jitter.clamp(0.0, 1.0))
    }
}

/// Everything needed to start and look after one kind of worker, as data.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub working_dir: Option<PathBuf>,
    pub restart: Restart,
    pub intensity: RestartIntensity,
    pub backoff: Backoff,
    /// Time the child has to answer the start-up handshake.
    pub handshake_timeout: Duration,
    /// Time a child has after a shutdown frame, and again after SIGTERM, before the next step.
    pub shutdown_grace: Duration,
    pub max_frame: usize,
    /// Jobs one worker runs at once; the rest wait in the supervisor's queue.
    pub jobs_per_worker: usize,
    /// A worker whose resident set grows past this is replaced after its current jobs.
    pub memory_limit_bytes: Option<u64>,
}

impl ChildSpec {
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            program: program.into(),
            args,
            working_dir: None,
            restart: Restart::Permanent,
            intensity: RestartIntensity::default(),
            backoff: Backoff::default(),
            handshake_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            max_frame: DEFAULT_MAX_FRAME,
            jobs_per_worker: 4,
            memory_limit_bytes: None,
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

impl ExitReason {
    /// A zero exit code: the worker stopped on purpose.
    pub fn is_normal(&self) -> bool {
        self.code == Some(0)
    }
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

/// A started child: its pipes, a future that resolves when it exits, a polite stop
/// (SIGTERM to its process group) and a switch that kills it.
pub struct LaunchedChild {
    pub pid: Option<u32>,
    pub stdin: BoxedWriter,
    pub stdout: BoxedReader,
    pub stderr: Option<BoxedReader>,
    pub exited: Pin<Box<dyn Future<Output = ExitReason> + Send>>,
    pub terminate: Option<Box<dyn FnOnce() + Send>>,
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
            terminate: Some(Box::new(move || {
                signal_process_group(pid, Signal::Terminate)
            })),
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

enum Signal {
    Terminate,
    Kill,
}

fn kill_process_group(pid: Option<u32>) {
    signal_process_group(pid, Signal::Kill);
}

/// Signals the process group a worker leads (every worker gets its own group).
fn signal_process_group(pid: Option<u32>, signal: Signal) {
    #[cfg(unix)]
    if let Some(pid) = pid
        .and_then(|pid| i32::try_from(pid).ok())
        .filter(|pid| *pid > 1)
    {
        let signal = match signal {
            Signal::Terminate => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        // SAFETY: kill(2) with a negative pid signals the group the child leads.
        unsafe {
            libc::kill(-pid, signal);
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
