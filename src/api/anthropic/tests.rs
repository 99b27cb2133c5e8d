//! Unit tests of the Messages front end: request translation to chat and back.

use bytes::BytesMut;
use serde_json::{json, Value};

use super::stream::EventWriter;
use super::*;
use crate::api::Usage;

fn openai_of(body: Value) -> Result<Value, ApiError> {
    let fields = RawObject::parse(body.to_string().as_bytes())?;
    let (openai, only) = to_openai(&fields)?;
    assert_eq!(only, None);
    let mut body = Vec::new();
    openai.fields.write_with(&mut body, &openai.model, &[]);
    Ok(serde_json::from_slice(&body).unwrap())
}

fn native_only(body: Value) -> String {
    let fields = RawObject::parse(body.to_string().as_bytes()).unwrap();
    to_openai(&fields)
        .unwrap()
        .1
        .expect("a native-only field")
        .field
}

#[test]
fn messages_request_becomes_an_openai_chat_request() {
    let v = openai_of(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": true,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "temperature": 0.3, "top_k": 5, "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"}, "service_tier": "auto",
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}, "title": "a.pdf"}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Look at it.", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C", "is_error": false},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ]
    }))
    .unwrap();
    assert_eq!(
        v,
        json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"}}
                ]},
                {"role": "assistant", "content": "Checking.",
                 "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}],
                 "reasoning_content": "Look at it.",
                 "thinking_blocks": [{"type": "thinking", "thinking": "Look at it.", "signature": "sig"}]},
                {"role": "tool", "content": "18C", "tool_call_id": "toolu_1"},
                {"role": "user", "content": "And tomorrow?"}
            ],
            "max_tokens": 1024, "stream": true, "temperature": 0.3, "top_k": 5, "stop": ["END"],
            "user": "u-1",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "parallel_tool_calls": false, "reasoning_effort": "medium"
        })
    );
}

#[test]
fn what_only_anthropic_takes_is_noted_and_malformed_input_is_a_400() {
    let base = |extra: Value| {
        let mut v = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    assert_eq!(native_only(base(json!({"mcp_servers": []}))), "mcp_servers");
    assert_eq!(
        native_only(base(
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})
        )),
        "tools[0].type"
    );
    assert_eq!(
        native_only(
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}]}
            ]}]})
        ),
        "messages[0].content[0].content[0]"
    );
    let param = |body: Value| match openai_of(body) {
        Err(ApiError::InvalidRequest { param, .. }) => param.unwrap_or_default(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        param(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})),
        "max_tokens"
    );
    assert_eq!(
        param(
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "tool", "content": "hi"}]})
        ),
        "messages[0].role"
    );
    assert!(MessagesRequest::parse(br#"{"model": 3}"#).is_err());
}

#[test]
fn replies_become_messages() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.", "reasoning_content": "hmm",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]
        }}]
    });
    let usage = Usage {
        input: 10,
        cached_input: 5,
        cache_write: 0,
        cache_write_1h: 0,
        output: 7,
        reasoning: 3,
        estimated: Default::default(),
    };
    let out: Value = serde_json::from_slice(
        &reply::from_openai(body.to_string().as_bytes(), Some(usage)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "gpt-4o-mini",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": ""},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 5}
        })
    );
    assert_eq!(reply::stop_reason("length"), "max_tokens");
    assert_eq!(reply::stop_reason("content_filter"), "refusal");
    assert_eq!(
        reply::tool_input("not json").get(),
        r#"{"arguments":"not json"}"#
    );
}

fn events(out: &BytesMut) -> Vec<(String, Value)> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            (
                name.strip_prefix("event: ").unwrap().to_string(),
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn chunks_become_the_messages_event_sequence() {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    };
    let mut w = EventWriter::new("claude-alias");
    let mut out = BytesMut::new();
    for data in [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"reasoning_content": "think"}), Value::Null),
        chunk(json!({"content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
    ] {
        w.chunk(data.as_bytes(), None, &mut out).unwrap();
    }
    let usage_chunk = json!({"id": "chatcmpl-9", "choices": [], "usage": {}}).to_string();
    let usage = Usage {
        input: 20,
        output: 9,
        ..Usage::default()
    };
    w.chunk(usage_chunk.as_bytes(), Some(usage), &mut out)
        .unwrap();
    w.finish(&mut out, None);
    let ev = events(&out);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[0].1["message"]["id"], "msg_9");
    assert_eq!(ev[0].1["message"]["model"], "gpt-x");
    assert_eq!(ev[1].1["content_block"]["type"], "thinking");
    assert_eq!(
        ev[2].1["delta"],
        json!({"type": "thinking_delta", "thinking": "think"})
    );
    assert_eq!(
        ev[5].1["delta"],
        json!({"type": "text_delta", "text": "Hel"})
    );
    assert_eq!(
        ev[8].1["content_block"],
        json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {}})
    );
    assert_eq!(ev[9].1["delta"]["partial_json"], "{\"a\":");
    assert_eq!(ev[9].1["index"], 2);
    assert_eq!(ev[15].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(ev[15].1["usage"]["input_tokens"], 20);
    assert_eq!(ev[15].1["usage"]["output_tokens"], 9);
}

