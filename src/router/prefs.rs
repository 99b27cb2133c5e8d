//! Per-request routing control without breaking plain OpenAI clients: a `bazaar`
//! object in the body, OpenRouter's `models` and `provider` objects (so OpenRouter
//! code ports unchanged), and `x-bazaar-*` headers. Parsed once, validated in full.

use std::collections::BTreeSet;

use http::{HeaderMap, HeaderName};
use serde::Deserialize;

use super::policy::{Policy, Weights};
use crate::api::openai::{check_identifier, RawObject};
use crate::api::ApiError;
use crate::catalog::{parse_usd_micros, Tier};
use crate::config::ProviderConfig;

/// The most fallback models (`models`) one request may list.
const MAX_FALLBACK_MODELS: usize = 32;

/// Ceilings on a candidate's price, in micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaxPrice {
    pub input: Option<u64>,
    pub output: Option<u64>,
}

/// Everything the caller asked of routing for this request.
#[derive(Debug, Clone, PartialEq)]
pub struct Prefs {
    pub policy: Option<Policy>,
    pub max_price: MaxPrice,
    /// Allowed tiers; `None` allows all.
    pub tiers: Option<BTreeSet<Tier>>,
    /// Provider ids to use exclusively (OpenRouter `provider.only`).
    pub only: Option<Vec<String>>,
    pub ignore: Vec<String>,
    /// Provider ids to try first, in this order (OpenRouter `provider.order`).
    pub order: Vec<String>,
    pub allow_fallbacks: bool,
    /// Only providers known to support every parameter the request uses.
    pub require_parameters: bool,
    /// Refuse providers that may train on prompts (`data_collection: "deny"`).
    pub deny_data_collection: bool,
    pub quantizations: Option<Vec<String>>,
    /// Extra models to fall back to, in order (OpenRouter `models`).
    pub models: Vec<String>,
    /// Session id for affinity (`bazaar.session` or `x-bazaar-session`).
    pub session: Option<String>,
    /// Minimum quality (0–100) for `cheapest-above-quality`.
    pub quality_floor: Option<f64>,
    /// Weights of the `balanced` utility for this request (`bazaar.weights`).
    pub weights: Option<Weights>,
    /// Seed of the draw that breaks ties. `None`: the request id's (`request_seed`, read
    /// by `build_plan` only when a plan has a tie to break), else a fresh random draw.
    pub tie_seed: Option<u64>,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            policy: None,
            max_price: MaxPrice::default(),
            tiers: None,
            only: None,
            ignore: Vec::new(),
            order: Vec::new(),
            allow_fallbacks: true,
            require_parameters: false,
            deny_data_collection: false,
            quantizations: None,
            models: Vec::new(),
            session: None,
            quality_floor: None,
            weights: None,
            tie_seed: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BazaarObject {
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    max_price: Option<PriceValue>,
    #[serde(default)]
    tiers: Option<Vec<String>>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    quality_floor: Option<f64>,
    #[serde(default)]
    weights: Option<WeightsObject>,
}

/// `bazaar.weights`: any of cost, latency, quality; a missing one is 0.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WeightsObject {
    #[serde(default)]
    cost: f64,
    #[serde(default)]
    latency: f64,
    #[serde(default)]
    quality: f64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProviderObject {
    #[serde(default)]
    order: Option<Vec<String>>,
    #[serde(default)]
    only: Option<Vec<String>>,
    #[serde(default)]
    ignore: Option<Vec<String>>,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    max_price: Option<OpenRouterMaxPrice>,
    #[serde(default)]
    allow_fallbacks: Option<bool>,
    #[serde(default)]
    require_parameters: Option<bool>,
    #[serde(default)]
    data_collection: Option<String>,
    #[serde(default)]
    quantizations: Option<Vec<String>>,
}

/// OpenRouter's `max_price`: USD per million tokens for prompt and completion.
#[derive(Deserialize, Default)]
struct OpenRouterMaxPrice {
    #[serde(default)]
    prompt: Option<PriceValue>,
    #[serde(default)]
    completion: Option<PriceValue>,
}

/// A price written as a JSON number or string, in USD per million tokens.
#[derive(Deserialize)]
#[serde(untagged)]
enum PriceValue {
    Text(String),
    Number(serde_json::Number),
}

impl PriceValue {
    fn micros(&self, param: &str) -> Result<u64, ApiError> {
        let text = match self {
            PriceValue::Text(t) => t.clone(),
            PriceValue::Number(n) => n.to_string(),
        };
        parse_usd_micros(&text).ok_or_else(|| {
            ApiError::invalid(
                param,
                format!(
                    "`{param}` must be a non-negative USD amount per million tokens, not `{text}`."
                ),
            )
        })
    }
}

// Static names: a `&str` name is parsed and checked again on every lookup.
const X_BAZAAR_POLICY: HeaderName = HeaderName::from_static("x-bazaar-policy");
const X_BAZAAR_MAX_PRICE: HeaderName = HeaderName::from_static("x-bazaar-max-price");
const X_BAZAAR_TIERS: HeaderName = HeaderName::from_static("x-bazaar-tiers");
const X_BAZAAR_SESSION: HeaderName = HeaderName::from_static("x-bazaar-session");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The tie-break seed of a request with `x-request-id`, so explaining a request with the
/// same id gives the same plan.
pub fn request_seed(headers: &HeaderMap) -> Option<u64> {
    header(headers, &X_REQUEST_ID).map(|id| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        h.finish()
    })
}

