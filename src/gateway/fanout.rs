//! Requests that go to several nodes at once: unloading a model from every node where it
//! is resident, and pulling a model onto every node.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};
use serde_json::json;
use sollol_actors::model_name::normalize_model;
use sollol_actors::node::{describe_reqwest_error, NodeHandle};
use sollol_actors::routing_event::{RoutingEvent, RoutingEventType};

use super::controls::NODE_HEADER;
use super::error::GatewayError;
use super::proxy::Routed;
use super::upstream::request_to;

struct Reply {
    node: String,
    status: u16,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

async fn send_to(routed: &Routed<'_>, node: &NodeHandle, body: &Bytes) -> Result<Reply, String> {
    let request = request_to(
        routed.request,
        node,
        Some(reqwest::Body::from(body.clone())),
    );
    let response = tokio::time::timeout(routed.state.settings.ttfb_timeout, request.send())
        .await
        .map_err(|_| {
            format!(
                "node {}: no answer in time (setting ttfb_timeout_ms)",
                node.key()
            )
        })?
        .map_err(|err| format!("node {}: {}", node.key(), describe_reqwest_error(&err)))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let body = response
        .bytes()
        .await
        .map_err(|err| format!("node {}: {}", node.key(), describe_reqwest_error(&err)))?;
    Ok(Reply {
        node: node.key().to_string(),
        status,
        content_type,
        body,
    })
}

fn report_selection(routed: &Routed<'_>, nodes: &[String], reason: String) {
    let first = nodes.first().cloned().unwrap_or_default();
    let event = RoutingEvent::new(
        RoutingEventType::NodeSelected,
        &routed.model_label,
        &first,
        reason,
        routed.priority,
    )
    .with("nodes", nodes.to_vec());
    routed.state.events.emit_routing(event);
}

/// The nodes that have `model` (normalised); a 404 when none has it.
fn nodes_having(routed: &Routed<'_>, model: &str) -> Result<Vec<NodeHandle>, GatewayError> {
    let having: Vec<NodeHandle> = routed
        .state
        .nodes
        .iter()
        .filter(|n| n.has_model(model))
        .cloned()
        .collect();
    if having.is_empty() {
        return Err(GatewayError::new(
            StatusCode::NOT_FOUND,
            format!("model '{}' not found", routed.model_label),
        ));
    }
    Ok(having)
}

/// `keep_alive: 0` with no prompt: unload from every node where the model is resident (or
/// every node that has it, when none reports it resident). Answers with the first
/// success; `X-Sollol-Node` lists every node that unloaded it.
pub async fn unload(routed: &Routed<'_>, body: Bytes) -> Result<HttpResponse, GatewayError> {
    let model = normalize_model(&routed.model_label);
    let having = nodes_having(routed, &model)?;
    let healthy: Vec<NodeHandle> = having.into_iter().filter(|n| n.is_healthy()).collect();
    let resident: Vec<NodeHandle> = healthy
        .iter()
        .filter(|n| n.is_resident(&model))
        .cloned()
        .collect();
    let targets = if resident.is_empty() {
        healthy
    } else {
        resident
    };
    if targets.is_empty() {
        return Err(GatewayError::bad_gateway(format!(
            "no ollama node that can serve '{}' is reachable",
            routed.model_label
        )));
    }
    let replies =
        futures_util::future::join_all(targets.iter().map(|node| send_to(routed, node, &body)))
            .await;
    let succeeded: Vec<&Reply> = replies
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|r| r.status < 300)
        .collect();
    let names: Vec<String> = succeeded.iter().map(|r| r.node.clone()).collect();
    report_selection(
        routed,
        &names,
        format!(
            "unload: sent to {} node(s) holding the model",
            targets.len()
        ),
    );
    let Some(first) = succeeded.first() else {
        let failures: Vec<String> = replies
            .iter()
            .map(|r| match r {
                Ok(reply) => format!("node {}: HTTP {}", reply.node, reply.status),
                Err(err) => err.clone(),
            })
            .collect();
        return Err(GatewayError::bad_gateway(format!(
            "unload failed on every node: {}",
            failures.join("; ")
        )));
    };
    let mut response =
        HttpResponse::build(StatusCode::from_u16(first.status).unwrap_or(StatusCode::OK));
    if let Some(content_type) = &first.content_type {
        response.insert_header((header::CONTENT_TYPE, content_type.clone()));
    }
    if let Ok(value) = HeaderValue::from_str(&names.join(",")) {
        response.insert_header((NODE_HEADER, value));
    }
    routed.state.count(Some(&first.node), first.status);
    Ok(response.body(first.body.clone()))
}

