//! The one door a call passes through billing by. `Billing::open` starts its record;
//! `Admission::admit` checks rate limits (429) and budgets (402) of its key and team
//! before the first attempt and reserves the most the call can cost (in process, or in
//! Redis with the key's fail-open policy); `Admission::finish` writes the ledger row and
//! the billing metrics and settles the reservations. Nothing here waits on the database.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::budget::{key_scope, team_scope, Reservation};
use super::cost::{cost_nanos, usd};
use super::limits::Limited;
use super::meter::{Billed, CallMeter, Ending, ServedBy};
use super::shared::{SharedState, Verdict};
use super::Billing;
use crate::api::{ApiError, Usage};
use crate::catalog::Price;
use crate::config::{Config, KeyConfig, Limits};
use crate::telemetry::metrics::CallSeries;

/// The output a reservation assumes when neither the request (`max_tokens`) nor the
/// catalog (the model's max output) caps it; Anthropic's own default cap is the same.
pub const UNCAPPED_OUTPUT_TOKENS: u64 = 4_096;

/// What admission needs to know about a call beyond who makes it.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The caller's key; `None` for the master key, which nothing limits.
    pub key: Option<&'a KeyConfig>,
    pub config: &'a Config,
    pub prompt_tokens: u64,
    pub max_tokens: Option<u64>,
    /// Choices the call generates (`n`); the output cap holds for each.
    pub choices: u64,
}

/// One backend a call may reach: its price and the most output it can produce.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    pub price: Price,
    pub max_output: Option<u64>,
}

/// How a call ended, for `Admission::finish`.
// Built once per call and consumed at once; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outcome<'a> {
    /// A backend answered (the stream may still have failed or been abandoned: see `ending`).
    Served { by: ServedBy, ending: Ending },
    /// Refused or failed before any backend answered: nothing is charged.
    Failed(&'a ApiError),
}

/// Money a call holds in one scope while it runs.
#[derive(Debug)]
enum Held {
    Local(Option<Reservation>),
    Shared {
        shared: SharedState,
        key: String,
        amount: u64,
        tasks: TaskTracker,
        settled: bool,
    },
}

impl Drop for Held {
    fn drop(&mut self) {
        // An unsettled shared reservation (the call failed) is released.
        if let Held::Shared {
            shared,
            key,
            amount,
            tasks,
            settled: false,
        } = self
        {
            let (shared, key, amount) = (shared.clone(), std::mem::take(key), *amount);
            tasks.spawn(async move {
                if let Err(e) = shared.settle(&key, amount, 0).await {
                    tracing::warn!("Releasing a shared budget reservation failed: {e}");
                }
            });
        }
    }
}

/// One call's billing record from its start: who it is, what it holds, and the row it
/// becomes. Finish it exactly once. Dropped unfinished (the request's future was
/// dropped: its client hung up before the call ended), it still writes the call's row,
/// status 499 `client_closed` with nothing charged, and releases what it holds; so
/// every call that reached admission leaves exactly one row.
#[derive(Debug)]
pub struct Admission {
    meter: CallMeter,
    started: Instant,
    catalog_version: Arc<str>,
    held: Vec<Held>,
    billing: Arc<Billing>,
    finished: bool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.finished {
            self.record(
                None,
                Ending {
                    status: 499,
                    error_type: Some(crate::api::ErrorLabel::ClientClosed),
                    ..Default::default()
                },
            );
        }
    }
}

impl Billing {
    /// Starts the billing record of a call that `meter` describes (its clock is read now).
    pub fn open(self: &Arc<Self>, mut meter: CallMeter, catalog_version: &Arc<str>) -> Admission {
        meter.ts_ms = self.now_ms();
        Admission {
            meter,
            started: Instant::now(),
            catalog_version: catalog_version.clone(),
            held: Vec::new(),
            billing: self.clone(),
            finished: false,
        }
    }
}

/// One scope whose limits a call is checked against. Its state (budget window, rate
/// limiters, Redis counters) is keyed by `id`: a key's id, which is never reused, or a
/// team's name. Messages name it by `label` (`key:NAME`, `team:NAME`), as people know it.
#[derive(Debug)]
struct Scope {
    id: String,
    label: String,
    limits: Limits,
}

impl Scope {
    /// A key's scope: keyed by its id, so a key that reuses a revoked key's name (or a
    /// virtual key named like a config key) starts with no spend and fresh limits.
    fn key(key: &KeyConfig) -> Scope {
        Scope {
            id: key_scope(&key.id),
            label: format!("key:{}", key.name),
            limits: key.limits,
        }
    }

    fn team(name: &str, limits: Limits) -> Scope {
        Scope {
            id: team_scope(name),
            label: format!("team:{name}"),
            limits,
        }
    }
}

fn limited(label: &str, l: Limited) -> ApiError {
    ApiError::RateLimited {
        message: format!("Rate limit reached: {label} {}.", l.what),
        retry_after: Some(l.retry_after),
    }
}

