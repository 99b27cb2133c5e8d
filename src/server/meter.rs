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
use crate::catalog::Price;
use crate::config::Limits;
use crate::router::RoutePlan;
use crate::router::{plan::local_price, Candidate};

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

/// What a call holds while it runs: budget reservations, settled when it ends.
#[derive(Debug, Default)]
pub struct Admission {
    reservations: Vec<Reservation>,
}

impl Admission {
    /// Settles every reservation to the call's cost; an unknown cost settles at the
    /// reserved amount (the most the call could have cost).
    pub fn settle(self, cost: Option<u64>) {
        for r in self.reservations {
            match cost {
                Some(c) => r.settle(c),
                None => {
                    let amount = r.amount();
                    r.settle(amount);
                }
            }
        }
    }
}

/// Rate limits (429) and budgets (402) of the caller's key and team, checked before any
/// backend is called. The budget reservation is the most this call can cost over the
/// plan's candidates: its prompt estimate plus `max_tokens` (or the model's max output).
pub fn admit(
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
    let tokens = prompt_tokens + max_tokens.unwrap_or(config.router.expected_output_tokens);
    for (scope, limits) in &scopes {
        let limited = limits
            .rpm
            .map(|rpm| state.limits.check_request(scope, rpm))
            .transpose()
            .and_then(|_| {
                limits
                    .tpm
                    .map(|tpm| state.limits.check_tokens(scope, tpm, tokens))
                    .transpose()
            });
        if let Err(l) = limited {
            return Err(ApiError::RateLimited {
                message: format!("Rate limit reached: {}.", l.what),
                retry_after: Some(l.retry_after),
            });
        }
    }
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
    let now_ms = state.billing.get().map(|b| (b.clock)()).unwrap_or(0);
    let mut admission = Admission::default();
    for (scope, limits) in scopes {
        let Some(budget) = limits.budget else {
            continue;
        };
        match state.budgets.reserve(&scope, budget, worst, now_ms) {
            Ok(r) => admission.reservations.push(r),
            Err(e) => {
                tracing::debug!(scope = %e.scope, "Budget would be exceeded.");
                return Err(ApiError::BudgetExhausted(format!(
                    "Budget exhausted for {}: {} of {} spent this period, {} reserved by calls in flight; this call may cost up to {}.",
                    e.scope,
                    usd(e.spent_nanos),
                    usd(e.limit_nanos),
                    usd(e.reserved_nanos),
                    usd(e.needed_nanos)
                )));
            }
        }
    }
    Ok(admission)
}
