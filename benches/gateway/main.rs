//! sollol against a direct connection and nginx, on the same zero-latency backend.
//!
//! Everything runs on loopback: an Ollama-shaped backend in this process, nginx (one
//! worker process, keep-alive to the backend) and `sollol serve` (no worker processes, no
//! Redis) as child processes, and wrk and oha as load generators. Each load is bounded in
//! time, and every child is stopped at the end, also on a panic. It prints one report;
//! the figures to compare are ratios within that report, since this machine is shared
//! and noisy.
//!
//! Run it through `benches/gateway.sh`, which builds the release binary and installs the
//! tools; or `cargo bench --bench gateway -- --sollol PATH [--seconds N] [--dir DIR]`.
//! `--backend-only SECONDS` serves just the backend, for profiling a gateway by hand.

mod backend;
mod floor;
mod procs;
mod report;
mod stream;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use procs::{Children, Load};
use report::Report;

/// What wrk and oha post: a small non-streamed generate.
const BODY: &str = r#"{"model":"bench","prompt":"why is the sky blue?","stream":false}"#;
const CONNECTIONS: usize = 64;
const SLOW_STREAMS: usize = 1000;
const STARTS: usize = 5;
/// Closed-loop rounds per target, interleaved; the median round of each is reported.
const ROUNDS: usize = 5;
/// Fixed-rate rounds per target and rate, interleaved; the median p99 is reported.
const FIXED_RATE_ROUNDS: usize = 3;

struct Options {
    sollol: PathBuf,
    seconds: u64,
    dir: PathBuf,
}

fn options() -> Options {
    let mut sollol = None;
    let mut seconds = 10;
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sollol" => sollol = args.next().map(PathBuf::from),
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(10),
            "--dir" => dir = args.next().map(PathBuf::from),
            _ => {}
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sollol-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).expect("run directory");
    Options {
        sollol: sollol.unwrap_or_else(|| target.join("release/sollol")),
        seconds: seconds.clamp(1, 120),
        dir,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of tests; there are none.
    }
    if let Some(backend) = flag_value("--floor-proxy") {
        floor::run(backend.parse().expect("--floor-proxy ADDRESS"));
        return;
    }
    if let Some(seconds) = backend_only() {
        // For profiling by hand: only the backend, for a bounded time.
        println!("backend listening on http://{}", backend::start());
        std::thread::sleep(Duration::from_secs(seconds));
        return;
    }
    let options = options();
    if !options.sollol.exists() {
        eprintln!(
            "no sollol binary at {}: build it with `cargo build --release` or use benches/gateway.sh",
            options.sollol.display()
        );
        std::process::exit(2);
    }
    let mut children = Children::new(&options.dir);
    let mut report = Report::new(options.seconds, CONNECTIONS);
    let seconds = options.seconds;

    let backend = backend::start();
    let (nginx_pid, nginx) = procs::start_nginx(&mut children, backend);
    let gateway = procs::start_sollol(&mut children, &options.sollol, backend, 0, "sollol");
    let (floor_pid, floor) = procs::start_floor(&mut children, backend);
    std::thread::sleep(Duration::from_secs(1));
    report.rss_idle_kib = procs::rss_kib(gateway.pid);
    report.nginx_rss_idle_kib = procs::rss_kib(nginx_pid);
    let targets = [
        ("direct", backend, None),
        ("nginx", nginx, Some(nginx_pid)),
        ("sollol", gateway.address, Some(gateway.pid)),
    ];
    let url = |address: SocketAddr| format!("http://{address}/api/generate");

    // The bare actix-web + reqwest proxy is in the throughput table only.
    let with_floor = targets
        .into_iter()
        .chain([("actix-web+reqwest", floor, Some(floor_pid))]);
    // Warm-up: connections, pools and the router's measurements.
    for (_, address, _) in with_floor.clone() {
        procs::wrk(children.dir(), &url(address), BODY, CONNECTIONS, 2, None);
    }
    // Interleaved rounds, so a slow spell of this shared machine hits every target
    // alike; each target's median round is its figure.
    let mut rounds: Vec<(&'static str, Vec<procs::Load>)> = with_floor
        .clone()
        .map(|(name, _, _)| (name, Vec::new()))
        .collect();
    for _ in 0..ROUNDS {
        for ((_, address, pid), (_, loads)) in with_floor.clone().zip(rounds.iter_mut()) {
            loads.push(procs::wrk(
                children.dir(),
                &url(address),
                BODY,
                CONNECTIONS,
                seconds,
                pid,
            ));
        }
    }
    report.rounds = (0..ROUNDS)
        .map(|round| {
            rounds
                .iter()
                .map(|(name, loads)| (*name, loads[round].rps))
                .collect()
        })
        .collect();
    for (name, mut loads) in rounds {
        loads.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        report.closed.push((name, loads[loads.len() / 2]));
    }
    children.stop("floor");
    report.rss_after_load_kib = procs::rss_kib(gateway.pid);

    // Fixed rates, in interleaved rounds too: a p99 is the first figure a slow spell
    // moves. Each target's median round is reported.
    let rate = (report.load("nginx").rps / 2.0).max(100.0);
    report.rate = rate;
    report.fixed = fixed_rate_rounds(&targets, &url, rate, seconds);
    // Also at half of sollol's own maximum, where it is not near saturation.
    let own_rate = (report.load("sollol").rps / 2.0).max(100.0);
    report.own_rate = own_rate;
    report.fixed_own = fixed_rate_rounds(&targets, &url, own_rate, seconds);

    actix_rt::System::new().block_on(async {
        let client = stream::client();
        for (name, address, _) in targets {
            let timing = stream::probe(&client, &url(address), 10, 300, 1).await;
            report.streams.push((name, timing));
        }
        let (open, rss) = stream::hold_streams(
            &client,
            &url(gateway.address),
            SLOW_STREAMS,
            Duration::from_secs(30),
            || procs::rss_kib(gateway.pid),
        )
        .await;
        report.held = (open, rss);
        let (open, rss) = stream::hold_streams(
            &client,
            &url(nginx),
            SLOW_STREAMS,
            Duration::from_secs(30),
            || procs::rss_kib(nginx_pid),
        )
        .await;
        report.nginx_held = (open, rss);
    });
    children.stop("sollol");
    children.stop("nginx");

    for start in 0..STARTS {
        let name = format!("start-{start}");
        let started = procs::start_sollol(&mut children, &options.sollol, backend, 0, &name);
        let answered = first_answer(started.address);
        report
            .startups
            .push((started.startup, started.startup + answered));
        children.stop(&name);
    }
    report.workers = workers::spawn_and_replace(&mut children, &options.sollol, backend);
    report.redis = workers::redis_publish_rate(100_000);

    report.print();
}

