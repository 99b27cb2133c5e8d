//! Issue 13, continued: hostile bodies and broken upstreams the first batch did not
//! reach. Each probe checks the status and OpenAI error shape the client gets, that
//! nothing unintended reaches the upstream, and the call's one ledger row.

use serde_json::{json, Value};

use crate::common::*;
use crate::metering::row_of;

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

/// POSTs `body` (raw bytes, as JSON) to `path` with the test key as call `id`.
async fn post_raw(gw: &TestGateway, path: &str, body: &str, id: &str) -> reqwest::Response {
    gw.client
        .post(gw.url(path))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .header("x-request-id", id)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// A field given twice is refused by name on every endpoint that parses a body: the
/// gateway checks one value (`max_tokens` for the budget, `model` for the allow-list)
/// and forwards both, where an upstream's parser may obey the other. A second `model`
/// was also written back as broken JSON (`"model,"`) to the upstream.
#[tokio::test]
async fn a_field_given_twice_is_refused_by_name() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let cases = [
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"max_tokens":100000000}"#,
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
            "model",
        ),
        (
            "/v1/completions",
            r#"{"model":"gpt-3.5-turbo-instruct","prompt":"hi","n":1,"n":1}"#,
            "n",
        ),
        (
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"a","input":"b"}"#,
            "input",
        ),
        (
            "/v1/responses",
            r#"{"model":"gpt-4o-mini","input":"hi","stream":false,"stream":true}"#,
            "stream",
        ),
    ];
    for (i, (path, body, param)) in cases.into_iter().enumerate() {
        let resp = post_raw(&gw, path, body, &format!("dup-{i}")).await;
        let e = expect_error(resp, 400).await;
        assert_eq!(e["param"], param, "{path}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains("more than once"),
            "{e}"
        );
    }
    for path in ["/v1/messages", "/v1/messages/count_tokens"] {
        let body = r#"{"model":"gpt-4o-mini","max_tokens":10,"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
        let resp = post_raw(&gw, path, body, "dup-anthropic").await;
        assert_eq!(resp.status(), 400, "{path}");
        let v: Value = resp.json().await.unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("`model` appears more than once"),
            "{path}: {v}"
        );
    }
    assert!(
        mock.received().is_empty(),
        "a duplicate reached the upstream"
    );
}

/// An upstream reply that repeats `model` reaches the client as valid JSON (it was
/// rewritten with its usage's cost into `{"model":"…","model,…`).
#[tokio::test]
async fn an_upstream_reply_repeating_model_stays_valid_json() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    mock.script([Step::Status(
        200,
        r#"{"id":"c","object":"chat.completion","created":1,"model":"a","model":"b",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#
            .into(),
    )]);
    let resp = post_raw(
        &gw,
        "/v1/chat/completions",
        &chat().to_string(),
        "dup-reply",
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(body["choices"][0]["message"]["content"], "Hi");
    let row = row_of(&gw, "dup-reply").await;
    assert_eq!(row["status"], 200, "{row}");
    assert_eq!(row["tokens"]["output"], 1, "{row}");
}

/// A reply body of `status` in the OpenAI chat shape, with `usage` as given.
fn chat_reply(usage: Value) -> String {
    json!({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
        "usage": usage})
    .to_string()
}

/// An event stream of `events` (each a `data:` payload) as an upstream sends it.
fn sse_reply(events: &[String]) -> Step {
    let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    Step::Raw {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body,
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

fn usage_chunk(usage: Value) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [], "usage": usage})
    .to_string()
}

/// A 200 whose body is an `error` object (some hosts answer failures so) is that
/// upstream's failure: a 502 in OpenAI's shape with the upstream's message, scrubbed of
/// key-shaped text, and a 502 row that charges nothing. It was passed on as a success,
/// the upstream's text unscrubbed, and billed on an estimate.
#[tokio::test]
async fn a_200_carrying_an_error_is_a_failure() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let error = json!({"error": {"message": "Model overloaded, key sk-upstream-secret-123 throttled",
        "type": "server_error", "code": "overloaded"}});
    for (path, body) in [
        ("/v1/chat/completions", chat()),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "hi"}),
        ),
    ] {
        mock.script([Step::Status(200, error.to_string())]);
        let id = format!("error-200{}", path.replace('/', "-"));
        let resp = post_raw(&gw, path, &body.to_string(), &id).await;
        let e = expect_error(resp, 502).await;
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("Model overloaded"), "{path}: {e}");
        assert!(!message.contains("sk-upstream-secret-123"), "{path}: {e}");
        let row = row_of(&gw, &id).await;
        assert_eq!(row["status"], 502, "{row}");
        assert_eq!(row["tokens"]["input"], 0, "{row}");
    }
}

