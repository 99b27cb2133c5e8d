//! OpenAI chat request → Anthropic Messages request body. System and developer turns
//! become `system`; tool results become `tool_result` blocks in a user turn; turns of the
//! same role are merged; `response_format` is emulated with one forced tool. Whatever the
//! Messages API cannot express is refused with the field's path, never dropped.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::super::chat::{
    self, is_off, split_data_url, unsupported, ContentIn, MessageIn, PartIn, ToolChoiceIn,
    IGNORED_FIELDS,
};
use super::super::UpstreamError;
use crate::api::openai::{ChatRequest, GATEWAY_FIELDS};

/// `max_tokens` is required by the Messages API; this is sent when the client set none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Room for a Messages body's fields beside its messages (model, `max_tokens`, the
/// fields' names), so the usual body is written without growing its buffer.
const BODY_HEAD: usize = 256;
/// The forced tool that carries a `response_format` reply.
pub const JSON_TOOL: &str = "json_response";

/// An upstream body and how to read its reply.
#[derive(Debug)]
pub struct Built {
    pub body: Vec<u8>,
    /// `response_format` was emulated: the `JSON_TOOL` call is the reply's content.
    pub json_mode: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<Content<'a>>,
    messages: Vec<Message<'a>>,
    // Numbers are forwarded as the client wrote them (no float round trip).
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Thinking<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Content<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    Image {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    Document {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<Cow<'a, str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: Cow<'a, str>,
        input: Box<RawValue>,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        content: Content<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    Thinking {
        thinking: Cow<'a, str>,
        signature: Cow<'a, str>,
    },
    RedactedThinking {
        data: Cow<'a, str>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 {
        media_type: Cow<'a, str>,
        data: Cow<'a, str>,
    },
    Url {
        url: Cow<'a, str>,
    },
}

#[derive(Serialize)]
struct Tool<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    input_schema: Cow<'a, RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct ToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Thinking<'a> {
    Budget {
        #[serde(rename = "type")]
        kind: &'static str,
        budget_tokens: u64,
    },
    /// The client's own Anthropic `thinking` object, passed through.
    Raw(&'a RawValue),
}

/// True when a Messages `thinking` object turns thinking on (`enabled`, `adaptive`, any
/// type but `disabled`).
fn thinking_on(thinking: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<Cow<'a, str>>,
    }
    !is_off(thinking)
        && serde_json::from_str::<Kind>(thinking.get())
            .map_or(true, |k| k.kind.as_deref() != Some("disabled"))
}

/// True when Anthropic takes this `top_p` beside thinking: from 0.95 to 1.
fn top_p_allowed_beside_thinking(top_p: &RawValue) -> bool {
    serde_json::from_str::<f64>(top_p.get()).is_ok_and(|p| (0.95..=1.0).contains(&p))
}

/// Thinking budgets for OpenAI's `reasoning_effort`; `minimal` and `none` turn it off.
fn thinking_budget(effort: &str) -> Option<Option<u64>> {
    match effort {
        "none" | "minimal" => Some(None),
        "low" => Some(Some(1024)),
        "medium" => Some(Some(4096)),
        "high" => Some(Some(16384)),
        _ => None,
    }
}

/// A message being assembled: consecutive turns of one role merge into it.
struct Turn<'a> {
    role: &'static str,
    blocks: Vec<Block<'a>>,
    /// One source turn whose content was a plain string: keep it a string.
    plain: bool,
}

impl<'a> Turn<'a> {
    fn into_message(self) -> Message<'a> {
        let mut blocks = self.blocks;
        let content = match blocks.pop() {
            Some(Block::Text {
                text,
                cache_control: None,
            }) if self.plain && blocks.is_empty() => Content::Text(text),
            Some(last) => {
                blocks.push(last);
                Content::Blocks(blocks)
            }
            None => Content::Blocks(blocks),
        };
        Message {
            role: self.role,
            content,
        }
    }
}

