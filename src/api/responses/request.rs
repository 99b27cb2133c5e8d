//! The Responses request translated to a Chat Completions body: input items, content
//! parts, tools, tool choice and text format, each read from the client's JSON and
//! written in chat's shape (raw slices where nothing changes). Pure; what chat cannot
//! carry is a 400 naming the field, or noted as only a Responses backend can take it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::chat_body::{ChatBody, ChatPart, Choice, Content, Format, Name, ToolFn};
use super::{field_error, scan, Namespaced, HOSTED_ITEMS, IGNORED};
use crate::api::anthropic::NativeOnly;
use crate::api::openai::{read_token_count, read_typed, read_user, ChatRequest, RawObject};
use crate::api::ApiError;

fn note(only: &mut Option<NativeOnly>, field: impl Into<String>, what: &str) {
    if only.is_none() {
        *only = Some(NativeOnly {
            field: field.into(),
            detail: format!("{what} has no equivalent outside the Responses API"),
        });
    }
}

/// One input item, as far as translation reads it: JSON texts of the client's body
/// (`None` for a member left out or `null`), read by `scan`.
#[derive(Default)]
pub(super) struct ItemIn<'a> {
    kind: Option<Cow<'a, str>>,
    pub(super) role: Option<Cow<'a, str>>,
    content: Option<&'a str>,
    call_id: Option<&'a str>,
    name: Option<&'a str>,
    arguments: Option<&'a str>,
    output: Option<&'a str>,
    namespace: Option<Cow<'a, str>>,
}

impl<'a> ItemIn<'a> {
    /// The item at byte `at` of the JSON array `text`, and where it ends; `None` unless
    /// it is an object whose `type`, `role` and `namespace` are strings (or `null`) and
    /// whose members read are each given once (as serde reads a struct).
    pub(super) fn read(text: &'a str, at: usize) -> Option<(ItemIn<'a>, usize)> {
        let mut item = ItemIn::default();
        let mut seen = Seen::default();
        let end = scan::object(text, at, |key, value| {
            let (n, slot) = match &*key {
                "type" | "role" | "namespace" => {
                    let (n, slot) = match &*key {
                        "type" => (0, &mut item.kind),
                        "role" => (1, &mut item.role),
                        _ => (2, &mut item.namespace),
                    };
                    seen.once(n)?;
                    *slot = string_or_null(value)?;
                    return Some(());
                }
                "content" => (3, &mut item.content),
                "call_id" => (4, &mut item.call_id),
                "name" => (5, &mut item.name),
                "arguments" => (6, &mut item.arguments),
                "output" => (7, &mut item.output),
                _ => return Some(()),
            };
            seen.once(n)?;
            *slot = not_null(value);
            Some(())
        })?;
        Some((item, end))
    }
}

/// The members of an object read so far, to refuse one given twice.
#[derive(Default)]
struct Seen(u8);

impl Seen {
    /// Marks member `n`; `None` if it was marked already.
    fn once(&mut self, n: u8) -> Option<()> {
        let bit = 1 << n;
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

/// A member's JSON text unless `null`.
fn not_null(json: &str) -> Option<&str> {
    (json != "null").then_some(json)
}

/// A member that must be a string or `null`: `Some(None)` for `null`, `None` for any
/// other value.
fn string_or_null(json: &str) -> Option<Option<Cow<'_, str>>> {
    match json {
        "null" => Some(None),
        _ => scan::text(json).map(Some),
    }
}

#[derive(Deserialize)]
struct PartIn<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    refusal: Option<&'a RawValue>,
    #[serde(borrow, default)]
    image_url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    file_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
    #[serde(borrow, default)]
    file_data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    file_url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    filename: Option<&'a RawValue>,
}

