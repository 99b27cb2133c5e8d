//! `Usage`: token counts of one call, normalised across wire formats into disjoint
//! buckets so that pricing is a plain sum of bucket × price. Adapters fill it from
//! what the backend reported; billing prices it. No prices here.

use serde::{Deserialize, Serialize};

/// Token counts in disjoint buckets: `input` excludes cached and cache-write tokens,
/// `output` excludes reasoning tokens. `estimated` is set when the gateway counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
    #[serde(default)]
    pub estimated: bool,
}

impl Usage {
    /// All prompt-side tokens, as OpenAI's `prompt_tokens` counts them.
    pub fn prompt_tokens(&self) -> u64 {
        self.input + self.cached_input + self.cache_write
    }

    /// All completion-side tokens, as OpenAI's `completion_tokens` counts them.
    pub fn completion_tokens(&self) -> u64 {
        self.output + self.reasoning
    }

    /// Reads OpenAI's `usage` object (chat, completions, embeddings).
    pub fn from_openai(raw: &OpenAiUsage) -> Usage {
        let cached = raw
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        let reasoning = raw
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        let prompt = raw.prompt_tokens.unwrap_or(0);
        let completion = raw.completion_tokens.unwrap_or(0);
        Usage {
            input: prompt.saturating_sub(cached),
            cached_input: cached.min(prompt),
            cache_write: 0,
            output: completion.saturating_sub(reasoning),
            reasoning: reasoning.min(completion),
            estimated: false,
        }
    }

    /// Writes this usage as OpenAI's `usage` object.
    pub fn to_openai(&self) -> OpenAiUsage {
        OpenAiUsage {
            prompt_tokens: Some(self.prompt_tokens()),
            completion_tokens: Some(self.completion_tokens()),
            total_tokens: Some(self.prompt_tokens() + self.completion_tokens()),
            prompt_tokens_details: Some(PromptDetails {
                cached_tokens: Some(self.cached_input),
            }),
            completion_tokens_details: Some(CompletionDetails {
                reasoning_tokens: Some(self.reasoning),
            }),
        }
    }
}

/// OpenAI's `usage` object as sent on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub total_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_buckets_are_disjoint() {
        let raw: OpenAiUsage = serde_json::from_str(
            r#"{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150,
                "prompt_tokens_details":{"cached_tokens":40},
                "completion_tokens_details":{"reasoning_tokens":30}}"#,
        )
        .unwrap();
        let u = Usage::from_openai(&raw);
        assert_eq!(
            (u.input, u.cached_input, u.output, u.reasoning),
            (60, 40, 20, 30)
        );
        assert_eq!(u.prompt_tokens(), 100);
        assert_eq!(u.completion_tokens(), 50);
    }
}