/// `DELETE /api/delete`: from every node that has the model. Succeeds when every node
/// that had it deleted it; the inventory forgets the model on those nodes at once.
pub async fn delete_everywhere(
    routed: &Routed<'_>,
    body: Bytes,
) -> Result<HttpResponse, GatewayError> {
    let model = normalize_model(&routed.model_label);
    let targets = nodes_having(routed, &model)?;
    let replies =
        futures_util::future::join_all(targets.iter().map(|node| send_to(routed, node, &body)))
            .await;
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for (node, reply) in targets.iter().zip(&replies) {
        match reply {
            Ok(reply) if (200..300).contains(&reply.status) || reply.status == 404 => {
                node.remove_model(&routed.model_label);
                deleted.push(node.key().to_string());
            }
            Ok(reply) => failures.push(format!(
                "node {}: HTTP {} {}",
                reply.node,
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )),
            Err(err) => failures.push(err.clone()),
        }
    }
    report_selection(
        routed,
        &deleted,
        format!(
            "delete: sent to the {} node(s) holding the model",
            targets.len()
        ),
    );
    if !failures.is_empty() {
        return Err(GatewayError::bad_gateway(format!(
            "delete failed on {} of {} node(s): {}",
            failures.len(),
            targets.len(),
            failures.join("; ")
        )));
    }
    routed.state.count(deleted.first().map(String::as_str), 200);
    let mut response = HttpResponse::Ok();
    if let Ok(value) = HeaderValue::from_str(&deleted.join(",")) {
        response.insert_header((NODE_HEADER, value));
    }
    Ok(response.finish())
}

/// `/api/pull` onto every healthy node. Streamed, each node's progress lines carry a
/// `node` field and one `{"status":"success"}` ends the stream once every node has the
/// model; otherwise an `{"error":...}` line names the nodes that failed.
pub async fn pull_everywhere(
    routed: &Routed<'_>,
    body: Bytes,
) -> Result<HttpResponse, GatewayError> {
    let targets: Vec<NodeHandle> = routed
        .state
        .nodes
        .iter()
        .filter(|n| n.is_healthy())
        .cloned()
        .collect();
    if targets.is_empty() {
        return Err(GatewayError::bad_gateway("no ollama node is reachable"));
    }
    let names: Vec<String> = targets.iter().map(|n| n.key().to_string()).collect();
    report_selection(
        routed,
        &names,
        format!("pull: sent to all {} healthy node(s)", targets.len()),
    );

    if !routed.streaming {
        let replies =
            futures_util::future::join_all(targets.iter().map(|node| send_to(routed, node, &body)))
                .await;
        let failures: Vec<String> = replies
            .iter()
            .filter_map(|reply| match reply {
                Ok(reply) if reply.status == 200 => None,
                Ok(reply) => Some(format!(
                    "node {}: {}",
                    reply.node,
                    String::from_utf8_lossy(&reply.body)
                )),
                Err(err) => Some(err.clone()),
            })
            .collect();
        if failures.is_empty() {
            for node in &targets {
                node.add_model(&routed.model_label);
            }
            return Ok(HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .insert_header((NODE_HEADER, names.join(",")))
                .body(json!({ "status": "success" }).to_string()));
        }
        return Err(GatewayError::bad_gateway(format!(
            "pull failed: {}",
            failures.join("; ")
        )));
    }

    let mut streams: Vec<BoxStream<'static, NodeLine>> = Vec::new();
    for node in &targets {
        let request = request_to(
            routed.request,
            node,
            Some(reqwest::Body::from(body.clone())),
        );
        streams.push(node_lines(node.key().to_string(), request).boxed());
    }
    let total = targets.len();
    let merged = stream::select_all(streams);
    let progress = merged
        .scan(
            (0usize, Vec::<String>::new(), 0usize),
            move |(succeeded, failures, finished), item| {
                let output = match item {
                    NodeLine::Line(node, line) => tag_line(&node, &line, succeeded, failures),
                    NodeLine::Failed(node, message) => {
                        failures.push(format!("node {node}: {message}"));
                        None
                    }
                    NodeLine::Ended(node, saw_success) => {
                        *finished += 1;
                        if !saw_success
                            && !failures
                                .iter()
                                .any(|f| f.starts_with(&format!("node {node}:")))
                        {
                            failures.push(format!("node {node}: the pull ended without success"));
                        }
                        (*finished == total).then(|| final_line(*succeeded, total, failures))
                    }
                };
                futures_util::future::ready(Some(output))
            },
        )
        .filter_map(|line| futures_util::future::ready(line.map(Ok::<Bytes, actix_web::Error>)));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
        .insert_header((NODE_HEADER, names.join(",")))
        .streaming(progress))
}

