//! What every Responses feature becomes on each translated wire format, end to end: a
//! request using them all (instructions, text and image parts, a function call and its
//! output, function tools, `tool_choice`, `text.format`, sampling, `max_output_tokens`,
//! `reasoning.effort`, `metadata`, `user`) reaches an OpenAI-compatible, an Anthropic and
//! a Gemini backend in its own terms, and the reply (plain and streamed) echoes the
//! request as OpenAI's does; failures before the first byte are OpenAI-shaped errors.
//! Every call is a ledger row.

use serde_json::{json, Value};

use super::responses::{config, events, ledger_rows};
use crate::common::*;

/// A 1×1 PNG.
const PNG_DATA: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn schema() -> Value {
    json!({"type": "object", "properties": {"text": {"type": "string"}},
           "required": ["text"], "additionalProperties": false})
}

fn weather_parameters() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}},
           "required": ["city"], "additionalProperties": false})
}

/// A request using every translated feature, less what `kind`'s wire format cannot
/// express (Anthropic: a response format beside tools; Gemini: one tool call per turn).
fn every_feature(kind: &str, stream: bool) -> Value {
    let mut body = json!({
        "model": "m",
        "stream": stream,
        "instructions": "Be brief.",
        "input": [
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is in this picture, and the weather there?"},
                {"type": "input_image", "image_url": format!("data:image/png;base64,{PNG_DATA}")}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A beach. Checking."}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Nice\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp\":21}"},
            {"type": "message", "role": "user", "content": "Answer as JSON."}
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                   "strict": true, "parameters": weather_parameters()}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "text": {"format": {"type": "json_schema", "name": "answer", "strict": true, "schema": schema()}},
        "temperature": 0.25,
        "top_p": 0.5,
        "max_output_tokens": 2048,
        "reasoning": {"effort": "low"},
        "metadata": {"ticket": "7"},
        "user": "u-42"
    });
    let fields = body.as_object_mut().unwrap();
    match kind {
        "anthropic" => fields.remove("text"),
        "gemini" => fields.remove("parallel_tool_calls"),
        _ => None,
    };
    body
}

/// Asserts that the response object `v` echoes what `body` asked, as OpenAI's does.
fn assert_echoes(v: &Value, body: &Value, kind: &str) {
    assert_eq!(v["object"], "response", "{kind}: {v}");
    for field in [
        "instructions",
        "tool_choice",
        "temperature",
        "top_p",
        "max_output_tokens",
        "reasoning",
        "metadata",
        "user",
    ] {
        assert_eq!(v[field], body[field], "{kind}: {field}");
    }
    let text = body
        .get("text")
        .cloned()
        .unwrap_or(json!({"format": {"type": "text"}}));
    assert_eq!(v["text"], text, "{kind}");
    assert_eq!(
        v["parallel_tool_calls"],
        body.get("parallel_tool_calls")
            .cloned()
            .unwrap_or(json!(true)),
        "{kind}"
    );
    assert_eq!(v["tools"][0]["name"], "get_weather", "{kind}");
    assert_eq!(v["tools"][0]["parameters"], weather_parameters(), "{kind}");
}

