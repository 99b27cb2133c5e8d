//! Budgets per key and team, per UTC calendar period, enforced by reserve-then-settle:
//! before a call is forwarded it reserves the most it can cost; when it ends the
//! reservation is settled to the actual cost (or released on failure). Admission is one
//! mutex-guarded check of spent + reserved + this call ≤ limit, so concurrent calls
//! cannot all slip under the same remaining budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{Datelike, TimeZone, Utc};

use crate::config::{Budget, Period};

/// The start of the UTC calendar period containing `now_ms`.
pub fn period_start(period: Period, now_ms: i64) -> i64 {
    let Some(now) = Utc.timestamp_millis_opt(now_ms).single() else {
        return 0;
    };
    let day = now.date_naive();
    let start = match period {
        Period::Day => day,
        Period::Week => day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday())),
        Period::Month => day.with_day(1).unwrap_or(day),
    };
    start
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(0)
}

/// The budget and rate-limit scope of the key with id `id` (`KeyConfig::id`, never
/// reused): `key:<id>`. Never the key's name, which a later key may take again.
pub fn key_scope(id: &str) -> String {
    format!("key:{id}")
}

/// The budget and rate-limit scope of team `name`: `team:<name>` (a team is its name).
pub fn team_scope(name: &str) -> String {
    format!("team:{name}")
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start_ms: i64,
    spent: u64,
    reserved: u64,
}

/// Spend windows of every budgeted scope (`key_scope`, `team_scope`), in process.
#[derive(Debug, Default)]
pub struct Budgets {
    windows: Mutex<HashMap<String, Window>>,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub scope: String,
    pub limit_nanos: u64,
    pub spent_nanos: u64,
    pub reserved_nanos: u64,
    pub needed_nanos: u64,
}

/// Money held for one call in one scope; released on drop unless settled.
#[derive(Debug)]
pub struct Reservation {
    budgets: Arc<Budgets>,
    scope: String,
    window_start: i64,
    amount: u64,
    settled: bool,
}

impl Budgets {
    /// Seeds a scope's spend in the current window (from the ledger at start-up).
    pub fn seed(&self, scope: &str, period: Period, now_ms: i64, spent: u64) {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        w.insert(
            scope.to_string(),
            Window {
                start_ms: period_start(period, now_ms),
                spent,
                reserved: 0,
            },
        );
    }

    /// Reserves `amount` in `scope` if it fits in `budget`'s current window.
    pub fn reserve(
        self: &Arc<Self>,
        scope: &str,
        budget: Budget,
        amount: u64,
        now_ms: i64,
    ) -> Result<Reservation, Exceeded> {
        let start = period_start(budget.period, now_ms);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(scope.to_string()).or_default();
        if w.start_ms != start {
            // A new period: what was spent before no longer counts; reservations in flight carry over.
            *w = Window {
                start_ms: start,
                spent: 0,
                reserved: w.reserved,
            };
        }
        if w.spent.saturating_add(w.reserved).saturating_add(amount) > budget.limit_nanos
            || w.spent >= budget.limit_nanos
        {
            return Err(Exceeded {
                scope: scope.to_string(),
                limit_nanos: budget.limit_nanos,
                spent_nanos: w.spent,
                reserved_nanos: w.reserved,
                needed_nanos: amount,
            });
        }
        w.reserved = w.reserved.saturating_add(amount);
        Ok(Reservation {
            budgets: self.clone(),
            scope: scope.to_string(),
            window_start: start,
            amount,
            settled: false,
        })
    }

    /// Spent so far in the scope's current window.
    pub fn spent(&self, scope: &str) -> u64 {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(scope)
            .map(|w| w.spent)
            .unwrap_or(0)
    }

    fn finish(&self, r: &Reservation, actual: u64) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = windows.get_mut(&r.scope) {
            w.reserved = w.reserved.saturating_sub(r.amount);
            if w.start_ms == r.window_start {
                w.spent = w.spent.saturating_add(actual);
            }
        }
    }
}

impl Reservation {
    /// The amount held.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// Replaces the reservation with the call's actual cost.
    pub fn settle(mut self, actual_nanos: u64) {
        self.budgets.finish(&self, actual_nanos);
        self.settled = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.budgets.finish(self, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn periods_are_utc_calendar() {
        // 2026-11-25T13:00:00Z is a Wednesday.
        let now = 1_795_611_600_000;
        assert_eq!(period_start(Period::Day, now), 1_795_564_800_000);
        assert_eq!(period_start(Period::Week, now), 1_795_564_800_000 - 2 * DAY);
        assert_eq!(
            period_start(Period::Month, now),
            1_795_564_800_000 - 24 * DAY
        );
    }

    #[test]
    fn reserve_settle_release() {
        let b = Arc::new(Budgets::default());
        let budget = Budget {
            limit_nanos: 100,
            period: Period::Day,
        };
        let a = b.reserve("key:k", budget, 60, 0).unwrap();
        assert!(
            b.reserve("key:k", budget, 60, 0).is_err(),
            "reserved money counts"
        );
        a.settle(30);
        assert_eq!(b.spent("key:k"), 30);
        let c = b.reserve("key:k", budget, 60, 0).unwrap();
        drop(c);
        assert_eq!(b.spent("key:k"), 30, "a failed call costs nothing");
        let held = b.reserve("key:k", budget, 70, 0).unwrap();
        // Next day: a fresh window, but a reservation still in flight counts.
        assert!(
            b.reserve("key:k", budget, 100, DAY).is_err(),
            "the earlier 70 is still reserved"
        );
        drop(held);
        assert!(b.reserve("key:k", budget, 100, DAY).is_ok());
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let b = Arc::new(Budgets::default());
        let budget = Budget {
            limit_nanos: 1_000,
            period: Period::Month,
        };
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..200)
                .map(|_| {
                    s.spawn(|| {
                        b.reserve("team:t", budget, 100, 0)
                            .map(|r| r.settle(100))
                            .is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap() as usize)
                .sum()
        });
        assert_eq!(admitted, 10);
        assert_eq!(b.spent("team:t"), 1_000);
    }
}
