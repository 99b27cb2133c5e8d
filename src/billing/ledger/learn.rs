//! What the gateway keeps to retrain the quality predictor on its own traffic: the prompt
//! of each call (only with `[router.learn] keep_prompts = true`, cut to
//! `KEPT_PROMPT_BYTES`) and the scores clients post to `POST /v1/feedback`, both stored
//! against the call's ledger row (request id and key id) in the ledger's database, in
//! their own tables (migrations 1002 and 1004). Keeping a prompt is an in-memory insert and a channel
//! send; a writer task persists prompts in batches. Nothing here routes or trains.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use sqlx::{AnyPool, Row};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Backend, Ledger, LedgerError};
use crate::billing::Clock;
use crate::config::secret::DigestState;

/// Our migrations, recorded in the ledger's `bazaar_migrations` under their own numbers.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1002,
        &[
            "CREATE TABLE IF NOT EXISTS ledger_prompts (request_id TEXT NOT NULL, key_name TEXT NOT NULL,
             ts_ms BIGINT NOT NULL, prompt TEXT NOT NULL, PRIMARY KEY (request_id, key_name))",
            "CREATE TABLE IF NOT EXISTS ledger_feedback (request_id TEXT NOT NULL, key_name TEXT NOT NULL,
             ts_ms BIGINT NOT NULL, score DOUBLE PRECISION NOT NULL, PRIMARY KEY (request_id, key_name))",
            // Feedback finds its call by request id.
            "CREATE INDEX IF NOT EXISTS ledger_request_id ON ledger (request_id)",
        ],
    ),
    // Prompts and scores belong to the key's id, not its name (a new key may reuse a
    // revoked key's name). Earlier ones take the id of their call's ledger row.
    (
        1004,
        &[
            "UPDATE ledger_prompts SET key_name = COALESCE((SELECT l.key_id FROM ledger l
               WHERE l.request_id = ledger_prompts.request_id AND l.key_name = ledger_prompts.key_name
               AND l.key_id IS NOT NULL AND l.key_id <> '' ORDER BY l.ts_ms DESC LIMIT 1), key_name)",
            "UPDATE ledger_feedback SET key_name = COALESCE((SELECT l.key_id FROM ledger l
               WHERE l.request_id = ledger_feedback.request_id AND l.key_name = ledger_feedback.key_name
               AND l.key_id IS NOT NULL AND l.key_id <> '' ORDER BY l.ts_ms DESC LIMIT 1), key_name)",
            "ALTER TABLE ledger_prompts RENAME COLUMN key_name TO key_id",
            "ALTER TABLE ledger_feedback RENAME COLUMN key_name TO key_id",
        ],
    ),
];
/// Serialises replicas applying them at once on PostgreSQL.
const MIGRATION_LOCK: i64 = 7242653;

/// The most of a prompt that is kept, in bytes (cut at a character boundary): the same
/// head of the prompt the router reads to predict quality.
pub const KEPT_PROMPT_BYTES: usize = 2048;

/// Calls remembered in memory so feedback finds a call whose ledger row is still queued.
const RECENT: usize = 4096;
const QUEUE: usize = 4096;
const BATCH: usize = 256;

/// A kept prompt on its way to the database.
#[derive(Debug)]
struct Kept {
    request_id: String,
    key_id: String,
    ts_ms: i64,
    prompt: String,
}

/// Recent calls, oldest first out, each as its `call_key` fingerprint.
#[derive(Debug, Default)]
struct Recent {
    calls: HashSet<u64, DigestState>,
    order: VecDeque<u64>,
}

/// A call's (request id, key id) as a 64-bit fingerprint under `keys`, the store's
/// random SipHash keys: one hash a call, no allocation, and the recent-call set keyed
/// by the fingerprint itself. Two calls share one only by a collision no caller can aim
/// at without the keys (one in 2^52 per guess against a full set); a collision's only
/// effect is that a score posted for a call it does not own is stored, which no
/// training row ever reads (`training_rows` joins a score to its own call's row).
fn call_key(keys: &RandomState, request_id: &str, key_id: &str) -> u64 {
    // Each `str` is written with a terminator, so no two pairs hash the same text.
    keys.hash_one((request_id, key_id))
}

/// The store: the ledger's pool, the recent calls, and the prompt writer's queue.
pub struct LearnStore {
    pool: AnyPool,
    recent: Mutex<Recent>,
    /// The keys of the recent calls' fingerprints (`call_key`).
    keys: RandomState,
    queue: mpsc::Sender<Kept>,
    clock: Clock,
    /// Prompts written (or given up on) so far.
    written: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for LearnStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnStore").finish_non_exhaustive()
    }
}

