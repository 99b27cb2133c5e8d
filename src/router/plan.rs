//! `build_plan`: from the requested model or route to an ordered list of candidates,
//! with every rejected candidate's reason and every survivor's score terms. Reads the
//! config and live stats; sends nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::affinity::{session_key, Affinity};
use super::candidates::{self, Candidate};
use super::classify::{classify, Task};
use super::filter::{self, CallerLimits, Facts, FilterReason};
use super::policy::{Policy, Weights};
use super::predict::{CallPredictor, Prediction, Weights as PredictorWeights};
use super::prefs::Prefs;
use super::score::{self, Terms};
use super::stats::Stats;
use crate::api::openai::Needs;
use crate::api::ApiError;
use crate::catalog::{Price, Tier};
use crate::config::{Config, ModelTarget};

/// What routing needs to know about one call.
#[derive(Debug, Clone, Copy)]
pub struct CallShape<'a> {
    pub model: &'a str,
    pub needs: Needs,
    pub prompt_tokens: u64,
    pub max_tokens: Option<u64>,
    pub prompt_head: &'a str,
    /// What the quality predictor reads (`ChatRequest::predict_view`).
    pub predict_view: &'a str,
    pub user: Option<&'a str>,
    /// The request's headers, read only when the plan has a tie to break and the prefs
    /// give no seed: `x-request-id` seeds the draw (`prefs::request_seed`).
    pub headers: Option<&'a http::HeaderMap>,
}

impl<'a> CallShape<'a> {
    /// The shape of a parsed chat request (the request's `user` included).
    pub fn of(req: &'a crate::api::openai::ChatRequest) -> Self {
        CallShape {
            model: &req.model,
            needs: req.needs,
            prompt_tokens: req.estimated_prompt_tokens(),
            max_tokens: req.max_tokens,
            prompt_head: &req.prompt_head,
            predict_view: &req.predict_view,
            user: req.user.as_deref(),
            headers: None,
        }
    }
}

impl RoutePlan {
    /// How soon the first backend this plan left out for an upstream's rate limit
    /// (an earlier `Retry-After`) may be tried again; `None` when none was.
    pub fn soonest_rate_limit_release(&self) -> Option<Duration> {
        self.rejected
            .iter()
            .filter_map(|r| match r.reason {
                FilterReason::RateLimited { retry_in_ms } => {
                    Some(Duration::from_millis(retry_in_ms))
                }
                _ => None,
            })
            .min()
    }
}

/// A survivor with its score terms.
#[derive(Debug, Clone)]
pub struct Scored {
    pub candidate: Candidate,
    pub terms: Terms,
    /// The quality prediction behind `terms.quality`.
    pub prediction: Prediction,
    pub utility: f64,
    /// This backend served the session's last call.
    pub sticky: bool,
}

/// A candidate that passed the filters, before scoring, with the live stats it is
/// scored on: its target borrowed from the config (the plan's `Candidate` is made once,
/// for its entry, not once here and again there).
struct Survivor<'c> {
    target: &'c Arc<ModelTarget>,
    ttft_ms: Option<f64>,
    /// Measured and above zero.
    tokens_per_sec: Option<f64>,
    in_flight: i64,
    sticky: bool,
    /// Serves the requested model or route (not a `models` fallback).
    primary: bool,
}

/// Puts `items` in `order` (`order[k]` is the index of the item that goes k-th; each
/// index once) without a second vector: each position follows the cycle of moves made
/// before it to where its item now is.
fn permute<T>(items: &mut [T], order: &[usize]) {
    for k in 0..items.len().min(order.len()) {
        let mut j = order[k];
        while j < k {
            j = order[j];
        }
        items.swap(k, j);
    }
}

/// A rejected candidate and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub candidate: Candidate,
    pub tier: Tier,
    pub reason: FilterReason,
}

