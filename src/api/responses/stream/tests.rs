//! Unit tests of the Responses stream writer: chat chunks to Responses events.

use super::*;

fn echo() -> Arc<Echo> {
    let req =
        super::super::ResponsesRequest::parse(br#"{"model":"m","input":"hi"}"#, None).unwrap();
    req.echo
}

/// The events of a transcript: (event name, data).
fn events(out: &BytesMut) -> Vec<(String, serde_json::Value)> {
    let text = std::str::from_utf8(out).unwrap();
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (event, data) = f.split_once('\n').unwrap();
            let name = event.strip_prefix("event: ").unwrap().to_string();
            let data: serde_json::Value =
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect()
}

fn run(chunks: &[&str], usage: Option<Usage>) -> (Vec<(String, serde_json::Value)>, StreamWriter) {
    let mut w = StreamWriter::new(
        "resp_1".into(),
        "m",
        echo(),
        Some("[{\"role\":\"user\",\"content\":\"hi\"}]".into()),
    );
    let mut out = BytesMut::new();
    for (i, c) in chunks.iter().enumerate() {
        let u = if i + 1 == chunks.len() { usage } else { None };
        w.chunk(c.as_bytes(), u, &mut out).unwrap();
    }
    w.finish(&mut out);
    (events(&out), w)
}

#[test]
fn text_stream_has_the_documented_sequence() {
    let (ev, mut w) = run(
        &[
            r#"{"id":"c","model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        ],
        Some(Usage {
            input: 3,
            output: 2,
            ..Usage::default()
        }),
    );
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (_, data)) in ev.iter().enumerate() {
        assert_eq!(data["sequence_number"], i as u64);
    }
    assert_eq!(ev[0].1["response"]["model"], "up");
    assert_eq!(ev[0].1["response"]["status"], "in_progress");
    assert_eq!(ev[6].1["text"], "Hello");
    let done = &ev[9].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["usage"]["input_tokens"], 3);
    assert_eq!(done["usage"]["total_tokens"], 5);
    let finished = w.take_finished().unwrap();
    let items: serde_json::Value = serde_json::from_str(&finished.items).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 2);
    assert_eq!(items[1]["type"], "message");
}

#[test]
fn tool_calls_and_reasoning_become_items() {
    let (ev, _) = run(
        &[
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"plan"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        ],
        None,
    );
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(ev[11].1["arguments"], "{\"a\":1}");
    assert_eq!(ev[11].1["name"], "f");
    let out = &ev[17].1["response"]["output"];
    assert_eq!(out[1]["type"], "function_call");
    assert_eq!(out[1]["call_id"], "call_1");
    assert_eq!(out[1]["status"], "completed");
    assert_eq!(out[2]["call_id"], "call_2");
}

#[test]
fn length_is_incomplete_and_a_failure_is_response_failed() {
    let (ev, _) = run(
        &[r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"length"}]}"#],
        None,
    );
    let last = &ev.last().unwrap().1;
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );

    let mut w = StreamWriter::new("resp_2".into(), "m", echo(), None);
    let mut out = BytesMut::new();
    w.chunk(
        br#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#,
        None,
        &mut out,
    )
    .unwrap();
    w.fail("provider `p` sent a malformed reply", &mut out);
    w.finish(&mut out);
    let ev = events(&out);
    let last = &ev.last().unwrap().1;
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert!(w.take_finished().is_none());
}

#[test]
fn a_namespaced_call_streams_with_its_namespace() {
    let req = super::super::ResponsesRequest::parse(
        br#"{"model":"m","input":"hi","tools":[{"type":"namespace","name":"agents","description":"d","tools":[{"type":"function","name":"close_agent"}]}]}"#,
        None,
    )
    .unwrap();
    let mut w = StreamWriter::new("resp_1".into(), "m", req.echo, None);
    let mut out = BytesMut::new();
    w.chunk(
        br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"close_agent","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        None,
        &mut out,
    )
    .unwrap();
    w.finish(&mut out);
    let ev = events(&out);
    let added = ev
        .iter()
        .find(|(n, _)| n == "response.output_item.added")
        .unwrap();
    assert_eq!(added.1["item"]["namespace"], "agents");
    assert_eq!(added.1["item"]["name"], "close_agent");
    let done = &ev.last().unwrap().1["response"]["output"][0];
    assert_eq!(done["namespace"], "agents");
}

