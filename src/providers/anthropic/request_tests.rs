//! Unit tests of the Anthropic request translation (`request.rs`).

use serde_json::{json, Value};

use super::*;
use crate::providers::UpstreamKind;

fn build_json(req: Value) -> Result<(Value, bool), UpstreamError> {
    let req = ChatRequest::parse(req.to_string().as_bytes()).unwrap();
    let built = build(&req, "claude-up", req.stream, "anthropic")?;
    Ok((
        serde_json::from_slice(&built.body).unwrap(),
        built.json_mode,
    ))
}

fn refused(req: Value) -> (String, String) {
    match build_json(req) {
        Err(
            e @ UpstreamError {
                kind: UpstreamKind::Unsupported,
                ..
            },
        ) => {
            assert_eq!(e.provider, "anthropic");
            (e.param.unwrap_or_default(), e.message)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn system_multi_turn_and_defaults() {
    let (body, json_mode) = build_json(json!({
        "model": "claude", "stream": true, "temperature": 0.5, "top_p": 0.9, "stop": "END",
        "user": "u-7", "seed": 3, "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"}
        ]
    }))
    .unwrap();
    assert!(!json_mode);
    assert_eq!(
        body,
        json!({
            "model": "claude-up", "max_tokens": DEFAULT_MAX_TOKENS, "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye"}
            ],
            "temperature": 0.5, "top_p": 0.9, "stop_sequences": ["END"], "stream": true,
            "metadata": {"user_id": "u-7"}
        })
    );
}

#[test]
fn images_documents_and_cache_control() {
    let (body, _) = build_json(json!({
        "model": "claude", "max_completion_tokens": 100,
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
            ]}
        ]
    }))
    .unwrap();
    assert_eq!(body["max_tokens"], 100);
    assert_eq!(
        body["system"],
        json!([{"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}}])
    );
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "a.pdf"}
        ])
    );
}

#[test]
fn tools_round_trip_as_tool_use_and_tool_result() {
    let (body, _) = build_json(json!({
        "model": "claude",
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
        "tool_choice": "required", "parallel_tool_calls": false,
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "24C"},
            {"role": "user", "content": "Thanks"}
        ]
    }))
    .unwrap();
    assert_eq!(
        body["tools"],
        json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"location": "Rome"}}
        ]})
    );
    // Both results and the next user text merge into one user turn, results first.
    assert_eq!(
        body["messages"][2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C"},
            {"type": "text", "text": "Thanks"}
        ]})
    );
    assert_eq!(body["messages"].as_array().unwrap().len(), 3);
}

#[test]
fn named_tool_choice_and_thinking() {
    let (body, _) = build_json(json!({
        "model": "claude", "reasoning_effort": "low",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "ok", "reasoning_content": "hmm",
             "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "redacted_thinking", "data": "opaque"}]},
            {"role": "user", "content": "again"}
        ]
    }))
    .unwrap();
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "f"}));
    assert_eq!(
        body["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    assert_eq!(body["max_tokens"], 1024 + DEFAULT_MAX_TOKENS);
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "ok"}
        ])
    );
}

#[test]
fn response_format_is_a_forced_tool() {
    let (body, json_mode) = build_json(json!({
        "model": "claude",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
        "messages": [{"role": "user", "content": "give json"}]
    }))
    .unwrap();
    assert!(json_mode);
    assert_eq!(body["tools"][0]["name"], JSON_TOOL);
    assert_eq!(
        body["tools"][0]["input_schema"]["properties"]["a"]["type"],
        "integer"
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": JSON_TOOL})
    );
}

