//! Ledger write throughput on SQLite and PostgreSQL, then the spend queries at 10
//! million rows. The table is the gateway's: with the learn store's request-id index,
//! request ids made as the gateway makes them (random), and a pool that has opened its
//! connections, as a serving gateway's has. For each database: `Ledger::insert` in
//! batches of 500 (the default batch; on SQLite for each statement width, each on a
//! fresh file: one prepared statement reused per row, and multi-row statements of fixed
//! widths), then the writer end to end (rows handed to the sink as fast as it takes
//! them, until the last one is committed), with the rows it spilled (0 while the
//! database is up). Each line gives the process's CPU time per row (every thread,
//! SQLite's and the tokio workers') and its context switches per row (each a hand-off
//! between threads, which costs a scheduling delay on a loaded machine).
//!
//! Run: `cargo bench --bench ledger` (PostgreSQL from `BAZAAR_TEST_POSTGRES_URL`, e.g.
//! after `source scripts/services.sh; start_postgres`; `BAZAAR_BENCH_WRITE_ROWS` rows
//! per measurement, default 200,000; `BAZAAR_BENCH_WIDTHS` the SQLite statement widths
//! to measure, default `1,32,64,128,256` and the default width last; `BAZAAR_BENCH_BATCH`
//! the writer's batch, default 500, the gateway's default; `BAZAAR_BENCH_COMBINATIONS` the
//! rows' distinct key, team and model combinations, 1 to 24, default 24;
//! `BAZAAR_BENCH_ROWS` for the spend queries' size, default 10 million; `-- --no-spend`
//! skips those, `-- --writer-only` measures only the writer end to end).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_types,
    clippy::disallowed_methods
)]

#[path = "common/host.rs"]
mod host;
#[path = "common/spend.rs"]
mod spend;

use std::time::{Duration, Instant};

use bazaar::billing::ledger::writer::{self, WriterSettings};
use bazaar::billing::ledger::{Ledger, LedgerRow, SQLITE_ROWS_PER_STATEMENT};
use host::loadavg;
use tokio_util::sync::CancellationToken;

/// The distinct dimension combinations (key, team, route, model…) of the rows written:
/// `BAZAAR_BENCH_COMBINATIONS`, default 24 (8 keys, 3 teams, 4 models); 1 is a gateway
/// with one key and one model, as the load bench's.
fn combinations() -> i64 {
    static COMBINATIONS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *COMBINATIONS.get_or_init(|| {
        std::env::var("BAZAAR_BENCH_COMBINATIONS")
            .ok()
            .and_then(|c| c.parse().ok())
            .filter(|c| (1..=24).contains(c))
            .unwrap_or(24)
    })
}

/// A call as a gateway of a few teams records it: 8 keys, 4 models on 2 providers (or
/// fewer: `combinations`), a call every millisecond, so a 500-row batch folds into ~30
/// rollup groups; the request id is a fresh one of the gateway's.
fn row(i: i64) -> LedgerRow {
    let models = ["gpt-4o-mini", "gpt-4o", "llama-3.3-70b", "qwen3-8b"];
    let d = i % combinations();
    let m = (d % 4) as usize;
    LedgerRow {
        ts_ms: 1_790_000_000_000 + i,
        request_id: bazaar::server::app::new_request_id(),
        key_name: format!("key-{}", d % 8).into(),
        team: (d % 8 != 0).then(|| format!("team-{}", d % 3).into()),
        route: if d % 2 == 0 {
            "auto".into()
        } else {
            models[m].into()
        },
        provider: ["openai", "groq"][m / 2].into(),
        model: models[m].into(),
        tier: ["frontier", "open-hosted"][m / 2].into(),
        endpoint: "chat".into(),
        input_tokens: 200 + i % 900,
        cached_input_tokens: i % 64,
        output_tokens: 50 + i % 300,
        reasoning_tokens: 0,
        cost_nanos: Some(1_000 + i % 100_000),
        baseline_cost_nanos: Some(50_000 + i % 100_000),
        catalog_version: "bench".into(),
        latency_ms: 100 + i % 2000,
        ttft_ms: Some(50 + i % 500),
        status: if i % 97 == 0 { 502 } else { 200 },
        error_type: (i % 97 == 0).then(|| "upstream_error".into()),
        ..Default::default()
    }
}

/// Connects to `url` as the gateway does: the learn store's migration applied (its
/// request-id index is part of every write), and three of the pool's connections opened
/// at once (a gateway's start-up opens them), so writes meet the pool a serving gateway
/// has.
async fn connect(url: &str) -> Ledger {
    let ledger = Ledger::connect(url).await.unwrap();
    bazaar::billing::ledger::learn::migrate(&ledger)
        .await
        .unwrap();
    let pool = ledger.pool();
    let held = tokio::join!(pool.acquire(), pool.acquire(), pool.acquire());
    drop(held);
    ledger
}

/// utime + stime of this process (every thread, SQLite's included), in seconds: on a
/// shared machine CPU per row varies far less than rows per wall-clock second.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Context switches (voluntary and not) of every live thread of this process so far.
fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Wall-clock rate, CPU µs and context switches per row of a measured stretch.
struct Cost {
    started: Instant,
    cpu: f64,
    switches: u64,
}

impl Cost {
    fn start() -> Cost {
        Cost {
            started: Instant::now(),
            cpu: cpu_seconds(),
            switches: context_switches(),
        }
    }

    fn line(&self, rows: i64) -> String {
        let n = rows as f64;
        let rate = n / self.started.elapsed().as_secs_f64();
        let cpu = (cpu_seconds() - self.cpu) * 1e6 / n;
        let switches = context_switches().saturating_sub(self.switches) as f64 / n;
        format!("{rate:>9.0} rows/s {cpu:>6.1} CPU µs/row {switches:>5.2} switches/row")
    }
}