/// Asserts that `sent`, the upstream body of `kind`'s wire format, says what
/// `every_feature` asked.
fn assert_translated(kind: &str, sent: &Value) {
    let image = format!("data:image/png;base64,{PNG_DATA}");
    match kind {
        "compatible" => {
            assert_eq!(
                sent["messages"],
                json!([
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is in this picture, and the weather there?"},
                        {"type": "image_url", "image_url": {"url": image}}]},
                    {"role": "assistant", "content": "A beach. Checking.", "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Nice\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":21}"},
                    {"role": "user", "content": "Answer as JSON."}
                ])
            );
            assert_eq!(
                sent["tools"],
                json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                        "strict": true, "parameters": weather_parameters()}}])
            );
            assert_eq!(
                sent["response_format"],
                json!({"type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": schema()}})
            );
            assert_eq!(sent["tool_choice"], "auto");
            assert_eq!(sent["parallel_tool_calls"], false);
            assert_eq!(sent["reasoning_effort"], "low");
            assert_eq!(sent["max_completion_tokens"], 2048);
            assert_eq!(
                (&sent["temperature"], &sent["top_p"]),
                (&json!(0.25), &json!(0.5))
            );
            assert_eq!(sent["user"], "u-42");
            assert!(sent.get("metadata").is_none(), "{sent}");
        }
        "anthropic" => {
            assert_eq!(sent["system"], "Be brief.");
            assert_eq!(
                sent["messages"],
                json!([
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is in this picture, and the weather there?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA}}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "A beach. Checking."},
                        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Nice"}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"temp\":21}"},
                        {"type": "text", "text": "Answer as JSON."}]}
                ])
            );
            assert_eq!(sent["tools"][0]["input_schema"], weather_parameters());
            assert_eq!(
                sent["tool_choice"],
                json!({"type": "auto", "disable_parallel_tool_use": true})
            );
            assert_eq!(
                sent["thinking"],
                json!({"type": "enabled", "budget_tokens": 1024})
            );
            assert_eq!(sent["max_tokens"], 2048);
            assert_eq!(sent["metadata"], json!({"user_id": "u-42"}));
        }
        "gemini" => {
            assert_eq!(
                sent["systemInstruction"],
                json!({"parts": [{"text": "Be brief."}]})
            );
            assert_eq!(
                sent["contents"],
                json!([
                    {"role": "user", "parts": [
                        {"text": "What is in this picture, and the weather there?"},
                        {"inlineData": {"mimeType": "image/png", "data": PNG_DATA}}]},
                    {"role": "model", "parts": [
                        {"text": "A beach. Checking."},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Nice"}}}]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                        {"text": "Answer as JSON."}]}
                ])
            );
            assert_eq!(
                sent["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
                weather_parameters()
            );
            assert_eq!(
                sent["toolConfig"],
                json!({"functionCallingConfig": {"mode": "AUTO"}})
            );
            let config = &sent["generationConfig"];
            assert_eq!(config["responseMimeType"], "application/json");
            assert_eq!(config["responseJsonSchema"], schema());
            assert_eq!(config["thinkingConfig"]["thinkingBudget"], 1024);
            assert_eq!(config["maxOutputTokens"], 2048);
            assert_eq!(
                (&config["temperature"], &config["topP"]),
                (&json!(0.25), &json!(0.5))
            );
        }
        other => unreachable!("{other}"),
    }
}

/// Issue 15: every Responses feature reaches the OpenAI-compatible, Anthropic and Gemini
/// wire formats in their own terms, plain and streamed, and the replies come back as
/// Responses echoing the request, with the backend's function calls as items.
#[tokio::test]
async fn issue_15_every_feature_reaches_each_wire_format_and_comes_back() {
    for kind in ["compatible", "anthropic", "gemini"] {
        let mock = MockUpstream::start().await;
        let gw = TestGateway::start(&config(kind, &mock, "")).await;
        let body = every_feature(kind, false);
        let resp = gw.post("/v1/responses", body.clone()).await;
        assert_eq!(resp.status(), 200, "{kind}");
        assert_eq!(resp.headers()["x-bazaar-backend"], "up/up-model");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["status"], "completed", "{kind}: {v}");
        assert_echoes(&v, &body, kind);
        let call = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap_or_else(|| panic!("{kind}: {v}"));
        assert_eq!(call["name"], "get_weather", "{kind}");
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert!(args.is_object(), "{kind}: {call}");
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{kind}");
        let received = mock.received();
        assert_translated(kind, &received[0].body);

        let body = every_feature(kind, true);
        let ev = events(gw.post("/v1/responses", body.clone()).await).await;
        let (name, last) = ev.last().unwrap();
        assert_eq!(name, "response.completed", "{kind}: {ev:?}");
        assert_echoes(&last["response"], &body, kind);
        assert_eq!(last["response"]["id"], ev[0].1["response"]["id"], "{kind}");
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.contains(&"response.function_call_arguments.done"),
            "{kind}: {names:?}"
        );
        let sent = &mock.received()[1].body;
        if kind != "gemini" {
            // Gemini streams from another path; the body is the same.
            assert_eq!(sent["stream"], true, "{kind}");
        }
        let rows = ledger_rows(gw).await;
        assert_eq!(
            rows.iter().map(|r| r.status).collect::<Vec<_>>(),
            [200, 200],
            "{kind}"
        );
    }
}

