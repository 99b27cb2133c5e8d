//! Front-end wire types for OpenAI's Responses API (`POST /v1/responses`) and their
//! translation to and from the gateway's Chat Completions lingua franca: the request
//! here, the reply in `reply`, the stream in `stream`. Pure: no I/O, no store. What the
//! chat shape cannot carry is refused with a 400 naming it (hosted tools, `background`,
//! unknown input items); a few hints with no effect on the output are dropped (listed in
//! `IGNORED` and docs/responses.md).

pub mod reply;
pub mod stream;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::anthropic::NativeOnly;
use super::openai::{ChatRequest, RawObject, GATEWAY_FIELDS};
use super::ApiError;

/// Top-level fields dropped on translation: hints with no effect on the output, or
/// fields the gateway itself answers (`store`, `previous_response_id`, `metadata`).
const IGNORED: &[&str] = &[
    "store",
    "previous_response_id",
    "metadata",
    "include",
    "truncation",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
    "stream_options",
    "max_tool_calls",
    "safety_identifier",
    // Codex CLI's per-turn identifiers (session, turn, window): not read by the model.
    "client_metadata",
];

/// Top-level fields no backend behind the gateway can serve: refused whatever the route.
const REFUSED: &[(&str, &str)] = &[
    (
        "conversation",
        "the Conversations API is not served by this gateway; use `previous_response_id`",
    ),
    (
        "prompt",
        "stored prompt templates are not served by this gateway",
    ),
];

/// Input item types that name a hosted tool's call or output: refused, naming them.
const HOSTED_ITEMS: &[&str] = &[
    "file_search_call",
    "web_search_call",
    "computer_call",
    "computer_call_output",
    "code_interpreter_call",
    "image_generation_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "custom_tool_call",
    "custom_tool_call_output",
    "item_reference",
    "compaction",
];

/// A `/v1/responses` request: the client's body (forwarded, `model` rewritten, to
/// backends that serve Responses), its Chat Completions translation (for routing and
/// every other backend), and what the response object echoes back.
#[derive(Debug, Clone)]
pub struct ResponsesRequest {
    pub native: RawObject,
    pub chat: ChatRequest,
    pub stream: bool,
    /// Keep the conversation for a later `previous_response_id` (default true).
    pub store: bool,
    pub previous_response_id: Option<String>,
    /// The conversation so far: the stored history, if any, then this request's input,
    /// as a JSON array of input items (what is stored, with the output, for the next turn).
    pub items: Box<RawValue>,
    /// The first field only a Responses backend can take: translated calls refuse it.
    pub native_only: Option<NativeOnly>,
    /// Request fields the response object repeats.
    pub echo: std::sync::Arc<Echo>,
}

/// Request fields a response object repeats, as raw JSON (`null` when absent).
#[derive(Debug, Clone, Serialize)]
pub struct Echo {
    pub instructions: Box<RawValue>,
    pub metadata: Box<RawValue>,
    pub tools: Box<RawValue>,
    pub tool_choice: Box<RawValue>,
    pub parallel_tool_calls: bool,
    pub temperature: Box<RawValue>,
    pub top_p: Box<RawValue>,
    pub max_output_tokens: Box<RawValue>,
    pub reasoning: Box<RawValue>,
    pub text: Box<RawValue>,
    pub truncation: Box<RawValue>,
    pub user: Box<RawValue>,
    pub store: bool,
    pub previous_response_id: Option<String>,
}

fn raw(s: &str) -> Box<RawValue> {
    // Only called with literal JSON.
    RawValue::from_string(s.to_string()).unwrap_or_default()
}

fn owned(v: Option<&RawValue>, default: &str) -> Box<RawValue> {
    match v {
        Some(v) if v.get() != "null" => v.to_owned(),
        _ => raw(default),
    }
}

