//! The route table, and the router's own answers outside it.
//!
//! Ollama uses gin, so an unknown path gets `404 page not found` as `text/plain`, a known path
//! with the wrong method gets `405 method not allowed` with an `Allow` header, and a known path
//! with a trailing slash is redirected (301 for GET, 307 otherwise).

use actix_web::dev::Service;
use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder};

use crate::reply::TEXT;
use crate::state::Sim;
use crate::{blobs, faults};
use crate::{embed, generate, native, openai, stats};

/// Largest request body accepted (chat requests may carry base64 images).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Every fixed path the node answers, for the trailing-slash redirect.
const PATHS: &[&str] = &[
    "/",
    "/api/version",
    "/api/tags",
    "/api/ps",
    "/api/show",
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/api/pull",
    "/api/delete",
    "/api/copy",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/sim/stats",
];

/// Registers the whole simulated server for `sim` on an actix `App`:
/// `App::new().configure(sollol_sim::configure(sim))`.
///
/// Everything, including request counting and the 404 page, lives in one scope, so the app
/// needs nothing else.
pub fn configure(sim: Sim) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        let recorder = sim.clone();
        let failures = sim.clone();
        config.service(
            web::scope("")
                .app_data(web::Data::new(sim))
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .wrap_fn(move |request, service| {
                    stats::record(&recorder, &request);
                    tracing::trace!(method = %request.method(), path = request.path(), "request");
                    service.call(request)
                })
                .service(
                    web::resource(faults::INFERENCE_PATHS)
                        .guard(faults::failing(failures))
                        .to(faults::fail),
                )
                .service(get_head("/", native::root))
                .service(get_head("/api/version", native::version))
                .service(get_head("/api/tags", native::tags))
                .service(only(Method::GET, "/api/ps", native::ps))
                .service(only(Method::POST, "/api/show", native::show))
                .service(only(Method::POST, "/api/generate", generate::generate))
                .service(only(Method::POST, "/api/chat", generate::chat))
                .service(only(Method::POST, "/api/embed", embed::embed))
                .service(only(Method::POST, "/api/embeddings", embed::embeddings))
                .service(only(Method::POST, "/api/pull", native::pull))
                .service(only(Method::DELETE, "/api/delete", native::delete))
                .service(only(Method::POST, "/api/copy", native::copy))
                .service(only(
                    Method::POST,
                    "/v1/chat/completions",
                    openai::chat_completions,
                ))
                .service(only(Method::POST, "/v1/completions", openai::completions))
                .service(only(Method::POST, "/v1/embeddings", openai::embeddings))
                .service(only(Method::GET, "/v1/models", openai::models))
                .service(only(Method::GET, "/v1/models/{model}", openai::model))
                .service(only(Method::GET, "/sim/stats", stats::show))
                .service(only(Method::POST, "/sim/control", faults::control))
                .service(only(Method::POST, "/api/create", blobs::create))
                .service(
                    web::resource("/api/blobs/{digest}")
                        .route(web::head().to(blobs::check))
                        .route(web::post().to(blobs::upload)),
                )
                .default_service(web::to(not_found)),
        );
    }
}

/// A path answered to GET and HEAD by the same handler (HEAD replies carry no body).
fn get_head<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|| async { method_not_allowed("GET, HEAD") }))
}

/// A path answered to one method.
fn only<F, Args>(method: Method, path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let allow = method.as_str().to_owned();
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move || {
            let allow = allow.clone();
            async move { method_not_allowed(&allow) }
        }))
}

fn method_not_allowed(allow: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .content_type(TEXT)
        .insert_header((header::ALLOW, allow))
        .body("405 method not allowed")
}

/// gin's fallback: redirect a known path given with a trailing slash, 404 anything else.
async fn not_found(request: HttpRequest) -> HttpResponse {
    let path = request.path();
    let known = path
        .strip_suffix('/')
        .filter(|trimmed| PATHS.contains(trimmed) && !trimmed.is_empty());
    let Some(target) = known else {
        return HttpResponse::NotFound()
            .content_type(TEXT)
            .body("404 page not found");
    };

    let location = match request.query_string() {
        "" => target.to_owned(),
        query => format!("{target}?{query}"),
    };
    let method = request.method();
    if method == Method::GET || method == Method::HEAD {
        HttpResponse::MovedPermanently()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::LOCATION, location.as_str()))
            .body(format!("<a href=\"{location}\">Moved Permanently</a>.\n\n"))
    } else {
        HttpResponse::TemporaryRedirect()
            .insert_header((header::LOCATION, location))
            .finish()
    }
}
