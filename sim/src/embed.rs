//! `POST /api/embed` (batch, normalised) and `POST /api/embeddings` (legacy, raw).
//!
//! Vectors are pseudo-random but fixed by model and text, so the same input embeds to the same
//! vector on every node, and similar requests can be compared across a cluster.

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::body::Body;
use crate::catalog::ModelEntry;
use crate::error::ApiError;
use crate::inference;
use crate::keep_alive::KeepAlive;
use crate::reply;
use crate::state::Sim;
use crate::text;

#[derive(Serialize)]
struct EmbedReply<'a> {
    model: &'a str,
    embeddings: Vec<Vec<f32>>,
    #[serde(skip_serializing_if = "is_zero")]
    total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    prompt_eval_count: u64,
}

#[derive(Serialize)]
struct EmbeddingReply {
    embedding: Vec<f64>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// The texts of an `input` field: a string (empty means none) or an array of strings.
pub(crate) fn inputs(value: Option<&Value>) -> Result<Vec<&str>, ApiError> {
    let invalid = || ApiError::bad_request("invalid input type");
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![text.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(invalid))
            .collect(),
        Some(_) => Err(invalid()),
    }
}

/// Unit vectors for `inputs`, cut to `dimensions` when that is smaller than the model's size.
pub(crate) fn unit_vectors(
    sim: &Sim,
    entry: &ModelEntry,
    inputs: &[&str],
    dimensions: Option<i64>,
) -> Vec<Vec<f32>> {
    let dim = sim.config().embedding_dim;
    let keep = dimensions
        .and_then(|wanted| usize::try_from(wanted).ok())
        .filter(|wanted| *wanted > 0)
        .map_or(dim, |wanted| wanted.min(dim));
    inputs
        .iter()
        .map(|input| {
            let raw = text::raw_vector(&entry.key, input, dim);
            text::normalise(&raw[..keep])
        })
        .collect()
}

/// Loads the model, then waits the first-byte latency. Returns the load time.
pub(crate) async fn prepare(
    sim: &Sim,
    entry: &ModelEntry,
    keep_alive: KeepAlive,
    inputs_present: bool,
) -> Duration {
    let started = Instant::now();
    // A generation slot is held while the node "computes", as for chat and generate.
    let _slot = sim.slot().await;
    inference::load(sim, entry, keep_alive, None).await;
    let load_time = started.elapsed();
    if inputs_present && !sim.config().latency.is_zero() {
        tokio::time::sleep(sim.config().latency).await;
    }
    load_time
}

/// `POST /api/embed`.
pub(crate) async fn embed(sim: web::Data<Sim>, body: Bytes) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let body = Body::decode(&body, "api.EmbedRequest")?;
    let fields = body.fields();
    let model = fields.string("model")?;
    let dimensions = fields.int("dimensions")?;
    let keep_alive = KeepAlive::parse(fields.get("keep_alive"))?;
    let inputs = inputs(fields.get("input"))?;

    if model.is_empty() {
        return Err(ApiError::model_not_found(""));
    }
    let entry = sim
        .find(model)
        .ok_or_else(|| ApiError::model_not_pulled(model))?;

    let load_time = prepare(&sim, &entry, keep_alive, !inputs.is_empty()).await;
    if inputs.is_empty() {
        return Ok(reply::native(&EmbedReply {
            model,
            embeddings: Vec::new(),
            total_duration: 0,
            load_duration: 0,
            prompt_eval_count: 0,
        }));
    }

    let prompt_eval_count = inputs
        .iter()
        .map(|input| text::word_count(input).max(1) as u64)
        .sum();
    tracing::debug!(model = %entry.name, inputs = inputs.len(), "embed");
    Ok(reply::native(&EmbedReply {
        model,
        embeddings: unit_vectors(&sim, &entry, &inputs, dimensions),
        total_duration: nanos(started.elapsed()).max(1),
        load_duration: nanos(load_time).max(1),
        prompt_eval_count,
    }))
}

/// `POST /api/embeddings`.
pub(crate) async fn embeddings(sim: web::Data<Sim>, body: Bytes) -> Result<HttpResponse, ApiError> {
    let body = Body::decode(&body, "api.EmbeddingRequest")?;
    let fields = body.fields();
    let model = fields.string("model")?;
    let prompt = fields.string("prompt")?;
    let keep_alive = KeepAlive::parse(fields.get("keep_alive"))?;

    if model.is_empty() {
        return Err(ApiError::model_required());
    }
    let entry = sim
        .find(model)
        .ok_or_else(|| ApiError::model_not_pulled(model))?;

    prepare(&sim, &entry, keep_alive, !prompt.is_empty()).await;
    let embedding = if prompt.is_empty() {
        Vec::new()
    } else {
        text::raw_vector(&entry.key, prompt, sim.config().embedding_dim)
    };
    tracing::debug!(model = %entry.name, "embeddings");
    Ok(reply::native(&EmbeddingReply { embedding }))
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
