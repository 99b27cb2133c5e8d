//! The `[providers.*]` sections: each provider's wire format, preset, base URL, key,
//! auth, tier, headers, timeouts, proxy and API version, with preset defaults filled in,
//! and the models it lists. Resolves settings only; it never opens a connection (adapters do).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine;

use super::models::{Models, ProviderModels};
use super::presets::{self, AuthStyle, Preset, Quirks};
use super::problems::Problems;
use super::raw::RawProvider;
use super::secret::{self, Secret};
use crate::catalog::{Catalog, Tier};

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

/// The largest upstream reply body read whole (and the largest single stream event), when
/// a provider sets no `max_reply_bytes`: a batch of 2,048 base64 embeddings of 3,072
/// dimensions fits, a body an upstream never ends does not.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// The HTTP proxy a provider's calls go through: a CONNECT tunnel for `https`
/// upstreams, absolute-form requests for `http` ones. Display shows no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `http://host:port`, without credentials.
    pub uri: http::Uri,
    /// The `Proxy-Authorization` value (`Basic …`) made from the URL's credentials.
    pub authorization: Option<Secret>,
    /// The URL's password, kept only to scrub it from upstream text.
    pub password: Option<Secret>,
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.uri.host(), self.uri.port_u16()) {
            (Some(host), Some(port)) => write!(f, "http://{host}:{port}"),
            _ => write!(f, "{}", self.uri),
        }
    }
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
    /// The proxy every call goes through; `None`: straight to `base_url`.
    pub proxy: Option<Proxy>,
    /// The largest reply body read whole, and the largest single stream event, in bytes.
    pub max_reply_bytes: usize,
}

/// Resolves every `[providers.*]` section in order, adding the models each serves to
/// `models`. A provider whose wire format or tier failed is left out (and reported).
pub(super) fn resolve(
    raw: &BTreeMap<String, RawProvider>,
    env: &dyn Fn(&str) -> Option<String>,
    catalog: &Catalog,
    models: &mut Models,
    problems: &mut Problems,
) -> Vec<ProviderConfig> {
    let mut providers = Vec::new();
    for (id, p) in raw {
        let path = format!("providers.{id}");
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            problems.add(
                path.clone(),
                "provider ids are lowercase letters, digits, `-` and `_`",
            );
        }
        let kind = kind(p, &path, problems);
        let kind_failed = p.kind.is_some() && kind.is_none();
        let preset = preset(id, p, kind, &path, problems);
        let wire = if kind_failed {
            None
        } else {
            Some(
                kind.or(preset.map(|p| p.wire))
                    .unwrap_or(WireFormat::OpenAi),
            )
        };
        let quirks = preset.map(|p| p.quirks).unwrap_or_default();
        let api_version = api_version(p, wire, &quirks, &path, problems);
        let base_url = base_url(p, preset, &path, problems);
        let tier = match (&p.tier, preset) {
            (Some(t), _) => t
                .parse()
                .map_err(|m| problems.add(format!("{path}.tier"), m))
                .ok(),
            (None, Some(preset)) => Some(preset.tier),
            (None, None) => {
                problems.add(
                    format!("{path}.tier"),
                    "is required: frontier, open-hosted or local",
                );
                None
            }
        };
        let api_key = p.api_key.as_deref().and_then(|v| {
            secret::resolve(v, env)
                .map_err(|m| problems.add(format!("{path}.api_key"), m))
                .ok()
        });
        let auth = preset.map(|pr| pr.auth).unwrap_or(AuthStyle::Bearer);
        if api_key.is_none()
            && p.api_key.is_none()
            && auth != AuthStyle::None
            && !is_loopback(&base_url)
        {
            problems.add(
                format!("{path}.api_key"),
                "is required for a remote provider (use env:NAME)",
            );
        }
        let headers = headers(p, env, &path, problems);
        let proxy = p.proxy.as_deref().and_then(|v| {
            let field = format!("{path}.proxy");
            let url = secret::resolve(v, env)
                .map_err(|m| problems.add(field.clone(), m))
                .ok()?;
            proxy(url.expose()).map_err(|m| problems.add(field, m)).ok()
        });
        let t = &p.timeouts;
        let timeouts = Timeouts {
            connect: problems.duration(&t.connect, &format!("{path}.timeouts.connect")),
            first_byte: problems.duration(&t.first_byte, &format!("{path}.timeouts.first_byte")),
            total: problems.duration(&t.total, &format!("{path}.timeouts.total")),
            idle: problems.duration(&t.idle, &format!("{path}.timeouts.idle")),
        };
        let catalog_key = preset
            .map(|p| p.id.to_string())
            .unwrap_or_else(|| id.clone());
        ProviderModels {
            index: providers.len(),
            catalog_key: &catalog_key,
            tier: tier.unwrap_or(Tier::Frontier),
        }
        .add(p, &path, catalog, models, problems);
        let cost_per_hour_micros = p.cost_per_hour.as_ref().and_then(|c| {
            let micros = c.micros();
            if micros.is_none() {
                problems.add(
                    format!("{path}.cost_per_hour"),
                    "must be a non-negative USD amount",
                );
            }
            micros
        });
        let max_reply_bytes = p.max_reply_bytes.unwrap_or(DEFAULT_MAX_REPLY_BYTES);
        if max_reply_bytes < 1024 {
            problems.add(format!("{path}.max_reply_bytes"), "must be at least 1024");
        }
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
                proxy,
                max_reply_bytes,
            });
        }
    }
    providers
}

