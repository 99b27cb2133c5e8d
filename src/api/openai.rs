//! Front-end wire types for the OpenAI API. A body is parsed once, only as deep as
//! routing and billing need: top-level fields stay raw JSON (`RawObject`) and are
//! forwarded byte for byte; the few fields the gateway reads are checked and typed
//! here, so a wrong-typed field is a 400 that names it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;
use super::responses::scan::{self, space, string_end, value_end};
use super::valid;
use crate::catalog::predictor::view::ViewBuilder;

/// Fields the gateway consumes itself and never forwards upstream.
pub const GATEWAY_FIELDS: &[&str] = &["bazaar", "models", "provider"];

/// The largest token count a request may ask for (`max_tokens` and its kin): far above
/// any model's output, and small enough that no reservation, context sum or cost built
/// from it can overflow.
pub const MAX_TOKENS_FIELD: u64 = u32::MAX as u64;

/// The longest identifier a request may give (`model`, `user`, a fallback in `models`,
/// a session id), in bytes: identifiers go into routing keys, ledger rows and error
/// messages, so they are bounded when parsed.
pub const MAX_IDENTIFIER_BYTES: usize = 256;

/// `metadata` as OpenAI bounds it: at most 16 pairs, keys of 64 bytes, values of 512.
const METADATA_PAIRS: usize = 16;
const METADATA_KEY_BYTES: usize = 64;
const METADATA_VALUE_BYTES: usize = 512;

