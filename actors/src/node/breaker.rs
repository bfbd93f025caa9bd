//! A circuit breaker per node.
//!
//! Consecutive failures (transport errors and 5xx answers alike) open it: the node gets
//! no traffic for a cooldown. After the cooldown one request is let through as a probe
//! (half-open); its success closes the breaker, its failure opens it again with a doubled
//! cooldown. A node that answers fast with errors therefore stops attracting traffic
//! instead of looking like idle capacity.

use std::time::{Duration, Instant};

pub use crate::event::BreakerState;

/// Whether a request may go to the node now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Allowed as the single half-open probe.
    Probe,
    Refused,
}

#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub threshold: u32,
    pub base_cooldown: Duration,
    pub max_cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            threshold: 3,
            base_cooldown: Duration::from_secs(2),
            max_cooldown: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    cooldown: Duration,
    probe_in_flight: bool,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            cooldown: settings.base_cooldown,
            settings,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            probe_in_flight: false,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Whether [`admission`](Self::admission) would let a request through now, without
    /// changing anything.
    pub fn would_admit(&self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => self
                .opened_at
                .is_none_or(|at| now.duration_since(at) >= self.cooldown),
            BreakerState::HalfOpen => !self.probe_in_flight,
        }
    }

    /// Whether a request may go through now, moving an expired open breaker to half-open.
    pub fn admission(&mut self, now: Instant) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open => {
                let expired = self
                    .opened_at
                    .is_none_or(|at| now.duration_since(at) >= self.cooldown);
                if expired {
                    self.state = BreakerState::HalfOpen;
                    self.probe_in_flight = false;
                    Admission::Probe
                } else {
                    Admission::Refused
                }
            }
            BreakerState::HalfOpen if self.probe_in_flight => Admission::Refused,
            BreakerState::HalfOpen => Admission::Probe,
        }
    }

    /// Records that the probe was sent.
    pub fn probe_started(&mut self) {
        self.probe_in_flight = true;
    }

    /// Returns the new state if it changed.
    pub fn on_success(&mut self) -> Option<BreakerState> {
        self.consecutive_failures = 0;
        self.probe_in_flight = false;
        self.cooldown = self.settings.base_cooldown;
        self.transition(BreakerState::Closed)
    }

    /// Returns the new state if it changed.
    pub fn on_failure(&mut self, now: Instant) -> Option<BreakerState> {
        self.consecutive_failures += 1;
        match self.state {
            BreakerState::HalfOpen => {
                self.probe_in_flight = false;
                self.cooldown = (self.cooldown * 2).min(self.settings.max_cooldown);
                self.opened_at = Some(now);
                self.transition(BreakerState::Open)
            }
            BreakerState::Closed if self.consecutive_failures >= self.settings.threshold => {
                self.opened_at = Some(now);
                self.transition(BreakerState::Open)
            }
            _ => None,
        }
    }

    fn transition(&mut self, next: BreakerState) -> Option<BreakerState> {
        (std::mem::replace(&mut self.state, next) != next).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            threshold: 3,
            base_cooldown: Duration::from_secs(1),
            max_cooldown: Duration::from_secs(4),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_cooldown() {
        let start = Instant::now();
        let mut breaker = breaker();
        assert_eq!(breaker.on_failure(start), None);
        assert_eq!(breaker.on_failure(start), None);
        assert_eq!(breaker.on_failure(start), Some(BreakerState::Open));
        assert_eq!(breaker.admission(start), Admission::Refused);
        let later = start + Duration::from_secs(1);
        assert_eq!(breaker.admission(later), Admission::Probe);
        breaker.probe_started();
        assert_eq!(
            breaker.admission(later),
            Admission::Refused,
            "one probe at a time"
        );
        assert_eq!(breaker.on_success(), Some(BreakerState::Closed));
        assert_eq!(breaker.admission(later), Admission::Allowed);
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_the_limit() {
        let start = Instant::now();
        let mut breaker = breaker();
        for _ in 0..3 {
            breaker.on_failure(start);
        }
        let mut now = start;
        for expected in [2, 4, 4] {
            now += breaker.cooldown;
            assert_eq!(breaker.admission(now), Admission::Probe);
            breaker.probe_started();
            assert_eq!(breaker.on_failure(now), Some(BreakerState::Open));
            assert_eq!(breaker.cooldown, Duration::from_secs(expected));
        }
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let now = Instant::now();
        let mut breaker = breaker();
        breaker.on_failure(now);
        breaker.on_failure(now);
        breaker.on_success();
        breaker.on_failure(now);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
