//! Imports price lists in LiteLLM's (`model_prices_and_context_window.json`),
//! OpenRouter's (`GET /api/v1/models`) and models.dev's (`api.json`) JSON formats into a
//! bazaar catalog. Prices are converted to integer micro-dollars per million tokens
//! through their decimal text, never through float arithmetic.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    parse_usd_micros, Capabilities, Catalog, CatalogError, Limits, ModelEntry, ModelKind, Offer,
    Price, QualityPriors, Tier,
};

/// The formats `bazaar catalog import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    LiteLlm,
    OpenRouter,
    /// models.dev's `api.json`: providers, each with its models (USD per million tokens).
    ModelsDev,
}

impl std::str::FromStr for Format {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Format, CatalogError> {
        match s {
            "litellm" => Ok(Format::LiteLlm),
            "openrouter" => Ok(Format::OpenRouter),
            "models.dev" | "modelsdev" => Ok(Format::ModelsDev),
            other => Err(CatalogError::UnknownFormat(other.to_string())),
        }
    }
}

/// Guesses the format: OpenRouter's list has a top-level `data` array; models.dev's maps
/// provider ids to objects with a `models` map (or nests that map under `providers`).
pub fn detect(value: &Value) -> Format {
    if value.get("data").is_some_and(Value::is_array) {
        Format::OpenRouter
    } else if models_dev_providers(value).is_some() {
        Format::ModelsDev
    } else {
        Format::LiteLlm
    }
}

/// models.dev's provider map, from `api.json` or from a `{"providers": …}` extract.
fn models_dev_providers(value: &Value) -> Option<&serde_json::Map<String, Value>> {
    let providers = value
        .get("providers")
        .and_then(Value::as_object)
        .or_else(|| value.as_object())?;
    let looks_right = !providers.is_empty()
        && providers
            .values()
            .all(|p| p.get("models").is_some_and(Value::is_object));
    looks_right.then_some(providers)
}

/// A per-token USD price (number or decimal string) as micro-dollars per million tokens.
pub fn per_token_micros(value: &Value) -> Option<u64> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => match n.as_f64() {
            // Display of f64 is the shortest text that round-trips, without an exponent.
            Some(f) if f.is_finite() && f >= 0.0 => format!("{f}"),
            _ => return None,
        },
        _ => return None,
    };
    parse_usd_micros(&shift_decimal(&text, 6)?)
}

/// Multiplies a plain decimal text by 10^places by moving its point.
fn shift_decimal(text: &str, places: usize) -> Option<String> {
    if text.starts_with('-') || text.contains(['e', 'E']) {
        return None;
    }
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let mut frac = frac.to_string();
    while frac.len() < places {
        frac.push('0');
    }
    let (moved, rest) = frac.split_at(places);
    let whole = format!("{whole}{moved}");
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    Some(if rest.trim_end_matches('0').is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{}", rest.trim_end_matches('0'))
    })
}

/// LiteLLM's provider names → bazaar provider (preset) ids, with each one's tier.
fn litellm_provider(name: &str) -> Option<(&'static str, Tier)> {
    Some(match name {
        "openai" => ("openai", Tier::Frontier),
        "anthropic" => ("anthropic", Tier::Frontier),
        "gemini" => ("gemini", Tier::Frontier),
        "xai" => ("xai", Tier::Frontier),
        "together_ai" => ("together", Tier::OpenHosted),
        "groq" => ("groq", Tier::OpenHosted),
        "deepinfra" => ("deepinfra", Tier::OpenHosted),
        "fireworks_ai" => ("fireworks", Tier::OpenHosted),
        "deepseek" => ("deepseek", Tier::OpenHosted),
        "mistral" => ("mistral", Tier::OpenHosted),
        "moonshot" => ("moonshot", Tier::OpenHosted),
        "dashscope" => ("dashscope", Tier::OpenHosted),
        "cerebras" => ("cerebras", Tier::OpenHosted),
        "openrouter" => ("openrouter", Tier::OpenHosted),
        "ollama" | "ollama_chat" => ("ollama", Tier::Local),
        _ => return None,
    })
}

