//! `Usage`: token counts of one call, normalised across wire formats into disjoint
//! buckets so that pricing is a plain sum of bucket × price. Adapters fill it from
//! what the backend reported (a stream's running report says which buckets it has not
//! covered yet); billing prices it. No prices here.

use serde::{Deserialize, Serialize};

/// A set of the five usage buckets, as a bitset: the buckets a running report has not
/// covered yet, or the buckets the gateway counted itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Buckets(u8);

impl Buckets {
    pub const NONE: Buckets = Buckets(0);
    pub const INPUT: Buckets = Buckets(1);
    pub const CACHED_INPUT: Buckets = Buckets(1 << 1);
    pub const CACHE_WRITE: Buckets = Buckets(1 << 2);
    pub const OUTPUT: Buckets = Buckets(1 << 3);
    pub const REASONING: Buckets = Buckets(1 << 4);
    /// The prompt side: input, cached input and cache writes.
    pub const PROMPT: Buckets = Buckets(0b00111);
    /// The completion side: output and reasoning.
    pub const COMPLETION: Buckets = Buckets(0b11000);
    pub const ALL: Buckets = Buckets(0b11111);
    /// Each bucket's name, in bit order (the ledger's column names without `_tokens`).
    pub const NAMES: [&'static str; 5] = [
        "input",
        "cached_input",
        "cache_write",
        "output",
        "reasoning",
    ];

    /// The set as bits (bit 0 `input` … bit 4 `reasoning`).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The set of `bits`; bits above the five buckets are ignored.
    pub const fn from_bits(bits: u8) -> Buckets {
        Buckets(bits & Buckets::ALL.0)
    }

    pub const fn union(self, other: Buckets) -> Buckets {
        Buckets(self.0 | other.0)
    }

    pub const fn minus(self, other: Buckets) -> Buckets {
        Buckets(self.0 & !other.0)
    }

    /// True when every bucket of `other` is in the set.
    pub const fn contains(self, other: Buckets) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when some bucket of `other` is in the set.
    pub const fn intersects(self, other: Buckets) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the buckets in the set, in bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Buckets::NAMES
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, name)| name)
    }
}

impl std::ops::BitOr for Buckets {
    type Output = Buckets;
    fn bitor(self, other: Buckets) -> Buckets {
        self.union(other)
    }
}

/// Token counts in disjoint buckets: `input` excludes cached and cache-write tokens,
/// `output` excludes reasoning tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    /// Of `cache_write`, the tokens written for an hour (Anthropic's 1-hour cache),
    /// which are billed at their own price; not a bucket of their own.
    #[serde(default)]
    pub cache_write_1h: u64,
    pub output: u64,
    pub reasoning: u64,
    /// Buckets whose count is not the backend's. In an adapter's running report of a
    /// stream: the buckets the backend has not reported yet (their counts are zero so
    /// far). In billed usage: the buckets the gateway counted itself.
    #[serde(default)]
    pub estimated: Buckets,
}

impl Usage {
    /// True when every bucket is the backend's own count.
    pub fn is_reported(&self) -> bool {
        self.estimated.is_empty()
    }

    /// The same counts with `buckets` marked as not reported yet.
    pub fn lacking(self, buckets: Buckets) -> Usage {
        Usage {
            estimated: self.estimated | buckets,
            ..self
        }
    }

    /// The cache writes as (five-minute, one-hour): the hour's share held to the whole,
    /// so a count an upstream got wrong can neither underflow nor bill twice.
    pub fn cache_writes(&self) -> (u64, u64) {
        let hour = self.cache_write_1h.min(self.cache_write);
        (self.cache_write - hour, hour)
    }

    /// All prompt-side tokens, as OpenAI's `prompt_tokens` counts them.
    pub fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cached_input)
            .saturating_add(self.cache_write)
    }

    /// All completion-side tokens, as OpenAI's `completion_tokens` counts them.
    pub fn completion_tokens(&self) -> u64 {
        self.output.saturating_add(self.reasoning)
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
            cache_write_1h: 0,
            output,
            reasoning,
            estimated: Buckets::NONE,
        }
    }

    /// Writes this usage as OpenAI's `usage` object; cache writes, which OpenAI's shape
    /// has no field for, go in `cache_creation_input_tokens` when there are any.
    pub fn to_openai(&self) -> OpenAiUsage {
        OpenAiUsage {
            prompt_tokens: Some(self.prompt_tokens()),
            completion_tokens: Some(self.completion_tokens()),
            total_tokens: Some(
                self.prompt_tokens()
                    .saturating_add(self.completion_tokens()),
            ),
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
    /// The cache writes by lifetime; `cache_creation_input_tokens` is their sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation: Option<CacheCreation>,
}

/// Anthropic's `usage.cache_creation`: cache writes for five minutes and for an hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCreation {
    #[serde(default)]
    pub ephemeral_5m_input_tokens: Option<u64>,
    #[serde(default)]
    pub ephemeral_1h_input_tokens: Option<u64>,
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
        if later.cache_creation.is_some() {
            self.cache_creation = later.cache_creation;
        }
    }
}

