//! Rows leave the request path through a bounded queue; one task writes them in
//! batches. If the database is down, a batch is retried with backoff; rows that
//! cannot wait (queue full, or a batch that keeps failing) go to a local spill file
//! (JSON lines) that is replayed into the database once it answers again. Nothing is
//! dropped silently: on stop the queue is drained and flushed (or spilled).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Ledger, LedgerError, LedgerRow};

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub queue: usize,
    pub batch: usize,
    pub flush_every: Duration,
    pub spill_file: PathBuf,
    /// Observes each batch write's duration, labelled `ok` or `error`.
    pub write_seconds: Option<prometheus::HistogramVec>,
}

/// The request path's side: `record` never waits for the database.
#[derive(Debug, Clone)]
pub struct LedgerSink {
    tx: mpsc::Sender<LedgerRow>,
    spill: Arc<Spill>,
    /// Rows handed over (queued or spilled).
    pub recorded: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Spill {
    path: PathBuf,
    lock: Mutex<()>,
    rows: AtomicU64,
}

impl Spill {
    fn append(&self, rows: &[LedgerRow]) -> Result<(), LedgerError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut buf = Vec::new();
        for row in rows {
            serde_json::to_writer(&mut buf, row)
                .map_err(|e| LedgerError::Invalid(e.to_string()))?;
            buf.push(b'\n');
        }
        file.write_all(&buf)?;
        file.sync_data()?;
        self.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Takes every spilled row out of the file (renamed first, so new spills go to a fresh file).
    fn take(&self) -> Result<Vec<LedgerRow>, LedgerError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let replaying = self.path.with_extension("replaying");
        std::fs::rename(&self.path, &replaying)?;
        let file = std::fs::File::open(&replaying)?;
        let mut rows = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(row) => rows.push(row),
                Err(e) => {
                    tracing::error!(file = %replaying.display(), "A spilled ledger row does not parse and stays in the file: {e}")
                }
            }
        }
        Ok(rows)
    }

    fn done_replaying(&self) {
        let _ = std::fs::remove_file(self.path.with_extension("replaying"));
    }
}

impl LedgerSink {
    /// Hands a row over; if the queue is full it goes to the spill file instead.
    pub fn record(&self, row: LedgerRow) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::TrySendError::Full(row) | mpsc::error::TrySendError::Closed(row)) =
            self.tx.try_send(row)
        {
            if let Err(e) = self.spill.append(std::slice::from_ref(&row)) {
                tracing::error!(request_id = %row.request_id, "A ledger row could not be queued or spilled: {e}");
            }
        }
    }

    /// Rows waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Rows written to the spill file since start.
    pub fn spilled(&self) -> u64 {
        self.spill.rows.load(Ordering::Relaxed)
    }
}

/// Starts the writer task; it stops (after flushing) once `stop` is cancelled.
pub fn start(
    ledger: Ledger,
    settings: WriterSettings,
    stop: CancellationToken,
) -> (LedgerSink, impl std::future::Future<Output = ()>) {
    let (tx, rx) = mpsc::channel(settings.queue.max(1));
    let spill = Arc::new(Spill {
        path: settings.spill_file.clone(),
        lock: Mutex::new(()),
        rows: AtomicU64::new(0),
    });
    let sink = LedgerSink {
        tx,
        spill: spill.clone(),
        recorded: Arc::new(AtomicU64::new(0)),
    };
    (sink, run(ledger, settings, rx, spill, stop))
}

async fn run(
    ledger: Ledger,
    settings: WriterSettings,
    mut rx: mpsc::Receiver<LedgerRow>,
    spill: Arc<Spill>,
    stop: CancellationToken,
) {
    let mut batch: Vec<LedgerRow> = Vec::with_capacity(settings.batch);
    replay(&ledger, &spill).await;
    let mut ticker = tokio::time::interval(settings.flush_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            got = rx.recv() => match got {
                Some(row) => {
                    batch.push(row);
                    while batch.len() < settings.batch {
                        match rx.try_recv() {
                            Ok(row) => batch.push(row),
                            Err(_) => break,
                        }
                    }
                    if batch.len() >= settings.batch {
                        flush(&ledger, &spill, &mut batch, false, settings.write_seconds.as_ref()).await;
                    }
                }
                None => break,
            },
            _ = ticker.tick() => {
                if !batch.is_empty() {
                    flush(&ledger, &spill, &mut batch, false, settings.write_seconds.as_ref()).await;
                }
                if spill.path.exists() {
                    replay(&ledger, &spill).await;
                }
            }
            _ = stop.cancelled() => break,
        }
    }
    // Stopping: everything still queued is written (or spilled), nothing dropped.
    rx.close();
    while let Some(row) = rx.recv().await {
        batch.push(row);
    }
    flush(
        &ledger,
        &spill,
        &mut batch,
        true,
        settings.write_seconds.as_ref(),
    )
    .await;
    tracing::info!(
        spilled = spill.rows.load(Ordering::Relaxed),
        "Ledger flushed."
    );
}