/// The tools a response object repeats: function tools with `strict` and `parameters`
/// present (null when the client left them out), as OpenAI's response object has them.
fn echo_tools(tools: Option<&RawValue>) -> Box<RawValue> {
    let Some(mut list) = tools.and_then(|t| {
        serde_json::from_str::<Vec<serde_json::Map<String, serde_json::Value>>>(t.get()).ok()
    }) else {
        return raw("[]");
    };
    for tool in &mut list {
        for key in ["strict", "parameters"] {
            tool.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::value::to_raw_value(&list).unwrap_or_else(|_| raw("[]"))
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message)
}

fn note(only: &mut Option<NativeOnly>, field: impl Into<String>, what: &str) {
    if only.is_none() {
        *only = Some(NativeOnly {
            field: field.into(),
            detail: format!("{what} has no equivalent outside the Responses API"),
        });
    }
}

/// One input item, as far as translation reads it.
#[derive(Deserialize)]
struct ItemIn<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
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

#[derive(Deserialize)]
struct ToolIn<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    description: Option<&'a RawValue>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
    #[serde(borrow, default)]
    strict: Option<&'a RawValue>,
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
    #[serde(borrow, default, deserialize_with = "super::chat_view::opt_cow")]
    effort: Option<Cow<'a, str>>,
}

// The chat body being written; values that need no change are raw slices of the input.
#[derive(Serialize, Default)]
struct ChatOut<'a> {
    model: Option<&'a RawValue>,
    messages: Vec<MessageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<FormatOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<Cow<'a, str>>,
    // Routing preferences travel on: the router reads them, upstream bodies drop them.
    #[serde(skip_serializing_if = "Option::is_none")]
    bazaar: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: ContentOut<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ContentOut<'a> {
    Raw(&'a RawValue),
    Text(String),
    Parts(Vec<PartOut<'a>>),
    Null,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PartOut<'a> {
    Text { text: &'a RawValue },
    ImageUrl { image_url: ImageOut<'a> },
    File { file: FileOut<'a> },
}

#[derive(Serialize)]
struct ImageOut<'a> {
    url: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    file_data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a RawValue,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a RawValue,
    arguments: &'a RawValue,
}

#[derive(Serialize)]
struct ToolOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: ToolFunctionOut<'a>,
}

#[derive(Serialize)]
struct ToolFunctionOut<'a> {
    name: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ToolChoiceOut<'a> {
    Raw(&'a RawValue),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NamedOut<'a>,
    },
}

#[derive(Serialize)]
struct NamedOut<'a> {
    name: &'a RawValue,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FormatOut<'a> {
    JsonObject,
    JsonSchema { json_schema: SchemaOut<'a> },
}

#[derive(Serialize)]
struct SchemaOut<'a> {
    name: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a RawValue>,
}

impl ResponsesRequest {
    /// Parses a Responses body and translates it; `history` is the stored conversation
    /// `previous_response_id` named (a JSON array of items), already loaded by the caller.
    /// Every error names the field.
    pub fn parse(body: &[u8], history: Option<&RawValue>) -> Result<ResponsesRequest, ApiError> {
        let native = RawObject::parse(body)?;
        ResponsesRequest::from_fields(native, history)
    }

    /// The `previous_response_id` of a body, read before the history is loaded.
    pub fn previous_id(fields: &RawObject) -> Result<Option<String>, ApiError> {
        fields.typed::<String>("previous_response_id", "a string")
    }

    /// Like `parse`, for a body already split into fields.
    pub fn from_fields(
        native: RawObject,
        history: Option<&RawValue>,
    ) -> Result<ResponsesRequest, ApiError> {
        let previous_response_id = ResponsesRequest::previous_id(&native)?;
        let store = native.typed::<bool>("store", "a boolean")?.unwrap_or(true);
        let stream = native
            .typed::<bool>("stream", "a boolean")?
            .unwrap_or(false);
        if native.typed::<bool>("background", "a boolean")? == Some(true) {
            return Err(field_error(
                "background",
                "`background` responses are not served by this gateway; call without it.",
            ));
        }
        for (field, why) in REFUSED {
            if native.get(field).is_some_and(|v| v.get() != "null") {
                return Err(field_error(*field, format!("`{field}`: {why}.")));
            }
        }
        native.typed::<serde_json::Map<String, serde_json::Value>>("metadata", "an object")?;
        let items = conversation(&native, history)?;
        let (chat_body, native_only) = to_chat(&native, &items)?;
        let chat = ChatRequest::parse(&chat_body)?;
        let echo = std::sync::Arc::new(Echo {
            instructions: owned(native.get("instructions"), "null"),
            metadata: owned(native.get("metadata"), "{}"),
            tools: echo_tools(native.get("tools")),
            tool_choice: owned(native.get("tool_choice"), "\"auto\""),
            parallel_tool_calls: native
                .typed::<bool>("parallel_tool_calls", "a boolean")?
                .unwrap_or(true),
            temperature: owned(native.get("temperature"), "1"),
            top_p: owned(native.get("top_p"), "1"),
            max_output_tokens: owned(native.get("max_output_tokens"), "null"),
            reasoning: owned(native.get("reasoning"), "null"),
            text: owned(native.get("text"), r#"{"format":{"type":"text"}}"#),
            truncation: owned(native.get("truncation"), "\"disabled\""),
            user: owned(native.get("user"), "null"),
            store,
            previous_response_id: previous_response_id.clone(),
        });
        Ok(ResponsesRequest {
            native,
            chat,
            stream,
            store,
            previous_response_id,
            items,
            native_only,
            echo,
        })
    }

    /// The body for a backend that serves Responses itself: the client's fields with
    /// `model` rewritten, `previous_response_id` resolved into the full `input` (the
    /// gateway owns stored conversations), gateway-only fields dropped.
    pub fn native_body(&self, model: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.items.get().len() + 256);
        out.push(b'{');
        let mut first = true;
        let mut put_key = |out: &mut Vec<u8>, key: &str| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
        };
        let (mut model_done, mut input_done) = (false, false);
        for (key, value) in self.native.iter() {
            match key {
                k if GATEWAY_FIELDS.contains(&k) || k == "previous_response_id" => {}
                "model" if !model_done => {
                    put_key(&mut out, key);
                    let _ = serde_json::to_writer(&mut out, model);
                    model_done = true;
                }
                "input" if !input_done => {
                    put_key(&mut out, key);
                    if self.previous_response_id.is_some() {
                        out.extend_from_slice(self.items.get().as_bytes());
                    } else {
                        out.extend_from_slice(value.get().as_bytes());
                    }
                    input_done = true;
                }
                "model" | "input" => {}
                _ => {
                    put_key(&mut out, key);
                    out.extend_from_slice(value.get().as_bytes());
                }
            }
        }
        out.push(b'}');
        out
    }
}

