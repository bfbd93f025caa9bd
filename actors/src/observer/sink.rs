//! [`EventSink`]: the request path's way into the observer, without a message per event.
//!
//! A message to an actor on another thread costs a wake-up of that thread; a proxied
//! request produces three events, so at tens of thousands of requests a second those
//! wake-ups cost more than the observer's own work. The sink instead appends the event
//! to a shared buffer under a short lock. Only the first event into an empty buffer
//! sends the observer a message; the observer drains the buffer a few milliseconds
//! later, in order, and also before it answers any question about what it has seen
//! (stats, recent events, a new live feed) and when it is told to flush, so nothing
//! reads a stale view. The buffer is bounded: past [`MAX_PENDING`] events (an observer
//! that cannot keep up) new events are counted as dropped instead of growing memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use crate::event::Event;
use crate::routing_event::RoutingEvent;

/// Events that may wait for the observer; more are dropped and counted.
pub const MAX_PENDING: usize = 100_000;

/// How long the first event into an empty buffer waits for others to join it.
pub const DRAIN_DELAY: Duration = Duration::from_millis(5);

/// One buffered item.
pub(super) enum Pending {
    Event(Event),
    Routing(RoutingEvent),
}

#[derive(Default)]
struct Buffer {
    items: Vec<Pending>,
    /// A drain is already asked for.
    scheduled: bool,
}

/// The buffer the observer and its sinks share.
#[derive(Default)]
pub(super) struct PendingEvents {
    buffer: Mutex<Buffer>,
    dropped: AtomicU64,
}

impl PendingEvents {
    /// Everything buffered so far, oldest first; the next event schedules a new drain.
    pub(super) fn take(&self) -> Vec<Pending> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        buffer.scheduled = false;
        std::mem::take(&mut buffer.items)
    }

    /// Events dropped because the buffer was full, since the last call.
    pub(super) fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    /// Buffers `item`; true when the observer must be told to drain.
    fn push(&self, item: Pending) -> bool {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        if buffer.items.len() >= MAX_PENDING {
            drop(buffer);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        buffer.items.push(item);
        !std::mem::replace(&mut buffer.scheduled, true)
    }
}

/// Tells the observer that its buffer has events (sent once per batch).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DrainSoon;

/// Processes everything buffered now; answered once it is done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushEvents;

/// A cheap, cloneable way to hand events to one observer. See the module docs.
#[derive(Clone)]
pub struct EventSink {
    pending: Arc<PendingEvents>,
    drain: Recipient<DrainSoon>,
}

impl EventSink {
    pub(super) fn new(pending: Arc<PendingEvents>, drain: Recipient<DrainSoon>) -> Self {
        Self { pending, drain }
    }

    /// Records `event`; never waits for the observer.
    pub fn emit(&self, event: Event) {
        self.push(Pending::Event(event));
    }

    /// Records a routing decision; never waits for the observer.
    pub fn emit_routing(&self, event: RoutingEvent) {
        self.push(Pending::Routing(event));
    }

    fn push(&self, item: Pending) {
        if self.pending.push(item) {
            self.drain.do_send(DrainSoon);
        }
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").finish_non_exhaustive()
    }
}
