//! The router: picks the node that serves each request, and holds requests that find
//! every candidate full until a slot frees up.
//!
//! A request's candidates are the nodes that have its model, are healthy, are admitted by
//! their circuit breaker and have a free slot (each node has a capacity). Among them:
//!
//! 1. **Affinity** first: a conversation goes back to the node that served it before, if
//!    that node can take it ([`affinity`]).
//! 2. **Warm first** (for `intelligent`): nodes where the model is resident or being
//!    loaded are preferred; a cold load of a model starts on at most one node at a time
//!    unless every warm node is full.
//! 3. The [`Strategy`] chooses among what is left.
//!
//! When every candidate is full, the request waits in a bounded [`queue`] ordered by
//! priority with aging; a full queue is refused at once (429) and a request that waits
//! too long gets up (503). Each placement returns a [`Lease`]: the node, the in-flight
//! guard that holds its slot, and the reason for the choice.
//!
//! The router's state lives behind a mutex shared by the [`RouterActor`] and every
//! [`RouterHandle`]. A handle places a request on the caller's own thread when nothing is
//! waiting and a node has room (the common case, and no message or thread hop at all);
//! only a request that must wait goes to the actor, which owns the queue and its timers.
//! The lock is never held across an await.

pub mod affinity;
pub mod queue;
pub mod strategy;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;

use crate::event::{Event, QueueChange};
use crate::model_name::normalize_model;
use crate::node::{CapacityFreed, Health, InFlight, NodeHandle, RequestKind};
use crate::observer::{Emit, EmitRouting};
use crate::routing_event::{RoutingEvent, RoutingEventType};
pub use affinity::AffinityOutcome;
use affinity::AffinityTable;
use queue::AdmissionQueue;
use strategy::{Job, Memory};
pub use strategy::{Strategy, UnknownStrategy};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("no ollama nodes are configured")]
    NoNodes,
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    #[error("no ollama node that can serve '{0}' is reachable")]
    NoneReachable(String),
    #[error("node '{0}' is not one of this gateway's nodes")]
    UnknownNode(String),
    #[error(
        "server busy: {queued} requests are already waiting (setting queue_max); try again shortly"
    )]
    QueueFull {
        queued: usize,
        retry_after_secs: u64,
    },
    #[error("server busy: no node could take the request within {waited_secs}s (setting queue_timeout_ms)")]
    QueueTimeout {
        waited_secs: u64,
        retry_after_secs: u64,
    },
    #[error("the router has stopped")]
    Stopped,
}

impl RouteError {
    /// Seconds a client should wait before trying again, when that helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::QueueFull {
                retry_after_secs, ..
            }
            | Self::QueueTimeout {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// Asks the router for a node.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Lease, RouteError>")]
pub struct PickNode {
    /// The model as the client named it; `None` for requests any node can serve.
    pub model: Option<String>,
    pub kind: RequestKind,
    /// Size of the request in weight units (1 for a small one).
    pub weight: f64,
    /// Keys of nodes already tried for this request.
    pub exclude: Vec<String>,
    /// Overrides the router's strategy for this request.
    pub strategy: Option<Strategy>,
    /// 1 (lowest) to 10 (highest); 5 by default.
    pub priority: u8,
    /// Hash of the conversation (or session id) for affinity: the chosen node is
    /// remembered under it.
    pub affinity_key: Option<u64>,
    /// Whether to follow the remembered node (the request continues a conversation or
    /// names a session); a first turn only records its node.
    pub follow_affinity: bool,
    /// Send to exactly this node (`host:port`), as `X-Sollol-Node` asks.
    pub node: Option<String>,
}

impl PickNode {
    pub fn for_model(model: impl Into<String>) -> Self {
        Self {
            model: Some(model.into()),
            kind: RequestKind::Other,
            weight: 1.0,
            exclude: Vec::new(),
            strategy: None,
            priority: 5,
            affinity_key: None,
            follow_affinity: false,
            node: None,
        }
    }

    pub fn any_node() -> Self {
        Self {
            model: None,
            ..Self::for_model("")
        }
    }
}

/// A placed request: its node, the slot it holds there, and why it was chosen.
#[derive(Debug)]
pub struct Lease {
    pub node: NodeHandle,
    /// Holds the request's slot on the node until dropped.
    pub in_flight: InFlight,
    pub reason: String,
    pub affinity: AffinityOutcome,
    /// The model was not resident on the node when the request was placed.
    pub cold: bool,
    /// Time spent in the admission queue, if any.
    pub waited: Option<Duration>,
}

/// All nodes, for aggregate endpoints and status pages.
#[derive(Message)]
#[rtype(result = "Vec<NodeHandle>")]
pub struct GetNodes;

#[derive(Debug, Clone, Serialize)]
pub struct RouterStats {
    pub strategy: Strategy,
    pub queued: usize,
    pub queue_max: usize,
    pub affinity_entries: usize,
}

#[derive(Message)]
#[rtype(result = "RouterStats")]
pub struct GetRouterStats;

#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub strategy: Strategy,
    /// Requests that may wait for a slot; more are refused with 429.
    pub queue_max: usize,
    /// Longest wait for a slot; then 503.
    pub queue_timeout: Duration,
    /// A waiting request gains one priority point per this much waiting.
    pub aging: Duration,
    pub affinity_capacity: usize,
    pub affinity_ttl: Duration,
    /// Load time assumed for a model no node has loaded yet.
    pub default_load: Duration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            strategy: Strategy::Intelligent,
            queue_max: 256,
            queue_timeout: Duration::from_secs(60),
            aging: Duration::from_secs(5),
            affinity_capacity: 10_000,
            affinity_ttl: Duration::from_secs(30 * 60),
            default_load: Duration::from_secs(5),
        }
    }
}