/// The conversation as one JSON array of items: the history, then this input (a string
/// input is one user message).
fn conversation(fields: &RawObject, history: Option<&RawValue>) -> Result<Box<RawValue>, ApiError> {
    let input = fields
        .get("input")
        .filter(|v| v.get() != "null")
        .ok_or_else(|| field_error("input", "`input` is required."))?;
    let this = match input.get().as_bytes().first() {
        Some(b'"') => format!(r#"[{{"role":"user","content":{}}}]"#, input.get()),
        Some(b'[') => input.get().to_string(),
        _ => {
            return Err(field_error(
                "input",
                "`input` must be a string or an array of input items.",
            ))
        }
    };
    let all = match history {
        Some(h) => reply::join_arrays(h.get(), &this),
        None => this,
    };
    RawValue::from_string(all)
        .map_err(|e| ApiError::bad_request(format!("The conversation cannot be assembled: {e}.")))
}

/// Translates a Responses body to a Chat Completions body over the conversation
/// `items`, with the first field only Responses backends can take.
fn to_chat<'a>(
    fields: &'a RawObject,
    items: &'a RawValue,
) -> Result<(Vec<u8>, Option<NativeOnly>), ApiError> {
    let mut only = None;
    let mut out = ChatOut::default();
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
            "stream" => out.stream = Some(raw.get() == "true"),
            "max_output_tokens" => out.max_completion_tokens = Some(raw),
            "temperature" => out.temperature = Some(raw),
            "top_p" => out.top_p = Some(raw),
            "user" => out.user = Some(raw),
            "safety_identifier" => safety_identifier = Some(raw),
            "parallel_tool_calls" => out.parallel_tool_calls = Some(raw),
            "tools" => out.tools = tools(raw)?,
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
        out.messages.push(MessageOut {
            role: "system",
            content: ContentOut::Raw(text),
            tool_calls: Vec::new(),
            tool_call_id: None,
        });
    }
    messages(items, &mut out.messages)?;
    if out.messages.is_empty() {
        return Err(field_error("input", "`input` must not be empty."));
    }
    let body = serde_json::to_vec(&out)
        .map_err(|e| ApiError::bad_request(format!("The request cannot be translated: {e}.")))?;
    Ok((body, only))
}