#[test]
fn delta_events_are_the_json_of_their_fields_in_order() {
    let mut out = BytesMut::new();
    Delta {
        kind: "response.output_text.delta",
        sequence_number: 12,
        item_id: "msg_1",
        output_index: 3,
        content_index: Some(0),
        summary_index: None,
        delta: "a \"quoted\"\nline é \u{1}",
        logprobs: true,
    }
    .write(&mut out);
    Delta {
        kind: "response.reasoning_summary_text.delta",
        sequence_number: 0,
        item_id: "rs_1",
        output_index: 0,
        content_index: None,
        summary_index: Some(0),
        delta: "",
        logprobs: false,
    }
    .write(&mut out);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "event: response.output_text.delta\n\
         data: {\"type\":\"response.output_text.delta\",\"sequence_number\":12,\"item_id\":\"msg_1\",\
         \"output_index\":3,\"content_index\":0,\"delta\":\"a \\\"quoted\\\"\\nline é \\u0001\",\"logprobs\":[]}\n\n\
         event: response.reasoning_summary_text.delta\n\
         data: {\"type\":\"response.reasoning_summary_text.delta\",\"sequence_number\":0,\"item_id\":\"rs_1\",\
         \"output_index\":0,\"summary_index\":0,\"delta\":\"\"}\n\n"
    );
    let ev = events(&out);
    assert_eq!(ev[0].1["delta"], "a \"quoted\"\nline é \u{1}");
}

/// What `crate::api::sse::frame` writes for `data` through serde.
fn serde_frame(kind: &str, data: &impl Serialize) -> String {
    let mut out = BytesMut::new();
    crate::api::sse::frame(&mut out, kind, data);
    String::from_utf8(out.to_vec()).unwrap()
}

