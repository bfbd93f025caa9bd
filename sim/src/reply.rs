//! Response builders for each framing the server uses, with the exact Content-Type of each.

use actix_web::HttpResponse;
use bytes::Bytes;
use serde::Serialize;

use crate::json;
use crate::stream::{self, Pacing};

/// gin's `c.JSON`: every non-streamed native reply.
pub(crate) const JSON_UTF8: &str = "application/json; charset=utf-8";
/// `json.Encoder` output: `/v1/*` bodies and pull with `stream:false`.
pub(crate) const JSON: &str = "application/json";
/// Streamed native replies.
pub(crate) const NDJSON: &str = "application/x-ndjson";
/// Streamed `/v1/*` replies.
pub(crate) const EVENT_STREAM: &str = "text/event-stream";
/// `GET /`.
pub(crate) const TEXT_UTF8: &str = "text/plain; charset=utf-8";
/// The router's own 404 and 405 pages.
pub(crate) const TEXT: &str = "text/plain";

/// One native JSON object, no trailing newline.
pub(crate) fn native<T: Serialize + ?Sized>(value: &T) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(JSON_UTF8)
        .body(json::to_vec(value))
}

/// One `/v1/*` JSON object, ending with `\n`.
pub(crate) fn openai<T: Serialize + ?Sized>(value: &T) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(JSON)
        .body(json::to_line(value))
}

/// An NDJSON line: compact JSON and `\n`.
pub(crate) fn line<T: Serialize + ?Sized>(value: &T) -> Bytes {
    Bytes::from(json::to_line(value))
}

/// A server-sent event carrying `value`: `data: {json}\n\n`.
pub(crate) fn event<T: Serialize + ?Sized>(value: &T) -> Bytes {
    let mut frame = b"data: ".to_vec();
    frame.extend_from_slice(&json::to_vec(value));
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// The frame that ends every `/v1/*` stream.
pub(crate) fn event_done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// A streamed reply of `frames` frames built by `render`, delivered with `pacing`.
pub(crate) fn streamed<F>(
    content_type: &'static str,
    frames: usize,
    pacing: Pacing,
    render: F,
) -> HttpResponse
where
    F: FnMut(usize) -> Bytes + 'static,
{
    HttpResponse::Ok()
        .content_type(content_type)
        .streaming(stream::paced(frames, pacing, render))
}
