//! The `[router]` and `[routes.*]` sections: the policy that orders candidates, the
//! weights of the balanced utility, the circuit breaker's thresholds and the named
//! routes (`auto`, `cheap`, `fast` built in). Plain data: the router reads these and
//! owns what they mean at call time; nothing here routes a call.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::models::{ModelTarget, Models};
use super::problems::{Problems, ValueError};
use super::raw::{RawRoute, RawRouter, RawWeights};
use crate::catalog::{Catalog, Tier};

/// How to order the candidates that passed the filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Lowest expected cost of this request; ties by latency.
    Cheapest,
    /// Lowest expected latency (time to first token + generation, with load).
    Fastest,
    /// Highest quality prior for the request's task; ties by cost.
    Quality,
    /// Highest weighted utility of quality (points), cost (USD per 1,000 calls) and latency
    /// (seconds), in absolute units.
    Balanced,
    /// The cheapest candidate whose quality for the task clears the route's floor.
    CheapestAboveQuality,
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::Cheapest,
        Policy::Fastest,
        Policy::Quality,
        Policy::Balanced,
        Policy::CheapestAboveQuality,
    ];

    /// The names of `ALL`, in order, for messages.
    pub const NAMES: &'static str = "cheapest, fastest, quality, balanced, cheapest-above-quality";

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Cheapest => "cheapest",
            Policy::Fastest => "fastest",
            Policy::Quality => "quality",
            Policy::Balanced => "balanced",
            Policy::CheapestAboveQuality => "cheapest-above-quality",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Policy, ValueError> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ValueError::UnknownPolicy(s.to_string(), Policy::NAMES))
    }
}

/// Weights of the `balanced` utility, in absolute units: what one unit of each term is
/// worth. The defaults make one quality point (0–100 scale) worth $1 per 1,000 calls and
/// two seconds of expected latency worth one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Per USD of expected cost per 1,000 calls like this one.
    pub cost: f64,
    /// Per second of expected latency.
    pub latency: f64,
    /// Per point of predicted quality (0–100).
    pub quality: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            cost: 1.0,
            latency: 0.5,
            quality: 1.0,
        }
    }
}

/// Circuit breaker settings (`[router.breaker]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub threshold: u32,
    /// First cool-down; doubles on each consecutive re-open up to `max_cooldown`.
    pub cooldown: Duration,
    pub max_cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            threshold: 5,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(300),
        }
    }
}

/// Router settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    pub policy: Policy,
    pub weights: Weights,
    pub max_attempts: u32,
    pub expected_output_tokens: u64,
    pub affinity_ttl: Duration,
    pub breaker: BreakerSettings,
    /// The default savings reference (a catalog model id).
    pub reference: String,
    /// The quality predictor's weights, or off (`[router.predictor]`); loaded here so a
    /// weights file that does not load fails the config, and a reload keeps the old one.
    pub predictor: super::PredictorConfig,
    /// Keep prompt text in the ledger for retraining (`[router.learn] keep_prompts`).
    pub keep_prompts: bool,
}

/// A named route: candidate models and how to choose among them.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Empty means every chat model the gateway serves.
    pub models: Vec<String>,
    pub policy: Policy,
    pub weights: Weights,
    pub quality_floor: Option<f64>,
    /// Empty means all tiers.
    pub tiers: Vec<Tier>,
    pub reference: Option<String>,
    /// The targets of `models` (of every chat model when it is empty), in order, found
    /// once at load (`resolve_targets`) rather than by name on every call.
    pub targets: Vec<Arc<ModelTarget>>,
}