/// One tool as translation reads it: JSON texts of the client's body, read by `scan`.
pub(super) struct ToolIn<'a> {
    pub(super) kind: Cow<'a, str>,
    name: Option<&'a str>,
    description: Option<&'a str>,
    /// Present (`null` included) or not: the echo adds what is absent.
    parameters: Option<&'a str>,
    strict: Option<&'a str>,
    /// The function tools of a `namespace` tool.
    pub(super) tools: Option<&'a str>,
}

impl<'a> ToolIn<'a> {
    /// The tool at byte `at` of the JSON array `text`, and where it ends; `None` unless
    /// it is an object with a string `type` whose members read are each given once.
    pub(super) fn read(text: &'a str, at: usize) -> Option<(ToolIn<'a>, usize)> {
        let mut kind = None;
        let mut tool = ToolIn {
            kind: Cow::Borrowed(""),
            name: None,
            description: None,
            parameters: None,
            strict: None,
            tools: None,
        };
        let mut seen = Seen::default();
        let end = scan::object(text, at, |key, value| {
            let (n, slot, value) = match &*key {
                "type" => {
                    seen.once(0)?;
                    kind = Some(scan::text(value)?);
                    return Some(());
                }
                "name" => (1, &mut tool.name, not_null(value)),
                "description" => (2, &mut tool.description, not_null(value)),
                "parameters" => (3, &mut tool.parameters, Some(value)),
                "strict" => (4, &mut tool.strict, Some(value)),
                "tools" => (5, &mut tool.tools, not_null(value)),
                _ => return Some(()),
            };
            seen.once(n)?;
            *slot = value;
            Some(())
        })?;
        tool.kind = kind?;
        Some((tool, end))
    }
}

#[derive(Deserialize)]
struct ToolChoiceIn<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TextIn<'a> {
    #[serde(borrow, default)]
    format: Option<FormatIn<'a>>,
}

#[derive(Deserialize)]
struct FormatIn<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
    #[serde(borrow, default)]
    strict: Option<&'a RawValue>,
    #[serde(borrow, default)]
    description: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ReasoningIn<'a> {
    #[serde(borrow, default, deserialize_with = "crate::api::chat_view::opt_cow")]
    effort: Option<Cow<'a, str>>,
}

/// A Responses body as Chat Completions.
pub(super) struct Translation {
    pub chat: ChatRequest,
    /// The first field only Responses backends can take.
    pub native_only: Option<NativeOnly>,
    /// The functions of `namespace` tools, as chat names them.
    pub namespaced: Vec<Namespaced>,
    /// `tools` as the response object repeats them (see `tools`); `None` without tools.
    pub echo_tools: Option<String>,
}

