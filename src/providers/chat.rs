//! The OpenAI chat request as the translating adapters (Anthropic, Gemini) read it:
//! borrowed, typed views of messages, content parts, tools and tool choice, each with
//! an error that names the field. What a backend cannot express is the adapter's call;
//! this module only reads.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::UpstreamError;

/// Top-level fields a translating adapter may drop: hints with no guaranteed effect on
/// the output (or already handled by the gateway). Everything else must be expressed
/// or refused.
pub const IGNORED_FIELDS: &[&str] = &[
    "stream_options",
    "seed",
    "store",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "prediction",
    "verbosity",
];

/// Deserialises an optional string borrowing from the input when it has no escapes
/// (serde borrows a bare `Cow<str>` field, but not one inside an `Option`).
pub fn opt_cow<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Option::<Borrowed<'a>>::deserialize(d).map(|o| o.map(|b| b.0))
}

/// A refusal naming the field and the backend: a 400, never a silent drop.
pub fn unsupported(
    provider: &str,
    field: impl Into<String>,
    detail: impl Into<String>,
) -> UpstreamError {
    UpstreamError::unsupported(provider, field.into(), detail.into())
}

/// One chat message. Unknown message fields are refused by the parser, naming them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageIn<'a> {
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    #[serde(borrow, default)]
    pub content: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<ToolCallIn<'a>>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub tool_call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub refusal: Option<Cow<'a, str>>,
    /// Reasoning text of an earlier assistant turn (DeepSeek's field).
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// Reasoning blocks of an earlier assistant turn, with signatures.
    #[serde(borrow, default)]
    pub thinking_blocks: Option<Vec<ThinkingIn<'a>>>,
    /// Prompt-caching breakpoint on the whole message (Anthropic, as LiteLLM spells it).
    #[serde(borrow, default)]
    pub cache_control: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub audio: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub function_call: Option<&'a RawValue>,
}

/// An assistant's tool call.
#[derive(Debug, Deserialize)]
pub struct ToolCallIn<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow, rename = "type", default, deserialize_with = "opt_cow")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub function: FunctionIn<'a>,
}

/// A called function: its name and arguments as JSON text.
#[derive(Debug, Deserialize)]
pub struct FunctionIn<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub arguments: Cow<'a, str>,
}

/// A reasoning block sent back with an assistant turn.
#[derive(Debug, Deserialize)]
pub struct ThinkingIn<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub signature: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub data: Option<Cow<'a, str>>,
}

/// One content part.
#[derive(Debug, Deserialize)]
pub struct PartIn<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub image_url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub file: Option<FileIn<'a>>,
    #[serde(borrow, default)]
    pub cache_control: Option<&'a RawValue>,
}

/// A `file` part: inline data (a data URL) or an uploaded file's id.
#[derive(Debug, Deserialize)]
pub struct FileIn<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub file_data: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub file_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub filename: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ImageUrlObject<'a> {
    #[serde(borrow)]
    url: Cow<'a, str>,
}

impl<'a> PartIn<'a> {
    /// The URL of an `image_url` part (an object with `url`, or a bare string).
    pub fn image_url(&self) -> Option<Cow<'a, str>> {
        let raw = self.image_url?;
        match raw.get().as_bytes().first() {
            Some(b'"') => serde_json::from_str::<Cow<'a, str>>(raw.get()).ok(),
            _ => serde_json::from_str::<ImageUrlObject<'a>>(raw.get())
                .ok()
                .map(|o| o.url),
        }
    }
}

/// A message's `content`: a string, parts, or nothing.
#[derive(Debug)]
pub enum ContentIn<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<PartIn<'a>>),
    None,
}

/// Reads a message's content; `field` is its path for errors (`messages[2].content`).
pub fn content<'a>(
    raw: Option<&'a RawValue>,
    provider: &str,
    field: &str,
) -> Result<ContentIn<'a>, UpstreamError> {
    let Some(raw) = raw else {
        return Ok(ContentIn::None);
    };
    let bad = |e: serde_json::Error| unsupported(provider, field, format!("cannot be read: {e}"));
    match raw.get().as_bytes().first() {
        Some(b'"') => Ok(ContentIn::Text(
            serde_json::from_str(raw.get()).map_err(bad)?,
        )),
        Some(b'[') => Ok(ContentIn::Parts(
            serde_json::from_str(raw.get()).map_err(bad)?,
        )),
        _ => Ok(ContentIn::None),
    }
}

/// Reads `messages`; an unknown message field is refused with its path.
pub fn messages<'a>(
    raw: &'a RawValue,
    provider: &str,
) -> Result<Vec<MessageIn<'a>>, UpstreamError> {
    let list: Vec<&'a RawValue> = serde_json::from_str(raw.get())
        .map_err(|e| unsupported(provider, "messages", format!("cannot be read: {e}")))?;
    list.into_iter()
        .enumerate()
        .map(|(i, m)| {
            serde_json::from_str::<MessageIn<'a>>(m.get()).map_err(|e| {
                unsupported(
                    provider,
                    format!("messages[{i}]"),
                    format!("cannot be expressed: {e}"),
                )
            })
        })
        .collect()
}

/// A `tools` entry.
#[derive(Debug, Deserialize)]
pub struct ToolIn<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub function: Option<ToolFunctionIn<'a>>,
    #[serde(borrow, default)]
    pub cache_control: Option<&'a RawValue>,
}

