//! Hot reload: a changed file swaps the config atomically under load; a bad file keeps
//! the old config; no call in flight is dropped; a real SIGHUP to the running binary
//! reloads a file whose size and modification time did not change.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bazaar::config::Config;
use serde_json::{json, Value};

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

/// The ids `GET /v1/models` lists at `url`.
async fn model_ids(client: &reqwest::Client, url: String) -> Vec<String> {
    let v: Value = client
        .get(url)
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

    // SIGHUP is left to the test below, which sends the real signal to the binary.
    let mut done_rx = gw.watch_config(&path);

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
    assert_eq!(
        model_ids(&gw.client, gw.url("/v1/models")).await,
        ["extra-4", "m1"]
    );

    std::fs::write(&path, "[providers.mock]\nbase_url = 42\n").unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        model_ids(&gw.client, gw.url("/v1/models")).await,
        ["extra-4", "m1"],
        "a bad file keeps the old config"
    );
    assert_eq!(gw.state.reload_counts(), (5, 1));

    std::fs::remove_dir_all(&dir).ok();
}

/// The gateway binary, ended with SIGKILL if the test fails before it exits.
struct Gateway(Option<Child>);

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// The next log line (JSON) whose message is `message`; fails when the process's
/// stderr closes first or nothing comes for 20 s.
async fn log_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<Value>, message: &str) -> Value {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no `{message}` log line within 20 s"))
            .unwrap_or_else(|| panic!("the gateway exited before logging `{message}`"));
        if line["message"] == message {
            return line;
        }
    }
}

fn sighup_config(model: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [ledger]
        url = "sqlite://ledger.sqlite"
        [providers.local]
        base_url = "http://127.0.0.1:9/v1"
        tier = "local"
        models = ["{model}"]
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#
    )
}

#[tokio::test]
async fn sighup_reloads_the_running_binary() {
    let dir = std::env::temp_dir().join(format!(
        "bazaar-sighup-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bazaar.toml");
    std::fs::write(&path, sighup_config("m1")).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["serve", "--config"])
        .arg(&path)
        // The watcher says at debug level whether a reload was forced (by SIGHUP).
        .env("BAZAAR_LOG", "info,bazaar::config::reload=debug")
        .env("BAZAAR_LOG_FORMAT", "json")
        .env("BAZAAR_WORKER_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let mut gateway = Gateway(Some(child));
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });

    let listening = log_line(&mut lines, "Listening.").await;
    let base = format!("http://{}", listening["listen"].as_str().unwrap());
    let client = reqwest::Client::new();
    assert_eq!(
        model_ids(&client, format!("{base}/v1/models")).await,
        ["m1"]
    );

    // Swap in a file of the same size with the old modification time, atomically by
    // rename: the watcher's poll cannot tell it changed, so only SIGHUP reloads it.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let next = dir.join("next.toml");
    std::fs::write(&next, sighup_config("m2")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&next)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&next, &path).unwrap();

    signal(pid, "HUP");
    let reloading = log_line(&mut lines, "Config file changed; reloading.").await;
    assert_eq!(
        reloading["forced"], true,
        "the reload came from SIGHUP: {reloading}"
    );
    log_line(&mut lines, "Config reloaded.").await;
    assert_eq!(
        model_ids(&client, format!("{base}/v1/models")).await,
        ["m2"]
    );

    // SIGTERM still drains and exits 0.
    signal(pid, "TERM");
    let mut child = gateway.0.take().unwrap();
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the gateway exits after SIGTERM")
    .unwrap()
    .unwrap();
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(&dir).ok();
}
