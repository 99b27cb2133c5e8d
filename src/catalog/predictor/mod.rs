//! The quality predictor's data: the prompt features it reads and the weights file that
//! maps them to a quality per model. Facts about models, like the rest of the catalog:
//! config loads and checks weights with these types, the router scores with them.

pub mod features;
pub mod view;
pub mod weights;

pub use features::Features;
pub use weights::{ModelTerms, Weights, WeightsError};

/// The weights that ship in the binary, fitted on the RouteLLM MMLU and GSM8K rows
/// (see docs/routing.md for how and with what cross-validated result).
pub static EMBEDDED: &[u8] = include_bytes!("routellm.bzq");
