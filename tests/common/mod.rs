//! Helpers for black-box tests: start the real `sollol` binary (simulated nodes and
//! gateways) on loopback ports it picks itself, and stop everything when dropped.

#![allow(dead_code)]

pub mod browser;
pub mod redis_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sollol");

/// A child process that is killed when the test lets go of it.
pub struct Running {
    pub url: String,
    pub child: Child,
    /// Everything it wrote to stderr so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port` of the process's listener.
    pub fn key(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A gracefully stopped gateway stops its workers; SIGTERM first, then make sure.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

/// A command for the sollol binary with no inherited sollol or Ollama settings.
pub fn sollol_command() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("SOLLOL_") || name == "OLLAMA_HOST" || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts `command` and waits for the `listening on http://…` line it prints.
pub fn start_and_wait(mut command: Command, what: &str) -> Running {
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {what}: {err}"));
    let stdout = child.stdout.take().expect("stdout piped");
    let stderr = child.stderr.take().expect("stderr piped");
    let (found, url) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(at) = line.find("http://") {
                let url = line[at..].split_whitespace().next().unwrap_or_default();
                let _ = found.send(url.to_string());
            }
        }
    });
    let label = what.to_string();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let kept = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var_os("SOLLOL_TEST_LOGS").is_some() {
                eprintln!("[{label}] {line}");
            }
            kept.lock().expect("logs").push(line);
        }
    });
    match url.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => Running { url, child, logs },
        Err(_) => {
            let _ = child.kill();
            panic!("{what} did not print its address within 30 s");
        }
    }
}

/// A simulated Ollama node with the given models and extra `sim-node` flags.
pub fn sim_node(models: &str, extra: &[&str]) -> Running {
    sim_node_on("127.0.0.1:0", models, extra)
}

/// A simulated Ollama node listening on `bind`.
pub fn sim_node_on(bind: &str, models: &str, extra: &[&str]) -> Running {
    let mut command = sollol_command();
    command
        .args(["sim-node", "--bind", bind, "--models", models])
        .args(extra);
    start_and_wait(command, "sim-node")
}

/// A gateway over `nodes`, with extra flags and environment variables.
pub fn gateway(nodes: &[&Running], args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut command = sollol_command();
    command.args(["serve", "--bind", "127.0.0.1:0"]);
    for node in nodes {
        command.args(["--node", &node.url]);
    }
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    start_and_wait(command, "gateway")
}

/// A port on loopback where nothing listens (connections are refused).
pub fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Polls `check` until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs `body` and returns the status once the whole answer was read.
pub async fn post_status(url: &str, body: &str) -> u16 {
    let response = client()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {url}: {err}"));
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    status
}

/// Sends SIGTERM and waits, without blocking the test's runtime, until the process exits.
pub async fn stop_gracefully(process: &mut Running) {
    unsafe {
        libc::kill(process.pid() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(process.child.try_wait(), Ok(Some(_))) {
        assert!(
            Instant::now() < deadline,
            "the process did not stop within 15 s"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn get_json(url: &str) -> serde_json::Value {
    let response = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    response
        .json()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: not json: {err}"))
}

/// Removes the fields that differ between two runs of the same request.
pub fn without_timings(line: &str) -> String {
    let mut value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|err| panic!("not json: {line}: {err}"));
    if let Some(object) = value.as_object_mut() {
        for key in [
            "created_at",
            "total_duration",
            "load_duration",
            "prompt_eval_duration",
            "eval_duration",
        ] {
            object.remove(key);
        }
    }
    value.to_string()
}

/// POSTs `body` as JSON with extra headers.
pub async fn send(url: &str, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {url}: {err}"))
}

/// POSTs `body` as JSON.
pub async fn post(url: &str, body: &str) -> reqwest::Response {
    send(url, body, &[]).await
}

/// A response header as text (empty when absent).
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}
