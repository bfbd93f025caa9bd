//! What a simulated model answers, shared by the native and the OpenAI routes.
//!
//! A request is reduced to a [`Prompt`] (the text the answer is derived from, token limit, tool
//! offered, keep-alive), then [`answer`] waits as a real node would (model load, then the
//! first-byte latency) and returns the tokens, the finish reason and the metrics. Framing the
//! answer as NDJSON, SSE or one object is left to the routes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::body::Fields;
use crate::catalog::ModelEntry;
use crate::error::ApiError;
use crate::keep_alive::KeepAlive;
use crate::state::Sim;
use crate::text;

/// Requests for more tokens than this get this many; the simulation has no use for more.
const MAX_TOKENS: usize = 65_536;
/// Reported load time when the model was already resident.
const RESIDENT_LOAD: Duration = Duration::from_micros(1250);
/// Reported prompt time per token when no latency is configured.
const PROMPT_TOKEN_TIME: Duration = Duration::from_micros(500);
/// Reported time per generated token when no token delay is configured (100 tokens/s).
const TOKEN_TIME: Duration = Duration::from_millis(10);

/// A validated generation request, in the terms both APIs share.
#[derive(Debug, Clone)]
pub(crate) struct Prompt {
    /// The text the answer is derived from: the prompt, or the last chat message.
    pub(crate) seed_text: String,
    /// Tokens the prompt counts as.
    pub(crate) prompt_tokens: u64,
    /// `num_predict` / `max_tokens`, when given and not negative.
    pub(crate) limit: Option<usize>,
    /// A tool the model calls instead of answering in text.
    pub(crate) tool: Option<ToolSpec>,
    pub(crate) keep_alive: KeepAlive,
    pub(crate) num_ctx: Option<u64>,
}

/// The tool a chat request offers, reduced to what a call needs.
#[derive(Debug, Clone)]
pub(crate) struct ToolSpec {
    pub(crate) name: String,
    /// Argument names with their JSON-schema types, in name order.
    pub(crate) arguments: Vec<(String, String)>,
}

/// A tool call the model makes.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) arguments: BTreeMap<String, Value>,
}

/// What the model says.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) tokens: Vec<String>,
    pub(crate) tool_call: Option<ToolCall>,
    /// `stop`, or `length` when the token limit cut the answer.
    pub(crate) done_reason: &'static str,
    pub(crate) metrics: Metrics,
    /// A seed for ids derived from this answer.
    pub(crate) seed: u64,
    /// The node's generation slot, held until the answer (and its stream) is dropped.
    pub(crate) _slot: Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>,
}

impl Answer {
    /// The whole text, as non-streamed replies carry it.
    pub(crate) fn text(&self) -> String {
        self.tokens.concat()
    }

    /// Content frames a stream of this answer has: one per token, or one for a tool call.
    pub(crate) fn content_frames(&self) -> usize {
        if self.tool_call.is_some() {
            1
        } else {
            self.tokens.len()
        }
    }
}

/// The six metric fields of a final chunk, all in nanoseconds or tokens. Zero fields are left
/// out, as Go's `omitempty` does.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Metrics {
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) prompt_eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) prompt_eval_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) eval_duration: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Finds the model a generation request names. `capability` is `generate` or `chat`, as the
/// refusal for an embedding-only model words it.
pub(crate) fn find_model(sim: &Sim, name: &str, capability: &str) -> Result<ModelEntry, ApiError> {
    let entry = sim
        .find(name)
        .ok_or_else(|| ApiError::model_not_found(name))?;
    if entry.profile(sim.config().embedding_dim).embedding_only {
        return Err(ApiError::bad_request(format!(
            "\"{name}\" does not support {capability}"
        )));
    }
    Ok(entry)
}

