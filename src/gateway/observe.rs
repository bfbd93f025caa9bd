//! Middleware around every route: one tracing span per request, and the count of what
//! the gateway answered.
//!
//! The span is `request{method, route, node, attempt}`; `route` is the route pattern
//! (`/api/chat`, never a raw path), and the proxy records `node` and `attempt` in it
//! when it picks a node, so every log line written while serving the request says where
//! it went. It is a `debug` span: with the default `info` filter it is never created,
//! because building and formatting it cost about a sixth of the gateway's work per
//! request; the request path's warnings carry their own node, route and attempt. The response is counted in `sollol_http_responses_total{route, status}`,
//! which also covers requests refused before any node was tried.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use tracing::Instrument;

use super::state::AppState;

/// Route label of requests that match no route.
const UNMATCHED: &str = "unmatched";

pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let route = request
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED.to_string());
    let metrics = request
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let span = tracing::debug_span!(
        "request",
        method = %request.method(),
        route = %route,
        node = tracing::field::Empty,
        attempt = tracing::field::Empty,
    );
    let response = next.call(request).instrument(span).await?;
    if let Some(metrics) = metrics {
        metrics.record_http_response(&route, response.status().as_u16());
    }
    Ok(response)
}
