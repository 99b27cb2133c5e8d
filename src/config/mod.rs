//! The resolved runtime `Config`, swapped whole on reload, and `resolve`, which turns
//! the TOML as written (`raw`) into it section by section (`server`, `providers`,
//! `models`, `keys`, `routes`, `ledger`), collecting every problem with its TOML path
//! into one `Problems`. The environment is read here and nowhere else; config depends
//! on `catalog` only and never on the modules that use it.

pub mod keys;
pub mod ledger;
pub mod models;
pub mod predictor;
pub mod presets;
pub mod problems;
pub mod providers;
pub mod raw;
pub mod reload;
pub mod routes;
pub mod secret;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

pub use keys::{
    parse_budget, Budget, KeyConfig, KeySettings, Limits, Period, TeamConfig, TeamSettings,
};
pub use ledger::LedgerConfig;
pub use models::{ModelTarget, Models, Slot};
pub use predictor::{PredictorConfig, PredictorLoadError};
pub use problems::{ConfigError, ConfigProblem, Problems, ValueError};
pub use providers::{
    ProviderConfig, Proxy, Timeouts, WireFormat, ANTHROPIC_VERSION, AZURE_API_VERSION,
    DEFAULT_MAX_REPLY_BYTES,
};
pub use raw::RawConfig;
pub use routes::{BreakerSettings, Policy, RouteConfig, RouterConfig, Weights};
pub use secret::{redact_url, KeyHash, Secret};
pub use server::ServerConfig;

use crate::catalog::Catalog;

/// The complete runtime configuration; swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub providers: Vec<ProviderConfig>,
    /// Public model id → the targets that serve it, in config order.
    pub models: Models,
    /// The ids of `models` that serve chat, in id order: what a route without `models` spans.
    pub chat_models: Vec<String>,
    /// Keys by their SHA-256, hashed by the digest's own bytes (`DigestState`).
    pub keys: HashMap<KeyHash, Arc<KeyConfig>, secret::DigestState>,
    pub teams: BTreeMap<String, TeamConfig>,
    pub router: RouterConfig,
    /// Named routes, including the built-in `auto`, `cheap` and `fast` unless redefined.
    pub routes: BTreeMap<String, RouteConfig>,
    /// The built-in catalog with `catalog.file` merged in.
    pub catalog: Arc<Catalog>,
    /// Other names clients may use for a served model (`qwen3:8b` → `qwen3-8b`).
    pub aliases: BTreeMap<String, String>,
    pub ledger: LedgerConfig,
    /// How long stored responses are kept (`[responses] ttl`, default 30 days).
    pub responses_ttl: std::time::Duration,
    /// Redis URL for limits and budgets shared across replicas; `None`: in process.
    pub redis: Option<String>,
}

/// What stands in for a provider secret that an offline command does not need.
const OFFLINE_SECRET: &str = "unset-offline";

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
        let mut config = Config::resolve(&Config::read_raw(path)?, env)?;
        config.rebase_paths(Config::dir_of(path));
        Ok(config)
    }

    /// Reads the file at `path` for a command that never calls a provider (`keys`,
    /// `catalog show`, `router eval`): a provider key or header that names an unset
    /// environment variable is not a problem there, so those commands run without the
    /// providers' secrets. Everything else is checked as for `serve`.
    pub fn load_offline(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut raw = Config::read_raw(path)?;
        for provider in raw.providers.values_mut() {
            let values = provider
                .api_key
                .iter_mut()
                .chain(provider.headers.values_mut());
            for value in values {
                if value
                    .strip_prefix("env:")
                    .is_some_and(|var| !var.is_empty() && env(var).is_none_or(|v| v.is_empty()))
                {
                    *value = OFFLINE_SECRET.to_string();
                }
            }
        }
        let mut config = Config::resolve(&raw, env)?;
        config.rebase_paths(Config::dir_of(path));
        Ok(config)
    }

    fn dir_of(path: &Path) -> &Path {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![ConfigProblem {
                path: path.display().to_string(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        toml::from_str(&text).map_err(|e| ConfigError {
            problems: vec![toml_problem(&e)],
        })
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
                    catalog: Some(true),
                    ..Default::default()
                },
            );
        }
        raw
    }

    /// Turns the TOML as written into the runtime form. Sections resolve in file order
    /// into one collector, so every problem is reported at once.
    pub fn resolve(
        raw: &RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        let p = &mut problems;
        let server = server::resolve(&raw.server, env, p);
        let catalog = models::load_catalog(&raw.catalog, p);
        let mut models = Models::new();
        let providers = providers::resolve(&raw.providers, env, &catalog, &mut models, p);
        models::resolve_models(
            &raw.models,
            &raw.providers,
            &providers,
            &catalog,
            &mut models,
            p,
        );
        let keys = keys::resolve_keys(&raw.keys, server.master_key, env, p);
        let redis = server::resolve_state(&raw.state, env, p);
        let teams = keys::resolve_teams(&raw.teams, p);
        let aliases = models::aliases(&models, &catalog);
        let chat_models = models::chat_models(&models, &catalog);
        let router = routes::resolve_router(&raw.router, &catalog, &models, p);
        let ledger = ledger::resolve(&raw.ledger, env, p);
        let responses_ttl = ledger::resolve_responses_ttl(&raw.responses, p);
        let mut routes = routes::resolve_routes(&raw.routes, &router, &models, &aliases, p);
        routes::resolve_targets(&mut routes, &models, &chat_models);
        problems.finish(Config {
            server,
            providers,
            models,
            chat_models,
            keys,
            teams,
            router,
            routes,
            catalog,
            aliases,
            ledger,
            responses_ttl,
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

fn toml_problem(e: &toml::de::Error) -> ConfigProblem {
    ConfigProblem {
        path: "bazaar.toml".into(),
        message: e.to_string().trim_end().replace('\n', "\n    "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Tier;

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
        assert_eq!(
            err.paths(),
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
