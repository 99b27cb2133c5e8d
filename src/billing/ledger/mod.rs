//! The spend ledger: one row per call, on SQLite (default) or PostgreSQL, through one
//! sqlx `Any` code path. Rows arrive through `writer.rs` in batches, never from the
//! request path directly, and are inserted by `insert.rs`. Queries here serve the
//! spend API.

pub mod estimated;
mod insert;
pub mod learn;
pub mod writer;

pub use estimated::Estimated;
pub use insert::SQLITE_ROWS_PER_STATEMENT;
use insert::{insert_pg, insert_rows, WriteSql, ROLLUP_KEY_COLUMNS};

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ledger spill file: {0}")]
    Spill(#[from] std::io::Error),
    #[error("ledger: {0}")]
    Invalid(String),
}

/// One call, as billed. Its text is shared with what the call already holds (the
/// request id, the key's settings, the serving target, the catalog) or static (tier,
/// endpoint, error label), so a row costs the request path no copies of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    /// Unix milliseconds, from the injected clock.
    pub ts_ms: i64,
    #[serde(with = "crate::billing::text")]
    pub request_id: Arc<str>,
    /// The key's name, as people read it; two keys can have had the same name.
    #[serde(with = "crate::billing::text")]
    pub key_name: Arc<str>,
    /// The key's identity: a virtual key's id (`key_…`), `config:<name>` for a key of the
    /// config, `master`. A key's own spend is scoped by it, never by the name, so a new
    /// key reusing a revoked key's name sees none of its calls. Absent from spill lines
    /// written before the column existed; replay fills it in (`writer::fill_key_ids`).
    #[serde(default, with = "crate::billing::text")]
    pub key_id: Arc<str>,
    #[serde(with = "crate::billing::text::optional")]
    pub team: Option<Arc<str>>,
    #[serde(with = "crate::billing::text")]
    pub route: Arc<str>,
    #[serde(with = "crate::billing::text")]
    pub provider: Arc<str>,
    #[serde(with = "crate::billing::text")]
    pub model: Arc<str>,
    pub tier: Cow<'static, str>,
    pub endpoint: Cow<'static, str>,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    /// `None`: the price was unknown.
    pub cost_nanos: Option<i64>,
    /// The same usage at the route's reference frontier model.
    pub baseline_cost_nanos: Option<i64>,
    #[serde(with = "crate::billing::text")]
    pub catalog_version: Arc<str>,
    /// The buckets the gateway counted itself (the backend did not report them).
    pub estimated: Estimated,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub status: i32,
    pub error_type: Option<Cow<'static, str>>,
    pub fallbacks: i32,
}

/// Which database the URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connected ledger database.
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: AnyPool,
    /// SQLite only: the batch writes' own connection (a pool of one). SQLite drops a
    /// connection's page cache whenever another connection has written since its last
    /// transaction, so writes spread over the shared pool's connections (which sqlx hands
    /// out in turn) read their pages back from the file on every batch and fill every
    /// connection's cache; one connection that does all the batch writing keeps its
    /// cache valid.
    sqlite_writes: Option<AnyPool>,
    /// PostgreSQL only: the batch writes' own connections, on sqlx's native driver, which
    /// can `COPY` (the `Any` driver cannot).
    pg_writes: Option<sqlx::PgPool>,
    pub backend: Backend,
    sql: std::sync::Arc<WriteSql>,
}

/// Claims a replay marker inside the caller's transaction: `false` when it is already
/// there (its rows are in). A concurrent replayer of the same marker waits on the primary
/// key and then finds it taken.
const CLAIM_MARKER: &str =
    "INSERT INTO ledger_replays (marker, rows) VALUES ($1, $2) ON CONFLICT (marker) DO NOTHING";

const COLUMNS: &str = "ts_ms, request_id, key_name, team, route, provider, model, tier, endpoint, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_nanos, baseline_cost_nanos, catalog_version, estimated, latency_ms, ttft_ms, status, error_type, fallbacks, key_id";
const N_COLUMNS: usize = 24;

const ROLLUP_COLUMNS: &str = "requests, errors, cost_nanos, baseline_cost_nanos, unpriced, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, fallbacks";
const ROLLUP_DEFS: &str = "requests BIGINT NOT NULL, errors BIGINT NOT NULL, cost_nanos BIGINT NOT NULL, baseline_cost_nanos BIGINT NOT NULL, unpriced BIGINT NOT NULL, input_tokens BIGINT NOT NULL, cached_input_tokens BIGINT NOT NULL, cache_write_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL, fallbacks BIGINT NOT NULL";
const ROLLUP_SUMS: &str = "COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(COALESCE(cost_nanos, 0)), SUM(COALESCE(baseline_cost_nanos, COALESCE(cost_nanos, 0))), SUM(CASE WHEN cost_nanos IS NULL AND status < 400 THEN 1 ELSE 0 END), SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(output_tokens), SUM(reasoning_tokens), SUM(fallbacks)";
const ROLLUP_SUMS_CAST: &str = "COUNT(*), CAST(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(COALESCE(cost_nanos, 0)) AS BIGINT), CAST(SUM(COALESCE(baseline_cost_nanos, COALESCE(cost_nanos, 0))) AS BIGINT), CAST(SUM(CASE WHEN cost_nanos IS NULL AND status < 400 THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT), CAST(SUM(cache_write_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(reasoning_tokens) AS BIGINT), CAST(SUM(fallbacks) AS BIGINT)";
const HOUR_MS: i64 = 3_600_000;

/// The SQLite write connection's page cache (SQLite's default is 2 MiB). Its batches touch
/// the right edges of the table and its indexes and the rollup's pages of the hour; the
/// rest of the file is only ever read by the other connections.
const WRITER_CACHE: &str = "PRAGMA cache_size=-512";