#[test]
fn what_anthropic_cannot_express_is_refused_with_its_field() {
    let base = |extra: Value| {
        let mut v = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    assert_eq!(refused(base(json!({"n": 2}))).0, "n");
    assert_eq!(refused(base(json!({"temperature": 1.5}))).0, "temperature");
    assert_eq!(refused(base(json!({"logprobs": true}))).0, "logprobs");
    assert_eq!(
        refused(base(json!({"frequency_penalty": 0.5}))).0,
        "frequency_penalty"
    );
    assert_eq!(
        refused(base(json!({"modalities": ["text", "audio"]}))).0,
        "modalities"
    );
    assert_eq!(refused(base(json!({"x_vendor": 1}))).0, "x_vendor");
    assert_eq!(
        refused(base(
            json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]})
        ))
        .0,
        "tools[0].type"
    );
    let (field, detail) = refused(
        json!({"model": "claude", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "listen"},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
        ]}]}),
    );
    assert_eq!(field, "messages[0].content[1].type");
    assert!(detail.contains("input_audio"), "{detail}");
    assert_eq!(
        refused(
            json!({"model": "claude", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}}
            ]}]})
        )
        .0,
        "messages[0].content[0]"
    );
    assert_eq!(
        refused(json!({"model": "claude", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}
        ]}))
        .0,
        "messages[0].tool_calls[0].function.arguments"
    );
    // Off values of unexpressible fields are fine: leaving them out says the same.
    assert!(build_json(base(
        json!({"n": 1, "logprobs": false, "presence_penalty": 0})
    ))
    .is_ok());
}

