//! The admission queue: requests that found every candidate node full wait here, best
//! first, and are placed as slots free up.
//!
//! Order is by effective priority, which is the request's priority (1 to 10, higher
//! first) plus one point for every `aging` interval it has waited, so a low-priority
//! request is never starved by a steady stream of higher ones. Equal effective priorities
//! keep arrival order.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Lease, PickNode, RouteError};

pub struct Waiter {
    pub request: PickNode,
    pub reply: oneshot::Sender<Result<Lease, RouteError>>,
    pub enqueued: Instant,
    pub seq: u64,
}

impl Waiter {
    pub fn effective_priority(&self, now: Instant, aging: Duration) -> f64 {
        let waited = now.duration_since(self.enqueued).as_secs_f64();
        f64::from(self.request.priority) + waited / aging.as_secs_f64().max(0.001)
    }
}

pub struct AdmissionQueue {
    waiters: Vec<Waiter>,
    pub capacity: usize,
    pub aging: Duration,
    next_seq: u64,
}

impl AdmissionQueue {
    pub fn new(capacity: usize, aging: Duration) -> Self {
        Self {
            waiters: Vec::new(),
            capacity,
            aging,
            next_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.waiters.len() >= self.capacity
    }

    /// Adds a waiter; returns its sequence number.
    pub fn push(
        &mut self,
        request: PickNode,
        reply: oneshot::Sender<Result<Lease, RouteError>>,
        now: Instant,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.waiters.push(Waiter {
            request,
            reply,
            enqueued: now,
            seq,
        });
        seq
    }

    /// Takes every waiter out, best first, dropping those whose caller gave up.
    pub fn drain_in_order(&mut self, now: Instant) -> Vec<Waiter> {
        let aging = self.aging;
        let mut waiters: Vec<Waiter> = self
            .waiters
            .drain(..)
            .filter(|w| !w.reply.is_closed())
            .collect();
        waiters.sort_by(|a, b| {
            b.effective_priority(now, aging)
                .total_cmp(&a.effective_priority(now, aging))
                .then(a.seq.cmp(&b.seq))
        });
        waiters
    }

    /// Puts back waiters that could not be placed (they keep their arrival time).
    pub fn restore(&mut self, waiters: Vec<Waiter>) {
        self.waiters.extend(waiters);
    }
}
