//! Request bodies, read the way Ollama's Go handlers read them.
//!
//! Go's decoder matches keys without regard to case, ignores unknown keys, reads only the first
//! JSON value of the body, and treats `null` as "absent". Its error texts reach clients
//! verbatim, so the ones a client can trigger are reproduced here: `missing request body`,
//! `unexpected EOF`, `invalid character 'x' looking for beginning of value` and
//! `json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool`.

use serde_json::{Deserializer, Map, Value};

use crate::error::ApiError;

/// A decoded request body: the top-level object and the Go type it stands for.
pub(crate) struct Body {
    map: Map<String, Value>,
    kind: &'static str,
}

impl Body {
    /// Decodes `bytes` as Go would decode them into `kind`, a qualified Go type such as
    /// `api.ChatRequest`.
    pub(crate) fn decode(bytes: &[u8], kind: &'static str) -> Result<Self, ApiError> {
        let mut values = Deserializer::from_slice(bytes).into_iter::<Value>();
        let value = match values.next() {
            None => return Err(ApiError::bad_request("missing request body")),
            Some(Err(err)) => return Err(ApiError::bad_request(syntax_message(bytes, &err))),
            Some(Ok(value)) => value,
        };

        let map = match value {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                return Err(ApiError::bad_request(format!(
                    "json: cannot unmarshal {} into Go value of type {kind}",
                    json_kind(&other)
                )))
            }
        };
        Ok(Self { map, kind })
    }

    /// The top-level fields.
    pub(crate) fn fields(&self) -> Fields<'_> {
        let type_name = self.kind.rsplit('.').next().unwrap_or(self.kind);
        Fields {
            map: &self.map,
            path: type_name.to_owned(),
        }
    }
}

/// The fields of one JSON object inside a request, with the Go path used in type errors.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// Wraps an array element that Go decodes into a struct (e.g. one chat message). `null`
    /// gives an empty object.
    pub(crate) fn element(
        value: &'a Value,
        path: String,
        go_type: &str,
    ) -> Result<Option<Self>, ApiError> {
        match value {
            Value::Object(map) => Ok(Some(Self { map, path })),
            Value::Null => Ok(None),
            other => Err(type_error(other, &path, go_type)),
        }
    }

    /// The path of a field, as Go names it in type errors (`ChatRequest.messages`).
    pub(crate) fn path_of(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The value under `key`, matched exactly first and then without case; `null` counts as
    /// absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        let value = self.map.get(key).or_else(|| {
            self.map
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
                .map(|(_, value)| value)
        });
        value.filter(|value| !value.is_null())
    }

    /// A string field; absent gives `""`.
    pub(crate) fn string(&self, key: &str) -> Result<&'a str, ApiError> {
        match self.get(key) {
            None => Ok(""),
            Some(Value::String(text)) => Ok(text),
            Some(other) => Err(type_error(other, &self.path_of(key), "string")),
        }
    }

    /// A boolean field.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(other) => Err(type_error(other, &self.path_of(key), "bool")),
        }
    }

    /// An integer field (Go `int`).
    pub(crate) fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(number)) => match number.as_i64() {
                Some(value) => Ok(Some(value)),
                None => Err(ApiError::bad_request(format!(
                    "json: cannot unmarshal number {number} into Go struct field {} of type int",
                    self.path_of(key)
                ))),
            },
            Some(other) => Err(type_error(other, &self.path_of(key), "int")),
        }
    }

    /// An array field; absent gives an empty slice.
    pub(crate) fn array(&self, key: &str, go_type: &str) -> Result<&'a [Value], ApiError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(type_error(other, &self.path_of(key), go_type)),
        }
    }

    /// A nested struct field.
    pub(crate) fn object(&self, key: &str, go_type: &str) -> Result<Option<Self>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => Self::element(value, self.path_of(key), go_type),
        }
    }
}