/// Translates a Responses body to a Chat Completions body over the conversation `items`,
/// written as it is read (see `chat_body`).
pub(super) fn to_chat<'a>(
    fields: &'a RawObject,
    items: &'a RawValue,
) -> Result<Translation, ApiError> {
    let mut only = None;
    let mut namespaced = Vec::new();
    let mut echo_tools = None;
    let mut out = ChatBody::with_prompt_room(items.get().len() + 256);
    let mut instructions = None;
    let mut safety_identifier = None;
    for (key, raw) in fields.iter() {
        match key {
            "model" => out.model = Some(raw),
            "input" => {}
            "instructions" => {
                if raw.get() != "null" {
                    if !raw.get().starts_with('"') {
                        return Err(field_error(key, "`instructions` must be a string."));
                    }
                    instructions = Some(raw);
                }
            }
            "stream" => out.stream = read_typed(key, raw, "a boolean")?,
            "max_output_tokens" => {
                out.cap = read_token_count(key, raw)?;
                out.max_completion_tokens = out.cap.is_some().then_some(raw);
            }
            "temperature" | "top_p" => {
                if read_typed::<f64>(key, raw, "a number")?.is_some() {
                    match key {
                        "temperature" => out.temperature = Some(raw),
                        _ => out.top_p = Some(raw),
                    }
                }
            }
            "user" => out.user = read_user(key, raw)?,
            "safety_identifier" => safety_identifier = read_user(key, raw)?,
            "parallel_tool_calls" => {
                out.parallel_tool_calls = read_typed(key, raw, "a boolean")?;
            }
            "tools" => {
                let (list, echo) = tools(raw, &mut only, &mut namespaced)?;
                (out.tools, echo_tools) = (list, echo);
            }
            "tool_choice" => out.tool_choice = tool_choice(raw)?,
            "text" => out.response_format = text_format(raw)?,
            "reasoning" => {
                if raw.get() != "null" {
                    let r: ReasoningIn = serde_json::from_str(raw.get())
                        .map_err(|_| field_error(key, "`reasoning` must be an object."))?;
                    out.reasoning_effort = r.effort;
                }
            }
            "background" => {}
            "bazaar" => out.bazaar = Some(raw),
            "models" => out.models = Some(raw),
            "provider" => out.provider = Some(raw),
            k if IGNORED.contains(&k) => {}
            "top_logprobs" => note(&mut only, key, "`top_logprobs`"),
            other => note(&mut only, other, &format!("`{other}`")),
        }
    }
    if out.user.is_none() {
        out.user = safety_identifier;
    }
    if let Some(text) = instructions {
        out.message("system", &Content::Raw(text.get()));
    }
    messages(items, &namespaced, &mut out)?;
    if out.message_count() == 0 {
        return Err(field_error("input", "`input` must not be empty."));
    }
    Ok(Translation {
        chat: out.into_request()?,
        native_only: only,
        namespaced,
        echo_tools,
    })
}

/// `v`, present and not null; else a 400 naming `field` (written out only then).
fn required(v: Option<&str>, field: impl std::fmt::Display) -> Result<&str, ApiError> {
    match v.filter(|v| *v != "null") {
        Some(v) => Ok(v),
        None => Err(field_error(
            field.to_string(),
            format!("`{field}` is required."),
        )),
    }
}

/// `input[i]`, the path of an input item, written out only when an error names it.
#[derive(Clone, Copy)]
struct Item(usize);

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "input[{}]", self.0)
    }
}

/// Input items → chat messages. Consecutive `function_call` items (and the assistant
/// text before them) become one assistant message with `tool_calls`, as chat wants them.
/// Each item is translated as it is read, so the error is the one the first failing
/// item gives in order.
fn messages<'a>(
    items: &'a RawValue,
    namespaced: &[Namespaced],
    out: &mut ChatBody<'a>,
) -> Result<(), ApiError> {
    // Whether the last message is an assistant turn that tool calls may join.
    let mut open_assistant = false;
    let text = items.get();
    scan::elements(text, |i, at| {
        let path = Item(i);
        let Some((item, end)) = ItemIn::read(text, at) else {
            return Err(field_error(
                path.to_string(),
                format!("`{path}` must be an input item object."),
            ));
        };
        message(path, item, namespaced, out, &mut open_assistant)?;
        Ok(end)
    })
    .map_err(|e| {
        e.unwrap_or_else(|| {
            field_error(
                "input",
                "`input` must be a string or an array of input items.",
            )
        })
    })
}

/// Where an input item lands among the chat messages (see `lands`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lands {
    /// A chat message of its own.
    Own,
    /// A tool call joining the open assistant message.
    Joins,
    /// No chat message (reasoning; an item refused).
    Nowhere,
}

/// Where an input item of `kind` (a message's `role`) lands, given `open_assistant`:
/// whether the last chat message is an assistant turn tool calls may join (updated).
/// Translation and the error path that maps chat fields back to items both follow it.
pub(super) fn lands(kind: &str, role: Option<&str>, open_assistant: &mut bool) -> Lands {
    match kind {
        "message" => {
            *open_assistant = role == Some("assistant");
            Lands::Own
        }
        "function_call" => match std::mem::replace(open_assistant, true) {
            true => Lands::Joins,
            false => Lands::Own,
        },
        "function_call_output" => {
            *open_assistant = false;
            Lands::Own
        }
        _ => Lands::Nowhere,
    }
}

