//! Routing quality measured the way the literature does, on outcome rows: K-fold
//! cross-validation grouped by prompt, each held-out prompt planned by the real
//! `build_plan` (the path `/v1/route/explain` takes) under `cheapest-above-quality`
//! with a swept floor, and under `balanced` with a swept cost weight. Two-model sets get
//! APGR and CPT (RouteLLM), every set AIQ over the non-decreasing convex hull of (cost,
//! quality) (RouterBench), beside the single models, a random router, a task-label
//! router (under both rules) and the oracle, with bootstrap CIs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::HeaderMap;

use super::rows::Outcomes;
use super::splitmix;
use super::train::{self, Settings};
use super::PredictorConfig;
use crate::api::openai::ChatRequest;
use crate::config::Config;
use crate::router::classify::classify;
use crate::router::filter::CallerLimits;
use crate::router::policy::{Policy, Weights as PolicyWeights};
use crate::router::prefs::Prefs;
use crate::router::{build_plan, CallShape, RouterState};

/// Why an evaluation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("the rows name fewer than two models")]
    TooFewModels,
    #[error("cross-validation needs at least 2 folds")]
    TooFewFolds,
    #[error("cannot build the request for a prompt: {0}")]
    Request(String),
    #[error("planning failed: {0}")]
    Plan(String),
    #[error("route `{route}` chose `{model}`, which has no rows")]
    NoRows { route: String, model: String },
}

// ---------------------------------------------------------------- metrics

/// Area under the PGR curve over 0–100 % strong calls (trapezoid), PGR being
/// (quality − weak) / (strong − weak); the single-model end points are added.
/// A random router scores 0.5.
pub fn apgr(points: &[(f64, f64)], weak: f64, strong: f64) -> f64 {
    let band = strong - weak;
    if band.abs() < 1e-12 {
        return f64::NAN;
    }
    let mut p: Vec<(f64, f64)> = points.to_vec();
    p.push((0.0, weak));
    p.push((1.0, strong));
    p.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    p.windows(2)
        .map(|w| (w[1].0 - w[0].0) * ((w[0].1 - weak) + (w[1].1 - weak)) / 2.0 / band)
        .sum()
}

/// The smallest share of strong calls at which the router reaches `target` PGR, reading
/// the curve through its points (and the single-model end points) as straight segments.
pub fn cpt(points: &[(f64, f64)], weak: f64, strong: f64, target: f64) -> f64 {
    let band = strong - weak;
    let mut p: Vec<(f64, f64)> = points
        .iter()
        .map(|(x, q)| (*x, (q - weak) / band))
        .collect();
    p.push((0.0, 0.0));
    p.push((1.0, 1.0));
    p.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let target = target - 1e-12;
    if p[0].1 >= target {
        return p[0].0;
    }
    for w in p.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if y1 >= target {
            if y1 <= y0 || x1 <= x0 {
                return x1;
            }
            return x0 + (x1 - x0) * ((target - y0) / (y1 - y0)).clamp(0.0, 1.0);
        }
    }
    1.0
}

/// The non-decreasing upper convex hull of (cost, quality) points, by cost.
pub fn hull(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut p: Vec<(f64, f64)> = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    // Non-decreasing: a point no better than a cheaper one adds nothing.
    let mut best = f64::NEG_INFINITY;
    p.retain(|&(_, q)| {
        let keep = q > best;
        best = best.max(q);
        keep
    });
    let mut h: Vec<(f64, f64)> = Vec::new();
    for pt in p {
        while h.len() >= 2 {
            let (a, b) = (h[h.len() - 2], h[h.len() - 1]);
            // Drop b when it lies on or under the segment a → pt.
            let cross = (b.0 - a.0) * (pt.1 - a.1) - (b.1 - a.1) * (pt.0 - a.0);
            if cross >= 0.0 {
                h.pop();
            } else {
                break;
            }
        }
        h.push(pt);
    }
    h
}

/// Average quality over cost in [c_min, c_max] of the hull of `points` (flat beyond its
/// ends), normalised by the range.
pub fn aiq(points: &[(f64, f64)], c_min: f64, c_max: f64) -> f64 {
    let h = hull(points);
    if h.is_empty() || c_max <= c_min {
        return f64::NAN;
    }
    let at = |c: f64| -> f64 {
        if c <= h[0].0 {
            return h[0].1;
        }
        for w in h.windows(2) {
            if c <= w[1].0 {
                let t = (c - w[0].0) / (w[1].0 - w[0].0).max(1e-300);
                return w[0].1 + t * (w[1].1 - w[0].1);
            }
        }
        h[h.len() - 1].1
    };
    let mut xs: Vec<f64> = vec![c_min, c_max];
    xs.extend(h.iter().map(|p| p.0).filter(|c| *c > c_min && *c < c_max));
    xs.sort_by(f64::total_cmp);
    let area: f64 = xs
        .windows(2)
        .map(|w| (w[1] - w[0]) * (at(w[0]) + at(w[1])) / 2.0)
        .sum();
    area / (c_max - c_min)
}

