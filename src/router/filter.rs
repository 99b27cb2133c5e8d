//! Hard constraints: each candidate either passes or gets the reason it was rejected.
//! Pure: the inputs are the candidate's facts, the request's needs and the caller's limits.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::prefs::Prefs;
use crate::api::openai::Needs;
use crate::api::ApiError;
/// Re-exported from `catalog`, where facts about a model live; kept so `router::filter::Facts` still names it.
pub use crate::catalog::Facts;
use crate::catalog::{Capabilities, Tier};

/// Why a candidate was rejected; rendered in errors and `/v1/route/explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FilterReason {
    ContextTooSmall {
        needed: u64,
        window: u64,
    },
    MissingCapability {
        capability: &'static str,
    },
    TierNotAllowed {
        tier: Tier,
        by: &'static str,
    },
    ProviderExcluded {
        by: &'static str,
    },
    DataPolicy,
    OverMaxPrice {
        kind: &'static str,
        price_micros_per_mtok: u64,
        max_micros_per_mtok: u64,
    },
    UnknownPriceWithMaxPrice,
    QuantizationNotAllowed {
        quantization: String,
    },
    BelowQualityFloor {
        quality: f64,
        floor: f64,
    },
    CircuitOpen {
        retry_in_ms: u64,
    },
    RateLimited {
        retry_in_ms: u64,
    },
}

impl fmt::Display for FilterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterReason::ContextTooSmall { needed, window } => {
                write!(f, "needs ~{needed} tokens of context, window is {window}")
            }
            FilterReason::MissingCapability { capability } => {
                write!(f, "does not support {capability}")
            }
            FilterReason::TierNotAllowed { tier, by } => {
                write!(f, "tier {tier} not allowed by {by}")
            }
            FilterReason::ProviderExcluded { by } => write!(f, "provider excluded by {by}"),
            FilterReason::DataPolicy => {
                f.write_str("provider may train on prompts (data_collection: deny)")
            }
            FilterReason::OverMaxPrice {
                kind,
                price_micros_per_mtok,
                max_micros_per_mtok,
            } => write!(
                f,
                "{kind} price ${}/Mtok over max_price ${}/Mtok",
                *price_micros_per_mtok as f64 / 1e6,
                *max_micros_per_mtok as f64 / 1e6
            ),
            FilterReason::UnknownPriceWithMaxPrice => {
                f.write_str("price unknown and the request sets max_price")
            }
            FilterReason::QuantizationNotAllowed { quantization } => write!(
                f,
                "quantization {quantization} not in provider.quantizations"
            ),
            FilterReason::BelowQualityFloor { quality, floor } => {
                write!(f, "quality {quality:.0} below floor {floor:.0}")
            }
            FilterReason::CircuitOpen { retry_in_ms } => {
                write!(f, "circuit open for {retry_in_ms} ms more")
            }
            FilterReason::RateLimited { retry_in_ms } => {
                write!(f, "rate limited upstream for {retry_in_ms} ms more")
            }
        }
    }
}

/// The caller's own restrictions (from its key and team).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallerLimits {
    pub tiers: Option<Vec<Tier>>,
    /// The model ids and route names the key may name; `None` allows all.
    pub models: Option<Vec<String>>,
}

impl CallerLimits {
    /// 403 unless the caller may name `name` (which resolves to `canonical`): either
    /// spelling must be on the key's list. `param` is where the request named it
    /// (`model`, `models[2]`), so the refusal says which name was refused.
    pub fn check_model(&self, name: &str, canonical: &str, param: &str) -> Result<(), ApiError> {
        let Some(list) = &self.models else {
            return Ok(());
        };
        if list.iter().any(|m| m == name || m == canonical) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "This key may not use `{name}` (`{param}`); it may use: {}.",
            list.join(", ")
        )))
    }
}