/// Builds the Messages body for `req` sent to `model`; `stream` sets `stream: true`.
pub fn build(
    req: &ChatRequest,
    model: &str,
    stream: bool,
    provider: &str,
) -> Result<Built, UpstreamError> {
    let fields = &req.fields;
    let mut body = Body {
        model,
        max_tokens: req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        system: None,
        messages: Vec::new(),
        temperature: None,
        top_p: None,
        top_k: None,
        stop_sequences: Vec::new(),
        stream,
        tools: Vec::new(),
        tool_choice: None,
        metadata: None,
        thinking: None,
    };
    let mut choice: Option<ToolChoiceIn> = None;
    let mut parallel = true;
    let mut json_schema: Option<Cow<RawValue>> = None;
    let mut effort_budget: Option<u64> = None;
    for (key, raw) in fields.iter() {
        match key {
            "model" | "messages" | "stream" | "max_tokens" | "max_completion_tokens" => {}
            "temperature" => {
                let t = chat::number(raw, provider, key)?;
                if t.is_some_and(|t| t > 1.0) {
                    return Err(unsupported(
                        provider,
                        key,
                        "Anthropic accepts a temperature between 0 and 1",
                    ));
                }
                body.temperature = t.map(|_| raw);
            }
            "top_p" => body.top_p = chat::number(raw, provider, key)?.map(|_| raw),
            "top_k" => body.top_k = chat::integer(raw, provider, key)?,
            "n" => {
                if chat::integer(raw, provider, key)?.unwrap_or(1) > 1 {
                    return Err(unsupported(
                        provider,
                        key,
                        "Anthropic returns one choice per call; n must be 1",
                    ));
                }
            }
            "stop" => body.stop_sequences = chat::stop(raw, provider)?,
            "tools" => body.tools = tools(raw, provider)?,
            "tool_choice" => choice = Some(chat::tool_choice(raw, provider)?),
            "parallel_tool_calls" => parallel = raw.get() != "false",
            "user" => {
                if raw.get() != "null" {
                    let user: Cow<str> = serde_json::from_str(raw.get())
                        .map_err(|_| unsupported(provider, key, "must be a string"))?;
                    body.metadata = Some(Metadata { user_id: user });
                }
            }
            "response_format" => json_schema = response_format(raw, provider)?,
            "reasoning_effort" => {
                let effort: Cow<str> = serde_json::from_str(raw.get())
                    .map_err(|_| unsupported(provider, key, "must be a string"))?;
                effort_budget = thinking_budget(&effort).ok_or_else(|| {
                    unsupported(
                        provider,
                        key,
                        format!("`{effort}` is not none, minimal, low, medium or high"),
                    )
                })?;
            }
            "thinking" => {
                if !is_off(raw) {
                    body.thinking = Some(Thinking::Raw(raw));
                }
            }
            "presence_penalty" | "frequency_penalty" | "logit_bias" | "logprobs"
            | "top_logprobs" => {
                if !is_off(raw) {
                    return Err(unsupported(
                        provider,
                        key,
                        "the Anthropic Messages API has no equivalent",
                    ));
                }
            }
            "modalities" => {
                let list: Vec<Cow<str>> = serde_json::from_str(raw.get()).unwrap_or_default();
                if list.iter().any(|m| m != "text") {
                    return Err(unsupported(provider, key, "Anthropic replies in text only"));
                }
            }
            k if GATEWAY_FIELDS.contains(&k) || IGNORED_FIELDS.contains(&k) => {}
            other => {
                return Err(unsupported(
                    provider,
                    other,
                    "is not expressible in the Anthropic Messages API",
                ))
            }
        }
    }
    if let (Some(budget), None) = (effort_budget, &body.thinking) {
        body.thinking = Some(Thinking::Budget {
            kind: "enabled",
            budget_tokens: budget,
        });
        if req.max_tokens.is_none() {
            body.max_tokens = budget + DEFAULT_MAX_TOKENS;
        }
    }
    let thinks = match &body.thinking {
        Some(Thinking::Budget { .. }) => true,
        Some(Thinking::Raw(raw)) => thinking_on(raw),
        None => false,
    };
    if thinks {
        // Anthropic refuses `temperature` and `top_k` beside thinking, and `top_p` below
        // 0.95 (https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility).
        // Left out, each is at Anthropic's default; docs/adapters.md says why this drops
        // them rather than refusing the call.
        body.temperature = None;
        body.top_k = None;
        body.top_p = body.top_p.filter(|p| top_p_allowed_beside_thinking(p));
    }
    let json_mode = json_schema.is_some();
    if let Some(schema) = json_schema {
        if !body.tools.is_empty() {
            return Err(unsupported(
                provider,
                "response_format",
                "Anthropic cannot combine a response format with tools in one call",
            ));
        }
        body.tools.push(Tool {
            name: Cow::Borrowed(JSON_TOOL),
            description: Some(Cow::Borrowed(
                "Reply with the JSON value the user asked for.",
            )),
            input_schema: schema,
            cache_control: None,
        });
        choice = Some(ToolChoiceIn::Function(Cow::Borrowed(JSON_TOOL)));
    }
    body.tool_choice = match choice {
        None if parallel => None,
        None => Some(ToolChoice {
            kind: "auto",
            name: None,
            disable_parallel_tool_use: true,
        }),
        Some(ToolChoiceIn::None) => Some(ToolChoice {
            kind: "none",
            name: None,
            disable_parallel_tool_use: false,
        }),
        Some(c) => Some(ToolChoice {
            kind: match c {
                ToolChoiceIn::Required => "any",
                ToolChoiceIn::Function(_) => "tool",
                _ => "auto",
            },
            name: match c {
                ToolChoiceIn::Function(name) => Some(name),
                _ => None,
            },
            disable_parallel_tool_use: !parallel,
        }),
    };
    let raw_messages = fields
        .get("messages")
        .ok_or_else(|| unsupported(provider, "messages", "is required"))?;
    // Read in one pass; a list that does not read is read again message by message,
    // for the refusal's path.
    let messages = serde_json::from_str::<Vec<MessageIn>>(raw_messages.get())
        .or_else(|_| chat::messages(raw_messages, provider))?;
    let (system, messages) = turns(&messages, provider)?;
    body.system = system;
    body.messages = messages;
    // About the size of the messages it carries, written into one buffer of that size.
    let mut out = Vec::with_capacity(BODY_HEAD + raw_messages.get().len());
    serde_json::to_writer(&mut out, &body)
        .map_err(|e| unsupported(provider, "messages", format!("cannot be written: {e}")))?;
    Ok(Built {
        body: out,
        json_mode,
    })
}

