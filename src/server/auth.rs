//! Who is calling: the gateway key from `Authorization: Bearer`, `x-api-key`
//! (Anthropic SDKs) or `api-key` (Azure clients), compared by hash only.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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

/// How many presented keys a `KeyMemo` holds at most.
pub const KEY_MEMO_ENTRIES: usize = 1024;

/// The SHA-256 of presented keys that authenticated, by the key's text, so that a
/// caller's next call looks its digest up instead of hashing the key again. It holds
/// digests only, never a decision: whether the key is valid (known, not revoked, not
/// expired) and what it may do is decided on every call from the config and the key
/// store, as for a key not held here. A key enters only once it has authenticated, so
/// unknown keys cannot fill it; it holds at most `KEY_MEMO_ENTRIES` keys (a full memo
/// drops an entry for each new one), one per config (`Runtime`), so a reload starts it
/// empty. A held key that no longer authenticates is dropped. Lookups hash the key with
/// the map's per-process random SipHash keys and compare it whole; docs/security.md has
/// why that is no timing oracle. Its `Debug` shows the count only.
pub struct KeyMemo {
    seen: RwLock<HashMap<Box<str>, KeyHash>>,
}

impl KeyMemo {
    pub fn new() -> KeyMemo {
        KeyMemo {
            seen: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str) -> Option<KeyHash> {
        self.seen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
    }

    fn remember(&self, key: &str, hash: KeyHash) {
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= KEY_MEMO_ENTRIES && !seen.contains_key(key) {
            // The first entry of the map's order: where its random hash put it.
            if let Some(old) = seen.keys().next().cloned() {
                seen.remove(&old);
            }
        }
        seen.insert(key.into(), hash);
    }

    fn forget(&self, key: &str) {
        self.seen
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.seen.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for KeyMemo {
    fn default() -> Self {
        KeyMemo::new()
    }
}

impl std::fmt::Debug for KeyMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMemo")
            .field("entries", &self.len())
            .finish()
    }
}

/// Resolves the caller from the request's key (config keys, then virtual keys); 401
/// when missing, unknown, revoked or expired. `memo` spares the key's hash on a
/// known caller's calls, never the checks.
pub fn authenticate(
    headers: &HeaderMap,
    config: &Config,
    store: &KeyStore,
    memo: &KeyMemo,
    now_ms: i64,
) -> Result<Caller, ApiError> {
    let key = presented_key(headers)?.ok_or_else(|| {
        ApiError::Unauthorized("Missing gateway key: send `Authorization: Bearer <key>`.".into())
    })?;
    let held = memo.get(key);
    let hash = held.unwrap_or_else(|| hash_key(key));
    let caller = resolve(hash, config, store, now_ms);
    match (&caller, held) {
        (Ok(_), None) => memo.remember(key, hash),
        (Err(_), Some(_)) => memo.forget(key),
        _ => {}
    }
    caller
}

/// The caller a key's hash names (config keys, then live virtual keys).
fn resolve(
    hash: KeyHash,
    config: &Config,
    store: &KeyStore,
    now_ms: i64,
) -> Result<Caller, ApiError> {
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

    fn config_with(with_app_key: bool) -> Config {
        let keys = if with_app_key {
            "[[keys]]\nname = \"app\"\nkey = \"sk-app\"\nmarkup_percent = 5.0\n"
        } else {
            ""
        };
        let toml = format!("[server]\nmaster_key = \"sk-master\"\n{keys}");
        Config::from_toml(&toml, &|_| None).unwrap()
    }

    fn bearer(key: &str) -> HeaderMap {
        with("authorization", &format!("Bearer {key}"))
    }

    fn virtual_key(key: &str, name: &str, markup: f64) -> KeyConfig {
        let settings = crate::billing::keys::NewKey {
            name: name.into(),
            markup_percent: Some(markup),
            ..Default::default()
        };
        settings.to_config(hash_key(key)).unwrap()
    }

    #[test]
    fn a_held_key_is_checked_on_every_call() {
        let (config, store, memo) = (config_with(true), KeyStore::default(), KeyMemo::new());
        let auth = |key: &str, now: i64| authenticate(&bearer(key), &config, &store, &memo, now);
        // Config keys and the master key enter once they have authenticated.
        for _ in 0..3 {
            assert_eq!(auth("sk-app", 0).unwrap().markup_bp, 500);
            assert!(auth("sk-master", 0).unwrap().admin);
        }
        assert_eq!(memo.len(), 2);

        // A virtual key: edits, expiry and revocation apply from the very next call.
        store.put(virtual_key("bzr-v", "v", 1.0), Some(1_000));
        assert_eq!(auth("bzr-v", 10).unwrap().markup_bp, 100);
        assert_eq!(auth("bzr-v", 10).unwrap().markup_bp, 100);
        assert_eq!(memo.len(), 3);
        store.put(virtual_key("bzr-v", "v", 2.0), Some(1_000));
        assert_eq!(auth("bzr-v", 20).unwrap().markup_bp, 200);
        assert!(auth("bzr-v", 1_000).is_err(), "expired");
        assert_eq!(memo.len(), 2, "a held key that fails is dropped");
        store.put(virtual_key("bzr-v", "v", 2.0), None);
        assert!(auth("bzr-v", 2_000).is_ok());
        store.remove(&hash_key("bzr-v"));
        assert!(auth("bzr-v", 2_000).is_err(), "revoked");
        assert!(auth("bzr-v", 2_000).is_err());

        // A config that no longer has the key refuses it, even through the same memo (a
        // reload builds a new runtime, whose memo starts empty).
        let reloaded = config_with(false);
        assert!(authenticate(&bearer("sk-app"), &reloaded, &store, &memo, 0).is_err());
        assert!(auth("sk-master", 0).is_ok());
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn unknown_keys_never_enter_and_valid_ones_are_bounded() {
        let (config, store, memo) = (config_with(true), KeyStore::default(), KeyMemo::new());
        for i in 0..2_000 {
            let key = format!("sk-guess-{i}");
            assert!(authenticate(&bearer(&key), &config, &store, &memo, 0).is_err());
        }
        assert!(memo.is_empty());
        // Many valid keys: the memo stays at its cap, and every key still authenticates.
        let n = KEY_MEMO_ENTRIES + 300;
        for i in 0..n {
            let key = format!("bzr-{i}");
            store.put(virtual_key(&key, &format!("k{i}"), 0.0), None);
            assert!(authenticate(&bearer(&key), &config, &store, &memo, 0).is_ok());
        }
        assert_eq!(memo.len(), KEY_MEMO_ENTRIES);
        for i in 0..n {
            let key = format!("bzr-{i}");
            let caller = authenticate(&bearer(&key), &config, &store, &memo, 0).unwrap();
            assert_eq!(&*caller.name, format!("k{i}"));
            assert_eq!(caller.key_hash, hash_key(&key));
        }
        assert_eq!(memo.len(), KEY_MEMO_ENTRIES);
        assert_eq!(format!("{memo:?}"), "KeyMemo { entries: 1024 }");
        assert!(!format!("{memo:?}").contains("bzr-"));
    }
}
