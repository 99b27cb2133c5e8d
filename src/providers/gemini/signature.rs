//! Gemini's `thoughtSignature` on a function call must come back with that call on the
//! next turn, but OpenAI's tool call has no field for it. It rides in the tool-call id:
//! `{id}__ts__{the signature's bytes as unpadded base64url}`, which survives any client
//! that echoes ids and stays within Anthropic's id alphabet (`[A-Za-z0-9_-]`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const SEPARATOR: &str = "__ts__";

/// The tool-call id for call `id` carrying `signature` exactly as Gemini sent it.
pub fn encode(id: &str, signature: Option<&str>) -> String {
    match signature {
        Some(sig) if !sig.is_empty() => {
            format!("{id}{SEPARATOR}{}", URL_SAFE_NO_PAD.encode(sig.as_bytes()))
        }
        _ => id.to_string(),
    }
}

/// The signature carried by a tool-call id, as Gemini sent it.
pub fn decode(id: &str) -> Option<String> {
    let (_, tail) = id.split_once(SEPARATOR)?;
    let bytes = URL_SAFE_NO_PAD.decode(tail).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn signatures_round_trip_through_ids(sig in "[A-Za-z0-9+/=]{1,200}") {
            let id = encode("call_1", Some(&sig));
            prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            prop_assert_eq!(decode(&id), Some(sig));
        }
    }

    #[test]
    fn ids_without_a_signature_are_left_alone() {
        assert_eq!(encode("call_1", None), "call_1");
        assert_eq!(decode("call_1"), None);
    }
}
