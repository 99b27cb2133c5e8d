//! Rows leave the request path through a bounded queue; one task writes them in
//! batches. Handing a row over is a push under an uncontended lock that wakes the writer
//! only once a batch is full (otherwise it takes what is queued at its next tick), so a
//! call does not wake another thread. If the database is down, a batch is retried
//! briefly, then spilled to a local file (JSON lines, fsynced) and the writer stays in
//! spill mode, draining the queue to disk, until a replay of the spill into the database
//! succeeds. Replays are crash-safe and exactly-once (a marker per chunk commits with the
//! chunk). A row that finds the queue full is set aside for the writer task to spill:
//! the request path never opens, writes or fsyncs the spill file. Nothing is dropped
//! silently: on stop the queue is drained and flushed (or spilled).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Row;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Ledger, LedgerError, LedgerRow};

/// Lines of a spill file replayed per transaction (and per replay marker).
const REPLAY_CHUNK: usize = 1_000;

/// How often a writer in spill mode probes the database with a replay.
const PROBE_EVERY: Duration = Duration::from_secs(1);

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
    queue: Arc<Queue>,
    spill: Arc<Spill>,
    /// Rows handed over (queued or spilled).
    pub recorded: Arc<AtomicU64>,
    /// Rows inserted into the database since start (by batch or by replay).
    written: tokio::sync::watch::Receiver<u64>,
}

/// Rows waiting for the writer. The writer swaps the whole vector out, so the lock is
/// held for a push or a swap, never across I/O.
#[derive(Debug)]
struct Queue {
    rows: Mutex<Waiting>,
    /// Signalled when `wake_at` rows are waiting (a full batch), and on close.
    ready: Notify,
    /// Signalled when a row is set aside in `Waiting::overflow`.
    overflowed: Notify,
    capacity: usize,
    wake_at: usize,
}

#[derive(Debug, Default)]
struct Waiting {
    rows: Vec<LedgerRow>,
    /// Rows that found `rows` full: the writer task spills them.
    overflow: Vec<LedgerRow>,
    /// The writer has stopped taking rows: new ones go to the spill file.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `row`, or sets it aside for the writer to spill when the queue is full;
    /// gives it back only when the queue is closed (the writer has stopped).
    fn push(&self, row: LedgerRow) -> Option<LedgerRow> {
        let mut waiting = self.lock();
        if waiting.closed {
            return Some(row);
        }
        if waiting.rows.len() >= self.capacity {
            waiting.overflow.push(row);
            let wake = waiting.overflow.len() == 1;
            drop(waiting);
            if wake {
                self.overflowed.notify_one();
            }
            return None;
        }
        waiting.rows.push(row);
        let wake = waiting.rows.len() == self.wake_at;
        drop(waiting);
        if wake {
            self.ready.notify_one();
        }
        None
    }

    /// Everything waiting, leaving `spare` (an emptied vector) in its place.
    fn take(&self, spare: Vec<LedgerRow>) -> Vec<LedgerRow> {
        std::mem::replace(&mut self.lock().rows, spare)
    }

    /// The whole batches waiting (`wake_at` rows each), oldest first; the rows past them
    /// stay queued, moved into `spare` (a few rows, under the lock).
    fn take_batches(&self, mut spare: Vec<LedgerRow>) -> Vec<LedgerRow> {
        let mut waiting = self.lock();
        let whole = waiting.rows.len() / self.wake_at * self.wake_at;
        spare.extend(waiting.rows.drain(whole..));
        std::mem::replace(&mut waiting.rows, spare)
    }

    /// The rows set aside because the queue was full.
    fn take_overflow(&self) -> Vec<LedgerRow> {
        std::mem::take(&mut self.lock().overflow)
    }

    /// Stops taking rows; returns those still waiting and those set aside.
    fn close(&self) -> (Vec<LedgerRow>, Vec<LedgerRow>) {
        let mut waiting = self.lock();
        waiting.closed = true;
        (
            std::mem::take(&mut waiting.rows),
            std::mem::take(&mut waiting.overflow),
        )
    }

    fn len(&self) -> usize {
        self.lock().rows.len()
    }
}

/// The spill file and the replay files taken from it
/// (`<spill name>.<random id>.replaying`, beside it).
#[derive(Debug)]
pub struct Spill {
    path: PathBuf,
    lock: Mutex<()>,
    rows: AtomicU64,
}

