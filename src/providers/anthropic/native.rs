//! Messages bodies passed through as the client wrote them: the `/v1/messages` front end
//! with an Anthropic backend needs no translation. Only `model` is rewritten on the way
//! up; the reply and each stream event go back unchanged, read only for usage and errors.

use std::borrow::Cow;

use serde::Deserialize;

use super::response::{stream_error, ErrorBody};
use crate::api::usage::AnthropicUsage;
use crate::api::Usage;
use crate::providers::http::StreamTranslator;
use crate::providers::sse::SseEvent;
use crate::providers::{Chunk, UpstreamError};

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Cow<'a, str>,
    #[serde(default)]
    message: Option<PeekMessage>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(borrow, default)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
struct PeekMessage {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// The usage of a complete Messages reply; `None` when it has none.
pub fn reply_usage(provider: &str, body: &[u8]) -> Result<Option<Usage>, UpstreamError> {
    #[derive(Deserialize)]
    struct UsageOnly {
        #[serde(default)]
        usage: Option<AnthropicUsage>,
    }
    let parsed: UsageOnly = serde_json::from_slice(body)
        .map_err(|e| UpstreamError::protocol(provider, format!("the reply is not JSON ({e})")))?;
    Ok(parsed.usage.as_ref().map(Usage::from_anthropic))
}

/// Passes each event through as an SSE frame (`event:` and `data:` lines), reading usage
/// from `message_start` (the prompt side, a running report) and `message_delta` (the
/// whole report) and turning `error` events into errors.
#[derive(Debug)]
pub struct NativeStream {
    provider: String,
    usage: AnthropicUsage,
}

impl NativeStream {
    pub fn new(provider: &str) -> NativeStream {
        NativeStream {
            provider: provider.to_string(),
            usage: AnthropicUsage::default(),
        }
    }
}

impl StreamTranslator for NativeStream {
    fn event(&mut self, event: SseEvent, out: &mut Vec<Chunk>) -> Result<bool, UpstreamError> {
        let peek: Peek = serde_json::from_str(&event.data).map_err(|e| {
            UpstreamError::protocol(&self.provider, format!("a stream event is not JSON ({e})"))
        })?;
        let mut usage = None;
        match peek.kind.as_ref() {
            "error" => {
                let error = peek.error.unwrap_or(ErrorBody {
                    kind: Cow::Borrowed("api_error"),
                    message: Cow::Borrowed("error event in the stream"),
                });
                return Err(stream_error(&self.provider, &error));
            }
            "message_start" => {
                if let Some(u) = peek.message.and_then(|m| m.usage) {
                    self.usage.merge(&u);
                    usage = Some(Usage::from_anthropic_start(&self.usage));
                }
            }
            "message_delta" => {
                if let Some(u) = peek.usage {
                    self.usage.merge(&u);
                }
                usage = Some(Usage::from_anthropic(&self.usage));
            }
            _ => {}
        }
        let name = if event.event.is_empty() {
            peek.kind.as_ref()
        } else {
            event.event.as_str()
        };
        let last = peek.kind == "message_stop";
        out.push(Chunk {
            data: crate::providers::sse::named_frame(name, &event.data),
            usage,
            usage_only: false,
        });
        Ok(last)
    }

    fn end(&mut self, _out: &mut Vec<Chunk>) -> Result<(), UpstreamError> {
        Err(UpstreamError::protocol(
            &self.provider,
            "the stream ended before message_stop",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::http::translate_all;

    #[test]
    fn events_pass_through_with_usage_read() {
        let transcript = include_str!("../../../tests/fixtures/anthropic/stream_text.sse");
        let mut t = NativeStream::new("anthropic");
        let (chunks, err) = translate_all(&mut t, transcript.as_bytes());
        assert!(err.is_none());
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(String::from_utf8(joined).unwrap(), transcript);
        let usage = chunks.iter().rev().find_map(|c| c.usage).unwrap();
        assert_eq!(
            (
                usage.input,
                usage.cached_input,
                usage.cache_write,
                usage.output
            ),
            (25, 400, 100, 11)
        );
        let (_, err) = translate_all(
            &mut NativeStream::new("anthropic"),
            include_str!("../../../tests/fixtures/anthropic/stream_overloaded.sse").as_bytes(),
        );
        assert!(matches!(
            err,
            Some(ref e) if e.status == Some(529)
        ));
    }
}
