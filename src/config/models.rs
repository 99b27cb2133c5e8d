//! The `[catalog]` and `[[models]]` sections, and the model lists of `[providers.*]`:
//! which public model ids the gateway serves, on which providers under which upstream
//! ids, with the facts routing needs (catalog merged with overrides). Resolves the
//! served-model table once per load; it never picks a backend for a call.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use super::problems::Problems;
use super::providers::ProviderConfig;
use super::raw::{RawCatalog, RawModel, RawPrice, RawProvider};
use crate::catalog::{builtin, import, Catalog, Facts, ModelKind, QualityPriors, Tier};
use crate::router::predict::KnownSlot;
use crate::router::stats::StatsSlot;
use crate::telemetry::metrics::SeriesSlot;

/// One way to serve a public model: which provider, under which upstream id. Shared
/// (`Arc`) so that a routing candidate is one reference count, not a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelTarget {
    /// Index into `Config::providers`.
    pub provider: usize,
    /// Shared so that routing copies it without allocating.
    pub upstream: Arc<str>,
    /// The public model id (shared, as above).
    pub model: Arc<str>,
    /// What routing knows about this model on this provider, resolved once at load.
    pub facts: Arc<Facts>,
    /// This backend's live stats, found by the router on its first call through this
    /// config, so that a routing decision reads them without a lookup by name.
    pub stats: StatsSlot,
    /// Which of the predictor's models this target is, found on its first prediction.
    pub known: KnownSlot,
    /// This backend's metric series, found on its first call through this config.
    pub series: SeriesSlot,
    /// The reply's `x-bazaar-backend` value (`provider/upstream`) and its
    /// `x-bazaar-route` value for a call to this model by its id, made by the server on
    /// the first call this target serves.
    pub headers: Slot<[Option<http::HeaderValue>; 2]>,
}

/// A value a config target keeps for one owner (the gateway's `Stats`, `Metrics` or the
/// predictor's `Weights`, told apart by an id), found on the first call through the
/// target and reused after. Another owner reading the same config (a test, `bazaar
/// check`) finds nothing here and looks its value up as before. Not part of the
/// config's value: slots compare equal and a clone starts empty.
pub struct Slot<T>(OnceLock<(u64, T)>);

impl<T> Slot<T> {
    /// The value `owner` kept here, if it was that owner.
    pub fn get(&self, owner: u64) -> Option<&T> {
        self.0.get().filter(|(o, _)| *o == owner).map(|(_, v)| v)
    }

    /// Keeps `value` for `owner`, unless the slot already holds one (any owner's).
    pub fn fill(&self, owner: u64, value: T) {
        let _ = self.0.set((owner, value));
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot(OnceLock::new())
    }
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot::default()
    }
}

impl<T> PartialEq for Slot<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

/// Public model id → the targets that serve it, in config order.
pub type Models = BTreeMap<String, Vec<Arc<ModelTarget>>>;

/// The built-in catalog with `catalog.file` (bazaar's format, LiteLLM's or
/// OpenRouter's) merged in; without a file, the built-in one itself, shared.
pub(super) fn load_catalog(raw: &RawCatalog, problems: &mut Problems) -> Arc<Catalog> {
    let Some(file) = &raw.file else {
        return builtin::shared().clone();
    };
    let mut catalog = builtin::builtin().clone();
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let parsed = Catalog::from_json(&text).or_else(|_| import::import(&text, None, file));
            match parsed {
                Ok(extra) => catalog.merge(extra),
                Err(m) => problems.add("catalog.file", format!("`{file}`: {m}")),
            }
        }
        Err(e) => problems.add("catalog.file", format!("cannot read `{file}`: {e}")),
    }
    Arc::new(catalog)
}

/// The provider at `index` as what it serves: each id in its `models` list (a catalog
/// id served under the provider's own upstream id, or an upstream id); when it lists
/// none (or sets `catalog = true`), every catalog offer of the provider its catalog
/// knows it as.
pub(super) struct ProviderModels<'a> {
    pub index: usize,
    pub catalog_key: &'a str,
    pub tier: Tier,
}

