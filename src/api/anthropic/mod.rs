//! Front-end wire types for Anthropic's Messages API (`POST /v1/messages`) and their
//! translation to and from the gateway's OpenAI lingua franca: the request here, the
//! reply in `reply`, the stream in `stream`. Pure: no I/O. Fields the OpenAI shape
//! cannot carry are refused with a 400 naming them, never dropped, except the few
//! listed in `docs/adapters.md` that carry no meaning for the output.

pub mod reply;
pub mod stream;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::chat_out::{
    ChatOut, ContentOut, FileOut, FormatOut, FunctionOut, ImageOut, Json, MessageOut, NamedOut,
    PartOut, SchemaOut, ThinkingOut, ToolCallOut, ToolChoiceOut, ToolFunctionOut, ToolOut,
};
use super::openai::{read_token_count, read_typed, read_user, ChatRequest, RawObject};
use super::ApiError;

/// A `/v1/messages` request: the client's body as written (kept for Anthropic backends,
/// which get it with only `model` rewritten) and its OpenAI translation for routing and
/// for every other backend.
#[derive(Debug, Clone)]
pub struct MessagesRequest {
    pub native: RawObject,
    pub chat: ChatRequest,
    pub stream: bool,
    /// The first part of the request only an Anthropic backend can take (a server tool,
    /// an MCP server, …): other backends refuse the call naming it.
    pub native_only: Option<NativeOnly>,
}

/// A field the OpenAI translation cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeOnly {
    pub field: String,
    pub detail: String,
}

/// Records the first field only Anthropic backends can take.
fn note(only: &mut Option<NativeOnly>, field: impl Into<String>, what: &str) {
    if only.is_none() {
        *only = Some(NativeOnly {
            field: field.into(),
            detail: format!("{what} has no equivalent outside the Anthropic Messages API"),
        });
    }
}

/// Top-level Messages fields that carry no meaning for the output on other backends:
/// hints, routing preferences, and `context_management` (Anthropic's server-side
/// clearing of old thinking and tool results; another backend sees the conversation as
/// sent).
const IGNORED: &[&str] = &[
    "service_tier",
    "bazaar",
    "models",
    "provider",
    "context_management",
];

fn field_error(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message)
}

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    content: &'a RawValue,
}

/// One Messages content block, as far as translation reads it.
#[derive(Deserialize)]
struct BlockIn<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<SourceIn<'a>>,
    #[serde(borrow, default)]
    title: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_use_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    thinking: Option<&'a RawValue>,
    #[serde(borrow, default)]
    signature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SourceIn<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    url: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolIn<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: &'a RawValue,
    #[serde(borrow, default)]
    description: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input_schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolChoiceIn<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct ThinkingIn<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(default)]
    budget_tokens: Option<u64>,
}

/// `output_config`: `effort` (how much the model spends, a hint without an OpenAI
/// equivalent that would not also demand a reasoning model) and `format`.
#[derive(Deserialize)]
struct OutputConfigIn<'a> {
    #[serde(borrow, default)]
    format: Option<OutputFormatIn<'a>>,
}

#[derive(Deserialize)]
struct OutputFormatIn<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MetadataIn<'a> {
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
}

/// OpenAI's `reasoning_effort` for an Anthropic thinking budget.
pub fn effort_for_budget(budget: u64) -> &'static str {
    match budget {
        0..2048 => "low",
        2048..8192 => "medium",
        _ => "high",
    }
}

impl MessagesRequest {
    /// Parses a Messages body and translates it; every error names the field.
    pub fn parse(body: &[u8]) -> Result<MessagesRequest, ApiError> {
        let native = RawObject::parse(body)?;
        let (chat, native_only) = to_openai(&native)?;
        let stream = chat.stream;
        Ok(MessagesRequest {
            native,
            chat,
            stream,
            native_only,
        })
    }
}