/// `kind` is the wire format; `azure` is shorthand for OpenAI's with the azure preset.
fn kind(p: &RawProvider, path: &str, problems: &mut Problems) -> Option<WireFormat> {
    match p.kind.as_deref() {
        None => None,
        Some("openai") => Some(WireFormat::OpenAi),
        Some("anthropic") => Some(WireFormat::Anthropic),
        Some("gemini") => Some(WireFormat::Gemini),
        Some("azure") => Some(WireFormat::OpenAi),
        Some(other) => {
            problems.add(
                format!("{path}.kind"),
                format!(
                    "unknown wire format `{other}`; expected openai, anthropic, gemini or azure"
                ),
            );
            None
        }
    }
}

/// The preset named, or the one the provider is named after (unless its `kind` says
/// otherwise), or the default of a non-OpenAI wire format.
fn preset(
    id: &str,
    p: &RawProvider,
    kind: Option<WireFormat>,
    path: &str,
    problems: &mut Problems,
) -> Option<&'static Preset> {
    match (p.preset.as_deref(), p.kind.as_deref()) {
        (Some(named), _) => {
            let found = presets::find(named);
            match found {
                None => {
                    let known: Vec<_> = presets::PRESETS.iter().map(|p| p.id).collect();
                    problems.add(
                        format!("{path}.preset"),
                        format!("unknown preset `{named}`; known: {}", known.join(", ")),
                    );
                }
                Some(found) if kind.is_some_and(|k| k != found.wire) => problems.add(
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
        (None, _) => match presets::find(id) {
            Some(found) if kind.is_none_or(|k| k == found.wire) => Some(found),
            _ => match kind {
                Some(k) if k != WireFormat::OpenAi => Some(presets::default_for(k)),
                _ => None,
            },
        },
    }
}

/// Azure's `api-version` or Anthropic's `anthropic-version`, defaulted; elsewhere a problem.
fn api_version(
    p: &RawProvider,
    wire: Option<WireFormat>,
    quirks: &Quirks,
    path: &str,
    problems: &mut Problems,
) -> Option<String> {
    match (&p.api_version, wire) {
        (Some(v), Some(WireFormat::Anthropic)) => Some(v.clone()),
        (Some(v), Some(WireFormat::OpenAi)) if quirks.azure_deployments => Some(v.clone()),
        (Some(_), Some(_)) => {
            problems.add(
                format!("{path}.api_version"),
                "applies to Azure OpenAI (`api-version`) and Anthropic (`anthropic-version`) only",
            );
            None
        }
        (None, Some(WireFormat::OpenAi)) if quirks.azure_deployments => {
            Some(AZURE_API_VERSION.to_string())
        }
        (None, Some(WireFormat::Anthropic)) => Some(ANTHROPIC_VERSION.to_string()),
        _ => None,
    }
}

/// The base URL as written (without a trailing slash) or the preset's; must be http(s).
fn base_url(
    p: &RawProvider,
    preset: Option<&Preset>,
    path: &str,
    problems: &mut Problems,
) -> String {
    let base_url = match (&p.base_url, preset) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(preset)) if preset.base_url.is_empty() => {
            problems.add(
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
            problems.add(
                format!("{path}.base_url"),
                "is required (no preset named this provider)",
            );
            String::new()
        }
    };
    // Parsed as the adapters parse it, so a URL that passes here can be called.
    let callable = |u: http::Uri| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
    };
    if !base_url.is_empty() && !http::Uri::try_from(base_url.as_str()).is_ok_and(callable) {
        problems.add(
            format!("{path}.base_url"),
            format!("`{base_url}` is not an http(s) URL"),
        );
    }
    base_url
}