/// Issue 15: a backend failing before the first byte is an OpenAI-shaped error, for a
/// streamed request too (no stream is started), and a ledger row.
#[tokio::test]
async fn issue_15_a_failure_before_the_first_byte_is_an_openai_error_stream_or_not() {
    for kind in ["compatible", "anthropic", "gemini"] {
        let mock = MockUpstream::start().await;
        let gw = TestGateway::start(&config(kind, &mock, "")).await;
        let error = match kind {
            "anthropic" => fixture_text("anthropic/error_500.json"),
            "gemini" => fixture_text("gemini/error_500.json"),
            _ => json!({"error": {"message": "boom", "type": "server_error"}}).to_string(),
        };
        mock.script([Step::Status(500, error.clone()), Step::Status(500, error)]);
        for stream in [false, true] {
            let body = json!({"model": "m", "input": "hi", "stream": stream});
            let e = expect_error(gw.post("/v1/responses", body).await, 502).await;
            assert!(!e["message"].as_str().unwrap().is_empty(), "{kind}: {e}");
        }
        let rows = ledger_rows(gw).await;
        assert_eq!(
            rows.iter().map(|r| r.status).collect::<Vec<_>>(),
            [502, 502],
            "{kind}"
        );
    }
}

/// Issue 15: Responses ride the shared fallback across wire formats: before the first
/// byte, a failed backend serving Responses natively gives way to a translated one and
/// back, plain and streamed, each stream framed for the backend that answered; a hosted
/// tool a translated backend cannot take falls through to the one serving Responses.
#[tokio::test]
async fn issue_15_responses_fall_back_across_wire_formats() {
    let native = MockUpstream::start().await;
    let claude = MockUpstream::start().await;
    let toml = format!(
        r#"
        [router.breaker]
        threshold = 1000
        [providers.native]
        preset = "openai"
        base_url = "{}"
        api_key = "sk-upstream"
        catalog = false
        [providers.claude]
        kind = "anthropic"
        base_url = "{}"
        api_key = "sk-upstream"
        tier = "frontier"
        catalog = false
        [[models]]
        id = "m"
        provider = "native"
        upstream = "up-model"
        [[models]]
        id = "m"
        provider = "claude"
        upstream = "up-model"
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#,
        native.base_url(),
        claude.base_url()
    );
    let gw = TestGateway::start(&toml).await;
    let body = |order: [&str; 2], stream: bool, tools: Value| {
        json!({"model": "m", "input": "hi", "stream": stream, "tools": tools,
               "provider": {"order": order}})
    };
    let call = |body: Value| {
        let gw = &gw;
        async move {
            let resp = gw.post("/v1/responses", body).await;
            assert_eq!(resp.status(), 200);
            let backend = resp.headers()["x-bazaar-backend"]
                .to_str()
                .unwrap()
                .to_string();
            (backend, resp)
        }
    };

    // The native backend fails; the translated one answers, as Responses.
    native.script([
        Step::Status(500, "{}".into()),
        Step::Status(500, "{}".into()),
    ]);
    let (backend, resp) = call(body(["native", "claude"], false, json!([]))).await;
    assert_eq!(backend, "claude/up-model");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed", "{v}");
    let (backend, resp) = call(body(["native", "claude"], true, json!([]))).await;
    assert_eq!(backend, "claude/up-model");
    let ev = events(resp).await;
    assert_eq!(ev[0].0, "response.created");
    assert_eq!(ev.last().unwrap().0, "response.completed", "{ev:?}");
    for (i, (_, d)) in ev.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64);
    }
    assert_eq!(claude.received().len(), 2);

    // The translated backend fails; the native one answers with its own stream.
    let anthropic_500 = fixture_text("anthropic/error_500.json");
    claude.script([Step::Status(500, anthropic_500)]);
    native.script([Step::fixture(200, "openai/responses_stream.sse")]);
    let (backend, resp) = call(body(["claude", "native"], true, json!([]))).await;
    assert_eq!(backend, "native/up-model");
    let text = resp.text().await.unwrap();
    let fixture = fixture_text("openai/responses_stream.sse");
    let at = fixture.rfind("event: response.completed").unwrap();
    assert_eq!(text[..at], fixture[..at]);

    // A hosted tool: the translated backend cannot send it; the native one gets it.
    native.script([Step::fixture(200, "openai/responses_reply.json")]);
    let tools = json!([{"type": "web_search"}]);
    let (backend, _) = call(body(["claude", "native"], false, tools.clone())).await;
    assert_eq!(backend, "native/up-model");
    let sent = native.received().pop().unwrap();
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(sent.body["tools"], tools);
    assert!(sent.body.get("provider").is_none(), "{}", sent.body);
    assert_eq!(
        claude.received().len(),
        3,
        "the hosted tool never reached claude"
    );

    let rows = ledger_rows(gw).await;
    // Sorted: rows of calls in one millisecond come back in no set order.
    let mut served: Vec<(i32, &str)> = rows.iter().map(|r| (r.status, &*r.provider)).collect();
    served.sort_unstable();
    assert_eq!(
        served,
        [
            (200, "claude"),
            (200, "claude"),
            (200, "native"),
            (200, "native")
        ]
    );
}