/// The tool schema a `response_format` asks for, or `None` for plain text.
fn response_format<'a>(
    raw: &'a RawValue,
    provider: &str,
) -> Result<Option<Cow<'a, RawValue>>, UpstreamError> {
    #[derive(serde::Deserialize)]
    struct Format<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow, default)]
        json_schema: Option<Schema<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Schema<'a> {
        #[serde(borrow, default)]
        schema: Option<&'a RawValue>,
    }
    let format: Format = serde_json::from_str(raw.get())
        .map_err(|_| unsupported(provider, "response_format", "must be an object with a type"))?;
    match format.kind.as_ref() {
        "text" => Ok(None),
        "json_object" => Ok(Some(Cow::Owned(
            RawValue::from_string(r#"{"type":"object"}"#.into())
                .map_err(|e| unsupported(provider, "response_format", e.to_string()))?,
        ))),
        "json_schema" => {
            let schema = format.json_schema.and_then(|s| s.schema).ok_or_else(|| {
                unsupported(
                    provider,
                    "response_format.json_schema.schema",
                    "is required",
                )
            })?;
            let kind: Option<serde_json::Value> =
                serde_json::from_str::<serde_json::Value>(schema.get())
                    .ok()
                    .and_then(|v| v.get("type").cloned());
            if kind.as_ref().and_then(|k| k.as_str()) != Some("object") {
                return Err(unsupported(
                    provider,
                    "response_format.json_schema.schema",
                    "Anthropic can only be held to a schema whose top-level type is object",
                ));
            }
            Ok(Some(Cow::Borrowed(schema)))
        }
        other => Err(unsupported(
            provider,
            "response_format.type",
            format!("`{other}` is not text, json_object or json_schema"),
        )),
    }
}

fn tools<'a>(raw: &'a RawValue, provider: &str) -> Result<Vec<Tool<'a>>, UpstreamError> {
    let list: Vec<chat::ToolIn<'a>> = serde_json::from_str(raw.get())
        .map_err(|e| unsupported(provider, "tools", format!("cannot be read: {e}")))?;
    let empty_schema =
        || RawValue::from_string(r#"{"type":"object","properties":{}}"#.into()).map(Cow::Owned);
    list.into_iter()
        .enumerate()
        .map(|(i, t)| {
            if t.kind != "function" {
                return Err(unsupported(
                    provider,
                    format!("tools[{i}].type"),
                    format!(
                        "`{}` tools cannot be expressed; only function tools",
                        t.kind
                    ),
                ));
            }
            let f = t.function.ok_or_else(|| {
                unsupported(provider, format!("tools[{i}].function"), "is required")
            })?;
            let input_schema = match f.parameters {
                Some(p) => Cow::Borrowed(p),
                None => empty_schema()
                    .map_err(|e| unsupported(provider, format!("tools[{i}]"), e.to_string()))?,
            };
            Ok(Tool {
                name: f.name,
                description: f.description,
                input_schema,
                cache_control: t.cache_control,
            })
        })
        .collect()
}

