//! The server's side of metering: builds each call's `CallMeter`, prices the backend
//! that served it, and hands the finished row to the ledger sink (never waiting on it).

use std::sync::Arc;

use tokio::time::Instant;

use super::auth::Caller;
use super::state::{AppState, Runtime};
use crate::billing::cost::usd;
use crate::billing::meter::{CallMeter, Ending, ServedBy};
use crate::catalog::Price;
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