/// `Ledger::insert` of `n` rows (numbered from `from`) in batches of 500; its cost line.
async fn insert_rate(ledger: &Ledger, from: i64, n: i64) -> String {
    let rows: Vec<LedgerRow> = (from..from + n).map(row).collect();
    let cost = Cost::start();
    for batch in rows.chunks(500) {
        ledger.insert(batch).await.unwrap();
    }
    cost.line(n)
}

/// The writer with the default settings, fed `n` rows as fast as its queue takes them;
/// (its cost line until the last row is committed, rows spilled).
async fn writer_rate(
    ledger: &Ledger,
    from: i64,
    n: i64,
    spill: std::path::PathBuf,
) -> (String, u64) {
    let settings = WriterSettings {
        queue: 10_000,
        batch: writer_batch(),
        flush_every: Duration::from_millis(200),
        spill_file: spill,
        write_seconds: None,
    };
    let stop = CancellationToken::new();
    let (sink, task) = writer::start(ledger.clone(), settings, stop.clone());
    let task = tokio::spawn(task);
    let rows: Vec<LedgerRow> = (from..from + n).map(row).collect();
    let before = ledger.count().await.unwrap();
    let cost = Cost::start();
    for (i, r) in rows.into_iter().enumerate() {
        // Never more than the queue holds: a full queue would spill, which is the
        // overload path, not the throughput this measures.
        while sink.queued() >= 9_000 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        sink.record(r);
        // A gateway hands rows over between calls; a feeder that never yields would
        // hold a worker thread (of two cores) away from the writer and SQLite's thread.
        if i % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    stop.cancel();
    task.await.unwrap();
    let line = cost.line(n);
    assert_eq!(
        ledger.count().await.unwrap() - before,
        n - sink.spilled() as i64
    );
    (line, sink.spilled())
}

/// The writer's batch (`BAZAAR_BENCH_BATCH`, default the gateway's 500).
fn writer_batch() -> usize {
    std::env::var("BAZAAR_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(500)
}

/// SQLite statement widths to measure, the default last.
fn widths() -> Vec<usize> {
    let mut widths: Vec<usize> = match std::env::var("BAZAAR_BENCH_WIDTHS") {
        Ok(list) => list
            .split(',')
            .filter_map(|w| w.trim().parse().ok())
            .collect(),
        Err(_) => vec![1, 32, 64, 128, 256],
    };
    widths.retain(|w| *w != SQLITE_ROWS_PER_STATEMENT);
    widths.push(SQLITE_ROWS_PER_STATEMENT);
    widths
}

async fn bench(label: &str, url: &str, n: i64, dir: &std::path::Path, writer_only: bool) {
    let mut next = 0;
    if label == "sqlite" && !writer_only {
        for width in widths() {
            // Each shape on a fresh file: a table grown by the previous shape would
            // make later shapes look slower.
            let fresh = format!("{url}-{width}");
            let mut ledger = connect(&fresh).await;
            ledger.set_rows_per_statement(width);
            let cost = insert_rate(&ledger, next, n).await;
            ledger.close().await;
            next += n;
            let shape = if width == 1 {
                "prepared statement per row".to_string()
            } else {
                format!("{width} rows per statement")
            };
            let default = if width == SQLITE_ROWS_PER_STATEMENT {
                " (default)"
            } else {
                ""
            };
            println!(
                "  {label:<8} insert, {shape:<28} {cost}   load {}{default}",
                loadavg()
            );
        }
    }
    let ledger = connect(url).await;
    if label != "sqlite" && !writer_only {
        let cost = insert_rate(&ledger, next, n).await;
        next += n;
        println!(
            "  {label:<8} insert, {:<28} {cost}   load {}",
            "one COPY per batch",
            loadavg()
        );
    }
    let (cost, spilled) =
        writer_rate(&ledger, next, n, dir.join(format!("{label}.spill.jsonl"))).await;
    println!(
        "  {label:<8} writer end to end, batches of {:<4} {cost}   load {}, spilled {spilled}",
        writer_batch(),
        loadavg()
    );
    ledger.close().await;
}

fn main() {
    let n: i64 = std::env::var("BAZAAR_BENCH_WRITE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let spend_rows: i64 = std::env::var("BAZAAR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::temp_dir().join(format!("bazaar-ledger-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let writer_only = std::env::args().any(|a| a == "--writer-only");
    rt.block_on(async {
        println!("ledger writes ({n} rows per measurement; load average at start {}):", loadavg());
        let sqlite = format!("sqlite://{}", dir.join("ledger.sqlite").display());
        bench("sqlite", &sqlite, n, &dir, writer_only).await;
        match std::env::var("BAZAAR_TEST_POSTGRES_URL") {
            Ok(admin_url) => {
                sqlx::any::install_default_drivers();
                let name = format!("bazaar_bench_{}", std::process::id());
                let admin = sqlx::AnyPool::connect(&admin_url).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
                let (scheme, rest) = admin_url.split_once("://").unwrap();
                let server = rest.split(['/', '?']).next().unwrap();
                bench(
                    "postgres",
                    &format!("{scheme}://{server}/{name}"),
                    n,
                    &dir,
                    writer_only,
                )
                .await;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
            }
            Err(_) => println!("  postgres skipped: BAZAAR_TEST_POSTGRES_URL is not set (source scripts/services.sh; start_postgres)"),
        }
        if !writer_only && !std::env::args().any(|a| a == "--no-spend") {
            println!();
            spend::time_spend_queries(spend_rows).await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
