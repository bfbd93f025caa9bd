//! Building the request a node receives and copying its answer's headers back.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpRequest;
use sollol_actors::node::NodeHandle;

use super::node_client::UpstreamBody;

/// Headers that belong to one connection and are never forwarded.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
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

/// Whether a client's request header goes on to the node. Host is the node's own; Origin
/// would make a loopback Ollama answer 403; the body is relayed as it comes, so no
/// compressed encodings are asked for; sollol's own headers stay here.
fn forwarded(name: &str) -> bool {
    !(is_hop_by_hop(name)
        || matches!(
            name,
            "host" | "content-length" | "origin" | "accept-encoding"
        )
        || name.starts_with("x-sollol-"))
}

/// The client's request for `node`, for the proxy's own client: same method, path,
/// query (in origin form, as a server expects it) and headers, with `Host` set to the
/// node's own address.
pub fn request_for(
    request: &HttpRequest,
    node: &NodeHandle,
    body: UpstreamBody,
) -> Result<http::Request<UpstreamBody>, http::Error> {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let method = http::Method::from_bytes(request.method().as_str().as_bytes())
        .unwrap_or(http::Method::POST);
    let uri = http::Uri::builder().path_and_query(path_and_query).build()?;
    let mut upstream = http::Request::new(body);
    *upstream.method_mut() = method;
    *upstream.uri_mut() = uri;
    let headers = upstream.headers_mut();
    headers.reserve(request.headers().len() + 1);
    for (name, value) in request.headers() {
        if !forwarded(name.as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_str().as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    if let Ok(host) = http::HeaderValue::from_str(node.host_header()) {
        headers.insert(http::header::HOST, host);
    }
    Ok(upstream)
}

/// The client's request, addressed to `node`: same method, path, query and headers, with
/// `Host` set to the node's own address.
pub fn request_to(
    request: &HttpRequest,
    node: &NodeHandle,
    body: Option<reqwest::Body>,
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
        let name_text = name.as_str();
        if !forwarded(name_text) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name_text.as_bytes()),
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
    match body {
        Some(body) => builder.body(body),
        None => builder,
    }
}

/// Copies a node's response headers, leaving out the ones that belong to the connection.
pub fn copy_response_headers(
    upstream: &reqwest::header::HeaderMap,
    builder: &mut actix_web::HttpResponseBuilder,
) {
    for (name, value) in upstream {
        if is_hop_by_hop(name.as_str())
            || matches!(name.as_str(), "content-length" | "date" | "server")
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            builder.append_header((name, value));
        }
    }
}
