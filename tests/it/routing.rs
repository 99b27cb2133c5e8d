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

/// Teaches the router that `provider`/`model` answers in `latency`: enough samples that
/// the moving average is the seeded value, whatever real calls measured before.
fn seed_latency(gw: &TestGateway, provider: &str, model: &str, latency: Duration) {
    use bazaar::router::breaker::BreakerSettings;
    use bazaar::router::stats::Outcome;
    let stats = gw.state.router.stats.backend(provider, model);
    for _ in 0..100 {
        let outcome = Outcome::Success {
            ttft: latency,
            total: latency,
            output_tokens: None,
        };
        stats.record(
            outcome,
            None,
            tokio::time::Instant::now(),
            &BreakerSettings::default(),
        );
    }
}

#[tokio::test]
async fn fastest_policy_learns_which_backend_is_faster() {
    let a = MockUpstream::start().await;
    // The slow backend's measured latency is at least its delay, however loaded the
    // machine; the fast one is known to answer in a millisecond.
    let b = MockUpstream::with_spec(SimSpec {
        ttft: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&two_backends(&a, &b, "")).await;
    seed_latency(&gw, "a", "m", Duration::from_millis(1));
    let mut to_a = 0;
    for _ in 0..30 {
        if backend_of(&gw, chat("fast")).await == "a/m" {
            to_a += 1;
        }
    }
    // The unmeasured backend is assumed as fast as the best one, so it is tried (once);
    // after its measurement the fast one takes the traffic.
    assert_eq!(
        b.received().len(),
        1,
        "the slower backend was measured once"
    );
    assert_eq!(to_a, 29, "a got {to_a} of 30");
    let learned = gw
        .state
        .router
        .stats
        .backend("b", "m")
        .snapshot(tokio::time::Instant::now());
    assert!(learned.ttft_ms.unwrap() >= 1000.0, "{learned:?}");
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

/// Three backends for one route: `cheap` (local-priced, low quality, no tools), `mid`
/// and `premium` (expensive, best quality), with prices and facts set in config.
async fn three_priced() -> (Vec<MockUpstream>, TestGateway) {
    let mocks = vec![
        MockUpstream::start().await,
        MockUpstream::start().await,
        MockUpstream::start().await,
    ];
    let toml = format!(
        r#"
        # The policy arithmetic below is on the models' priors: no per-prompt prediction.
        [router.predictor]
        enabled = false
        [providers.cheap]
        base_url = "{}"
        tier = "open-hosted"
        [providers.mid]
        base_url = "{}"
        tier = "open-hosted"
        [providers.premium]
        base_url = "{}"
        tier = "frontier"
        [[models]]
        id = "small"
        provider = "cheap"
        input_price = 0.05
        output_price = "0.10"
        quality = 40
        tools = false
        context = 4096
        [[models]]
        id = "medium"
        provider = "mid"
        input_price = 0.6
        output_price = 0.8
        quality = 65
        tools = true
        [[models]]
        id = "large"
        provider = "premium"
        input_price = 2.5
        output_price = 10
        quality = 90
        tools = true
        [routes.r]
        models = ["small", "medium", "large"]
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#,
        mocks[0].base_url(),
        mocks[1].base_url(),
        mocks[2].base_url()
    );
    let gw = TestGateway::start(&toml).await;
    (mocks, gw)
}

/// `n` calls of `body`, counted by the backend that served each, after pinning the
/// backends' latencies (medium fastest, then large, then small) so that no decision
/// rests on how fast the mocks happened to answer.
async fn split(
    gw: &TestGateway,
    body: serde_json::Value,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    seed_latency(gw, "cheap", "small", Duration::from_secs(30));
    seed_latency(gw, "mid", "medium", Duration::from_millis(1));
    seed_latency(gw, "premium", "large", Duration::from_secs(15));
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        *counts
            .entry(backend_of(gw, body.clone()).await)
            .or_insert(0) += 1;
    }
    counts
}

fn with_policy(policy: &str) -> serde_json::Value {
    json!({"model": "r", "max_tokens": 5, "messages": [{"role": "user", "content": "hello there"}], "bazaar": {"policy": policy}})
}

#[tokio::test]
async fn each_policy_produces_its_traffic_split() {
    let (_mocks, gw) = three_priced().await;
    let all = |backend: &str| {
        [(backend.to_string(), 10)]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        split(&gw, with_policy("cheapest"), 10).await,
        all("cheap/small")
    );
    assert_eq!(
        split(&gw, with_policy("quality"), 10).await,
        all("premium/large")
    );
    // Balanced weighs absolute units: with the default weights a quality point is worth
    // $1 per 1,000 calls, and this 3-token prompt costs fractions of a cent per 1,000
    // calls anywhere, so the 25-point quality gap decides.
    assert_eq!(
        split(&gw, with_policy("balanced"), 10).await,
        all("premium/large")
    );
    // Valued at $1,000 per 1,000 calls a point, large's $0.05 per 1,000 calls over medium
    // outweighs its 25 points; medium's $0.005 over small does not.
    let mut thrifty = with_policy("balanced");
    thrifty["bazaar"]["weights"] = json!({"quality": 1, "cost": 1000});
    assert_eq!(split(&gw, thrifty, 10).await, all("mid/medium"));
    // Per-request weights: quality alone picks large.
    let mut picky = with_policy("balanced");
    picky["bazaar"]["weights"] = json!({"quality": 1});
    assert_eq!(split(&gw, picky, 10).await, all("premium/large"));
    // A floor between small's and medium's predicted quality for this prompt.
    let v: serde_json::Value = gw
        .post("/v1/route/explain", with_policy("cheapest"))
        .await
        .json()
        .await
        .unwrap();
    let quality = |model: &str| {
        v["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["model"] == model)
            .unwrap()["quality"]
            .as_f64()
            .unwrap()
    };
    let (small, medium) = (quality("small"), quality("medium"));
    assert!(small < medium && medium < quality("large"));
    let mut floor = with_policy("cheapest-above-quality");
    floor["bazaar"]["quality_floor"] = json!((small + medium) / 2.0);
    assert_eq!(split(&gw, floor, 10).await, all("mid/medium"));
    // The fastest backend takes the traffic.
    assert_eq!(
        split(&gw, with_policy("fastest"), 10).await,
        all("mid/medium")
    );
}

#[tokio::test]
async fn hard_constraints_filter_before_scoring() {
    let (_mocks, gw) = three_priced().await;
    // Tools: the cheap model has none, so the cheapest survivor is medium.
    let mut tools = with_policy("cheapest");
    tools["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    assert_eq!(backend_of(&gw, tools).await, "mid/medium");
    // A prompt larger than small's 4k window.
    let mut long = with_policy("cheapest");
    long["messages"][0]["content"] = json!("word ".repeat(5000));
    assert_eq!(backend_of(&gw, long).await, "mid/medium");
    // A price ceiling keeps the quality policy off the premium model.
    let mut capped = with_policy("quality");
    capped["provider"] = json!({"max_price": {"prompt": 1, "completion": 1}});
    assert_eq!(backend_of(&gw, capped).await, "mid/medium");
    // Explain shows every verdict with its reason and the cost terms.
    let mut explain = with_policy("cheapest");
    explain["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    let v: serde_json::Value = gw
        .post("/v1/route/explain", explain)
        .await
        .json()
        .await
        .unwrap();
    let cands = v["candidates"].as_array().unwrap();
    let small = cands.iter().find(|c| c["model"] == "small").unwrap();
    assert_eq!(small["reason"], "does not support tools");
    let medium = cands.iter().find(|c| c["model"] == "medium").unwrap();
    assert_eq!(medium["verdict"], "chosen");
    assert!(medium["expected_cost_usd"]
        .as_str()
        .unwrap()
        .starts_with("0.0000"));
}
