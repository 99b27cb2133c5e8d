//! OpenAI `chat.completion.chunk`s → Anthropic's stream events: `message_start`, then
//! one `content_block_start` / `…_delta` / `…_stop` run per block (thinking, text, each
//! tool call, in the order they arrive), then `message_delta` with the stop reason and
//! usage, and `message_stop`. A small state machine; it writes SSE frames, nothing else.

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use super::reply::stop_reason;
use crate::api::chat_view::ChunkIn;
use crate::api::sse::frame;
use crate::api::{ReplyError, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
    /// A tool-use block for this OpenAI tool-call index.
    Tool(u32),
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum DeltaOut<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaOut<'a>,
}

/// Writes one Messages stream from a run of OpenAI chunks.
#[derive(Debug)]
pub struct EventWriter {
    started: bool,
    id: String,
    model: String,
    open: Open,
    /// Index of the next content block.
    next: u32,
    /// OpenAI tool-call indices that already had their block.
    tools_seen: Vec<u32>,
    finish: Option<&'static str>,
    usage: Option<Usage>,
    done: bool,
}

impl EventWriter {
    /// A writer naming `model` in `message_start` until a chunk names the upstream's.
    pub fn new(model: &str) -> EventWriter {
        EventWriter {
            started: false,
            id: String::new(),
            model: model.to_string(),
            open: Open::None,
            next: 0,
            tools_seen: Vec::new(),
            finish: None,
            usage: None,
            done: false,
        }
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = super::reply::message_id(&self.id);
        frame(
            out,
            "message_start",
            &serde_json::json!({
                "type": "message_start",
                "message": {
                    "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0}
                }
            }),
        );
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.open != Open::None {
            frame(
                out,
                "content_block_stop",
                &serde_json::json!({"type": "content_block_stop", "index": self.next - 1}),
            );
            self.open = Open::None;
        }
    }

    fn open_block(&mut self, out: &mut BytesMut, open: Open, block: serde_json::Value) {
        self.close(out);
        frame(
            out,
            "content_block_start",
            &serde_json::json!({"type": "content_block_start", "index": self.next, "content_block": block}),
        );
        self.next += 1;
        self.open = open;
    }

    fn delta(&self, out: &mut BytesMut, delta: DeltaOut<'_>) {
        frame(
            out,
            "content_block_delta",
            &BlockDelta {
                kind: "content_block_delta",
                index: self.next - 1,
                delta,
            },
        );
    }

    /// Translates one OpenAI chunk (its JSON, and the usage it carries if any).
    pub fn chunk(
        &mut self,
        data: &[u8],
        usage: Option<Usage>,
        out: &mut BytesMut,
    ) -> Result<(), ReplyError> {
        if self.done {
            return Ok(());
        }
        if usage.is_some() {
            self.usage = usage;
        }
        let chunk = ChunkIn::parse(data).map_err(ReplyError::Chunk)?;
        if !self.started {
            if let Some(id) = &chunk.id {
                self.id = id.to_string();
            }
            if let Some(model) = chunk.model.as_deref().filter(|m| !m.is_empty()) {
                self.model = model.to_string();
            }
        }
        self.start(out);
        // A Messages reply has one choice; an Anthropic client cannot have asked for more.
        let Some(choice) = chunk.choices.into_iter().find(|c| c.index == 0) else {
            return Ok(());
        };
        if let Some(delta) = choice.delta {
            if let Some(text) = delta.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
                if self.open != Open::Thinking {
                    self.open_block(
                        out,
                        Open::Thinking,
                        serde_json::json!({"type": "thinking", "thinking": "", "signature": ""}),
                    );
                }
                self.delta(out, DeltaOut::Thinking { thinking: text });
            }
            for block in &delta.thinking_blocks {
                match (block.kind.as_ref(), &block.signature, &block.data) {
                    ("redacted_thinking", _, Some(data)) => {
                        self.open_block(
                            out,
                            Open::Text,
                            serde_json::json!({"type": "redacted_thinking", "data": data}),
                        );
                        self.close(out);
                    }
                    (_, Some(signature), _) => {
                        if self.open != Open::Thinking {
                            self.open_block(
                                out,
                                Open::Thinking,
                                serde_json::json!({"type": "thinking", "thinking": "", "signature": ""}),
                            );
                        }
                        self.delta(out, DeltaOut::Signature { signature });
                    }
                    _ => {}
                }
            }
            if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                if self.open != Open::Text {
                    self.open_block(
                        out,
                        Open::Text,
                        serde_json::json!({"type": "text", "text": ""}),
                    );
                }
                self.delta(out, DeltaOut::Text { text });
            }
            for call in &delta.tool_calls {
                if self.open != Open::Tool(call.index) {
                    if self.tools_seen.contains(&call.index) {
                        return Err(ReplyError::ToolCallResumed(call.index.into()));
                    }
                    self.tools_seen.push(call.index);
                    let id = call
                        .id
                        .as_deref()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("toolu_{}", call.index));
                    let name = call
                        .function
                        .as_ref()
                        .and_then(|f| f.name.as_deref())
                        .unwrap_or_default();
                    self.open_block(
                        out,
                        Open::Tool(call.index),
                        serde_json::json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    );
                }
                if let Some(args) = call
                    .function
                    .as_ref()
                    .and_then(|f| f.arguments.as_deref())
                    .filter(|a| !a.is_empty())
                {
                    self.delta(out, DeltaOut::InputJson { partial_json: args });
                }
            }
        }
        if let Some(finish) = choice.finish_reason.as_deref() {
            self.finish = Some(stop_reason(finish));
            self.close(out);
        }
        Ok(())
    }

    /// Ends the message: closes the open block, then `message_delta` (stop reason, usage)
    /// and `message_stop`. `usage` is the `usage` object to write (the call's billed
    /// usage and cost); without it, the last usage the chunks carried. Runs once.
    pub fn finish(
        &mut self,
        out: &mut BytesMut,
        usage: Option<serde_json::Map<String, serde_json::Value>>,
    ) {
        if self.done {
            return;
        }
        self.done = true;
        self.start(out);
        self.close(out);
        let usage = match usage {
            Some(usage) => serde_json::Value::Object(usage),
            None => serde_json::to_value(self.usage.unwrap_or_default().to_anthropic())
                .unwrap_or_default(),
        };
        frame(
            out,
            "message_delta",
            &serde_json::json!({
                "type": "message_delta",
                "delta": {"stop_reason": self.finish.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": usage
            }),
        );
        frame(
            out,
            "message_stop",
            &serde_json::json!({"type": "message_stop"}),
        );
    }

    /// An `error` event: the stream failed after its first byte. Nothing follows it.
    pub fn error(&mut self, body: &[u8], out: &mut BytesMut) {
        self.done = true;
        out.put_slice(b"event: error\ndata: ");
        out.put_slice(body);
        out.put_slice(b"\n\n");
    }
}
