//! Anthropic Messages reply → OpenAI `chat.completion`, Anthropic errors → `UpstreamError`.
//! Text blocks join into `content`, `tool_use` blocks become `tool_calls`, thinking
//! becomes `reasoning_content` plus `thinking_blocks` (signatures kept for the next turn).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;

use super::super::chat::opt_cow;
use serde_json::value::RawValue;

use super::super::http::ErrorReply;
use super::super::shape::{self, Choice, FunctionCall, Message, ThinkingBlock, ToolCall};
use super::super::{Reply, StatusReply, UpstreamError, UpstreamMeta};
use super::request::JSON_TOOL;
use crate::api::usage::{AnthropicUsage, OpenAiUsage};
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
    if let (Some(text), None, true, true) = (
        &content,
        &reasoning,
        tool_calls.is_empty(),
        thinking_blocks.is_empty(),
    ) {
        return Ok(Reply {
            body: text_reply_body(&reply.id, created, &reply.model, text, finish, usage),
            usage,
            meta,
            usage_at: None,
        });
    }
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

/// Room for a text reply's fields beside its id, model and text.
const TEXT_REPLY_HEAD: usize = 320;

/// `shape::reply_body` of a reply whose one choice is text only (no reasoning, tool
/// calls or thinking blocks), written directly rather than through serde's structs:
/// the same bytes, its strings escaped by serde_json as there.
fn text_reply_body(
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    finish: Option<&str>,
    usage: Option<Usage>,
) -> Bytes {
    let mut out = Vec::with_capacity(TEXT_REPLY_HEAD + id.len() + model.len() + text.len());
    out.extend_from_slice(br#"{"id":"#);
    string(&mut out, id);
    out.extend_from_slice(br#","object":"chat.completion","created":"#);
    number(&mut out, Some(created));
    out.extend_from_slice(br#","model":"#);
    string(&mut out, model);
    out.extend_from_slice(br#","choices":[{"index":0,"message":{"role":"assistant","content":"#);
    string(&mut out, text);
    out.extend_from_slice(br#"},"finish_reason":"#);
    match finish {
        Some(f) => string(&mut out, f),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","logprobs":null}]"#);
    if let Some(u) = usage {
        out.extend_from_slice(br#","usage":"#);
        openai_usage(&mut out, &u.to_openai());
    }
    out.push(b'}');
    Bytes::from(out)
}

/// `usage` as serde writes `OpenAiUsage` (its `null`s and left-out fields alike).
fn openai_usage(out: &mut Vec<u8>, u: &OpenAiUsage) {
    out.extend_from_slice(br#"{"prompt_tokens":"#);
    number(out, u.prompt_tokens);
    if let Some(n) = u.completion_tokens {
        out.extend_from_slice(br#","completion_tokens":"#);
        number(out, Some(n));
    }
    out.extend_from_slice(br#","total_tokens":"#);
    number(out, u.total_tokens);
    if let Some(d) = &u.prompt_tokens_details {
        out.extend_from_slice(br#","prompt_tokens_details":{"cached_tokens":"#);
        number(out, d.cached_tokens);
        out.push(b'}');
    }
    if let Some(d) = &u.completion_tokens_details {
        out.extend_from_slice(br#","completion_tokens_details":{"reasoning_tokens":"#);
        number(out, d.reasoning_tokens);
        out.push(b'}');
    }
    for (name, n) in [
        (
            &br#","cache_creation_input_tokens":"#[..],
            u.cache_creation_input_tokens,
        ),
        (br#","prompt_cache_hit_tokens":"#, u.prompt_cache_hit_tokens),
        (br#","cached_tokens":"#, u.cached_tokens),
    ] {
        if n.is_some() {
            out.extend_from_slice(name);
            number(out, n);
        }
    }
    out.push(b'}');
}

fn number(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string as serde_json writes it.
fn string(out: &mut Vec<u8>, s: &str) {
    // Writing into a vector cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usage() -> impl Strategy<Value = Option<Usage>> {
        proptest::option::of(any::<[u64; 5]>().prop_map(|n| {
            let mut u = Usage::default();
            [
                u.input,
                u.cached_input,
                u.cache_write,
                u.output,
                u.reasoning,
            ] = n;
            // A cache write is written only when there is one.
            u.cache_write %= 3;
            u
        }))
    }

    proptest! {
        /// A text reply is written byte for byte as `shape::reply_body` writes it.
        #[test]
        fn text_reply_body_is_shapes(
            id in "\\PC{0,12}|[\"\\\\\u{0}-\u{1f}a-z]{0,6}",
            model in "\\PC{0,12}",
            text in "\\PC{0,40}|[\"\\\\\u{0}-\u{1f}\u{7f}-\u{a0}\u{2028}a-z]{0,12}",
            created in any::<u64>(),
            finish in proptest::option::of(prop_oneof![Just("stop"), Just("length"), Just("tool_calls")]),
            usage in usage(),
        ) {
            let choices = [Choice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: Some(Cow::Borrowed(text.as_str())),
                    reasoning_content: None,
                    tool_calls: Vec::new(),
                    thinking_blocks: Vec::new(),
                },
                finish_reason: finish,
                logprobs: None,
            }];
            let expected = shape::reply_body(&id, created, &model, &choices, usage);
            let written = text_reply_body(&id, created, &model, &text, finish, usage);
            prop_assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&expected)
            );
        }

        /// So is every usage `OpenAiUsage` can hold, its absent fields included.
        #[test]
        fn openai_usage_is_serdes(
            fields in proptest::collection::vec(proptest::option::of(any::<u64>()), 8),
            details in (any::<bool>(), any::<bool>()),
        ) {
            let u = OpenAiUsage {
                prompt_tokens: fields[0],
                completion_tokens: fields[1],
                total_tokens: fields[2],
                prompt_tokens_details: details.0.then_some(crate::api::usage::PromptDetails {
                    cached_tokens: fields[3],
                }),
                completion_tokens_details: details.1.then_some(
                    crate::api::usage::CompletionDetails {
                        reasoning_tokens: fields[4],
                    },
                ),
                cache_creation_input_tokens: fields[5],
                prompt_cache_hit_tokens: fields[6],
                cached_tokens: fields[7],
            };
            let mut out = Vec::new();
            openai_usage(&mut out, &u);
            prop_assert_eq!(
                String::from_utf8_lossy(&out),
                serde_json::to_string(&u).unwrap()
            );
        }
    }
}