/// Translates a Messages body (already split into fields) to an OpenAI chat request, with
/// the first part of it only Anthropic backends can take (left out of the translation).
pub fn to_openai(fields: &RawObject) -> Result<(ChatRequest, Option<NativeOnly>), ApiError> {
    let mut only = None;
    let mut out = ChatOut::default();
    let mut system: Option<MessageOut> = None;
    let mut has_max_tokens = false;
    let mut parallel = true;
    for (key, raw) in fields.iter() {
        match key {
            "model" => out.model = Some(raw),
            "max_tokens" => {
                out.cap = read_token_count(key, raw)?;
                out.max_tokens = Some(raw);
                has_max_tokens = out.cap.is_some();
            }
            "stream" => {
                out.stream = Some(
                    serde_json::from_str(raw.get())
                        .map_err(|_| field_error(key, "`stream` must be a boolean."))?,
                )
            }
            "temperature" | "top_p" => {
                read_typed::<f64>(key, raw, "a number")?;
                match key {
                    "temperature" => out.temperature = Some(raw),
                    _ => out.top_p = Some(raw),
                }
            }
            "top_k" => out.top_k = Some(raw),
            "stop_sequences" => out.stop = Some(raw),
            "metadata" => {
                let m: MetadataIn = serde_json::from_str(raw.get())
                    .map_err(|_| field_error(key, "`metadata` must be an object."))?;
                out.user = match m.user_id {
                    Some(id) => read_user("metadata.user_id", id)?,
                    None => None,
                };
            }
            "system" => system = Some(system_message(raw, "system")?),
            "messages" => out.messages = messages(raw, &mut only)?,
            "tools" => out.tools = tools(raw, &mut only)?,
            "tool_choice" => {
                let c: ToolChoiceIn = serde_json::from_str(raw.get()).map_err(|_| {
                    field_error(key, "`tool_choice` must be an object with a `type`.")
                })?;
                parallel = !c.disable_parallel_tool_use.unwrap_or(false);
                out.tool_choice = Some(match c.kind.as_ref() {
                    "auto" => ToolChoiceOut::Mode("auto"),
                    "any" => ToolChoiceOut::Mode("required"),
                    "none" => ToolChoiceOut::Mode("none"),
                    "tool" => {
                        let name = c.name.ok_or_else(|| {
                            field_error("tool_choice.name", "`tool_choice.name` is required.")
                        })?;
                        if !name.get().starts_with('"') {
                            return Err(field_error(
                                "tool_choice.name",
                                "`tool_choice.name` must be a string.",
                            ));
                        }
                        ToolChoiceOut::Function {
                            kind: "function",
                            function: NamedOut { name },
                        }
                    }
                    other => {
                        return Err(field_error(
                            "tool_choice.type",
                            format!(
                            "`tool_choice.type` must be auto, any, tool or none, not `{other}`."
                        ),
                        ))
                    }
                });
            }
            "thinking" => {
                let t: ThinkingIn = serde_json::from_str(raw.get())
                    .map_err(|_| field_error(key, "`thinking` must be an object with a `type`."))?;
                if t.kind == "enabled" {
                    out.reasoning_effort =
                        Some(effort_for_budget(t.budget_tokens.unwrap_or(1024)).into());
                }
            }
            "output_config" => out.response_format = output_format(raw)?,
            k if IGNORED.contains(&k) => {}
            other => note(&mut only, other, &format!("`{other}`")),
        }
    }
    if !has_max_tokens {
        return Err(field_error("max_tokens", "`max_tokens` is required."));
    }
    if !parallel {
        out.parallel_tool_calls = Some(false);
    }
    if let Some(system) = system {
        out.messages.insert(0, system);
    }
    Ok((out.into_request()?, only))
}

/// `output_config.format` as a `response_format`; `effort` is a hint left out.
fn output_format(raw: &RawValue) -> Result<Option<FormatOut<'_>>, ApiError> {
    let config: OutputConfigIn = serde_json::from_str(raw.get())
        .map_err(|_| field_error("output_config", "`output_config` must be an object."))?;
    let Some(format) = config.format else {
        return Ok(None);
    };
    if format.kind != "json_schema" {
        return Err(field_error(
            "output_config.format.type",
            format!(
                "`output_config.format.type` must be json_schema, not `{}`.",
                format.kind
            ),
        ));
    }
    let schema = format.schema.filter(|s| s.get() != "null").ok_or_else(|| {
        field_error(
            "output_config.format.schema",
            "`output_config.format.schema` is required.",
        )
    })?;
    Ok(Some(FormatOut::JsonSchema {
        json_schema: SchemaOut {
            name: Json::Str("output".into()),
            schema,
            strict: Some(true),
            description: None,
        },
    }))
}

