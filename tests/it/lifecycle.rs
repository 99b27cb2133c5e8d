//! Shutdown: /readyz turns unready at once, connections are still served during the
//! grace period, calls in flight finish, and then the listener is closed.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn grace_period_keeps_serving_while_unready() {
    let mock = MockUpstream::start().await;
    let toml = single_provider_config(&mock).replace(
        "drain_timeout = \"5s\"",
        "drain_timeout = \"5s\"\nshutdown_grace = \"1500ms\"",
    );
    let gw = TestGateway::start(&toml).await;
    let (client, addr, state) = (gw.client.clone(), gw.addr, gw.state.clone());
    let url = |p: &str| format!("http://{addr}{p}");
    let done = tokio::spawn(gw.shutdown());
    // Wait for the shutdown to begin (readiness flips), then check we still serve.
    for _ in 0..1000 {
        if !state.is_ready() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(!state.is_ready());
    assert_eq!(
        client.get(url("/readyz")).send().await.unwrap().status(),
        503
    );
    let resp = client
        .post(url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "still serving during the grace period");
    done.await.unwrap().unwrap();
    // After the drain, nothing listens any more.
    let fresh = reqwest::Client::new();
    assert!(fresh.get(url("/healthz")).send().await.is_err());
}
