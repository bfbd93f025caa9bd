//! Clients that read streams: how late each line arrives, and many slow streams held open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::backend::now_ns;

/// What a streamed answer cost on its way to the client.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamTiming {
    /// Median time from sending the request to the first line.
    pub ttfb_ms: f64,
    /// Median and 99th percentile of each line's delay, from the backend writing it to
    /// the client reading it.
    pub line_p50_ms: f64,
    pub line_p99_ms: f64,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(2048)
        .build()
        .expect("http client")
}

fn stream_body(lines: u64, every_ms: u64) -> String {
    format!(r#"{{"model":"bench","prompt":"stream","lines":{lines},"every_ms":{every_ms}}}"#)
}

/// Reads `streams` streams one after the other, each of `lines` lines `every_ms` apart.
pub async fn probe(
    client: &reqwest::Client,
    url: &str,
    streams: usize,
    lines: u64,
    every_ms: u64,
) -> StreamTiming {
    let mut ttfb = Vec::with_capacity(streams);
    let mut delays = Vec::with_capacity(streams * lines as usize);
    for _ in 0..streams {
        let sent = now_ns();
        let response = client
            .post(url)
            .body(stream_body(lines, every_ms))
            .send()
            .await
            .expect("stream request");
        assert_eq!(response.status(), 200, "streams must succeed");
        let mut body = response.bytes_stream();
        let mut pending = Vec::new();
        let mut first = None;
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("a line within 10 s")
        {
            let arrived = now_ns();
            pending.extend_from_slice(&chunk.expect("stream chunk"));
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Some(written) = sent_ns(&line) {
                    first.get_or_insert(arrived);
                    delays.push(arrived.saturating_sub(written) as f64 / 1e6);
                }
            }
        }
        if let Some(first) = first {
            ttfb.push(first.saturating_sub(sent) as f64 / 1e6);
        }
    }
    StreamTiming {
        ttfb_ms: percentile(&mut ttfb, 0.5),
        line_p50_ms: percentile(&mut delays, 0.5),
        line_p99_ms: percentile(&mut delays, 0.99),
    }
}

fn sent_ns(line: &[u8]) -> Option<u64> {
    let key = b"\"sent_ns\":";
    let start = line.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: String = line[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse().ok()
}

pub fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len() as f64 * q).ceil() as usize).saturating_sub(1);
    samples[index.min(samples.len() - 1)]
}

/// Opens `count` slow streams at once and, once every one has its first line (or after
/// `limit`), calls `measure`; then drops them all. Returns how many were open and what
/// `measure` returned.
pub async fn hold_streams<T>(
    client: &reqwest::Client,
    url: &str,
    count: usize,
    limit: Duration,
    measure: impl FnOnce() -> T,
) -> (usize, T) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let request = client.post(url).body(stream_body(30, 1000));
        let open = open.clone();
        tasks.spawn(async move {
            let Ok(response) = request.send().await else {
                return;
            };
            let mut body = response.bytes_stream();
            if let Some(Ok(_)) = body.next().await {
                open.fetch_add(1, Ordering::Relaxed);
            }
            while let Some(Ok(_)) = body.next().await {}
        });
    }
    let deadline = Instant::now() + limit;
    while open.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the gateway settle with every stream open before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let measured = measure();
    let opened = open.load(Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    (opened, measured)
}
