//! Error replies in the two shapes clients expect.
//!
//! Native routes answer `{"error":"…"}` with `application/json; charset=utf-8` and no trailing
//! newline, as gin's `c.JSON` does. The OpenAI layer wraps the same message in OpenAI's shape,
//! written by a `json.Encoder`, so it ends with `\n` and has no charset.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::json;
use crate::reply::{JSON, JSON_UTF8};

/// A request the simulated server refuses, with the status and message a real server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// `model is required`, the reply of chat, show and embeddings to a missing name.
    pub(crate) fn model_required() -> Self {
        Self::bad_request("model is required")
    }

    /// `model 'X' not found`, the reply of generate, chat and delete.
    pub(crate) fn model_not_found(name: &str) -> Self {
        Self::not_found(format!("model '{name}' not found"))
    }

    /// `model "X" not found, try pulling it first`, the scheduler's wording used by the embed
    /// routes.
    pub(crate) fn model_not_pulled(name: &str) -> Self {
        Self::not_found(format!("model \"{name}\" not found, try pulling it first"))
    }

    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
        }

        HttpResponse::build(self.status)
            .content_type(JSON_UTF8)
            .body(json::to_vec(&Body {
                error: &self.message,
            }))
    }
}

/// The same refusal on a `/v1/*` route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenAiError(pub(crate) ApiError);

impl From<ApiError> for OpenAiError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl fmt::Display for OpenAiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Detail<'a>,
        }

        #[derive(Serialize)]
        struct Detail<'a> {
            message: &'a str,
            r#type: &'static str,
            param: Option<()>,
            code: Option<()>,
        }

        let kind = match self.0.status {
            StatusCode::BAD_REQUEST => "invalid_request_error",
            StatusCode::NOT_FOUND => "not_found_error",
            _ => "api_error",
        };
        let body = Body {
            error: Detail {
                message: &self.0.message,
                r#type: kind,
                param: None,
                code: None,
            },
        };
        HttpResponse::build(self.0.status)
            .content_type(JSON)
            .body(json::to_line(&body))
    }
}
