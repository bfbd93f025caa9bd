//! The processes a run starts (sollol, nginx, wrk, oha), and what it reads of them.
//!
//! Every child is registered with a [`Children`] guard that stops it when the guard is
//! dropped, also on a panic, and its pid is written to the run's directory so the shell
//! wrapper can stop it too if this process is killed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The children of one run; all stopped on drop.
pub struct Children {
    dir: PathBuf,
    running: Vec<(String, Child)>,
}

impl Children {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            running: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn adopt(&mut self, name: &str, child: Child) -> u32 {
        let pid = child.id();
        let _ = std::fs::write(self.dir.join(format!("{name}.pid")), pid.to_string());
        self.running.push((name.to_string(), child));
        pid
    }

    /// Stops the child registered as `name` (SIGTERM, then SIGKILL after 3 s).
    pub fn stop(&mut self, name: &str) {
        if let Some(index) = self.running.iter().position(|(n, _)| n == name) {
            let (name, child) = self.running.remove(index);
            terminate(child);
            let _ = std::fs::remove_file(self.dir.join(format!("{name}.pid")));
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        while let Some((name, _)) = self.running.last() {
            let name = name.clone();
            self.stop(&name);
        }
    }
}

fn terminate(mut child: Child) {
    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A started gateway: its pid, its address, and how long it took to listen.
pub struct Gateway {
    pub pid: u32,
    pub address: SocketAddr,
    pub startup: Duration,
}

/// Starts `sollol serve` over `node` with `workers` worker processes and no Redis, and waits
/// (at most 20 s) for it to print its address.
pub fn start_sollol(
    children: &mut Children,
    sollol: &Path,
    node: SocketAddr,
    workers: usize,
    name: &str,
) -> Gateway {
    let mut command = Command::new(sollol);
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--workers"])
        .arg(workers.to_string())
        .arg("--node")
        .arg(format!("http://{node}"))
        .env_remove("SOLLOL_REDIS_URL")
        .env_remove("SOLLOL_CONFIG")
        // The default log filter (`info`), as users run it.
        .env_remove("RUST_LOG")
        .env("SOLLOL_NODE_CAPACITY", "4096")
        .env("SOLLOL_QUEUE_MAX", "4096")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(children.dir().join(format!("{name}.log"))).expect("log"),
        ));
    let started = Instant::now();
    let mut child = command.spawn().expect("start sollol");
    let stdout = child.stdout.take().expect("stdout");
    let pid = children.adopt(name, child);
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix("sollol listening on http://") {
                let _ = sender.send(address.trim().to_string());
            }
        }
    });
    let address = receiver
        .recv_timeout(Duration::from_secs(20))
        .expect("sollol printed its address within 20 s");
    Gateway {
        pid,
        address: address.parse().expect("address"),
        startup: started.elapsed(),
    }
}

