//! The JSON of a response object and its output items, written straight into a stream's
//! buffer: byte for byte what serde writes for `ResponseOut` and `OutputItem` (property
//! tests hold the two together), without a serializer's call per field. A stream writes
//! the whole object three times (`response.created`, `…in_progress`, `…completed`), which
//! made serde the largest part of its cost.

use bytes::{BufMut, BytesMut};
use serde_json::value::RawValue;

use super::reply::{OutputContent, OutputItem, ResponseOut, SummaryText, UsageOut};

/// Writes `n` as JSON.
pub(super) fn put_int(out: &mut BytesMut, n: u64) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Writes `s` as a JSON string, as serde_json writes it: text with nothing to escape
/// (no quote, backslash or control character) is copied in one piece.
pub(super) fn put_string(out: &mut BytesMut, s: &str) {
    if plain_len(s.as_bytes()) < s.len() {
        // Serialising a &str into memory cannot fail.
        let _ = serde_json::to_writer((&mut *out).writer(), s);
        return;
    }
    out.reserve(s.len() + 2);
    out.put_u8(b'"');
    out.put_slice(s.as_bytes());
    out.put_u8(b'"');
}

/// Writes raw JSON as it is (as serde_json writes a `RawValue`).
fn put_raw(out: &mut BytesMut, raw: &RawValue) {
    out.put_slice(raw.get().as_bytes());
}

fn put_bool(out: &mut BytesMut, b: bool) {
    out.put_slice(if b { b"true" } else { b"false" });
}

