//! The OpenAI compatibility layer: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings` and `/v1/models`, one file each.
//!
//! Replies are the current server's: JSON bodies end with `\n`, streams are SSE frames ending
//! with `data: [DONE]`, the role rides on the first chunk only and the finish reason on a
//! separate chunk with an empty delta. Errors use OpenAI's `{"error":{…}}` shape.

use serde::Serialize;

use crate::body::Fields;
use crate::error::ApiError;
use crate::inference::Answer;

mod chat;
mod completions;
mod embeddings;
mod models;

pub(crate) use chat::chat_completions;
pub(crate) use completions::completions;
pub(crate) use embeddings::embeddings;
pub(crate) use models::{model, models};

/// `system_fingerprint` of every reply.
const FINGERPRINT: &str = "fp_ollama";

/// Token counts of a reply.
#[derive(Serialize, Clone, Copy)]
pub(crate) struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl Usage {
    pub(crate) fn of(answer: &Answer) -> Self {
        let prompt = answer.metrics.prompt_eval_count;
        let completion = answer.metrics.eval_count;
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        }
    }
}

/// The streaming options every `/v1` generation route reads.
pub(crate) struct StreamOptions {
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

impl StreamOptions {
    pub(crate) fn read(fields: &Fields<'_>) -> Result<Self, ApiError> {
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
