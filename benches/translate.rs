//! Micro-benchmark: the cost of translation per call and per stream event, for the
//! Anthropic and Gemini adapters and the `/v1/messages` front end. Budgets: a request
//! body in <= 20 µs, a stream event in <= 3 µs. Run with `cargo bench --bench translate`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_types
)]

use std::time::Instant;

use bazaar::api::anthropic::stream::EventWriter;
use bazaar::api::anthropic::MessagesRequest;
use bazaar::api::openai::ChatRequest;
use bazaar::providers::anthropic::{request as anthropic_request, stream::AnthropicStream};
use bazaar::providers::gemini::{request as gemini_request, stream::GeminiStream};
use bazaar::providers::http::translate_all;
use bytes::BytesMut;

const CHAT: &[u8] = br#"{"model":"m","max_tokens":512,"temperature":0.2,"stream":true,
"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}}],
"messages":[{"role":"system","content":"You are a terse assistant that answers in one sentence."},
{"role":"user","content":"What is the weather in Paris and in Rome today, and should I bring an umbrella?"},
{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},
{"role":"tool","tool_call_id":"call_1","content":"18C, light rain"},
{"role":"user","content":"And Rome?"}]}"#;

const MESSAGES: &[u8] = br#"{"model":"m","max_tokens":512,"stream":true,"system":"You are terse.",
"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}}}}],
"messages":[{"role":"user","content":"What is the weather in Paris?"},
{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"location":"Paris"}}]},
{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C"},{"type":"text","text":"And Rome?"}]}]}"#;

const ANTHROPIC_SSE: &str = include_str!("../tests/fixtures/anthropic/stream_tool_use.sse");
const GEMINI_SSE: &str = include_str!("../tests/fixtures/gemini/stream_text.sse");

/// Best of 5 runs of `iterations`, in µs per iteration.
fn measure(iterations: u32, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..iterations {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations));
    }
    best
}

fn report(what: &str, micros: f64, budget: f64) {
    let verdict = if micros <= budget { "within" } else { "OVER" };
    println!("{what}: {micros:.2} µs; budget {budget} µs: {verdict}");
}

fn main() {
    let req = ChatRequest::parse(CHAT).unwrap();
    report(
        "anthropic request body (5 turns, 1 tool)",
        measure(20_000, || {
            std::hint::black_box(anthropic_request::build(&req, "claude", true, "a").unwrap());
        }),
        20.0,
    );
    report(
        "gemini request body (5 turns, 1 tool)",
        measure(20_000, || {
            std::hint::black_box(gemini_request::build(&req, "g").unwrap());
        }),
        20.0,
    );
    report(
        "/v1/messages request parse + translation (3 turns, 1 tool)",
        measure(20_000, || {
            std::hint::black_box(MessagesRequest::parse(MESSAGES).unwrap());
        }),
        20.0,
    );

    let events = ANTHROPIC_SSE.matches("\n\n").count() as f64;
    report(
        &format!("anthropic stream event -> chunks ({events} events, SSE decoding included)"),
        measure(5_000, || {
            let mut t = AnthropicStream::new("a", 0, false);
            std::hint::black_box(translate_all(&mut t, ANTHROPIC_SSE.as_bytes()));
        }) / events,
        3.0,
    );
    let events = GEMINI_SSE.matches("\n\n").count() as f64;
    report(
        &format!("gemini stream event -> chunks ({events} events, SSE decoding included)"),
        measure(5_000, || {
            let mut t = GeminiStream::new("g", 0, "m", 1);
            std::hint::black_box(translate_all(&mut t, GEMINI_SSE.as_bytes()));
        }) / events,
        3.0,
    );

    let chunk = br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#;
    let mut out = BytesMut::with_capacity(1 << 16);
    let mut writer = EventWriter::new("m");
    report(
        "openai chunk -> messages event",
        measure(100_000, || {
            out.clear();
            writer.chunk(chunk, None, &mut out).unwrap();
            std::hint::black_box(&out);
        }),
        3.0,
    );
}
