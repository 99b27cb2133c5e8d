//! Budgets and rate limits: refused before any backend is called, and concurrency
//! cannot push spend past the limit.

use serde_json::json;

use crate::common::*;

/// One model `m` at $0 input and $1 per million output tokens, and the test key with
/// `key_extra`.
pub fn config(mock: &MockUpstream, key_extra: &str) -> String {
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

#[tokio::test]
async fn virtual_keys_from_the_admin_api() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    // Only the master key may use the admin API.
    let resp = gw
        .client
        .post(gw.url("/admin/keys"))
        .bearer_auth(KEY)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 403).await;
    let resp = gw
        .client
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"name": "partner", "team": "ext", "budget": "0.00001/month", "models": ["m"], "markup_percent": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: serde_json::Value = resp.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("bzr-"));
    let id = created["id"].as_str().unwrap().to_string();

    // The new key works at once, within its budget (one 5-token call at $1/M plus 5% fits; a second does not).
    let use_key = |body: serde_json::Value| {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    assert_eq!(use_key(call()).await.unwrap().status(), 200);
    assert_eq!(use_key(call()).await.unwrap().status(), 402);
    let list: serde_json::Value = gw
        .client
        .get(gw.url("/admin/keys"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["keys"][0]["name"], "partner");
    assert!(
        !list.to_string().contains(&key),
        "a listed key never shows the key"
    );

    crate::hostile::revoke_key(&gw, &id).await;
    expect_error(use_key(call()).await.unwrap(), 401).await;
    let resp = gw
        .client
        .delete(gw.url("/admin/keys/key_nope"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    expect_error(resp, 404).await;

    // Teams: limits shared by their keys.
    let resp = gw
        .client
        .post(gw.url("/admin/teams"))
        .bearer_auth(MASTER)
        .json(&json!({"name": "web", "rpm": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(gw.post("/v1/chat/completions", call()).await.status(), 200);
    expect_error(gw.post("/v1/chat/completions", call()).await, 429).await;
}

#[tokio::test]
async fn unreachable_shared_state_applies_each_keys_policy() {
    let mock = MockUpstream::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = config(&mock, "rpm = 100").replace("[server]", &format!("[state]\nredis = \"redis://127.0.0.1:{dead}/\"\n[server]"))
        + "\n[[keys]]\nname = \"lenient\"\nkey = \"bzr-lenient\"\nrpm = 100\non_shared_state_error = \"open\"\n";
    let gw = TestGateway::start(&toml).await;
    let e = expect_error(gw.post("/v1/chat/completions", call()).await, 503).await;
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("limits cannot be checked"));
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("bzr-lenient")
        .json(&call())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "fail-open admits the call unchecked");
}

/// `config(mock, "")` with its ledger in a SQLite file of a fresh directory (returned, to
/// remove at the end), so a second gateway on the same config finds the first one's rows.
fn restartable_config(mock: &MockUpstream, tag: &str) -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "bazaar-it-{tag}-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = config(mock, "")
        + &format!(
            "\n[ledger]\nurl = \"sqlite://{}\"\n",
            dir.join("ledger.sqlite").display()
        );
    (toml, dir)
}

/// A restart must not reset budgets: virtual keys' and admin-defined teams' windows are
/// seeded from the ledger like the config's own.
#[tokio::test]
async fn virtual_key_and_team_budgets_survive_a_restart() {
    let mock = MockUpstream::start().await;
    let (toml, dir) = restartable_config(&mock, "restart");
    let admin = |gw: &TestGateway, path: &str, body: serde_json::Value| {
        gw.client
            .post(gw.url(path))
            .bearer_auth(MASTER)
            .json(&body)
            .send()
    };
    let gw = TestGateway::start(&toml).await;
    // One 5-token call ($0.000005) fits each budget; a second does not.
    let created: serde_json::Value = admin(
        &gw,
        "/admin/keys",
        json!({"name": "partner", "team": "ext", "budget": "0.000005/month"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let partner = created["key"].as_str().unwrap().to_string();
    assert_eq!(
        admin(
            &gw,
            "/admin/teams",
            json!({"name": "web", "budget": "0.000005/day"})
        )
        .await
        .unwrap()
        .status(),
        201
    );
    let call_as = |gw: &TestGateway, key: &str| {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&call())
            .send()
    };
    assert_eq!(call_as(&gw, &partner).await.unwrap().status(), 200);
    assert_eq!(call_as(&gw, KEY).await.unwrap().status(), 200);
    gw.shutdown().await.unwrap();

    let gw = TestGateway::start(&toml).await;
    expect_error(call_as(&gw, &partner).await.unwrap(), 402).await;
    let e = expect_error(call_as(&gw, KEY).await.unwrap(), 402).await;
    assert!(e["message"].as_str().unwrap().contains("team:web"), "{e}");
    assert_eq!(mock.received().len(), 2, "refused calls reach no backend");
    gw.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// The key name is the identity of spend and budgets, so it cannot be shared.
#[tokio::test]
async fn key_names_are_unique() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    let create = |name: &str| {
        gw.client
            .post(gw.url("/admin/keys"))
            .bearer_auth(MASTER)
            .json(&json!({ "name": name }))
            .send()
    };
    assert_eq!(create("partner").await.unwrap().status(), 201);
    let e = expect_error(create("partner").await.unwrap(), 400).await;
    assert!(e["message"].as_str().unwrap().contains("live key"), "{e}");
    // The config's key `app`, and the master key's ledger name.
    expect_error(create("app").await.unwrap(), 400).await;
    expect_error(create("master").await.unwrap(), 400).await;
}

/// Calls `call()` as `key`, returning the status.
async fn status_as(gw: &TestGateway, key: &str) -> u16 {
    gw.post_as(key, "/v1/chat/completions", call())
        .await
        .status()
        .as_u16()
}

/// Creates virtual key `name` (budget of two calls, 3 requests a minute); its id and key.
async fn create_limited_key(gw: &TestGateway, name: &str) -> (String, String) {
    let resp = gw
        .post_as(
            MASTER,
            "/admin/keys",
            json!({"name": name, "budget": "0.00001/month", "rpm": 3}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let created: serde_json::Value = resp.json().await.unwrap();
    (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    )
}

/// Spends the whole budget and rate limit of a key made by `create_limited_key`: two
/// calls, a third over budget, a fourth over the RPM limit.
async fn exhaust(gw: &TestGateway, key: &str) {
    assert_eq!(status_as(gw, key).await, 200);
    assert_eq!(status_as(gw, key).await, 200);
    let e = expect_error(gw.post_as(key, "/v1/chat/completions", call()).await, 402).await;
    assert!(
        e["message"].as_str().unwrap().contains("key:partner"),
        "{e}"
    );
    let e = expect_error(gw.post_as(key, "/v1/chat/completions", call()).await, 429).await;
    assert!(
        e["message"].as_str().unwrap().contains("key:partner"),
        "{e}"
    );
}

/// Issue 13: budgets, rate limits and budget seeding are keyed by a key's id, never its
/// name. A key that takes a revoked key's name starts with the whole budget and fresh
/// limits, and after a restart its budget is seeded with its own spend only.
#[tokio::test]
async fn issue_13_a_key_reusing_a_name_shares_no_budget_or_rate_limit() {
    let mock = MockUpstream::start().await;
    let (toml, dir) = restartable_config(&mock, "reused-name");
    let gw = TestGateway::start(&toml).await;
    let (old_id, old_key) = create_limited_key(&gw, "partner").await;
    exhaust(&gw, &old_key).await;
    crate::hostile::revoke_key(&gw, &old_id).await;
    let (new_id, new_key) = create_limited_key(&gw, "partner").await;
    assert_ne!(new_id, old_id);
    assert_eq!(
        status_as(&gw, &new_key).await,
        200,
        "a fresh budget and RPM"
    );
    assert_eq!(
        gw.state.billing.budgets.spent(&format!("key:{new_id}")),
        5_000
    );
    gw.shutdown().await.unwrap();

    // After a restart the new key's window holds its own call only: one more fits.
    let gw = TestGateway::start(&toml).await;
    assert_eq!(status_as(&gw, &new_key).await, 200);
    expect_error(
        gw.post_as(&new_key, "/v1/chat/completions", call()).await,
        402,
    )
    .await;
    assert_eq!(mock.received().len(), 4);
    gw.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13: with the shared state in Redis, a key's counters and budget window are
/// keyed by its id too, so a key reusing a revoked key's name starts fresh there.
#[tokio::test]
async fn issue_13_a_key_reusing_a_name_shares_no_redis_state() {
    let test = "issue_13_a_key_reusing_a_name_shares_no_redis_state";
    let Some(redis) = test_service("BAZAAR_TEST_REDIS_URL", test) else {
        return;
    };
    let mock = MockUpstream::start().await;
    let toml = config(&mock, "").replace(
        "[server]",
        &format!("[state]\nredis = \"{redis}\"\n[server]"),
    );
    let gw = TestGateway::start(&toml).await;
    // Connected before the first call (the gateway's own connection may come later; the
    // first one set is kept).
    let shared = bazaar::billing::shared::SharedState::connect(&redis)
        .await
        .unwrap();
    gw.state.billing.share(shared);
    let (old_id, old_key) = create_limited_key(&gw, "partner").await;
    exhaust(&gw, &old_key).await;
    crate::hostile::revoke_key(&gw, &old_id).await;
    let (_, new_key) = create_limited_key(&gw, "partner").await;
    assert_eq!(
        status_as(&gw, &new_key).await,
        200,
        "a fresh budget and RPM"
    );
    assert_eq!(status_as(&gw, &new_key).await, 200);
    expect_error(
        gw.post_as(&new_key, "/v1/chat/completions", call()).await,
        402,
    )
    .await;
    assert_eq!(mock.received().len(), 4);
}