/// Starts this binary as the bare actix-web + reqwest proxy (see `floor.rs`) over
/// `backend`.
pub fn start_floor(children: &mut Children, backend: SocketAddr) -> (u32, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .arg("--floor-proxy")
        .arg(backend.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the floor proxy");
    let stdout = child.stdout.take().expect("stdout");
    let pid = children.adopt("floor", child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("floor address");
    let address = line
        .trim()
        .strip_prefix("floor listening on http://")
        .expect("floor printed its address")
        .parse()
        .expect("address");
    wait_for_port(address, Duration::from_secs(10));
    (pid, address)
}

/// Starts nginx with one worker process, proxying to `backend` with keep-alive, on a free
/// loopback port. Its configuration, logs and temporary files stay in the run directory.
pub fn start_nginx(children: &mut Children, backend: SocketAddr) -> (u32, SocketAddr) {
    let dir = children.dir().join("nginx");
    std::fs::create_dir_all(&dir).expect("nginx dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let d = dir.display();
    let config = format!(
        "worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/body;\n\
           proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n\
           scgi_temp_path {d}/scgi;\n\
           upstream backend {{ server {backend}; keepalive 256; }}\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             location / {{\n\
               proxy_pass http://backend;\n\
               proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n\
               proxy_buffering off;\n\
             }}\n\
           }}\n\
         }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), config).expect("nginx.conf");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx (apt-get install nginx)");
    let pid = children.adopt("nginx", child);
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    wait_for_port(address, Duration::from_secs(10));
    (pid, address)
}

/// Waits (bounded) until something accepts connections on `address`.
pub fn wait_for_port(address: SocketAddr, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {address}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resident set of `pid` and its children, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let own = status_field(pid, "VmRSS:").unwrap_or(0);
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    own + children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
        .map(rss_kib)
        .sum::<u64>()
}

/// CPU time used so far by `pid` and its children, in seconds (user plus system).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    ticks as f64 / per_second
        + children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .map(cpu_seconds)
            .sum::<f64>()
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// What a closed-loop load run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// CPU time the proxy spent per request, in microseconds (none for direct).
    pub cpu_us: Option<f64>,
}

/// Runs wrk for `seconds` with `connections` connections posting `body` to `url`.
/// With `proxy`, also the CPU time that process spent per request.
pub fn wrk(
    dir: &Path,
    url: &str,
    body: &str,
    connections: usize,
    seconds: u64,
    proxy: Option<u32>,
) -> Load {
    let script = dir.join("post.lua");
    let lua = format!(
        "wrk.method = \"POST\"\n\
         wrk.body = '{body}'\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         done = function(summary, latency, requests)\n\
           local errors = summary.errors.connect + summary.errors.read + summary.errors.write\n\
             + summary.errors.status + summary.errors.timeout\n\
           io.write(string.format(\"RESULT %d %f %d %d %d\\n\", summary.requests,\n\
             summary.duration / 1e6, latency:percentile(50), latency:percentile(99), errors))\n\
         end\n"
    );
    std::fs::write(&script, lua).expect("wrk script");
    let cpu_before = proxy.map(cpu_seconds);
    let output = Command::new("wrk")
        .args(["-t1", "-c", &connections.to_string(), "-d"])
        .arg(format!("{seconds}s"))
        .arg("-s")
        .arg(&script)
        .arg(url)
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<f64> = text
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .expect("wrk printed its result")
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let cpu_us = proxy
        .zip(cpu_before)
        .map(|(pid, before)| (cpu_seconds(pid) - before) * 1e6 / fields[0].max(1.0));
    Load {
        rps: fields[0] / fields[1],
        p50_ms: fields[2] / 1000.0,
        p99_ms: fields[3] / 1000.0,
        errors: fields[4] as u64,
        cpu_us,
    }
}

/// Runs oha at a fixed `rate` for `seconds`, with latency measured from when each
/// request was due (no coordinated omission).
pub fn oha(url: &str, body: &str, rate: f64, connections: usize, seconds: u64) -> Load {
    let output = Command::new("oha")
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
        ])
        .args(["-z", &format!("{seconds}s")])
        .args(["-c", &connections.to_string()])
        .args(["-q", &format!("{rate:.0}")])
        .args(["-m", "POST", "-T", "application/json", "-d", body])
        .arg(url)
        .output()
        .expect("run oha (cargo install oha)");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("oha printed json");
    let seconds_of = |key: &str| {
        report["latencyPercentiles"][key]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let ok = report["statusCodeDistribution"]["200"]
        .as_u64()
        .unwrap_or(0);
    let total: u64 = report["statusCodeDistribution"]
        .as_object()
        .map(|codes| codes.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    // Requests still in flight when the time is up are cut off by oha, not failed.
    let failed: u64 = report["errorDistribution"]
        .as_object()
        .map(|errors| {
            errors
                .iter()
                .filter(|(kind, _)| kind.as_str() != "aborted due to deadline")
                .filter_map(|(_, count)| count.as_u64())
                .sum()
        })
        .unwrap_or(0);
    Load {
        rps: report["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_ms: seconds_of("p50") * 1000.0,
        p99_ms: seconds_of("p99") * 1000.0,
        errors: total - ok + failed,
        cpu_us: None,
    }
}

/// One request with `Connection: close`; the status and body, or `None` if it failed.
pub fn http(address: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}
