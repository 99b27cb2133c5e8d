//! Hot reload: a changed file (or SIGHUP) swaps the config atomically under load; a bad
//! file keeps the old config; no call in flight is dropped.

use std::time::Duration;

use bazaar::config::{reload, Config};
use serde_json::json;

use crate::common::*;

fn config_with(mock: &MockUpstream, models: &str) -> String {
    format!(
        r#"
        [providers.mock]
        base_url = "{}"
        tier = "local"
        models = [{models}]
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#,
        mock.base_url()
    )
}

async fn model_ids(gw: &TestGateway) -> Vec<String> {
    let v: serde_json::Value = gw
        .client
        .get(gw.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["bazaar"]["kind"] == "model")
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn reload_swaps_config_and_keeps_it_on_a_bad_file() {
    let mock = MockUpstream::start().await;
    let dir = std::env::temp_dir().join(format!("bazaar-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bazaar.toml");
    std::fs::write(&path, config_with(&mock, r#""m1""#)).unwrap();
    let gw = TestGateway::start_config(Config::load(&path, &|_| None).unwrap()).await;

    let (hup_tx, hup_rx) = tokio::sync::mpsc::channel(1);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let state = gw.state.clone();
    tokio::spawn(reload::watch(
        path.clone(),
        |_| None,
        Duration::from_millis(20),
        hup_rx,
        gw.state.shutdown.clone(),
        move |loaded| {
            let applied = state.reload(loaded);
            let _ = done_tx.send(applied);
            std::future::ready(())
        },
    ));

    // Load while reloading: every call succeeds.
    let mut load = Vec::new();
    for _ in 0..4 {
        let client = gw.client.clone();
        let url = gw.url("/v1/chat/completions");
        load.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..40 {
                let resp = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .json(&json!({"model": "m1", "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .unwrap();
                if resp.status() == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    for i in 0..5 {
        // m1 stays throughout, so the load never sees a 404; each rewrite adds a model.
        std::fs::write(&path, config_with(&mock, &format!(r#""m1", "extra-{i}""#))).unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
                .await
                .unwrap(),
            Some(true)
        );
    }
    for task in load {
        assert_eq!(task.await.unwrap(), 40, "a reload dropped a call");
    }
    assert_eq!(model_ids(&gw).await, ["extra-4", "m1"]);

    std::fs::write(&path, "[providers.mock]\nbase_url = 42\n").unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        model_ids(&gw).await,
        ["extra-4", "m1"],
        "a bad file keeps the old config"
    );
    assert_eq!(gw.state.reload_counts(), (5, 1));

    // SIGHUP forces a reload even when the file did not change.
    std::fs::write(&path, config_with(&mock, r#""m2""#)).unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
            .await
            .unwrap(),
        Some(true)
    );
    hup_tx.send(()).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(model_ids(&gw).await, ["m2"]);
    std::fs::remove_dir_all(&dir).ok();
}
