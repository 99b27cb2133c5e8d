//! Metered billing end to end: cost on every response, one ledger row per call, the
//! spend API's views, streamed and plain calls costing the same, nothing lost on shutdown.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// One provider `mock` serving `m` at $1/M input and $2/M output, with a reference
/// frontier model `big` at $10/$20, and a second key.
fn priced_config(mock: &MockUpstream) -> String {
    format!(
        r#"
        [server]
        master_key = "{MASTER}"
        [router]
        reference = "big"
        [providers.mock]
        base_url = "{}"
        tier = "open-hosted"
        [[models]]
        id = "m"
        provider = "mock"
        input_price = 1
        output_price = "2"
        [[models]]
        id = "big"
        provider = "mock"
        input_price = 10
        output_price = 20
        [[keys]]
        name = "app"
        key = "{KEY}"
        team = "web"
        [[keys]]
        name = "other"
        key = "bzr-other"
        team = "ops"
        markup_percent = 10
        "#,
        mock.base_url()
    )
}

/// Waits until the writer has put `n` rows into the ledger (failing after 120 s without
/// them); returns how many rows the ledger holds.
pub async fn wait_rows(gw: &TestGateway, n: i64) -> i64 {
    let billing = gw.state.billing.connected().unwrap();
    let written = billing.sink.written(n as u64);
    tokio::time::timeout(Duration::from_secs(120), written)
        .await
        .unwrap_or_else(|_| panic!("the ledger writer did not write {n} rows within 120 s"));
    billing.ledger.count().await.unwrap()
}

