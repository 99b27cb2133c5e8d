//! OpenAI `chat.completion.chunk`s → Responses stream events: `response.created` and
//! `response.in_progress`, then per output item (reasoning, message, each function call,
//! in the order they arrive) `response.output_item.added`, its part and delta events and
//! their `…done` events, then `response.completed` (or `response.incomplete`) with the
//! whole response and its usage; a failure is `response.failed`. A small state machine;
//! it writes SSE frames, nothing else.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use super::reply::{
    join_arrays, BilledUsage, FailedWith, Finished, OutputContent, OutputItem, ResponseOut, Status,
    SummaryText, UsageOut,
};
use super::{new_id, Echo};
use crate::api::chat_view::{ChoiceIn, ChunkIn, ToolDeltaIn};
use crate::api::sse::frame;
use crate::api::{ReplyError, Usage};

/// The item being streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Reasoning,
    Text,
    /// A function call for this chat tool-call index.
    Tool(u32),
}

/// A delta event (`…output_text.delta`, `…refusal.delta`,
/// `…reasoning_summary_text.delta`, `…function_call_arguments.delta`): the most frequent
/// event, one per upstream chunk, so it is written by hand (the JSON its fields would
/// serialise to, in the same order) rather than through a serializer field by field.
struct Delta<'a> {
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: Option<u32>,
    summary_index: Option<u32>,
    delta: &'a str,
    /// `logprobs: []`, which text deltas carry.
    logprobs: bool,
}

impl Delta<'_> {
    fn write(&self, out: &mut BytesMut) {
        out.put_slice(b"event: ");
        out.put_slice(self.kind.as_bytes());
        out.put_slice(b"\ndata: {\"type\":\"");
        out.put_slice(self.kind.as_bytes());
        out.put_slice(b"\",\"sequence_number\":");
        put_int(out, self.sequence_number);
        out.put_slice(b",\"item_id\":");
        put_string(out, self.item_id);
        out.put_slice(b",\"output_index\":");
        put_int(out, self.output_index as u64);
        if let Some(i) = self.content_index {
            out.put_slice(b",\"content_index\":");
            put_int(out, u64::from(i));
        }
        if let Some(i) = self.summary_index {
            out.put_slice(b",\"summary_index\":");
            put_int(out, u64::from(i));
        }
        out.put_slice(b",\"delta\":");
        put_string(out, self.delta);
        if self.logprobs {
            out.put_slice(b",\"logprobs\":[]");
        }
        out.put_slice(b"}\n\n");
    }
}

/// Writes `n` as JSON.
fn put_int(out: &mut BytesMut, n: u64) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Writes `s` as a JSON string, as serde_json writes it: text with nothing to escape
/// (no quote, backslash or control character) is copied in one piece.
fn put_string(out: &mut BytesMut, s: &str) {
    if chunk::plain_len(s.as_bytes()) < s.len() {
        // Serialising a &str into memory cannot fail.
        let _ = serde_json::to_writer((&mut *out).writer(), s);
        return;
    }
    out.reserve(s.len() + 2);
    out.put_u8(b'"');
    out.put_slice(s.as_bytes());
    out.put_u8(b'"');
}

/// `…text.done`, `…refusal.done`, `…reasoning_summary_text.done` (the whole text) and
/// `…part.added`/`…part.done` (the part): where in the response, then what.
#[derive(Serialize)]
struct PartEvent<'a, P: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<&'a P>,
}

impl<'a, P: Serialize> PartEvent<'a, P> {
    /// A `…part.added`/`…part.done` event: `part`, at `content_index` of a message or
    /// `summary_index` of a reasoning item.
    fn of_part(
        kind: &'static str,
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: Option<usize>,
        summary_index: Option<u32>,
        part: &'a P,
    ) -> Self {
        PartEvent {
            kind,
            sequence_number,
            item_id,
            output_index,
            content_index,
            summary_index,
            text: None,
            refusal: None,
            logprobs: None,
            part: Some(part),
        }
    }
}

#[derive(Serialize)]
struct ArgumentsDone<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ItemEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    output_index: usize,
    item: &'a OutputItem,
}

#[derive(Serialize)]
struct ResponseEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    response: ResponseOut<'a>,
}

/// Writes one Responses stream from a run of chat chunks.
#[derive(Debug)]
pub struct StreamWriter {
    id: String,
    created_at: u64,
    model: String,
    echo: Arc<Echo>,
    seq: u64,
    started: bool,
    open: Open,
    output: Vec<OutputItem>,
    /// Chat tool-call index → output index of its item.
    tools: Vec<(u32, usize)>,
    finish: Option<Status>,
    usage: Option<Usage>,
    done: bool,
    finished: Option<Finished>,
    items: Option<Arc<str>>,
}