/// Versioned schema changes, applied once each, in order.
fn migrations(backend: Backend) -> Vec<(i64, String)> {
    let id = match backend {
        Backend::Sqlite => "id INTEGER PRIMARY KEY AUTOINCREMENT",
        Backend::Postgres => "id BIGSERIAL PRIMARY KEY",
    };
    vec![
        (
            1,
            format!(
                "CREATE TABLE IF NOT EXISTS ledger ({id}, ts_ms BIGINT NOT NULL, request_id TEXT NOT NULL, key_name TEXT NOT NULL, team TEXT,
                 route TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, tier TEXT NOT NULL, endpoint TEXT NOT NULL,
                 input_tokens BIGINT NOT NULL, cached_input_tokens BIGINT NOT NULL, cache_write_tokens BIGINT NOT NULL,
                 output_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL, cost_nanos BIGINT, baseline_cost_nanos BIGINT,
                 catalog_version TEXT NOT NULL, estimated BIGINT NOT NULL, latency_ms BIGINT NOT NULL, ttft_ms BIGINT,
                 status BIGINT NOT NULL, error_type TEXT, fallbacks BIGINT NOT NULL)"
            ),
        ),
        (2, "CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts_ms)".into()),
        (3, "CREATE INDEX IF NOT EXISTS ledger_key_ts ON ledger (key_name, ts_ms)".into()),
        (4, "CREATE INDEX IF NOT EXISTS ledger_team_ts ON ledger (team, ts_ms)".into()),
        (
            5,
            "CREATE TABLE IF NOT EXISTS virtual_keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, team TEXT,
             budget TEXT, rpm BIGINT, tpm BIGINT, models TEXT NOT NULL, tiers TEXT NOT NULL, markup_bp BIGINT NOT NULL,
             expires_ms BIGINT, revoked BIGINT NOT NULL, created_ms BIGINT NOT NULL)"
                .into(),
        ),
        (
            6,
            "CREATE TABLE IF NOT EXISTS teams (name TEXT PRIMARY KEY, budget TEXT, rpm BIGINT, tpm BIGINT, created_ms BIGINT NOT NULL)".into(),
        ),
        // Hourly rollup the spend API aggregates from: one row per hour and dimension
        // combination instead of one per call, so spend queries stay fast at any size.
        (
            7,
            format!("CREATE TABLE IF NOT EXISTS ledger_hourly (hour_ms BIGINT NOT NULL, key_name TEXT NOT NULL, team TEXT NOT NULL,
             route TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, tier TEXT NOT NULL, {ROLLUP_DEFS},
             PRIMARY KEY (hour_ms, key_name, team, route, provider, model, tier))"),
        ),
        (
            8,
            format!("INSERT INTO ledger_hourly (hour_ms, key_name, team, route, provider, model, tier, {ROLLUP_COLUMNS})
             SELECT ts_ms - (ts_ms % 3600000), key_name, COALESCE(team, ''), route, provider, model, tier, {ROLLUP_SUMS}
             FROM ledger GROUP BY 1, 2, 3, 4, 5, 6, 7"),
        ),
        // One marker per replayed chunk of a spill file, written in the chunk's own
        // transaction: a replay interrupted after its commit is not applied twice.
        (
            9,
            "CREATE TABLE IF NOT EXISTS ledger_replays (marker TEXT PRIMARY KEY, rows BIGINT NOT NULL)".into(),
        ),
        // Spend is scoped by key id, not by name (a new key may reuse a revoked key's
        // name). Earlier rows get the id of the newest key of their name created before
        // them (at most one live key has a name at a time), else their config key's id.
        (10, "ALTER TABLE ledger ADD COLUMN key_id TEXT".into()),
        (
            11,
            "UPDATE ledger SET key_id = COALESCE(
               (SELECT v.id FROM virtual_keys v WHERE v.name = ledger.key_name AND v.created_ms <= ledger.ts_ms
                ORDER BY v.created_ms DESC LIMIT 1),
               CASE WHEN ledger.key_name = 'master' THEN 'master' ELSE 'config:' || ledger.key_name END)"
                .into(),
        ),
        (12, "CREATE INDEX IF NOT EXISTS ledger_key_id_ts ON ledger (key_id, ts_ms)".into()),
        // The rollup gains the key id as a dimension: rebuilt under a new name, then renamed.
        (
            13,
            format!("CREATE TABLE IF NOT EXISTS ledger_hourly_by_key (hour_ms BIGINT NOT NULL, key_id TEXT NOT NULL,
             key_name TEXT NOT NULL, team TEXT NOT NULL, route TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
             tier TEXT NOT NULL, {ROLLUP_DEFS}, PRIMARY KEY ({ROLLUP_KEY_COLUMNS}))"),
        ),
        (14, rollup_fill("ledger_hourly_by_key")),
        (15, "DROP TABLE ledger_hourly".into()),
        (16, "ALTER TABLE ledger_hourly_by_key RENAME TO ledger_hourly".into()),
        // A key's rows are found through its name's index and then by id (a key id has
        // one name for good: see `Ledger::key_name_of`), so the id's own index, one of
        // six b-trees every row was written into, goes.
        (17, "DROP INDEX IF EXISTS ledger_key_id_ts".into()),
        // A team's rows are only ever read by their team (`team = ?`, which a row without
        // one never matches), so rows without a team (most keys have none) are left out of
        // its index instead of costing every such row a b-tree insert.
        (18, "DROP INDEX IF EXISTS ledger_team_ts".into()),
        (
            19,
            "CREATE INDEX IF NOT EXISTS ledger_team_ts ON ledger (team, ts_ms) WHERE team IS NOT NULL".into(),
        ),
    ]
}

/// Fills rollup table `table` from every ledger row.
fn rollup_fill(table: &str) -> String {
    format!(
        "INSERT INTO {table} ({ROLLUP_KEY_COLUMNS}, {ROLLUP_COLUMNS})
         SELECT ts_ms - (ts_ms % 3600000), COALESCE(key_id, ''), key_name, COALESCE(team, ''), route, provider, model, tier, {ROLLUP_SUMS}
         FROM ledger GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"
    )
}

