//! Unit tests of the Anthropic stream translation (`stream.rs`).

use proptest::prelude::*;

use crate::providers::UpstreamKind;
use serde_json::{json, Value};

use super::super::super::http::translate_all;
use super::super::super::sse::SseDecoder;
use super::super::response::{classify, parse_reply};
use super::*;
use crate::providers::http::ErrorReply;

const TEXT: &str = include_str!("../../../tests/fixtures/anthropic/stream_text.sse");
const TOOLS: &str = include_str!("../../../tests/fixtures/anthropic/stream_tool_use.sse");
const THINKING: &str = include_str!("../../../tests/fixtures/anthropic/stream_thinking.sse");
const OVERLOADED: &str = include_str!("../../../tests/fixtures/anthropic/stream_overloaded.sse");

fn run(transcript: &str) -> (Vec<Value>, Vec<Chunk>, Option<UpstreamError>) {
    let mut t = AnthropicStream::new("anthropic", 1700000000, false);
    let (chunks, err) = translate_all(&mut t, transcript.as_bytes());
    let values = chunks
        .iter()
        .map(|c| serde_json::from_slice(&c.data).unwrap())
        .collect();
    (values, chunks, err)
}

fn text_of(values: &[Value]) -> String {
    values
        .iter()
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[test]
fn text_stream_becomes_openai_chunks_with_usage_last() {
    let (values, chunks, err) = run(TEXT);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        values[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(values[0]["id"], "msg_01D4fixtureStream");
    assert_eq!(values[0]["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(values[0]["object"], "chat.completion.chunk");
    assert_eq!(text_of(&values), "Hello! This is a recorded stream.");
    let finish: Vec<_> = values
        .iter()
        .filter_map(|v| v["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["stop"]);
    let last = chunks.last().unwrap();
    assert!(last.usage_only);
    let usage = last.usage.unwrap();
    assert_eq!(
        (
            usage.input,
            usage.cached_input,
            usage.cache_write,
            usage.output
        ),
        (25, 400, 100, 11)
    );
    assert_eq!(values.last().unwrap()["usage"]["prompt_tokens"], 525);
    assert_eq!(
        values.last().unwrap()["usage"]["cache_creation_input_tokens"],
        100
    );
}

#[test]
fn usage_rides_on_chunks_as_it_is_reported() {
    use crate::api::usage::Buckets;
    // Cut after message_start: the prompt side is reported, the completion side is not.
    let cut = &TEXT[..TEXT.find("event: content_block_start").unwrap()];
    let (_, chunks, err) = run(cut);
    assert!(err.is_some());
    let running = chunks.iter().rev().find_map(|c| c.usage).unwrap();
    assert_eq!(
        (
            running.input,
            running.cached_input,
            running.cache_write,
            running.output
        ),
        (25, 400, 100, 0),
        "message_start's output_tokens is a placeholder, not a count"
    );
    assert_eq!(running.estimated, Buckets::COMPLETION);
    assert!(!chunks[0].usage_only, "it rides on the role chunk");
    // Cut after message_delta, before message_stop: the report is complete.
    let cut = &TEXT[..TEXT.find("event: message_stop").unwrap()];
    let (_, chunks, _) = run(cut);
    let complete = chunks.iter().rev().find_map(|c| c.usage).unwrap();
    assert!(complete.is_reported());
    assert_eq!(complete.output, 11);
}

#[test]
fn tool_argument_deltas_reassemble() {
    let (values, _, err) = run(TOOLS);
    assert!(err.is_none());
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for v in &values {
        for call in v["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = call["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push((
                    call["id"].as_str().unwrap().into(),
                    call["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[i].2 += call["function"]["arguments"].as_str().unwrap_or("");
        }
    }
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0, "toolu_01Tfixture");
    let args: Value = serde_json::from_str(&calls[0].2).unwrap();
    assert_eq!(args, json!({"location": "Paris", "unit": "celsius"}));
    assert_eq!(calls[1].1, "get_time");
    assert_eq!(text_of(&values), "Checking.");
    assert!(values
        .iter()
        .any(|v| v["choices"][0]["finish_reason"] == "tool_calls"));
}

#[test]
fn thinking_streams_as_reasoning_with_its_signature() {
    let (values, _, err) = run(THINKING);
    assert!(err.is_none());
    let reasoning: String = values
        .iter()
        .filter_map(|v| v["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, "Six times seven is 42.");
    assert!(values.iter().any(
        |v| v["choices"][0]["delta"]["thinking_blocks"][0]["signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("EqQB"))
    ));
    assert_eq!(text_of(&values), "42");
}

#[test]
fn error_event_ends_the_stream_as_a_retryable_error() {
    let (values, _, err) = run(OVERLOADED);
    assert_eq!(text_of(&values), "Hel");
    let err = err.unwrap();
    assert!(err.status == Some(529), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn a_cut_stream_is_an_error() {
    let cut = &TEXT[..TEXT.find("event: message_delta").unwrap()];
    let (values, _, err) = run(cut);
    assert_eq!(text_of(&values), "Hello! This is a recorded stream.");
    assert!(matches!(err, Some(ref e) if e.kind == UpstreamKind::Protocol));
}

#[test]
fn json_mode_reads_the_forced_tool_as_content() {
    let transcript: String = TOOLS
        .replace("get_weather", JSON_TOOL)
        .split_inclusive("\n\n")
        .filter(|event| !event.contains("\"index\":2"))
        .collect();
    let mut t = AnthropicStream::new("anthropic", 0, true);
    let (chunks, _) = translate_all(&mut t, transcript.as_bytes());
    let values: Vec<Value> = chunks
        .iter()
        .map(|c| serde_json::from_slice(&c.data).unwrap())
        .collect();
    let text = text_of(&values);
    assert!(
        text.starts_with("Checking.{\"location\": \"Paris\""),
        "{text}"
    );
    assert!(values
        .iter()
        .all(|v| v["choices"][0]["delta"]["tool_calls"].is_null()));
    assert!(values
        .iter()
        .any(|v| v["choices"][0]["finish_reason"] == "stop"));
}

fn reply(file: &str, json_mode: bool) -> (Value, Option<crate::api::Usage>) {
    let r = parse_reply(
        "anthropic",
        file.as_bytes(),
        7,
        json_mode,
        Default::default(),
    )
    .unwrap();
    (serde_json::from_slice(&r.body).unwrap(), r.usage)
}

#[test]
fn replies_become_chat_completions() {
    let (v, usage) = reply(
        include_str!("../../../tests/fixtures/anthropic/reply_text.json"),
        false,
    );
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello! This is a recorded reply."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = usage.unwrap();
    assert_eq!(
        (u.input, u.cached_input, u.cache_write, u.output),
        (12, 1800, 200, 9)
    );
    assert_eq!(v["usage"]["prompt_tokens"], 2012);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 1800);

    let (v, _) = reply(
        include_str!("../../../tests/fixtures/anthropic/reply_tool_use.json"),
        false,
    );
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01Wfixture");
    assert_eq!(call["type"], "function");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"location": "Paris", "unit": "celsius"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    let (v, _) = reply(
        include_str!("../../../tests/fixtures/anthropic/reply_thinking.json"),
        false,
    );
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "42");
    assert_eq!(
        m["reasoning_content"],
        "The user wants a number. 6 times 7 is 42."
    );
    assert_eq!(m["thinking_blocks"][1]["type"], "redacted_thinking");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[test]
fn errors_know_whose_fault_and_whether_to_retry() {
    let err = |status, file: &str, retry_after| {
        classify(
            "anthropic",
            ErrorReply {
                status,
                retry_after,
                body: file.as_bytes(),
            },
        )
    };
    let e = err(
        529,
        include_str!("../../../tests/fixtures/anthropic/error_529.json"),
        None,
    );
    assert!(e.is_retryable());
    assert_eq!(
        e.to_api_error().status(),
        http::StatusCode::SERVICE_UNAVAILABLE
    );
    let e = err(
        429,
        include_str!("../../../tests/fixtures/anthropic/error_429.json"),
        Some(std::time::Duration::from_secs(3)),
    );
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(3)));
    let e = err(
        400,
        include_str!("../../../tests/fixtures/anthropic/error_400.json"),
        None,
    );
    assert!(!e.is_retryable());
    assert!(e.code.as_deref() == Some("invalid_request_error"));
    let e = err(
        401,
        include_str!("../../../tests/fixtures/anthropic/error_401.json"),
        None,
    );
    assert_eq!(e.to_api_error().status(), http::StatusCode::BAD_GATEWAY);
    let e = err(502, "<html>bad gateway</html>", None);
    assert!(e.status.is_some() && e.message.starts_with("HTTP 502"));
}

/// Splits `bytes` at `cuts` and runs the pieces through decoder and translator.
fn run_split(bytes: &[u8], cuts: &[usize], json_mode: bool) -> Vec<String> {
    let mut cuts = cuts.to_vec();
    cuts.sort_unstable();
    let mut decoder = SseDecoder::new();
    let mut t = AnthropicStream::new("anthropic", 1, json_mode);
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        decoder.push(&bytes[start..cut], &mut events);
        start = cut;
    }
    for e in events {
        if t.event(e, &mut out).unwrap() {
            break;
        }
    }
    out.iter()
        .map(|c| String::from_utf8(c.data.to_vec()).unwrap())
        .collect()
}

proptest! {
    #[test]
    fn any_split_of_a_transcript_gives_the_same_chunks(
        which in 0usize..3,
        cuts in proptest::collection::vec(0usize..4000, 0..12),
    ) {
        let transcript = [TEXT, TOOLS, THINKING][which].as_bytes();
        let cuts: Vec<usize> = cuts.into_iter().map(|c| c % (transcript.len() + 1)).collect();
        prop_assert_eq!(run_split(transcript, &cuts, false), run_split(transcript, &[], false));
    }
}
