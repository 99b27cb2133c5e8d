//! Issue 13, the rules a hostile client tries to get around: allow-lists over every way
//! a request names a model, absurd numbers, unbounded strings, and what the client is
//! told when every backend is rate-limited.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// A key allowed only `cheap` (tier local) and its fallback-happy caller.
const LIMITED: &str = "bzr-limited-key";

/// Providers `a` (local, serves `cheap`) and `b` (frontier, serves `other` and the
/// embedding model), a route `fast` over `cheap`, a route `all` over every model, and a
/// key `LIMITED` whose allow-list is `key_models` and whose tiers are `key_tiers`.
fn allow_list_config(
    a: &MockUpstream,
    b: &MockUpstream,
    key_models: &str,
    key_tiers: &str,
) -> String {
    format!(
        r#"
        [providers.a]
        base_url = "{}"
        tier = "local"
        [providers.b]
        base_url = "{}"
        tier = "frontier"
        [[models]]
        id = "cheap"
        provider = "a"
        [[models]]
        id = "other"
        provider = "b"
        [[models]]
        id = "text-embedding-3-small"
        provider = "b"
        [routes.fast]
        models = ["cheap"]
        [routes.all]
        policy = "cheapest"
        [[keys]]
        name = "limited"
        key = "{LIMITED}"
        models = {key_models}
        tiers = {key_tiers}
        "#,
        a.base_url(),
        b.base_url()
    )
}

