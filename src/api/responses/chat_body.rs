//! The Chat Completions body a Responses request becomes, written as JSON text while
//! `request` reads the client's body (one pass: no typed chat request is built and then
//! serialised), with what routing reads of the prompt gathered on the way. It writes the
//! bytes serde wrote for the chat shape (the golden files hold it to them); it checks
//! nothing itself: `request` refuses what chat cannot carry before handing it over.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::scan;
use super::write::plain_len;
use crate::api::openai::{read_model, ChatParts, ChatRequest, Needs, PromptScan, RawObject};
use crate::api::ApiError;

/// A function name as chat gets it: the client's JSON, or a name the gateway made.
/// Pieces of the client's body below its top level are held as their JSON text (valid,
/// as the body is), top-level fields as the `RawValue`s the body was split into.
pub(super) enum Name<'a> {
    Raw(&'a str),
    Made(String),
}

/// A function tool as chat gets it (`{"type":"function","function":{…}}`); `None`
/// members are left out.
pub(super) struct ToolFn<'a> {
    pub name: Name<'a>,
    pub description: Option<&'a str>,
    pub parameters: Option<&'a str>,
    pub strict: Option<&'a str>,
}

/// `tool_choice`: a mode as the client wrote it, or one function by name.
pub(super) enum Choice<'a> {
    Mode(&'a RawValue),
    Function(&'a str),
}

/// `response_format`.
pub(super) enum Format<'a> {
    JsonObject,
    JsonSchema {
        name: &'a str,
        schema: &'a str,
        strict: Option<bool>,
        description: Option<&'a str>,
    },
}

/// A content part as chat gets it.
pub(super) enum ChatPart<'a> {
    Text(&'a str),
    Image {
        url: &'a str,
        detail: Option<&'a str>,
    },
    File {
        file_data: Option<&'a str>,
        file_id: Option<&'a str>,
        filename: Option<&'a str>,
    },
}

/// The chat request being written. Top-level fields left `None` (or empty) are not sent.
#[derive(Default)]
pub(super) struct ChatBody<'a> {
    pub model: Option<&'a RawValue>,
    /// Sent as `max_completion_tokens`.
    pub max_completion_tokens: Option<&'a RawValue>,
    /// The output cap, read and checked.
    pub cap: Option<u64>,
    pub stream: Option<bool>,
    /// Checked as a number.
    pub temperature: Option<&'a RawValue>,
    /// Checked as a number.
    pub top_p: Option<&'a RawValue>,
    /// Checked as an identifier (`openai::read_user`).
    pub user: Option<String>,
    pub tools: Vec<ToolFn<'a>>,
    pub tool_choice: Option<Choice<'a>>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<Format<'a>>,
    pub reasoning_effort: Option<Cow<'a, str>>,
    /// Routing preferences: the router reads them, upstream bodies drop them.
    pub bazaar: Option<&'a RawValue>,
    pub models: Option<&'a RawValue>,
    pub provider: Option<&'a RawValue>,
    messages: Messages,
}

/// The `messages` array as it is written: every message closed but the last, which tool
/// calls may still join.
#[derive(Default)]
struct Messages {
    text: String,
    count: usize,
    /// The last message is not closed yet.
    open: bool,
    /// Where the open message's `tool_calls` array starts, once it has one.
    calls_at: Option<usize>,
    prompt: PromptScan,
}

/// `s` as a JSON string, escaped as serde_json escapes it.
pub(super) fn push_string(out: &mut String, s: &str) {
    if plain_len(s.as_bytes()) < s.len() {
        // Serialising a &str cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
        return;
    }
    out.reserve(s.len() + 2);
    out.push('"');
    out.push_str(s);
    out.push('"');
}

/// `,"key":` then `value`, when there is one.
fn push_member(out: &mut String, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":");
        out.push_str(v);
    }
}

fn push_name(out: &mut String, name: &Name<'_>) {
    match name {
        Name::Raw(json) => out.push_str(json),
        Name::Made(s) => push_string(out, s),
    }
}

impl Messages {
    /// Closes the open message (its `tool_calls` counted as the prompt's JSON).
    fn close(&mut self) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        if let Some(at) = self.calls_at.take() {
            self.text.push(']');
            self.prompt.json(self.text.len() - at);
        }
        self.text.push('}');
    }

    /// Opens message `{"role":…` (closing the one before).
    fn open(&mut self, role: &'static str) {
        self.close();
        self.text.push_str(if self.count == 0 {
            "[{\"role\":\""
        } else {
            ",{\"role\":\""
        });
        self.text.push_str(role);
        self.text.push('"');
        self.count += 1;
        self.open = true;
    }

    /// The open message's number and role, for the prompt scan.
    fn text_in(&mut self, role: &str, text: &str) {
        self.prompt.text(self.count - 1, role, text);
    }
}