/// The candidates of one call, best first; the fallback loop walks them in order.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// The route label: the route name, or the model id for a concrete model (its
    /// targets' shared id, not a copy).
    pub route: Arc<str>,
    pub policy: Policy,
    pub task: Task,
    pub candidates: Vec<Candidate>,
    /// Same order as `candidates`.
    pub scored: Vec<Scored>,
    pub rejected: Vec<Rejected>,
    pub session: Option<u64>,
    /// The model the savings baseline is priced at.
    pub reference: Option<String>,
    /// The weights `balanced` weighed the terms with (the request's or the route's).
    pub weights: Weights,
    /// Whether `scored` holds qualities predicted from the prompt. False for a plan of
    /// one candidate, whose quality is its prior: with nothing to rank, the prompt is
    /// not scored (`predict_unranked` adds the prediction, for `explain`).
    pub predicted: bool,
}

/// The live state routing reads: stats and session affinity (and the metrics its
/// fallback loop reports to).
#[derive(Debug, Default)]
pub struct RouterState {
    pub stats: Stats,
    pub affinity: Affinity,
    pub metrics: crate::telemetry::metrics::Metrics,
}

/// Time-to-first-token and throughput priors by tier, used until a backend has stats.
fn priors(tier: Tier) -> (f64, f64) {
    match tier {
        Tier::Frontier => (600.0, 80.0),
        Tier::OpenHosted => (400.0, 120.0),
        Tier::Local => (250.0, 40.0),
    }
}

