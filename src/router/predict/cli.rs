//! `bazaar router …`: fit predictor weights from outcome rows and measure routing
//! quality on them. Returns the text to print; main.rs prints it.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;

use super::eval::{self, Options};
use super::train::{self, Settings};
use super::Weights;
use super::{ledger_rows, rows};
use crate::config::{process_env, Config};

/// `bazaar router` subcommands.
#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Fit predictor weights from outcome rows (CSV `prompt,model,score`, score 0–1), or
    /// from the gateway's own traffic (`--from-ledger`: kept prompts and their feedback).
    Train {
        /// The rows.
        #[arg(long, required_unless_present = "from_ledger")]
        data: Option<PathBuf>,
        /// Fit on the prompts the ledger kept (`[router.learn] keep_prompts`) joined with
        /// the scores posted to /v1/feedback, instead of `--data`.
        #[arg(long, conflicts_with = "data")]
        from_ledger: bool,
        /// With `--from-ledger`: the config naming the ledger (default: the embedded one).
        #[arg(long, short, requires = "from_ledger")]
        config: Option<PathBuf>,
        /// Where to write the weights (load them with `[router.predictor] file`).
        #[arg(long)]
        out: PathBuf,
        /// Choose the settings by K-fold cross-validation grouped by prompt: every
        /// combination of the (comma-separated) values given is fitted on K-1 folds and
        /// scored by held-out log-loss; the best is fitted on all rows and written.
        #[arg(long)]
        cv: Option<usize>,
        /// The seed of the cross-validation folds.
        #[arg(long, default_value_t = 17)]
        seed: u64,
        #[command(flatten)]
        fit: FitArgs,
    },
    /// Measure routing quality on outcome rows: K-fold cross-validation grouped by
    /// prompt, each held-out prompt planned by the gateway's own router.
    Eval {
        /// The rows (CSV `prompt,model,score` with optional `cost` in USD and `task`).
        #[arg(long)]
        data: PathBuf,
        /// A config whose route serves exactly the rows' models (ids as in the rows).
        #[arg(long, short)]
        config: PathBuf,
        /// The route the requests name.
        #[arg(long, default_value = "auto")]
        route: String,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Quality floors swept: `start:end:step`, 0–100.
        #[arg(long, default_value = "0:100:1")]
        floors: String,
        /// Bootstrap resamples for the confidence intervals.
        #[arg(long, default_value_t = 200)]
        bootstrap: usize,
        #[arg(long, default_value_t = 17)]
        seed: u64,
        /// Evaluate these weights on every row instead of cross-validating.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Rows added to every training fold, never evaluated.
        #[arg(long)]
        train_extra: Option<PathBuf>,
        #[command(flatten)]
        fit: FitArgs,
    },
}

/// Training settings on the command line; each takes a comma-separated list of values
/// to choose from with `train --cv`.
#[derive(Debug, Clone, clap::Args)]
pub struct FitArgs {
    /// Hashed feature buckets (a power of two).
    #[arg(long, value_delimiter = ',')]
    pub buckets: Vec<u32>,
    /// L2 strength on the shared difficulty weights.
    #[arg(long, value_delimiter = ',')]
    pub l2_shared: Vec<f64>,
    /// L2 strength on each model's own weights.
    #[arg(long, value_delimiter = ',')]
    pub l2_model: Vec<f64>,
    /// L2 strength on the dense shape features' weights.
    #[arg(long, value_delimiter = ',')]
    pub l2_dense: Vec<f64>,
    /// Count free-form prompts' n-grams also in their own buckets (true/false).
    #[arg(long, value_delimiter = ',')]
    pub split: Vec<bool>,
    /// L-BFGS iterations at most.
    #[arg(long, value_delimiter = ',')]
    pub iterations: Vec<u32>,
}