/// Refuses `think` on a model without the thinking capability (no simulated model has it).
pub(crate) fn check_think(value: Option<&Value>, name: &str) -> Result<(), ApiError> {
    match value {
        None | Some(Value::Bool(false)) => Ok(()),
        Some(_) => Err(ApiError::bad_request(format!(
            "\"{name}\" does not support thinking"
        ))),
    }
}

/// Reads an integer entry of `options`. A wrong type is a 500, as in Ollama.
pub(crate) fn int_option(
    options: Option<&Map<String, Value>>,
    name: &str,
) -> Result<Option<i64>, ApiError> {
    let Some(value) = options.and_then(|options| options.get(name)) else {
        return Ok(None);
    };
    let integer = match value {
        Value::Null => return Ok(None),
        Value::Number(number) => number.as_i64().or_else(|| {
            let float = number.as_f64()?;
            (float.fract() == 0.0).then_some(float as i64)
        }),
        _ => None,
    };
    integer
        .map(Some)
        .ok_or_else(|| ApiError::internal(format!("option \"{name}\" must be of type integer")))
}

/// A token limit from `num_predict` or `max_tokens`; negative means none.
pub(crate) fn limit(value: Option<i64>) -> Option<usize> {
    let value = usize::try_from(value?).ok()?;
    Some(value.min(MAX_TOKENS))
}

