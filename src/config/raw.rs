//! The TOML exactly as written: plain serde structs, unknown fields rejected,
//! defaults as named functions. Nothing is interpreted here; `Config::resolve` does that.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Admin key: may call every endpoint, and the admin API.
    #[serde(default)]
    pub master_key: Option<String>,
    /// How long in-flight calls may take to finish after SIGTERM.
    #[serde(default = "default_drain")]
    pub drain_timeout: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            master_key: None,
            drain_timeout: default_drain(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_body_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_drain() -> String {
    "30s".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Wire format: `openai` (default).
    #[serde(default)]
    pub kind: Option<String>,
    /// A preset from `providers/openai/presets.rs`; defaults to the provider's id when one matches.
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    /// The provider's key: `env:NAME` or a literal.
    #[serde(default)]
    pub api_key: Option<String>,
    /// `frontier`, `open-hosted` or `local`.
    #[serde(default)]
    pub tier: Option<String>,
    /// Extra headers sent on every upstream call; values may be `env:NAME`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Public model ids this provider serves under the same upstream id.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default = "default_connect")]
    pub connect: String,
    #[serde(default = "default_first_byte")]
    pub first_byte: String,
    #[serde(default = "default_total")]
    pub total: String,
    #[serde(default = "default_idle")]
    pub idle: String,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        RawTimeouts {
            connect: default_connect(),
            first_byte: default_first_byte(),
            total: default_total(),
            idle: default_idle(),
        }
    }
}

fn default_connect() -> String {
    "5s".into()
}
fn default_first_byte() -> String {
    "60s".into()
}
fn default_total() -> String {
    "600s".into()
}
fn default_idle() -> String {
    "60s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The public id clients send as `model`.
    pub id: String,
    /// The provider (a key of `[providers]`) that serves it.
    pub provider: String,
    /// The provider's own id for it; defaults to `id`.
    #[serde(default)]
    pub upstream: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// A label for logs and the ledger.
    pub name: String,
    /// The key clients send: `env:NAME` or a literal.
    pub key: String,
    #[serde(default)]
    pub team: Option<String>,
}
