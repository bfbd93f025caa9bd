//! The client the proxy reaches nodes with: hyper's pooled HTTP/1.1 client, used directly,
//! one per server worker thread.
//!
//! reqwest (still used for health checks, fan-out and aggregate routes) parses its URL
//! twice per request and wraps every request and response in its own types; on the
//! proxy's hot path that was about a tenth of the gateway's instructions per request.
//! Here the request is built from what the gateway already has: the node's `host:port`
//! and the client's path and query as they arrived.
//!
//! Each actix-web worker thread gets its own client, so a pooled connection is always
//! driven by the thread that uses it: a shared pool hands connections across threads,
//! and every request on such a connection then costs a wake-up of the other thread.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// What a request body's stream may fail with.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request body for a node: buffered bytes, nothing, or the client's upload as it comes.
pub type UpstreamBody = BoxBody<Bytes, BodyError>;

/// Idle connections kept per node and thread.
const MAX_IDLE_PER_NODE: usize = 256;
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Clone)]
pub struct NodeClient {
    client: Client<HttpConnector, UpstreamBody>,
}

impl NodeClient {
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_NODE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self { client }
    }

    pub fn send(&self, request: http::Request<UpstreamBody>) -> ResponseFuture {
        self.client.request(request)
    }
}

pub fn bytes_body(bytes: Bytes) -> UpstreamBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

pub fn empty_body() -> UpstreamBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// What went wrong sending a request, as the gateway reports it.
pub fn describe_send_error(err: &hyper_util::client::legacy::Error) -> String {
    let kind = if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("{kind}: {}", root_cause(err))
}

/// What went wrong reading an answer's body.
pub fn describe_body_error(err: &hyper::Error) -> String {
    format!("response body failed: {}", root_cause(err))
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut source = err;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
