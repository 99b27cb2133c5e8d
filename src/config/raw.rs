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
    #[serde(default)]
    pub teams: Vec<RawTeam>,
    #[serde(default)]
    pub router: RawRouter,
    /// Named routes clients may send as `model`.
    #[serde(default)]
    pub routes: BTreeMap<String, RawRoute>,
    #[serde(default)]
    pub catalog: RawCatalog,
    #[serde(default)]
    pub ledger: RawLedger,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub responses: RawResponses,
}

/// Stored responses (`POST /v1/responses` with `store`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponses {
    /// How long a stored response can be continued or read back.
    #[serde(default = "default_responses_ttl")]
    pub ttl: String,
}

impl Default for RawResponses {
    fn default() -> Self {
        RawResponses {
            ttl: default_responses_ttl(),
        }
    }
}

fn default_responses_ttl() -> String {
    "30d".into()
}

/// Shared state for several replicas.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// `redis://host:6379/` (or `env:NAME`): limits and budgets shared by every replica.
    #[serde(default)]
    pub redis: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    /// `sqlite://path` (relative paths are beside the config file) or `postgres://…`.
    #[serde(default = "default_ledger_url")]
    pub url: String,
    /// Rows that may wait in memory for the database.
    #[serde(default = "default_ledger_queue")]
    pub queue: usize,
    /// Rows written per statement batch.
    #[serde(default = "default_ledger_batch")]
    pub batch: usize,
    #[serde(default = "default_ledger_flush")]
    pub flush_every: String,
    /// Where rows go when the database cannot take them; replayed later. Default: beside the SQLite file, or the config.
    #[serde(default)]
    pub spill_file: Option<String>,
}

impl Default for RawLedger {
    fn default() -> Self {
        RawLedger {
            url: default_ledger_url(),
            queue: default_ledger_queue(),
            batch: default_ledger_batch(),
            flush_every: default_ledger_flush(),
            spill_file: None,
        }
    }
}

fn default_ledger_url() -> String {
    "sqlite://bazaar-ledger.sqlite".into()
}
fn default_ledger_queue() -> usize {
    10_000
}
fn default_ledger_batch() -> usize {
    500
}
fn default_ledger_flush() -> String {
    "200ms".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouter {
    /// Policy for concrete models served by several providers.
    #[serde(default = "default_policy")]
    pub policy: String,
    /// Most backends one call may try.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Output tokens assumed when estimating cost and latency and `max_tokens` is absent.
    #[serde(default = "default_expected_output")]
    pub expected_output_tokens: u64,
    /// How long a session sticks to the backend that served it.
    #[serde(default = "default_affinity_ttl")]
    pub affinity_ttl: String,
    #[serde(default)]
    pub weights: Option<RawWeights>,
    #[serde(default)]
    pub breaker: RawBreaker,
    /// The frontier model savings are measured against when a route names none.
    #[serde(default = "default_reference")]
    pub reference: String,
    /// The quality predictor (`[router.predictor]`).
    #[serde(default)]
    pub predictor: RawPredictor,
    /// What the gateway keeps to retrain the predictor (`[router.learn]`).
    #[serde(default)]
    pub learn: RawLearn,
}

/// `[router.predictor]`: on by default with the embedded weights.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPredictor {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A weights file from `bazaar router train`, instead of the embedded weights.
    #[serde(default)]
    pub file: Option<String>,
}

impl Default for RawPredictor {
    fn default() -> Self {
        RawPredictor {
            enabled: true,
            file: None,
        }
    }
}

/// `[router.learn]`: prompt text is kept in the ledger only when asked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLearn {
    #[serde(default)]
    pub keep_prompts: bool,
}

fn default_true() -> bool {
    true
}

fn default_reference() -> String {
    "gpt-4o".into()
}

impl Default for RawRouter {
    fn default() -> Self {
        RawRouter {
            policy: default_policy(),
            max_attempts: default_max_attempts(),
            expected_output_tokens: default_expected_output(),
            affinity_ttl: default_affinity_ttl(),
            weights: None,
            breaker: RawBreaker::default(),
            reference: default_reference(),
            predictor: RawPredictor::default(),
            learn: RawLearn::default(),
        }
    }
}

fn default_policy() -> String {
    "balanced".into()
}
fn default_max_attempts() -> u32 {
    3
}
fn default_expected_output() -> u64 {
    256
}
fn default_affinity_ttl() -> String {
    "10m".into()
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeights {
    #[serde(default)]
    pub cost: f64,
    #[serde(default)]
    pub latency: f64,
    #[serde(default)]
    pub quality: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    #[serde(default = "default_breaker_threshold")]
    pub threshold: u32,
    #[serde(default = "default_breaker_cooldown")]
    pub cooldown: String,
    #[serde(default = "default_breaker_max_cooldown")]
    pub max_cooldown: String,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker {
            threshold: default_breaker_threshold(),
            cooldown: default_breaker_cooldown(),
            max_cooldown: default_breaker_max_cooldown(),
        }
    }
}

