//! The Chat Completions request a translating front end (Anthropic Messages, Responses)
//! builds from its client's body: typed, borrowing the client's JSON wherever a value
//! passes through unchanged, and made into a `ChatRequest` directly (each field written
//! once, the prompt read from the typed turns), never written out whole and parsed
//! again. Pure; what a front end cannot translate it refuses before it gets here.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::openai::{read_model, ChatParts, ChatRequest, Needs, PromptScan, RawObject};
use super::ApiError;

/// A JSON value written as it came (`Raw`, valid JSON) or as a string (`Str`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Json<'a> {
    Raw(&'a RawValue),
    Str(Cow<'a, str>),
}

/// The chat request being built. Fields left `None` (or empty) are not sent.
#[derive(Debug, Default)]
pub struct ChatOut<'a> {
    pub model: Option<&'a RawValue>,
    pub messages: Vec<MessageOut<'a>>,
    /// Sent as `max_tokens` (Messages' own name, which every chat host takes).
    pub max_tokens: Option<&'a RawValue>,
    /// Sent as `max_completion_tokens`.
    pub max_completion_tokens: Option<&'a RawValue>,
    /// The output cap as read and checked by the front end, under its own field name.
    pub cap: Option<u64>,
    pub stream: Option<bool>,
    /// Checked as a number by the front end.
    pub temperature: Option<&'a RawValue>,
    /// Checked as a number by the front end.
    pub top_p: Option<&'a RawValue>,
    pub top_k: Option<&'a RawValue>,
    pub stop: Option<&'a RawValue>,
    /// Checked as an identifier by the front end (`openai::read_user`).
    pub user: Option<String>,
    pub tools: Vec<ToolOut<'a>>,
    pub tool_choice: Option<ToolChoiceOut<'a>>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<FormatOut<'a>>,
    pub reasoning_effort: Option<Cow<'a, str>>,
    /// Routing preferences: the router reads them, upstream bodies drop them.
    pub bazaar: Option<&'a RawValue>,
    pub models: Option<&'a RawValue>,
    pub provider: Option<&'a RawValue>,
}

/// One chat message.
#[derive(Debug, Serialize)]
pub struct MessageOut<'a> {
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a RawValue>,
    /// Earlier thinking, for hosts that take it back (DeepSeek, LiteLLM-style proxies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thinking_blocks: Vec<ThinkingOut<'a>>,
}

impl<'a> MessageOut<'a> {
    /// A message of `role` with `content` and nothing else.
    pub fn plain(role: &'static str, content: Option<ContentOut<'a>>) -> MessageOut<'a> {
        MessageOut {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
            reasoning_content: None,
            thinking_blocks: Vec::new(),
        }
    }
}

/// A message's content: a JSON string as written, text, parts, or an explicit `null`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ContentOut<'a> {
    Raw(&'a RawValue),
    Text(Cow<'a, str>),
    Parts(Vec<PartOut<'a>>),
    Null,
}

impl<'a> ContentOut<'a> {
    /// Parts as content: a lone text part as plain text, the form every chat host takes.
    pub fn simplest(mut parts: Vec<PartOut<'a>>) -> ContentOut<'a> {
        match parts.pop() {
            Some(PartOut::Text { text }) if parts.is_empty() => ContentOut::Raw(text),
            Some(last) => {
                parts.push(last);
                ContentOut::Parts(parts)
            }
            None => ContentOut::Parts(parts),
        }
    }
}

// `cache_control` breakpoints and the like are not carried: strict OpenAI-compatible
// hosts refuse unknown keys in content parts.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PartOut<'a> {
    Text { text: &'a RawValue },
    ImageUrl { image_url: ImageOut<'a> },
    File { file: FileOut<'a> },
}

#[derive(Debug, Serialize)]
pub struct ImageOut<'a> {
    /// A URL or a `data:` URL.
    pub url: Json<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a RawValue>,
}

#[derive(Debug, Serialize)]
pub struct FileOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_data: Option<Json<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<&'a RawValue>,
}

#[derive(Debug, Serialize)]
pub struct ToolCallOut<'a> {
    pub id: &'a RawValue,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionOut<'a>,
}

#[derive(Debug, Serialize)]
pub struct FunctionOut<'a> {
    pub name: Json<'a>,
    /// The arguments' JSON text, as a string.
    pub arguments: Json<'a>,
}

#[derive(Debug, Serialize)]
pub struct ThinkingOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a RawValue>,
}

