//! The router: picks the node that serves a request.
//!
//! Only healthy nodes that have the requested model are candidates; among them the
//! [`Strategy`] decides. When nothing qualifies, the error says whether the model exists
//! nowhere (the gateway answers 404) or only on nodes that cannot be reached now (502).

use std::fmt;
use std::str::FromStr;

use actix::prelude::*;
use serde::Serialize;

use crate::model_name::normalize_model;
use crate::node::{Health, NodeHandle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each candidate in turn.
    RoundRobin,
    /// The candidate with the fewest requests in flight; ties go round in turn.
    LeastLoaded,
}

impl Strategy {
    pub const ALL: [Strategy; 2] = [Strategy::RoundRobin, Strategy::LeastLoaded];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastLoaded => "least_loaded",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown strategy `{0}`; expected one of: round_robin, least_loaded")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|strategy| strategy.as_str() == text.trim().to_ascii_lowercase())
            .ok_or_else(|| UnknownStrategy(text.to_string()))
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("no ollama nodes are configured")]
    NoNodes,
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    #[error("no ollama node that can serve '{0}' is reachable")]
    NoneReachable(String),
}

/// Asks the router for a node.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<NodeHandle, RouteError>")]
pub struct PickNode {
    /// The model as the client named it; `None` for requests any node can serve.
    pub model: Option<String>,
    /// Keys of nodes already tried for this request.
    pub exclude: Vec<String>,
    /// Overrides the router's strategy for this request.
    pub strategy: Option<Strategy>,
}

impl PickNode {
    pub fn for_model(model: impl Into<String>) -> Self {
        Self {
            model: Some(model.into()),
            exclude: Vec::new(),
            strategy: None,
        }
    }
}

/// All nodes, for aggregate endpoints and status pages.
#[derive(Message)]
#[rtype(result = "Vec<NodeHandle>")]
pub struct GetNodes;

pub struct RouterActor {
    nodes: Vec<NodeHandle>,
    strategy: Strategy,
    /// Turn counter for round robin and for breaking least-loaded ties.
    turn: usize,
}

impl RouterActor {
    pub fn new(nodes: Vec<NodeHandle>, strategy: Strategy) -> Self {
        Self {
            nodes,
            strategy,
            turn: 0,
        }
    }

    /// The choice itself, without the actor around it (unit tests call this directly).
    pub fn pick(&mut self, request: &PickNode) -> Result<NodeHandle, RouteError> {
        if self.nodes.is_empty() {
            return Err(RouteError::NoNodes);
        }
        let wanted = request.model.as_deref().map(normalize_model);
        let candidates: Vec<&NodeHandle> = self
            .nodes
            .iter()
            .filter(|node| !request.exclude.iter().any(|key| key == node.key()))
            .filter(|node| node.is_available())
            .filter(|node| wanted.as_deref().is_none_or(|model| node.has_model(model)))
            .collect();
        if candidates.is_empty() {
            return Err(self.explain_empty(request, wanted.as_deref()));
        }

        let turn = self.turn;
        self.turn = self.turn.wrapping_add(1);
        let strategy = request.strategy.unwrap_or(self.strategy);
        let chosen = match strategy {
            Strategy::RoundRobin => candidates[turn % candidates.len()],
            Strategy::LeastLoaded => {
                let start = turn % candidates.len();
                let rotated = candidates[start..].iter().chain(&candidates[..start]);
                rotated
                    .min_by_key(|node| node.in_flight())
                    .copied()
                    .unwrap_or(candidates[0])
            }
        };
        tracing::trace!(node = %chosen.key(), strategy = strategy.as_str(), candidates = candidates.len(), "node picked");
        Ok(chosen.clone())
    }

    fn explain_empty(&self, request: &PickNode, wanted: Option<&str>) -> RouteError {
        let label = request.model.clone().unwrap_or_default();
        let Some(model) = wanted else {
            return RouteError::NoneReachable("any model".into());
        };
        // The model may live on a node we cannot use right now: one that is down, was
        // never checked, or already failed for this request.
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
}

impl Actor for RouterActor {
    type Context = Context<Self>;
}

impl Handler<PickNode> for RouterActor {
    type Result = Result<NodeHandle, RouteError>;

