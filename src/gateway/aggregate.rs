//! Answers that combine every node: `/api/tags`, `/api/ps`, `/api/version`, `/v1/models`.
//!
//! Model entries are kept as the nodes sent them (raw JSON) and merged by their `model`
//! field, so fields a newer server adds survive. Tags are ordered newest first and
//! running models by remaining keep-alive, as a single Ollama server orders them.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;
use sollol_actors::model_name::normalize_model;
use sollol_actors::node::{describe_reqwest_error, NodeHandle};

use super::error::{Flavour, GatewayError};
use super::state::AppState;
use crate::timestamp::parse_rfc3339_nanos;

const JSON_UTF8: &str = "application/json; charset=utf-8";
/// Time allowed for each node's part of an aggregate answer.
const NODE_LIST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct ModelList {
    #[serde(default)]
    models: Option<Vec<Box<RawValue>>>,
}

/// The fields of an entry needed to merge and order it.
#[derive(Deserialize)]
struct EntryKey {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    modified_at: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

struct Entry {
    raw: Box<RawValue>,
    id: String,
    name: String,
    /// Nanoseconds since the epoch of `modified_at` (tags) or `expires_at` (ps).
    order: i128,
}

/// Fetches `path` from every node that may answer and merges the model lists.
async fn union(
    state: &AppState,
    path: &str,
    order_field: fn(&EntryKey) -> Option<&str>,
) -> Result<Vec<Entry>, GatewayError> {
    let mut nodes: Vec<&NodeHandle> = state.nodes.iter().filter(|n| n.is_available()).collect();
    if nodes.is_empty() {
        nodes = state.nodes.iter().collect();
    }
    let fetches = nodes.iter().map(|node| fetch_list(node, path));
    let results = futures_util::future::join_all(fetches).await;

    let mut failures = Vec::new();
    let mut merged: HashMap<String, Entry> = HashMap::new();
    let mut any_ok = false;
    for result in results {
        let entries = match result {
            Ok(entries) => entries,
            Err(err) => {
                failures.push(err);
                continue;
            }
        };
        any_ok = true;
        for raw in entries {
            let Ok(key) = serde_json::from_str::<EntryKey>(raw.get()) else {
                continue;
            };
            let Some(name) = key.model.clone().or(key.name.clone()) else {
                continue;
            };
            let order = order_field(&key)
                .and_then(parse_rfc3339_nanos)
                .unwrap_or(i128::MIN);
            let entry = Entry {
                raw,
                id: normalize_model(&name),
                name,
                order,
            };
            match merged.get(&entry.id) {
                Some(existing) if existing.order >= entry.order => {}
                _ => {
                    merged.insert(entry.id.clone(), entry);
                }
            }
        }
    }
    if !any_ok {
        let detail = if failures.is_empty() {
            "no nodes are configured".to_string()
        } else {
            failures.join("; ")
        };
        return Err(GatewayError::bad_gateway(format!(
            "no ollama node answered {path}: {detail}"
        )));
    }
    let mut entries: Vec<Entry> = merged.into_values().collect();
    entries.sort_by(|a, b| b.order.cmp(&a.order).then_with(|| a.id.cmp(&b.id)));
    Ok(entries)
}

async fn fetch_list(node: &NodeHandle, path: &str) -> Result<Vec<Box<RawValue>>, String> {
    let response = node
        .client()
        .get(node.endpoint(path))
        .header(reqwest::header::HOST, node.host_header())
        .timeout(NODE_LIST_TIMEOUT)
        .send()
        .await
        .map_err(|err| format!("{}: {}", node.key(), describe_reqwest_error(&err)))?;
    if !response.status().is_success() {
        return Err(format!(
            "{}: HTTP {}",
            node.key(),
            response.status().as_u16()
        ));
    }
    let body = response
        .bytes()
        .await
        .map_err(|err| format!("{}: {}", node.key(), describe_reqwest_error(&err)))?;
    let list: ModelList = serde_json::from_slice(&body)
        .map_err(|err| format!("{}: invalid json: {err}", node.key()))?;
    Ok(list.models.unwrap_or_default())
}

fn models_body(entries: &[Entry]) -> String {
    let mut body = String::from("{\"models\":[");
    for (index, entry) in entries.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(entry.raw.get());
    }
    body.push_str("]}");
    body
}

fn json_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8)))
        .body(body)
}

pub async fn tags(state: web::Data<AppState>) -> HttpResponse {
    match union(&state, "/api/tags", |key| key.modified_at.as_deref()).await {
        Ok(entries) => json_response(models_body(&entries)),
        Err(err) => err.into_response(Flavour::Ollama),
    }
}

pub async fn ps(state: web::Data<AppState>) -> HttpResponse {
    match union(&state, "/api/ps", |key| key.expires_at.as_deref()).await {
        Ok(entries) => json_response(models_body(&entries)),
        Err(err) => err.into_response(Flavour::Ollama),
    }
}

/// The lowest version any healthy node reports: the features every node has.
pub async fn version(state: web::Data<AppState>) -> HttpResponse {
    let lowest = state
        .nodes
        .iter()
        .filter(|node| node.is_available())
        .filter_map(|node| node.version())
        .min_by(|a, b| compare_versions(a, b));
    match lowest {
        Some(version) => json_response(serde_json::json!({ "version": version }).to_string()),
        None => {
            GatewayError::bad_gateway("no ollama node is reachable").into_response(Flavour::Ollama)
        }
    }
}

fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| -> Vec<u64> {
        v.trim_start_matches('v')
            .split(['.', '-', '+'])
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    parts(a).cmp(&parts(b))
}

/// `GET /v1/models`, built from the merged tags as Ollama builds it from its own.
pub async fn openai_models(state: web::Data<AppState>) -> HttpResponse {
    let entries = match union(&state, "/api/tags", |key| key.modified_at.as_deref()).await {
        Ok(entries) => entries,
        Err(err) => return err.into_response(Flavour::OpenAi),
    };
    let data: Vec<serde_json::Value> = entries
        .iter()
        .map(|entry| {
            let owner = entry.name.rsplit_once('/').map(|(ns, _)| ns.rsplit('/').next().unwrap_or(ns)).unwrap_or("library");
            let created = if entry.order == i128::MIN { 0 } else { (entry.order / 1_000_000_000) as i64 };
            serde_json::json!({ "id": entry.name, "object": "model", "created": created, "owned_by": owner })
        })
        .collect();
    let body = serde_json::json!({ "object": "list", "data": data });
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(format!("{body}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(
            compare_versions("0.5.10", "0.5.9"),
            std::cmp::Ordering::Greater
        );
        assert_eq!(
            compare_versions("0.12.6", "0.12.6"),
            std::cmp::Ordering::Equal
        );
        assert_eq!(
            compare_versions("0.3.0-rc1", "0.4.0"),
            std::cmp::Ordering::Less
        );
    }
}