/// An item's type: `type`, else `message` when it has a `role`.
pub(super) fn item_kind<'i>(item: &'i ItemIn<'_>) -> Option<&'i str> {
    match (&item.kind, &item.role) {
        (Some(k), _) => Some(k.as_ref()),
        (None, Some(_)) => Some("message"),
        (None, None) => None,
    }
}

/// One input item at `path` → chat messages (see `messages`).
fn message<'a>(
    path: Item,
    item: ItemIn<'a>,
    namespaced: &[Namespaced],
    out: &mut ChatBody<'a>,
    open_assistant: &mut bool,
) -> Result<(), ApiError> {
    {
        let Some(kind) = item_kind(&item) else {
            return Err(field_error(
                format!("{path}.type"),
                format!("`{path}` needs a `type` (or a `role` for a message)."),
            ));
        };
        let landing = lands(kind, item.role.as_deref(), open_assistant);
        match kind {
            "message" => {
                let role = match item.role.as_deref() {
                    Some("user") => "user",
                    Some("assistant") => "assistant",
                    // Chat hosts other than OpenAI know `system` only.
                    Some("system") | Some("developer") => "system",
                    Some(other) => {
                        return Err(field_error(
                            format!("{path}.role"),
                            format!("`{path}.role` must be user, assistant, system or developer, not `{other}`."),
                        ))
                    }
                    None => {
                        return Err(field_error(
                            format!("{path}.role"),
                            format!("`{path}.role` is required."),
                        ))
                    }
                };
                let content = required(item.content, format_args!("{path}.content"))?;
                let content = content_parts(content, role, format_args!("{path}.content"))?;
                out.message(role, &content);
            }
            "function_call" => {
                let name = required(item.name, format_args!("{path}.name"))?;
                // A namespaced function's call, under the name chat knows it by.
                let name = match item.namespace.as_deref() {
                    Some(ns) => {
                        let own = string(name);
                        match namespaced.iter().find(|n| {
                            n.namespace == ns && Some(n.name.as_str()) == own.as_deref()
                        }) {
                            Some(n) => Name::Made(n.chat_name.clone()),
                            None => Name::Raw(name),
                        }
                    }
                    None => Name::Raw(name),
                };
                let id = required(item.call_id, format_args!("{path}.call_id"))?;
                let arguments = required(item.arguments, format_args!("{path}.arguments"))?;
                out.tool_call(landing == Lands::Joins, id, &name, arguments);
            }
            "function_call_output" => {
                let id = required(item.call_id, format_args!("{path}.call_id"))?;
                let output = required(item.output, format_args!("{path}.output"))?;
                let content = match output.as_bytes().first() {
                    Some(b'"') => Content::Raw(output),
                    _ => content_parts(output, "tool", format_args!("{path}.output"))?,
                };
                out.tool_result(id, &content);
            }
            // Reasoning of an earlier turn: another backend cannot continue it, and the
            // turn's visible output carries on without it.
            "reasoning" => {}
            other if HOSTED_ITEMS.contains(&other) => {
                return Err(field_error(
                    format!("{path}.type"),
                    format!("`{path}.type`: `{other}` items are not supported by this gateway (no hosted tools)."),
                ))
            }
            other => {
                return Err(field_error(
                    format!("{path}.type"),
                    format!("`{path}.type`: unknown input item type `{other}`."),
                ))
            }
        }
    }
    Ok(())
}

