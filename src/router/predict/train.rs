//! Fitting the predictor from outcomes: L2-regularised logistic regression on the
//! stacked design (shared difficulty weights + per-model weights and bias, each model
//! offset by the logit of its base rate; with `rank` > 0 also a learned prompt
//! projection times a vector per model, the matrix-factorisation form), minimised with
//! L-BFGS; optionally in two stages, the rows' weights counting only when the word-gram
//! weights are refitted (`RowWeights::Grams`). Deterministic: same rows and settings,
//! same bytes out. Single-threaded; no I/O.

use super::features::{self, Features, DENSE};
use super::rows::Outcomes;
use super::weights::{self, ModelTerms, Weights, MAX_RANK, SHAPES};
use crate::catalog::predictor::view;

/// Training settings; the defaults are what cross-validation chose (docs/routing.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Hashed buckets (a power of two).
    pub buckets: u32,
    /// L2 strength on the shared weights, per training pair.
    pub l2_shared: f64,
    /// L2 strength on each model's own weights.
    pub l2_model: f64,
    /// L2 strength on the dense shape features' weights (shared and per model): they are
    /// few and carry what transfers between prompt kinds, so they may be freer.
    pub l2_dense: f64,
    /// Free-form prompts' grams also in their own buckets (`features::extract`).
    pub split: bool,
    /// L-BFGS iterations at most.
    pub iterations: u32,
    /// Dimensions of the learned prompt projection shared by the models (0: none); each
    /// model gets a vector of this many factors. For sets of many models, where one
    /// model's own weights see too few prompts to generalise.
    pub rank: u32,
    /// L2 strength on the projection and the models' factors.
    pub l2_factors: f64,
    /// The share of the training prompts a prompt shape (`weights::shape_of`) needs for
    /// its word grams to count; prompts of rarer shapes, in training and when routing,
    /// are scored by the models' terms and their shape features alone. Below about 1 %
    /// a shape weighs too little in the fit for its grams to mean anything of its own.
    pub min_share: f64,
    /// Which terms the rows' `weight` column weighs (`RowWeights`).
    pub row_weights: RowWeights,
    /// With `RowWeights::Grams`: the L2 strength on the shared gram weights in the
    /// second stage (`l2_shared` when `None`).
    pub refit_l2_shared: Option<f64>,
}

/// Which terms of a fit the rows' weights (`rows::Outcome::weight`) count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RowWeights {
    /// One fit of every term with the rows' weights.
    #[default]
    All,
    /// Two stages: every term fitted with each prompt at weight 1, then only the word-gram
    /// weights (shared and per model) refitted with the rows' weights from there, the
    /// shape features' weights, each model's bias and base rate (and any projection)
    /// held as the first stage left them. A prompt whose grams are gated off (a shape
    /// the rows lack) is predicted as the unweighted fit predicts it; the weights move
    /// only what the grams say within the shapes the rows know.
    Grams,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            buckets: 1 << 14,
            l2_shared: 1e-4,
            l2_model: 1e-4,
            l2_dense: 1e-5,
            split: true,
            iterations: 200,
            rank: 0,
            l2_factors: 1e-4,
            min_share: 0.01,
            row_weights: RowWeights::All,
            refit_l2_shared: None,
        }
    }
}

impl Settings {
    /// A one-line description, stored in the weights file.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "buckets={} split={} l2_shared={} l2_model={} l2_dense={} iterations={} min_share={}",
            self.buckets,
            self.split,
            self.l2_shared,
            self.l2_model,
            self.l2_dense,
            self.iterations,
            self.min_share
        );
        if self.row_weights == RowWeights::Grams {
            s.push_str(" row_weights=grams");
            if let Some(l2) = self.refit_l2_shared {
                s.push_str(&format!(" refit_l2_shared={l2}"));
            }
        }
        if self.rank > 0 {
            s.push_str(&format!(
                " rank={} l2_factors={}",
                self.rank, self.l2_factors
            ));
        }
        s
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-3, 1.0 - 1e-3);
    (p / (1.0 - p)).ln()
}

