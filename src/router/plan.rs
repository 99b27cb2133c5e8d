//! `RoutePlan`: the ordered candidates for one call, built from the requested model.

use crate::api::ApiError;
use crate::config::Config;

/// One backend that may serve the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The public model id (a catalog id or config id).
    pub model: String,
    /// Index into `Config::providers` (and the runtime's provider list).
    pub provider: usize,
    /// The provider's own id for the model.
    pub upstream: String,
}

/// The candidates of one call, best first; the fallback loop walks them in order.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// The route label: the route name, or the model id for a concrete model.
    pub route: String,
    pub candidates: Vec<Candidate>,
}

/// Builds the plan for `model`: every target that serves it, in config order.
pub fn plan(config: &Config, model: &str) -> Result<RoutePlan, ApiError> {
    let targets = config
        .models
        .get(model)
        .ok_or_else(|| ApiError::model_not_found(model))?;
    Ok(RoutePlan {
        route: model.to_string(),
        candidates: targets
            .iter()
            .map(|t| Candidate {
                model: model.to_string(),
                provider: t.provider,
                upstream: t.upstream.clone(),
            })
            .collect(),
    })
}
