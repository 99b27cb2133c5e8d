//! The response object: OpenAI `chat.completion` → Responses `response` (reasoning a
//! `reasoning` item, text a `message` item, each tool call a `function_call` item, the
//! finish reason a status), the usage in Responses' shape, and the reading of a native
//! Responses body for its id, output and usage. Shared by replies and streams.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{new_id, Echo, Namespaced};
use crate::api::chat_view::{text_of, ReplyIn};
use crate::api::usage::Buckets;
use crate::api::{ReplyError, Usage};

/// Seconds since the Unix epoch, for `created_at`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A text field's text, `None` when empty.
fn text(raw: Option<&RawValue>) -> Option<String> {
    text_of(raw).map(Cow::into_owned).filter(|s| !s.is_empty())
}

/// One item of a response's `output`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    Reasoning {
        id: String,
        summary: Vec<SummaryText>,
    },
    Message {
        id: String,
        status: &'static str,
        role: &'static str,
        content: Vec<OutputContent>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: &'static str,
        /// The `namespace` tool the function belongs to.
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
}

impl OutputItem {
    /// The item of a call to the chat function `chat_name`, with its own name and
    /// namespace when it is one of the `namespaced` functions.
    pub fn function_call(
        call_id: String,
        chat_name: &str,
        arguments: String,
        status: &'static str,
        namespaced: &[Namespaced],
    ) -> OutputItem {
        let (name, namespace) = match namespaced.iter().find(|n| n.chat_name == chat_name) {
            Some(n) => (n.name.clone(), Some(n.namespace.clone())),
            None => (chat_name.to_string(), None),
        };
        OutputItem::FunctionCall {
            id: new_id("fc"),
            call_id,
            name,
            arguments,
            status,
            namespace,
        }
    }
}

/// A reasoning summary part.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SummaryText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

/// One part of an output message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent {
    OutputText {
        text: String,
        annotations: [(); 0],
        logprobs: [(); 0],
    },
    Refusal {
        refusal: String,
    },
}

impl OutputContent {
    pub fn text(text: String) -> OutputContent {
        OutputContent::OutputText {
            text,
            annotations: [],
            logprobs: [],
        }
    }
}

/// Responses' `usage` object.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResponsesUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub input_tokens_details: InputDetails,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub output_tokens_details: OutputDetails,
    #[serde(default)]
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputDetails {
    #[serde(default)]
    pub cached_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl ResponsesUsage {
    /// Responses' usage for a normalised one.
    pub fn from_usage(u: &Usage) -> ResponsesUsage {
        ResponsesUsage {
            input_tokens: u.prompt_tokens(),
            input_tokens_details: InputDetails {
                cached_tokens: u.cached_input,
                cache_write_tokens: u.cache_write,
            },
            output_tokens: u.completion_tokens(),
            output_tokens_details: OutputDetails {
                reasoning_tokens: u.reasoning,
            },
            total_tokens: u.prompt_tokens().saturating_add(u.completion_tokens()),
        }
    }

    /// The normalised usage (disjoint buckets) of a Responses report.
    pub fn to_usage(&self) -> Usage {
        let cached = self
            .input_tokens_details
            .cached_tokens
            .min(self.input_tokens);
        let written = self
            .input_tokens_details
            .cache_write_tokens
            .min(self.input_tokens - cached);
        let reasoning = self
            .output_tokens_details
            .reasoning_tokens
            .min(self.output_tokens);
        Usage {
            input: self.input_tokens - cached - written,
            cached_input: cached,
            cache_write: written,
            cache_write_1h: 0,
            output: self.output_tokens - reasoning,
            reasoning,
            estimated: Buckets::NONE,
        }
    }
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Completed,
    /// Cut by `max_output_tokens` (`length`) or a content filter.
    Incomplete(&'static str),
    Failed,
}

impl Status {
    /// The status for a chat `finish_reason`.
    pub fn from_finish(finish: Option<&str>) -> Status {
        match finish {
            Some("length") => Status::Incomplete("max_output_tokens"),
            Some("content_filter") => Status::Incomplete("content_filter"),
            _ => Status::Completed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete(_) => "incomplete",
            Status::Failed => "failed",
        }
    }
}

#[derive(Serialize)]
struct Reason {
    reason: &'static str,
}

/// The error of a failed response.
#[derive(Debug, Clone, Serialize)]
pub struct FailedWith {
    pub code: &'static str,
    pub message: String,
}

/// A response's `usage`: the counts, or what the call was billed.
#[derive(Serialize)]
#[serde(untagged)]
pub enum UsageOut {
    Counts(ResponsesUsage),
    Billed(BilledUsage),
}

/// The usage a call was billed, in Responses' shape: the counts, `estimated: true` when
/// the gateway counted any of them, and `cost` in USD (`null` when the price is
/// unknown). Its members are in the order the billing's usage object has them
/// (alphabetical), written straight into the event without an intermediate map.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BilledUsage {
    pub cost: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
    pub input_tokens: u64,
    pub input_tokens_details: BilledInputDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputDetails,
    pub total_tokens: u64,
}

/// `InputDetails` with its members in alphabetical order.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct BilledInputDetails {
    pub cache_write_tokens: u64,
    pub cached_tokens: u64,
}

