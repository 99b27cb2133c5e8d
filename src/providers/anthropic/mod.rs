//! The Anthropic Messages wire format: `POST {base}/messages` with `x-api-key` and
//! `anthropic-version`. Translation is pure and lives in `request` (OpenAI chat → Messages),
//! `response` (reply and errors) and `stream` (events → chunks); this file only sends.
//! Anthropic serves neither embeddings nor legacy completions: those are refused.

pub mod native;
pub mod request;
pub mod response;
pub mod stream;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, Uri};

use super::chat::unsupported;
use super::http::{base_headers, read_reply, reply_stream, UpstreamBody, UpstreamClient};
use super::shape::unix_now;
use super::{Adapter, Attempt, BuildError, Reply, StreamReply, UpstreamError, UpstreamMeta};
use crate::api::openai::{ChatRequest, PassthroughRequest, RawObject};
use crate::config::{ProviderConfig, WireFormat, ANTHROPIC_VERSION};

/// An Anthropic provider with its own connection pool.
#[derive(Debug)]
pub struct AnthropicAdapter {
    config: ProviderConfig,
    client: UpstreamClient,
    headers: HeaderMap,
    /// Endpoint URIs parsed once, not per call.
    messages_url: Uri,
    count_tokens_url: Uri,
}

const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

impl AnthropicAdapter {
    /// Builds the client and the fixed headers (key, `anthropic-version`).
    pub fn new(config: ProviderConfig) -> Result<AnthropicAdapter, BuildError> {
        let client = UpstreamClient::new(&config)?;
        let mut headers = base_headers(&config, &[])?;
        let version = config.api_version.as_deref().unwrap_or(ANTHROPIC_VERSION);
        let version = HeaderValue::from_str(version)
            .map_err(|_| BuildError::field("api_version", "not a valid header value"))?;
        // An operator's own `anthropic-version` header wins over the config field.
        if !headers.contains_key("anthropic-version") {
            headers.insert("anthropic-version", version);
        }
        let url = |path: &str| {
            Uri::try_from(format!("{}{path}", config.base_url))
                .map_err(|e| BuildError::field("base_url", e))
        };
        Ok(AnthropicAdapter {
            messages_url: url("/messages")?,
            count_tokens_url: url("/messages/count_tokens")?,
            config,
            client,
            headers,
        })
    }

    /// Sends a Messages body as it is; non-2xx replies are classified as Anthropic errors.
    pub async fn send(
        &self,
        body: Vec<u8>,
        at: Attempt<'_>,
    ) -> Result<(Response<UpstreamBody>, UpstreamMeta), UpstreamError> {
        let request = UpstreamClient::post(
            self.messages_url.clone(),
            &self.headers,
            at.request_id,
            body,
        );
        self.client
            .send(&self.config, request, at, response::classify)
            .await
    }

    /// Sends a client's own Messages body (`model` rewritten, gateway fields dropped) and
    /// returns the reply untranslated: the `/v1/messages` pass-through. The client's
    /// `anthropic-beta` header, if any, goes along.
    pub async fn messages(
        &self,
        native: &RawObject,
        at: Attempt<'_>,
        beta: Option<&HeaderValue>,
    ) -> Result<Reply, UpstreamError> {
        let (response, meta) = self.send_native(native, at, beta).await?;
        let body = read_reply(&self.config, response, at).await?;
        let usage = native::reply_usage(&self.config.id, &body)?;
        Ok(Reply {
            body,
            usage,
            meta,
            usage_at: None,
        })
    }

    /// The streamed `messages`: each chunk is one Anthropic SSE frame, passed through.
    pub async fn messages_stream(
        &self,
        native: &RawObject,
        at: Attempt<'_>,
        beta: Option<&HeaderValue>,
    ) -> Result<StreamReply, UpstreamError> {
        let (response, meta) = self.send_native(native, at, beta).await?;
        Ok(StreamReply {
            chunks: reply_stream(
                &self.config,
                response,
                at.deadline,
                native::NativeStream::new(&self.config.id),
            ),
            meta,
        })
    }

    /// `POST /messages/count_tokens` with a client's own body (`model` rewritten): the
    /// backend's own count, as its JSON (`{"input_tokens": n}`).
    pub async fn count_tokens(
        &self,
        native: &RawObject,
        at: Attempt<'_>,
        beta: Option<&HeaderValue>,
    ) -> Result<bytes::Bytes, UpstreamError> {
        let url = self.count_tokens_url.clone();
        let (response, _) = self.send_native_to(url, native, at, beta).await?;
        read_reply(&self.config, response, at).await
    }

    async fn send_native(
        &self,
        native: &RawObject,
        at: Attempt<'_>,
        beta: Option<&HeaderValue>,
    ) -> Result<(Response<UpstreamBody>, UpstreamMeta), UpstreamError> {
        self.send_native_to(self.messages_url.clone(), native, at, beta)
            .await
    }

    async fn send_native_to(
        &self,
        url: Uri,
        native: &RawObject,
        at: Attempt<'_>,
        beta: Option<&HeaderValue>,
    ) -> Result<(Response<UpstreamBody>, UpstreamMeta), UpstreamError> {
        let mut body = Vec::with_capacity(512);
        native.write_with(&mut body, at.upstream_model, &[]);
        let mut request = UpstreamClient::post(url, &self.headers, at.request_id, body);
        if let Some(beta) = beta {
            // Beside an operator's own `anthropic-beta` header, if any: both are sent.
            request.headers_mut().append(ANTHROPIC_BETA, beta.clone());
        }
        self.client
            .send(&self.config, request, at, response::classify)
            .await
    }
}

impl Adapter for AnthropicAdapter {
    fn wire(&self) -> WireFormat {
        WireFormat::Anthropic
    }

    fn config(&self) -> &ProviderConfig {
        &self.config
    }

    async fn chat(&self, req: &ChatRequest, at: Attempt<'_>) -> Result<Reply, UpstreamError> {
        let built = request::build(req, at.upstream_model, false, &self.config.id)?;
        let (response, meta) = self.send(built.body, at).await?;
        let body = read_reply(&self.config, response, at).await?;
        response::parse_reply(&self.config.id, &body, unix_now(), built.json_mode, meta)
    }

    async fn chat_stream(
        &self,
        req: &ChatRequest,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        let built = request::build(req, at.upstream_model, true, &self.config.id)?;
        let (response, meta) = self.send(built.body, at).await?;
        let translator = stream::AnthropicStream::new(&self.config.id, unix_now(), built.json_mode);
        Ok(StreamReply {
            chunks: reply_stream(&self.config, response, at.deadline, translator),
            meta,
        })
    }

    async fn embeddings(
        &self,
        _req: &PassthroughRequest,
        _at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        Err(unsupported(
            &self.config.id,
            "model",
            "Anthropic serves no embeddings endpoint",
        ))
    }

    async fn completions(
        &self,
        _req: &PassthroughRequest,
        _at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        Err(unsupported(
            &self.config.id,
            "prompt",
            "Anthropic serves no legacy completions endpoint; use chat",
        ))
    }

    async fn completions_stream(
        &self,
        _req: &PassthroughRequest,
        _at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        Err(unsupported(
            &self.config.id,
            "prompt",
            "Anthropic serves no legacy completions endpoint; use chat",
        ))
    }
}