fn written(write: impl FnOnce(&mut BytesMut)) -> String {
    let mut out = BytesMut::new();
    write(&mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

mod events_by_hand {
    use super::*;
    use proptest::prelude::*;

    use crate::api::responses::write::tests::text;

    const DELTAS: &[&str] = &[
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_summary_text.delta",
        "response.function_call_arguments.delta",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Deltas written through one cached head, as the writer does, each as serde
        /// writes it alone.
        #[test]
        fn deltas_are_written_as_serde_writes_them(
            deltas in proptest::collection::vec((
                0..DELTAS.len(),
                any::<u64>(),
                prop_oneof![Just("msg_1".to_string()), text()],
                0usize..3,
                proptest::option::of(0u32..3),
                proptest::option::of(0u32..2),
                text(),
                any::<bool>(),
            ), 1..8),
        ) {
            let mut head = DeltaHead::default();
            let mut head_id = String::new();
            for (kind, seq, item_id, output_index, content_index, summary_index, delta, logprobs) in &deltas {
                let d = Delta {
                    kind: DELTAS[*kind],
                    sequence_number: *seq,
                    item_id,
                    output_index: *output_index,
                    content_index: *content_index,
                    summary_index: *summary_index,
                    delta,
                    logprobs: *logprobs,
                };
                // The head's item id follows from the output index in a stream; here
                // each delta with another id gets its own head.
                if *item_id != head_id {
                    head = DeltaHead::default();
                    head_id = item_id.clone();
                }
                let by_hand = written(|out| StreamWriter::write_delta(&mut head, &d, out));
                prop_assert_eq!(&by_hand, &serde_frame(d.kind, &d));
                prop_assert_eq!(&by_hand, &written(|out| d.write(out)));
            }
        }

        #[test]
        fn part_events_are_written_as_serde_writes_them(
            (kind, seq, item_id, output_index) in ("[a-z._]{1,20}", any::<u64>(), text(), any::<usize>()),
            (content_index, summary_index) in (proptest::option::of(any::<usize>()), proptest::option::of(any::<u32>())),
            (t, refusal, logprobs) in (proptest::option::of(text()), proptest::option::of(text()), any::<bool>()),
            part in proptest::option::of((0u8..3, text())),
        ) {
            let kind: &'static str = Box::leak(kind.into_boxed_str());
            let summary;
            let content;
            let part = match part {
                Some((0, t)) => {
                    summary = SummaryText { kind: "summary_text", text: t };
                    Some(PartRef::Summary(&summary))
                }
                Some((1, t)) => {
                    content = OutputContent::text(t);
                    Some(PartRef::Content(&content))
                }
                Some((_, refusal)) => {
                    content = OutputContent::Refusal { refusal };
                    Some(PartRef::Content(&content))
                }
                None => None,
            };
            let e = PartEvent {
                kind,
                sequence_number: seq,
                item_id: &item_id,
                output_index,
                content_index,
                summary_index,
                text: t.as_deref(),
                refusal: refusal.as_deref(),
                logprobs: logprobs.then_some([]),
                part,
            };
            prop_assert_eq!(written(|out| e.write(out)), serde_frame(kind, &e));
        }

        #[test]
        fn item_and_argument_events_are_written_as_serde_writes_them(
            (seq, output_index) in (any::<u64>(), any::<usize>()),
            (id, call_id, name, arguments) in (text(), text(), text(), text()),
            namespace in proptest::option::of(text()),
        ) {
            let item = OutputItem::FunctionCall {
                id: id.clone(),
                call_id,
                name: name.clone(),
                arguments: arguments.clone(),
                status: "completed",
                namespace,
            };
            let e = ItemEvent {
                kind: "response.output_item.done",
                sequence_number: seq,
                output_index,
                item: &item,
            };
            prop_assert_eq!(written(|out| e.write(out)), serde_frame(e.kind, &e));
            let a = ArgumentsDone {
                kind: "response.function_call_arguments.done",
                sequence_number: seq,
                item_id: &id,
                output_index,
                name: &name,
                arguments: &arguments,
            };
            prop_assert_eq!(written(|out| a.write(out)), serde_frame(a.kind, &a));
        }
    }

    #[test]
    fn response_events_are_written_as_serde_writes_them() {
        let (ev, w) = run(
            &[
                r#"{"choices":[{"index":0,"delta":{"content":"a \"b\""}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"c"},"finish_reason":"length"}]}"#,
            ],
            Some(Usage {
                input: 3,
                output: 2,
                ..Usage::default()
            }),
        );
        assert_eq!(ev.last().unwrap().0, "response.incomplete");
        for status in [Status::InProgress, Status::Incomplete("max_output_tokens")] {
            let e = ResponseEvent {
                kind: "response.incomplete",
                sequence_number: 7,
                response: w.response(status, None, None),
            };
            let mut out = BytesMut::new();
            let mut fixed = Fixed::default();
            let at = e.write(&mut out, &mut fixed);
            let text = String::from_utf8(out.to_vec()).unwrap();
            assert_eq!(text, serde_frame(e.kind, &e));
            assert_eq!(
                &text[at],
                serde_json::to_string(&e.response).unwrap().as_str()
            );
            // Again, with the parts fixed by the first copied.
            let mut again = BytesMut::new();
            e.write(&mut again, &mut fixed);
            assert_eq!(again, out);
        }
    }
}

/// A usage-only chunk passed as one (not parsed again once the stream has started)
/// writes the same events as the same chunk read in full, first or last in the stream.
#[test]
fn a_usage_only_chunk_writes_what_the_full_read_writes() {
    let usage = Usage {
        input: 3,
        output: 2,
        ..Usage::default()
    };
    let role = r#"{"id":"c","model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
    let text =
        r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#;
    let last = r#"{"id":"c","model":"up2","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    for chunks in [vec![role, text, last], vec![last], vec![last, role, text]] {
        let write = |usage_only: bool| {
            let mut w = StreamWriter::new("resp_1".into(), "m", echo(), None);
            let mut out = BytesMut::new();
            for c in &chunks {
                if *c == last && usage_only {
                    w.usage_chunk(c.as_bytes(), usage, &mut out).unwrap();
                } else {
                    let u = (*c == last).then_some(usage);
                    w.chunk(c.as_bytes(), u, &mut out).unwrap();
                }
            }
            w.finish(&mut out);
            assert_eq!(w.usage(), Some(usage));
            crate::api::responses::golden::normalised(std::str::from_utf8(&out).unwrap())
        };
        assert_eq!(write(true), write(false));
    }
}
