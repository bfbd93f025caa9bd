//! The `keep_alive` request field: how long a model stays resident after a request.
//!
//! A number means seconds and a string is a Go duration (`"5m"`, `"1h30m"`). Any negative value
//! means forever, zero unloads right after the request, and an absent field means the server
//! default of five minutes. The error texts are Go's.

use std::time::Duration;

use serde_json::Value;

use crate::error::ApiError;

/// The server default when a request says nothing.
pub(crate) const DEFAULT: Duration = Duration::from_secs(5 * 60);

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepAlive {
    Default,
    Forever,
    For(Duration),
}

impl KeepAlive {
    /// Parses the raw field (`None` when absent or `null`).
    pub(crate) fn parse(value: Option<&Value>) -> Result<Self, ApiError> {
        match value {
            None => Ok(Self::Default),
            Some(Value::Number(number)) => {
                let seconds = number.as_f64().unwrap_or(f64::MAX);
                Ok(Self::from_seconds(seconds))
            }
            Some(Value::String(text)) => match parse_go_duration(text) {
                Ok(seconds) => Ok(Self::from_seconds(seconds)),
                Err(message) => Err(ApiError::bad_request(message)),
            },
            Some(other) => Err(ApiError::bad_request(format!(
                "Unsupported type: '{}'",
                go_type_name(other)
            ))),
        }
    }

    /// `keep_alive: 0`, which turns an empty request into an unload.
    pub(crate) fn is_zero(self) -> bool {
        self == Self::For(Duration::ZERO)
    }

    /// How long the model stays resident; `None` is forever.
    pub(crate) fn duration(self) -> Option<Duration> {
        match self {
            Self::Default => Some(DEFAULT),
            Self::Forever => None,
            Self::For(duration) => Some(duration),
        }
    }

    fn from_seconds(seconds: f64) -> Self {
        if seconds < 0.0 {
            return Self::Forever;
        }
        Duration::try_from_secs_f64(seconds).map_or(Self::Forever, Self::For)
    }
}

/// `reflect.TypeOf` of a decoded JSON value, as Ollama's error prints it.
fn go_type_name(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "bool",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Null => "<nil>",
    }
}

/// Go's `time.ParseDuration`, returning seconds (negative allowed).
fn parse_go_duration(original: &str) -> Result<f64, String> {
    let invalid = || format!("time: invalid duration {original:?}");

    let (negative, mut rest) = match original.as_bytes().first() {
        Some(b'-') => (true, &original[1..]),
        Some(b'+') => (false, &original[1..]),
        _ => (false, original),
    };
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }

    let mut total_nanos = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        let value: f64 = match number {
            "" | "." => return Err(invalid()),
            digits => digits.parse().map_err(|_| invalid())?,
        };
        rest = &rest[number_len..];

        let unit_len = rest
            .find(|ch: char| ch.is_ascii_digit() || ch == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let nanos_per_unit = match unit {
            "" => return Err(format!("time: missing unit in duration {original:?}")),
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => {
                return Err(format!(
                    "time: unknown unit {other:?} in duration {original:?}"
                ))
            }
        };
        total_nanos += value * nanos_per_unit;
        rest = &rest[unit_len..];
    }

    let seconds = total_nanos / 1e9;
    Ok(if negative { -seconds } else { seconds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<KeepAlive, String> {
        KeepAlive::parse(Some(&value)).map_err(|err| err.message().to_owned())
    }

    #[test]
    fn numbers_are_seconds_and_negative_is_forever() {
        assert_eq!(
            parse(json!(30)),
            Ok(KeepAlive::For(Duration::from_secs(30)))
        );
        assert_eq!(parse(json!(-1)), Ok(KeepAlive::Forever));
        assert!(parse(json!(0)).expect("zero").is_zero());
        assert_eq!(KeepAlive::parse(None), Ok(KeepAlive::Default));
    }

    #[test]
    fn strings_are_go_durations() {
        assert_eq!(
            parse(json!("1h30m")),
            Ok(KeepAlive::For(Duration::from_secs(5400)))
        );
        assert_eq!(
            parse(json!("1.5s")),
            Ok(KeepAlive::For(Duration::from_millis(1500)))
        );
        assert_eq!(parse(json!("-1m")), Ok(KeepAlive::Forever));
        assert!(parse(json!("0")).expect("zero").is_zero());
    }

    #[test]
    fn bad_values_give_go_errors() {
        assert_eq!(
            parse(json!("300")),
            Err("time: missing unit in duration \"300\"".to_owned())
        );
        assert_eq!(
            parse(json!("5x")),
            Err("time: unknown unit \"x\" in duration \"5x\"".to_owned())
        );
        assert_eq!(
            parse(json!(true)),
            Err("Unsupported type: 'bool'".to_owned())
        );
    }
}