/// Turns OpenAI messages into the `system` value and the alternating Anthropic turns.
fn turns<'a>(
    messages: &[MessageIn<'a>],
    provider: &str,
) -> Result<(Option<Content<'a>>, Vec<Message<'a>>), UpstreamError> {
    let mut system: Vec<Block<'a>> = Vec::new();
    let mut system_plain = 0usize;
    let mut system_turns = 0usize;
    let mut out: Vec<Turn<'a>> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        // A field's path (`messages[i]...`) is written only for a refusal.
        if m.audio.is_some() {
            return Err(unsupported(
                provider,
                format!("messages[{i}].audio"),
                "Anthropic takes no audio",
            ));
        }
        if m.function_call.is_some() {
            return Err(unsupported(
                provider,
                format!("messages[{i}].function_call"),
                "the legacy function_call cannot be expressed; use tool_calls",
            ));
        }
        // Read with an empty path, and again with its own to refuse it.
        let content = chat::content(m.content, provider, "")
            .or_else(|_| chat::content(m.content, provider, &format!("messages[{i}].content")))?;
        let (role, blocks, plain) = match m.role.as_ref() {
            "system" | "developer" => {
                system_turns += 1;
                let is_plain = matches!(content, ContentIn::Text(_)) && m.cache_control.is_none();
                system_plain += usize::from(is_plain);
                let blocks = user_blocks(content, m.cache_control, provider, i, true)?;
                system.extend(blocks);
                continue;
            }
            "user" => {
                let plain = matches!(content, ContentIn::Text(_)) && m.cache_control.is_none();
                (
                    "user",
                    user_blocks(content, m.cache_control, provider, i, false)?,
                    plain,
                )
            }
            "assistant" => {
                let (blocks, plain) = assistant_blocks(m, content, provider, i)?;
                ("assistant", blocks, plain)
            }
            "tool" => {
                let id = m.tool_call_id.clone().ok_or_else(|| {
                    unsupported(
                        provider,
                        format!("messages[{i}].tool_call_id"),
                        "is required",
                    )
                })?;
                let inner = match content {
                    ContentIn::Text(t) => Content::Text(t),
                    ContentIn::None => Content::Text(Cow::Borrowed("")),
                    parts @ ContentIn::Parts(_) => {
                        Content::Blocks(user_blocks(parts, None, provider, i, false)?)
                    }
                };
                let block = Block::ToolResult {
                    tool_use_id: id,
                    content: inner,
                    cache_control: m.cache_control,
                };
                ("user", vec![block], false)
            }
            other => {
                return Err(unsupported(
                    provider,
                    format!("messages[{i}].role"),
                    format!("`{other}` turns cannot be expressed"),
                ))
            }
        };
        match out.last_mut() {
            Some(last) if last.role == role => {
                last.blocks.extend(blocks);
                last.plain = false;
            }
            _ => out.push(Turn {
                role,
                blocks,
                plain,
            }),
        }
    }
    let system = match system.len() {
        0 => None,
        1 if system_turns == 1 && system_plain == 1 => match system.pop() {
            Some(Block::Text { text, .. }) => Some(Content::Text(text)),
            Some(other) => Some(Content::Blocks(vec![other])),
            None => None,
        },
        _ => Some(Content::Blocks(system)),
    };
    Ok((system, out.into_iter().map(Turn::into_message).collect()))
}

/// Blocks of a user (or system) turn, `messages[i]`; a message-level `cache_control`
/// lands on its last block.
fn user_blocks<'a>(
    content: ContentIn<'a>,
    cache_control: Option<&'a RawValue>,
    provider: &str,
    i: usize,
    text_only: bool,
) -> Result<Vec<Block<'a>>, UpstreamError> {
    let mut blocks = match content {
        ContentIn::None => Vec::new(),
        ContentIn::Text(text) => vec![Block::Text {
            text,
            cache_control: None,
        }],
        ContentIn::Parts(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.into_iter().enumerate() {
                let field = || format!("messages[{i}].content[{j}]");
                let block = part_block(part, provider, &field)?;
                if text_only && !matches!(block, Block::Text { .. }) {
                    return Err(unsupported(
                        provider,
                        field(),
                        "Anthropic's system prompt takes text only",
                    ));
                }
                blocks.push(block);
            }
            blocks
        }
    };
    if let Some(cc) = cache_control {
        if let Some(
            Block::Text { cache_control, .. }
            | Block::Image { cache_control, .. }
            | Block::Document { cache_control, .. },
        ) = blocks.last_mut()
        {
            *cache_control = Some(cc);
        }
    }
    Ok(blocks)
}

