//! Injected failures and the control endpoint that switches them.
//!
//! `POST /sim/control {"fail_status": 500}` makes every inference request fail at once with
//! that status; `{"fail_status": null}` heals the node. Health routes (`/`, `/api/version`,
//! `/api/tags`, `/api/ps`) keep answering, as a real node whose runner is broken does, so
//! tests can tell "down" from "answers with errors".

use actix_web::http::StatusCode;
use actix_web::{guard, web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::Sim;

/// The inference routes an injected failure applies to.
pub(crate) const INFERENCE_PATHS: [&str; 7] = [
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
];

#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct Control {
    #[serde(default)]
    fail_status: Option<u16>,
}

/// A guard that matches while a failure is injected.
pub(crate) fn failing(sim: Sim) -> impl guard::Guard {
    guard::fn_guard(move |_| sim.fail_status().is_some())
}

/// The injected failure, in Ollama's error format.
pub(crate) async fn fail(sim: web::Data<Sim>) -> Result<HttpResponse, ApiError> {
    let status = sim.fail_status().unwrap_or(500);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Err(ApiError::new(status, "simulated failure"))
}

/// `POST /sim/control`: sets the injected failure and answers the current setting.
pub(crate) async fn control(sim: web::Data<Sim>, body: web::Json<Control>) -> HttpResponse {
    if let Some(status) = body.fail_status {
        if StatusCode::from_u16(status).is_err() {
            return HttpResponse::BadRequest()
                .json(serde_json::json!({ "error": "fail_status is not an http status" }));
        }
    }
    sim.set_fail_status(body.fail_status);
    tracing::info!(fail_status = ?body.fail_status, "simulated failure changed");
    HttpResponse::Ok().json(Control {
        fail_status: sim.fail_status(),
    })
}
