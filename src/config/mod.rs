//! The resolved runtime `Config`: durations parsed, `env:` secrets read, presets
//! expanded, cross-references checked. `resolve` reports every problem at once,
//! each with its TOML path. The environment is read here and nowhere else.

pub mod presets;
pub mod raw;
pub mod reload;
pub mod routes;
pub mod secret;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use raw::RawConfig;
pub use routes::{BreakerSettings, Policy, Weights};
pub use secret::{KeyHash, Secret};

use crate::catalog::{builtin, import, Catalog, Facts, QualityPriors, Tier};
use presets::{AuthStyle, Quirks};
use secret::hash_key;

/// One problem in a config, with the TOML path it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a config, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{n} problem{} in the config:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// The wire format a provider speaks: one adapter module each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// OpenAI Chat Completions, spoken by OpenAI, Azure OpenAI and every compatible host.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini `generateContent`.
    Gemini,
}

impl WireFormat {
    /// The `kind` config value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            WireFormat::OpenAi => "openai",
            WireFormat::Anthropic => "anthropic",
            WireFormat::Gemini => "gemini",
        }
    }
}

/// The Azure OpenAI `api-version` used when config names none (the latest GA inference API).
pub const AZURE_API_VERSION: &str = "2024-10-21";
/// The `anthropic-version` header used when config names none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Timeouts for one provider's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// From sending the request to the response headers (streams: to the first event).
    pub first_byte: Duration,
    /// The whole call, stream included.
    pub total: Duration,
    /// Longest silence between two stream chunks.
    pub idle: Duration,
}

/// A provider as the gateway uses it.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub id: String,
    pub wire: WireFormat,
    /// Without a trailing slash; paths such as `/chat/completions` are appended.
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub auth: AuthStyle,
    pub tier: Tier,
    pub headers: Vec<(String, Secret)>,
    pub timeouts: Timeouts,
    pub quirks: Quirks,
    /// Azure's `api-version` query parameter, or Anthropic's `anthropic-version` header;
    /// `None` for other wire formats.
    pub api_version: Option<String>,
    /// The id the catalog knows this provider by: its preset, else its own id.
    pub catalog_key: String,
    /// A local server's running cost in micro-dollars per hour.
    pub cost_per_hour_micros: Option<u64>,
}

/// One way to serve a public model: which provider, under which upstream id.
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
}

/// A gateway key clients may present.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub name: String,
    pub team: Option<String>,
    pub hash: KeyHash,
    /// Markup in basis points on this key's costs.
    pub markup_bp: u32,
    pub limits: Limits,
    /// Allowed models or routes; empty: all.
    pub models: Vec<String>,
    /// Allowed tiers; empty: all.
    pub tiers: Vec<Tier>,
    /// Admit calls unchecked when the shared state is unreachable (else refuse them).
    pub fail_open: bool,
}

/// A budget: at most `limit_nanos` per UTC calendar `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit_nanos: u64,
    pub period: Period,
}

/// A UTC calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

/// Budget and rate limits of a key or team.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub budget: Option<Budget>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// A team: the limits all its keys share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamConfig {
    pub name: String,
    pub limits: Limits,
}

/// Parses `"50/month"`: USD (exact) per day, week or month.
pub fn parse_budget(text: &str) -> Result<Budget, String> {
    let (amount, period) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a budget such as 50/month"))?;
    let micros = crate::catalog::parse_usd_micros(amount.trim())
        .ok_or_else(|| format!("`{amount}` is not a USD amount"))?;
    let period = match period.trim() {
        "day" => Period::Day,
        "week" => Period::Week,
        "month" => Period::Month,
        other => {
            return Err(format!(
                "unknown period `{other}`; expected day, week or month"
            ))
        }
    };
    Ok(Budget {
        limit_nanos: micros * 1000,
        period,
    })
}

/// A named route: candidate models and how to choose among them.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Empty means every chat model the gateway serves.
    pub models: Vec<String>,
    pub policy: Policy,
    pub weights: Weights,
    pub quality_floor: Option<f64>,
    /// Empty means all tiers.
    pub tiers: Vec<Tier>,
    pub reference: Option<String>,
}

/// Where and how the ledger is written.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerConfig {
    pub url: String,
    pub queue: usize,
    pub batch: usize,
    pub flush_every: Duration,
    pub spill_file: PathBuf,
}

/// Router settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    pub policy: Policy,
    pub weights: Weights,
    pub max_attempts: u32,
    pub expected_output_tokens: u64,
    pub affinity_ttl: Duration,
    pub breaker: BreakerSettings,
    /// The default savings reference (a catalog model id).
    pub reference: String,
}

/// Front-end server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub max_body_bytes: usize,
    pub master_key: Option<KeyHash>,
    pub drain_timeout: Duration,
    /// Unready but still accepting, before the drain starts.
    pub shutdown_grace: Duration,
}