/// 400 naming `param` when `value` is longer than `MAX_IDENTIFIER_BYTES` (the message
/// does not repeat the value).
pub fn check_identifier(param: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_IDENTIFIER_BYTES {
        return Err(ApiError::invalid(
            param,
            format!(
                "`{param}` is {} bytes long; at most {MAX_IDENTIFIER_BYTES} are allowed.",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// Checks `metadata`, when present and an object, against OpenAI's bounds; what it holds
/// is forwarded, never read.
fn check_metadata(fields: &RawObject) -> Result<(), ApiError> {
    let Some(map) = fields.typed::<std::collections::BTreeMap<String, &RawValue>>(
        "metadata",
        "an object of strings",
    )?
    else {
        return Ok(());
    };
    if map.len() > METADATA_PAIRS {
        return Err(ApiError::invalid(
            "metadata",
            format!("`metadata` may hold at most {METADATA_PAIRS} pairs."),
        ));
    }
    for (key, value) in &map {
        if key.len() > METADATA_KEY_BYTES || value.get().len() > METADATA_VALUE_BYTES + 2 {
            return Err(ApiError::invalid(
                "metadata",
                format!("`metadata` keys may be {METADATA_KEY_BYTES} bytes long and values {METADATA_VALUE_BYTES}."),
            ));
        }
    }
    Ok(())
}

/// The most choices (`n`, `best_of`) a request may ask for, as OpenAI allows.
pub const MAX_CHOICES: u64 = 128;

/// The deepest a request body's JSON may nest (objects and arrays). Fields the gateway
/// does not read are forwarded as raw text, which no parser here recurses into; this
/// bound keeps a value nested a million deep from reaching an upstream's parser.
pub const MAX_JSON_DEPTH: usize = 128;

/// 400 when `text` nests objects and arrays deeper than `MAX_JSON_DEPTH`. A linear scan
/// of the bytes, outside strings; it does not validate the JSON (the parser does).
fn check_depth(text: &str) -> Result<(), ApiError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ApiError::bad_request(format!(
                        "The request body nests JSON deeper than {MAX_JSON_DEPTH} levels."
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A JSON object's top-level fields, in the client's order, values left as raw JSON.
#[derive(Debug, Clone, Default)]
pub struct RawObject {
    fields: Vec<(FieldName, Box<RawValue>)>,
    /// One bit per length of the keys present (modulo 64): `get` answers a key of a
    /// length no field has without comparing it to each (a chat body's parse looks up
    /// some 17 names, most of them absent).
    lengths: u64,
}

/// `key`'s bit in `RawObject::lengths`.
fn length_bit(key: &str) -> u64 {
    1 << (key.len() % 64)
}

/// Field names of OpenAI request and reply bodies that parsing keeps as static strings
/// instead of allocating one per field and call.
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "user",
    "metadata",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "reasoning_effort",
    "store",
    "input",
    "prompt",
    "encoding_format",
    "dimensions",
    "id",
    "object",
    "created",
    "choices",
    "usage",
    "system_fingerprint",
    "service_tier",
    // `/v1/responses`
    "instructions",
    "max_output_tokens",
    "reasoning",
    "text",
    "previous_response_id",
];

/// A field's name: one of `KNOWN_FIELDS` without an allocation, else its own copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FieldName(Cow<'static, str>);

impl FieldName {
    fn of(name: &str) -> FieldName {
        FieldName(match KNOWN_FIELDS.iter().find(|k| **k == name) {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(name.to_owned()),
        })
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

/// JSON text already checked (by `valid::object`) as a `Box<RawValue>`, copied once and
/// not parsed again: serde_json reads a `Box<RawValue>` from a map of its raw-value
/// token to the text, as `responses::chat_body` relies on too (and tests).
fn raw_value(text: &str) -> Option<Box<RawValue>> {
    use serde::de::value::{Error, MapDeserializer};
    const TOKEN: &str = "$serde_json::private::RawValue";
    let map = MapDeserializer::<_, Error>::new(std::iter::once((TOKEN, text.to_owned())));
    <Box<RawValue>>::deserialize(map).ok()
}

impl std::ops::Deref for FieldName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for FieldName {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<FieldName> for &str {
    fn eq(&self, other: &FieldName) -> bool {
        **self == *other.0
    }
}

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<FieldName, E> {
                Ok(FieldName::of(name))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

impl RawObject {
    fn of(fields: Vec<(FieldName, Box<RawValue>)>) -> RawObject {
        let lengths = fields.iter().fold(0, |m, (k, _)| m | length_bit(k));
        RawObject { fields, lengths }
    }

    /// Parses a body that must be a JSON object; the error says what is wrong with it.
    pub fn parse(body: &[u8]) -> Result<RawObject, ApiError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("The request body is not valid UTF-8."))?;
        // Most bodies are read by one validating scan; the rest as before, which says
        // what is wrong with them.
        if let Some(object) = RawObject::scan(text) {
            object.check_unique()?;
            return Ok(object);
        }
        if text.trim_start().is_empty() {
            return Err(ApiError::bad_request(
                "The request body is empty; expected a JSON object.",
            ));
        }
        check_depth(text)?;
        let object = serde_json::from_str::<RawObject>(text).map_err(|e| {
            ApiError::bad_request(format!("The request body is not a valid JSON object: {e}."))
        })?;
        object.check_unique()?;
        Ok(object)
    }

    /// The fields of `text` as serde reads them, by `valid::object` (whose scan also
    /// keeps nesting within `MAX_JSON_DEPTH`); `None` for what it does not read plainly.
    fn scan(text: &str) -> Option<RawObject> {
        let mut fields = Vec::with_capacity(8);
        valid::object(text, MAX_JSON_DEPTH as u32 - 1, |key, value| {
            fields.push((FieldName::of(key), raw_value(value)?));
            Some(())
        })?;
        Some(RawObject::of(fields))
    }

    /// 400 naming the first field given twice. The gateway reads one of the values and
    /// forwards the fields as sent, where an upstream's parser may take the other: a
    /// `max_tokens` or `model` checked here would not be the one obeyed.
    fn check_unique(&self) -> Result<(), ApiError> {
        let fields = &self.fields;
        // Bodies have a handful of fields: a pairwise scan beats hashing them.
        let duplicate = if fields.len() <= 32 {
            fields
                .iter()
                .enumerate()
                .find(|(i, (key, _))| fields[..*i].iter().any(|(seen, _)| seen == key))
                .map(|(_, (key, _))| key)
        } else {
            let mut seen = std::collections::HashSet::with_capacity(fields.len());
            fields
                .iter()
                .map(|(key, _)| key)
                .find(|key| !seen.insert(key.as_str()))
        };
        let Some(key) = duplicate else {
            return Ok(());
        };
        Err(if key.len() > MAX_IDENTIFIER_BYTES {
            ApiError::bad_request(format!(
                "A field name of {} bytes appears more than once in the request body.",
                key.len()
            ))
        } else {
            ApiError::invalid(
                key.as_str(),
                format!(
                    "`{key}` appears more than once in the request body; send each field once."
                ),
            )
        })
    }

    /// An object of fields already written (a translated body, each value valid JSON),
    /// in the order given.
    pub fn from_fields(fields: Vec<(String, Box<RawValue>)>) -> RawObject {
        RawObject::of(
            fields
                .into_iter()
                .map(|(k, v)| (FieldName(Cow::Owned(k)), v))
                .collect(),
        )
    }

    /// An object of no fields yet, with room for `n`: a translated body built field by
    /// field with `push_static`.
    pub fn with_capacity(n: usize) -> RawObject {
        RawObject {
            fields: Vec::with_capacity(n),
            lengths: 0,
        }
    }

    /// Appends field `key`, a name known when compiling (not copied), set to `value`.
    pub fn push_static(&mut self, key: &'static str, value: Box<RawValue>) {
        self.lengths |= length_bit(key);
        self.fields.push((FieldName(Cow::Borrowed(key)), value));
    }

    /// The raw value of `key`, if present (the last one wins on duplicates).
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        if self.lengths & length_bit(key) == 0 {
            return None;
        }
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Reads `key` as a token count (absent: `None`); a 400 naming the field when it is
    /// not a non-negative integer or is over `MAX_TOKENS_FIELD`.
    pub fn token_count(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            Some(raw) => read_token_count(key, raw),
            None => Ok(None),
        }
    }

    /// Reads `key` as a number of choices, 1 when absent; a 400 naming the field unless
    /// it is from 1 to `MAX_CHOICES`.
    pub fn choices(&self, key: &str) -> Result<u64, ApiError> {
        let n = self.typed::<u64>(key, "a positive integer")?.unwrap_or(1);
        if n == 0 || n > MAX_CHOICES {
            return Err(ApiError::invalid(
                key,
                format!("`{key}` must be an integer from 1 to {MAX_CHOICES}."),
            ));
        }
        Ok(n)
    }

    /// Iterates the fields in the client's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }

    /// Reads `key` as `T`; absent or `null` is `None`, a wrong type is a 400 naming the field.
    pub fn typed<'a, T: Deserialize<'a>>(
        &'a self,
        key: &str,
        expected: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => read_typed(key, raw, expected),
        }
    }

    /// Writes the object back out with `model` set to `model`, gateway-only fields
    /// dropped, and `extra` fields appended or replacing ones of the same name.
    pub fn write_with(&self, out: &mut Vec<u8>, model: &str, extra: &[(&str, &RawValue)]) {
        out.push(b'{');
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        let mut model_written = false;
        for (key, value) in &self.fields {
            if GATEWAY_FIELDS.contains(&key.as_str()) || extra.iter().any(|(k, _)| k == key) {
                continue;
            }
            if key == "model" && model_written {
                // A duplicate `model` key: keep only one, ours.
                continue;
            }
            sep(out);
            write_json_string(out, key);
            out.push(b':');
            if key == "model" {
                write_json_string(out, model);
                model_written = true;
            } else {
                out.extend_from_slice(value.get().as_bytes());
            }
        }
        for (key, value) in extra {
            sep(out);
            write_json_string(out, key);
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
    }
}

/// Reads the value of field `key` as `T`; `null` is `None`, a wrong type is a 400 naming
/// the field. For front ends that walk a body's fields themselves.
pub fn read_typed<'a, T: Deserialize<'a>>(
    key: &str,
    raw: &'a RawValue,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    if raw.get() == "null" {
        return Ok(None);
    }
    serde_json::from_str(raw.get())
        .map(Some)
        .map_err(|_| ApiError::invalid(key, format!("`{key}` must be {expected}.")))
}

/// Reads field `key` as a token count: a 400 naming it unless a non-negative integer
/// of at most `MAX_TOKENS_FIELD`.
pub fn read_token_count(key: &str, raw: &RawValue) -> Result<Option<u64>, ApiError> {
    match read_typed::<u64>(key, raw, "a non-negative integer")? {
        Some(v) if v > MAX_TOKENS_FIELD => Err(ApiError::invalid(
            key,
            format!("`{key}` must be at most {MAX_TOKENS_FIELD}."),
        )),
        v => Ok(v),
    }
}

/// Reads field `key` as the end user's identifier (chat's `user`): a string of at most
/// `MAX_IDENTIFIER_BYTES`, else a 400 naming the field.
pub fn read_user(key: &str, raw: &RawValue) -> Result<Option<String>, ApiError> {
    let user = read_typed::<String>(key, raw, "a string")?;
    if let Some(user) = &user {
        check_identifier(key, user)?;
    }
    Ok(user)
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<FieldName, Box<RawValue>>()? {
                    fields.push((k, v));
                }
                Ok(RawObject::of(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// What a chat request asks of a backend beyond plain text; the router filters on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub tools: bool,
    pub vision: bool,
    pub json_object: bool,
    pub json_schema: bool,
    pub reasoning: bool,
}

/// `POST /v1/chat/completions`: the raw body plus the fields the gateway reads.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub fields: RawObject,
    pub model: String,
    pub stream: bool,
    /// The client set `stream_options.include_usage`; otherwise the usage chunk is hidden.
    pub client_wants_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    pub n: u64,
    pub needs: Needs,
    /// Characters of text in the prompt: the input to token estimates.
    pub prompt_chars: usize,
    /// Text of the prompt's first user turn or system turn, truncated: for task classification and affinity.
    pub prompt_head: String,
    /// The bounded view of the conversation the quality predictor reads: system head,
    /// first user turn head, the last user turn's head and tail.
    pub predict_view: String,
    pub user: Option<String>,
}

/// A JSON string borrowed from the body when it has no escapes, else unescaped: serde's
/// own `Cow<str>` (and `Option<Cow<str>>` even with `borrow`) always copies.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

fn optional_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(Option::<Text<'de>>::deserialize(d)?.map(|t| t.0))
}

#[derive(Deserialize)]
struct MessageView<'a> {
    #[serde(borrow, default, deserialize_with = "optional_text")]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
}

/// A message as the parse reads it: its role, and its content and tool calls as JSON text.
#[derive(Debug, Default, PartialEq)]
struct Message<'a> {
    role: Option<Cow<'a, str>>,
    content: Option<&'a str>,
    tool_calls: Option<&'a str>,
}

impl<'a> From<MessageView<'a>> for Message<'a> {
    fn from(m: MessageView<'a>) -> Message<'a> {
        Message {
            role: m.role,
            content: m.content.map(RawValue::get),
            tool_calls: m.tool_calls.map(RawValue::get),
        }
    }
}

/// `messages` (JSON text already found valid: the body's scan checked it) read as serde
/// reads `Vec<MessageView>`, without its calls per field; `None` for what it does not
/// read plainly (not an array of objects, an escaped key or role, a role neither a
/// string nor `null`, a field given twice), which serde then reads or refuses.
fn plain_messages(text: &str) -> Option<Vec<Message<'_>>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(4);
    let mut i = space(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = space(b, i + 1);
    if b.get(i) == Some(&b']') {
        return (space(b, i + 1) == b.len()).then_some(out);
    }
    loop {
        let mut message = Message::default();
        let mut seen = 0u8;
        i = valid::members(text, i, |key, at| {
            let (bit, slot) = match key {
                "role" => {
                    valid::once(&mut seen, 0)?;
                    return match b.get(at)? {
                        b'"' => {
                            let (end, escaped) = string_end(b, at)?;
                            message.role = Some(Cow::Borrowed(text.get(at + 1..end - 1)?));
                            (!escaped).then_some(end)
                        }
                        b'n' => Some(at + 4),
                        _ => None,
                    };
                }
                "content" => (1, &mut message.content),
                "tool_calls" => (2, &mut message.tool_calls),
                _ => return value_end(b, at),
            };
            valid::once(&mut seen, bit)?;
            let end = value_end(b, at)?;
            *slot = Some(text.get(at..end)?).filter(|v| *v != "null");
            Some(end)
        })?;
        out.push(message);
        i = space(b, i);
        match b.get(i)? {
            b',' => i = space(b, i + 1),
            b']' => break,
            _ => return None,
        }
    }
    (space(b, i + 1) == b.len()).then_some(out)
}

#[derive(Deserialize)]
struct PartView<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ResponseFormat<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
}

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];
const PROMPT_HEAD_CHARS: usize = 2048;

/// What routing reads of a prompt, gathered turn by turn: its size in characters, the
/// head of its first user or system text, the quality predictor's view, and whether it
/// holds images. Chat's parse and the translating front ends fill it the same way.
#[derive(Debug, Default)]
pub struct PromptScan {
    chars: usize,
    head: String,
    view: ViewBuilder,
    vision: bool,
}

impl PromptScan {
    /// A scan of a prompt whose texts come from a body of `body_bytes`: the head is
    /// allocated once, for the most it can take (a text is never longer than its JSON).
    pub fn with_head_room(body_bytes: usize) -> PromptScan {
        PromptScan {
            // `take_head` may pass the limit by the rest of a character (3 bytes).
            head: String::with_capacity(body_bytes.min(PROMPT_HEAD_CHARS + 3)),
            ..PromptScan::default()
        }
    }

    /// Text of message number `message` (a message's parts share the number) in `role`.
    pub fn text(&mut self, message: usize, role: &str, text: &str) {
        self.chars += text.chars().count();
        take_head(&mut self.head, role, text);
        add_to_view(&mut self.view, message, role, text);
    }

    /// An image part.
    pub fn image(&mut self) {
        self.vision = true;
        // A rough image cost in characters (~765 tokens for a 1024² tile).
        self.chars += 3000;
    }

    /// JSON that reaches the model as written (tool calls, tool declarations), by length.
    pub fn json(&mut self, bytes: usize) {
        self.chars += bytes;
    }
}

/// What a translating front end (Messages, Responses) has already read and checked of
/// the chat request it built, so the request is made without writing the body out and
/// parsing it again.
#[derive(Debug)]
pub struct ChatParts {
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<u64>,
    /// `needs.vision` is taken from `prompt`.
    pub needs: Needs,
    pub prompt: PromptScan,
    pub user: Option<String>,
}

/// Reads `model`: a non-empty string of at most `MAX_IDENTIFIER_BYTES`, else a 400.
pub fn read_model(raw: Option<&RawValue>) -> Result<String, ApiError> {
    let model = match raw {
        // A string (the text is valid JSON) is its text, as serde reads it.
        Some(raw) => match scan::text(raw.get()) {
            Some(text) => Some(text.into_owned()),
            None => read_typed::<String>("model", raw, "a string")?,
        },
        None => None,
    };
    match model {
        Some(m) if !m.trim().is_empty() => {
            check_identifier("model", &m)?;
            Ok(m)
        }
        _ => Err(ApiError::invalid("model", "`model` is required.")),
    }
}

impl ChatRequest {
    /// Parses and checks a chat body; every error names the offending field.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        let fields = RawObject::parse(body)?;
        let model = required_model(&fields)?;
        let stream = fields
            .typed::<bool>("stream", "a boolean")?
            .unwrap_or(false);
        let client_wants_usage = fields
            .typed::<StreamOptions>("stream_options", "an object")?
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let max_tokens = match fields.token_count("max_completion_tokens")? {
            Some(v) => Some(v),
            None => fields.token_count("max_tokens")?,
        };
        let n = fields.choices("n")?;
        for key in [
            "temperature",
            "top_p",
            "presence_penalty",
            "frequency_penalty",
        ] {
            fields.typed::<f64>(key, "a number")?;
        }
        let user = match fields.get("user") {
            Some(raw) => read_user("user", raw)?,
            None => None,
        };
        check_metadata(&fields)?;

        let mut needs = Needs::default();
        if let Some(tools) = fields.get("tools") {
            let list: Vec<&RawValue> = serde_json::from_str(tools.get())
                .map_err(|_| ApiError::invalid("tools", "`tools` must be an array."))?;
            needs.tools = !list.is_empty();
        }
        if let Some(format) = fields.typed::<ResponseFormat>(
            "response_format",
            "an object with a `type` of text, json_object or json_schema",
        )? {
            match format.kind.as_ref() {
                "text" => {}
                "json_object" => needs.json_object = true,
                "json_schema" => needs.json_schema = true,
                other => {
                    return Err(ApiError::invalid(
                        "response_format.type",
                        format!("`response_format.type` must be text, json_object or json_schema, not `{other}`."),
                    ))
                }
            }
        }
        needs.reasoning =
            fields.get("reasoning_effort").is_some() || fields.get("reasoning").is_some();

        let messages = fields
            .get("messages")
            .ok_or_else(|| ApiError::invalid("messages", "`messages` is required."))?;
        let messages = match plain_messages(messages.get()) {
            Some(messages) => messages,
            None => serde_json::from_str::<Vec<MessageView>>(messages.get())
                .map_err(|_| {
                    ApiError::invalid(
                        "messages",
                        "`messages` must be an array of message objects, each with a `role`.",
                    )
                })?
                .into_iter()
                .map(Message::from)
                .collect(),
        };
        if messages.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must not be empty.",
            ));
        }
        let mut prompt = PromptScan::with_head_room(body.len());
        for (i, message) in messages.iter().enumerate() {
            let role = message.role.as_deref().ok_or_else(|| {
                ApiError::invalid(
                    format!("messages[{i}].role"),
                    format!("`messages[{i}].role` is required."),
                )
            })?;
            if !ROLES.contains(&role) {
                return Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    format!(
                        "`messages[{i}].role` must be one of {}; got `{role}`.",
                        ROLES.join(", ")
                    ),
                ));
            }
            if let Some(calls) = message.tool_calls {
                prompt.json(calls.len());
            }
            let Some(content) = message.content else {
                continue;
            };
            let param = || format!("messages[{i}].content");
            match content.as_bytes().first() {
                Some(b'"') => {
                    let text = scan::text(content)
                        .ok_or_else(|| ApiError::invalid(param(), "invalid string"))?;
                    prompt.text(i, role, &text);
                }
                Some(b'[') => {
                    let parts: Vec<PartView> = serde_json::from_str(content).map_err(|_| {
                        ApiError::invalid(
                            param(),
                            format!("`{}` parts must be objects with a `type`.", param()),
                        )
                    })?;
                    for part in parts {
                        match part.kind.as_ref() {
                            "text" | "input_text" => {
                                prompt.text(i, role, &part.text.unwrap_or_default());
                            }
                            "image_url" | "input_image" | "image" => prompt.image(),
                            _ => {}
                        }
                    }
                }
                Some(b'n') => {}
                _ => {
                    return Err(ApiError::invalid(
                        param(),
                        format!(
                            "`{}` must be a string, an array of content parts, or null.",
                            param()
                        ),
                    ))
                }
            }
        }
        if let Some(tools) = fields.get("tools") {
            prompt.json(tools.get().len());
        }
        let mut req = ChatRequest::from_parts(
            fields,
            ChatParts {
                model,
                stream,
                max_tokens,
                needs,
                prompt,
                user,
            },
        );
        req.client_wants_usage = client_wants_usage;
        req.n = n;
        Ok(req)
    }

    /// A request from a body already split into fields and read (a translation another
    /// front end built): nothing is parsed again. One choice; the usage chunk hidden.
    pub fn from_parts(fields: RawObject, parts: ChatParts) -> ChatRequest {
        let mut needs = parts.needs;
        needs.vision = parts.prompt.vision;
        ChatRequest {
            fields,
            model: parts.model,
            stream: parts.stream,
            client_wants_usage: false,
            max_tokens: parts.max_tokens,
            n: 1,
            needs,
            prompt_chars: parts.prompt.chars,
            prompt_head: parts.prompt.head,
            predict_view: parts.prompt.view.view(),
            user: parts.user,
        }
    }

    /// A rough prompt token count (4 characters a token) for routing and budget reservation.
    pub fn estimated_prompt_tokens(&self) -> u64 {
        (self.prompt_chars as u64).div_ceil(4) + 4
    }
}

