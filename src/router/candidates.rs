//! Candidates: the (model, provider) pairs a call may go to, with the facts the router
//! knows about each, from the catalog and config.

use std::sync::Arc;

use super::filter::{Facts, Quality};
use crate::catalog::{Limits, Price, Tier};
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

/// True for models that serve chat (embedding models are left out of routes).
pub fn is_chat_model(config: &Config, model: &str) -> bool {
    let _ = config;
    !model.contains("embedding") && !model.contains("embed-")
}

/// Facts for a model the catalog does not know: the provider's tier, free on a local
/// server, otherwise an unknown price; capabilities and limits unknown.
pub fn default_facts(tier: Tier) -> Facts {
    Facts {
        tier,
        // A local server costs nothing per token; elsewhere an unknown price stays unknown.
        price: if tier == Tier::Local {
            Price::FREE
        } else {
            Price::default()
        },
        capabilities: None,
        limits: Limits::default(),
        quality: Quality::default(),
        trains_on_prompts: None,
        quantization: None,
    }
}