impl ProviderModels<'_> {
    /// Adds the provider's targets to `models`; `path` is `providers.ID`.
    pub(super) fn add(
        &self,
        raw: &RawProvider,
        path: &str,
        catalog: &Catalog,
        models: &mut Models,
        problems: &mut Problems,
    ) {
        for (i, m) in raw.models.iter().enumerate() {
            if m.trim().is_empty() {
                problems.add(format!("{path}.models[{i}]"), "is empty");
                continue;
            }
            let (public, upstream) = match catalog.model(m).and_then(|(cid, entry)| {
                entry
                    .offers
                    .iter()
                    .find(|o| o.provider == self.catalog_key)
                    .map(|o| (cid.to_string(), o.upstream.clone()))
            }) {
                Some(found) => found,
                None => (m.clone(), m.clone()),
            };
            let facts = target_facts(catalog, self.catalog_key, &public, &upstream, self.tier);
            add_target(models, &public, self.index, &upstream, facts);
        }
        // A list means exactly those models; the catalog fills in only when none is listed
        // (or when asked for with `catalog = true`).
        if raw.catalog.unwrap_or(raw.models.is_empty()) {
            for (cid, entry, offer) in catalog.offers_by_provider(self.catalog_key) {
                let facts = Facts::from_catalog(Some(offer), Some(entry), self.tier);
                add_target(models, cid, self.index, &offer.upstream, facts);
            }
        }
    }
}

/// Resolves `[[models]]`: each entry adds a target, or overrides the facts of one its
/// provider already serves. A provider that failed to resolve has been reported already.
pub(super) fn resolve_models(
    raw: &[RawModel],
    raw_providers: &BTreeMap<String, RawProvider>,
    providers: &[ProviderConfig],
    catalog: &Catalog,
    models: &mut Models,
    problems: &mut Problems,
) {
    for (i, m) in raw.iter().enumerate() {
        let path = format!("models[{i}]");
        if m.id.trim().is_empty() {
            problems.add(format!("{path}.id"), "is empty");
        }
        match providers.iter().position(|p| p.id == m.provider) {
            Some(provider) => {
                let upstream = m.upstream.clone().unwrap_or_else(|| m.id.clone());
                let cfg = &providers[provider];
                let mut facts = target_facts(catalog, &cfg.catalog_key, &m.id, &upstream, cfg.tier);
                apply_overrides(&mut facts, m, &path, problems);
                let targets = models.entry(m.id.clone()).or_default();
                match targets
                    .iter_mut()
                    .find(|t| t.provider == provider && *t.upstream == *upstream)
                {
                    // A catalog model the provider already serves: the entry overrides its facts.
                    Some(existing)
                        if !raw[..i].iter().any(|o| {
                            o.id == m.id
                                && o.provider == m.provider
                                && o.upstream.as_deref().unwrap_or(&o.id) == upstream
                        }) =>
                    {
                        Arc::make_mut(existing).facts = Arc::new(facts);
                    }
                    Some(_) => problems.add(
                        path,
                        format!("`{}` on `{}` is declared twice", m.id, m.provider),
                    ),
                    None => targets.push(Arc::new(ModelTarget {
                        provider,
                        upstream: upstream.into(),
                        model: m.id.as_str().into(),
                        facts: Arc::new(facts),
                        stats: StatsSlot::default(),
                        known: KnownSlot::default(),
                        series: SeriesSlot::default(),
                        headers: Slot::default(),
                    })),
                }
            }
            None if raw_providers.contains_key(&m.provider) => {}
            None => problems.add(
                format!("{path}.provider"),
                format!(
                    "unknown provider `{}`; declare it under [providers.{}]",
                    m.provider, m.provider
                ),
            ),
        }
    }
}

/// The catalog's other names for served models (`qwen3:8b` → `qwen3-8b`), unless a
/// served model already has that id.
pub(super) fn aliases(models: &Models, catalog: &Catalog) -> BTreeMap<String, String> {
    let mut aliases = BTreeMap::new();
    for id in models.keys() {
        if let Some((_, entry)) = catalog.model(id) {
            for alias in &entry.aliases {
                if !models.contains_key(alias) {
                    aliases.insert(alias.clone(), id.clone());
                }
            }
        }
    }
    aliases
}