/// One part of a content array; `field` writes its path, for a refusal.
fn part_block<'a>(
    part: PartIn<'a>,
    provider: &str,
    field: &dyn Fn() -> String,
) -> Result<Block<'a>, UpstreamError> {
    let cache_control = part.cache_control;
    match part.kind.as_ref() {
        "text" | "input_text" => Ok(Block::Text {
            text: part.text.unwrap_or_default(),
            cache_control,
        }),
        "image_url" => {
            let url = part.image_url().ok_or_else(|| {
                unsupported(provider, format!("{}.image_url", field()), "needs a url")
            })?;
            let source = source(url, provider, field)?;
            Ok(Block::Image {
                source,
                cache_control,
            })
        }
        "file" => {
            let file = part
                .file
                .ok_or_else(|| unsupported(provider, format!("{}.file", field()), "is required"))?;
            let data = file.file_data.ok_or_else(|| {
                unsupported(
                    provider,
                    format!("{}.file.file_id", field()),
                    "uploaded file ids cannot be expressed; send file_data as a data: URL",
                )
            })?;
            let source = source(data, provider, field)?;
            Ok(Block::Document {
                source,
                title: file.filename,
                cache_control,
            })
        }
        other => Err(unsupported(
            provider,
            format!("{}.type", field()),
            format!("`{other}` content cannot be expressed in the Anthropic Messages API"),
        )),
    }
}

/// A media source: a `data:` URL becomes base64, an http(s) URL stays a URL.
fn source<'a>(
    url: Cow<'a, str>,
    provider: &str,
    field: &dyn Fn() -> String,
) -> Result<Source<'a>, UpstreamError> {
    match split_data_url(url) {
        Ok((media_type, data)) => Ok(Source::Base64 { media_type, data }),
        Err(url) if url.starts_with("https://") || url.starts_with("http://") => {
            Ok(Source::Url { url })
        }
        Err(_) => Err(unsupported(
            provider,
            field(),
            "media must be a base64 data: URL or an http(s) URL",
        )),
    }
}

/// Blocks of an assistant turn, `messages[i]`.
fn assistant_blocks<'a>(
    m: &MessageIn<'a>,
    content: ContentIn<'a>,
    provider: &str,
    i: usize,
) -> Result<(Vec<Block<'a>>, bool), UpstreamError> {
    let mut blocks = Vec::new();
    for (j, t) in m.thinking_blocks.iter().flatten().enumerate() {
        let field = || format!("messages[{i}].thinking_blocks[{j}]");
        blocks.push(match t.kind.as_ref() {
            "thinking" => Block::Thinking {
                thinking: t.thinking.clone().unwrap_or_default(),
                signature: t
                    .signature
                    .clone()
                    .ok_or_else(|| unsupported(provider, field(), "needs its signature"))?,
            },
            "redacted_thinking" => Block::RedactedThinking {
                data: t
                    .data
                    .clone()
                    .ok_or_else(|| unsupported(provider, field(), "needs its data"))?,
            },
            other => {
                return Err(unsupported(
                    provider,
                    field(),
                    format!("`{other}` blocks cannot be expressed"),
                ))
            }
        });
    }
    let plain = matches!(content, ContentIn::Text(_))
        && blocks.is_empty()
        && m.tool_calls.as_ref().is_none_or(Vec::is_empty);
    match content {
        ContentIn::None => {}
        ContentIn::Text(text) => {
            if !text.is_empty() || plain {
                blocks.push(Block::Text {
                    text,
                    cache_control: m.cache_control,
                });
            }
        }
        ContentIn::Parts(parts) => {
            for (j, part) in parts.into_iter().enumerate() {
                let text = match part.kind.as_ref() {
                    "text" => part.text.unwrap_or_default(),
                    "refusal" => part.refusal.unwrap_or_default(),
                    other => {
                        return Err(unsupported(
                            provider,
                            format!("messages[{i}].content[{j}].type"),
                            format!("`{other}` content cannot be expressed in an assistant turn"),
                        ))
                    }
                };
                if !text.is_empty() {
                    blocks.push(Block::Text {
                        text,
                        cache_control: part.cache_control,
                    });
                }
            }
        }
    }
    if let Some(refusal) = &m.refusal {
        if !refusal.is_empty() && m.content.is_none() {
            blocks.push(Block::Text {
                text: refusal.clone(),
                cache_control: None,
            });
        }
    }
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let args = call.function.arguments.trim();
        let input = if args.is_empty() { "{}" } else { args };
        let input = RawValue::from_string(input.to_string())
            .ok()
            .filter(|v| v.get().starts_with('{'))
            .ok_or_else(|| {
                unsupported(
                    provider,
                    format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    "must be a JSON object for Anthropic",
                )
            })?;
        blocks.push(Block::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input,
        });
    }
    Ok((blocks, plain))
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