impl Usage {
    /// Reads Anthropic's `usage`.
    pub fn from_anthropic(raw: &AnthropicUsage) -> Usage {
        Usage {
            input: raw.input_tokens.unwrap_or(0),
            cached_input: raw.cache_read_input_tokens.unwrap_or(0),
            cache_write: raw.cache_creation_input_tokens.unwrap_or(0),
            cache_write_1h: raw
                .cache_creation
                .and_then(|c| c.ephemeral_1h_input_tokens)
                .unwrap_or(0),
            output: raw.output_tokens.unwrap_or(0),
            reasoning: 0,
            estimated: Buckets::NONE,
        }
    }

    /// The running usage of an Anthropic stream after `message_start`: the prompt side
    /// (input, cache reads, cache writes) as it will be billed; the `output_tokens` there
    /// is a placeholder, so the completion side is not reported until `message_delta`.
    pub fn from_anthropic_start(raw: &AnthropicUsage) -> Usage {
        let prompt = match raw.input_tokens {
            Some(_) => Buckets::NONE,
            None => Buckets::PROMPT,
        };
        Usage {
            output: 0,
            ..Usage::from_anthropic(raw)
        }
        .lacking(prompt | Buckets::COMPLETION)
    }

    /// Writes this usage as Anthropic's `usage` (reasoning counts as output there).
    pub fn to_anthropic(&self) -> AnthropicUsage {
        AnthropicUsage {
            input_tokens: Some(self.input),
            output_tokens: Some(self.completion_tokens()),
            cache_creation_input_tokens: Some(self.cache_write),
            cache_read_input_tokens: Some(self.cached_input),
            cache_creation: match self.cache_writes() {
                (_, 0) => None,
                (minutes, hour) => Some(CacheCreation {
                    ephemeral_5m_input_tokens: Some(minutes),
                    ephemeral_1h_input_tokens: Some(hour),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_cache_writes_keep_the_hour_apart() {
        let raw: AnthropicUsage = serde_json::from_str(
            r#"{"input_tokens":10,"cache_creation_input_tokens":3000,"cache_creation":{"ephemeral_5m_input_tokens":1000,"ephemeral_1h_input_tokens":2000},"output_tokens":20}"#,
        )
        .unwrap();
        let u = Usage::from_anthropic(&raw);
        assert_eq!((u.cache_write, u.cache_write_1h), (3000, 2000));
        // A stream's `message_delta` without the split keeps `message_start`'s.
        let mut merged = raw;
        merged.merge(&AnthropicUsage {
            output_tokens: Some(30),
            ..Default::default()
        });
        assert_eq!(Usage::from_anthropic(&merged).cache_write_1h, 2000);
        // Written back for an Anthropic client with the split.
        let back = serde_json::to_value(u.to_anthropic()).unwrap();
        assert_eq!(back["cache_creation"]["ephemeral_5m_input_tokens"], 1000);
        assert_eq!(back["cache_creation"]["ephemeral_1h_input_tokens"], 2000);
        // Without an hour's writes nothing new is written.
        let plain = Usage::from_anthropic(&AnthropicUsage {
            cache_creation_input_tokens: Some(5),
            ..Default::default()
        });
        assert!(serde_json::to_value(plain.to_anthropic()).unwrap()["cache_creation"].is_null());
        // An hour's count past the sum is held to it.
        let odd: AnthropicUsage = serde_json::from_str(
            r#"{"cache_creation_input_tokens":5,"cache_creation":{"ephemeral_1h_input_tokens":9}}"#,
        )
        .unwrap();
        assert_eq!(Usage::from_anthropic(&odd).cache_writes(), (0, 5));
        let back = serde_json::to_value(Usage::from_anthropic(&odd).to_anthropic()).unwrap();
        assert_eq!(back["cache_creation"]["ephemeral_5m_input_tokens"], 0);
    }

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
            cache_write_1h: 0,
            output: 2,
            reasoning: 0,
            estimated: Buckets::NONE,
        };
        assert_eq!(Usage::from_openai(&written.to_openai()), written);
    }
}
