//! One conformance suite that every adapter and every preset passes: plain and streamed
//! chat, tool calls both ways (streamed argument deltas reassembled), images, usage
//! present and absent, 400 / 401 / 429 with Retry-After / 500 / overloaded / a malformed
//! body / a stream cut mid-way. The mock speaks each wire format from recorded fixtures.

use bazaar::config::WireFormat;
use bazaar::providers::presets::{Preset, PRESETS};
use serde_json::{json, Value};

use crate::common::*;

const WEATHER_ARGS: &str = r#"{"location":"Paris","unit":"celsius"}"#;

/// One backend under test: a preset pointed at the mock.
struct Backend {
    preset: &'static Preset,
    mock: MockUpstream,
    gw: TestGateway,
}

impl Backend {
    async fn start(preset: &'static Preset) -> Backend {
        let mock = MockUpstream::start().await;
        let base = match preset.wire {
            WireFormat::Gemini => mock.gemini_base_url(),
            WireFormat::OpenAi if preset.quirks.azure_deployments => mock.root_url(),
            _ => mock.base_url(),
        };
        let id = preset.id;
        let toml = format!(
            r#"
            [server]
            master_key = "{MASTER}"
            [router.breaker]
            threshold = 1000
            [providers.{id}]
            preset = "{id}"
            base_url = "{base}"
            api_key = "sk-upstream-{id}"
            tier = "frontier"
            catalog = false
            [providers.{id}.timeouts]
            first_byte = "2s"
            idle = "1s"
            total = "10s"
            [[models]]
            id = "m"
            provider = "{id}"
            upstream = "up-{id}"
            [[keys]]
            name = "app"
            key = "{KEY}"
            "#
        );
        let gw = TestGateway::start(&toml).await;
        Backend { preset, mock, gw }
    }

    fn wire(&self) -> WireFormat {
        self.preset.wire
    }

    fn context(&self, scenario: &str) -> String {
        format!("{} ({}): {scenario}", self.preset.id, self.wire().as_str())
    }

    async fn chat(&self, body: Value) -> reqwest::Response {
        let mut body = body;
        body["model"] = json!("m");
        self.gw.post("/v1/chat/completions", body).await
    }

    fn last_received(&self) -> Received {
        self.mock
            .received()
            .pop()
            .expect("the mock received nothing")
    }

    /// An error reply in this backend's own wire format.
    fn error(&self, status: u16, headers: Vec<(String, String)>) -> Step {
        match self.wire() {
            WireFormat::Anthropic => Step::Fixture {
                status,
                file: match status {
                    400 => "anthropic/error_400.json",
                    401 => "anthropic/error_401.json",
                    429 => "anthropic/error_429.json",
                    529 => "anthropic/error_529.json",
                    _ => "anthropic/error_500.json",
                },
                headers,
            },
            WireFormat::Gemini => Step::Fixture {
                // Google reports a bad key as a 400 whose details say API_KEY_INVALID.
                status: if status == 401 { 400 } else { status },
                file: match status {
                    400 => "gemini/error_400.json",
                    401 => "gemini/error_401.json",
                    429 => "gemini/error_429.json",
                    503 => "gemini/error_503.json",
                    _ => "gemini/error_500.json",
                },
                headers,
            },
            WireFormat::OpenAi => Step::Raw {
                status,
                headers: headers
                    .into_iter()
                    .chain([("content-type".to_string(), "application/json".to_string())])
                    .collect(),
                body: format!(
                    r#"{{"error":{{"message":"upstream says {status}","type":"invalid_request_error","code":null,"param":null}}}}"#
                ),
            },
        }
    }

