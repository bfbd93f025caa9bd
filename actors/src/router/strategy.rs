//! How the router chooses among candidate nodes.
//!
//! Every strategy sees only nodes that are healthy, have the model, are admitted by their
//! breaker and have a free slot. Ties never fall to list order: they go to the node
//! chosen least recently.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::node::{ModelStats, NodeHandle, RequestKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each candidate in turn.
    RoundRobin,
    /// The lowest share of its capacity in use.
    LeastLoaded,
    /// The lowest measured latency for the model; unmeasured nodes are tried first.
    LatencyFirst,
    /// The fewest requests served so far.
    Fairness,
    /// The soonest expected finish, from what each node has measured (see [`score`]).
    Intelligent,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::RoundRobin,
        Strategy::LeastLoaded,
        Strategy::LatencyFirst,
        Strategy::Fairness,
        Strategy::Intelligent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastLoaded => "least_loaded",
            Self::LatencyFirst => "latency_first",
            Self::Fairness => "fairness",
            Self::Intelligent => "intelligent",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("unknown strategy `{0}`; expected one of: round_robin, least_loaded, latency_first, fairness, intelligent")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|strategy| strategy.as_str() == wanted)
            .ok_or_else(|| UnknownStrategy(text.to_string()))
    }
}

/// How much more an expected wait in a full node's queue counts than the same time
/// spent sharing a free node: a queued request also delays everything behind it, and
/// the estimate is least certain there. Measured with `benches/strategies.rs`: waiting
/// for the fast node only while the wait is short keeps both the mean and p99 low.
pub const QUEUE_PENALTY: f64 = 2.0;

/// Milliseconds per weight unit assumed while no node has measured the model.
pub const UNMEASURED_UNIT_MS: f64 = 1000.0;

/// What the strategies need to know about the request.
pub struct Job<'a> {
    pub model: Option<&'a str>,
    pub kind: RequestKind,
    pub weight: f64,
}

/// State the strategies keep between choices.
#[derive(Default)]
pub struct Memory {
    turn: usize,
    /// When each node was last chosen (a running counter), for tie-breaking.
    last_chosen: HashMap<String, u64>,
    choices: u64,
    /// Load time assumed for a cold model on a node that never loaded it (ms).
    pub default_load_ms: f64,
}

impl Memory {
    pub fn new(default_load_ms: f64) -> Self {
        Self {
            default_load_ms,
            ..Self::default()
        }
    }

    fn recency(&self, node: &NodeHandle) -> u64 {
        self.last_chosen.get(node.key()).copied().unwrap_or(0)
    }

    fn chosen(&mut self, node: &NodeHandle) {
        self.choices += 1;
        match self.last_chosen.get_mut(node.key()) {
            Some(last) => *last = self.choices,
            None => {
                self.last_chosen
                    .insert(node.key().to_string(), self.choices);
            }
        }
    }
}

/// Picks one of `candidates` (never empty); returns its index and the reason.
pub fn choose(
    strategy: Strategy,
    candidates: &[NodeHandle],
    job: &Job<'_>,
    memory: &mut Memory,
) -> (usize, String) {
    let index = match strategy {
        Strategy::RoundRobin => {
            let index = memory.turn % candidates.len();
            memory.turn = memory.turn.wrapping_add(1);
            index
        }
        Strategy::LeastLoaded => lowest(candidates, memory, |node| {
            node.in_flight() as f64 / node.capacity() as f64
        }),
        Strategy::Fairness => lowest(candidates, memory, |node| node.requests() as f64),
        Strategy::LatencyFirst => {
            let latencies: Vec<f64> = candidates
                .iter()
                .map(|node| measured_latency(node, job).unwrap_or(f64::NEG_INFINITY))
                .collect();
            lowest_by_values(candidates, memory, &latencies)
        }
        Strategy::Intelligent => {
            let loads: Vec<f64> = candidates
                .iter()
                .map(|node| node.in_flight() as f64)
                .collect();
            let (index, reason) = rank_intelligent(candidates, job, memory, &loads);
            memory.chosen(&candidates[index]);
            return (index, reason);
        }
    };
    memory.chosen(&candidates[index]);
    (index, format!("Strategy: {}", strategy.as_str()))
}

