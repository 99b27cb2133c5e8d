//! Shared text (`Arc<str>`) in serde's formats: written and read as a plain string, so
//! a ledger row or a catalog that shares its text reads and writes as one that owned it.
//! (serde's own `Arc` support is behind its `rc` feature, which would rebuild every
//! crate that depends on serde.)

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(text: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(text)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    String::deserialize(d).map(Arc::from)
}

/// The same for an optional text.
pub mod optional {
    use super::*;

    pub fn serialize<S: Serializer>(text: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
        match text {
            Some(t) => s.serialize_some(&**t),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
        Option::<String>::deserialize(d).map(|t| t.map(Arc::from))
    }
}
