//! Blobs and `/api/create`, enough to check that a gateway sends a blob upload and the
//! create that uses it to the same node.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::Sim;

fn digest_of(request: &HttpRequest) -> Result<String, ApiError> {
    let digest = request.match_info().get("digest").unwrap_or_default();
    let hex = digest
        .strip_prefix("sha256:")
        .or_else(|| digest.strip_prefix("sha256-"));
    match hex {
        Some(hex) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            Ok(digest.to_string())
        }
        _ => Err(ApiError::bad_request("invalid digest format")),
    }
}

/// `HEAD /api/blobs/{digest}`: 200 if stored here, 404 otherwise.
pub(crate) async fn check(
    sim: web::Data<Sim>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let digest = digest_of(&request)?;
    if sim.has_blob(&digest) {
        Ok(HttpResponse::Ok().finish())
    } else {
        Err(ApiError::not_found(format!("blob \"{digest}\" not found")))
    }
}

/// `POST /api/blobs/{digest}`: stores it (the content is not verified); 201 when new.
pub(crate) async fn upload(
    sim: web::Data<Sim>,
    request: HttpRequest,
    _body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let digest = digest_of(&request)?;
    let status = if sim.store_blob(&digest) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).finish())
}

#[derive(Deserialize)]
struct CreateRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    files: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    stream: Option<bool>,
}

/// `POST /api/create`: every blob named in `files` must be on this node.
pub(crate) async fn create(sim: web::Data<Sim>, body: Bytes) -> Result<HttpResponse, ApiError> {
    let request: CreateRequest =
        serde_json::from_slice(&body).map_err(|err| ApiError::bad_request(err.to_string()))?;
    let name = request
        .model
        .or(request.name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid model name"))?;
    let files = request.files.unwrap_or_default();
    if files.is_empty() && request.from.is_none() {
        return Err(ApiError::bad_request(
            "neither 'from' or 'files' was specified",
        ));
    }
    if let Some(missing) = files.values().find(|digest| !sim.has_blob(digest)) {
        return Err(ApiError::bad_request(format!("blob {missing} not found")));
    }
    sim.add(&name);
    if request.stream == Some(false) {
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body("{\"status\":\"success\"}"));
    }
    let lines = "{\"status\":\"parsing GGUF\"}\n{\"status\":\"writing manifest\"}\n{\"status\":\"success\"}\n";
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .body(lines))
}
