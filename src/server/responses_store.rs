//! Stored responses for `previous_response_id` and `GET`/`DELETE /v1/responses/{id}`:
//! each response object with the conversation items it ends (input so far, then its
//! output), owned by the key that created it (by the key's id, never its name), kept for a TTL, in the ledger's database
//! (its own table and migration). Saving is an in-memory insert and a channel send; a
//! writer task persists in batches, off the request path. Reads look in memory first, so
//! a response can be continued the moment its reply is out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::billing::Clock;

/// Stored responses queued for the database at most; beyond, new ones are kept in
/// memory only until the queue drains (a warning says so).
const QUEUE: usize = 4096;
const BATCH: usize = 256;
/// Expired rows are deleted this often, by the gateway's clock (the one expiry is read
/// on, which tests move by hand).
const PURGE_EVERY_MS: i64 = 600_000;
/// When no batch wakes the writer, it looks this often whether a purge is due.
const LOOK_EVERY: Duration = Duration::from_secs(60);

/// Our migrations, recorded in the ledger's `bazaar_migrations` under their own numbers.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1001,
        &[
            "CREATE TABLE IF NOT EXISTS stored_responses (id TEXT PRIMARY KEY, key_name TEXT NOT NULL,
             created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, response TEXT NOT NULL, items TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS stored_responses_expires ON stored_responses (expires_ms)",
        ],
    ),
    // Owned by the key's id, not its name (a new key may reuse a revoked key's name).
    // Responses stored before get the id the ledger's own migration gives a row of that
    // name and time: the newest virtual key of the name created before it, else the
    // config key of the name (or `master`).
    (
        1003,
        &[
            "UPDATE stored_responses SET key_name = COALESCE(
               (SELECT v.id FROM virtual_keys v WHERE v.name = stored_responses.key_name
                AND v.created_ms <= stored_responses.created_ms ORDER BY v.created_ms DESC LIMIT 1),
               CASE WHEN stored_responses.key_name = 'master' THEN 'master'
                    ELSE 'config:' || stored_responses.key_name END)",
            "ALTER TABLE stored_responses RENAME COLUMN key_name TO key_id",
        ],
    ),
];

/// The purges of expired rows finished so far.
#[derive(Debug, Clone, Copy, Default)]
struct Purges {
    count: u64,
    /// The time the last one deleted rows expired by (the gateway's clock), failed or not.
    through_ms: i64,
}

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    /// The id of the key that created it (`KeyConfig::id`, `master` for the master key):
    /// the only key that may read or delete it. Never the key's name, which a later key
    /// may reuse.
    pub key_id: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// The response object as the client got it.
    pub response: String,
    /// The conversation's items, a JSON array: what `previous_response_id` continues.
    pub items: String,
}

/// The store: a pool on the ledger's database, the not-yet-written responses, and the
/// writer's queue.
pub struct ResponseStore {
    pool: AnyPool,
    pending: Mutex<HashMap<String, Arc<Stored>>>,
    queue: mpsc::Sender<Arc<Stored>>,
    clock: Clock,
    /// `[responses] ttl` in milliseconds; a reload changes it for responses saved after.
    ttl_ms: AtomicU64,
    /// Held by a batch write and by a delete, so a delete never lands between a write's
    /// look at `pending` and its commit (which would bring the deleted response back).
    writing: tokio::sync::Mutex<()>,
    /// Purges of expired rows finished so far (failed ones included).
    purges: tokio::sync::watch::Sender<Purges>,
    /// Lookups so far (`load`), and those of them that read the database.
    loads: AtomicU64,
    database_reads: AtomicU64,
}

impl std::fmt::Debug for ResponseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStore")
            .field("ttl_ms", &self.ttl_ms)
            .finish()
    }
}

/// Connects to the ledger's database (`url`), applies the store's migration, and returns
/// the store and its writer task (which flushes and ends when `stop` is cancelled).
pub async fn start(
    url: &str,
    clock: Clock,
    ttl: Duration,
    stop: CancellationToken,
) -> Result<(Arc<ResponseStore>, impl std::future::Future<Output = ()>), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    let url = if sqlite && !url.contains('?') {
        format!("{url}?mode=rwc")
    } else {
        url.to_string()
    };
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { 2 } else { 4 })
        .acquire_timeout(Duration::from_secs(3))
        .connect(&url)
        .await?;
    migrate(&pool, sqlite).await?;
    let (queue, rx) = mpsc::channel(QUEUE);
    let store = Arc::new(ResponseStore {
        pool,
        pending: Mutex::new(HashMap::new()),
        queue,
        clock,
        ttl_ms: AtomicU64::new(millis(ttl)),
        writing: tokio::sync::Mutex::new(()),
        purges: tokio::sync::watch::Sender::new(Purges::default()),
        loads: AtomicU64::new(0),
        database_reads: AtomicU64::new(0),
    });
    let task = writer(store.clone(), rx, stop);
    Ok((store, task))
}

