//! Fitting the predictor from outcomes: L2-regularised logistic regression on the
//! stacked design (shared difficulty weights + per-model weights and bias, each model
//! offset by the logit of its base rate), minimised with L-BFGS. Deterministic: same
//! rows and settings, same bytes out. Single-threaded; no I/O.

use super::features::{self, Features, DENSE};
use super::rows::Outcomes;
use super::weights::{ModelTerms, Weights};
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            buckets: 1 << 14,
            l2_shared: 1e-4,
            l2_model: 3e-4,
            l2_dense: 1e-5,
            split: true,
            iterations: 200,
        }
    }
}

impl Settings {
    /// A one-line description, stored in the weights file.
    pub fn describe(&self) -> String {
        format!(
            "buckets={} split={} l2_shared={} l2_model={} l2_dense={} iterations={}",
            self.buckets, self.split, self.l2_shared, self.l2_model, self.l2_dense, self.iterations
        )
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
    offsets: Vec<f64>,
    n_pairs: f64,
    settings: Settings,
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

    /// Parameters: shared weights, then per model its bias and weights.
    fn model_at(&self, m: usize) -> usize {
        self.width + m * (self.width + 1)
    }

    /// Loss and gradient at `x`.
    fn evaluate(&self, x: &[f64], g: &mut [f64]) -> f64 {
        g.iter_mut().for_each(|v| *v = 0.0);
        let mut loss = 0.0;
        let w = self.width;
        for (f, pairs) in self.features.iter().zip(&self.pairs) {
            let shared = self.dot(&x[..w], f);
            let mut e_shared = 0.0;
            for &(m, y) in pairs {
                let at = self.model_at(m);
                let z = self.offsets[m] + x[at] + shared + self.dot(&x[at + 1..at + 1 + w], f);
                // log(1 + e^z) - y z, computed stably.
                loss += z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z;
                let e = (sigmoid(z) - y) / self.n_pairs;
                e_shared += e;
                g[at] += e;
                let (_, rest) = g.split_at_mut(at + 1);
                self.scatter(&mut rest[..w], f, e);
            }
            self.scatter(&mut g[..w], f, e_shared);
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
    let mut sums = vec![(0.0, 0.0); n_models];
    let mut feats = Vec::with_capacity(subset.len());
    let mut pairs = Vec::with_capacity(subset.len());
    for &i in subset {
        let o = &outcomes.prompts[i];
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
        for &(m, s) in &observed {
            sums[m].0 += s;
            sums[m].1 += 1.0;
        }
        pairs.push(observed);
    }
    let base: Vec<f64> = sums
        .iter()
        .map(|(s, n)| if *n > 0.0 { s / n } else { 0.5 })
        .collect();
    let problem = Problem {
        width,
        buckets: buckets as usize,
        features: feats,
        n_pairs: sums.iter().map(|(_, n)| n).sum::<f64>().max(1.0),
        pairs,
        offsets: base.iter().map(|b| logit(*b)).collect(),
        settings: Settings {
            buckets,
            ..settings
        },
    };
    let mut x = vec![0.0; width + n_models * (width + 1)];
    lbfgs(&problem, &mut x);
    // Centre the shared term so a model the weights do not know sits at its prior on an
    // average training prompt; known models keep the same predictions.
    let mean_d = if problem.features.is_empty() {
        0.0
    } else {
        problem
            .features
            .iter()
            .map(|f| problem.dot(&x[..width], f))
            .sum::<f64>()
            / problem.features.len() as f64
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
            }
        })
        .collect();
    Weights {
        buckets,
        split: settings.split,
        note: format!("{note}; {}", settings.describe()),
        shared_bias: (-mean_d) as f32,
        shared: x[..width].iter().map(|v| *v as f32).collect(),
        models,
    }
}

/// Out-of-fold fit of `settings` on `outcomes`: K-fold cross-validation grouped by
/// prompt (the folds `bazaar router eval` uses for `seed`); the mean log-loss of the
/// held-out predictions over every observed (prompt, model) pair. Lower is better.
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
                loss -= y * q.ln() + (1.0 - y) * (1.0 - q).ln();
                pairs += 1.0;
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
        };
        // Heavy regularisation cannot learn the math/chit-chat split; light can.
        let light = cv_log_loss(&o, s(1e-4), 4, 1);
        let heavy = cv_log_loss(&o, s(10.0), 4, 1);
        assert!(light < heavy, "{light} >= {heavy}");
        assert_eq!(light, cv_log_loss(&o, s(1e-4), 4, 1));
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
