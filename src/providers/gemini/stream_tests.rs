//! Unit tests of the Gemini stream translation (`stream.rs`).

use proptest::prelude::*;

use crate::providers::UpstreamKind;
use serde_json::{json, Value};

use super::super::response::parse_reply;
use super::*;
use crate::providers::http::translate_all;
use crate::providers::sse::SseDecoder;

const TEXT: &str = include_str!("../../../tests/fixtures/gemini/stream_text.sse");
const CALLS: &str = include_str!("../../../tests/fixtures/gemini/stream_function_call.sse");
const NO_USAGE: &str = include_str!("../../../tests/fixtures/gemini/stream_no_usage.sse");

fn run(transcript: &str) -> (Vec<Value>, Vec<Chunk>, Option<UpstreamError>) {
    let mut t = GeminiStream::new("gemini", 5, "gemini-up", 0xabc);
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
fn text_stream_with_usage_at_the_end() {
    let (values, chunks, err) = run(TEXT);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(values[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(values[0]["id"], "fixtureStream01");
    assert_eq!(values[0]["model"], "gemini-2.5-flash");
    assert_eq!(text_of(&values), "Hello! This is a recorded stream.");
    let last = chunks.last().unwrap();
    assert!(last.usage_only);
    let u = last.usage.unwrap();
    assert_eq!((u.input, u.output, u.reasoning), (7, 8, 12));
    assert_eq!(
        values[values.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
}

#[test]
fn function_calls_arrive_whole_with_signatures_in_ids() {
    let (values, _, err) = run(CALLS);
    assert!(err.is_none());
    let calls: Vec<&Value> = values
        .iter()
        .flat_map(|v| {
            v["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[1]["index"], 1);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "Paris", "unit": "celsius"}));
    let id = calls[0]["id"].as_str().unwrap();
    assert_eq!(
        super::super::signature::decode(id).as_deref(),
        Some("CiQBVKhc7ntRp3fixtureSig+/A==")
    );
    assert!(super::super::signature::decode(calls[1]["id"].as_str().unwrap()).is_none());
    assert!(values
        .iter()
        .any(|v| v["choices"][0]["finish_reason"] == "tool_calls"));
}

#[test]
fn usage_absent_and_cut_streams() {
    let (values, chunks, err) = run(NO_USAGE);
    assert!(err.is_none());
    assert_eq!(text_of(&values), "Hello there.");
    assert!(chunks.iter().all(|c| c.usage.is_none()));
    let cut = &TEXT[..TEXT.rfind("data:").unwrap()];
    let (_, _, err) = run(cut);
    assert!(matches!(err, Some(ref e) if e.kind == UpstreamKind::Protocol));
}

#[test]
fn each_event_s_counts_ride_on_its_last_chunk() {
    use crate::api::usage::Buckets;
    let cut = &TEXT[..TEXT.rfind("data:").unwrap()];
    let (_, chunks, err) = run(cut);
    assert!(err.is_some());
    let running = chunks.iter().rev().find_map(|c| c.usage).unwrap();
    assert!(!chunks.last().unwrap().usage_only);
    assert_eq!(running.input, 7);
    assert_eq!(
        running.estimated,
        Buckets::OUTPUT | Buckets::REASONING,
        "only promptTokenCount so far"
    );
    let thoughts = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hm\", \"thought\": true}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 7,\"thoughtsTokenCount\": 888}}\n\n";
    let (_, chunks, _) = run(thoughts);
    let running = chunks.iter().rev().find_map(|c| c.usage).unwrap();
    assert_eq!((running.input, running.reasoning), (7, 888));
    assert_eq!(running.estimated, Buckets::OUTPUT);
}

#[test]
fn a_blocked_prompt_is_an_error() {
    let blocked = format!(
        "data: {}\n\n",
        include_str!("../../../tests/fixtures/gemini/reply_blocked_prompt.json").replace('\n', "")
    );
    let (_, _, err) = run(&blocked);
    assert!(
        matches!(err, Some(ref e) if e.status == Some(400) && e.code.as_deref() == Some("content_filter"))
    );
}

fn reply(file: &str) -> Result<(Value, Option<crate::api::Usage>), UpstreamError> {
    let r = parse_reply(
        "gemini",
        file.as_bytes(),
        5,
        "gemini-up",
        1,
        Default::default(),
    )?;
    Ok((serde_json::from_slice(&r.body).unwrap(), r.usage))
}

#[test]
fn replies_become_chat_completions() {
    let (v, usage) = reply(include_str!(
        "../../../tests/fixtures/gemini/reply_text.json"
    ))
    .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello! This is a recorded reply."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["model"], "gemini-2.5-flash");
    let u = usage.unwrap();
    assert_eq!(
        (u.input, u.cached_input, u.output, u.reasoning),
        (52, 2048, 9, 40)
    );

    let (v, _) = reply(include_str!(
        "../../../tests/fixtures/gemini/reply_function_call.json"
    ))
    .unwrap();
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "Let me check the weather.");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    let (v, _) = reply(include_str!(
        "../../../tests/fixtures/gemini/reply_thoughts.json"
    ))
    .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "Multiplying six by seven."
    );
    assert_eq!(v["choices"][0]["message"]["content"], "42");
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    for blocked in [
        include_str!("../../../tests/fixtures/gemini/reply_blocked_prompt.json"),
        include_str!("../../../tests/fixtures/gemini/reply_blocked_candidate.json"),
    ] {
        let e = reply(blocked).unwrap_err();
        assert!(!e.is_retryable());
        assert_eq!(e.to_api_error().status(), http::StatusCode::BAD_REQUEST);
    }
}

fn run_split(bytes: &[u8], cuts: &[usize]) -> Vec<String> {
    let mut cuts = cuts.to_vec();
    cuts.sort_unstable();
    let mut decoder = SseDecoder::new();
    let mut t = GeminiStream::new("gemini", 1, "m", 2);
    let mut events = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        decoder.push(&bytes[start..cut], &mut events);
        start = cut;
    }
    let mut out = Vec::new();
    for e in events {
        t.event(e, &mut out).unwrap();
    }
    t.end(&mut out).unwrap();
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
        let transcript = [TEXT, CALLS, NO_USAGE][which].as_bytes();
        let cuts: Vec<usize> = cuts.into_iter().map(|c| c % (transcript.len() + 1)).collect();
        prop_assert_eq!(run_split(transcript, &cuts), run_split(transcript, &[]));
    }
}
