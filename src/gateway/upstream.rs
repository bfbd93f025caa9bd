//! The request reqwest sends to a node for the fan-out routes, and the node's answer
//! headers copied back to the client.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpRequest;
use sollol_actors::node::NodeHandle;

use super::node_client::wire::{forwarded, passed_on};

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

/// Copies the headers a node's answer passes on (see [`passed_on`]).
pub fn copy_response_headers(
    upstream: &[(HeaderName, HeaderValue)],
    builder: &mut actix_web::HttpResponseBuilder,
) {
    for (name, value) in upstream {
        if passed_on(name.as_str()) {
            builder.append_header((name.clone(), value.clone()));
        }
    }
}
