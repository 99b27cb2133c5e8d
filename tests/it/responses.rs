//! `POST /v1/responses` end to end: a backend whose preset serves Responses gets the
//! client's body (model rewritten); OpenAI-compatible and Anthropic backends get the chat
//! translation and their replies and streams come back as Responses; stored
//! conversations continue with `previous_response_id`, per key; every call is a ledger row.

use serde_json::{json, Value};

use crate::common::*;
use bazaar::billing::ledger::{Filter, LedgerRow};

pub(crate) const OTHER_KEY: &str = "bzr-other-key";

/// A gateway whose model `m` is served by the mock as a provider of `kind`: `openai`
/// (the preset, which serves Responses itself), `compatible` (any OpenAI-compatible
/// host), `anthropic`, `gemini`.
async fn setup(kind: &str) -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(kind, &mock, "")).await;
    (mock, gw)
}

/// The config of `setup`, with `extra` TOML tables: the keys `KEY` and `OTHER_KEY`, and `m`
/// priced at $1/M input and $2/M output tokens.
pub(crate) fn config(kind: &str, mock: &MockUpstream, extra: &str) -> String {
    let (line, base_url) = match kind {
        "openai" => ("preset = \"openai\"".to_string(), mock.base_url()),
        "compatible" => ("kind = \"openai\"".to_string(), mock.base_url()),
        "gemini" => ("kind = \"gemini\"".to_string(), mock.gemini_base_url()),
        other => (format!("kind = \"{other}\""), mock.base_url()),
    };
    format!(
        r#"
        [router.breaker]
        threshold = 1000
        [providers.up]
        {line}
        base_url = "{base_url}"
        api_key = "sk-upstream"
        tier = "frontier"
        catalog = false
        [providers.up.timeouts]
        first_byte = "2s"
        idle = "1s"
        total = "10s"
        [[models]]
        id = "m"
        provider = "up"
        upstream = "up-model"
        input_price = 1
        output_price = 2
        [[keys]]
        name = "app"
        key = "{KEY}"
        [[keys]]
        name = "other"
        key = "{OTHER_KEY}"
        {extra}
        "#
    )
}

pub(crate) async fn post_as(gw: &TestGateway, key: &str, body: Value) -> reqwest::Response {
    gw.client
        .post(gw.url("/v1/responses"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn events(resp: reqwest::Response) -> Vec<(String, Value)> {
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_string();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str(), "{e}");
            (name, data)
        })
        .collect()
}

/// The ledger's `/v1/responses` rows, after a shutdown flushed them.
pub(crate) async fn ledger_rows(gw: TestGateway) -> Vec<LedgerRow> {
    let state = gw.state.clone();
    gw.shutdown().await.unwrap();
    let filter = Filter {
        from_ms: 0,
        to_ms: i64::MAX,
        ..Default::default()
    };
    let mut rows: Vec<LedgerRow> = state
        .billing
        .connected()
        .unwrap()
        .ledger
        .calls(&filter, 100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.endpoint == "responses")
        .collect();
    rows.reverse();
    rows
}

/// What `usage` costs at the test model's prices ($1/M input, $2/M output).
fn billed_cost(usage: &Value) -> Value {
    let input = usage["input_tokens"].as_f64().unwrap();
    let output = usage["output_tokens"].as_f64().unwrap();
    json!((input + 2.0 * output) / 1e6)
}