fn chat(stream: bool) -> serde_json::Value {
    json!({"model": "m", "stream": stream, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hello there"}]})
}

#[tokio::test]
async fn cost_header_body_and_ledger_agree() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&priced_config(&mock)).await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let header = resp.headers()["x-bazaar-cost-usd"]
        .to_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    let usage = &body["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    let nanos = p * 1_000 + c * 2_000;
    assert_eq!(header, format!("0.{nanos:09}"));
    assert!((usage["cost"].as_f64().unwrap() - nanos as f64 / 1e9).abs() < 1e-12);

    assert_eq!(wait_rows(&gw, 1).await, 1);
    let spend: serde_json::Value = gw
        .client
        .get(gw.url("/v1/spend?group_by=model"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spend["totals"]["requests"], 1);
    assert_eq!(spend["totals"]["cost_nanos"], nanos);
    // Savings against the reference model at 10x the price.
    assert_eq!(spend["totals"]["baseline_cost_nanos"], nanos * 10);
    assert_eq!(spend["totals"]["savings_nanos"], nanos * 9);
    assert_eq!(spend["groups"][0]["group"], "m");
    let calls: serde_json::Value = gw
        .client
        .get(gw.url("/v1/spend/calls"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = &calls["calls"][0];
    assert_eq!(
        (
            row["key"].as_str(),
            row["team"].as_str(),
            row["provider"].as_str()
        ),
        (Some("app"), Some("web"), Some("mock"))
    );
    assert_eq!(row["estimated"], false);
    assert!(row["catalog_version"]
        .as_str()
        .unwrap()
        .starts_with("2026-"));
}

#[tokio::test]
async fn streamed_and_plain_calls_cost_the_same() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&priced_config(&mock)).await;
    let plain: serde_json::Value = gw
        .post("/v1/chat/completions", chat(false))
        .await
        .json()
        .await
        .unwrap();
    let events = sse_events(gw.post("/v1/chat/completions", chat(true)).await).await;
    let usage_chunk: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(
        usage_chunk["usage"]["cost"], plain["usage"]["cost"],
        "stream cost is in the final usage chunk"
    );
    // A client that did not ask for usage still gets billed: the gateway asked for it.
    let mut hidden = chat(true);
    hidden.as_object_mut().unwrap().remove("stream_options");
    sse_events(gw.post("/v1/chat/completions", hidden).await).await;
    assert_eq!(wait_rows(&gw, 3).await, 3);
    let calls: serde_json::Value = gw
        .client
        .get(gw.url("/v1/spend/calls"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let costs: Vec<i64> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cost_nanos"].as_i64().unwrap())
        .collect();
    assert!(
        costs[0] > 0 && costs.iter().all(|c| *c == costs[0]),
        "{costs:?}"
    );
}

#[tokio::test]
async fn a_cut_stream_is_billed_by_estimate() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&priced_config(&mock)).await;
    mock.script([Step::CutAfter(4)]);
    let events = sse_events(gw.post("/v1/chat/completions", chat(true)).await).await;
    assert!(events.last().unwrap().contains("error"));
    assert_eq!(wait_rows(&gw, 1).await, 1);
    let calls: serde_json::Value = gw
        .client
        .get(gw.url("/v1/spend/calls"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = &calls["calls"][0];
    assert_eq!(row["estimated"], true);
    assert_eq!(row["status"], 502);
    assert!(row["tokens"]["output"].as_i64().unwrap() > 0, "{row}");
    assert!(row["cost_nanos"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn a_key_sees_only_its_own_spend_and_markup_is_visible() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&priced_config(&mock)).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]});
    let mine = gw
        .post("/v1/chat/completions", body.clone())
        .await
        .headers()["x-bazaar-cost-usd"]
        .to_str()
        .unwrap()
        .to_string();
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("bzr-other")
        .json(&body)
        .send()
        .await
        .unwrap();
    let theirs = resp.headers()["x-bazaar-cost-usd"]
        .to_str()
        .unwrap()
        .to_string();
    let (a, b): (f64, f64) = (mine.parse().unwrap(), theirs.parse().unwrap());
    assert!((b / a - 1.10).abs() < 1e-6, "10% markup: {a} vs {b}");
    assert_eq!(wait_rows(&gw, 2).await, 2);
    let own: serde_json::Value = gw
        .client
        .get(gw.url("/v1/spend?group_by=key&key=other"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own["totals"]["requests"], 1, "{own}");
    assert_eq!(own["groups"][0]["group"], "app");
    let all: serde_json::Value = gw
        .client
        .get(gw.url("/v1/spend?group_by=team"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["totals"]["requests"], 2);
    let csv = gw
        .client
        .get(gw.url("/v1/spend/export?format=csv"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    assert_eq!(
        text.lines().count(),
        2,
        "header + the key's own row:\n{text}"
    );
    assert!(text.starts_with("id,time,request_id,key,"));
    expect_error(
        gw.client
            .get(gw.url("/v1/spend?group_by=color"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
}

/// The same metering against a real PostgreSQL (CI starts one; `scripts/test` exports its URL).
#[tokio::test]
async fn postgres_ledger_records_and_serves_spend() {
    let Some(url) = test_service(
        "BAZAAR_TEST_POSTGRES_URL",
        "postgres_ledger_records_and_serves_spend",
    ) else {
        return;
    };
    let mock = MockUpstream::start().await;
    let key_name = format!("pg-{:x}", rand_suffix());
    let toml = priced_config(&mock).replace("name = \"app\"", &format!("name = \"{key_name}\""))
        + &format!("\n[ledger]\nurl = \"{url}\"\n");
    let gw = TestGateway::start(&toml).await;
    for stream in [false, true] {
        let resp = gw.post("/v1/chat/completions", chat(stream)).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let spend = once_written(&gw, "both calls", || async {
        let spend = gw
            .get_json(&format!("/v1/spend?key={key_name}&group_by=key"), MASTER)
            .await;
        (spend["totals"]["requests"] == 2).then_some(spend)
    })
    .await;
    assert_eq!(spend["totals"]["requests"], 2, "{spend}");
    let groups = spend["groups"].as_array().unwrap();
    assert_eq!(groups[0]["group"], key_name.as_str());
    assert!(spend["totals"]["cost_nanos"].as_i64().unwrap() > 0);
    let csv = gw
        .client
        .get(gw.url(&format!("/v1/spend/export?format=csv&key={key_name}")))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 3);
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