fn required<'a>(v: Option<&'a RawValue>, field: &str) -> Result<&'a RawValue, ApiError> {
    v.filter(|v| v.get() != "null")
        .ok_or_else(|| field_error(field, format!("`{field}` is required.")))
}

/// Input items → chat messages. Consecutive `function_call` items (and the assistant
/// text before them) become one assistant message with `tool_calls`, as chat wants them.
fn messages<'a>(items: &'a RawValue, out: &mut Vec<MessageOut<'a>>) -> Result<(), ApiError> {
    let list: Vec<&RawValue> = serde_json::from_str(items.get()).map_err(|_| {
        field_error(
            "input",
            "`input` must be a string or an array of input items.",
        )
    })?;
    // Whether the last message is an assistant turn that tool calls may join.
    let mut open_assistant = false;
    for (i, raw) in list.into_iter().enumerate() {
        let path = format!("input[{i}]");
        let item: ItemIn = serde_json::from_str(raw.get())
            .map_err(|_| field_error(&path, format!("`{path}` must be an input item object.")))?;
        let kind = match (&item.kind, &item.role) {
            (Some(k), _) => k.as_ref(),
            (None, Some(_)) => "message",
            (None, None) => {
                return Err(field_error(
                    format!("{path}.type"),
                    format!("`{path}` needs a `type` (or a `role` for a message)."),
                ))
            }
        };
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
                let content = required(item.content, &format!("{path}.content"))?;
                let content = content_parts(content, role, &format!("{path}.content"))?;
                out.push(MessageOut {
                    role,
                    content,
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                });
                open_assistant = role == "assistant";
            }
            "function_call" => {
                let call = ToolCallOut {
                    id: required(item.call_id, &format!("{path}.call_id"))?,
                    kind: "function",
                    function: FunctionOut {
                        name: required(item.name, &format!("{path}.name"))?,
                        arguments: required(item.arguments, &format!("{path}.arguments"))?,
                    },
                };
                match out.last_mut() {
                    Some(m) if open_assistant => m.tool_calls.push(call),
                    _ => {
                        out.push(MessageOut {
                            role: "assistant",
                            content: ContentOut::Null,
                            tool_calls: vec![call],
                            tool_call_id: None,
                        });
                        open_assistant = true;
                    }
                }
            }
            "function_call_output" => {
                let id = required(item.call_id, &format!("{path}.call_id"))?;
                let output = required(item.output, &format!("{path}.output"))?;
                let content = match output.get().as_bytes().first() {
                    Some(b'"') => ContentOut::Raw(output),
                    _ => content_parts(output, "tool", &format!("{path}.output"))?,
                };
                out.push(MessageOut {
                    role: "tool",
                    content,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(id),
                });
                open_assistant = false;
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
    content: &'a RawValue,
    role: &str,
    path: &str,
) -> Result<ContentOut<'a>, ApiError> {
    if content.get().starts_with('"') {
        return Ok(ContentOut::Raw(content));
    }
    let parts: Vec<PartIn> = serde_json::from_str(content.get()).map_err(|_| {
        field_error(
            path,
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
            let value = required(value, &format!("{path}[{j}].text"))?;
            let s: Cow<str> = serde_json::from_str(value.get())
                .map_err(|_| field_error(format!("{path}[{j}].text"), "must be a string"))?;
            text.push_str(&s);
        }
        return Ok(ContentOut::Text(text));
    }
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        let field = format!("{path}[{j}]");
        match p.kind.as_ref() {
            "input_text" | "output_text" | "text" => out.push(PartOut::Text {
                text: required(p.text, &format!("{field}.text"))?,
            }),
            "input_image" => {
                let Some(url) = p.image_url.filter(|u| u.get() != "null") else {
                    return Err(field_error(
                        format!("{field}.file_id"),
                        format!("`{field}`: images by `file_id` are not supported by this gateway; send `image_url`."),
                    ));
                };
                out.push(PartOut::ImageUrl {
                    image_url: ImageOut {
                        url,
                        detail: p.detail.filter(|d| d.get() != "null"),
                    },
                });
            }
            "input_file" => {
                if p.file_url.is_some_and(|u| u.get() != "null") {
                    return Err(field_error(
                        format!("{field}.file_url"),
                        format!("`{field}.file_url` is not supported by this gateway; send `file_data`."),
                    ));
                }
                out.push(PartOut::File {
                    file: FileOut {
                        file_data: p.file_data.filter(|d| d.get() != "null"),
                        file_id: p.file_id.filter(|d| d.get() != "null"),
                        filename: p.filename.filter(|d| d.get() != "null"),
                    },
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
    // A lone text part is plain text: the simplest form every chat host takes.
    if let [PartOut::Text { text }] = out.as_slice() {
        return Ok(ContentOut::Raw(text));
    }
    Ok(ContentOut::Parts(out))
}

fn tools(raw: &RawValue) -> Result<Vec<ToolOut<'_>>, ApiError> {
    if raw.get() == "null" {
        return Ok(Vec::new());
    }
    let list: Vec<ToolIn> = serde_json::from_str(raw.get())
        .map_err(|_| field_error("tools", "`tools` must be an array of tools with a `type`."))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        if t.kind != "function" {
            return Err(field_error(
                format!("tools[{i}].type"),
                format!(
                    "`tools[{i}].type`: the hosted tool `{}` is not supported by this gateway; only `function` tools are.",
                    t.kind
                ),
            ));
        }
        out.push(ToolOut {
            kind: "function",
            function: ToolFunctionOut {
                name: required(t.name, &format!("tools[{i}].name"))?,
                description: t.description.filter(|d| d.get() != "null"),
                parameters: t.parameters.filter(|d| d.get() != "null"),
                strict: t.strict.filter(|d| d.get() != "null"),
            },
        });
    }
    Ok(out)
}

fn tool_choice(raw: &RawValue) -> Result<Option<ToolChoiceOut<'_>>, ApiError> {
    match raw.get().as_bytes().first() {
        Some(b'n') => Ok(None),
        Some(b'"') => match raw.get() {
            "\"auto\"" | "\"none\"" | "\"required\"" => Ok(Some(ToolChoiceOut::Raw(raw))),
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
            Ok(Some(ToolChoiceOut::Function {
                kind: "function",
                function: NamedOut {
                    name: required(c.name, "tool_choice.name")?,
                },
            }))
        }
    }
}

fn text_format(raw: &RawValue) -> Result<Option<FormatOut<'_>>, ApiError> {
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
        "json_object" => Ok(Some(FormatOut::JsonObject)),
        "json_schema" => Ok(Some(FormatOut::JsonSchema {
            json_schema: SchemaOut {
                name: required(format.name, "text.format.name")?,
                schema: Some(required(format.schema, "text.format.schema")?),
                strict: format.strict.filter(|s| s.get() != "null"),
                description: format.description.filter(|s| s.get() != "null"),
            },
        })),
        other => Err(field_error(
            "text.format.type",
            format!("`text.format.type` must be text, json_object or json_schema, not `{other}`."),
        )),
    }
}

/// A fresh id with OpenAI's prefix for its kind (`resp`, `msg`, `fc`, `rs`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests;