pub(crate) fn output_text(v: &Value) -> String {
    v["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().clone())
        .filter_map(|c| c["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn chat_backends_get_the_translation_and_answer_as_responses() {
    let (mock, gw) = setup("compatible").await;
    let resp = gw
        .post(
            "/v1/responses",
            json!({"model": "m", "instructions": "Be brief.", "input": "Say hello",
                   "max_output_tokens": 64, "metadata": {"ticket": "42"}}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-bazaar-backend"], "up/up-model");
    assert!(resp.headers().contains_key("x-bazaar-cost-usd"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["status"], "completed");
    assert_eq!(v["instructions"], "Be brief.");
    assert_eq!(v["metadata"], json!({"ticket": "42"}));
    assert_eq!(v["max_output_tokens"], 64);
    assert!(!output_text(&v).is_empty(), "{v}");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    // The billed cost, as chat and messages replies carry it.
    assert_eq!(v["usage"]["cost"], billed_cost(&v["usage"]), "{v}");
    let got = mock.received().pop().unwrap();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.body["model"], "up-model");
    assert_eq!(
        got.body["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}])
    );
    assert_eq!(got.body["max_completion_tokens"], 64);

    let ev = events(
        gw.post(
            "/v1/responses",
            json!({"model": "m", "input": "Say hello", "stream": true}),
        )
        .await,
    )
    .await;
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert!(names.contains(&"response.output_text.delta"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let done = &ev.last().unwrap().1["response"];
    assert!(
        done["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{done}"
    );
    assert_eq!(done["usage"]["cost"], billed_cost(&done["usage"]), "{done}");
    let deltas: String = ev
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, output_text(done));
    let rows = ledger_rows(gw).await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r.status == 200 && r.output_tokens > 0),
        "{rows:?}"
    );
}

#[tokio::test]
async fn an_anthropic_backend_answers_function_calls_as_items() {
    let (mock, gw) = setup("anthropic").await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather",
                        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]);
    let v: Value = gw
        .post(
            "/v1/responses",
            json!({"model": "m", "input": "Weather in Paris?", "tools": tools}),
        )
        .await
        .json()
        .await
        .unwrap();
    let call = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(call["status"], "completed");
    assert!(call["call_id"].is_string() && call["arguments"].is_string());
    let got = mock.received().pop().unwrap();
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.body["tools"][0]["name"], "get_weather");

    let ev = events(
        gw.post(
            "/v1/responses",
            json!({"model": "m", "input": "Weather in Paris?", "tools": tools, "stream": true}),
        )
        .await,
    )
    .await;
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"response.function_call_arguments.delta"),
        "{names:?}"
    );
    assert!(
        names.contains(&"response.function_call_arguments.done"),
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"response.completed"));
    for (i, (_, d)) in ev.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64);
    }
}