/// Go's `UnmarshalTypeError` text.
pub(crate) fn type_error(value: &Value, path: &str, go_type: &str) -> ApiError {
    ApiError::bad_request(format!(
        "json: cannot unmarshal {} into Go struct field {path} of type {go_type}",
        json_kind(value)
    ))
}

/// The JSON kind as Go's decoder names it.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Translates a serde_json syntax error into the message Go's scanner gives for the same input.
fn syntax_message(bytes: &[u8], err: &serde_json::Error) -> String {
    if err.is_eof() {
        return "unexpected EOF".to_owned();
    }

    let offset = byte_offset(bytes, err.line(), err.column());
    let found = bytes
        .get(offset..)
        .and_then(|rest| String::from_utf8_lossy(rest).chars().next())
        .unwrap_or('?');

    let text = err.to_string();
    let context = if text.starts_with("expected `:`") {
        "after object key"
    } else if text.starts_with("expected `,` or `}`") {
        "after object key:value pair"
    } else if text.starts_with("expected `,` or `]`") {
        "after array element"
    } else if text.starts_with("key must be a string")
        || (text.starts_with("trailing comma") && found == '}')
    {
        "looking for beginning of object key string"
    } else if text.starts_with("control character") {
        "in string literal"
    } else if text.starts_with("invalid escape") {
        "in string escape code"
    } else if text.starts_with("invalid number") {
        "in numeric literal"
    } else {
        "looking for beginning of value"
    };
    format!("invalid character {} {context}", quote_char(found))
}

/// serde_json reports 1-based lines and columns; the column points at the offending byte.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start = bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'\n')
        .nth(line.saturating_sub(2))
        .map_or(0, |(index, _)| index + 1);
    let line_start = if line <= 1 { 0 } else { line_start };
    line_start + column.saturating_sub(1)
}

/// Go's `quoteChar`: `'x'`, with `'` and control characters escaped.
fn quote_char(ch: char) -> String {
    match ch {
        '\'' => r"'\''".to_owned(),
        '"' => "'\"'".to_owned(),
        '\n' => r"'\n'".to_owned(),
        '\r' => r"'\r'".to_owned(),
        '\t' => r"'\t'".to_owned(),
        ch if ch.is_control() => format!("'\\x{:02x}'", u32::from(ch)),
        ch => format!("'{ch}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_error(body: &str) -> String {
        match Body::decode(body.as_bytes(), "api.ChatRequest") {
            Ok(_) => panic!("{body:?} decoded"),
            Err(err) => err.message().to_owned(),
        }
    }

    #[test]
    fn empty_and_blank_bodies_are_missing() {
        assert_eq!(decode_error(""), "missing request body");
        assert_eq!(decode_error("  \n"), "missing request body");
    }

    #[test]
    fn syntax_errors_read_like_go() {
        assert_eq!(
            decode_error("xyz"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            decode_error("{\"model\" 1}"),
            "invalid character '1' after object key"
        );
        assert_eq!(
            decode_error("{\"a\":1 \"b\":2}"),
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(
            decode_error("{\n\"a\":\n x}"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(decode_error("{\"model\":\"llama"), "unexpected EOF");
    }

    #[test]
    fn wrong_types_name_the_go_field() {
        assert_eq!(
            decode_error("[1]"),
            "json: cannot unmarshal array into Go value of type api.ChatRequest"
        );
        let body = Body::decode(br#"{"stream":"yes"}"#, "api.ChatRequest").expect("decodes");
        let err = body
            .fields()
            .bool("stream")
            .expect_err("a string is no bool");
        assert_eq!(
            err.message(),
            "json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool"
        );
    }

    #[test]
    fn keys_match_without_case_and_null_is_absent() {
        let body = Body::decode(
            br#"{"Model":"llama3.2","stream":null} trailing"#,
            "api.ChatRequest",
        )
        .expect("only the first value is read");
        let fields = body.fields();
        assert_eq!(fields.string("model").expect("string"), "llama3.2");
        assert_eq!(fields.bool("stream").expect("bool"), None);
    }
}