/// Builds the plan for one call, or says why no backend can serve it.
pub fn build_plan(
    config: &Config,
    state: &RouterState,
    call: &CallShape<'_>,
    prefs: &Prefs,
    caller: &CallerLimits,
    now: Instant,
) -> Result<RoutePlan, ApiError> {
    // What the request names, in one lookup for a concrete model (the usual call):
    // `Config::canonical`, `Config::route` and the model's targets, each otherwise one
    // more search of the model map.
    let (requested, own) = match config.models.get(call.model) {
        Some(own) => (call.model, Some(own.as_slice())),
        None => match config.aliases.get(call.model) {
            Some(alias) => (alias.as_str(), config.models.get(alias).map(Vec::as_slice)),
            None => (call.model, None),
        },
    };
    // The key's allow-list covers every name the request gives: the model or route it
    // asks for and each fallback in `models`. Everything the plan may try comes from one
    // of them, so nothing the key may not use is ever tried.
    caller.check_model(call.model, requested, "model")?;
    for (i, m) in prefs.models.iter().enumerate() {
        caller.check_model(m, config.canonical(m), &format!("models[{i}]"))?;
    }
    let route = match own {
        Some(_) => None,
        None => config.routes.get(requested),
    };
    let (policy, weights, floor, route_tiers, reference) = match route {
        Some(r) => (
            r.policy,
            r.weights,
            r.quality_floor,
            Some(r.tiers.as_slice()).filter(|t| !t.is_empty()),
            r.reference.clone(),
        ),
        None => (
            config.router.policy,
            config.router.weights,
            None,
            None,
            None,
        ),
    };
    let policy = prefs.policy.unwrap_or(policy);
    let weights = prefs.weights.unwrap_or(weights);
    let floor = prefs.quality_floor.or(floor);
    if policy == Policy::CheapestAboveQuality && floor.is_none() {
        return Err(ApiError::invalid("bazaar.quality_floor", "Policy cheapest-above-quality needs a quality floor (`bazaar.quality_floor` or the route's)."));
    }

    // The targets are borrowed from the config; a `Candidate` (its shared ids and facts)
    // is made only for those the plan keeps. A concrete model's own targets and a
    // route's (found at load) are walked where they are; only the `models` fallbacks
    // are gathered.
    let mut gathered: Vec<&Arc<ModelTarget>> = Vec::new();
    let own: &[Arc<ModelTarget>] = match route {
        Some(r) => &r.targets,
        None => {
            let own = own.unwrap_or(&[]);
            if own.is_empty() {
                return Err(ApiError::model_not_found(call.model));
            }
            own
        }
    };
    let primary = own.len() + gathered.len();
    for (i, m) in prefs.models.iter().enumerate() {
        if m == call.model {
            continue;
        }
        let extra = candidates::targets(config, config.canonical(m));
        if extra.is_empty() {
            return Err(ApiError::NotFound {
                message: format!("`models[{i}]`: the model `{m}` is not served by this gateway."),
                param: Some(format!("models[{i}]")),
                code: Some("model_not_found"),
            });
        }
        gathered.extend(extra);
    }

    let task = classify(call.prompt_head, call.prompt_tokens);
    let session = session_key(prefs.session.as_deref(), call.user, call.prompt_head);
    let sticky_backend = session.and_then(|k| state.affinity.get(k, now));
    let needed_context = call
        .prompt_tokens
        .saturating_add(call.max_tokens.unwrap_or(0));
    let expected_output = call
        .max_tokens
        .unwrap_or(config.router.expected_output_tokens)
        .min(config.router.expected_output_tokens.max(1));

    let provider_id = |provider: usize| {
        config
            .providers
            .get(provider)
            .map(|p| p.id.as_str())
            .unwrap_or("")
    };
    let mut survivors: Vec<Survivor> = Vec::with_capacity(own.len() + gathered.len());
    let mut rejected = Vec::new();
    for (i, target) in own.iter().chain(gathered.iter().copied()).enumerate() {
        let facts = &*target.facts;
        let provider_id = provider_id(target.provider);
        let snapshot = state
            .stats
            .backend_in(&target.stats, provider_id, &target.upstream)
            .snapshot(now);
        let mut verdict = filter::check(
            facts,
            provider_id,
            &call.needs,
            needed_context,
            prefs,
            route_tiers,
            caller,
        );
        if verdict.is_ok() {
            let retry_in = match snapshot.breaker {
                Some(super::breaker::BreakerState::Open { retry_in }) => Some(retry_in),
                _ => None,
            };
            verdict = filter::check_health(retry_in, snapshot.held_for);
        }
        match verdict {
            Ok(()) => {
                let sticky = sticky_backend.as_deref().is_some_and(|b| {
                    b.strip_prefix(provider_id)
                        .and_then(|rest| rest.strip_prefix('/'))
                        == Some(&*target.upstream)
                });
                survivors.push(Survivor {
                    target,
                    ttft_ms: snapshot.ttft_ms,
                    tokens_per_sec: snapshot.tokens_per_sec.filter(|t| *t > 0.0),
                    in_flight: snapshot.in_flight,
                    sticky,
                    primary: i < primary,
                });
            }
            Err(reason) => rejected.push(Rejected {
                candidate: Candidate::of(target),
                tier: facts.tier,
                reason,
            }),
        }
    }
    if survivors.is_empty() {
        return Err(no_candidate(call.model, &rejected, config));
    }

    // A backend not measured yet is assumed as fast as the best measured one, so it
    // gets tried (and measured) instead of losing to a prior forever.
    let best_ttft = survivors.iter().filter_map(|s| s.ttft_ms).reduce(f64::min);
    let best_tps = survivors
        .iter()
        .filter_map(|s| s.tokens_per_sec)
        .reduce(f64::max);
    // With one survivor there is nothing to rank: its quality is its prior and the
    // prompt is not scored (the predictor's features are most of a decision's cost).
    // `explain` predicts it when asked (`predict_unranked`).
    let predicted = survivors.len() > 1;
    let weights_on = config
        .router
        .predictor
        .weights
        .as_deref()
        .filter(|_| predicted);
    let mut predictor = call_predictor(weights_on, call.predict_view);
    // Each survivor's entry of the plan is made here, its utility filled in once scored.
    let mut scored: Vec<Scored> = Vec::with_capacity(survivors.len());
    for s in &survivors {
        let candidate = Candidate::of(s.target);
        let prediction = predictor.quality(&candidate, task);
        let (ttft_prior, tps_prior) = priors(s.target.facts.tier);
        let ttft = s.ttft_ms.or(best_ttft).unwrap_or(ttft_prior);
        let tps = s.tokens_per_sec.or(best_tps).unwrap_or(tps_prior);
        let load = 1.0 + s.in_flight.max(0) as f64 / 8.0;
        let cached = if s.sticky {
            (call.prompt_head.len() as u64 / 4).min(call.prompt_tokens)
        } else {
            0
        };
        let t = Terms {
            cost_nanos: expected_cost(
                &s.target.facts.price,
                call.prompt_tokens,
                cached,
                expected_output,
            ),
            latency_ms: (ttft + expected_output as f64 * 1000.0 / tps) * load,
            quality: prediction.quality,
            in_flight: s.in_flight,
        };
        scored.push(Scored {
            candidate,
            terms: t,
            prediction,
            utility: 0.0,
            sticky: s.sticky,
        });
    }
    if let [only] = &mut scored[..] {
        // Nothing to order: the utility is its own (`utilities` of one), without the
        // vectors and the tie-break draw an order needs.
        only.utility = score::utility(&only.terms, only.terms.cost_nanos.unwrap_or(0), &weights);
    } else {
        let terms: Vec<Terms> = scored.iter().map(|s| s.terms).collect();
        let utilities = score::utilities(&terms, &weights);
        let floor = floor.filter(|_| policy == Policy::CheapestAboveQuality);
        let mut draws = prefs
            .tie_seed
            .or_else(|| call.headers.and_then(super::prefs::request_seed))
            .unwrap_or_else(rand::random);
        let mut order = score::order_by(policy, &terms, &utilities, &weights, floor, |n| {
            (super::predict::splitmix(&mut draws) % n.max(1) as u64) as usize
        });
        // Fallback models (`models`) come after the requested one, whatever their score.
        if survivors.iter().any(|s| !s.primary) {
            order.sort_by_key(|&i| !survivors[i].primary);
        }
        // Provider order the caller asked for first; a sticky backend before the rest.
        if !prefs.order.is_empty() {
            let rank = |i: usize| {
                let id = provider_id(survivors[i].target.provider);
                prefs
                    .order
                    .iter()
                    .position(|p| p == id)
                    .unwrap_or(usize::MAX)
            };
            order.sort_by_key(|&i| (!survivors[i].primary, rank(i)));
        } else if let Some(pos) = order.iter().position(|&i| survivors[i].sticky) {
            order[..=pos].rotate_right(1);
        }
        for (s, utility) in scored.iter_mut().zip(utilities) {
            s.utility = utility;
        }
        permute(&mut scored, &order);
    }
    let mut limit = config.router.max_attempts as usize;
    if !prefs.allow_fallbacks {
        limit = 1;
    }
    let candidates = scored
        .iter()
        .take(limit)
        .map(|s| s.candidate.clone())
        .collect();
    Ok(RoutePlan {
        route: match (route, own.first()) {
            (Some(r), _) => r.name.as_str().into(),
            (None, Some(target)) => target.model.clone(),
            (None, None) => requested.into(),
        },
        policy,
        task,
        candidates,
        scored,
        rejected,
        session,
        reference,
        weights,
        predicted,
    })
}

