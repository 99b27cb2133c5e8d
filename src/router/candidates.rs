//! Candidates: the (model, provider) pairs a call may go to, with the facts the router
//! knows about each, from the catalog and config.

use super::filter::{Facts, Quality};
use crate::catalog::{Limits, Price, Tier};
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

/// Every target serving `model`, in config order.
pub fn for_model(config: &Config, model: &str) -> Vec<Candidate> {
    config
        .models
        .get(model)
        .map(|targets| {
            targets
                .iter()
                .map(|t| Candidate {
                    model: model.to_string(),
                    provider: t.provider,
                    upstream: t.upstream.clone(),
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

/// What the router knows about a candidate.
pub fn facts(config: &Config, candidate: &Candidate) -> Facts {
    let tier = config
        .providers
        .get(candidate.provider)
        .map(|p| p.tier)
        .unwrap_or(Tier::Frontier);
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