/// A message's content as chat content: a string as is; parts translated (an assistant
/// turn's output text joined into one string, as chat hosts want assistant content).
fn content_parts<'a>(
    content: &'a str,
    role: &str,
    path: impl std::fmt::Display + Copy,
) -> Result<Content<'a>, ApiError> {
    if content.starts_with('"') {
        return Ok(Content::Raw(content));
    }
    let parts: Vec<PartIn> = serde_json::from_str(content).map_err(|_| {
        field_error(
            path.to_string(),
            format!("`{path}` must be a string or an array of content parts with a `type`."),
        )
    })?;
    if role == "assistant" {
        let mut text = String::new();
        for (j, p) in parts.iter().enumerate() {
            let value = match p.kind.as_ref() {
                "output_text" | "input_text" | "text" => p.text,
                "refusal" => p.refusal,
                other => {
                    return Err(field_error(
                        format!("{path}[{j}].type"),
                        format!("`{path}[{j}].type`: an assistant message cannot hold `{other}`."),
                    ))
                }
            };
            let value = required(value.map(RawValue::get), format_args!("{path}[{j}].text"))?;
            let s = scan::text(value)
                .ok_or_else(|| field_error(format!("{path}[{j}].text"), "must be a string"))?;
            text.push_str(&s);
        }
        return Ok(Content::Text(text));
    }
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        let field = Part(path, j);
        match p.kind.as_ref() {
            "input_text" | "output_text" | "text" => {
                out.push(ChatPart::Text(required(
                    p.text.map(RawValue::get),
                    format_args!("{field}.text"),
                )?));
            }
            "input_image" => {
                let Some(url) = p.image_url.map(RawValue::get).and_then(not_null) else {
                    return Err(field_error(
                        format!("{field}.file_id"),
                        format!("`{field}`: images by `file_id` are not supported by this gateway; send `image_url`."),
                    ));
                };
                out.push(ChatPart::Image {
                    url,
                    detail: p.detail.map(RawValue::get).and_then(not_null),
                });
            }
            "input_file" => {
                if p.file_url.is_some_and(|u| u.get() != "null") {
                    return Err(field_error(
                        format!("{field}.file_url"),
                        format!("`{field}.file_url` is not supported by this gateway; send `file_data`."),
                    ));
                }
                out.push(ChatPart::File {
                    file_data: p.file_data.map(RawValue::get).and_then(not_null),
                    file_id: p.file_id.map(RawValue::get).and_then(not_null),
                    filename: p.filename.map(RawValue::get).and_then(not_null),
                });
            }
            other => {
                return Err(field_error(
                    format!("{field}.type"),
                    format!("`{field}.type`: unknown content part type `{other}`."),
                ))
            }
        }
    }
    Ok(Content::Parts(out))
}

/// `{path}[j]`, a content part's path, written out only when an error names it.
#[derive(Clone, Copy)]
struct Part<P>(P, usize);

impl<P: std::fmt::Display> std::fmt::Display for Part<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// Tools → chat function tools, and the tools a response object repeats (read in the
/// same pass; `None` for `null`). The functions of a `namespace` tool join the list (named
/// `{namespace}__{name}` when another tool has their own name) and are recorded in
/// `namespaced`; a hosted or custom tool only a Responses backend runs is noted in `only`
/// and left out of the translation.
fn tools<'a>(
    raw: &'a RawValue,
    only: &mut Option<NativeOnly>,
    namespaced: &mut Vec<Namespaced>,
) -> Result<(Vec<ToolFn<'a>>, Option<String>), ApiError> {
    if raw.get() == "null" {
        return Ok((Vec::new(), None));
    }
    let text = raw.get();
    let mut echo = String::with_capacity(text.len() + 64);
    echo.push('[');
    let mut out = Vec::new();
    // The index in `out` of each namespaced function.
    let mut at = Vec::new();
    // The first tool that does not translate: named once every tool has read (a tool
    // that does not read is named first).
    let mut failed = None;
    scan::elements(text, |i, start| {
        let (t, end) = ToolIn::read(text, start).ok_or(())?;
        if i > 0 {
            echo.push(',');
        }
        echo_tool(&mut echo, text.get(start..end).unwrap_or_default(), &t);
        if failed.is_none() {
            failed = tool(i, t, only, namespaced, &mut out, &mut at).err();
        }
        Ok::<_, ()>(end)
    })
    .map_err(|_| field_error("tools", "`tools` must be an array of tools with a `type`."))?;
    if let Some(e) = failed {
        return Err(e);
    }
    // Valid JSON: the tools as sent (each an object with a `type`, so the keys added
    // before its closing brace follow a comma).
    echo.push(']');
    if !namespaced.is_empty() {
        let names: Vec<Option<String>> = out
            .iter()
            .map(|t| match &t.name {
                Name::Raw(n) => string(n),
                Name::Made(n) => Some(n.clone()),
            })
            .collect();
        for (n, &index) in namespaced.iter_mut().zip(&at) {
            let taken = names
                .iter()
                .filter(|other| other.as_deref() == Some(n.name.as_str()))
                .count()
                > 1;
            if taken {
                n.chat_name = format!("{}__{}", n.namespace, n.name);
                if let Some(t) = out.get_mut(index) {
                    t.name = Name::Made(n.chat_name.clone());
                }
            }
        }
    }
    Ok((out, Some(echo)))
}

