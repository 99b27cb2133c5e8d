//! The ledger suite, run against SQLite and against a real PostgreSQL (from
//! `BAZAAR_TEST_POSTGRES_URL`; each test makes its own database there, and says so
//! when it skips PostgreSQL): rows, rollups and paging, an outage spilled to disk and
//! replayed exactly once, and one row per answered call across a shutdown under load.

use std::time::Duration;

use bazaar::api::usage::Buckets;
use bazaar::billing::ledger::writer::{self, Spill, WriterSettings};
use bazaar::billing::ledger::{Aggregate, Estimated, Filter, GroupBy, Ledger, LedgerRow};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::*;

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("bazaar_it_{tag}_{}_{nanos:x}", std::process::id())
}

/// (label, ledger URL, a scratch directory) for each backend this run can reach.
async fn backends(tag: &str) -> Vec<(&'static str, String, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(unique(tag));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = vec![(
        "sqlite",
        format!("sqlite://{}", dir.join("ledger.sqlite").display()),
        dir.join("sqlite"),
    )];
    if let Some(url) = test_service(
        "BAZAAR_TEST_POSTGRES_URL",
        &format!("ledger::{tag} (PostgreSQL)"),
    ) {
        let name = unique(tag);
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let (scheme, rest) = url.split_once("://").unwrap();
        let server = rest.split(['/', '?']).next().unwrap();
        out.push((
            "postgres",
            format!("{scheme}://{server}/{name}"),
            dir.join("postgres"),
        ));
    }
    for (_, _, d) in &out {
        std::fs::create_dir_all(d).unwrap();
    }
    out
}

