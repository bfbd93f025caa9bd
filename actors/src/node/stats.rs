//! What a node has measured, per model and kind of request.
//!
//! Latency is kept per unit of request weight (a request's weight grows with its size),
//! so a long prompt and a short one teach the same figure. Success is a moving average
//! of outcomes, so a node that starts failing loses its appeal quickly and regains it
//! as it recovers.

use std::time::Duration;

use serde::Serialize;

/// Weight of the newest sample in every moving average.
pub const SMOOTHING: f64 = 0.25;

/// The kind of work a request asks for; nodes are measured per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Chat,
    Generate,
    Embed,
    Other,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Generate => "generate",
            Self::Embed => "embed",
            Self::Other => "other",
        }
    }
}

fn smooth(old: Option<f64>, sample: f64) -> f64 {
    match old {
        Some(old) => old + SMOOTHING * (sample - old),
        None => sample,
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelStats {
    /// Milliseconds per unit of request weight, smoothed.
    pub unit_latency_ms: Option<f64>,
    /// Time to first byte in milliseconds, smoothed (warm requests only).
    pub ttfb_ms: Option<f64>,
    /// Extra time a cold request took to its first byte, smoothed.
    pub load_ms: Option<f64>,
    /// Share of recent requests that succeeded, smoothed; starts at 1.
    pub success: Option<f64>,
    pub samples: u64,
}

impl ModelStats {
    pub fn success_rate(&self) -> f64 {
        self.success.unwrap_or(1.0)
    }

    pub fn record_success(
        &mut self,
        weight: f64,
        latency: Duration,
        ttfb: Option<Duration>,
        cold: bool,
    ) {
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let ttfb_ms = ttfb.map(|t| t.as_secs_f64() * 1000.0);
        match (cold, ttfb_ms) {
            (true, Some(first_byte)) => {
                let warm = self.ttfb_ms.unwrap_or(0.0);
                self.load_ms = Some(smooth(self.load_ms, (first_byte - warm).max(0.0)));
                // The load is not part of the model's steady speed.
                let steady = latency_ms - (first_byte - warm).max(0.0);
                self.unit_latency_ms = Some(smooth(
                    self.unit_latency_ms,
                    steady.max(0.0) / weight.max(1.0),
                ));
            }
            (_, first_byte) => {
                self.unit_latency_ms =
                    Some(smooth(self.unit_latency_ms, latency_ms / weight.max(1.0)));
                if let Some(first_byte) = first_byte {
                    self.ttfb_ms = Some(smooth(self.ttfb_ms, first_byte));
                }
            }
        }
        self.success = Some(smooth(Some(self.success_rate()), 1.0));
        self.samples += 1;
    }

    pub fn record_failure(&mut self) {
        self.success = Some(smooth(Some(self.success_rate()), 0.0));
        self.samples += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_per_unit_of_weight_and_cold_loads_are_learned_apart() {
        let mut stats = ModelStats::default();
        stats.record_success(
            2.0,
            Duration::from_millis(400),
            Some(Duration::from_millis(50)),
            false,
        );
        assert_eq!(stats.unit_latency_ms, Some(200.0));
        stats.record_success(
            2.0,
            Duration::from_millis(2400),
            Some(Duration::from_millis(2050)),
            true,
        );
        assert_eq!(stats.load_ms, Some(2000.0));
        assert_eq!(
            stats.unit_latency_ms,
            Some(200.0),
            "the load does not slow the model's figure"
        );
    }

    #[test]
    fn failures_pull_the_success_rate_down_and_successes_back_up() {
        let mut stats = ModelStats::default();
        assert_eq!(stats.success_rate(), 1.0);
        stats.record_failure();
        stats.record_failure();
        let low = stats.success_rate();
        assert!(low < 0.6, "{low}");
        stats.record_success(1.0, Duration::from_millis(10), None, false);
        assert!(stats.success_rate() > low);
    }
}
