//! The spend API's queries at scale, shared by the `spend` and `ledger` benches: seeds a
//! SQLite ledger with `rows` calls (kept in target/ for reruns) and times each query.

use std::time::Instant;

use bazaar::billing::ledger::{Filter, GroupBy, Ledger};

/// Seeds `target/bench-ledger-{rows}.sqlite` up to `rows` calls and prints the best of three
/// timings of each spend query.
pub async fn time_spend_queries(rows: i64) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("bench-ledger-{rows}.sqlite"));
    let url = format!("sqlite://{}", path.display());
    let ledger = Ledger::connect(&url).await.unwrap();
    let have = ledger.count().await.unwrap();
    let start = 1_790_000_000_000;
    if have < rows {
        // Seeded inside SQLite with a recursive CTE (a call every 250 ms over ~29 days,
        // cycling through 50 keys, 7 teams, 2 routes, 4 providers, 12 models, 3 tiers),
        // without binding 10 million parameter sets.
        let t = Instant::now();
        let sql = format!(
            "INSERT INTO ledger (ts_ms, request_id, key_name, team, route, provider, model, tier, endpoint, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_nanos, baseline_cost_nanos, catalog_version, estimated, latency_ms, ttft_ms, status, error_type, fallbacks, key_id)
             WITH RECURSIVE seq(i) AS (SELECT {have} UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < {rows})
             SELECT {start} + i * 250, 'r' || i, 'key-' || (i % 50), 'team-' || (i % 7), CASE WHEN i % 3 = 0 THEN 'auto' ELSE 'cheap' END,
                    CASE i % 4 WHEN 0 THEN 'openai' WHEN 1 THEN 'groq' WHEN 2 THEN 'together' ELSE 'ollama' END,
                    'model-' || (i % 12), CASE i % 3 WHEN 0 THEN 'frontier' WHEN 1 THEN 'open-hosted' ELSE 'local' END, 'chat',
                    100 + i % 900, 0, 0, 50 + i % 300, 0, 1000 + i % 100000, 50000 + i % 100000, 'bench', 0,
                    100 + i % 2000, 50 + i % 500, CASE WHEN i % 97 = 0 THEN 502 ELSE 200 END, NULL, 0, 'config:key-' || (i % 50)
             FROM seq"
        );
        sqlx::query(&sql).execute(ledger.pool()).await.unwrap();
        println!(
            "seeded {} rows in {:.1}s",
            rows - have,
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        ledger.rebuild_rollup().await.unwrap();
        println!(
            "built the hourly rollup in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    let end = start + rows * 250;
    let week = Filter {
        from_ms: end - 7 * 86_400_000,
        to_ms: end,
        ..Default::default()
    };
    let all = Filter {
        from_ms: start,
        to_ms: end + 1,
        ..Default::default()
    };
    let one_key = Filter {
        equals: vec![(GroupBy::Key, "key-7".into())],
        ..week.clone()
    };
    // What a key sees of itself: its rows by id (`GET /v1/spend*` with the key's own key).
    let own = Filter {
        key_id: Some("config:key-7".into()),
        ..week.clone()
    };
    println!("ledger: {rows} rows; query timings (best of 3):");
    macro_rules! time {
        ($name:expr, $e:expr) => {{
            let mut best = f64::MAX;
            let mut n = 0;
            for _ in 0..3 {
                let t = Instant::now();
                n = $e.await.unwrap().len();
                best = best.min(t.elapsed().as_secs_f64() * 1000.0);
            }
            println!("  {:<58} {:>9.1} ms  ({n} rows out)", $name, best);
        }};
    }
    time!(
        "spend, last 7 days, by tier, daily",
        ledger.aggregate(&week, GroupBy::Tier, Some(86_400_000))
    );
    time!(
        "spend, last 7 days, one key (a key's own view), hourly",
        ledger.aggregate(&one_key, GroupBy::Model, Some(3_600_000))
    );
    time!(
        "spend, whole ledger, by model, daily",
        ledger.aggregate(&all, GroupBy::Model, Some(86_400_000))
    );
    time!(
        "recent calls, last 7 days, newest 100",
        ledger.calls(&week, 100, None)
    );
    time!(
        "recent calls, one key, newest 100",
        ledger.calls(&one_key, 100, None)
    );
    time!(
        "latency sample, last 7 days, 20k rows",
        ledger.latencies(&week, GroupBy::Provider, 20_000)
    );
    time!(
        "a key's own spend by id, last 7 days, hourly",
        ledger.aggregate(&own, GroupBy::Model, Some(3_600_000))
    );
    time!(
        "a key's own recent calls by id, newest 100",
        ledger.calls(&own, 100, None)
    );
    time!(
        "a key's own latency sample by id, 20k rows",
        ledger.latencies(&own, GroupBy::Model, 20_000)
    );
    time!(
        "a key's spend since a week ago by id (budget seed)",
        async {
            let spent = ledger.spent_since(GroupBy::Key, "config:key-7", week.from_ms);
            spent.await.map(|n| vec![n])
        }
    );
}
