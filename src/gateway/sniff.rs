//! Reads what routing needs from a request body without decoding the rest.
//!
//! The body is forwarded byte for byte; this only borrows the few fields the gateway acts
//! on. Parsing still walks the whole document, so malformed JSON is caught here and
//! answered with a 400, as Ollama would.

use std::borrow::Cow;

use serde::Deserialize;

use super::error::GatewayError;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
}

/// The routing-relevant part of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `model`, else `name` (older clients and ollama-js), else `source` (copy).
    pub model: Option<String>,
    pub stream: Option<bool>,
}

pub fn sniff(body: &[u8]) -> Result<RequestInfo, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::bad_request("missing request body"));
    }
    let fields: Fields<'_> = serde_json::from_slice(body).map_err(|err| {
        let message = if err.is_data() {
            format!("invalid request body: {err}")
        } else {
            format!("invalid json in request body: {err}")
        };
        GatewayError::bad_request(message)
    })?;
    let model = fields
        .model
        .or(fields.name)
        .or(fields.source)
        .map(Cow::into_owned)
        .filter(|m| !m.trim().is_empty());
    Ok(RequestInfo {
        model,
        stream: fields.stream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_stream_and_ignores_the_rest() {
        let info = sniff(br#"{"model":"llama3.2","messages":[{"role":"user","content":"hi \"x\""}],"stream":false}"#)
            .expect("valid");
        assert_eq!(info.model.as_deref(), Some("llama3.2"));
        assert_eq!(info.stream, Some(false));
        let info = sniff(br#"{"name":"llama3.2"}"#).expect("valid");
        assert_eq!(info.model.as_deref(), Some("llama3.2"));
        let info = sniff(br#"{"source":"a","destination":"b"}"#).expect("valid");
        assert_eq!(info.model.as_deref(), Some("a"));
    }

    #[test]
    fn empty_and_malformed_bodies_are_bad_requests() {
        assert_eq!(sniff(b"").unwrap_err().message, "missing request body");
        let err = sniff(b"{nope").unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert!(err.message.starts_with("invalid json"), "{}", err.message);
        let err = sniff(br#"{"model": 5}"#).unwrap_err();
        assert!(
            err.message.starts_with("invalid request body"),
            "{}",
            err.message
        );
        assert_eq!(sniff(br#"{"model":""}"#).expect("valid").model, None);
    }
}
