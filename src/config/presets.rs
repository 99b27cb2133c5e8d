//! Presets: config data, one row per known host, with its wire format, base URL, auth
//! style, tier, key variable and known quirks. A provider in config names a preset (or
//! is named after one) and may override any field; the adapters read the resolved rows
//! and this module never calls a host. Adding an OpenAI-compatible host is adding a row,
//! not a module; `anthropic` and `gemini` are the defaults of their wire formats.
//!
//! Rows were checked against each host's published API docs; quirks name the doc's claim.

use super::WireFormat;
use crate::catalog::Tier;

/// How the provider's key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY`
    Bearer,
    /// `NAME: KEY`, e.g. Azure's `api-key`, Anthropic's `x-api-key`.
    Header(&'static str),
    /// No key (local servers).
    None,
}

/// Behaviour that differs from OpenAI's own API. The OpenAI adapter applies them while
/// writing the upstream body, so the client's request stays as the client wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quirks {
    /// Rejects or ignores `stream_options.include_usage`; the gateway does not ask for it
    /// (the host reports stream usage unasked, or the gateway counts it).
    pub no_stream_usage: bool,
    /// Top-level request fields the host knows under another name: `(openai, host)`.
    pub renames: &'static [(&'static str, &'static str)],
    /// Serves one choice per call: `n` > 1 is refused with a 400 naming `n` and the host.
    pub single_choice: bool,
    /// Request fields the host refuses; the gateway refuses them first, naming the host.
    pub unsupported: &'static [&'static str],
    /// Reports `completion_tokens_details.reasoning_tokens` outside `completion_tokens`.
    pub reasoning_outside_completion: bool,
    /// Azure OpenAI: `{base}/openai/deployments/{deployment}/…?api-version=…`, where the
    /// deployment is the upstream model id.
    pub azure_deployments: bool,
    /// Serves OpenAI's Responses API at `{base}/responses`: `/v1/responses` calls are
    /// forwarded as the client wrote them (model rewritten) instead of translated to chat.
    pub serves_responses: bool,
}

/// One known host.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub id: &'static str,
    pub wire: WireFormat,
    /// Empty when every deployment has its own (Azure): config must give `base_url`.
    pub base_url: &'static str,
    pub auth: AuthStyle,
    pub tier: Tier,
    /// The environment variable the embedded default config reads the key from.
    pub key_env: Option<&'static str>,
    pub quirks: Quirks,
}

/// Hosts that know `max_tokens` only.
const MAX_TOKENS: &[(&str, &str)] = &[("max_completion_tokens", "max_tokens")];

const fn hosted(
    id: &'static str,
    base_url: &'static str,
    tier: Tier,
    key_env: &'static str,
    quirks: Quirks,
) -> Preset {
    Preset {
        id,
        wire: WireFormat::OpenAi,
        base_url,
        auth: AuthStyle::Bearer,
        tier,
        key_env: Some(key_env),
        quirks,
    }
}

const fn local(id: &'static str, base_url: &'static str, quirks: Quirks) -> Preset {
    Preset {
        id,
        wire: WireFormat::OpenAi,
        base_url,
        auth: AuthStyle::None,
        tier: Tier::Local,
        key_env: None,
        quirks,
    }
}

const NONE: Quirks = Quirks {
    no_stream_usage: false,
    renames: &[],
    single_choice: false,
    unsupported: &[],
    reasoning_outside_completion: false,
    azure_deployments: false,
    serves_responses: false,
};