/// Tool `i` (`t`) into `out`: a function as it is, a `namespace` tool's functions (each
/// recorded in `namespaced`, its index in `out` in `at`), a hosted tool noted in `only`.
fn tool<'a>(
    i: usize,
    t: ToolIn<'a>,
    only: &mut Option<NativeOnly>,
    namespaced: &mut Vec<Namespaced>,
    out: &mut Vec<ToolFn<'a>>,
    at: &mut Vec<usize>,
) -> Result<(), ApiError> {
    match t.kind.as_ref() {
        "function" => out.push(function(t, || format!("tools[{i}]"))?),
        "namespace" => {
            let namespace = string(required(t.name, format_args!("tools[{i}].name"))?)
                .ok_or_else(|| field_error(format!("tools[{i}].name"), "must be a string"))?;
            let inner = required(t.tools, format_args!("tools[{i}].tools"))?;
            let inner = scan::all(inner, ToolIn::read).ok_or_else(|| {
                field_error(
                    format!("tools[{i}].tools"),
                    format!("`tools[{i}].tools` must be an array of tools with a `type`."),
                )
            })?;
            for (j, f) in inner.into_iter().enumerate() {
                if f.kind != "function" {
                    note(
                        only,
                        format!("tools[{i}].tools[{j}].type"),
                        &format!("the `{}` tool", f.kind),
                    );
                    continue;
                }
                let tool = function(f, || format!("tools[{i}].tools[{j}]"))?;
                let Name::Raw(name) = tool.name else {
                    continue;
                };
                let name = string(name).ok_or_else(|| {
                    field_error(format!("tools[{i}].tools[{j}].name"), "must be a string")
                })?;
                at.push(out.len());
                namespaced.push(Namespaced {
                    chat_name: name.clone(),
                    namespace: namespace.clone(),
                    name,
                });
                out.push(tool);
            }
        }
        other => note(
            only,
            format!("tools[{i}].type"),
            &format!("the hosted tool `{other}`"),
        ),
    }
    Ok(())
}

/// A tool as the response object repeats it: its text as sent, a function tool with
/// `strict` and `parameters` added (as `null`) when it left them out, as OpenAI's
/// response object has them.
fn echo_tool(out: &mut String, text: &str, t: &ToolIn<'_>) {
    // The type as written, without escapes.
    let function = matches!(t.kind, Cow::Borrowed("function"));
    match text.strip_suffix('}') {
        Some(open) if function && (t.strict.is_none() || t.parameters.is_none()) => {
            // A tool has at least its `type`: the added keys follow a comma.
            out.push_str(open);
            if t.strict.is_none() {
                out.push_str(",\"strict\":null");
            }
            if t.parameters.is_none() {
                out.push_str(",\"parameters\":null");
            }
            out.push('}');
        }
        _ => out.push_str(text),
    }
}