/// Fixed-rate rounds of every target, interleaved; each target's round with the median
/// p99.
fn fixed_rate_rounds(
    targets: &[(&'static str, SocketAddr, Option<u32>)],
    url: &dyn Fn(SocketAddr) -> String,
    rate: f64,
    seconds: u64,
) -> Vec<(&'static str, procs::Load)> {
    let mut rounds: Vec<Vec<procs::Load>> = vec![Vec::new(); targets.len()];
    for _ in 0..FIXED_RATE_ROUNDS {
        for ((_, address, _), loads) in targets.iter().zip(rounds.iter_mut()) {
            loads.push(procs::oha(&url(*address), BODY, rate, CONNECTIONS, seconds));
        }
    }
    targets
        .iter()
        .zip(rounds)
        .map(|((name, _, _), mut loads)| {
            loads.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
            (*name, loads[loads.len() / 2])
        })
        .collect()
}

/// The value after `flag` on the command line.
fn flag_value(flag: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != flag);
    args.next()?;
    args.next()
}

/// `--backend-only SECONDS`: serve only the backend, for that long (at most an hour).
fn backend_only() -> Option<u64> {
    let seconds = flag_value("--backend-only")?.parse().unwrap_or(600);
    Some(u64::min(seconds, 3600))
}

/// Time until the first proxied request succeeds (bounded to 10 s).
fn first_answer(address: SocketAddr) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some((200, _)) = procs::http(address, "POST", "/api/generate", BODY) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    started.elapsed()
}

impl Report {
    fn load(&self, name: &str) -> Load {
        self.closed
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, load)| *load)
            .unwrap_or_default()
    }
}
