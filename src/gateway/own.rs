//! sollol's own routes: `/sollol/health`, `/sollol/nodes`, `/sollol/workers`,
//! `/sollol/stats`, `/sollol/metadata` and `/metrics`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;
use sollol_actors::metadata::GetMetadata;
use sollol_actors::observer::GetObserverStats;
use sollol_actors::redis_publisher::GetPublisherStats;
use sollol_actors::supervisor::WorkerState;

use super::state::AppState;

/// 200 while at least one node is healthy, 503 otherwise.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let healthy = state.nodes.iter().filter(|n| n.is_available()).count();
    let workers = match &state.workers {
        Some(handle) => handle.workers().await,
        None => Vec::new(),
    };
    let workers_ready = workers
        .iter()
        .filter(|w| w.state == WorkerState::Ready)
        .count();
    let redis = match &state.publisher {
        Some(publisher) => match publisher.send(GetPublisherStats).await {
            Ok(stats) => json!({ "configured": true, "connected": stats.connected }),
            Err(_) => json!({ "configured": true, "connected": false }),
        },
        None => json!({ "configured": false, "connected": false }),
    };
    let status = if healthy == 0 {
        "down"
    } else if healthy < state.nodes.len() || workers_ready < workers.len() {
        "degraded"
    } else {
        "ok"
    };
    let body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "nodes": { "healthy": healthy, "total": state.nodes.len() },
        "workers": { "ready": workers_ready, "total": workers.len() },
        "redis": redis,
    });
    if healthy == 0 {
        HttpResponse::ServiceUnavailable().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

pub async fn nodes(state: web::Data<AppState>) -> HttpResponse {
    let nodes: Vec<_> = state.nodes.iter().map(|node| node.status()).collect();
    HttpResponse::Ok().json(json!({ "nodes": nodes, "strategy": state.settings.strategy }))
}

pub async fn workers(state: web::Data<AppState>) -> HttpResponse {
    let workers = match &state.workers {
        Some(handle) => handle.workers().await,
        None => Vec::new(),
    };
    HttpResponse::Ok().json(json!({ "workers": workers }))
}

pub async fn stats(state: web::Data<AppState>) -> HttpResponse {
    let requests = state
        .counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let observer = state.observer.send(GetObserverStats).await.ok();
    let publisher = match &state.publisher {
        Some(publisher) => publisher.send(GetPublisherStats).await.ok(),
        None => None,
    };
    HttpResponse::Ok().json(json!({
        "requests": requests,
        "observer": observer,
        "redis": publisher,
    }))
}

/// The Prometheus text exposition of this process's metrics.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // Events still buffered for the observer count too.
    let _ = state
        .observer
        .send(sollol_actors::observer::FlushEvents)
        .await;
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, sollol_actors::metrics::CONTENT_TYPE))
        .body(state.metrics.encode())
}

/// The document published as `sollol:router:metadata`, as it would be published now.
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let document = match &state.metadata {
        Some(metadata) => metadata.send(GetMetadata).await.ok(),
        None => None,
    };
    match document {
        Some(document) => HttpResponse::Ok().json(document),
        None => {
            HttpResponse::ServiceUnavailable().json(json!({ "error": "metadata is not available" }))
        }
    }
}
