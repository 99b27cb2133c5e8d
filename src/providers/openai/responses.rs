//! OpenAI's Responses API spoken natively, for hosts whose preset says they serve it:
//! the front end's body goes up with `model` rewritten; the reply and each stream event
//! come back unchanged, read only for usage (in `response.completed`) and errors
//! (`error`, `response.failed`). Chunks carry whole SSE frames (`event:` and `data:`).

use std::borrow::Cow;

use serde::Deserialize;

use crate::api::responses::reply::ResponsesUsage;
use crate::providers::http::StreamTranslator;
use crate::providers::sse::{named_frame, SseEvent};
use crate::providers::{Chunk, StatusReply, UpstreamError};

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Cow<'a, str>,
    #[serde(default)]
    response: Option<ResponsePeek>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ResponsePeek {
    #[serde(default)]
    usage: Option<ResponsesUsage>,
    #[serde(default)]
    error: Option<ErrorPeek>,
}

#[derive(Deserialize)]
struct ErrorPeek {
    #[serde(default)]
    message: Option<String>,
}

/// Passes Responses events through, reading usage from the terminal event and turning
/// `error` and `response.failed` into errors (the front end writes the client's
/// `response.failed`, so the call is billed as failed).
#[derive(Debug)]
pub struct ResponsesStream {
    provider: String,
}

impl ResponsesStream {
    pub fn new(provider: &str) -> ResponsesStream {
        ResponsesStream {
            provider: provider.to_string(),
        }
    }

    fn failed(&self, message: Option<String>, code: Option<String>) -> UpstreamError {
        UpstreamError::status(
            &self.provider,
            StatusReply {
                status: 502,
                message: message.unwrap_or_else(|| "the response failed upstream".into()),
                code,
                ..StatusReply::default()
            },
        )
    }
}

impl StreamTranslator for ResponsesStream {
    fn event(&mut self, event: SseEvent, out: &mut Vec<Chunk>) -> Result<bool, UpstreamError> {
        // Deltas are most events and carry nothing the gateway reads: forward them unparsed.
        let name_hint = if event.event.is_empty() {
            None
        } else {
            Some(event.event.as_str())
        };
        let terminal = |k: &str| {
            matches!(
                k,
                "response.completed" | "response.incomplete" | "response.failed" | "error"
            )
        };
        let (kind, usage, last) = match name_hint {
            Some(k) if !terminal(k) && k.contains(".delta") => (Cow::Borrowed(k), None, false),
            _ => {
                let peek: Peek = serde_json::from_str(&event.data).map_err(|e| {
                    UpstreamError::protocol(
                        &self.provider,
                        format!("a stream event is not JSON ({e})"),
                    )
                })?;
                let code = |c: Option<serde_json::Value>| match c {
                    Some(serde_json::Value::String(s)) => Some(s),
                    _ => None,
                };
                match peek.kind.as_ref() {
                    "error" => return Err(self.failed(peek.message, code(peek.code))),
                    "response.failed" => {
                        let message = peek.response.and_then(|r| r.error).and_then(|e| e.message);
                        return Err(self.failed(message, None));
                    }
                    "response.completed" | "response.incomplete" => {
                        let usage = peek.response.and_then(|r| r.usage).map(|u| u.to_usage());
                        (Cow::Owned(peek.kind.into_owned()), usage, true)
                    }
                    _ => (Cow::Owned(peek.kind.into_owned()), None, false),
                }
            }
        };
        out.push(Chunk {
            data: named_frame(&kind, &event.data),
            usage,
            usage_only: false,
        });
        Ok(last)
    }

    fn end(&mut self, _out: &mut Vec<Chunk>) -> Result<(), UpstreamError> {
        Err(UpstreamError::protocol(
            &self.provider,
            "the stream ended before response.completed",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::http::translate_all;

    const DONE: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\"}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"hi\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"usage\":{\"input_tokens\":4,\"output_tokens\":1,\"total_tokens\":5}}}\n\n";

    #[test]
    fn events_pass_through_with_usage_read() {
        let (chunks, err) = translate_all(&mut ResponsesStream::new("openai"), DONE.as_bytes());
        assert!(err.is_none());
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(String::from_utf8(joined).unwrap(), DONE);
        let usage = chunks.last().unwrap().usage.unwrap();
        assert_eq!((usage.input, usage.output), (4, 1));
    }

    #[test]
    fn failures_and_cuts_are_errors() {
        let failed = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n";
        let (_, err) = translate_all(&mut ResponsesStream::new("openai"), failed.as_bytes());
        assert!(matches!(err, Some(ref e) if e.message == "boom" && e.status == Some(502)));
        let cut = &DONE[..DONE.find("event: response.completed").unwrap()];
        let (chunks, err) = translate_all(&mut ResponsesStream::new("openai"), cut.as_bytes());
        assert_eq!(chunks.len(), 2);
        assert!(matches!(err, Some(ref e) if e.kind == crate::providers::UpstreamKind::Protocol));
    }
}