/// Writes a batch, retrying with backoff; on persistent failure (or when stopping) the
/// batch is spilled so the rows survive.
async fn flush(
    ledger: &Ledger,
    spill: &Spill,
    batch: &mut Vec<LedgerRow>,
    stopping: bool,
    observe: Option<&prometheus::HistogramVec>,
) {
    let attempts = if stopping { 2 } else { 4 };
    for attempt in 0..attempts {
        let started = tokio::time::Instant::now();
        let result = ledger.insert(batch).await;
        if let Some(h) = observe {
            h.with_label_values(&[if result.is_ok() { "ok" } else { "error" }])
                .observe(started.elapsed().as_secs_f64());
        }
        match result {
            Ok(()) => {
                tracing::debug!(rows = batch.len(), "Ledger batch written.");
                batch.clear();
                return;
            }
            Err(e) => {
                tracing::warn!(rows = batch.len(), attempt, "Ledger write failed: {e}");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
    }
    match spill.append(batch) {
        Ok(()) => {
            tracing::warn!(rows = batch.len(), file = %spill.path.display(), "Ledger unavailable; rows spilled to disk, to be replayed.")
        }
        Err(e) => tracing::error!(
            rows = batch.len(),
            "Ledger rows could be neither written nor spilled: {e}"
        ),
    }
    batch.clear();
}

async fn replay(ledger: &Ledger, spill: &Spill) {
    let rows = match spill.take() {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!("Could not read the ledger spill file: {e}");
            return;
        }
    };
    if rows.is_empty() {
        spill.done_replaying();
        return;
    }
    match ledger.insert(&rows).await {
        Ok(()) => {
            spill.done_replaying();
            tracing::info!(rows = rows.len(), "Spilled ledger rows replayed.");
        }
        Err(e) => {
            // Still down: put them back for the next try.
            if spill.append(&rows).is_ok() {
                spill.rows.fetch_sub(rows.len() as u64, Ordering::Relaxed);
                spill.done_replaying();
            }
            tracing::warn!(
                rows = rows.len(),
                "Replaying spilled ledger rows failed: {e}"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn row(i: i64) -> LedgerRow {
        LedgerRow {
            ts_ms: i,
            request_id: format!("r{i}"),
            key_name: "k".into(),
            route: "m".into(),
            provider: "p".into(),
            model: "m".into(),
            tier: "local".into(),
            endpoint: "chat".into(),
            catalog_version: "v".into(),
            status: 200,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn database_down_spills_rows_and_they_are_replayed() {
        let dir = std::env::temp_dir().join(format!("bazaar-spill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("l.sqlite").display());
        let spill_file = dir.join("spill.jsonl");
        let settings = WriterSettings {
            queue: 2,
            batch: 10,
            flush_every: Duration::from_millis(10),
            spill_file: spill_file.clone(),
            write_seconds: None,
        };

        // The database goes away while the gateway runs.
        let down = Ledger::connect(&url).await.unwrap();
        down.close().await;
        let stop = CancellationToken::new();
        let (sink, task) = start(down, settings.clone(), stop.clone());
        let task = tokio::spawn(task);
        for i in 0..20 {
            sink.record(row(i));
        }
        stop.cancel();
        task.await.unwrap();
        assert!(spill_file.exists(), "rows were spilled, not dropped");

        // It comes back: a new writer replays the spill before anything else.
        let up = Ledger::connect(&url).await.unwrap();
        let stop = CancellationToken::new();
        let (_sink, task) = start(up.clone(), settings, stop.clone());
        let task = tokio::spawn(task);
        for _ in 0..200 {
            if up.count().await.unwrap() == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(up.count().await.unwrap(), 20);
        assert!(!spill_file.exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