/// Applies a module's own schema change `version` (numbered from 1001, beside the
/// ledger's own) once, in one transaction; on PostgreSQL under the advisory lock `lock`,
/// so replicas starting at once do not race.
pub async fn migrate_once(
    pool: &AnyPool,
    postgres: bool,
    lock: i64,
    version: i64,
    schema: &[&str],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if postgres {
        sqlx::query("SELECT CAST(pg_advisory_xact_lock($1) AS TEXT)")
            .bind(lock)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("CREATE TABLE IF NOT EXISTS bazaar_migrations (version BIGINT PRIMARY KEY)")
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("SELECT version FROM bazaar_migrations WHERE version = $1")
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
    if done.is_none() {
        for sql in schema {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO bazaar_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

impl Ledger {
    /// Connects to `url` (`sqlite://path` or `postgres://…`) and applies migrations.
    pub async fn connect(url: &str) -> Result<Ledger, LedgerError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(LedgerError::Invalid(
                "ledger.url must start with sqlite: or postgres:".into(),
            ));
        };
        let url = match backend {
            // Create the file when missing; WAL lets readers (the spend API) run beside the writer.
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let options = |writes: bool| {
            AnyPoolOptions::new()
                // `synchronous` is per connection: every one of the pool's, not just the first,
                // commits without an fsync per transaction (WAL keeps that crash-safe).
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite && writes {
                            sqlx::query(WRITER_CACHE).execute(&mut *conn).await?;
                        }
                        if backend == Backend::Sqlite {
                            sqlx::query("PRAGMA synchronous=NORMAL")
                                .execute(&mut *conn)
                                .await?;
                            // A multi-row insert keeps a statement journal; past 64 KiB SQLite
                            // spills it to a temporary file, a `pwrite` per page per batch.
                            sqlx::query("PRAGMA temp_store=MEMORY")
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(())
                    })
                })
                // A database that is down should fail a write in seconds, not sqlx's default
                // 30 s, so the writer turns to the spill file while the queue still has room.
                .acquire_timeout(std::time::Duration::from_secs(3))
                // A SQLite connection is a file handle on sqlx's thread, not a socket that
                // can go stale: no ping (a round trip to that thread) before each use.
                .test_before_acquire(backend != Backend::Sqlite)
        };
        let pool = options(false)
            // On SQLite the batch writes have a connection of their own (below).
            .max_connections(if backend == Backend::Sqlite { 3 } else { 8 })
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        let sqlite_writes = match backend {
            // The writer task, and a replay after an outage, take turns on it.
            Backend::Sqlite => Some(options(true).max_connections(1).connect_lazy(&url)?),
            Backend::Postgres => None,
        };
        let pg_writes = match backend {
            // One writer task, and a replay beside it at most.
            Backend::Postgres => Some(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(std::time::Duration::from_secs(3))
                    .connect_lazy(&url)?,
            ),
            Backend::Sqlite => None,
        };
        let ledger = Ledger {
            pool,
            sqlite_writes,
            pg_writes,
            backend,
            sql: std::sync::Arc::new(WriteSql::new(backend, SQLITE_ROWS_PER_STATEMENT)),
        };
        ledger.migrate().await?;
        Ok(ledger)
    }

    async fn migrate(&self) -> Result<(), LedgerError> {
        // Several replicas may start at once: on PostgreSQL the whole migration runs
        // under an advisory lock, in one transaction.
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT CAST(pg_advisory_xact_lock(7242651) AS TEXT)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS bazaar_migrations (version BIGINT PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        let done: Vec<i64> = sqlx::query("SELECT version FROM bazaar_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
        for (version, sql) in migrations(self.backend) {
            if done.contains(&version) {
                continue;
            }
            sqlx::query(&sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO bazaar_migrations (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Rows per INSERT statement on SQLite (1: one prepared statement reused per row);
    /// PostgreSQL always writes a batch's rows with one `COPY`.
    pub fn set_rows_per_statement(&mut self, rows: usize) {
        self.sql = std::sync::Arc::new(WriteSql::new(self.backend, rows));
    }

    /// Inserts rows (and their rollup) in one transaction.
    pub async fn insert(&self, rows: &[LedgerRow]) -> Result<(), LedgerError> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(pg) = &self.pg_writes {
            let mut tx = pg.begin().await?;
            insert_pg(&mut tx, &self.sql, rows).await?;
            tx.commit().await?;
            return Ok(());
        }
        self.sqlite_write(None, rows).await?;
        Ok(())
    }

    /// Inserts rows once per `marker`: the rows and the marker commit together, and a
    /// marker already present means the rows are already in (returns `false`).
    pub async fn insert_once(&self, marker: &str, rows: &[LedgerRow]) -> Result<bool, LedgerError> {
        let n = rows.len() as i64;
        if let Some(pg) = &self.pg_writes {
            let mut tx = pg.begin().await?;
            let claim = sqlx::query(CLAIM_MARKER).bind(marker).bind(n);
            if claim.execute(&mut *tx).await?.rows_affected() == 0 {
                return Ok(false);
            }
            insert_pg(&mut tx, &self.sql, rows).await?;
            tx.commit().await?;
            return Ok(true);
        }
        self.sqlite_write(Some(marker), rows).await
    }

    /// `insert` (or `insert_once` with `marker`) on SQLite's write connection. A
    /// connection whose write failed is closed, not handed back to the pool: on some
    /// errors (the file full, mid-statement or at COMMIT) SQLite rolls the transaction
    /// back itself and sqlx's ROLLBACK then fails, so sqlx would count the transaction as
    /// still open, begin the next one as a SAVEPOINT, and after one more failure leave a
    /// transaction open in which every later batch "commits" without ever being written.
    async fn sqlite_write(
        &self,
        marker: Option<&str>,
        rows: &[LedgerRow],
    ) -> Result<bool, LedgerError> {
        let mut conn = self.writes().acquire().await?;
        let written = async {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            if let Some(marker) = marker {
                let claim = sqlx::query(CLAIM_MARKER)
                    .bind(marker)
                    .bind(rows.len() as i64);
                if claim.execute(&mut *tx).await?.rows_affected() == 0 {
                    return Ok(false);
                }
            }
            insert_rows(&mut tx, &self.sql, rows).await?;
            tx.commit().await?;
            Ok::<bool, LedgerError>(true)
        }
        .await;
        if written.is_err() {
            // The write's error is the one to report, not a failure to close.
            let _ = conn.close().await;
        }
        written
    }

    /// Rows matching `filter`, newest first (the spend API's calls and CSV export).
    pub async fn calls(
        &self,
        filter: &Filter,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<(i64, LedgerRow)>, LedgerError> {
        self.calls_after(filter, limit, before_id, None).await
    }

    /// `calls`, continuing after `cursor`: the rows that come after it in the order
    /// (`ts_ms`, `id`) descending. Paging with the last row's cursor visits every row once,
    /// whatever the order of ids and however many rows share a timestamp.
    pub async fn calls_after(
        &self,
        filter: &Filter,
        limit: i64,
        before_id: Option<i64>,
        cursor: Option<Cursor>,
    ) -> Result<Vec<(i64, LedgerRow)>, LedgerError> {
        let filter = self.on_rows(filter).await?;
        let (mut sql, mut args) = filter.where_clause();
        if let Some(before) = before_id {
            args.push(Arg::Int(before));
            sql.push_str(&format!(" AND id < ${}", args.len()));
        }
        if let Some(c) = cursor {
            // `ts_ms <= t` first, so the time index bounds the scan.
            args.push(Arg::Int(c.ts_ms));
            args.push(Arg::Int(c.id));
            let (t, id) = (args.len() - 1, args.len());
            sql.push_str(&format!(
                " AND ts_ms <= ${t} AND (ts_ms < ${t} OR id < ${id})"
            ));
        }
        args.push(Arg::Int(limit));
        let sql = format!(
            "SELECT id, {COLUMNS} FROM ledger WHERE {sql} ORDER BY ts_ms DESC, id DESC LIMIT ${}",
            args.len()
        );
        let rows = bind_all(sqlx::query(&sql), &args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)?, row_from(r, 1)?)))
            .collect()
    }

    /// Aggregates per group (and per time bucket when `bucket_ms` is set).
    pub async fn aggregate(
        &self,
        filter: &Filter,
        group_by: GroupBy,
        bucket_ms: Option<i64>,
    ) -> Result<Vec<Aggregate>, LedgerError> {
        let group = group_by.column();
        let sums: Vec<String> = ROLLUP_COLUMNS
            .split(", ")
            .map(|c| format!("CAST(SUM({c}) AS BIGINT)"))
            .collect();
        let (source, time, bucket, where_sql, args) = if filter.errors.is_none() {
            // The hourly rollup: whole hours, from the hour `from` falls in.
            let rounded = Filter {
                from_ms: filter.from_ms - filter.from_ms.rem_euclid(HOUR_MS),
                ..filter.clone()
            };
            let (w, args) = rounded.where_on("hour_ms");
            ("ledger_hourly", "hour_ms", sums.join(", "), w, args)
        } else {
            let (w, args) = self.on_rows(filter).await?.where_on("ts_ms");
            ("ledger", "ts_ms", ROLLUP_SUMS_CAST.to_string(), w, args)
        };
        let bucket_expr = match bucket_ms {
            Some(ms) => format!("CAST({time} - ({time} % {ms}) AS BIGINT)"),
            None => "CAST(0 AS BIGINT)".to_string(),
        };
        let sql = format!("SELECT {bucket_expr} AS bucket, COALESCE({group}, '') AS grp, {bucket} FROM {source} WHERE {where_sql} GROUP BY 1, 2 ORDER BY 1, 2");
        let rows = bind_all(sqlx::query(&sql), &args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let n = |i: usize| -> Result<i64, sqlx::Error> {
                    r.try_get::<Option<i64>, _>(i).map(|v| v.unwrap_or(0))
                };
                Ok(Aggregate {
                    bucket_ms: n(0)?,
                    group: r.try_get::<String, _>(1)?,
                    requests: n(2)?,
                    errors: n(3)?,
                    cost_nanos: n(4)?,
                    baseline_cost_nanos: n(5)?,
                    unpriced: n(6)?,
                    tokens: [n(7)?, n(8)?, n(9)?, n(10)?, n(11)?],
                    fallbacks: n(12)?,
                })
            })
            .collect()
    }

    /// Latencies (ms) and TTFTs of up to `limit` most recent rows per group, for percentiles.
    pub async fn latencies(
        &self,
        filter: &Filter,
        group_by: GroupBy,
        limit: i64,
    ) -> Result<Vec<(String, i64, Option<i64>)>, LedgerError> {
        let (where_sql, mut args) = self.on_rows(filter).await?.where_clause();
        args.push(Arg::Int(limit));
        let sql = format!(
            "SELECT COALESCE({}, ''), latency_ms, ttft_ms FROM ledger WHERE {where_sql} AND status < 400 ORDER BY ts_ms DESC LIMIT ${}",
            group_by.column(),
            args.len()
        );
        let rows = bind_all(sqlx::query(&sql), &args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// The pool, for the key store's queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Where batch writes go on the `Any` driver: SQLite's write connection.
    fn writes(&self) -> &AnyPool {
        self.sqlite_writes.as_ref().unwrap_or(&self.pool)
    }

    /// Recomputes the hourly rollup from the rows (after rows were written around `insert`).
    pub async fn rebuild_rollup(&self) -> Result<(), LedgerError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ledger_hourly")
            .execute(&mut *tx)
            .await?;
        sqlx::query(&rollup_fill("ledger_hourly"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes every connection: further writes fail (as if the database were down).
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(writes) = &self.sqlite_writes {
            writes.close().await;
        }
        if let Some(pg) = &self.pg_writes {
            pg.close().await;
        }
    }

    /// Rows in the ledger (tests and the load check).
    pub async fn count(&self) -> Result<i64, LedgerError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM ledger")
            .fetch_one(&self.pool)
            .await?
            .try_get::<i64, _>(0)?)
    }

    /// Spend since `since_ms` of the key whose id is `value` (`GroupBy::Key`: by id, never
    /// by name, which a later key may reuse) or of another group's value (a team), for
    /// budget windows after a restart.
    pub async fn spent_since(
        &self,
        column: GroupBy,
        value: &str,
        since_ms: i64,
    ) -> Result<i64, LedgerError> {
        let window = Filter {
            from_ms: since_ms,
            to_ms: i64::MAX,
            ..Default::default()
        };
        let filter = match column {
            GroupBy::Key => Filter {
                key_id: Some(value.to_string()),
                ..window
            },
            other => Filter {
                equals: vec![(other, value.to_string())],
                ..window
            },
        };
        let (where_sql, args) = self.on_rows(&filter).await?.where_clause();
        let sql = format!(
            "SELECT CAST(SUM(COALESCE(cost_nanos, 0)) AS BIGINT) FROM ledger WHERE {where_sql}"
        );
        let row = bind_all(sqlx::query(&sql), &args)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
    }

    /// The name of the key whose id is `key_id`, which is its name for good: a virtual
    /// key's name never changes (`virtual_keys`), a config key's id is `config:<name>`,
    /// the master key's is `master`; and every row of the key carries that id and that
    /// name (rows from before key ids got theirs by name: migration 11 and
    /// `writer::fill_key_ids`). `None` for an id no key has.
    async fn key_name_of(&self, key_id: &str) -> Result<Option<String>, LedgerError> {
        if key_id == "master" {
            return Ok(Some(key_id.to_string()));
        }
        if let Some(name) = key_id.strip_prefix("config:") {
            return Ok(Some(name.to_string()));
        }
        let row = sqlx::query("SELECT name FROM virtual_keys WHERE id = $1")
            .bind(key_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    /// `filter` as a query of the rows themselves takes it: a key's own rows (by id) are
    /// read through the index of their name, `ledger_key_ts`, and then by id (the ledger
    /// keeps no index of its own on the id since migration 17); the name adds no condition
    /// the id does not already make.
    async fn on_rows<'f>(&self, filter: &'f Filter) -> Result<Cow<'f, Filter>, LedgerError> {
        let Some(id) = &filter.key_id else {
            return Ok(Cow::Borrowed(filter));
        };
        let Some(name) = self.key_name_of(id).await? else {
            return Ok(Cow::Borrowed(filter));
        };
        let mut filter = filter.clone();
        filter.equals.push((GroupBy::Key, name));
        Ok(Cow::Owned(filter))
    }
}

fn row_from(r: &AnyRow, o: usize) -> Result<LedgerRow, sqlx::Error> {
    let text = |i: usize| r.try_get::<String, _>(o + i).map(Arc::from);
    let optional = |i: usize| r.try_get::<Option<String>, _>(o + i);
    Ok(LedgerRow {
        ts_ms: r.try_get(o)?,
        request_id: text(1)?,
        key_name: text(2)?,
        team: optional(3)?.map(Arc::from),
        route: text(4)?,
        provider: text(5)?,
        model: text(6)?,
        tier: r.try_get::<String, _>(o + 7)?.into(),
        endpoint: r.try_get::<String, _>(o + 8)?.into(),
        input_tokens: r.try_get(o + 9)?,
        cached_input_tokens: r.try_get(o + 10)?,
        cache_write_tokens: r.try_get(o + 11)?,
        output_tokens: r.try_get(o + 12)?,
        reasoning_tokens: r.try_get(o + 13)?,
        cost_nanos: r.try_get(o + 14)?,
        baseline_cost_nanos: r.try_get(o + 15)?,
        catalog_version: text(16)?,
        estimated: Estimated::from_column(r.try_get::<i64, _>(o + 17)?),
        latency_ms: r.try_get(o + 18)?,
        ttft_ms: r.try_get(o + 19)?,
        status: r.try_get::<i64, _>(o + 20)? as i32,
        error_type: optional(21)?.map(Cow::Owned),
        fallbacks: r.try_get::<i64, _>(o + 22)? as i32,
        key_id: optional(23)?.map(Arc::from).unwrap_or_default(),
    })
}

/// What spend can be grouped by (a closed set: never a client string in SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Team,
    Model,
    Provider,
    Tier,
    Route,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "key" => GroupBy::Key,
            "team" => GroupBy::Team,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "tier" => GroupBy::Tier,
            "route" => GroupBy::Route,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Key => "key",
            GroupBy::Team => "team",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Tier => "tier",
            GroupBy::Route => "route",
        }
    }

    fn column(self) -> &'static str {
        match self {
            GroupBy::Key => "key_name",
            GroupBy::Team => "team",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Tier => "tier",
            GroupBy::Route => "route",
        }
    }
}