/// Resolves `[router]`; its savings reference must be a catalog or served model.
pub(super) fn resolve_router(
    r: &RawRouter,
    catalog: &Catalog,
    models: &Models,
    problems: &mut Problems,
) -> RouterConfig {
    let policy = r
        .policy
        .parse()
        .map_err(|m| problems.add("router.policy", m))
        .unwrap_or(Policy::Balanced);
    let router = RouterConfig {
        policy,
        weights: weights(r.weights.as_ref(), "router.weights", problems),
        max_attempts: if r.max_attempts == 0 {
            problems.add("router.max_attempts", "must be at least 1");
            1
        } else {
            r.max_attempts
        },
        expected_output_tokens: r.expected_output_tokens,
        affinity_ttl: problems.duration(&r.affinity_ttl, "router.affinity_ttl"),
        breaker: BreakerSettings {
            threshold: r.breaker.threshold.max(1),
            cooldown: problems.duration(&r.breaker.cooldown, "router.breaker.cooldown"),
            max_cooldown: problems.duration(&r.breaker.max_cooldown, "router.breaker.max_cooldown"),
        },
        reference: r.reference.clone(),
        predictor: super::PredictorConfig::resolve(
            r.predictor.enabled,
            r.predictor.file.as_deref(),
        )
        .unwrap_or_else(|m| {
            problems.add("router.predictor.file", m);
            super::PredictorConfig::off()
        }),
        keep_prompts: r.learn.keep_prompts,
    };
    if catalog.model(&r.reference).is_none() && !models.contains_key(&r.reference) {
        problems.add(
            "router.reference",
            format!("unknown model `{}`", r.reference),
        );
    }
    router
}

/// Resolves `[routes.*]` over the built-in routes; a route's models may be aliases.
pub(super) fn resolve_routes(
    raw: &BTreeMap<String, RawRoute>,
    router: &RouterConfig,
    models: &Models,
    aliases: &BTreeMap<String, String>,
    problems: &mut Problems,
) -> BTreeMap<String, RouteConfig> {
    let mut routes = builtin_routes(router);
    for (name, route) in raw {
        let path = format!("routes.{name}");
        if models.contains_key(name) {
            problems.add(
                path.clone(),
                format!("`{name}` is also a model id; a route needs a name of its own"),
            );
        }
        let route_models: Vec<String> = route
            .models
            .iter()
            .map(|m| aliases.get(m).cloned().unwrap_or_else(|| m.clone()))
            .collect();
        for (i, m) in route_models.iter().enumerate() {
            if !models.contains_key(m) {
                problems.add(
                    format!("{path}.models[{i}]"),
                    format!("unknown model `{m}`"),
                );
            }
        }
        let policy = match &route.policy {
            Some(p) => p
                .parse()
                .map_err(|m| problems.add(format!("{path}.policy"), m))
                .unwrap_or(router.policy),
            None => router.policy,
        };
        let tiers = problems.tiers(&route.tiers, &format!("{path}.tiers"));
        if let Some(floor) = route.quality_floor {
            if !(0.0..=100.0).contains(&floor) {
                problems.add(format!("{path}.quality_floor"), "must be between 0 and 100");
            }
        }
        if policy == Policy::CheapestAboveQuality && route.quality_floor.is_none() {
            problems.add(
                format!("{path}.quality_floor"),
                "is required by policy cheapest-above-quality",
            );
        }
        if let Some(reference) = &route.reference {
            if !models.contains_key(reference) && !aliases.contains_key(reference) {
                problems.add(
                    format!("{path}.reference"),
                    format!("unknown model `{reference}`"),
                );
            }
        }
        let weights = match &route.weights {
            Some(w) => weights(Some(w), &format!("{path}.weights"), problems),
            None => router.weights,
        };
        routes.insert(
            name.clone(),
            RouteConfig {
                name: name.clone(),
                models: route_models,
                policy,
                weights,
                quality_floor: route.quality_floor,
                tiers,
                reference: route.reference.clone(),
                targets: Vec::new(),
            },
        );
    }
    routes
}

/// Fills each route's `targets`: those of its models, or of `chat_models` for a route
/// over every chat model, in order (a model no target serves adds none).
pub(super) fn resolve_targets(
    routes: &mut BTreeMap<String, RouteConfig>,
    models: &Models,
    chat_models: &[String],
) {
    for route in routes.values_mut() {
        let names = if route.models.is_empty() {
            chat_models
        } else {
            &route.models
        };
        route.targets = names
            .iter()
            .filter_map(|m| models.get(m))
            .flatten()
            .cloned()
            .collect();
    }
}