/// The length of the start of `bytes` that a JSON string holds as it is: up to the first
/// quote, backslash or control character (serde_json escapes exactly these on writing,
/// and stops at them on reading). Eight bytes at a time.
pub(super) fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let w = u64::from_le_bytes(eight);
        // Per byte: zero after xor with '"' or '\\', or below 0x20. The lowest flagged
        // byte is always a true one (borrows only carry upwards).
        let quote = w ^ (ONES * u64::from(b'"'));
        let slash = w ^ (ONES * u64::from(b'\\'));
        let flags = ((quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    for &b in words.remainder() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// A whole response object, as serde writes `ResponseOut`.
pub(super) fn put_response(out: &mut BytesMut, r: &ResponseOut<'_>) {
    put_response_marked(out, r);
}

/// The parts of a response object that follow from its request and model alone (the
/// echoed fields, `model`), as one response's bytes and where they lie in them: from
/// `,"instructions"` to `"output":`, from `,"parallel_tool_calls"` to the end of
/// `truncation`, and from `user` (or `metadata`) to the end. A stream writes its whole
/// response three times; after the first, these are copied.
#[derive(Debug, Default)]
pub(super) struct Fixed {
    bytes: Vec<u8>,
    lead: std::ops::Range<usize>,
    middle: std::ops::Range<usize>,
    tail: std::ops::Range<usize>,
}

impl Fixed {
    /// The fixed parts of the response object `out[at]`, written with `marks`.
    pub(super) fn of(out: &[u8], at: std::ops::Range<usize>, marks: &Fixed) -> Fixed {
        let shift = |r: &std::ops::Range<usize>| r.start - at.start..r.end - at.start;
        Fixed {
            bytes: out.get(at.clone()).map(<[u8]>::to_vec).unwrap_or_default(),
            lead: shift(&marks.lead),
            middle: shift(&marks.middle),
            tail: shift(&marks.tail),
        }
    }

    /// The response object these parts were taken from.
    pub(super) fn whole(&self) -> &[u8] {
        &self.bytes
    }

    fn part(&self, range: &std::ops::Range<usize>) -> &[u8] {
        self.bytes.get(range.clone()).unwrap_or_default()
    }
}

/// `put_response`, returning where its fixed parts lie in `out` (see `Fixed`; no bytes).
pub(super) fn put_response_marked(out: &mut BytesMut, r: &ResponseOut<'_>) -> Fixed {
    put_response_head(out, r);
    let lead = out.len();
    put_response_lead(out, r);
    let lead = lead..out.len();
    put_items(out, r.output);
    let middle = out.len();
    put_response_middle(out, r);
    let middle = middle..out.len();
    put_response_usage(out, r);
    let tail = out.len();
    put_response_tail(out, r);
    Fixed {
        bytes: Vec::new(),
        lead,
        middle,
        tail: tail..out.len(),
    }
}

/// `put_response` for a response whose request and model are those of `fixed`: the
/// parts that follow from them are copied from it.
pub(super) fn put_response_with(out: &mut BytesMut, r: &ResponseOut<'_>, fixed: &Fixed) {
    put_response_head(out, r);
    out.put_slice(fixed.part(&fixed.lead));
    put_items(out, r.output);
    out.put_slice(fixed.part(&fixed.middle));
    put_response_usage(out, r);
    out.put_slice(fixed.part(&fixed.tail));
}

/// From the opening brace to `incomplete_details`.
fn put_response_head(out: &mut BytesMut, r: &ResponseOut<'_>) {
    out.put_slice(b"{\"id\":");
    put_string(out, r.id);
    out.put_slice(b",\"object\":");
    put_string(out, r.object);
    out.put_slice(b",\"created_at\":");
    put_int(out, r.created_at);
    out.put_slice(b",\"status\":");
    put_string(out, r.status);
    if let Some(at) = r.completed_at {
        out.put_slice(b",\"completed_at\":");
        put_int(out, at);
    }
    out.put_slice(b",\"error\":");
    match r.error {
        Some(e) => {
            out.put_slice(b"{\"code\":");
            put_string(out, e.code);
            out.put_slice(b",\"message\":");
            put_string(out, &e.message);
            out.put_u8(b'}');
        }
        None => out.put_slice(b"null"),
    }
    out.put_slice(b",\"incomplete_details\":");
    match r.incomplete_reason() {
        Some(reason) => {
            out.put_slice(b"{\"reason\":");
            put_string(out, reason);
            out.put_u8(b'}');
        }
        None => out.put_slice(b"null"),
    }
}

/// From `instructions` to the key of `output`.
fn put_response_lead(out: &mut BytesMut, r: &ResponseOut<'_>) {
    out.put_slice(b",\"instructions\":");
    put_raw(out, r.instructions);
    out.put_slice(b",\"max_output_tokens\":");
    put_raw(out, r.max_output_tokens);
    out.put_slice(b",\"model\":");
    put_string(out, r.model);
    out.put_slice(b",\"output\":");
}

/// From `parallel_tool_calls` to `truncation`.
fn put_response_middle(out: &mut BytesMut, r: &ResponseOut<'_>) {
    out.put_slice(b",\"parallel_tool_calls\":");
    put_bool(out, r.parallel_tool_calls);
    out.put_slice(b",\"previous_response_id\":");
    match r.previous_response_id {
        Some(id) => put_string(out, id),
        None => out.put_slice(b"null"),
    }
    out.put_slice(b",\"reasoning\":");
    put_raw(out, r.reasoning);
    out.put_slice(b",\"store\":");
    put_bool(out, r.store);
    out.put_slice(b",\"temperature\":");
    put_raw(out, r.temperature);
    out.put_slice(b",\"text\":");
    put_raw(out, r.text);
    out.put_slice(b",\"tool_choice\":");
    put_raw(out, r.tool_choice);
    out.put_slice(b",\"tools\":");
    out.put_slice(r.tools.as_bytes());
    out.put_slice(b",\"top_p\":");
    put_raw(out, r.top_p);
    out.put_slice(b",\"truncation\":");
    put_raw(out, r.truncation);
}

fn put_response_usage(out: &mut BytesMut, r: &ResponseOut<'_>) {
    if let Some(usage) = &r.usage {
        out.put_slice(b",\"usage\":");
        put_usage(out, usage);
    }
}

/// `user`, if any, `metadata` and the closing brace.
fn put_response_tail(out: &mut BytesMut, r: &ResponseOut<'_>) {
    if let Some(user) = r.user {
        out.put_slice(b",\"user\":");
        put_raw(out, user);
    }
    out.put_slice(b",\"metadata\":");
    put_raw(out, r.metadata);
    out.put_u8(b'}');
}

/// A response's `usage`, as serde writes `UsageOut`.
fn put_usage(out: &mut BytesMut, usage: &UsageOut) {
    match usage {
        UsageOut::Counts(u) => {
            out.put_slice(b"{\"input_tokens\":");
            put_int(out, u.input_tokens);
            out.put_slice(b",\"input_tokens_details\":{\"cached_tokens\":");
            put_int(out, u.input_tokens_details.cached_tokens);
            out.put_slice(b",\"cache_write_tokens\":");
            put_int(out, u.input_tokens_details.cache_write_tokens);
            put_usage_end(
                out,
                u.output_tokens,
                u.output_tokens_details.reasoning_tokens,
                u.total_tokens,
            );
        }
        UsageOut::Billed(u) => {
            out.put_slice(b"{\"cost\":");
            match &u.cost {
                // A number's text as serde_json writes it (a float's shortest form).
                Some(n) => {
                    let _ = serde_json::to_writer((&mut *out).writer(), n);
                }
                None => out.put_slice(b"null"),
            }
            if u.estimated {
                out.put_slice(b",\"estimated\":true");
            }
            out.put_slice(b",\"input_tokens\":");
            put_int(out, u.input_tokens);
            out.put_slice(b",\"input_tokens_details\":{\"cache_write_tokens\":");
            put_int(out, u.input_tokens_details.cache_write_tokens);
            out.put_slice(b",\"cached_tokens\":");
            put_int(out, u.input_tokens_details.cached_tokens);
            put_usage_end(
                out,
                u.output_tokens,
                u.output_tokens_details.reasoning_tokens,
                u.total_tokens,
            );
        }
    }
}

/// The end of a usage object, from the closing of `input_tokens_details` on.
fn put_usage_end(out: &mut BytesMut, output: u64, reasoning: u64, total: u64) {
    out.put_slice(b"},\"output_tokens\":");
    put_int(out, output);
    out.put_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":");
    put_int(out, reasoning);
    out.put_slice(b"},\"total_tokens\":");
    put_int(out, total);
    out.put_u8(b'}');
}

/// A JSON array of `items`, each written by `put`.
fn put_list<T>(out: &mut BytesMut, items: &[T], put: impl Fn(&mut BytesMut, &T)) {
    out.put_u8(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put(out, item);
    }
    out.put_u8(b']');
}

/// A list of output items.
pub(super) fn put_items(out: &mut BytesMut, items: &[OutputItem]) {
    put_list(out, items, put_item);
}

/// One output item, as serde writes `OutputItem`.
pub(super) fn put_item(out: &mut BytesMut, item: &OutputItem) {
    match item {
        OutputItem::Reasoning { id, summary } => {
            out.put_slice(b"{\"type\":\"reasoning\",\"id\":");
            put_string(out, id);
            out.put_slice(b",\"summary\":");
            put_list(out, summary, put_summary);
            out.put_u8(b'}');
        }
        OutputItem::Message {
            id,
            status,
            role,
            content,
        } => {
            out.put_slice(b"{\"type\":\"message\",\"id\":");
            put_string(out, id);
            out.put_slice(b",\"status\":");
            put_string(out, status);
            out.put_slice(b",\"role\":");
            put_string(out, role);
            out.put_slice(b",\"content\":");
            put_list(out, content, put_content);
            out.put_u8(b'}');
        }
        OutputItem::FunctionCall {
            id,
            call_id,
            name,
            arguments,
            status,
            namespace,
        } => {
            out.put_slice(b"{\"type\":\"function_call\",\"id\":");
            put_string(out, id);
            out.put_slice(b",\"call_id\":");
            put_string(out, call_id);
            out.put_slice(b",\"name\":");
            put_string(out, name);
            out.put_slice(b",\"arguments\":");
            put_string(out, arguments);
            out.put_slice(b",\"status\":");
            put_string(out, status);
            if let Some(ns) = namespace {
                out.put_slice(b",\"namespace\":");
                put_string(out, ns);
            }
            out.put_u8(b'}');
        }
    }
}

/// A reasoning summary part, as serde writes `SummaryText`.
pub(super) fn put_summary(out: &mut BytesMut, s: &SummaryText) {
    out.put_slice(b"{\"type\":");
    put_string(out, s.kind);
    out.put_slice(b",\"text\":");
    put_string(out, &s.text);
    out.put_u8(b'}');
}

/// A message part, as serde writes `OutputContent`.
pub(super) fn put_content(out: &mut BytesMut, c: &OutputContent) {
    match c {
        OutputContent::OutputText { text, .. } => {
            out.put_slice(b"{\"type\":\"output_text\",\"text\":");
            put_string(out, text);
            out.put_slice(b",\"annotations\":[],\"logprobs\":[]}");
        }
        OutputContent::Refusal { refusal } => {
            out.put_slice(b"{\"type\":\"refusal\",\"refusal\":");
            put_string(out, refusal);
            out.put_u8(b'}');
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::api::openai::RawObject;
    use crate::api::responses::reply::{BilledUsage, FailedWith, Status};
    use crate::api::responses::Echo;
    use crate::api::Usage;

    /// Text with and without what JSON escapes.
    pub(crate) fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z ]{0,8}",
            "\\PC{0,8}",
            Just("a \"quoted\" \\ line\n\t\u{1}\u{7f} é 😀".to_string()),
        ]
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    /// Raw JSON as a client may have sent it.
    fn raw_json() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            Just("{}".to_string()),
            Just("[]".to_string()),
            Just("1".to_string()),
            Just("0.5".to_string()),
            Just("\"auto\"".to_string()),
            Just(r#"{"format":{"type":"text"}}"#.to_string()),
            Just(
                r#"[{"type":"function","name":"f","parameters":{"type":"object"},"strict":null}]"#
                    .to_string()
            ),
            Just(r#"{"k": "v", "e": "\u00e9"}"#.to_string()),
            text().prop_map(|t| serde_json::to_string(&t).unwrap()),
        ]
    }

    /// An echo over a body holding some of the echoed fields (raw JSON of any kind, `null`
    /// included; the rest take their defaults) beside others it does not echo.
    fn echo() -> impl Strategy<Value = Echo> {
        const KEYS: [&str; 11] = [
            "instructions",
            "metadata",
            "model",
            "tool_choice",
            "temperature",
            "top_p",
            "max_output_tokens",
            "reasoning",
            "text",
            "truncation",
            "user",
        ];
        (
            proptest::collection::vec(proptest::option::of(raw_json()), KEYS.len()),
            raw_json(),
            any::<(bool, bool)>(),
            proptest::option::of(text()),
        )
            .prop_map(|(raws, tools, (parallel, store), previous)| {
                let body = KEYS
                    .iter()
                    .zip(raws)
                    .filter_map(|(k, v)| Some((k.to_string(), raw(&v?))))
                    .collect();
                Echo::new(
                    RawObject::from_fields(body),
                    Some(tools),
                    parallel,
                    store,
                    previous,
                    Vec::new(),
                )
            })
    }

    fn content() -> impl Strategy<Value = OutputContent> {
        prop_oneof![
            text().prop_map(OutputContent::text),
            text().prop_map(|refusal| OutputContent::Refusal { refusal }),
        ]
    }

    fn item() -> impl Strategy<Value = OutputItem> {
        let status = prop_oneof![Just("in_progress"), Just("completed")];
        prop_oneof![
            (text(), proptest::collection::vec(text(), 0..3)).prop_map(|(id, texts)| {
                OutputItem::Reasoning {
                    id,
                    summary: texts
                        .into_iter()
                        .map(|text| SummaryText {
                            kind: "summary_text",
                            text,
                        })
                        .collect(),
                }
            }),
            (
                text(),
                status.clone(),
                proptest::collection::vec(content(), 0..3)
            )
                .prop_map(|(id, status, content)| OutputItem::Message {
                    id,
                    status,
                    role: "assistant",
                    content,
                }),
            (
                (text(), text(), text(), text()),
                status,
                proptest::option::of(text())
            )
                .prop_map(|((id, call_id, name, arguments), status, namespace)| {
                    OutputItem::FunctionCall {
                        id,
                        call_id,
                        name,
                        arguments,
                        status,
                        namespace,
                    }
                }),
        ]
    }

    fn usage() -> impl Strategy<Value = Usage> {
        (
            0u64..1 << 40,
            0u64..1000,
            0u64..1000,
            0u64..1 << 40,
            0u64..1000,
        )
            .prop_map(
                |(input, cached_input, cache_write, output, reasoning)| Usage {
                    input,
                    cached_input,
                    cache_write,
                    output,
                    reasoning,
                    ..Usage::default()
                },
            )
    }

    fn billed() -> impl Strategy<Value = BilledUsage> {
        (
            usage(),
            any::<bool>(),
            proptest::option::of(prop_oneof![
                Just(0.0),
                Just(0.00012),
                Just(1.234567891),
                Just(1e-9),
                0.0f64..1e6
            ]),
        )
            .prop_map(|(u, estimated, cost)| {
                BilledUsage::new(&u, estimated, cost.and_then(serde_json::Number::from_f64))
            })
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::InProgress),
            Just(Status::Completed),
            Just(Status::Incomplete("max_output_tokens")),
            Just(Status::Incomplete("content_filter")),
            Just(Status::Failed),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn responses_are_written_as_serde_writes_them(
            echo in echo(),
            (id, model) in (text(), text()),
            created_at in any::<u64>(),
            status in status(),
            output in proptest::collection::vec(item(), 0..4),
            counts in proptest::option::of(usage()),
            billed in proptest::option::of(billed()),
            error in proptest::option::of(text()),
        ) {
            let failed = error.map(|message| FailedWith { code: "server_error", message });
            let mut r = ResponseOut::new(
                &id, created_at, &model, &echo, status, &output, counts, failed.as_ref(),
            );
            if let Some(b) = billed {
                r.usage = Some(UsageOut::Billed(b));
            }
            let mut out = BytesMut::new();
            put_response(&mut out, &r);
            let expected = serde_json::to_string(&r).unwrap();
            prop_assert_eq!(std::str::from_utf8(&out).unwrap(), expected.as_str());
        }

        #[test]
        fn fixed_parts_are_copied_as_they_were_written(
            echo in echo(),
            model in text(),
            (created, later) in any::<(u64, u64)>(),
            status in status(),
            output in proptest::collection::vec(item(), 0..3),
            counts in proptest::option::of(usage()),
            error in proptest::option::of(text()),
        ) {
            let first = ResponseOut::new(
                "resp_1", created, &model, &echo, Status::InProgress, &[], None, None,
            );
            let mut out = BytesMut::from(&b"event: x\ndata: "[..]);
            let start = out.len();
            let marks = put_response_marked(&mut out, &first);
            let fixed = Fixed::of(&out, start..out.len(), &marks);
            prop_assert_eq!(fixed.whole(), &out[start..]);
            let failed = error.map(|message| FailedWith { code: "server_error", message });
            let r = ResponseOut::new(
                "resp_1", later, &model, &echo, status, &output, counts, failed.as_ref(),
            );
            let (mut with, mut plain) = (BytesMut::new(), BytesMut::new());
            put_response_with(&mut with, &r, &fixed);
            put_response(&mut plain, &r);
            prop_assert_eq!(with, plain);
        }

        #[test]
        fn items_are_written_as_serde_writes_them(items in proptest::collection::vec(item(), 0..4)) {
            let mut out = BytesMut::new();
            put_items(&mut out, &items);
            let expected = serde_json::to_string(&items).unwrap();
            prop_assert_eq!(std::str::from_utf8(&out).unwrap(), expected.as_str());
        }
    }
}
