//! `Facts`: what is known about one model on one provider, folded from the catalog's
//! entry and offer (and later config overrides) once at config load. The router's
//! filters and scores read them; this module only builds them, never routes.

use super::{Capabilities, Limits, ModelEntry, Offer, Price, QualityPriors, Tier};

/// What is known about one (model, provider) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub tier: Tier,
    pub price: Price,
    /// `None` when nothing is known: capability filters then let it through.
    pub capabilities: Option<Capabilities>,
    pub limits: Limits,
    /// Quality priors 0–100 by task; absent when unknown.
    pub quality: QualityPriors,
    /// `Some(true)` when the provider may train on prompts.
    pub trains_on_prompts: Option<bool>,
    pub quantization: Option<String>,
}

impl Facts {
    /// Facts from the catalog: the exact offer when known, else the model's own
    /// capabilities, limits and quality with an unknown price (free on a local server).
    pub fn from_catalog(offer: Option<&Offer>, entry: Option<&ModelEntry>, tier: Tier) -> Facts {
        let quality = entry.map(|e| e.quality).unwrap_or_default();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn offer(provider: &str, price: Option<Price>) -> Offer {
        Offer {
            provider: provider.into(),
            upstream: "up".into(),
            tier: Tier::OpenHosted,
            price,
            limits: Limits {
                context: Some(8_000),
                max_output: Some(1_000),
            },
            capabilities: None,
            quantization: Some("fp8".into()),
            trains_on_prompts: Some(false),
            sources: BTreeMap::new(),
        }
    }

    fn entry() -> ModelEntry {
        let mut first = offer("a", Some(Price::flat(1, 2)));
        first.capabilities = Some(Capabilities {
            tools: true,
            ..Default::default()
        });
        ModelEntry {
            kind: Default::default(),
            aliases: Vec::new(),
            offers: vec![first],
            quality: QualityPriors {
                general: Some(70.0),
                ..Default::default()
            },
            sources: BTreeMap::new(),
        }
    }

    #[test]
    fn an_offer_gives_its_price_and_the_model_its_capabilities_and_quality() {
        let e = entry();
        let o = offer("b", Some(Price::flat(3, 4)));
        let f = Facts::from_catalog(Some(&o), Some(&e), Tier::OpenHosted);
        assert_eq!(f.price, Price::flat(3, 4));
        assert!(f.capabilities.is_some_and(|c| c.tools));
        assert_eq!(f.quality.general, Some(70.0));
        assert_eq!(f.quantization.as_deref(), Some("fp8"));
    }

    #[test]
    fn an_unknown_price_stays_unknown_except_on_a_local_server() {
        let o = offer("b", None);
        let hosted = Facts::from_catalog(Some(&o), None, Tier::OpenHosted);
        assert_eq!(hosted.price, Price::default());
        let local = Facts::from_catalog(None, Some(&entry()), Tier::Local);
        assert_eq!(local.price, Price::FREE);
        assert_eq!(local.limits.context, Some(8_000));
        assert_eq!(local.trains_on_prompts, None);
    }
}