impl Spill {
    /// The spill file at `path` (created on first use).
    pub fn new(path: PathBuf) -> Spill {
        Spill {
            path,
            lock: Mutex::new(()),
            rows: AtomicU64::new(0),
        }
    }

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

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Files waiting to be replayed: those a previous replay (or process) left behind,
    /// then the current spill file, renamed so new spills start a fresh file.
    fn pending(&self) -> Result<Vec<PathBuf>, LedgerError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let prefix = format!("{}.", self.name());
        let mut files: Vec<PathBuf> = match std::fs::read_dir(self.dir()) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".replaying"))
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        files.sort();
        if self.path.exists() {
            let to = self
                .dir()
                .join(format!("{prefix}{:016x}.replaying", rand::random::<u64>()));
            std::fs::rename(&self.path, &to)?;
            files.push(to);
        }
        Ok(files)
    }

    fn has_pending(&self) -> bool {
        self.path.exists()
    }

    fn reject(&self, lines: &[String]) {
        let path = self.dir().join(format!("{}.rejected", self.name()));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(lines.join("\n").as_bytes())
                    .and_then(|_| f.write_all(b"\n"))
            });
        match written {
            Ok(()) => {
                tracing::error!(rows = lines.len(), file = %path.display(), "Spilled ledger rows do not parse; kept aside for an operator.")
            }
            Err(e) => tracing::error!(
                rows = lines.len(),
                "Spilled ledger rows do not parse and could not be kept aside: {e}"
            ),
        }
    }
}