#[test]
fn interleaved_tool_arguments_are_an_error() {
    let mut w = EventWriter::new("m");
    let mut out = BytesMut::new();
    let call = |i: u32, id: Option<&str>, args: &str| {
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "id": id, "function": {"name": "f", "arguments": args}}]}}]})
            .to_string()
    };
    w.chunk(call(0, Some("a"), "{").as_bytes(), None, &mut out)
        .unwrap();
    w.chunk(call(1, Some("b"), "{").as_bytes(), None, &mut out)
        .unwrap();
    assert!(w
        .chunk(call(0, None, "}").as_bytes(), None, &mut out)
        .is_err());
}

#[test]
fn issue_14_message_ids_are_msg_ids() {
    use super::reply::message_id;
    assert_eq!(message_id("chatcmpl-AbC123"), "msg_AbC123");
    assert_eq!(
        message_id("msg_01XFDUDYJgAACzvnptvVoYEL"),
        "msg_01XFDUDYJgAACzvnptvVoYEL"
    );
    assert_eq!(message_id("gen-1712-x_y"), "msg_gen1712xy");
    let fresh = message_id("");
    assert!(fresh.starts_with("msg_") && fresh.len() == 28, "{fresh}");
    assert_ne!(fresh, message_id(""));
}

#[test]
fn system_turns_inside_messages_become_system_messages() {
    let v = openai_of(json!({
        "model": "m", "max_tokens": 64,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": [{"type": "text", "text": "Working directory: /tmp"}]},
            {"role": "system", "content": "Be brief."}
        ]
    }))
    .unwrap();
    assert_eq!(
        v["messages"],
        json!([
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": "Working directory: /tmp"},
            {"role": "system", "content": "Be brief."}
        ])
    );
    match openai_of(json!({"model": "m", "max_tokens": 64,
        "messages": [{"role": "system", "content": [{"type": "image"}]}]}))
    {
        Err(ApiError::InvalidRequest { param, .. }) => {
            assert_eq!(param.as_deref(), Some("messages[0].content[0].type"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn claude_codes_beta_fields_translate_or_are_left_out() {
    // What Claude Code 2.1 sends besides messages and tools.
    let v = openai_of(json!({
        "model": "m", "max_tokens": 32000, "stream": true,
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "tools": [{"name": "Later", "description": "d", "input_schema": {"type": "object"}, "defer_loading": true}],
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok",
                                                    "cache_control": {"type": "ephemeral"}}]}]
    }))
    .unwrap();
    assert_eq!(
        v,
        json!({"model": "m", "max_tokens": 32000, "stream": true,
               "messages": [{"role": "tool", "content": "ok", "tool_call_id": "t1"}],
               "tools": [{"type": "function", "function": {"name": "Later", "description": "d", "parameters": {"type": "object"}}}]})
    );
    let v = openai_of(json!({
        "model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "json"}],
        "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}}
    }))
    .unwrap();
    assert_eq!(
        v["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": true}})
    );
    assert!(v.get("reasoning_effort").is_none(), "{v}");
    let param = |body: Value| match MessagesRequest::parse(body.to_string().as_bytes()) {
        Err(ApiError::InvalidRequest { param: Some(p), .. }) => p,
        other => panic!("{other:?}"),
    };
    let base = |config: Value| json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "output_config": config});
    assert_eq!(
        param(base(json!({"format": {"type": "yaml"}}))),
        "output_config.format.type"
    );
    assert_eq!(
        param(base(json!({"format": {"type": "json_schema"}}))),
        "output_config.format.schema"
    );
    assert_eq!(param(base(json!([1]))), "output_config");
}