/// A position in the spend API's row order, (`ts_ms`, `id`) descending: a row's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub ts_ms: i64,
    pub id: i64,
}

/// Row filters of the spend API; every value is bound, never spliced into SQL.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from_ms: i64,
    pub to_ms: i64,
    pub equals: Vec<(GroupBy, String)>,
    /// Only the rows of the key with this id (a key's own spend view).
    pub key_id: Option<String>,
    /// `Some(true)`: errors only; `Some(false)`: successes only.
    pub errors: Option<bool>,
}

#[derive(Debug, Clone)]
enum Arg {
    Int(i64),
    Text(String),
}

impl Filter {
    fn where_clause(&self) -> (String, Vec<Arg>) {
        self.where_on("ts_ms")
    }

    fn where_on(&self, time: &str) -> (String, Vec<Arg>) {
        let mut args = vec![Arg::Int(self.from_ms), Arg::Int(self.to_ms)];
        let mut sql = format!("{time} >= $1 AND {time} < $2");
        for (column, value) in &self.equals {
            args.push(Arg::Text(value.clone()));
            sql.push_str(&format!(" AND {} = ${}", column.column(), args.len()));
        }
        if let Some(id) = &self.key_id {
            args.push(Arg::Text(id.clone()));
            sql.push_str(&format!(" AND key_id = ${}", args.len()));
        }
        match self.errors {
            Some(true) => sql.push_str(" AND status >= 400"),
            Some(false) => sql.push_str(" AND status < 400"),
            None => {}
        }
        (sql, args)
    }
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &[Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.clone()),
        };
    }
    q
}