impl LedgerSink {
    /// Hands a row over without waiting and without I/O. If the queue is full (the
    /// writer is far behind), the row is set aside and the writer task spills it. Only
    /// once the writer has stopped (shutdown has passed) is the row appended to the spill
    /// file here, as there is no task left to hand it to.
    pub fn record(&self, row: LedgerRow) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
        if let Some(row) = self.queue.push(row) {
            if let Err(e) = self.spill.append(std::slice::from_ref(&row)) {
                tracing::error!(request_id = %row.request_id, "A ledger row could be neither queued nor spilled: {e}");
            }
        }
    }

    /// Rows waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Rows written to the spill file since start.
    pub fn spilled(&self) -> u64 {
        self.spill.rows.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` rows have been inserted into the database since start
    /// (written in a batch or replayed from the spill file); returns how many have. Ends
    /// early, with the count so far, when the writer has stopped.
    pub async fn written(&self, n: u64) -> u64 {
        let mut written = self.written.clone();
        let reached = written.wait_for(|w| *w >= n).await.map(|w| *w);
        reached.unwrap_or_else(|_| *written.borrow())
    }
}

/// Starts the writer task; it stops (after flushing) once `stop` is cancelled.
pub fn start(
    ledger: Ledger,
    settings: WriterSettings,
    stop: CancellationToken,
) -> (LedgerSink, impl std::future::Future<Output = ()>) {
    let capacity = settings.queue.max(1);
    let queue = Arc::new(Queue {
        rows: Mutex::new(Waiting {
            rows: Vec::with_capacity(settings.batch.clamp(1, capacity)),
            overflow: Vec::new(),
            closed: false,
        }),
        ready: Notify::new(),
        overflowed: Notify::new(),
        capacity,
        wake_at: settings.batch.clamp(1, capacity),
    });
    let spill = Arc::new(Spill::new(settings.spill_file.clone()));
    let (written, written_rx) = tokio::sync::watch::channel(0);
    let sink = LedgerSink {
        queue: queue.clone(),
        spill: spill.clone(),
        recorded: Arc::new(AtomicU64::new(0)),
        written: written_rx,
    };
    let writer = Writer {
        ledger,
        spill,
        settings,
        degraded: false,
        written,
    };
    (sink, writer.run(queue, stop))
}

/// Replays whatever spill and replay files `spill` names into `ledger`; returns the rows
/// inserted. Stops at the first failed chunk (the file stays for the next try).
pub async fn replay(ledger: &Ledger, spill: &Spill) -> Result<u64, LedgerError> {
    let mut inserted = 0;
    for file in spill.pending()? {
        inserted += replay_file(ledger, spill, &file).await?;
        std::fs::remove_file(&file)?;
    }
    Ok(inserted)
}

async fn replay_file(ledger: &Ledger, spill: &Spill, file: &Path) -> Result<u64, LedgerError> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut lines = std::io::BufReader::new(std::fs::File::open(file)?).lines();
    let mut inserted = 0;
    // Chunks are cut by line count, so a retry sees the same chunks and markers.
    for chunk in 0.. {
        let mut rows = Vec::with_capacity(REPLAY_CHUNK);
        let mut bad = Vec::new();
        let mut read = 0;
        while read < REPLAY_CHUNK {
            let Some(line) = lines.next() else { break };
            let line = line?;
            read += 1;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(row) => rows.push(row),
                Err(_) => bad.push(line),
            }
        }
        if read == 0 {
            break;
        }
        fill_key_ids(ledger, &mut rows).await?;
        if ledger
            .insert_once(&format!("{name}#{chunk}"), &rows)
            .await?
        {
            inserted += rows.len() as u64;
            if !bad.is_empty() {
                spill.reject(&bad);
            }
        }
    }
    Ok(inserted)
}

/// Gives the rows of a spill file written before rows carried a key id (the line has
/// none) the id the ledger's own migration gave such rows already in the database: the
/// newest virtual key of the row's name created at or before the row, else the config
/// key of that name (`config:<name>`; `master` for the master key). So a key's budget and
/// spend view count them, and a later key reusing the name does not. Each name is looked
/// up once; rows that have an id are left as they are.
async fn fill_key_ids(ledger: &Ledger, rows: &mut [LedgerRow]) -> Result<(), LedgerError> {
    let mut keys: std::collections::HashMap<Arc<str>, Vec<(i64, String)>> = Default::default();
    for row in rows
        .iter_mut()
        .filter(|r| r.key_id.is_empty() && !r.key_name.is_empty())
    {
        if !keys.contains_key(&row.key_name) {
            let found = sqlx::query(
                "SELECT created_ms, id FROM virtual_keys WHERE name = $1 ORDER BY created_ms DESC",
            )
            .bind(row.key_name.to_string())
            .fetch_all(ledger.pool())
            .await?;
            let found = found
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(i64, String)>, sqlx::Error>>()?;
            keys.insert(row.key_name.clone(), found);
        }
        let virtual_key = keys
            .get(&row.key_name)
            .and_then(|ids| ids.iter().find(|(created, _)| *created <= row.ts_ms));
        row.key_id = match virtual_key {
            Some((_, id)) => id.as_str().into(),
            None if &*row.key_name == "master" => "master".into(),
            None => format!("config:{}", row.key_name).into(),
        };
    }
    Ok(())
}

struct Writer {
    ledger: Ledger,
    spill: Arc<Spill>,
    settings: WriterSettings,
    /// The database failed: batches go straight to the spill file until a replay succeeds.
    degraded: bool,
    /// Rows inserted into the database, for `LedgerSink::written`.
    written: tokio::sync::watch::Sender<u64>,
}

/// Spills the rows that found the queue full, as they come, until `stop`; runs inside
/// the writer's task beside its batch loop, so it keeps going while a batch waits on the
/// database.
async fn spill_overflow(queue: &Queue, spill: &Spill, stop: &CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = queue.overflowed.notified() => {}
        }
        spill_rows(spill, &queue.take_overflow());
    }
}

fn spill_rows(spill: &Spill, rows: &[LedgerRow]) {
    if rows.is_empty() {
        return;
    }
    match spill.append(rows) {
        Ok(()) => tracing::debug!(rows = rows.len(), "Ledger rows spilled."),
        Err(e) => tracing::error!(
            rows = rows.len(),
            "Ledger rows could be neither written nor spilled: {e}"
        ),
    }
}

impl Writer {
    async fn run(self, queue: Arc<Queue>, stop: CancellationToken) {
        let spill = self.spill.clone();
        tokio::join!(
            self.batches(queue.clone(), stop.clone()),
            spill_overflow(&queue, &spill, &stop)
        );
    }

    async fn batches(mut self, queue: Arc<Queue>, stop: CancellationToken) {
        self.replay().await;
        let mut ticker = tokio::time::interval(self.settings.flush_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_probe = Instant::now();
        let mut spare = Vec::with_capacity(queue.wake_at);
        loop {
            let tick = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = queue.ready.notified() => false,
                _ = ticker.tick() => true,
            };
            // Woken by a full batch, the writer takes the whole batches waiting and leaves
            // the few rows queued behind them for the next one: under load they would be a
            // transaction of their own (a few rows, the same commit and round trips to
            // SQLite's thread as a full batch's). At its tick whatever waits goes out, in
            // batches of at most `batch` rows, so no row waits longer than before.
            let mut rows = if tick {
                queue.take(spare)
            } else {
                queue.take_batches(spare)
            };
            self.write(&mut rows).await;
            spare = rows;
            if tick {
                // In spill mode the replay is the probe, at most once a second; otherwise
                // rows spilled by a full queue are replayed at the next tick.
                let due = !self.degraded || Instant::now() >= next_probe;
                if due && (self.degraded || self.spill.has_pending()) {
                    self.replay().await;
                    next_probe = Instant::now() + PROBE_EVERY;
                }
            }
        }
        // Stopping: everything still queued is written (or spilled), nothing dropped;
        // rows recorded from now on are spilled by the sink.
        let (mut rows, overflow) = queue.close();
        spill_rows(&self.spill, &overflow);
        self.write(&mut rows).await;
        tracing::info!(
            spilled = self.spill.rows.load(Ordering::Relaxed),
            "Ledger flushed."
        );
    }

    /// Writes `rows` (leaving it empty) in batches of at most `batch` rows, each a slice
    /// of `rows`: a writer that took several batches' rows at once does not move the rest
    /// down after each one.
    async fn write(&mut self, rows: &mut Vec<LedgerRow>) {
        for batch in rows.chunks(self.settings.batch.max(1)) {
            self.flush(batch).await;
        }
        rows.clear();
    }

    /// Writes `batch`, retrying briefly; when the database keeps failing (or the writer
    /// is already in spill mode) the batch is spilled so the rows survive.
    async fn flush(&mut self, batch: &[LedgerRow]) {
        if batch.is_empty() {
            return;
        }
        if !self.degraded {
            // Two tries: a blip is retried once; an outage costs at most two acquire timeouts.
            let attempts = 2;
            for attempt in 0..attempts {
                let started = Instant::now();
                let result = self.ledger.insert(batch).await;
                if let Some(h) = &self.settings.write_seconds {
                    h.with_label_values(&[if result.is_ok() { "ok" } else { "error" }])
                        .observe(started.elapsed().as_secs_f64());
                }
                match result {
                    Ok(()) => {
                        tracing::debug!(rows = batch.len(), "Ledger batch written.");
                        let rows = batch.len() as u64;
                        self.written.send_modify(|w| *w += rows);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(rows = batch.len(), attempt, "Ledger write failed: {e}");
                        if attempt + 1 < attempts {
                            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        }
                    }
                }
            }
            self.degraded = true;
            tracing::warn!(file = %self.spill.path.display(), "Ledger database unavailable; rows go to the spill file until it answers.");
        }
        spill_rows(&self.spill, batch);
    }

    async fn replay(&mut self) {
        match replay(&self.ledger, &self.spill).await {
            Ok(rows) => {
                if rows > 0 {
                    tracing::info!(rows, "Spilled ledger rows replayed.");
                    self.written.send_modify(|w| *w += rows);
                }
                if self.degraded {
                    tracing::info!("Ledger database answers again; writing batches to it.");
                }
                self.degraded = false;
            }
            Err(e) => {
                // The database is failing: keep spilling and probing until a replay succeeds.
                self.degraded = true;
                tracing::warn!("Replaying spilled ledger rows failed: {e}");
            }
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
            request_id: format!("r{i}").into(),
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

    fn replaying_files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".replaying"))
            .collect()
    }

    #[tokio::test]
    async fn an_interrupted_replay_is_finished_later_and_never_doubled() {
        let dir = std::env::temp_dir().join(format!("bazaar-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("l.sqlite").display());
        let ledger = Ledger::connect(&url).await.unwrap();
        let spill = Spill::new(dir.join("spill.jsonl"));
        let rows: Vec<LedgerRow> = (0..2_500).map(row).collect();
        spill.append(&rows).unwrap();

        // The process died during a replay: the spill was renamed, nothing committed yet.
        let taken = spill.pending().unwrap();
        assert_eq!(taken.len(), 1);
        let saved = std::fs::read(&taken[0]).unwrap();
        // Meanwhile new rows were spilled to a fresh file.
        spill.append(&[row(9_999)]).unwrap();

        // The next replay finds the leftover as well as the new spill.
        assert_eq!(replay(&ledger, &spill).await.unwrap(), 2_501);
        assert_eq!(ledger.count().await.unwrap(), 2_501);
        assert!(replaying_files(&dir).is_empty());

        // The process died after committing but before deleting the file: the same file
        // replayed again adds nothing.
        std::fs::write(&taken[0], &saved).unwrap();
        assert_eq!(replay(&ledger, &spill).await.unwrap(), 0);
        assert_eq!(ledger.count().await.unwrap(), 2_501);
        assert!(replaying_files(&dir).is_empty());

        // A torn last line (crash mid-append) is kept aside, the rest replayed.
        spill.append(&[row(10_000)]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("spill.jsonl"))
            .unwrap()
            .write_all(b"{\"ts_ms\":1")
            .unwrap();
        assert_eq!(replay(&ledger, &spill).await.unwrap(), 1);
        assert!(dir.join("spill.jsonl.rejected").exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Spill lines written before rows carried a key id are replayed with the id the
    /// ledger's migration gives such rows: the virtual key that had the name at the time,
    /// else the config key of the name, or `master`.
    #[tokio::test]
    async fn old_spill_lines_without_a_key_id_get_the_id_of_their_key() {
        let dir = std::env::temp_dir().join(format!(
            "bazaar-replay-ids-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("l.sqlite").display());
        let ledger = Ledger::connect(&url).await.unwrap();
        let new_key = |name: &str| crate::billing::keys::NewKey {
            name: name.into(),
            ..Default::default()
        };
        let (old, _) = crate::billing::keys::create(&ledger, &new_key("partner"), 100)
            .await
            .unwrap();
        crate::billing::keys::revoke(&ledger, &old).await.unwrap();
        let (new, _) = crate::billing::keys::create(&ledger, &new_key("partner"), 200)
            .await
            .unwrap();
        let rows = [
            (150, "partner", ""),
            (250, "partner", ""),
            (50, "partner", ""),
            (250, "master", ""),
            (250, "app", ""),
            (250, "partner", "key_kept"),
        ];
        let mut lines = String::new();
        for (ts, name, id) in rows {
            let mut line = serde_json::to_value(LedgerRow {
                key_name: name.into(),
                key_id: id.into(),
                ..row(ts)
            })
            .unwrap();
            if id.is_empty() {
                line.as_object_mut().unwrap().remove("key_id");
            }
            lines.push_str(&format!("{line}\n"));
        }
        std::fs::write(dir.join("spill.jsonl"), lines).unwrap();
        let spill = Spill::new(dir.join("spill.jsonl"));
        assert_eq!(replay(&ledger, &spill).await.unwrap(), 6);
        let filter = super::super::Filter {
            from_ms: 0,
            to_ms: i64::MAX,
            ..Default::default()
        };
        let mut got: Vec<(i64, String, String)> = ledger
            .calls(&filter, 100, None)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, r)| (r.ts_ms, r.key_name.to_string(), r.key_id.to_string()))
            .collect();
        got.sort();
        let want = [
            (50, "partner", "config:partner"),
            (150, "partner", old.as_str()),
            (250, "app", "config:app"),
            (250, "master", "master"),
            (250, "partner", "key_kept"),
            (250, "partner", new.as_str()),
        ];
        let mut want: Vec<(i64, String, String)> = want
            .iter()
            .map(|(t, n, i)| (*t, n.to_string(), i.to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A writer on a fresh SQLite file that only writes when its queue holds `batch`
    /// rows or it is stopped; the task is spawned, not yet run.
    struct Quiet {
        dir: PathBuf,
        ledger: Ledger,
        sink: LedgerSink,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn quiet_writer(name: &str, queue: usize, batch: usize) -> Quiet {
        let dir = std::env::temp_dir().join(format!("bazaar-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("l.sqlite").display());
        let ledger = Ledger::connect(&url).await.unwrap();
        let stop = CancellationToken::new();
        let settings = WriterSettings {
            queue,
            batch,
            flush_every: Duration::from_secs(3600),
            spill_file: dir.join("spill.jsonl"),
            write_seconds: None,
        };
        let (sink, task) = start(ledger.clone(), settings, stop.clone());
        let task = tokio::spawn(task);
        Quiet {
            dir,
            ledger,
            sink,
            stop,
            task,
        }
    }

    /// Woken by a full batch, the writer writes the whole batches waiting and leaves the
    /// rows behind them queued for the next batch (or its tick, or the stop), rather than
    /// writing them as a small transaction of their own.
    #[tokio::test]
    async fn a_full_batch_wakes_the_writer_for_whole_batches_only() {
        let w = quiet_writer("whole-batches", 100, 4).await;
        // The writer's first tick is immediate: let it pass on an empty queue.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for i in 0..6 {
            w.sink.record(row(i));
        }
        assert_eq!(w.sink.written(4).await, 4);
        assert_eq!(w.sink.queued(), 2, "the two rows past the batch wait");
        assert_eq!(w.ledger.count().await.unwrap(), 4);
        for i in 6..8 {
            w.sink.record(row(i));
        }
        assert_eq!(w.sink.written(8).await, 8);
        assert_eq!(w.sink.queued(), 0);
        for i in 8..11 {
            w.sink.record(row(i));
        }
        w.stop.cancel();
        w.task.await.unwrap();
        assert_eq!(w.ledger.count().await.unwrap(), 11);
        assert_eq!(w.sink.spilled(), 0);
        let mut want: Vec<String> = (0..11).map(|i| format!("r{i}")).collect();
        want.sort();
        assert_eq!(super::super::sorted_request_ids(&w.ledger).await, want);
        std::fs::remove_dir_all(&w.dir).ok();
    }

    #[tokio::test]
    async fn a_full_queue_never_spills_on_the_request_path() {
        let w = quiet_writer("overflow", 4, 4).await;
        // The test's runtime has one thread and the writer has not run yet: the queue
        // fills, and the rows past it must be handed over without touching the disk.
        for i in 0..10 {
            w.sink.record(row(i));
        }
        assert_eq!(w.sink.queued(), 4);
        assert_eq!(w.sink.spilled(), 0, "the sink spilled on the caller's task");
        assert!(!w.dir.join("spill.jsonl").exists());

        // The writer spills the six set aside and writes the four queued.
        w.stop.cancel();
        w.task.await.unwrap();
        assert_eq!(w.sink.spilled(), 6);
        assert_eq!(w.ledger.count().await.unwrap(), 4);
        let spill = Spill::new(w.dir.join("spill.jsonl"));
        assert_eq!(replay(&w.ledger, &spill).await.unwrap(), 6);
        let mut want: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
        want.sort();
        assert_eq!(
            super::super::sorted_request_ids(&w.ledger).await,
            want,
            "every row once"
        );
        std::fs::remove_dir_all(&w.dir).ok();
    }

    #[tokio::test]
    async fn rows_set_aside_are_spilled_by_the_writer_before_any_stop() {
        let w = quiet_writer("overflow-live", 2, 100).await;
        for i in 0..5 {
            w.sink.record(row(i));
        }
        // Without a stop, the writer task spills the three rows set aside.
        while w.sink.spilled() < 3 {
            tokio::task::yield_now().await;
        }
        w.stop.cancel();
        w.task.await.unwrap();
        assert_eq!(w.sink.spilled(), 3);
        assert_eq!(w.ledger.count().await.unwrap(), 2);
        std::fs::remove_dir_all(&w.dir).ok();
    }

    #[tokio::test]
    async fn a_database_outage_drains_the_queue_to_disk() {
        let dir = std::env::temp_dir().join(format!("bazaar-outage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("l.sqlite").display());
        let down = Ledger::connect(&url).await.unwrap();
        down.close().await;
        let stop = CancellationToken::new();
        let (sink, task) = start(
            down,
            WriterSettings {
                queue: 8,
                batch: 4,
                flush_every: Duration::from_millis(5),
                spill_file: dir.join("spill.jsonl"),
                write_seconds: None,
            },
            stop.clone(),
        );
        let task = tokio::spawn(task);
        // Far more rows than the queue holds, handed over while the writer keeps up: in
        // spill mode it empties the queue to disk, so the sink never has to spill itself.
        for i in 0..200 {
            while sink.queued() >= 8 {
                tokio::task::yield_now().await;
            }
            sink.record(row(i));
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(sink.spilled(), 200);
        let up = Ledger::connect(&url).await.unwrap();
        let spill = Spill::new(dir.join("spill.jsonl"));
        assert_eq!(replay(&up, &spill).await.unwrap(), 200);
        std::fs::remove_dir_all(&dir).ok();
    }
}