/// The complete runtime configuration; swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub providers: Vec<ProviderConfig>,
    /// Public model id → the targets that serve it, in config order.
    pub models: BTreeMap<String, Vec<ModelTarget>>,
    pub keys: HashMap<KeyHash, KeyConfig>,
    pub teams: BTreeMap<String, TeamConfig>,
    pub router: RouterConfig,
    /// Named routes, including the built-in `auto`, `cheap` and `fast` unless redefined.
    pub routes: BTreeMap<String, RouteConfig>,
    /// The built-in catalog with `catalog.file` merged in.
    pub catalog: Arc<Catalog>,
    /// Other names clients may use for a served model (`qwen3:8b` → `qwen3-8b`).
    pub aliases: BTreeMap<String, String>,
    pub ledger: LedgerConfig,
    /// Redis URL for limits and budgets shared across replicas; `None`: in process.
    pub redis: Option<String>,
}

/// Reads the process environment; the one place that does.
#[allow(clippy::disallowed_methods)]
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Parses TOML text and resolves it against `env`.
    pub fn from_toml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![toml_problem(&e)],
        })?;
        Config::resolve(&raw, env)
    }

    /// Reads and resolves the file at `path`.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = Config::load_unrebased(path, env)?;
        config.rebase_paths(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        );
        Ok(config)
    }

    fn load_unrebased(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![ConfigProblem {
                path: path.display().to_string(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Config::from_toml(&text, env)
    }

    /// The embedded default: every preset whose key is in the environment, the
    /// master key from `BAZAAR_MASTER_KEY`.
    pub fn embedded_default(env: &dyn Fn(&str) -> Option<String>) -> RawConfig {
        let mut raw = RawConfig::default();
        if env("BAZAAR_MASTER_KEY").is_some() {
            raw.server.master_key = Some("env:BAZAAR_MASTER_KEY".into());
        }
        if let Some(listen) = env("BAZAAR_LISTEN") {
            raw.server.listen = listen;
        }
        for preset in presets::PRESETS {
            let Some(var) = preset.key_env else { continue };
            // A preset without a base URL (Azure) needs more than a key: config only.
            if env(var).is_none() || preset.base_url.is_empty() {
                continue;
            }
            raw.providers.insert(
                preset.id.to_string(),
                raw::RawProvider {
                    api_key: Some(format!("env:{var}")),
                    catalog: true,
                    ..Default::default()
                },
            );
        }
        raw
    }

    /// Turns the TOML as written into the runtime form, collecting every problem.
    pub fn resolve(
        raw: &RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut problem =
            |path: String, message: String| problems.push(ConfigProblem { path, message });

        let master_key = raw.server.master_key.as_deref().and_then(|v| {
            secret::resolve(v, env)
                .map_err(|m| problem("server.master_key".into(), m))
                .ok()
                .map(|s| hash_key(s.expose()))
        });
        if raw.server.listen.parse::<std::net::SocketAddr>().is_err() {
            problem(
                "server.listen".into(),
                format!(
                    "`{}` is not an address such as 127.0.0.1:8080",
                    raw.server.listen
                ),
            );
        }
        if raw.server.max_body_bytes < 1024 {
            problem(
                "server.max_body_bytes".into(),
                "must be at least 1024".into(),
            );
        }
        let shutdown_grace = match humantime::parse_duration(&raw.server.shutdown_grace) {
            Ok(d) => d,
            Err(e) => {
                problem(
                    "server.shutdown_grace".into(),
                    format!(
                        "`{}` is not a duration such as 5s ({e})",
                        raw.server.shutdown_grace
                    ),
                );
                Duration::ZERO
            }
        };
        let drain_timeout = duration(
            &raw.server.drain_timeout,
            "server.drain_timeout",
            &mut problem,
        );

        let mut catalog = builtin::builtin().clone();
        if let Some(file) = &raw.catalog.file {
            match std::fs::read_to_string(file) {
                Ok(text) => {
                    let parsed =
                        Catalog::from_json(&text).or_else(|_| import::import(&text, None, file));
                    match parsed {
                        Ok(extra) => catalog.merge(extra),
                        Err(m) => problem("catalog.file".into(), format!("`{file}`: {m}")),
                    }
                }
                Err(e) => problem("catalog.file".into(), format!("cannot read `{file}`: {e}")),
            }
        }

        let mut providers = Vec::new();
        let mut models: BTreeMap<String, Vec<ModelTarget>> = BTreeMap::new();
        for (id, p) in &raw.providers {
            let path = format!("providers.{id}");
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                problem(
                    path.clone(),
                    "provider ids are lowercase letters, digits, `-` and `_`".into(),
                );
            }
            // `kind` is the wire format; `azure` is shorthand for OpenAI's with the azure preset.
            let kind = match p.kind.as_deref() {
                None => None,
                Some("openai") => Some(WireFormat::OpenAi),
                Some("anthropic") => Some(WireFormat::Anthropic),
                Some("gemini") => Some(WireFormat::Gemini),
                Some("azure") => Some(WireFormat::OpenAi),
                Some(other) => {
                    problem(
                        format!("{path}.kind"),
                        format!(
                            "unknown wire format `{other}`; expected openai, anthropic, gemini or azure"
                        ),
                    );
                    None
                }
            };
            let kind_failed = p.kind.is_some() && kind.is_none();
            let preset = match (p.preset.as_deref(), p.kind.as_deref()) {
                (Some(named), _) => {
                    let found = presets::find(named);
                    match found {
                        None => {
                            let known: Vec<_> = presets::PRESETS.iter().map(|p| p.id).collect();
                            problem(
                                format!("{path}.preset"),
                                format!("unknown preset `{named}`; known: {}", known.join(", ")),
                            );
                        }
                        Some(found) if kind.is_some_and(|k| k != found.wire) => problem(
                            format!("{path}.preset"),
                            format!(
                                "preset `{named}` speaks the {} wire format, not `{}`",
                                found.wire.as_str(),
                                p.kind.as_deref().unwrap_or_default()
                            ),
                        ),
                        Some(_) => {}
                    }
                    found
                }
                (None, Some("azure")) => presets::find("azure"),
                // A provider named after a preset uses it, unless its `kind` says otherwise.
                (None, _) => match presets::find(id) {
                    Some(found) if kind.is_none_or(|k| k == found.wire) => Some(found),
                    _ => match kind {
                        Some(k) if k != WireFormat::OpenAi => Some(presets::default_for(k)),
                        _ => None,
                    },
                },
            };
            let wire = if kind_failed {
                None
            } else {
                Some(
                    kind.or(preset.map(|p| p.wire))
                        .unwrap_or(WireFormat::OpenAi),
                )
            };
            let quirks = preset.map(|p| p.quirks).unwrap_or_default();
            let api_version = match (&p.api_version, wire) {
                (Some(v), Some(WireFormat::Anthropic)) => Some(v.clone()),
                (Some(v), Some(WireFormat::OpenAi)) if quirks.azure_deployments => Some(v.clone()),
                (Some(_), Some(_)) => {
                    problem(
                        format!("{path}.api_version"),
                        "applies to Azure OpenAI (`api-version`) and Anthropic (`anthropic-version`) only"
                            .into(),
                    );
                    None
                }
                (None, Some(WireFormat::OpenAi)) if quirks.azure_deployments => {
                    Some(AZURE_API_VERSION.to_string())
                }
                (None, Some(WireFormat::Anthropic)) => Some(ANTHROPIC_VERSION.to_string()),
                _ => None,
            };
            let base_url = match (&p.base_url, preset) {
                (Some(url), _) => url.trim_end_matches('/').to_string(),
                (None, Some(preset)) if preset.base_url.is_empty() => {
                    problem(
                        format!("{path}.base_url"),
                        format!(
                            "is required by preset `{}`: the resource endpoint, e.g. https://NAME.openai.azure.com",
                            preset.id
                        ),
                    );
                    String::new()
                }
                (None, Some(preset)) => preset.base_url.to_string(),
                (None, None) => {
                    problem(
                        format!("{path}.base_url"),
                        "is required (no preset named this provider)".into(),
                    );
                    String::new()
                }
            };
            if !base_url.is_empty()
                && reqwest::Url::parse(&base_url)
                    .map(|u| !u.scheme().starts_with("http"))
                    .unwrap_or(true)
            {
                problem(
                    format!("{path}.base_url"),
                    format!("`{base_url}` is not an http(s) URL"),
                );
            }
            let tier = match (&p.tier, preset) {
                (Some(t), _) => t
                    .parse()
                    .map_err(|m| problem(format!("{path}.tier"), m))
                    .ok(),
                (None, Some(preset)) => Some(preset.tier),
                (None, None) => {
                    problem(
                        format!("{path}.tier"),
                        "is required: frontier, open-hosted or local".into(),
                    );
                    None
                }
            };
            let api_key = p.api_key.as_deref().and_then(|v| {
                secret::resolve(v, env)
                    .map_err(|m| problem(format!("{path}.api_key"), m))
                    .ok()
            });
            let auth = preset.map(|pr| pr.auth).unwrap_or(AuthStyle::Bearer);
            if api_key.is_none()
                && p.api_key.is_none()
                && auth != AuthStyle::None
                && !is_loopback(&base_url)
            {
                problem(
                    format!("{path}.api_key"),
                    "is required for a remote provider (use env:NAME)".into(),
                );
            }
            let mut headers = Vec::new();
            for (name, value) in &p.headers {
                let hpath = format!("{path}.headers.{name}");
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    problem(hpath.clone(), "is not a valid header name".into());
                }
                let lower = name.to_ascii_lowercase();
                if lower == "host" || lower == "content-length" || lower == "transfer-encoding" {
                    problem(
                        hpath.clone(),
                        "is set by the gateway and cannot be overridden".into(),
                    );
                }
                if let Ok(v) = secret::resolve(value, env).map_err(|m| problem(hpath.clone(), m)) {
                    if http::HeaderValue::from_str(v.expose()).is_err() {
                        problem(hpath, "is not a valid header value".into());
                    }
                    headers.push((name.clone(), v));
                }
            }
            let t = &p.timeouts;
            let timeouts = Timeouts {
                connect: duration(
                    &t.connect,
                    &format!("{path}.timeouts.connect"),
                    &mut problem,
                ),
                first_byte: duration(
                    &t.first_byte,
                    &format!("{path}.timeouts.first_byte"),
                    &mut problem,
                ),
                total: duration(&t.total, &format!("{path}.timeouts.total"), &mut problem),
                idle: duration(&t.idle, &format!("{path}.timeouts.idle"), &mut problem),
            };
            let index = providers.len();
            let catalog_key = preset
                .map(|p| p.id.to_string())
                .unwrap_or_else(|| id.clone());
            let provider_tier = tier.unwrap_or(Tier::Frontier);
            for (i, m) in p.models.iter().enumerate() {
                if m.trim().is_empty() {
                    problem(format!("{path}.models[{i}]"), "is empty".into());
                    continue;
                }
                // A listed id may be a catalog id (served under the provider's own upstream id) or an upstream id.
                let (public, upstream) = match catalog.model(m).and_then(|(cid, entry)| {
                    entry
                        .offers
                        .iter()
                        .find(|o| o.provider == catalog_key)
                        .map(|o| (cid.to_string(), o.upstream.clone()))
                }) {
                    Some(found) => found,
                    None => (m.clone(), m.clone()),
                };
                let facts = target_facts(&catalog, &catalog_key, &public, &upstream, provider_tier);
                add_target(&mut models, &public, index, &upstream, facts);
            }
            if p.catalog {
                for (cid, entry, offer) in catalog.offers_by_provider(&catalog_key) {
                    let facts = Facts::from_catalog(Some(offer), Some(entry), provider_tier);
                    add_target(&mut models, cid, index, &offer.upstream, facts);
                }
            }
            let cost_per_hour_micros = p.cost_per_hour.as_ref().and_then(|c| {
                let micros = c.micros();
                if micros.is_none() {
                    problem(
                        format!("{path}.cost_per_hour"),
                        "must be a non-negative USD amount".into(),
                    );
                }
                micros
            });
            if let (Some(wire), Some(tier)) = (wire, tier) {
                providers.push(ProviderConfig {
                    id: id.clone(),
                    wire,
                    base_url,
                    api_key,
                    auth,
                    tier,
                    headers,
                    timeouts,
                    quirks,
                    api_version,
                    catalog_key,
                    cost_per_hour_micros,
                });
            }
        }
        for (i, m) in raw.models.iter().enumerate() {
            let path = format!("models[{i}]");
            if m.id.trim().is_empty() {
                problem(format!("{path}.id"), "is empty".into());
            }
            match providers.iter().position(|p| p.id == m.provider) {
                Some(provider) => {
                    let upstream = m.upstream.clone().unwrap_or_else(|| m.id.clone());
                    let cfg = &providers[provider];
                    let mut facts =
                        target_facts(&catalog, &cfg.catalog_key, &m.id, &upstream, cfg.tier);
                    apply_overrides(&mut facts, m, &path, &mut problem);
                    let targets = models.entry(m.id.clone()).or_default();
                    match targets
                        .iter_mut()
                        .find(|t| t.provider == provider && *t.upstream == *upstream)
                    {
                        // A catalog model the provider already serves: the entry overrides its facts.
                        Some(existing)
                            if !raw.models[..i].iter().any(|o| {
                                o.id == m.id
                                    && o.provider == m.provider
                                    && o.upstream.as_deref().unwrap_or(&o.id) == upstream
                            }) =>
                        {
                            existing.facts = Arc::new(facts);
                        }
                        Some(_) => problem(
                            path,
                            format!("`{}` on `{}` is declared twice", m.id, m.provider),
                        ),
                        None => targets.push(ModelTarget {
                            provider,
                            upstream: upstream.into(),
                            model: m.id.as_str().into(),
                            facts: Arc::new(facts),
                        }),
                    }
                }
                None if raw.providers.contains_key(&m.provider) => {}
                None => problem(
                    format!("{path}.provider"),
                    format!(
                        "unknown provider `{}`; declare it under [providers.{}]",
                        m.provider, m.provider
                    ),
                ),
            }
        }

        let mut keys = HashMap::new();
        for (i, k) in raw.keys.iter().enumerate() {
            let path = format!("keys[{i}]");
            if k.name.trim().is_empty() {
                problem(format!("{path}.name"), "is empty".into());
            }
            match secret::resolve(&k.key, env) {
                Ok(secret) => {
                    let hash = hash_key(secret.expose());
                    if keys.contains_key(&hash) || Some(hash) == master_key {
                        problem(
                            format!("{path}.key"),
                            "the same key is declared twice".into(),
                        );
                    }
                    let mut tiers = Vec::new();
                    for (j, t) in k.tiers.iter().enumerate() {
                        match t.parse() {
                            Ok(t) => tiers.push(t),
                            Err(m) => problem(format!("{path}.tiers[{j}]"), m),
                        }
                    }
                    let markup_bp = match k.markup_percent {
                        Some(p) if p.is_finite() && (0.0..=1000.0).contains(&p) => {
                            (p * 100.0).round() as u32
                        }
                        Some(_) => {
                            problem(
                                format!("{path}.markup_percent"),
                                "must be between 0 and 1000".into(),
                            );
                            0
                        }
                        None => 0,
                    };
                    let budget = k.budget.as_deref().and_then(|b| {
                        parse_budget(b)
                            .map_err(|m| problem(format!("{path}.budget"), m))
                            .ok()
                    });
                    keys.insert(
                        hash,
                        KeyConfig {
                            name: k.name.clone(),
                            team: k.team.clone(),
                            hash,
                            markup_bp,
                            limits: Limits {
                                budget,
                                rpm: k.rpm,
                                tpm: k.tpm,
                            },
                            models: k.models.clone(),
                            tiers,
                            fail_open: match k.on_shared_state_error.as_deref() {
                                None | Some("closed") => false,
                                Some("open") => true,
                                Some(other) => {
                                    problem(
                                        format!("{path}.on_shared_state_error"),
                                        format!("`{other}` must be open or closed"),
                                    );
                                    false
                                }
                            },
                        },
                    );
                }
                Err(m) => problem(format!("{path}.key"), m),
            }
        }

        let redis = raw.state.redis.as_deref().and_then(|r| {
            resolve_env_in_url(r, env)
                .map_err(|m| problem("state.redis".into(), m))
                .ok()
                .filter(|u| {
                    let ok = u.starts_with("redis://") || u.starts_with("rediss://");
                    if !ok {
                        problem(
                            "state.redis".into(),
                            format!("`{}` must start with redis:// or rediss://", redact_url(u)),
                        );
                    }
                    ok
                })
        });
        let mut teams = BTreeMap::new();
        for (i, t) in raw.teams.iter().enumerate() {
            let budget = t.budget.as_deref().and_then(|b| {
                parse_budget(b)
                    .map_err(|m| problem(format!("teams[{i}].budget"), m))
                    .ok()
            });
            if teams
                .insert(
                    t.name.clone(),
                    TeamConfig {
                        name: t.name.clone(),
                        limits: Limits {
                            budget,
                            rpm: t.rpm,
                            tpm: t.tpm,
                        },
                    },
                )
                .is_some()
            {
                problem(
                    format!("teams[{i}].name"),
                    format!("team `{}` is declared twice", t.name),
                );
            }
        }

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

        let r = &raw.router;
        let policy = r
            .policy
            .parse()
            .map_err(|m| problem("router.policy".into(), m))
            .unwrap_or(Policy::Balanced);
        let router = RouterConfig {
            policy,
            weights: weights(r.weights.as_ref(), "router.weights", &mut problem),
            max_attempts: if r.max_attempts == 0 {
                problem("router.max_attempts".into(), "must be at least 1".into());
                1
            } else {
                r.max_attempts
            },
            expected_output_tokens: r.expected_output_tokens,
            affinity_ttl: duration(&r.affinity_ttl, "router.affinity_ttl", &mut problem),
            breaker: BreakerSettings {
                threshold: r.breaker.threshold.max(1),
                cooldown: duration(&r.breaker.cooldown, "router.breaker.cooldown", &mut problem),
                max_cooldown: duration(
                    &r.breaker.max_cooldown,
                    "router.breaker.max_cooldown",
                    &mut problem,
                ),
            },
            reference: r.reference.clone(),
        };
        if catalog.model(&r.reference).is_none() && !models.contains_key(&r.reference) {
            problem(
                "router.reference".into(),
                format!("unknown model `{}`", r.reference),
            );
        }
        let l = &raw.ledger;
        if !(l.url.starts_with("sqlite:")
            || l.url.starts_with("postgres:")
            || l.url.starts_with("postgresql:")
            || l.url.starts_with("env:"))
        {
            problem(
                "ledger.url".into(),
                format!(
                    "`{}` must start with sqlite: or postgres: (or be env:NAME)",
                    redact_url(&l.url)
                ),
            );
        }
        if l.queue == 0 || l.batch == 0 {
            problem("ledger".into(), "queue and batch must be at least 1".into());
        }
        let sqlite_path = l
            .url
            .strip_prefix("sqlite://")
            .or_else(|| l.url.strip_prefix("sqlite:"))
            .map(|p| p.split('?').next().unwrap_or(p).to_string());
        let ledger = LedgerConfig {
            url: resolve_env_in_url(&l.url, env).unwrap_or_else(|m| {
                problem("ledger.url".into(), m);
                l.url.clone()
            }),
            queue: l.queue,
            batch: l.batch,
            flush_every: duration(&l.flush_every, "ledger.flush_every", &mut problem),
            spill_file: PathBuf::from(l.spill_file.clone().unwrap_or_else(|| match &sqlite_path {
                Some(p) => format!("{p}.spill.jsonl"),
                None => "bazaar-ledger.spill.jsonl".into(),
            })),
        };
        let mut routes = builtin_routes(&router);
        for (name, route) in &raw.routes {
            let path = format!("routes.{name}");
            if models.contains_key(name) {
                problem(
                    path.clone(),
                    format!("`{name}` is also a model id; a route needs a name of its own"),
                );
            }
            let route_models: Vec<String> = route
                .models
                .iter()
                .map(|m| aliases.get(m).cloned().unwrap_or_else(|| m.clone()))
                .collect();
            for (i, m) in route_models.iter().enumerate() {
                if !models.contains_key(m) {
                    problem(
                        format!("{path}.models[{i}]"),
                        format!("unknown model `{m}`"),
                    );
                }
            }
            let policy = match &route.policy {
                Some(p) => p
                    .parse()
                    .map_err(|m| problem(format!("{path}.policy"), m))
                    .unwrap_or(router.policy),
                None => router.policy,
            };
            let mut tiers = Vec::new();
            for (i, t) in route.tiers.iter().enumerate() {
                match t.parse() {
                    Ok(t) => tiers.push(t),
                    Err(m) => problem(format!("{path}.tiers[{i}]"), m),
                }
            }
            if let Some(floor) = route.quality_floor {
                if !(0.0..=100.0).contains(&floor) {
                    problem(
                        format!("{path}.quality_floor"),
                        "must be between 0 and 100".into(),
                    );
                }
            }
            if policy == Policy::CheapestAboveQuality && route.quality_floor.is_none() {
                problem(
                    format!("{path}.quality_floor"),
                    "is required by policy cheapest-above-quality".into(),
                );
            }
            if let Some(reference) = &route.reference {
                if !models.contains_key(reference) && !aliases.contains_key(reference) {
                    problem(
                        format!("{path}.reference"),
                        format!("unknown model `{reference}`"),
                    );
                }
            }
            routes.insert(
                name.clone(),
                RouteConfig {
                    name: name.clone(),
                    models: route_models,
                    policy,
                    weights: match &route.weights {
                        Some(_) => weights(
                            route.weights.as_ref(),
                            &format!("{path}.weights"),
                            &mut problem,
                        ),
                        None => router.weights,
                    },
                    quality_floor: route.quality_floor,
                    tiers,
                    reference: route.reference.clone(),
                },
            );
        }

        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Config {
            server: ServerConfig {
                listen: raw.server.listen.clone(),
                max_body_bytes: raw.server.max_body_bytes,
                master_key,
                drain_timeout,
                shutdown_grace,
            },
            providers,
            models,
            keys,
            teams,
            router,
            routes,
            catalog: Arc::new(catalog),
            aliases,
            ledger,
            redis,
        })
    }

    /// Makes relative ledger paths relative to `dir` (the config file's directory).
    pub fn rebase_paths(&mut self, dir: &Path) {
        if let Some(rest) = self.ledger.url.strip_prefix("sqlite://") {
            if !rest.starts_with('/') && !rest.starts_with(':') {
                self.ledger.url = format!("sqlite://{}", dir.join(rest).display());
            }
        }
        if self.ledger.spill_file.is_relative() {
            self.ledger.spill_file = dir.join(&self.ledger.spill_file);
        }
    }

    /// The served model id `name` stands for: itself, or the model it is an alias of.
    pub fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        if self.models.contains_key(name) {
            return name;
        }
        self.aliases.get(name).map(String::as_str).unwrap_or(name)
    }

    /// The route called `name`, if `name` is not a concrete model.
    pub fn route(&self, name: &str) -> Option<&RouteConfig> {
        if self.models.contains_key(name) {
            return None;
        }
        self.routes.get(name)
    }
}