/// One group (in one time bucket) of the spend API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub bucket_ms: i64,
    pub group: String,
    pub requests: i64,
    pub errors: i64,
    pub cost_nanos: i64,
    pub baseline_cost_nanos: i64,
    pub unpriced: i64,
    /// input, cached_input, cache_write, output, reasoning.
    pub tokens: [i64; 5],
    pub fallbacks: i64,
}

/// Every row's request id, sorted (tests: each row written once).
#[cfg(test)]
async fn sorted_request_ids(ledger: &Ledger) -> Vec<String> {
    let all = Filter {
        to_ms: i64::MAX,
        ..Default::default()
    };
    let mut ids: Vec<String> = ledger
        .calls(&all, 100_000, None)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(_, r)| r.request_id.to_string())
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::insert::{bind_cells, row_cells};
    use super::*;

    fn row(ts: i64, key: &str, cost: Option<i64>) -> LedgerRow {
        LedgerRow {
            ts_ms: ts,
            request_id: format!("r{ts}").into(),
            key_name: key.into(),
            team: Some("web".into()),
            route: "auto".into(),
            provider: "groq".into(),
            model: "llama-3.3-70b".into(),
            tier: "open-hosted".into(),
            endpoint: "chat".into(),
            input_tokens: 10,
            output_tokens: 5,
            cost_nanos: cost,
            baseline_cost_nanos: cost.map(|c| c * 10),
            catalog_version: "v".into(),
            latency_ms: 100,
            status: 200,
            ..Default::default()
        }
    }

    /// A ledger in a fresh SQLite file named after `name`, and the file's path.
    async fn temp_ledger(name: &str) -> (Ledger, std::path::PathBuf) {
        let path =
            std::env::temp_dir().join(format!("bazaar-{name}-{}.sqlite", std::process::id()));
        remove_sqlite(&path);
        let ledger = Ledger::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        (ledger, path)
    }

    /// Removes a SQLite file and its `-wal` and `-shm`.
    fn remove_sqlite(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// The ledger holds exactly the rows of `batches`, and its rollup their sums (none
    /// of a failed batch's).
    async fn assert_only_written(ledger: &Ledger, batches: &[Vec<LedgerRow>]) {
        let mut want: Vec<String> = batches
            .iter()
            .flatten()
            .map(|r| r.request_id.to_string())
            .collect();
        want.sort();
        assert_eq!(sorted_request_ids(ledger).await, want);
        let (summed, kept) = rollup_against_rows(ledger).await;
        assert_eq!(kept, summed);
    }

    /// The rollup table as the ledger's rows sum up (`rollup_fill`'s query) and as it
    /// is, each sorted.
    async fn rollup_against_rows(ledger: &Ledger) -> (Vec<String>, Vec<String>) {
        let read = |sql: String| async move {
            let rows = sqlx::query(&sql).fetch_all(ledger.pool()).await.unwrap();
            let mut out: Vec<String> = rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| match r.try_get::<i64, _>(i) {
                            Ok(n) => n.to_string(),
                            Err(_) => r.try_get::<String, _>(i).unwrap(),
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            out.sort();
            out
        };
        let summed = read(format!(
            "SELECT ts_ms - (ts_ms % 3600000), COALESCE(key_id, ''), key_name, COALESCE(team, ''), route, provider, model, tier, {ROLLUP_SUMS_CAST}
             FROM ledger GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"
        ))
        .await;
        let kept = read(format!(
            "SELECT {ROLLUP_KEY_COLUMNS}, {ROLLUP_COLUMNS} FROM ledger_hourly"
        ))
        .await;
        (summed, kept)
    }

    /// Rows in no order, one group's rows interleaved with others' and split across
    /// batches, texts equal but not shared (as rows made apart have them), `None` and
    /// `Some("")` teams: the rollup holds exactly the sums of the rows written.
    #[tokio::test]
    async fn the_rollup_sums_unsorted_rows_and_groups_split_across_batches() {
        let (mut ledger, path) = temp_ledger("rollup-runs").await;
        ledger.set_rows_per_statement(3);
        // A fixed shuffle: i * 7919 mod 101 visits 0..101 once each.
        let rows: Vec<LedgerRow> = (0..101i64)
            .map(|i| (i * 7919) % 101)
            .map(|i| {
                let mut r = row(
                    (i % 3) * HOUR_MS + i,
                    ["a", "b", "a"][i as usize % 3],
                    (i % 4 != 0).then_some(i),
                );
                r.request_id = format!("r{i}").into();
                r.model = format!("m{}", i % 2).into();
                r.team = match i % 5 {
                    0 => None,
                    1 => Some("".into()),
                    _ => Some("web".into()),
                };
                r.status = if i % 6 == 0 { 502 } else { 200 };
                r.input_tokens = i;
                r.fallbacks = (i % 2) as i32;
                r
            })
            .collect();
        for batch in rows.chunks(17) {
            ledger.insert(batch).await.unwrap();
        }
        let (summed, kept) = rollup_against_rows(&ledger).await;
        assert!(!summed.is_empty());
        assert_eq!(kept, summed);
        ledger.close().await;
        remove_sqlite(&path);
    }

    /// A batch in which one row fails a constraint (here a trigger refusing it, in the
    /// middle of a statement whose earlier rows `INSERT OR FAIL` keeps), or whose rollup
    /// fails after its rows were inserted, writes nothing: not its earlier rows, not its
    /// rollup; the next batch is written whole.
    #[tokio::test]
    async fn a_batch_with_one_failing_row_writes_none_of_its_rows() {
        let (mut ledger, path) = temp_ledger("row-fails").await;
        ledger.set_rows_per_statement(8);
        let rows = |from: i64, n: i64| -> Vec<LedgerRow> {
            (from..from + n)
                .map(|i| row(i, &format!("k{}", i % 3), Some(i)))
                .collect()
        };
        ledger.insert(&rows(0, 5)).await.unwrap();
        let exec = |sql: &'static str| sqlx::query(sql).execute(ledger.pool());
        // Each trigger refuses one batch, then goes.
        for (trigger, drop, batch, what) in [
            (
                "CREATE TRIGGER refuse_row BEFORE INSERT ON ledger WHEN NEW.request_id = 'r1005'
                 BEGIN SELECT RAISE(FAIL, 'refused'); END",
                "DROP TRIGGER refuse_row",
                rows(1_000, 12),
                "a row refused mid-statement",
            ),
            // Its groups exist already: the upsert updates, and fails, after the rows
            // went in.
            (
                "CREATE TRIGGER refuse_rollup BEFORE UPDATE ON ledger_hourly
                 BEGIN SELECT RAISE(FAIL, 'refused'); END",
                "DROP TRIGGER refuse_rollup",
                rows(2_000, 6),
                "the rollup refused",
            ),
        ] {
            exec(trigger).await.unwrap();
            assert!(ledger.insert(&batch).await.is_err(), "{what}");
            exec(drop).await.unwrap();
        }
        ledger.insert(&rows(3_000, 4)).await.unwrap();
        assert_only_written(&ledger, &[rows(0, 5), rows(3_000, 4)]).await;
        ledger.close().await;
        remove_sqlite(&path);
    }

    /// A replayed chunk is written once: a second replay of the same marker writes
    /// nothing (rows and rollup not counted twice), and a replay whose batch failed left
    /// its marker unclaimed, so the next replay of it writes it.
    #[tokio::test]
    async fn a_replayed_chunk_is_written_once_and_a_failed_one_again() {
        let (ledger, path) = temp_ledger("replay-once").await;
        let rows = |from: i64| -> Vec<LedgerRow> {
            (from..from + 6)
                .map(|i| row(i, &format!("k{}", i % 2), Some(i)))
                .collect()
        };
        assert!(ledger.insert_once("spill#0", &rows(0)).await.unwrap());
        assert!(!ledger.insert_once("spill#0", &rows(0)).await.unwrap());
        let exec = |sql: &'static str| sqlx::query(sql).execute(ledger.pool());
        exec(
            "CREATE TRIGGER refuse_row BEFORE INSERT ON ledger WHEN NEW.request_id = 'r103'
             BEGIN SELECT RAISE(FAIL, 'refused'); END",
        )
        .await
        .unwrap();
        assert!(ledger.insert_once("spill#1", &rows(100)).await.is_err());
        exec("DROP TRIGGER refuse_row").await.unwrap();
        assert!(ledger.insert_once("spill#1", &rows(100)).await.unwrap());
        assert!(!ledger.insert_once("spill#1", &rows(100)).await.unwrap());
        assert_only_written(&ledger, &[rows(0), rows(100)]).await;
        ledger.close().await;
        remove_sqlite(&path);
    }

    #[tokio::test]
    async fn every_sqlite_statement_shape_writes_the_same_rows_and_rollup() {
        let mut seen = Vec::new();
        for width in [1, 3, 32, 5] {
            let path = std::env::temp_dir().join(format!(
                "bazaar-shape-{}-{width}.sqlite",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&path);
            let mut ledger = Ledger::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            ledger.set_rows_per_statement(width);
            let mut rows: Vec<LedgerRow> = (0..7)
                .map(|i| row(i * 1_000_000, ["a", "b"][i as usize % 2], Some(i * 3)))
                .collect();
            rows[2].team = None;
            rows[3].cost_nanos = None;
            rows[4].request_id = "quote \" and \\ and ü".into();
            rows[5].ts_ms = i64::MAX / 2;
            ledger.insert(&rows).await.unwrap();
            ledger.insert(&rows[..2]).await.unwrap();
            let all = Filter {
                to_ms: i64::MAX,
                ..Default::default()
            };
            let mut back: Vec<LedgerRow> = ledger
                .calls(&all, 100, None)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, r)| r)
                .collect();
            back.sort_by_key(|r| (r.ts_ms, r.request_id.clone()));
            let hourly: Vec<(i64, String, i64, i64)> = sqlx::query_as(
                "SELECT hour_ms, key_name, requests, cost_nanos FROM ledger_hourly ORDER BY 1, 2",
            )
            .fetch_all(ledger.pool())
            .await
            .unwrap();
            seen.push((format!("{back:?}"), hourly));
            ledger.close().await;
            let _ = std::fs::remove_file(&path);
        }
        for other in &seen[1..] {
            assert_eq!(&seen[0], other);
        }
        assert!(seen[0].0.contains(r#"quote \" and \\ and ü"#));
    }

    /// Batches longer than a statement and with more rollup groups than one upsert
    /// takes (each cut into fixed-width chunks, the last one short): every row is
    /// written once, and the rollup summed batch by batch equals one rebuilt from the rows.
    #[tokio::test]
    async fn chunked_batches_write_every_row_and_the_rollup_of_a_rebuild() {
        let path =
            std::env::temp_dir().join(format!("bazaar-chunks-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut ledger = Ledger::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        ledger.set_rows_per_statement(7);
        let rows: Vec<LedgerRow> = (0..300)
            .map(|i| LedgerRow {
                status: if i % 11 == 0 { 502 } else { 200 },
                ..row(
                    i * 60_000,
                    &format!("k{}", i % 40),
                    (i % 5 != 0).then_some(i),
                )
            })
            .collect();
        for batch in rows.chunks(97) {
            ledger.insert(batch).await.unwrap();
        }
        let mut want: Vec<String> = rows.iter().map(|r| r.request_id.to_string()).collect();
        want.sort();
        assert_eq!(sorted_request_ids(&ledger).await, want, "every row once");
        let hourly = || {
            sqlx::query_as::<_, (i64, String, i64, i64, i64, i64, i64)>(
                "SELECT hour_ms, key_name, requests, errors, cost_nanos, baseline_cost_nanos, unpriced
                 FROM ledger_hourly ORDER BY 1, 2",
            )
            .fetch_all(ledger.pool())
        };
        let summed = hourly().await.unwrap();
        assert!(summed.len() > 2 * 40, "{} groups", summed.len());
        ledger.rebuild_rollup().await.unwrap();
        assert_eq!(summed, hourly().await.unwrap());
        ledger.close().await;
        let _ = std::fs::remove_file(&path);
    }

    /// Runs one migration on a scratch ledger and records it as applied, as `open` would.
    async fn apply_migration(pool: &sqlx::AnyPool, version: i64, sql: &str) {
        sqlx::query(sql).execute(pool).await.unwrap();
        sqlx::query("INSERT INTO bazaar_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(pool)
            .await
            .unwrap();
    }

    /// An empty SQLite file named for `tag` with only the migrations table, for a test to
    /// build an older schema in; one connection, as another one's schema would be stale
    /// after a migration's DROP TABLE and RENAME.
    async fn scratch_ledger(tag: &str) -> (std::path::PathBuf, sqlx::AnyPool) {
        let file = format!("bazaar-{tag}-{}.sqlite", std::process::id());
        let path = std::env::temp_dir().join(file);
        let _ = std::fs::remove_file(&path);
        let url = format!("sqlite://{}?mode=rwc", path.display());
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE bazaar_migrations (version BIGINT PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        (path, pool)
    }

    /// A ledger written before rows carried key ids: its rows get the id of the key of
    /// their name live when they were written (the revoked one for the older rows), or
    /// their config key's, and the rollup is rebuilt with the id as a dimension.
    #[tokio::test]
    async fn older_rows_get_their_key_ids() {
        let (path, pool) = scratch_ledger("keyids").await;
        for (version, sql) in migrations(Backend::Sqlite)
            .into_iter()
            .filter(|(v, _)| *v <= 9)
        {
            if version == 5 {
                // The rows, once the ledger exists (and before migration 8 rolls them up).
                for (ts, key) in [
                    (1_000, "a"),
                    (6_000, "a"),
                    (2_000, "app"),
                    (3_000, "master"),
                ] {
                    let old = COLUMNS.replace(", key_id", "");
                    let marks = vec!["?"; N_COLUMNS - 1].join(",");
                    let sql = format!("INSERT INTO ledger ({old}) VALUES ({marks})");
                    let r = row(ts, key, Some(10));
                    let cells = row_cells(&r).into_iter().take(N_COLUMNS - 1);
                    bind_cells(sqlx::query(&sql), cells)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            }
            apply_migration(&pool, version, &sql).await;
        }
        for (id, created, revoked) in [("key_old", 0, 1), ("key_new", 5_000, 0)] {
            sqlx::query("INSERT INTO virtual_keys (id, hash, name, models, tiers, markup_bp, revoked, created_ms) VALUES ($1, $2, 'a', '', '', 0, $3, $4)")
                .bind(id)
                .bind(id)
                .bind(revoked)
                .bind(created)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;

        let ledger = Ledger::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let all = Filter {
            to_ms: i64::MAX,
            ..Default::default()
        };
        let mut ids: Vec<(i64, String)> = ledger
            .calls(&all, 10, None)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, r)| (r.ts_ms, r.key_id.to_string()))
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            [
                (1_000, "key_old".to_string()),
                (2_000, "config:app".to_string()),
                (3_000, "master".to_string()),
                (6_000, "key_new".to_string()),
            ]
        );
        let new_only = Filter {
            key_id: Some("key_new".into()),
            ..all.clone()
        };
        let spend = ledger
            .aggregate(&new_only, GroupBy::Key, None)
            .await
            .unwrap();
        assert_eq!((spend.len(), spend[0].requests), (1, 1), "{spend:?}");
        ledger.close().await;
        let _ = std::fs::remove_file(&path);
    }

    /// A ledger of the schema before migration 17 (every migration up to 16, the learn
    /// store's request-id index, rows of a config key, a virtual key and a revoked key of
    /// the same name) opens with the id's index dropped, and a key's own rows, spend and
    /// budget window read the same as before it, through the name's index.
    /// What the spend API shows of one key: its calls, spend by model, latencies and
    /// budget seed.
    async fn key_views(
        ledger: &Ledger,
        filter: &Filter,
        id: &str,
    ) -> (
        Vec<(i64, LedgerRow)>,
        Vec<Aggregate>,
        Vec<(String, i64, Option<i64>)>,
        i64,
    ) {
        (
            ledger.calls(filter, 10, None).await.unwrap(),
            ledger
                .aggregate(filter, GroupBy::Model, None)
                .await
                .unwrap(),
            ledger.latencies(filter, GroupBy::Model, 10).await.unwrap(),
            ledger.spent_since(GroupBy::Key, id, 1_500).await.unwrap(),
        )
    }

    /// SQLite's plan for `sql` with `args`, its steps' details joined.
    async fn query_plan(ledger: &Ledger, sql: &str, args: &[Arg]) -> String {
        bind_all(sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}")), args)
            .fetch_all(ledger.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(3))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Every query that filters by team (its calls, latencies, errors and budget window)
    /// reads the team's index, which holds only the rows that have a team, and finds
    /// exactly the team's rows.
    #[tokio::test]
    async fn team_filters_read_the_partial_team_index() {
        let path = std::env::temp_dir().join(format!("bazaar-team-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = Ledger::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let rows: Vec<LedgerRow> = (0..40)
            .map(|i| LedgerRow {
                team: [None, Some("web".into()), Some("ops".into())][i % 3].clone(),
                status: if i % 4 == 0 { 502 } else { 200 },
                ..row(i as i64 * 1_000, "a", Some(i as i64))
            })
            .collect();
        ledger.insert(&rows).await.unwrap();
        let definition: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'ledger_team_ts'")
                .fetch_one(ledger.pool())
                .await
                .unwrap();
        assert!(
            definition.ends_with("WHERE team IS NOT NULL"),
            "{definition}"
        );
        let team = Filter {
            to_ms: i64::MAX,
            equals: vec![(GroupBy::Team, "web".into())],
            ..Default::default()
        };
        let (w, args) = team.where_clause();
        // The shapes of `calls`, `latencies`, `aggregate` of errors and `spent_since`.
        for sql in [
            format!("SELECT id FROM ledger WHERE {w} ORDER BY ts_ms DESC, id DESC LIMIT 10"),
            format!("SELECT latency_ms FROM ledger WHERE {w} AND status < 400 ORDER BY ts_ms DESC LIMIT 10"),
            format!("SELECT model, COUNT(*) FROM ledger WHERE {w} AND status >= 400 GROUP BY 1"),
            format!("SELECT SUM(COALESCE(cost_nanos, 0)) FROM ledger WHERE {w}"),
        ] {
            let plan = query_plan(&ledger, &sql, &args).await;
            assert!(
                plan.contains("INDEX ledger_team_ts (team=?"),
                "{sql}: {plan}"
            );
        }
        let web: Vec<&LedgerRow> = rows
            .iter()
            .filter(|r| r.team.as_deref() == Some("web"))
            .collect();
        let calls = ledger.calls(&team, 100, None).await.unwrap();
        assert_eq!(calls.len(), web.len());
        assert!(calls.iter().all(|(_, r)| r.team.as_deref() == Some("web")));
        let errors = Filter {
            errors: Some(true),
            ..team.clone()
        };
        let failed = ledger
            .aggregate(&errors, GroupBy::Team, None)
            .await
            .unwrap();
        assert_eq!(
            failed.iter().map(|a| a.requests).sum::<i64>(),
            web.iter().filter(|r| r.status >= 400).count() as i64
        );
        assert_eq!(
            ledger.spent_since(GroupBy::Team, "web", 0).await.unwrap(),
            web.iter().filter_map(|r| r.cost_nanos).sum::<i64>()
        );
        ledger.close().await;
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn the_key_id_index_is_dropped_from_an_existing_ledger() {
        let (path, pool) = scratch_ledger("mig17").await;
        for (version, sql) in migrations(Backend::Sqlite)
            .into_iter()
            .filter(|(v, _)| *v <= 16)
        {
            apply_migration(&pool, version, &sql).await;
        }
        let ledger = Ledger {
            pool: pool.clone(),
            sqlite_writes: None,
            pg_writes: None,
            backend: Backend::Sqlite,
            sql: Arc::new(WriteSql::new(Backend::Sqlite, 1)),
        };
        learn::migrate(&ledger).await.unwrap();
        for (id, created, revoked) in [("key_old", 0, 1), ("key_new", 5_000, 0)] {
            sqlx::query("INSERT INTO virtual_keys (id, hash, name, models, tiers, markup_bp, revoked, created_ms) VALUES ($1, $1, 'a', '', '', 0, $2, $3)")
                .bind(id)
                .bind(revoked)
                .bind(created)
                .execute(&pool)
                .await
                .unwrap();
        }
        let rows: Vec<LedgerRow> = [
            (1_000, "a", "key_old"),
            (6_000, "a", "key_new"),
            (7_000, "a", "key_new"),
            (2_000, "app", "config:app"),
            (3_000, "master", "master"),
        ]
        .into_iter()
        .map(|(ts, key, id)| LedgerRow {
            key_id: id.into(),
            ..row(ts, key, Some(ts))
        })
        .collect();
        let marks = vec![format!("({})", vec!["?"; N_COLUMNS].join(",")); rows.len()].join(",");
        let sql = format!("INSERT INTO ledger ({COLUMNS}) VALUES {marks}");
        bind_cells(sqlx::query(&sql), rows.iter().flat_map(row_cells))
            .execute(&pool)
            .await
            .unwrap();
        ledger.rebuild_rollup().await.unwrap();
        let all = Filter {
            to_ms: i64::MAX,
            ..Default::default()
        };
        let by_id = |id: &str| Filter {
            key_id: Some(id.into()),
            ..all.clone()
        };
        let ids = ["key_old", "key_new", "config:app", "master", "key_none"];
        let mut before = Vec::new();
        for id in ids {
            before.push(key_views(&ledger, &by_id(id), id).await);
        }
        pool.close().await;

        let ledger = Ledger::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger' ORDER BY name",
        )
        .fetch_all(ledger.pool())
        .await
        .unwrap();
        assert_eq!(
            indexes,
            [
                "ledger_key_ts",
                "ledger_request_id",
                "ledger_team_ts",
                "ledger_ts"
            ]
        );
        for (id, before) in ids.into_iter().zip(before) {
            assert_eq!(key_views(&ledger, &by_id(id), id).await, before, "{id}");
        }
        let mut found = Vec::new();
        for id in ids {
            let calls = ledger.calls(&by_id(id), 10, None).await.unwrap();
            assert!(calls.iter().all(|(_, r)| &*r.key_id == id), "{id}");
            let spent = ledger.spent_since(GroupBy::Key, id, 1_500).await.unwrap();
            found.push((calls.len(), spent));
        }
        // Each key's rows by id alone, the revoked key's apart from the new one's.
        assert_eq!(found, [(1, 0), (2, 13_000), (1, 2_000), (1, 3_000), (0, 0)]);
        // The name's index serves a key's own rows.
        let (where_sql, args) = ledger
            .on_rows(&by_id("key_new"))
            .await
            .unwrap()
            .where_clause();
        let sql = format!(
            "SELECT id FROM ledger WHERE {where_sql} ORDER BY ts_ms DESC, id DESC LIMIT 10"
        );
        let plan = query_plan(&ledger, &sql, &args).await;
        assert!(
            plan.contains("USING INDEX ledger_key_ts (key_name=?"),
            "{plan}"
        );
        ledger.close().await;
        let _ = std::fs::remove_file(&path);
    }

    /// A batch that fails part way (the file full: SQLite then rolls back the whole
    /// transaction itself), then one that fails before writing (another connection holds
    /// the write lock), then one that succeeds: the last one's rows are committed, seen
    /// by another connection, and none of the failed batches' rows are.
    #[tokio::test]
    async fn a_batch_after_failed_ones_commits_its_rows() {
        let path =
            std::env::temp_dir().join(format!("bazaar-failed-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = Ledger::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let rows = |from: i64, n: i64| -> Vec<LedgerRow> {
            (from..from + n)
                .map(|i| row(i, &format!("k{}", i % 3), Some(i)))
                .collect()
        };
        ledger.insert(&rows(0, 10)).await.unwrap();
        let pragma = |sql: &'static str| sqlx::query(sql).execute(ledger.writes());
        let pages: i64 = sqlx::query("PRAGMA page_count")
            .fetch_one(ledger.writes())
            .await
            .unwrap()
            .get(0);
        sqlx::query(&format!("PRAGMA max_page_count={pages}"))
            .execute(ledger.writes())
            .await
            .unwrap();
        assert!(ledger.insert(&rows(1_000, 2_000)).await.is_err(), "full");
        pragma("PRAGMA max_page_count=1073741823").await.unwrap();
        pragma("PRAGMA busy_timeout=0").await.unwrap();
        let mut other = ledger.pool().acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *other)
            .await
            .unwrap();
        assert!(ledger.insert(&rows(5_000, 10)).await.is_err(), "locked");
        sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();
        drop(other);
        ledger.insert(&rows(9_000, 10)).await.unwrap();
        assert_only_written(&ledger, &[rows(0, 10), rows(9_000, 10)]).await;
        ledger.close().await;
        remove_sqlite(&path);
    }

    #[tokio::test]
    async fn sqlite_round_trip_and_aggregates() {
        let dir = std::env::temp_dir().join(format!("bazaar-ledger-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("l.sqlite").display());
        let ledger = Ledger::connect(&url).await.unwrap();
        // Migrations are idempotent.
        let ledger2 = Ledger::connect(&url).await.unwrap();
        ledger
            .insert(&[
                row(1_000, "a", Some(100)),
                row(2_000, "b", Some(50)),
                row(3_600_001, "a", None),
            ])
            .await
            .unwrap();
        assert_eq!(ledger2.count().await.unwrap(), 3);
        let f = Filter {
            from_ms: 0,
            to_ms: 10_000_000,
            ..Default::default()
        };
        let groups = ledger.aggregate(&f, GroupBy::Key, None).await.unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (
                groups[0].group.as_str(),
                groups[0].requests,
                groups[0].cost_nanos,
                groups[0].unpriced
            ),
            ("a", 2, 100, 1)
        );
        let buckets = ledger
            .aggregate(&f, GroupBy::Tier, Some(3_600_000))
            .await
            .unwrap();
        assert_eq!(
            buckets.iter().map(|b| b.bucket_ms).collect::<Vec<_>>(),
            [0, 3_600_000]
        );
        let calls = ledger
            .calls(
                &Filter {
                    equals: vec![(GroupBy::Key, "a".into())],
                    ..f.clone()
                },
                10,
                None,
            )
            .await
            .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].1.ts_ms, 3_600_001);
        assert_eq!(calls[1].1, row(1_000, "a", Some(100)));
        std::fs::remove_dir_all(&dir).ok();
    }
}
