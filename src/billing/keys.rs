//! Gateway keys: stored and compared only as SHA-256 hashes.

use sha2::{Digest, Sha256};

/// The SHA-256 of a key; the only form in which a key is kept.
pub type KeyHash = [u8; 32];

/// Hashes a presented or configured key.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}