/// Every known host.
pub const PRESETS: &[Preset] = &[
    // OpenAI refuses request fields it does not know; `top_k` is the one other hosts
    // (and translated Anthropic requests) commonly carry.
    hosted(
        "openai",
        "https://api.openai.com/v1",
        Tier::Frontier,
        "OPENAI_API_KEY",
        Quirks {
            unsupported: &["top_k"],
            serves_responses: true,
            ..NONE
        },
    ),
    // Azure OpenAI: the resource endpoint (https://NAME.openai.azure.com) comes from
    // config; the key travels in `api-key`; the deployment name is the upstream model.
    Preset {
        id: "azure",
        wire: WireFormat::OpenAi,
        base_url: "",
        auth: AuthStyle::Header("api-key"),
        tier: Tier::Frontier,
        key_env: Some("AZURE_OPENAI_API_KEY"),
        quirks: Quirks {
            azure_deployments: true,
            unsupported: &["top_k"],
            ..NONE
        },
    },
    Preset {
        id: "anthropic",
        wire: WireFormat::Anthropic,
        base_url: "https://api.anthropic.com/v1",
        auth: AuthStyle::Header("x-api-key"),
        tier: Tier::Frontier,
        key_env: Some("ANTHROPIC_API_KEY"),
        quirks: NONE,
    },
    Preset {
        id: "gemini",
        wire: WireFormat::Gemini,
        base_url: "https://generativelanguage.googleapis.com/v1beta",
        auth: AuthStyle::Header("x-goog-api-key"),
        tier: Tier::Frontier,
        key_env: Some("GEMINI_API_KEY"),
        quirks: NONE,
    },
    hosted(
        "together",
        "https://api.together.xyz/v1",
        Tier::OpenHosted,
        "TOGETHER_API_KEY",
        NONE,
    ),
    hosted(
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        Tier::OpenHosted,
        "DEEPINFRA_API_KEY",
        NONE,
    ),
    hosted(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        Tier::OpenHosted,
        "FIREWORKS_API_KEY",
        NONE,
    ),
    // console.groq.com/docs/openai: `logprobs`, `logit_bias`, `top_logprobs` are a 400;
    // `n` must be 1.
    hosted(
        "groq",
        "https://api.groq.com/openai/v1",
        Tier::OpenHosted,
        "GROQ_API_KEY",
        Quirks {
            single_choice: true,
            unsupported: &["logprobs", "logit_bias", "top_logprobs"],
            ..NONE
        },
    ),
    // Reports cache hits as `usage.prompt_cache_hit_tokens` (read generically).
    hosted(
        "deepseek",
        "https://api.deepseek.com/v1",
        Tier::OpenHosted,
        "DEEPSEEK_API_KEY",
        Quirks {
            renames: MAX_TOKENS,
            ..NONE
        },
    ),
    // Mistral rejects unknown fields with a 422 (`extra_forbidden`), `stream_options`
    // included; its streams carry usage in the last chunk unasked. The seed is `random_seed`.
    hosted(
        "mistral",
        "https://api.mistral.ai/v1",
        Tier::OpenHosted,
        "MISTRAL_API_KEY",
        Quirks {
            no_stream_usage: true,
            renames: &[
                ("max_completion_tokens", "max_tokens"),
                ("seed", "random_seed"),
            ],
            ..NONE
        },
    ),
    hosted(
        "openrouter",
        "https://openrouter.ai/api/v1",
        Tier::OpenHosted,
        "OPENROUTER_API_KEY",
        NONE,
    ),
    // xAI reports reasoning tokens next to, not inside, `completion_tokens`.
    hosted(
        "xai",
        "https://api.x.ai/v1",
        Tier::Frontier,
        "XAI_API_KEY",
        Quirks {
            reasoning_outside_completion: true,
            ..NONE
        },
    ),
    // Kimi puts stream usage inside the last choice and cache hits in `usage.cached_tokens`
    // (both read generically).
    hosted(
        "moonshot",
        "https://api.moonshot.ai/v1",
        Tier::OpenHosted,
        "MOONSHOT_API_KEY",
        Quirks {
            renames: MAX_TOKENS,
            ..NONE
        },
    ),
    hosted(
        "zhipu",
        "https://api.z.ai/api/paas/v4",
        Tier::OpenHosted,
        "ZHIPU_API_KEY",
        Quirks {
            renames: MAX_TOKENS,
            ..NONE
        },
    ),
    hosted(
        "dashscope",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        Tier::OpenHosted,
        "DASHSCOPE_API_KEY",
        Quirks {
            renames: MAX_TOKENS,
            ..NONE
        },
    ),
    hosted(
        "cerebras",
        "https://api.cerebras.ai/v1",
        Tier::OpenHosted,
        "CEREBRAS_API_KEY",
        NONE,
    ),
    // Ollama's OpenAI layer lists `max_tokens` (not `max_completion_tokens`) and no `n`.
    local(
        "ollama",
        "http://127.0.0.1:11434/v1",
        Quirks {
            renames: MAX_TOKENS,
            single_choice: true,
            ..NONE
        },
    ),
    local("vllm", "http://127.0.0.1:8000/v1", NONE),
    local(
        "llamacpp",
        "http://127.0.0.1:8080/v1",
        Quirks {
            renames: MAX_TOKENS,
            single_choice: true,
            ..NONE
        },
    ),
    local(
        "lmstudio",
        "http://127.0.0.1:1234/v1",
        Quirks {
            renames: MAX_TOKENS,
            single_choice: true,
            ..NONE
        },
    ),
    local("sglang", "http://127.0.0.1:30000/v1", NONE),
];

/// The preset called `id`, if there is one.
pub fn find(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

/// The default preset of a wire format other than OpenAI's (whose default is `openai`).
pub fn default_for(wire: WireFormat) -> &'static Preset {
    let id = match wire {
        WireFormat::OpenAi => "openai",
        WireFormat::Anthropic => "anthropic",
        WireFormat::Gemini => "gemini",
    };
    // Every wire format has its row; the test below holds that.
    find(id).unwrap_or(&PRESETS[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_urls_have_no_trailing_slash() {
        for (i, p) in PRESETS.iter().enumerate() {
            assert!(PRESETS[i + 1..].iter().all(|q| q.id != p.id), "{}", p.id);
            assert!(!p.base_url.ends_with('/'), "{}", p.id);
            assert!(
                p.base_url.is_empty() || p.base_url.starts_with("http"),
                "{}",
                p.id
            );
        }
    }

    #[test]
    fn every_wire_format_has_a_default() {
        for wire in [
            WireFormat::OpenAi,
            WireFormat::Anthropic,
            WireFormat::Gemini,
        ] {
            assert_eq!(default_for(wire).wire, wire);
        }
    }
}