impl FitArgs {
    /// Every combination of the values given (the defaults where none is).
    fn grid(&self) -> Vec<Settings> {
        let d = Settings::default();
        let or = |v: &Vec<f64>, x: f64| if v.is_empty() { vec![x] } else { v.clone() };
        let buckets = if self.buckets.is_empty() {
            vec![d.buckets]
        } else {
            self.buckets.clone()
        };
        let iterations = if self.iterations.is_empty() {
            vec![d.iterations]
        } else {
            self.iterations.clone()
        };
        let split = if self.split.is_empty() {
            vec![d.split]
        } else {
            self.split.clone()
        };
        let mut out = Vec::new();
        for &b in &buckets {
            for &sp in &split {
                for &ls in &or(&self.l2_shared, d.l2_shared) {
                    for &lm in &or(&self.l2_model, d.l2_model) {
                        for &ld in &or(&self.l2_dense, d.l2_dense) {
                            for &it in &iterations {
                                out.push(Settings {
                                    buckets: b,
                                    split: sp,
                                    l2_shared: ls,
                                    l2_model: lm,
                                    l2_dense: ld,
                                    iterations: it,
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// The one setting given (several need `train --cv`).
    fn settings(&self) -> Result<Settings, String> {
        match &self.grid()[..] {
            [one] => Ok(*one),
            _ => Err(
                "several values for a setting: choose among them with `router train --cv K`".into(),
            ),
        }
    }
}

fn read_rows(path: &PathBuf) -> Result<rows::Outcomes, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    rows::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses `start:end:step` into the floors it names.
pub fn parse_floors(spec: &str) -> Result<Vec<f64>, String> {
    let parts: Vec<f64> = spec
        .split(':')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("floors `{spec}`: expected start:end:step"))?;
    let [start, end, step] = parts[..] else {
        return Err(format!("floors `{spec}`: expected start:end:step"));
    };
    if step.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        || end < start
        || (end - start) / step > 100_000.0
    {
        return Err(format!(
            "floors `{spec}`: expected start <= end and a step > 0"
        ));
    }
    let n = ((end - start) / step + 1e-9).floor() as usize;
    Ok((0..=n).map(|i| start + i as f64 * step).collect())
}

/// Runs a `bazaar router` subcommand; the text to print, or what went wrong.
pub fn run(command: RouterCommand) -> Result<String, String> {
    match command {
        RouterCommand::Train {
            data,
            from_ledger,
            config,
            out,
            cv,
            seed,
            fit,
        } => {
            let (outcomes, name) = match data.filter(|_| !from_ledger) {
                Some(data) => (
                    read_rows(&data)?,
                    data.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                None => (
                    ledger_rows::outcomes(&ledger_rows::read(config.as_deref())?)?,
                    "the ledger's kept prompts and feedback".to_string(),
                ),
            };
            let mut report = String::new();
            let settings = match cv {
                None => fit.settings()?,
                Some(k) if k < 2 => return Err("--cv needs at least 2 folds".into()),
                Some(k) => {
                    let mut best: Option<(f64, Settings)> = None;
                    for s in fit.grid() {
                        let loss = train::cv_log_loss(&outcomes, s, k, seed);
                        report.push_str(&format!(
                            "cv {k} folds: {}: log-loss {loss:.5}\n",
                            s.describe()
                        ));
                        if best.is_none_or(|(b, _)| loss < b) {
                            best = Some((loss, s));
                        }
                    }
                    let (loss, s) = best.ok_or("no settings to choose from")?;
                    report.push_str(&format!("chosen: {} (log-loss {loss:.5})\n", s.describe()));
                    s
                }
            };
            let weights = train::fit(
                &outcomes,
                None,
                settings,
                &format!("fitted on {name}: {} prompts", outcomes.prompts.len()),
            );
            let bytes = weights.to_bytes();
            std::fs::write(&out, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            Ok(format!(
                "{report}{}: {} bytes, {} prompts, models {}\n",
                out.display(),
                bytes.len(),
                outcomes.prompts.len(),
                outcomes.models.join(", ")
            ))
        }
        RouterCommand::Eval {
            data,
            config,
            route,
            folds,
            floors,
            bootstrap,
            seed,
            weights,
            train_extra,
            fit,
        } => {
            let outcomes = read_rows(&data)?;
            let cfg = Config::load_offline(&config, &process_env)
                .map_err(|e| format!("{}: {e}", config.display()))?;
            let fixed = match weights {
                Some(path) => {
                    let bytes = std::fs::read(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    Some(Arc::new(
                        Weights::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?,
                    ))
                }
                None => None,
            };
            let options = Options {
                route,
                folds,
                floors: parse_floors(&floors)?,
                bootstrap,
                seed,
                settings: fit.settings()?,
                fixed,
                extra: train_extra.as_ref().map(read_rows).transpose()?,
            };
            let report = eval::evaluate(&outcomes, &cfg, &options)?;
            Ok(report.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_parse() {
        assert_eq!(parse_floors("0:2:0.5").unwrap(), [0.0, 0.5, 1.0, 1.5, 2.0]);
        assert!(parse_floors("5:1:1").is_err());
        assert!(parse_floors("0:1").is_err());
    }
}
