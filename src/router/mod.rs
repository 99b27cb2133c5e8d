//! The per-call router: candidates → filters → scores → an ordered plan, and the
//! fallback loop that walks it. It reads config (policy, weights, breaker settings),
//! catalog facts and live stats. It never builds a request body (adapters do) and
//! imports nothing from billing: it estimates a call's cost only to rank candidates.

pub mod affinity;
pub mod breaker;
pub mod candidates;
pub mod classify;
pub mod explain;
pub mod fallback;
pub mod filter;
pub mod plan;
pub mod policy;
pub mod predict;
pub mod prefs;
pub mod score;
pub mod stats;

pub use candidates::Candidate;
pub use plan::{build_plan, CallShape, RoutePlan, RouterState};

use crate::config::Config;

/// The routes that cannot serve a plain one-line chat request as `config` stands —
/// every candidate filtered out by the route's floor, tiers or models — each with the
/// router's reason. `bazaar check` warns about them: such a route fails every call.
pub fn unservable_routes(config: &Config) -> Vec<(String, String)> {
    let state = RouterState::default();
    let plain = |model| CallShape {
        model,
        needs: Default::default(),
        prompt_tokens: 8,
        max_tokens: None,
        prompt_head: "Hello, how are you?",
        predict_view: "Hello, how are you?",
        user: None,
        headers: None,
    };
    config
        .routes
        .keys()
        .filter(|name| config.route(name).is_some())
        .filter_map(|name| {
            let call = plain(name.as_str());
            let caller = filter::CallerLimits::default();
            let now = tokio::time::Instant::now();
            build_plan(config, &state, &call, &Default::default(), &caller, now)
                .err()
                .map(|e| (name.clone(), e.to_string()))
        })
        .collect()
}
