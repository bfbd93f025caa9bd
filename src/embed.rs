//! Embedding calls made by sollol itself (batch work), through the router like any
//! request, reported to the observer like any request.

use std::time::Instant;

use actix::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};
use sollol_actors::event::Event;
use sollol_actors::model_name::normalize_model;
use sollol_actors::node::{
    describe_reqwest_error, NodeHandle, OutcomeKind, RequestKind, RequestOutcome,
};
use sollol_actors::observer::{Emit, EmitRouting, ObserverActor};
use sollol_actors::router::{Lease, PickNode, RouteError, RouterHandle};
use sollol_actors::routing_event::{RoutingEvent, RoutingEventType};

/// Attempts per chunk when connections to nodes fail.
const CONNECT_ATTEMPTS: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EmbedError {
    /// The HTTP status that best describes the failure to a caller.
    pub status: u16,
    pub message: String,
}

impl EmbedError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<RouteError> for EmbedError {
    fn from(err: RouteError) -> Self {
        let status = if matches!(err, RouteError::ModelNotFound(_)) {
            404
        } else {
            502
        };
        Self::new(status, err.to_string())
    }
}

#[derive(Clone)]
pub struct Embedder {
    router: RouterHandle,
    observer: Addr<ObserverActor>,
}

#[derive(Deserialize)]
struct EmbedResponse {
    embeddings: Vec<Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl Embedder {
    pub fn new(router: RouterHandle, observer: Addr<ObserverActor>) -> Self {
        Self { router, observer }
    }

    /// Embeds `inputs` with `model` on one node; one vector per input, in order. `extra`
    /// holds the other fields of `/api/embed` (`dimensions`, `truncate`, `options`,
    /// `keep_alive`).
    pub async fn embed(
        &self,
        model: &str,
        inputs: &[Value],
        extra: &Map<String, Value>,
    ) -> Result<Vec<Value>, EmbedError> {
        let mut request = extra.clone();
        request.insert("model".into(), model.into());
        request.insert("input".into(), Value::Array(inputs.to_vec()));
        let body =
            serde_json::to_vec(&request).map_err(|err| EmbedError::new(500, err.to_string()))?;
        let weight = 1.0 + body.len() as f64 / 4096.0;
        let mut pick = PickNode {
            kind: RequestKind::Embed,
            weight,
            ..PickNode::for_model(model)
        };
        let mut last_failure = None;
        for attempt in 1..=CONNECT_ATTEMPTS {
            let lease = match self.router.pick(pick.clone()).await {
                Ok(lease) => lease,
                Err(err) => {
                    let mut err = EmbedError::from(err);
                    if let Some(failure) = &last_failure {
                        err.message = format!("{}; last failure: {failure}", err.message);
                    }
                    return Err(err);
                }
            };
            let key = lease.node.key().to_string();
            match self
                .embed_on(lease, model, body.clone(), inputs.len(), weight, attempt)
                .await
            {
                Err(Attempt::ConnectFailed(message)) => {
                    let fallback = RoutingEvent::new(
                        RoutingEventType::FallbackTriggered,
                        model,
                        &key,
                        message.clone(),
                        5,
                    )
                    .with("from_backend", key.clone());
                    self.observer.do_send(EmitRouting(fallback));
                    pick.exclude.push(key);
                    last_failure = Some(message);
                }
                Err(Attempt::Failed(err)) => return Err(err),
                Ok(vectors) => return Ok(vectors),
            }
        }
        Err(EmbedError::new(
            502,
            last_failure.unwrap_or_else(|| "no node answered".into()),
        ))
    }

    async fn embed_on(
        &self,
        lease: Lease,
        model: &str,
        body: Vec<u8>,
        expected: usize,
        weight: f64,
        attempt: usize,
    ) -> Result<Vec<Value>, Attempt> {
        let node = lease.node.clone();
        let started = Instant::now();
        self.observer.do_send(Emit(Event::ollama_request(
            node.key(),
            model,
            "embed",
            false,
        )));
        let result = self.call(&node, body, expected).await;
        let latency = started.elapsed();
        let (event, kind_of_end) = match &result {
            Ok(_) => (
                Event::ollama_response(node.key(), model, "embed", latency, 200, false),
                OutcomeKind::Success,
            ),
            Err(Attempt::ConnectFailed(message)) => (
                Event::ollama_error(node.key(), model, message, latency),
                OutcomeKind::Transport {
                    message: message.clone(),
                    refused: true,
                },
            ),
            Err(Attempt::Failed(err)) if err.status >= 500 => (
                Event::ollama_error(node.key(), model, &err.message, latency),
                OutcomeKind::ServerError(err.message.clone()),
            ),
            Err(Attempt::Failed(err)) => (
                Event::ollama_error(node.key(), model, &err.message, latency),
                OutcomeKind::ClientError,
            ),
        };
        if !matches!(result, Err(Attempt::ConnectFailed(_))) {
            let reason = if attempt > 1 {
                format!("{}; after {} failed attempt(s)", lease.reason, attempt - 1)
            } else {
                lease.reason.clone()
            };
            let selected =
                RoutingEvent::new(RoutingEventType::NodeSelected, model, node.key(), reason, 5);
            self.observer.do_send(EmitRouting(selected));
        }
        node.record(&RequestOutcome {
            model: Some(normalize_model(model)),
            kind: RequestKind::Embed,
            weight,
            latency,
            ttfb: None,
            cold: lease.cold,
            kind_of_end,
        });
        self.observer.do_send(Emit(event));
        drop(lease);
        result
    }

    async fn call(
        &self,
        node: &NodeHandle,
        body: Vec<u8>,
        expected: usize,
    ) -> Result<Vec<Value>, Attempt> {
        let response = node
            .client()
            .post(node.endpoint("/api/embed"))
            .header(reqwest::header::HOST, node.host_header())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| {
                let message = format!("node {}: {}", node.key(), describe_reqwest_error(&err));
                if err.is_connect() {
                    Attempt::ConnectFailed(message)
                } else {
                    Attempt::Failed(EmbedError::new(502, message))
                }
            })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|err| {
            Attempt::Failed(EmbedError::new(
                502,
                format!("node {}: {}", node.key(), describe_reqwest_error(&err)),
            ))
        })?;
        if status != 200 {
            let detail = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
                });
            let status = if status >= 500 { 502 } else { status };
            return Err(Attempt::Failed(EmbedError::new(
                status,
                format!("node {}: {detail}", node.key()),
            )));
        }
        let parsed: EmbedResponse = serde_json::from_slice(&bytes).map_err(|err| {
            Attempt::Failed(EmbedError::new(
                502,
                format!("node {}: invalid embed response: {err}", node.key()),
            ))
        })?;
        if parsed.embeddings.len() != expected {
            return Err(Attempt::Failed(EmbedError::new(
                502,
                format!(
                    "node {} returned {} embeddings for {expected} inputs",
                    node.key(),
                    parsed.embeddings.len()
                ),
            )));
        }
        Ok(parsed.embeddings)
    }
}

enum Attempt {
    ConnectFailed(String),
    Failed(EmbedError),
}
