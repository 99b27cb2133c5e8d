//! Metering: usage → cost, gateway keys, budgets, limits and the ledger, behind one
//! handle (`Billing`) that a call enters through `admission`. Per call the request path
//! only does in-memory work (a hash lookup, atomic counters, a channel send); the
//! database is written in batches off the request path.

pub mod admission;
pub mod budget;
pub mod cost;
pub mod keys;
pub mod ledger;
pub mod limits;
pub mod meter;
pub mod shared;
pub mod text;
pub mod tokens;

use std::sync::{Arc, OnceLock};

use ledger::writer::{self, LedgerSink, WriterSettings};
use ledger::{Ledger, LedgerError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Budget, LedgerConfig};
use crate::telemetry::metrics::Metrics;

/// Wall-clock milliseconds since the Unix epoch; injected so tests control ledger time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// The connected ledger: the ledger for queries, the sink for new rows, and the clock
/// that stamps them.
pub struct Connected {
    pub ledger: Ledger,
    pub sink: LedgerSink,
    pub clock: Clock,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("ledger", &self.ledger.backend)
            .finish()
    }
}

/// Everything billing keeps while the gateway runs: the ledger once connected, budget
/// windows and rate limiters (in process), virtual keys, the shared state (Redis) once
/// connected. A call goes through it only by `Billing::open` and its `Admission`.
#[derive(Debug)]
pub struct Billing {
    connected: OnceLock<Connected>,
    /// Budget windows of keys and teams (in process).
    pub budgets: Arc<budget::Budgets>,
    /// RPM/TPM limiters of keys and teams (in process).
    pub limits: limits::RateLimits,
    /// Virtual keys and teams from the database, cached.
    pub keys: keys::KeyStore,
    shared: OnceLock<shared::SharedState>,
    metrics: Metrics,
    /// Settling shared reservations runs here, so shutdown waits for it.
    tasks: TaskTracker,
}

impl Billing {
    /// Billing with nothing connected yet; `metrics` receive the billing metrics and
    /// `tasks` the background settlement work.
    pub fn new(metrics: Metrics, tasks: TaskTracker) -> Billing {
        Billing {
            connected: OnceLock::new(),
            budgets: Default::default(),
            limits: Default::default(),
            keys: Default::default(),
            shared: OnceLock::new(),
            metrics,
            tasks,
        }
    }

    /// The ledger, once connected (see `bazaar::start_billing`).
    pub fn connected(&self) -> Option<&Connected> {
        self.connected.get()
    }

    /// Sets the connected ledger; only the first call has an effect.
    pub fn connect(&self, connected: Connected) {
        let _ = self.connected.set(connected);
    }

    /// Sets the shared state once Redis answers; only the first call has an effect.
    pub fn share(&self, shared: shared::SharedState) {
        let _ = self.shared.set(shared);
    }

    /// Wall-clock milliseconds from the ledger's clock (0 before it is connected).
    pub fn now_ms(&self) -> i64 {
        self.connected().map(|c| (c.clock)()).unwrap_or(0)
    }
}

/// Connects the ledger and returns it plus the writer task to spawn; the writer flushes
/// and ends when `stop` is cancelled.
pub async fn start(
    config: &LedgerConfig,
    clock: Clock,
    stop: CancellationToken,
    write_seconds: Option<prometheus::HistogramVec>,
) -> Result<(Connected, impl std::future::Future<Output = ()>), LedgerError> {
    let ledger = Ledger::connect(&config.url).await?;
    // Rows spilled by an earlier run go in first, so budgets seeded from the ledger count them.
    match writer::replay(&ledger, &writer::Spill::new(config.spill_file.clone())).await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "Spilled ledger rows replayed."),
        Err(e) => {
            tracing::warn!("Replaying spilled ledger rows failed; the writer will retry: {e}")
        }
    }
    let settings = WriterSettings {
        queue: config.queue,
        batch: config.batch,
        flush_every: config.flush_every,
        spill_file: config.spill_file.clone(),
        write_seconds,
    };
    let (sink, task) = writer::start(ledger.clone(), settings, stop);
    Ok((
        Connected {
            ledger,
            sink,
            clock,
        },
        task,
    ))
}

/// Seeds each budgeted scope's current window with its spend so far from the ledger, so
/// a restart does not reset budgets. `scopes` are (kind, identity, budget) of config and
/// virtual keys and teams alike: a key by its id (`KeyConfig::id`), a team by its name.
pub async fn seed_budgets(
    budgets: &budget::Budgets,
    ledger: &Ledger,
    scopes: impl IntoIterator<Item = (ledger::GroupBy, String, Budget)>,
    now_ms: i64,
) -> Result<(), LedgerError> {
    for (column, name, budget) in scopes {
        let since = budget::period_start(budget.period, now_ms);
        let spent = ledger.spent_since(column, &name, since).await?;
        let scope = match column {
            ledger::GroupBy::Key => budget::key_scope(&name),
            _ => budget::team_scope(&name),
        };
        budgets.seed(
            &scope,
            budget.period,
            now_ms,
            u64::try_from(spent).unwrap_or(0),
        );
    }
    Ok(())
}