/// A declared function.
#[derive(Debug, Deserialize)]
pub struct ToolFunctionIn<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub parameters: Option<&'a RawValue>,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `tool_choice`, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoiceIn<'a> {
    Auto,
    None,
    Required,
    Function(Cow<'a, str>),
}

#[derive(Deserialize)]
struct NamedChoice<'a> {
    #[serde(borrow)]
    function: NamedFunction<'a>,
}

#[derive(Deserialize)]
struct NamedFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// Reads `tool_choice`: `auto`, `none`, `required`, or `{"type":"function","function":{"name"}}`.
pub fn tool_choice<'a>(
    raw: &'a RawValue,
    provider: &str,
) -> Result<ToolChoiceIn<'a>, UpstreamError> {
    if raw.get().starts_with('"') {
        let s: Cow<str> = serde_json::from_str(raw.get())
            .map_err(|e| unsupported(provider, "tool_choice", e.to_string()))?;
        return match s.as_ref() {
            "auto" => Ok(ToolChoiceIn::Auto),
            "none" => Ok(ToolChoiceIn::None),
            "required" => Ok(ToolChoiceIn::Required),
            other => Err(unsupported(
                provider,
                "tool_choice",
                format!("`{other}` is not auto, none or required"),
            )),
        };
    }
    serde_json::from_str::<NamedChoice<'a>>(raw.get())
        .map(|c| ToolChoiceIn::Function(c.function.name))
        .map_err(|_| {
            unsupported(
                provider,
                "tool_choice",
                "only auto, none, required and a named function can be expressed",
            )
        })
}

/// Reads `stop`: a string or an array of strings.
pub fn stop<'a>(raw: &'a RawValue, provider: &str) -> Result<Vec<Cow<'a, str>>, UpstreamError> {
    if raw.get() == "null" {
        return Ok(Vec::new());
    }
    if raw.get().starts_with('"') {
        return serde_json::from_str(raw.get())
            .map(|s| vec![s])
            .map_err(|e| unsupported(provider, "stop", e.to_string()));
    }
    serde_json::from_str(raw.get())
        .map_err(|_| unsupported(provider, "stop", "must be a string or an array of strings"))
}

/// Splits a `data:` URL into its media type and base64 payload.
pub fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

/// A `data:` URL's media type and payload, borrowed when the URL is; `Err` gives the
/// URL back when it is not a base64 `data:` URL.
pub fn split_data_url(url: Cow<'_, str>) -> Result<(Cow<'_, str>, Cow<'_, str>), Cow<'_, str>> {
    match url {
        Cow::Borrowed(u) => data_url(u)
            .map(|(m, d)| (Cow::Borrowed(m), Cow::Borrowed(d)))
            .ok_or(Cow::Borrowed(u)),
        Cow::Owned(u) => match data_url(&u) {
            Some((m, d)) => Ok((Cow::Owned(m.to_string()), Cow::Owned(d.to_string()))),
            None => Err(Cow::Owned(u)),
        },
    }
}

/// Reads a number field; `field` names it in the error.
pub fn number(raw: &RawValue, provider: &str, field: &str) -> Result<Option<f64>, UpstreamError> {
    if raw.get() == "null" {
        return Ok(None);
    }
    serde_json::from_str(raw.get())
        .map(Some)
        .map_err(|_| unsupported(provider, field, "must be a number"))
}

/// Reads a non-negative integer field; `field` names it in the error.
pub fn integer(raw: &RawValue, provider: &str, field: &str) -> Result<Option<u64>, UpstreamError> {
    if raw.get() == "null" {
        return Ok(None);
    }
    serde_json::from_str(raw.get())
        .map(Some)
        .map_err(|_| unsupported(provider, field, "must be a non-negative integer"))
}

/// True when a JSON value is `null`, `false`, `0`, `{}` or `[]`: a field set to its
/// "off" value, which every backend can express by leaving it out.
pub fn is_off(raw: &RawValue) -> bool {
    matches!(
        raw.get().trim(),
        "null" | "false" | "0" | "0.0" | "{}" | "[]"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::UpstreamKind;

    #[test]
    fn reads_messages_and_refuses_unknown_fields() {
        let raw = RawValue::from_string(
            r#"[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}]"#
                .into(),
        )
        .unwrap();
        let msgs = messages(&raw, "p").unwrap();
        assert_eq!(msgs.len(), 2);
        match content(msgs[0].content, "p", "messages[0].content").unwrap() {
            ContentIn::Parts(parts) => {
                assert_eq!(parts[1].image_url().unwrap(), "data:image/png;base64,AAAA");
                assert_eq!(
                    data_url("data:image/png;base64,AAAA"),
                    Some(("image/png", "AAAA"))
                );
            }
            other => panic!("{other:?}"),
        }
        let raw =
            RawValue::from_string(r#"[{"role":"user","content":"x","weird":1}]"#.into()).unwrap();
        match messages(&raw, "p").unwrap_err() {
            e if e.kind == UpstreamKind::Unsupported => {
                assert_eq!(e.param.as_deref(), Some("messages[0]"));
                assert!(e.message.contains("weird"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tool_choice_forms() {
        let read = |s: &str| {
            tool_choice(&RawValue::from_string(s.into()).unwrap(), "p").map(|c| format!("{c:?}"))
        };
        assert_eq!(read(r#""required""#).unwrap(), "Required");
        assert_eq!(
            read(r#"{"type":"function","function":{"name":"f"}}"#).unwrap(),
            r#"Function("f")"#
        );
        assert!(read(r#""sometimes""#).is_err());
    }
}
