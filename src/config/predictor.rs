//! `[router.predictor]` resolved: which quality-predictor weights the router uses. The
//! weights are loaded and checked here, so a file that does not load fails the config
//! (and a reload keeps the old one).

use std::sync::{Arc, OnceLock};

use crate::catalog::predictor::{Weights, WeightsError, EMBEDDED};

/// Why `[router.predictor]` did not resolve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredictorLoadError {
    #[error("embedded weights: {0}")]
    Embedded(WeightsError),
    #[error("cannot read `{path}`: {reason}")]
    Read { path: String, reason: String },
    #[error("`{path}`: {source}")]
    Weights { path: String, source: WeightsError },
}

/// How the router predicts quality; lives in the resolved config so a reload swaps it.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictorConfig {
    /// `None`: the predictor is off and quality is the catalog prior (`enabled = false`).
    pub weights: Option<Arc<Weights>>,
    /// Where the weights came from (`embedded` or the file path), for explanations.
    pub source: String,
}

impl PredictorConfig {
    /// The embedded weights (what a config without `[router.predictor]` gets).
    pub fn embedded() -> Result<PredictorConfig, WeightsError> {
        // Parsed once per process and shared by every config (and reload).
        static PARSED: OnceLock<Result<Arc<Weights>, WeightsError>> = OnceLock::new();
        let weights = PARSED
            .get_or_init(|| Weights::parse(EMBEDDED).map(Arc::new))
            .clone()?;
        Ok(PredictorConfig {
            weights: Some(weights),
            source: "embedded".into(),
        })
    }

    /// `[router.predictor]` resolved: off, the embedded weights, or the weights in `file`
    /// (refused with the reason when it does not parse or fits another feature layout).
    pub fn resolve(
        enabled: bool,
        file: Option<&str>,
    ) -> Result<PredictorConfig, PredictorLoadError> {
        if !enabled {
            return Ok(PredictorConfig::off());
        }
        match file {
            None => PredictorConfig::embedded().map_err(PredictorLoadError::Embedded),
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| PredictorLoadError::Read {
                    path: path.to_string(),
                    reason: e.to_string(),
                })?;
                let weights =
                    Weights::parse(&bytes).map_err(|source| PredictorLoadError::Weights {
                        path: path.to_string(),
                        source,
                    })?;
                Ok(PredictorConfig {
                    weights: Some(Arc::new(weights)),
                    source: path.to_string(),
                })
            }
        }
    }

    /// The predictor switched off: quality is the prior.
    pub fn off() -> PredictorConfig {
        PredictorConfig {
            weights: None,
            source: "off".into(),
        }
    }
}
