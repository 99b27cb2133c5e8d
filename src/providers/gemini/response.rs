//! Gemini `GenerateContentResponse` → OpenAI `chat.completion`, `usageMetadata` → `Usage`,
//! Gemini errors → `UpstreamError`. A blocked prompt, or a candidate blocked before it
//! said anything, is an error (`content_filter`), not an empty reply.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use super::super::chat::opt_cow;
use serde_json::value::RawValue;

use super::super::http::ErrorReply;
use super::super::shape::{self, Choice, FunctionCall, Message, ToolCall};
use super::super::{Reply, StatusReply, UpstreamError, UpstreamMeta};
use super::signature;
use crate::api::usage::Buckets;
use crate::api::Usage;

/// One `GenerateContentResponse` (a whole reply, or one stream event).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseIn<'a> {
    #[serde(borrow, default)]
    pub candidates: Vec<CandidateIn<'a>>,
    #[serde(borrow, default)]
    pub prompt_feedback: Option<FeedbackIn<'a>>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub model_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub response_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CandidateIn<'a> {
    #[serde(borrow, default)]
    pub content: Option<ContentOut<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub index: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct ContentOut<'a> {
    #[serde(borrow, default)]
    pub parts: Vec<PartOut<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartOut<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub text: Option<Cow<'a, str>>,
    #[serde(default)]
    pub thought: bool,
    #[serde(borrow, default)]
    pub function_call: Option<FunctionCallOut<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub thought_signature: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCallOut<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub args: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackIn<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub block_reason: Option<Cow<'a, str>>,
}

/// Gemini's `usageMetadata`: `promptTokenCount` includes the cached tokens;
/// `candidatesTokenCount` excludes the thoughts, counted apart. Gemini leaves out a
/// count that is zero, and a stream's chunks carry the counts so far as they go.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: Option<u64>,
    #[serde(default)]
    pub cached_content_token_count: Option<u64>,
    #[serde(default)]
    pub candidates_token_count: Option<u64>,
    #[serde(default)]
    pub thoughts_token_count: Option<u64>,
    #[serde(default)]
    pub tool_use_prompt_token_count: Option<u64>,
}

impl UsageMetadata {
    /// The normalised, disjoint buckets of a complete report (a count left out is zero).
    pub fn to_usage(&self) -> Usage {
        let prompt = self.prompt_token_count.unwrap_or(0);
        let cached = self.cached_content_token_count.unwrap_or(0).min(prompt);
        Usage {
            input: prompt - cached + self.tool_use_prompt_token_count.unwrap_or(0),
            cached_input: cached,
            cache_write: 0,
            cache_write_1h: 0,
            output: self.candidates_token_count.unwrap_or(0),
            reasoning: self.thoughts_token_count.unwrap_or(0),
            estimated: Buckets::NONE,
        }
    }

    /// The running usage of a stream that has not ended: a bucket whose count this
    /// report leaves out is not reported yet (it may be zero, or still to come). The
    /// prompt count covers the whole prompt side; Gemini has no cache writes.
    pub fn running(&self) -> Usage {
        let mut lacking = Buckets::NONE;
        if self.prompt_token_count.is_none() {
            lacking = lacking | Buckets::PROMPT;
        }
        if self.candidates_token_count.is_none() {
            lacking = lacking | Buckets::OUTPUT;
        }
        if self.thoughts_token_count.is_none() {
            lacking = lacking | Buckets::REASONING;
        }
        self.to_usage().lacking(lacking)
    }
}

/// Finish reasons that mean a safety system stopped the candidate.
pub fn is_blocked(reason: &str) -> bool {
    matches!(
        reason,
        "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "LANGUAGE"
    )
}

/// OpenAI's `finish_reason` for a Gemini `finishReason`.
pub fn finish_reason(reason: &str, called_tools: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        r if is_blocked(r) => "content_filter",
        _ if called_tools => "tool_calls",
        // STOP, OTHER, MALFORMED_FUNCTION_CALL and later additions.
        _ => "stop",
    }
}

/// The error for a prompt or reply Gemini's safety filters blocked: a 400 with code
/// `content_filter`, which the client sees as such (another backend is not tried).
pub fn blocked(provider: &str, what: &str, reason: &str) -> UpstreamError {
    UpstreamError::status(
        provider,
        StatusReply {
            status: 400,
            message: format!("Gemini blocked the {what} ({reason})"),
            code: Some("content_filter".into()),
            param: None,
            retry_after: None,
        },
    )
}

fn protocol(provider: &str, detail: String) -> UpstreamError {
    UpstreamError::protocol(provider, detail)
}

/// The id of the `n`th tool call a translator generates (Gemini sends none).
pub fn call_id(seed: u64, n: u64) -> String {
    format!("call_{:016x}", seed.wrapping_add(n))
}

