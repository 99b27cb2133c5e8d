//! Issue 13's fuzz target, as property tests so it runs with every `cargo test`: the
//! request parsers (chat, embeddings, completions, Responses, Anthropic Messages), the
//! SSE decoder, every stream translator, the reply parsers and the usage readers take
//! hostile bytes and near-valid JSON and answer with a value or an error, never a panic.
//! Bounded: 300 cases per property from a fixed seed, seconds in a debug build (16,000
//! random cases found nothing when it was written).

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::{json, Map, Value};

use bazaar::api::anthropic::MessagesRequest;
use bazaar::api::openai::{ChatRequest, PassthroughRequest, RawObject};
use bazaar::api::responses::ResponsesRequest;
use bazaar::providers::anthropic::native::NativeStream;
use bazaar::providers::anthropic::stream::AnthropicStream;
use bazaar::providers::gemini::stream::GeminiStream;
use bazaar::providers::http::{translate_all, StreamTranslator};
use bazaar::providers::openai::responses::ResponsesStream;
use bazaar::providers::sse::SseDecoder;
use bazaar::providers::UpstreamMeta;

/// Field names the parsers look for, so generated objects reach past the first check.
const FIELDS: &[&str] = &[
    "model",
    "models",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "image_url",
    "url",
    "tools",
    "tool_choice",
    "function",
    "name",
    "arguments",
    "parameters",
    "tool_calls",
    "id",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "stream",
    "stream_options",
    "include_usage",
    "response_format",
    "json_schema",
    "schema",
    "provider",
    "order",
    "only",
    "ignore",
    "bazaar",
    "route",
    "user",
    "metadata",
    "input",
    "instructions",
    "prompt",
    "system",
    "temperature",
    "top_p",
    "stop",
    "thinking",
    "budget_tokens",
    "reasoning",
    "effort",
    "previous_response_id",
    "store",
    "tool_use_id",
    "source",
    "data",
    "media_type",
    "choices",
    "delta",
    "message",
    "finish_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "completion_tokens_details",
    "reasoning_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "index",
    "content_block",
    "stop_reason",
    "error",
    "candidates",
    "parts",
    "functionCall",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "response",
    "output",
    "item",
    "output_index",
    "sequence_number",
    "status",
    "code",
    "param",
];

/// Roles and block types, likewise.
const WORDS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "function",
    "text",
    "image_url",
    "image",
    "tool_use",
    "tool_result",
    "thinking",
    "input_text",
    "output_text",
    "json_schema",
    "json_object",
    "auto",
    "none",
    "required",
    "gpt-4o-mini",
    "claude-3-5-haiku",
    "stop",
    "length",
    "end_turn",
    "message",
    "function_call",
    "function_call_output",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(-0.5f64),
            Just(1e300),
            Just(-1e300),
            Just(0.0),
            Just(2.5)
        ]
        .prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
        Just(Value::from("\u{0}\u{feff}\u{10ffff}")),
    ]
}

/// Any JSON value up to a few levels deep, its objects keyed mostly by known fields.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            4 => prop::sample::select(FIELDS).prop_map(str::to_string),
            1 => "\\PC{0,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Valid bodies of each endpoint, which the generators below perturb.
fn seeds() -> Vec<Value> {
    vec![
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "gpt-4o-mini", "stream": true, "n": 2, "max_tokens": 5,
               "messages": [{"role": "system", "content": "be brief"},
                            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                "function": {"name": "f", "arguments": "{}"}}]},
                            {"role": "tool", "tool_call_id": "c", "content": "ok"}],
               "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
               "models": ["a", "b"], "provider": {"order": ["p"], "ignore": ["q"]}}),
        json!({"model": "claude-3-5-haiku", "max_tokens": 10, "system": "s",
               "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
               "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        json!({"model": "gpt-4o-mini", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
               "instructions": "x", "max_output_tokens": 5}),
        json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        json!({"model": "gpt-4o-mini", "prompt": "hi", "max_tokens": 3}),
    ]
}

/// A seed with some of its fields (at any depth) replaced by arbitrary values.
fn perturbed() -> impl Strategy<Value = Value> {
    (
        0..seeds().len(),
        prop::collection::vec((any::<prop::sample::Index>(), value()), 1..4),
    )
        .prop_map(|(seed, edits)| {
            let mut body = seeds().swap_remove(seed);
            for (at, replacement) in edits {
                let mut slots = Vec::new();
                collect_slots(&body, &mut Vec::new(), &mut slots);
                if slots.is_empty() {
                    break;
                }
                let path = &slots[at.index(slots.len())];
                if let Some(slot) = pointer_mut(&mut body, path) {
                    *slot = replacement;
                }
            }
            body
        })
}

/// Every place in `v` a value sits, as a path of object keys and array indexes.
fn collect_slots(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(path.clone());
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    for (step, child) in children {
        path.push(step);
        collect_slots(child, path, out);
        path.pop();
    }
}