#[tokio::test]
async fn an_openai_backend_gets_the_clients_body_with_the_model_rewritten() {
    let (mock, gw) = setup("openai").await;
    mock.script([
        Step::fixture(200, "openai/responses_reply.json"),
        Step::fixture(200, "openai/responses_stream.sse"),
        Step::fixture(200, "openai/responses_reply.json"),
    ]);
    let body = json!({"model": "m", "input": [{"role": "user", "content": "hi"}],
                      "include": ["reasoning.encrypted_content"], "x_future": 1, "bazaar": {"policy": "cheapest"}});
    let resp = gw.post("/v1/responses", body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    // The backend's reply as it is, its usage with the billed cost: 12 input tokens at
    // $1/M and 7 output at $2/M.
    let mut expected: Value =
        serde_json::from_str(&fixture_text("openai/responses_reply.json")).unwrap();
    expected["usage"]["cost"] = json!(0.000026);
    assert_eq!(v, expected);
    let got = mock.received().pop().unwrap();
    assert_eq!(got.path, "/v1/responses");
    assert_eq!(
        got.body,
        json!({"model": "up-model", "input": [{"role": "user", "content": "hi"}],
               "include": ["reasoning.encrypted_content"], "x_future": 1})
    );
    let resp = gw
        .post(
            "/v1/responses",
            json!({"model": "m", "input": "hi", "stream": true}),
        )
        .await;
    let text = resp.text().await.unwrap();
    let fixture = fixture_text("openai/responses_stream.sse");
    let at = fixture.rfind("event: response.completed").unwrap();
    assert_eq!(text[..at], fixture[..at]);
    let last = |sse: &str| -> Value {
        let data = sse[at..].split_once("data: ").unwrap().1;
        serde_json::from_str(data.trim()).unwrap()
    };
    let mut expected = last(&fixture);
    expected["response"]["usage"]["cost"] = json!(0.000026);
    assert_eq!(last(&text), expected);
    // The stored native response continues like any other.
    let resp = gw
        .post(
            "/v1/responses",
            json!({"model": "m", "input": "again", "previous_response_id": "resp_68b0c0ffee"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let got = mock.received().pop().unwrap();
    assert_eq!(
        got.body["input"].as_array().unwrap().len(),
        3,
        "{}",
        got.body
    );
    assert_eq!(got.body["input"][1]["type"], "message");
    assert!(got.body.get("previous_response_id").is_none());
    let rows = ledger_rows(gw).await;
    assert_eq!(rows.len(), 3);
    assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (12, 7));
}

#[tokio::test]
async fn previous_response_id_continues_the_conversation_of_its_key_only() {
    let (mock, gw) = setup("compatible").await;
    let first: Value = gw
        .post(
            "/v1/responses",
            json!({"model": "m", "input": "My name is Ada.", "instructions": "Be brief."}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    let answer = output_text(&first);
    let resp = gw
        .post("/v1/responses", json!({"model": "m", "input": "What is my name?", "previous_response_id": id, "stream": true}))
        .await;
    let ev = events(resp).await;
    let second = ev.last().unwrap().1["response"].clone();
    assert_eq!(second["previous_response_id"], id.as_str());
    let got = mock.received().pop().unwrap();
    // Instructions are not carried over; the turns are.
    assert_eq!(
        got.body["messages"],
        json!([{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": answer},
               {"role": "user", "content": "What is my name?"}])
    );
    // A stream's response continues too.
    let second_id = second["id"].as_str().unwrap();
    let resp = gw
        .post("/v1/responses", json!({"model": "m", "input": "Thanks", "previous_response_id": second_id, "store": false}))
        .await;
    assert_eq!(resp.status(), 200);
    let third: Value = resp.json().await.unwrap();
    assert_eq!(
        mock.received().pop().unwrap().body["messages"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // Another key, a missing id: 404 in OpenAI's shape, naming the field.
    let e = expect_error(
        post_as(
            &gw,
            OTHER_KEY,
            json!({"model": "m", "input": "hi", "previous_response_id": id}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(e["param"], "previous_response_id");
    assert!(e["message"].as_str().unwrap().contains(&id));
    expect_error(
        gw.post(
            "/v1/responses",
            json!({"model": "m", "input": "hi", "previous_response_id": "resp_nope"}),
        )
        .await,
        404,
    )
    .await;

    // GET and DELETE, per key; `store: false` keeps nothing.
    let get = |key: &'static str, id: String| {
        let gw = &gw;
        async move {
            gw.client
                .get(gw.url(&format!("/v1/responses/{id}")))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
        }
    };
    let got: Value = get(KEY, id.clone()).await.json().await.unwrap();
    assert_eq!(got, first);
    expect_error(get(OTHER_KEY, id.clone()).await, 404).await;
    expect_error(
        get(KEY, third["id"].as_str().unwrap().to_string()).await,
        404,
    )
    .await;
    let del = gw
        .client
        .delete(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(OTHER_KEY)
        .send()
        .await
        .unwrap();
    expect_error(del, 404).await;
    let del: Value = gw
        .client
        .delete(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        del,
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    expect_error(get(KEY, id.clone()).await, 404).await;
    let rows = ledger_rows(gw).await;
    assert_eq!(
        rows.iter().filter(|r| r.status == 404).count(),
        2,
        "{rows:?}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.status == 200).count(),
        3,
        "{rows:?}"
    );
}

#[tokio::test]
async fn input_items_list_a_stored_conversation_page_by_page_to_its_key_only() {
    let (_mock, gw) = setup("compatible").await;
    let first: Value = gw
        .post(
            "/v1/responses",
            json!({"model": "m", "input": "My name is Ada."}),
        )
        .await
        .json()
        .await
        .unwrap();
    let first_id = first["id"].as_str().unwrap();
    let second: Value = gw
        .post(
            "/v1/responses",
            json!({"model": "m", "previous_response_id": first_id,
                   "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Who am I?"}]}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = second["id"].as_str().unwrap();
    let list = |key: &'static str, query: &str| {
        let url = gw.url(&format!("/v1/responses/{id}/input_items{query}"));
        let client = gw.client.clone();
        async move { client.get(url).bearer_auth(key).send().await.unwrap() }
    };
    // Newest first: this turn's input, the first reply, the first input; not this output.
    let all: Value = list(KEY, "").await.json().await.unwrap();
    assert_eq!(all["object"], "list");
    assert_eq!(all["has_more"], false);
    let data = all["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{all}");
    assert_eq!(data[0]["content"][0]["text"], "Who am I?");
    assert_eq!(data[1]["id"], first["output"][0]["id"]);
    assert_eq!(data[1]["role"], "assistant");
    assert_eq!(
        data[2]["content"],
        json!([{"type": "input_text", "text": "My name is Ada."}])
    );
    assert!(data
        .iter()
        .all(|i| i["type"] == "message" && i["id"].is_string()));
    assert_eq!(all["first_id"], data[0]["id"]);
    assert_eq!(all["last_id"], data[2]["id"]);
    // Oldest first, one at a time.
    let page: Value = list(KEY, "?order=asc&limit=1").await.json().await.unwrap();
    assert_eq!(page["data"][0], data[2]);
    assert_eq!(page["has_more"], true);
    let after = page["last_id"].as_str().unwrap().to_string();
    let page: Value = list(KEY, &format!("?order=asc&limit=2&after={after}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"], json!([data[1], data[0]]));
    assert_eq!(page["has_more"], false);
    // Another key cannot see it; bad parameters are named.
    expect_error(list(OTHER_KEY, "").await, 404).await;
    let e = expect_error(list(KEY, "?limit=0").await, 400).await;
    assert_eq!(e["param"], "limit");
    let e = expect_error(list(KEY, "?order=up").await, 400).await;
    assert_eq!(e["param"], "order");
}

#[tokio::test]
async fn unsupported_features_and_unknown_items_are_400s_naming_them() {
    let (mock, gw) = setup("compatible").await;
    let cases = [
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
            "web_search",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["vs"]}]}),
            "tools[0].type",
            "file_search",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
            "background",
        ),
        (
            json!({"model": "m", "input": [{"type": "hologram", "id": "h"}]}),
            "input[0].type",
            "hologram",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            "conversation",
            "conversation",
        ),
        (
            json!({"model": "m", "input": "x", "prompt": {"id": "pmpt_1"}}),
            "prompt",
            "prompt",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search_preview"}}),
            "tool_choice.type",
            "web_search_preview",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": "hi"},
                   {"type": "web_search_call", "id": "ws_1", "status": "completed"}]}),
            "input[1].type",
            "web_search_call",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input[0].type",
            "item_reference",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "see"}, {"type": "input_image", "file_id": "file_1"}]}]}),
            "input[0].content[1].file_id",
            "file_id",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [
                {"type": "input_file", "file_url": "https://example.com/a.pdf"}]}]}),
            "input[0].content[0].file_url",
            "file_url",
        ),
        (
            json!({"model": "m", "input": [{"role": "robot", "content": "beep"}]}),
            "input[0].role",
            "robot",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "output": "21"}]}),
            "input[0].call_id",
            "call_id",
        ),
        (json!({"model": "m", "input": []}), "input", "input"),
        (json!({"model": "m", "input": 42}), "input", "input"),
        (
            json!({"model": "m", "input": "x", "previous_response_id": 7}),
            "previous_response_id",
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            "text.format.type",
            "yaml",
        ),
    ];
    let n = cases.len();
    for (body, param, named) in cases {
        let e = expect_error(gw.post("/v1/responses", body.clone()).await, 400).await;
        assert_eq!(e["param"], param, "{body}");
        assert!(e["message"].as_str().unwrap().contains(named), "{e}");
    }
    // A field the gateway does not know goes to backends serving Responses; a translated
    // one cannot send it, and says so naming it.
    let body = json!({"model": "m", "input": "x", "x_future": 1});
    let e = expect_error(gw.post("/v1/responses", body).await, 400).await;
    assert_eq!(e["param"], "x_future", "{e}");
    assert_eq!(e["code"], "unsupported_by_backend", "{e}");
    assert!(mock.received().is_empty());
    let rows = ledger_rows(gw).await;
    assert_eq!(rows.len(), n + 1, "every refusal is a ledger row");
    assert!(
        rows.iter().all(|r| r.status == 400 && &*r.route == "m"),
        "{rows:?}"
    );
}

