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
