//! OpenAI-shaped bodies written by the translating adapters (Anthropic, Gemini): the
//! `chat.completion` reply and `chat.completion.chunk` chunks, serialised straight from
//! borrowed structs. Reasoning travels as `reasoning_content` (DeepSeek's and vLLM's
//! field) and, where a signature must survive a round trip, as `thinking_blocks`.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;

use super::Chunk;
use crate::api::Usage;

/// A complete tool call in a reply.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ToolCall<'a> {
    pub id: Cow<'a, str>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall<'a>,
}

/// A function call's name and its arguments as a JSON string.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FunctionCall<'a> {
    pub name: Cow<'a, str>,
    pub arguments: Cow<'a, str>,
}

/// A reasoning block kept whole so it can be sent back: `thinking` with its signature,
/// or `redacted_thinking` with its opaque data.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ThinkingBlock<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Cow<'a, str>>,
}

/// The assistant message of one choice.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Message<'a> {
    pub role: &'static str,
    /// `null` when the turn is only tool calls.
    pub content: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thinking_blocks: Vec<ThinkingBlock<'a>>,
}

/// One choice of a reply.
#[derive(Debug, Clone, Serialize)]
pub struct Choice<'a> {
    pub index: u32,
    pub message: Message<'a>,
    pub finish_reason: Option<&'static str>,
    pub logprobs: Option<()>,
}

#[derive(Serialize)]
struct ReplyBody<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [Choice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<crate::api::usage::OpenAiUsage>,
}

/// Writes a `chat.completion` body.
pub fn reply_body(
    id: &str,
    created: u64,
    model: &str,
    choices: &[Choice<'_>],
    usage: Option<Usage>,
) -> Bytes {
    let body = ReplyBody {
        id,
        object: "chat.completion",
        created,
        model,
        choices,
        usage: usage.map(|u| u.to_openai()),
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// A streamed tool-call fragment: the first carries id and name, later ones argument text.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCallDelta<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

/// The name (first fragment only) and a piece of the arguments.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a str>,
}

/// What one chunk adds to a choice.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<&'a [ToolCallDelta<'a>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<&'a [ThinkingBlock<'a>]>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: &'a Delta<'a>,
    finish_reason: Option<&'a str>,
    logprobs: Option<()>,
}

#[derive(Serialize)]
struct ChunkBody<'a, C: Serialize> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: C,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<crate::api::usage::OpenAiUsage>,
}

/// The fields every chunk of one stream repeats.
#[derive(Debug, Clone, Default)]
pub struct ChunkHeader {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl ChunkHeader {
    /// A chunk adding `delta` to choice `index`, with its finish reason if it is the last.
    pub fn delta(&self, index: u32, delta: &Delta<'_>, finish: Option<&str>) -> Chunk {
        let body = ChunkBody {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: [ChunkChoice {
                index,
                delta,
                finish_reason: finish,
                logprobs: None,
            }],
            usage: None,
        };
        Chunk {
            data: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            usage: None,
            usage_only: false,
        }
    }

    /// The usage-only chunk that ends a stream (`choices: []`), as OpenAI sends it.
    pub fn usage(&self, usage: Usage) -> Chunk {
        let body = ChunkBody {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: [(); 0],
            usage: Some(usage.to_openai()),
        };
        Chunk {
            data: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            usage: Some(usage),
            usage_only: true,
        }
    }
}

/// Seconds since the Unix epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_openai_shaped() {
        let header = ChunkHeader {
            id: "msg_1".into(),
            created: 7,
            model: "m".into(),
        };
        let calls = [ToolCallDelta {
            index: 0,
            id: Some("toolu_1"),
            kind: Some("function"),
            function: FunctionDelta {
                name: Some("f"),
                arguments: Some(""),
            },
        }];
        let c = header.delta(
            0,
            &Delta {
                tool_calls: Some(&calls),
                ..Delta::default()
            },
            None,
        );
        let v: serde_json::Value = serde_json::from_slice(&c.data).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert!(v["choices"][0]["finish_reason"].is_null());
        let u = header.usage(Usage {
            input: 3,
            output: 2,
            ..Usage::default()
        });
        let v: serde_json::Value = serde_json::from_slice(&u.data).unwrap();
        assert_eq!(v["choices"], serde_json::json!([]));
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert!(u.usage_only);
    }
}