impl BilledUsage {
    /// `counts` billed at `cost` (nano-dollars written as a USD number), `estimated`
    /// when the gateway counted any bucket.
    pub fn new(counts: &Usage, estimated: bool, cost: Option<serde_json::Number>) -> BilledUsage {
        let r = ResponsesUsage::from_usage(counts);
        BilledUsage {
            cost,
            estimated,
            input_tokens: r.input_tokens,
            input_tokens_details: BilledInputDetails {
                cache_write_tokens: r.input_tokens_details.cache_write_tokens,
                cached_tokens: r.input_tokens_details.cached_tokens,
            },
            output_tokens: r.output_tokens,
            output_tokens_details: r.output_tokens_details,
            total_tokens: r.total_tokens,
        }
    }
}

/// Writes a whole response object.
#[derive(Serialize)]
pub struct ResponseOut<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created_at: u64,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<u64>,
    pub error: Option<&'a FailedWith>,
    incomplete_details: Option<Reason>,
    pub instructions: &'a RawValue,
    pub max_output_tokens: &'a RawValue,
    pub model: &'a str,
    pub output: &'a [OutputItem],
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<&'a str>,
    pub reasoning: &'a RawValue,
    pub store: bool,
    pub temperature: &'a RawValue,
    pub text: &'a RawValue,
    pub tool_choice: &'a RawValue,
    /// Valid JSON (the echo's `tools`), written as it is.
    #[serde(serialize_with = "raw_json")]
    pub tools: &'a str,
    pub top_p: &'a RawValue,
    pub truncation: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a RawValue>,
    pub metadata: &'a RawValue,
}

/// Serialises text that is valid JSON as that JSON (checked here: serde is the writer
/// of tests and rare paths; streams and replies write the text as it is).
pub(super) fn raw_json<S: serde::Serializer>(text: &&str, s: S) -> Result<S::Ok, S::Error> {
    RawValue::from_string(text.to_string())
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

impl<'a> ResponseOut<'a> {
    /// The response object's JSON, byte for byte as serde writes it.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = bytes::BytesMut::with_capacity(1024);
        super::write::put_response(&mut out, self);
        out.to_vec()
    }

    /// The reason in `incomplete_details`, if the response is incomplete.
    pub fn incomplete_reason(&self) -> Option<&'static str> {
        self.incomplete_details.as_ref().map(|r| r.reason)
    }

    /// A response object over `echo`, with what the call produced.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &'a str,
        created_at: u64,
        model: &'a str,
        echo: &'a Echo,
        status: Status,
        output: &'a [OutputItem],
        usage: Option<Usage>,
        error: Option<&'a FailedWith>,
    ) -> ResponseOut<'a> {
        let e = echo.fields();
        ResponseOut {
            id,
            object: "response",
            created_at,
            status: status.name(),
            completed_at: (status == Status::Completed).then(unix_now),
            error,
            incomplete_details: match status {
                Status::Incomplete(reason) => Some(Reason { reason }),
                _ => None,
            },
            instructions: e.instructions,
            max_output_tokens: e.max_output_tokens,
            model,
            output,
            parallel_tool_calls: echo.parallel_tool_calls,
            previous_response_id: echo.previous_response_id.as_deref(),
            reasoning: e.reasoning,
            store: echo.store,
            temperature: e.temperature,
            text: e.text,
            tool_choice: e.tool_choice,
            tools: echo.tools(),
            top_p: e.top_p,
            truncation: e.truncation,
            usage: usage
                .as_ref()
                .map(|u| UsageOut::Counts(ResponsesUsage::from_usage(u))),
            user: e.user,
            metadata: e.metadata,
        }
    }
}

/// A translated reply: the response object's output and status, and the model that served it.
#[derive(Debug, Clone)]
pub struct Translated {
    pub model: String,
    pub output: Vec<OutputItem>,
    pub status: Status,
}

