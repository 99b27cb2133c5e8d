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

/// The binary serves calls on request threads of their own (`server::threads`): SIGTERM
/// while calls are in flight on them still lets each finish and leaves exactly one ledger
/// row per answered call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_request_threads_leaves_one_row_per_answered_call() {
    let mock = sixty_calls_mock().await;
    let dir = std::env::temp_dir().join(format!(
        "bazaar-it-threads-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("ledger.sqlite").display());
    let config = dir.join("bazaar.toml");
    let toml = single_provider_config(&mock).replace(
        "drain_timeout = \"5s\"",
        &format!("drain_timeout = \"10s\"\n\n[ledger]\nurl = \"{url}\""),
    );
    std::fs::write(&config, toml).unwrap();
    let gw = ServeProcess::start(&config);
    let (tasks, mut finished) = send_sixty_calls(
        &reqwest::Client::new(),
        &gw.url("/v1/chat/completions"),
        "gpt-4o-mini",
    );
    // SIGTERM once some calls have finished and others are still in flight.
    finished.wait_for(|n| *n >= 10).await.unwrap();
    let pid = gw.pid().to_string();
    let signalled = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
    });
    assert!(signalled.await.unwrap().unwrap().success());
    let answered = answered(tasks).await;
    // Waits for the exit: the ledger's last batch is written by then.
    tokio::task::spawn_blocking(move || gw.stop())
        .await
        .unwrap();
    let (ledger, _) = one_row_per_answered_call(&url, answered, "request threads").await;
    ledger.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