/// The served models that serve chat, in id order: what a route without `models`
/// spans (embedding models are left out). Resolved once per load, not per call.
pub(super) fn chat_models(models: &Models, catalog: &Catalog) -> Vec<String> {
    models
        .keys()
        .filter(|m| match catalog.model(m) {
            Some((_, entry)) => entry.kind == ModelKind::Chat,
            None => !m.contains("embedding") && !m.contains("embed-"),
        })
        .cloned()
        .collect()
}

/// Adds a target unless the same provider already serves that upstream id for `model`.
fn add_target(models: &mut Models, model: &str, provider: usize, upstream: &str, facts: Facts) {
    let targets = models.entry(model.to_string()).or_default();
    if targets
        .iter()
        .any(|t| t.provider == provider && &*t.upstream == upstream)
    {
        return;
    }
    targets.push(Arc::new(ModelTarget {
        provider,
        upstream: upstream.into(),
        model: model.into(),
        facts: Arc::new(facts),
        stats: StatsSlot::default(),
        known: KnownSlot::default(),
        series: SeriesSlot::default(),
        headers: Slot::default(),
    }));
}

/// Facts for `model` served as `upstream` by the provider the catalog knows as `key`:
/// the exact offer if the catalog has it, else the model's own facts with an unknown
/// price (free on a local server), else nothing known.
fn target_facts(catalog: &Catalog, key: &str, model: &str, upstream: &str, tier: Tier) -> Facts {
    if let Some((_, entry, offer)) = catalog.offer_by_upstream(key, upstream) {
        return Facts::from_catalog(Some(offer), Some(entry), tier);
    }
    let entry = catalog.model(model).map(|(_, e)| e);
    Facts::from_catalog(None, entry, tier)
}