/// Reads either format into a catalog whose version names the file's origin.
pub fn import(text: &str, format: Option<Format>, origin: &str) -> Result<Catalog, CatalogError> {
    let value: Value = serde_json::from_str(text).map_err(CatalogError::NotJson)?;
    let format = format.unwrap_or_else(|| detect(&value));
    let models = match format {
        Format::LiteLlm => litellm(&value, origin)?,
        Format::OpenRouter => openrouter(&value, origin)?,
        Format::ModelsDev => models_dev(&value, origin)?,
    };
    Ok(Catalog::new(format!("import:{origin}"), models))
}

fn litellm(value: &Value, origin: &str) -> Result<BTreeMap<String, ModelEntry>, CatalogError> {
    let map = value
        .as_object()
        .ok_or(CatalogError::Shape("a LiteLLM price list is a JSON object"))?;
    let mut models = BTreeMap::new();
    for (key, entry) in map {
        if key == "sample_spec" {
            continue;
        }
        let Some(provider_name) = entry.get("litellm_provider").and_then(Value::as_str) else {
            continue;
        };
        let Some((provider, tier)) = litellm_provider(provider_name) else {
            continue;
        };
        let kind = match entry.get("mode").and_then(Value::as_str) {
            Some("chat") => ModelKind::Chat,
            Some("embedding") => ModelKind::Embedding,
            _ => continue,
        };
        let upstream = key
            .split_once('/')
            .filter(|(p, _)| litellm_provider(p).is_some() || *p == provider_name)
            .map(|(_, m)| m)
            .unwrap_or(key);
        let flag = |k: &str| entry.get(k).and_then(Value::as_bool).unwrap_or(false);
        let source = format!("litellm import ({origin})");
        let price = Price {
            input: entry.get("input_cost_per_token").and_then(per_token_micros),
            cached_input: entry
                .get("cache_read_input_token_cost")
                .and_then(per_token_micros),
            cache_write: entry
                .get("cache_creation_input_token_cost")
                .and_then(per_token_micros),
            cache_write_1h: entry
                .get("cache_creation_input_token_cost_above_1hr")
                .and_then(per_token_micros),
            output: entry
                .get("output_cost_per_token")
                .and_then(per_token_micros),
            reasoning: entry
                .get("output_cost_per_reasoning_token")
                .and_then(per_token_micros),
        };
        let offer = Offer {
            provider: provider.to_string(),
            upstream: upstream.to_string(),
            tier,
            price: (price != Price::default()).then_some(price),
            limits: Limits {
                context: entry.get("max_input_tokens").and_then(Value::as_u64),
                max_output: entry.get("max_output_tokens").and_then(Value::as_u64),
            },
            capabilities: Some(Capabilities {
                tools: flag("supports_function_calling"),
                vision: flag("supports_vision"),
                json_schema: flag("supports_response_schema"),
                reasoning: flag("supports_reasoning"),
                embeddings: kind == ModelKind::Embedding,
            }),
            quantization: None,
            trains_on_prompts: None,
            sources: imported_sources(source),
        };
        push_offer(&mut models, upstream, kind, offer);
    }
    Ok(models)
}

