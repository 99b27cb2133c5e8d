//! Three gateway processes sharing one Redis (limits, budgets) and one PostgreSQL
//! (ledger): 300 concurrent calls spread across them against one key's budget and RPM
//! limit. The limits hold globally and the ledger has one row per answered call.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use bazaar::billing::ledger::{Filter, GroupBy, Ledger};
use serde_json::json;

use crate::common::ServeProcess;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_limits_and_ledger() {
    let test = "three_replicas_share_limits_and_ledger";
    let (Some(redis), Some(pg)) = (
        crate::common::test_service("BAZAAR_TEST_REDIS_URL", test),
        crate::common::test_service("BAZAAR_TEST_POSTGRES_URL", test),
    ) else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_bazaar");
    let mut sim = Command::new(bin)
        .args(["sim", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let sim_addr = line.trim().trim_start_matches("listening on ").to_string();
    let _sim = Proc(sim);

    let suffix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let key_name = format!("shared-{suffix:x}");
    let key = format!("bzr-{suffix:x}");
    let dir = std::env::temp_dir().join(format!("bazaar-replicas-{suffix:x}"));
    std::fs::create_dir_all(&dir).unwrap();
    // Each call costs exactly 5 output tokens at $1/M = 5,000 nano-dollars; the budget fits 40.
    let mut gateways = Vec::new();
    for i in 0..3 {
        let config = dir.join(format!("r{i}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
                [state]
                redis = "{redis}"
                [ledger]
                url = "{pg}"
                [providers.sim]
                base_url = "http://{sim_addr}/v1"
                tier = "open-hosted"
                [[models]]
                id = "m"
                provider = "sim"
                input_price = 0
                output_price = 1
                [[keys]]
                name = "{key_name}"
                key = "{key}"
                budget = "0.0002/day"
                rpm = 60
                "#
            ),
        )
        .unwrap();
        gateways.push(ServeProcess::start(&config));
    }
    let urls: Vec<String> = gateways.iter().map(|g| g.url("")).collect();
    let client = reqwest::Client::new();
    for url in &urls {
        let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{url} is not ready");
    }

    let mut tasks = Vec::new();
    for i in 0..300 {
        let (client, url, key) = (client.clone(), urls[i % 3].clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let _ = resp.bytes().await;
            status
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    let ok = counts.get(&200).copied().unwrap_or(0);
    assert_eq!(ok, 40, "the budget holds across replicas: {counts:?}");
    // A fixed one-minute RPM window admits at most 60 (120 if the test straddles a minute).
    let past_rpm = ok + counts.get(&402).copied().unwrap_or(0);
    assert!(past_rpm <= 120, "{counts:?}");
    assert_eq!(
        counts
            .keys()
            .filter(|s| ![200u16, 402, 429].contains(s))
            .count(),
        0,
        "{counts:?}"
    );

    // Stop the replicas (flushing their ledgers), then count this key's rows.
    drop(gateways);
    let ledger = Ledger::connect(&pg).await.unwrap();
    let filter = Filter {
        from_ms: 0,
        to_ms: i64::MAX,
        equals: vec![(GroupBy::Key, key_name.clone())],
        errors: Some(false),
        ..Default::default()
    };
    let rows = ledger.calls(&filter, 10_000, None).await.unwrap();
    assert_eq!(rows.len(), ok, "one ledger row per answered call");
    let all = ledger
        .calls(
            &Filter {
                errors: None,
                ..filter
            },
            10_000,
            None,
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 300, "refused calls are rows too");
    std::fs::remove_dir_all(&dir).ok();
}
