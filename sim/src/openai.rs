//! The OpenAI compatibility layer: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings` and `/v1/models`.
//!
//! Replies are the current server's: JSON bodies end with `\n`, streams are SSE frames ending
//! with `data: [DONE]`, the role rides on the first chunk only and the finish reason on a
//! separate chunk with an empty delta. Errors use OpenAI's `{"error":{…}}` shape.

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::body::{Body, Fields};
use crate::catalog::ModelEntry;
use crate::clock;
use crate::embed;
use crate::error::{ApiError, OpenAiError};
use crate::inference::{self, Answer, Prompt, ToolCall};
use crate::json;
use crate::keep_alive::KeepAlive;
use crate::reply::{self, EVENT_STREAM};
use crate::state::Sim;
use crate::stream::{self, Pacing};
use crate::text;

const FINGERPRINT: &str = "fp_ollama";

#[derive(Serialize, Clone, Copy)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl Usage {
    fn of(answer: &Answer) -> Self {
        let prompt = answer.metrics.prompt_eval_count;
        let completion = answer.metrics.eval_count;
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        }
    }
}

/// A tool call in OpenAI's shape: arguments are a JSON string.
#[derive(Serialize)]
struct OpenAiToolCall<'a> {
    id: &'a str,
    index: u32,
    r#type: &'static str,
    function: OpenAiFunction<'a>,
}

#[derive(Serialize)]
struct OpenAiFunction<'a> {
    name: &'a str,
    arguments: String,
}