/// Extra headers; values may be `env:NAME`; the gateway's own framing headers are refused.
fn headers(
    p: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
    path: &str,
    problems: &mut Problems,
) -> Vec<(String, Secret)> {
    let mut headers = Vec::new();
    for (name, value) in &p.headers {
        let hpath = format!("{path}.headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.add(hpath.clone(), "is not a valid header name");
        }
        let lower = name.to_ascii_lowercase();
        if lower == "host" || lower == "content-length" || lower == "transfer-encoding" {
            problems.add(
                hpath.clone(),
                "is set by the gateway and cannot be overridden",
            );
        }
        if let Ok(v) = secret::resolve(value, env).map_err(|m| problems.add(hpath.clone(), m)) {
            if http::HeaderValue::from_str(v.expose()).is_err() {
                problems.add(hpath, "is not a valid header value");
            }
            headers.push((name.clone(), v));
        }
    }
    headers
}

/// Parses a proxy URL, `http://[user:password@]host[:port][/]` (port 80 if none;
/// credentials percent-encoded as in any URL). A problem never quotes the credentials.
fn proxy(url: &str) -> Result<Proxy, String> {
    let shown = super::secret::redact_url(url);
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(if url.starts_with("https://") {
            format!("`{shown}`: TLS to the proxy is not supported; give an http:// proxy (calls to https upstreams are still TLS end to end, through CONNECT)")
        } else {
            format!("`{shown}` is not an http://host:port proxy URL")
        });
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (credentials, host_port) = match authority.rsplit_once('@') {
        Some((credentials, host_port)) => (Some(credentials), host_port),
        None => (None, authority),
    };
    let invalid = || format!("`{shown}` is not an http://host:port proxy URL");
    if host_port.is_empty() || host_port.contains(['/', '?', '#']) {
        return Err(invalid());
    }
    let parsed = http::Uri::try_from(format!("http://{host_port}")).map_err(|_| invalid())?;
    let host = parsed
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(invalid)?;
    let port = parsed.port_u16().unwrap_or(80);
    let uri = http::Uri::try_from(format!("http://{host}:{port}")).map_err(|_| invalid())?;
    let (authorization, password) = match credentials {
        None => (None, None),
        Some(credentials) => {
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            let decoded = |s: &str| {
                percent_decode(s).ok_or_else(|| {
                    format!("`{shown}`: the credentials are not valid percent-encoded UTF-8")
                })
            };
            let (user, password) = (decoded(user)?, decoded(password)?);
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let password = (!password.is_empty()).then(|| Secret::new(password));
            (Some(Secret::new(format!("Basic {basic}"))), password)
        }
    };
    Ok(Proxy {
        uri,
        authorization,
        password,
    })
}

