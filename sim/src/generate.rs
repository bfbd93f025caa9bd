//! `POST /api/generate` and `POST /api/chat`.
//!
//! Both stream NDJSON unless `stream:false`: one chunk per token, then a final `done:true`
//! chunk with `done_reason` and the metrics (generate adds `context`). A request without a
//! prompt or messages only loads the model, or unloads it with `keep_alive:0`, and gets a
//! single JSON object. Errors found before the first token are plain JSON errors.

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::body::{type_error, Body, Fields};
use crate::catalog::ModelEntry;
use crate::clock;
use crate::error::ApiError;
use crate::inference::{self, Answer, Metrics, Prompt, ToolCall};
use crate::keep_alive::KeepAlive;
use crate::reply::{self, NDJSON};
use crate::state::Sim;
use crate::stream::{self, Pacing};
use crate::text;

/// Tokens a prompt template adds around the user's text.
const TEMPLATE_TOKENS: u64 = 8;

/// A generate chunk or reply, in `api.GenerateResponse` wire order.
#[derive(Serialize)]
struct GenerateReply<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a [u32]>,
    #[serde(flatten)]
    metrics: Option<Metrics>,
}

/// A chat chunk or reply, in `api.ChatResponse` wire order.
#[derive(Serialize)]
struct ChatReply<'a> {
    model: &'a str,
    created_at: String,
    message: ChatMessage<'a>,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(flatten)]
    metrics: Option<Metrics>,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[NativeToolCall<'a>; 1]>,
}

/// A tool call as the native API writes it: arguments are an object.
#[derive(Serialize)]
struct NativeToolCall<'a> {
    id: &'a str,
    function: NativeFunction<'a>,
}

#[derive(Serialize)]
struct NativeFunction<'a> {
    index: u32,
    name: &'a str,
    arguments: &'a std::collections::BTreeMap<String, Value>,
}

impl<'a> NativeToolCall<'a> {
    fn of(call: &'a ToolCall) -> [Self; 1] {
        [Self {
            id: &call.id,
            function: NativeFunction {
                index: 0,
                name: &call.name,
                arguments: &call.arguments,
            },
        }]
    }
}

/// The fields both handlers read the same way.
struct Common<'a> {
    model: &'a str,
    stream: bool,
    keep_alive: KeepAlive,
    num_predict: Option<i64>,
    num_ctx: Option<u64>,
}

impl<'a> Common<'a> {
    fn read(fields: &Fields<'a>) -> Result<Self, ApiError> {
        let options = options(fields)?;
        let num_ctx = inference::int_option(options, "num_ctx")?
            .and_then(|value| u64::try_from(value).ok())
            .filter(|value| *value > 0);
        Ok(Self {
            model: fields.string("model")?,
            stream: fields.bool("stream")?.unwrap_or(true),
            keep_alive: KeepAlive::parse(fields.get("keep_alive"))?,
            num_predict: inference::int_option(options, "num_predict")?,
            num_ctx,
        })
    }

    fn prompt(&self, seed_text: &str, prompt_tokens: u64) -> Prompt {
        Prompt {
            seed_text: seed_text.to_owned(),
            prompt_tokens,
            limit: inference::limit(self.num_predict),
            tool: None,
            keep_alive: self.keep_alive,
            num_ctx: self.num_ctx,
        }
    }
}

/// The `options` map (`map[string]any` in Go).
fn options<'a>(fields: &Fields<'a>) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match fields.get("options") {
        None => Ok(None),
        Some(Value::Object(options)) => Ok(Some(options)),
        Some(other) => Err(type_error(
            other,
            &fields.path_of("options"),
            "map[string]interface {}",
        )),
    }
}

/// `POST /api/generate`.
pub(crate) async fn generate(sim: web::Data<Sim>, body: Bytes) -> Result<HttpResponse, ApiError> {
    let body = Body::decode(&body, "api.GenerateRequest")?;
    let fields = body.fields();
    let common = Common::read(&fields)?;
    let prompt = fields.string("prompt")?;
    let system = fields.string("system")?;
    let template = fields.string("template")?;
    let context_in = fields.array("context", "[]int")?;
    let raw = fields.bool("raw")?.unwrap_or(false);

    if common.model.is_empty() {
        return Err(ApiError::model_not_found(""));
    }
    if raw && (!template.is_empty() || !system.is_empty() || !context_in.is_empty()) {
        return Err(ApiError::bad_request(
            "raw mode does not support template, system, or context",
        ));
    }
    let entry = inference::find_model(&sim, common.model, "generate")?;
    inference::check_think(fields.get("think"), common.model)?;

    if prompt.is_empty() {
        let reason = load_or_unload(&sim, &entry, &common).await;
        return Ok(reply::native(&GenerateReply {
            model: common.model,
            created_at: clock::utc_now(),
            response: "",
            done: true,
            done_reason: Some(reason),
            context: None,
            metrics: None,
        }));
    }

    let prompt_tokens =
        text::word_count(prompt) as u64 + text::word_count(system) as u64 + TEMPLATE_TOKENS;
    let request = common.prompt(prompt, prompt_tokens + context_in.len() as u64);
    let answer = inference::answer(&sim, &entry, &request).await;

    let context = (!raw).then(|| {
        let earlier = context_in
            .iter()
            .filter_map(|id| id.as_u64().and_then(|id| u32::try_from(id).ok()));
        earlier
            .chain(text::token_ids(prompt))
            .chain(text::token_ids(&answer.text()))
            .collect::<Vec<u32>>()
    });
    tracing::debug!(model = %entry.name, stream = common.stream, "generate");
    Ok(respond_generate(&sim, common.model, common.stream, answer, context).await)
}

