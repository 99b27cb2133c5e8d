//! Unit tests of the Gemini request translation (`request.rs`).

use serde_json::{json, Value};

use super::*;
use crate::providers::UpstreamKind;

fn build_json(req: Value) -> Result<Value, UpstreamError> {
    let req = ChatRequest::parse(req.to_string().as_bytes()).unwrap();
    let body = build(&req, "gemini")?;
    Ok(serde_json::from_slice(&body).unwrap())
}

fn refused(req: Value) -> String {
    match build_json(req) {
        Err(e) if e.kind == UpstreamKind::Unsupported => e.param.unwrap_or_default(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn roles_system_instruction_and_generation_config() {
    let body = build_json(json!({
        "model": "gemini-2.5-flash", "temperature": 0.2, "top_p": 0.8, "max_tokens": 50,
        "stop": ["END"], "n": 2, "seed": 9, "presence_penalty": 0.1, "user": "u",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "reasoning_effort": "low",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4A=="}}]},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"}
        ]
    }))
    .unwrap();
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Hi"}, {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4A=="}}]},
            {"role": "model", "parts": [{"text": "Hello."}]},
            {"role": "user", "parts": [{"text": "Bye"}]}
        ])
    );
    assert_eq!(
        body["generationConfig"],
        json!({
            "temperature": 0.2, "topP": 0.8, "maxOutputTokens": 50, "stopSequences": ["END"],
            "candidateCount": 2, "presencePenalty": 0.1, "seed": 9,
            "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"},
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}
        })
    );
}

#[test]
fn function_declarations_calls_and_responses() {
    let call_id = super::signature::encode("call_1", Some("c2lnbmF0dXJl"));
    let body = build_json(json!({
        "model": "gemini",
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "additionalProperties": false, "properties": {"location": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": call_id, "content": "{\"temp\": 18}"},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"}
        ]
    }))
    .unwrap();
    assert_eq!(
        body["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather", "parametersJsonSchema": {"type": "object", "additionalProperties": false, "properties": {"location": {"type": "string"}}}}]}])
    );
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    assert_eq!(
        body["contents"][1],
        json!({"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"},
            {"functionCall": {"name": "get_time", "args": {}}}
        ]})
    );
    assert_eq!(
        body["contents"][2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
            {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}}
        ]})
    );
}

#[test]
fn what_gemini_cannot_express_is_refused_with_its_field() {
    let with = |extra: Value| {
        let mut v = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    assert_eq!(refused(with(json!({"logprobs": true}))), "logprobs");
    assert_eq!(
        refused(with(json!({"parallel_tool_calls": false}))),
        "parallel_tool_calls"
    );
    assert_eq!(refused(with(json!({"x_vendor": 1}))), "x_vendor");
    assert_eq!(
        refused(
            json!({"model": "g", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]}]})
        ),
        "messages[0].content[0].image_url.url"
    );
    assert_eq!(
        refused(json!({"model": "g", "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "nobody", "content": "x"}
        ]})),
        "messages[1].tool_call_id"
    );
}