/// Checks every hard constraint; the first failure is the reason.
pub fn check(
    facts: &Facts,
    provider: &str,
    needs: &Needs,
    needed_context: u64,
    prefs: &Prefs,
    route_tiers: Option<&[Tier]>,
    caller: &CallerLimits,
) -> Result<(), FilterReason> {
    if let Some(window) = facts.limits.context {
        if needed_context > window {
            return Err(FilterReason::ContextTooSmall {
                needed: needed_context,
                window,
            });
        }
    }
    if let Some(missing) =
        missing_capability(facts.capabilities.as_ref(), needs, prefs.require_parameters)
    {
        return Err(FilterReason::MissingCapability {
            capability: missing,
        });
    }
    if caller
        .tiers
        .as_ref()
        .is_some_and(|t| !t.contains(&facts.tier))
    {
        return Err(FilterReason::TierNotAllowed {
            tier: facts.tier,
            by: "key",
        });
    }
    if route_tiers.is_some_and(|t| !t.contains(&facts.tier)) {
        return Err(FilterReason::TierNotAllowed {
            tier: facts.tier,
            by: "route",
        });
    }
    if prefs
        .tiers
        .as_ref()
        .is_some_and(|t| !t.contains(&facts.tier))
    {
        return Err(FilterReason::TierNotAllowed {
            tier: facts.tier,
            by: "request",
        });
    }
    if prefs
        .only
        .as_ref()
        .is_some_and(|only| !only.iter().any(|p| p == provider))
    {
        return Err(FilterReason::ProviderExcluded {
            by: "provider.only",
        });
    }
    if prefs.ignore.iter().any(|p| p == provider) {
        return Err(FilterReason::ProviderExcluded {
            by: "provider.ignore",
        });
    }
    if prefs.deny_data_collection && facts.trains_on_prompts == Some(true) {
        return Err(FilterReason::DataPolicy);
    }
    // Without a `max_price`, no price is over it and none needs to be known.
    if prefs.max_price.input.is_some() || prefs.max_price.output.is_some() {
        for (kind, price, max) in [
            ("input", facts.price.input, prefs.max_price.input),
            ("output", facts.price.output, prefs.max_price.output),
        ] {
            match (price, max) {
                (Some(p), Some(m)) if p > m => {
                    return Err(FilterReason::OverMaxPrice {
                        kind,
                        price_micros_per_mtok: p,
                        max_micros_per_mtok: m,
                    });
                }
                (None, Some(_)) => return Err(FilterReason::UnknownPriceWithMaxPrice),
                _ => {}
            }
        }
    }
    if let Some(allowed) = &prefs.quantizations {
        let q = facts
            .quantization
            .clone()
            .unwrap_or_else(|| "unknown".into());
        if !allowed.contains(&q) {
            return Err(FilterReason::QuantizationNotAllowed { quantization: q });
        }
    }
    Ok(())
}

/// The first capability the request needs that the facts say is absent. Unknown
/// capabilities pass unless the caller set `require_parameters`.
pub fn missing_capability(
    caps: Option<&Capabilities>,
    needs: &Needs,
    require_known: bool,
) -> Option<&'static str> {
    let Some(caps) = caps else {
        let needs_any = needs.tools || needs.vision || needs.json_schema || needs.reasoning;
        return (require_known && needs_any)
            .then_some("the request's parameters (capabilities unknown)");
    };
    if needs.tools && !caps.tools {
        return Some("tools");
    }
    if needs.vision && !caps.vision {
        return Some("images");
    }
    if needs.json_schema && !caps.json_schema {
        return Some("json_schema");
    }
    if needs.reasoning && !caps.reasoning {
        return Some("reasoning");
    }
    None
}