enum NodeLine {
    Line(String, Bytes),
    Failed(String, String),
    /// The node's stream ended; whether it reported success.
    Ended(String, bool),
}

/// One node's answer as complete lines, then an end marker.
fn node_lines(
    node: String,
    request: reqwest::RequestBuilder,
) -> impl futures_util::Stream<Item = NodeLine> {
    stream::once(async move { request.send().await }).flat_map(move |sent| {
        let node = node.clone();
        match sent {
            Ok(response) if response.status().is_success() => {
                split_lines(node, response.bytes_stream().boxed()).boxed()
            }
            Ok(response) => {
                let status = response.status().as_u16();
                stream::iter(vec![
                    NodeLine::Failed(node.clone(), format!("HTTP {status}")),
                    NodeLine::Ended(node, false),
                ])
                .boxed()
            }
            Err(err) => stream::iter(vec![
                NodeLine::Failed(node.clone(), describe_reqwest_error(&err)),
                NodeLine::Ended(node, false),
            ])
            .boxed(),
        }
    })
}

fn split_lines(
    node: String,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
) -> impl futures_util::Stream<Item = NodeLine> {
    stream::unfold(
        (body, BytesMut::new(), false, false),
        move |(mut body, mut partial, mut success, done)| {
            let node = node.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(end) = partial.iter().position(|&b| b == b'\n') {
                        let line = partial.split_to(end + 1).freeze();
                        success |= is_success_line(&line);
                        return Some((NodeLine::Line(node, line), (body, partial, success, false)));
                    }
                    match body.next().await {
                        Some(Ok(chunk)) => partial.extend_from_slice(&chunk),
                        Some(Err(err)) => {
                            let failed = NodeLine::Failed(node, describe_reqwest_error(&err));
                            return Some((failed, (body, partial, false, true)));
                        }
                        None => {
                            if !partial.is_empty() {
                                let line = partial.split().freeze();
                                success |= is_success_line(&line);
                                return Some((
                                    NodeLine::Line(node, line),
                                    (body, partial, success, false),
                                ));
                            }
                            return Some((
                                NodeLine::Ended(node, success),
                                (body, partial, success, true),
                            ));
                        }
                    }
                }
            }
        },
    )
}

fn is_success_line(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|v| v["status"] == "success")
}

/// A node's progress line with its `node` added; success and error lines are held back
/// for the final line.
fn tag_line(
    node: &str,
    line: &Bytes,
    succeeded: &mut usize,
    failures: &mut Vec<String>,
) -> Option<Bytes> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    if value["status"] == "success" {
        *succeeded += 1;
        return None;
    }
    if let Some(error) = value["error"].as_str() {
        failures.push(format!("node {node}: {error}"));
        return None;
    }
    if value.as_object().is_none_or(|object| object.is_empty()) {
        return None;
    }
    let mut tagged = BytesMut::with_capacity(line.len() + node.len() + 12);
    tagged.extend_from_slice(
        format!(
            "{{\"node\":{},",
            serde_json::Value::String(node.to_string())
        )
        .as_bytes(),
    );
    tagged.extend_from_slice(&line[1..]);
    if !tagged.ends_with(b"\n") {
        tagged.extend_from_slice(b"\n");
    }
    Some(tagged.freeze())
}

fn final_line(succeeded: usize, total: usize, failures: &[String]) -> Bytes {
    if succeeded == total && failures.is_empty() {
        Bytes::from(format!("{}\n", json!({ "status": "success" })))
    } else {
        Bytes::from(format!(
            "{}\n",
            json!({ "error": format!("pull failed: {}", failures.join("; ")) })
        ))
    }
}
