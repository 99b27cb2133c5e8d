//! Candidates: the (model, provider) pairs a call may go to, each with the facts
//! (`catalog::Facts`) config resolved at load. It only lists them; filters and scores
//! decide, and nothing here reads the request.

use std::sync::Arc;

use crate::catalog::Facts;
use crate::config::{Config, ModelTarget};

/// One backend that may serve the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The public model id (a catalog id or config id).
    pub model: Arc<str>,
    /// Index into `Config::providers` (and the runtime's provider list).
    pub provider: usize,
    /// The provider's own id for the model.
    pub upstream: Arc<str>,
    /// What the router knows about it (resolved at config load).
    pub facts: Arc<Facts>,
}

impl Candidate {
    /// The candidate for one of the config's targets (its ids and facts shared, not copied).
    pub fn of(target: &ModelTarget) -> Self {
        Candidate {
            model: target.model.clone(),
            provider: target.provider,
            upstream: target.upstream.clone(),
            facts: target.facts.clone(),
        }
    }
}

/// Every target serving `model`, in config order, borrowed from the config.
pub fn targets<'c>(config: &'c Config, model: &str) -> &'c [ModelTarget] {
    config.models.get(model).map_or(&[], Vec::as_slice)
}
