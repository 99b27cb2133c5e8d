//! Who is calling: the gateway key from `Authorization: Bearer`, `x-api-key`
//! (Anthropic SDKs) or `api-key` (Azure clients), compared by hash only.

use http::HeaderMap;

use crate::api::ApiError;
use crate::billing::keys::{hash_key, KeyHash, KeyStore};
use crate::config::{Config, KeyConfig};
use crate::router::filter::CallerLimits;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's name (never the key).
    pub name: String,
    pub team: Option<String>,
    /// The master key: may see everything and call the admin API.
    pub admin: bool,
    pub key_hash: KeyHash,
    /// Markup in basis points added to this caller's costs (visible in the ledger).
    pub markup_bp: u32,
    /// The key's settings (limits, allowed models and tiers); `None` for the master key.
    pub key: Option<KeyConfig>,
}

impl Caller {
    /// The routing restrictions of this caller's key.
    pub fn limits(&self) -> CallerLimits {
        CallerLimits {
            tiers: self
                .key
                .as_ref()
                .map(|k| k.tiers.clone())
                .filter(|t| !t.is_empty()),
            models: self
                .key
                .as_ref()
                .map(|k| k.models.clone())
                .filter(|m| !m.is_empty()),
        }
    }
}

/// The key a request presents, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v);
        return Some(token.trim()).filter(|t| !t.is_empty());
    }
    ["x-api-key", "api-key"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Resolves the caller from the request's key (config keys, then virtual keys); 401
/// when missing, unknown, revoked or expired.
pub fn authenticate(
    headers: &HeaderMap,
    config: &Config,
    store: &KeyStore,
    now_ms: i64,
) -> Result<Caller, ApiError> {
    let key = presented_key(headers).ok_or_else(|| {
        ApiError::Unauthorized("Missing gateway key: send `Authorization: Bearer <key>`.".into())
    })?;
    let hash = hash_key(key);
    if config.server.master_key == Some(hash) {
        return Ok(Caller {
            name: "master".into(),
            team: None,
            admin: true,
            key_hash: hash,
            markup_bp: 0,
            key: None,
        });
    }
    match config.keys.get(&hash) {
        Some(k) => Ok(Caller {
            name: k.name.clone(),
            team: k.team.clone(),
            admin: false,
            key_hash: hash,
            markup_bp: k.markup_bp,
            key: Some(k.clone()),
        }),
        None => match store.lookup(&hash, now_ms) {
            Some(k) => Ok(Caller {
                name: k.name.clone(),
                team: k.team.clone(),
                admin: false,
                key_hash: hash,
                markup_bp: k.markup_bp,
                key: Some(k),
            }),
            None => Err(ApiError::Unauthorized("Invalid gateway key.".into())),
        },
    }
}