/// Codex CLI's tools: functions, a `namespace` tool grouping more, and hosted `web_search`.
fn codex_tools(hosted: bool) -> Value {
    let mut tools = vec![
        json!({"type": "function", "name": "exec_command", "strict": false,
               "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}),
        json!({"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.",
               "tools": [{"type": "function", "name": "close_agent", "strict": false,
                          "parameters": {"type": "object"}}]}),
    ];
    if hosted {
        tools.push(json!({"type": "web_search", "external_web_access": true}));
    }
    Value::Array(tools)
}

#[tokio::test]
async fn namespace_tools_are_flattened_for_chat_backends_and_calls_keep_their_namespace() {
    let (mock, gw) = setup("compatible").await;
    let reply = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "close_agent", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
    mock.script([Step::Status(200, reply.to_string())]);
    let body = json!({"model": "m", "input": [{"role": "user", "content": "go"}], "tools": codex_tools(false)});
    let resp = gw.post("/v1/responses", body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["output"][0]["type"], "function_call", "{v}");
    assert_eq!(v["output"][0]["name"], "close_agent");
    assert_eq!(v["output"][0]["namespace"], "multi_agent_v1");
    let got = mock.received().pop().unwrap();
    let names: Vec<&str> = got.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["exec_command", "close_agent"]);

    // The hosted tool: a 400 naming it on this backend, before any upstream call.
    let body = json!({"model": "m", "input": "go", "tools": codex_tools(true)});
    let e = expect_error(gw.post("/v1/responses", body).await, 400).await;
    assert_eq!(e["param"], "tools[2].type", "{e}");
    assert!(e["message"].as_str().unwrap().contains("web_search"), "{e}");
    assert_eq!(mock.received().len(), 1);
    let rows = ledger_rows(gw).await;
    assert_eq!(
        rows.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 400]
    );
}