fn openrouter(value: &Value, origin: &str) -> Result<BTreeMap<String, ModelEntry>, CatalogError> {
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or(CatalogError::Shape(
            "an OpenRouter model list has a `data` array",
        ))?;
    let mut models = BTreeMap::new();
    for m in data {
        let Some(id) = m.get("id").and_then(Value::as_str) else {
            continue;
        };
        let pricing = m.get("pricing").cloned().unwrap_or(Value::Null);
        let price = Price {
            input: pricing.get("prompt").and_then(per_token_micros),
            cached_input: pricing.get("input_cache_read").and_then(per_token_micros),
            cache_write: pricing.get("input_cache_write").and_then(per_token_micros),
            cache_write_1h: None,
            output: pricing.get("completion").and_then(per_token_micros),
            reasoning: pricing
                .get("internal_reasoning")
                .and_then(per_token_micros)
                .filter(|p| *p > 0),
        };
        let params: Vec<&str> = m
            .get("supported_parameters")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let inputs: Vec<&str> = m
            .pointer("/architecture/input_modalities")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let source = format!("openrouter import ({origin})");
        let offer = Offer {
            provider: "openrouter".into(),
            upstream: id.to_string(),
            tier: Tier::OpenHosted,
            price: (price != Price::default()).then_some(price),
            limits: Limits {
                context: m.get("context_length").and_then(Value::as_u64),
                max_output: m
                    .pointer("/top_provider/max_completion_tokens")
                    .and_then(Value::as_u64),
            },
            capabilities: Some(Capabilities {
                tools: params.contains(&"tools"),
                vision: inputs.contains(&"image"),
                json_schema: params.contains(&"structured_outputs")
                    || params.contains(&"response_format"),
                reasoning: params.contains(&"reasoning"),
                embeddings: false,
            }),
            quantization: None,
            trains_on_prompts: None,
            sources: imported_sources(source),
        };
        push_offer(&mut models, id, ModelKind::Chat, offer);
    }
    Ok(models)
}

/// models.dev's provider ids → bazaar provider (preset) ids, with each one's tier.
fn models_dev_provider(name: &str) -> Option<(&'static str, Tier)> {
    Some(match name {
        "openai" => ("openai", Tier::Frontier),
        "anthropic" => ("anthropic", Tier::Frontier),
        "google" => ("gemini", Tier::Frontier),
        "xai" => ("xai", Tier::Frontier),
        "togetherai" => ("together", Tier::OpenHosted),
        "groq" => ("groq", Tier::OpenHosted),
        "deepinfra" => ("deepinfra", Tier::OpenHosted),
        "fireworks-ai" => ("fireworks", Tier::OpenHosted),
        "cerebras" => ("cerebras", Tier::OpenHosted),
        "deepseek" => ("deepseek", Tier::OpenHosted),
        "mistral" => ("mistral", Tier::OpenHosted),
        "moonshotai" => ("moonshot", Tier::OpenHosted),
        "zai" => ("zhipu", Tier::OpenHosted),
        "alibaba" => ("dashscope", Tier::OpenHosted),
        "openrouter" => ("openrouter", Tier::OpenHosted),
        "lmstudio" => ("lmstudio", Tier::Local),
        _ => return None,
    })
}

/// A models.dev price (USD per million tokens, a JSON number) as micro-dollars.
fn per_mtok_micros(value: &Value) -> Option<u64> {
    match value {
        // Display of f64 is the shortest text that round-trips, without an exponent.
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .and_then(|f| parse_usd_micros(&format!("{f}"))),
        Value::String(s) => parse_usd_micros(s),
        _ => None,
    }
}