fn pointer_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, step| match v {
        Value::Object(m) => m.get_mut(step),
        Value::Array(a) => a.get_mut(step.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Request bodies: perturbed seeds, arbitrary objects, and seeds' bytes cut or corrupted.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => perturbed().prop_map(|v| v.to_string().into_bytes()),
        1 => value().prop_map(|v| v.to_string().into_bytes()),
        1 => (0..seeds().len(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(s, at, byte)| {
            let mut bytes = seeds()[s].to_string().into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            bytes
        }),
        1 => (0..seeds().len(), any::<prop::sample::Index>()).prop_map(|(s, at)| {
            let bytes = seeds()[s].to_string().into_bytes();
            bytes[..at.index(bytes.len())].to_vec()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Every front-end parser on one body; each returns, whatever the body.
fn parse_everywhere(body: &[u8]) {
    let chat = ChatRequest::parse(body);
    if let Ok(req) = &chat {
        let _ = req.estimated_prompt_tokens();
        // The adapters' request builders take whatever the parser accepted.
        let _ = bazaar::providers::anthropic::request::build(req, "m", req.stream, "p");
        let _ = bazaar::providers::gemini::request::build(req, "p");
    }
    let _ = RawObject::parse(body);
    let _ = PassthroughRequest::parse_embeddings(body);
    let _ = PassthroughRequest::parse_completions(body);
    let _ = MessagesRequest::parse(body);
    let _ = ResponsesRequest::parse(body, None);
    let history = serde_json::value::RawValue::from_string("[]".into()).unwrap();
    let _ = ResponsesRequest::parse(body, Some(&history));
}

/// SSE event names the translators switch on.
const EVENTS: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "response.created",
    "response.output_text.delta",
    "response.completed",
    "response.failed",
    "",
];

/// An SSE transcript: events whose data is perturbed or arbitrary JSON, `[DONE]`, or
/// junk, joined with any of the line endings the format allows.
fn transcript() -> impl Strategy<Value = Vec<u8>> {
    let data = prop_oneof![
        3 => value().prop_map(|v| v.to_string()),
        1 => perturbed().prop_map(|v| v.to_string()),
        1 => Just("[DONE]".to_string()),
        1 => "\\PC{0,30}",
    ];
    let event = (
        prop::sample::select(EVENTS),
        data,
        prop::sample::select(&["\n", "\r\n", "\r"][..]),
    );
    prop::collection::vec(event, 0..10).prop_map(|events| {
        let mut out = String::new();
        for (name, data, eol) in events {
            if !name.is_empty() {
                out.push_str(&format!("event: {name}{eol}"));
            }
            out.push_str(&format!("data: {data}{eol}{eol}"));
        }
        out.into_bytes()
    })
}

fn translate<T: StreamTranslator>(mut translator: T, bytes: &[u8]) {
    let _ = translate_all(&mut translator, bytes);
}

/// Every stream translator and reply/usage reader on one upstream body.
fn upstream_everywhere(bytes: &[u8]) {
    translate(AnthropicStream::new("p", 1, false), bytes);
    translate(AnthropicStream::new("p", 1, true), bytes);
    translate(NativeStream::new("p"), bytes);
    translate(GeminiStream::new("p", 1, "m", 7), bytes);
    translate(ResponsesStream::new("p"), bytes);
    for event in bazaar::providers::sse::decode_all(bytes) {
        let _ = bazaar::providers::openai::openai_chunk("p", event);
    }
    let quirks = bazaar::config::presets::Quirks::default();
    let _ = bazaar::providers::openai::parse_usage("p", bytes, &quirks);
    let _ = bazaar::providers::openai::error_fields(bytes);
    let _ = bazaar::providers::anthropic::native::reply_usage("p", bytes);
    let _ = bazaar::providers::anthropic::response::parse_reply(
        "p",
        bytes,
        1,
        false,
        UpstreamMeta::default(),
    );
    let _ = bazaar::providers::gemini::response::parse_reply(
        "p",
        bytes,
        1,
        "m",
        7,
        UpstreamMeta::default(),
    );
}

proptest! {
    // A fixed seed: CI runs the same cases every time (a failure is a bug, never luck).
    // To search further, raise the cases or change the seed locally.
    #![proptest_config(ProptestConfig {
        cases: 300,
        rng_seed: RngSeed::Fixed(13),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn issue_13_request_parsers_never_panic(body in body()) {
        parse_everywhere(&body);
    }

    #[test]
    fn issue_13_stream_translators_never_panic(bytes in transcript()) {
        upstream_everywhere(&bytes);
    }

    #[test]
    fn issue_13_reply_and_usage_parsers_never_panic(reply in prop_oneof![
        perturbed(),
        value(),
        (value(), value()).prop_map(|(usage, content)| json!({
            "id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": usage, "content": [{"type": "text", "text": content}],
            "candidates": [{"content": {"parts": [{"text": content}]}}], "usageMetadata": usage,
        })),
    ]) {
        upstream_everywhere(reply.to_string().as_bytes());
    }

    /// The decoder, fed any bytes cut anywhere, ends; a line it cannot read is skipped.
    #[test]
    fn issue_13_sse_decoder_takes_any_bytes(
        bytes in prop_oneof![transcript(), prop::collection::vec(any::<u8>(), 0..512)],
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            decoder.push(&bytes[start..cut], &mut events);
            start = cut;
        }
        let _ = decoder.finish();
        upstream_everywhere(&bytes);
    }
}
