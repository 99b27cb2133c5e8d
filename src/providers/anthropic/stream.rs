//! Anthropic stream events → OpenAI `chat.completion.chunk`s: a small state machine over
//! `message_start`, `content_block_start/delta/stop`, `message_delta`, `message_stop`,
//! `ping` and `error`. Tool-use blocks get OpenAI tool-call indices in order of appearance;
//! `input_json_delta` fragments are forwarded as argument fragments, unchanged. Usage
//! rides on chunks as it is reported: the prompt side from `message_start`, the whole
//! report from `message_delta`, so a stream cut in between is billed from what was said.

use std::borrow::Cow;

use serde::Deserialize;

use super::super::chat::opt_cow;

use super::super::http::StreamTranslator;
use super::super::shape::{ChunkHeader, Delta, FunctionDelta, ThinkingBlock, ToolCallDelta};
use super::super::sse::SseEvent;
use super::super::{Chunk, UpstreamError};
use super::request::JSON_TOOL;
use super::response::{finish_reason, stream_error, BlockOut, ErrorBody};
use crate::api::usage::AnthropicUsage;
use crate::api::Usage;

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    message: Option<StartMessage<'a>>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    content_block: Option<BlockOut<'a>>,
    #[serde(borrow, default)]
    delta: Option<DeltaIn<'a>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(borrow, default)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct DeltaIn<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    stop_reason: Option<Cow<'a, str>>,
}

/// The stream translator for one Messages stream.
#[derive(Debug)]
pub struct AnthropicStream {
    provider: String,
    header: ChunkHeader,
    json_mode: bool,
    usage: AnthropicUsage,
    /// Content-block index → OpenAI tool-call index, for tool-use blocks.
    tools: Vec<(u32, u32)>,
    /// The block carrying the emulated `response_format` reply.
    json_block: Option<u32>,
}

impl AnthropicStream {
    /// A translator for a stream whose chunks are stamped `created` and read in
    /// `json_mode` when the request emulated `response_format`.
    pub fn new(provider: &str, created: u64, json_mode: bool) -> AnthropicStream {
        AnthropicStream {
            provider: provider.to_string(),
            header: ChunkHeader {
                created,
                ..ChunkHeader::default()
            },
            json_mode,
            usage: AnthropicUsage::default(),
            tools: Vec::new(),
            json_block: None,
        }
    }

    fn protocol(&self, detail: String) -> UpstreamError {
        UpstreamError::protocol(&self.provider, detail)
    }

    fn push(&self, out: &mut Vec<Chunk>, delta: Delta<'_>) {
        out.push(self.header.delta(0, &delta, None));
    }

    fn tool_index(&self, block: u32) -> Option<u32> {
        self.tools
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, t)| *t)
    }
}