async fn migrate(pool: &AnyPool, sqlite: bool) -> Result<(), sqlx::Error> {
    for (version, schema) in MIGRATIONS {
        crate::billing::ledger::migrate_once(pool, !sqlite, 7242652, *version, schema).await?;
    }
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ResponseStore {
    /// Sets how long responses saved from now on are kept (a config reload).
    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(millis(ttl), Ordering::Relaxed);
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stored>>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `response` (with its conversation `items`) for the key with id `key_id`. In
    /// memory at once; written to the database by the writer task.
    pub fn save(&self, key_id: &str, id: String, response: Vec<u8>, items: String) {
        let now = self.now();
        let stored = Arc::new(Stored {
            id: id.clone(),
            key_id: key_id.to_string(),
            created_ms: now,
            expires_ms: now.saturating_add(
                i64::try_from(self.ttl_ms.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
            response: String::from_utf8(response).unwrap_or_default(),
            items,
        });
        self.pending().insert(id.clone(), stored.clone());
        if self.queue.try_send(stored).is_err() {
            self.pending().remove(&id);
            tracing::warn!(
                response_id = %id,
                "The stored-response queue is full; this response cannot be continued."
            );
        }
    }

    /// The response `id` if the key with id `key_id` owns it and it has not expired;
    /// `None` otherwise (another key's response, even one of a key with the same name, is
    /// indistinguishable from a missing one).
    pub async fn load(&self, key_id: &str, id: &str) -> Result<Option<Arc<Stored>>, sqlx::Error> {
        let now = self.now();
        let fresh = |s: &Stored| s.key_id == key_id && s.expires_ms > now;
        self.loads.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = self.pending().get(id) {
            return Ok(fresh(s).then(|| s.clone()));
        }
        self.database_reads.fetch_add(1, Ordering::Relaxed);
        let row = sqlx::query(
            "SELECT id, key_id, created_ms, expires_ms, response, items FROM stored_responses WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored = Stored {
            id: row.try_get(0)?,
            key_id: row.try_get(1)?,
            created_ms: row.try_get(2)?,
            expires_ms: row.try_get(3)?,
            response: row.try_get(4)?,
            items: row.try_get(5)?,
        };
        Ok(fresh(&stored).then(|| Arc::new(stored)))
    }

    /// How many lookups of a stored response (`load`: `previous_response_id`, `GET`,
    /// `input_items`, `DELETE`) were made so far, in memory or in the database.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// How many of those lookups read the database (the response was not in memory).
    pub fn database_reads(&self) -> u64 {
        self.database_reads.load(Ordering::Relaxed)
    }

    /// Deletes response `id` if the key with id `key_id` owns it; returns whether it existed.
    pub async fn delete(&self, key_id: &str, id: &str) -> Result<bool, sqlx::Error> {
        let _writing = self.writing.lock().await;
        let Some(found) = self.load(key_id, id).await? else {
            return Ok(false);
        };
        self.pending().remove(&found.id);
        sqlx::query("DELETE FROM stored_responses WHERE id = $1 AND key_id = $2")
            .bind(id.to_string())
            .bind(key_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    /// Writes the responses of `batch` that are still pending (a response deleted while
    /// it was queued is skipped), then drops them from memory: they are read from the
    /// database from now on.
    async fn write(&self, batch: &[Arc<Stored>]) -> Result<(), sqlx::Error> {
        let _writing = self.writing.lock().await;
        let live: Vec<&Arc<Stored>> = {
            let pending = self.pending();
            batch
                .iter()
                .filter(|s| pending.get(&s.id).is_some_and(|p| Arc::ptr_eq(p, s)))
                .collect()
        };
        if live.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for s in &live {
            sqlx::query(
                "INSERT INTO stored_responses (id, key_id, created_ms, expires_ms, response, items)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(s.id.clone())
            .bind(s.key_id.clone())
            .bind(s.created_ms)
            .bind(s.expires_ms)
            .bind(s.response.clone())
            .bind(s.items.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let mut pending = self.pending();
        for s in live {
            if pending.get(&s.id).is_some_and(|p| Arc::ptr_eq(p, s)) {
                pending.remove(&s.id);
            }
        }
        Ok(())
    }

    /// Waits until the writer has finished `n` purges of expired rows since the store
    /// started (the first runs as it starts, then one every 10 minutes), and returns how
    /// many it has finished.
    pub async fn purged(&self, n: u64) -> u64 {
        self.purge_where(|p| p.count >= n).await.count
    }

    /// Waits until the writer has finished a purge of the rows expired by `ms` (the
    /// gateway's clock), every response saved before the purge began written first.
    pub async fn purged_through(&self, ms: i64) {
        self.purge_where(|p| p.through_ms >= ms).await;
    }

    async fn purge_where(&self, done: impl Fn(&Purges) -> bool) -> Purges {
        let mut purges = self.purges.subscribe();
        let reached = purges.wait_for(|p| done(p)).await.map(|p| *p);
        reached.unwrap_or_else(|_| *purges.borrow())
    }

    /// Deletes the responses expired by `now`: their rows, and those a failed write left
    /// in memory.
    async fn purge(&self, now: i64) -> Result<u64, sqlx::Error> {
        self.pending().retain(|_, s| s.expires_ms > now);
        let done = sqlx::query("DELETE FROM stored_responses WHERE expires_ms <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Writes queued responses in batches and deletes expired ones as it starts, then every
/// `PURGE_EVERY_MS` of the gateway's clock: it looks after each batch, and every
/// `LOOK_EVERY` when no batch comes. On `stop`, writes what is queued and ends.
async fn writer(
    store: Arc<ResponseStore>,
    mut rx: mpsc::Receiver<Arc<Stored>>,
    stop: CancellationToken,
) {
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(BATCH);
    let mut next_purge = i64::MIN;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                rx.close();
                while rx.recv_many(&mut batch, BATCH).await > 0 {
                    write_batch(&store, &mut batch).await;
                }
                return;
            }
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                write_batch(&store, &mut batch).await;
            }
            _ = look.tick() => {}
        }
        let now = store.now();
        if now < next_purge {
            continue;
        }
        // What was saved before now is written first, so the purge (and whoever waits
        // on it) sees every row it could delete.
        while let Ok(s) = rx.try_recv() {
            batch.push(s);
            if batch.len() == BATCH {
                write_batch(&store, &mut batch).await;
            }
        }
        if !batch.is_empty() {
            write_batch(&store, &mut batch).await;
        }
        match store.purge(now).await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "Expired stored responses deleted."),
            Err(e) => tracing::warn!("Deleting expired stored responses failed: {e}"),
        }
        next_purge = now.saturating_add(PURGE_EVERY_MS);
        store.purges.send_modify(|p| {
            p.count += 1;
            p.through_ms = now;
        });
    }
}

async fn write_batch(store: &ResponseStore, batch: &mut Vec<Arc<Stored>>) {
    // A failed write keeps the batch in memory (still readable) and tries once more.
    for attempt in 0..2 {
        match store.write(batch).await {
            Ok(()) => break,
            Err(e) if attempt == 0 => {
                tracing::warn!(
                    rows = batch.len(),
                    "Writing stored responses failed; retrying: {e}"
                )
            }
            Err(e) => {
                tracing::warn!(
                    rows = batch.len(),
                    "Writing stored responses failed; they stay in memory until restart: {e}"
                )
            }
        }
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    async fn store(
        now: Arc<AtomicI64>,
    ) -> (
        Arc<ResponseStore>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
        tempdir::Dir,
    ) {
        let dir = tempdir::Dir::new();
        let url = format!("sqlite://{}", dir.path.join("ledger.db").display());
        // The store lives beside the ledger, whose tables its migrations read.
        crate::billing::ledger::Ledger::connect(&url).await.unwrap();
        let stop = CancellationToken::new();
        let clock: Clock = Arc::new(move || now.load(Ordering::SeqCst));
        let (store, task) = start(&url, clock, Duration::from_secs(60), stop.clone())
            .await
            .unwrap();
        #[allow(clippy::disallowed_methods)]
        let handle = tokio::spawn(task);
        (store, stop, handle, dir)
    }

    mod tempdir {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Dir {
                let path = std::env::temp_dir()
                    .join(format!("bazaar-responses-{:x}", rand::random::<u64>()));
                std::fs::create_dir_all(&path).unwrap();
                Dir { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    #[tokio::test]
    async fn saved_responses_are_owned_expire_and_survive_the_writer() {
        let now = Arc::new(AtomicI64::new(1_000));
        let (s, stop, handle, _dir) = store(now.clone()).await;
        s.save("alice", "resp_1".into(), b"{}".to_vec(), "[1]".into());
        // Readable at once, before the writer ran.
        assert_eq!(
            s.load("alice", "resp_1").await.unwrap().unwrap().items,
            "[1]"
        );
        assert!(s.load("bob", "resp_1").await.unwrap().is_none());
        assert!(s.load("alice", "resp_2").await.unwrap().is_none());
        stop.cancel();
        handle.await.unwrap();
        assert!(s.pending().is_empty());
        // From the database now.
        assert_eq!(
            s.load("alice", "resp_1").await.unwrap().unwrap().items,
            "[1]"
        );
        assert!(!s.delete("bob", "resp_1").await.unwrap());
        now.store(1_000 + 61_000, Ordering::SeqCst);
        assert!(s.load("alice", "resp_1").await.unwrap().is_none());
        assert_eq!(s.purge(now.load(Ordering::SeqCst)).await.unwrap(), 1);
    }

    /// Responses stored by name before migration 1003 belong to the key that had the name
    /// when they were stored: a virtual key made before them, else the config key.
    #[tokio::test]
    async fn responses_stored_by_name_pass_to_the_key_id() {
        let dir = tempdir::Dir::new();
        let url = format!("sqlite://{}", dir.path.join("ledger.db").display());
        let ledger = crate::billing::ledger::Ledger::connect(&url).await.unwrap();
        let (version, schema) = MIGRATIONS[0];
        crate::billing::ledger::migrate_once(ledger.pool(), false, 0, version, schema)
            .await
            .unwrap();
        let settings = crate::billing::keys::NewKey {
            name: "alice".into(),
            ..Default::default()
        };
        let (alice, _) = crate::billing::keys::create(&ledger, &settings, 500)
            .await
            .unwrap();
        for (id, name, created) in [
            ("resp_v", "alice", 600),
            ("resp_early", "alice", 400),
            ("resp_c", "app", 600),
            ("resp_m", "master", 600),
        ] {
            sqlx::query("INSERT INTO stored_responses (id, key_name, created_ms, expires_ms, response, items) VALUES ($1, $2, $3, 9000, '{}', '[]')")
                .bind(id)
                .bind(name)
                .bind(created as i64)
                .execute(ledger.pool())
                .await
                .unwrap();
        }
        let clock: Clock = Arc::new(|| 1_000);
        let (s, _task) = start(
            &url,
            clock,
            Duration::from_secs(60),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        for (id, owner) in [
            ("resp_v", alice.as_str()),
            ("resp_early", "config:alice"),
            ("resp_c", "config:app"),
            ("resp_m", "master"),
        ] {
            assert!(s.load(owner, id).await.unwrap().is_some(), "{id}");
        }
        assert!(s.load("alice", "resp_v").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn deleted_responses_are_gone_even_if_queued() {
        let now = Arc::new(AtomicI64::new(1_000));
        let (s, stop, handle, _dir) = store(now).await;
        s.save("alice", "resp_1".into(), b"{}".to_vec(), "[]".into());
        assert!(s.delete("alice", "resp_1").await.unwrap());
        assert!(!s.delete("alice", "resp_1").await.unwrap());
        stop.cancel();
        handle.await.unwrap();
        assert!(s.load("alice", "resp_1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_changed_ttl_applies_to_responses_saved_after_it() {
        let now = Arc::new(AtomicI64::new(1_000));
        let (s, _stop, _handle, _dir) = store(now.clone()).await;
        s.save("alice", "resp_old".into(), b"{}".to_vec(), "[]".into());
        s.set_ttl(Duration::from_secs(5));
        s.save("alice", "resp_new".into(), b"{}".to_vec(), "[]".into());
        now.store(1_000 + 6_000, Ordering::SeqCst);
        assert!(s.load("alice", "resp_new").await.unwrap().is_none());
        assert!(s.load("alice", "resp_old").await.unwrap().is_some());
    }
}