impl StreamWriter {
    /// A writer for response `id`, naming `model` until a chunk names the upstream's.
    /// With `items` (the conversation so far), the finished response is kept for storing.
    pub fn new(id: String, model: &str, echo: Arc<Echo>, items: Option<Arc<str>>) -> StreamWriter {
        StreamWriter {
            id,
            created_at: super::reply::unix_now(),
            model: model.to_string(),
            echo,
            seq: 0,
            started: false,
            open: Open::None,
            output: Vec::new(),
            tools: Vec::new(),
            finish: None,
            usage: None,
            done: false,
            finished: None,
            items,
        }
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    /// The response as it stands, with `status` (usage only once it is no longer in
    /// progress) and the error it `failed` with, if any.
    fn response<'w>(
        &'w self,
        status: Status,
        failed: Option<&'w FailedWith>,
        billed: Option<&BilledUsage>,
    ) -> ResponseOut<'w> {
        let usage = match status {
            Status::InProgress => None,
            _ => self.usage,
        };
        let mut response = ResponseOut::new(
            &self.id,
            self.created_at,
            &self.model,
            &self.echo,
            status,
            &self.output,
            usage,
            failed,
        );
        if let Some(usage) = billed {
            response.usage = Some(UsageOut::Billed(usage.clone()));
        }
        response
    }

    fn response_event(
        &mut self,
        out: &mut BytesMut,
        kind: &'static str,
        status: Status,
        error: Option<&FailedWith>,
        usage: Option<&BilledUsage>,
    ) {
        let seq = self.next_seq();
        let response = self.response(status, error, usage);
        frame(
            out,
            kind,
            &ResponseEvent {
                kind,
                sequence_number: seq,
                response,
            },
        );
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        self.response_event(out, "response.created", Status::InProgress, None, None);
        self.response_event(out, "response.in_progress", Status::InProgress, None, None);
    }

    fn item_event(&mut self, out: &mut BytesMut, kind: &'static str, index: usize) {
        let seq = self.next_seq();
        if let Some(item) = self.output.get(index) {
            frame(
                out,
                kind,
                &ItemEvent {
                    kind,
                    sequence_number: seq,
                    output_index: index,
                    item,
                },
            );
        }
    }

    fn item_id(&self, index: usize) -> &str {
        match self.output.get(index) {
            Some(
                OutputItem::Reasoning { id, .. }
                | OutputItem::Message { id, .. }
                | OutputItem::FunctionCall { id, .. },
            ) => id,
            None => "",
        }
    }

    /// Closes the open item with its `…done` events.
    fn close(&mut self, out: &mut BytesMut) {
        let index = self.output.len().saturating_sub(1);
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return,
            Open::Reasoning => {
                let (s1, s2) = (self.next_seq(), self.next_seq());
                if let Some(OutputItem::Reasoning { id, summary }) = self.output.get(index) {
                    let empty = SummaryText {
                        kind: "summary_text",
                        text: String::new(),
                    };
                    let part = summary.first().unwrap_or(&empty);
                    frame(
                        out,
                        "response.reasoning_summary_text.done",
                        &PartEvent::<()> {
                            kind: "response.reasoning_summary_text.done",
                            sequence_number: s1,
                            item_id: id,
                            output_index: index,
                            content_index: None,
                            summary_index: Some(0),
                            text: Some(&part.text),
                            refusal: None,
                            logprobs: None,
                            part: None,
                        },
                    );
                    frame(
                        out,
                        "response.reasoning_summary_part.done",
                        &PartEvent::of_part(
                            "response.reasoning_summary_part.done",
                            s2,
                            id,
                            index,
                            None,
                            Some(0),
                            part,
                        ),
                    );
                }
            }
            Open::Text => {
                let mut seq = self.seq;
                if let Some(OutputItem::Message {
                    id,
                    status,
                    content,
                    ..
                }) = self.output.get_mut(index)
                {
                    *status = "completed";
                    for (ci, part) in content.iter().enumerate() {
                        let (kind, text, refusal, logprobs) = match part {
                            OutputContent::OutputText { text, .. } => {
                                ("response.output_text.done", Some(text), None, Some([]))
                            }
                            OutputContent::Refusal { refusal } => {
                                ("response.refusal.done", None, Some(refusal), None)
                            }
                        };
                        frame(
                            out,
                            kind,
                            &PartEvent::<()> {
                                kind,
                                sequence_number: seq,
                                item_id: id,
                                output_index: index,
                                content_index: Some(ci),
                                summary_index: None,
                                text: text.map(String::as_str),
                                refusal: refusal.map(String::as_str),
                                logprobs,
                                part: None,
                            },
                        );
                        frame(
                            out,
                            "response.content_part.done",
                            &PartEvent::of_part(
                                "response.content_part.done",
                                seq + 1,
                                id,
                                index,
                                Some(ci),
                                None,
                                part,
                            ),
                        );
                        seq += 2;
                    }
                }
                self.seq = seq;
            }
            Open::Tool(_) => {
                let s1 = self.next_seq();
                if let Some(OutputItem::FunctionCall {
                    id,
                    name,
                    arguments,
                    status,
                    ..
                }) = self.output.get_mut(index)
                {
                    *status = "completed";
                    frame(
                        out,
                        "response.function_call_arguments.done",
                        &ArgumentsDone {
                            kind: "response.function_call_arguments.done",
                            sequence_number: s1,
                            item_id: id,
                            output_index: index,
                            name,
                            arguments,
                        },
                    );
                }
            }
        }
        self.item_event(out, "response.output_item.done", index);
    }

    fn open_item(&mut self, out: &mut BytesMut, open: Open, item: OutputItem) -> usize {
        self.close(out);
        self.output.push(item);
        self.open = open;
        let index = self.output.len() - 1;
        self.item_event(out, "response.output_item.added", index);
        index
    }

    fn reasoning(&mut self, out: &mut BytesMut, delta: &str) {
        if self.open != Open::Reasoning {
            let index = self.open_item(
                out,
                Open::Reasoning,
                OutputItem::Reasoning {
                    id: new_id("rs"),
                    summary: Vec::new(),
                },
            );
            let seq = self.next_seq();
            frame(
                out,
                "response.reasoning_summary_part.added",
                &PartEvent::of_part(
                    "response.reasoning_summary_part.added",
                    seq,
                    self.item_id(index),
                    index,
                    None,
                    Some(0),
                    &SummaryText {
                        kind: "summary_text",
                        text: String::new(),
                    },
                ),
            );
            if let Some(OutputItem::Reasoning { summary, .. }) = self.output.get_mut(index) {
                summary.push(SummaryText {
                    kind: "summary_text",
                    text: String::new(),
                });
            }
        }
        let index = self.output.len() - 1;
        let seq = self.next_seq();
        if let Some(OutputItem::Reasoning { id, summary }) = self.output.get_mut(index) {
            if let Some(s) = summary.first_mut() {
                s.text.push_str(delta);
            }
            Delta {
                kind: "response.reasoning_summary_text.delta",
                sequence_number: seq,
                item_id: id,
                output_index: index,
                content_index: None,
                summary_index: Some(0),
                delta,
                logprobs: false,
            }
            .write(out);
        }
    }

    fn text(&mut self, out: &mut BytesMut, delta: &str, refusal: bool) {
        if self.open != Open::Text {
            let index = self.open_item(
                out,
                Open::Text,
                OutputItem::Message {
                    id: new_id("msg"),
                    status: "in_progress",
                    role: "assistant",
                    content: Vec::new(),
                },
            );
            let _ = index;
        }
        let index = self.output.len() - 1;
        let Some(OutputItem::Message { content, .. }) = self.output.get_mut(index) else {
            return;
        };
        let wanted_refusal = refusal;
        let needs_part = match content.last() {
            Some(OutputContent::Refusal { .. }) => !wanted_refusal,
            Some(OutputContent::OutputText { .. }) => wanted_refusal,
            None => true,
        };
        if needs_part {
            content.push(if refusal {
                OutputContent::Refusal {
                    refusal: String::new(),
                }
            } else {
                OutputContent::text(String::new())
            });
            let ci = content.len() - 1;
            let seq = self.next_seq();
            if let Some(OutputItem::Message { id, content, .. }) = self.output.get(index) {
                if let Some(part) = content.get(ci) {
                    frame(
                        out,
                        "response.content_part.added",
                        &PartEvent::of_part(
                            "response.content_part.added",
                            seq,
                            id,
                            index,
                            Some(ci),
                            None,
                            part,
                        ),
                    );
                }
            }
        }
        let seq = self.next_seq();
        let Some(OutputItem::Message { id, content, .. }) = self.output.get_mut(index) else {
            return;
        };
        let ci = content.len() - 1;
        let (kind, logprobs) = match content.last_mut() {
            Some(OutputContent::OutputText { text, .. }) => {
                text.push_str(delta);
                ("response.output_text.delta", true)
            }
            Some(OutputContent::Refusal { refusal }) => {
                refusal.push_str(delta);
                ("response.refusal.delta", false)
            }
            None => return,
        };
        Delta {
            kind,
            sequence_number: seq,
            item_id: id,
            output_index: index,
            content_index: Some(ci as u32),
            summary_index: None,
            delta,
            logprobs,
        }
        .write(out);
    }

    fn tool(&mut self, out: &mut BytesMut, t: &ToolDeltaIn<'_>) {
        let function = t.function.as_ref();
        let args = function.and_then(|f| f.arguments.as_deref()).unwrap_or("");
        let index = match self.tools.iter().find(|(i, _)| *i == t.index) {
            Some((_, at)) => *at,
            None => {
                let item = OutputItem::function_call(
                    t.id.as_deref()
                        .map(str::to_string)
                        .unwrap_or_else(|| new_id("call")),
                    function.and_then(|f| f.name.as_deref()).unwrap_or_default(),
                    String::new(),
                    "in_progress",
                    &self.echo.namespaced,
                );
                let at = self.open_item(out, Open::Tool(t.index), item);
                self.tools.push((t.index, at));
                at
            }
        };
        if args.is_empty() {
            return;
        }
        let live = self.open == Open::Tool(t.index);
        let seq = if live { self.next_seq() } else { 0 };
        if let Some(OutputItem::FunctionCall { id, arguments, .. }) = self.output.get_mut(index) {
            arguments.push_str(args);
            // Arguments for a call already closed (interleaved calls) join its item only.
            if live {
                Delta {
                    kind: "response.function_call_arguments.delta",
                    sequence_number: seq,
                    item_id: id,
                    output_index: index,
                    content_index: None,
                    summary_index: None,
                    delta: args,
                    logprobs: false,
                }
                .write(out);
            }
        }
    }

    /// Translates one chat chunk (the JSON after `data: `), with the usage it carries.
    pub fn chunk(
        &mut self,
        data: &[u8],
        usage: Option<Usage>,
        out: &mut BytesMut,
    ) -> Result<(), ReplyError> {
        if self.done {
            return Ok(());
        }
        // Nearly every chunk is one choice's text: read by hand; the rest by serde.
        if let Some(chunk) = chunk::fast(data) {
            self.apply(chunk.model, chunk.choice.as_slice(), usage, out);
            return Ok(());
        }
        let chunk = ChunkIn::parse(data).map_err(ReplyError::Chunk)?;
        self.apply(chunk.model, &chunk.choices, usage, out);
        Ok(())
    }

    fn apply(
        &mut self,
        model: Option<Cow<'_, str>>,
        choices: &[ChoiceIn<'_>],
        usage: Option<Usage>,
        out: &mut BytesMut,
    ) {
        if let Some(model) = model.filter(|m| !m.is_empty()) {
            if !self.started {
                self.model = model.into_owned();
            }
        }
        self.start(out);
        if usage.is_some() {
            self.usage = usage;
        }
        for choice in choices.iter().filter(|c| c.index == 0) {
            if let Some(delta) = &choice.delta {
                if let Some(r) = delta.reasoning_content.as_deref().filter(|s| !s.is_empty()) {
                    self.reasoning(out, r);
                }
                if let Some(c) = delta.content.as_deref().filter(|s| !s.is_empty()) {
                    self.text(out, c, false);
                }
                if let Some(c) = delta.refusal.as_deref().filter(|s| !s.is_empty()) {
                    self.text(out, c, true);
                }
                for t in &delta.tool_calls {
                    self.tool(out, t);
                }
            }
            if let Some(f) = &choice.finish_reason {
                self.finish = Some(Status::from_finish(Some(f)));
            }
        }
    }

    /// Closes a complete stream: the open item's `…done` events, then
    /// `response.completed` (or `response.incomplete`) with the whole response.
    pub fn finish(&mut self, out: &mut BytesMut) {
        self.finish_with_usage(out, None);
    }

    /// Like `finish`, with `usage` (when given) as the last event's and the kept
    /// response's usage instead of the counts: what the call was billed.
    pub fn finish_with_usage(&mut self, out: &mut BytesMut, usage: Option<&BilledUsage>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close(out);
        let status = self.finish.unwrap_or(Status::Completed);
        let kind = match status {
            Status::Incomplete(_) => "response.incomplete",
            _ => "response.completed",
        };
        self.response_event(out, kind, status, None, usage);
        self.done = true;
        if let Some(items) = self.items.take() {
            let output = serde_json::to_string(&self.output).unwrap_or_else(|_| "[]".into());
            let response = self.response(status, None, usage);
            self.finished = Some(Finished {
                id: self.id.clone(),
                response: serde_json::to_vec(&response).unwrap_or_default(),
                items: join_arrays(&items, &output),
            });
        }
    }

    /// The usage the backend reported so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Ends the stream with `response.failed` carrying `message`.
    pub fn fail(&mut self, message: &str, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.start(out);
        let error = FailedWith {
            code: "server_error",
            message: message.to_string(),
        };
        self.response_event(out, "response.failed", Status::Failed, Some(&error), None);
        self.done = true;
    }

    /// The finished response and its conversation, once, for storing.
    pub fn take_finished(&mut self) -> Option<Finished> {
        self.finished.take()
    }
}

mod chunk;

#[cfg(test)]
mod tests;