// ---------------------------------------------------------------- decisions

/// What every prompt got at every floor: `choice[floor][prompt]` is a model index; and
/// at every cost weight under `balanced`: `balanced[weight][prompt]`.
#[derive(Debug, Clone)]
pub struct Decisions {
    pub floors: Vec<f64>,
    pub choice: Vec<Vec<usize>>,
    pub cost_weights: Vec<f64>,
    pub balanced: Vec<Vec<usize>>,
}

/// One setting of a sweep: a floor under `cheapest-above-quality`, or the weight of a
/// dollar per 1,000 calls against one quality point under `balanced` (latency weighs 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Knob {
    Floor(f64),
    CostWeight(f64),
}

/// The default cost weights of the `balanced` sweep: 0, then 100 steps evenly spaced in
/// log from 0.01 to 10,000 (a quality point worth from $100 down to $0.0001 per 1k calls).
pub fn default_cost_weights() -> Vec<f64> {
    std::iter::once(0.0)
        .chain((0..100).map(|i| 10f64.powf(-2.0 + 6.0 * f64::from(i) / 99.0)))
        .collect()
}

/// The outcome table the metrics read: per prompt, per model, score and cost (USD).
struct Table<'a> {
    outcomes: &'a Outcomes,
    cost: Vec<Vec<f64>>,
    /// The strong model of a two-model set.
    strong: Option<usize>,
}

/// A router's outcome at one setting: cost per call (USD), quality, share of strong calls.
type Point = (f64, f64, f64);

impl Table<'_> {
    fn score(&self, p: usize, m: usize) -> f64 {
        self.outcomes.prompts[p].scores[m].unwrap_or(0.0)
    }
    /// The point of `choices` over `sample` (prompt indices).
    fn point(&self, choices: &[usize], sample: &[usize]) -> Point {
        let n = sample.len().max(1) as f64;
        let (c, q, s) = sample.iter().fold((0.0, 0.0, 0.0), |(c, q, s), &p| {
            let m = choices[p];
            let strong = if Some(m) == self.strong { 1.0 } else { 0.0 };
            (c + self.cost[p][m], q + self.score(p, m), s + strong)
        });
        (c / n, q / n, s / n)
    }
    fn single(&self, m: usize, sample: &[usize]) -> Point {
        let choices = vec![m; self.outcomes.prompts.len()];
        self.point(&choices, sample)
    }
}

/// A model index the plan's first candidate stands for.
fn chosen(outcomes: &Outcomes, plan: &crate::router::RoutePlan) -> Option<usize> {
    let c = plan.candidates.first()?;
    outcomes
        .models
        .iter()
        .position(|m| **m == *c.model)
        .or_else(|| outcomes.models.iter().position(|m| **m == *c.upstream))
}

