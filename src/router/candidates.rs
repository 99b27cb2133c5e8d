//! Candidates: the (model, provider) pairs a call may go to, each with the facts
//! (`catalog::Facts`) config resolved at load. It only lists them; filters and scores
//! decide, and nothing here reads the request.

use std::ops::Deref;
use std::sync::Arc;

use crate::config::{Config, ModelTarget};

/// One backend that may serve the call: one of the config's targets, shared (making one
/// is a reference count, not a copy of its ids and facts). Its fields are the target's:
/// `model` (the public id), `provider` (index into `Config::providers` and the
/// runtime's provider list), `upstream` (the provider's own id for the model) and
/// `facts` (what the router knows about it, resolved at config load).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate(Arc<ModelTarget>);

impl Candidate {
    /// The candidate for one of the config's targets.
    pub fn of(target: &Arc<ModelTarget>) -> Self {
        Candidate(target.clone())
    }
}

impl Deref for Candidate {
    type Target = ModelTarget;

    fn deref(&self) -> &ModelTarget {
        &self.0
    }
}

/// Every target serving `model`, in config order, borrowed from the config.
pub fn targets<'c>(config: &'c Config, model: &str) -> &'c [Arc<ModelTarget>] {
    config.models.get(model).map_or(&[], Vec::as_slice)
}