fn parse_tiers(list: &[String], param: &str) -> Result<BTreeSet<Tier>, ApiError> {
    list.iter()
        .map(|t| {
            t.trim()
                .parse::<Tier>()
                .map_err(|m| ApiError::invalid(param, m.to_string()))
        })
        .collect()
}

/// A configured provider as `Prefs::parse` checks slugs against it: its id.
pub trait ProviderId {
    fn provider_id(&self) -> &str;
}

impl ProviderId for &str {
    fn provider_id(&self) -> &str {
        self
    }
}

/// The config's providers themselves, so a call gathers no list of their ids.
impl ProviderId for ProviderConfig {
    fn provider_id(&self) -> &str {
        &self.id
    }
}

impl Prefs {
    /// Reads the request's routing controls; anything malformed is a 400 naming it.
    /// `provider_ids` are the configured providers: unknown slugs are a 400 listing them.
    pub fn parse<P: ProviderId>(
        fields: &RawObject,
        headers: &HeaderMap,
        provider_ids: &[P],
    ) -> Result<Prefs, ApiError> {
        let mut prefs = Prefs::default();
        let bazaar: BazaarObject = fields
            .typed(
                "bazaar",
                "an object with policy, max_price, tiers, session, quality_floor, weights",
            )?
            .unwrap_or_default();
        let provider: ProviderObject = fields
            .typed("provider", "an object (OpenRouter provider preferences: order, only, ignore, sort, max_price, allow_fallbacks, require_parameters, data_collection, quantizations)")?
            .unwrap_or_default();
        prefs.models = fields
            .typed::<Vec<String>>("models", "an array of model ids")?
            .unwrap_or_default();
        if prefs.models.len() > MAX_FALLBACK_MODELS {
            return Err(ApiError::invalid(
                "models",
                format!("`models` may list at most {MAX_FALLBACK_MODELS} models."),
            ));
        }
        for (i, m) in prefs.models.iter().enumerate() {
            check_identifier(&format!("models[{i}]"), m)?;
        }

        // Most requests carry no `x-bazaar-*` header: one pass over the header names
        // spares them four lookups by name.
        let any_bazaar = headers.keys().any(|k| k.as_str().starts_with("x-bazaar-"));
        let bazaar_header = |name: &HeaderName| {
            if any_bazaar {
                header(headers, name)
            } else {
                None
            }
        };
        let policy = bazaar_header(&X_BAZAAR_POLICY)
            .map(str::to_string)
            .or(bazaar.policy);
        if let Some(p) = policy {
            prefs.policy = Some(p.parse().map_err(|m: crate::config::ValueError| {
                ApiError::invalid("bazaar.policy", m.to_string())
            })?);
        } else if let Some(sort) = provider.sort {
            prefs.policy = Some(match sort.as_str() {
                "price" => Policy::Cheapest,
                "throughput" | "latency" => Policy::Fastest,
                other => {
                    return Err(ApiError::invalid(
                        "provider.sort",
                        format!(
                            "`provider.sort` must be price, throughput or latency, not `{other}`."
                        ),
                    ))
                }
            });
        }
        if let Some(h) = bazaar_header(&X_BAZAAR_MAX_PRICE) {
            let micros = parse_usd_micros(h).ok_or_else(|| {
                ApiError::invalid(
                    "x-bazaar-max-price",
                    format!("`x-bazaar-max-price` must be USD per million tokens, not `{h}`."),
                )
            })?;
            prefs.max_price = MaxPrice {
                input: Some(micros),
                output: Some(micros),
            };
        } else if let Some(v) = &bazaar.max_price {
            let micros = v.micros("bazaar.max_price")?;
            prefs.max_price = MaxPrice {
                input: Some(micros),
                output: Some(micros),
            };
        } else if let Some(mp) = &provider.max_price {
            prefs.max_price = MaxPrice {
                input: mp
                    .prompt
                    .as_ref()
                    .map(|p| p.micros("provider.max_price.prompt"))
                    .transpose()?,
                output: mp
                    .completion
                    .as_ref()
                    .map(|p| p.micros("provider.max_price.completion"))
                    .transpose()?,
            };
        }
        if let Some(h) = bazaar_header(&X_BAZAAR_TIERS) {
            let list: Vec<String> = h.split(',').map(str::to_string).collect();
            prefs.tiers = Some(parse_tiers(&list, "x-bazaar-tiers")?);
        } else if let Some(list) = &bazaar.tiers {
            prefs.tiers = Some(parse_tiers(list, "bazaar.tiers")?);
        }
        prefs.session = bazaar_header(&X_BAZAAR_SESSION)
            .map(str::to_string)
            .or(bazaar.session);
        if let Some(session) = &prefs.session {
            check_identifier("bazaar.session", session)?;
        }
        if let Some(floor) = bazaar.quality_floor {
            if !(0.0..=100.0).contains(&floor) {
                return Err(ApiError::invalid(
                    "bazaar.quality_floor",
                    "`bazaar.quality_floor` must be between 0 and 100.",
                ));
            }
            prefs.quality_floor = Some(floor);
        }
        if let Some(w) = bazaar.weights {
            let all = [w.cost, w.latency, w.quality];
            if all.iter().any(|v| !v.is_finite() || *v < 0.0) || all.iter().all(|v| *v == 0.0) {
                return Err(ApiError::invalid(
                    "bazaar.weights",
                    "`bazaar.weights` takes cost, latency and quality as numbers >= 0, not all 0.",
                ));
            }
            prefs.weights = Some(Weights {
                cost: w.cost,
                latency: w.latency,
                quality: w.quality,
            });
        }

        let mut unknown = Vec::new();
        for (param, list) in [
            ("provider.only", &provider.only),
            ("provider.ignore", &provider.ignore),
            ("provider.order", &provider.order),
        ] {
            for slug in list.iter().flatten() {
                if !provider_ids
                    .iter()
                    .any(|p| p.provider_id() == slug.as_str())
                {
                    unknown.push(format!("{param}: `{slug}`"));
                }
            }
        }
        if !unknown.is_empty() {
            return Err(ApiError::invalid(
                "provider",
                format!(
                    "Unknown provider slugs ({}); this gateway has: {}.",
                    unknown.join(", "),
                    provider_ids
                        .iter()
                        .map(ProviderId::provider_id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        prefs.only = provider.only;
        prefs.ignore = provider.ignore.unwrap_or_default();
        prefs.order = provider.order.unwrap_or_default();
        prefs.allow_fallbacks = provider.allow_fallbacks.unwrap_or(true);
        prefs.require_parameters = provider.require_parameters.unwrap_or(false);
        prefs.deny_data_collection = match provider.data_collection.as_deref() {
            None | Some("allow") => false,
            Some("deny") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "provider.data_collection",
                    format!("`provider.data_collection` must be allow or deny, not `{other}`."),
                ))
            }
        };
        prefs.quantizations = provider.quantizations;
        Ok(prefs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, headers: &[(&str, &str)]) -> Result<Prefs, ApiError> {
        let fields = RawObject::parse(body.as_bytes()).unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Prefs::parse(&fields, &map, &["groq", "together", "openai"])
    }

    #[test]
    fn openrouter_fields_port_unchanged() {
        let p = parse(
            r#"{"model":"m","models":["a","b"],"provider":{"order":["groq"],"ignore":["openai"],"sort":"price",
                "max_price":{"prompt":1,"completion":"2.5"},"allow_fallbacks":false,"data_collection":"deny","quantizations":["fp8"]}}"#,
            &[],
        )
        .unwrap();
        assert_eq!(p.models, ["a", "b"]);
        assert_eq!(p.order, ["groq"]);
        assert_eq!(p.ignore, ["openai"]);
        assert_eq!(p.policy, Some(Policy::Cheapest));
        assert_eq!(
            p.max_price,
            MaxPrice {
                input: Some(1_000_000),
                output: Some(2_500_000)
            }
        );
        assert!(!p.allow_fallbacks && p.deny_data_collection);
    }

    #[test]
    fn fractional_floors_and_request_weights() {
        let p = parse(
            r#"{"model":"m","bazaar":{"quality_floor":67.25,"weights":{"cost":2,"quality":1}}}"#,
            &[],
        )
        .unwrap();
        assert_eq!(p.quality_floor, Some(67.25));
        assert_eq!(
            p.weights,
            Some(Weights {
                cost: 2.0,
                latency: 0.0,
                quality: 1.0
            })
        );
        for bad in [
            r#"{"bazaar":{"weights":{"cost":-1}}}"#,
            r#"{"bazaar":{"weights":{}}}"#,
            r#"{"bazaar":{"weights":{"speed":1}}}"#,
            r#"{"bazaar":{"quality_floor":100.5}}"#,
        ] {
            assert!(parse(bad, &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_win_over_body() {
        let p = parse(
            r#"{"bazaar":{"policy":"quality","tiers":["frontier"]}}"#,
            &[
                ("x-bazaar-policy", "fastest"),
                ("x-bazaar-tiers", "local, open-hosted"),
            ],
        )
        .unwrap();
        assert_eq!(p.policy, Some(Policy::Fastest));
        assert_eq!(p.tiers.unwrap().len(), 2);
    }

    #[test]
    fn bad_controls_are_400s_naming_them() {
        let cases = [
            (r#"{"provider":{"only":["nope"]}}"#, "provider"),
            (r#"{"bazaar":{"policy":"random"}}"#, "bazaar.policy"),
            (r#"{"bazaar":{"tiers":["space"]}}"#, "bazaar.tiers"),
            (
                r#"{"provider":{"max_price":{"prompt":-1}}}"#,
                "provider.max_price.prompt",
            ),
            (r#"{"provider":{"sort":"vibes"}}"#, "provider.sort"),
            (r#"{"bazaar":{"polciy":"cheapest"}}"#, "bazaar"),
        ];
        for (body, param) in cases {
            match parse(body, &[]) {
                Err(ApiError::InvalidRequest { param: Some(p), .. }) => {
                    assert_eq!(p, param, "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
