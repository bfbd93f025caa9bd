//! Redis for black-box tests: the shared server at 127.0.0.1:6379 (started by `.ci/run`),
//! private `redis-server` processes on free loopback ports for tests that stop Redis or
//! set a password, and a subscriber thread that collects what is published.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379/0";

/// A private `redis-server`, stopped when dropped.
pub struct RedisServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port, with extra `redis-server` arguments.
    pub fn start(extra: &[&str]) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        let mut server = Self {
            port,
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts it again on the same port after [`stop`](Self::stop).
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, password: Option<&str>) -> String {
        match password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn connection(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("redis url")
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|err| panic!("redis at {url} (started by .ci/run): {err}"))
}

/// `(channel, payload)` of every message on `patterns`, collected on a thread for at most
/// `limit`. Returns once the subscription is active.
pub fn subscribe(
    url: &str,
    patterns: &[&str],
    limit: Duration,
) -> mpsc::Receiver<(String, String)> {
    let (messages, received) = mpsc::channel();
    let (ready, subscribed) = mpsc::channel();
    let url = url.to_string();
    let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
    std::thread::spawn(move || {
        let mut connection = connection(&url);
        let mut pubsub = connection.as_pubsub();
        for pattern in &patterns {
            pubsub.psubscribe(pattern).expect("psubscribe");
        }
        pubsub
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let _ = ready.send(());
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(message) = pubsub.get_message() {
                let payload: String = message.get_payload().expect("text payload");
                let channel = message.get_channel_name().to_string();
                if messages.send((channel, payload)).is_err() {
                    return;
                }
            }
        }
    });
    subscribed
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed to redis");
    received
}

/// Messages received within `limit` for which `keep` is true, until `enough` of them.
pub fn collect(
    received: &mpsc::Receiver<(String, String)>,
    limit: Duration,
    enough: usize,
    keep: impl Fn(&str, &serde_json::Value) -> bool,
) -> Vec<(String, serde_json::Value)> {
    let deadline = Instant::now() + limit;
    let mut kept = Vec::new();
    while kept.len() < enough && Instant::now() < deadline {
        let Ok((channel, payload)) = received.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let value: serde_json::Value =
            serde_json::from_str(&payload).unwrap_or_else(|err| panic!("{payload}: {err}"));
        if keep(&channel, &value) {
            kept.push((channel, value));
        }
    }
    kept
}
