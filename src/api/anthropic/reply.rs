//! OpenAI `chat.completion` → Anthropic `message`: reasoning becomes thinking blocks,
//! text a text block, tool calls `tool_use` blocks with their arguments parsed, the
//! finish reason a `stop_reason`, and the normalised usage Anthropic's buckets.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::api::chat_view::{text_of, ReplyIn};
use crate::api::usage::AnthropicUsage;
use crate::api::Usage;

/// A content block of a Messages reply.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Thinking {
        thinking: Cow<'a, str>,
        signature: Cow<'a, str>,
    },
    RedactedThinking {
        data: Cow<'a, str>,
    },
    Text {
        text: Cow<'a, str>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: Cow<'a, str>,
        input: Box<RawValue>,
    },
}

#[derive(Serialize)]
struct MessageOut<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<BlockOut<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    usage: AnthropicUsage,
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// A tool call's arguments as a JSON object; text that is not one is kept under `arguments`.
pub fn tool_input(arguments: &str) -> Box<RawValue> {
    let trimmed = arguments.trim();
    let fallback = || {
        serde_json::value::to_raw_value(&serde_json::json!({ "arguments": arguments }))
            .unwrap_or_default()
    };
    if trimmed.is_empty() {
        return RawValue::from_string("{}".into()).unwrap_or_else(|_| fallback());
    }
    match RawValue::from_string(trimmed.to_string()) {
        Ok(v) if v.get().starts_with('{') => v,
        _ => fallback(),
    }
}

/// The Messages id for a reply whose OpenAI id is `upstream`: Anthropic clients expect
/// `msg_…`. The upstream's id is kept in it (letters and digits, without OpenAI's
/// `chatcmpl-` prefix) so a reply can still be traced; a missing one gets a random id.
pub fn message_id(upstream: &str) -> String {
    if upstream.starts_with("msg_") {
        return upstream.to_string();
    }
    let kept: String = upstream
        .strip_prefix("chatcmpl-")
        .unwrap_or(upstream)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    if kept.is_empty() {
        format!("msg_{:024x}", rand::random::<u128>() >> 32)
    } else {
        format!("msg_{kept}")
    }
}

/// Translates an OpenAI reply body to a Messages reply; `usage` is the normalised usage
/// the backend reported (zeros when it reported none).
pub fn from_openai(body: &[u8], usage: Option<Usage>) -> Result<Vec<u8>, String> {
    let reply: ReplyIn = serde_json::from_slice(body)
        .map_err(|e| format!("the reply is not a chat completion ({e})"))?;
    let choice = reply
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| "the reply has no choices".to_string())?;
    let message = choice
        .message
        .ok_or_else(|| "the reply's choice has no message".to_string())?;
    let mut content = Vec::new();
    let reasoning = text_of(message.reasoning_content);
    if message.thinking_blocks.is_empty() {
        if let Some(thinking) = reasoning.clone().filter(|r| !r.is_empty()) {
            content.push(BlockOut::Thinking {
                thinking,
                signature: Cow::Borrowed(""),
            });
        }
    }
    for block in &message.thinking_blocks {
        match block.kind.as_ref() {
            "redacted_thinking" => content.push(BlockOut::RedactedThinking {
                data: text_of(block.data).unwrap_or_default(),
            }),
            _ => content.push(BlockOut::Thinking {
                thinking: text_of(block.thinking)
                    .or_else(|| reasoning.clone())
                    .unwrap_or_default(),
                signature: text_of(block.signature).unwrap_or_default(),
            }),
        }
    }
    let text = text_of(message.content).or_else(|| text_of(message.refusal));
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        content.push(BlockOut::Text { text });
    }
    for call in message.tool_calls {
        let input = tool_input(&call.function.arguments);
        content.push(BlockOut::ToolUse {
            id: call.id,
            name: call.function.name,
            input,
        });
    }
    let out = MessageOut {
        id: message_id(&reply.id),
        kind: "message",
        role: "assistant",
        model: &reply.model,
        content,
        stop_reason: Some(stop_reason(
            choice.finish_reason.as_deref().unwrap_or("stop"),
        )),
        stop_sequence: None,
        usage: usage.unwrap_or_default().to_anthropic(),
    };
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}
