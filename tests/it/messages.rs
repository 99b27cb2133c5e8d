//! `POST /v1/messages` end to end: an Anthropic backend gets the client's own body and
//! answers untranslated; OpenAI-compatible and Gemini backends get the translation and
//! their replies and streams come back in Anthropic's shape; errors are Anthropic-shaped.

use serde_json::{json, Value};

use crate::common::*;

/// A gateway whose model `m` is served by the mock as a provider of `kind`.
async fn setup(kind: &str) -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let base = match kind {
        "gemini" => mock.gemini_base_url(),
        _ => mock.base_url(),
    };
    let gw = one_backend(&format!("kind = \"{kind}\""), &base, "").await;
    (mock, gw)
}

/// POSTs to `/v1/messages` the way the `anthropic` SDK does.
async fn messages(gw: &TestGateway, body: Value) -> reqwest::Response {
    gw.client
        .post(gw.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn hello(stream: bool) -> Value {
    json!({"model": "m", "max_tokens": 256, "stream": stream,
           "messages": [{"role": "user", "content": "Say hello"}]})
}

/// `(event name, data)` of each SSE event.
async fn anthropic_events(resp: reqwest::Response) -> Vec<(String, Value)> {
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.into();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = d.into();
                }
            }
            (name, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

/// Text and tool-use inputs reassembled from Messages events.
fn reassemble(events: &[(String, Value)]) -> (String, Vec<(String, String)>) {
    let mut text = String::new();
    let mut tools: Vec<(String, String)> = Vec::new();
    for (name, v) in events {
        match name.as_str() {
            "content_block_start" if v["content_block"]["type"] == "tool_use" => tools.push((
                v["content_block"]["name"].as_str().unwrap().into(),
                String::new(),
            )),
            "content_block_delta" => match v["delta"]["type"].as_str().unwrap() {
                "text_delta" => text += v["delta"]["text"].as_str().unwrap(),
                "input_json_delta" => {
                    tools.last_mut().unwrap().1 += v["delta"]["partial_json"].as_str().unwrap()
                }
                _ => {}
            },
            _ => {}
        }
    }
    (text, tools)
}

fn assert_anthropic_error(v: &Value, kind: &str) {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[tokio::test]
async fn anthropic_backend_gets_the_clients_own_body() {
    let (mock, gw) = setup("anthropic").await;
    let body = json!({
        "model": "m", "max_tokens": 256, "top_k": 5,
        "system": [{"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]
    });
    let resp = messages(&gw, body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-bazaar-backend"], "up/up-model");
    let mut reply: Value = resp.json().await.unwrap();
    let recorded: Value =
        serde_json::from_str(&fixture_text("anthropic/reply_tool_use.json")).unwrap();
    // The model here has no price: the cost is unknown, never 0.
    let cost = reply["usage"].as_object_mut().unwrap().remove("cost");
    assert_eq!(cost, Some(Value::Null), "usage gains the call's cost");
    assert_eq!(
        reply, recorded,
        "the reply passes through untranslated otherwise"
    );
    let got = mock.received().pop().unwrap();
    let mut expected = body;
    expected["model"] = json!("up-model");
    assert_eq!(got.body, expected, "only the model is rewritten");
    assert_eq!(got.headers["x-api-key"], "sk-upstream");
    assert_eq!(got.headers["anthropic-beta"], "prompt-caching-2024-07-31");
    assert_eq!(got.headers["anthropic-version"], "2023-06-01");
}

#[tokio::test]
async fn anthropic_backend_stream_passes_through() {
    let (_mock, gw) = setup("anthropic").await;
    let resp = messages(&gw, hello(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // Untranslated, but for the call's cost (unknown here) added to message_delta's usage.
    assert_eq!(
        resp.text().await.unwrap(),
        fixture_text("anthropic/stream_text.sse").replace(
            r#""usage":{"output_tokens":11}"#,
            r#""usage":{"output_tokens":11,"cost":null}"#
        )
    );
}

#[tokio::test]
async fn openai_backend_reply_is_translated() {
    let (mock, gw) = setup("openai").await;
    let resp = messages(&gw, hello(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-bazaar-cost-usd"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Hello!"));
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let got = mock.received().pop().unwrap();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.body["model"], "up-model");
    assert_eq!(got.body["max_tokens"], 256);
    assert_eq!(
        got.body["messages"][0],
        json!({"role": "user", "content": "Say hello"})
    );

    // Tools: a tool_use block with its input parsed.
    let body = json!({"model": "m", "max_tokens": 100,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "weather?"}]});
    let v: Value = messages(&gw, body).await.json().await.unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    let block = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap();
    assert_eq!(block["name"], "get_weather");
    assert_eq!(
        block["input"],
        json!({"location": "Paris", "unit": "celsius"})
    );
}

#[tokio::test]
async fn openai_backend_stream_becomes_the_messages_event_sequence() {
    let (_mock, gw) = setup("openai").await;
    let resp = messages(&gw, hello(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = anthropic_events(resp).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    assert_eq!(names[1], "content_block_start");
    let (text, _) = reassemble(&events);
    assert!(text.starts_with("Hello!"), "{text}");
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(
        delta["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{delta}"
    );

    let body = json!({"model": "m", "max_tokens": 100, "stream": true,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "weather?"}]});
    let events = anthropic_events(messages(&gw, body).await).await;
    let (_, tools) = reassemble(&events);
    assert_eq!(tools[0].0, "get_weather");
    let input: Value = serde_json::from_str(&tools[0].1).unwrap();
    assert_eq!(input, json!({"location": "Paris", "unit": "celsius"}));
    assert_eq!(
        events[events.len() - 2].1["delta"]["stop_reason"],
        "tool_use"
    );
}

#[tokio::test]
async fn gemini_backend_through_messages() {
    let (mock, gw) = setup("gemini").await;
    let v: Value = messages(&gw, hello(false)).await.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Hello! This is a recorded reply.");
    assert_eq!(v["usage"]["cache_read_input_tokens"], 2048);
    let got = mock.received().pop().unwrap();
    assert_eq!(got.path, "/v1beta/models/up-model:generateContent");
    let events = anthropic_events(messages(&gw, hello(true)).await).await;
    let (text, _) = reassemble(&events);
    assert_eq!(text, "Hello! This is a recorded stream.");
}

#[tokio::test]
async fn tool_results_round_trip_to_an_openai_backend() {
    let (mock, gw) = setup("openai").await;
    let body = json!({"model": "m", "max_tokens": 100,
    "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]}
    ]});
    assert_eq!(messages(&gw, body).await.status(), 200);
    let got = mock.received().pop().unwrap().body;
    assert_eq!(
        got["messages"][1]["tool_calls"][0]["function"],
        json!({"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"})
    );
    assert_eq!(
        got["messages"][2],
        json!({"role": "tool", "content": "18C", "tool_call_id": "toolu_1"})
    );
}

#[tokio::test]
async fn errors_are_anthropic_shaped() {
    let (mock, gw) = setup("anthropic").await;
    let resp = gw
        .client
        .post(gw.url("/v1/messages"))
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_anthropic_error(&resp.json().await.unwrap(), "authentication_error");

    let resp = messages(
        &gw,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_anthropic_error(&v, "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));

    mock.script([Step::Fixture {
        status: 429,
        file: "anthropic/error_429.json",
        headers: vec![("retry-after".into(), "3".into())],
    }]);
    let resp = messages(&gw, hello(false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    assert_anthropic_error(&resp.json().await.unwrap(), "rate_limit_error");
}

#[tokio::test]
async fn overloaded_and_cut_streams() {
    let (mock, gw) = setup("anthropic").await;
    mock.script([Step::fixture(529, "anthropic/error_529.json")]);
    let resp = messages(&gw, hello(false)).await;
    assert_eq!(resp.status(), 503);
    assert_anthropic_error(&resp.json().await.unwrap(), "overloaded_error");

    // Overloaded after the first byte: the stream ends with Anthropic's error event.
    mock.script([Step::fixture(200, "anthropic/stream_overloaded.sse")]);
    let events = anthropic_events(messages(&gw, hello(true)).await).await;
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_anthropic_error(last, "overloaded_error");

    let (mock, gw) = setup("openai").await;
    mock.script([Step::CutAfter(3)]);
    let events = anthropic_events(messages(&gw, hello(true)).await).await;
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "error", "{events:?}");
    assert_anthropic_error(last, "api_error");
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));
}

#[tokio::test]
async fn what_only_anthropic_takes_goes_to_anthropic_or_is_refused() {
    let anthropic = MockUpstream::start().await;
    let openai = MockUpstream::start().await;
    let both = format!(
        r#"
        [providers.oa]
        base_url = "{}"
        api_key = "sk-o"
        tier = "frontier"
        catalog = false
        [providers.claude]
        kind = "anthropic"
        base_url = "{}"
        api_key = "sk-a"
        catalog = false
        [[models]]
        id = "m"
        provider = "oa"
        upstream = "gpt-up"
        [[models]]
        id = "m"
        provider = "claude"
        upstream = "claude-up"
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#,
        openai.base_url(),
        anthropic.base_url()
    );
    let body = json!({"model": "m", "max_tokens": 100,
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "messages": [{"role": "user", "content": "news?"}]});
    let gw = TestGateway::start(&both).await;
    let resp = messages(&gw, body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-bazaar-backend"], "claude/claude-up");
    assert!(openai.received().is_empty());

    let only_openai = format!(
        r#"
        [providers.oa]
        base_url = "{}"
        api_key = "sk-o"
        tier = "frontier"
        catalog = false
        [[models]]
        id = "m"
        provider = "oa"
        upstream = "gpt-up"
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#,
        openai.base_url()
    );
    let gw = TestGateway::start(&only_openai).await;
    let resp = messages(&gw, body).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_anthropic_error(&v, "invalid_request_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tools[0].type") && message.contains("`oa`"),
        "{message}"
    );
}

#[tokio::test]
async fn issue_14_translated_replies_carry_msg_ids() {
    for kind in ["openai", "gemini"] {
        let (_mock, gw) = setup(kind).await;
        let resp = messages(&gw, hello(false)).await;
        assert_eq!(resp.status(), 200, "{kind}");
        let body: Value = resp.json().await.unwrap();
        let id = body["id"].as_str().unwrap();
        assert!(id.starts_with("msg_") && id.len() > 4, "{kind}: {id}");
        assert!(!id.contains("chatcmpl"), "{kind}: {id}");

        let events = anthropic_events(messages(&gw, hello(true)).await).await;
        assert_eq!(events[0].0, "message_start", "{kind}");
        let id = events[0].1["message"]["id"].as_str().unwrap();
        assert!(id.starts_with("msg_") && id.len() > 4, "{kind}: {id}");
    }
}