/// A JSON string's text.
fn string(json: &str) -> Option<String> {
    scan::text(json).map(Cow::into_owned)
}

/// A `function` tool in chat's shape; `path` names it in errors.
fn function<'a>(t: ToolIn<'a>, path: impl Fn() -> String) -> Result<ToolFn<'a>, ApiError> {
    let name = t.name.ok_or_else(|| {
        let field = format!("{}.name", path());
        field_error(&field, format!("`{field}` is required."))
    })?;
    Ok(ToolFn {
        name: Name::Raw(name),
        description: t.description,
        parameters: t.parameters.and_then(not_null),
        strict: t.strict.and_then(not_null),
    })
}

fn tool_choice(raw: &RawValue) -> Result<Option<Choice<'_>>, ApiError> {
    match raw.get().as_bytes().first() {
        Some(b'n') => Ok(None),
        Some(b'"') => match raw.get() {
            "\"auto\"" | "\"none\"" | "\"required\"" => Ok(Some(Choice::Mode(raw))),
            other => Err(field_error(
                "tool_choice",
                format!("`tool_choice` must be auto, none, required or a function, not {other}."),
            )),
        },
        _ => {
            let c: ToolChoiceIn = serde_json::from_str(raw.get()).map_err(|_| {
                field_error(
                    "tool_choice",
                    "`tool_choice` must be a string or an object with a `type`.",
                )
            })?;
            if c.kind != "function" {
                return Err(field_error(
                    "tool_choice.type",
                    format!(
                        "`tool_choice.type`: `{}` is not supported by this gateway; only `function` is.",
                        c.kind
                    ),
                ));
            }
            Ok(Some(Choice::Function(required(
                c.name.map(RawValue::get),
                "tool_choice.name",
            )?)))
        }
    }
}

