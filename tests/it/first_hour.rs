//! Issue 14, the first hour of a new user: what a newcomer meets first — the CLI help,
//! the dashboard's icon, `/v1/models`, `/metrics` at start, `/v1/messages` ids — stays right.

use std::process::Command;

use crate::common::{single_provider_config, MockUpstream, TestGateway};

#[test]
fn issue_14_serve_help_describes_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let line = help
        .lines()
        .find(|l| l.contains("--config"))
        .unwrap_or_else(|| panic!("no --config in:\n{help}"));
    // clap prints the description on the flag's line; a bare flag has nothing after it.
    let description = line.split("<CONFIG>").nth(1).unwrap_or("").trim();
    assert!(
        description.contains("config file"),
        "--config has no description:\n{help}"
    );
}

#[tokio::test]
async fn issue_14_favicon_is_served() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    for path in ["/favicon.ico", "/dashboard/favicon.svg"] {
        let resp = gw.client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "image/svg+xml",
            "{path}"
        );
        assert!(resp.text().await.unwrap().starts_with("<svg"), "{path}");
    }
    let page = gw.client.get(gw.url("/dashboard")).send().await.unwrap();
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(r#"rel="icon" type="image/svg+xml" href="/dashboard/favicon.svg""#));
}

#[tokio::test]
async fn issue_14_models_lists_routes_marked_as_routes() {
    let mock = MockUpstream::start().await;
    let toml = single_provider_config(&mock)
        + r#"
        [routes.support]
        models = ["gpt-4o-mini"]
        policy = "cheapest"
        "#;
    let gw = TestGateway::start(&toml).await;
    let resp = gw
        .client
        .get(gw.url("/v1/models"))
        .bearer_auth(crate::common::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    let entry = |id: &str| {
        data.iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing from {v}"))
    };
    for (route, policy) in [
        ("auto", "balanced"),
        ("cheap", "cheapest"),
        ("fast", "fastest"),
        ("support", "cheapest"),
    ] {
        let m = entry(route);
        assert_eq!(m["bazaar"]["kind"], "route", "{m}");
        assert_eq!(m["bazaar"]["policy"], policy, "{m}");
        assert_eq!(m["owned_by"], "bazaar");
    }
    assert_eq!(entry("gpt-4o-mini")["bazaar"]["kind"], "model");
    // Every entry keeps the fields OpenAI's Model object requires.
    for m in data {
        assert_eq!(m["object"], "model", "{m}");
        assert!(m["id"].is_string() && m["owned_by"].is_string() && m["created"].is_i64());
    }
}