/// `%XX` escapes decoded; `None` when one is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A local server needs no key.
fn is_loopback(url: &str) -> bool {
    http::Uri::try_from(url).is_ok_and(|u| {
        u.host()
            .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]")
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn env(_: &str) -> Option<String> {
        None
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
        assert_eq!(
            err.paths(),
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
    fn ids_urls_keys_and_headers_are_checked() {
        let mut models = Models::new();
        let mut p = Problems::default();
        let raw = BTreeMap::from([
            (
                "Bad Id".to_string(),
                RawProvider {
                    base_url: Some("ftp://example.com".into()),
                    tier: Some("local".into()),
                    ..Default::default()
                },
            ),
            (
                "remote".to_string(),
                RawProvider {
                    base_url: Some("https://api.example.com/v1/".into()),
                    tier: Some("open-hosted".into()),
                    headers: BTreeMap::from([
                        ("Host".to_string(), "x".to_string()),
                        ("x-org".to_string(), "env:ORG".to_string()),
                    ]),
                    ..Default::default()
                },
            ),
            (
                "local".to_string(),
                RawProvider {
                    base_url: Some("http://localhost:8000/v1".into()),
                    tier: Some("local".into()),
                    ..Default::default()
                },
            ),
        ]);
        let providers = resolve(
            &raw,
            &env,
            crate::catalog::builtin::builtin(),
            &mut models,
            &mut p,
        );
        // The loopback server needs no key; the remote one does.
        assert_eq!(providers.len(), 3);
        let remote = providers.iter().find(|p| p.id == "remote").unwrap();
        assert_eq!(remote.base_url, "https://api.example.com/v1");
        assert_eq!(remote.auth, AuthStyle::Bearer);
        let err = p.finish(()).unwrap_err();
        assert_eq!(
            err.paths(),
            [
                "providers.Bad Id",
                "providers.Bad Id.base_url",
                "providers.Bad Id.api_key",
                "providers.remote.api_key",
                "providers.remote.headers.Host",
                "providers.remote.headers.x-org"
            ]
        );
    }

    #[test]
    fn proxies_are_parsed_with_their_credentials_kept_secret() {
        let env = |name: &str| (name == "CORP_PROXY").then(|| "http://proxy.corp".to_string());
        let cfg = Config::from_toml(
            r#"
            [providers.a]
            base_url = "https://api.example.com/v1"
            api_key = "k"
            tier = "frontier"
            catalog = false
            proxy = "http://gw:p%40ss%3Aword@10.0.0.1:3128/"
            [providers.b]
            base_url = "http://127.0.0.1:8000/v1"
            tier = "local"
            proxy = "env:CORP_PROXY"
            "#,
            &env,
        )
        .unwrap();
        let a = cfg.providers[0].proxy.as_ref().unwrap();
        assert_eq!(
            (a.uri.host(), a.uri.port_u16()),
            (Some("10.0.0.1"), Some(3128))
        );
        assert_eq!(a.to_string(), "http://10.0.0.1:3128");
        // base64("gw:p@ss:word")
        assert_eq!(
            a.authorization.as_ref().unwrap().expose(),
            "Basic Z3c6cEBzczp3b3Jk"
        );
        assert_eq!(a.password.as_ref().unwrap().expose(), "p@ss:word");
        assert!(!format!("{a:?}").contains("p@ss"), "{a:?}");
        let b = cfg.providers[1].proxy.as_ref().unwrap();
        assert_eq!(b.to_string(), "http://proxy.corp:80");
        assert!(b.authorization.is_none());
    }

    #[test]
    fn proxy_mistakes_are_reported_without_the_credentials() {
        for (proxy, says) in [
            (
                "https://u:hunter22@proxy:443",
                "TLS to the proxy is not supported",
            ),
            (
                "socks5://u:hunter22@proxy:1080",
                "is not an http://host:port proxy URL",
            ),
            (
                "http://u:hunter22@proxy:3128/path",
                "is not an http://host:port proxy URL",
            ),
            ("http://u:hunter22@", "is not an http://host:port proxy URL"),
            (
                "http://u:hunter22%zz@proxy:3128",
                "not valid percent-encoded",
            ),
            ("env:NO_SUCH_PROXY", "env var NO_SUCH_PROXY is not set"),
        ] {
            let toml = format!(
                "[providers.a]\nbase_url = \"http://127.0.0.1:1/v1\"\ntier = \"local\"\nproxy = \"{proxy}\"\n"
            );
            let err = Config::from_toml(&toml, &env).unwrap_err();
            assert_eq!(err.paths(), ["providers.a.proxy"], "{proxy}");
            let text = err.to_string();
            assert!(text.contains(says), "{proxy}: {text}");
            assert!(!text.contains("hunter22"), "{proxy}: {text}");
        }
    }
}
