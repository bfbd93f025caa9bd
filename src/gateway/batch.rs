//! Batch embedding: many inputs, split into chunks, embedded by the worker processes (or
//! in the gateway when none are configured), in input order.
//!
//! - `POST /sollol/batch/embed` answers `{"model", "embeddings"}` once every input is
//!   done. A chunk that fails fails the whole request with an error naming the first
//!   input of that chunk; a partial result is never reported as success.
//! - The asynchronous form lives in [`jobs`](super::jobs): the same chunks, with results
//!   and per-item errors written to a file as they come.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sollol_actors::supervisor::SupervisorHandle;

use super::error::{Flavour, GatewayError};
use super::proxy::read_body;
use super::state::AppState;
use crate::embed::{EmbedError, Embedder};

#[derive(Deserialize)]
struct BatchEmbedRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    /// `dimensions`, `truncate`, `options`, `keep_alive`: passed on to every chunk.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// A validated batch.
pub struct Batch {
    pub model: String,
    pub inputs: Vec<Value>,
    pub extra: Map<String, Value>,
}

/// Reads and checks a batch request body.
pub async fn parse(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Batch, GatewayError> {
    let body = read_body(request, payload, state.settings.max_body_bytes).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::bad_request("missing request body"));
    }
    let request: BatchEmbedRequest = serde_json::from_slice(&body)
        .map_err(|err| GatewayError::bad_request(format!("invalid json in request body: {err}")))?;
    let model = request
        .model
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| GatewayError::bad_request("model is required"))?;
    let inputs = match request.input {
        Some(Value::String(text)) => vec![Value::String(text)],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items,
        Some(Value::Array(_)) => {
            return Err(GatewayError::bad_request(
                "invalid input type: every input must be a string",
            ))
        }
        None => {
            return Err(GatewayError::bad_request(
                "input is required: a string or an array of strings",
            ))
        }
        Some(_) => {
            return Err(GatewayError::bad_request(
                "invalid input type: input must be a string or an array of strings",
            ))
        }
    };
    if inputs.len() > state.settings.batch_max_inputs {
        return Err(GatewayError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} inputs exceed the limit of {} (setting batch_max_inputs)",
                inputs.len(),
                state.settings.batch_max_inputs
            ),
        ));
    }
    // Fail fast when no node has the model (without taking a slot anywhere).
    let having: Vec<_> = state
        .nodes
        .iter()
        .filter(|node| node.has_model_named(&model))
        .collect();
    if having.is_empty() {
        return Err(GatewayError::new(
            StatusCode::NOT_FOUND,
            format!("model '{model}' not found"),
        ));
    }
    if !having.iter().any(|node| node.is_available()) {
        return Err(GatewayError::bad_gateway(format!(
            "no ollama node that can serve '{model}' is reachable"
        )));
    }
    Ok(Batch {
        model,
        inputs,
        extra: request.extra,
    })
}

/// One chunk's outcome: its first input's index, and its vectors or why it failed.
pub type ChunkResult = (usize, Result<Vec<Value>, EmbedError>);

/// Embeds the batch chunk by chunk, a bounded number at a time, yielding chunk results in
/// input order. `batch_id` tags the worker jobs so they can be cancelled together.
pub fn embed_chunks(
    state: &AppState,
    batch: Arc<Batch>,
    batch_id: Option<u64>,
) -> impl Stream<Item = ChunkResult> + 'static {
    let chunk_size = state.settings.batch_chunk_size;
    let chunks = batch.inputs.len().div_ceil(chunk_size);
    let workers: Option<SupervisorHandle> = state.workers.clone();
    let concurrency = workers
        .as_ref()
        .map_or(4, |_| (state.settings.workers * 4).max(1));
    let embedder = Embedder::new(state.router.clone(), state.observer.clone());
    let timeout = state.settings.job_timeout;
    futures_util::stream::iter(0..chunks)
        .map(move |index| {
            let first = index * chunk_size;
            let batch = batch.clone();
            let workers = workers.clone();
            let embedder = embedder.clone();
            async move {
                let chunk = &batch.inputs[first..(first + chunk_size).min(batch.inputs.len())];
                let outcome = match &workers {
                    Some(handle) => {
                        let payload = json!({ "op": "embed", "model": batch.model, "input": chunk, "extra": batch.extra });
                        handle
                            .run_in_batch(payload, Some(timeout), batch_id)
                            .await
                            .map_err(|err| EmbedError { status: 502, message: err.to_string() })
                            .and_then(|value| vectors_of(value, chunk.len()))
                    }
                    None => embedder.embed(&batch.model, chunk, &batch.extra).await,
                };
                (first, outcome)
            }
        })
        .buffered(concurrency)
}

pub async fn embed(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match run(&request, payload, &state).await {
        Ok(response) => response,
        Err(err) => err.into_response(Flavour::Ollama),
    }
}

async fn run(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, GatewayError> {
    let batch = Arc::new(parse(request, payload, state).await?);
    let mut embeddings = Vec::with_capacity(batch.inputs.len());
    let mut results = Box::pin(embed_chunks(state, batch.clone(), None));
    while let Some((first, outcome)) = results.next().await {
        match outcome {
            Ok(vectors) => embeddings.extend(vectors),
            Err(err) => {
                let mut err = embed_error(err);
                err.message = format!("batch embedding failed at input {first}: {}", err.message);
                return Err(err);
            }
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(format!(
            "{{\"model\":{},\"embeddings\":{}}}",
            Value::String(batch.model.clone()),
            Value::Array(embeddings)
        )))
}

fn vectors_of(value: Value, expected: usize) -> Result<Vec<Value>, EmbedError> {
    match value {
        Value::Object(mut object) => match object.remove("embeddings") {
            Some(Value::Array(vectors)) if vectors.len() == expected => Ok(vectors),
            _ => Err(EmbedError {
                status: 502,
                message: format!("worker returned a malformed result for {expected} inputs"),
            }),
        },
        _ => Err(EmbedError {
            status: 502,
            message: "worker returned a malformed result".into(),
        }),
    }
}

pub fn embed_error(err: EmbedError) -> GatewayError {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_GATEWAY);
    GatewayError::new(status, err.message)
}
