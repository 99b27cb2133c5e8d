//! Retraining from the gateway's own traffic (issue 17): prompts kept in the ledger and
//! scores posted to `/v1/feedback` train new weights with `bazaar router train
//! --from-ledger`; the running gateway reloads the weights file when it changes and
//! routes differently; a weights file that does not load is refused and the old weights
//! stay. Feedback for an unknown or another key's call is a 404, a bad score a 400.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bazaar::config::Config;
use serde_json::{json, Value};

use crate::common::*;

const OTHER: &str = "bzr-other-key";

fn math(i: usize) -> String {
    format!("Solve the equation {i} x + 7 = 3 and show each step of the algebra.")
}

fn chat(i: usize) -> String {
    format!("Say hello to my friend number {i} and wish them a good day.")
}

/// A pair of mock backends, `cheap-m` and `dear-m`, a floor route over them, prompts
/// kept, and the predictor reading `weights`.
fn config(cheap: &MockUpstream, dear: &MockUpstream, ledger: &Path, weights: &Path) -> String {
    format!(
        r#"
        [ledger]
        url = "sqlite://{}"
        [router.learn]
        keep_prompts = true
        [router.predictor]
        file = "{}"
        [providers.cheap]
        base_url = "{}"
        tier = "open-hosted"
        [providers.dear]
        base_url = "{}"
        tier = "frontier"
        [[models]]
        id = "cheap-m"
        provider = "cheap"
        input_price = 0.1
        output_price = 0.1
        [[models]]
        id = "dear-m"
        provider = "dear"
        input_price = 10
        output_price = 30
        [routes.pair]
        models = ["cheap-m", "dear-m"]
        policy = "cheapest-above-quality"
        quality_floor = 50
        [[keys]]
        name = "app"
        key = "{KEY}"
        [[keys]]
        name = "other"
        key = "{OTHER}"
        "#,
        ledger.display(),
        weights.display(),
        cheap.base_url(),
        dear.base_url()
    )
}

/// The model `pair` would send `prompt` to.
async fn chosen(gw: &TestGateway, prompt: &str) -> String {
    let body = json!({"model": "pair", "max_tokens": 5, "messages": [{"role": "user", "content": prompt}]});
    let v: Value = gw
        .post("/v1/route/explain", body)
        .await
        .json()
        .await
        .unwrap();
    let first = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["verdict"] == "chosen")
        .unwrap_or_else(|| panic!("nothing chosen: {v}"));
    first["model"].as_str().unwrap().to_string()
}