/// A refusal case: the Responses body, and the `param` the 400 must name.
type Refusal = (Value, &'static str);

/// Sends each of `cases` to a gateway whose backend is of `kind` (streamed and not) and
/// asserts the 400 names the Responses field the client sent, in OpenAI's shape with
/// `error_type`, and that every refusal is a ledger row. `script` is what the mock
/// answers each call with.
async fn assert_refusals_name(
    kind: &str,
    error_type: &str,
    cases: Vec<Refusal>,
    script: impl Fn() -> Vec<Step>,
) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(kind, &mock, "")).await;
    let mut calls = 0;
    for (body, param) in cases {
        for stream in [false, true] {
            let mut body = body.clone();
            body["stream"] = json!(stream);
            mock.script(script());
            let e = expect_error(gw.post("/v1/responses", body.clone()).await, 400).await;
            assert_eq!(e["param"], param, "{kind}: {body}\n{e}");
            assert_eq!(e["type"], error_type, "{kind}: {e}");
            if error_type == "invalid_request_error" {
                let message = e["message"].as_str().unwrap();
                assert!(message.contains(&format!("`{param}`")), "{kind}: {e}");
            }
            calls += 1;
        }
    }
    let rows = ledger_rows(gw).await;
    assert_eq!(rows.len(), calls, "{kind}: every refusal is a ledger row");
    assert!(
        rows.iter().all(|r| r.status == 400 && &*r.route == "m"),
        "{kind}: {rows:?}"
    );
}

/// Input items whose chat messages shift: instructions come first, reasoning has no
/// message, function calls join the assistant turn before them. `args` are the second
/// call's arguments; `image` the URL of the last user message's image.
fn shifted_input(args: &str, image: &str) -> Value {
    json!({
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": "Weather in Nice and Oslo?"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Nice\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": args},
            {"type": "function_call_output", "call_id": "call_1", "output": "21"},
            {"type": "function_call_output", "call_id": "call_2", "output": "9"},
            {"role": "user", "content": [
                {"type": "input_text", "text": "And this place?"},
                {"type": "input_image", "image_url": image}]}
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": weather_parameters()}]
    })
}

/// Issue 15: what an Anthropic backend cannot express of a translated request is a 400
/// naming the Responses field the client sent, not the chat field the adapter read
/// (`text.format`, `reasoning.effort`, `input[j]…` with `j` the item that became the
/// message, after instructions, reasoning items and merged function calls).
#[tokio::test]
async fn issue_15_anthropic_refusals_name_the_responses_field() {
    let png = format!("data:image/png;base64,{PNG_DATA}");
    let format = |schema: Value| json!({"format": {"type": "json_schema", "name": "answer", "schema": schema}});
    let mut with_tools = shifted_input("{}", &png);
    with_tools["text"] = format(schema());
    let mut array_schema = json!({"model": "m", "input": "hi"});
    array_schema["text"] = format(json!({"type": "array"}));
    let system_image = json!({"model": "m", "instructions": "Be brief.", "input": [
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [
            {"type": "input_text", "text": "Style:"},
            {"type": "input_image", "image_url": png}]}]});
    let cases = vec![
        (with_tools, "text.format"),
        (array_schema, "text.format.schema"),
        (
            json!({"model": "m", "input": "hi", "reasoning": {"effort": "extreme"}}),
            "reasoning.effort",
        ),
        (shifted_input("[1]", &png), "input[4].arguments"),
        (
            shifted_input("{}", "ftp://example.com/a.png"),
            "input[7].content[1]",
        ),
        (system_image, "input[1].content[1]"),
    ];
    assert_refusals_name("anthropic", "invalid_request_error", cases, Vec::new).await;
}