fn text_format(raw: &RawValue) -> Result<Option<Format<'_>>, ApiError> {
    if raw.get() == "null" {
        return Ok(None);
    }
    let text: TextIn = serde_json::from_str(raw.get())
        .map_err(|_| field_error("text", "`text` must be an object."))?;
    let Some(format) = text.format else {
        return Ok(None);
    };
    match format.kind.as_ref() {
        "text" => Ok(None),
        "json_object" => Ok(Some(Format::JsonObject)),
        "json_schema" => Ok(Some(Format::JsonSchema {
            name: required(format.name.map(RawValue::get), "text.format.name")?,
            schema: required(format.schema.map(RawValue::get), "text.format.schema")?,
            strict: match format.strict {
                Some(s) => read_typed("text.format.strict", s, "a boolean")?,
                None => None,
            },
            description: format.description.map(RawValue::get).and_then(not_null),
        })),
        other => Err(field_error(
            "text.format.type",
            format!("`text.format.type` must be text, json_object or json_schema, not `{other}`."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `ItemIn` as serde reads it: what `ItemIn::read` must agree with.
    #[derive(Deserialize)]
    struct ItemBySerde<'a> {
        #[serde(
            borrow,
            rename = "type",
            default,
            deserialize_with = "crate::api::chat_view::opt_cow"
        )]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "crate::api::chat_view::opt_cow")]
        role: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        content: Option<&'a RawValue>,
        #[serde(borrow, default)]
        call_id: Option<&'a RawValue>,
        #[serde(borrow, default)]
        name: Option<&'a RawValue>,
        #[serde(borrow, default)]
        arguments: Option<&'a RawValue>,
        #[serde(borrow, default)]
        output: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "crate::api::chat_view::opt_cow")]
        namespace: Option<Cow<'a, str>>,
    }

    /// `ToolIn` as serde reads it.
    #[derive(Deserialize)]
    struct ToolBySerde<'a> {
        #[serde(borrow, rename = "type")]
        kind: Cow<'a, str>,
        #[serde(borrow, default)]
        name: Option<&'a RawValue>,
        #[serde(borrow, default)]
        description: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "present")]
        parameters: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "present")]
        strict: Option<&'a RawValue>,
        #[serde(borrow, default)]
        tools: Option<&'a RawValue>,
    }

    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue>::deserialize(d).map(Some)
    }

    fn texts<'a>(v: &[Option<&'a RawValue>]) -> Vec<Option<&'a str>> {
        v.iter().map(|v| v.map(RawValue::get)).collect()
    }

    /// A value a member may have: every JSON kind, escapes included.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("-2.5e3".to_string()),
            Just(r#""message""#.to_string()),
            Just(r#""function""#.to_string()),
            Just(r#""us\u0065r""#.to_string()),
            Just(r#""a \"b\" \\ c""#.to_string()),
            Just(r#"{"x":[1,"}",{"y":null}]}"#.to_string()),
            Just(r#"[{"type":"input_text","text":"t"}]"#.to_string()),
        ]
    }

    /// An object of members drawn from `keys` (repeats included), spaced or not.
    fn object(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
        (
            prop::collection::vec((prop::sample::select(keys), value()), 0..6),
            any::<bool>(),
        )
            .prop_map(|(members, wide)| {
                let sep = if wide { " \n" } else { "" };
                let body: Vec<String> = members
                    .iter()
                    .map(|(k, v)| format!("{sep}\"{k}\"{sep}:{sep}{v}{sep}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            })
    }

    const ITEM_KEYS: &[&str] = &[
        "type",
        "role",
        "content",
        "call_id",
        "name",
        "arguments",
        "output",
        "namespace",
        "id",
        "status",
        "ty\\u0070e",
    ];
    const TOOL_KEYS: &[&str] = &[
        "type",
        "name",
        "description",
        "parameters",
        "strict",
        "tools",
        "x",
    ];

    proptest! {
        #[test]
        fn items_read_as_serde_reads_them(text in object(ITEM_KEYS)) {
            let ours = ItemIn::read(&text, 0);
            let theirs = serde_json::from_str::<ItemBySerde>(&text).ok();
            prop_assert_eq!(ours.is_some(), theirs.is_some(), "{}", text);
            if let (Some((a, end)), Some(b)) = (ours, theirs) {
                prop_assert_eq!(end, text.len());
                prop_assert_eq!((&a.kind, &a.role, &a.namespace), (&b.kind, &b.role, &b.namespace));
                prop_assert_eq!(
                    vec![a.content, a.call_id, a.name, a.arguments, a.output],
                    texts(&[b.content, b.call_id, b.name, b.arguments, b.output])
                );
            }
        }

        #[test]
        fn tools_read_as_serde_reads_them(text in object(TOOL_KEYS)) {
            let ours = ToolIn::read(&text, 0);
            let theirs = serde_json::from_str::<ToolBySerde>(&text).ok();
            prop_assert_eq!(ours.is_some(), theirs.is_some(), "{}", text);
            if let (Some((a, end)), Some(b)) = (ours, theirs) {
                prop_assert_eq!(end, text.len());
                prop_assert_eq!(&a.kind, &b.kind);
                // Borrowed exactly when written without escapes (the echo relies on it).
                prop_assert_eq!(matches!(a.kind, Cow::Borrowed(_)), matches!(b.kind, Cow::Borrowed(_)));
                prop_assert_eq!(
                    vec![a.name, a.description, a.parameters, a.strict, a.tools],
                    texts(&[b.name, b.description, b.parameters, b.strict, b.tools])
                );
            }
        }
    }

    #[test]
    fn an_item_that_is_not_an_object_is_refused() {
        for text in ["5", "\"message\"", "null", "[\"message\"]"] {
            assert!(ItemIn::read(text, 0).is_none(), "{text}");
            assert!(ToolIn::read(text, 0).is_none(), "{text}");
        }
    }
}