impl<'a> ChatBody<'a> {
    /// A body whose prompt comes from about `bytes` of the client's JSON.
    pub fn with_prompt_room(bytes: usize) -> ChatBody<'a> {
        ChatBody {
            messages: Messages {
                text: String::with_capacity(bytes + 128),
                prompt: PromptScan::with_head_room(bytes),
                ..Messages::default()
            },
            ..ChatBody::default()
        }
    }

    /// How many messages are written.
    pub fn message_count(&self) -> usize {
        self.messages.count
    }

    /// A message of `role` with `content`.
    pub fn message(&mut self, role: &'static str, content: &Content<'a>) {
        match content {
            Content::Raw(raw) => self.message_raw(role, raw),
            Content::Text(text) => {
                let m = &mut self.messages;
                m.open(role);
                m.text.push_str(",\"content\":");
                push_string(&mut m.text, text);
                m.text_in(role, text);
            }
            Content::Parts(parts) => self.message_parts(role, parts),
        }
    }

    /// A `tool` message answering call `id` with `content`.
    pub fn tool_result(&mut self, id: &str, content: &Content<'a>) {
        self.message("tool", content);
        let m = &mut self.messages;
        m.text.push_str(",\"tool_call_id\":");
        m.text.push_str(id);
    }

    /// A message of `role` whose content is the JSON `content`, as written.
    fn message_raw(&mut self, role: &'static str, content: &str) {
        let m = &mut self.messages;
        m.open(role);
        m.text.push_str(",\"content\":");
        m.text.push_str(content);
        if let Some(text) = scan::text(content) {
            m.text_in(role, &text);
        }
    }

    /// A message of `role` with content `parts` (a lone text part as plain text, the
    /// form every chat host takes).
    fn message_parts(&mut self, role: &'static str, parts: &[ChatPart<'a>]) {
        if let [ChatPart::Text(text)] = parts {
            return self.message_raw(role, text);
        }
        let m = &mut self.messages;
        m.open(role);
        m.text.push_str(",\"content\":[");
        for (j, part) in parts.iter().enumerate() {
            if j > 0 {
                m.text.push(',');
            }
            match part {
                ChatPart::Text(text) => {
                    m.text.push_str("{\"type\":\"text\",\"text\":");
                    m.text.push_str(text);
                    m.text.push('}');
                    if let Some(t) = scan::text(text) {
                        m.text_in(role, &t);
                    }
                }
                ChatPart::Image { url, detail } => {
                    m.text
                        .push_str("{\"type\":\"image_url\",\"image_url\":{\"url\":");
                    m.text.push_str(url);
                    push_member(&mut m.text, "detail", *detail);
                    m.text.push_str("}}");
                    m.prompt.image();
                }
                ChatPart::File {
                    file_data,
                    file_id,
                    filename,
                } => {
                    m.text.push_str("{\"type\":\"file\",\"file\":{");
                    let start = m.text.len();
                    push_member(&mut m.text, "file_data", *file_data);
                    push_member(&mut m.text, "file_id", *file_id);
                    push_member(&mut m.text, "filename", *filename);
                    // The members were written each after a comma: drop the first.
                    if m.text.len() > start {
                        m.text.remove(start);
                    }
                    m.text.push_str("}}");
                }
            }
        }
        m.text.push(']');
    }

    /// A tool call: joins the open assistant message when `join`, else opens one with
    /// `content: null`.
    pub fn tool_call(&mut self, join: bool, id: &str, name: &Name<'_>, arguments: &str) {
        let m = &mut self.messages;
        if !join || !m.open {
            m.open("assistant");
            m.text.push_str(",\"content\":null");
        }
        match m.calls_at {
            Some(_) => m.text.push(','),
            None => {
                m.text.push_str(",\"tool_calls\":");
                m.calls_at = Some(m.text.len());
                m.text.push('[');
            }
        }
        m.text.push_str("{\"id\":");
        m.text.push_str(id);
        m.text
            .push_str(",\"type\":\"function\",\"function\":{\"name\":");
        push_name(&mut m.text, name);
        m.text.push_str(",\"arguments\":");
        m.text.push_str(arguments);
        m.text.push_str("}}");
    }

    /// The chat request: `model` read and checked, each field written once into the
    /// body kept for upstreams, in the order chat's translation always wrote them.
    pub fn into_request(self) -> Result<ChatRequest, ApiError> {
        let model = read_model(self.model)?;
        let mut messages = self.messages;
        if messages.count == 0 {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must not be empty.",
            ));
        }
        messages.close();
        messages.text.push(']');
        let mut prompt = messages.prompt;
        let mut fields = RawObject::with_capacity(16);
        if let Some(v) = self.model {
            fields.push_static("model", v.to_owned());
        }
        fields.push_static("messages", written(messages.text)?);
        if let Some(v) = self.max_completion_tokens {
            fields.push_static("max_completion_tokens", v.to_owned());
        }
        if let Some(stream) = self.stream {
            fields.push_static("stream", written(bool_text(stream).to_string())?);
        }
        for (key, value) in [("temperature", self.temperature), ("top_p", self.top_p)] {
            if let Some(v) = value {
                fields.push_static(key, v.to_owned());
            }
        }
        if let Some(user) = &self.user {
            let mut text = String::with_capacity(user.len() + 2);
            push_string(&mut text, user);
            fields.push_static("user", written(text)?);
        }
        if !self.tools.is_empty() {
            let text = write_tools(&self.tools);
            prompt.json(text.len());
            fields.push_static("tools", written(text)?);
        }
        match &self.tool_choice {
            Some(Choice::Mode(raw)) => fields.push_static("tool_choice", (*raw).to_owned()),
            Some(Choice::Function(name)) => {
                let mut text = String::with_capacity(name.len() + 40);
                text.push_str("{\"type\":\"function\",\"function\":{\"name\":");
                text.push_str(name);
                text.push_str("}}");
                fields.push_static("tool_choice", written(text)?);
            }
            None => {}
        }
        if let Some(parallel) = self.parallel_tool_calls {
            fields.push_static(
                "parallel_tool_calls",
                written(bool_text(parallel).to_string())?,
            );
        }
        if let Some(format) = &self.response_format {
            let mut text = String::new();
            write_format(&mut text, format);
            fields.push_static("response_format", written(text)?);
        }
        if let Some(effort) = &self.reasoning_effort {
            let mut text = String::with_capacity(effort.len() + 2);
            push_string(&mut text, effort);
            fields.push_static("reasoning_effort", written(text)?);
        }
        for (key, value) in [
            ("bazaar", self.bazaar),
            ("models", self.models),
            ("provider", self.provider),
        ] {
            if let Some(v) = value {
                fields.push_static(key, v.to_owned());
            }
        }
        let needs = Needs {
            tools: !self.tools.is_empty(),
            vision: false,
            json_object: matches!(self.response_format, Some(Format::JsonObject)),
            json_schema: matches!(self.response_format, Some(Format::JsonSchema { .. })),
            reasoning: self.reasoning_effort.is_some(),
        };
        Ok(ChatRequest::from_parts(
            fields,
            ChatParts {
                model,
                stream: self.stream.unwrap_or(false),
                max_tokens: self.cap,
                needs,
                prompt,
                user: self.user,
            },
        ))
    }
}