/// A usage report that cannot be read (a negative, fractional or quoted count, or not an
/// object) is not believed, like one too large: the answer reaches the client and the
/// call is billed on the gateway's own count, flagged estimated. It was a 502 (the
/// client lost an answer the upstream had charged for) and, in a stream, an error event
/// after the whole answer had been sent.
#[tokio::test]
async fn an_unreadable_usage_report_is_estimated_not_fatal() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let reports = [
        json!({"prompt_tokens": -5, "completion_tokens": 2, "total_tokens": -3}),
        json!({"prompt_tokens": 5.5, "completion_tokens": 1e30, "total_tokens": 3}),
        json!({"prompt_tokens": "5", "completion_tokens": "2"}),
        json!({"prompt_tokens": 5, "completion_tokens": 2, "completion_tokens_details": {"reasoning_tokens": -1}}),
        json!("lots"),
    ];
    for (i, usage) in reports.iter().enumerate() {
        mock.script([Step::Status(200, chat_reply(usage.clone()))]);
        let id = format!("bad-usage-{i}");
        let resp = post_raw(&gw, "/v1/chat/completions", &chat().to_string(), &id).await;
        assert_eq!(resp.status(), 200, "{usage}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
        assert_eq!(body["usage"]["estimated"], true, "{body}");
        let row = row_of(&gw, &id).await;
        assert_eq!(
            (row["status"].clone(), row["estimated"].clone()),
            (json!(200), json!(true)),
            "{row}"
        );
        assert!(row["tokens"]["output"].as_u64().unwrap() > 0, "{row}");

        mock.script([sse_reply(&[
            chunk(json!({"role": "assistant", "content": "Hello there"}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(usage.clone()),
            "[DONE]".into(),
        ])]);
        let id = format!("bad-usage-stream-{i}");
        let mut body = chat();
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let resp = post_raw(&gw, "/v1/chat/completions", &body.to_string(), &id).await;
        assert_eq!(resp.status(), 200);
        let events = sse_events(resp).await;
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{usage}: {events:?}"
        );
        // One usage chunk, the billed one: the unreadable report is not passed on.
        let usages: Vec<Value> = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter(|e| !e["usage"].is_null())
            .collect();
        assert_eq!(usages.len(), 1, "{usage}: {events:?}");
        assert_eq!(usages[0]["usage"]["estimated"], true, "{usages:?}");
        let row = row_of(&gw, &id).await;
        assert_eq!(
            (row["status"].clone(), row["estimated"].clone()),
            (json!(200), json!(true)),
            "{row}"
        );
    }
    // A client that did not ask for usage gets no usage chunk, readable or not.
    mock.script([sse_reply(&[
        chunk(
            json!({"role": "assistant", "content": "Hello there"}),
            Some("stop"),
        ),
        usage_chunk(reports[0].clone()),
        "[DONE]".into(),
    ])]);
    let mut body = chat();
    body["stream"] = json!(true);
    let resp = post_raw(
        &gw,
        "/v1/chat/completions",
        &body.to_string(),
        "bad-usage-hidden",
    )
    .await;
    let events = sse_events(resp).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(!events[0].contains("usage"), "{events:?}");
}

/// A stream's events with empty data (`data:` alone) are dropped, not forwarded as empty
/// `data:` lines that the SDKs fail to parse; an event that is not JSON ends the stream
/// with an error event (and a 502 row) instead of reaching the client's parser.
#[tokio::test]
async fn stream_events_the_client_cannot_parse_are_never_forwarded() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let mut body = chat();
    body["stream"] = json!(true);
    let text = chunk(json!({"role": "assistant", "content": "Hello"}), None);
    mock.script([sse_reply(&[
        text.clone(),
        String::new(),
        " ".into(),
        chunk(json!({}), Some("stop")),
        "[DONE]".into(),
    ])]);
    let resp = post_raw(&gw, "/v1/chat/completions", &body.to_string(), "empty-data").await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(resp).await;
    assert_eq!(events.len(), 3, "{events:?}");
    for event in &events[..2] {
        serde_json::from_str::<Value>(event).unwrap_or_else(|e| panic!("{e}: {event:?}"));
    }

    mock.script([sse_reply(&[text, "keep-alive".into(), "[DONE]".into()])]);
    let resp = post_raw(&gw, "/v1/chat/completions", &body.to_string(), "junk-data").await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(resp).await;
    assert!(!events.iter().any(|e| e == "keep-alive"), "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a JSON object"),
        "{last}"
    );
    assert_eq!(row_of(&gw, "junk-data").await["status"], 502);
}

