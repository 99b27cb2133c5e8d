//! Gemini `streamGenerateContent?alt=sse` events → OpenAI chunks. Each event is a whole
//! `GenerateContentResponse` holding the next parts of each candidate; function calls
//! arrive whole and are forwarded as one tool-call delta. There is no terminator: the
//! stream is complete when the body ends after a finish reason, and the last
//! `usageMetadata` seen becomes the usage chunk. Until then each event's counts ride,
//! as a running report, on the last chunk it yields, so a cut stream is billed from them.

use super::super::http::StreamTranslator;
use super::super::shape::{ChunkHeader, Delta, FunctionDelta, ToolCallDelta};
use super::super::sse::SseEvent;
use super::super::{Chunk, UpstreamError};
use super::response::{blocked, call_id, finish_reason, is_blocked, ResponseIn, UsageMetadata};
use super::signature;

#[derive(Debug, Default, Clone, Copy)]
struct CandidateState {
    started: bool,
    said_anything: bool,
    tools: u32,
    finished: bool,
}

/// The stream translator for one Gemini stream.
#[derive(Debug)]
pub struct GeminiStream {
    provider: String,
    header: ChunkHeader,
    seed: u64,
    calls: u64,
    candidates: Vec<CandidateState>,
    usage: Option<UsageMetadata>,
    /// A running report not yet attached to a chunk (its event yielded none).
    unsent: bool,
}

impl GeminiStream {
    /// A translator stamping chunks `created`, naming the model `model` until Gemini
    /// names it, and deriving tool-call ids from `seed`.
    pub fn new(provider: &str, created: u64, model: &str, seed: u64) -> GeminiStream {
        GeminiStream {
            provider: provider.to_string(),
            header: ChunkHeader {
                id: format!("gemini-{seed:016x}"),
                created,
                model: model.to_string(),
            },
            seed,
            calls: 0,
            candidates: Vec::new(),
            usage: None,
            unsent: false,
        }
    }

    fn state(&mut self, index: u32) -> &mut CandidateState {
        let i = index as usize;
        if self.candidates.len() <= i {
            self.candidates.resize(i + 1, CandidateState::default());
        }
        &mut self.candidates[i]
    }
}

impl StreamTranslator for GeminiStream {
    fn event(&mut self, event: SseEvent, out: &mut Vec<Chunk>) -> Result<bool, UpstreamError> {
        let r: ResponseIn = serde_json::from_str(&event.data).map_err(|e| {
            UpstreamError::protocol(
                &self.provider,
                format!("a stream event is not a GenerateContentResponse ({e})"),
            )
        })?;
        if let Some(reason) = r
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_deref())
        {
            return Err(blocked(&self.provider, "prompt", reason));
        }
        if let Some(id) = r.response_id.as_deref() {
            if self.candidates.is_empty() {
                self.header.id = id.to_string();
            }
        }
        if let Some(model) = r.model_version.as_deref() {
            if self.header.model != model {
                self.header.model = model.to_string();
            }
        }
        if r.usage_metadata.is_some() {
            self.usage = r.usage_metadata;
            self.unsent = true;
        }
        let first = out.len();
        for (i, c) in r.candidates.iter().enumerate() {
            let index = c.index.unwrap_or(i as u32);
            let parts = c
                .content
                .as_ref()
                .map(|c| c.parts.as_slice())
                .unwrap_or_default();
            if !self.state(index).started {
                self.state(index).started = true;
                out.push(self.header.delta(
                    index,
                    &Delta {
                        role: Some("assistant"),
                        content: Some(""),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            for part in parts {
                if let Some(call) = &part.function_call {
                    let base = call
                        .id
                        .as_deref()
                        .map(str::to_string)
                        .unwrap_or_else(|| call_id(self.seed, self.calls));
                    self.calls += 1;
                    let id = signature::encode(&base, part.thought_signature.as_deref());
                    let state = self.state(index);
                    let tool = state.tools;
                    state.tools += 1;
                    state.said_anything = true;
                    let calls = [ToolCallDelta {
                        index: tool,
                        id: Some(&id),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(&call.name),
                            arguments: Some(call.args.map(|a| a.get()).unwrap_or("{}")),
                        },
                    }];
                    out.push(self.header.delta(
                        index,
                        &Delta {
                            tool_calls: Some(&calls),
                            ..Delta::default()
                        },
                        None,
                    ));
                } else if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                    self.state(index).said_anything = true;
                    let delta = if part.thought {
                        Delta {
                            reasoning_content: Some(text),
                            ..Delta::default()
                        }
                    } else {
                        Delta {
                            content: Some(text),
                            ..Delta::default()
                        }
                    };
                    out.push(self.header.delta(index, &delta, None));
                }
            }
            if let Some(reason) = c.finish_reason.as_deref() {
                let state = *self.state(index);
                if is_blocked(reason) && !state.said_anything {
                    return Err(blocked(&self.provider, "reply", reason));
                }
                self.state(index).finished = true;
                let finish = finish_reason(reason, state.tools > 0);
                out.push(self.header.delta(index, &Delta::default(), Some(finish)));
            }
        }
        if let (true, Some(usage), Some(last)) = (self.unsent, self.usage, out[first..].last_mut())
        {
            last.usage = Some(usage.running());
            self.unsent = false;
        }
        Ok(false)
    }

    fn end(&mut self, out: &mut Vec<Chunk>) -> Result<(), UpstreamError> {
        if self.candidates.is_empty() || !self.candidates.iter().all(|c| c.finished) {
            return Err(UpstreamError::protocol(
                &self.provider,
                "the stream ended before a finish reason",
            ));
        }
        if let Some(u) = self.usage {
            out.push(self.header.usage(u.to_usage()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
