//! Worker processes (time to spawn, time to replace a killed one) and the Redis
//! publisher's rate.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use actix::Actor;
use sollol::actors::redis_publisher::{
    GetPublisherStats, Publish, PublisherConfig, RedisPublisher,
};
use sollol::actors::RedactedUrl;

use crate::procs::{self, Children};

const WORKERS: usize = 2;
const REDIS: &str = "redis://127.0.0.1:6379/0";

#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerTimes {
    /// From starting the gateway until every worker is ready.
    pub spawn: Option<Duration>,
    /// From killing one worker until its replacement is ready.
    pub replace: Option<Duration>,
}

/// The pids of ready workers, from `/sollol/workers`.
fn ready_pids(address: SocketAddr) -> Vec<u64> {
    let Some((200, body)) = procs::http(address, "GET", "/sollol/workers", "") else {
        return Vec::new();
    };
    let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    value["workers"]
        .as_array()
        .map(|workers| {
            workers
                .iter()
                .filter(|w| w["state"] == "ready")
                .filter_map(|w| w["pid"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls (every 2 ms, at most 20 s) until `done` holds; the time it took.
fn until(mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if done() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

pub fn spawn_and_replace(children: &mut Children, sollol: &Path, node: SocketAddr) -> WorkerTimes {
    let gateway = procs::start_sollol(children, sollol, node, WORKERS, "workers");
    let ready = until(|| ready_pids(gateway.address).len() == WORKERS);
    let spawn = ready.map(|waited| gateway.startup + waited);
    let mut replace = None;
    if let Some(&victim) = ready_pids(gateway.address).first() {
        // SAFETY: kill(2) on a worker of the gateway this run started.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        replace = until(|| {
            let pids = ready_pids(gateway.address);
            pids.len() == WORKERS && !pids.contains(&victim)
        });
    }
    children.stop("workers");
    WorkerTimes { spawn, replace }
}

/// Messages per second the publisher writes to the Redis at 127.0.0.1:6379, or `None`
/// when none answers there.
pub fn redis_publish_rate(messages: u64) -> Option<f64> {
    std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().expect("address"),
        Duration::from_millis(200),
    )
    .ok()?;
    actix_rt::System::new().block_on(async move {
        let mut config = PublisherConfig::new(RedactedUrl::new(REDIS));
        config.max_backlog = messages as usize;
        let publisher = RedisPublisher::new(config).ok()?.start();
        let connected = async {
            while !publisher.send(GetPublisherStats).await.ok()?.connected {
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
            Some(())
        };
        tokio::time::timeout(Duration::from_secs(5), connected)
            .await
            .ok()??;
        let payload = format!("{{\"benchmark\":true,\"padding\":\"{}\"}}", "x".repeat(200));
        let started = Instant::now();
        for _ in 0..messages {
            publisher.do_send(Publish::new("sollol:bench:publish", payload.clone()));
        }
        let deadline = started + Duration::from_secs(30);
        loop {
            let stats = publisher.send(GetPublisherStats).await.ok()?;
            if stats.published + stats.dropped_by_backlog >= messages {
                return Some(stats.published as f64 / started.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                return None;
            }
            actix_rt::time::sleep(Duration::from_millis(1)).await;
        }
    })
}
