//! Request analytics as SOLLOL's metadata carries them: latency percentiles over the most
//! recent requests, and success counts since start.

use std::collections::VecDeque;

use serde::Serialize;

use crate::event::{millis, Event, EventKind};

/// Latencies kept for the percentiles (SOLLOL kept the last 1000).
const WINDOW: usize = 1000;

/// `metrics.analytics` of `sollol:router:metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analytics {
    pub p50_latency_ms: f64,
    pub p95_latency_ms: f64,
    pub p99_latency_ms: f64,
    /// Successful over all finished requests since start; 1.0 before the first one.
    pub success_rate: f64,
    pub avg_duration_ms: f64,
    pub total_requests: u64,
    pub successful_requests: u64,
}

#[derive(Debug, Default)]
pub(super) struct AnalyticsWindow {
    latencies_ms: VecDeque<f64>,
    total: u64,
    successful: u64,
}

impl AnalyticsWindow {
    /// Counts a finished request (a response or an error event).
    pub(super) fn record(&mut self, event: &Event) {
        let (latency, success) = match &event.kind {
            EventKind::OllamaResponse { latency, .. } => (latency, true),
            EventKind::OllamaError { latency, .. } => (latency, false),
            _ => return,
        };
        self.total += 1;
        self.successful += u64::from(success);
        if self.latencies_ms.len() == WINDOW {
            self.latencies_ms.pop_front();
        }
        self.latencies_ms.push_back(millis(*latency));
    }

    pub(super) fn snapshot(&self) -> Analytics {
        let mut sorted: Vec<f64> = self.latencies_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let average = if sorted.is_empty() {
            0.0
        } else {
            sorted.iter().sum::<f64>() / sorted.len() as f64
        };
        Analytics {
            p50_latency_ms: percentile(&sorted, 50.0),
            p95_latency_ms: percentile(&sorted, 95.0),
            p99_latency_ms: percentile(&sorted, 99.0),
            success_rate: if self.total == 0 {
                1.0
            } else {
                self.successful as f64 / self.total as f64
            },
            avg_duration_ms: round3(average),
            total_requests: self.total,
            successful_requests: self.successful,
        }
    }
}

/// Linear interpolation between closest ranks (numpy's default), on sorted values.
fn percentile(sorted: &[f64], percent: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        len => {
            let rank = percent / 100.0 * (len - 1) as f64;
            let below = rank.floor() as usize;
            let above = (below + 1).min(len - 1);
            let fraction = rank - below as f64;
            round3(sorted[below] + (sorted[above] - sorted[below]) * fraction)
        }
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 5.5);
        assert_eq!(percentile(&values, 95.0), 9.55);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn counts_successes_and_keeps_a_bounded_window() {
        let mut window = AnalyticsWindow::default();
        assert_eq!(window.snapshot().success_rate, 1.0);
        for ms in 0..1500u64 {
            let latency = Duration::from_millis(ms);
            window.record(&Event::ollama_response(
                "n", "m", "chat", latency, 200, false,
            ));
        }
        window.record(&Event::ollama_error("n", "m", "HTTP 500", Duration::ZERO));
        window.record(&Event::ollama_request("n", "m", "chat", false));
        let analytics = window.snapshot();
        assert_eq!(analytics.total_requests, 1501);
        assert_eq!(analytics.successful_requests, 1500);
        assert_eq!(window.latencies_ms.len(), WINDOW);
        assert!(analytics.p99_latency_ms > 1400.0, "{analytics:?}");
    }
}
