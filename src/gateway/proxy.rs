//! Forwards a request to the node the router picks and relays the answer unchanged.
//!
//! Only `model` and `stream` are read from the body (see [`sniff`](super::sniff)); the
//! bytes go upstream as they came, with `Host` rewritten for the node. A connection that
//! fails before anything reached the client is retried once on another node. NDJSON and
//! SSE answers are relayed line by line as they arrive; other answers are passed on whole,
//! with their length. Each response names its node in `X-Sollol-Node`.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sollol_actors::event::Event;
use sollol_actors::node::{describe_reqwest_error, InFlight, NodeHandle};
use sollol_actors::observer::Emit;
use sollol_actors::router::{PickNode, RouteError};

use super::error::{Flavour, GatewayError};
use super::relay::{LineRelay, Outcome};
use super::sniff::{sniff, RequestInfo};
use super::state::AppState;

/// Header naming the node that served a response.
pub const NODE_HEADER: &str = "x-sollol-node";
/// Attempts per request when connections fail before any byte reached the client.
const CONNECT_ATTEMPTS: usize = 2;

/// How a route treats its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRule {
    /// The body must name a model, and only nodes that have it may serve.
    Required,
    /// Any healthy node may serve (pull, create): the model may not exist yet.
    AnyNode,
    /// The model is the `{model}` path segment (`/v1/models/{model}`).
    FromPath,
}

#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub flavour: Flavour,
    pub model: ModelRule,
    /// Whether the route streams when the body does not say.
    pub streams_by_default: bool,
}

impl RouteSpec {
    pub const fn native(model: ModelRule, streams_by_default: bool) -> Self {
        Self {
            flavour: Flavour::Ollama,
            model,
            streams_by_default,
        }
    }

    pub const fn openai(model: ModelRule) -> Self {
        Self {
            flavour: Flavour::OpenAi,
            model,
            streams_by_default: false,
        }
    }
}

pub async fn forward(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    spec: RouteSpec,
) -> HttpResponse {
    match forward_inner(&request, payload, &state, spec).await {
        Ok(response) => response,
        Err(err) => {
            state.count(None, err.status.as_u16());
            err.into_response(spec.flavour)
        }
    }
}

async fn forward_inner(
    request: &HttpRequest,
    payload: web::Payload,
    state: &web::Data<AppState>,
    spec: RouteSpec,
) -> Result<HttpResponse, GatewayError> {
    let received = Instant::now();
    let body = read_body(request, payload, state.settings.max_body_bytes).await?;
    let info = match spec.model {
        ModelRule::FromPath => RequestInfo {
            model: request.match_info().get("model").map(String::from),
            stream: Some(false),
        },
        _ => sniff(&body)?,
    };
    if spec.model == ModelRule::Required && info.model.is_none() {
        return Err(GatewayError::bad_request("model is required"));
    }
    let streaming = info.stream.unwrap_or(spec.streams_by_default);
    let operation = operation_name(request.path());
    let model_label = info.model.clone().unwrap_or_default();

    let mut pick = PickNode {
        model: if spec.model == ModelRule::AnyNode {
            None
        } else {
            info.model.clone()
        },
        exclude: Vec::new(),
        strategy: None,
    };
    let mut last_failure: Option<String> = None;
    for attempt in 1..=CONNECT_ATTEMPTS {
        let node = match state.router.send(pick.clone()).await {
            Ok(Ok(node)) => node,
            Ok(Err(err)) => return Err(route_error(err, last_failure)),
            Err(_) => return Err(GatewayError::bad_gateway("the router has stopped")),
        };
        tracing::Span::current()
            .record("node", node.key())
            .record("attempt", attempt);
        let in_flight = node.begin();
        let started = Instant::now();
        let event = Event::ollama_request(node.key(), &model_label, operation, streaming);
        state.observer.do_send(Emit(event));

        let upstream = build_upstream(request, &node, body.clone()).send().await;
        let response = match upstream {
            Ok(response) => response,
            Err(err) => {
                let message = format!("node {}: {}", node.key(), describe_reqwest_error(&err));
                report_error(state, &node, &model_label, operation, &message, started);
                if err.is_connect() {
                    node.record_failure(&message, true);
                    tracing::warn!(node = %node.key(), error = %message, "connection failed; trying another node");
                    pick.exclude.push(node.key().to_string());
                    last_failure = Some(message);
                    continue;
                }
                node.record_failure(&message, false);
                state.count(Some(node.key()), 502);
                return Err(GatewayError::bad_gateway(message));
            }
        };
        let context = Completion {
            state: state.clone().into_inner(),
            node,
            in_flight,
            model: model_label,
            operation,
            streaming,
            started,
            first_byte: started.elapsed(),
            overhead: started - received,
        };
        return Ok(relay_response(response, context, spec.flavour).await);
    }
    let message = last_failure.unwrap_or_else(|| "no node answered".into());
    Err(GatewayError::bad_gateway(message))
}

