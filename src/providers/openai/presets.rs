//! Presets for OpenAI-compatible hosts and local servers: one row each, with base URL,
//! auth style, tier and known quirks. A provider in config names a preset and may
//! override any field. Adding a host is adding a row, not a module.

use crate::catalog::Tier;

/// How the provider's key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY`
    Bearer,
    /// `NAME: KEY`, e.g. Azure's `api-key`.
    Header(&'static str),
    /// No key (local servers).
    None,
}

/// Behaviour that differs from OpenAI's own API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quirks {
    /// Accepts `stream_options.include_usage`; otherwise the gateway counts stream usage itself.
    pub no_stream_usage: bool,
}

/// One OpenAI-compatible host.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub id: &'static str,
    pub base_url: &'static str,
    pub auth: AuthStyle,
    pub tier: Tier,
    /// The environment variable the embedded default config reads the key from.
    pub key_env: Option<&'static str>,
    pub quirks: Quirks,
}

const fn hosted(
    id: &'static str,
    base_url: &'static str,
    tier: Tier,
    key_env: &'static str,
) -> Preset {
    Preset {
        id,
        base_url,
        auth: AuthStyle::Bearer,
        tier,
        key_env: Some(key_env),
        quirks: Quirks {
            no_stream_usage: false,
        },
    }
}

const fn local(id: &'static str, base_url: &'static str) -> Preset {
    Preset {
        id,
        base_url,
        auth: AuthStyle::None,
        tier: Tier::Local,
        key_env: None,
        quirks: Quirks {
            no_stream_usage: false,
        },
    }
}

/// Every known OpenAI-compatible host.
pub const PRESETS: &[Preset] = &[
    hosted(
        "openai",
        "https://api.openai.com/v1",
        Tier::Frontier,
        "OPENAI_API_KEY",
    ),
    hosted(
        "together",
        "https://api.together.xyz/v1",
        Tier::OpenHosted,
        "TOGETHER_API_KEY",
    ),
    hosted(
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        Tier::OpenHosted,
        "DEEPINFRA_API_KEY",
    ),
    hosted(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        Tier::OpenHosted,
        "FIREWORKS_API_KEY",
    ),
    hosted(
        "groq",
        "https://api.groq.com/openai/v1",
        Tier::OpenHosted,
        "GROQ_API_KEY",
    ),
    hosted(
        "deepseek",
        "https://api.deepseek.com/v1",
        Tier::OpenHosted,
        "DEEPSEEK_API_KEY",
    ),
    hosted(
        "mistral",
        "https://api.mistral.ai/v1",
        Tier::OpenHosted,
        "MISTRAL_API_KEY",
    ),
    hosted(
        "openrouter",
        "https://openrouter.ai/api/v1",
        Tier::OpenHosted,
        "OPENROUTER_API_KEY",
    ),
    hosted("xai", "https://api.x.ai/v1", Tier::Frontier, "XAI_API_KEY"),
    hosted(
        "moonshot",
        "https://api.moonshot.ai/v1",
        Tier::OpenHosted,
        "MOONSHOT_API_KEY",
    ),
    hosted(
        "zhipu",
        "https://api.z.ai/api/paas/v4",
        Tier::OpenHosted,
        "ZHIPU_API_KEY",
    ),
    hosted(
        "dashscope",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        Tier::OpenHosted,
        "DASHSCOPE_API_KEY",
    ),
    hosted(
        "cerebras",
        "https://api.cerebras.ai/v1",
        Tier::OpenHosted,
        "CEREBRAS_API_KEY",
    ),
    local("ollama", "http://127.0.0.1:11434/v1"),
    local("vllm", "http://127.0.0.1:8000/v1"),
    local("llamacpp", "http://127.0.0.1:8080/v1"),
    local("lmstudio", "http://127.0.0.1:1234/v1"),
    local("sglang", "http://127.0.0.1:30000/v1"),
];

/// The preset called `id`, if there is one.
pub fn find(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_urls_have_no_trailing_slash() {
        for (i, p) in PRESETS.iter().enumerate() {
            assert!(PRESETS[i + 1..].iter().all(|q| q.id != p.id), "{}", p.id);
            assert!(!p.base_url.ends_with('/'), "{}", p.id);
        }
    }
}