/// Prompt indices in a seeded shuffle; fold k holds positions ≡ k (mod folds).
pub fn folds(n: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut s = seed;
    for i in (1..n).rev() {
        let j = (splitmix(&mut s) % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    let mut fold = vec![0; n];
    for (pos, &p) in idx.iter().enumerate() {
        fold[p] = pos % folds.max(1);
    }
    fold
}

/// How to run an evaluation.
#[derive(Debug, Clone)]
pub struct Options {
    /// The route (or model) the requests name; its candidates must be the rows' models.
    pub route: String,
    pub folds: usize,
    pub floors: Vec<f64>,
    pub bootstrap: usize,
    pub seed: u64,
    pub settings: Settings,
    /// Evaluate these weights on every prompt instead of cross-validating.
    pub fixed: Option<Arc<super::Weights>>,
    /// Rows added to every training fold and never evaluated (another set the shipped
    /// weights are also fitted on).
    pub extra: Option<Outcomes>,
    /// Cost weights swept under `balanced` (empty: no balanced sweep).
    pub cost_weights: Vec<f64>,
    /// Also every router's figures on the prompts of each `task` label alone (the same
    /// decisions: the folds' fits over all the rows).
    pub by_task: bool,
}

/// `outcomes` followed by `extra`'s prompts, over the union of their models.
fn merged(outcomes: &Outcomes, extra: &Outcomes) -> Outcomes {
    let mut models: Vec<String> = outcomes
        .models
        .iter()
        .chain(&extra.models)
        .cloned()
        .collect();
    models.sort();
    models.dedup();
    let remap = |from: &Outcomes, o: &super::rows::Outcome| {
        let mut out = super::rows::Outcome {
            prompt: o.prompt.clone(),
            scores: vec![None; models.len()],
            costs: vec![None; models.len()],
            task: o.task.clone(),
            weight: o.weight,
        };
        for (i, m) in from.models.iter().enumerate() {
            if let Some(j) = models.iter().position(|x| x == m) {
                out.scores[j] = o.scores[i];
                out.costs[j] = o.costs[i];
            }
        }
        out
    };
    let prompts = outcomes
        .prompts
        .iter()
        .map(|o| remap(outcomes, o))
        .chain(extra.prompts.iter().map(|o| remap(extra, o)))
        .collect();
    Outcomes { models, prompts }
}

/// Plans `prompt` through the real routing function at each setting of `knobs`; ties
/// are drawn from `tie_seed`, as a request id seeds them, so a run is reproducible.
fn plan_sweep(
    config: &Config,
    state: &RouterState,
    route: &str,
    prompt: &str,
    knobs: &[Knob],
    tie_seed: u64,
    outcomes: &Outcomes,
) -> Result<(Vec<usize>, Vec<Option<f64>>), EvalError> {
    let body = serde_json::json!({
        "model": route,
        "messages": [{"role": "user", "content": prompt}],
        "bazaar": {"policy": "cheapest-above-quality", "quality_floor": 0.0},
    });
    let bytes = serde_json::to_vec(&body).map_err(|e| EvalError::Request(e.to_string()))?;
    let req = ChatRequest::parse(&bytes).map_err(|e| EvalError::Request(format!("{e:?}")))?;
    let providers: Vec<&str> = config.providers.iter().map(|p| p.id.as_str()).collect();
    let mut prefs = Prefs::parse(&req.fields, &HeaderMap::new(), &providers)
        .map_err(|e| EvalError::Request(format!("{e:?}")))?;
    let call = CallShape::of(&req);
    let caller = CallerLimits::default();
    let now = tokio::time::Instant::now();
    let mut out = Vec::with_capacity(knobs.len());
    let mut expected = vec![None; outcomes.models.len()];
    for (i, knob) in knobs.iter().enumerate() {
        prefs.tie_seed = Some(tie_seed);
        match *knob {
            Knob::Floor(f) => {
                prefs.policy = Some(Policy::CheapestAboveQuality);
                prefs.quality_floor = Some(f);
                prefs.weights = None;
            }
            Knob::CostWeight(w) => {
                prefs.policy = Some(Policy::Balanced);
                prefs.quality_floor = None;
                prefs.weights = Some(PolicyWeights {
                    cost: w,
                    latency: 0.0,
                    quality: 1.0,
                });
            }
        }
        let plan = build_plan(config, state, &call, &prefs, &caller, now)
            .map_err(|e| EvalError::Plan(format!("{e:?}")))?;
        if i == 0 {
            for s in &plan.scored {
                if let Some(m) = outcomes
                    .models
                    .iter()
                    .position(|m| **m == *s.candidate.model)
                {
                    expected[m] = s.terms.cost_nanos.map(|n| n as f64 / 1e9);
                }
            }
        }
        out.push(chosen(outcomes, &plan).ok_or_else(|| {
            EvalError::NoRows {
                route: route.to_string(),
                model: plan
                    .candidates
                    .first()
                    .map(|c| c.model.to_string())
                    .unwrap_or_else(|| "nothing".into()),
            }
        })?);
    }
    Ok((out, expected))
}

/// The task-label router: each task's mean score (0–100) and cost per model on the
/// training prompts, routed by the rule of each knob: the cheapest model reaching the
/// floor (else the best), or the best utility `score − weight × $ per 1k calls`.
fn task_router(
    table: &Table<'_>,
    labels: &[String],
    fold: &[usize],
    k: usize,
    knobs: &[Knob],
    choice: &mut [Vec<usize>],
) {
    let n_models = table.outcomes.models.len();
    let mut sums: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    let mut cost = vec![(0.0, 0.0); n_models];
    for (p, f) in fold.iter().enumerate() {
        if *f == k {
            continue;
        }
        let row = sums
            .entry(labels[p].as_str())
            .or_insert_with(|| vec![(0.0, 0.0); n_models]);
        for (m, r) in row.iter_mut().enumerate() {
            r.0 += table.score(p, m);
            r.1 += 1.0;
            cost[m].0 += table.cost[p][m];
            cost[m].1 += 1.0;
        }
    }
    let mean = |(s, n): (f64, f64)| if n > 0.0 { s / n } else { 0.0 };
    let mut by_cost: Vec<usize> = (0..n_models).collect();
    by_cost.sort_by(|a, b| mean(cost[*a]).total_cmp(&mean(cost[*b])));
    let per_1k: Vec<f64> = cost.iter().map(|c| 1000.0 * mean(*c)).collect();
    for (p, f) in fold.iter().enumerate() {
        if *f != k {
            continue;
        }
        let q: Vec<f64> = match sums.get(labels[p].as_str()) {
            Some(row) => row.iter().map(|r| 100.0 * mean(*r)).collect(),
            None => vec![50.0; n_models],
        };
        for (fi, knob) in knobs.iter().enumerate() {
            let best_by = |u: &dyn Fn(usize) -> f64| {
                (0..n_models)
                    .max_by(|a, b| u(*a).total_cmp(&u(*b)).then(b.cmp(a)))
                    .unwrap_or(0)
            };
            choice[fi][p] = match *knob {
                Knob::Floor(floor) => by_cost
                    .iter()
                    .copied()
                    .find(|m| q[*m] >= floor)
                    .unwrap_or_else(|| best_by(&|m| q[m])),
                Knob::CostWeight(w) => best_by(&|m| q[m] - w * per_1k[m]),
            };
        }
    }
}

/// One router's figures with 95 % bootstrap intervals.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub apgr: Option<[f64; 3]>,
    pub cpt50: Option<[f64; 3]>,
    pub cpt80: Option<[f64; 3]>,
    pub aiq: [f64; 3],
    /// Cost per 1k calls of the cheapest floor reaching the best single model's quality.
    pub cost_at_best: Option<f64>,
}

/// The evaluation's result.
#[derive(Debug, Clone)]
pub struct Report {
    pub prompts: usize,
    pub models: Vec<String>,
    pub folds: usize,
    pub settings: String,
    pub singles: Vec<(f64, f64)>,
    /// Every router's figures on all the prompts.
    pub whole: Panel,
    /// With `Options::by_task`: per `task` label (sorted), its prompts and the figures
    /// of `Panel` on them alone.
    pub by_task: Vec<(String, usize, Panel)>,
    pub decisions: Decisions,
}

/// Every router's figures on one set of prompts.
#[derive(Debug, Clone)]
pub struct Panel {
    pub router: Figures,
    pub task_label: Figures,
    /// The same under `balanced` with the cost weight swept (`None` without a sweep).
    pub router_balanced: Option<Figures>,
    pub task_label_balanced: Option<Figures>,
    pub oracle: Figures,
    pub random: Figures,
}

fn interval(mut v: Vec<f64>, point: f64) -> [f64; 3] {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return [point, point, point];
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    [point, at(0.025), at(0.975)]
}

/// Metrics of a router given its points over `sample`: on the prompts `all`, with
/// intervals from the bootstrap `samples` of them.
fn figures(
    table: &Table<'_>,
    pair: Option<(usize, usize)>,
    points: &dyn Fn(&[usize]) -> Vec<Point>,
    all: &[usize],
    samples: &[Vec<usize>],
) -> Figures {
    let n_models = table.outcomes.models.len();
    let compute = |s: &[usize]| -> (Option<(f64, f64, f64)>, f64, Option<f64>) {
        let pts3 = points(s);
        let pts: Vec<(f64, f64)> = pts3.iter().map(|p| (p.0, p.1)).collect();
        let singles: Vec<Point> = (0..n_models).map(|m| table.single(m, s)).collect();
        let c_min = singles.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let c_max = singles
            .iter()
            .map(|p| p.0)
            .fold(f64::NEG_INFINITY, f64::max);
        let best = singles
            .iter()
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max);
        let aiq_v = aiq(&pts, c_min, c_max);
        let at_best = pts
            .iter()
            .filter(|p| p.1 >= best - 1e-12)
            .map(|p| p.0 * 1000.0)
            .reduce(f64::min);
        let two = pair.map(|(weak, strong)| {
            let (w, st) = (singles[weak].1, singles[strong].1);
            let share: Vec<(f64, f64)> = pts3.iter().map(|p| (p.2, p.1)).collect();
            (
                apgr(&share, w, st),
                cpt(&share, w, st, 0.5),
                cpt(&share, w, st, 0.8),
            )
        });
        (two, aiq_v, at_best)
    };
    let (two, a, at_best) = compute(all);
    let boots: Vec<_> = samples.iter().map(|s| compute(s)).collect();
    let pick = |f: &dyn Fn(&(f64, f64, f64)) -> f64| -> Option<[f64; 3]> {
        two.as_ref().map(|t| {
            interval(
                boots.iter().filter_map(|b| b.0.as_ref().map(f)).collect(),
                f(t),
            )
        })
    };
    Figures {
        apgr: pick(&|t| t.0),
        cpt50: pick(&|t| t.1),
        cpt80: pick(&|t| t.2),
        aiq: interval(boots.iter().map(|b| b.1).collect(), a),
        cost_at_best: at_best,
    }
}