/// The router's actor: owns the admission queue's timers and answers [`PickNode`] for
/// requests that must wait (see [`RouterHandle`] for the fast path).
pub struct RouterActor {
    core: Arc<Mutex<RouterCore>>,
}

/// Everything the router knows; shared by the actor and its handles.
struct RouterCore {
    nodes: Vec<NodeHandle>,
    settings: RouterSettings,
    memory: Memory,
    affinity: AffinityTable,
    queue: AdmissionQueue,
    /// Shared with the nodes' in-flight guards: they call back only while this is > 0.
    waiting: Arc<AtomicUsize>,
    observer: Option<Recipient<EmitRouting>>,
    /// Where queue changes go as events (the observer).
    events: Option<Recipient<Emit>>,
}

enum Placement {
    Placed(Lease),
    Full,
}

impl RouterActor {
    pub fn new(nodes: Vec<NodeHandle>, strategy: Strategy) -> Self {
        Self::with_settings(
            nodes,
            RouterSettings {
                strategy,
                ..RouterSettings::default()
            },
            None,
        )
    }

    pub fn with_settings(
        nodes: Vec<NodeHandle>,
        settings: RouterSettings,
        observer: Option<Recipient<EmitRouting>>,
    ) -> Self {
        let core = RouterCore {
            nodes,
            memory: Memory::new(settings.default_load.as_secs_f64() * 1000.0),
            affinity: AffinityTable::new(settings.affinity_capacity, settings.affinity_ttl),
            queue: AdmissionQueue::new(settings.queue_max, settings.aging),
            events: None,
            waiting: Arc::new(AtomicUsize::new(0)),
            observer,
            settings,
        };
        Self {
            core: Arc::new(Mutex::new(core)),
        }
    }

    /// Sends queue changes (queued, admitted, rejected) to `events` as typed events.
    pub fn with_events(self, events: Recipient<Emit>) -> Self {
        self.lock().events = Some(events);
        self
    }

    /// Starts the actor and returns a handle that places requests without a message when
    /// it can.
    pub fn start_with_handle(self) -> RouterHandle {
        let core = self.core.clone();
        RouterHandle {
            addr: self.start(),
            core,
        }
    }

    fn lock(&self) -> MutexGuard<'_, RouterCore> {
        lock(&self.core)
    }

    #[cfg(test)]
    fn place(
        &self,
        request: &PickNode,
        ahead: usize,
        now: Instant,
    ) -> Result<Placement, RouteError> {
        self.lock().place(request, ahead, now)
    }

    #[cfg(test)]
    fn nodes(&self) -> Vec<NodeHandle> {
        self.lock().nodes.clone()
    }
}

fn lock(core: &Mutex<RouterCore>) -> MutexGuard<'_, RouterCore> {
    core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A cloneable way to the router: [`pick`](Self::pick) places a request on the calling
