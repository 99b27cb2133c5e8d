//! Front-end wire types for OpenAI's Responses API (`POST /v1/responses`) and their
//! translation to and from the gateway's Chat Completions lingua franca: the request
//! here (its translation to chat in `request`), the reply in `reply`, the stream in
//! `stream`. Pure: no I/O, no store. What the
//! chat shape cannot carry is refused with a 400 naming it (hosted tools, `background`,
//! unknown input items); a few hints with no effect on the output are dropped (listed in
//! `IGNORED` and docs/responses.md).

mod chat_body;
pub mod items;
mod params;
pub mod reply;
mod request;
pub(crate) mod scan;
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
    pub chat: ChatRequest,
    pub stream: bool,
    /// Keep the conversation for a later `previous_response_id` (default true).
    pub store: bool,
    pub previous_response_id: Option<String>,
    /// The conversation so far when it is not the client's `input` array as sent (a
    /// stored history joined to it, or a string input made a message); see `items`.
    joined: Option<Box<RawValue>>,
    /// The first field only a Responses backend can take: translated calls refuse it.
    pub native_only: Option<NativeOnly>,
    /// Request fields the response object repeats; it holds the client's body.
    pub echo: std::sync::Arc<Echo>,
}

/// Request fields a response object repeats: read from the client's body (kept here,
/// shared by the request, its reply and its stream) where the client sent them, the
/// documented default where it did not, so that none is copied.
#[derive(Debug, Clone)]
pub struct Echo {
    /// The client's body.
    body: RawObject,
    /// `tools` as the response object repeats them (see `request::tools`): `[]` when `None`.
    tools: Option<String>,
    pub parallel_tool_calls: bool,
    pub store: bool,
    pub previous_response_id: Option<String>,
    /// The functions of `namespace` tools a translated backend knows by a plain name.
    pub namespaced: Vec<Namespaced>,
}

/// The echoed fields of a request as raw JSON: the client's values, or the defaults.
pub struct Echoed<'a> {
    pub instructions: &'a RawValue,
    pub metadata: &'a RawValue,
    pub tool_choice: &'a RawValue,
    pub temperature: &'a RawValue,
    pub top_p: &'a RawValue,
    pub max_output_tokens: &'a RawValue,
    pub reasoning: &'a RawValue,
    pub text: &'a RawValue,
    pub truncation: &'a RawValue,
    /// `None` when absent or `null`.
    pub user: Option<&'a RawValue>,
}

impl Echo {
    /// The echo of the client's `body`, with `tools` as the response repeats them.
    pub fn new(
        body: RawObject,
        tools: Option<String>,
        parallel_tool_calls: bool,
        store: bool,
        previous_response_id: Option<String>,
        namespaced: Vec<Namespaced>,
    ) -> Echo {
        Echo {
            body,
            tools,
            parallel_tool_calls,
            store,
            previous_response_id,
            namespaced,
        }
    }

    /// The client's body.
    pub fn body(&self) -> &RawObject {
        &self.body
    }

    /// `tools` as the response object repeats them: valid JSON, written as it is.
    pub fn tools(&self) -> &str {
        self.tools.as_deref().unwrap_or("[]")
    }

    /// The echoed fields, read in one pass over the body (a field sent as `null` takes
    /// its default, as one left out).
    pub fn fields(&self) -> Echoed<'_> {
        let d = defaults();
        let mut e = Echoed {
            instructions: &d.null,
            metadata: &d.object,
            tool_choice: &d.auto,
            temperature: &d.one,
            top_p: &d.one,
            max_output_tokens: &d.null,
            reasoning: &d.null,
            text: &d.text,
            truncation: &d.disabled,
            user: None,
        };
        for (key, value) in self.body.iter() {
            if value.get() == "null" {
                continue;
            }
            let slot = match key {
                "instructions" => &mut e.instructions,
                "metadata" => &mut e.metadata,
                "tool_choice" => &mut e.tool_choice,
                "temperature" => &mut e.temperature,
                "top_p" => &mut e.top_p,
                "max_output_tokens" => &mut e.max_output_tokens,
                "reasoning" => &mut e.reasoning,
                "text" => &mut e.text,
                "truncation" => &mut e.truncation,
                "user" => {
                    e.user = Some(value);
                    continue;
                }
                _ => continue,
            };
            *slot = value;
        }
        e
    }
}