/// The training problem: features of each prompt and its observed (model, score) pairs.
struct Problem {
    width: usize,
    buckets: usize,
    features: Vec<Features>,
    pairs: Vec<Vec<(usize, f64)>>,
    /// Each prompt's weight (`rows::Outcome::weight`).
    weights: Vec<f64>,
    offsets: Vec<f64>,
    n_pairs: f64,
    settings: Settings,
    /// Only the word-gram weights move (`RowWeights::Grams`' second stage): the gradient
    /// of every other parameter is held at 0.
    grams_only: bool,
}

impl Problem {
    fn dot(&self, w: &[f64], f: &Features) -> f64 {
        let mut s = 0.0;
        for (b, v) in &f.hashed {
            s += w[*b as usize] * f64::from(*v);
        }
        for (i, v) in f.dense.iter().enumerate() {
            s += w[self.buckets + i] * f64::from(*v);
        }
        s
    }

    fn scatter(&self, g: &mut [f64], f: &Features, e: f64) {
        for (b, v) in &f.hashed {
            g[*b as usize] += e * f64::from(*v);
        }
        for (i, v) in f.dense.iter().enumerate() {
            g[self.buckets + i] += e * f64::from(*v);
        }
    }

    fn rank(&self) -> usize {
        self.settings.rank as usize
    }

    /// Zeroes the gradient of every parameter but the word-gram weights: the shape
    /// features' weights, each model's bias and factors, and the projection. L-BFGS then
    /// never moves them (its direction is built from gradients and steps that are 0 there).
    fn hold(&self, g: &mut [f64]) {
        let (w, b, rank) = (self.width, self.buckets, self.rank());
        g[b..w].fill(0.0);
        for m in 0..self.offsets.len() {
            let at = self.model_at(m);
            g[at] = 0.0;
            g[at + 1 + b..at + 1 + w + rank].fill(0.0);
        }
        let proj = self.projection_at();
        g[proj..].fill(0.0);
    }

    /// Parameters: shared weights, then per model its bias, weights and factors, then the
    /// projection's rows.
    fn model_at(&self, m: usize) -> usize {
        self.width + m * (self.width + 1 + self.rank())
    }

    fn projection_at(&self) -> usize {
        self.model_at(self.offsets.len())
    }

    /// The prompt's coordinates in the projection at `x`.
    fn latent(&self, x: &[f64], f: &Features, out: &mut Vec<f64>) {
        let (w, at) = (self.width, self.projection_at());
        out.clear();
        out.extend((0..self.rank()).map(|j| self.dot(&x[at + j * w..at + (j + 1) * w], f)));
    }