fn measured_latency(node: &NodeHandle, job: &Job<'_>) -> Option<f64> {
    match job.model {
        Some(model) => node
            .model_stats(model, job.kind)
            .and_then(|s| s.unit_latency_ms)
            .map(|ms| ms * job.weight),
        None => node.latency_ms(),
    }
}

fn lowest(candidates: &[NodeHandle], memory: &Memory, value: impl Fn(&NodeHandle) -> f64) -> usize {
    let values: Vec<f64> = candidates.iter().map(value).collect();
    lowest_by_values(candidates, memory, &values)
}

/// The best candidate by the `intelligent` score, given each one's load (requests running
/// there plus, for a full node, requests that would wait ahead); does not record the choice.
pub fn rank_intelligent(
    candidates: &[NodeHandle],
    job: &Job<'_>,
    memory: &Memory,
    loads: &[f64],
) -> (usize, String) {
    let stats = candidate_stats(candidates, job);
    let scores = scores_with(candidates, &stats, job, memory.default_load_ms, loads);
    let index = lowest_by_values(candidates, memory, &scores);
    let reason = intelligent_reason(
        &candidates[index],
        stats[index].as_ref(),
        &scores,
        index,
        job,
    );
    (index, reason)
}

/// Records that `node` was chosen (for tie-breaking by recency).
pub fn record_choice(memory: &mut Memory, node: &NodeHandle) {
    memory.chosen(node);
}

/// The index of the lowest value; values within 1 % of each other tie, and ties go to the
/// fewest requests in flight, then to the node chosen least recently.
fn lowest_by_values(candidates: &[NodeHandle], memory: &Memory, values: &[f64]) -> usize {
    let best = values.iter().copied().fold(f64::INFINITY, f64::min);
    let tolerance = if best.is_finite() {
        best.abs() * 0.01
    } else {
        0.0
    };
    (0..candidates.len())
        .filter(|&i| values[i] <= best + tolerance || (values[i] == best))
        .min_by_key(|&i| (candidates[i].in_flight(), memory.recency(&candidates[i])))
        .unwrap_or(0)
}

/// The `intelligent` score of each candidate: the expected time, in milliseconds, until
/// the request would finish there, divided by the square of the node's recent success
/// rate for the model. Lower is better.
///
/// For a node `n`, model `m`, request kind `k` and request weight `w` (1 for a small
/// request, growing with the prompt or input size):
///
/// - `service = unit_latency(n, m, k) × w`, where `unit_latency` is the smoothed latency
///   per weight unit that `n` has measured for `m` and `k`. A node with no measurement
///   is given 80 % of the best measured figure among the candidates, so it is explored
///   once and then judged on what it shows; with no measurement anywhere it is
///   [`UNMEASURED_UNIT_MS`] for every node, so the choice falls to load and recency.
/// - `wait = service × load(n) / capacity(n)`, where `load` is the requests running on
///   `n` plus, when `n` is full, the requests already waiting ahead: they share the node's
///   slots. On a full node the wait counts [`QUEUE_PENALTY`] times over. A full node can
///   still win: the request then waits for it rather than going to a node where it would
///   finish later.
/// - `cold = 0` if `m` is resident on `n` (from `/api/ps` and from recent successes);
///   otherwise the load time `n` has learned for `m`, or the cluster's default. A node
///   that is loading `m` right now counts half of that, and is busy besides.
/// - `score = (service + wait + cold) / max(success(n, m), 0.05)²`, where `success` is
///   the smoothed share of recent requests that did not fail with a 5xx or a transport
///   error; a node that fails fast therefore looks slow, not idle.
pub fn scores(
    candidates: &[NodeHandle],
    job: &Job<'_>,
    default_load_ms: f64,
    loads: &[f64],
) -> Vec<f64> {
    let stats = candidate_stats(candidates, job);
    scores_with(candidates, &stats, job, default_load_ms, loads)
}

/// What each candidate has measured for the job's model and kind.
fn candidate_stats(candidates: &[NodeHandle], job: &Job<'_>) -> Vec<Option<ModelStats>> {
    candidates
        .iter()
        .map(|node| {
            job.model
                .and_then(|model| node.model_stats(model, job.kind))
        })
        .collect()
}