/// Reads a `chat.completion` body as Responses output items; calls to `namespaced`
/// functions get their namespace back.
pub fn from_chat(body: &[u8], namespaced: &[Namespaced]) -> Result<Translated, ReplyError> {
    let reply: ReplyIn = serde_json::from_slice(body).map_err(ReplyError::NotChatCompletion)?;
    let choice = reply.choices.into_iter().next();
    let mut output = Vec::new();
    let mut finish = None;
    if let Some(choice) = choice {
        finish = choice.finish_reason;
        if let Some(m) = choice.message {
            if let Some(reasoning) = text(m.reasoning_content) {
                output.push(OutputItem::Reasoning {
                    id: new_id("rs"),
                    summary: vec![SummaryText {
                        kind: "summary_text",
                        text: reasoning,
                    }],
                });
            }
            let mut content = Vec::new();
            if let Some(text) = text(m.content) {
                content.push(OutputContent::text(text));
            }
            if let Some(refusal) = text(m.refusal) {
                content.push(OutputContent::Refusal { refusal });
            }
            if !content.is_empty() {
                output.push(OutputItem::Message {
                    id: new_id("msg"),
                    status: "completed",
                    role: "assistant",
                    content,
                });
            }
            for call in m.tool_calls {
                output.push(OutputItem::function_call(
                    call.id.into_owned(),
                    &call.function.name,
                    call.function.arguments.into_owned(),
                    "completed",
                    namespaced,
                ));
            }
        }
    }
    Ok(Translated {
        model: reply.model.into_owned(),
        output,
        status: Status::from_finish(finish.as_deref()),
    })
}

/// A complete response object and the conversation it continues, ready to store: the
/// items the next turn starts from are `items` then `output`.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: String,
    /// The response object as the client got it.
    pub response: Vec<u8>,
    /// The conversation's items: the input so far, then this response's output.
    pub items: String,
}

/// Joins two JSON arrays (raw text) into one.
pub fn join_arrays(a: &str, b: &str) -> String {
    let inner = |s: &'_ str| -> String {
        let s = s.trim();
        s.strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let (a, b) = (inner(a), inner(b));
    match (a.is_empty(), b.is_empty()) {
        (true, _) => format!("[{b}]"),
        (_, true) => format!("[{a}]"),
        _ => format!("[{a},{b}]"),
    }
}

#[derive(Deserialize)]
struct NativeIn<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(default)]
    usage: Option<ResponsesUsage>,
}

/// What the gateway reads of a native response object: its id, its output items (raw)
/// and its usage.
#[derive(Debug, Clone)]
pub struct NativeReply {
    pub id: String,
    pub output: String,
    pub usage: Option<Usage>,
}

/// Reads a native response object.
pub fn read_native(body: &[u8]) -> Result<NativeReply, ReplyError> {
    let r: NativeIn = serde_json::from_slice(body).map_err(ReplyError::NotResponseObject)?;
    Ok(NativeReply {
        id: r.id.into_owned(),
        output: r
            .output
            .map(|o| o.get().to_string())
            .unwrap_or_else(|| "[]".into()),
        usage: r.usage.map(|u| u.to_usage()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_round_trips_through_responses_shape() {
        let u = Usage {
            input: 10,
            cached_input: 5,
            cache_write: 0,
            cache_write_1h: 0,
            output: 7,
            reasoning: 3,
            estimated: Buckets::NONE,
        };
        let r = ResponsesUsage::from_usage(&u);
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.total_tokens),
            (15, 10, 25)
        );
        assert_eq!(r.to_usage(), u);
    }

    #[test]
    fn chat_reply_becomes_output_items() {
        let body = br#"{"id":"c","model":"up-model","choices":[{"index":0,"finish_reason":"tool_calls",
            "message":{"role":"assistant","content":"Let me look.","reasoning_content":"think",
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}}]}"#;
        let t = from_chat(body, &[]).unwrap();
        assert_eq!(t.model, "up-model");
        assert_eq!(t.status, Status::Completed);
        assert_eq!(t.output.len(), 3);
        assert!(
            matches!(&t.output[0], OutputItem::Reasoning { summary, .. } if summary[0].text == "think")
        );
        assert!(
            matches!(&t.output[1], OutputItem::Message { content, .. } if content[0] == OutputContent::text("Let me look.".into()))
        );
        assert!(
            matches!(&t.output[2], OutputItem::FunctionCall { call_id, name, arguments, .. } if call_id == "call_1" && name == "f" && arguments == "{\"a\":1}")
        );
        let cut = from_chat(
            br#"{"choices":[{"finish_reason":"length","message":{"content":"par"}}]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(cut.status, Status::Incomplete("max_output_tokens"));
        assert!(from_chat(b"nope", &[]).is_err());
    }

    #[test]
    fn arrays_join() {
        assert_eq!(join_arrays("[]", "[1]"), "[1]");
        assert_eq!(join_arrays("[1, 2]", "[]"), "[1, 2]");
        assert_eq!(join_arrays("[1]", " [ 2 ] "), "[1,2]");
    }

    #[test]
    fn native_reply_is_read() {
        let r = read_native(br#"{"id":"resp_1","object":"response","output":[{"type":"message"}],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":4},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":14}}"#).unwrap();
        assert_eq!(r.id, "resp_1");
        assert_eq!(r.output, r#"[{"type":"message"}]"#);
        let u = r.usage.unwrap();
        assert_eq!(
            (u.input, u.cached_input, u.output, u.reasoning),
            (5, 4, 3, 2)
        );
    }
}
