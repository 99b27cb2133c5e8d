//! Candidates: the (model, provider) pairs a call may go to, each with the facts
//! (`catalog::Facts`) config resolved at load. It only lists them; filters and scores
//! decide, and nothing here reads the request.

use std::sync::Arc;

use crate::catalog::Facts;
use crate::config::Config;

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

/// Every target serving `model`, in config order.
pub fn for_model(config: &Config, model: &str) -> Vec<Candidate> {
    config
        .models
        .get(model)
        .map(|targets| {
            targets
                .iter()
                .map(|t| Candidate {
                    model: t.model.clone(),
                    provider: t.provider,
                    upstream: t.upstream.clone(),
                    facts: t.facts.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}