/// thread when it can and asks the actor only when the request has to wait.
#[derive(Clone)]
pub struct RouterHandle {
    pub addr: Addr<RouterActor>,
    core: Arc<Mutex<RouterCore>>,
}

impl RouterHandle {
    /// A node for `request`: at once when nothing waits and a node has room, otherwise
    /// through the actor's queue (so waiting requests keep their order).
    pub async fn pick(&self, request: PickNode) -> Result<Lease, RouteError> {
        {
            let mut core = lock(&self.core);
            if core.queue.is_empty() {
                match core.place(&request, 0, Instant::now()) {
                    Ok(Placement::Placed(lease)) => return Ok(lease),
                    Err(err) => return Err(err),
                    Ok(Placement::Full) => {}
                }
            }
        }
        match self.addr.send(request).await {
            Ok(result) => result,
            Err(_) => Err(RouteError::Stopped),
        }
    }
}

impl std::fmt::Debug for RouterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterHandle").finish_non_exhaustive()
    }
}

impl RouterCore {
    fn queue_event(&self, model: &str, change: QueueChange) {
        if let Some(events) = &self.events {
            events.do_send(Emit(Event::queue(model, change, self.queue.len())));
        }
    }

    /// Places the request now, or says it must wait, or why no node can serve it.
    /// `ahead` is how many requests wait in the queue before this one.
    fn place(
        &mut self,
        request: &PickNode,
        ahead: usize,
        now: Instant,
    ) -> Result<Placement, RouteError> {
        if self.nodes.is_empty() {
            return Err(RouteError::NoNodes);
        }
        if let Some(pinned) = &request.node {
            if !self.nodes.iter().any(|node| node.key() == pinned) {
                return Err(RouteError::UnknownNode(pinned.clone()));
            }
        }
        let model = request
            .model
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(normalize_model);
        let usable: Vec<NodeHandle> = self
            .nodes
            .iter()
            .filter(|node| {
                request
                    .node
                    .as_deref()
                    .is_none_or(|pinned| node.key() == pinned)
            })
            .filter(|node| !request.exclude.iter().any(|key| key == node.key()))
            .filter(|node| model.as_deref().is_none_or(|m| node.has_model(m)))
            .filter(|node| node.is_available())
            .cloned()
            .collect();
        if usable.is_empty() {
            return Err(self.explain_empty(request, model.as_deref()));
        }
        let mut free: Vec<NodeHandle> = usable
            .iter()
            .filter(|node| node.has_free_slot())
            .cloned()
            .collect();

        // Affinity: back to the node that served this conversation, if it can take it.
        let mut affinity = AffinityOutcome::None;
        if let (Some(key), Some(model)) = (request.affinity_key, model.as_deref()) {
            affinity = AffinityOutcome::New;
            let remembered = if request.follow_affinity {
                self.affinity.lookup(model, key, now)
            } else {
                None
            };
            if let Some(remembered) = remembered {
                affinity = AffinityOutcome::Miss;
                match free.iter().position(|node| node.key() == remembered) {
                    Some(index) if free[index].admit(now) => {
                        let node = free.swap_remove(index);
                        let lease = self.lease(
                            node,
                            request,
                            model,
                            "affinity: same conversation".into(),
                            AffinityOutcome::Hit,
                            now,
                        );
                        return Ok(Placement::Placed(lease));
                    }
                    _ if usable.iter().any(|node| node.key() == remembered) => {}
                    _ => self.affinity.forget(model, key),
                }
            }
        }

        let strategy = request.strategy.unwrap_or(self.settings.strategy);
        let job = Job {
            model: model.as_deref(),
            kind: request.kind,
            weight: request.weight,
        };
        if strategy == Strategy::Intelligent {
            return Ok(self.place_intelligent(request, usable, &job, affinity, ahead, now));
        }
        loop {
            if free.is_empty() {
                return Ok(Placement::Full);
            }
            let (index, reason) = strategy::choose(strategy, &free, &job, &mut self.memory);
            let node = free[index].clone();
            if !node.admit(now) {
                // Its breaker refused (a probe is already out): try the others.
                free.remove(index);
                continue;
            }
            let model_name = job.model.unwrap_or_default().to_string();
            let lease = self.lease(node, request, &model_name, reason, affinity, now);
            return Ok(Placement::Placed(lease));
        }
    }

