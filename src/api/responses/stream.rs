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
use super::write::{self, plain_len, put_int, put_string, Fixed};
use super::{new_id, Echo};
use crate::api::chat_view::{ChoiceIn, ChunkIn, ToolDeltaIn};
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
/// event, one per upstream chunk.
#[derive(Serialize)]
struct Delta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    delta: &'a str,
    /// `logprobs: []`, which text deltas carry.
    #[serde(
        skip_serializing_if = "std::ops::Not::not",
        serialize_with = "empty_list"
    )]
    logprobs: bool,
}

fn empty_list<S: serde::Serializer>(_: &bool, s: S) -> Result<S::Ok, S::Error> {
    [(); 0].serialize(s)
}

impl Delta<'_> {
    /// The event, as serde writes it: its constant parts once (`DeltaHead`), then the
    /// sequence number and the text.
    #[cfg(test)]
    fn write(&self, out: &mut BytesMut) {
        let plain = plain_len(self.delta.as_bytes()) == self.delta.len();
        DeltaHead::of(self).write(self.sequence_number, self.delta, plain, out);
    }
}

/// The parts of a delta event that do not change while one part streams: everything
/// before the sequence number, everything between it and the text (its opening quote
/// included), and the end. Built once per part, so that a delta is five copies and a
/// number.
#[derive(Debug, Default)]
struct DeltaHead {
    kind: &'static str,
    output_index: usize,
    content_index: Option<u32>,
    summary_index: Option<u32>,
    /// `event: …\ndata: {"type":"…","sequence_number":` then
    /// `,"item_id":…,"output_index":…,"delta":"`, split at `lead`.
    bytes: BytesMut,
    lead: usize,
    logprobs: bool,
}

impl DeltaHead {
    fn of(d: &Delta<'_>) -> DeltaHead {
        let mut bytes = BytesMut::with_capacity(2 * d.kind.len() + d.item_id.len() + 104);
        bytes.put_slice(b"event: ");
        bytes.put_slice(d.kind.as_bytes());
        bytes.put_slice(b"\ndata: {\"type\":\"");
        bytes.put_slice(d.kind.as_bytes());
        bytes.put_slice(b"\",\"sequence_number\":");
        let lead = bytes.len();
        bytes.put_slice(b",\"item_id\":");
        put_string(&mut bytes, d.item_id);
        bytes.put_slice(b",\"output_index\":");
        put_int(&mut bytes, d.output_index as u64);
        if let Some(i) = d.content_index {
            bytes.put_slice(b",\"content_index\":");
            put_int(&mut bytes, u64::from(i));
        }
        if let Some(i) = d.summary_index {
            bytes.put_slice(b",\"summary_index\":");
            put_int(&mut bytes, u64::from(i));
        }
        bytes.put_slice(b",\"delta\":\"");
        DeltaHead {
            kind: d.kind,
            output_index: d.output_index,
            content_index: d.content_index,
            summary_index: d.summary_index,
            bytes,
            lead,
            logprobs: d.logprobs,
        }
    }

    /// Whether this head is `d`'s (the item id follows from the output index). The
    /// kinds are static names: the same name is nearly always the same pointer.
    fn fits(&self, d: &Delta<'_>) -> bool {
        (std::ptr::eq(self.kind, d.kind) || self.kind == d.kind)
            && self.output_index == d.output_index
            && self.content_index == d.content_index
            && self.summary_index == d.summary_index
            && self.logprobs == d.logprobs
            && !self.bytes.is_empty()
    }

    /// Whether this is the head of output text part `content_index` of message
    /// `output_index`.
    fn is_text_part(&self, output_index: usize, content_index: u32) -> bool {
        self.kind == TEXT_DELTA
            && self.output_index == output_index
            && self.content_index == Some(content_index)
            && self.summary_index.is_none()
            && self.logprobs
            && !self.bytes.is_empty()
    }

