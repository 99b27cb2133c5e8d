//! Anthropic Messages reply → OpenAI `chat.completion`, Anthropic errors → `UpstreamError`.
//! Text blocks join into `content`, `tool_use` blocks become `tool_calls`, thinking
//! becomes `reasoning_content` plus `thinking_blocks` (signatures kept for the next turn).

use std::borrow::Cow;

use serde::Deserialize;

use super::super::chat::opt_cow;
use serde_json::value::RawValue;

use super::super::http::ErrorReply;
use super::super::shape::{self, Choice, FunctionCall, Message, ThinkingBlock, ToolCall};
use super::super::{Reply, StatusReply, UpstreamError, UpstreamMeta};
use super::request::JSON_TOOL;
use crate::api::usage::AnthropicUsage;
use crate::api::Usage;

/// A content block of a reply (or of a stream's `content_block_start`).
#[derive(Debug, Deserialize)]
pub struct BlockOut<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub signature: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub data: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MessageOut<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Vec<BlockOut<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop: &str, json_mode: bool) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" if json_mode => "stop",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and any later addition.
        _ => "stop",
    }
}

fn protocol(provider: &str, detail: String) -> UpstreamError {
    UpstreamError::protocol(provider, detail)
}

/// Translates a complete Messages reply; `created` stamps the OpenAI body.
pub fn parse_reply(
    provider: &str,
    body: &[u8],
    created: u64,
    json_mode: bool,
    meta: UpstreamMeta,
) -> Result<Reply, UpstreamError> {
    let reply: MessageOut = serde_json::from_slice(body).map_err(|e| {
        protocol(
            provider,
            format!("the reply is not a Messages object ({e})"),
        )
    })?;
    let mut text: Option<Cow<str>> = None;
    let mut reasoning: Option<Cow<str>> = None;
    let mut tool_calls = Vec::new();
    let mut thinking_blocks = Vec::new();
    let append = |slot: &mut Option<Cow<'_, str>>, piece: &str| match slot {
        Some(existing) => existing.to_mut().push_str(piece),
        None => *slot = Some(Cow::Owned(piece.to_string())),
    };
    for block in &reply.content {
        match block.kind.as_ref() {
            "text" => {
                let piece = block.text.as_deref().unwrap_or_default();
                match &mut text {
                    None => text = block.text.clone(),
                    Some(_) => append(&mut text, piece),
                }
            }
            "thinking" => {
                let piece = block.thinking.as_deref().unwrap_or_default();
                append(&mut reasoning, piece);
                thinking_blocks.push(ThinkingBlock {
                    kind: "thinking",
                    thinking: block.thinking.clone(),
                    signature: block.signature.clone(),
                    data: None,
                });
            }
            "redacted_thinking" => thinking_blocks.push(ThinkingBlock {
                kind: "redacted_thinking",
                thinking: None,
                signature: None,
                data: block.data.clone(),
            }),
            "tool_use" => {
                let name = block.name.clone().unwrap_or_default();
                let input = block.input.map(RawValue::get).unwrap_or("{}");
                if json_mode && name == JSON_TOOL {
                    append(&mut text, input);
                    continue;
                }
                tool_calls.push(ToolCall {
                    id: block.id.clone().unwrap_or_default(),
                    kind: "function",
                    function: FunctionCall {
                        name,
                        arguments: Cow::Borrowed(input),
                    },
                });
            }
            // Server tools and citations-only blocks have no OpenAI equivalent in a reply.
            _ => {}
        }
    }
    let finish = reply
        .stop_reason
        .as_deref()
        .map(|s| finish_reason(s, json_mode));
    let content = match text {
        Some(t) => Some(t),
        None if tool_calls.is_empty() => Some(Cow::Borrowed("")),
        None => None,
    };
    let usage = reply.usage.as_ref().map(Usage::from_anthropic);
    let choices = [Choice {
        index: 0,
        message: Message {
            role: "assistant",
            content,
            reasoning_content: reasoning,
            tool_calls,
            thinking_blocks,
        },
        finish_reason: finish,
        logprobs: None,
    }];
    Ok(Reply {
        body: shape::reply_body(&reply.id, created, &reply.model, &choices, usage),
        usage,
        meta,
        usage_at: None,
    })
}

#[derive(Deserialize)]
struct ErrorEnvelope<'a> {
    #[serde(borrow)]
    error: ErrorBody<'a>,
}

/// Anthropic's `error` object: `{"type": "overloaded_error", "message": "…"}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody<'a> {
    #[serde(borrow, rename = "type", default)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub message: Cow<'a, str>,
}

const MAX_MESSAGE: usize = 500;

fn truncate(s: &str) -> String {
    let mut end = s.len().min(MAX_MESSAGE);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The HTTP status an Anthropic error type stands for (stream `error` events carry no status).
pub fn status_of(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// Classifies a non-2xx Messages reply. 529 (overloaded) and 5xx are retryable, as is
/// 429 with its `Retry-After`; the message is the upstream's, truncated.
pub fn classify(provider: &str, reply: ErrorReply<'_>) -> UpstreamError {
    let parsed = serde_json::from_slice::<ErrorEnvelope>(reply.body).ok();
    let (message, code) = match &parsed {
        Some(e) => (truncate(&e.error.message), Some(e.error.kind.to_string())),
        None => (format!("HTTP {} with no error message", reply.status), None),
    };
    UpstreamError::status(
        provider,
        StatusReply {
            status: reply.status,
            message,
            code,
            param: None,
            retry_after: reply.retry_after,
        },
    )
}

/// An `error` event in a stream (e.g. `overloaded_error` after the first byte).
pub fn stream_error(provider: &str, error: &ErrorBody<'_>) -> UpstreamError {
    UpstreamError::status(
        provider,
        StatusReply {
            status: status_of(&error.kind),
            message: truncate(&error.message),
            code: Some(error.kind.to_string()),
            param: None,
            retry_after: None,
        },
    )
}
