//! Request counters, so gateway tests can check where requests went and with which `Host`.
//!
//! `GET /sim/stats` answers
//! `{"requests":{"POST /api/chat":3,…},"last_host":"127.0.0.1:40123","total":3}`. Requests to
//! `/sim/*` are not counted, so reading the counters does not change them.

use std::collections::BTreeMap;

use actix_web::dev::ServiceRequest;
use actix_web::{http::header, web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::reply;
use crate::state::Sim;

/// What one node has been asked since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Requests per `"<METHOD> <path>"` (path without query string).
    pub requests: BTreeMap<String, u64>,
    /// The `Host` header of the last counted request (empty if it had none).
    pub last_host: String,
    /// All counted requests.
    pub total: u64,
}

impl SimStats {
    /// Counts one request.
    pub(crate) fn record(&mut self, method: &str, path: &str, host: &str) {
        *self.requests.entry(format!("{method} {path}")).or_default() += 1;
        host.clone_into(&mut self.last_host);
        self.total += 1;
    }

    /// How many `"<METHOD> <path>"` requests were counted.
    pub fn count(&self, route: &str) -> u64 {
        self.requests.get(route).copied().unwrap_or(0)
    }
}

/// Counts `request` unless it is aimed at `/sim/*`.
pub(crate) fn record(sim: &Sim, request: &ServiceRequest) {
    let path = request.path();
    if path.starts_with("/sim/") {
        return;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    sim.record(request.method().as_str(), path, host);
}

/// `GET /sim/stats`.
pub(crate) async fn show(sim: web::Data<Sim>) -> HttpResponse {
    reply::native(&sim.stats())
}