async fn respond_generate(
    sim: &Sim,
    model: &str,
    stream: bool,
    answer: Answer,
    context: Option<Vec<u32>>,
) -> HttpResponse {
    let pacing = Pacing::of(sim.config());
    let frames = answer.content_frames() + 1;

    if !stream {
        tokio::time::sleep(stream::total_gap(frames, pacing)).await;
        return reply::native(&GenerateReply {
            model,
            created_at: clock::utc_now(),
            response: &answer.text(),
            done: true,
            done_reason: Some(answer.done_reason),
            context: context.as_deref(),
            metrics: Some(answer.metrics),
        });
    }

    let model = model.to_owned();
    reply::streamed(NDJSON, frames, pacing, move |index| {
        let last = index + 1 == frames;
        reply::line(&GenerateReply {
            model: &model,
            created_at: clock::utc_now(),
            response: answer.tokens.get(index).map_or("", String::as_str),
            done: last,
            done_reason: last.then_some(answer.done_reason),
            context: if last { context.as_deref() } else { None },
            metrics: last.then_some(answer.metrics),
        })
    })
}

/// One chat message, as far as the simulation reads it.
struct Message<'a> {
    role: String,
    content: &'a str,
}

/// `POST /api/chat`.
pub(crate) async fn chat(sim: web::Data<Sim>, body: Bytes) -> Result<HttpResponse, ApiError> {
    let body = Body::decode(&body, "api.ChatRequest")?;
    let fields = body.fields();
    let common = Common::read(&fields)?;
    let messages = messages(&fields)?;
    let tools = fields.array("tools", "api.Tools")?;
    let tool = inference::tool_spec(tools, &fields.path_of("tools"))?;

    if common.model.is_empty() {
        return Err(ApiError::model_required());
    }
    let entry = inference::find_model(&sim, common.model, "chat")?;
    inference::check_think(fields.get("think"), common.model)?;

    let Some(last) = messages.last() else {
        let reason = load_or_unload(&sim, &entry, &common).await;
        return Ok(reply::native(&ChatReply {
            model: common.model,
            created_at: clock::utc_now(),
            message: ChatMessage {
                role: "assistant",
                content: "",
                tool_calls: None,
            },
            done: true,
            done_reason: Some(reason),
            metrics: None,
        }));
    };

    let prompt_tokens = messages
        .iter()
        .map(|message| text::word_count(message.content) as u64 + 4)
        .sum::<u64>()
        + 4;
    let mut request = common.prompt(last.content, prompt_tokens);
    if last.role == "user" {
        request.tool = tool;
    }
    let answer = inference::answer(&sim, &entry, &request).await;

    tracing::debug!(model = %entry.name, stream = common.stream, "chat");
    Ok(respond_chat(&sim, common.model, common.stream, answer).await)
}

/// Reads `messages`, checking each element's types as Go would.
fn messages<'a>(fields: &Fields<'a>) -> Result<Vec<Message<'a>>, ApiError> {
    let path = fields.path_of("messages");
    let mut messages = Vec::new();
    for value in fields.array("messages", "[]api.Message")? {
        let message = Fields::element(value, path.clone(), "api.Message")?;
        let (role, content) = match message {
            Some(message) => (message.string("role")?, message.string("content")?),
            None => ("", ""),
        };
        messages.push(Message {
            role: role.to_lowercase(),
            content,
        });
    }
    Ok(messages)
}

async fn respond_chat(sim: &Sim, model: &str, stream: bool, answer: Answer) -> HttpResponse {
    let pacing = Pacing::of(sim.config());
    let frames = answer.content_frames() + 1;

    if !stream {
        tokio::time::sleep(stream::total_gap(frames, pacing)).await;
        return reply::native(&ChatReply {
            model,
            created_at: clock::utc_now(),
            message: ChatMessage {
                role: "assistant",
                content: &answer.text(),
                tool_calls: answer.tool_call.as_ref().map(NativeToolCall::of),
            },
            done: true,
            done_reason: Some(answer.done_reason),
            metrics: Some(answer.metrics),
        });
    }

    let model = model.to_owned();
    reply::streamed(NDJSON, frames, pacing, move |index| {
        let last = index + 1 == frames;
        let tool_calls = match &answer.tool_call {
            Some(call) if !last => Some(NativeToolCall::of(call)),
            _ => None,
        };
        reply::line(&ChatReply {
            model: &model,
            created_at: clock::utc_now(),
            message: ChatMessage {
                role: "assistant",
                content: answer.tokens.get(index).map_or("", String::as_str),
                tool_calls,
            },
            done: last,
            done_reason: last.then_some(answer.done_reason),
            metrics: last.then_some(answer.metrics),
        })
    })
}

/// Handles a request without prompt or messages: unload with `keep_alive:0`, load otherwise.
/// Returns the `done_reason` to report.
async fn load_or_unload(sim: &Sim, entry: &ModelEntry, common: &Common<'_>) -> &'static str {
    if common.keep_alive.is_zero() {
        sim.unload(entry);
        tracing::debug!(model = %entry.name, "model unloaded");
        return "unload";
    }
    inference::load(sim, entry, common.keep_alive, common.num_ctx).await;
    "load"
}