fn add_to_view(view: &mut ViewBuilder, message: usize, role: &str, text: &str) {
    match role {
        "system" | "developer" => view.system(text),
        "user" => view.user(message, text),
        _ => {}
    }
}

fn take_head(head: &mut String, role: &str, text: &str) {
    if head.len() >= PROMPT_HEAD_CHARS
        || !(role == "user" || role == "system" || role == "developer")
    {
        return;
    }
    // Whole characters up to the first that starts at or past the limit, in one copy.
    let mut end = (PROMPT_HEAD_CHARS - head.len()).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    head.push_str(&text[..end]);
}

fn required_model(fields: &RawObject) -> Result<String, ApiError> {
    read_model(fields.get("model"))
}

/// `POST /v1/embeddings` and `POST /v1/completions`: a raw body with a model and a text input.
#[derive(Debug, Clone)]
pub struct PassthroughRequest {
    pub fields: RawObject,
    pub model: String,
    pub stream: bool,
    pub client_wants_usage: bool,
    pub max_tokens: Option<u64>,
    /// Choices generated per call (`n`, or `best_of` when larger); 1 for embeddings.
    pub n: u64,
    pub prompt_chars: usize,
}

impl PassthroughRequest {
    /// Parses `POST /v1/embeddings`: `input` is a string, an array of strings, or token arrays.
    pub fn parse_embeddings(body: &[u8]) -> Result<PassthroughRequest, ApiError> {
        let fields = RawObject::parse(body)?;
        let model = required_model(&fields)?;
        let input = fields
            .get("input")
            .ok_or_else(|| ApiError::invalid("input", "`input` is required."))?;
        let prompt_chars = text_input_chars(input, "input")?;
        if let Some(format) = fields.typed::<String>("encoding_format", "a string")? {
            if format != "float" && format != "base64" {
                return Err(ApiError::invalid(
                    "encoding_format",
                    format!("`encoding_format` must be float or base64, not `{format}`."),
                ));
            }
        }
        fields.typed::<u64>("dimensions", "a positive integer")?;
        Ok(PassthroughRequest {
            fields,
            model,
            stream: false,
            client_wants_usage: false,
            max_tokens: Some(0),
            n: 1,
            prompt_chars,
        })
    }