/// The breaker and `Retry-After` holds, from live stats.
pub fn check_health(
    breaker_retry_in: Option<Duration>,
    held_for: Option<Duration>,
) -> Result<(), FilterReason> {
    if let Some(d) = breaker_retry_in {
        return Err(FilterReason::CircuitOpen {
            retry_in_ms: d.as_millis() as u64,
        });
    }
    if let Some(d) = held_for {
        return Err(FilterReason::RateLimited {
            retry_in_ms: d.as_millis() as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Limits, Price, QualityPriors};
    use proptest::prelude::*;

    fn facts(caps: Capabilities) -> Facts {
        Facts {
            tier: Tier::OpenHosted,
            price: Price::flat(1_000_000, 2_000_000),
            capabilities: Some(caps),
            limits: Limits {
                context: Some(8_000),
                max_output: Some(4_000),
            },
            quality: QualityPriors::default(),
            trains_on_prompts: Some(true),
            quantization: Some("fp8".into()),
        }
    }

    #[test]
    fn each_constraint_has_its_reason() {
        let f = facts(Capabilities {
            tools: true,
            ..Default::default()
        });
        let none = Needs::default();
        let p = Prefs::default();
        let c = CallerLimits::default();
        assert!(check(&f, "groq", &none, 100, &p, None, &c).is_ok());
        assert_eq!(
            check(&f, "groq", &none, 9_000, &p, None, &c),
            Err(FilterReason::ContextTooSmall {
                needed: 9_000,
                window: 8_000
            })
        );
        let vision = Needs {
            vision: true,
            ..Default::default()
        };
        assert_eq!(
            check(&f, "groq", &vision, 10, &p, None, &c),
            Err(FilterReason::MissingCapability {
                capability: "images"
            })
        );
        assert!(matches!(
            check(&f, "groq", &none, 10, &p, Some(&[Tier::Local]), &c),
            Err(FilterReason::TierNotAllowed { by: "route", .. })
        ));
        let key = CallerLimits {
            tiers: Some(vec![Tier::Frontier]),
            ..Default::default()
        };
        assert!(matches!(
            check(&f, "groq", &none, 10, &p, None, &key),
            Err(FilterReason::TierNotAllowed { by: "key", .. })
        ));
        let deny = Prefs {
            deny_data_collection: true,
            ..Default::default()
        };
        assert_eq!(
            check(&f, "groq", &none, 10, &deny, None, &c),
            Err(FilterReason::DataPolicy)
        );
        let cheap = Prefs {
            max_price: super::super::prefs::MaxPrice {
                input: Some(500_000),
                output: None,
            },
            ..Default::default()
        };
        assert!(matches!(
            check(&f, "groq", &none, 10, &cheap, None, &c),
            Err(FilterReason::OverMaxPrice { kind: "input", .. })
        ));
        let only = Prefs {
            only: Some(vec!["together".into()]),
            ..Default::default()
        };
        assert!(matches!(
            check(&f, "groq", &none, 10, &only, None, &c),
            Err(FilterReason::ProviderExcluded { .. })
        ));
        let quant = Prefs {
            quantizations: Some(vec!["bf16".into()]),
            ..Default::default()
        };
        assert!(matches!(
            check(&f, "groq", &none, 10, &quant, None, &c),
            Err(FilterReason::QuantizationNotAllowed { .. })
        ));
    }

    #[test]
    fn a_model_allow_list_accepts_either_spelling_and_names_the_refused_param() {
        let open = CallerLimits::default();
        assert!(open.check_model("anything", "anything", "model").is_ok());
        let key = CallerLimits {
            models: Some(vec!["gpt-4o-mini".into(), "fast".into()]),
            ..Default::default()
        };
        assert!(key
            .check_model("gpt-4o-mini", "gpt-4o-mini", "model")
            .is_ok());
        assert!(key.check_model("mini", "gpt-4o-mini", "models[0]").is_ok());
        assert!(key.check_model("fast", "fast", "model").is_ok());
        let refused = key.check_model("other", "other", "models[1]").unwrap_err();
        assert!(
            matches!(&refused, ApiError::Forbidden(m) if m.contains("`models[1]`")),
            "{refused:?}"
        );
    }

    proptest! {
        /// No filter ever admits a backend lacking a required capability.
        #[test]
        fn never_admits_a_missing_capability(
            has in proptest::array::uniform4(any::<bool>()),
            need in proptest::array::uniform4(any::<bool>()),
        ) {
            let caps = Capabilities { tools: has[0], vision: has[1], json_schema: has[2], reasoning: has[3], embeddings: false };
            let needs = Needs { tools: need[0], vision: need[1], json_schema: need[2], reasoning: need[3], json_object: false };
            let admitted = check(&facts(caps), "groq", &needs, 10, &Prefs::default(), None, &CallerLimits::default()).is_ok();
            let lacking = (0..4).any(|i| need[i] && !has[i]);
            prop_assert!(!(admitted && lacking));
        }
    }
}