    /// The `…output_text.done` and `…content_part.done` events (numbered `seq` and
    /// the next) of the part this is the head of (`is_text_part`), whose whole text is
    /// `text` (`plain`: nothing to escape).
    fn write_text_done(&self, seq: u64, text: &str, plain: bool, out: &mut BytesMut) {
        // `,"item_id":…,"content_index":…`: the head's middle before `,"delta":"`.
        let place = self
            .bytes
            .get(self.lead..self.bytes.len() - 10)
            .unwrap_or_default();
        out.reserve(2 * (place.len() + text.len()) + 320);
        head(out, "response.output_text.done", seq);
        out.put_slice(place);
        put_text(
            out,
            b",\"text\":\"",
            text,
            plain,
            b"\",\"logprobs\":[]}\n\n",
        );
        head(out, "response.content_part.done", seq + 1);
        out.put_slice(place);
        put_text(
            out,
            b",\"part\":{\"type\":\"output_text\",\"text\":\"",
            text,
            plain,
            b"\",\"annotations\":[],\"logprobs\":[]}}\n\n",
        );
    }

    /// Writes the delta event of `delta`, which `plain` says needs no escapes (the
    /// quote, backslash and control characters JSON escapes; see `write::plain_len`).
    fn write(&self, sequence_number: u64, delta: &str, plain: bool, out: &mut BytesMut) {
        let (lead, middle) = self.bytes.split_at(self.lead);
        let end: &[u8] = if self.logprobs {
            b"\",\"logprobs\":[]}\n\n"
        } else {
            b"\"}\n\n"
        };
        out.reserve(self.bytes.len() + delta.len() + 40);
        out.put_slice(lead);
        put_int(out, sequence_number);
        put_text(out, middle, delta, plain, end);
    }
}

/// The kind of an output text delta.
const TEXT_DELTA: &str = "response.output_text.delta";

/// `before`, `text` as a JSON string and `after`, where `before` ends and `after` starts
/// with the string's quotes; `plain`: `text` has nothing to escape.
fn put_text(out: &mut BytesMut, before: &[u8], text: &str, plain: bool, after: &[u8]) {
    if plain {
        out.put_slice(before);
        out.put_slice(text.as_bytes());
        out.put_slice(after);
    } else {
        out.put_slice(before.split_last().map_or(before, |(_, b)| b));
        put_string(out, text);
        out.put_slice(after.split_first().map_or(after, |(_, a)| a));
    }
}

/// `event: {kind}\ndata: {"type":"{kind}","sequence_number":{seq}`: how every event starts.
fn head(out: &mut BytesMut, kind: &str, sequence_number: u64) {
    out.put_slice(b"event: ");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\ndata: {\"type\":\"");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\",\"sequence_number\":");
    put_int(out, sequence_number);
}

/// `head`, then the item the event is about: `"item_id":…,"output_index":…`.
fn head_of_item(out: &mut BytesMut, kind: &str, sequence_number: u64, item_id: &str, at: usize) {
    head(out, kind, sequence_number);
    out.put_slice(b",\"item_id\":");
    put_string(out, item_id);
    out.put_slice(b",\"output_index\":");
    put_int(out, at as u64);
}

/// A part of a `…part.added`/`…part.done` event.
#[derive(Clone, Copy, Serialize)]
#[serde(untagged)]
enum PartRef<'a> {
    Summary(&'a SummaryText),
    Content(&'a OutputContent),
}

/// `…text.done`, `…refusal.done`, `…reasoning_summary_text.done` (the whole text) and
/// `…part.added`/`…part.done` (the part): where in the response, then what.
#[derive(Serialize)]
struct PartEvent<'a> {
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
    part: Option<PartRef<'a>>,
}

