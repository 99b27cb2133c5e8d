//! Credentials out of upstream text. An upstream error body, stream error event or
//! transport error may quote the key it was sent (or any key-shaped string); before such
//! text becomes part of an `UpstreamError` — and so of a client's error, a log line or a
//! metric — the provider's own secrets and anything shaped like a credential are
//! replaced by `[redacted]`. An upstream can only echo what it was sent: its own secrets.

use std::borrow::Cow;

use super::UpstreamError;
use crate::config::ProviderConfig;

/// What a removed credential is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Configured secrets shorter than this are not searched for: a local server's
/// placeholder key (`ollama`) is no secret, and replacing it would garble messages.
const MIN_SECRET_LEN: usize = 8;

/// Prefixes of well-known API key formats (OpenAI, bazaar, Groq, xAI, Google, Hugging
/// Face, GitHub, Perplexity, NVIDIA, Replicate, Fireworks, AWS, Stripe-style).
const KEY_PREFIXES: &[&str] = &[
    "sk-",
    "sk_",
    "bzr-",
    "gsk_",
    "xai-",
    "AIza",
    "hf_",
    "ghp_",
    "gho_",
    "github_pat_",
    "pplx-",
    "nvapi-",
    "r8_",
    "fw_",
    "AKIA",
    "ASIA",
    "pk_",
    "rk_",
    "key-",
];

/// A word is a maximal run of these: the characters API keys are made of.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl UpstreamError {
    /// This error with `config`'s secrets, and anything shaped like a credential, removed
    /// from every text it carries.
    pub fn scrubbed(mut self, config: &ProviderConfig) -> UpstreamError {
        let proxy = config.proxy.iter();
        let secrets: Vec<&str> = config
            .api_key
            .iter()
            .chain(config.headers.iter().map(|(_, v)| v))
            .chain(proxy.clone().filter_map(|p| p.password.as_ref()))
            .chain(proxy.filter_map(|p| p.authorization.as_ref()))
            .map(|s| s.expose())
            .collect();
        let clean = |text: &mut String| {
            if let Cow::Owned(clean) = scrub(text, &secrets) {
                *text = clean;
            }
        };
        clean(&mut self.message);
        self.code.iter_mut().for_each(clean);
        self.param.iter_mut().for_each(clean);
        self
    }
}

/// `text` with every occurrence of `secrets` (those of at least 8 bytes), every word that
/// looks like an API key, and the token after `Bearer` replaced by `[redacted]`.
pub fn scrub<'a>(text: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
        if out.contains(secret) {
            out = Cow::Owned(out.replace(secret, REDACTED));
        }
    }
    match scrub_words(&out) {
        Some(clean) => Cow::Owned(clean),
        None => out,
    }
}

/// Replaces key-shaped words; `None` when there are none.
fn scrub_words(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut copied = 0;
    let mut after_bearer = false;
    let mut rest = text.char_indices().peekable();
    while let Some((start, c)) = rest.next() {
        if !is_word_char(c) {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, c)) = rest.peek() {
            if !is_word_char(c) {
                break;
            }
            end = i + c.len_utf8();
            rest.next();
        }
        let word = &text[start..end];
        let secret = looks_like_key(word) || (after_bearer && word.len() >= 8);
        after_bearer = word.eq_ignore_ascii_case("bearer");
        if secret {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
    }
    (copied > 0).then(|| {
        out.push_str(&text[copied..]);
        out
    })
}

/// A known key prefix followed by at least 12 more characters, or a long alphanumeric
/// run mixing letters and digits (32 hex characters, base64 segments). Model ids
/// (`llama-3.1-405b-instruct`) and UUIDs have short runs between their dashes.
fn looks_like_key(word: &str) -> bool {
    if word.len() < 16 {
        return false;
    }
    if KEY_PREFIXES
        .iter()
        .any(|p| word.starts_with(p) && word.len() >= p.len() + 12)
    {
        return true;
    }
    word.split(['-', '_']).any(|run| {
        run.len() >= 24
            && run.bytes().any(|b| b.is_ascii_digit())
            && run.bytes().any(|b| b.is_ascii_alphabetic())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn configured_secrets_and_key_shapes_are_removed() {
        let secrets = ["correct-horse-battery", "ollama"];
        let cases = [
            (
                "Incorrect API key provided: correct-horse-battery.",
                "Incorrect API key provided: [redacted].",
            ),
            (
                "Incorrect API key provided: sk-proj-abcdEFGH1234ijkl5678. You can find",
                "Incorrect API key provided: [redacted]. You can find",
            ),
            ("header was Bearer abcdefgh", "header was Bearer [redacted]"),
            (
                "url ?key=AIzaSyA1234567890abcdefghij&x",
                "url ?key=[redacted]&x",
            ),
            (
                "azure key 0123456789abcdef0123456789abcdef rejected",
                "azure key [redacted] rejected",
            ),
            // Not secrets: a short placeholder key, model ids, UUIDs, prose.
            ("ollama: model not found", "ollama: model not found"),
            (
                "The model `meta-llama/Llama-3.1-405B-Instruct-Turbo` does not exist",
                "The model `meta-llama/Llama-3.1-405B-Instruct-Turbo` does not exist",
            ),
            (
                "request 123e4567-e89b-12d3-a456-426614174000 failed",
                "request 123e4567-e89b-12d3-a456-426614174000 failed",
            ),
            (
                "Rate limit reached for requests",
                "Rate limit reached for requests",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(scrub(text, &secrets), want, "{text}");
        }
    }

    proptest! {
        #[test]
        fn a_secret_never_survives(
            before in "\\PC{0,40}",
            after in "\\PC{0,40}",
            secret in "[A-Za-z0-9!@#%^&*()+=]{8,40}",
        ) {
            let text = format!("{before}{secret}{after}");
            let clean = scrub(&text, &[secret.as_str()]);
            prop_assert!(!clean.contains(secret.as_str()), "{}", clean);
        }
    }
}
