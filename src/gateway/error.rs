//! Errors the gateway makes itself, in the format the client expects.
//!
//! Native routes answer Ollama's `{"error":"..."}` with
//! `application/json; charset=utf-8`; the OpenAI-compatible `/v1` routes answer OpenAI's
//! `{"error":{"message",...}}` shape ending in a newline, as Ollama does on those routes.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::json;

/// Which error format a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Ollama,
    OpenAi,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GatewayError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds a client should wait before trying again, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl GatewayError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, message)
    }

    pub fn into_response(self, flavour: Flavour) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        match flavour {
            Flavour::Ollama => response
                .insert_header((
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                ))
                .body(json!({ "error": self.message }).to_string()),
            Flavour::OpenAi => {
                let kind = match self.status.as_u16() {
                    400 => "invalid_request_error",
                    404 => "not_found_error",
                    _ => "api_error",
                };
                let body = json!({
                    "error": { "message": self.message, "type": kind, "param": null, "code": null }
                });
                response
                    .insert_header((
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ))
                    .body(format!("{body}\n"))
            }
        }
    }
}

/// The line that ends a stream whose upstream failed after output began.
pub fn stream_error_line(flavour: Flavour, message: &str) -> String {
    match flavour {
        Flavour::Ollama => format!("{}\n", json!({ "error": message })),
        Flavour::OpenAi => format!(
            "data: {}\n\n",
            json!({ "error": { "message": message, "type": "api_error", "param": null, "code": null } })
        ),
    }
}