    /// A complete reply with no usage report, in this backend's wire format.
    fn reply_without_usage(&self) -> Step {
        let body = match self.wire() {
            WireFormat::Anthropic => {
                json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "up",
                "content": [{"type": "text", "text": "Hello without usage."}], "stop_reason": "end_turn", "stop_sequence": null})
            }
            WireFormat::Gemini => {
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello without usage."}]}, "finishReason": "STOP", "index": 0}]})
            }
            WireFormat::OpenAi => {
                json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello without usage."}, "finish_reason": "stop"}]})
            }
        };
        Step::Status(200, body.to_string())
    }
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}}}}])
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// Reassembles streamed text and tool calls from chunk payloads.
fn reassemble(events: &[String]) -> (String, Vec<(String, String, String)>, Option<Value>) {
    let mut text = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut usage = None;
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let v: Value = serde_json::from_str(e).unwrap();
        if !v["usage"].is_null() {
            usage = Some(v["usage"].clone());
        }
        let delta = &v["choices"][0]["delta"];
        text += delta["content"].as_str().unwrap_or("");
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = call["index"].as_u64().unwrap() as usize;
            while calls.len() <= i {
                calls.push(Default::default());
            }
            if let Some(id) = call["id"].as_str() {
                calls[i].0 = id.into();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                calls[i].1 = name.into();
            }
            calls[i].2 += call["function"]["arguments"].as_str().unwrap_or("");
        }
    }
    (text, calls, usage)
}

fn same_json(a: &str, b: &str) -> bool {
    serde_json::from_str::<Value>(a).ok() == serde_json::from_str::<Value>(b).ok()
}