fn models_dev(value: &Value, origin: &str) -> Result<BTreeMap<String, ModelEntry>, CatalogError> {
    let providers = models_dev_providers(value).ok_or(CatalogError::Shape(
        "a models.dev list maps provider ids to objects with a `models` map",
    ))?;
    let mut models = BTreeMap::new();
    for (name, p) in providers {
        let Some((provider, tier)) = models_dev_provider(name) else {
            continue;
        };
        let Some(listed) = p.get("models").and_then(Value::as_object) else {
            continue;
        };
        for (upstream, m) in listed {
            let outputs: Vec<&str> = m
                .pointer("/modalities/output")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let kind = if upstream.contains("embed") {
                ModelKind::Embedding
            } else if outputs.is_empty() || outputs == ["text"] {
                ModelKind::Chat
            } else {
                continue; // images, speech, video: not served by a chat gateway
            };
            let cost = m.get("cost").cloned().unwrap_or(Value::Null);
            let price = Price {
                input: cost.get("input").and_then(per_mtok_micros),
                cached_input: cost.get("cache_read").and_then(per_mtok_micros),
                cache_write: cost.get("cache_write").and_then(per_mtok_micros),
                cache_write_1h: None,
                output: cost.get("output").and_then(per_mtok_micros),
                reasoning: cost.get("reasoning").and_then(per_mtok_micros),
            };
            let price = if tier == Tier::Local {
                Some(Price::FREE)
            } else {
                (price != Price::default()).then_some(price)
            };
            let inputs: Vec<&str> = m
                .pointer("/modalities/input")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let flag = |k: &str| m.get(k).and_then(Value::as_bool);
            let capabilities = flag("tool_call").map(|tools| Capabilities {
                tools,
                vision: inputs.contains(&"image"),
                json_schema: flag("structured_output").unwrap_or(tools),
                reasoning: flag("reasoning").unwrap_or(false),
                embeddings: kind == ModelKind::Embedding,
            });
            let positive = |k: &str| {
                m.pointer(&format!("/limit/{k}"))
                    .and_then(Value::as_u64)
                    .filter(|v| *v > 0)
            };
            let source = format!("models.dev import ({origin})");
            let offer = Offer {
                provider: provider.to_string(),
                upstream: upstream.clone(),
                tier,
                price,
                limits: Limits {
                    context: positive("context"),
                    max_output: positive("output"),
                },
                capabilities,
                quantization: None,
                trains_on_prompts: None,
                sources: imported_sources(source),
            };
            push_offer(&mut models, upstream, kind, offer);
        }
    }
    Ok(models)
}

/// An imported offer's sources: its price, limits and capabilities all come from `source`.
fn imported_sources(source: String) -> BTreeMap<String, String> {
    ["price", "limits", "capabilities"]
        .into_iter()
        .map(|k| (k.to_string(), source.clone()))
        .collect()
}