#[derive(Debug, Serialize)]
pub struct ToolOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: ToolFunctionOut<'a>,
}

#[derive(Debug, Serialize)]
pub struct ToolFunctionOut<'a> {
    pub name: Json<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<&'a RawValue>,
}

/// `tool_choice`: a mode (`auto`, `none`, `required`) or one function by name.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ToolChoiceOut<'a> {
    /// A mode as the client wrote it.
    Raw(&'a RawValue),
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NamedOut<'a>,
    },
}

#[derive(Debug, Serialize)]
pub struct NamedOut<'a> {
    pub name: &'a RawValue,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FormatOut<'a> {
    JsonObject,
    JsonSchema { json_schema: SchemaOut<'a> },
}

#[derive(Debug, Serialize)]
pub struct SchemaOut<'a> {
    pub name: Json<'a>,
    pub schema: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a RawValue>,
}

/// A JSON string's text (`None` when `raw` is not a string).
fn string_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str(raw.get()).ok()
}

/// Counts the bytes written to it.
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Collects the request's fields, each written once.
struct Fields(Vec<(String, Box<RawValue>)>);

impl Fields {
    fn raw(&mut self, key: &str, value: Option<&RawValue>) {
        if let Some(v) = value {
            self.0.push((key.to_string(), v.to_owned()));
        }
    }

    fn put(&mut self, key: &str, value: &impl Serialize) -> Result<(), ApiError> {
        let written = serde_json::value::to_raw_value(value).map_err(|e| {
            ApiError::bad_request(format!("The request cannot be translated: {e}."))
        })?;
        self.0.push((key.to_string(), written));
        Ok(())
    }
}