impl<'a> OpenAiToolCall<'a> {
    fn of(call: &'a ToolCall) -> [Self; 1] {
        let arguments = String::from_utf8_lossy(&json::to_vec(&call.arguments)).into_owned();
        [Self {
            id: &call.id,
            index: 0,
            r#type: "function",
            function: OpenAiFunction {
                name: &call.name,
                arguments,
            },
        }]
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: [ChatChoice<'a>; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: ChatMessage<'a>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[OpenAiToolCall<'a>; 1]>,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[OpenAiToolCall<'a>; 1]>,
}

/// The streaming options every `/v1` generation route reads.
struct StreamOptions {
    stream: bool,
    include_usage: bool,
}

impl StreamOptions {
    fn read(fields: &Fields<'_>) -> Result<Self, ApiError> {
        let include_usage = match fields.object("stream_options", "openai.StreamOptions")? {
            Some(options) => options.bool("include_usage")?.unwrap_or(false),
            None => false,
        };
        Ok(Self {
            stream: fields.bool("stream")?.unwrap_or(false),
            include_usage,
        })
    }
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    sim: web::Data<Sim>,
    body: Bytes,
) -> Result<HttpResponse, OpenAiError> {
    let body = Body::decode(&body, "openai.ChatCompletionRequest")?;
    let fields = body.fields();
    let model = fields.string("model")?;
    let options = StreamOptions::read(&fields)?;
    let max_tokens = fields.int("max_tokens")?;
    let tools = fields.array("tools", "[]openai.Tool")?;
    let tool = inference::tool_spec(tools, &fields.path_of("tools"))?;
    let messages = messages(&fields)?;

    if messages.is_empty() {
        return Err(ApiError::bad_request("[] is too short - 'messages'").into());
    }
    if model.is_empty() {
        return Err(ApiError::model_required().into());
    }
    let entry = inference::find_model(&sim, model, "chat")?;

    let prompt_tokens = messages
        .iter()
        .map(|(_, content)| text::word_count(content) as u64 + 4)
        .sum::<u64>()
        + 4;
    let (last_role, last_content) = messages.last().cloned().unwrap_or_default();
    let prompt = Prompt {
        seed_text: last_content,
        prompt_tokens,
        limit: inference::limit(max_tokens),
        tool: if last_role == "user" { tool } else { None },
        keep_alive: KeepAlive::Default,
        num_ctx: None,
    };
    let answer = inference::answer(&sim, &entry, &prompt).await;
    tracing::debug!(model = %entry.name, stream = options.stream, "chat completion");

    let id = format!("chatcmpl-{}", answer.seed % 999);
    let finish_reason = match answer.tool_call {
        Some(_) => "tool_calls",
        None => answer.done_reason,
    };
    let pacing = Pacing::of(sim.config());
    let created = clock::now_seconds();

    if !options.stream {
        let frames = answer.content_frames() + 1;
        tokio::time::sleep(stream::total_gap(frames, pacing)).await;
        return Ok(reply::openai(&ChatCompletion {
            id: &id,
            object: "chat.completion",
            created,
            model,
            system_fingerprint: FINGERPRINT,
            choices: [ChatChoice {
                index: 0,
                message: ChatMessage {
                    role: "assistant",
                    content: &answer.text(),
                    tool_calls: answer.tool_call.as_ref().map(OpenAiToolCall::of),
                },
                finish_reason,
            }],
            usage: Usage::of(&answer),
        }));
    }

    let model = model.to_owned();
    let content_frames = answer.content_frames();
    let usage = options.include_usage.then(|| Usage::of(&answer));
    let frames = content_frames + 1 + usize::from(usage.is_some()) + 1;
    Ok(reply::streamed(
        EVENT_STREAM,
        frames,
        pacing,
        move |index| {
            if index + 1 == frames {
                return reply::event_done();
            }
            let chunk = |choices, usage| ChatChunk {
                id: &id,
                object: "chat.completion.chunk",
                created,
                model: &model,
                system_fingerprint: FINGERPRINT,
                choices,
                usage,
            };
            if index > content_frames {
                return reply::event(&chunk(Vec::new(), usage));
            }
            let (delta, finish) = if index == content_frames {
                (Delta::default(), Some(finish_reason))
            } else {
                let delta = Delta {
                    role: (index == 0).then_some("assistant"),
                    content: Some(answer.tokens.get(index).map_or("", String::as_str)),
                    tool_calls: answer.tool_call.as_ref().map(OpenAiToolCall::of),
                };
                (delta, None)
            };
            let choice = ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            };
            reply::event(&chunk(vec![choice], None))
        },
    ))
}

/// Role and text of each message. Content is a string or an array of parts whose `text`
/// parts are joined; images are accepted and ignored.
fn messages(fields: &Fields<'_>) -> Result<Vec<(String, String)>, ApiError> {
    let path = fields.path_of("messages");
    let mut messages = Vec::new();
    for value in fields.array("messages", "[]openai.Message")? {
        let Some(message) = Fields::element(value, path.clone(), "openai.Message")? else {
            continue;
        };
        let role = message.string("role")?.to_lowercase();
        let content = match message.get("content") {
            None => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            Some(_) => return Err(ApiError::bad_request("invalid message content type")),
        };
        messages.push((role, content));
    }
    Ok(messages)
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<CompletionChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    text: &'a str,
    index: u32,
    finish_reason: Option<&'a str>,
}

/// `POST /v1/completions`.
pub(crate) async fn completions(
    sim: web::Data<Sim>,
    body: Bytes,
) -> Result<HttpResponse, OpenAiError> {
    let body = Body::decode(&body, "openai.CompletionRequest")?;
    let fields = body.fields();
    let model = fields.string("model")?;
    let options = StreamOptions::read(&fields)?;
    let max_tokens = fields.int("max_tokens")?;
    let Some(Value::String(prompt)) = fields.get("prompt") else {
        return Err(ApiError::bad_request("invalid type for 'prompt' field").into());
    };

    if model.is_empty() {
        return Err(ApiError::model_not_found("").into());
    }
    let entry = inference::find_model(&sim, model, "generate")?;
    let request = Prompt {
        seed_text: prompt.clone(),
        prompt_tokens: text::word_count(prompt) as u64 + 8,
        limit: inference::limit(max_tokens),
        tool: None,
        keep_alive: KeepAlive::Default,
        num_ctx: None,
    };
    let answer = inference::answer(&sim, &entry, &request).await;
    tracing::debug!(model = %entry.name, stream = options.stream, "completion");

    let id = format!("cmpl-{}", answer.seed % 999);
    let pacing = Pacing::of(sim.config());
    let created = clock::now_seconds();
    let reason = answer.done_reason;

    if !options.stream {
        let frames = answer.content_frames() + 1;
        tokio::time::sleep(stream::total_gap(frames, pacing)).await;
        let text = answer.text();
        return Ok(reply::openai(&Completion {
            id: &id,
            object: "text_completion",
            created,
            model,
            system_fingerprint: FINGERPRINT,
            choices: vec![CompletionChoice {
                text: &text,
                index: 0,
                finish_reason: Some(reason),
            }],
            usage: Some(Usage::of(&answer)),
        }));
    }

    let model = model.to_owned();
    let tokens = answer.tokens.len();
    let usage = options.include_usage.then(|| Usage::of(&answer));
    let frames = tokens + 1 + usize::from(usage.is_some()) + 1;
    Ok(reply::streamed(
        EVENT_STREAM,
        frames,
        pacing,
        move |index| {
            if index + 1 == frames {
                return reply::event_done();
            }
            let choices = match index {
                index if index < tokens => vec![CompletionChoice {
                    text: &answer.tokens[index],
                    index: 0,
                    finish_reason: None,
                }],
                index if index == tokens => vec![CompletionChoice {
                    text: "",
                    index: 0,
                    finish_reason: Some(reason),
                }],
                _ => Vec::new(),
            };
            reply::event(&Completion {
                id: &id,
                object: "text_completion",
                created,
                model: &model,
                system_fingerprint: FINGERPRINT,
                usage: if choices.is_empty() { usage } else { None },
                choices,
            })
        },
    ))
}

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

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    owned_by: &'a str,
}

impl<'a> ModelObject<'a> {
    fn of(entry: &'a ModelEntry, sim: &Sim) -> Self {
        Self {
            id: &entry.name,
            object: "model",
            created: entry.profile(sim.config().embedding_dim).modified_seconds(),
            owned_by: entry.namespace(),
        }
    }
}

/// `GET /v1/models`. With no models the list is `null`, as the Go code writes it.
pub(crate) async fn models(sim: web::Data<Sim>) -> HttpResponse {
    #[derive(Serialize)]
    struct ModelList<'a> {
        object: &'static str,
        data: Option<Vec<ModelObject<'a>>>,
    }

    let catalog = sim.catalog();
    let data: Vec<_> = catalog
        .iter()
        .map(|entry| ModelObject::of(entry, &sim))
        .collect();
    reply::openai(&ModelList {
        object: "list",
        data: (!data.is_empty()).then_some(data),
    })
}

/// `GET /v1/models/{model}`.
pub(crate) async fn model(
    sim: web::Data<Sim>,
    name: web::Path<String>,
) -> Result<HttpResponse, OpenAiError> {
    let entry = sim
        .find(&name)
        .ok_or_else(|| ApiError::model_not_found(&name))?;
    Ok(reply::openai(&ModelObject::of(&entry, &sim)))
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
