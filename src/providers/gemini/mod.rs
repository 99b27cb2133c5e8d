//! The Google Gemini wire format: `POST {base}/models/{model}:generateContent`, its
//! `:streamGenerateContent?alt=sse` twin and `:batchEmbedContents`, keyed by
//! `x-goog-api-key`. Translation is pure and lives in `request`, `response`, `stream`
//! and `embed`; this file only sends. Legacy completions are refused.

pub mod embed;
pub mod request;
pub mod response;
pub mod signature;
pub mod stream;

use http::header::HeaderMap;
use http::{Response, Uri};

use super::chat::unsupported;
use super::http::{base_headers, read_reply, reply_stream, UpstreamBody, UpstreamClient};
use super::shape::unix_now;
use super::{Adapter, Attempt, BuildError, Reply, StreamReply, UpstreamError, UpstreamMeta};
use crate::api::openai::{ChatRequest, PassthroughRequest};
use crate::config::{ProviderConfig, WireFormat};

/// A Gemini provider with its own connection pool.
#[derive(Debug)]
pub struct GeminiAdapter {
    config: ProviderConfig,
    client: UpstreamClient,
    headers: HeaderMap,
}

/// The model path segment: Gemini ids may be given with or without `models/`.
fn model_path(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

impl GeminiAdapter {
    pub fn new(config: ProviderConfig) -> Result<GeminiAdapter, BuildError> {
        let client = UpstreamClient::new(&config)?;
        let headers = base_headers(&config, &[])?;
        Ok(GeminiAdapter {
            config,
            client,
            headers,
        })
    }

    async fn send(
        &self,
        method: &str,
        body: Vec<u8>,
        at: Attempt<'_>,
    ) -> Result<(Response<UpstreamBody>, UpstreamMeta), UpstreamError> {
        // The model is part of the path, so this URI is built per call.
        let model = model_path(at.upstream_model);
        let url = format!("{}/models/{model}:{method}", self.config.base_url);
        let uri = Uri::try_from(url).map_err(|e| {
            unsupported(
                &self.config.id,
                "model",
                format!("`{model}` does not make a valid Gemini URL ({e})"),
            )
        })?;
        let request = UpstreamClient::post(uri, &self.headers, at.request_id, body);
        self.client
            .send(&self.config, request, at, response::classify)
            .await
    }
}

impl Adapter for GeminiAdapter {
    fn wire(&self) -> WireFormat {
        WireFormat::Gemini
    }

    fn config(&self) -> &ProviderConfig {
        &self.config
    }

    async fn chat(&self, req: &ChatRequest, at: Attempt<'_>) -> Result<Reply, UpstreamError> {
        let body = request::build(req, &self.config.id)?;
        let (response, meta) = self.send("generateContent", body, at).await?;
        let body = read_reply(&self.config, response, at).await?;
        response::parse_reply(
            &self.config.id,
            &body,
            unix_now(),
            at.upstream_model,
            rand::random(),
            meta,
        )
    }

    async fn chat_stream(
        &self,
        req: &ChatRequest,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        let body = request::build(req, &self.config.id)?;
        let (response, meta) = self.send("streamGenerateContent?alt=sse", body, at).await?;
        let translator = stream::GeminiStream::new(
            &self.config.id,
            unix_now(),
            at.upstream_model,
            rand::random(),
        );
        Ok(StreamReply {
            chunks: reply_stream(&self.config, response, at.deadline, translator),
            meta,
        })
    }

    async fn embeddings(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        let built = embed::build(req, at.upstream_model, &self.config.id)?;
        let (response, meta) = self.send("batchEmbedContents", built.body, at).await?;
        let body = read_reply(&self.config, response, at).await?;
        embed::parse_reply(
            &self.config.id,
            &body,
            at.upstream_model,
            built.base64,
            meta,
        )
    }

    async fn completions(
        &self,
        _req: &PassthroughRequest,
        _at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        Err(unsupported(
            &self.config.id,
            "prompt",
            "Gemini serves no legacy completions endpoint; use chat",
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
            "Gemini serves no legacy completions endpoint; use chat",
        ))
    }
}