    /// Parses legacy `POST /v1/completions`: `prompt` is a string or an array of strings or tokens.
    pub fn parse_completions(body: &[u8]) -> Result<PassthroughRequest, ApiError> {
        let fields = RawObject::parse(body)?;
        let model = required_model(&fields)?;
        let prompt_chars = match fields.get("prompt") {
            Some(prompt) => text_input_chars(prompt, "prompt")?,
            None => return Err(ApiError::invalid("prompt", "`prompt` is required.")),
        };
        let stream = fields
            .typed::<bool>("stream", "a boolean")?
            .unwrap_or(false);
        let client_wants_usage = fields
            .typed::<StreamOptions>("stream_options", "an object")?
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let max_tokens = fields.token_count("max_tokens")?;
        // `best_of` choices are generated (and billed) even though `n` are returned.
        let n = fields.choices("n")?.max(fields.choices("best_of")?);
        Ok(PassthroughRequest {
            fields,
            model,
            stream,
            client_wants_usage,
            max_tokens,
            n,
            prompt_chars,
        })
    }

    /// A rough prompt token count (4 characters a token).
    pub fn estimated_prompt_tokens(&self) -> u64 {
        (self.prompt_chars as u64).div_ceil(4)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TextInput<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
    Tokens(Vec<u64>),
    TokenBatches(Vec<Vec<u64>>),
}

fn text_input_chars(raw: &RawValue, field: &str) -> Result<usize, ApiError> {
    let input: TextInput = serde_json::from_str(raw.get()).map_err(|_| {
        ApiError::invalid(
            field,
            format!(
                "`{field}` must be a string, an array of strings, or an array of token arrays."
            ),
        )
    })?;
    Ok(match input {
        TextInput::One(s) => s.chars().count(),
        TextInput::Many(v) => v.iter().map(|s| s.chars().count()).sum(),
        TextInput::Tokens(t) => t.len() * 4,
        TextInput::TokenBatches(b) => b.iter().map(|t| t.len() * 4).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_field_is_found_whatever_the_lengths_of_the_others() {
        let long = "k".repeat(69);
        let body = format!(r#"{{"model":"m","top_p":1,"{long}":2,"a":3}}"#);
        let parsed = RawObject::parse(body.as_bytes()).unwrap();
        let mut built = RawObject::with_capacity(2);
        built.push_static("model", RawValue::from_string("\"m\"".into()).unwrap());
        let copied = RawObject::from_fields(vec![(
            "top_p".into(),
            RawValue::from_string("1".into()).unwrap(),
        )]);
        for fields in [&parsed, &parsed.clone()] {
            assert_eq!(fields.get("model").unwrap().get(), r#""m""#);
            assert_eq!(fields.get("top_p").unwrap().get(), "1");
            assert_eq!(fields.get(&long).unwrap().get(), "2");
            assert_eq!(fields.get("a").unwrap().get(), "3");
            // Absent, of a length present (5, 69 % 64) and of one that is not.
            for absent in ["tools", "stream", "kkkkk", "n"] {
                assert!(fields.get(absent).is_none(), "{absent}");
            }
        }
        assert_eq!(built.get("model").unwrap().get(), r#""m""#);
        assert!(built.get("top_p").is_none());
        assert_eq!(copied.get("top_p").unwrap().get(), "1");
        assert!(copied.get("model").is_none());
        let served: RawObject = serde_json::from_str(r#"{"id":"x","usage":{}}"#).unwrap();
        assert_eq!(served.get("usage").unwrap().get(), "{}");
        assert!(RawObject::default().get("model").is_none());
    }

    /// `messages` as serde alone reads them.
    fn messages_by_serde(text: &str) -> Option<Vec<Message<'_>>> {
        serde_json::from_str::<Vec<MessageView>>(text)
            .ok()
            .map(|m| m.into_iter().map(Message::from).collect())
    }

    #[test]
    fn messages_are_read_plainly_or_left_to_serde() {
        for text in [
            "[]",
            r#" [ {"role":"system","content":"You are terse."} , {"role":"user","content":"Say \"hi\"","x":[1,{"role":2}]} ] "#,
            r#"[{"role":null,"content":null,"tool_calls":null},{}]"#,
            r#"[{"content":[{"type":"text","text":"a"}],"tool_calls":[{"id":"c"}],"role":"assistant"}]"#,
        ] {
            let plain = plain_messages(text);
            assert!(plain.is_some(), "{text}");
            assert_eq!(plain, messages_by_serde(text), "{text}");
        }
        for text in [
            "{}",
            "[1]",
            r#"[["user","hi"]]"#,
            r#"[{"role":"user","role":"user"}]"#,
            r#"[{"role":"us\u0065r"}]"#,
            r#"[{"r\u006fle":"user"}]"#,
            r#"[{"role":1}]"#,
            r#"[{"content":"a","content":"b"}]"#,
        ] {
            assert_eq!(plain_messages(text), None, "{text}");
        }
        assert!(messages_by_serde(r#"[["user","hi"]]"#).is_some());
    }

    #[test]
    fn nesting_past_the_limit_is_a_400_and_brackets_in_strings_do_not_count() {
        let nested =
            |n: usize| format!(r#"{{"model":"m","x":{}{}}}"#, "[".repeat(n), "]".repeat(n));
        // The body's own object is one level.
        assert!(RawObject::parse(nested(MAX_JSON_DEPTH - 1).as_bytes()).is_ok());
        let e = RawObject::parse(nested(MAX_JSON_DEPTH).as_bytes()).unwrap_err();
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        assert!(RawObject::parse(nested(1_000_000).as_bytes()).is_err());
        let quoted = format!(
            r#"{{"model":"m","x":"{}\"{}"}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert!(RawObject::parse(quoted.as_bytes()).is_ok());
    }

    fn rewrite(body: &str, model: &str) -> String {
        let obj = RawObject::parse(body.as_bytes()).unwrap();
        let mut out = Vec::new();
        obj.write_with(&mut out, model, &[]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rewrite_keeps_unknown_fields_and_order() {
        let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"x_custom":{"a":[1,2]},"seed":7}"#;
        assert_eq!(
            rewrite(body, "up/model"),
            r#"{"model":"up/model","messages":[{"role":"user","content":"hi"}],"x_custom":{"a":[1,2]},"seed":7}"#
        );
    }

    #[test]
    fn rewrite_drops_gateway_fields() {
        let body = r#"{"model":"m","bazaar":{"policy":"cheapest"},"models":["a"],"provider":{"only":["x"]},"messages":[]}"#;
        assert_eq!(rewrite(body, "m"), r#"{"model":"m","messages":[]}"#);
    }

    #[test]
    fn a_field_given_twice_is_refused_by_name() {
        let param = |body: String| match RawObject::parse(body.as_bytes()) {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            other => panic!("{body}: {other:?}"),
        };
        let twice = r#"{"model":"m","max_tokens":5,"messages":[],"max_tokens":9}"#;
        assert_eq!(param(twice.into()).as_deref(), Some("max_tokens"));
        // Past the pairwise scan's reach, the hashed one finds it too.
        let many: String = (0..40).map(|i| format!(r#""f{i}":{i},"#)).collect();
        assert_eq!(
            param(format!(r#"{{{many}"model":"a","model":"b"}}"#)).as_deref(),
            Some("model")
        );
        assert!(RawObject::parse(format!(r#"{{{many}"model":"a"}}"#).as_bytes()).is_ok());
    }

    #[test]
    fn a_second_model_field_is_dropped_whole_when_written() {
        let raw = |s: &str| RawValue::from_string(s.into()).unwrap();
        let fields = RawObject::from_fields(vec![
            ("model".into(), raw(r#""a""#)),
            ("x".into(), raw("1")),
            ("model".into(), raw(r#""b""#)),
        ]);
        let mut out = Vec::new();
        fields.write_with(&mut out, "up", &[]);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"model":"up","x":1}"#);
    }

    #[test]
    fn extra_fields_replace_existing() {
        let obj =
            RawObject::parse(br#"{"model":"m","stream_options":{"include_usage":false}}"#).unwrap();
        let extra = RawValue::from_string(r#"{"include_usage":true}"#.into()).unwrap();
        let mut out = Vec::new();
        obj.write_with(&mut out, "m", &[("stream_options", &extra)]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"m","stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            (r#"{"model":3,"messages":[]}"#, "model"),
            (r#"{"model":"m","messages":{}}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                "stream",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}"#,
                "n",
            ),
        ];
        for (body, param) in cases {
            match ChatRequest::parse(body.as_bytes()) {
                Err(ApiError::InvalidRequest { param: Some(p), .. }) => {
                    assert_eq!(p, param, "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn needs_are_detected() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}]}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{}}}],
            "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}},
            "stream":true,"stream_options":{"include_usage":true},"max_tokens":10}"#;
        let req = ChatRequest::parse(body).unwrap();
        assert!(req.needs.tools && req.needs.vision && req.needs.json_schema);
        assert!(req.stream && req.client_wants_usage);
        assert_eq!(req.max_tokens, Some(10));
        assert_eq!(req.prompt_head, "what is this");
    }

    #[test]
    fn hostile_bodies_are_rejected_cleanly() {
        let deep = "[".repeat(100_000);
        let bodies: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"{\"model\":".to_vec(),
            b"[1,2,3]".to_vec(),
            vec![0xff, 0xfe, 0x7b],
            format!("{{\"model\":\"m\",\"messages\":{deep}").into_bytes(),
        ];
        for body in bodies {
            assert!(ChatRequest::parse(&body).is_err());
        }
    }

    /// The prompt head as it was taken before it was copied in one piece: character by
    /// character while shorter than the limit.
    fn head_by_chars(head: &mut String, text: &str) {
        for c in text.chars() {
            if head.len() >= PROMPT_HEAD_CHARS {
                break;
            }
            head.push(c);
        }
    }

    #[test]
    fn known_and_unknown_field_names_read_the_same() {
        let body = br#"{"mo\u0064el":"n","x_custom":1,"messages":[]}"#;
        let obj = RawObject::parse(body).unwrap();
        let names: Vec<&str> = obj.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["model", "x_custom", "messages"]);
        assert_eq!(obj.get("model").unwrap().get(), r#""n""#);
        // An escaped spelling is the same field.
        let twice = br#"{"model":"m","mo\u0064el":"n"}"#;
        match RawObject::parse(twice) {
            Err(ApiError::InvalidRequest { param: Some(p), .. }) => assert_eq!(p, "model"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn message_text_is_borrowed_unless_escaped() {
        let m: MessageView = serde_json::from_str(r#"{"role":"user","content":"hi"}"#).unwrap();
        assert!(matches!(m.role, Some(Cow::Borrowed("user"))));
        let Text(text) = serde_json::from_str(m.content.unwrap().get()).unwrap();
        assert!(matches!(text, Cow::Borrowed("hi")));
        let m: MessageView =
            serde_json::from_str(r#"{"role":"us\u0065r","content":"h\u0069"}"#).unwrap();
        assert_eq!(m.role.as_deref(), Some("user"));
        let Text(text) = serde_json::from_str(m.content.unwrap().get()).unwrap();
        assert_eq!(text, "hi");
        let m: MessageView = serde_json::from_str(r#"{"role":null}"#).unwrap();
        assert!(m.role.is_none());
        assert!(serde_json::from_str::<MessageView>(r#"{"role":1}"#).is_err());
        let p: PartView = serde_json::from_str(r#"{"type":"text","text":"a\"b"}"#).unwrap();
        assert_eq!(p.text.as_deref(), Some("a\"b"));
        let p: PartView = serde_json::from_str(r#"{"type":"text","text":"ab"}"#).unwrap();
        assert!(matches!(p.text, Some(Cow::Borrowed("ab"))));
    }

    /// A message of `messages`: objects of the fields the parse reads (any JSON value in
    /// them, keys possibly repeated or escaped), or another value.
    fn message() -> impl Strategy<Value = String> {
        let value = crate::api::valid::tests::json();
        let member = ("role|content|tool_calls|name|r\\u006fle|[a-z]{0,2}", value)
            .prop_map(|(k, v)| format!("\"{k}\":{}", serde_json::to_string(&v).unwrap()));
        let role = "system|user|assistant|us\\u0065r|".prop_map(|r| format!("\"role\":\"{r}\""));
        let object = prop::collection::vec(prop_oneof![member, role], 0..4)
            .prop_map(|m| format!("{{{}}}", m.join(",")));
        prop_oneof![
            4 => object,
            1 => crate::api::valid::tests::json().prop_map(|v| serde_json::to_string(&v).unwrap()),
        ]
    }

    /// A message as a hostile client writes it, as text: keys escaped (`"\u0072ole"`),
    /// repeated, not ASCII; roles escaped, empty, of other types; contents with lone
    /// surrogates, escapes, non-ASCII text, numbers out of range, nesting past serde's
    /// recursion limit; odd whitespace.
    fn hostile_message() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            r#""role""#,
            r#""content""#,
            r#""tool_calls""#,
            r#""\u0072ole""#,
            r#""c\u006fntent""#,
            r#""r\u00f4le""#,
            "\"r\u{f4}le\"",
            r#""name""#,
            r#""""#,
        ]);
        let value = prop::sample::select(vec![
            r#""user""#,
            r#""assistant""#,
            r#""us\u0065r""#,
            r#""""#,
            "\"\u{e9}\u{1F600}\"",
            r#""\ud800""#,
            r#""\ud83d\ude00 \"q\" \\ \/""#,
            "null",
            "true",
            "1e400",
            "-0",
            "18446744073709551616",
            r#"[{"type":"text","text":"a"}]"#,
            r#"[{"type":"text","text":"\ud800"}]"#,
            r#"{"role":"user"}"#,
            "[]",
            "{}",
        ])
        .prop_map(str::to_string);
        let deep = (100usize..200).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)));
        let member =
            (key, prop_oneof![8 => value, 1 => deep]).prop_map(|(k, v)| format!("{k}:{v}"));
        prop_oneof![
            6 => prop::collection::vec(member, 0..4).prop_map(|m| format!("{{{}}}", m.join(","))),
            1 => Just(r#"["user","hi"]"#.to_string()),
            1 => Just("null".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn hostile_messages_are_read_as_serde_reads_them(
            messages in prop::collection::vec(hostile_message(), 0..4),
            space in prop::sample::select(vec!["", " ", "\t\r\n"]),
        ) {
            let text = format!("[{space}{}{space}]", messages.join(&format!("{space},{space}")));
            prop_assume!(serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok());
            if let Some(plain) = plain_messages(&text) {
                prop_assert_eq!(Some(plain), messages_by_serde(&text), "{}", text);
            }
        }

        /// A whole chat body around hostile messages: the parse never panics, and a body
        /// serde refuses as a JSON object is refused.
        #[test]
        fn hostile_chat_bodies_parse_or_are_refused(
            messages in prop::collection::vec(hostile_message(), 0..4),
            escaped in any::<bool>(),
        ) {
            let key = if escaped { r#""\u006dessages""# } else { r#""messages""# };
            let body = format!(r#"{{"model":"m",{key}:[{}]}}"#, messages.join(","));
            let parsed = ChatRequest::parse(body.as_bytes());
            if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&body).is_err()
                && serde_json::from_str::<serde::de::IgnoredAny>(&body).is_err()
            {
                prop_assert!(parsed.is_err(), "{}", body);
            }
        }
    }

    proptest! {
        #[test]
        fn messages_are_read_as_serde_reads_them(
            messages in prop::collection::vec(message(), 0..4),
            wide in any::<bool>(),
        ) {
            let sep = if wide { " \n" } else { "" };
            let text = format!("[{sep}{}{sep}]", messages.join(&format!(",{sep}")));
            prop_assume!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
            if let Some(plain) = plain_messages(&text) {
                prop_assert_eq!(Some(plain), messages_by_serde(&text), "{}", text);
            }
        }
    }

    proptest! {
        #[test]
        fn the_prompt_head_is_cut_at_the_same_character(
            first in "\\PC{0,700}", second in "[aé😀 ]{0,2100}"
        ) {
            let (mut fast, mut slow) = (String::new(), String::new());
            for text in [&first, &second] {
                take_head(&mut fast, "user", text);
                head_by_chars(&mut slow, text);
            }
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn unknown_fields_round_trip(key in "[a-z_]{1,12}", n in any::<i64>(), s in "\\PC{0,20}") {
            prop_assume!(!GATEWAY_FIELDS.contains(&key.as_str()) && key != "model");
            let value = serde_json::json!({"model": "m", &key: {"n": n, "s": s}});
            let text = serde_json::to_string(&value).unwrap();
            let out = rewrite(&text, "m");
            let back: serde_json::Value = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(back, value);
        }
    }

    /// The fields serde reads from `text` (the path for what the scan leaves), as text.
    fn fields_by_serde(text: &str) -> Option<Vec<(String, String)>> {
        check_depth(text).ok()?;
        let object: RawObject = serde_json::from_str(text).ok()?;
        Some(listed(&object))
    }

    fn listed(object: &RawObject) -> Vec<(String, String)> {
        object
            .iter()
            .map(|(k, v)| (k.to_string(), v.get().to_string()))
            .collect()
    }

    #[test]
    fn a_chat_body_is_scanned_with_its_fields_as_serde_reads_them() {
        let body = r#" {"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say \"hello\"\n"}],"x-extra":{"a":[1,2.5e-3]}} "#;
        let scanned = RawObject::scan(body).unwrap();
        assert_eq!(Some(listed(&scanned)), fields_by_serde(body));
        assert!(matches!(scanned.fields[0].0 .0, Cow::Borrowed("model")));
        // An escaped key, and nesting at the limit, are left to the serde path.
        assert!(RawObject::scan(r#"{"mo\u0064el":"m"}"#).is_none());
        let nested = |n: usize| format!(r#"{{"x":{}{}}}"#, "[".repeat(n), "]".repeat(n));
        assert!(RawObject::scan(&nested(MAX_JSON_DEPTH - 1)).is_some());
        assert!(RawObject::scan(&nested(MAX_JSON_DEPTH)).is_none());
    }

    mod scanned {
        use super::*;
        use crate::api::valid::tests::json;

        proptest! {
            #[test]
            fn bodies_are_scanned_as_serde_reads_them(
                fields in prop::collection::vec(("model|messages|[a-z\"\u{e9}]{0,4}", json()), 0..6),
                wide in any::<bool>(),
                cut in any::<prop::sample::Index>(),
                byte in prop::sample::select(b"{}[],:\"\\ 0-.eE+tfnu1x\n\x01".to_vec()),
                mangle in 0u8..3,
            ) {
                let object = serde_json::Value::Object(fields.into_iter().collect());
                let text = if wide {
                    serde_json::to_string_pretty(&object).unwrap()
                } else {
                    serde_json::to_string(&object).unwrap()
                };
                let mut bytes = text.into_bytes();
                let at = cut.index(bytes.len() + 1);
                match mangle {
                    0 => {}
                    1 if at < bytes.len() => bytes[at] = byte,
                    _ => bytes.insert(at, byte),
                }
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    let serde = fields_by_serde(text);
                    match RawObject::scan(text) {
                        Some(scanned) => prop_assert_eq!(Some(listed(&scanned)), serde),
                        // Unmangled, only an escaped key is left to serde.
                        None if mangle == 0 => prop_assert!(text.contains("\\\"")),
                        None => {}
                    }
                }
            }
        }
    }
}
