//! Front-end wire types for OpenAI's Responses API (`POST /v1/responses`) and their
//! translation to and from the gateway's Chat Completions lingua franca: the request
//! here (its translation to chat in `request`), the reply in `reply`, the stream in
//! `stream`. Pure: no I/O, no store. What the
//! chat shape cannot carry is refused with a 400 naming it (hosted tools, `background`,
//! unknown input items); a few hints with no effect on the output are dropped (listed in
//! `IGNORED` and docs/responses.md).

pub mod items;
mod params;
pub mod reply;
mod request;
pub mod stream;
mod write;

use serde::Serialize;
use serde_json::value::RawValue;

use super::anthropic::NativeOnly;
use super::openai::{ChatRequest, RawObject, GATEWAY_FIELDS};
use super::ApiError;
use request::to_chat;

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
    /// The functions of `namespace` tools a translated backend knows by a plain name.
    #[serde(skip)]
    pub namespaced: Vec<Namespaced>,
}

/// A function of a `namespace` tool: offered to a translated backend as the plain
/// function `chat_name`; its calls come back with `namespace` and `name` restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaced {
    pub chat_name: String,
    pub namespace: String,
    pub name: String,
}

/// The literal JSON values a response object falls back to.
const LITERALS: &[&str] = &[
    "null",
    "{}",
    "[]",
    "1",
    "\"auto\"",
    "\"disabled\"",
    r#"{"format":{"type":"text"}}"#,
];

/// A literal JSON value (`LITERALS` are checked once, then copied).
fn raw(s: &'static str) -> Box<RawValue> {
    static CHECKED: std::sync::LazyLock<Vec<Box<RawValue>>> = std::sync::LazyLock::new(|| {
        LITERALS
            .iter()
            .map(|s| RawValue::from_string(s.to_string()).unwrap_or_default())
            .collect()
    });
    match LITERALS.iter().position(|l| *l == s) {
        Some(i) => CHECKED.get(i).cloned().unwrap_or_default(),
        None => RawValue::from_string(s.to_string()).unwrap_or_default(),
    }
}

fn owned(v: Option<&RawValue>, default: &'static str) -> Box<RawValue> {
    match v {
        Some(v) if v.get() != "null" => v.to_owned(),
        _ => raw(default),
    }
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message)
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
        let translation = to_chat(&native, &items)?;
        let chat = translation.chat;
        let echo = std::sync::Arc::new(Echo {
            instructions: owned(native.get("instructions"), "null"),
            metadata: owned(native.get("metadata"), "{}"),
            tools: translation.echo_tools.unwrap_or_else(|| raw("[]")),
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
            namespaced: translation.namespaced,
        });
        Ok(ResponsesRequest {
            native,
            chat,
            stream,
            store,
            previous_response_id,
            items,
            native_only: translation.native_only,
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
    // The client's input is valid JSON already: built from it, the conversation needs
    // no second validating parse.
    let this = match input.get().as_bytes().first() {
        Some(b'"') => {
            #[derive(Serialize)]
            struct UserText<'a> {
                role: &'static str,
                content: &'a RawValue,
            }
            serde_json::value::to_raw_value(&[UserText {
                role: "user",
                content: input,
            }])
        }
        Some(b'[') => Ok(input.to_owned()),
        _ => {
            return Err(field_error(
                "input",
                "`input` must be a string or an array of input items.",
            ))
        }
    }
    .map_err(|e| ApiError::bad_request(format!("The conversation cannot be assembled: {e}.")))?;
    match history {
        Some(h) => RawValue::from_string(reply::join_arrays(h.get(), this.get())).map_err(|e| {
            ApiError::bad_request(format!("The conversation cannot be assembled: {e}."))
        }),
        None => Ok(this),
    }
}

/// A fresh id with OpenAI's prefix for its kind (`resp`, `msg`, `fc`, `rs`).
pub fn new_id(prefix: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = rand::random::<u128>();
    let mut id = String::with_capacity(prefix.len() + 33);
    id.push_str(prefix);
    id.push('_');
    // `{:032x}` by hand: 32 lowercase digits, the most significant first.
    for shift in (0..32).rev() {
        id.push(char::from(HEX[((n >> (4 * shift)) & 0xf) as usize]));
    }
    id
}

#[cfg(test)]
pub(crate) mod golden;
#[cfg(test)]
mod tests;