/// What became of a score posted for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// Stored against the call (a later score for the same call replaces it).
    Stored,
    /// No call with that request id was made with that key.
    NotFound,
}

/// One training row: a kept prompt, the model that answered it, the score it got (0–1).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingRow {
    pub prompt: String,
    pub model: String,
    pub score: f64,
}

/// Applies the store's migration on the ledger's database.
pub async fn migrate(ledger: &Ledger) -> Result<(), sqlx::Error> {
    let postgres = ledger.backend == Backend::Postgres;
    for (version, schema) in MIGRATIONS {
        super::migrate_once(ledger.pool(), postgres, MIGRATION_LOCK, *version, schema).await?;
    }
    Ok(())
}

/// Starts the store on the connected `ledger` (applying its migration) and returns it with
/// its writer task, which writes what is queued and ends when `stop` is cancelled.
pub async fn start(
    ledger: &Ledger,
    clock: Clock,
    stop: CancellationToken,
) -> Result<(Arc<LearnStore>, impl std::future::Future<Output = ()>), sqlx::Error> {
    migrate(ledger).await?;
    let (queue, rx) = mpsc::channel(QUEUE);
    let store = Arc::new(LearnStore {
        pool: ledger.pool().clone(),
        recent: Mutex::new(Recent::default()),
        keys: RandomState::new(),
        queue,
        clock,
        written: tokio::sync::watch::Sender::new(0),
    });
    Ok((store.clone(), writer(store, rx, stop)))
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl LearnStore {
    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        // A poisoned lock only means a panic elsewhere mid-insert; the set is still usable.
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a call of the key with id `key_id` (so feedback for it is accepted before
    /// its ledger row is written) and, when `prompt` is given, queues its head for the
    /// database. Never waits.
    pub fn note_call(&self, request_id: &str, key_id: &str, prompt: Option<&str>) {
        let call = call_key(&self.keys, request_id, key_id);
        {
            let mut recent = self.recent();
            if recent.calls.insert(call) {
                recent.order.push_back(call);
                if recent.order.len() > RECENT {
                    if let Some(old) = recent.order.pop_front() {
                        recent.calls.remove(&old);
                    }
                }
            }
        }
        let Some(prompt) = prompt.filter(|p| !p.is_empty()) else {
            return;
        };
        let kept = Kept {
            request_id: request_id.to_string(),
            key_id: key_id.to_string(),
            ts_ms: (self.clock)(),
            prompt: cut(prompt, KEPT_PROMPT_BYTES).to_string(),
        };
        if self.queue.try_send(kept).is_err() {
            tracing::warn!(
                request_id,
                "The kept-prompt queue is full; this call's prompt is not kept for retraining."
            );
        }
    }

    /// Whether the key with id `key_id` made the call `request_id`.
    async fn made(&self, request_id: &str, key_id: &str) -> Result<bool, sqlx::Error> {
        let call = call_key(&self.keys, request_id, key_id);
        if self.recent().calls.contains(&call) {
            return Ok(true);
        }
        let row = sqlx::query("SELECT 1 FROM ledger WHERE request_id = $1 AND key_id = $2 LIMIT 1")
            .bind(request_id.to_string())
            .bind(key_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Stores `score` (0–1, checked by the caller) against the call `request_id` if the
    /// key with id `key_id` made it; another key's call (even one of a key with the same
    /// name) is indistinguishable from a missing one.
    pub async fn record_feedback(
        &self,
        request_id: &str,
        key_id: &str,
        score: f64,
    ) -> Result<Feedback, sqlx::Error> {
        if !self.made(request_id, key_id).await? {
            return Ok(Feedback::NotFound);
        }
        sqlx::query(
            "INSERT INTO ledger_feedback (request_id, key_id, ts_ms, score) VALUES ($1, $2, $3, $4)
             ON CONFLICT (request_id, key_id) DO UPDATE SET score = excluded.score, ts_ms = excluded.ts_ms",
        )
        .bind(request_id.to_string())
        .bind(key_id.to_string())
        .bind((self.clock)())
        .bind(score)
        .execute(&self.pool)
        .await?;
        Ok(Feedback::Stored)
    }

    /// Waits until at least `n` kept prompts have been written (or given up on after a
    /// failed write); returns how many.
    pub async fn prompts_written(&self, n: u64) -> u64 {
        let mut written = self.written.subscribe();
        let reached = written.wait_for(|w| *w >= n).await.map(|w| *w);
        reached.unwrap_or_else(|_| *written.borrow())
    }

    async fn write(&self, batch: &[Kept]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for k in batch {
            sqlx::query(
                "INSERT INTO ledger_prompts (request_id, key_id, ts_ms, prompt) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (request_id, key_id) DO NOTHING",
            )
            .bind(k.request_id.clone())
            .bind(k.key_id.clone())
            .bind(k.ts_ms)
            .bind(k.prompt.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}

/// Writes queued prompts in batches (a failed batch is retried once, then dropped with a
/// warning: kept prompts are for retraining, not for billing); on `stop`, writes what is
/// queued and ends.
async fn writer(store: Arc<LearnStore>, mut rx: mpsc::Receiver<Kept>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut stopping = false;
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                rx.close();
                continue;
            }
        };
        if n == 0 {
            return;
        }
        let mut written = store.write(&batch).await;
        if written.is_err() {
            written = store.write(&batch).await;
        }
        if let Err(e) = written {
            tracing::warn!(
                prompts = batch.len(),
                "Writing kept prompts failed; they are not kept for retraining: {e}"
            );
        }
        store.written.send_modify(|w| *w += batch.len() as u64);
        batch.clear();
    }
}

/// Every call with both a kept prompt and a score, as training rows, oldest feedback
/// first: the prompt, the catalog model that answered, the score. Calls that failed
/// (status 400 or more) are left out.
pub async fn training_rows(ledger: &Ledger) -> Result<Vec<TrainingRow>, LedgerError> {
    migrate(ledger).await?;
    let rows = sqlx::query(
        "SELECT p.prompt, l.model, f.score FROM ledger_feedback f
         JOIN ledger_prompts p ON p.request_id = f.request_id AND p.key_id = f.key_id
         JOIN (SELECT DISTINCT request_id, key_id, model FROM ledger WHERE status < 400 AND model <> '') l
           ON l.request_id = f.request_id AND l.key_id = f.key_id
         ORDER BY f.ts_ms, f.request_id, f.key_id",
    )
    .fetch_all(ledger.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TrainingRow {
                prompt: r.try_get(0)?,
                model: r.try_get(1)?,
                score: r.try_get(2)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(LedgerError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_key_tells_the_ids_apart() {
        let keys = RandomState::new();
        assert_ne!(call_key(&keys, "ab", "c"), call_key(&keys, "a", "bc"));
        assert_ne!(
            call_key(&keys, "r1", "key_1"),
            call_key(&keys, "r1", "key_2")
        );
        assert_eq!(
            call_key(&keys, "r1", "key_1"),
            call_key(&keys, "r1", "key_1")
        );
    }

    #[test]
    fn prompts_are_cut_at_a_character_boundary() {
        let long = "é".repeat(KEPT_PROMPT_BYTES);
        let kept = cut(&long, KEPT_PROMPT_BYTES);
        assert_eq!(kept.len(), KEPT_PROMPT_BYTES);
        assert_eq!(cut("abcé", 4), "abc");
        assert_eq!(cut("short", KEPT_PROMPT_BYTES), "short");
    }

    /// Prompts and scores kept by key name before migration 1004 pass to their call's key
    /// id, so they still make training rows, and a later key of the same name owns none.
    #[tokio::test]
    async fn kept_prompts_and_scores_pass_from_key_name_to_key_id() {
        let dir = std::env::temp_dir().join(format!(
            "bazaar-learn-ids-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("l.sqlite").display());
        let ledger = Ledger::connect(&url).await.unwrap();
        let (version, schema) = MIGRATIONS[0];
        super::super::migrate_once(ledger.pool(), false, 0, version, schema)
            .await
            .unwrap();
        let row = super::super::LedgerRow {
            ts_ms: 10,
            request_id: "r1".into(),
            key_name: "partner".into(),
            key_id: "key_old".into(),
            model: "m".into(),
            status: 200,
            ..Default::default()
        };
        ledger.insert(&[row]).await.unwrap();
        for sql in [
            "INSERT INTO ledger_prompts (request_id, key_name, ts_ms, prompt) VALUES ('r1', 'partner', 10, 'hello')",
            "INSERT INTO ledger_feedback (request_id, key_name, ts_ms, score) VALUES ('r1', 'partner', 11, 0.5)",
        ] {
            sqlx::query(sql).execute(ledger.pool()).await.unwrap();
        }
        let clock: Clock = Arc::new(|| 20);
        let (store, _writer) = start(&ledger, clock, CancellationToken::new())
            .await
            .unwrap();
        let rows = training_rows(&ledger).await.unwrap();
        assert_eq!(
            rows,
            [TrainingRow {
                prompt: "hello".into(),
                model: "m".into(),
                score: 0.5
            }]
        );
        assert!(store.made("r1", "key_old").await.unwrap());
        assert!(!store.made("r1", "key_new").await.unwrap());
        std::fs::remove_dir_all(&dir).ok();
    }
}