/// `auto` (balanced), `cheap` (cheapest) and `fast` (fastest) over every chat model.
fn builtin_routes(router: &RouterConfig) -> BTreeMap<String, RouteConfig> {
    [
        ("auto", Policy::Balanced),
        ("cheap", Policy::Cheapest),
        ("fast", Policy::Fastest),
    ]
    .into_iter()
    .map(|(name, policy)| {
        (
            name.to_string(),
            RouteConfig {
                name: name.to_string(),
                models: Vec::new(),
                policy,
                weights: router.weights,
                quality_floor: None,
                tiers: Vec::new(),
                reference: None,
            },
        )
    })
    .collect()
}

fn weights(
    raw: Option<&raw::RawWeights>,
    path: &str,
    problem: &mut impl FnMut(String, String),
) -> Weights {
    let Some(w) = raw else {
        return Weights::default();
    };
    let all = [w.cost, w.latency, w.quality];
    if all.iter().any(|v| !v.is_finite() || *v < 0.0) || all.iter().all(|v| *v == 0.0) {
        problem(
            path.to_string(),
            "weights must be non-negative and not all zero".into(),
        );
        return Weights::default();
    }
    Weights {
        cost: w.cost,
        latency: w.latency,
        quality: w.quality,
    }
}

/// A database URL may carry its password as `env:NAME` in place of the whole URL.
fn resolve_env_in_url(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    match url.strip_prefix("env:") {
        Some(_) => secret::resolve(url, env).map(|s| s.expose().to_string()),
        None => Ok(url.to_string()),
    }
}

