//! Provider adapters: one module per wire format behind the `Adapter` trait, and the
//! `Provider` enum that dispatches to them (chosen at config load). Adapters translate
//! requests, replies, stream events, usage and errors; they never route, price or retry.

pub mod anthropic;
pub mod chat;
pub mod connect;
pub mod error;
pub mod gemini;
pub mod http;
pub mod openai;
pub mod pool;
pub mod presets;
pub mod scrub;
pub mod shape;
pub mod sse;

pub use error::{client_error, BuildError, Fault, StatusReply, UpstreamError, UpstreamKind};

use std::pin::Pin;
use std::time::Duration;

use ::http::HeaderValue;
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::Instant;

use crate::api::anthropic::{MessagesRequest, NativeOnly};
use crate::api::openai::{ChatRequest, PassthroughRequest, RawObject};
use crate::api::Usage;
use crate::catalog::Tier;
use crate::config::{ProviderConfig, WireFormat};

/// What one upstream attempt needs beyond the request.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The provider's own id for the model.
    pub upstream_model: &'a str,
    pub request_id: &'a str,
    /// The call must be over by then, whatever the provider's own timeouts say.
    pub deadline: Instant,
}

/// Facts about the upstream reply that routing learns from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamMeta {
    /// From `x-ratelimit-remaining-requests`.
    pub remaining_requests: Option<u64>,
    /// From `x-ratelimit-remaining-tokens`.
    pub remaining_tokens: Option<u64>,
}

/// A complete (non-streamed) reply, already in the OpenAI shape of its endpoint.
#[derive(Debug, Clone)]
pub struct Reply {
    pub body: Bytes,
    /// As the backend reported it; `None` when it reported none.
    pub usage: Option<Usage>,
    pub meta: UpstreamMeta,
    /// Where `body`'s usage object is, when the provider found it plain while reading
    /// the usage (OpenAI's replies): the call's cost is spliced in there.
    pub usage_at: Option<crate::api::rewrite::UsageAt>,
}

/// One stream chunk in the OpenAI shape (the JSON after `data: `).
#[derive(Debug, Clone)]
pub struct Chunk {
    pub data: Bytes,
    /// Usage carried by this chunk, if any.
    pub usage: Option<Usage>,
    /// The chunk carries usage and no choices: the one a client that did not ask for usage must not see.
    pub usage_only: bool,
}

/// A stream of chunks; ends after the upstream's last event, or with an error.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, UpstreamError>> + Send>>;

/// A streamed reply whose headers have arrived.
pub struct StreamReply {
    pub chunks: ChunkStream,
    pub meta: UpstreamMeta,
}