    /// Loss and gradient at `x`.
    fn evaluate(&self, x: &[f64], g: &mut [f64]) -> f64 {
        g.iter_mut().for_each(|v| *v = 0.0);
        let mut loss = 0.0;
        let w = self.width;
        let rank = self.rank();
        let proj = self.projection_at();
        let mut h = Vec::with_capacity(rank);
        let mut back = vec![0.0; rank];
        for ((f, pairs), weight) in self.features.iter().zip(&self.pairs).zip(&self.weights) {
            if *weight == 0.0 {
                continue;
            }
            let shared = self.dot(&x[..w], f);
            self.latent(x, f, &mut h);
            back.iter_mut().for_each(|v| *v = 0.0);
            let mut e_shared = 0.0;
            for &(m, y) in pairs {
                let at = self.model_at(m);
                let factors = at + 1 + w;
                let z = self.offsets[m]
                    + x[at]
                    + shared
                    + self.dot(&x[at + 1..factors], f)
                    + dot(&x[factors..factors + rank], &h);
                // log(1 + e^z) - y z, computed stably.
                loss += weight * (z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z);
                let e = weight * (sigmoid(z) - y) / self.n_pairs;
                e_shared += e;
                g[at] += e;
                for j in 0..rank {
                    g[factors + j] += e * h[j];
                    back[j] += e * x[factors + j];
                }
                let (_, rest) = g.split_at_mut(at + 1);
                self.scatter(&mut rest[..w], f, e);
            }
            self.scatter(&mut g[..w], f, e_shared);
            for (j, b) in back.iter().enumerate() {
                self.scatter(&mut g[proj + j * w..proj + (j + 1) * w], f, *b);
            }
        }
        loss /= self.n_pairs;
        let s = &self.settings;
        let mut blocks = vec![(0, s.l2_shared)];
        blocks.extend((0..self.offsets.len()).map(|m| (self.model_at(m) + 1, s.l2_model)));
        for (at, l2) in blocks {
            for i in 0..w {
                let l2 = if i < self.buckets { l2 } else { s.l2_dense };
                let v = x[at + i];
                loss += 0.5 * l2 * v * v;
                g[at + i] += l2 * v;
            }
        }
        let factors = (0..self.offsets.len())
            .map(|m| self.model_at(m) + 1 + w..self.model_at(m) + 1 + w + rank);
        for i in factors.flatten().chain(proj..proj + rank * w) {
            let v = x[i];
            loss += 0.5 * s.l2_factors * v * v;
            g[i] += s.l2_factors * v;
        }
        if self.grams_only {
            self.hold(g);
        }
        loss
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises with L-BFGS (memory 10) and a backtracking Armijo line search.
fn lbfgs(p: &Problem, x: &mut [f64]) {
    let n = x.len();
    let mut g = vec![0.0; n];
    let mut f = p.evaluate(x, &mut g);
    let mut history: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    let mut g_new = vec![0.0; n];
    let mut x_new = vec![0.0; n];
    for _ in 0..p.settings.iterations {
        // Two-loop recursion: d = -H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = history
            .last()
            .map(|(s, y, _)| dot(s, y) / dot(y, y).max(1e-300))
            .unwrap_or(1.0);
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            d = g.iter().map(|v| -v).collect();
            slope = dot(&g, &d);
            history.clear();
        }
        let mut step = if history.is_empty() {
            1.0 / dot(&g, &g).sqrt().max(1e-12)
        } else {
            1.0
        };
        let mut accepted = false;
        for _ in 0..30 {
            x_new
                .iter_mut()
                .zip(x.iter().zip(&d))
                .for_each(|(xn, (xi, di))| *xn = xi + step * di);
            let f_new = p.evaluate(&x_new, &mut g_new);
            if f_new <= f + 1e-4 * step * slope {
                let s: Vec<f64> = x_new.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                if sy > 1e-12 {
                    history.push((s, y, 1.0 / sy));
                    if history.len() > 10 {
                        history.remove(0);
                    }
                }
                x.copy_from_slice(&x_new);
                g.copy_from_slice(&g_new);
                let done = (f - f_new).abs() <= 1e-9 * f.abs().max(1.0);
                f = f_new;
                accepted = true;
                if done {
                    return;
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            return;
        }
    }
}

/// Fits weights on the prompts `subset` of `outcomes` (all of them when `None`).
pub fn fit(
    outcomes: &Outcomes,
    subset: Option<&[usize]>,
    settings: Settings,
    note: &str,
) -> Weights {
    let buckets = settings.buckets.max(1).next_power_of_two();
    let width = buckets as usize + DENSE;
    let all: Vec<usize> = (0..outcomes.prompts.len()).collect();
    let subset = subset.unwrap_or(&all);
    let n_models = outcomes.models.len();
    let mut feats = Vec::with_capacity(subset.len());
    let mut pairs = Vec::with_capacity(subset.len());
    let mut weights = Vec::with_capacity(subset.len());
    for &i in subset {
        let o = &outcomes.prompts[i];
        weights.push(o.weight);
        feats.push(features::extract(
            &view::of_prompt(&o.prompt),
            buckets,
            settings.split,
        ));
        let observed: Vec<(usize, f64)> = o
            .scores
            .iter()
            .enumerate()
            .filter_map(|(m, s)| s.map(|s| (m, s)))
            .collect();
        pairs.push(observed);
    }
    // The first (or only) fit's prompt weights: the rows' own, or 1 each when the rows'
    // weights are for the grams' second stage.
    let first = match settings.row_weights {
        RowWeights::All => weights.clone(),
        RowWeights::Grams => vec![1.0; weights.len()],
    };
    // Per model, the weighted sum of its scores and of its rows' weights.
    let sums_of = |pairs: &[Vec<(usize, f64)>], w: &[f64]| {
        let mut sums = vec![(0.0, 0.0); n_models];
        for (observed, weight) in pairs.iter().zip(w) {
            for &(m, s) in observed {
                sums[m].0 += weight * s;
                sums[m].1 += weight;
            }
        }
        sums
    };
    let pair_weight = |sums: &[(f64, f64)]| sums.iter().map(|(_, n)| n).sum::<f64>().max(1e-12);
    let sums = sums_of(&pairs, &first);
    // Which shapes the rows know; the others' grams are dropped here as when routing.
    let mut support = [0u32; SHAPES];
    for f in &feats {
        support[weights::shape_of(f)] += 1;
    }
    let min_support = (settings.min_share.clamp(0.0, 1.0) * feats.len() as f64).ceil() as u32;
    let knows = |f: &Features| support[weights::shape_of(f)] >= min_support;
    for f in &mut feats {
        if !knows(f) {
            f.hashed.clear();
        }
    }
    let base: Vec<f64> = sums
        .iter()
        .map(|(s, n)| if *n > 0.0 { s / n } else { 0.5 })
        .collect();
    let mut problem = Problem {
        width,
        buckets: buckets as usize,
        features: feats,
        n_pairs: pair_weight(&sums),
        pairs,
        weights: first,
        offsets: base.iter().map(|b| logit(*b)).collect(),
        settings: Settings {
            buckets,
            rank: settings.rank.min(MAX_RANK),
            ..settings
        },
        grams_only: false,
    };
    let rank = settings.rank.min(MAX_RANK) as usize;
    let mut x = vec![0.0; problem.projection_at() + rank * width];
    // The projection starts small and seeded (factors at 0): with both at 0 neither
    // would ever move, and the same seed keeps the fit deterministic.
    let mut state = 0x6b61_7a61_6172u64;
    let proj = problem.projection_at();
    for v in &mut x[proj..] {
        *v = ((super::splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.2;
    }
    lbfgs(&problem, &mut x);
    if settings.row_weights == RowWeights::Grams {
        // The second stage: the grams alone, from where the first left them, with the
        // rows' weights; the base rates stay the first stage's (the biases are fitted
        // against them), and the centring below weighs the prompts as the first did.
        let first = std::mem::replace(&mut problem.weights, weights);
        problem.n_pairs = pair_weight(&sums_of(&problem.pairs, &problem.weights));
        problem.grams_only = true;
        if let Some(l2) = settings.refit_l2_shared {
            problem.settings.l2_shared = l2;
        }
        lbfgs(&problem, &mut x);
        problem.weights = first;
    }
    // Centre the shared term so a model the weights do not know sits at its prior on an
    // average (weighted) training prompt; known models keep the same predictions.
    let total: f64 = problem.weights.iter().sum();
    let mean_d = if total > 0.0 {
        problem
            .features
            .iter()
            .zip(&problem.weights)
            .map(|(f, w)| w * problem.dot(&x[..width], f))
            .sum::<f64>()
            / total
    } else {
        0.0
    };
    let models = outcomes
        .models
        .iter()
        .enumerate()
        .map(|(m, id)| {
            let at = problem.model_at(m);
            ModelTerms {
                id: id.clone(),
                prior: base[m] as f32,
                bias: (x[at] + mean_d) as f32,
                weights: x[at + 1..at + 1 + width]
                    .iter()
                    .map(|v| *v as f32)
                    .collect(),
                factors: x[at + 1 + width..at + 1 + width + rank]
                    .iter()
                    .map(|v| *v as f32)
                    .collect(),
            }
        })
        .collect();
    Weights {
        buckets,
        split: settings.split,
        note: format!("{note}; {}", settings.describe()),
        min_support,
        support,
        shared_bias: (-mean_d) as f32,
        shared: x[..width].iter().map(|v| *v as f32).collect(),
        rank: rank as u32,
        projection: x[proj..].iter().map(|v| *v as f32).collect(),
        models,
    }
}

/// Out-of-fold fit of `settings` on `outcomes`: K-fold cross-validation grouped by
/// prompt (the folds `bazaar router eval` uses for `seed`); the mean log-loss of the
/// held-out predictions over every observed (prompt, model) pair, each counted with its
/// prompt's weight. Lower is better.
pub fn cv_log_loss(outcomes: &Outcomes, settings: Settings, folds: usize, seed: u64) -> f64 {
    let n = outcomes.prompts.len();
    let fold = super::eval::folds(n, folds.max(2), seed);
    let (mut loss, mut pairs) = (0.0f64, 0.0f64);
    for k in 0..folds.max(2) {
        let train: Vec<usize> = (0..n).filter(|p| fold[*p] != k).collect();
        let w = fit(outcomes, Some(&train), settings, "cv");
        for (p, o) in outcomes.prompts.iter().enumerate() {
            if fold[p] != k {
                continue;
            }
            let score = w.score_prompt(&view::of_prompt(&o.prompt));
            for (m, y) in o.scores.iter().enumerate() {
                let Some(y) = y else { continue };
                let known = w.model_index(&[&outcomes.models[m]]);
                let q = (w.predict(&score, known, None).quality / 100.0).clamp(1e-6, 1.0 - 1e-6);
                loss -= o.weight * (y * q.ln() + (1.0 - y) * (1.0 - q).ln());
                pairs += o.weight;
            }
        }
    }
    loss / pairs.max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::predict::rows;

    fn toy() -> Outcomes {
        let mut csv = String::from("prompt,model,score\n");
        for i in 0..40 {
            // Math prompts: the weak model fails; chit-chat: both succeed.
            csv.push_str(&format!("\"solve the equation {i} x + 3 = 7\",strong,1\n"));
            csv.push_str(&format!("\"solve the equation {i} x + 3 = 7\",weak,0\n"));
            csv.push_str(&format!("\"say hello to friend number {i}\",strong,1\n"));
            csv.push_str(&format!("\"say hello to friend number {i}\",weak,1\n"));
        }
        rows::parse(&csv).unwrap()
    }

    #[test]
    fn learns_which_prompts_the_weak_model_fails() {
        let o = toy();
        let s = Settings {
            buckets: 1 << 10,
            ..Settings::default()
        };
        let w = fit(&o, None, s, "toy");
        let weak = w.model_index(&["weak"]);
        let q = |t: &str| w.predict(&w.score_prompt(t), weak, None).quality;
        assert!(q("solve the equation 99 x + 3 = 7") < 30.0);
        assert!(q("say hello to friend number 99") > 70.0);
    }

    #[test]
    fn cross_validation_prefers_a_fit_that_generalises() {
        let o = toy();
        let s = |l2: f64| Settings {
            buckets: 1 << 10,
            l2_shared: l2,
            l2_model: l2,
            l2_dense: l2,
            split: true,
            iterations: 50,
            ..Settings::default()
        };
        // Heavy regularisation cannot learn the math/chit-chat split; light can.
        let light = cv_log_loss(&o, s(1e-4), 4, 1);
        let heavy = cv_log_loss(&o, s(10.0), 4, 1);
        assert!(light < heavy, "{light} >= {heavy}");
        assert_eq!(light, cv_log_loss(&o, s(1e-4), 4, 1));
    }

    #[test]
    fn the_projection_learns_what_models_own_weights_may_not() {
        // Two models failing opposite kinds of prompt: no shared difficulty explains it,
        // and their own weights are held at 0; only the projection and factors can.
        let mut csv = String::from("prompt,model,score\n");
        for i in 0..40 {
            let (math, chat) = (
                format!("solve the equation {i} x + 3 = 7"),
                format!("say hello to friend number {i}"),
            );
            csv.push_str(&format!("\"{math}\",a,0\n\"{math}\",b,1\n"));
            csv.push_str(&format!("\"{chat}\",a,1\n\"{chat}\",b,0\n"));
        }
        let o = rows::parse(&csv).unwrap();
        let s = Settings {
            buckets: 1 << 10,
            l2_model: 1e3,
            l2_dense: 1e3,
            rank: 2,
            l2_factors: 1e-4,
            ..Settings::default()
        };
        let w = fit(&o, None, s, "toy");
        assert_eq!(w.rank, 2);
        let (a, b) = (w.model_index(&["a"]), w.model_index(&["b"]));
        let q = |t: &str, m| w.predict(&w.score_prompt(t), m, None).quality;
        let (math, chat) = (
            "solve the equation 99 x + 3 = 7",
            "say hello to friend number 99",
        );
        assert!(
            q(math, a) < 30.0 && q(math, b) > 70.0,
            "{} {}",
            q(math, a),
            q(math, b)
        );
        assert!(
            q(chat, a) > 70.0 && q(chat, b) < 30.0,
            "{} {}",
            q(chat, a),
            q(chat, b)
        );
        // The file keeps it.
        let back = Weights::parse(&w.to_bytes()).unwrap();
        assert_eq!(back, w);
        let top = w.top_features(math, a, 3);
        assert!(top[0].1 < 0.0, "{top:?}");
    }

    /// The toy rows with the chit-chat prompts weighted 5 and a third kind of prompt, of a
    /// shape no other row has, that the weak model fails.
    fn toy_weighted() -> Outcomes {
        let mut csv = String::from("prompt,model,score,weight\n");
        for i in 0..40 {
            let math = format!("solve the equation {i} x + 3 = 7 ?");
            let chat = format!("say hello to friend number {i} and {}", i + 1);
            csv.push_str(&format!(
                "\"{math}\",strong,1,1\n\"{math}\",weak,{},1\n",
                i % 3 / 2
            ));
            csv.push_str(&format!(
                "\"{chat}\",strong,1,5\n\"{chat}\",weak,{},5\n",
                i % 4 / 3
            ));
        }
        csv.push_str("\"Write a note\",strong,1,1\n\"Write a note\",weak,0,1\n");
        rows::parse(&csv).unwrap()
    }

    #[test]
    fn weighted_grams_leave_the_shape_features_and_the_unweighted_fits_terms_as_they_were() {
        let o = toy_weighted();
        // A toy set of 81 prompts: the note's shape (one prompt) is under a 5 % gate.
        let s = Settings {
            min_share: 0.05,
            buckets: 1 << 10,
            ..Settings::default()
        };
        let grams = Settings {
            row_weights: RowWeights::Grams,
            ..s
        };
        let mut unit = o.clone();
        unit.prompts.iter_mut().for_each(|p| p.weight = 1.0);
        let (first, two) = (fit(&unit, None, s, "toy"), fit(&o, None, grams, "toy"));
        let b = first.buckets as usize;
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&first.shared[b..]), bits(&two.shared[b..]));
        for (a, m) in first.models.iter().zip(&two.models) {
            assert_eq!(bits(&a.weights[b..]), bits(&m.weights[b..]));
            assert_eq!(a.prior.to_bits(), m.prior.to_bits());
            // The bias differs only by the shared term's centring.
            let centred =
                |w: &Weights, t: &ModelTerms| f64::from(t.bias) + f64::from(w.shared_bias);
            assert!((centred(&first, a) - centred(&two, m)).abs() < 1e-6);
        }
        // The grams moved, and the note (a shape under the gate) is predicted as before.
        assert_ne!(bits(&first.shared[..b]), bits(&two.shared[..b]));
        let weak = (first.model_index(&["weak"]), two.model_index(&["weak"]));
        let q = |w: &Weights, m, t: &str| w.predict(&w.score_prompt(t), m, None).quality;
        let note = (
            q(&first, weak.0, "Write a note"),
            q(&two, weak.1, "Write a note"),
        );
        assert!((note.0 - note.1).abs() < 1e-4, "{note:?}");
        let chat = "say hello to friend number 7 and 8";
        assert_ne!(q(&first, weak.0, chat), q(&two, weak.1, chat));
        // Same rows, same settings: same bytes.
        assert_eq!(fit(&o, None, grams, "toy").to_bytes(), two.to_bytes());
        // Counted in one fit (`RowWeights::All`), the rows' weights move them too.
        let all = fit(&o, None, s, "toy");
        assert_ne!(bits(&first.shared[b..]), bits(&all.shared[b..]));
    }

    #[test]
    fn is_deterministic() {
        let o = toy();
        let s = Settings {
            buckets: 1 << 10,
            iterations: 20,
            ..Settings::default()
        };
        assert_eq!(
            fit(&o, None, s, "a").to_bytes(),
            fit(&o, None, s, "a").to_bytes()
        );
    }
}
