//! `POST /v1/completions`.

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::{StreamOptions, Usage, FINGERPRINT};
use crate::body::Body;
use crate::clock;
use crate::error::{ApiError, OpenAiError};
use crate::inference::{self, Answer, Prompt};
use crate::keep_alive::KeepAlive;
use crate::reply::{self, EVENT_STREAM};
use crate::state::Sim;
use crate::stream::{self, Pacing};
use crate::text;

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
    Ok(respond(&sim, model, &options, answer).await)
}

/// Frames `answer` as one completion or as an SSE stream of chunks.
async fn respond(sim: &Sim, model: &str, options: &StreamOptions, answer: Answer) -> HttpResponse {
    let id = format!("cmpl-{}", answer.seed % 999);
    let pacing = Pacing::of(sim.config());
    let created = clock::now_seconds();
    let reason = answer.done_reason;

    if !options.stream {
        let frames = answer.content_frames() + 1;
        tokio::time::sleep(stream::total_gap(frames, pacing)).await;
        let text = answer.text();
        return reply::openai(&Completion {
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
        });
    }

    let model = model.to_owned();
    let tokens = answer.tokens.len();
    let usage = options.include_usage.then(|| Usage::of(&answer));
    let frames = tokens + 1 + usize::from(usage.is_some()) + 1;
    reply::streamed(EVENT_STREAM, frames, pacing, move |index| {
        if index + 1 == frames {
            return reply::event_done();
        }
        // Token chunks, then the finish chunk, then the usage chunk (no choices).
        let choice = |text, finish_reason| CompletionChoice {
            text,
            index: 0,
            finish_reason,
        };
        let choices = if index < tokens {
            vec![choice(&answer.tokens[index], None)]
        } else if index == tokens {
            vec![choice("", Some(reason))]
        } else {
            Vec::new()
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
    })
}