/// A URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]")
        })
        .unwrap_or(false)
}

fn duration(text: &str, path: &str, problem: &mut impl FnMut(String, String)) -> Duration {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            problem(path.to_string(), "must be greater than zero".into());
            Duration::from_secs(1)
        }
        Err(e) => {
            problem(
                path.to_string(),
                format!("`{text}` is not a duration such as 500ms or 30s ({e})"),
            );
            Duration::from_secs(1)
        }
    }
}

fn toml_problem(e: &toml::de::Error) -> ConfigProblem {
    ConfigProblem {
        path: "bazaar.toml".into(),
        message: e.to_string().trim_end().replace('\n', "\n    "),
    }
}

/// Adds a target unless the same provider already serves that upstream id for `model`.
fn add_target(
    models: &mut BTreeMap<String, Vec<ModelTarget>>,
    model: &str,
    provider: usize,
    upstream: &str,
    facts: Facts,
) {
    let targets = models.entry(model.to_string()).or_default();
    if targets
        .iter()
        .any(|t| t.provider == provider && &*t.upstream == upstream)
    {
        return;
    }
    targets.push(ModelTarget {
        provider,
        upstream: upstream.into(),
        model: model.into(),
        facts: Arc::new(facts),
    });
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
fn apply_overrides(
    facts: &mut Facts,
    m: &raw::RawModel,
    path: &str,
    problem: &mut impl FnMut(String, String),
) {
    let mut price = |field: &str, raw: &Option<raw::RawPrice>, slot: &mut Option<u64>| {
        if let Some(p) = raw {
            match p.micros() {
                Some(v) => *slot = Some(v),
                None => problem(
                    format!("{path}.{field}"),
                    "must be a non-negative USD amount per million tokens with at most 6 decimals"
                        .into(),
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
            problem(
                format!("{path}.quality"),
                "must be between 0 and 100".into(),
            );
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
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "OPENAI_API_KEY" => Some("sk-test".into()),
            "APP_KEY" => Some("bzr-app".into()),
            _ => None,
        }
    }

    #[test]
    fn resolves_a_small_config() {
        let cfg = Config::from_toml(
            r#"
            [providers.openai]
            api_key = "env:OPENAI_API_KEY"
            models = ["gpt-4o-mini"]

            [providers.local]
            base_url = "http://127.0.0.1:11434/v1/"
            tier = "local"

            [[models]]
            id = "qwen"
            provider = "local"
            upstream = "qwen3:8b"

            [[keys]]
            name = "app"
            key = "env:APP_KEY"
            "#,
            &env,
        )
        .unwrap();
        assert_eq!(cfg.providers.len(), 2);
        let local = &cfg.providers[cfg.models["qwen"][0].provider];
        assert_eq!(local.base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(local.tier, Tier::Local);
        assert_eq!(&*cfg.models["gpt-4o-mini"][0].upstream, "gpt-4o-mini");
        assert_eq!(cfg.keys.len(), 1);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let err = Config::from_toml(
            r#"
            [server]
            listen = "nowhere"
            [providers.acme]
            api_key = "env:ACME_KEY"
            [providers.acme.timeouts]
            connect = "soon"
            [[models]]
            id = "x"
            provider = "ghost"
            [[keys]]
            name = "k"
            key = "env:NOPE"
            "#,
            &env,
        )
        .unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "server.listen",
                "providers.acme.base_url",
                "providers.acme.tier",
                "providers.acme.api_key",
                "providers.acme.timeouts.connect",
                "models[0].provider",
                "keys[0].key"
            ]
        );
        assert!(err
            .to_string()
            .contains("providers.acme.api_key: env var ACME_KEY is not set"));
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err =
            Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", &env).unwrap_err();
        assert!(err.to_string().contains("unknown field `lisen`"), "{err}");
    }

    #[test]
    fn default_picks_up_env_keys() {
        let raw = Config::embedded_default(&env);
        let cfg = Config::resolve(&raw, &env).unwrap();
        assert_eq!(cfg.providers[0].id, "openai");
        assert!(cfg.models.contains_key("gpt-4o-mini"));
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
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "catalog.file",
                "providers.x.cost_per_hour",
                "models[0].input_price",
                "models[0].quality"
            ]
        );
    }

    #[test]
    fn wire_formats_and_their_presets() {
        let env = |name: &str| {
            matches!(name, "ANTHROPIC_API_KEY" | "GEMINI_API_KEY" | "AZ_KEY")
                .then(|| "k".to_string())
        };
        let cfg = Config::from_toml(
            r#"
            [providers.anthropic]
            api_key = "env:ANTHROPIC_API_KEY"
            [providers.claude]
            kind = "anthropic"
            api_key = "env:ANTHROPIC_API_KEY"
            api_version = "2023-01-01"
            [providers.gemini]
            api_key = "env:GEMINI_API_KEY"
            [providers.az]
            kind = "azure"
            base_url = "https://res.openai.azure.com/"
            api_key = "env:AZ_KEY"
            [[models]]
            id = "gpt-4o"
            provider = "az"
            upstream = "my-gpt4o-deployment"
            "#,
            &env,
        )
        .unwrap();
        let by_id = |id: &str| cfg.providers.iter().find(|p| p.id == id).unwrap();
        let a = by_id("anthropic");
        assert_eq!(a.wire, WireFormat::Anthropic);
        assert_eq!(a.base_url, "https://api.anthropic.com/v1");
        assert_eq!(a.auth, AuthStyle::Header("x-api-key"));
        assert_eq!(a.api_version.as_deref(), Some(ANTHROPIC_VERSION));
        let c = by_id("claude");
        assert_eq!(
            (c.wire, c.catalog_key.as_str()),
            (WireFormat::Anthropic, "anthropic")
        );
        assert_eq!(c.api_version.as_deref(), Some("2023-01-01"));
        assert!(cfg.models.contains_key("claude-sonnet-4-5"));
        let g = by_id("gemini");
        assert_eq!(g.wire, WireFormat::Gemini);
        assert_eq!(g.auth, AuthStyle::Header("x-goog-api-key"));
        assert!(cfg.models.contains_key("gemini-2.5-flash"));
        let az = by_id("az");
        assert_eq!(az.wire, WireFormat::OpenAi);
        assert!(az.quirks.azure_deployments);
        assert_eq!(az.base_url, "https://res.openai.azure.com");
        assert_eq!(az.auth, AuthStyle::Header("api-key"));
        assert_eq!(az.api_version.as_deref(), Some(AZURE_API_VERSION));
        assert_eq!(
            &*cfg.models["gpt-4o"]
                .iter()
                .find(|t| cfg.providers[t.provider].id == "az")
                .unwrap()
                .upstream,
            "my-gpt4o-deployment"
        );
    }

    #[test]
    fn wire_format_mistakes_are_reported() {
        let err = Config::from_toml(
            r#"
            [providers.a]
            kind = "soap"
            base_url = "http://127.0.0.1:1"
            tier = "local"
            [providers.b]
            kind = "anthropic"
            preset = "groq"
            api_key = "x"
            [providers.c]
            preset = "azure"
            api_key = "x"
            [providers.d]
            base_url = "http://127.0.0.1:2/v1"
            tier = "local"
            api_version = "2024-10-21"
            "#,
            &env,
        )
        .unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "providers.a.kind",
                "providers.b.preset",
                "providers.c.base_url",
                "providers.d.api_version"
            ]
        );
        assert!(
            err.to_string()
                .contains("expected openai, anthropic, gemini or azure"),
            "{err}"
        );
    }

    #[test]
    fn default_picks_up_anthropic_and_gemini_keys() {
        let env = |name: &str| {
            matches!(
                name,
                "ANTHROPIC_API_KEY" | "GEMINI_API_KEY" | "AZURE_OPENAI_API_KEY"
            )
            .then(|| "k".to_string())
        };
        let raw = Config::embedded_default(&env);
        let cfg = Config::resolve(&raw, &env).unwrap();
        let wires: Vec<_> = cfg
            .providers
            .iter()
            .map(|p| (p.id.as_str(), p.wire))
            .collect();
        assert_eq!(
            wires,
            [
                ("anthropic", WireFormat::Anthropic),
                ("gemini", WireFormat::Gemini)
            ]
        );
    }
}
