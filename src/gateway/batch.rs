//! `POST /sollol/batch/embed`: many inputs, split into chunks, embedded by the worker
//! processes (or in process when none are configured), answered in input order.
//!
//! A chunk that fails fails the whole request with an error that names the first input
//! of that chunk; a partial result is never reported as success.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

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
    extra: serde_json::Map<String, Value>,
}

pub async fn embed(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let body = match read_body(&request, payload, state.settings.max_body_bytes).await {
        Ok(body) => body,
        Err(err) => return err.into_response(Flavour::Ollama),
    };
    match run(&state, &body).await {
        Ok(response) => response,
        Err(err) => err.into_response(Flavour::Ollama),
    }
}

async fn run(state: &AppState, body: &[u8]) -> Result<HttpResponse, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::bad_request("missing request body"));
    }
    let request: BatchEmbedRequest = serde_json::from_slice(body)
        .map_err(|err| GatewayError::bad_request(format!("invalid json in request body: {err}")))?;
    let model = request
        .model
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| GatewayError::bad_request("model is required"))?;
    let extra = request.extra;
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

    let chunk_size = state.settings.batch_chunk_size;
    let chunks: Vec<(usize, Vec<Value>)> = inputs
        .chunks(chunk_size)
        .enumerate()
        .map(|(index, chunk)| (index * chunk_size, chunk.to_vec()))
        .collect();
    let workers = state.workers.clone();
    let concurrency = workers
        .as_ref()
        .map_or(4, |_| (state.settings.workers * 4).max(1));
    let embedder = Embedder::new(state.router.clone(), state.observer.clone());
    let timeout = state.settings.job_timeout;

    let mut results = futures_util::stream::iter(chunks.into_iter().map(|(first, chunk)| {
        let workers = workers.clone();
        let embedder = embedder.clone();
        let model = model.clone();
        let extra = extra.clone();
        async move {
            let outcome = match &workers {
                Some(handle) => {
                    let payload =
                        json!({ "op": "embed", "model": model, "input": chunk, "extra": extra });
                    handle
                        .run(payload, Some(timeout))
                        .await
                        .map_err(|err| EmbedError {
                            status: 502,
                            message: err.to_string(),
                        })
                        .and_then(|value| vectors_of(value, chunk.len()))
                }
                None => embedder.embed(&model, &chunk, &extra).await,
            };
            outcome.map_err(|err| (first, err))
        }
    }))
    .buffered(concurrency);

    let mut embeddings = Vec::with_capacity(inputs.len());
    let mut failure = None;
    while let Some(result) = results.next().await {
        match result {
            Ok(vectors) => embeddings.extend(vectors),
            Err((first, err)) => {
                let mut err = embed_error(err);
                err.message = format!("batch embedding failed at input {first}: {}", err.message);
                failure = Some(err);
                break;
            }
        }
    }
    drop(results);
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(format!(
            "{{\"model\":{},\"embeddings\":{}}}",
            Value::String(model),
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

fn embed_error(err: EmbedError) -> GatewayError {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_GATEWAY);
    GatewayError::new(status, err.message)
}