    /// `intelligent`: warm nodes first (every usable node once all warm ones are full);
    /// the best expected finish wins, and when that is on a full node the request waits
    /// for it rather than going where it would finish later.
    fn place_intelligent(
        &mut self,
        request: &PickNode,
        usable: Vec<NodeHandle>,
        job: &Job<'_>,
        affinity: AffinityOutcome,
        ahead: usize,
        now: Instant,
    ) -> Placement {
        let mut pool = usable;
        if let Some(model) = job.model {
            let warm: Vec<NodeHandle> = pool
                .iter()
                .filter(|node| node.is_resident(model) || node.is_loading(model))
                .cloned()
                .collect();
            if warm.iter().any(NodeHandle::has_free_slot) {
                pool = warm;
            }
        }
        while !pool.is_empty() {
            let loads: Vec<f64> = pool
                .iter()
                .map(|node| {
                    let waiting = if node.has_free_slot() { 0 } else { ahead };
                    (node.in_flight() + waiting) as f64
                })
                .collect();
            let (index, reason) = strategy::rank_intelligent(&pool, job, &self.memory, &loads);
            let node = pool[index].clone();
            if !node.has_free_slot() {
                return Placement::Full;
            }
            if !node.admit(now) {
                pool.remove(index);
                continue;
            }
            strategy::record_choice(&mut self.memory, &node);
            let model_name = job.model.unwrap_or_default().to_string();
            return Placement::Placed(self.lease(
                node,
                request,
                &model_name,
                reason,
                affinity,
                now,
            ));
        }
        Placement::Full
    }

    fn lease(
        &mut self,
        node: NodeHandle,
        request: &PickNode,
        model: &str,
        reason: String,
        affinity: AffinityOutcome,
        now: Instant,
    ) -> Lease {
        let cold = !model.is_empty() && !node.is_resident(model);
        let in_flight = if cold && !node.is_loading(model) {
            node.begin_cold_load(model)
        } else {
            node.begin()
        };
        if let (Some(key), false) = (request.affinity_key, model.is_empty()) {
            self.affinity.remember(model, key, node.key(), now);
        }
        tracing::trace!(node = %node.key(), reason = %reason, affinity = affinity.as_str(), cold, "node picked");
        Lease {
            node,
            in_flight,
            reason,
            affinity,
            cold,
            waited: None,
        }
    }

    fn explain_empty(&self, request: &PickNode, wanted: Option<&str>) -> RouteError {
        let label = request
            .model
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "any model".into());
        let Some(model) = wanted else {
            return RouteError::NoneReachable(label);
        };
        // The model may live on a node we cannot use right now: one that is down, was
        // never checked, is shut out by its breaker, or already failed for this request.
        let maybe_elsewhere = self.nodes.iter().any(|node| {
            node.has_model(model)
                || node.health() == Health::Unknown
                || (node.health() == Health::Unhealthy && node.status().models.is_empty())
        });
        if maybe_elsewhere {
            RouteError::NoneReachable(label)
        } else {
            RouteError::ModelNotFound(label)
        }
    }

    /// Places waiting requests, best first, while slots allow.
    fn dispatch(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut still_waiting = Vec::new();
        for waiter in self.queue.drain_in_order(now) {
            match self.place(&waiter.request, still_waiting.len(), now) {
                Ok(Placement::Placed(mut lease)) => {
                    let waited = now.duration_since(waiter.enqueued);
                    lease.waited = Some(waited);
                    let model = waiter.request.model.clone().unwrap_or_default();
                    self.queue_event(&model, QueueChange::Admitted { waited });
                    // A caller that gave up meanwhile drops the lease, freeing the slot.
                    let _ = waiter.reply.send(Ok(lease));
                }
                Ok(Placement::Full) => still_waiting.push(waiter),
                Err(err) => {
                    let _ = waiter.reply.send(Err(err));
                }
            }
        }
        self.queue.restore(still_waiting);
        self.waiting.store(self.queue.len(), Ordering::Relaxed);
    }

    fn emit(&self, event: RoutingEvent) {
        if let Some(observer) = &self.observer {
            observer.do_send(EmitRouting(event));
        }
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let recipient = ctx.address().recipient::<CapacityFreed>();
        {
            let core = self.lock();
            for node in &core.nodes {
                node.set_release_hook(recipient.clone(), core.waiting.clone());
            }
        }
        // Health changes and breaker cooldowns free capacity without a release.
        ctx.run_interval(Duration::from_millis(100), |act, _ctx| {
            act.lock().dispatch()
        });
        ctx.run_interval(Duration::from_secs(30), |act, _ctx| {
            let now = Instant::now();
            let mut core = act.lock();
            core.affinity.expire(now);
            let down: Vec<NodeHandle> = core
                .nodes
                .iter()
                .filter(|node| !node.is_available())
                .cloned()
                .collect();
            for node in down {
                core.affinity.forget_node(node.key());
            }
        });
    }
}