/// A request body with a `Content-Encoding` is refused by name: bodies are read as
/// sent, so a gzipped one failed as "not valid UTF-8" and a plain one labelled gzip was
/// accepted as if it had been decoded.
#[tokio::test]
async fn a_compressed_request_body_is_refused_by_name() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let plain = chat().to_string().into_bytes();
    // `chat()` compressed with gzip.
    let gzipped = vec![
        0x1f, 0x8b, 0x8, 0x0, 0x0, 0x0, 0x0, 0x0, 0x2, 0x3, 0xab, 0x56, 0xca, 0xcd, 0x4f, 0x49,
        0xcd, 0x51, 0xb2, 0x52, 0x4a, 0x2f, 0x28, 0xd1, 0x35, 0xc9, 0xd7, 0xcd, 0xcd, 0xcc, 0xcb,
        0x54, 0xd2, 0x51, 0xca, 0x4d, 0x2d, 0x2e, 0x4e, 0x4c, 0x4f, 0x2d, 0x56, 0xb2, 0x8a, 0xae,
        0x56, 0x2a, 0xca, 0xcf, 0x49, 0x5, 0xaa, 0x28, 0x2d, 0x4e, 0x2d, 0x2, 0x4a, 0x25, 0xe7,
        0xe7, 0x95, 0xa4, 0xe6, 0x95, 0x0, 0x5, 0x32, 0x32, 0x95, 0x6a, 0x63, 0x6b, 0x1, 0x85,
        0x99, 0x25, 0x8c, 0x43, 0x0, 0x0, 0x0,
    ];
    let send = |coding: &'static str, body: Vec<u8>| {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(body)
            .send()
    };
    for (coding, body) in [
        ("gzip", gzipped),
        ("gzip", plain.clone()),
        ("deflate, br", plain.clone()),
    ] {
        let e = expect_error(send(coding, body).await.unwrap(), 400).await;
        assert_eq!(e["param"], "Content-Encoding", "{e}");
        assert!(e["message"].as_str().unwrap().contains(coding), "{e}");
    }
    assert!(mock.received().is_empty());
    assert_eq!(send("identity", plain).await.unwrap().status(), 200);
}

/// A path parameter that does not decode to UTF-8 (a response id, a key id, a team, a
/// dashboard file) is a 400 in OpenAI's shape, and an unknown dashboard file a 404 in
/// it: both were plain text.
#[tokio::test]
async fn malformed_path_parameters_get_openai_shaped_errors() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let call = |method: reqwest::Method, path: &str| {
        gw.client
            .request(method, gw.url(path))
            .bearer_auth(MASTER)
            .send()
    };
    for (method, path) in [
        (reqwest::Method::GET, "/v1/responses/resp_%ff%fe"),
        (reqwest::Method::DELETE, "/v1/responses/resp_%ff"),
        (reqwest::Method::GET, "/v1/responses/resp_%c3/input_items"),
        (reqwest::Method::DELETE, "/admin/keys/%ff"),
        (reqwest::Method::DELETE, "/admin/teams/%ff"),
        (reqwest::Method::GET, "/dashboard/%ff.js"),
    ] {
        let e = expect_error(call(method, path).await.unwrap(), 400).await;
        assert!(
            e["message"].as_str().unwrap().contains("UTF-8"),
            "{path}: {e}"
        );
    }
    let e = expect_error(
        call(reqwest::Method::GET, "/dashboard/nope.js")
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(e["code"], "unknown_url", "{e}");
}
