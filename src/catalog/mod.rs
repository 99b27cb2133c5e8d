//! The model catalog: what each model is, who serves it under which id, what it costs
//! and can do, and how good it is per task. A built-in catalog ships in the binary
//! (`builtin.rs`); config overrides and imports merge into it, and `facts.rs` folds an
//! entry into what routing needs. Depends on nothing else in the crate; config, the
//! router and billing read it.

pub mod builtin;
pub mod entry;
pub mod facts;
pub mod import;
pub mod predictor;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use entry::{parse_usd_micros, Capabilities, Limits, Price, Tier};
pub use facts::Facts;

/// What can be wrong with a catalog or a name in it; the message is what a person reads.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown tier `{0}`; expected frontier, open-hosted or local")]
    UnknownTier(String),
    #[error("unknown format `{0}`; expected litellm, openrouter or models.dev")]
    UnknownFormat(String),
    #[error("not a bazaar catalog: {0}")]
    NotACatalog(serde_json::Error),
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// An imported price list whose top level is not what its format says.
    #[error("{0}")]
    Shape(&'static str),
    #[error("`{0}` is not in the catalog")]
    UnknownModel(String),
    #[error("{0}")]
    Render(serde_json::Error),
}

/// Quality priors (0–100) per task category; absent where no score exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityPriors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coding: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub math: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<f64>,
}

/// One provider's offer of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// A provider id or preset id (`groq`, `ollama`, …).
    pub provider: String,
    /// The provider's own id for the model.
    pub upstream: String,
    pub tier: Tier,
    /// `None`: the price is unknown (never billed as free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    #[serde(default)]
    pub limits: Limits,
    /// `None`: what it can do is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trains_on_prompts: Option<bool>,
    /// Where each figure came from (`"price.input": "models.dev 2026-07-02"`).
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
}

impl Offer {
    /// Takes the figures `newer` states (price, limits, capabilities, quantisation, data
    /// policy) with their sources; what it leaves unknown keeps its current value.
    pub fn update(&mut self, newer: Offer) {
        let replace = |prefix: &str, sources: &mut BTreeMap<String, String>| {
            sources.retain(|k, _| !k.starts_with(prefix));
            for (k, v) in &newer.sources {
                if k.starts_with(prefix) {
                    sources.insert(k.clone(), v.clone());
                }
            }
        };
        if let Some(price) = newer.price {
            self.price = Some(price);
            replace("price", &mut self.sources);
        }
        if newer.limits.context.is_some() || newer.limits.max_output.is_some() {
            self.limits.context = newer.limits.context.or(self.limits.context);
            self.limits.max_output = newer.limits.max_output.or(self.limits.max_output);
            replace("limits", &mut self.sources);
        }
        if let Some(caps) = newer.capabilities {
            self.capabilities = Some(caps);
            replace("capabilities", &mut self.sources);
        }
        if newer.quantization.is_some() {
            self.quantization = newer.quantization.clone();
        }
        if newer.trains_on_prompts.is_some() {
            self.trains_on_prompts = newer.trains_on_prompts;
        }
    }
}

/// What a model is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    #[default]
    Chat,
    Embedding,
}

/// One model and every offer of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    #[serde(default)]
    pub kind: ModelKind,
    /// Other ids clients may use for it (`qwen3:8b` for `qwen3-8b`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub offers: Vec<Offer>,
    #[serde(default)]
    pub quality: QualityPriors,
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
}

impl ModelEntry {
    /// The capabilities of the first offer that states them (model-level facts).
    pub fn capabilities(&self) -> Option<Capabilities> {
        self.offers.iter().find_map(|o| o.capabilities)
    }
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Recorded on every ledger row: which catalog priced it (shared by the rows).
    #[serde(with = "crate::billing::text")]
    pub version: std::sync::Arc<str>,
    /// The date of the reference data the figures come from (`2026-07-02`); absent in
    /// an imported list that does not state one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Lookups by alias read an index built from this on first use: once a catalog has
    /// been looked up, add models only through `merge`.
    pub models: BTreeMap<String, ModelEntry>,
    /// Alias → model id, built on the first lookup that is not a model id.
    #[serde(skip)]
    alias_index: AliasIndex,
}

/// Each alias with the model that has it (the first in id order when several do), so
/// `Catalog::model` answers in one hash lookup instead of a scan of every entry. Built
/// once, on first use, from `models`; `merge` clears it. Not part of the catalog's
/// data: it is neither serialised nor compared.
#[derive(Debug, Clone, Default)]
struct AliasIndex(OnceLock<HashMap<String, String>>);

impl AliasIndex {
    /// Indexes the aliases of model `id`; an alias another model already has stays with
    /// the one first in id order.
    fn add(index: &mut HashMap<String, String>, id: &str, aliases: &[String]) {
        for a in aliases {
            match index.get_mut(a) {
                Some(k) if id < k.as_str() => *k = id.to_string(),
                Some(_) => {}
                None => {
                    index.insert(a.clone(), id.to_string());
                }
            }
        }
    }
}

impl PartialEq for AliasIndex {
    fn eq(&self, _: &AliasIndex) -> bool {
        true
    }
}