#[tokio::test]
async fn hosted_and_namespace_tools_reach_a_responses_backend_as_sent() {
    let (mock, gw) = setup("openai").await;
    mock.script([Step::fixture(200, "openai/responses_reply.json")]);
    let body = json!({"model": "m", "input": "go", "tools": codex_tools(true)});
    let resp = gw.post("/v1/responses", body).await;
    assert_eq!(resp.status(), 200);
    let got = mock.received().pop().unwrap();
    assert_eq!(got.path, "/v1/responses");
    assert_eq!(got.body["tools"], codex_tools(true));
}

/// Issue 15: a stream cut upstream, or failed by the upstream after its first byte, ends
/// with `response.failed` and then the end of the body on every wire format, and is a
/// ledger row.
#[tokio::test]
async fn a_stream_cut_upstream_ends_with_response_failed() {
    let native_cut = Step::Raw {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: fixture_text("openai/responses_stream.sse")
            .split_inclusive("\n\n")
            .take(6)
            .collect(),
    };
    let cases = [
        ("compatible", Step::CutAfter(3), "after a text delta"),
        ("openai", native_cut, "in the native stream"),
        // message_start, content_block_start, ping, the first text delta.
        ("anthropic", Step::CutAfter(4), "after a text delta"),
        // Everything but message_stop: the stop reason and the final usage came.
        ("anthropic", Step::CutAfter(7), "before message_stop"),
        (
            "anthropic",
            Step::fixture(200, "anthropic/stream_overloaded.sse"),
            "with an error event",
        ),
        // One chunk of text, no finish reason.
        ("gemini", Step::CutAfter(1), "after a text chunk"),
    ];
    for (kind, step, when) in cases {
        let case = format!("{kind} {when}");
        let (mock, gw) = setup(kind).await;
        mock.script([step]);
        let ev = events(
            gw.post(
                "/v1/responses",
                json!({"model": "m", "input": "hi", "stream": true}),
            )
            .await,
        )
        .await;
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"response.created"), "{case}: {names:?}");
        let (name, last) = ev.last().unwrap();
        assert_eq!(name, "response.failed", "{case}: {ev:?}");
        assert_eq!(last["response"]["status"], "failed", "{case}");
        assert_eq!(last["response"]["error"]["code"], "server_error", "{case}");
        assert_eq!(
            last["response"]["id"], ev[0].1["response"]["id"],
            "{case}: the failed response is the one created"
        );
        assert!(
            names.iter().all(|n| *n != "response.completed"),
            "{case}: {names:?}"
        );
        for (i, (_, d)) in ev.iter().enumerate() {
            assert_eq!(d["sequence_number"], i as u64, "{case}");
        }
        assert_eq!(
            mock.received().len(),
            1,
            "{case}: no retry after the first byte"
        );
        let rows = ledger_rows(gw).await;
        assert_eq!(rows.len(), 1, "{case}");
        assert_eq!(rows[0].status, 502, "{case}");
    }
}

#[tokio::test]
async fn explain_plans_a_responses_body_as_its_chat_translation() {
    let (mock, gw) = setup("compatible").await;
    let tool = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let responses = json!({"model": "m", "instructions": "Be brief.", "input": "Weather in Paris?",
                           "tools": [{"type": "function", "name": "get_weather", "parameters": tool}]});
    let chat = json!({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "Weather in Paris?"}],
                      "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": tool}}]});
    let resp = gw.post("/v1/route/explain", responses).await;
    assert_eq!(resp.status(), 200);
    let from_responses: Value = resp.json().await.unwrap();
    let from_chat: Value = gw
        .post("/v1/route/explain", chat)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(from_responses["chosen"], "up/up-model", "{from_responses}");
    assert_eq!(
        from_responses["estimated_prompt_tokens"], from_chat["estimated_prompt_tokens"],
        "{from_responses} {from_chat}"
    );
    assert_eq!(from_responses["task"], from_chat["task"]);
    // A conversation that is not this key's is a 404, as on /v1/responses.
    let resp = gw
        .post(
            "/v1/route/explain",
            json!({"model": "m", "input": "again", "previous_response_id": "resp_nope"}),
        )
        .await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "previous_response_id");
    // A body the call would refuse whatever the backend is refused naming the field.
    let resp = gw
        .post(
            "/v1/route/explain",
            json!({"model": "m", "input": [{"type": "hologram"}]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "input[0].type");
    assert!(mock.received().is_empty(), "explain calls no backend");
}