impl<'a> PartEvent<'a> {
    /// A `…part.added`/`…part.done` event: `part`, at `content_index` of a message or
    /// `summary_index` of a reasoning item.
    fn of_part(
        kind: &'static str,
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: Option<usize>,
        summary_index: Option<u32>,
        part: PartRef<'a>,
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

    /// A `…content_part.added`/`…done` event: `part` of message item `item_id`.
    fn content_part(
        kind: &'static str,
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        part: &'a OutputContent,
    ) -> Self {
        PartEvent::of_part(
            kind,
            sequence_number,
            item_id,
            output_index,
            Some(content_index),
            None,
            PartRef::Content(part),
        )
    }

    /// The event's frame, as `frame` writes it through serde.
    fn write(&self, out: &mut BytesMut) {
        head_of_item(
            out,
            self.kind,
            self.sequence_number,
            self.item_id,
            self.output_index,
        );
        if let Some(i) = self.content_index {
            out.put_slice(b",\"content_index\":");
            put_int(out, i as u64);
        }
        if let Some(i) = self.summary_index {
            out.put_slice(b",\"summary_index\":");
            put_int(out, u64::from(i));
        }
        if let Some(text) = self.text {
            out.put_slice(b",\"text\":");
            put_string(out, text);
        }
        if let Some(refusal) = self.refusal {
            out.put_slice(b",\"refusal\":");
            put_string(out, refusal);
        }
        if self.logprobs.is_some() {
            out.put_slice(b",\"logprobs\":[]");
        }
        match self.part {
            Some(PartRef::Summary(s)) => {
                out.put_slice(b",\"part\":");
                write::put_summary(out, s);
            }
            Some(PartRef::Content(c)) => {
                out.put_slice(b",\"part\":");
                write::put_content(out, c);
            }
            None => {}
        }
        out.put_slice(b"}\n\n");
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

impl ArgumentsDone<'_> {
    fn write(&self, out: &mut BytesMut) {
        head_of_item(
            out,
            self.kind,
            self.sequence_number,
            self.item_id,
            self.output_index,
        );
        out.put_slice(b",\"name\":");
        put_string(out, self.name);
        out.put_slice(b",\"arguments\":");
        put_string(out, self.arguments);
        out.put_slice(b"}\n\n");
    }
}

#[derive(Serialize)]
struct ItemEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    output_index: usize,
    item: &'a OutputItem,
}

impl ItemEvent<'_> {
    fn write(&self, out: &mut BytesMut) {
        head(out, self.kind, self.sequence_number);
        out.put_slice(b",\"output_index\":");
        put_int(out, self.output_index as u64);
        out.put_slice(b",\"item\":");
        write::put_item(out, self.item);
        out.put_slice(b"}\n\n");
    }
}

#[derive(Serialize)]
struct ResponseEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    response: ResponseOut<'a>,
}

