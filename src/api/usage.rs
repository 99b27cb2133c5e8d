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

    /// Reads OpenAI's `usage` object (chat, completions, embeddings), including the
    /// hosts' own spellings of cache hits (DeepSeek's `prompt_cache_hit_tokens`, Kimi's
    /// top-level `cached_tokens`) and cache writes (`cache_creation_input_tokens`).
    pub fn from_openai(raw: &OpenAiUsage) -> Usage {
        Usage::read_openai(raw, false)
    }

    /// Like `from_openai`, for hosts (xAI) whose `reasoning_tokens` are not part of
    /// `completion_tokens` but reported next to it.
    pub fn from_openai_reasoning_apart(raw: &OpenAiUsage) -> Usage {
        Usage::read_openai(raw, true)
    }

    fn read_openai(raw: &OpenAiUsage, reasoning_apart: bool) -> Usage {
        let cached = raw
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or(raw.prompt_cache_hit_tokens)
            .or(raw.cached_tokens)
            .unwrap_or(0);
        let reasoning = raw
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        let prompt = raw.prompt_tokens.unwrap_or(0);
        let completion = raw.completion_tokens.unwrap_or(0);
        let cached = cached.min(prompt);
        let cache_write = raw
            .cache_creation_input_tokens
            .unwrap_or(0)
            .min(prompt - cached);
        let (output, reasoning) = if reasoning_apart {
            (completion, reasoning)
        } else {
            (
                completion.saturating_sub(reasoning),
                reasoning.min(completion),
            )
        };
        Usage {
            input: prompt - cached - cache_write,
            cached_input: cached,
            cache_write,
            output,
            reasoning,
            estimated: false,
        }
    }

    /// Writes this usage as OpenAI's `usage` object; cache writes, which OpenAI's shape
    /// has no field for, go in `cache_creation_input_tokens` when there are any.
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
            cache_creation_input_tokens: (self.cache_write > 0).then_some(self.cache_write),
            ..OpenAiUsage::default()
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
    /// Prompt tokens written to the provider's cache (LiteLLM's name for Anthropic's count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// DeepSeek's cache hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_hit_tokens: Option<u64>,
    /// Moonshot (Kimi)'s cache hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
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

/// Anthropic's `usage` object. Its buckets are already disjoint: `input_tokens` excludes
/// cache reads and writes; `output_tokens` includes thinking (reported as output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Overwrites the counts `later` carries (a stream's `message_delta` repeats or
    /// completes what `message_start` said).
    pub fn merge(&mut self, later: &AnthropicUsage) {
        let take = |slot: &mut Option<u64>, v: Option<u64>| {
            if v.is_some() {
                *slot = v;
            }
        };
        take(&mut self.input_tokens, later.input_tokens);
        take(&mut self.output_tokens, later.output_tokens);
        take(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        take(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
    }
}

impl Usage {
    /// Reads Anthropic's `usage`.
    pub fn from_anthropic(raw: &AnthropicUsage) -> Usage {
        Usage {
            input: raw.input_tokens.unwrap_or(0),
            cached_input: raw.cache_read_input_tokens.unwrap_or(0),
            cache_write: raw.cache_creation_input_tokens.unwrap_or(0),
            output: raw.output_tokens.unwrap_or(0),
            reasoning: 0,
            estimated: false,
        }
    }

    /// Writes this usage as Anthropic's `usage` (reasoning counts as output there).
    pub fn to_anthropic(&self) -> AnthropicUsage {
        AnthropicUsage {
            input_tokens: Some(self.input),
            output_tokens: Some(self.completion_tokens()),
            cache_creation_input_tokens: Some(self.cache_write),
            cache_read_input_tokens: Some(self.cached_input),
        }
    }
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

    #[test]
    fn host_spellings_of_cache_hits_and_reasoning() {
        let read = |json: &str| serde_json::from_str::<OpenAiUsage>(json).unwrap();
        let deepseek = Usage::from_openai(&read(
            r#"{"prompt_tokens":100,"completion_tokens":5,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}"#,
        ));
        assert_eq!((deepseek.input, deepseek.cached_input), (36, 64));
        let kimi = Usage::from_openai(&read(
            r#"{"prompt_tokens":10,"completion_tokens":5,"cached_tokens":8}"#,
        ));
        assert_eq!((kimi.input, kimi.cached_input), (2, 8));
        let xai = read(
            r#"{"prompt_tokens":10,"completion_tokens":50,"completion_tokens_details":{"reasoning_tokens":300}}"#,
        );
        let u = Usage::from_openai_reasoning_apart(&xai);
        assert_eq!((u.output, u.reasoning), (50, 300));
        let written = Usage {
            input: 5,
            cached_input: 3,
            cache_write: 7,
            output: 2,
            reasoning: 0,
            estimated: false,
        };
        assert_eq!(Usage::from_openai(&written.to_openai()), written);
    }
}