/// Drops the PostgreSQL databases `backends` made (left in place when a test fails).
async fn clean_up(backends: &[(&'static str, String, std::path::PathBuf)]) {
    for (backend, url, dir) in backends {
        if let Some(parent) = dir.parent() {
            std::fs::remove_dir_all(parent).ok();
        }
        if *backend != "postgres" {
            continue;
        }
        let Some(admin_url) = bazaar::config::process_env("BAZAAR_TEST_POSTGRES_URL") else {
            continue;
        };
        let name = url.rsplit('/').next().unwrap();
        let admin = sqlx::AnyPool::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    }
}

fn row(i: i64) -> LedgerRow {
    LedgerRow {
        ts_ms: 1_790_000_000_000 + i * 600_000, // every 10 minutes
        // Some ids carry what array literals and SQL quoting must survive.
        request_id: if i % 10 == 3 {
            format!("r{i} \"q\", {{b}} \\ NULL 'ü'").into()
        } else {
            format!("r{i}").into()
        },
        key_name: ["app", "other"][(i % 2) as usize].into(),
        key_id: ["config:app", "config:other"][(i % 2) as usize].into(),
        team: Some("web".into()),
        route: "auto".into(),
        provider: ["groq", "openai"][(i % 2) as usize].into(),
        model: "m".into(),
        tier: ["open-hosted", "frontier"][(i % 2) as usize].into(),
        endpoint: "chat".into(),
        input_tokens: 10 + i,
        cached_input_tokens: i % 3,
        cache_write_tokens: i % 5,
        output_tokens: 20,
        reasoning_tokens: i % 7,
        cost_nanos: (i % 10 != 9).then_some(1_000 + i),
        baseline_cost_nanos: Some(10_000 + i),
        catalog_version: "test".into(),
        estimated: if i % 4 == 0 {
            Estimated::new(Buckets::ALL)
        } else {
            Estimated::NONE
        },
        latency_ms: 100 + i,
        ttft_ms: Some(50),
        status: if i % 8 == 7 { 502 } else { 200 },
        error_type: (i % 8 == 7).then(|| "upstream_error".into()),
        fallbacks: (i % 6 == 0) as i32,
    }
}

fn everything() -> Filter {
    Filter {
        from_ms: 0,
        to_ms: i64::MAX,
        ..Default::default()
    }
}

#[tokio::test]
async fn rows_rollups_and_paging_agree_on_every_backend() {
    let all = backends("rows").await;
    for (backend, url, _) in all.clone() {
        let ledger = Ledger::connect(&url).await.unwrap();
        Ledger::connect(&url).await.unwrap(); // migrations are idempotent
        let rows: Vec<LedgerRow> = (0..100).map(row).collect();
        ledger.insert(&rows[..60]).await.unwrap();
        ledger.insert(&rows[60..]).await.unwrap();
        assert_eq!(ledger.count().await.unwrap(), 100, "{backend}");

        // Every field round-trips; newest first; paging by id.
        let page1 = ledger.calls(&everything(), 30, None).await.unwrap();
        assert_eq!(page1[0].1, rows[99], "{backend}");
        let page2 = ledger
            .calls(&everything(), 1_000, Some(page1[29].0))
            .await
            .unwrap();
        assert_eq!(page1.len() + page2.len(), 100, "{backend}");
        assert_eq!(page2.last().unwrap().1, rows[0], "{backend}");
        let mut back: Vec<LedgerRow> = page1.iter().chain(&page2).map(|(_, r)| r.clone()).collect();
        back.reverse();
        assert_eq!(
            back, rows,
            "{backend}: every field of every row round-trips"
        );

        // The rollup (maintained per batch) agrees with the rows, per group and per hour.
        let groups = ledger
            .aggregate(&everything(), GroupBy::Key, None)
            .await
            .unwrap();
        for g in &groups {
            let mine: Vec<&LedgerRow> = rows.iter().filter(|r| *r.key_name == *g.group).collect();
            assert_eq!(g.requests, mine.len() as i64, "{backend}");
            assert_eq!(
                g.cost_nanos,
                mine.iter().filter_map(|r| r.cost_nanos).sum::<i64>(),
                "{backend}"
            );
            assert_eq!(
                g.unpriced,
                mine.iter()
                    .filter(|r| r.cost_nanos.is_none() && r.status < 400)
                    .count() as i64,
                "{backend}"
            );
            assert_eq!(
                g.errors,
                mine.iter().filter(|r| r.status >= 400).count() as i64
            );
            assert_eq!(
                g.tokens[4],
                mine.iter().map(|r| r.reasoning_tokens).sum::<i64>()
            );
        }
        let hourly = ledger
            .aggregate(&everything(), GroupBy::Tier, Some(3_600_000))
            .await
            .unwrap();
        assert_eq!(hourly.iter().map(|a| a.requests).sum::<i64>(), 100);
        assert!(hourly.windows(2).all(|w| w[0].bucket_ms <= w[1].bucket_ms));
        // Rebuilt from the rows, the rollup is the same.
        ledger.rebuild_rollup().await.unwrap();
        assert_eq!(
            ledger
                .aggregate(&everything(), GroupBy::Tier, Some(3_600_000))
                .await
                .unwrap(),
            hourly,
            "{backend}"
        );
        // Errors only (read from the rows), and a budget window's spend.
        let errors = Filter {
            errors: Some(true),
            ..everything()
        };
        assert_eq!(
            ledger.calls(&errors, 1_000, None).await.unwrap().len(),
            rows.iter().filter(|r| r.status >= 400).count()
        );
        let since = rows[50].ts_ms;
        assert_eq!(
            ledger
                .spent_since(GroupBy::Key, "config:app", since)
                .await
                .unwrap(),
            rows[50..]
                .iter()
                .filter(|r| &*r.key_name == "app")
                .filter_map(|r| r.cost_nanos)
                .sum::<i64>(),
            "{backend}"
        );
        ledger.close().await;
    }
    clean_up(&all).await;
}

/// A row of odd texts from many dimension combinations: 45 keys (one name a thousand
/// characters long), NULL and unicode teams, quotes, backslashes, tabs and newlines,
/// request ids up to 10,000 characters, a NULL error type on most rows; two rows per
/// timestamp, so the order within a batch is part of what reads back.
fn odd_row(i: i64) -> LedgerRow {
    let key = if i % 45 == 44 {
        "k".repeat(1_000)
    } else {
        format!("key 'q' \"{}\" ü", i % 45)
    };
    LedgerRow {
        ts_ms: 1_790_000_000_000 + (i / 2) * 1_000,
        request_id: if i % 50 == 7 {
            format!("{i}{}", "x".repeat(10_000)).into()
        } else {
            format!("r{i} \t\\N 'ü' \"{{a}}\"\n").into()
        },
        key_id: format!("config:{key}").into(),
        key_name: key.into(),
        team: (i % 5 != 0).then(|| format!("team ü\\ {}", i % 3).into()),
        route: ["auto", "o'dd,route"][(i % 2) as usize].into(),
        provider: ["groq", "open\"ai"][(i % 4 / 2) as usize].into(),
        model: format!("model-{}", i % 7).into(),
        tier: ["open-hosted", "frontier"][(i % 2) as usize].into(),
        endpoint: "chat".into(),
        input_tokens: i,
        cost_nanos: (i % 10 != 9).then_some(1_000 + i),
        catalog_version: "v 'ü'".into(),
        latency_ms: i,
        ttft_ms: (i % 3 == 0).then_some(5),
        status: if i % 9 == 0 { 502 } else { 200 },
        error_type: (i % 9 == 0).then(|| "upstream_error 'x'".into()),
        ..Default::default()
    }
}

/// Batches of many dimension combinations (more than one SQLite statement binds, so its
/// chunks end early), of two, and of one, read back field for field and in their order,
/// with the rollup of a rebuild, on every backend.
#[tokio::test]
async fn rows_of_many_dimension_combinations_round_trip_on_every_backend() {
    let all = backends("dims").await;
    for (backend, url, _) in all.clone() {
        let ledger = Ledger::connect(&url).await.unwrap();
        // Rows 700..960 of two combinations, rows 960.. of one.
        let dims_of = |i: i64, of: i64| LedgerRow {
            key_name: odd_row(of).key_name,
            key_id: odd_row(of).key_id,
            team: odd_row(of).team,
            route: odd_row(of).route,
            provider: odd_row(of).provider,
            model: odd_row(of).model,
            tier: odd_row(of).tier,
            ..odd_row(i)
        };
        let rows: Vec<LedgerRow> = (0..1_200)
            .map(|i| match i {
                0..700 => odd_row(i),
                700..960 => dims_of(i, i % 2),
                _ => dims_of(i, 0),
            })
            .collect();
        for batch in [&rows[..500], &rows[500..700], &rows[700..960], &rows[960..]] {
            ledger.insert(batch).await.unwrap();
        }
        let mut back: Vec<LedgerRow> = ledger
            .calls(&everything(), 10_000, None)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        back.reverse();
        assert_eq!(back.len(), rows.len(), "{backend}");
        for (got, want) in back.iter().zip(&rows) {
            assert_eq!(got, want, "{backend}: every field, in the batch's order");
        }
        let all_rows = everything();
        let hourly = || ledger.aggregate(&all_rows, GroupBy::Key, Some(3_600_000));
        let summed = hourly().await.unwrap();
        assert_eq!(summed.iter().map(|a| a.requests).sum::<i64>(), 1_200);
        ledger.rebuild_rollup().await.unwrap();
        assert_eq!(hourly().await.unwrap(), summed, "{backend}");
        ledger.close().await;
    }
    clean_up(&all).await;
}

/// A ledger of the schema before migration 17 (the key id's own index in place, 17 not
/// yet recorded) opens with the index dropped, on every backend, and a key's own calls,
/// errors, latencies and budget window read the same rows as before it.
#[tokio::test]
async fn a_ledger_of_the_previous_schema_drops_the_key_id_index_on_every_backend() {
    let all = backends("mig17").await;
    for (backend, url, _) in all.clone() {
        let ledger = Ledger::connect(&url).await.unwrap();
        let rows: Vec<LedgerRow> = (0..100).map(row).collect();
        ledger.insert(&rows).await.unwrap();
        for sql in [
            "CREATE INDEX ledger_key_id_ts ON ledger (key_id, ts_ms)",
            "DELETE FROM bazaar_migrations WHERE version = 17",
        ] {
            sqlx::query(sql).execute(ledger.pool()).await.unwrap();
        }
        let own = Filter {
            key_id: Some("config:app".into()),
            ..everything()
        };
        let budget = (GroupBy::Key, "config:app");
        let before = views(ledger, &own, budget).await;
        let ledger = Ledger::connect(&url).await.unwrap();
        let index = match backend {
            "postgres" => "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'ledger_key_id_ts'",
            _ => "SELECT COUNT(*) FROM sqlite_master WHERE name = 'ledger_key_id_ts'",
        };
        let left: i64 = sqlx::query_scalar(index)
            .fetch_one(ledger.pool())
            .await
            .unwrap();
        assert_eq!(left, 0, "{backend}");
        let after = views(ledger, &own, budget).await;
        assert_eq!(after, before, "{backend}");
        let mine: Vec<&LedgerRow> = rows.iter().filter(|r| &*r.key_id == "config:app").collect();
        agree(backend, &after, &mine);
        assert!(after.0.iter().all(|(_, r)| &*r.key_id == "config:app"));
    }
    clean_up(&all).await;
}

/// What the spend API reads of a filter's rows (its calls, its errors per model, its
/// latencies) and a budget window's spend since row 50.
type Views = (
    Vec<(i64, LedgerRow)>,
    Vec<Aggregate>,
    Vec<(String, i64, Option<i64>)>,
    i64,
);

/// `filter`'s views, and the spend of `budget` (a group and its value); closes `ledger`.
async fn views(ledger: Ledger, filter: &Filter, budget: (GroupBy, &str)) -> Views {
    let errors = Filter {
        errors: Some(true),
        ..filter.clone()
    };
    let calls = ledger.calls(filter, 1_000, None).await.unwrap();
    let failed = ledger
        .aggregate(&errors, GroupBy::Model, None)
        .await
        .unwrap();
    let latencies = ledger
        .latencies(filter, GroupBy::Model, 1_000)
        .await
        .unwrap();
    let spent = ledger
        .spent_since(budget.0, budget.1, rows_ts(50))
        .await
        .unwrap();
    ledger.close().await;
    (calls, failed, latencies, spent)
}

/// `views` count `mine`, the rows the filter selects: each call, each error, and the
/// spend since row 50.
fn agree(backend: &str, views: &Views, mine: &[&LedgerRow]) {
    assert_eq!(views.0.len(), mine.len(), "{backend}");
    assert_eq!(
        views.1.iter().map(|a| a.requests).sum::<i64>(),
        mine.iter().filter(|r| r.status >= 400).count() as i64,
        "{backend}"
    );
    assert_eq!(
        views.3,
        mine.iter()
            .filter(|r| r.ts_ms >= rows_ts(50))
            .filter_map(|r| r.cost_nanos)
            .sum::<i64>(),
        "{backend}"
    );
}

/// A ledger of the schema before migrations 18 and 19 (the team index over every row)
/// opens with the index holding only rows that have a team, on every backend, and a
/// team's calls, errors, latencies and budget window read the same rows as before it.
#[tokio::test]
async fn a_ledger_of_the_previous_schema_gets_the_partial_team_index_on_every_backend() {
    let all = backends("mig19").await;
    for (backend, url, _) in all.clone() {
        let ledger = Ledger::connect(&url).await.unwrap();
        let rows: Vec<LedgerRow> = (0..100)
            .map(|i| LedgerRow {
                team: (i % 3 != 0).then(|| ["web", "ops"][(i % 2) as usize].into()),
                ..row(i)
            })
            .collect();
        ledger.insert(&rows).await.unwrap();
        // On one connection: another one's schema would not know of the DROP yet.
        let mut tx = ledger.pool().begin().await.unwrap();
        for sql in [
            "DROP INDEX ledger_team_ts",
            "CREATE INDEX ledger_team_ts ON ledger (team, ts_ms)",
            "DELETE FROM bazaar_migrations WHERE version IN (18, 19)",
        ] {
            sqlx::query(sql).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        let team = Filter {
            equals: vec![(GroupBy::Team, "web".into())],
            ..everything()
        };
        let budget = (GroupBy::Team, "web");
        let before = views(ledger, &team, budget).await;
        let ledger = Ledger::connect(&url).await.unwrap();
        let index = match backend {
            "postgres" => "SELECT indexdef FROM pg_indexes WHERE indexname = 'ledger_team_ts'",
            _ => "SELECT sql FROM sqlite_master WHERE name = 'ledger_team_ts'",
        };
        let definition: String = sqlx::query_scalar(index)
            .fetch_one(ledger.pool())
            .await
            .unwrap();
        assert!(
            definition.contains("WHERE team IS NOT NULL")
                || definition.contains("WHERE (team IS NOT NULL)"),
            "{backend}: {definition}"
        );
        let after = views(ledger, &team, budget).await;
        assert_eq!(after, before, "{backend}");
        let web: Vec<&LedgerRow> = rows
            .iter()
            .filter(|r| r.team.as_deref() == Some("web"))
            .collect();
        agree(backend, &after, &web);
        assert!(after
            .0
            .iter()
            .all(|(_, r)| r.team.as_deref() == Some("web")));
    }
    clean_up(&all).await;
}

/// Row `i`'s timestamp.
fn rows_ts(i: i64) -> i64 {
    row(i).ts_ms
}

#[tokio::test]
async fn an_outage_is_spilled_and_replayed_exactly_once_on_every_backend() {
    let all = backends("outage").await;
    for (backend, url, dir) in all.clone() {
        let settings = WriterSettings {
            queue: 4,
            batch: 8,
            flush_every: Duration::from_millis(5),
            spill_file: dir.join("spill.jsonl"),
            write_seconds: None,
        };
        // The database goes away under a running writer.
        let down = Ledger::connect(&url).await.unwrap();
        down.close().await;
        let stop = CancellationToken::new();
        let (sink, task) = writer::start(down, settings.clone(), stop.clone());
        let task = tokio::spawn(task);
        for i in 0..300 {
            sink.record(row(i));
            if i % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(sink.spilled(), 300, "{backend}: every row is on disk");

        // Back up: a new writer replays the spill first, then writes new rows.
        let up = Ledger::connect(&url).await.unwrap();
        let stop = CancellationToken::new();
        let (sink, task) = writer::start(up.clone(), settings.clone(), stop.clone());
        let task = tokio::spawn(task);
        sink.record(row(300));
        stop.cancel();
        task.await.unwrap();
        assert_eq!(up.count().await.unwrap(), 301, "{backend}");
        // Nothing is left to replay, and a second replay adds nothing.
        let spill = Spill::new(settings.spill_file.clone());
        assert_eq!(writer::replay(&up, &spill).await.unwrap(), 0);
        assert_eq!(up.count().await.unwrap(), 301, "{backend}");
        up.close().await;
    }
    clean_up(&all).await;
}

fn priced(mock: &MockUpstream, ledger_url: &str) -> String {
    format!(
        r#"
        [server]
        master_key = "{MASTER}"
        drain_timeout = "10s"
        [providers.mock]
        base_url = "{}"
        tier = "open-hosted"
        [[models]]
        id = "m"
        provider = "mock"
        input_price = 1
        output_price = 2
        [[keys]]
        name = "app"
        key = "{KEY}"
        team = "web"
        budget = "100/day"
        [ledger]
        url = "{ledger_url}"
        "#,
        mock.base_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_per_answered_call_across_a_shutdown_on_every_backend() {
    let all = backends("load").await;
    for (backend, url, _) in all.clone() {
        let mock = sixty_calls_mock().await;
        let gw = TestGateway::start(&priced(&mock, &url)).await;
        let (tasks, mut finished) =
            send_sixty_calls(&gw.client, &gw.url("/v1/chat/completions"), "m");
        // Shut down once some calls have finished and others are still in flight.
        finished.wait_for(|n| *n >= 10).await.unwrap();
        gw.shutdown().await.unwrap();
        let answered = answered(tasks).await;
        let (ledger, rows) = one_row_per_answered_call(&url, answered, backend).await;
        // Streamed and plain calls of the same request cost the same.
        let costs: std::collections::BTreeSet<Option<i64>> =
            rows.iter().map(|(_, r)| r.cost_nanos).collect();
        assert_eq!(costs.len(), 1, "{backend}: {costs:?}");
        ledger.close().await;
    }
    clean_up(&all).await;
}

/// A client that goes away mid-stream is billed for the tokens it was sent, counted
/// with the tokenizer, and its budget is charged that estimate.
#[tokio::test]
async fn a_client_disconnect_is_billed_for_what_was_sent() {
    let mock = MockUpstream::with_spec(bazaar::demo::sim::SimSpec {
        tokens_per_sec: 50.0,
        reply: "word ".repeat(200),
        ..Default::default()
    })
    .await;
    let dir = std::env::temp_dir().join(unique("gone"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("ledger.sqlite").display());
    let gw = TestGateway::start(&priced(&mock, &url)).await;
    let mut resp = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let mut got = 0;
    while got < 3 {
        resp.chunk().await.unwrap().unwrap();
        got += 1;
    }
    drop(resp);
    let ledger = &gw.state.billing.connected().unwrap().ledger;
    let rows = once_written(&gw, "the disconnected call", || async {
        let rows = ledger.calls(&everything(), 10, None).await.unwrap();
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    let row = &rows[0].1;
    assert_eq!((row.status, row.estimated.any()), (499, true), "{row:?}");
    assert_eq!(row.error_type.as_deref(), Some("client_closed"));
    assert!(
        (1..200).contains(&row.output_tokens),
        "only what was sent: {row:?}"
    );
    let cost = row.cost_nanos.unwrap() as u64;
    assert_eq!(
        cost,
        (row.input_tokens * 1_000 + row.output_tokens * 2_000) as u64
    );
    assert_eq!(
        gw.state.billing.budgets.spent("key:config:app"),
        cost,
        "settled at the estimate"
    );
}
