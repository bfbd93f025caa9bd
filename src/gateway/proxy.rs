//! Forwards a request to the node the router picks and relays the answer unchanged.
//!
//! Only a few fields are read from the body (see [`sniff`](super::sniff)); the bytes go
//! upstream as they came, with `Host` rewritten for the node. Until the first byte of an
//! answer reaches the client, a refused connection, a timeout before the first byte or a
//! 5xx moves the request to another node, within an attempt budget and never back to a
//! node already tried. A 4xx is the client's answer and is passed on as is. NDJSON and
//! SSE answers are relayed line by line as they arrive; other answers whole, with their
//! length. Each response names its node in `X-Sollol-Node`, and each routed request
//! produces exactly one `OLLAMA_NODE_SELECTED` routing event naming the node that
//! actually answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::stream::LocalBoxStream;
use futures_util::StreamExt;
use sollol_actors::event::Event;
use sollol_actors::model_name::normalize_model;
use sollol_actors::node::{InFlight, NodeHandle, OutcomeKind, RequestKind, RequestOutcome};
use sollol_actors::router::{AffinityOutcome, Lease, PickNode, RouteError};
use sollol_actors::routing_event::{RoutingEvent, RoutingEventType};

use super::client_watch::{wait_for, ClientSocket, Waited};
use super::controls::{Controls, AFFINITY_HEADER, DEFAULT_PRIORITY, NODE_HEADER};
use super::error::{Flavour, GatewayError};
use super::fanout;
use super::node_client::{Answer, NodeClient, RequestBody, SendError, UploadError};
use super::relay::{LineRelay, Outcome};
use super::sniff::{session_key, sniff, RequestInfo};
use super::state::AppState;
use super::upstream::copy_response_headers;

/// Bytes of body that count as one unit of request weight.
const WEIGHT_UNIT_BYTES: f64 = 4096.0;

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

/// The kind of work a path asks for.
pub fn request_kind(path: &str) -> RequestKind {
    match path {
        "/api/chat" | "/v1/chat/completions" => RequestKind::Chat,
        "/api/generate" | "/v1/completions" => RequestKind::Generate,
        "/api/embed" | "/api/embeddings" | "/v1/embeddings" => RequestKind::Embed,
        _ => RequestKind::Other,
    }
}

/// The last path segment, as SOLLOL names operations (`chat`, `generate`, `embed`).
pub fn operation_name(path: &str) -> &'static str {
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
        _ if path.starts_with("/api/blobs/") => "blobs",
        _ => "models",
    }
}

/// Everything about one client request that every attempt shares.
pub struct Routed<'a> {
    pub request: &'a HttpRequest,
    pub state: &'a web::Data<AppState>,
    pub flavour: Flavour,
    pub model_label: String,
    pub operation: &'static str,
    pub kind: RequestKind,
    pub weight: f64,
    pub streaming: bool,
    pub priority: u8,
    /// A model the serving node has once the request succeeds (pull, create, copy).
    pub adds_model: Option<String>,
    /// When the gateway received the request (for its own added latency).
    pub received: Instant,
}

