//! `POST /v1/embeddings`.

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde::Serialize;

use crate::body::Body;
use crate::catalog::ModelEntry;
use crate::embed;
use crate::error::{ApiError, OpenAiError};
use crate::keep_alive::KeepAlive;
use crate::reply;
use crate::state::Sim;
use crate::text;

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    embedding: EmbeddingData,
    index: usize,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingData {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    sim: web::Data<Sim>,
    body: Bytes,
) -> Result<HttpResponse, OpenAiError> {
    let body = Body::decode(&body, "openai.EmbedRequest")?;
    let fields = body.fields();
    let model = fields.string("model")?;
    let dimensions = fields.int("dimensions")?;
    let base64 = match fields.string("encoding_format")? {
        "" | "float" => false,
        "base64" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid encoding format {other:?}, must be \"float\" or \"base64\""
            ))
            .into())
        }
    };
    let inputs = embed::inputs(fields.get("input"))
        .ok()
        .filter(|inputs| !inputs.is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid input"))?;

    if model.is_empty() {
        return Err(ApiError::model_not_found("").into());
    }
    let entry: ModelEntry = sim
        .find(model)
        .ok_or_else(|| ApiError::model_not_pulled(model))?;
    embed::prepare(&sim, &entry, KeepAlive::Default, true).await;

    let data = embed::unit_vectors(&sim, &entry, &inputs, dimensions)
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingItem {
            object: "embedding",
            embedding: if base64 {
                EmbeddingData::Base64(encode_base64(&vector))
            } else {
                EmbeddingData::Floats(vector)
            },
            index,
        })
        .collect();
    let tokens = inputs
        .iter()
        .map(|input| text::word_count(input).max(1) as u64)
        .sum();
    tracing::debug!(model = %entry.name, inputs = inputs.len(), "openai embeddings");
    Ok(reply::openai(&EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

/// Little-endian `f32` bytes in standard base64, as OpenAI's `encoding_format:"base64"`.
fn encode_base64(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let word = group.iter().enumerate().fold(0u32, |word, (index, byte)| {
            word | u32::from(*byte) << (16 - 8 * index)
        });
        for position in 0..4 {
            if position <= group.len() {
                out.push(char::from(
                    ALPHABET[(word >> (18 - 6 * position) & 63) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        // 1.0f32 is 00 00 80 3f; 0.5f32 is 00 00 00 3f.
        assert_eq!(encode_base64(&[1.0]), "AACAPw==");
        assert_eq!(encode_base64(&[1.0, 0.5]), "AACAPwAAAD8=");
        assert_eq!(encode_base64(&[]), "");
    }
}