/// Reads the request body, refusing more than `limit` bytes with a 413.
pub(super) async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let too_large = || {
        GatewayError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes (setting max_body_bytes)"),
        )
    };
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|err| GatewayError::bad_request(format!("cannot read request body: {err}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn route_error(err: RouteError, last_failure: Option<String>) -> GatewayError {
    match err {
        RouteError::ModelNotFound(_) => GatewayError::new(StatusCode::NOT_FOUND, err.to_string()),
        RouteError::NoneReachable(_) | RouteError::NoNodes => match last_failure {
            Some(failure) => GatewayError::bad_gateway(format!("{err}; last failure: {failure}")),
            None => GatewayError::bad_gateway(err.to_string()),
        },
    }
}

/// The last path segment, as SOLLOL names operations (`chat`, `generate`, `embed`).
fn operation_name(path: &str) -> &'static str {
    match path.rsplit('/').next().unwrap_or_default() {
        "chat" => "chat",
        "generate" => "generate",
        "embed" => "embed",
        "embeddings" => "embeddings",
        "completions" if path.contains("/chat/") => "chat_completions",
        "completions" => "completions",
        "show" => "show",
        "pull" => "pull",
        "push" => "push",
        "create" => "create",
        "copy" => "copy",
        "delete" => "delete",
        _ => "models",
    }
}

/// Request headers that belong to one connection and are not forwarded.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn build_upstream(
    request: &HttpRequest,
    node: &NodeHandle,
    body: Bytes,
) -> reqwest::RequestBuilder {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let mut headers = reqwest::header::HeaderMap::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        // Host is the node's own; Origin would make a loopback Ollama answer 403; the
        // body is relayed as it comes, so no compressed encodings are asked for.
        if is_hop_by_hop(name)
            || matches!(
                name.as_str(),
                "host" | "content-length" | "origin" | "accept-encoding"
            )
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    if let Ok(host) = reqwest::header::HeaderValue::from_str(node.host_header()) {
        headers.insert(reqwest::header::HOST, host);
    }
    let builder = node
        .client()
        .request(method, node.endpoint(path_and_query))
        .headers(headers);
    if body.is_empty() {
        builder
    } else {
        builder.body(body)
    }
}

/// Everything needed to report a request once its response is done.
struct Completion {
    state: Arc<AppState>,
    node: NodeHandle,
    in_flight: InFlight,
    model: String,
    operation: &'static str,
    streaming: bool,
    started: Instant,
    first_byte: std::time::Duration,
    overhead: std::time::Duration,
}

impl Completion {
    fn finish(self, status: u16, outcome: Outcome) {
        let latency = self.started.elapsed();
        let key = self.node.key();
        let event = match &outcome {
            Outcome::Completed if status < 400 => Event::ollama_response(
                key,
                &self.model,
                self.operation,
                latency,
                status,
                self.streaming,
            ),
            Outcome::Completed => {
                Event::ollama_error(key, &self.model, &format!("HTTP {status}"), latency)
            }
            Outcome::UpstreamFailed(message) => {
                Event::ollama_error(key, &self.model, message, latency)
            }
            Outcome::ClientGone => {
                Event::ollama_error(key, &self.model, "client closed the connection", latency)
            }
        };
        let event = event
            .on_route(self.operation)
            .with_status(status)
            .with_first_byte(self.first_byte)
            .with_gateway_overhead(self.overhead);
        match &outcome {
            Outcome::UpstreamFailed(message) => self.node.record_failure(message, false),
            _ if status >= 500 => self.node.record_failure(&format!("HTTP {status}"), false),
            _ => self.node.record_success(latency),
        }
        self.state.observer.do_send(Emit(event));
        self.state.count(Some(key), status);
        drop(self.in_flight);
    }
}

fn report_error(
    state: &AppState,
    node: &NodeHandle,
    model: &str,
    operation: &str,
    message: &str,
    started: Instant,
) {
    let event =
        Event::ollama_error(node.key(), model, message, started.elapsed()).on_route(operation);
    state.observer.do_send(Emit(event));
}

async fn relay_response(
    response: reqwest::Response,
    completion: Completion,
    flavour: Flavour,
) -> HttpResponse {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    copy_response_headers(response.headers(), &mut builder);
    if let Ok(value) = HeaderValue::from_str(completion.node.key()) {
        builder.insert_header((NODE_HEADER, value));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let is_stream = content_type.starts_with("application/x-ndjson")
        || content_type.starts_with("text/event-stream");

    if is_stream {
        let code = status.as_u16();
        let relay = LineRelay::new(Box::pin(response.bytes_stream()), flavour, move |outcome| {
            completion.finish(code, outcome)
        });
        return builder.streaming(relay);
    }
    match response.bytes().await {
        Ok(body) => {
            completion.finish(status.as_u16(), Outcome::Completed);
            builder.body(body)
        }
        Err(err) => {
            let message = format!(
                "node {}: {}",
                completion.node.key(),
                describe_reqwest_error(&err)
            );
            completion.finish(502, Outcome::UpstreamFailed(message.clone()));
            GatewayError::bad_gateway(message).into_response(flavour)
        }
    }
}

fn copy_response_headers(
    upstream: &reqwest::header::HeaderMap,
    builder: &mut actix_web::HttpResponseBuilder,
) {
    let mut copied = HeaderMap::new();
    for (name, value) in upstream {
        if matches!(name.as_str(), "content-length" | "date" | "server")
            || matches!(
                name.as_str(),
                "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade"
            )
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            copied.append(name, value);
        }
    }
    for (name, value) in copied {
        builder.append_header((name, value));
    }
}
