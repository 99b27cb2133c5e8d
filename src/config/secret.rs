//! `Secret`: a credential read from config or the environment, and `KeyHash`, the only
//! form in which a gateway key is kept. Debug and Display redact a secret, so it cannot
//! reach a log line or an error message by accident; nothing here stores or logs one.

use std::fmt;

use sha2::{Digest, Sha256};

use super::problems::ValueError;

/// The SHA-256 of a gateway key; the only form in which a key is kept or compared.
pub type KeyHash = [u8; 32];

/// A `Hasher` for keys that are already uniform digests (a `KeyHash`, a keyed 64-bit
/// fingerprint): the hash is the first eight bytes of the last value written, not a
/// second hash of the digest. Only for maps whose keys no caller can choose freely:
/// a digest of a secret, or a fingerprint under a per-process random key.
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A slice is written as its length, then its bytes: the bytes win.
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 = u64::from_le_bytes(head);
    }
}

/// Builds `DigestHasher`s: the map hasher of `Config::keys` and the key store.
pub type DigestState = std::hash::BuildHasherDefault<DigestHasher>;

/// Hashes a presented or configured gateway key.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// A credential. Only `expose()` reveals it, at the point it is put on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The credential itself, for an outgoing header or a hash; never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash a gateway key is stored and looked up by.
    pub fn hash(&self) -> KeyHash {
        hash_key(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret value in the TOML comes from: `env:NAME` reads the environment,
/// anything else is the literal value.
pub fn resolve(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Secret, ValueError> {
    match value.strip_prefix("env:") {
        Some("") => Err(ValueError::EnvNameMissing),
        Some(name) => match lookup(name) {
            Some(v) if !v.is_empty() => Ok(Secret(v)),
            Some(_) => Err(ValueError::EnvEmpty(name.to_string())),
            None => Err(ValueError::EnvUnset(name.to_string())),
        },
        None => Ok(Secret(value.to_string())),
    }
}

/// A database or Redis URL, which may be `env:NAME` as a whole so that its password
/// stays out of the file.
pub fn resolve_url(
    url: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ValueError> {
    match url.strip_prefix("env:") {
        Some(_) => resolve(url, lookup).map(|s| s.0),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }

    #[test]
    fn env_lookup() {
        let env = |name: &str| (name == "K").then(|| "v".to_string());
        assert_eq!(resolve("env:K", &env).unwrap().expose(), "v");
        assert_eq!(
            resolve("env:MISSING", &env).unwrap_err().to_string(),
            "env var MISSING is not set"
        );
        assert_eq!(resolve("literal", &env).unwrap().expose(), "literal");
    }

    #[test]
    fn urls_come_from_env_and_hide_their_password() {
        let env = |name: &str| (name == "DB").then(|| "postgres://u:pw@db/x".to_string());
        assert_eq!(resolve_url("env:DB", &env).unwrap(), "postgres://u:pw@db/x");
        assert_eq!(resolve_url("sqlite://a.db", &env).unwrap(), "sqlite://a.db");
        assert!(resolve_url("env:NONE", &env).is_err());
        assert_eq!(redact_url("postgres://u:pw@db/x"), "postgres://***@db/x");
        assert_eq!(redact_url("redis://cache:6379/"), "redis://cache:6379/");
    }

    #[test]
    fn a_key_hashes_to_its_sha256() {
        let h = Secret::new("abc").hash();
        assert_eq!(h, hash_key("abc"));
        assert_eq!(
            h[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256(\"abc\") starts ba7816bf"
        );
    }
}