/// Translates a complete reply; `model` names it when Gemini does not, `seed` makes tool-call ids.
pub fn parse_reply(
    provider: &str,
    body: &[u8],
    created: u64,
    model: &str,
    seed: u64,
    meta: UpstreamMeta,
) -> Result<Reply, UpstreamError> {
    let reply: ResponseIn = serde_json::from_slice(body).map_err(|e| {
        protocol(
            provider,
            format!("the reply is not a GenerateContentResponse ({e})"),
        )
    })?;
    if let Some(reason) = reply
        .prompt_feedback
        .as_ref()
        .and_then(|f| f.block_reason.as_deref())
    {
        return Err(blocked(provider, "prompt", reason));
    }
    if reply.candidates.is_empty() {
        return Err(protocol(provider, "the reply has no candidates".into()));
    }
    let mut calls = 0u64;
    let mut choices = Vec::with_capacity(reply.candidates.len());
    for (i, c) in reply.candidates.iter().enumerate() {
        let parts = c
            .content
            .as_ref()
            .map(|c| c.parts.as_slice())
            .unwrap_or_default();
        let reason = c.finish_reason.as_deref().unwrap_or("STOP");
        if parts.is_empty() && is_blocked(reason) {
            return Err(blocked(provider, "reply", reason));
        }
        let mut text: Option<Cow<str>> = None;
        let mut reasoning: Option<Cow<str>> = None;
        let mut tool_calls = Vec::new();
        for part in parts {
            if let Some(call) = &part.function_call {
                let base = call
                    .id
                    .as_deref()
                    .map(str::to_string)
                    .unwrap_or_else(|| call_id(seed, calls));
                calls += 1;
                tool_calls.push(ToolCall {
                    id: Cow::Owned(signature::encode(&base, part.thought_signature.as_deref())),
                    kind: "function",
                    function: FunctionCall {
                        name: call.name.clone(),
                        arguments: Cow::Borrowed(call.args.map(RawValue::get).unwrap_or("{}")),
                    },
                });
            } else if let Some(t) = part.text.as_deref() {
                let slot = if part.thought {
                    &mut reasoning
                } else {
                    &mut text
                };
                match slot {
                    Some(existing) => existing.to_mut().push_str(t),
                    None => *slot = part.text.clone(),
                }
            }
        }
        let finish = finish_reason(reason, !tool_calls.is_empty());
        let content = match text {
            Some(t) => Some(t),
            None if tool_calls.is_empty() => Some(Cow::Borrowed("")),
            None => None,
        };
        choices.push(Choice {
            index: c.index.unwrap_or(i as u32),
            message: Message {
                role: "assistant",
                content,
                reasoning_content: reasoning,
                tool_calls,
                thinking_blocks: Vec::new(),
            },
            finish_reason: Some(finish),
            logprobs: None,
        });
    }
    let usage = reply.usage_metadata.map(|u| u.to_usage());
    let id = reply.response_id.as_deref().unwrap_or("gemini");
    let model = reply.model_version.as_deref().unwrap_or(model);
    Ok(Reply {
        body: shape::reply_body(id, created, model, &choices, usage),
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

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow, default)]
    message: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    details: Vec<Detail<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    retry_delay: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    reason: Option<Cow<'a, str>>,
}

/// Parses a protobuf duration such as `"37s"` or `"1.5s"`.
fn proto_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

const MAX_MESSAGE: usize = 500;

/// Classifies a non-2xx Gemini reply: `{"error": {"code", "message", "status", "details"}}`.
/// 429 and 503 (overloaded) are retryable; a 429's `RetryInfo.retryDelay` stands in for a
/// missing `Retry-After`; an invalid key (a 400 at Google) is reported as the 401 it is.
pub fn classify(provider: &str, reply: ErrorReply<'_>) -> UpstreamError {
    let body = reply.body.trim_ascii_start();
    // The non-SSE stream endpoint wraps errors in an array.
    let body = match body.first() {
        Some(b'[') => body.get(1..).unwrap_or_default(),
        _ => body,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = ErrorEnvelope::deserialize(&mut de).ok();
    let mut status = reply.status;
    let mut retry_after = reply.retry_after;
    let (message, code) = match &parsed {
        Some(e) => {
            let mut end = e.error.message.len().min(MAX_MESSAGE);
            while !e.error.message.is_char_boundary(end) {
                end -= 1;
            }
            for d in &e.error.details {
                if retry_after.is_none() {
                    retry_after = d.retry_delay.as_deref().and_then(proto_duration);
                }
                if d.reason.as_deref() == Some("API_KEY_INVALID") {
                    status = 401;
                }
            }
            (
                e.error.message[..end].to_string(),
                e.error.status.as_deref().map(str::to_string),
            )
        }
        None => (format!("HTTP {} with no error message", reply.status), None),
    };
    UpstreamError::status(
        provider,
        StatusReply {
            status,
            message,
            code,
            param: None,
            retry_after,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_buckets_are_disjoint() {
        let u: UsageMetadata = serde_json::from_str(
            r#"{"promptTokenCount":100,"cachedContentTokenCount":60,"candidatesTokenCount":20,"thoughtsTokenCount":30,"toolUsePromptTokenCount":5,"totalTokenCount":155}"#,
        )
        .unwrap();
        let n = u.to_usage();
        assert_eq!(
            (n.input, n.cached_input, n.output, n.reasoning),
            (45, 60, 20, 30)
        );
        assert_eq!(u.running(), n, "a report with every count is complete");
        let so_far: UsageMetadata = serde_json::from_str(
            r#"{"promptTokenCount":100,"cachedContentTokenCount":60,"thoughtsTokenCount":30}"#,
        )
        .unwrap();
        let r = so_far.running();
        assert_eq!((r.input, r.cached_input, r.reasoning), (40, 60, 30));
        assert_eq!(r.estimated, Buckets::OUTPUT, "candidates not reported yet");
    }

    #[test]
    fn errors_are_classified() {
        let e = classify(
            "g",
            ErrorReply {
                status: 429,
                retry_after: None,
                body: br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#,
            },
        );
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(37)));
        let e = classify(
            "g",
            ErrorReply {
                status: 400,
                retry_after: None,
                body: br#"[{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}]"#,
            },
        );
        assert!(e.status == Some(401), "{e:?}");
        let e = classify(
            "g",
            ErrorReply {
                status: 503,
                retry_after: None,
                body: br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
            },
        );
        assert!(e.is_retryable());
    }
}