/// Runs the evaluation: cross-validated (or with `options.fixed`), every held-out
/// prompt planned by `build_plan` at every floor.
pub fn evaluate(
    outcomes: &Outcomes,
    config: &Config,
    options: &Options,
) -> Result<Report, EvalError> {
    let n = outcomes.prompts.len();
    let n_models = outcomes.models.len();
    if n_models < 2 {
        return Err(EvalError::TooFewModels);
    }
    if options.folds < 2 && options.fixed.is_none() {
        return Err(EvalError::TooFewFolds);
    }
    let fold = folds(n, options.folds.max(1), options.seed);
    let n_folds = if options.fixed.is_some() {
        1
    } else {
        options.folds
    };
    let state = RouterState::default();
    let training = options.extra.as_ref().map(|e| merged(outcomes, e));
    let knobs: Vec<Knob> = options
        .floors
        .iter()
        .map(|f| Knob::Floor(*f))
        .chain(options.cost_weights.iter().map(|w| Knob::CostWeight(*w)))
        .collect();
    let mut choice = vec![vec![0usize; n]; knobs.len()];
    let mut expected = vec![vec![None; n_models]; n];
    for k in 0..n_folds {
        let weights = match &options.fixed {
            Some(w) => w.clone(),
            None => {
                let mut train: Vec<usize> = (0..n).filter(|p| fold[*p] != k).collect();
                let rows = match &training {
                    Some(t) => {
                        train.extend(n..t.prompts.len());
                        t
                    }
                    None => outcomes,
                };
                Arc::new(train::fit(rows, Some(&train), options.settings, "cv"))
            }
        };
        let mut cfg = config.clone();
        cfg.router.predictor = PredictorConfig {
            weights: Some(weights),
            source: format!("fold {k}"),
        };
        for p in 0..n {
            if options.fixed.is_none() && fold[p] != k {
                continue;
            }
            let (c, e) = plan_sweep(
                &cfg,
                &state,
                &options.route,
                &outcomes.prompts[p].prompt,
                &knobs,
                options.seed ^ p as u64,
                outcomes,
            )?;
            for (fi, m) in c.into_iter().enumerate() {
                choice[fi][p] = m;
            }
            expected[p] = e;
        }
    }
    let cost: Vec<Vec<f64>> = (0..n)
        .map(|p| {
            (0..n_models)
                .map(|m| {
                    outcomes.prompts[p].costs[m]
                        .or(expected[p][m])
                        .unwrap_or(0.0)
                })
                .collect()
        })
        .collect();
    let mean_score = |m: usize| {
        outcomes
            .prompts
            .iter()
            .map(|o| o.scores[m].unwrap_or(0.0))
            .sum::<f64>()
    };
    let pair = (n_models == 2).then(|| {
        if mean_score(0) >= mean_score(1) {
            (1, 0)
        } else {
            (0, 1)
        }
    });
    let table = Table {
        outcomes,
        cost,
        strong: pair.map(|p| p.1),
    };
    let all: Vec<usize> = (0..n).collect();
    let singles: Vec<(f64, f64)> = (0..n_models)
        .map(|m| {
            let p = table.single(m, &all);
            (p.0, p.1)
        })
        .collect();
    let mut s = options.seed ^ 0x5eed;
    let samples: Vec<Vec<usize>> = (0..options.bootstrap)
        .map(|_| {
            (0..n)
                .map(|_| (splitmix(&mut s) % n as u64) as usize)
                .collect()
        })
        .collect();

    let n_floors = options.floors.len();
    let sweep = |choice: &[Vec<usize>],
                 range: std::ops::Range<usize>,
                 all: &[usize],
                 samples: &[Vec<usize>]| {
        let part = &choice[range];
        let points = |sample: &[usize]| -> Vec<Point> {
            part.iter().map(|c| table.point(c, sample)).collect()
        };
        figures(&table, pair, &points, all, samples)
    };
    let balanced = !options.cost_weights.is_empty();

    let labels: Vec<String> = outcomes
        .prompts
        .iter()
        .map(|o| {
            o.task
                .clone()
                .unwrap_or_else(|| classify(&o.prompt, (o.prompt.len() / 4) as u64).to_string())
        })
        .collect();
    let mut task_choice = vec![vec![0usize; n]; knobs.len()];
    for k in 0..options.folds.max(2) {
        task_router(&table, &labels, &fold, k, &knobs, &mut task_choice);
    }

    // The oracle: per prompt, the cheapest model with the best score; its points are
    // the budgets between the single models (for a pair: the gains first, losses last).
    let oracle_points = |sample: &[usize]| -> Vec<Point> {
        let mut pts: Vec<Point> = (0..n_models).map(|m| table.single(m, sample)).collect();
        match pair {
            Some((weak, strong)) => {
                let mut gains: Vec<(f64, usize)> = sample
                    .iter()
                    .map(|&p| (table.score(p, strong) - table.score(p, weak), p))
                    .collect();
                gains.sort_by(|a, b| b.0.total_cmp(&a.0));
                let mut choices = vec![weak; n];
                let steps = 100.min(gains.len().max(1));
                for i in 0..=steps {
                    let upto = gains.len() * i / steps;
                    for g in &gains[..upto] {
                        choices[g.1] = strong;
                    }
                    pts.push(table.point(&choices, sample));
                }
            }
            None => {
                let choices: Vec<usize> = (0..n)
                    .map(|p| {
                        (0..n_models)
                            .min_by(|&a, &b| {
                                table
                                    .score(p, b)
                                    .total_cmp(&table.score(p, a))
                                    .then(table.cost[p][a].total_cmp(&table.cost[p][b]))
                            })
                            .unwrap_or(0)
                    })
                    .collect();
                pts.push(table.point(&choices, sample));
            }
        }
        pts
    };
    let random_points = |sample: &[usize]| -> Vec<Point> {
        (0..n_models).map(|m| table.single(m, sample)).collect()
    };
    let floors = 0..n_floors;
    let weights = n_floors..knobs.len();
    let panel = |all: &[usize], samples: &[Vec<usize>]| Panel {
        router: sweep(&choice, floors.clone(), all, samples),
        task_label: sweep(&task_choice, floors.clone(), all, samples),
        router_balanced: balanced.then(|| sweep(&choice, weights.clone(), all, samples)),
        task_label_balanced: balanced.then(|| sweep(&task_choice, weights.clone(), all, samples)),
        oracle: figures(&table, pair, &oracle_points, all, samples),
        random: figures(&table, pair, &random_points, all, samples),
    };
    let whole = panel(&all, &samples);
    let mut by_task = Vec::new();
    if options.by_task {
        let mut tasks: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (p, o) in outcomes.prompts.iter().enumerate() {
            if let Some(t) = &o.task {
                tasks.entry(t.as_str()).or_default().push(p);
            }
        }
        for (task, prompts) in tasks {
            let m = prompts.len() as u64;
            let samples: Vec<Vec<usize>> = (0..options.bootstrap)
                .map(|_| {
                    (0..prompts.len())
                        .map(|_| prompts[(splitmix(&mut s) % m) as usize])
                        .collect()
                })
                .collect();
            by_task.push((task.to_string(), prompts.len(), panel(&prompts, &samples)));
        }
    }
    Ok(Report {
        prompts: n,
        models: outcomes.models.clone(),
        folds: n_folds,
        settings: options
            .fixed
            .as_ref()
            .map(|w| w.note.clone())
            .unwrap_or_else(|| options.settings.describe()),
        singles,
        whole,
        by_task,
        decisions: Decisions {
            floors: options.floors.clone(),
            balanced: choice.split_off(n_floors),
            choice,
            cost_weights: options.cost_weights.clone(),
        },
    })
}