/// Runs every scenario against one backend; a failure names the backend and scenario.
async fn conform(preset: &'static Preset) {
    let b = Backend::start(preset).await;
    let id = preset.id;

    // Plain chat, with usage, and the upstream request in the backend's own shape.
    let resp = b.chat(json!({"messages": user("hi")})).await;
    assert_eq!(resp.status(), 200, "{}", b.context("plain"));
    assert_eq!(
        resp.headers()["x-bazaar-backend"],
        format!("{id}/up-{id}").as_str()
    );
    let v: Value = resp.json().await.unwrap();
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(content.starts_with("Hello"), "{}: {v}", b.context("plain"));
    assert_eq!(v["object"], "chat.completion", "{}", b.context("plain"));
    assert!(
        v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0,
        "{}: {v}",
        b.context("usage present")
    );
    let got = b.last_received();
    match b.wire() {
        WireFormat::OpenAi if preset.quirks.azure_deployments => {
            assert_eq!(
                got.path,
                format!("/openai/deployments/up-{id}/chat/completions")
            );
            assert_eq!(got.query, "api-version=2024-10-21");
            assert_eq!(got.headers["api-key"], format!("sk-upstream-{id}").as_str());
        }
        WireFormat::OpenAi => {
            assert_eq!(got.path, "/v1/chat/completions", "{}", b.context("path"));
            assert_eq!(got.body["model"], format!("up-{id}"));
            assert_eq!(
                got.headers["authorization"],
                format!("Bearer sk-upstream-{id}").as_str()
            );
        }
        WireFormat::Anthropic => {
            assert_eq!(got.path, "/v1/messages");
            assert_eq!(got.body["model"], format!("up-{id}"));
            assert_eq!(got.body["max_tokens"], 4096);
            assert_eq!(
                got.headers["x-api-key"],
                format!("sk-upstream-{id}").as_str()
            );
            assert_eq!(got.headers["anthropic-version"], "2023-06-01");
            assert!(got.headers.get("authorization").is_none());
        }
        WireFormat::Gemini => {
            assert_eq!(got.path, format!("/v1beta/models/up-{id}:generateContent"));
            assert_eq!(got.body["contents"][0]["parts"][0]["text"], "hi");
            assert_eq!(
                got.headers["x-goog-api-key"],
                format!("sk-upstream-{id}").as_str()
            );
        }
    }

    // Streamed chat: text reassembles; usage reaches only a client that asked for it.
    let resp = b
        .chat(json!({"messages": user("hi"), "stream": true, "stream_options": {"include_usage": true}}))
        .await;
    assert_eq!(resp.status(), 200, "{}", b.context("stream"));
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse_events(resp).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{}",
        b.context("stream")
    );
    let (text, _, usage) = reassemble(&events);
    assert!(text.starts_with("Hello"), "{}: {text}", b.context("stream"));
    if !preset.quirks.no_stream_usage {
        assert!(usage.is_some(), "{}", b.context("stream usage"));
    }
    let got = b.last_received();
    match b.wire() {
        WireFormat::Anthropic => assert_eq!(got.body["stream"], true),
        WireFormat::Gemini => {
            assert_eq!(
                got.path,
                format!("/v1beta/models/up-{id}:streamGenerateContent")
            );
            assert_eq!(got.query, "alt=sse");
        }
        WireFormat::OpenAi => assert_eq!(
            got.body.get("stream_options").is_some(),
            !preset.quirks.no_stream_usage,
            "{}",
            b.context("stream_options")
        ),
    }
    let events = sse_events(
        b.chat(json!({"messages": user("hi"), "stream": true}))
            .await,
    )
    .await;
    let (_, _, usage) = reassemble(&events);
    assert!(usage.is_none(), "{}", b.context("usage hidden"));

    // A tool call, whole and streamed.
    let v: Value = b
        .chat(json!({"messages": user("weather?"), "tools": tools()}))
        .await
        .json()
        .await
        .unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(
        call["function"]["name"],
        "get_weather",
        "{}: {v}",
        b.context("tool call")
    );
    assert!(same_json(
        call["function"]["arguments"].as_str().unwrap(),
        WEATHER_ARGS
    ));
    assert_eq!(
        v["choices"][0]["finish_reason"],
        "tool_calls",
        "{}",
        b.context("tool call")
    );
    let events = sse_events(
        b.chat(json!({"messages": user("weather?"), "tools": tools(), "stream": true}))
            .await,
    )
    .await;
    let (_, calls, _) = reassemble(&events);
    assert_eq!(
        calls[0].1,
        "get_weather",
        "{}",
        b.context("streamed tool call")
    );
    assert!(!calls[0].0.is_empty());
    assert!(
        same_json(&calls[0].2, WEATHER_ARGS),
        "{}: {}",
        b.context("argument deltas"),
        calls[0].2
    );

    // The tool result goes back in the backend's shape.
    let history = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": WEATHER_ARGS}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
    ]);
    let resp = b.chat(json!({"messages": history, "tools": tools()})).await;
    assert_eq!(resp.status(), 200, "{}", b.context("tool result"));
    let got = b.last_received().body;
    match b.wire() {
        WireFormat::OpenAi => assert_eq!(got["messages"][2]["role"], "tool"),
        WireFormat::Anthropic => {
            assert_eq!(got["messages"][1]["content"][0]["type"], "tool_use");
            assert_eq!(
                got["messages"][1]["content"][0]["input"]["location"],
                "Paris"
            );
            assert_eq!(got["messages"][2]["content"][0]["type"], "tool_result");
            assert_eq!(got["messages"][2]["content"][0]["tool_use_id"], "call_1");
        }
        WireFormat::Gemini => {
            assert_eq!(
                got["contents"][1]["parts"][0]["functionCall"]["name"],
                "get_weather"
            );
            assert_eq!(
                got["contents"][2]["parts"][0]["functionResponse"]["name"],
                "get_weather"
            );
        }
    }

    // Images.
    let image = json!([{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    ]}]);
    let resp = b.chat(json!({"messages": image})).await;
    assert_eq!(resp.status(), 200, "{}", b.context("image"));
    let got = b.last_received().body;
    match b.wire() {
        WireFormat::OpenAi => assert_eq!(got["messages"][0]["content"][1]["type"], "image_url"),
        WireFormat::Anthropic => {
            assert_eq!(
                got["messages"][0]["content"][1]["source"]["media_type"],
                "image/png"
            )
        }
        WireFormat::Gemini => assert_eq!(
            got["contents"][0]["parts"][1]["inlineData"]["data"],
            "iVBORw0KGgo="
        ),
    }

    // Usage absent: the reply still arrives.
    b.mock.script([b.reply_without_usage()]);
    let resp = b.chat(json!({"messages": user("hi")})).await;
    assert_eq!(resp.status(), 200, "{}", b.context("usage absent"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello without usage."
    );

    // Errors: whose fault, and what the client sees.
    let before = b.mock.received().len();
    b.mock.script([b.error(400, vec![])]);
    let err = expect_error(b.chat(json!({"messages": user("hi")})).await, 400).await;
    assert!(
        !err["message"].as_str().unwrap().is_empty(),
        "{}",
        b.context("400")
    );
    assert_eq!(
        b.mock.received().len(),
        before + 1,
        "{}: a 400 is not retried",
        b.context("400")
    );
    b.mock.script([b.error(401, vec![])]);
    let err = expect_error(b.chat(json!({"messages": user("hi")})).await, 502).await;
    assert!(
        err["message"].as_str().unwrap().contains("credentials"),
        "{}: {err}",
        b.context("401")
    );
    b.mock.script([b.error(500, vec![])]);
    expect_error(b.chat(json!({"messages": user("hi")})).await, 502).await;
    let overloaded = if b.wire() == WireFormat::Anthropic {
        529
    } else {
        503
    };
    b.mock.script([b.error(overloaded, vec![])]);
    expect_error(b.chat(json!({"messages": user("hi")})).await, 503).await;
    b.mock.script([Step::Status(200, "{\"choices\": [".into())]);
    expect_error(b.chat(json!({"messages": user("hi")})).await, 502).await;

    // A stream cut mid-way ends with an error event, never a silent cut.
    b.mock.script([Step::CutAfter(2)]);
    let resp = b
        .chat(json!({"messages": user("hi"), "stream": true}))
        .await;
    assert_eq!(resp.status(), 200, "{}", b.context("cut stream"));
    let events = sse_events(resp).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].is_string(),
        "{}: {events:?}",
        b.context("cut stream")
    );

    // Rate limited with Retry-After (Gemini's arrives in the body's RetryInfo). Last: the
    // backend is held back for that long.
    let headers = match b.wire() {
        WireFormat::Gemini => vec![],
        _ => vec![("retry-after".to_string(), "7".to_string())],
    };
    b.mock.script([b.error(429, headers)]);
    let resp = b.chat(json!({"messages": user("hi")})).await;
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("7"),
        "{}",
        b.context("429")
    );
    expect_error(resp, 429).await;
}

