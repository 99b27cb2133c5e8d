//! Who is calling: the gateway key from `Authorization: Bearer`, `x-api-key`
//! (Anthropic SDKs) or `api-key` (Azure clients), compared by hash only.

use std::sync::Arc;

use http::HeaderMap;

use crate::api::ApiError;
use crate::billing::keys::{hash_key, KeyHash, KeyStore};
use crate::config::{Config, KeyConfig};
use crate::router::filter::CallerLimits;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's name (never the key); shared with the key's settings, as is the team.
    pub name: Arc<str>,
    pub team: Option<Arc<str>>,
    /// The master key: may see everything and call the admin API.
    pub admin: bool,
    pub key_hash: KeyHash,
    /// Markup in basis points added to this caller's costs (visible in the ledger).
    pub markup_bp: u32,
    /// The key's settings (limits, allowed models and tiers); `None` for the master key.
    /// Shared with the config or the key store: a call does not copy them.
    pub key: Option<Arc<KeyConfig>>,
}

impl Caller {
    /// The key's identity in the ledger (`KeyConfig::id`; `master` for the master key).
    pub fn key_id(&self) -> &str {
        self.key.as_ref().map_or("master", |k| &k.id)
    }

    /// `key_id`, shared (the master key's is made on each call).
    pub fn shared_key_id(&self) -> Arc<str> {
        self.key
            .as_ref()
            .map_or_else(|| Arc::from("master"), |k| k.id.clone())
    }

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

/// The key a request presents, if any: `Authorization: Bearer <key>` (the scheme in any
/// case), else `x-api-key` or `api-key`. An `Authorization` header that is not a Bearer
/// credential (no scheme, another scheme, no token, not text) is refused, not guessed at.
pub fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let malformed = || {
            ApiError::Unauthorized(
                "Malformed Authorization header: send `Authorization: Bearer <key>`.".into(),
            )
        };
        let v = v.to_str().map_err(|_| malformed())?.trim();
        let (scheme, token) = v
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or_else(malformed)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(malformed());
        }
        return Ok(Some(token));
    }
    Ok(["x-api-key", "api-key"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|t| !t.is_empty()))
}

/// Resolves the caller from the request's key (config keys, then virtual keys); 401
/// when missing, unknown, revoked or expired.
pub fn authenticate(
    headers: &HeaderMap,
    config: &Config,
    store: &KeyStore,
    now_ms: i64,
) -> Result<Caller, ApiError> {
    let key = presented_key(headers)?.ok_or_else(|| {
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

/// 401 unless the request may read `/metrics`: anyone when `[server] metrics_key` is not
/// set, else only a caller presenting that key or the master key.
pub fn check_metrics_key(headers: &HeaderMap, config: &Config) -> Result<(), ApiError> {
    let Some(wanted) = config.server.metrics_key else {
        return Ok(());
    };
    let hash = presented_key(headers)?.map(hash_key);
    if hash.is_some_and(|h| h == wanted || config.server.master_key == Some(h)) {
        return Ok(());
    }
    Err(ApiError::Unauthorized(
        "/metrics needs the metrics key: send `Authorization: Bearer <metrics_key>`.".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, http::HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_anything_else_is_refused() {
        for ok in ["Bearer k1", "bearer k1", "BEARER k1", "  BeArEr   k1  "] {
            assert_eq!(
                presented_key(&with("authorization", ok)).unwrap(),
                Some("k1"),
                "{ok}"
            );
        }
        for bad in ["k1", "Basic k1", "Bearer", "Bearer   ", "Token k1"] {
            assert!(presented_key(&with("authorization", bad)).is_err(), "{bad}");
        }
        assert_eq!(presented_key(&with("x-api-key", "k2")).unwrap(), Some("k2"));
        assert_eq!(presented_key(&HeaderMap::new()).unwrap(), None);
    }
}
