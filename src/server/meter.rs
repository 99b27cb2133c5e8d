//! The server's side of metering: builds each call's `CallMeter`, prices the backend
//! that served it, and hands the finished row to the ledger sink (never waiting on it).

use std::sync::Arc;

use tokio::time::Instant;

use super::auth::Caller;
use super::state::{AppState, Runtime};
use crate::api::{ApiError, Usage};
use crate::billing::budget::Reservation;
use crate::billing::cost::{cost_nanos, usd};
use crate::billing::meter::{CallMeter, Ending, ServedBy};
use crate::billing::shared::{SharedState, Verdict};
use crate::catalog::Price;
use crate::config::Limits;
use crate::router::RoutePlan;
use crate::router::{plan::local_price, Candidate};
use tokio_util::task::TaskTracker;

/// A call being metered.
pub struct Metered {
    pub meter: CallMeter,
    pub started: Instant,
    state: Arc<AppState>,
    catalog_version: String,
}

impl Metered {
    pub fn new(
        state: &Arc<AppState>,
        runtime: &Runtime,
        caller: &Caller,
        request_id: &str,
        endpoint: &'static str,
        route: &str,
        prompt_tokens: u64,
    ) -> Metered {
        let ts_ms = state.billing.get().map(|b| (b.clock)()).unwrap_or(0);
        Metered {
            meter: CallMeter {
                ts_ms,
                request_id: request_id.to_string(),
                key_name: caller.name.clone(),
                team: caller.team.clone(),
                endpoint,
                route: route.to_string(),
                markup_bp: caller.markup_bp,
                prompt_tokens_estimate: prompt_tokens,
            },
            started: Instant::now(),
            state: state.clone(),
            catalog_version: runtime.config.catalog.version.clone(),
        }
    }

    /// A copy that a stream's end can own.
    pub fn clone_for_stream(&self) -> Metered {
        Metered {
            meter: self.meter.clone(),
            started: self.started,
            state: self.state.clone(),
            catalog_version: self.catalog_version.clone(),
        }
    }

    /// Records the call; returns its cost in nano-dollars (`None`: price unknown).
    pub fn finish(&self, served: Option<&ServedBy>, mut ending: Ending) -> Option<u64> {
        ending.latency = self.started.elapsed();
        let (row, cost) = self.meter.row(served, &ending, &self.catalog_version);
        let metrics = &self.state.router.metrics;
        if served.is_some() {
            let labels = [
                row.provider.as_str(),
                row.model.as_str(),
                row.tier.as_str(),
                row.route.as_str(),
            ];
            for (bucket, n) in [
                ("input", row.input_tokens),
                ("cached_input", row.cached_input_tokens),
                ("cache_write", row.cache_write_tokens),
                ("output", row.output_tokens),
                ("reasoning", row.reasoning_tokens),
            ] {
                if n > 0 {
                    metrics
                        .tokens
                        .with_label_values(&[labels[0], labels[1], labels[2], labels[3], bucket])
                        .inc_by(n as u64);
                }
            }
            match cost {
                Some(c) => metrics
                    .cost_usd
                    .with_label_values(&labels)
                    .inc_by(c as f64 / 1e9),
                None => metrics
                    .unpriced
                    .with_label_values(&[labels[0], labels[1]])
                    .inc(),
            }
            if let (Some(base), Some(c)) = (row.baseline_cost_nanos, cost) {
                metrics.savings_usd.add((base - c as i64) as f64 / 1e9);
            }
            if ending.fallbacks > 0 {
                metrics.fallbacks.with_label_values(&[labels[3]]).inc();
            }
        }
        if cost.is_none() {
            tracing::warn!(provider = %row.provider, model = %row.model, "No price is known for this backend; the call is recorded with an unknown cost.");
        }
        if let Some(billing) = self.state.billing.get() {
            billing.sink.record(row);
        }
        cost
    }
}

