//! `POST /sollol/workers/env`: changes the environment worker processes are started with,
//! and restarts them one at a time so each picks it up, without losing a job.
//!
//! Body: `{"set": {"NAME": "value", ...}, "unset": ["NAME", ...]}`. The answer lists the
//! changes with secret values hidden.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use sollol_actors::supervisor::GetSnapshot;

use super::error::{Flavour, GatewayError};
use super::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvChange {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    unset: Vec<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0']) && name != sollol_actors::worker::WORKER_ID_VAR
}

pub async fn change(body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let change: EnvChange = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(err) => {
            return GatewayError::bad_request(format!(
                "invalid body: {err}; expected {{\"set\": {{...}}, \"unset\": [...]}}"
            ))
            .into_response(Flavour::Ollama)
        }
    };
    if let Some(bad) = change
        .set
        .keys()
        .chain(&change.unset)
        .find(|name| !valid_name(name))
    {
        return GatewayError::bad_request(format!(
            "`{bad}` is not a variable name a worker may be given"
        ))
        .into_response(Flavour::Ollama);
    }
    if change.set.values().any(|value| value.contains('\0')) {
        return GatewayError::bad_request("values may not contain NUL bytes")
            .into_response(Flavour::Ollama);
    }
    let Some(workers) = &state.workers else {
        return GatewayError::new(
            StatusCode::CONFLICT,
            "no worker processes are running (setting workers)",
        )
        .into_response(Flavour::Ollama);
    };
    let Ok(current) = workers.addr.send(GetSnapshot).await else {
        return GatewayError::bad_gateway("the supervisor has stopped")
            .into_response(Flavour::Ollama);
    };
    let mut next = current.clone();
    for name in &change.unset {
        next = next.without(name);
    }
    for (name, value) in change.set {
        next = next.with(name, value);
    }
    let diff = current.diff(&next);
    workers.addr.do_send(next);
    HttpResponse::Accepted()
        .json(json!({ "changes": diff.to_string(), "restarting": !diff.is_empty() }))
}