fn over_budget(scope: &str, limit: u64, spent: u64, reserved: u64, needed: u64) -> ApiError {
    ApiError::BudgetExhausted(format!(
        "Budget exhausted for {scope}: {} of {} spent this period, {} reserved by calls in flight; this call may cost up to {}.",
        usd(spent),
        usd(limit),
        usd(reserved),
        usd(needed)
    ))
}

enum SharedError {
    Refused(ApiError),
    Unreachable(String),
}

impl Admission {
    /// The call's markup, in basis points.
    pub fn markup_bp(&self) -> u32 {
        self.meter.markup_bp
    }

    /// Checks the rate limits and budgets of the caller's key and team before any backend
    /// is called, and reserves the most the call can cost over `offers` (the plan's
    /// candidates): its prompt estimate plus `max_tokens`, else the model's max output,
    /// else `UNCAPPED_OUTPUT_TOKENS`. Through Redis when the config names one; while it is
    /// unreachable, the key's `fail_open` decides.
    pub async fn admit(
        &mut self,
        ask: Ask<'_>,
        offers: impl IntoIterator<Item = Offer>,
    ) -> Result<(), ApiError> {
        let Some(key) = ask.key else {
            return Ok(());
        };
        let billing = self.billing.clone();
        let config = ask.config;
        let team = key.team.as_ref().and_then(|t| {
            config
                .teams
                .get(&**t)
                .cloned()
                .or_else(|| billing.keys.team(t))
        });
        // A key and team without limits have nothing to check: no scope is built.
        let unlimited = |limits: &Limits| *limits == Limits::default();
        if unlimited(&key.limits) && team.as_ref().is_none_or(|t| unlimited(&t.limits)) {
            return Ok(());
        }
        let scopes: Vec<Scope> = std::iter::once(Scope::key(key))
            .chain(team.as_ref().map(|t| Scope::team(&t.name, t.limits)))
            .collect();
        // Checked arithmetic throughout: an absurd count must cost more, never wrap to less.
        let choices = ask.choices.max(1);
        let tokens = ask.prompt_tokens.saturating_add(
            ask.max_tokens
                .unwrap_or(config.router.expected_output_tokens)
                .saturating_mul(choices),
        );
        let worst = offers
            .into_iter()
            .filter_map(|o| {
                let usage = Usage {
                    input: ask.prompt_tokens,
                    output: ask
                        .max_tokens
                        .or(o.max_output)
                        .unwrap_or(UNCAPPED_OUTPUT_TOKENS)
                        .saturating_mul(choices),
                    ..Default::default()
                };
                cost_nanos(&usage, &o.price, self.meter.markup_bp)
            })
            .max()
            .unwrap_or(0);
        let now_ms = billing.now_ms();

        if config.redis.is_some() {
            let checked = match billing.shared.get() {
                Some(shared) => {
                    self.admit_shared(shared, &scopes, tokens, worst, now_ms)
                        .await
                }
                None => Err(SharedError::Unreachable("not connected yet".into())),
            };
            return match checked {
                Ok(()) => Ok(()),
                Err(SharedError::Refused(e)) => Err(e),
                Err(SharedError::Unreachable(e)) if key.fail_open => {
                    tracing::warn!(key = %key.name, "Shared state unreachable; admitting unchecked (fail-open): {e}");
                    self.held.clear();
                    Ok(())
                }
                Err(SharedError::Unreachable(e)) => {
                    tracing::warn!(key = %key.name, "Shared state unreachable; refusing (fail-closed): {e}");
                    Err(ApiError::Unavailable {
                        message: "limits cannot be checked right now; try again".into(),
                        retry_after: Some(Duration::from_secs(1)),
                    })
                }
            };
        }

        for scope in &scopes {
            if let Some(rpm) = scope.limits.rpm {
                billing
                    .limits
                    .check_request(&scope.id, rpm)
                    .map_err(|l| limited(&scope.label, l))?;
            }
            if let Some(tpm) = scope.limits.tpm {
                billing
                    .limits
                    .check_tokens(&scope.id, tpm, tokens)
                    .map_err(|l| limited(&scope.label, l))?;
            }
        }
        for scope in scopes {
            let Some(budget) = scope.limits.budget else {
                continue;
            };
            match billing.budgets.reserve(&scope.id, budget, worst, now_ms) {
                Ok(r) => self.held.push(Held::Local(Some(r))),
                Err(e) => {
                    return Err(over_budget(
                        &scope.label,
                        e.limit_nanos,
                        e.spent_nanos,
                        e.reserved_nanos,
                        e.needed_nanos,
                    ))
                }
            }
        }
        Ok(())
    }

