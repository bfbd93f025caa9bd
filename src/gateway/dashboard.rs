//! `GET /sollol/dashboard`: a live page about the cluster, served from the binary.
//!
//! The page is one HTML file with its style and script inline, and loads nothing from
//! elsewhere. It reads `/sollol/metadata` (latency percentiles, nodes, applications),
//! `/sollol/workers` and `/sollol/health` every two seconds, and follows the live feed
//! at `/sollol/events`. Everything it shows comes from this gateway, so it works with
//! Redis down; with Redis up the feed also carries other processes' events.

use actix_web::http::header;
use actix_web::HttpResponse;

const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ))
        .body(PAGE)
}
