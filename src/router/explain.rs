//! Renders a plan for `POST /v1/route/explain`: every candidate with its filter verdict
//! or score terms, and the one that would be chosen. Pure; calls no backend.

use serde::Serialize;

use super::plan::{predict_unranked, RoutePlan};
use crate::config::Config;

/// The explain response body.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub route: String,
    pub policy: String,
    pub task: String,
    pub estimated_prompt_tokens: u64,
    /// Where predicted quality came from: `embedded`, a weights file, or `off` (priors).
    pub predictor: String,
    /// `provider/upstream` of the backend that would be tried first.
    pub chosen: Option<String>,
    pub candidates: Vec<ExplainedCandidate>,
}

/// One candidate's verdict.
#[derive(Debug, Serialize)]
pub struct ExplainedCandidate {
    pub model: String,
    pub provider: String,
    pub upstream: String,
    pub tier: String,
    /// `chosen`, `fallback` (tried in order if the first fails), `eligible` (beyond the attempt limit) or `rejected`.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_cost_usd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_latency_ms: Option<f64>,
    /// The catalog or config quality prior (0–100) the prediction starts from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior: Option<f64>,
    /// Predicted chance (0–100) that this model answers this prompt well.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<f64>,
    /// The predictor has this model's own terms (else: prior moved by prompt difficulty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned: Option<bool>,
    /// The prompt features that moved the prediction most, with their effect in logits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top_features: Vec<FeatureEffect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utility: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<i64>,
    pub sticky: bool,
}

/// One feature's effect on a candidate's predicted quality.
#[derive(Debug, Serialize)]
pub struct FeatureEffect {
    pub feature: String,
    /// Change in log-odds of a good answer.
    pub effect: f64,
}

/// Features listed per candidate in an explanation.
const TOP_FEATURES: usize = 5;

/// Nano-dollars as a USD decimal string with nine places.
pub fn usd(nanos: u64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// Explains `plan` (made for a prompt whose routed text is `prompt`) in terms a user can read.
/// A plan of one candidate is routed without scoring the prompt (nothing to rank);
/// its explanation shows the predicted quality all the same.
pub fn explain(plan: &RoutePlan, config: &Config, prompt_tokens: u64, prompt: &str) -> Explanation {
    let completed;
    let plan = if plan.predicted {
        plan
    } else {
        completed = predict_unranked(plan.clone(), config, prompt);
        &completed
    };
    let weights = config.router.predictor.weights.as_deref();
    let provider = |i: usize| {
        config
            .providers
            .get(i)
            .map(|p| p.id.clone())
            .unwrap_or_default()
    };
    let mut candidates = Vec::new();
    for (rank, s) in plan.scored.iter().enumerate() {
        let verdict = match rank {
            0 => "chosen",
            r if r < plan.candidates.len() => "fallback",
            _ => "eligible",
        };
        candidates.push(ExplainedCandidate {
            model: s.candidate.model.to_string(),
            provider: provider(s.candidate.provider),
            upstream: s.candidate.upstream.to_string(),
            tier: s.candidate.facts.tier.to_string(),
            verdict,
            rank: Some(rank + 1),
            reason: None,
            expected_cost_usd: s.terms.cost_nanos.map(usd),
            expected_latency_ms: Some((s.terms.latency_ms * 10.0).round() / 10.0),
            prior: Some(round2(s.prediction.prior)),
            quality: Some(round2(s.terms.quality)),
            learned: weights.map(|_| s.prediction.known.is_some()),
            top_features: weights
                .map(|w| {
                    w.top_features(prompt, s.prediction.known, TOP_FEATURES)
                        .into_iter()
                        .map(|(feature, effect)| FeatureEffect {
                            feature,
                            effect: (effect * 1000.0).round() / 1000.0,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            utility: Some((s.utility * 1000.0).round() / 1000.0),
            in_flight: Some(s.terms.in_flight),
            sticky: s.sticky,
        });
    }
    for r in &plan.rejected {
        candidates.push(ExplainedCandidate {
            model: r.candidate.model.to_string(),
            provider: provider(r.candidate.provider),
            upstream: r.candidate.upstream.to_string(),
            tier: r.tier.to_string(),
            verdict: "rejected",
            rank: None,
            reason: Some(r.reason.to_string()),
            expected_cost_usd: None,
            expected_latency_ms: None,
            prior: None,
            quality: None,
            learned: None,
            top_features: Vec::new(),
            utility: None,
            in_flight: None,
            sticky: false,
        });
    }
    Explanation {
        route: plan.route.to_string(),
        policy: plan.policy.to_string(),
        task: plan.task.to_string(),
        estimated_prompt_tokens: prompt_tokens,
        predictor: config.router.predictor.source.clone(),
        chosen: plan
            .candidates
            .first()
            .map(|c| format!("{}/{}", provider(c.provider), c.upstream)),
        candidates,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_formats_nanos() {
        assert_eq!(usd(1_234_567_890), "1.234567890");
        assert_eq!(usd(5), "0.000000005");
    }
}