impl<'a> ChatOut<'a> {
    /// The chat request: `model` read and checked, the prompt read from the typed turns
    /// as chat's parse reads it, each field written once into the body kept for upstreams.
    pub fn into_request(self) -> Result<ChatRequest, ApiError> {
        let model = read_model(self.model)?;
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must not be empty.",
            ));
        }
        let mut prompt = PromptScan::default();
        for (i, m) in self.messages.iter().enumerate() {
            scan(&mut prompt, i, m)?;
        }
        let mut fields = Fields(Vec::with_capacity(16));
        fields.raw("model", self.model);
        fields.put("messages", &self.messages)?;
        fields.raw("max_tokens", self.max_tokens);
        fields.raw("max_completion_tokens", self.max_completion_tokens);
        if let Some(stream) = self.stream {
            fields.put("stream", &stream)?;
        }
        fields.raw("temperature", self.temperature);
        fields.raw("top_p", self.top_p);
        fields.raw("top_k", self.top_k);
        fields.raw("stop", self.stop);
        if let Some(user) = &self.user {
            fields.put("user", user)?;
        }
        if !self.tools.is_empty() {
            fields.put("tools", &self.tools)?;
            if let Some((_, tools)) = fields.0.last() {
                prompt.json(tools.get().len());
            }
        }
        if let Some(choice) = &self.tool_choice {
            fields.put("tool_choice", choice)?;
        }
        if let Some(parallel) = self.parallel_tool_calls {
            fields.put("parallel_tool_calls", &parallel)?;
        }
        if let Some(format) = &self.response_format {
            fields.put("response_format", format)?;
        }
        if let Some(effort) = &self.reasoning_effort {
            fields.put("reasoning_effort", effort)?;
        }
        fields.raw("bazaar", self.bazaar);
        fields.raw("models", self.models);
        fields.raw("provider", self.provider);
        let needs = Needs {
            tools: !self.tools.is_empty(),
            vision: false,
            json_object: matches!(self.response_format, Some(FormatOut::JsonObject)),
            json_schema: matches!(self.response_format, Some(FormatOut::JsonSchema { .. })),
            reasoning: self.reasoning_effort.is_some(),
        };
        Ok(ChatRequest::from_parts(
            RawObject::from_fields(fields.0),
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

/// Reads message number `i` into `prompt` as chat's parse would read it written out.
fn scan(prompt: &mut PromptScan, i: usize, m: &MessageOut<'_>) -> Result<(), ApiError> {
    if !m.tool_calls.is_empty() {
        let mut count = Count(0);
        serde_json::to_writer(&mut count, &m.tool_calls).map_err(|e| {
            ApiError::bad_request(format!("The request cannot be translated: {e}."))
        })?;
        prompt.json(count.0);
    }
    let text = |prompt: &mut PromptScan, raw: &RawValue| {
        if let Some(text) = string_of(raw) {
            prompt.text(i, m.role, &text);
        }
    };
    match &m.content {
        Some(ContentOut::Raw(raw)) => text(prompt, raw),
        Some(ContentOut::Text(s)) => prompt.text(i, m.role, s),
        Some(ContentOut::Parts(parts)) => {
            for part in parts {
                match part {
                    PartOut::Text { text: raw } => text(prompt, raw),
                    PartOut::ImageUrl { .. } => prompt.image(),
                    PartOut::File { .. } => {}
                }
            }
        }
        Some(ContentOut::Null) | None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request made directly reads the same as chat's parse of the body written out.
    #[test]
    fn into_request_reads_the_prompt_as_chat_parse_does() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        let (model, sys, user, id, args, tool_text, params, cap) = (
            raw(r#""m""#),
            raw(r#""Be \"brief\".""#),
            raw(r#""What is é in Paris?""#),
            raw(r#""call_1""#),
            raw(r#""{\"city\":\"Paris\"}""#),
            raw(r#""18C""#),
            raw(r#"{"type":"object"}"#),
            raw("64"),
        );
        let out = ChatOut {
            model: Some(&model),
            messages: vec![
                MessageOut::plain("system", Some(ContentOut::Raw(&sys))),
                MessageOut::plain(
                    "user",
                    Some(ContentOut::Parts(vec![
                        PartOut::Text { text: &user },
                        PartOut::ImageUrl {
                            image_url: ImageOut {
                                url: Json::Str("data:image/png;base64,AA".into()),
                                detail: None,
                            },
                        },
                    ])),
                ),
                MessageOut {
                    tool_calls: vec![ToolCallOut {
                        id: &id,
                        kind: "function",
                        function: FunctionOut {
                            name: Json::Str("weather".into()),
                            arguments: Json::Raw(&args),
                        },
                    }],
                    ..MessageOut::plain("assistant", Some(ContentOut::Null))
                },
                MessageOut {
                    tool_call_id: Some(&id),
                    ..MessageOut::plain("tool", Some(ContentOut::Raw(&tool_text)))
                },
                MessageOut::plain("assistant", Some(ContentOut::Text("Mild.".into()))),
            ],
            cap: Some(64),
            max_completion_tokens: Some(&cap),
            stream: Some(true),
            user: Some("u-1".into()),
            tools: vec![ToolOut {
                kind: "function",
                function: ToolFunctionOut {
                    name: Json::Str("weather".into()),
                    description: None,
                    parameters: Some(&params),
                    strict: None,
                },
            }],
            response_format: Some(FormatOut::JsonObject),
            reasoning_effort: Some("low".into()),
            ..ChatOut::default()
        };
        let direct = out.into_request().unwrap();
        let mut body = Vec::new();
        direct.fields.write_with(&mut body, "m", &[]);
        let parsed = ChatRequest::parse(&body).unwrap();
        assert_eq!(direct.model, parsed.model);
        assert_eq!(direct.stream, parsed.stream);
        assert_eq!(direct.max_tokens, parsed.max_tokens);
        assert_eq!(direct.needs, parsed.needs);
        assert_eq!(direct.prompt_chars, parsed.prompt_chars);
        assert_eq!(direct.prompt_head, parsed.prompt_head);
        assert_eq!(direct.predict_view, parsed.predict_view);
        assert_eq!(direct.user, parsed.user);
        assert!(direct.needs.vision && direct.needs.tools && direct.needs.json_object);
    }

    #[test]
    fn a_missing_model_or_no_messages_is_a_400_naming_it() {
        let param = |out: ChatOut| match out.into_request() {
            Err(ApiError::InvalidRequest { param: Some(p), .. }) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(param(ChatOut::default()), "model");
        let model = RawValue::from_string(r#""m""#.into()).unwrap();
        assert_eq!(
            param(ChatOut {
                model: Some(&model),
                ..ChatOut::default()
            }),
            "messages"
        );
    }
}