async fn forward_inner(
    request: &HttpRequest,
    payload: web::Payload,
    state: &web::Data<AppState>,
    spec: RouteSpec,
) -> Result<HttpResponse, GatewayError> {
    let received = Instant::now();
    let controls = Controls::from_headers(request.headers())?;
    let body = read_body(request, payload, state.settings.max_body_bytes).await?;
    let info = match spec.model {
        ModelRule::FromPath => RequestInfo {
            model: request.match_info().get("model").map(String::from),
            stream: Some(false),
            ..RequestInfo::default()
        },
        // A GET (`/api/status`) has no body to read.
        ModelRule::AnyNode if body.is_empty() => RequestInfo::default(),
        _ => sniff(&body)?,
    };
    if spec.model == ModelRule::Required && info.model.is_none() {
        // Ollama's generate and embed report an empty name as an unknown model.
        return Err(match request.path() {
            "/api/generate" | "/api/embed" => {
                GatewayError::new(StatusCode::NOT_FOUND, "model '' not found")
            }
            _ => GatewayError::bad_request("model is required"),
        });
    }
    let path = request.path();
    let kind = request_kind(path);
    let routed = Routed {
        request,
        state,
        flavour: spec.flavour,
        model_label: info.model.clone().unwrap_or_default(),
        operation: operation_name(path),
        kind,
        weight: 1.0 + body.len() as f64 / WEIGHT_UNIT_BYTES,
        streaming: info.stream.unwrap_or(spec.streams_by_default),
        priority: controls
            .priority
            .or(info.priority)
            .unwrap_or(DEFAULT_PRIORITY),
        received,
        adds_model: match path {
            "/api/pull" | "/api/create" => info.model.clone(),
            "/api/copy" => info.destination.clone(),
            _ => None,
        },
    };

    let is_load_call =
        matches!(kind, RequestKind::Chat | RequestKind::Generate) && info.empty_input;
    if is_load_call && info.unloads && controls.node.is_none() && spec.flavour == Flavour::Ollama {
        return fanout::unload(&routed, body).await;
    }
    if path == "/api/pull" && state.settings.pull_to_all && controls.node.is_none() {
        return fanout::pull_everywhere(&routed, body).await;
    }
    if path == "/api/delete" && controls.node.is_none() {
        return fanout::delete_everywhere(&routed, body).await;
    }

    let pinned = controls
        .node
        .clone()
        .or_else(|| state.blob_node(&info.blob_digests));
    let (affinity_key, follow_affinity) = match (kind, controls.session.as_deref()) {
        (RequestKind::Chat | RequestKind::Generate, Some(session)) => {
            (Some(session_key(session)), true)
        }
        (RequestKind::Chat | RequestKind::Generate, None) => (info.conversation, info.continues),
        _ => (None, false),
    };
    let pick = PickNode {
        model: if spec.model == ModelRule::AnyNode {
            None
        } else {
            info.model.clone()
        },
        kind,
        weight: routed.weight,
        exclude: Vec::new(),
        strategy: controls.strategy,
        priority: routed.priority,
        affinity_key,
        follow_affinity,
        node: pinned,
    };
    send_with_failover(&routed, pick, BodySource::Bytes(body)).await
}

