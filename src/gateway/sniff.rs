//! Reads what routing needs from a request body without decoding the rest.
//!
//! The body is forwarded byte for byte; this only borrows the few fields the gateway acts
//! on (model, stream, keep-alive, priority, and the start of the conversation for
//! affinity). Parsing still walks the whole document, so malformed JSON is caught here and
//! answered with a 400, as Ollama would.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::GatewayError;

/// Bytes of a generate prompt that identify its conversation.
const PROMPT_PREFIX: usize = 512;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    destination: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    prompt: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    system: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(borrow, default)]
    keep_alive: Option<&'a RawValue>,
    #[serde(borrow, default)]
    priority: Option<&'a RawValue>,
    #[serde(borrow, default)]
    files: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    /// Generate's conversation state from an earlier answer (deprecated, still sent).
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    /// A string natively, an array of parts on `/v1`: hashed as raw bytes.
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// The routing-relevant part of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `model`, else `name` (older clients and ollama-js), else `source` (copy).
    pub model: Option<String>,
    pub stream: Option<bool>,
    /// `keep_alive` is zero: the request unloads the model.
    pub unloads: bool,
    /// No prompt (generate) or no messages (chat): a load or unload call.
    pub empty_input: bool,
    /// The body's `priority`, clamped to 1..=10.
    pub priority: Option<u8>,
    /// Hash of the start of the conversation (system prompt and first user message).
    pub conversation: Option<u64>,
    /// The request continues a conversation (earlier turns are in it), so the node that
    /// served the earlier turns has its prompt cached.
    pub continues: bool,
    /// Blob digests a create request uses.
    pub blob_digests: Vec<String>,
    /// The new name of a copy.
    pub destination: Option<String>,
}

pub fn sniff(body: &[u8]) -> Result<RequestInfo, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::bad_request("missing request body"));
    }
    // Like Go's decoder, read the first JSON value and ignore what follows it.
    let mut decoder = serde_json::Deserializer::from_slice(body);
    let fields: Fields<'_> = serde::Deserialize::deserialize(&mut decoder).map_err(|err| {
        let message = if err.is_data() {
            format!("invalid request body: {err}")
        } else {
            format!("invalid json in request body: {err}")
        };
        GatewayError::bad_request(message)
    })?;
    let conversation = conversation_key(&fields);
    let continues = match &fields.messages {
        Some(messages) => messages
            .iter()
            .any(|m| m.role.as_deref() == Some("assistant")),
        None => fields
            .context
            .is_some_and(|c| c.get() != "null" && c.get() != "[]"),
    };
    let empty_input = match (&fields.prompt, &fields.messages) {
        (_, Some(messages)) => messages.is_empty(),
        (Some(prompt), None) => prompt.is_empty(),
        (None, None) => true,
    };
    let destination = fields.destination.clone().map(Cow::into_owned);
    let model = fields
        .model
        .or(fields.name)
        .or(fields.source)
        .map(Cow::into_owned)
        .filter(|m| !m.trim().is_empty());
    Ok(RequestInfo {
        model,
        stream: fields.stream,
        unloads: fields.keep_alive.is_some_and(is_zero_duration),
        empty_input,
        priority: fields
            .priority
            .and_then(|raw| raw.get().parse::<f64>().ok())
            .map(|p| p.clamp(1.0, 10.0) as u8),
        conversation,
        continues,
        destination,
        blob_digests: fields
            .files
            .map(|files| files.into_values().map(Cow::into_owned).collect())
            .unwrap_or_default(),
    })
}

/// `0`, `0.0`, `"0"`, `"0s"`, `"0m"`: Ollama's ways of saying "unload now".
fn is_zero_duration(raw: &RawValue) -> bool {
    let text = raw.get().trim().trim_matches('"');
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !digits.is_empty() && digits.parse::<f64>().is_ok_and(|v| v == 0.0)
}

fn conversation_key(fields: &Fields<'_>) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Some(system) = &fields.system {
        system.hash(&mut hasher);
    }
    if let Some(messages) = &fields.messages {
        let first_user = messages
            .iter()
            .position(|m| m.role.as_deref() == Some("user"))?;
        for message in &messages[..=first_user] {
            message
                .role
                .as_deref()
                .unwrap_or_default()
                .hash(&mut hasher);
            message
                .content
                .map(RawValue::get)
                .unwrap_or_default()
                .hash(&mut hasher);
        }
        return Some(hasher.finish());
    }
    let prompt = fields.prompt.as_deref().filter(|p| !p.is_empty())?;
    let end = (0..=PROMPT_PREFIX.min(prompt.len()))
        .rev()
        .find(|&i| prompt.is_char_boundary(i))
        .unwrap_or(0);
    prompt[..end].hash(&mut hasher);
    Some(hasher.finish())
}

/// The affinity key of an explicit session id (`X-Sollol-Session`).
pub fn session_key(session: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    "session".hash(&mut hasher);
    session.hash(&mut hasher);
    hasher.finish()
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
        assert!(!info.empty_input);
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

    #[test]
    fn the_conversation_key_is_stable_across_turns() {
        let first = sniff(br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#)
            .expect("valid");
        let later = sniff(
            br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}"#,
        )
        .expect("valid");
        let other = sniff(br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"bye"}]}"#)
            .expect("valid");
        assert!(first.conversation.is_some());
        assert_eq!(first.conversation, later.conversation);
        assert!(!first.continues && later.continues);
        assert_ne!(first.conversation, other.conversation);
    }

    #[test]
    fn unload_priority_and_blob_fields() {
        for keep_alive in ["0", "0.0", "\"0\"", "\"0s\"", "\"0m\""] {
            let body = format!(r#"{{"model":"m","prompt":"","keep_alive":{keep_alive}}}"#);
            let info = sniff(body.as_bytes()).expect("valid");
            assert!(info.unloads && info.empty_input, "{keep_alive}");
        }
        assert!(
            !sniff(br#"{"model":"m","keep_alive":"5m"}"#)
                .expect("valid")
                .unloads
        );
        assert_eq!(
            sniff(br#"{"model":"m","priority":42}"#)
                .expect("valid")
                .priority,
            Some(10)
        );
        assert_eq!(
            sniff(br#"{"model":"m","priority":"high"}"#)
                .expect("valid")
                .priority,
            None
        );
        let info = sniff(br#"{"model":"m","files":{"a.gguf":"sha256:abc"}}"#).expect("valid");
        assert_eq!(info.blob_digests, vec!["sha256:abc".to_string()]);
    }
}