/// Who served a call and at what price (local servers with a running cost are priced
/// at their measured throughput), with the savings reference's price.
pub fn served_by(
    state: &AppState,
    runtime: &Runtime,
    route: &str,
    candidate: &Candidate,
) -> ServedBy {
    let config = &runtime.config;
    let provider = config.providers.get(candidate.provider);
    let provider_id = provider.map(|p| p.id.as_str()).unwrap_or("");
    let tps = state
        .router
        .stats
        .backend(provider_id, &candidate.upstream)
        .snapshot(Instant::now())
        .tokens_per_sec
        .unwrap_or(0.0);
    ServedBy {
        provider: provider_id.to_string(),
        model: candidate.model.to_string(),
        tier: candidate.facts.tier,
        price: local_price(config, candidate, tps).unwrap_or(candidate.facts.price),
        reference_price: reference_price(runtime, route),
    }
}

/// The price of the route's reference frontier model (or the router's default reference).
pub fn reference_price(runtime: &Runtime, route: &str) -> Option<Price> {
    let config = &runtime.config;
    let reference = config
        .route(route)
        .and_then(|r| r.reference.as_deref())
        .unwrap_or(&config.router.reference);
    let reference = config.canonical(reference);
    if let Some(target) = config
        .models
        .get(reference)
        .and_then(|t| t.iter().find(|t| t.facts.price.input.is_some()))
    {
        return Some(target.facts.price);
    }
    let (_, entry) = config.catalog.model(reference)?;
    entry
        .offers
        .iter()
        .find_map(|o| o.price.filter(|p| p.input.is_some()))
}

