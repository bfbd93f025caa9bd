//! `HEAD` and `POST /api/blobs/{digest}`: a blob and the `/api/create` that uses it must
//! reach the same node, so the gateway remembers which node holds each blob it has seen.
//! Uploads are streamed to the node as they arrive, never buffered whole.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream::LocalBoxStream;
use futures_util::StreamExt;
use sollol_actors::node::RequestKind;
use sollol_actors::router::PickNode;

use super::controls::{Controls, DEFAULT_PRIORITY};
use super::error::{Flavour, GatewayError};
use super::node_client::UploadError;
use super::proxy::{send_with_failover, BodySource, Routed};
use super::state::AppState;

pub async fn blob(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match forward_blob(&request, payload, &state).await {
        Ok(response) => response,
        Err(err) => err.into_response(Flavour::Ollama),
    }
}

async fn forward_blob(
    request: &HttpRequest,
    payload: web::Payload,
    state: &web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let controls = Controls::from_headers(request.headers())?;
    let digest = request
        .match_info()
        .get("digest")
        .unwrap_or_default()
        .to_string();
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = state.settings.max_blob_bytes;
    if declared.is_some_and(|length| length > limit) {
        return Err(GatewayError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("blob exceeds the limit of {limit} bytes (setting max_blob_bytes)"),
        ));
    }
    let body = if request.method() == actix_web::http::Method::POST {
        BodySource::Once(Some(stream_body(payload, limit)))
    } else {
        BodySource::Bytes(Default::default())
    };
    let routed = Routed {
        request,
        state,
        flavour: Flavour::Ollama,
        model_label: String::new(),
        operation: "blobs",
        kind: RequestKind::Other,
        weight: 1.0,
        streaming: false,
        priority: controls.priority.unwrap_or(DEFAULT_PRIORITY),
        adds_model: None,
        received: std::time::Instant::now(),
    };
    let pick = PickNode {
        node: controls
            .node
            .or_else(|| state.blob_node(std::slice::from_ref(&digest))),
        strategy: controls.strategy,
        ..PickNode::any_node()
    };
    let response = send_with_failover(&routed, pick, body).await?;
    if response.status().is_success() {
        if let Some(node) = response
            .headers()
            .get(super::controls::NODE_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            state.remember_blob(&digest, node);
        }
    }
    Ok(response)
}

/// The client's upload as a body for the node, passed on chunk by chunk; past `limit`
/// bytes the upload is cut with an error.
fn stream_body(
    payload: web::Payload,
    limit: u64,
) -> LocalBoxStream<'static, Result<bytes::Bytes, UploadError>> {
    let mut total = 0u64;
    payload
        .map(move |chunk| match chunk {
            Ok(chunk) => {
                total += chunk.len() as u64;
                if total > limit {
                    Err(UploadError::TooLarge(format!(
                        "blob exceeds the limit of {limit} bytes (setting max_blob_bytes)"
                    )))
                } else {
                    Ok(chunk)
                }
            }
            Err(err) => Err(UploadError::Client(err.to_string())),
        })
        .boxed_local()
}
