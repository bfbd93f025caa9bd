//! The route table: Ollama's API, its OpenAI-compatible layer, sollol's own routes, and
//! `/metrics`.
//!
//! Unknown paths get Ollama's `404 page not found` and a known path with the wrong method
//! gets `405 method not allowed` with an `Allow` header, both as `text/plain`, exactly as
//! an Ollama server answers them.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, Route};

use super::aggregate;
use super::batch;
use super::blobs;
use super::dashboard;
use super::jobs;
use super::live;
use super::own;
use super::proxy::{forward, ModelRule, RouteSpec};
use super::state::AppState;
use super::worker_env;

const INFERENCE: RouteSpec = RouteSpec::native(ModelRule::Required, true);
const SINGLE_REPLY: RouteSpec = RouteSpec::native(ModelRule::Required, false);
const ANY_NODE_PROGRESS: RouteSpec = RouteSpec::native(ModelRule::AnyNode, true);
const OPENAI: RouteSpec = RouteSpec::openai(ModelRule::Required);
const ANY_NODE_GET: RouteSpec = RouteSpec::native(ModelRule::AnyNode, false);
const OPENAI_MODEL_IN_PATH: RouteSpec = RouteSpec::openai(ModelRule::FromPath);

pub fn configure(config: &mut web::ServiceConfig) {
    // Resources are matched in order: the inference routes, which carry nearly all the
    // traffic, come first.
    config
        .service(routed("/api/chat", web::post(), INFERENCE, "POST"))
        .service(routed("/api/generate", web::post(), INFERENCE, "POST"))
        .service(routed("/v1/chat/completions", web::post(), OPENAI, "POST"))
        .service(routed("/api/embed", web::post(), SINGLE_REPLY, "POST"))
        .service(routed("/v1/embeddings", web::post(), OPENAI, "POST"))
        .service(routed("/api/embeddings", web::post(), SINGLE_REPLY, "POST"))
        .service(routed("/v1/completions", web::post(), OPENAI, "POST"))
        .service(
            web::resource("/")
                .route(web::get().to(root))
                .route(web::head().to(root))
                .default_service(not_allowed("GET, HEAD")),
        )
        .service(
            web::resource("/api/version")
                .route(web::get().to(aggregate::version))
                .route(web::head().to(aggregate::version))
                .default_service(not_allowed("GET, HEAD")),
        )
        .service(
            web::resource("/api/tags")
                .route(web::get().to(aggregate::tags))
                .route(web::head().to(aggregate::tags))
                .default_service(not_allowed("GET, HEAD")),
        )
        .service(
            web::resource("/api/ps")
                .route(web::get().to(aggregate::ps))
                .default_service(not_allowed("GET")),
        )
        .service(routed("/api/show", web::post(), SINGLE_REPLY, "POST"))
        .service(routed("/api/pull", web::post(), ANY_NODE_PROGRESS, "POST"))
        .service(routed(
            "/api/create",
            web::post(),
            ANY_NODE_PROGRESS,
            "POST",
        ))
        .service(routed("/api/push", web::post(), INFERENCE, "POST"))
        .service(routed("/api/copy", web::post(), SINGLE_REPLY, "POST"))
        .service(routed("/api/delete", web::delete(), SINGLE_REPLY, "DELETE"))
        .service(
            web::resource("/api/blobs/{digest}")
                .route(web::head().to(blobs::blob))
                .route(web::post().to(blobs::blob))
                .default_service(not_allowed("HEAD, POST")),
        )
        .service(routed("/v1/responses", web::post(), OPENAI, "POST"))
        .service(routed("/v1/messages", web::post(), OPENAI, "POST"))
        .service(routed("/api/status", web::get(), ANY_NODE_GET, "GET"))
        .service(
            web::resource("/v1/models")
                .route(web::get().to(aggregate::openai_models))
                .default_service(not_allowed("GET")),
        )
        .service(routed(
            "/v1/models/{model}",
            web::get(),
            OPENAI_MODEL_IN_PATH,
            "GET",
        ))
        .service(
            web::resource("/sollol/health")
                .route(web::get().to(own::health))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/sollol/nodes")
                .route(web::get().to(own::nodes))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/sollol/workers")
                .route(web::get().to(own::workers))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/sollol/stats")
                .route(web::get().to(own::stats))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/sollol/workers/env")
                .route(web::post().to(worker_env::change))
                .default_service(not_allowed("POST")),
        )
        .service(
            web::resource("/sollol/batch/jobs")
                .route(web::post().to(jobs::create))
                .default_service(not_allowed("POST")),
        )
        .service(
            web::resource("/sollol/batch/jobs/{id}")
                .route(web::get().to(jobs::status))
                .route(web::delete().to(jobs::cancel))
                .default_service(not_allowed("GET, DELETE")),
        )
        .service(
            web::resource("/sollol/batch/jobs/{id}/results")
                .route(web::get().to(jobs::results))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/sollol/metadata")
                .route(web::get().to(own::metadata))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/sollol/events")
                .route(web::get().to(live::events))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/sollol/dashboard")
                .route(web::get().to(dashboard::page))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/metrics")
                .route(web::get().to(own::metrics))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/sollol/batch/embed")
                .route(web::post().to(batch::embed))
                .default_service(not_allowed("POST")),
        )
        .default_service(web::to(not_found));
}

fn routed(path: &str, method: Route, spec: RouteSpec, allow: &'static str) -> actix_web::Resource {
    web::resource(path)
        .route(method.to(
            move |request: HttpRequest, payload: web::Payload, state: web::Data<AppState>| {
                forward(request, payload, state, spec)
            },
        ))
        .default_service(not_allowed(allow))
}

async fn root() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body("Ollama is running")
}

/// Ollama's router redirects a path with a trailing slash (301 for GET, 307 otherwise,
/// so the body is sent again); anything else unknown is its plain 404 page.
async fn not_found(request: HttpRequest) -> HttpResponse {
    let path = request.path();
    if path.len() > 1 && path.ends_with('/') {
        let mut location = path.trim_end_matches('/').to_string();
        if !request.query_string().is_empty() {
            location.push('?');
            location.push_str(request.query_string());
        }
        let mut redirect = if request.method() == actix_web::http::Method::GET {
            HttpResponse::MovedPermanently()
        } else {
            HttpResponse::TemporaryRedirect()
        };
        return redirect
            .insert_header((header::LOCATION, location))
            .finish();
    }
    HttpResponse::NotFound()
        .insert_header((header::CONTENT_TYPE, "text/plain"))
        .body("404 page not found")
}

fn not_allowed(allow: &'static str) -> Route {
    web::to(move || async move {
        HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, allow))
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .body("405 method not allowed")
    })
}