mod round_trip {
    //! OpenAI → Anthropic (this adapter) → OpenAI (the `/v1/messages` front end) keeps
    //! every field both formats can express.

    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::*;
    use crate::api::anthropic::to_openai;
    use crate::api::openai::RawObject;

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 ,.!?é\"\\\\]{1,24}"
    }

    fn args() -> impl Strategy<Value = String> {
        (text(), any::<i32>()).prop_map(|(s, n)| json!({"q": s, "n": n}).to_string())
    }

    fn user() -> impl Strategy<Value = Value> {
        prop_oneof![
            text().prop_map(|t| json!({"role": "user", "content": t})),
            (text(), "[A-Za-z0-9+/]{4,16}").prop_map(|(t, b64)| json!({"role": "user", "content": [
                {"type": "text", "text": t},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}")}}
            ]})),
        ]
    }

    /// An assistant turn with text, or with tool calls followed by their results.
    fn assistant() -> impl Strategy<Value = Vec<Value>> {
        prop_oneof![
            text().prop_map(|t| vec![json!({"role": "assistant", "content": t})]),
            (proptest::collection::vec(("[a-z_]{1,10}", args(), text()), 1..3)).prop_map(|calls| {
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(i, (name, args, _))| json!({"id": format!("toolu_{i}"), "type": "function", "function": {"name": name, "arguments": args}}))
                    .collect();
                let mut out = vec![json!({"role": "assistant", "tool_calls": tool_calls})];
                for (i, (_, _, result)) in calls.iter().enumerate() {
                    out.push(json!({"role": "tool", "tool_call_id": format!("toolu_{i}"), "content": result}));
                }
                out
            }),
        ]
    }

    fn request() -> impl Strategy<Value = Value> {
        (
            proptest::option::of(text()),
            proptest::collection::vec((user(), assistant()), 1..4),
            user(),
            (
                proptest::option::of(0.0f64..=1.0),
                proptest::option::of(0.0f64..=1.0),
                proptest::option::of(1u64..8192),
                proptest::option::of(proptest::collection::vec(text(), 1..3)),
                proptest::option::of(text()),
                any::<bool>(),
            ),
            proptest::option::of((
                proptest::collection::vec(("[a-z_]{1,10}", text()), 1..3),
                prop_oneof![Just("auto"), Just("none"), Just("required"), Just("named")],
                any::<bool>(),
            )),
        )
            .prop_map(|(system, turns, last, (temp, top_p, max, stop, user_id, stream), tools)| {
                let mut messages = Vec::new();
                if let Some(s) = system {
                    messages.push(json!({"role": "system", "content": s}));
                }
                for (u, a) in turns {
                    messages.push(u);
                    messages.extend(a);
                }
                messages.push(last);
                let mut req = Map::new();
                req.insert("model".into(), json!("claude-up"));
                req.insert("messages".into(), Value::Array(messages));
                req.insert("max_tokens".into(), json!(max.unwrap_or(DEFAULT_MAX_TOKENS)));
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        req.insert(k.into(), v);
                    }
                };
                put("temperature", temp.map(Value::from));
                put("top_p", top_p.map(Value::from));
                put("stop", stop.map(Value::from));
                put("user", user_id.map(Value::from));
                put("stream", stream.then_some(Value::Bool(true)));
                if let Some((decls, choice, parallel)) = tools {
                    let list: Vec<Value> = decls
                        .iter()
                        .map(|(name, desc)| json!({"type": "function", "function": {"name": name, "description": desc, "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}))
                        .collect();
                    let choice = match choice {
                        "named" => json!({"type": "function", "function": {"name": decls[0].0}}),
                        other => json!(other),
                    };
                    put("tools", Some(Value::Array(list)));
                    put("tool_choice", Some(choice.clone()));
                    if !parallel && choice != json!("none") {
                        put("parallel_tool_calls", Some(Value::Bool(false)));
                    }
                }
                Value::Object(req)
            })
    }

    /// Removes differences that say the same thing: a null `content` and an absent one.
    fn normalise(mut v: Value) -> Value {
        for m in v["messages"].as_array_mut().into_iter().flatten() {
            if m.get("content") == Some(&Value::Null) {
                m.as_object_mut().map(|o| o.remove("content"));
            }
        }
        v
    }

    proptest! {
        #[test]
        fn openai_to_anthropic_to_openai_keeps_what_both_express(req in request()) {
            let parsed = ChatRequest::parse(req.to_string().as_bytes()).unwrap();
            let built = build(&parsed, "claude-up", parsed.stream, "anthropic").unwrap();
            let anthropic = RawObject::parse(&built.body).unwrap();
            let (back, only) = to_openai(&anthropic).unwrap();
            prop_assert!(only.is_none());
            let mut body = Vec::new();
            back.fields.write_with(&mut body, &back.model, &[]);
            let back: Value = serde_json::from_slice(&body).unwrap();
            // Compare against the request as parsed from its text, as `back` was.
            let sent: Value = serde_json::from_str(&req.to_string()).unwrap();
            prop_assert_eq!(normalise(back), normalise(sent));
        }
    }
}

/// Anthropic refuses `temperature` and `top_k` beside thinking, and `top_p` below 0.95:
/// a request that thinks (by `reasoning_effort` or its own `thinking`) is sent without
/// them; one that does not keeps them.
#[test]
fn sampling_fields_anthropic_refuses_beside_thinking_are_left_out() {
    let sampled = |extra: Value| {
        let mut req = json!({"model": "claude", "temperature": 0.2, "top_k": 5,
                             "messages": [{"role": "user", "content": "Hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        let (body, _) = build_json(req).unwrap();
        let kept = ["temperature", "top_p", "top_k"].map(|f| body.get(f).cloned());
        (kept, body.get("thinking").is_some())
    };
    let (t, p, k) = (Some(json!(0.2)), Some(json!(0.9)), Some(json!(5)));
    // Not thinking: everything as the client wrote it.
    assert_eq!(
        sampled(json!({"top_p": 0.9})),
        ([t.clone(), p.clone(), k.clone()], false)
    );
    let disabled = json!({"top_p": 0.9, "thinking": {"type": "disabled"}});
    assert_eq!(sampled(disabled), ([t, p, k], true));
    for on in [
        json!({"reasoning_effort": "high"}),
        json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}),
        json!({"thinking": {"type": "adaptive"}}),
    ] {
        let mut low = on.clone();
        low["top_p"] = json!(0.9);
        assert_eq!(sampled(low), ([None, None, None], true), "{on}");
        let mut high = on.clone();
        high["top_p"] = json!(0.95);
        assert_eq!(
            sampled(high),
            ([None, Some(json!(0.95)), None], true),
            "{on}"
        );
    }
    // `minimal` turns thinking off: nothing is dropped.
    let minimal = json!({"reasoning_effort": "minimal"});
    assert_eq!(sampled(minimal).0[0], Some(json!(0.2)));
}
