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
