//! Routing end to end: policies over several mock backends, fallback, the breaker,
//! Retry-After holds, stickiness and the explain endpoint.

use std::time::Duration;

use bazaar::demo::sim::SimSpec;
use serde_json::json;

use crate::common::*;

/// Two local providers `a` and `b` serving model `m`, plus `extra` TOML.
fn two_backends(a: &MockUpstream, b: &MockUpstream, extra: &str) -> String {
    format!(
        r#"
        [providers.a]
        base_url = "{}"
        tier = "local"
        [providers.a.timeouts]
        first_byte = "500ms"
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
        {extra}
        "#,
        a.base_url(),
        b.base_url()
    )
}

fn chat(model: &str) -> serde_json::Value {
    json!({"model": model, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
}

async fn backend_of(gw: &TestGateway, body: serde_json::Value) -> String {
    let resp = gw.post("/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    resp.headers()["x-bazaar-backend"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn fastest_policy_learns_which_backend_is_faster() {
    let a = MockUpstream::with_spec(SimSpec {
        ttft: Duration::from_millis(2),
        ..Default::default()
    })
    .await;
    let b = MockUpstream::with_spec(SimSpec {
        ttft: Duration::from_millis(60),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&two_backends(&a, &b, "")).await;
    let mut to_a = 0;
    for _ in 0..30 {
        if backend_of(&gw, chat("fast")).await == "a/m" {
            to_a += 1;
        }
    }
    // Both get measured early on; after that the fast one takes the traffic.
    assert!(to_a >= 26, "a got {to_a} of 30");
    assert!(
        !b.received().is_empty(),
        "the slower backend was measured at least once"
    );
}

#[tokio::test]
async fn equal_backends_share_the_load_and_sessions_stick() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&two_backends(&a, &b, "")).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(backend_of(&gw, chat("m")).await);
    }
    assert_eq!(seen.len(), 2, "power-of-two-choices spreads equal backends");

    let mut body = chat("m");
    body["user"] = json!("user-42");
    let first = backend_of(&gw, body.clone()).await;
    for _ in 0..10 {
        assert_eq!(
            backend_of(&gw, body.clone()).await,
            first,
            "a session sticks to its backend"
        );
    }
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-bazaar-session", "s-7")
        .json(&chat("m"))
        .send()
        .await
        .unwrap();
    let sticky = resp.headers()["x-bazaar-backend"]
        .to_str()
        .unwrap()
        .to_string();
    for _ in 0..5 {
        let resp = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("x-bazaar-session", "s-7")
            .json(&chat("m"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-bazaar-backend"], sticky.as_str());
    }
}

#[tokio::test]
async fn falls_back_on_500_429_and_timeout() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&two_backends(&a, &b, "")).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "provider": {"order": ["a", "b"]}});
    a.script([Step::Status(500, "{}".into())]);
    assert_eq!(backend_of(&gw, body.clone()).await, "b/m");
    a.script([Step::Delay(Duration::from_secs(3))]);
    assert_eq!(backend_of(&gw, body.clone()).await, "b/m");
    a.script([Step::Raw {
        status: 429,
        headers: vec![("retry-after".into(), "30".into())],
        body: "{}".into(),
    }]);
    assert_eq!(backend_of(&gw, body.clone()).await, "b/m");
    // `a` is now held back for its Retry-After: explain says so, and calls go to `b` without trying `a`.
    let before = a.received().len();
    let explain: serde_json::Value = gw
        .post("/v1/route/explain", body.clone())
        .await
        .json()
        .await
        .unwrap();
    let a_entry = explain["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a_entry["verdict"], "rejected", "{explain}");
    assert!(
        a_entry["reason"].as_str().unwrap().contains("rate limited"),
        "{a_entry}"
    );
    assert_eq!(backend_of(&gw, body).await, "b/m");
    assert_eq!(a.received().len(), before);
}

#[tokio::test]
async fn breaker_opens_after_repeated_failures() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&two_backends(
        &a,
        &b,
        "[router.breaker]\nthreshold = 2\ncooldown = \"60s\"",
    ))
    .await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "provider": {"order": ["a", "b"]}});
    a.script([
        Step::Status(502, "{}".into()),
        Step::Status(502, "{}".into()),
    ]);
    assert_eq!(backend_of(&gw, body.clone()).await, "b/m");
    assert_eq!(backend_of(&gw, body.clone()).await, "b/m");
    let tried = a.received().len();
    assert_eq!(tried, 2);
    for _ in 0..5 {
        assert_eq!(backend_of(&gw, body.clone()).await, "b/m");
    }
    assert_eq!(
        a.received().len(),
        tried,
        "an open circuit sends nothing to `a`"
    );
    let explain: serde_json::Value = gw
        .post("/v1/route/explain", body)
        .await
        .json()
        .await
        .unwrap();
    let text = explain.to_string();
    assert!(text.contains("circuit open"), "{text}");
}

#[tokio::test]
async fn explain_lists_every_candidate_and_calls_nothing() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&two_backends(&a, &b, "")).await;
    let resp = gw
        .post("/v1/route/explain", json!({"model": "m", "messages": [{"role": "user", "content": "Write a python function"}], "provider": {"ignore": ["b"]}}))
        .await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["route"], "m");
    assert_eq!(v["task"], "code");
    assert_eq!(v["chosen"], "a/m");
    let verdicts: Vec<&str> = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["chosen", "rejected"]);
    assert!(a.received().is_empty() && b.received().is_empty());
}

#[tokio::test]
async fn bad_routing_controls_are_clear_errors() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&two_backends(&a, &b, "")).await;
    let mut body = chat("m");
    body["provider"] = json!({"only": ["nobody"]});
    let e = expect_error(gw.post("/v1/chat/completions", body).await, 400).await;
    assert!(e["message"].as_str().unwrap().contains("nobody"));
    let mut body = chat("m");
    body["bazaar"] = json!({"policy": "vibes"});
    expect_error(gw.post("/v1/chat/completions", body).await, 400).await;
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-bazaar-tiers", "frontier")
        .json(&chat("m"))
        .send()
        .await
        .unwrap();
    let e = expect_error(resp, 400).await;
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("a/m: tier local not allowed by request") && message.contains("b/m"),
        "{message}"
    );
    expect_error(
        gw.post("/v1/chat/completions", chat("no-such-route")).await,
        404,
    )
    .await;
}