/// The calls every wire format answers. Inputs are the front-end request in OpenAI's
/// shape and the attempt; outputs are in OpenAI's shape too.
pub trait Adapter {
    fn wire(&self) -> WireFormat;
    fn config(&self) -> &ProviderConfig;
    fn chat(
        &self,
        req: &ChatRequest,
        at: Attempt<'_>,
    ) -> impl std::future::Future<Output = Result<Reply, UpstreamError>> + Send;
    fn chat_stream(
        &self,
        req: &ChatRequest,
        at: Attempt<'_>,
    ) -> impl std::future::Future<Output = Result<StreamReply, UpstreamError>> + Send;
    fn embeddings(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> impl std::future::Future<Output = Result<Reply, UpstreamError>> + Send;
    fn completions(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> impl std::future::Future<Output = Result<Reply, UpstreamError>> + Send;
    fn completions_stream(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> impl std::future::Future<Output = Result<StreamReply, UpstreamError>> + Send;
}

/// A configured provider: one variant per wire format.
// Built once per config load and never moved on the request path; boxing the larger
// variant would only add a pointer chase per call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Provider {
    OpenAi(openai::OpenAiAdapter),
    Anthropic(anthropic::AnthropicAdapter),
    Gemini(gemini::GeminiAdapter),
}

macro_rules! dispatch {
    ($self:ident, $a:ident => $e:expr) => {
        match $self {
            Provider::OpenAi($a) => $e,
            Provider::Anthropic($a) => $e,
            Provider::Gemini($a) => $e,
        }
    };
}

impl Provider {
    /// Builds the adapter (and its HTTP client) for a resolved provider config.
    pub fn build(config: &ProviderConfig) -> Result<Provider, BuildError> {
        match config.wire {
            WireFormat::OpenAi => openai::OpenAiAdapter::new(config.clone()).map(Provider::OpenAi),
            WireFormat::Anthropic => {
                anthropic::AnthropicAdapter::new(config.clone()).map(Provider::Anthropic)
            }
            WireFormat::Gemini => gemini::GeminiAdapter::new(config.clone()).map(Provider::Gemini),
        }
    }

    pub fn config(&self) -> &ProviderConfig {
        dispatch!(self, a => a.config())
    }

    /// The wire format this provider speaks.
    pub fn wire(&self) -> WireFormat {
        dispatch!(self, a => a.wire())
    }

    pub fn id(&self) -> &str {
        &self.config().id
    }

    pub fn tier(&self) -> Tier {
        self.config().tier
    }

    pub async fn chat(&self, req: &ChatRequest, at: Attempt<'_>) -> Result<Reply, UpstreamError> {
        dispatch!(self, a => a.chat(req, at).await)
    }

    pub async fn chat_stream(
        &self,
        req: &ChatRequest,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        dispatch!(self, a => a.chat_stream(req, at).await)
    }

    pub async fn embeddings(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        dispatch!(self, a => a.embeddings(req, at).await)
    }

    pub async fn completions(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        dispatch!(self, a => a.completions(req, at).await)
    }

    pub async fn completions_stream(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        dispatch!(self, a => a.completions_stream(req, at).await)
    }
}

/// Anthropic Messages calls (`/v1/messages`), for any backend: an Anthropic backend
/// answers the client's own body untranslated; every other wire format serves the
/// request translated to chat, and its reply is translated back (its stream chunks stay
/// OpenAI's, for the front end to rewrite: see `speaks_messages`).
impl Provider {
    /// True when this backend answers a Messages call in Anthropic's own wire format.
    pub fn speaks_messages(&self) -> bool {
        matches!(self.wire(), WireFormat::Anthropic)
    }

    /// A complete Messages reply, in Anthropic's shape.
    pub async fn messages(
        &self,
        req: &MessagesRequest,
        at: Attempt<'_>,
        beta: Option<&HeaderValue>,
    ) -> Result<Reply, UpstreamError> {
        if let Provider::Anthropic(a) = self {
            return a.messages(&req.native, at, beta).await;
        }
        self.translatable(req.native_only.as_ref())?;
        let reply = self.chat(&req.chat, at).await?;
        let body = crate::api::anthropic::reply::from_openai(&reply.body, reply.usage)
            .map_err(|detail| UpstreamError::protocol(self.id(), detail))?;
        Ok(Reply {
            body: Bytes::from(body),
            ..reply
        })
    }

    /// The backend's own count of a Messages body's input tokens (`{"input_tokens": n}`),
    /// from an Anthropic backend; `None` from any other, which has no such endpoint.
    pub async fn count_tokens(
        &self,
        native: &RawObject,
        at: Attempt<'_>,
        beta: Option<&HeaderValue>,
    ) -> Option<Result<Bytes, UpstreamError>> {
        match self {
            Provider::Anthropic(a) => Some(a.count_tokens(native, at, beta).await),
            _ => None,
        }
    }

    /// A streamed Messages reply: Anthropic's events from an Anthropic backend, OpenAI
    /// chunks from any other.
    pub async fn messages_stream(
        &self,
        req: &MessagesRequest,
        at: Attempt<'_>,
        beta: Option<&HeaderValue>,
    ) -> Result<StreamReply, UpstreamError> {
        if let Provider::Anthropic(a) = self {
            return a.messages_stream(&req.native, at, beta).await;
        }
        self.translatable(req.native_only.as_ref())?;
        self.chat_stream(&req.chat, at).await
    }
}

/// OpenAI Responses calls (`/v1/responses`): a backend whose preset serves the Responses
/// API answers the request's own body and streams its own events; every other backend
/// serves the request translated to chat, and the Responses front end (which holds the
/// echo and the store) translates its reply back.
impl Provider {
    /// True when this backend answers a Responses call natively (`serves_responses`).
    pub fn speaks_responses(&self) -> bool {
        matches!(self, Provider::OpenAi(a) if a.serves_responses())
    }

    /// A native Responses reply to `body` (a Responses request with the upstream model
    /// set); a backend that does not `speaks_responses` refuses it as unsupported.
    pub async fn responses(&self, body: Vec<u8>, at: Attempt<'_>) -> Result<Reply, UpstreamError> {
        match self {
            Provider::OpenAi(a) if a.serves_responses() => a.responses(body, at).await,
            _ => Err(self.no_responses()),
        }
    }

    /// A native Responses stream: the upstream's own events, passed through.
    pub async fn responses_stream(
        &self,
        body: Vec<u8>,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        match self {
            Provider::OpenAi(a) if a.serves_responses() => a.responses_stream(body, at).await,
            _ => Err(self.no_responses()),
        }
    }

    fn no_responses(&self) -> UpstreamError {
        UpstreamError::unsupported(
            self.id(),
            "input",
            "this backend does not serve the Responses API; send it as chat",
        )
    }

    /// Refuses a translated call when the request holds a field (`only`) that only its
    /// own wire format's backends take.
    pub fn translatable(&self, only: Option<&NativeOnly>) -> Result<(), UpstreamError> {
        match only {
            Some(only) => Err(UpstreamError::unsupported(
                self.id(),
                only.field.clone(),
                only.detail.clone(),
            )),
            None => Ok(()),
        }
    }
}

/// Parses a `Retry-After` header: delta-seconds (fractions tolerated) or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(3600.0)));
    }
    let when = httpdate_to_unix(value)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(when.saturating_sub(now).min(3600)))
}

fn httpdate_to_unix(value: &str) -> Option<u64> {
    chrono::DateTime::parse_from_rfc2822(value)
        .ok()
        .and_then(|d| u64::try_from(d.timestamp()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