/// System text as a system message: the top-level `system` (`path` "system") or a
/// `system` turn inside `messages` (as Claude Code sends its environment notes).
fn system_message<'a>(raw: &'a RawValue, path: &str) -> Result<MessageOut<'a>, ApiError> {
    let content = match raw.get().as_bytes().first() {
        Some(b'"') => ContentOut::Raw(raw),
        Some(b'[') => {
            let blocks: Vec<BlockIn> = serde_json::from_str(raw.get()).map_err(|_| {
                field_error(
                    path,
                    format!("`{path}` must be a string or an array of text blocks."),
                )
            })?;
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.into_iter().enumerate() {
                if b.kind != "text" {
                    return Err(field_error(
                        format!("{path}[{i}].type"),
                        format!("`{path}` blocks must be text."),
                    ));
                }
                parts.push(PartOut::Text {
                    text: required(b.text, &format!("{path}[{i}].text"))?,
                });
            }
            ContentOut::simplest(parts)
        }
        _ => {
            return Err(field_error(
                path,
                format!("`{path}` must be a string or an array of text blocks."),
            ))
        }
    };
    Ok(MessageOut::plain("system", Some(content)))
}

fn required<'a>(v: Option<&'a RawValue>, field: &str) -> Result<&'a RawValue, ApiError> {
    v.ok_or_else(|| field_error(field, format!("`{field}` is required.")))
}

fn messages<'a>(
    raw: &'a RawValue,
    only: &mut Option<NativeOnly>,
) -> Result<Vec<MessageOut<'a>>, ApiError> {
    let list: Vec<MessageIn> = serde_json::from_str(raw.get()).map_err(|_| {
        field_error(
            "messages",
            "`messages` must be an array of objects with `role` and `content`.",
        )
    })?;
    if list.is_empty() {
        return Err(field_error("messages", "`messages` must not be empty."));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.into_iter().enumerate() {
        let path = format!("messages[{i}]");
        let role = match m.role.as_ref() {
            "user" => "user",
            "assistant" => "assistant",
            "system" => {
                out.push(system_message(m.content, &format!("{path}.content"))?);
                continue;
            }
            other => {
                return Err(field_error(
                    format!("{path}.role"),
                    format!("`{path}.role` must be user, assistant or system, not `{other}`."),
                ))
            }
        };
        if m.content.get().starts_with('"') {
            out.push(MessageOut::plain(role, Some(ContentOut::Raw(m.content))));
            continue;
        }
        let blocks: Vec<BlockIn> = serde_json::from_str(m.content.get()).map_err(|_| {
            field_error(
                format!("{path}.content"),
                format!("`{path}.content` must be a string or an array of content blocks."),
            )
        })?;
        if role == "user" {
            user_blocks(blocks, &path, &mut out, only)?;
        } else {
            out.push(assistant_blocks(blocks, &path, only)?);
        }
    }
    Ok(out)
}

/// A user turn: tool results become `tool` messages (first, as OpenAI wants them right
/// after the assistant's calls), the rest one user message.
fn user_blocks<'a>(
    blocks: Vec<BlockIn<'a>>,
    path: &str,
    out: &mut Vec<MessageOut<'a>>,
    only: &mut Option<NativeOnly>,
) -> Result<(), ApiError> {
    let mut parts = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let field = format!("{path}.content[{j}]");
        match b.kind.as_ref() {
            "tool_result" => {
                let id = required(b.tool_use_id, &format!("{field}.tool_use_id"))?;
                let content = match b.content {
                    None => None,
                    Some(c) if c.get().starts_with('"') => Some(ContentOut::Raw(c)),
                    Some(c) => {
                        let inner: Vec<BlockIn> = serde_json::from_str(c.get()).map_err(|_| {
                            field_error(format!("{field}.content"), "must be a string or blocks")
                        })?;
                        let mut texts = Vec::with_capacity(inner.len());
                        for (k, ib) in inner.into_iter().enumerate() {
                            if ib.kind != "text" {
                                note(
                                    only,
                                    format!("{field}.content[{k}]"),
                                    "a non-text tool result",
                                );
                                continue;
                            }
                            texts.push(PartOut::Text {
                                text: required(ib.text, &format!("{field}.content[{k}].text"))?,
                            });
                        }
                        Some(ContentOut::Parts(texts))
                    }
                };
                let mut m =
                    MessageOut::plain("tool", content.or(Some(ContentOut::Text("".into()))));
                m.tool_call_id = Some(id);
                out.push(m);
            }
            _ => {
                if let Some(p) = part(b, &field, only)? {
                    parts.push(p);
                }
            }
        }
    }
    if !parts.is_empty() {
        out.push(MessageOut::plain("user", Some(ContentOut::simplest(parts))));
    }
    Ok(())
}