fn push_offer(models: &mut BTreeMap<String, ModelEntry>, id: &str, kind: ModelKind, offer: Offer) {
    models
        .entry(id.to_string())
        .or_insert_with(|| ModelEntry {
            kind,
            aliases: Vec::new(),
            offers: Vec::new(),
            quality: QualityPriors::default(),
            sources: BTreeMap::new(),
        })
        .offers
        .push(offer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_token_prices_convert_exactly() {
        assert_eq!(
            per_token_micros(&serde_json::json!("0.0000025")),
            Some(2_500_000)
        );
        assert_eq!(
            per_token_micros(&serde_json::json!(2.5e-6)),
            Some(2_500_000)
        );
        assert_eq!(per_token_micros(&serde_json::json!(1.5e-7)), Some(150_000));
        assert_eq!(per_token_micros(&serde_json::json!("0")), Some(0));
        assert_eq!(per_token_micros(&serde_json::json!("-1")), None);
    }

    #[test]
    fn reads_openrouter_lists() {
        let text = r#"{"data":[{"id":"meta-llama/llama-3.3-70b-instruct","context_length":131072,
            "pricing":{"prompt":"0.00000013","completion":"0.0000004","input_cache_read":"0"},
            "top_provider":{"max_completion_tokens":16384},
            "architecture":{"input_modalities":["text"]},
            "supported_parameters":["tools","response_format","temperature"]}]}"#;
        let c = import(text, None, "fixture").unwrap();
        let (_, m, o) = c
            .offer_by_upstream("openrouter", "meta-llama/llama-3.3-70b-instruct")
            .unwrap();
        assert_eq!(m.kind, ModelKind::Chat);
        let p = o.price.unwrap();
        assert_eq!(
            (p.input, p.output, p.cached_input),
            (Some(130_000), Some(400_000), Some(0))
        );
        assert_eq!(o.limits.context, Some(131_072));
        assert!(o.capabilities.unwrap().tools && !o.capabilities.unwrap().vision);
    }

    #[test]
    fn reads_litellm_lists() {
        let text = r#"{"sample_spec":{},
            "groq/llama-3.3-70b-versatile":{"litellm_provider":"groq","mode":"chat","input_cost_per_token":5.9e-7,
              "output_cost_per_token":7.9e-7,"max_input_tokens":128000,"max_output_tokens":32768,"supports_function_calling":true},
            "text-embedding-3-small":{"litellm_provider":"openai","mode":"embedding","input_cost_per_token":2e-8,"output_cost_per_token":0},
            "some/image-model":{"litellm_provider":"openai","mode":"image_generation"}}"#;
        let c = import(text, Some(Format::LiteLlm), "fixture").unwrap();
        assert_eq!(c.models.len(), 2);
        let (_, _, o) = c
            .offer_by_upstream("groq", "llama-3.3-70b-versatile")
            .unwrap();
        assert_eq!(o.price.unwrap().input, Some(590_000));
        assert_eq!(o.tier, Tier::OpenHosted);
        let (_, m, _) = c
            .offer_by_upstream("openai", "text-embedding-3-small")
            .unwrap();
        assert_eq!(m.kind, ModelKind::Embedding);
    }

    /// Real LiteLLM entries (a cross-section of the list, kept in the repo): each mapped
    /// provider's chat and embedding entries become offers, every other entry is skipped.
    #[test]
    fn imports_a_real_litellm_sample() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/catalog/litellm_sample.json"
        ));
        let c = import(text, None, "sample").unwrap();
        let mut offers: Vec<(&str, &str)> = c
            .models
            .values()
            .flat_map(|m| m.offers.iter())
            .map(|o| (o.provider.as_str(), o.upstream.as_str()))
            .collect();
        offers.sort();
        assert_eq!(
            offers,
            [
                ("anthropic", "claude-sonnet-4-5"),
                ("cerebras", "llama3.1-8b"),
                ("dashscope", "qwen-turbo"),
                ("deepinfra", "meta-llama/Meta-Llama-3.1-8B-Instruct"),
                ("deepseek", "deepseek-chat"),
                ("deepseek", "deepseek-reasoner"),
                ("fireworks", "accounts/fireworks/models/deepseek-v3"),
                ("gemini", "gemini-2.5-flash"),
                ("gemini", "gemini-embedding-001"),
                ("groq", "meta-llama/llama-prompt-guard-2-22m"),
                ("mistral", "mistral-embed"),
                ("mistral", "mistral-large-latest"),
                ("moonshot", "kimi-k2.5"),
                ("ollama", "llama3.1"),
                ("openai", "gpt-4o"),
                ("openai", "gpt-4o-mini"),
                ("openai", "text-embedding-3-small"),
                ("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
                ("xai", "grok-4.20-0309-reasoning"),
            ]
        );
        let price = |provider: &str, upstream: &str| {
            c.offer_by_upstream(provider, upstream)
                .and_then(|(_, _, o)| o.price)
                .unwrap()
        };
        let gpt = price("openai", "gpt-4o");
        assert_eq!(
            (gpt.input, gpt.cached_input, gpt.output),
            (Some(2_500_000), Some(1_250_000), Some(10_000_000))
        );
        let flash = price("gemini", "gemini-2.5-flash");
        assert_eq!(
            (flash.input, flash.reasoning),
            (Some(300_000), Some(2_500_000))
        );
        assert_eq!(price("ollama", "llama3.1"), Price::FREE);
        let (_, embed, _) = c.offer_by_upstream("mistral", "mistral-embed").unwrap();
        assert_eq!(embed.kind, ModelKind::Embedding);
        let (_, _, claude) = c
            .offer_by_upstream("anthropic", "claude-sonnet-4-5")
            .unwrap();
        assert_eq!(claude.limits.context, Some(200_000));
        assert_eq!(claude.tier, Tier::Frontier);
    }
}
