//! Candidates: the (model, provider) pairs a call may go to, with the facts the router
//! knows about each, from the catalog and config.

use std::sync::Arc;

use super::filter::{Facts, Quality};
use crate::catalog::{ModelEntry, ModelKind, Offer, Price, Tier};
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
    match config.catalog.model(model) {
        Some((_, entry)) => entry.kind == ModelKind::Chat,
        None => !model.contains("embedding") && !model.contains("embed-"),
    }
}

/// Facts from the catalog: the exact offer when known, else the model's own
/// capabilities, limits and quality with an unknown price (free on a local server).
pub fn facts_from(offer: Option<&Offer>, entry: Option<&ModelEntry>, tier: Tier) -> Facts {
    let quality = entry
        .map(|e| Quality {
            general: e.quality.general,
            coding: e.quality.coding,
            math: e.quality.math,
            reasoning: e.quality.reasoning,
        })
        .unwrap_or_default();
    let free_if_local = if tier == Tier::Local {
        Price::FREE
    } else {
        Price::default()
    };
    match offer {
        Some(o) => Facts {
            tier,
            price: o.price.unwrap_or(free_if_local),
            capabilities: o
                .capabilities
                .or_else(|| entry.and_then(ModelEntry::capabilities)),
            limits: o.limits,
            quality,
            trains_on_prompts: o.trains_on_prompts,
            quantization: o.quantization.clone(),
        },
        None => Facts {
            tier,
            price: free_if_local,
            capabilities: entry.and_then(ModelEntry::capabilities),
            limits: entry
                .and_then(|e| e.offers.first())
                .map(|o| o.limits)
                .unwrap_or_default(),
            quality,
            trains_on_prompts: None,
            quantization: None,
        },
    }
}