/// Starts the predictions of one call: scores the prompt `view` with `weights`, or
/// nothing with none (every candidate gets its prior).
fn call_predictor<'a>(weights: Option<&'a PredictorWeights>, view: &str) -> CallPredictor<'a> {
    #[cfg(test)]
    if weights.is_some() {
        tests::PROMPTS_SCORED.with(|n| n.set(n.get() + 1));
    }
    CallPredictor::new(weights, view)
}

/// `plan` with every candidate's quality predicted from the prompt `view`, as a plan
/// with a choice to make has it: for a plan of one candidate, which `build_plan` does
/// not score (its order cannot change). Only the quality terms, the predictions and
/// the utilities change; the order is left as it was.
pub fn predict_unranked(mut plan: RoutePlan, config: &Config, view: &str) -> RoutePlan {
    if plan.predicted {
        return plan;
    }
    let mut predictor = call_predictor(config.router.predictor.weights.as_deref(), view);
    for s in &mut plan.scored {
        s.prediction = predictor.quality(&s.candidate, plan.task);
        s.terms.quality = s.prediction.quality;
    }
    let terms: Vec<Terms> = plan.scored.iter().map(|s| s.terms).collect();
    for (s, u) in plan
        .scored
        .iter_mut()
        .zip(score::utilities(&terms, &plan.weights))
    {
        s.utility = u;
    }
    plan.predicted = true;
    plan
}

