//! The report: one table per measurement, then each target, met or not.

use std::time::Duration;

use crate::procs::Load;
use crate::stream::{percentile, StreamTiming};
use crate::workers::WorkerTimes;

#[derive(Default)]
pub struct Report {
    pub seconds: u64,
    pub connections: usize,
    /// Each target's median closed-loop round.
    pub closed: Vec<(&'static str, Load)>,
    /// Requests per second of every target in every round, in the order run.
    pub rounds: Vec<Vec<(&'static str, f64)>>,
    pub rate: f64,
    pub fixed: Vec<(&'static str, Load)>,
    pub own_rate: f64,
    pub fixed_own: Vec<(&'static str, Load)>,
    pub streams: Vec<(&'static str, StreamTiming)>,
    pub rss_idle_kib: u64,
    pub rss_after_load_kib: u64,
    pub nginx_rss_idle_kib: u64,
    /// Streams open, and the resident set with them open.
    pub held: (usize, u64),
    pub nginx_held: (usize, u64),
    /// Time to the printed address, and to the first proxied answer.
    pub startups: Vec<(Duration, Duration)>,
    pub workers: WorkerTimes,
    pub redis: Option<f64>,
}

/// Megabytes (10^6 bytes), as the targets are stated.
fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met    "
    } else {
        "NOT MET"
    }
}

impl Report {
    pub fn new(seconds: u64, connections: usize) -> Self {
        Self {
            seconds,
            connections,
            ..Self::default()
        }
    }

    fn find<T: Copy + Default>(rows: &[(&'static str, T)], name: &str) -> T {
        rows.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, row)| *row)
            .unwrap_or_default()
    }

    fn print_loads(rows: &[(&'static str, Load)]) {
        let direct = Self::find(rows, "direct");
        let nginx = Self::find(rows, "nginx");
        println!(
            "| target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s vs nginx | proxy CPU µs/req | errors |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (name, load) in rows {
            let cpu = load.cpu_us.map_or("".to_string(), |us| format!("{us:.1}"));
            println!(
                "| {name} | {:.0} | {:.3} | {:.3} | {:+.3} | {:+.3} | {:.2}x | {cpu} | {} |",
                load.rps,
                load.p50_ms,
                load.p99_ms,
                load.p50_ms - direct.p50_ms,
                load.p99_ms - direct.p99_ms,
                load.rps / nginx.rps,
                load.errors
            );
        }
    }

    pub fn print(&self) {
        println!(
            "\n## Throughput: wrk, 1 thread, {} connections, {} s per target, closed loop, median of {} interleaved rounds\n",
            self.connections, self.seconds, self.rounds.len()
        );
        Self::print_loads(&self.closed);
        println!("\nEvery round (req/s, and sollol's ratio to nginx in that round):\n");
        for (index, round) in self.rounds.iter().enumerate() {
            let figures: Vec<String> = round
                .iter()
                .map(|(name, rps)| format!("{name} {rps:.0}"))
                .collect();
            let nginx = Self::find(round, "nginx");
            let sollol = Self::find(round, "sollol");
            println!(
                "- round {}: {}; sollol/nginx {:.2}x",
                index + 1,
                figures.join(", "),
                sollol / nginx
            );
        }
        println!(
            "\n## Fixed rate: oha at {:.0} req/s (half of nginx's maximum above), {} connections, {} s per target, latency from when each request was due; each target's median-p99 round of 3 interleaved rounds\n",
            self.rate, self.connections, self.seconds
        );
        Self::print_loads(&self.fixed);
        println!(
            "\n## Fixed rate: oha at {:.0} req/s (half of sollol's maximum above), same settings, same rounds\n",
            self.own_rate
        );
        Self::print_loads(&self.fixed_own);

        println!("\n## Streaming: 10 streams of 300 NDJSON lines, one line every 1 ms\n");
        let direct = Self::find(&self.streams, "direct");
        println!("| target | TTFB ms | line delay p50 ms | line delay p99 ms | added TTFB ms | added line p50 ms | added line p99 ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (name, timing) in &self.streams {
            println!(
                "| {name} | {:.3} | {:.3} | {:.3} | {:+.3} | {:+.3} | {:+.3} |",
                timing.ttfb_ms,
                timing.line_p50_ms,
                timing.line_p99_ms,
                timing.ttfb_ms - direct.ttfb_ms,
                timing.line_p50_ms - direct.line_p50_ms,
                timing.line_p99_ms - direct.line_p99_ms,
            );
        }

        println!("\n## Memory (resident set, process and children)\n");
        println!("| | sollol | nginx (master + worker) |");
        println!("|---|---:|---:|");
        println!(
            "| idle, after start-up | {:.1} MB | {:.1} MB |",
            mb(self.rss_idle_kib),
            mb(self.nginx_rss_idle_kib)
        );
        println!(
            "| idle, after the load runs | {:.1} MB | |",
            mb(self.rss_after_load_kib)
        );
        println!(
            "| {} slow streams open | {:.1} MB ({} open) | {:.1} MB ({} open) |",
            crate::SLOW_STREAMS,
            mb(self.held.1),
            self.held.0,
            mb(self.nginx_held.1),
            self.nginx_held.0
        );

        let mut listening: Vec<f64> = self.startups.iter().map(|(l, _)| ms(*l)).collect();
        let mut answering: Vec<f64> = self.startups.iter().map(|(_, a)| ms(*a)).collect();
        println!("\n## Start-up and workers\n");
        println!("| | ms |");
        println!("|---|---:|");
        println!(
            "| `sollol serve` to listening (node checked), median of {} | {:.1} |",
            self.startups.len(),
            percentile(&mut listening, 0.5)
        );
        println!(
            "| `sollol serve` to first proxied answer, median of {} | {:.1} |",
            self.startups.len(),
            percentile(&mut answering, 0.5)
        );
        let show =
            |d: Option<Duration>| d.map_or("timed out".to_string(), |d| format!("{:.1}", ms(d)));
        println!(
            "| `sollol serve --workers 2` to both workers ready | {} |",
            show(self.workers.spawn)
        );
        println!(
            "| a killed worker replaced and ready | {} |",
            show(self.workers.replace)
        );
        match self.redis {
            Some(rate) => println!(
                "\nRedis publisher: {rate:.0} messages/s to the Redis at 127.0.0.1:6379 (100,000 PUBLISH of 230 bytes, pipelined)"
            ),
            None => println!("\nRedis publisher: not measured (no Redis answered at 127.0.0.1:6379)"),
        }
        self.print_targets();
    }

    fn print_targets(&self) {
        let nginx = Self::find(&self.closed, "nginx");
        let sollol = Self::find(&self.closed, "sollol");
        let direct_fixed = Self::find(&self.fixed, "direct");
        let nginx_fixed = Self::find(&self.fixed, "nginx");
        let sollol_fixed = Self::find(&self.fixed, "sollol");
        let direct_stream = Self::find(&self.streams, "direct");
        let sollol_stream = Self::find(&self.streams, "sollol");
        // Paired within each round (both ran under the same conditions), then the median.
        let mut ratios: Vec<f64> = self
            .rounds
            .iter()
            .map(|round| Self::find(round, "sollol") / Self::find(round, "nginx"))
            .collect();
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);
        let added_nginx = nginx_fixed.p99_ms - direct_fixed.p99_ms;
        let added_sollol = sollol_fixed.p99_ms - direct_fixed.p99_ms;
        let line_added = sollol_stream.line_p99_ms - direct_stream.line_p99_ms;
        println!("\n## Targets\n");
        println!(
            "- {} throughput at least 0.8x nginx's: {ratio:.2}x (median of the {} rounds' sollol/nginx ratios; the ratio of the two medians is {:.2}x)",
            verdict(ratio >= 0.8 && sollol.errors == 0),
            ratios.len(),
            sollol.rps / nginx.rps
        );
        println!(
            "- {} added p99 at half of nginx's maximum within 1 ms of nginx's: sollol {added_sollol:+.3} ms, nginx {added_nginx:+.3} ms (difference {:+.3} ms)",
            verdict(added_sollol - added_nginx <= 1.0 && sollol_fixed.errors == 0),
            added_sollol - added_nginx
        );
        let direct_own = Self::find(&self.fixed_own, "direct");
        let nginx_own = Self::find(&self.fixed_own, "nginx");
        let sollol_own = Self::find(&self.fixed_own, "sollol");
        println!(
            "  (at half of sollol's own maximum: sollol {:+.3} ms, nginx {:+.3} ms)",
            sollol_own.p99_ms - direct_own.p99_ms,
            nginx_own.p99_ms - direct_own.p99_ms
        );
        println!(
            "- {} a streamed line leaves sollol within 1 ms: line delay p99 through sollol {:.3} ms, {line_added:+.3} ms over direct",
            verdict(line_added <= 1.0),
            sollol_stream.line_p99_ms
        );
        println!(
            "- {} resident set under 20 MB idle: {:.1} MB",
            verdict(mb(self.rss_idle_kib) < 20.0),
            mb(self.rss_idle_kib)
        );
        println!(
            "- {} resident set under 100 MB with {} streams: {:.1} MB ({} open)",
            verdict(mb(self.held.1) < 100.0 && self.held.0 == crate::SLOW_STREAMS),
            crate::SLOW_STREAMS,
            mb(self.held.1),
            self.held.0
        );
        println!(
            "- event emit cost on the request path: see `cargo bench -p sollol-actors --bench observer` below (emit/sink is the gateway's way)"
        );
    }
}