fn chat(model: &str) -> serde_json::Value {
    json!({"model": model, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn issue_13_allow_lists_cover_every_name_a_request_can_give() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&allow_list_config(&a, &b, r#"["cheap"]"#, "[]")).await;
    let chat_path = "/v1/chat/completions";

    // The reported bypass: an allowed model, a forbidden fallback, the allowed provider ignored.
    let mut body = chat("cheap");
    body["models"] = json!(["other"]);
    body["provider"] = json!({"ignore": ["a"]});
    let e = expect_error(gw.post_as(LIMITED, chat_path, body).await, 403).await;
    assert!(e["message"].as_str().unwrap().contains("models[0]"), "{e}");
    // The same through provider.order and provider.only.
    let mut body = chat("cheap");
    body["models"] = json!(["cheap", "other"]);
    body["provider"] = json!({"order": ["b", "a"], "only": ["b"]});
    let e = expect_error(gw.post_as(LIMITED, chat_path, body).await, 403).await;
    assert!(e["message"].as_str().unwrap().contains("models[1]"), "{e}");
    // Routes the key was not given, whatever models they cover.
    for route in ["fast", "all"] {
        expect_error(gw.post_as(LIMITED, chat_path, chat(route)).await, 403).await;
    }
    // The other front ends plan the same way.
    let messages =
        json!({"model": "other", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw
        .client
        .post(gw.url("/v1/messages"))
        .header("x-api-key", LIMITED)
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let embed = json!({"model": "text-embedding-3-small", "input": "hi"});
    expect_error(gw.post_as(LIMITED, "/v1/embeddings", embed).await, 403).await;
    assert!(b.received().is_empty(), "a forbidden backend was called");

    // What the key may use still works, fallbacks to itself included.
    let mut body = chat("cheap");
    body["models"] = json!(["cheap"]);
    let resp = gw.post_as(LIMITED, chat_path, body).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
}

#[tokio::test]
async fn issue_13_an_allowed_route_cannot_reach_past_itself_or_its_tiers() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&allow_list_config(
        &a,
        &b,
        r#"["fast", "all"]"#,
        r#"["local"]"#,
    ))
    .await;
    let chat_path = "/v1/chat/completions";
    // `fast` is allowed; its fallback to a model outside the list is not.
    let mut body = chat("fast");
    body["models"] = json!(["other"]);
    let e = expect_error(gw.post_as(LIMITED, chat_path, body).await, 403).await;
    assert!(e["message"].as_str().unwrap().contains("models[0]"), "{e}");
    // `all` covers every model, but the key's tier list still holds for each candidate.
    let mut body = chat("all");
    body["provider"] = json!({"order": ["b"]});
    body["bazaar"] = json!({"tiers": ["frontier", "local"]});
    for _ in 0..4 {
        let resp = gw.post_as(LIMITED, chat_path, body.clone()).await;
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
        assert!(resp.headers()["x-bazaar-backend"]
            .to_str()
            .unwrap()
            .starts_with("a/"));
    }
    // With only frontier candidates left, nothing may serve it.
    body["bazaar"] = json!({"tiers": ["frontier"]});
    let resp = gw.post_as(LIMITED, chat_path, body).await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert!(
        b.received().is_empty(),
        "a backend of a forbidden tier was called"
    );
}

#[tokio::test]
async fn issue_13_key_tiers_hold_on_embeddings_too() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&allow_list_config(&a, &b, "[]", r#"["local"]"#)).await;
    let embed = json!({"model": "text-embedding-3-small", "input": "hi"});
    let resp = gw.post_as(LIMITED, "/v1/embeddings", embed).await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert!(
        b.received().is_empty(),
        "a backend of a forbidden tier was called"
    );
}

/// Two local providers `a` and `b` serving model `m`, and the test key.
fn two_backends(a: &MockUpstream, b: &MockUpstream) -> String {
    allow_list_config(a, b, "[]", "[]").replace("id = \"other\"", "id = \"cheap\"")
        + &format!("[[keys]]\nname = \"app\"\nkey = \"{KEY}\"\n")
}

fn rate_limited(retry_after_secs: u32) -> Step {
    Step::Raw {
        status: 429,
        headers: vec![("retry-after".into(), retry_after_secs.to_string())],
        body: json!({"error": {"message": "slow down", "type": "rate_limit_error"}}).to_string(),
    }
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {}", resp.status()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Issue 13, item 8: when every backend is rate-limited, the client is told so (429, in
/// OpenAI's shape) with the soonest moment one frees up, both when the upstreams answer
/// 429 now and when their earlier Retry-After still holds them back.
#[tokio::test]
async fn issue_13_every_backend_rate_limited_is_a_429_with_the_soonest_retry_after() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&two_backends(&a, &b)).await;
    a.script([rate_limited(40)]);
    b.script([rate_limited(30)]);
    let resp = gw.post("/v1/chat/completions", chat("cheap")).await;
    assert_eq!(retry_after(&resp), 30);
    let e = expect_error(resp, 429).await;
    assert_eq!(e["type"], "rate_limit_error", "{e}");
    assert_eq!((a.received().len(), b.received().len()), (1, 1));

    // Both held back now: refused without calling either, soonest release first.
    let resp = gw.post("/v1/chat/completions", chat("cheap")).await;
    let after = retry_after(&resp);
    assert!((28..=30).contains(&after), "Retry-After {after}");
    expect_error(resp, 429).await;
    assert_eq!((a.received().len(), b.received().len()), (1, 1));
}

/// Issue 13, item 9: `/metrics` behind `[server] metrics_key`, the Bearer scheme in any
/// case (and no guessing at a header without it), and a deeply nested unknown field
/// refused instead of forwarded.
#[tokio::test]
async fn issue_13_metrics_key_bearer_scheme_and_nesting_depth() {
    let mock = MockUpstream::start().await;
    let toml = single_provider_config(&mock).replace(
        "drain_timeout = \"5s\"",
        "drain_timeout = \"5s\"\nmetrics_key = \"bzr-scraper\"",
    );
    let gw = TestGateway::start(&toml).await;
    let metrics = |key: Option<&str>| {
        let req = gw.client.get(gw.url("/metrics"));
        let req = match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        };
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(metrics(None).await, 401);
    assert_eq!(metrics(Some(KEY)).await, 401);
    assert_eq!(metrics(Some("bzr-scraper")).await, 200);
    assert_eq!(metrics(Some(MASTER)).await, 200);

    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let with_auth = |value: String| {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", value)
            .json(&chat)
            .send()
    };
    for ok in [format!("BEARER {KEY}"), format!("bearer {KEY}")] {
        assert_eq!(with_auth(ok.clone()).await.unwrap().status(), 200, "{ok}");
    }
    for bad in [KEY.to_string(), format!("Basic {KEY}")] {
        expect_error(with_auth(bad).await.unwrap(), 401).await;
    }

    let received = mock.received().len();
    let deep = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi"}}],"x_unknown":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    let e = expect_error(resp, 400).await;
    assert!(e["message"].as_str().unwrap().contains("deeper"), "{e}");
    assert_eq!(
        mock.received().len(),
        received,
        "the deep body was forwarded"
    );
}

/// Issue 13, item 5: numbers that would overflow the gateway's arithmetic are refused
/// with a 400 naming the field; `n` counts in the reservation; an upstream's impossible
/// usage is not billed as reported; a spend query's time cannot wrap.
#[tokio::test]
async fn issue_13_absurd_numbers_are_refused_or_counted_never_wrapped() {
    let mock = MockUpstream::start().await;
    // $0.001 a day: 1,000 output tokens.
    let gw = TestGateway::start(&crate::budgets::config(&mock, r#"budget = "0.001/day""#)).await;
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let huge = u64::MAX;
    let cases = [
        ("/v1/chat/completions", "max_tokens", json!(huge)),
        ("/v1/chat/completions", "max_completion_tokens", json!(huge)),
        ("/v1/chat/completions", "max_tokens", json!(1u64 << 40)),
        ("/v1/chat/completions", "n", json!(1_000_000)),
        ("/v1/chat/completions", "n", json!(0)),
        ("/v1/completions", "max_tokens", json!(huge)),
        ("/v1/completions", "n", json!(1_000_000)),
        ("/v1/completions", "best_of", json!(1_000_000)),
    ];
    for (path, field, value) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        if path == "/v1/completions" {
            body["prompt"] = json!("hi");
        }
        let e = expect_error(gw.post(path, body).await, 400).await;
        assert_eq!(e["param"], field, "{path} {field}={value}: {e}");
    }
    let messages =
        json!({"model": "m", "max_tokens": huge, "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw
        .client
        .post(gw.url("/v1/messages"))
        .header("x-api-key", KEY)
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        mock.received().is_empty(),
        "an absurd request reached the upstream"
    );

    // The largest allowed cap is reserved in full: far over the budget.
    let mut body = base.clone();
    body["max_tokens"] = json!(u32::MAX);
    expect_error(gw.post("/v1/chat/completions", body).await, 402).await;
    // `n` choices each may use max_tokens: 20 × 100 tokens is over 1,000; 1 × 100 is not.
    let mut body = base.clone();
    body["max_tokens"] = json!(100);
    body["n"] = json!(20);
    expect_error(gw.post("/v1/chat/completions", body.clone()).await, 402).await;
    body["n"] = json!(1);
    assert_eq!(gw.post("/v1/chat/completions", body).await.status(), 200);

    // An upstream reporting an impossible usage is billed on the gateway's own count.
    mock.script([Step::Status(
        200,
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": huge, "completion_tokens": huge, "total_tokens": huge}})
        .to_string(),
    )]);
    let mut body = base.clone();
    body["max_tokens"] = json!(100);
    let resp = gw.post("/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["usage"]["estimated"], true, "{body}");
    assert!(
        body["usage"]["completion_tokens"].as_u64().unwrap() < 100,
        "{body}"
    );

    for query in [
        "from=9223372036854775807",
        "to=-9223372036854775808",
        "from=-1",
    ] {
        let resp = gw
            .client
            .get(gw.url(&format!("/v1/spend?{query}")))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap();
        let e = expect_error(resp, 400).await;
        assert_eq!(e["param"], query.split('=').next().unwrap(), "{e}");
    }
}

/// Issue 13, item 7: a client that hangs up on a non-streamed call before the upstream
/// answers leaves the call's row (499 `client_closed`, nothing charged), and the
/// upstream request is dropped with it.
#[tokio::test]
async fn issue_13_an_abandoned_call_is_ledgered_and_its_upstream_cancelled() {
    let mock = MockUpstream::start().await;
    let toml = single_provider_config(&mock)
        .replace("first_byte = \"2s\"", "first_byte = \"60s\"")
        .replace("idle = \"1s\"", "idle = \"60s\"")
        .replace("total = \"10s\"", "total = \"60s\"");
    let gw = TestGateway::start(&toml).await;
    mock.script([Step::Hang]);
    let id = "abandoned-call-1";
    let sent = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", id)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send();
    // Hang up once the upstream has the request.
    tokio::select! {
        r = sent => panic!("the call ended before the client left: {r:?}"),
        _ = mock.wait_received(1) => {}
    }
    tokio::time::timeout(Duration::from_secs(5), mock.wait_closed(1))
        .await
        .expect("the upstream request is still open after the client left");
    let row = crate::metering::row_of(&gw, id).await;
    assert_eq!(row["status"], 499, "{row}");
    assert_eq!(row["error_type"], "client_closed", "{row}");
}

/// Issue 13, item 6: identifiers are bounded when parsed; a 7 MB model name is a short
/// 400 (not echoed back, not stored), and so are long users, fallbacks, sessions,
/// metadata and key names.
#[tokio::test]
async fn issue_13_long_identifiers_are_refused_not_echoed_or_stored() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let long = "m".repeat(7 * 1024 * 1024);
    let mut cases = Vec::new();
    let mut body = chat.clone();
    body["model"] = json!(long);
    cases.push(("model", body));
    let mut body = chat.clone();
    body["user"] = json!("u".repeat(257));
    cases.push(("user", body));
    let mut body = chat.clone();
    body["models"] = json!(["x".repeat(300)]);
    cases.push(("models[0]", body));
    let mut body = chat.clone();
    body["models"] = json!(vec!["gpt-4o-mini"; 33]);
    cases.push(("models", body));
    let mut body = chat.clone();
    body["bazaar"] = json!({"session": "s".repeat(300)});
    cases.push(("bazaar.session", body));
    let mut body = chat.clone();
    body["metadata"] = (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    cases.push(("metadata", body));
    let mut body = chat.clone();
    body["metadata"] = json!({"k": "v".repeat(600)});
    cases.push(("metadata", body));
    for (param, body) in cases {
        let resp = gw.post("/v1/chat/completions", body).await;
        let e = expect_error(resp, 400).await;
        assert_eq!(e["param"], param, "{e}");
        assert!(e["message"].as_str().unwrap().len() < 200, "{param}: {e}");
    }
    let embed = json!({"model": long, "input": "hi"});
    let e = expect_error(gw.post("/v1/embeddings", embed).await, 400).await;
    assert_eq!(e["param"], "model");
    assert!(mock.received().is_empty());

    let resp = gw
        .client
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"name": "n".repeat(1000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.len() < 500, "{}", &text[..500]);
}