/// Calls `model` with `prompt` as `key`; the call's request id.
async fn call(gw: &TestGateway, key: &str, model: &str, prompt: &str) -> String {
    let body =
        json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": prompt}]});
    let resp = gw.post_as(key, "/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    resp.headers()["x-request-id"].to_str().unwrap().to_string()
}

async fn feedback(gw: &TestGateway, key: &str, body: Value) -> reqwest::Response {
    gw.post_as(key, "/v1/feedback", body).await
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bazaar-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn feedback_retrains_the_predictor_and_the_reloaded_weights_change_routing() {
    let (cheap, dear) = (MockUpstream::start().await, MockUpstream::start().await);
    let dir = scratch("feedback");
    let weights = dir.join("weights.bzq");
    std::fs::write(&weights, bazaar::router::predict::EMBEDDED).unwrap();
    let path = dir.join("bazaar.toml");
    std::fs::write(
        &path,
        config(&cheap, &dear, &dir.join("ledger.sqlite"), &weights),
    )
    .unwrap();
    let gw = TestGateway::start_config(Config::load(&path, &|_| None).unwrap()).await;
    let mut done_rx = gw.watch_config(&path);

    // Neither model is known to the shipped weights: both sit at the same predicted
    // quality, so the floor route sends everything to the cheaper one.
    assert_eq!(chosen(&gw, &math(99)).await, "cheap-m");
    assert_eq!(chosen(&gw, &chat(99)).await, "cheap-m");

    // Traffic with scores: cheap-m fails the algebra and handles the small talk;
    // dear-m does both.
    let mut calls = 0;
    for i in 0..16 {
        for (prompt, cheap_score) in [(math(i), 0.0), (chat(i), 1.0)] {
            for (model, score) in [("cheap-m", cheap_score), ("dear-m", 1.0)] {
                let id = call(&gw, KEY, model, &prompt).await;
                calls += 1;
                let resp = feedback(&gw, KEY, json!({"request_id": id, "score": score})).await;
                assert_eq!(resp.status(), 200);
                let v: Value = resp.json().await.unwrap();
                assert_eq!(v["object"], "feedback");
                assert_eq!(v["score"], score);
            }
        }
    }

    // Bad feedback: unknown call, another key's call, a score outside 0–1, no id.
    let missing = feedback(&gw, KEY, json!({"request_id": "no-such-call", "score": 1})).await;
    let v = expect_error(missing, 404).await;
    assert_eq!(v["param"], "request_id");
    let theirs = call(&gw, OTHER, "cheap-m", &math(0)).await;
    calls += 1;
    expect_error(
        feedback(&gw, KEY, json!({"request_id": theirs, "score": 1})).await,
        404,
    )
    .await;
    let v = expect_error(
        feedback(&gw, KEY, json!({"request_id": "x", "score": 1.5})).await,
        400,
    )
    .await;
    assert_eq!(v["param"], "score");
    let v = expect_error(feedback(&gw, KEY, json!({"score": 0.5})).await, 400).await;
    assert_eq!(v["param"], "request_id");

    // Everything is in the database before the trainer reads it.
    crate::billing::wait_rows(&gw, calls).await;
    let learn = gw.state.learn.get().unwrap();
    tokio::time::timeout(Duration::from_secs(30), learn.prompts_written(calls as u64))
        .await
        .unwrap();

    let trained = dir.join("trained.bzq");
    let out = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["router", "train", "--from-ledger", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(&trained)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    // 16 prompts of each kind; the other key's call has no score, so it is not a row.
    assert!(printed.contains("32 prompts"), "{printed}");
    assert!(printed.contains("cheap-m, dear-m"), "{printed}");

    // The new weights replace the file the gateway reads; it reloads them.
    write_atomically(&weights, &std::fs::read(&trained).unwrap());
    assert_eq!(done_rx.recv().await, Some(true));
    assert_eq!(chosen(&gw, &math(99)).await, "dear-m");
    assert_eq!(chosen(&gw, &chat(99)).await, "cheap-m");
    // A real call takes the new route too.
    let before = dear.received().len();
    let body = json!({"model": "pair", "max_tokens": 5, "messages": [{"role": "user", "content": math(123)}]});
    let resp = gw.post("/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-bazaar-backend"], "dear/dear-m");
    assert_eq!(dear.received().len(), before + 1);

    // A file that does not parse, then one fitted for another feature layout: refused,
    // and the trained weights stay.
    write_atomically(&weights, b"not weights at all");
    assert_eq!(done_rx.recv().await, Some(false));
    assert_eq!(chosen(&gw, &math(99)).await, "dear-m");
    let mut other_layout = std::fs::read(&trained).unwrap();
    other_layout[8] ^= 1;
    write_atomically(&weights, &other_layout);
    assert_eq!(done_rx.recv().await, Some(false));
    assert_eq!(chosen(&gw, &math(99)).await, "dear-m");
    let err = Config::load(&path, &|_| None).unwrap_err().to_string();
    assert!(
        err.contains("router.predictor.file") && err.contains("feature layout"),
        "{err}"
    );

    // Good weights again (the shipped ones): applied, and routing is as it was.
    write_atomically(&weights, bazaar::router::predict::EMBEDDED);
    assert_eq!(done_rx.recv().await, Some(true));
    assert_eq!(chosen(&gw, &math(99)).await, "cheap-m");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn prompts_are_kept_only_when_asked() {
    let (cheap, dear) = (MockUpstream::start().await, MockUpstream::start().await);
    let dir = scratch("no-keep");
    let weights = dir.join("weights.bzq");
    std::fs::write(&weights, bazaar::router::predict::EMBEDDED).unwrap();
    let toml = config(&cheap, &dear, &dir.join("ledger.sqlite"), &weights)
        .replace("keep_prompts = true", "keep_prompts = false");
    let gw = TestGateway::start(&toml).await;
    let id = call(&gw, KEY, "cheap-m", "a secret the ledger must not keep").await;
    // Feedback is still accepted (and stored) without the prompt.
    let resp = feedback(&gw, KEY, json!({"request_id": id, "score": 0.5})).await;
    assert_eq!(resp.status(), 200);
    crate::billing::wait_rows(&gw, 1).await;
    let ledger = &gw.state.billing.connected().unwrap().ledger;
    let rows = bazaar::billing::ledger::learn::training_rows(ledger)
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    let sqlite = std::fs::read(dir.join("ledger.sqlite")).unwrap();
    let wal = std::fs::read(dir.join("ledger.sqlite-wal")).unwrap_or_default();
    for bytes in [sqlite, wal] {
        assert!(!bytes
            .windows(b"secret the ledger".len())
            .any(|w| w == b"secret the ledger"));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The same store on PostgreSQL (CI starts one; `scripts/services.sh` exports its URL):
/// the migration applies, a kept prompt and its score come back as a training row.
#[tokio::test]
async fn postgres_keeps_prompts_and_feedback() {
    let Some(url) = test_service(
        "BAZAAR_TEST_POSTGRES_URL",
        "feedback::postgres_keeps_prompts_and_feedback",
    ) else {
        return;
    };
    let (cheap, dear) = (MockUpstream::start().await, MockUpstream::start().await);
    let dir = scratch("feedback-pg");
    let weights = dir.join("weights.bzq");
    std::fs::write(&weights, bazaar::router::predict::EMBEDDED).unwrap();
    let toml = config(&cheap, &dear, &dir.join("unused.sqlite"), &weights).replace(
        &format!("url = \"sqlite://{}\"", dir.join("unused.sqlite").display()),
        &format!("url = \"{url}\""),
    );
    let gw = TestGateway::start(&toml).await;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prompt = format!("Solve {nonce} x + 1 = 2, please.");
    let id = call(&gw, KEY, "dear-m", &prompt).await;
    let resp = feedback(&gw, KEY, json!({"request_id": id, "score": 0.75})).await;
    assert_eq!(resp.status(), 200);
    // Scored again: the later score replaces the first.
    let resp = feedback(&gw, KEY, json!({"request_id": id, "score": 0.25})).await;
    assert_eq!(resp.status(), 200);
    expect_error(
        feedback(&gw, OTHER, json!({"request_id": id, "score": 1})).await,
        404,
    )
    .await;
    let ledger = gw.state.billing.connected().unwrap().ledger.clone();
    let learn = gw.state.learn.get().unwrap();
    tokio::time::timeout(Duration::from_secs(30), learn.prompts_written(1))
        .await
        .unwrap();
    let rows = once_written(&gw, "the scored call", || async {
        let rows = bazaar::billing::ledger::learn::training_rows(&ledger)
            .await
            .unwrap();
        let ours: Vec<_> = rows.into_iter().filter(|r| r.prompt == prompt).collect();
        (!ours.is_empty()).then_some(ours)
    })
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].model, "dear-m");
    assert_eq!(rows[0].score, 0.25);
    std::fs::remove_dir_all(&dir).ok();
}