fn default_breaker_threshold() -> u32 {
    5
}
fn default_breaker_cooldown() -> String {
    "10s".into()
}
fn default_breaker_max_cooldown() -> String {
    "5m".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Candidate models; empty means every chat model the gateway serves.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub weights: Option<RawWeights>,
    /// Minimum quality (0–100) for `cheapest-above-quality`.
    #[serde(default)]
    pub quality_floor: Option<f64>,
    /// Allowed tiers; empty means all.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// The frontier model the savings baseline prices this route's calls at.
    #[serde(default)]
    pub reference: Option<String>,
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
    /// When set, `GET /metrics` needs it (or the master key) as a Bearer key.
    #[serde(default)]
    pub metrics_key: Option<String>,
    /// How long in-flight calls may take to finish after SIGTERM.
    #[serde(default = "default_drain")]
    pub drain_timeout: String,
    /// After SIGTERM, how long to keep accepting connections while /readyz reports
    /// unready, so load balancers stop routing here first.
    #[serde(default = "default_grace")]
    pub shutdown_grace: String,
    /// A connection that has not sent a complete request head within this time (also
    /// between requests on a kept-alive connection) is closed.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: String,
    /// A request body not received in full within this time gets a 400.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout: String,
    /// Request bodies being read at once, across all connections; more wait for a turn.
    #[serde(default = "default_max_bodies_in_flight")]
    pub max_bodies_in_flight: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            master_key: None,
            metrics_key: None,
            drain_timeout: default_drain(),
            shutdown_grace: default_grace(),
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            max_bodies_in_flight: default_max_bodies_in_flight(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_body_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_header_read_timeout() -> String {
    "10s".into()
}
fn default_body_read_timeout() -> String {
    "30s".into()
}
fn default_max_bodies_in_flight() -> usize {
    64
}
fn default_drain() -> String {
    "30s".into()
}
fn default_grace() -> String {
    "0s".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Wire format: `openai` (default), `anthropic`, `gemini`, or `azure` (OpenAI's
    /// with the azure preset).
    #[serde(default)]
    pub kind: Option<String>,
    /// A preset from `config/presets.rs`; defaults to the provider's id when one matches.
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Azure OpenAI's `api-version`, or Anthropic's `anthropic-version` header.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The provider's key: `env:NAME` or a literal.
    #[serde(default)]
    pub api_key: Option<String>,
    /// `frontier`, `open-hosted` or `local`.
    #[serde(default)]
    pub tier: Option<String>,
    /// Extra headers sent on every upstream call; values may be `env:NAME`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The models this provider serves: catalog ids (under the provider's own upstream
    /// id) or upstream ids. Listing models means exactly these.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// An HTTP proxy for this provider's calls, `http://[user:password@]host:port`
    /// (or `env:NAME`): CONNECT for https upstreams, absolute-form for http ones.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Serve every catalog model this provider (its preset) offers, under the catalog's
    /// ids. Unset: only when `models` lists none.
    #[serde(default)]
    pub catalog: Option<bool>,
    /// A local server's running cost in USD per hour; its per-token price is this
    /// divided by its measured throughput. Unset: free.
    #[serde(default)]
    pub cost_per_hour: Option<RawPrice>,
    /// Largest upstream reply body (and single stream event) read, in bytes.
    #[serde(default)]
    pub max_reply_bytes: Option<usize>,
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
    /// Overrides of what the catalog says (or facts for a model it does not know).
    /// Prices are USD per million tokens, as a number or a decimal string.
    #[serde(default)]
    pub input_price: Option<RawPrice>,
    #[serde(default)]
    pub cached_input_price: Option<RawPrice>,
    #[serde(default)]
    pub cache_write_price: Option<RawPrice>,
    /// Cache writes that last an hour (Anthropic's 1-hour cache).
    #[serde(default)]
    pub cache_write_1h_price: Option<RawPrice>,
    #[serde(default)]
    pub output_price: Option<RawPrice>,
    #[serde(default)]
    pub reasoning_price: Option<RawPrice>,
    #[serde(default)]
    pub context: Option<u64>,
    #[serde(default)]
    pub max_output: Option<u64>,
    #[serde(default)]
    pub tools: Option<bool>,
    #[serde(default)]
    pub vision: Option<bool>,
    #[serde(default)]
    pub json_schema: Option<bool>,
    #[serde(default)]
    pub reasoning: Option<bool>,
    /// Quality prior 0–100 for every task category.
    #[serde(default)]
    pub quality: Option<f64>,
    #[serde(default)]
    pub quantization: Option<String>,
    #[serde(default)]
    pub trains_on_prompts: Option<bool>,
}

/// A dollar amount as written: `2.5` or `"2.5"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawPrice {
    Number(f64),
    Text(String),
}

impl RawPrice {
    /// The amount in micro-dollars, exactly as written (a number goes through its shortest decimal text).
    pub fn micros(&self) -> Option<u64> {
        match self {
            RawPrice::Number(f) if f.is_finite() && *f >= 0.0 => {
                crate::catalog::parse_usd_micros(&format!("{f}"))
            }
            RawPrice::Number(_) => None,
            RawPrice::Text(t) => crate::catalog::parse_usd_micros(t),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    /// A catalog to merge over the built-in one: bazaar's format, or a LiteLLM or
    /// OpenRouter price list.
    #[serde(default)]
    pub file: Option<String>,
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
    /// Spend limit per UTC calendar period: `"50/month"`, `"5/day"`, `"20/week"` (USD).
    #[serde(default)]
    pub budget: Option<String>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens (prompt estimate + max output) per minute.
    #[serde(default)]
    pub tpm: Option<u32>,
    /// Models (or routes) this key may use; empty: all.
    #[serde(default)]
    pub models: Vec<String>,
    /// Tiers this key may use; empty: all.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// A visible markup on this key's costs, in percent.
    #[serde(default)]
    pub markup_percent: Option<f64>,
    /// When the shared state (Redis) cannot be reached: `closed` refuses the call (503),
    /// `open` admits it unchecked.
    #[serde(default)]
    pub on_shared_state_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeam {
    pub name: String,
    #[serde(default)]
    pub budget: Option<String>,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u32>,
}
