//! `bazaar router …`: fit predictor weights from outcome rows and measure routing
//! quality on them. Returns the text to print; main.rs prints it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;

use super::eval::{self, EvalError, Options};
use super::rows::{self, RowsError};
use super::train::{self, RowWeights, Settings};
use super::weights::MAX_RANK;
use super::{ledger_rows, Weights, WeightsError};
use crate::config::{process_env, Config};

/// Why a `bazaar router` command failed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Rows { path: PathBuf, source: RowsError },
    #[error("{}: {source}", path.display())]
    Weights { path: PathBuf, source: WeightsError },
    /// The config (or the ledger it names) could not be loaded or read.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    LedgerRows(#[from] ledger_rows::LedgerRowsError),
    /// The command line asks for something the command cannot do.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Eval(#[from] EvalError),
}

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
        // Boxed, so the command line's enum stays small.
        #[command(flatten)]
        fit: Box<FitArgs>,
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
        /// Also sweep the cost weight under `balanced` (0, then 100 steps from 0.01 to
        /// 10,000 per $ per 1k calls, a quality point weighing 1).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        balanced: bool,
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
        /// Also print every router's figures on each `task` label's prompts alone (the
        /// same decisions, from fits on all the rows' folds).
        #[arg(long)]
        by_task: bool,
        #[command(flatten)]
        fit: Box<FitArgs>,
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
    /// Dimensions of the learned prompt projection shared by the models (0: none).
    #[arg(long, value_delimiter = ',')]
    pub rank: Vec<u32>,
    /// L2 strength on the projection and the models' factors.
    #[arg(long, value_delimiter = ',')]
    pub l2_factors: Vec<f64>,
    /// What the rows' `weight` column weighs: `all` (default: one fit, every term), or
    /// `grams`: a fit with every prompt at weight 1, then only the word-gram weights
    /// refitted with the rows' weights, the shape features' weights and each model's
    /// bias held (prompts of shapes the rows lack are predicted as unweighted).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub row_weights: Vec<RowWeights>,
    /// With `--row-weights grams`: the L2 strength on the shared gram weights in the
    /// second stage (default: `--l2-shared`).
    #[arg(long, value_delimiter = ',')]
    pub refit_l2_shared: Vec<f64>,
}

/// Every setting of `grid` with each of `values` in turn (unchanged when none is given).
fn expand<T: Copy>(
    grid: Vec<Settings>,
    values: &[T],
    set: impl Fn(&mut Settings, T),
) -> Vec<Settings> {
    if values.is_empty() {
        return grid;
    }
    grid.iter()
        .flat_map(|s| {
            values.iter().map(|v| {
                let mut s = *s;
                set(&mut s, *v);
                s
            })
        })
        .collect()
}

impl FitArgs {
    /// Every combination of the values given (the defaults where none is).
    fn grid(&self) -> Vec<Settings> {
        let g = vec![Settings::default()];
        let g = expand(g, &self.buckets, |s, v| s.buckets = v);
        let g = expand(g, &self.split, |s, v| s.split = v);
        let g = expand(g, &self.l2_shared, |s, v| s.l2_shared = v);
        let g = expand(g, &self.l2_model, |s, v| s.l2_model = v);
        let g = expand(g, &self.l2_dense, |s, v| s.l2_dense = v);
        let g = expand(g, &self.iterations, |s, v| s.iterations = v);
        let g = expand(g, &self.rank, |s, v| s.rank = v);
        let g = expand(g, &self.l2_factors, |s, v| s.l2_factors = v);
        let g = expand(g, &self.row_weights, |s, v| s.row_weights = v);
        expand(g, &self.refit_l2_shared, |s, v| s.refit_l2_shared = Some(v))
    }

    /// Every combination, each checked.
    fn checked_grid(&self) -> Result<Vec<Settings>, RouterError> {
        let grid = self.grid();
        match grid.iter().find(|s| s.rank > MAX_RANK) {
            Some(s) => Err(RouterError::Usage(format!(
                "--rank {}: at most {MAX_RANK}",
                s.rank
            ))),
            None => Ok(grid),
        }
    }

    /// The one setting given (several need `train --cv`).
    fn settings(&self) -> Result<Settings, RouterError> {
        match &self.checked_grid()?[..] {
            [one] => Ok(*one),
            _ => Err(RouterError::Usage(
                "several values for a setting: choose among them with `router train --cv K`".into(),
            )),
        }
    }
}

fn read_rows(path: &Path) -> Result<rows::Outcomes, RouterError> {
    let text = std::fs::read_to_string(path).map_err(|source| RouterError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    rows::parse(&text).map_err(|source| RouterError::Rows {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses `start:end:step` into the floors it names.
pub fn parse_floors(spec: &str) -> Result<Vec<f64>, RouterError> {
    let bad = |what: &str| RouterError::Usage(format!("floors `{spec}`: expected {what}"));
    let parts: Vec<f64> = spec
        .split(':')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("start:end:step"))?;
    let [start, end, step] = parts[..] else {
        return Err(bad("start:end:step"));
    };
    if step.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        || end < start
        || (end - start) / step > 100_000.0
    {
        return Err(bad("start <= end and a step > 0"));
    }
    let n = ((end - start) / step + 1e-9).floor() as usize;
    Ok((0..=n).map(|i| start + i as f64 * step).collect())
}

/// Runs a `bazaar router` subcommand; the text to print, or what went wrong.
pub fn run(command: RouterCommand) -> Result<String, RouterError> {
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
                Some(k) if k < 2 => {
                    return Err(RouterError::Usage("--cv needs at least 2 folds".into()))
                }
                Some(k) => {
                    let mut best: Option<(f64, Settings)> = None;
                    for s in fit.checked_grid()? {
                        let loss = train::cv_log_loss(&outcomes, s, k, seed);
                        report.push_str(&format!(
                            "cv {k} folds: {}: log-loss {loss:.5}\n",
                            s.describe()
                        ));
                        if best.is_none_or(|(b, _)| loss < b) {
                            best = Some((loss, s));
                        }
                    }
                    let (loss, s) = best
                        .ok_or_else(|| RouterError::Usage("no settings to choose from".into()))?;
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
            std::fs::write(&out, &bytes).map_err(|source| RouterError::Write {
                path: out.clone(),
                source,
            })?;
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
            balanced,
            bootstrap,
            seed,
            weights,
            train_extra,
            by_task,
            fit,
        } => {
            let outcomes = read_rows(&data)?;
            let cfg = Config::load_offline(&config, &process_env)
                .map_err(|e| RouterError::Config(format!("{}: {e}", config.display())))?;
            let fixed = match weights {
                Some(path) => {
                    let bytes = std::fs::read(&path).map_err(|source| RouterError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    let weights = Weights::parse(&bytes)
                        .map_err(|source| RouterError::Weights { path, source })?;
                    Some(Arc::new(weights))
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
                extra: train_extra.as_deref().map(read_rows).transpose()?,
                cost_weights: if balanced {
                    eval::default_cost_weights()
                } else {
                    Vec::new()
                },
                by_task,
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