/// The quality prior for `task`, 0–100; 50 (neutral) when the catalog has none.
pub fn quality_for(facts: &Facts, task: Task) -> f64 {
    super::predict::prior_for(facts, task).unwrap_or(50.0)
}

/// The expected cost in nano-dollars: uncached input, cached prefix and expected output
/// at their prices; `None` when a needed price is unknown.
pub fn expected_cost(
    price: &Price,
    prompt_tokens: u64,
    cached_tokens: u64,
    output_tokens: u64,
) -> Option<u64> {
    let input = price.input?;
    let output = price.output?;
    let cached_price = price.cached_input.unwrap_or(input);
    let fresh = prompt_tokens.saturating_sub(cached_tokens) as u128;
    let total = fresh * input as u128
        + cached_tokens as u128 * cached_price as u128
        + output_tokens as u128 * output as u128;
    u64::try_from(total / 1000).ok()
}

fn no_candidate(model: &str, rejected: &[Rejected], config: &Config) -> ApiError {
    let reasons: Vec<String> = rejected
        .iter()
        .map(|r| {
            let provider = config
                .providers
                .get(r.candidate.provider)
                .map(|p| p.id.as_str())
                .unwrap_or("?");
            format!("{provider}/{}: {}", r.candidate.upstream, r.reason)
        })
        .collect();
    let all_unhealthy = !rejected.is_empty()
        && rejected.iter().all(|r| {
            matches!(
                r.reason,
                FilterReason::CircuitOpen { .. } | FilterReason::RateLimited { .. }
            )
        });
    let message = if reasons.is_empty() && config.providers.is_empty() {
        format!("No backend can serve `{model}`: no provider is configured. Set a provider's key (e.g. OPENAI_API_KEY) or declare providers in the config, or run `bazaar demo` to try bazaar with simulated backends.")
    } else if reasons.is_empty() {
        format!("No backend can serve `{model}`: no configured provider serves it or any of the route's models.")
    } else {
        format!("No backend can serve `{model}`: {}.", reasons.join("; "))
    };
    if all_unhealthy {
        let retry = rejected
            .iter()
            .filter_map(|r| match r.reason {
                FilterReason::CircuitOpen { retry_in_ms }
                | FilterReason::RateLimited { retry_in_ms } => Some(retry_in_ms),
                _ => None,
            })
            .min()
            .map(Duration::from_millis);
        // Every backend held back by an upstream's rate limit: the client is rate-limited
        // too, and its SDK backs off on the 429's Retry-After.
        if rejected
            .iter()
            .all(|r| matches!(r.reason, FilterReason::RateLimited { .. }))
        {
            return ApiError::RateLimited {
                message,
                retry_after: retry,
            };
        }
        return ApiError::Unavailable {
            message,
            retry_after: retry,
        };
    }
    ApiError::InvalidRequest {
        message,
        param: Some("model".into()),
        code: Some("no_candidate"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::ChatRequest;
    use proptest::prelude::{Just, Strategy};
    use std::cell::Cell;
    use std::collections::BTreeSet;

    thread_local! {
        /// Prompts the predictor scored on this thread (`call_predictor`): `build_plan`
        /// runs on its caller's thread, so a test reads its own calls only.
        pub(super) static PROMPTS_SCORED: Cell<usize> = const { Cell::new(0) };
    }

    fn prompts_scored() -> usize {
        PROMPTS_SCORED.with(Cell::get)
    }

    /// The two models the embedded weights know, one provider each, and a route over both.
    fn predictor_config() -> Config {
        let toml = "[router.predictor]\nenabled = true\n\
            [providers.f]\nbase_url = \"http://127.0.0.1:9/v1\"\ntier = \"frontier\"\n\
            [providers.h]\nbase_url = \"http://127.0.0.1:9/v1\"\ntier = \"open-hosted\"\n\
            [[models]]\nid = \"gpt-4-1106-preview\"\nprovider = \"f\"\ninput_price = 10.0\noutput_price = 30.0\nquality = 80.27\n\
            [[models]]\nid = \"mixtral-8x7b-instruct\"\nprovider = \"h\"\ninput_price = 0.24\noutput_price = 0.24\nquality = 68.02\n\
            [routes.pair]\nmodels = [\"gpt-4-1106-preview\", \"mixtral-8x7b-instruct\"]\npolicy = \"quality\"\n";
        Config::from_toml(toml, &|_| None).unwrap()
    }

    fn request(model: &str, prompt: &str) -> ChatRequest {
        let body =
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": prompt}]});
        ChatRequest::parse(&serde_json::to_vec(&body).unwrap()).unwrap()
    }

    fn plan_of(config: &Config, req: &ChatRequest) -> RoutePlan {
        let now = Instant::now();
        let caller = CallerLimits::default();
        let call = CallShape::of(req);
        build_plan(
            config,
            &RouterState::default(),
            &call,
            &Prefs::default(),
            &caller,
            now,
        )
        .unwrap()
    }

    /// A model, an alias of it, a route and an unknown name plan as `Config::canonical`
    /// and `Config::route` name them (`build_plan` finds them in one search).
    #[test]
    fn models_aliases_and_routes_plan_as_the_config_names_them() {
        let mut config = predictor_config();
        let (alias, target) = (
            "gpt-4-turbo-alias".to_string(),
            "gpt-4-1106-preview".to_string(),
        );
        config.aliases.insert(alias.clone(), target.clone());
        for name in [target.as_str(), alias.as_str(), "pair"] {
            let plan = plan_of(&config, &request(name, "hi"));
            let requested = config.canonical(name);
            let expected_route = config
                .route(requested)
                .map_or(requested, |r| r.name.as_str());
            assert_eq!(&*plan.route, expected_route, "{name}");
            let models: BTreeSet<&str> = plan.scored.iter().map(|s| &*s.candidate.model).collect();
            let expected: BTreeSet<&str> = match config.route(requested) {
                Some(r) => r.models.iter().map(String::as_str).collect(),
                None => [requested].into(),
            };
            assert_eq!(models, expected, "{name}");
        }
        let req = request("no-such-model", "hi");
        let err = build_plan(
            &config,
            &RouterState::default(),
            &CallShape::of(&req),
            &Prefs::default(),
            &CallerLimits::default(),
            Instant::now(),
        )
        .unwrap_err();
        assert!(format!("{err:?}").contains("no-such-model"), "{err:?}");
        // A route named like an alias is still the alias (as `canonical` says).
        config.aliases.insert("pair".into(), target.clone());
        let plan = plan_of(&config, &request("pair", "hi"));
        assert_eq!(*plan.route, *target);
    }

    /// A route's targets, found at load, are those of its models (every chat model's
    /// for a built-in route) in order, as a search by name finds them.
    #[test]
    fn a_routes_targets_are_its_models_targets_in_order() {
        let config = predictor_config();
        for r in config.routes.values() {
            let names = if r.models.is_empty() {
                &config.chat_models
            } else {
                &r.models
            };
            let found: Vec<&Arc<ModelTarget>> = names
                .iter()
                .flat_map(|m| candidates::targets(&config, m))
                .collect();
            assert_eq!(r.targets.iter().collect::<Vec<_>>(), found, "{}", r.name);
            assert!(r.targets.iter().zip(found).all(|(a, b)| Arc::ptr_eq(a, b)));
        }
        assert_eq!(config.routes["pair"].targets.len(), 2);
    }

    const WORD_PROBLEM: &str = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether?";

    proptest::proptest! {
        /// `permute` puts each item where `order` says: the gather `order[k] -> k`.
        #[test]
        fn permute_gathers_in_order(order in Just((0..40usize).collect::<Vec<_>>()).prop_shuffle()) {
            let mut items: Vec<usize> = (100..140).collect();
            permute(&mut items, &order);
            let gathered: Vec<usize> = order.iter().map(|&i| 100 + i).collect();
            proptest::prop_assert_eq!(items, gathered);
        }
    }

    #[test]
    fn issue_17_one_candidate_is_routed_without_scoring_the_prompt() {
        let config = predictor_config();
        let single = request("gpt-4-1106-preview", WORD_PROBLEM);
        let before = prompts_scored();
        let plan = plan_of(&config, &single);
        assert_eq!(
            prompts_scored(),
            before,
            "the prompt was scored for one candidate"
        );
        assert!(!plan.predicted);
        assert_eq!(plan.scored.len(), 1);
        // Its quality is the config's prior, not a prediction.
        assert_eq!(plan.scored[0].terms.quality, 80.27);
        assert_eq!(plan.scored[0].prediction.known, None);

        // With a choice to make, the prompt is scored, once.
        let pair = plan_of(&config, &request("pair", WORD_PROBLEM));
        assert_eq!(prompts_scored(), before + 1);
        assert!(pair.predicted);
        let in_pair = pair
            .scored
            .iter()
            .find(|s| &*s.candidate.model == "gpt-4-1106-preview")
            .unwrap();
        assert!(in_pair.prediction.known.is_some());

        // `predict_unranked` (what explain shows) predicts it as the pair's plan does.
        let completed = predict_unranked(plan.clone(), &config, &single.predict_view);
        assert_eq!(prompts_scored(), before + 2);
        assert!(completed.predicted);
        let s = &completed.scored[0];
        assert_eq!(s.prediction, in_pair.prediction);
        assert_eq!(s.terms.quality, in_pair.terms.quality);
        // The utility moves by the quality weight times the change in quality.
        let moved = plan.scored[0].utility + plan.weights.quality * (s.terms.quality - 80.27);
        assert!((s.utility - moved).abs() < 1e-9, "{} vs {moved}", s.utility);
        assert_eq!(s.terms.cost_nanos, plan.scored[0].terms.cost_nanos);
        assert_eq!(completed.candidates, plan.candidates);

        let shown = super::super::explain::explain(&plan, &config, 40, &single.predict_view);
        let c = &shown.candidates[0];
        assert_eq!(c.learned, Some(true));
        assert_eq!(
            c.quality,
            Some((in_pair.terms.quality * 100.0).round() / 100.0)
        );
        assert_eq!(c.prior, Some(80.27));
        assert!(!c.top_features.is_empty());
    }

    #[test]
    fn expected_cost_is_exact_and_counts_cache() {
        let p = Price {
            input: Some(2_500_000),
            cached_input: Some(1_250_000),
            cache_write: None,
            cache_write_1h: None,
            output: Some(10_000_000),
            reasoning: None,
        };
        // 1000 input at $2.50/M = 2.5 m$ = 2_500_000 n$; 100 output at $10/M = 1_000_000 n$.
        assert_eq!(expected_cost(&p, 1000, 0, 100), Some(3_500_000));
        assert_eq!(expected_cost(&p, 1000, 1000, 100), Some(2_250_000));
        assert_eq!(expected_cost(&Price::default(), 1000, 0, 100), None);
    }
}
