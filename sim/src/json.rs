//! JSON encoding the way Go's `encoding/json` writes it.
//!
//! serde_json already writes compact output in field order. Go differs in two places that can
//! reach a client: it escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings, and it prints
//! floats in shortest form with no `.0` on whole numbers and exponents only outside
//! `[1e-6, 1e21)`. The formatter below adds both.

use std::fmt::{Display, LowerExp};
use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

/// Encodes `value` as Go would, with no trailing newline.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = Serializer::with_formatter(&mut out, GoFormatter);
    match value.serialize(&mut serializer) {
        Ok(()) => out,
        Err(err) => {
            // Only a map with non-string keys can fail, and this crate builds none.
            tracing::error!(cause = %err, "cannot encode reply");
            b"{}".to_vec()
        }
    }
}

/// Encodes `value` as Go would and appends `\n`, as `json.Encoder` and NDJSON lines do.
pub(crate) fn to_line<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = to_vec(value);
    out.push(b'\n');
    out
}

struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (index, ch) in fragment.char_indices() {
            let escaped = match ch {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..index])?;
            writer.write_all(escaped.as_bytes())?;
            start = index + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        let abs = value.abs();
        let exponent = abs != 0.0 && !(1e-6..1e21).contains(&abs);
        writer.write_all(go_float(value, exponent).as_bytes())
    }

    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        let abs = value.abs();
        let exponent = abs != 0.0 && !(1e-6..1e21).contains(&abs);
        writer.write_all(go_float(value, exponent).as_bytes())
    }
}

/// Rust's `Display` and `LowerExp` already give the shortest round-trip digits; Go only adds a
/// `+` to positive exponents (`1e+21`).
fn go_float<F: Display + LowerExp>(value: F, exponent: bool) -> String {
    if !exponent {
        return value.to_string();
    }
    let text = format!("{value:e}");
    match text.split_once('e') {
        Some((mantissa, power)) if !power.starts_with('-') => format!("{mantissa}e+{power}"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(value: &serde_json::Value) -> String {
        String::from_utf8(to_vec(value)).expect("encoder writes utf-8")
    }

    #[test]
    fn escapes_html_characters_and_keeps_other_utf8() {
        let text = encode(&json!({"content": " sky & sea look <blue> at 20°C"}));
        assert_eq!(
            text,
            r#"{"content":" sky \u0026 sea look \u003cblue\u003e at 20°C"}"#
        );
    }

    #[test]
    fn prints_floats_like_go() {
        assert_eq!(encode(&json!([1.0, 0.5, -2.25])), "[1,0.5,-2.25]");
        assert_eq!(
            encode(&json!([1e-7, 1e21, 123456.0])),
            "[1e-7,1e+21,123456]"
        );
        assert_eq!(
            String::from_utf8(to_vec(&[0.1f32])).expect("utf-8"),
            "[0.1]"
        );
    }

    #[test]
    fn lines_end_with_a_newline() {
        assert_eq!(to_line(&json!({"a": 1})), b"{\"a\":1}\n");
    }
}