fn scores_with(
    candidates: &[NodeHandle],
    stats: &[Option<ModelStats>],
    job: &Job<'_>,
    default_load_ms: f64,
    loads: &[f64],
) -> Vec<f64> {
    let best_known = stats
        .iter()
        .filter_map(|s| s.as_ref().and_then(|s| s.unit_latency_ms))
        .fold(f64::INFINITY, f64::min);
    let explore_unit = if best_known.is_finite() {
        best_known * 0.8
    } else {
        UNMEASURED_UNIT_MS
    };
    let learned_loads: Vec<f64> = stats
        .iter()
        .filter_map(|s| s.as_ref().and_then(|s| s.load_ms))
        .collect();
    let cluster_load = if learned_loads.is_empty() {
        default_load_ms
    } else {
        learned_loads.iter().sum::<f64>() / learned_loads.len() as f64
    };

    candidates
        .iter()
        .zip(stats)
        .zip(loads)
        .map(|((node, stats), load)| {
            let unit = stats
                .as_ref()
                .and_then(|s| s.unit_latency_ms)
                .unwrap_or(explore_unit);
            let service = unit * job.weight.max(1.0);
            let capacity = node.capacity() as f64;
            let queued = *load >= capacity;
            let wait = service * load / capacity * if queued { QUEUE_PENALTY } else { 1.0 };
            let cold = match job.model {
                Some(model) if node.is_resident(model) => 0.0,
                Some(model) => {
                    let load = stats
                        .as_ref()
                        .and_then(|s| s.load_ms)
                        .unwrap_or(cluster_load);
                    if node.is_loading(model) {
                        load / 2.0
                    } else {
                        load
                    }
                }
                None => 0.0,
            };
            let success = stats.as_ref().map_or(1.0, |s| s.success_rate()).max(0.05);
            (service + wait + cold) / (success * success)
        })
        .collect()
}

/// Why `intelligent` chose the node, for the routing event. Built on every placement, so
/// it appends whole numbers to one buffer rather than going through float formatting.
fn intelligent_reason(
    node: &NodeHandle,
    stats: Option<&ModelStats>,
    scores: &[f64],
    index: usize,
    job: &Job<'_>,
) -> String {
    let mut reason = String::with_capacity(160);
    reason.push_str("Strategy: intelligent; expected ");
    push_whole(&mut reason, scores[index]);
    reason.push_str("ms on ");
    reason.push_str(node.key());
    if let Some(model) = job.model {
        match stats {
            Some(stats) => {
                reason.push_str("; measured ");
                push_whole(&mut reason, stats.unit_latency_ms.unwrap_or(0.0));
                reason.push_str("ms per unit, success ");
                push_whole(&mut reason, stats.success_rate() * 100.0);
                reason.push('%');
            }
            None => reason.push_str("; no history yet (exploring)"),
        }
        reason.push_str(if node.is_resident(model) {
            "; model resident"
        } else {
            "; cold load"
        });
    }
    if scores.len() > 1 {
        // The second lowest score (the lowest may appear twice).
        let mut lowest = f64::INFINITY;
        let mut second = f64::INFINITY;
        for &score in scores {
            if score < lowest {
                second = lowest;
                lowest = score;
            } else if score < second {
                second = score;
            }
        }
        reason.push_str("; next best ");
        push_whole(&mut reason, second);
        reason.push_str("ms");
    }
    reason
}

/// Appends `value` rounded to a whole number (`inf` and `NaN` as Rust writes them).
fn push_whole(out: &mut String, value: f64) {
    if !(value.is_finite() && value.abs() < 1.0e18) {
        out.push_str(&format!("{value:.0}"));
        return;
    }
    let rounded = value.round() as i64;
    if rounded < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut rest = rounded.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

#[cfg(test)]
mod reason_tests {
    use super::push_whole;

    #[test]
    fn whole_numbers_are_written_rounded() {
        for (value, written) in [
            (0.0, "0"),
            (0.4, "0"),
            (12.6, "13"),
            (1234567.0, "1234567"),
            (-3.7, "-4"),
            (f64::INFINITY, "inf"),
        ] {
            let mut out = String::new();
            push_whole(&mut out, value);
            assert_eq!(out, written, "{value}");
        }
    }
}