/// Issue 15: Gemini's refusals of a translated request name the Responses field:
/// a function call's output (`input[j].output[k]`), its `call_id`, an image's URL.
#[tokio::test]
async fn issue_15_gemini_refusals_name_the_responses_field() {
    let png = format!("data:image/png;base64,{PNG_DATA}");
    let tool_loop = |call_id: &str, output: Value| {
        json!({"model": "m", "instructions": "Be brief.", "input": [
            {"role": "user", "content": "Weather in Nice?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": call_id, "output": output}]})
    };
    let parts = json!([{"type": "input_text", "text": "a map:"},
                       {"type": "input_image", "image_url": png}]);
    let cases = vec![
        (tool_loop("call_1", parts), "input[2].output[1].type"),
        (tool_loop("call_9", json!("21")), "input[2].call_id"),
        (
            shifted_input("{}", "https://example.com/a.png"),
            "input[7].content[1].image_url",
        ),
    ];
    assert_refusals_name("gemini", "invalid_request_error", cases, Vec::new).await;
}

/// Issue 15: a chat backend's own 400 about the translation names the Responses field
/// too (`max_output_tokens` for chat's `max_completion_tokens`, a namespace tool's
/// function for `tools[i]`, the item behind `messages[i]`), with the backend's message
/// and code; and the stored conversation a request continues is named as
/// `previous_response_id`, the new input counted from 0.
#[tokio::test]
async fn issue_15_a_chat_backends_rejection_names_the_responses_field() {
    let rejection = |param: &'static str| {
        move || {
            let body = json!({"error": {"message": "Invalid value.", "type": "invalid_request_error",
                                        "param": param, "code": "invalid_value"}});
            vec![Step::Status(400, body.to_string())]
        }
    };
    let codex = json!({"model": "m", "input": "go", "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
        {"type": "namespace", "name": "agents", "tools": [
            {"type": "function", "name": "close_agent", "parameters": {"type": "object"}}]}]});
    let png = format!("data:image/png;base64,{PNG_DATA}");
    for (body, chat, param) in [
        (
            json!({"model": "m", "input": "hi", "max_output_tokens": 5}),
            "max_completion_tokens",
            "max_output_tokens",
        ),
        (
            codex,
            "tools[1].function.parameters",
            "tools[1].tools[0].parameters",
        ),
        (
            shifted_input("{}", &png),
            "messages[5].content[1].image_url.url",
            "input[7].content[1].image_url",
        ),
    ] {
        let cases = vec![(body, param)];
        assert_refusals_name("compatible", "upstream_error", cases, rejection(chat)).await;
    }

    // A continued conversation: the stored turns are `previous_response_id`'s.
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config("compatible", &mock, "")).await;
    let first: Value = gw
        .post("/v1/responses", json!({"model": "m", "input": "hi"}))
        .await
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap();
    let next = json!({"model": "m", "previous_response_id": id,
                      "input": [{"role": "user", "content": "more"}]});
    for (chat, param) in [
        ("messages[2].content", "input[0].content"),
        ("messages[0].content", "previous_response_id"),
    ] {
        mock.script(rejection(chat)());
        let e = expect_error(gw.post("/v1/responses", next.clone()).await, 400).await;
        assert_eq!(e["param"], param, "{e}");
        assert_eq!(e["code"], "invalid_value", "{e}");
        assert_eq!(e["message"], "Invalid value.", "{e}");
    }
    let rows = ledger_rows(gw).await;
    assert_eq!(
        rows.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 400, 400]
    );
}