/// A user block as an OpenAI part; `None` (noted) for blocks only Anthropic takes.
fn part<'a>(
    b: BlockIn<'a>,
    field: &str,
    only: &mut Option<NativeOnly>,
) -> Result<Option<PartOut<'a>>, ApiError> {
    let untranslatable = |only: &mut Option<NativeOnly>, field: String, what: &str| {
        note(only, field, what);
        Ok(None)
    };
    match b.kind.as_ref() {
        "text" => Ok(Some(PartOut::Text {
            text: required(b.text, &format!("{field}.text"))?,
        })),
        "image" => {
            let source = b
                .source
                .ok_or_else(|| field_error(format!("{field}.source"), "is required"))?;
            let url = match source.kind.as_ref() {
                "base64" => Json::Str(
                    format!(
                        "data:{};base64,{}",
                        source.media_type.as_deref().unwrap_or("image/png"),
                        source.data.as_deref().unwrap_or_default()
                    )
                    .into(),
                ),
                "url" => Json::Raw(required(source.url, &format!("{field}.source.url"))?),
                _ => return untranslatable(only, format!("{field}.source"), "this image source"),
            };
            Ok(Some(PartOut::ImageUrl {
                image_url: ImageOut { url, detail: None },
            }))
        }
        "document" => {
            let source = b
                .source
                .ok_or_else(|| field_error(format!("{field}.source"), "is required"))?;
            match source.kind.as_ref() {
                "base64" => Ok(Some(PartOut::File {
                    file: FileOut {
                        file_data: Some(Json::Str(
                            format!(
                                "data:{};base64,{}",
                                source.media_type.as_deref().unwrap_or("application/pdf"),
                                source.data.as_deref().unwrap_or_default()
                            )
                            .into(),
                        )),
                        file_id: None,
                        filename: b.title,
                    },
                })),
                _ => untranslatable(
                    only,
                    format!("{field}.source"),
                    "a document that is not inline base64",
                ),
            }
        }
        other => untranslatable(
            only,
            format!("{field}.type"),
            &format!("a `{other}` block in a user turn"),
        ),
    }
}

fn assistant_blocks<'a>(
    blocks: Vec<BlockIn<'a>>,
    path: &str,
    only: &mut Option<NativeOnly>,
) -> Result<MessageOut<'a>, ApiError> {
    let mut texts: Vec<PartOut<'a>> = Vec::new();
    let mut m = MessageOut::plain("assistant", None);
    let mut reasoning = String::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let field = format!("{path}.content[{j}]");
        match b.kind.as_ref() {
            "text" => texts.push(PartOut::Text {
                text: required(b.text, &format!("{field}.text"))?,
            }),
            "tool_use" => {
                let input = b.input.map(RawValue::get).unwrap_or("{}");
                m.tool_calls.push(ToolCallOut {
                    id: required(b.id, &format!("{field}.id"))?,
                    kind: "function",
                    function: FunctionOut {
                        name: Json::Raw(required(b.name, &format!("{field}.name"))?),
                        arguments: Json::Str(input.into()),
                    },
                });
            }
            "thinking" => {
                if let Some(t) = b.thinking {
                    let text: Cow<str> = serde_json::from_str(t.get()).unwrap_or_default();
                    reasoning.push_str(&text);
                }
                m.thinking_blocks.push(ThinkingOut {
                    kind: "thinking",
                    thinking: b.thinking,
                    signature: b.signature,
                    data: None,
                });
            }
            "redacted_thinking" => m.thinking_blocks.push(ThinkingOut {
                kind: "redacted_thinking",
                thinking: None,
                signature: None,
                data: b.data,
            }),
            other => note(
                only,
                format!("{field}.type"),
                &format!("a `{other}` block in an assistant turn"),
            ),
        }
    }
    if !reasoning.is_empty() {
        m.reasoning_content = Some(reasoning);
    }
    m.content = (!texts.is_empty()).then(|| ContentOut::simplest(texts));
    Ok(m)
}

fn tools<'a>(
    raw: &'a RawValue,
    only: &mut Option<NativeOnly>,
) -> Result<Vec<ToolOut<'a>>, ApiError> {
    let list: Vec<ToolIn> = serde_json::from_str(raw.get())
        .map_err(|_| field_error("tools", "`tools` must be an array of tools with a `name`."))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
            note(
                only,
                format!("tools[{i}].type"),
                &format!("the server tool `{kind}`"),
            );
            continue;
        }
        out.push(ToolOut {
            kind: "function",
            function: ToolFunctionOut {
                name: Json::Raw(t.name),
                description: t.description,
                parameters: t.input_schema,
                strict: None,
            },
        });
    }
    Ok(out)
}

/// The Messages error body: `{"type":"error","error":{"type","message"}}`, its type
/// chosen from the status as Anthropic's API does.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    };
    serde_json::to_vec(&serde_json::json!({
        "type": "error",
        "error": {"type": kind, "message": message}
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests;
