//! Budgets and rate limits: refused before any backend is called, and concurrency
//! cannot push spend past the limit.

use serde_json::json;

use crate::common::*;

fn config(mock: &MockUpstream, key_extra: &str) -> String {
    format!(
        r#"
        [server]
        master_key = "{MASTER}"
        [providers.mock]
        base_url = "{}"
        tier = "open-hosted"
        [[models]]
        id = "m"
        provider = "mock"
        input_price = 0
        output_price = 1
        [[keys]]
        name = "app"
        key = "{KEY}"
        team = "web"
        {key_extra}
        "#,
        mock.base_url()
    )
}

/// Each call reserves (and, with max_tokens = 5, costs exactly) 5 output tokens at $1/M:
/// 5,000 nano-dollars. A budget of $0.00005 fits exactly 10 calls.
fn call() -> serde_json::Value {
    json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_cannot_overshoot_the_budget() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock, r#"budget = "0.00005/day""#)).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (client, url) = (gw.client.clone(), gw.url("/v1/chat/completions"));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(KEY)
                .json(&call())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            402 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 10, "the budget fits exactly 10 calls");
    assert_eq!(refused, 190);
    assert_eq!(
        mock.received().len(),
        10,
        "refused calls never reach a backend"
    );
    let e = expect_error(gw.post("/v1/chat/completions", call()).await, 402).await;
    assert_eq!(e["type"], "insufficient_quota");
    // The master key has no budget.
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&call())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn rpm_limit_answers_429_with_retry_after() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock, "rpm = 3")).await;
    for _ in 0..3 {
        assert_eq!(gw.post("/v1/chat/completions", call()).await.status(), 200);
    }
    let resp = gw.post("/v1/chat/completions", call()).await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    let e = expect_error(resp, 429).await;
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("requests per minute"));
    assert_eq!(mock.received().len(), 3);
}

#[tokio::test]
async fn key_model_and_tier_allow_lists() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock, r#"models = ["other"]"#)).await;
    let e = expect_error(gw.post("/v1/chat/completions", call()).await, 403).await;
    assert_eq!(e["type"], "permission_error");
    let gw = TestGateway::start(&config(&mock, r#"tiers = ["local"]"#)).await;
    let e = expect_error(gw.post("/v1/chat/completions", call()).await, 400).await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not allowed by key"),
        "{e}"
    );
}