fn preset(id: &str) -> &'static Preset {
    PRESETS.iter().find(|p| p.id == id).unwrap()
}

#[tokio::test]
async fn openai_adapter_conforms() {
    conform(preset("openai")).await;
}

#[tokio::test]
async fn azure_openai_conforms() {
    conform(preset("azure")).await;
}

#[tokio::test]
async fn anthropic_adapter_conforms() {
    conform(preset("anthropic")).await;
}

#[tokio::test]
async fn gemini_adapter_conforms() {
    conform(preset("gemini")).await;
}

#[tokio::test]
async fn every_preset_conforms() {
    for p in PRESETS
        .iter()
        .filter(|p| !["openai", "azure", "anthropic", "gemini"].contains(&p.id))
    {
        conform(p).await;
    }
}

#[tokio::test]
async fn a_field_one_backend_cannot_express_falls_through_to_one_that_can() {
    let anthropic = MockUpstream::start().await;
    let openai = MockUpstream::start().await;
    let toml = format!(
        r#"
        [providers.claude]
        kind = "anthropic"
        base_url = "{}"
        api_key = "sk-a"
        catalog = false
        [providers.oa]
        base_url = "{}"
        api_key = "sk-o"
        tier = "frontier"
        catalog = false
        [[models]]
        id = "m"
        provider = "claude"
        upstream = "claude-up"
        [[models]]
        id = "m"
        provider = "oa"
        upstream = "gpt-up"
        [router]
        policy = "cheapest"
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#,
        anthropic.base_url(),
        openai.base_url()
    );
    let gw = TestGateway::start(&toml).await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "n": 2, "messages": user("hi")}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-bazaar-backend"], "oa/gpt-up");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert!(
        anthropic.received().is_empty(),
        "nothing is sent where it cannot be expressed"
    );

    // With only the backend that cannot express it, the client learns which field and which backend.
    let only = format!(
        r#"
        [providers.claude]
        kind = "anthropic"
        base_url = "{}"
        api_key = "sk-a"
        catalog = false
        [[models]]
        id = "m"
        provider = "claude"
        upstream = "claude-up"
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#,
        anthropic.base_url()
    );
    let gw = TestGateway::start(&only).await;
    let err = expect_error(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "m", "n": 2, "messages": user("hi")}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(err["param"], "n");
    assert_eq!(err["code"], "unsupported_by_backend");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("claude") && message.contains("`n`"),
        "{message}"
    );
    let err = expect_error(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
            ]}]}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(err["param"], "messages[0].content[0].type");
}