    async fn admit_shared(
        &mut self,
        shared: &SharedState,
        scopes: &[Scope],
        tokens: u64,
        worst: u64,
        now_ms: i64,
    ) -> Result<(), SharedError> {
        for scope in scopes {
            let limits = scope.limits;
            for (what, limit, n) in [("rpm", limits.rpm, 1), ("tpm", limits.tpm, tokens)] {
                let Some(limit) = limit else { continue };
                let verdict = shared
                    .per_minute(&scope.id, what, limit, n, now_ms)
                    .await
                    .map_err(|e| SharedError::Unreachable(e.to_string()))?;
                if let Verdict::Limited(retry_after) = verdict {
                    let unit = if what == "rpm" {
                        "requests per minute"
                    } else {
                        "tokens per minute"
                    };
                    return Err(SharedError::Refused(limited(
                        &scope.label,
                        Limited {
                            what: format!("{unit} ({limit})"),
                            retry_after,
                        },
                    )));
                }
            }
        }
        for scope in scopes {
            let Some(budget) = scope.limits.budget else {
                continue;
            };
            let seed = self.billing.budgets.spent(&scope.id);
            let (verdict, key) = shared
                .reserve(&scope.id, budget, worst, seed, now_ms)
                .await
                .map_err(|e| SharedError::Unreachable(e.to_string()))?;
            match verdict {
                Verdict::OverBudget(spent, reserved) => {
                    return Err(SharedError::Refused(over_budget(
                        &scope.label,
                        budget.limit_nanos,
                        spent,
                        reserved,
                        worst,
                    )))
                }
                _ => self.held.push(Held::Shared {
                    shared: shared.clone(),
                    key,
                    amount: worst,
                    tasks: self.billing.tasks.clone(),
                    settled: false,
                }),
            }
        }
        Ok(())
    }

    /// Prices a usage report at `price` with this call's markup (for `usage.cost` in a
    /// stream's usage chunk).
    pub fn pricer(&self, price: Price) -> impl Fn(&Usage) -> Option<u64> + Send + 'static {
        let markup_bp = self.meter.markup_bp;
        move |usage| cost_nanos(usage, &price, markup_bp)
    }

    /// Ends the call: writes its ledger row and billing metrics and settles what it holds
    /// to its cost (an unknown cost settles at the reserved amount, the most it could
    /// have cost). Returns what it billed: the usage and the cost in nano-dollars
    /// (`None`: price unknown), the figures the client is shown.
    pub fn finish(mut self, outcome: Outcome<'_>) -> Billed {
        let (served, ending) = match outcome {
            Outcome::Served { by, ending } => (Some(by), ending),
            Outcome::Failed(error) => (
                None,
                Ending {
                    status: error.status().as_u16(),
                    error_type: Some(error.label()),
                    ..Default::default()
                },
            ),
        };
        self.record(served, ending)
    }

    /// Writes the row and the billing metrics of the call that ended with `ending`, and
    /// settles what it holds; once.
    fn record(&mut self, mut served: Option<ServedBy>, mut ending: Ending) -> Billed {
        self.finished = true;
        ending.latency = self.started.elapsed();
        let was_served = served.is_some();
        let series = served.as_mut().and_then(|s| s.series.take());
        let (row, billed) = self
            .meter
            .row(served, &ending, self.catalog_version.clone());
        let cost = billed.cost;
        let metrics = &self.billing.metrics;
        if was_served {
            let labels = [&*row.provider, &*row.model, &*row.tier, &*row.route];
            let series = match series {
                Some(backend) => backend.route(metrics, labels[3]),
                None => Arc::new(CallSeries::of(metrics, labels)),
            };
            let counts = [
                row.input_tokens,
                row.cached_input_tokens,
                row.cache_write_tokens,
                row.output_tokens,
                row.reasoning_tokens,
            ];
            for (counter, n) in series.tokens.iter().zip(counts) {
                if n > 0 {
                    counter.inc_by(n as u64);
                }
            }
            match cost {
                Some(c) => series.cost_usd.inc_by(c as f64 / 1e9),
                None => series.unpriced.inc(),
            }
            if let (Some(base), Some(c)) = (row.baseline_cost_nanos, cost) {
                metrics.savings_usd.add((base as f64 - c as f64) / 1e9);
            }
            if ending.fallbacks > 0 {
                metrics.fallbacks.with_label_values(&[labels[3]]).inc();
            }
            if cost.is_none() {
                tracing::warn!(provider = %row.provider, model = %row.model, "No price is known for this backend; the call is recorded with an unknown cost.");
            }
        }
        if let Some(connected) = self.billing.connected() {
            connected.sink.record(row);
        }
        self.settle(cost);
        billed
    }

    fn settle(&mut self, cost: Option<u64>) {
        for mut held in std::mem::take(&mut self.held) {
            match &mut held {
                Held::Local(r) => {
                    if let Some(r) = r.take() {
                        let actual = cost.unwrap_or_else(|| r.amount());
                        r.settle(actual);
                    }
                }
                Held::Shared {
                    shared,
                    key,
                    amount,
                    tasks,
                    settled,
                } => {
                    let (shared, key, amount) = (shared.clone(), key.clone(), *amount);
                    let actual = cost.unwrap_or(amount);
                    tasks.spawn(async move {
                        if let Err(e) = shared.settle(&key, amount, actual).await {
                            tracing::warn!("Settling a shared budget reservation failed: {e}");
                        }
                    });
                    *settled = true;
                }
            }
        }
    }
}