impl ResponseEvent<'_> {
    /// Writes the event; returns where its response object lies in `out`. The parts of
    /// the response that follow from its request and model are copied from `fixed` when
    /// it holds them, else written and kept in it.
    fn write(&self, out: &mut BytesMut, fixed: &mut Fixed) -> std::ops::Range<usize> {
        head(out, self.kind, self.sequence_number);
        out.put_slice(b",\"response\":");
        let start = out.len();
        if fixed.whole().is_empty() {
            let marks = write::put_response_marked(out, &self.response);
            *fixed = Fixed::of(out, start..out.len(), &marks);
        } else {
            write::put_response_with(out, &self.response, fixed);
        }
        let end = out.len();
        out.put_slice(b"}\n\n");
        start..end
    }
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
    /// The constant parts of the part streaming now.
    delta_head: DeltaHead,
    /// Whether the last content part's text has nothing JSON escapes.
    text_plain: bool,
    /// The last chunk's shape, to read the next one of the same shape quickly.
    /// Boxed: it is moved out of the writer while a chunk read against it is applied,
    /// and a pointer is cheaper to move than its dozen buffers (`None` only then).
    memo: Option<Box<chunk::Memo>>,
    /// The parts of the response object fixed once the stream starts.
    fixed: Fixed,
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
            delta_head: DeltaHead::default(),
            text_plain: true,
            memo: Some(Box::default()),
            fixed: Fixed::default(),
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

    /// Writes a whole-response event; returns where the response object lies in `out`.
    fn response_event(
        &mut self,
        out: &mut BytesMut,
        kind: &'static str,
        status: Status,
        error: Option<&FailedWith>,
        usage: Option<&BilledUsage>,
    ) -> std::ops::Range<usize> {
        let seq = self.next_seq();
        let mut fixed = std::mem::take(&mut self.fixed);
        let response = self.response(status, error, usage);
        let at = ResponseEvent {
            kind,
            sequence_number: seq,
            response,
        }
        .write(out, &mut fixed);
        self.fixed = fixed;
        at
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        self.response_event(out, "response.created", Status::InProgress, None, None);
        // `response.in_progress` repeats the response object of `response.created`
        // (nothing has been produced yet): copied, not written again.
        let seq = self.next_seq();
        head(out, "response.in_progress", seq);
        out.put_slice(b",\"response\":");
        out.put_slice(self.fixed.whole());
        out.put_slice(b"}\n\n");
    }

    fn item_event(&mut self, out: &mut BytesMut, kind: &'static str, index: usize) {
        let seq = self.next_seq();
        if let Some(item) = self.output.get(index) {
            ItemEvent {
                kind,
                sequence_number: seq,
                output_index: index,
                item,
            }
            .write(out);
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

    /// Writes a delta event through the head of its part (made anew when the part changed).
    fn write_delta(head: &mut DeltaHead, delta: &Delta<'_>, out: &mut BytesMut) {
        let plain = plain_len(delta.delta.as_bytes()) == delta.delta.len();
        StreamWriter::write_delta_plain(head, delta, plain, out);
    }

    /// `write_delta` for a delta whose text `plain` says needs no escapes.
    fn write_delta_plain(head: &mut DeltaHead, delta: &Delta<'_>, plain: bool, out: &mut BytesMut) {
        if !head.fits(delta) {
            *head = DeltaHead::of(delta);
        }
        head.write(delta.sequence_number, delta.delta, plain, out);
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
                    PartEvent {
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
                    }
                    .write(out);
                    PartEvent::of_part(
                        "response.reasoning_summary_part.done",
                        s2,
                        id,
                        index,
                        None,
                        Some(0),
                        PartRef::Summary(part),
                    )
                    .write(out);
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
                    // The usual message, one text part that the current delta head is
                    // for: its `…done` events are written from that head's bytes.
                    let one_text = match content.as_slice() {
                        [OutputContent::OutputText { text, .. }]
                            if self.delta_head.is_text_part(index, 0) =>
                        {
                            Some(text)
                        }
                        _ => None,
                    };
                    if let Some(text) = one_text {
                        self.delta_head
                            .write_text_done(seq, text, self.text_plain, out);
                        seq += 2;
                    }
                    for (ci, part) in content.iter().enumerate().filter(|_| one_text.is_none()) {
                        let (kind, text, refusal, logprobs) = match part {
                            OutputContent::OutputText { text, .. } => {
                                ("response.output_text.done", Some(text), None, Some([]))
                            }
                            OutputContent::Refusal { refusal } => {
                                ("response.refusal.done", None, Some(refusal), None)
                            }
                        };
                        PartEvent {
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
                        }
                        .write(out);
                        PartEvent::content_part(
                            "response.content_part.done",
                            seq + 1,
                            id,
                            index,
                            ci,
                            part,
                        )
                        .write(out);
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
                    ArgumentsDone {
                        kind: "response.function_call_arguments.done",
                        sequence_number: s1,
                        item_id: id,
                        output_index: index,
                        name,
                        arguments,
                    }
                    .write(out);
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
            PartEvent::of_part(
                "response.reasoning_summary_part.added",
                seq,
                self.item_id(index),
                index,
                None,
                Some(0),
                PartRef::Summary(&SummaryText {
                    kind: "summary_text",
                    text: String::new(),
                }),
            )
            .write(out);
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
            let d = Delta {
                kind: "response.reasoning_summary_text.delta",
                sequence_number: seq,
                item_id: id,
                output_index: index,
                content_index: None,
                summary_index: Some(0),
                delta,
                logprobs: false,
            };
            StreamWriter::write_delta(&mut self.delta_head, &d, out);
        }
    }

    fn text(&mut self, out: &mut BytesMut, delta: &str, refusal: bool) {
        if !refusal && self.more_text(out, delta, plain_len(delta.as_bytes()) == delta.len()) {
            return;
        }
        if self.open != Open::Text {
            self.open_item(
                out,
                Open::Text,
                OutputItem::Message {
                    id: new_id("msg"),
                    status: "in_progress",
                    role: "assistant",
                    content: Vec::new(),
                },
            );
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
            // A part's text grows by small deltas: room for a few dozen at once.
            let room = String::with_capacity(256);
            self.text_plain = true;
            content.push(if refusal {
                OutputContent::Refusal { refusal: room }
            } else {
                OutputContent::text(room)
            });
            let ci = content.len() - 1;
            let seq = self.next_seq();
            if let Some(OutputItem::Message { id, content, .. }) = self.output.get(index) {
                if let Some(part) = content.get(ci) {
                    PartEvent::content_part(
                        "response.content_part.added",
                        seq,
                        id,
                        index,
                        ci,
                        part,
                    )
                    .write(out);
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
                self.text_plain &= plain_len(delta.as_bytes()) == delta.len();
                (TEXT_DELTA, true)
            }
            Some(OutputContent::Refusal { refusal }) => {
                refusal.push_str(delta);
                ("response.refusal.delta", false)
            }
            None => return,
        };
        let d = Delta {
            kind,
            sequence_number: seq,
            item_id: id,
            output_index: index,
            content_index: Some(ci as u32),
            summary_index: None,
            delta,
            logprobs,
        };
        StreamWriter::write_delta(&mut self.delta_head, &d, out);
    }

    /// Text for the output text part streaming now, if one is: the text joins it and
    /// its delta event is written (`false`, nothing done, when no such part is open).
    /// `plain`: the text has nothing JSON escapes.
    fn more_text(&mut self, out: &mut BytesMut, delta: &str, plain: bool) -> bool {
        if self.open != Open::Text {
            return false;
        }
        let index = self.output.len() - 1;
        let Some(OutputItem::Message { id, content, .. }) = self.output.get_mut(index) else {
            return false;
        };
        let Some(ci) = content.len().checked_sub(1) else {
            return false;
        };
        let Some(OutputContent::OutputText { text, .. }) = content.last_mut() else {
            return false;
        };
        text.push_str(delta);
        self.text_plain &= plain;
        let d = Delta {
            kind: TEXT_DELTA,
            sequence_number: self.seq,
            item_id: id,
            output_index: index,
            content_index: Some(ci as u32),
            summary_index: None,
            delta,
            logprobs: true,
        };
        StreamWriter::write_delta_plain(&mut self.delta_head, &d, plain, out);
        self.seq += 1;
        true
    }

    /// Content text without escapes (what the chunk memo reads), as `text` takes it.
    fn plain_text(&mut self, out: &mut BytesMut, delta: &str) {
        if !self.more_text(out, delta, true) {
            self.text(out, delta, false);
        }
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
                let d = Delta {
                    kind: "response.function_call_arguments.delta",
                    sequence_number: seq,
                    item_id: id,
                    output_index: index,
                    content_index: None,
                    summary_index: None,
                    delta: args,
                    logprobs: false,
                };
                StreamWriter::write_delta(&mut self.delta_head, &d, out);
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
        // Nearly every chunk is the last one with other text: that text goes straight
        // to the part streaming it.
        if self.started {
            if let Some(text) = self.memo.as_ref().and_then(|m| m.only_content(data)) {
                if usage.is_some() {
                    self.usage = usage;
                }
                if !text.is_empty() {
                    self.plain_text(out, text);
                }
                return Ok(());
            }
        }
        // Nearly every other chunk is one choice's text: read by hand, against the last
        // chunk's shape when it has it; the rest by serde.
        let mut memo = self.memo.take().unwrap_or_default();
        let fast = memo.read(data);
        if let Some(chunk) = fast {
            self.apply(chunk.model, chunk.choice.as_slice(), usage, out);
            self.memo = Some(memo);
            return Ok(());
        }
        self.memo = Some(memo);
        let chunk = ChunkIn::parse(data).map_err(ReplyError::Chunk)?;
        self.apply(chunk.model, &chunk.choices, usage, out);
        Ok(())
    }

    /// Translates a chunk that carries usage and no choices, as the adapter that read it
    /// says (the usual last chunk): once the stream has started, its usage is all there
    /// is to read in it, so it is not parsed again.
    pub fn usage_chunk(
        &mut self,
        data: &[u8],
        usage: Usage,
        out: &mut BytesMut,
    ) -> Result<(), ReplyError> {
        if self.started && !self.done {
            self.usage = Some(usage);
            return Ok(());
        }
        self.chunk(data, Some(usage), out)
    }

    fn apply(
        &mut self,
        model: Option<Cow<'_, str>>,
        choices: &[ChoiceIn<'_>],
        usage: Option<Usage>,
        out: &mut BytesMut,
    ) {
        if !self.started {
            if let Some(model) = model.filter(|m| !m.is_empty()) {
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
        let at = self.response_event(out, kind, status, None, usage);
        self.done = true;
        if let Some(items) = self.items.take() {
            // The kept response is the one the client just got.
            let response = out.get(at).map(<[u8]>::to_vec).unwrap_or_default();
            let mut output = BytesMut::new();
            write::put_items(&mut output, &self.output);
            let output = String::from_utf8(output.to_vec()).unwrap_or_else(|_| "[]".into());
            self.finished = Some(Finished {
                id: self.id.clone(),
                response,
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