impl StreamTranslator for AnthropicStream {
    fn event(&mut self, event: SseEvent, out: &mut Vec<Chunk>) -> Result<bool, UpstreamError> {
        let e: Event = serde_json::from_str(&event.data)
            .map_err(|err| self.protocol(format!("a stream event is not JSON ({err})")))?;
        match e.kind.as_ref() {
            "message_start" => {
                if let Some(m) = e.message {
                    self.header.id = m.id.into_owned();
                    self.header.model = m.model.into_owned();
                    if let Some(u) = m.usage {
                        self.usage.merge(&u);
                    }
                }
                self.push(
                    out,
                    Delta {
                        role: Some("assistant"),
                        content: Some(""),
                        ..Delta::default()
                    },
                );
                // The prompt side is reported now: a stream cut later is billed from it.
                if let Some(chunk) = out.last_mut() {
                    chunk.usage = Some(Usage::from_anthropic_start(&self.usage));
                }
            }
            "content_block_start" => {
                let (Some(index), Some(block)) = (e.index, e.content_block) else {
                    return Err(self.protocol("content_block_start without a block".into()));
                };
                match block.kind.as_ref() {
                    "tool_use" => {
                        let name = block.name.as_deref().unwrap_or_default();
                        if self.json_mode && name == JSON_TOOL {
                            self.json_block = Some(index);
                            return Ok(false);
                        }
                        let tool = self.tools.len() as u32;
                        self.tools.push((index, tool));
                        let calls = [ToolCallDelta {
                            index: tool,
                            id: block.id.as_deref(),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: Some(name),
                                arguments: Some(""),
                            },
                        }];
                        self.push(
                            out,
                            Delta {
                                tool_calls: Some(&calls),
                                ..Delta::default()
                            },
                        );
                    }
                    "text" => {
                        if let Some(text) = block.text.as_deref().filter(|t| !t.is_empty()) {
                            self.push(
                                out,
                                Delta {
                                    content: Some(text),
                                    ..Delta::default()
                                },
                            );
                        }
                    }
                    "thinking" => {
                        if let Some(t) = block.thinking.as_deref().filter(|t| !t.is_empty()) {
                            self.push(
                                out,
                                Delta {
                                    reasoning_content: Some(t),
                                    ..Delta::default()
                                },
                            );
                        }
                    }
                    "redacted_thinking" => {
                        let blocks = [ThinkingBlock {
                            kind: "redacted_thinking",
                            thinking: None,
                            signature: None,
                            data: block.data.clone(),
                        }];
                        self.push(
                            out,
                            Delta {
                                thinking_blocks: Some(&blocks),
                                ..Delta::default()
                            },
                        );
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let (Some(index), Some(delta)) = (e.index, e.delta) else {
                    return Err(self.protocol("content_block_delta without a delta".into()));
                };
                match delta.kind.as_ref() {
                    "text_delta" => {
                        if let Some(text) = delta.text.as_deref() {
                            self.push(
                                out,
                                Delta {
                                    content: Some(text),
                                    ..Delta::default()
                                },
                            );
                        }
                    }
                    "input_json_delta" => {
                        let piece = delta.partial_json.as_deref().unwrap_or_default();
                        if piece.is_empty() {
                            return Ok(false);
                        }
                        if self.json_block == Some(index) {
                            self.push(
                                out,
                                Delta {
                                    content: Some(piece),
                                    ..Delta::default()
                                },
                            );
                        } else if let Some(tool) = self.tool_index(index) {
                            let calls = [ToolCallDelta {
                                index: tool,
                                id: None,
                                kind: None,
                                function: FunctionDelta {
                                    name: None,
                                    arguments: Some(piece),
                                },
                            }];
                            self.push(
                                out,
                                Delta {
                                    tool_calls: Some(&calls),
                                    ..Delta::default()
                                },
                            );
                        } else {
                            return Err(self.protocol(format!(
                                "input_json_delta for block {index}, which is not a tool call"
                            )));
                        }
                    }
                    "thinking_delta" => {
                        if let Some(t) = delta.thinking.as_deref() {
                            self.push(
                                out,
                                Delta {
                                    reasoning_content: Some(t),
                                    ..Delta::default()
                                },
                            );
                        }
                    }
                    "signature_delta" => {
                        let blocks = [ThinkingBlock {
                            kind: "thinking",
                            thinking: None,
                            signature: delta.signature.clone(),
                            data: None,
                        }];
                        self.push(
                            out,
                            Delta {
                                thinking_blocks: Some(&blocks),
                                ..Delta::default()
                            },
                        );
                    }
                    // citations_delta and later additions carry nothing OpenAI's chunk can hold.
                    _ => {}
                }
            }
            "message_delta" => {
                let reported = e.usage.is_some();
                if let Some(u) = e.usage {
                    self.usage.merge(&u);
                }
                let finish = e
                    .delta
                    .as_ref()
                    .and_then(|d| d.stop_reason.as_deref())
                    .map(|s| finish_reason(s, self.json_mode));
                let mut chunk = self.header.delta(0, &Delta::default(), finish);
                // `output_tokens` here is the final count: the report is complete.
                if reported {
                    chunk.usage = Some(Usage::from_anthropic(&self.usage));
                }
                out.push(chunk);
            }
            "message_stop" => {
                out.push(self.header.usage(Usage::from_anthropic(&self.usage)));
                return Ok(true);
            }
            "error" => {
                let error = e.error.unwrap_or(ErrorBody {
                    kind: Cow::Borrowed("api_error"),
                    message: Cow::Borrowed("error event in the stream"),
                });
                return Err(stream_error(&self.provider, &error));
            }
            // `ping`, `content_block_stop` and event types added later.
            _ => {}
        }
        Ok(false)
    }

    fn end(&mut self, _out: &mut Vec<Chunk>) -> Result<(), UpstreamError> {
        Err(self.protocol("the stream ended before message_stop".into()))
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
