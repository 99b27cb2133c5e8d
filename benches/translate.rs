//! Micro-benchmark: the cost of translation per call and per stream event, for the
//! Anthropic and Gemini adapters and the `/v1/messages` and `/v1/responses` front ends,
//! next to chat's own parse and framing. Budgets: a request body in <= 20 µs, a stream
//! event in <= 3 µs. Run with `cargo bench --bench translate`; a word after it
//! (`cargo bench --bench translate -- responses`) runs only the measures naming it.

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
use bazaar::api::responses::stream::StreamWriter;
use bazaar::api::responses::ResponsesRequest;
use bazaar::api::Usage;
use bazaar::billing::meter::{Billed, BodyShape};
use bazaar::providers::anthropic::{request as anthropic_request, stream::AnthropicStream};
use bazaar::providers::gemini::{request as gemini_request, stream::GeminiStream};
use bazaar::providers::http::translate_all;
use bazaar::providers::Chunk;
use bazaar::server::relay::{Framer, OpenAiFramer};
use bazaar::server::responses::{finish_billed, translate_chunk};
use bytes::{Bytes, BytesMut};

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

/// The conversation of `CHAT` as a Responses body.
const RESPONSES: &[u8] = br#"{"model":"m","max_output_tokens":512,"temperature":0.2,"stream":true,
"instructions":"You are a terse assistant that answers in one sentence.",
"tools":[{"type":"function","name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}],
"input":[{"role":"user","content":"What is the weather in Paris and in Rome today, and should I bring an umbrella?"},
{"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"location\":\"Paris\"}"},
{"type":"function_call_output","call_id":"call_1","output":"18C, light rain"},
{"role":"user","content":"And Rome?"}]}"#;

const ANTHROPIC_SSE: &str = include_str!("../tests/fixtures/anthropic/stream_tool_use.sse");
const GEMINI_SSE: &str = include_str!("../tests/fixtures/gemini/stream_text.sse");

/// `--scale=K` on the command line divides every measure's iterations by K: under
/// callgrind, where instruction counts are exact and runs are ~50× slower.
fn scaled(iterations: u32) -> u32 {
    static SCALE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let scale = SCALE.get_or_init(|| {
        std::env::args()
            .find_map(|a| a.strip_prefix("--scale=").and_then(|k| k.parse().ok()))
            .unwrap_or(1)
    });
    (iterations / scale.max(&1)).max(1)
}

/// Best of 5 runs of `iterations`, in µs per iteration.
fn measure(iterations: u32, mut f: impl FnMut()) -> f64 {
    let iterations = scaled(iterations);
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

/// Runs `measure` (µs per unit) and prints it against `budget`, unless a filter was given
/// on the command line that `what` does not contain (to profile one measure alone).
fn report(what: &str, budget: f64, measure: impl FnOnce() -> f64) {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    if filter.is_some_and(|f| !what.contains(&f)) {
        return;
    }
    let micros = measure();
    let verdict = if micros <= budget { "within" } else { "OVER" };
    println!("{what}: {micros:.2} µs; budget {budget} µs: {verdict}");
}

fn main() {
    let req = ChatRequest::parse(CHAT).unwrap();
    report("anthropic request body (5 turns, 1 tool)", 20.0, || {
        measure(20_000, || {
            std::hint::black_box(anthropic_request::build(&req, "claude", true, "a").unwrap());
        })
    });
    report("gemini request body (5 turns, 1 tool)", 20.0, || {
        measure(20_000, || {
            std::hint::black_box(gemini_request::build(&req, "g").unwrap());
        })
    });
    report(
        "/v1/messages request parse + translation (3 turns, 1 tool)",
        20.0,
        || {
            measure(20_000, || {
                std::hint::black_box(MessagesRequest::parse(MESSAGES).unwrap());
            })
        },
    );

    let events = ANTHROPIC_SSE.matches("\n\n").count() as f64;
    report(
        &format!("anthropic stream event -> chunks ({events} events, SSE decoding included)"),
        3.0,
        || {
            measure(5_000, || {
                let mut t = AnthropicStream::new("a", 0, false);
                std::hint::black_box(translate_all(&mut t, ANTHROPIC_SSE.as_bytes()));
            }) / events
        },
    );
    let events = GEMINI_SSE.matches("\n\n").count() as f64;
    report(
        &format!("gemini stream event -> chunks ({events} events, SSE decoding included)"),
        3.0,
        || {
            measure(5_000, || {
                let mut t = GeminiStream::new("g", 0, "m", 1);
                std::hint::black_box(translate_all(&mut t, GEMINI_SSE.as_bytes()));
            }) / events
        },
    );

    report("chat request parse (5 turns, 1 tool)", 20.0, || {
        measure(20_000, || {
            std::hint::black_box(ChatRequest::parse(CHAT).unwrap());
        })
    });
    report(
        "/v1/responses request parse + translation (same 5 turns, 1 tool)",
        20.0,
        || {
            measure(20_000, || {
                std::hint::black_box(ResponsesRequest::parse(RESPONSES, None).unwrap());
            })
        },
    );
    backend_bodies();
    let responses = ResponsesRequest::parse(RESPONSES, None).unwrap();
    report("/v1/responses native body (model rewritten)", 20.0, || {
        measure(20_000, || {
            std::hint::black_box(responses.native_body("up"));
        })
    });

    streams(&responses);

    let chunk = br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#;
    let mut out = BytesMut::with_capacity(1 << 16);
    let mut writer = EventWriter::new("m");
    report("openai chunk -> messages event", 3.0, || {
        measure(100_000, || {
            out.clear();
            writer.chunk(chunk, None, &mut out).unwrap();
            std::hint::black_box(&out);
        })
    });
}

/// The same conversation from the client's body to the backend's, through each front
/// end: chat's own body (`CHAT`) and the Responses body (`RESPONSES`), each parsed and
/// written for an OpenAI-compatible backend (its fields with `model` rewritten and
/// `stream_options` added, as the adapter writes a stream's body) and for Anthropic.
fn backend_bodies() {
    let options =
        serde_json::value::RawValue::from_string(r#"{"include_usage":true}"#.into()).unwrap();
    let extra = [("stream_options", &*options)];
    let mut out = Vec::with_capacity(4096);
    let mut openai = |req: &ChatRequest| {
        out.clear();
        req.fields.write_with(&mut out, "up", &extra);
        std::hint::black_box(&out);
    };
    report(
        "backend body: chat -> openai-compatible (parse + body)",
        20.0,
        || {
            measure(20_000, || {
                openai(&ChatRequest::parse(CHAT).unwrap());
            })
        },
    );
    report(
        "backend body: responses -> openai-compatible (parse + translation + body)",
        20.0,
        || {
            measure(20_000, || {
                openai(&ResponsesRequest::parse(RESPONSES, None).unwrap().chat);
            })
        },
    );
    report(
        "backend body: chat -> anthropic (parse + body)",
        20.0,
        || {
            measure(20_000, || {
                let req = ChatRequest::parse(CHAT).unwrap();
                std::hint::black_box(anthropic_request::build(&req, "claude", true, "a").unwrap());
            })
        },
    );
    report(
        "backend body: responses -> anthropic (parse + translation + body)",
        20.0,
        || {
            measure(20_000, || {
                let req = ResponsesRequest::parse(RESPONSES, None).unwrap();
                std::hint::black_box(
                    anthropic_request::build(&req.chat, "claude", true, "a").unwrap(),
                );
            })
        },
    );
}

/// A 20-chunk chat stream (role, 17 words, finish, usage) through each front end's
/// framing: chat's own (usage cost written into the last chunk), Messages' and
/// Responses' translations (each with the billed usage in its last event).
fn streams(responses: &ResponsesRequest) {
    let usage = Usage {
        input: 40,
        output: 18,
        ..Default::default()
    };
    let head = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"#;
    let mut chunks = vec![Chunk {
        data: Bytes::from(format!(
            r#"{head}"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}"#
        )),
        usage: None,
        usage_only: false,
    }];
    for i in 0..17 {
        chunks.push(Chunk {
            data: Bytes::from(format!(
                r#"{head}"delta":{{"content":" word{i}"}},"finish_reason":null}}]}}"#
            )),
            usage: None,
            usage_only: false,
        });
    }
    chunks.push(Chunk {
        data: Bytes::from(format!(r#"{head}"delta":{{}},"finish_reason":"stop"}}]}}"#)),
        usage: None,
        usage_only: false,
    });
    chunks.push(Chunk {
        data: Bytes::from(r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":40,"completion_tokens":18,"total_tokens":58}}"#),
        usage: Some(usage),
        usage_only: true,
    });
    let billed = Billed {
        usage,
        cost: Some(120_000),
    };
    let n = chunks.len() as f64;
    let mut out = BytesMut::with_capacity(1 << 16);
    report(
        &format!("chat stream, per chunk ({n} chunks, usage cost in the last)"),
        3.0,
        || {
            measure(5_000, || {
                out.clear();
                let mut framer = OpenAiFramer::new(true);
                for c in &chunks {
                    let cost = c.usage.map(|_| 120_000);
                    framer.chunk(c, cost, &mut out);
                }
                framer.end(Some(&billed), &mut out);
                std::hint::black_box(&out);
            }) / n
        },
    );
    report(
        &format!("messages stream, per chunk ({n} chunks -> events, billed usage)"),
        3.0,
        || {
            measure(5_000, || {
                out.clear();
                let mut writer = EventWriter::new("m");
                for c in &chunks {
                    writer.chunk(&c.data, c.usage, &mut out).unwrap();
                }
                writer.finish(
                    &mut out,
                    Some(billed.usage_json(None, BodyShape::Anthropic)),
                );
                std::hint::black_box(&out);
            }) / n
        },
    );
    report(
        &format!("responses stream, per chunk ({n} chunks -> events, billed usage)"),
        3.0,
        || {
            measure(5_000, || {
                out.clear();
                let mut writer =
                    StreamWriter::new("resp_1".into(), "m", responses.echo.clone(), None);
                for c in &chunks {
                    translate_chunk(&mut writer, c, &mut out).unwrap();
                }
                // As the server ends it: `response.completed` with the billed usage.
                finish_billed(&mut writer, Some(&billed), &mut out);
                std::hint::black_box(&out);
            }) / n
        },
    );
}