/// Applies a `[[models]]` entry's overrides to its facts.
fn apply_overrides(facts: &mut Facts, m: &RawModel, path: &str, problems: &mut Problems) {
    let mut price = |field: &str, raw: &Option<RawPrice>, slot: &mut Option<u64>| {
        if let Some(p) = raw {
            match p.micros() {
                Some(v) => *slot = Some(v),
                None => problems.add(
                    format!("{path}.{field}"),
                    "must be a non-negative USD amount per million tokens with at most 6 decimals",
                ),
            }
        }
    };
    price("input_price", &m.input_price, &mut facts.price.input);
    price(
        "cached_input_price",
        &m.cached_input_price,
        &mut facts.price.cached_input,
    );
    price(
        "cache_write_price",
        &m.cache_write_price,
        &mut facts.price.cache_write,
    );
    price(
        "cache_write_1h_price",
        &m.cache_write_1h_price,
        &mut facts.price.cache_write_1h,
    );
    price("output_price", &m.output_price, &mut facts.price.output);
    price(
        "reasoning_price",
        &m.reasoning_price,
        &mut facts.price.reasoning,
    );
    if m.context.is_some() {
        facts.limits.context = m.context;
    }
    if m.max_output.is_some() {
        facts.limits.max_output = m.max_output;
    }
    if m.tools.is_some() || m.vision.is_some() || m.json_schema.is_some() || m.reasoning.is_some() {
        let caps = facts.capabilities.get_or_insert_with(Default::default);
        caps.tools = m.tools.unwrap_or(caps.tools);
        caps.vision = m.vision.unwrap_or(caps.vision);
        caps.json_schema = m.json_schema.unwrap_or(caps.json_schema);
        caps.reasoning = m.reasoning.unwrap_or(caps.reasoning);
    }
    if let Some(q) = m.quality {
        if !(0.0..=100.0).contains(&q) {
            problems.add(format!("{path}.quality"), "must be between 0 and 100");
        }
        facts.quality = QualityPriors {
            general: Some(q),
            coding: Some(q),
            math: Some(q),
            reasoning: Some(q),
        };
    }
    if m.quantization.is_some() {
        facts.quantization = m.quantization.clone();
    }
    if m.trains_on_prompts.is_some() {
        facts.trains_on_prompts = m.trains_on_prompts;
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn a_slot_keeps_its_first_owner_value_and_a_clone_starts_empty() {
        let slot = Slot::default();
        assert_eq!(slot.get(1), None);
        slot.fill(1, "a");
        slot.fill(2, "b");
        assert_eq!(slot.get(1), Some(&"a"));
        assert_eq!(slot.get(2), None);
        assert_eq!(slot.clone().get(1), None);
        assert_eq!(slot, Slot::default());
    }

    fn env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn preset_providers_serve_their_catalog_models_with_catalog_facts() {
        let env = |name: &str| (name == "GROQ_API_KEY").then(|| "gsk".to_string());
        let cfg = Config::from_toml(
            r#"
            [providers.groq]
            api_key = "env:GROQ_API_KEY"
            [providers.ollama]
            [[models]]
            id = "llama-3.3-70b"
            provider = "groq"
            upstream = "llama-3.3-70b-versatile"
            input_price = "0.5"
            "#,
            &env,
        )
        .unwrap();
        let llama = &cfg.models["llama-3.3-70b"][0];
        assert_eq!(&*llama.upstream, "llama-3.3-70b-versatile");
        // The [[models]] entry overrides the catalog's input price and keeps the rest.
        assert_eq!(llama.facts.price.input, Some(500_000));
        assert!(llama.facts.price.output.is_some());
        assert!(llama.facts.capabilities.unwrap().tools);
        assert_eq!(llama.facts.tier, Tier::OpenHosted);
        // Local catalog models are free and reachable by their Ollama tag.
        assert_eq!(cfg.canonical("qwen3:8b"), "qwen3-8b");
        let qwen = &cfg.models["qwen3-8b"][0];
        assert_eq!(&*qwen.upstream, "qwen3:8b");
        assert_eq!(qwen.facts.price.output, Some(0));
        assert!(cfg.catalog.version.starts_with("2026-"));
        // Without a catalog file the config holds the built-in catalog itself, not a copy
        // (about 1 MB of heap).
        assert!(Arc::ptr_eq(&cfg.catalog, builtin::shared()));
    }

    #[test]
    fn catalog_file_and_bad_overrides_are_checked() {
        let err = Config::from_toml(
            r#"
            [catalog]
            file = "/nonexistent/catalog.json"
            [providers.x]
            base_url = "http://127.0.0.1:1/v1"
            tier = "local"
            cost_per_hour = "-3"
            [[models]]
            id = "m"
            provider = "x"
            input_price = "1.0000001"
            quality = 140
            "#,
            &env,
        )
        .unwrap_err();
        assert_eq!(
            err.paths(),
            [
                "catalog.file",
                "providers.x.cost_per_hour",
                "models[0].input_price",
                "models[0].quality"
            ]
        );
    }

    #[test]
    fn a_listed_model_is_served_once_and_a_repeated_entry_is_reported() {
        let err = Config::from_toml(
            r#"
            [providers.x]
            base_url = "http://127.0.0.1:1/v1"
            tier = "local"
            models = ["a", "a", " "]
            [[models]]
            id = "b"
            provider = "x"
            [[models]]
            id = "b"
            provider = "x"
            [[models]]
            id = "c"
            provider = "nowhere"
            "#,
            &env,
        )
        .unwrap_err();
        assert_eq!(
            err.one_line(),
            "providers.x.models[2]: is empty; models[1]: `b` on `x` is declared twice; \
             models[2].provider: unknown provider `nowhere`; declare it under [providers.nowhere]"
        );
    }

    #[test]
    fn aliases_point_at_served_models_only() {
        let catalog = builtin::builtin();
        let mut models = Models::new();
        models.insert("qwen3-8b".into(), Vec::new());
        let aliases = aliases(&models, catalog);
        assert_eq!(
            aliases.get("qwen3:8b").map(String::as_str),
            Some("qwen3-8b")
        );
        assert!(aliases.values().all(|id| id == "qwen3-8b"));
    }
}