/// Where each attempt's request body comes from.
pub enum BodySource {
    /// A buffered body, sent again on every attempt (empty: no body).
    Bytes(Bytes),
    /// A streamed body, which can be sent once: no retry after the first attempt.
    Once(Option<LocalBoxStream<'static, Result<Bytes, UploadError>>>),
}

impl BodySource {
    /// The body for the next attempt; `Err` when it cannot be sent again.
    fn next(&mut self) -> Result<RequestBody, ()> {
        match self {
            Self::Bytes(bytes) => Ok(RequestBody::Bytes(bytes.clone())),
            Self::Once(body) => body.take().map(RequestBody::Stream).ok_or(()),
        }
    }
}

/// The status counted for a request whose client left before its answer (nginx's 499).
fn client_closed_status() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Sends one attempt and reads the answer's head: the request within `ttfb_timeout`
/// (an upload without a limit, since it takes as long as the client sends), then the
/// answer within `ttfb_timeout` of the request having gone; gives up when the client
/// leaves.
async fn send_and_answer(
    client: &NodeClient,
    routed: &Routed<'_>,
    key: &str,
    body: RequestBody,
    client_socket: Option<ClientSocket>,
) -> Waited<Result<Answer, SendError>> {
    let settings = &routed.state.settings;
    let upload = matches!(body, RequestBody::Stream(_));
    let deadline = (!upload).then(|| Instant::now() + settings.ttfb_timeout);
    let send = client.send(key, routed.request, body, settings.idle_timeout);
    let sent = match wait_for(send, deadline, client_socket).await {
        Waited::Done(Ok(sent)) => sent,
        Waited::Done(Err(err)) => return Waited::Done(Err(err)),
        Waited::TimedOut => return Waited::TimedOut,
        Waited::ClientGone => return Waited::ClientGone,
    };
    let deadline = Instant::now() + settings.ttfb_timeout;
    wait_for(
        client.answer(sent, routed.request),
        Some(deadline),
        client_socket,
    )
    .await
}

/// A failed attempt's answer, kept to give the client if no other node can try.
struct FailedReply {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
    node: String,
}

/// Sends the request to nodes until one gives an answer worth relaying.
pub async fn send_with_failover(
    routed: &Routed<'_>,
    mut pick: PickNode,
    mut body: BodySource,
) -> Result<HttpResponse, GatewayError> {
    let state = routed.state;
    let settings = &state.settings;
    let Some(client) = routed.request.app_data::<web::Data<NodeClient>>() else {
        return Err(GatewayError::bad_gateway(
            "the gateway has no client for its nodes",
        ));
    };
    let client_socket = routed.request.conn_data::<ClientSocket>().copied();
    let mut last_failure: Option<String> = None;
    let mut failed_reply: Option<FailedReply> = None;
    for attempt in 1..=settings.attempts {
        let lease = match state.router.pick(pick.clone()).await {
            Ok(lease) => lease,
            Err(err) => {
                if let Some(reply) = failed_reply {
                    return Ok(failed_reply_response(reply));
                }
                let mut error = route_error(err, last_failure);
                if error.status == StatusCode::NOT_FOUND {
                    error.message = not_found_message(routed.request.path(), &routed.model_label);
                }
                return Err(error);
            }
        };
        let node = lease.node.clone();
        tracing::Span::current()
            .record("node", node.key())
            .record("attempt", attempt);
        let Ok(attempt_body) = body.next() else {
            break;
        };
        state.events.emit(Event::ollama_request(
            node.key(),
            &routed.model_label,
            routed.operation,
            routed.streaming,
        ));
        let started = Instant::now();
        let answer = send_and_answer(client, routed, node.key(), attempt_body, client_socket).await;
        let ttfb = started.elapsed();

        let (failure, kind_of_end) = match answer {
            Waited::Done(Ok(answer)) if answer.status() >= 500 && attempt < settings.attempts => {
                let status = answer.status();
                let content_type = answer.header("content-type").cloned();
                let (_, answer_body) = answer.into_parts();
                let body = answer_body
                    .read_to_end(settings.idle_timeout)
                    .await
                    .unwrap_or_default();
                let message = format!("node {}: HTTP {status}", node.key());
                failed_reply = Some(FailedReply {
                    status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                    content_type,
                    body,
                    node: node.key().to_string(),
                });
                let kind = if status == 503 {
                    OutcomeKind::Busy(message.clone())
                } else {
                    OutcomeKind::ServerError(message.clone())
                };
                (message, kind)
            }
            Waited::Done(Ok(answer)) => {
                let completion = Completion::new(routed, lease, started, ttfb, attempt);
                return Ok(relay_response(
                    answer,
                    completion,
                    routed.flavour,
                    settings.idle_timeout,
                )
                .await);
            }
            Waited::Done(Err(SendError::Upload(err))) => {
                // The client's doing: the node is not blamed and no other node is tried.
                node.record(&outcome(
                    routed,
                    &lease,
                    started.elapsed(),
                    None,
                    OutcomeKind::ClientError,
                ));
                let status = match err {
                    UploadError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                    UploadError::Client(_) | UploadError::Stalled(_) => StatusCode::BAD_REQUEST,
                };
                return Err(GatewayError::new(status, err.to_string()));
            }
            Waited::Done(Err(err)) => {
                let message = format!("node {}: {err}", node.key());
                let refused = err.is_connect();
                (message.clone(), OutcomeKind::Transport { message, refused })
            }
            Waited::ClientGone => {
                // Dropping the node request closed its connection: the node stops.
                node.record(&outcome(
                    routed,
                    &lease,
                    started.elapsed(),
                    None,
                    OutcomeKind::ClientError,
                ));
                let message = "client closed the connection";
                state.events.emit(
                    Event::ollama_error(
                        node.key(),
                        &routed.model_label,
                        message,
                        started.elapsed(),
                    )
                    .on_route(routed.operation),
                );
                return Err(GatewayError::new(client_closed_status(), message));
            }
            Waited::TimedOut => {
                let message = format!(
                    "node {}: no answer within {}s (setting ttfb_timeout_ms)",
                    node.key(),
                    settings.ttfb_timeout.as_secs()
                );
                (
                    message.clone(),
                    OutcomeKind::Transport {
                        message,
                        refused: false,
                    },
                )
            }
        };
        node.record(&outcome(
            routed,
            &lease,
            started.elapsed(),
            Some(ttfb),
            kind_of_end,
        ));
        state.events.emit(
            Event::ollama_error(node.key(), &routed.model_label, &failure, started.elapsed())
                .on_route(routed.operation),
        );
        let fallback = RoutingEvent::new(
            RoutingEventType::FallbackTriggered,
            &routed.model_label,
            node.key(),
            failure.clone(),
            routed.priority,
        )
        .with("from_backend", node.key())
        .with("attempt", attempt);
        state.events.emit_routing(fallback);
        tracing::warn!(node = %node.key(), route = routed.operation, attempt, error = %failure, "attempt failed; trying another node");
        pick.exclude.push(node.key().to_string());
        last_failure = Some(failure);
    }
    if let Some(reply) = failed_reply {
        return Ok(failed_reply_response(reply));
    }
    Err(GatewayError::bad_gateway(
        last_failure.unwrap_or_else(|| "no node answered".into()),
    ))
}

fn failed_reply_response(reply: FailedReply) -> HttpResponse {
    let mut response = HttpResponse::build(reply.status);
    if let Some(content_type) = reply.content_type {
        response.insert_header((header::CONTENT_TYPE, content_type));
    }
    if let Ok(node) = HeaderValue::from_str(&reply.node) {
        response.insert_header((NODE_HEADER, node));
    }
    response.body(reply.body)
}

fn outcome(
    routed: &Routed<'_>,
    lease: &Lease,
    latency: Duration,
    ttfb: Option<Duration>,
    kind_of_end: OutcomeKind,
) -> RequestOutcome {
    RequestOutcome {
        model: Some(routed.model_label.as_str())
            .filter(|m| !m.is_empty())
            .map(normalize_model),
        kind: routed.kind,
        weight: routed.weight,
        latency,
        ttfb,
        cold: lease.cold,
        kind_of_end,
    }
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
        .get(header::CONTENT_LENGTH)
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

/// Ollama's wording for an unknown model, which differs by route.
pub fn not_found_message(path: &str, model: &str) -> String {
    match path {
        "/api/show" => format!("model '{}' not found", normalize_model(model)),
        "/api/embed" | "/api/embeddings" => {
            format!("model \"{model}\" not found, try pulling it first")
        }
        "/api/copy" => format!("model \"{model}\" not found"),
        _ => format!("model '{model}' not found"),
    }
}

pub fn route_error(err: RouteError, last_failure: Option<String>) -> GatewayError {
    let retry_after = err.retry_after();
    let mut error = match err {
        RouteError::ModelNotFound(_) => GatewayError::new(StatusCode::NOT_FOUND, err.to_string()),
        RouteError::UnknownNode(_) => GatewayError::bad_request(err.to_string()),
        RouteError::QueueFull { .. } => {
            GatewayError::new(StatusCode::TOO_MANY_REQUESTS, err.to_string())
        }
        RouteError::QueueTimeout { .. } => {
            GatewayError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
        }
        RouteError::Stopped => GatewayError::bad_gateway(err.to_string()),
        RouteError::NoneReachable(ref label) => match last_failure {
            Some(failure) => GatewayError::bad_gateway(format!(
                "the request failed on every node that can serve '{label}'; last failure: {failure}"
            )),
            None => GatewayError::bad_gateway(err.to_string()),
        },
        RouteError::NoNodes => GatewayError::bad_gateway(err.to_string()),
    };
    error.retry_after = retry_after;
    error
}

/// Everything needed to report a request once its response is done.
pub struct Completion {
    state: Arc<AppState>,
    adds_model: Option<String>,
    node: NodeHandle,
    in_flight: InFlight,
    outcome: RequestOutcome,
    operation: &'static str,
    streaming: bool,
    started: Instant,
    affinity: AffinityOutcome,
    /// The model as the client named it, for events.
    model_label: String,
    first_byte: Duration,
    /// Time the gateway spent before sending the request upstream.
    overhead: Duration,
}

impl Completion {
    fn new(
        routed: &Routed<'_>,
        lease: Lease,
        started: Instant,
        ttfb: Duration,
        attempt: usize,
    ) -> Self {
        let reason = if attempt > 1 {
            format!("{}; after {} failed attempt(s)", lease.reason, attempt - 1)
        } else {
            lease.reason.clone()
        };
        let selected = RoutingEvent::new(
            RoutingEventType::NodeSelected,
            &routed.model_label,
            lease.node.key(),
            reason,
            routed.priority,
        )
        .with("affinity", lease.affinity.as_str())
        .with("cold", lease.cold);
        routed.state.events.emit_routing(selected);
        Self {
            state: routed.state.clone().into_inner(),
            adds_model: routed.adds_model.clone(),
            node: lease.node.clone(),
            outcome: outcome(
                routed,
                &lease,
                Duration::ZERO,
                Some(ttfb),
                OutcomeKind::Success,
            ),
            affinity: lease.affinity,
            in_flight: lease.in_flight,
            operation: routed.operation,
            streaming: routed.streaming,
            model_label: routed.model_label.clone(),
            first_byte: ttfb,
            overhead: started.saturating_duration_since(routed.received),
            started,
        }
    }

    fn finish(mut self, status: u16, end: Outcome) {
        let latency = self.started.elapsed();
        let key = self.node.key();
        let model = self.model_label.clone();
        let event = match &end {
            Outcome::Completed if status < 400 => {
                Event::ollama_response(key, &model, self.operation, latency, status, self.streaming)
            }
            Outcome::Completed => {
                Event::ollama_error(key, &model, &format!("HTTP {status}"), latency)
            }
            Outcome::UpstreamFailed(message) => Event::ollama_error(key, &model, message, latency),
            Outcome::ClientGone => {
                Event::ollama_error(key, &model, "client closed the connection", latency)
            }
        };
        let event = event
            .on_route(self.operation)
            .with_status(status)
            .with_first_byte(self.first_byte)
            .with_gateway_overhead(self.overhead);
        self.outcome.latency = latency;
        self.outcome.kind_of_end = match end {
            Outcome::UpstreamFailed(message) => OutcomeKind::ServerError(message),
            _ if status == 503 => OutcomeKind::Busy("HTTP 503".into()),
            _ if status >= 500 => OutcomeKind::ServerError(format!("HTTP {status}")),
            _ if status >= 400 => OutcomeKind::ClientError,
            // A client that leaves early says nothing about the node.
            Outcome::ClientGone => OutcomeKind::ClientError,
            Outcome::Completed => OutcomeKind::Success,
        };
        self.node.record(&self.outcome);
        if let (Some(model), OutcomeKind::Success) = (&self.adds_model, &self.outcome.kind_of_end) {
            self.node.add_model(model);
        }
        self.state.events.emit(event);
        self.state.count(Some(key), status);
        drop(self.in_flight);
    }
}

async fn relay_response(
    answer: Answer,
    completion: Completion,
    flavour: Flavour,
    idle: Duration,
) -> HttpResponse {
    let (head, body) = answer.into_parts();
    let status = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    copy_response_headers(&head.headers, &mut builder);
    if let Ok(value) = HeaderValue::from_str(completion.node.key()) {
        builder.insert_header((HeaderName::from_static(NODE_HEADER), value));
    }
    if completion.affinity != AffinityOutcome::None {
        builder.insert_header((
            HeaderName::from_static(AFFINITY_HEADER),
            HeaderValue::from_static(completion.affinity.as_str()),
        ));
    }
    let content_type = head
        .header("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let is_stream = content_type.starts_with("application/x-ndjson")
        || content_type.starts_with("text/event-stream");

    if is_stream {
        builder.insert_header(("x-accel-buffering", "no"));
        if head.header("cache-control").is_none() {
            builder.insert_header((header::CACHE_CONTROL, "no-cache"));
        }
        let code = status.as_u16();
        let relay = LineRelay::new(Box::pin(body.into_stream()), flavour, idle, move |end| {
            completion.finish(code, end)
        });
        return builder.streaming(relay);
    }
    match body.read_to_end(idle).await {
        Ok(body) => {
            completion.finish(status.as_u16(), Outcome::Completed);
            builder.body(body)
        }
        Err(err) => {
            let message = format!("node {}: {err}", completion.node.key());
            completion.finish(502, Outcome::UpstreamFailed(message.clone()));
            GatewayError::bad_gateway(message).into_response(flavour)
        }
    }
}
