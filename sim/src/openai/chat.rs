//! `POST /v1/chat/completions`.

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::{StreamOptions, Usage, FINGERPRINT};
use crate::body::{Body, Fields};
use crate::clock;
use crate::error::{ApiError, OpenAiError};
use crate::inference::{self, Answer, Prompt, ToolCall};
use crate::json;
use crate::keep_alive::KeepAlive;
use crate::reply::{self, EVENT_STREAM};
use crate::state::Sim;
use crate::stream::{self, Pacing};
use crate::text;

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
    Ok(respond(&sim, model, &options, answer).await)
}

/// Frames `answer` as one completion or as an SSE stream of chunks.
async fn respond(sim: &Sim, model: &str, options: &StreamOptions, answer: Answer) -> HttpResponse {
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
        return reply::openai(&ChatCompletion {
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
        });
    }

    let model = model.to_owned();
    let content_frames = answer.content_frames();
    let usage = options.include_usage.then(|| Usage::of(&answer));
    let frames = content_frames + 1 + usize::from(usage.is_some()) + 1;
    reply::streamed(EVENT_STREAM, frames, pacing, move |index| {
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
    })
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