impl Catalog {
    /// A catalog of `models`, with no reference date, notes or sources.
    pub fn new(version: String, models: BTreeMap<String, ModelEntry>) -> Catalog {
        Catalog {
            version: version.into(),
            reference_date: None,
            notes: None,
            sources: BTreeMap::new(),
            models,
            alias_index: AliasIndex::default(),
        }
    }

    /// Parses a catalog in bazaar's JSON format.
    pub fn from_json(text: &str) -> Result<Catalog, CatalogError> {
        serde_json::from_str(text).map_err(CatalogError::NotACatalog)
    }

    /// How many offers (model × provider) the catalog holds.
    pub fn offer_count(&self) -> usize {
        self.models.values().map(|m| m.offers.len()).sum()
    }

    /// The model called `id`, or the model that has `id` as an alias.
    pub fn model(&self, id: &str) -> Option<(&str, &ModelEntry)> {
        if let Some((k, m)) = self.models.get_key_value(id) {
            return Some((k.as_str(), m));
        }
        let index = self.alias_index.0.get_or_init(|| {
            let mut index = HashMap::new();
            for (k, m) in &self.models {
                AliasIndex::add(&mut index, k, &m.aliases);
            }
            index
        });
        let k = index.get(id)?;
        self.models.get_key_value(k).map(|(k, m)| (k.as_str(), m))
    }

    /// The offer of `provider` serving `upstream`, with its model id and entry.
    pub fn offer_by_upstream(
        &self,
        provider: &str,
        upstream: &str,
    ) -> Option<(&str, &ModelEntry, &Offer)> {
        self.models.iter().find_map(|(id, m)| {
            m.offers
                .iter()
                .find(|o| o.provider == provider && o.upstream == upstream)
                .map(|o| (id.as_str(), m, o))
        })
    }

    /// Every (model id, entry, offer) a provider serves.
    pub fn offers_by_provider<'a>(
        &'a self,
        provider: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a ModelEntry, &'a Offer)> + 'a {
        self.models.iter().flat_map(move |(id, m)| {
            m.offers
                .iter()
                .filter(move |o| o.provider == provider)
                .map(move |o| (id.as_str(), m, o))
        })
    }

    /// Merges `other` in (a `catalog.file` or an imported price list): an offer this
    /// catalog already has (same provider and upstream id, under whatever model id) takes
    /// the figures `other` states and keeps the rest; any other offer joins the model of
    /// the same id or alias, or a new model. Stated quality priors replace the model's.
    pub fn merge(&mut self, other: Catalog) {
        for (id, entry) in other.models {
            let mut added = Vec::new();
            for offer in entry.offers {
                let existing = self
                    .models
                    .values_mut()
                    .flat_map(|m| m.offers.iter_mut())
                    .find(|o| o.provider == offer.provider && o.upstream == offer.upstream);
                match existing {
                    Some(existing) => existing.update(offer),
                    None => added.push(offer),
                }
            }
            let known = self.model(&id).map(|(k, _)| k.to_string());
            match known.and_then(|k| self.models.get_mut(&k)) {
                Some(existing) => {
                    existing.offers.extend(added);
                    if entry.quality != QualityPriors::default() {
                        existing.quality = entry.quality;
                    }
                }
                None if !added.is_empty() => {
                    if let Some(index) = self.alias_index.0.get_mut() {
                        AliasIndex::add(index, &id, &entry.aliases);
                    }
                    self.models.insert(
                        id,
                        ModelEntry {
                            offers: added,
                            ..entry
                        },
                    );
                }
                None => {}
            }
        }
        self.version = format!("{}+{}", self.version, other.version).into();
    }
}

/// A table of the catalog (or of one model with every figure and its source) for `bazaar catalog show`.
pub fn show(catalog: &Catalog, model: Option<&str>) -> Result<String, CatalogError> {
    use std::fmt::Write;
    let usd = |m: Option<u64>| {
        m.map(|v| format!("{}.{:06}", v / 1_000_000, v % 1_000_000))
            .unwrap_or_else(|| "unknown".into())
    };
    let mut out = String::new();
    match model {
        None => {
            let _ = writeln!(
                out,
                "catalog {} (reference data of {}): {} models, {} offers",
                catalog.version,
                catalog.reference_date.as_deref().unwrap_or("unknown date"),
                catalog.models.len(),
                catalog.offer_count()
            );
            let _ = writeln!(
                out,
                "{:<24} {:<12} {:<11} {:>12} {:>12} {:>9}  upstream",
                "model", "provider", "tier", "in $/Mtok", "out $/Mtok", "context"
            );
            for (id, m) in &catalog.models {
                for o in &m.offers {
                    let p = o.price.unwrap_or_default();
                    let ctx = o
                        .limits
                        .context
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "?".into());
                    let _ = writeln!(
                        out,
                        "{id:<24} {:<12} {:<11} {:>12} {:>12} {ctx:>9}  {}",
                        o.provider,
                        o.tier.as_str(),
                        usd(p.input),
                        usd(p.output),
                        o.upstream
                    );
                }
            }
        }
        Some(id) => {
            let (id, m) = catalog
                .model(id)
                .ok_or_else(|| CatalogError::UnknownModel(id.to_string()))?;
            let json = serde_json::to_string_pretty(m).map_err(CatalogError::Render)?;
            let _ = writeln!(out, "{id} (catalog {}):\n{json}", catalog.version);
        }
    }
    Ok(out)
}