impl Handler<PickNode> for RouterActor {
    type Result = ResponseFuture<Result<Lease, RouteError>>;

    fn handle(&mut self, request: PickNode, _ctx: &mut Self::Context) -> Self::Result {
        self.lock().pick_or_queue(request)
    }
}

impl RouterCore {
    /// Places `request`, or queues it and returns the wait for its turn.
    fn pick_or_queue(&mut self, request: PickNode) -> ResponseFuture<Result<Lease, RouteError>> {
        let now = Instant::now();
        // Requests already waiting go first; what they cannot use is free for this one.
        self.dispatch();
        let placement = self.place(&request, self.queue.len(), now);
        match placement {
            Ok(Placement::Placed(lease)) => Box::pin(async move { Ok(lease) }),
            Err(err) => Box::pin(async move { Err(err) }),
            Ok(Placement::Full) => {
                if self.queue.is_full() {
                    let err = RouteError::QueueFull {
                        queued: self.queue.len(),
                        retry_after_secs: 1,
                    };
                    let model = request.model.clone().unwrap_or_default();
                    self.queue_event(
                        &model,
                        QueueChange::Rejected {
                            reason: "queue full".into(),
                        },
                    );
                    return Box::pin(async move { Err(err) });
                }
                let (reply, answer) = tokio::sync::oneshot::channel();
                let model = request.model.clone().unwrap_or_default();
                let priority = request.priority;
                let seq = self.queue.push(request, reply, now);
                self.waiting.store(self.queue.len(), Ordering::Relaxed);
                let event = RoutingEvent::new(
                    RoutingEventType::TaskQueued,
                    &model,
                    "",
                    "every candidate node is at capacity",
                    priority,
                )
                .with("task_id", seq)
                .with("queued", self.queue.len());
                self.emit(event);
                self.queue_event(&model, QueueChange::Queued);
                let timeout = self.settings.queue_timeout;
                let events = self.events.clone();
                Box::pin(async move {
                    match tokio::time::timeout(timeout, answer).await {
                        Ok(Ok(result)) => result,
                        Ok(Err(_)) => Err(RouteError::NoneReachable(model)),
                        Err(_) => {
                            if let Some(events) = events {
                                let change = QueueChange::Rejected {
                                    reason: "waited too long".into(),
                                };
                                events.do_send(Emit(Event::queue(&model, change, 0)));
                            }
                            Err(RouteError::QueueTimeout {
                                waited_secs: timeout.as_secs(),
                                retry_after_secs: 5,
                            })
                        }
                    }
                })
            }
        }
    }
}

impl Handler<CapacityFreed> for RouterActor {
    type Result = ();

    fn handle(&mut self, _: CapacityFreed, _ctx: &mut Self::Context) {
        self.lock().dispatch();
    }
}

impl Handler<GetNodes> for RouterActor {
    type Result = MessageResult<GetNodes>;

    fn handle(&mut self, _: GetNodes, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.lock().nodes.clone())
    }
}

impl Handler<GetRouterStats> for RouterActor {
    type Result = MessageResult<GetRouterStats>;

    fn handle(&mut self, _: GetRouterStats, _ctx: &mut Self::Context) -> Self::Result {
        let core = self.lock();
        MessageResult(RouterStats {
            strategy: core.settings.strategy,
            queued: core.queue.len(),
            queue_max: core.settings.queue_max,
            affinity_entries: core.affinity.len(),
        })
    }
}

#[cfg(test)]
mod tests;