/// The `x-bazaar-cost-usd` header value: nine decimals, or `unknown`.
pub fn cost_header(cost: Option<u64>) -> http::HeaderValue {
    match cost {
        Some(c) => http::HeaderValue::from_str(&usd(c))
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown")),
        None => http::HeaderValue::from_static("unknown"),
    }
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

/// What a call holds while it runs: budget reservations, settled when it ends.
#[derive(Debug, Default)]
pub struct Admission {
    held: Vec<Held>,
}

impl Admission {
    /// Settles every reservation to the call's cost; an unknown cost settles at the
    /// reserved amount (the most the call could have cost).
    pub fn settle(self, cost: Option<u64>) {
        for mut held in self.held {
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

fn limited(what: String, retry_after: std::time::Duration) -> ApiError {
    ApiError::RateLimited {
        message: format!("Rate limit reached: {what}."),
        retry_after: Some(retry_after),
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

/// Rate limits (429) and budgets (402) of the caller's key and team, checked before any
/// backend is called, in process or through Redis when `state.redis` is set. The budget
/// reservation is the most this call can cost over the plan's candidates: its prompt
/// estimate plus `max_tokens` (or the model's max output).
pub async fn admit(
    state: &AppState,
    runtime: &Runtime,
    caller: &Caller,
    plan: &RoutePlan,
    prompt_tokens: u64,
    max_tokens: Option<u64>,
) -> Result<Admission, ApiError> {
    let Some(key) = &caller.key else {
        return Ok(Admission::default());
    };
    let config = &runtime.config;
    let team = key
        .team
        .as_ref()
        .and_then(|t| config.teams.get(t).cloned().or_else(|| state.keys.team(t)));
    let scopes: Vec<(String, Limits)> = std::iter::once((format!("key:{}", key.name), key.limits))
        .chain(
            team.as_ref()
                .map(|t| (format!("team:{}", t.name), t.limits)),
        )
        .collect();
    if scopes.iter().all(|(_, l)| *l == Limits::default()) {
        return Ok(Admission::default());
    }
    let tokens = prompt_tokens + max_tokens.unwrap_or(config.router.expected_output_tokens);
    let worst = plan
        .candidates
        .iter()
        .filter_map(|c| {
            let out = max_tokens.or(c.facts.limits.max_output).unwrap_or(4_096);
            let usage = Usage {
                input: prompt_tokens,
                output: out,
                ..Default::default()
            };
            cost_nanos(&usage, &c.facts.price, caller.markup_bp)
        })
        .max()
        .unwrap_or(0);
    let now_ms = state.now_ms();
    let mut admission = Admission::default();

    if config.redis.is_some() {
        let checked = match state.shared.get() {
            Some(shared) => {
                admit_shared(
                    state,
                    shared,
                    &scopes,
                    tokens,
                    worst,
                    now_ms,
                    &mut admission,
                )
                .await
            }
            None => Err(SharedError::Unreachable("not connected yet".into())),
        };
        return match checked {
            Ok(()) => Ok(admission),
            Err(SharedError::Refused(e)) => Err(e),
            Err(SharedError::Unreachable(e)) if key.fail_open => {
                tracing::warn!(key = %key.name, "Shared state unreachable; admitting unchecked (fail-open): {e}");
                Ok(Admission::default())
            }
            Err(SharedError::Unreachable(e)) => {
                tracing::warn!(key = %key.name, "Shared state unreachable; refusing (fail-closed): {e}");
                Err(ApiError::Unavailable {
                    message: "limits cannot be checked right now; try again".into(),
                    retry_after: Some(std::time::Duration::from_secs(1)),
                })
            }
        };
    }

    for (scope, limits) in &scopes {
        if let Some(rpm) = limits.rpm {
            state
                .limits
                .check_request(scope, rpm)
                .map_err(|l| limited(l.what, l.retry_after))?;
        }
        if let Some(tpm) = limits.tpm {
            state
                .limits
                .check_tokens(scope, tpm, tokens)
                .map_err(|l| limited(l.what, l.retry_after))?;
        }
    }
    for (scope, limits) in scopes {
        let Some(budget) = limits.budget else {
            continue;
        };
        match state.budgets.reserve(&scope, budget, worst, now_ms) {
            Ok(r) => admission.held.push(Held::Local(Some(r))),
            Err(e) => {
                return Err(over_budget(
                    &e.scope,
                    e.limit_nanos,
                    e.spent_nanos,
                    e.reserved_nanos,
                    e.needed_nanos,
                ))
            }
        }
    }
    Ok(admission)
}

enum SharedError {
    Refused(ApiError),
    Unreachable(String),
}

async fn admit_shared(
    state: &AppState,
    shared: &SharedState,
    scopes: &[(String, Limits)],
    tokens: u64,
    worst: u64,
    now_ms: i64,
    admission: &mut Admission,
) -> Result<(), SharedError> {
    for (scope, limits) in scopes {
        for (what, limit, n) in [("rpm", limits.rpm, 1), ("tpm", limits.tpm, tokens)] {
            let Some(limit) = limit else { continue };
            let verdict = shared
                .per_minute(scope, what, limit, n, now_ms)
                .await
                .map_err(|e| SharedError::Unreachable(e.to_string()))?;
            if let Verdict::Limited(after) = verdict {
                let label = if what == "rpm" {
                    "requests per minute"
                } else {
                    "tokens per minute"
                };
                return Err(SharedError::Refused(limited(
                    format!("{scope} {label} ({limit})"),
                    after,
                )));
            }
        }
    }
    for (scope, limits) in scopes {
        let Some(budget) = limits.budget else {
            continue;
        };
        let seed = state.budgets.spent(scope);
        let (verdict, key) = shared
            .reserve(scope, budget, worst, seed, now_ms)
            .await
            .map_err(|e| SharedError::Unreachable(e.to_string()))?;
        match verdict {
            Verdict::OverBudget(spent, reserved) => {
                return Err(SharedError::Refused(over_budget(
                    scope,
                    budget.limit_nanos,
                    spent,
                    reserved,
                    worst,
                )))
            }
            _ => admission.held.push(Held::Shared {
                shared: shared.clone(),
                key,
                amount: worst,
                tasks: state.tasks.clone(),
                settled: false,
            }),
        }
    }
    Ok(())
}
