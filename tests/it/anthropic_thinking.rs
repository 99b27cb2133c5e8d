//! Anthropic refuses `temperature` and `top_k` beside extended thinking, and `top_p`
//! below 0.95. A translated call that thinks (chat, Responses) reaches an Anthropic
//! backend with the thinking the client asked for and without those fields, and is
//! served; without thinking they are sent as written. A Messages body is Anthropic's
//! own and passes through as the client wrote it.

use serde_json::{json, Value};

use crate::common::*;

/// A gateway whose model `m` is served by the mock as an Anthropic backend.
async fn anthropic() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let gw = one_backend("kind = \"anthropic\"", &mock.base_url(), "").await;
    (mock, gw)
}

/// The sampling fields of the one body the mock received, and its `thinking`.
fn sent_sampling(mock: &MockUpstream) -> (Value, [Option<Value>; 3]) {
    let received = mock.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let body = &received[0].body;
    let fields = ["temperature", "top_p", "top_k"].map(|f| body.get(f).cloned());
    (body["thinking"].clone(), fields)
}

fn user_turn() -> Value {
    json!([{"role": "user", "content": "Say hello"}])
}

#[tokio::test]
async fn chat_with_reasoning_effort_reaches_anthropic_without_conflicting_sampling() {
    for stream in [false, true] {
        let (mock, gw) = anthropic().await;
        let body = json!({"model": "m", "stream": stream, "reasoning_effort": "low",
                          "temperature": 0.3, "top_p": 0.5, "top_k": 7, "messages": user_turn()});
        let resp = gw.post("/v1/chat/completions", body).await;
        assert_eq!(resp.status(), 200, "stream {stream}");
        let _ = resp.text().await.unwrap();
        let (thinking, sampling) = sent_sampling(&mock);
        assert_eq!(thinking["type"], "enabled", "stream {stream}");
        assert_eq!(sampling, [None, None, None], "stream {stream}");
    }
    // Without thinking, every field goes as written.
    let (mock, gw) = anthropic().await;
    let body = json!({"model": "m", "temperature": 0.3, "top_p": 0.5, "top_k": 7, "messages": user_turn()});
    assert_eq!(gw.post("/v1/chat/completions", body).await.status(), 200);
    let (thinking, sampling) = sent_sampling(&mock);
    assert!(thinking.is_null());
    assert_eq!(
        sampling,
        [Some(json!(0.3)), Some(json!(0.5)), Some(json!(7))]
    );
}

#[tokio::test]
async fn responses_with_reasoning_reach_anthropic_without_conflicting_sampling() {
    let (mock, gw) = anthropic().await;
    let body = json!({"model": "m", "input": "Say hello", "reasoning": {"effort": "medium"},
                      "temperature": 0.3, "top_p": 0.97});
    let resp = gw.post("/v1/responses", body).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let (thinking, sampling) = sent_sampling(&mock);
    assert_eq!(thinking["type"], "enabled");
    // A top_p from 0.95 to 1 is allowed beside thinking and kept.
    assert_eq!(sampling, [None, Some(json!(0.97)), None]);
}

/// The Messages pass-through is not a translation: the client's own Anthropic body goes
/// up as written, conflicting fields included, and Anthropic answers for them.
#[tokio::test]
async fn messages_with_thinking_pass_through_as_written() {
    let (mock, gw) = anthropic().await;
    let body = json!({"model": "m", "max_tokens": 4096, "messages": user_turn(),
                      "thinking": {"type": "enabled", "budget_tokens": 2048},
                      "temperature": 0.3, "top_p": 0.5, "top_k": 7});
    let resp = gw
        .client
        .post(gw.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let (thinking, sampling) = sent_sampling(&mock);
    assert_eq!(thinking, json!({"type": "enabled", "budget_tokens": 2048}));
    assert_eq!(
        sampling,
        [Some(json!(0.3)), Some(json!(0.5)), Some(json!(7))]
    );
}
