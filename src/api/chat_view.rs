//! Borrowed, typed views of an OpenAI `chat.completion` reply and its stream chunks, as
//! the translating front ends (Anthropic Messages, Responses) read them to write their
//! own shapes. Views only: unknown fields are skipped, strings borrowed where they can be.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// An optional string borrowed from the input when it has no escapes (serde borrows a
/// bare `Cow<str>` field, but not one inside an `Option`).
pub fn opt_cow<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Option::<Borrowed<'a>>::deserialize(d).map(|o| o.map(|b| b.0))
}

impl<'a> ChunkIn<'a> {
    /// Reads one chunk (the JSON after `data: `). The bytes are checked as UTF-8 once,
    /// not string by string as a byte-slice parse does.
    pub fn parse(data: &'a [u8]) -> Result<ChunkIn<'a>, serde_json::Error> {
        let text =
            std::str::from_utf8(data).map_err(<serde_json::Error as serde::de::Error>::custom)?;
        serde_json::from_str(text)
    }
}

/// A `chat.completion.chunk`.
#[derive(Deserialize)]
pub struct ChunkIn<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub choices: Vec<ChoiceIn<'a>>,
}

/// One choice of a chunk.
#[derive(Deserialize)]
pub struct ChoiceIn<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow, default)]
    pub delta: Option<DeltaIn<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// What a chunk adds to its choice.
#[derive(Deserialize)]
pub struct DeltaIn<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "reasoning", deserialize_with = "opt_cow")]
    pub reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tool_calls: Vec<ToolDeltaIn<'a>>,
    #[serde(borrow, default)]
    pub thinking_blocks: Vec<ThinkingDeltaIn<'a>>,
}

/// A streamed tool-call fragment: the first names the call, later ones add arguments.
#[derive(Deserialize)]
pub struct ToolDeltaIn<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub function: Option<FunctionDeltaIn<'a>>,
}

/// A fragment's function name and argument text.
#[derive(Deserialize)]
pub struct FunctionDeltaIn<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub arguments: Option<Cow<'a, str>>,
}

/// A streamed reasoning block's signature or redacted data.
#[derive(Deserialize)]
pub struct ThinkingDeltaIn<'a> {
    #[serde(borrow, rename = "type", default)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub signature: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub data: Option<Cow<'a, str>>,
}

/// A complete `chat.completion`.
#[derive(Deserialize)]
pub struct ReplyIn<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub model: Cow<'a, str>,
    #[serde(borrow, default)]
    pub choices: Vec<ReplyChoiceIn<'a>>,
}

/// One choice of a reply.
#[derive(Deserialize)]
pub struct ReplyChoiceIn<'a> {
    #[serde(borrow, default)]
    pub message: Option<MessageIn<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// The assistant message of a reply's choice.
#[derive(Deserialize)]
pub struct MessageIn<'a> {
    #[serde(borrow, default)]
    pub content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub refusal: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "reasoning")]
    pub reasoning_content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub tool_calls: Vec<ToolCallIn<'a>>,
    #[serde(borrow, default)]
    pub thinking_blocks: Vec<ReplyThinkingIn<'a>>,
}

/// A complete tool call of a reply.
#[derive(Deserialize)]
pub struct ToolCallIn<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub function: ReplyFunctionIn<'a>,
}

/// A called function's name and arguments (JSON text).
#[derive(Deserialize)]
pub struct ReplyFunctionIn<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub arguments: Cow<'a, str>,
}

/// A reasoning block of a reply, with its signature or redacted data.
#[derive(Deserialize)]
pub struct ReplyThinkingIn<'a> {
    #[serde(borrow, rename = "type", default)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub thinking: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub signature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
}

/// The text of a string field, or of an array of text parts joined; `None` otherwise.
pub fn text_of(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?;
    match raw.get().as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned),
        // An array of text parts: join their text.
        Some(b'[') => {
            #[derive(Deserialize)]
            struct Part {
                #[serde(default)]
                text: String,
            }
            let parts: Vec<Part> = serde_json::from_str(raw.get()).ok()?;
            Some(Cow::Owned(parts.into_iter().map(|p| p.text).collect()))
        }
        _ => None,
    }
}