/// The first usable tool of a `tools` array, or `None`.
pub(crate) fn tool_spec(tools: &[Value], path: &str) -> Result<Option<ToolSpec>, ApiError> {
    for tool in tools {
        let Some(tool) = Fields::element(tool, path.to_owned(), "api.Tool")? else {
            continue;
        };
        let Some(function) = tool.object("function", "api.ToolFunction")? else {
            continue;
        };
        let name = function.string("name")?;
        if name.is_empty() {
            continue;
        }

        let parameters = function.get("parameters").and_then(Value::as_object);
        let properties = parameters
            .and_then(|parameters| parameters.get("properties"))
            .and_then(Value::as_object);
        let required: Vec<&str> = parameters
            .and_then(|parameters| parameters.get("required"))
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();

        let type_of = |argument: &str| {
            properties
                .and_then(|properties| properties.get(argument))
                .and_then(|property| property.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("string")
                .to_owned()
        };
        let mut arguments: Vec<(String, String)> = if required.is_empty() {
            properties
                .map(|properties| {
                    properties
                        .keys()
                        .map(|key| (key.clone(), type_of(key)))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            required
                .iter()
                .map(|key| ((*key).to_owned(), type_of(key)))
                .collect()
        };
        arguments.sort();
        arguments.dedup();

        return Ok(Some(ToolSpec {
            name: name.to_owned(),
            arguments,
        }));
    }
    Ok(None)
}

/// Uses the model as a real node would (waiting for a load, then the first-byte latency) and
/// returns what it says.
pub(crate) async fn answer(sim: &Sim, entry: &ModelEntry, prompt: &Prompt) -> Answer {
    let config = sim.config();
    let slot = sim.slot().await.map(std::sync::Arc::new);
    let load = sim.touch(entry, prompt.keep_alive, prompt.num_ctx);
    sleep(load.wait).await;
    sleep(config.latency).await;

    let seed = text::hash(&[&entry.key, &prompt.seed_text]);
    let natural = text::natural_length(seed);
    let (tokens, tool_call, done_reason) = match &prompt.tool {
        Some(tool) => (Vec::new(), Some(tool_call(seed, tool)), "stop"),
        None => {
            let count = prompt.limit.unwrap_or(natural);
            let reason = if prompt.limit.is_some() {
                "length"
            } else {
                "stop"
            };
            (text::tokens(seed, count), None, reason)
        }
    };

    let eval_count = match &tool_call {
        Some(call) => 10 + 3 * call.arguments.len() as u64,
        None => tokens.len() as u64,
    };
    let load_duration = if load.started {
        RESIDENT_LOAD.saturating_add(config.load_delay)
    } else {
        RESIDENT_LOAD
    };
    let prompt_duration = if config.latency.is_zero() {
        PROMPT_TOKEN_TIME.saturating_mul(saturating_u32(prompt.prompt_tokens))
    } else {
        config.latency
    };
    let token_time = if config.token_delay.is_zero() {
        TOKEN_TIME
    } else {
        config.token_delay
    };
    let eval_duration = token_time.saturating_mul(saturating_u32(eval_count));
    let total = load_duration
        .saturating_add(prompt_duration)
        .saturating_add(eval_duration)
        .saturating_add(Duration::from_micros(500));

    tracing::debug!(
        model = %entry.name,
        tokens = tokens.len(),
        tool_call = tool_call.is_some(),
        load_started = load.started,
        "answer ready"
    );
    Answer {
        tokens,
        tool_call,
        done_reason,
        metrics: Metrics {
            total_duration: nanos(total),
            load_duration: nanos(load_duration),
            prompt_eval_count: prompt.prompt_tokens,
            prompt_eval_duration: nanos(prompt_duration),
            eval_count,
            eval_duration: nanos(eval_duration),
        },
        seed,
        _slot: slot,
    }
}

/// Loads `entry` for an empty request (the "load" call) and waits until it is ready.
pub(crate) async fn load(
    sim: &Sim,
    entry: &ModelEntry,
    keep_alive: KeepAlive,
    num_ctx: Option<u64>,
) {
    let load = sim.touch(entry, keep_alive, num_ctx);
    tracing::debug!(model = %entry.name, started = load.started, "model load requested");
    sleep(load.wait).await;
}

fn tool_call(seed: u64, tool: &ToolSpec) -> ToolCall {
    let arguments = tool
        .arguments
        .iter()
        .map(|(name, kind)| {
            let argument_seed = text::hash(&[&seed.to_string(), name]);
            let value = match kind.as_str() {
                "integer" | "number" => Value::from(1 + argument_seed % 30),
                "boolean" => Value::Bool(argument_seed.is_multiple_of(2)),
                "array" => Value::Array(Vec::new()),
                "object" => Value::Object(Map::new()),
                _ => Value::String(text::word(argument_seed)),
            };
            (name.clone(), value)
        })
        .collect();
    ToolCall {
        id: format!("call_{}", text::short_id(seed, 8)),
        name: tool.name.clone(),
        arguments,
    }
}

async fn sleep(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

fn saturating_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_spec_takes_required_arguments_with_types() {
        let tools = json!([{"type":"function","function":{"name":"get_weather",
            "parameters":{"type":"object","required":["city","days"],
            "properties":{"city":{"type":"string"},"days":{"type":"integer"},"unit":{"type":"string"}}}}}]);
        let tools = tools.as_array().expect("array");
        let spec = tool_spec(tools, "ChatRequest.tools")
            .expect("valid")
            .expect("one tool");
        assert_eq!(spec.name, "get_weather");
        assert_eq!(
            spec.arguments,
            [
                ("city".to_owned(), "string".to_owned()),
                ("days".to_owned(), "integer".to_owned())
            ]
        );

        let call = tool_call(7, &spec);
        assert!(call.id.starts_with("call_") && call.id.len() == 13);
        assert!(call.arguments["city"].is_string());
        assert!(call.arguments["days"].is_u64());
    }

    #[test]
    fn options_must_be_integers() {
        let options = json!({"num_predict": 3, "num_ctx": 2048.0, "seed": "x"});
        let options = options.as_object();
        assert_eq!(int_option(options, "num_predict"), Ok(Some(3)));
        assert_eq!(int_option(options, "num_ctx"), Ok(Some(2048)));
        assert_eq!(
            int_option(options, "seed").map_err(|err| err.message().to_owned()),
            Err("option \"seed\" must be of type integer".to_owned())
        );
        assert_eq!(limit(Some(-1)), None);
        assert_eq!(limit(Some(4)), Some(4));
    }
}
