//! Every failure reaches the client as OpenAI-shaped JSON with the right status.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

fn chat_body() -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

async fn setup() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    (mock, gw)
}

#[tokio::test]
async fn missing_or_wrong_key_is_401() {
    let (mock, gw) = setup().await;
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    expect_error(resp, 401).await;
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("bzr-wrong")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    let e = expect_error(resp, 401).await;
    assert_eq!(e["type"], "authentication_error");
    assert!(mock.received().is_empty());
}

#[tokio::test]
async fn unknown_model_is_404() {
    let (_mock, gw) = setup().await;
    let e = expect_error(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["param"], "model");
}

#[tokio::test]
async fn malformed_and_wrong_typed_bodies_are_400_naming_the_field() {
    let (_mock, gw) = setup().await;
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{\"model\": \"gpt-4o-mini\", ")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400).await;
    let e = expect_error(
        gw.post("/v1/chat/completions", json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": "lots"})).await,
        400,
    )
    .await;
    assert_eq!(e["param"], "max_tokens");
}

#[tokio::test]
async fn oversized_body_is_413() {
    let mock = MockUpstream::start().await;
    let toml = single_provider_config(&mock).replace(
        "drain_timeout = \"5s\"",
        "drain_timeout = \"5s\"\nmax_body_bytes = 4096",
    );
    let gw = TestGateway::start(&toml).await;
    let big = "x".repeat(10_000);
    let e = expect_error(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": big}]}),
        )
        .await,
        413,
    )
    .await;
    assert_eq!(e["code"], "body_too_large");
}

#[tokio::test]
async fn upstream_5xx_is_502_and_4xx_is_passed_on() {
    let (mock, gw) = setup().await;
    mock.script([Step::Status(
        500,
        r#"{"error":{"message":"boom","type":"server_error"}}"#.into(),
    )]);
    expect_error(gw.post("/v1/chat/completions", chat_body()).await, 502).await;

    mock.script([Step::Status(
        400,
        r#"{"error":{"message":"temperature is out of range","type":"invalid_request_error","param":"temperature","code":"bad_value"}}"#.into(),
    )]);
    let e = expect_error(gw.post("/v1/chat/completions", chat_body()).await, 400).await;
    assert_eq!(e["message"], "temperature is out of range");
    assert_eq!(e["param"], "temperature");
}

#[tokio::test]
async fn upstream_rejecting_our_key_is_502_without_the_key() {
    let (mock, gw) = setup().await;
    mock.script([Step::Status(
        401,
        r#"{"error":{"message":"Incorrect API key provided: sk-upstream-secret-123"}}"#.into(),
    )]);
    let resp = gw.post("/v1/chat/completions", chat_body()).await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("sk-upstream"), "{text}");
}

#[tokio::test]
async fn upstream_connect_failure_is_502() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let toml = format!(
        r#"
        [providers.dead]
        base_url = "http://127.0.0.1:{port}/v1"
        tier = "local"
        models = ["gpt-4o-mini"]
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#
    );
    let gw = TestGateway::start(&toml).await;
    let e = expect_error(gw.post("/v1/chat/completions", chat_body()).await, 502).await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("could not reach provider `dead`"),
        "{e}"
    );
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let (mock, gw) = setup().await;
    mock.script([Step::Delay(Duration::from_secs(5))]);
    let e = expect_error(gw.post("/v1/chat/completions", chat_body()).await, 504).await;
    assert_eq!(e["type"], "timeout_error");
}

#[tokio::test]
async fn stream_silent_before_its_first_chunk_is_504() {
    let (mock, gw) = setup().await;
    // First attempt hangs after its headers: no first chunk within first_byte → 504 before any byte.
    mock.script([Step::Hang]);
    let resp = gw.post("/v1/chat/completions", json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(resp.status(), 504);
}

#[tokio::test]
async fn stream_cut_after_first_byte_ends_with_error_event() {
    let (mock, gw) = setup().await;
    mock.script([Step::CutAfter(3)]);
    let resp = gw.post("/v1/chat/completions", json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(resp).await;
    assert_eq!(events.len(), 4, "{events:?}");
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "upstream_error");
    assert!(!events.iter().any(|e| e == "[DONE]"));
}

#[tokio::test]
async fn fallback_to_the_next_provider_on_5xx_and_429() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let toml = format!(
        r#"
        [providers.a]
        base_url = "{}"
        tier = "local"
        [providers.b]
        base_url = "{}"
        tier = "local"
        [[models]]
        id = "m"
        provider = "a"
        [[models]]
        id = "m"
        provider = "b"
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#,
        a.base_url(),
        b.base_url()
    );
    let gw = TestGateway::start(&toml).await;
    a.script([Step::Status(503, "{}".into())]);
    let resp = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-bazaar-backend"], "b/m");

    a.script([Step::Raw {
        status: 429,
        headers: vec![("retry-after".into(), "7".into())],
        body: "{}".into(),
    }]);
    b.script([Step::Raw {
        status: 429,
        headers: vec![("retry-after".into(), "3".into())],
        body: "{}".into(),
    }]);
    let resp = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    // Every backend said 429: the client waits the sooner of the two, not the later.
    assert_eq!(resp.headers()["retry-after"], "3");
    expect_error(resp, 429).await;
}

#[tokio::test]
async fn unknown_path_and_wrong_method_are_json() {
    let (_mock, gw) = setup().await;
    let resp = gw.client.get(gw.url("/v2/nothing")).send().await.unwrap();
    expect_error(resp, 404).await;
    let resp = gw
        .client
        .get(gw.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
}