/// The echo as the golden files have it: each echoed field, then the flags.
impl Serialize for Echo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            instructions: &'a RawValue,
            metadata: &'a RawValue,
            #[serde(serialize_with = "reply::raw_json")]
            tools: &'a str,
            tool_choice: &'a RawValue,
            parallel_tool_calls: bool,
            temperature: &'a RawValue,
            top_p: &'a RawValue,
            max_output_tokens: &'a RawValue,
            reasoning: &'a RawValue,
            text: &'a RawValue,
            truncation: &'a RawValue,
            user: &'a RawValue,
            store: bool,
            previous_response_id: &'a Option<String>,
        }
        let e = self.fields();
        Out {
            instructions: e.instructions,
            metadata: e.metadata,
            tools: self.tools(),
            tool_choice: e.tool_choice,
            parallel_tool_calls: self.parallel_tool_calls,
            temperature: e.temperature,
            top_p: e.top_p,
            max_output_tokens: e.max_output_tokens,
            reasoning: e.reasoning,
            text: e.text,
            truncation: e.truncation,
            user: e.user.unwrap_or(&*defaults().null),
            store: self.store,
            previous_response_id: &self.previous_response_id,
        }
        .serialize(s)
    }
}

/// A function of a `namespace` tool: offered to a translated backend as the plain
/// function `chat_name`; its calls come back with `namespace` and `name` restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaced {
    pub chat_name: String,
    pub namespace: String,
    pub name: String,
}

/// The values a response object falls back to for fields the client left out.
struct Defaults {
    null: Box<RawValue>,
    object: Box<RawValue>,
    auto: Box<RawValue>,
    one: Box<RawValue>,
    disabled: Box<RawValue>,
    text: Box<RawValue>,
}

/// The defaults, checked once.
fn defaults() -> &'static Defaults {
    static DEFAULTS: std::sync::LazyLock<Defaults> = std::sync::LazyLock::new(|| {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap_or_default();
        Defaults {
            null: raw("null"),
            object: raw("{}"),
            auto: raw("\"auto\""),
            one: raw("1"),
            disabled: raw("\"disabled\""),
            text: raw(r#"{"format":{"type":"text"}}"#),
        }
    });
    &DEFAULTS
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
        let joined = conversation(&native, history)?;
        let translation = {
            let items = match &joined {
                Some(items) => &**items,
                None => input(&native)?,
            };
            to_chat(&native, items)?
        };
        let parallel_tool_calls = native
            .typed::<bool>("parallel_tool_calls", "a boolean")?
            .unwrap_or(true);
        let echo = std::sync::Arc::new(Echo::new(
            native,
            translation.echo_tools,
            parallel_tool_calls,
            store,
            previous_response_id.clone(),
            translation.namespaced,
        ));
        Ok(ResponsesRequest {
            chat: translation.chat,
            stream,
            store,
            previous_response_id,
            joined,
            native_only: translation.native_only,
            echo,
        })
    }

    /// The client's body.
    pub fn native(&self) -> &RawObject {
        self.echo.body()
    }

    /// The conversation so far: the stored history, if any, then this request's input,
    /// as a JSON array of input items (what is stored, with the output, for the next
    /// turn). The client's `input` array itself when there is no history.
    pub fn items(&self) -> &RawValue {
        match &self.joined {
            Some(items) => items,
            None => self.native().get("input").unwrap_or(&*defaults().null),
        }
    }

    /// The body for a backend that serves Responses itself: the client's fields with
    /// `model` rewritten, `previous_response_id` resolved into the full `input` (the
    /// gateway owns stored conversations), gateway-only fields dropped.
    pub fn native_body(&self, model: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.items().get().len() + 256);
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
        for (key, value) in self.native().iter() {
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
                        out.extend_from_slice(self.items().get().as_bytes());
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

/// The client's `input`, present and not null.
fn input(fields: &RawObject) -> Result<&RawValue, ApiError> {
    fields
        .get("input")
        .filter(|v| v.get() != "null")
        .ok_or_else(|| field_error("input", "`input` is required."))
}

/// The conversation as one JSON array of items, the history then this input (a string
/// input is one user message); `None` when it is the client's `input` array as sent.
fn conversation(
    fields: &RawObject,
    history: Option<&RawValue>,
) -> Result<Option<Box<RawValue>>, ApiError> {
    let input = input(fields)?;
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
            .map(Some)
        }
        Some(b'[') => Ok(None),
        _ => {
            return Err(field_error(
                "input",
                "`input` must be a string or an array of input items.",
            ))
        }
    }
    .map_err(|e| ApiError::bad_request(format!("The conversation cannot be assembled: {e}.")))?;
    let Some(history) = history else {
        return Ok(this);
    };
    let this = this.as_deref().unwrap_or(input);
    RawValue::from_string(reply::join_arrays(history.get(), this.get()))
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("The conversation cannot be assembled: {e}.")))
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