    fn handle(&mut self, request: PickNode, _ctx: &mut Self::Context) -> Self::Result {
        self.pick(&request)
    }
}

impl Handler<GetNodes> for RouterActor {
    type Result = MessageResult<GetNodes>;

    fn handle(&mut self, _: GetNodes, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.nodes.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cluster() -> Vec<NodeHandle> {
        vec![
            NodeHandle::for_tests("127.0.0.1:1001", &["llama3.2", "nomic-embed-text"]),
            NodeHandle::for_tests("127.0.0.1:1002", &["llama3.2"]),
            NodeHandle::for_tests("127.0.0.1:1003", &["llama3.2:1b"]),
        ]
    }

    fn count_picks(
        router: &mut RouterActor,
        request: &PickNode,
        n: usize,
    ) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            let node = router.pick(request).expect("a node");
            *counts.entry(node.key().to_string()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn round_robin_alternates_among_nodes_with_the_model() {
        let mut router = RouterActor::new(cluster(), Strategy::RoundRobin);
        let counts = count_picks(&mut router, &PickNode::for_model("Llama3.2"), 10);
        assert_eq!(counts.get("127.0.0.1:1001"), Some(&5));
        assert_eq!(counts.get("127.0.0.1:1002"), Some(&5));
        assert_eq!(counts.get("127.0.0.1:1003"), None);
    }

    #[test]
    fn least_loaded_avoids_busy_nodes_and_spreads_ties() {
        let nodes = cluster();
        let _busy = nodes[0].begin();
        let mut router = RouterActor::new(nodes.clone(), Strategy::LeastLoaded);
        let counts = count_picks(&mut router, &PickNode::for_model("llama3.2"), 4);
        assert_eq!(counts.get("127.0.0.1:1002"), Some(&4));

        let mut router = RouterActor::new(cluster(), Strategy::LeastLoaded);
        let counts = count_picks(&mut router, &PickNode::for_model("llama3.2"), 4);
        assert_eq!(
            counts.len(),
            2,
            "idle ties must not all go to the first node: {counts:?}"
        );
    }

    #[test]
    fn unknown_model_is_not_found_and_unreachable_model_is_not() {
        let nodes = cluster();
        let mut router = RouterActor::new(nodes.clone(), Strategy::RoundRobin);
        assert_eq!(
            router.pick(&PickNode::for_model("mistral")).err(),
            Some(RouteError::ModelNotFound("mistral".into()))
        );
        nodes[2].record_failure("connection refused", true);
        assert_eq!(
            router.pick(&PickNode::for_model("llama3.2:1b")).err(),
            Some(RouteError::NoneReachable("llama3.2:1b".into()))
        );
    }

    #[test]
    fn excluded_nodes_are_skipped_for_retries() {
        let mut router = RouterActor::new(cluster(), Strategy::RoundRobin);
        let mut request = PickNode::for_model("llama3.2");
        request.exclude.push("127.0.0.1:1001".into());
        for _ in 0..3 {
            assert_eq!(router.pick(&request).expect("node").key(), "127.0.0.1:1002");
        }
        request.exclude.push("127.0.0.1:1002".into());
        assert_eq!(
            router.pick(&request).err(),
            Some(RouteError::NoneReachable("llama3.2".into()))
        );
        assert_eq!(
            RouterActor::new(vec![], Strategy::RoundRobin)
                .pick(&request)
                .err(),
            Some(RouteError::NoNodes)
        );
    }

    #[test]
    fn strategies_parse_from_their_names() {
        assert_eq!(
            "least_loaded".parse::<Strategy>(),
            Ok(Strategy::LeastLoaded)
        );
        assert_eq!("ROUND_ROBIN".parse::<Strategy>(), Ok(Strategy::RoundRobin));
        let err = "fastest".parse::<Strategy>().unwrap_err().to_string();
        assert!(err.contains("round_robin, least_loaded"), "{err}");
    }

    #[test]
    fn router_actor_answers_pick_messages() {
        let system = System::new();
        system.block_on(async {
            let router = RouterActor::new(cluster(), Strategy::RoundRobin).start();
            let node = router
                .send(PickNode::for_model("nomic-embed-text"))
                .await
                .expect("alive");
            assert_eq!(node.expect("node").key(), "127.0.0.1:1001");
            assert_eq!(router.send(GetNodes).await.expect("alive").len(), 3);
        });
    }
}
