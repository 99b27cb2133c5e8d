//! Metering: usage → cost, gateway keys, budgets, limits and the ledger. Per call the
//! request path only does in-memory work (a hash lookup, atomic counters, a channel
//! send); the database is written in batches off the request path.

pub mod cost;
pub mod keys;
pub mod ledger;
pub mod meter;
pub mod tokens;

use std::sync::Arc;

use ledger::writer::{self, LedgerSink, WriterSettings};
use ledger::{Ledger, LedgerError};
use tokio_util::sync::CancellationToken;

use crate::config::{Budget, LedgerConfig};

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

/// The running billing side: the ledger for queries and the sink for new rows.
pub struct Billing {
    pub ledger: Ledger,
    pub sink: LedgerSink,
    pub clock: Clock,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing")
            .field("ledger", &self.ledger.backend)
            .finish()
    }
}

/// Connects the ledger and returns billing plus the writer task to spawn; the writer
/// flushes and ends when `stop` is cancelled.
pub async fn start(
    config: &LedgerConfig,
    clock: Clock,
    stop: CancellationToken,
    write_seconds: Option<prometheus::HistogramVec>,
) -> Result<(Billing, impl std::future::Future<Output = ()>), LedgerError> {
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
        Billing {
            ledger,
            sink,
            clock,
        },
        task,
    ))
}
pub mod budget;
pub mod limits;
pub mod shared;

/// Seeds each budgeted scope's current window with its spend so far from the ledger, so
/// a restart does not reset budgets. `scopes` are (kind, name, budget) of config and
/// virtual keys and teams alike.
pub async fn seed_budgets(
    budgets: &budget::Budgets,
    ledger: &Ledger,
    scopes: impl IntoIterator<Item = (ledger::GroupBy, String, Budget)>,
    now_ms: i64,
) -> Result<(), LedgerError> {
    for (column, name, budget) in scopes {
        let since = budget::period_start(budget.period, now_ms);
        let spent = ledger.spent_since(column, &name, since).await?;
        let scope = format!("{}:{name}", column.as_str());
        budgets.seed(
            &scope,
            budget.period,
            now_ms,
            u64::try_from(spent).unwrap_or(0),
        );
    }
    Ok(())
}