fn ci(f: &Option<[f64; 3]>, pct: bool) -> String {
    match f {
        Some([v, lo, hi]) if pct => {
            format!("{:.1} % [{:.1}, {:.1}]", v * 100.0, lo * 100.0, hi * 100.0)
        }
        Some([v, lo, hi]) => format!("{v:.3} [{lo:.3}, {hi:.3}]"),
        None => "—".into(),
    }
}

/// One line per router: APGR, CPT and AIQ for a pair (`two`), else AIQ and the cost at
/// the best single model's quality.
fn write_rows(f: &mut fmt::Formatter<'_>, two: bool, p: &Panel) -> fmt::Result {
    let rows = [
        ("predictor", Some(&p.router)),
        ("task-label", Some(&p.task_label)),
        ("predictor, balanced", p.router_balanced.as_ref()),
        ("task-label, balanced", p.task_label_balanced.as_ref()),
        ("random", Some(&p.random)),
        ("oracle", Some(&p.oracle)),
    ];
    for (name, fig) in rows
        .iter()
        .filter_map(|(name, fig)| fig.map(|f| (*name, f)))
    {
        let aiq = ci(&Some(fig.aiq), false);
        if two {
            writeln!(
                f,
                "{name:<22} {:<24} {:<24} {:<24} {aiq:<24}",
                ci(&fig.apgr, false),
                ci(&fig.cpt50, true),
                ci(&fig.cpt80, true)
            )?;
        } else {
            let at = fig
                .cost_at_best
                .map(|c| format!("${c:.3}"))
                .unwrap_or_else(|| "not reached".into());
            writeln!(f, "{name:<22} {aiq:<24} {at}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} prompts, {} models, {} fold(s), {} floors, {} cost weights; {}",
            self.prompts,
            self.models.len(),
            self.folds,
            self.decisions.floors.len(),
            self.decisions.cost_weights.len(),
            self.settings
        )?;
        writeln!(f, "single models (cost per 1k calls, quality):")?;
        for (m, (c, q)) in self.models.iter().zip(&self.singles) {
            writeln!(f, "  {m:<28} ${:>9.4}  {q:.4}", c * 1000.0)?;
        }
        let two = self.whole.router.apgr.is_some();
        writeln!(f)?;
        if two {
            writeln!(
                f,
                "{:<22} {:<24} {:<24} {:<24} {:<24}",
                "router", "APGR", "CPT(50%)", "CPT(80%)", "AIQ"
            )?;
        } else {
            writeln!(
                f,
                "{:<22} {:<24} $/1k calls at the best single model's quality",
                "router", "AIQ"
            )?;
        }
        write_rows(f, two, &self.whole)?;
        for (task, prompts, panel) in &self.by_task {
            writeln!(f, "\ntask {task} ({prompts} prompts):")?;
            write_rows(f, two, panel)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_router_apgr_is_one_half() {
        // Mixing the two models in proportion x gives quality on the straight line.
        let (w, s) = (0.6, 0.8);
        let pts: Vec<(f64, f64)> = (0..=10)
            .map(|i| {
                let x = i as f64 / 10.0;
                (x, w + x * (s - w))
            })
            .collect();
        assert!((apgr(&pts, w, s) - 0.5).abs() < 1e-12);
        assert!((apgr(&[], w, s) - 0.5).abs() < 1e-12);
        assert!((cpt(&pts, w, s, 0.5) - 0.5).abs() < 1e-9);
        // Read between points: the straight line alone also reaches 80 % at 80 %.
        assert!((cpt(&[], w, s, 0.8) - 0.8).abs() < 1e-9);
    }

    #[test]
    fn oracle_apgr_is_above_one() {
        // Four prompts: weak right on 0 and 1, strong right on 0, 1, 2; prompt 3 nobody.
        // weak 0.5, strong 0.75. Oracle: send prompt 2 first (quality 0.75 at 25 %),
        // then the rest changes nothing.
        let pts = [(0.25, 0.75), (0.5, 0.75), (0.75, 0.75)];
        // PGR: 0 at 0 %, 1 from 25 % on: area = 0.125 + 0.75 = 0.875; hand-computed
        // with the end point (1, strong) = 1: trapezoids 0.125 + 0.25 + 0.25 + 0.25.
        assert!((apgr(&pts, 0.5, 0.75) - 0.875).abs() < 1e-12);
        // Oracle that also avoids losses beats 1.
        let better = [(0.25, 0.8), (0.75, 0.8)];
        assert!(apgr(&better, 0.5, 0.75) > 1.0);
        // PGR rises from 0 at 0 % to 1 at 25 %: 80 % is reached at 20 %.
        assert!((cpt(&pts, 0.5, 0.75, 0.8) - 0.2).abs() < 1e-9);
    }

    #[test]
    fn aiq_of_the_single_models_and_a_better_router() {
        let singles = [(1.0, 0.5), (3.0, 0.9)];
        // Hull of the two: the straight line; its mean over [1, 3] is 0.7.
        assert!((aiq(&singles, 1.0, 3.0) - 0.7).abs() < 1e-12);
        // A router reaching 0.9 at cost 2 adds a kink: area 0.7 + 0.9 … = (0.7 + 0.9) / 2 = 0.8 ⇒ (0.7·1 + 0.9·1)/2.
        let with_router = [(1.0, 0.5), (3.0, 0.9), (2.0, 0.9)];
        assert!((aiq(&with_router, 1.0, 3.0) - 0.8).abs() < 1e-12);
        // A point under the hull changes nothing; a dearer, worse point neither.
        let worse = [(1.0, 0.5), (3.0, 0.9), (2.0, 0.6), (4.0, 0.8)];
        assert!((aiq(&worse, 1.0, 3.0) - 0.7).abs() < 1e-12);
    }

    #[test]
    fn task_label_router_follows_each_rule() {
        // Models a ($1 per 1k calls) and b ($5); tasks x (prompts 0-2) and y (3-5);
        // fold 0 holds prompts 0 and 3. Trained on fold 1: on x both score 100, on y a
        // scores 50 and b 100.
        let scores = [
            [1.0, 1.0],
            [1.0, 1.0],
            [1.0, 1.0],
            [1.0, 1.0],
            [0.0, 1.0],
            [1.0, 1.0],
        ];
        let outcomes = Outcomes {
            models: vec!["a".into(), "b".into()],
            prompts: scores
                .iter()
                .enumerate()
                .map(|(i, s)| super::super::rows::Outcome {
                    prompt: format!("p{i}"),
                    scores: vec![Some(s[0]), Some(s[1])],
                    costs: vec![Some(0.001), Some(0.005)],
                    task: Some(if i < 3 { "x" } else { "y" }.into()),
                    weight: 1.0,
                })
                .collect(),
        };
        let table = Table {
            outcomes: &outcomes,
            cost: vec![vec![0.001, 0.005]; 6],
            strong: Some(1),
        };
        let labels: Vec<String> = outcomes
            .prompts
            .iter()
            .filter_map(|o| o.task.clone())
            .collect();
        let fold = [0, 1, 1, 0, 1, 1];
        let knobs = [
            Knob::Floor(40.0),
            Knob::Floor(60.0),
            Knob::CostWeight(10.0),
            Knob::CostWeight(20.0),
        ];
        let mut choice = vec![vec![9; 6]; knobs.len()];
        task_router(&table, &labels, &fold, 0, &knobs, &mut choice);
        // x: a reaches every floor and is the better utility at any positive weight.
        assert_eq!(
            choice.iter().map(|c| c[0]).collect::<Vec<_>>(),
            [0, 0, 0, 0]
        );
        // y: floor 40 → a (50), floor 60 → b; utility a = 50 − w, b = 100 − 5w: b below
        // w = 12.5, a above.
        assert_eq!(
            choice.iter().map(|c| c[3]).collect::<Vec<_>>(),
            [0, 1, 1, 0]
        );
        // Training prompts are left alone.
        assert!(choice.iter().all(|c| c[1] == 9));
    }

    #[test]
    fn default_cost_weights_rise_from_zero_to_ten_thousand() {
        let w = default_cost_weights();
        assert_eq!(w.len(), 101);
        assert_eq!(w[0], 0.0);
        assert!((w[1] - 0.01).abs() < 1e-12 && (w[100] - 1e4).abs() < 1e-6);
        assert!(w.windows(2).all(|p| p[0] < p[1]));
    }

    #[test]
    fn folds_are_a_partition_and_seeded() {
        let f = folds(103, 5, 7);
        assert_eq!(f, folds(103, 5, 7));
        for k in 0..5 {
            let size = f.iter().filter(|x| **x == k).count();
            assert!((20..=21).contains(&size));
        }
    }

    #[test]
    fn by_task_reports_each_tasks_prompts_alone_and_leaves_the_whole_as_it_was() {
        // Models a ($0.1 per Mtok) and b ($10); on task x both are always right, on task
        // y only b is.
        let mut csv = String::from("prompt,model,score,cost,task\n");
        for i in 0..8 {
            let (task, a) = if i % 2 == 0 { ("x", 1) } else { ("y", 0) };
            csv.push_str(&format!("question {i} about {task}?,a,{a},0.0001,{task}\n"));
            csv.push_str(&format!("question {i} about {task}?,b,1,0.01,{task}\n"));
        }
        let outcomes = super::super::rows::parse(&csv).unwrap();
        let toml = "[providers.p]\nbase_url = \"http://127.0.0.1:9/v1\"\ntier = \"open-hosted\"\n\
            [[models]]\nid = \"a\"\nprovider = \"p\"\ninput_price = 0.1\noutput_price = 0.1\nquality = 50\n\
            [[models]]\nid = \"b\"\nprovider = \"p\"\ninput_price = 10.0\noutput_price = 10.0\nquality = 100\n\
            [routes.eval]\nmodels = [\"a\", \"b\"]\npolicy = \"cheapest-above-quality\"\nquality_floor = 50\n";
        let config = Config::from_toml(toml, &|_| None).unwrap();
        let options = |by_task| Options {
            route: "eval".into(),
            folds: 2,
            floors: vec![0.0, 50.0, 100.0],
            bootstrap: 20,
            seed: 3,
            settings: Settings::default(),
            fixed: None,
            extra: None,
            cost_weights: vec![0.0, 1.0],
            by_task,
        };
        let plain = evaluate(&outcomes, &config, &options(false)).unwrap();
        assert!(plain.by_task.is_empty());
        let report = evaluate(&outcomes, &config, &options(true)).unwrap();
        assert_eq!(format!("{:?}", report.whole), format!("{:?}", plain.whole));
        let tasks: Vec<(&str, usize)> = report
            .by_task
            .iter()
            .map(|(t, n, _)| (t.as_str(), *n))
            .collect();
        assert_eq!(tasks, [("x", 4), ("y", 4)]);
        // On x every router is right on every prompt: AIQ 1 with tight intervals.
        let x = &report.by_task[0].2;
        for fig in [&x.router, &x.task_label, &x.random, &x.oracle] {
            assert_eq!(fig.aiq, [1.0, 1.0, 1.0]);
        }
        // On y only b is right, so even the oracle is the line from a (0) to b (1): 0.5.
        let y = &report.by_task[1].2;
        for fig in [&y.random, &y.oracle] {
            assert!((fig.aiq[0] - 0.5).abs() < 1e-9, "{:?}", fig.aiq);
        }
        let text = report.to_string();
        assert!(text.contains("task x (4 prompts):") && text.contains("task y (4 prompts):"));
    }
}