/// A message's content: JSON as written (a string, or `null`), text, or parts.
pub(super) enum Content<'a> {
    Raw(&'a str),
    Text(String),
    Parts(Vec<ChatPart<'a>>),
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// The chat `tools` array, written into a string of the size it takes.
fn write_tools(tools: &[ToolFn<'_>]) -> String {
    const HEAD: &str = "{\"type\":\"function\",\"function\":{\"name\":";
    let member = |key: &str, v: Option<&str>| v.map_or(0, |v| key.len() + 4 + v.len());
    let size = tools
        .iter()
        .map(|t| {
            let name = match &t.name {
                Name::Raw(json) => json.len(),
                // Room for a few escapes; a longer name grows the string.
                Name::Made(s) => s.len() + 8,
            };
            HEAD.len()
                + name
                + member("description", t.description)
                + member("parameters", t.parameters)
                + member("strict", t.strict)
                + 3
        })
        .sum::<usize>();
    // Each tool's share counts a comma; the brackets take one more byte.
    let mut out = String::with_capacity(size + 1);
    out.push('[');
    for (i, t) in tools.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(HEAD);
        push_name(&mut out, &t.name);
        push_member(&mut out, "description", t.description);
        push_member(&mut out, "parameters", t.parameters);
        push_member(&mut out, "strict", t.strict);
        out.push_str("}}");
    }
    out.push(']');
    out
}

fn write_format(out: &mut String, format: &Format<'_>) {
    match format {
        Format::JsonObject => out.push_str("{\"type\":\"json_object\"}"),
        Format::JsonSchema {
            name,
            schema,
            strict,
            description,
        } => {
            out.push_str("{\"type\":\"json_schema\",\"json_schema\":{\"name\":");
            out.push_str(name);
            out.push_str(",\"schema\":");
            out.push_str(schema);
            if let Some(strict) = strict {
                out.push_str(",\"strict\":");
                out.push_str(bool_text(*strict));
            }
            push_member(out, "description", *description);
            out.push_str("}}");
        }
    }
}

/// JSON text written here, as a `RawValue`, neither parsed again nor copied: serde_json
/// reads a `Box<RawValue>` from a map of its raw-value token to the text, and takes a
/// text given as a `String` as it is (its own protocol for raw values). The test
/// `written_json_is_kept_as_is` holds serde_json to that.
fn written(text: String) -> Result<Box<RawValue>, ApiError> {
    use serde::de::value::{Error, MapDeserializer};
    const TOKEN: &str = "$serde_json::private::RawValue";
    let map = MapDeserializer::<_, Error>::new(std::iter::once((TOKEN, text)));
    <Box<RawValue>>::deserialize(map)
        .map_err(|e| ApiError::bad_request(format!("The request cannot be translated: {e}.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_json_is_kept_as_is() {
        for text in [
            r#"[{"role":"user","content":"a \"b\" é"}]"#,
            "true",
            r#"{"type":"json_object"}"#,
        ] {
            let raw = written(text.to_string()).unwrap();
            assert_eq!(raw.get(), text);
            let parsed: Box<RawValue> = serde_json::from_str(text).unwrap();
            assert_eq!(raw.get(), parsed.get());
        }
    }
}