/// `auto` (balanced), `cheap` (cheapest) and `fast` (fastest) over every chat model.
fn builtin_routes(router: &RouterConfig) -> BTreeMap<String, RouteConfig> {
    [
        ("auto", Policy::Balanced),
        ("cheap", Policy::Cheapest),
        ("fast", Policy::Fastest),
    ]
    .into_iter()
    .map(|(name, policy)| {
        (
            name.to_string(),
            RouteConfig {
                name: name.to_string(),
                models: Vec::new(),
                policy,
                weights: router.weights,
                quality_floor: None,
                tiers: Vec::new(),
                reference: None,
                targets: Vec::new(),
            },
        )
    })
    .collect()
}

/// The weights as written; the defaults (with a problem) when negative or all zero.
fn weights(raw: Option<&RawWeights>, path: &str, problems: &mut Problems) -> Weights {
    let Some(w) = raw else {
        return Weights::default();
    };
    let all = [w.cost, w.latency, w.quality];
    if all.iter().any(|v| !v.is_finite() || *v < 0.0) || all.iter().all(|v| *v == 0.0) {
        problems.add(path, "weights must be non-negative and not all zero");
        return Weights::default();
    }
    Weights {
        cost: w.cost,
        latency: w.latency,
        quality: w.quality,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip() {
        for p in Policy::ALL {
            assert_eq!(p.to_string().parse::<Policy>().unwrap(), p);
        }
        assert!("random".parse::<Policy>().is_err());
        assert_eq!(Policy::ALL.map(Policy::as_str).join(", "), Policy::NAMES);
    }

    fn router() -> RouterConfig {
        let mut p = Problems::default();
        let r = resolve_router(
            &RawRouter::default(),
            crate::catalog::builtin::builtin(),
            &Models::new(),
            &mut p,
        );
        p.finish(r).unwrap()
    }

    #[test]
    fn router_defaults_resolve() {
        let r = router();
        assert_eq!(r.policy, Policy::Balanced);
        assert_eq!(r.weights, Weights::default());
        assert_eq!(r.breaker, BreakerSettings::default());
        assert_eq!(r.max_attempts, 3);
    }

    #[test]
    fn router_mistakes_are_reported() {
        let raw = RawRouter {
            policy: "random".into(),
            max_attempts: 0,
            weights: Some(RawWeights {
                cost: 0.0,
                latency: 0.0,
                quality: 0.0,
            }),
            reference: "nope".into(),
            ..Default::default()
        };
        let mut p = Problems::default();
        let r = resolve_router(
            &raw,
            crate::catalog::builtin::builtin(),
            &Models::new(),
            &mut p,
        );
        assert_eq!((r.policy, r.max_attempts), (Policy::Balanced, 1));
        let err = p.finish(()).unwrap_err();
        assert_eq!(
            err.paths(),
            [
                "router.policy",
                "router.weights",
                "router.max_attempts",
                "router.reference"
            ]
        );
    }

    #[test]
    fn routes_add_to_the_builtin_ones_and_are_checked() {
        let mut models = Models::new();
        models.insert("qwen3-8b".into(), Vec::new());
        let aliases = BTreeMap::from([("qwen3:8b".to_string(), "qwen3-8b".to_string())]);
        let raw = BTreeMap::from([
            (
                "local".to_string(),
                RawRoute {
                    models: vec!["qwen3:8b".into()],
                    policy: Some("cheapest".into()),
                    tiers: vec!["local".into()],
                    ..Default::default()
                },
            ),
            (
                "qwen3-8b".to_string(),
                RawRoute {
                    models: vec!["ghost".into()],
                    policy: Some("cheapest-above-quality".into()),
                    quality_floor: None,
                    ..Default::default()
                },
            ),
        ]);
        let mut p = Problems::default();
        let routes = resolve_routes(&raw, &router(), &models, &aliases, &mut p);
        assert_eq!(routes["local"].models, ["qwen3-8b"]);
        assert_eq!(routes["local"].tiers, [Tier::Local]);
        assert_eq!(routes["auto"].policy, Policy::Balanced);
        assert_eq!(routes["fast"].policy, Policy::Fastest);
        let err = p.finish(()).unwrap_err();
        assert_eq!(
            err.paths(),
            [
                "routes.qwen3-8b",
                "routes.qwen3-8b.models[0]",
                "routes.qwen3-8b.quality_floor"
            ]
        );
    }
}
