//! The OpenAI wire format, spoken by OpenAI and every OpenAI-compatible host. The
//! front end already speaks it, so translation is a minimal rewrite: `model` set to
//! the upstream id, `stream_options.include_usage` asked for, gateway fields dropped.
//! Replies and stream chunks are forwarded as the upstream's bytes.

pub mod presets;

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::{timeout_at, Instant};

use super::sse::{SseDecoder, SseEvent};
use super::{
    parse_retry_after, Adapter, Attempt, Chunk, ChunkStream, Reply, StreamReply, UpstreamError,
    UpstreamMeta,
};
use crate::api::openai::{ChatRequest, PassthroughRequest, RawObject};
use crate::api::usage::OpenAiUsage;
use crate::api::Usage;
use crate::config::{ProviderConfig, WireFormat};
use presets::AuthStyle;

/// An OpenAI-compatible provider with its own connection pool.
#[derive(Debug)]
pub struct OpenAiAdapter {
    config: ProviderConfig,
    client: reqwest::Client,
    headers: HeaderMap,
    /// Endpoint URLs parsed once, not per call.
    chat_url: reqwest::Url,
    completions_url: reqwest::Url,
    embeddings_url: reqwest::Url,
}

impl OpenAiAdapter {
    pub fn new(config: ProviderConfig) -> Result<OpenAiAdapter, String> {
        let client = http_client(&config)?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &config.api_key {
            let (name, value) = match config.auth {
                AuthStyle::Bearer | AuthStyle::None => {
                    (AUTHORIZATION, format!("Bearer {}", key.expose()))
                }
                AuthStyle::Header(name) => {
                    (HeaderName::from_static(name), key.expose().to_string())
                }
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                format!("providers.{}.api_key: not a valid header value", config.id)
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{}{path}", config.base_url))
                .map_err(|e| format!("providers.{}.base_url: {e}", config.id))
        };
        Ok(OpenAiAdapter {
            chat_url: url("/chat/completions")?,
            completions_url: url("/completions")?,
            embeddings_url: url("/embeddings")?,
            config,
            client,
            headers,
        })
    }

    async fn send(
        &self,
        url: &reqwest::Url,
        body: Vec<u8>,
        at: Attempt<'_>,
    ) -> Result<(reqwest::Response, UpstreamMeta), UpstreamError> {
        let request = self
            .client
            .post(url.clone())
            .headers(self.headers.clone())
            .header("x-request-id", at.request_id)
            .body(body);
        send(&self.config, request, at).await
    }

    async fn complete(
        &self,
        url: &reqwest::Url,
        body: Vec<u8>,
        at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        let (response, meta) = self.send(url, body, at).await?;
        let body = read_body(&self.config, response, at).await?;
        let usage = parse_usage(&self.config.id, &body)?;
        Ok(Reply { body, usage, meta })
    }

    async fn stream(
        &self,
        url: &reqwest::Url,
        body: Vec<u8>,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        let (response, meta) = self.send(url, body, at).await?;
        Ok(StreamReply {
            chunks: event_stream(&self.config, response, at.deadline, |provider, event| {
                openai_chunk(provider, event)
            }),
            meta,
        })
    }

    fn stream_body(&self, fields: &RawObject, model: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        if self.config.quirks.no_stream_usage {
            fields.write_with(&mut out, model, &[]);
            return out;
        }
        let options = with_usage(fields.get("stream_options"));
        fields.write_with(&mut out, model, &[("stream_options", &options)]);
        out
    }
}

/// Builds the HTTP client for one provider: its connect timeout, TCP_NODELAY, a warm pool.
pub fn http_client(config: &ProviderConfig) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(config.timeouts.connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .user_agent(concat!("bazaar/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("providers.{}: cannot build an HTTP client: {e}", config.id))
}

/// Sends a request with the first-byte timeout and classifies the outcome; non-2xx becomes `Status`.
pub async fn send(
    config: &ProviderConfig,
    request: reqwest::RequestBuilder,
    at: Attempt<'_>,
) -> Result<(reqwest::Response, UpstreamMeta), UpstreamError> {
    let first_byte = Instant::now() + config.timeouts.first_byte;
    let deadline = first_byte.min(at.deadline);
    let response = match timeout_at(deadline, request.send()).await {
        Err(_) => return Err(timeout(config, "first byte", deadline)),
        Ok(Err(e)) => return Err(transport_error(config, &e)),
        Ok(Ok(r)) => r,
    };
    let meta = meta(response.headers());
    if response.status().is_success() {
        return Ok((response, meta));
    }
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = timeout_at(
        deadline.max(Instant::now() + std::time::Duration::from_secs(1)),
        response.bytes(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    let (message, code, param) = error_fields(&body);
    Err(UpstreamError::Status {
        provider: config.id.clone(),
        status,
        message: message.unwrap_or_else(|| format!("HTTP {status} with no error message")),
        code,
        param,
        retry_after,
    })
}

/// Reads a whole reply body before the attempt's deadline or the provider's total timeout.
pub async fn read_body(
    config: &ProviderConfig,
    response: reqwest::Response,
    at: Attempt<'_>,
) -> Result<Bytes, UpstreamError> {
    let deadline = at.deadline.min(Instant::now() + config.timeouts.total);
    match timeout_at(deadline, response.bytes()).await {
        Err(_) => Err(timeout(config, "body", deadline)),
        Ok(Err(e)) => Err(transport_error(config, &e)),
        Ok(Ok(body)) => Ok(body),
    }
}

fn timeout(config: &ProviderConfig, phase: &'static str, _deadline: Instant) -> UpstreamError {
    let after = match phase {
        "first byte" => config.timeouts.first_byte,
        "idle" => config.timeouts.idle,
        _ => config.timeouts.total,
    };
    UpstreamError::Timeout {
        provider: config.id.clone(),
        phase,
        after,
    }
}

/// Classifies a transport error without echoing URLs or headers.
pub fn transport_error(config: &ProviderConfig, e: &reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        return UpstreamError::Timeout {
            provider: config.id.clone(),
            phase: "connect",
            after: config.timeouts.connect,
        };
    }
    let detail = if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the connection broke while reading the reply"
    } else {
        "the request could not be sent"
    };
    // The source chain (e.g. "Connection refused") helps operators and carries no secret.
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    let detail = if cause.is_empty() {
        detail.to_string()
    } else {
        format!("{detail} ({cause})")
    };
    if e.is_connect() {
        UpstreamError::Connect {
            provider: config.id.clone(),
            detail,
        }
    } else {
        UpstreamError::Protocol {
            provider: config.id.clone(),
            detail,
        }
    }
}

/// Reads `x-ratelimit-remaining-*` headers (OpenAI, Groq, Together and others send them).
pub fn meta(headers: &HeaderMap) -> UpstreamMeta {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    };
    UpstreamMeta {
        remaining_requests: num("x-ratelimit-remaining-requests"),
        remaining_tokens: num("x-ratelimit-remaining-tokens"),
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: Option<ErrorBody>,
    message: Option<String>,
    detail: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    code: Option<serde_json::Value>,
    param: Option<String>,
}

const MAX_MESSAGE: usize = 500;

/// The message, code and param of an OpenAI-style error body, truncated; never the raw body.
pub fn error_fields(body: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(body) else {
        return (None, None, None);
    };
    let code = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let (message, code, param) = match envelope.error {
        Some(e) => (e.message, code(e.code), e.param),
        None => (
            envelope
                .message
                .or_else(|| envelope.detail.map(|d| d.to_string())),
            None,
            None,
        ),
    };
    (message.map(|m| truncate(m, MAX_MESSAGE)), code, param)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[derive(Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

/// Usage from a complete OpenAI reply; `None` when the backend reported none.
pub fn parse_usage(provider: &str, body: &[u8]) -> Result<Option<Usage>, UpstreamError> {
    let parsed: UsageOnly = serde_json::from_slice(body).map_err(|e| UpstreamError::Protocol {
        provider: provider.to_string(),
        detail: format!("the reply is not JSON ({e})"),
    })?;
    Ok(parsed.usage.map(|u| Usage::from_openai(&u)))
}

#[derive(Deserialize)]
struct ChunkPeek<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// Turns one upstream SSE event into zero or one chunk; `Ok(None)` also for `[DONE]`.
pub fn openai_chunk(provider: &str, event: SseEvent) -> Result<Option<Chunk>, UpstreamError> {
    let data = event.data;
    if data == "[DONE]" {
        return Ok(None);
    }
    // Most chunks carry neither usage nor an error: forward them without a full parse.
    let finder = memchr::memmem::find;
    if finder(data.as_bytes(), b"\"usage\"").is_none()
        && finder(data.as_bytes(), b"\"error\"").is_none()
    {
        return Ok(Some(Chunk {
            data: Bytes::from(data),
            usage: None,
            usage_only: false,
        }));
    }
    let peek: ChunkPeek = serde_json::from_str(&data).map_err(|e| UpstreamError::Protocol {
        provider: provider.to_string(),
        detail: format!("a stream event is not JSON ({e})"),
    })?;
    if let Some(error) = peek.error {
        let (message, code, param) =
            error_fields(format!("{{\"error\":{}}}", error.get()).as_bytes());
        return Err(UpstreamError::Status {
            provider: provider.to_string(),
            status: 502,
            message: message.unwrap_or_else(|| "error event in the stream".into()),
            code,
            param,
            retry_after: None,
        });
    }
    let usage = peek.usage.map(|u| Usage::from_openai(&u));
    let usage_only = usage.is_some() && peek.choices.as_ref().is_none_or(|c| c.is_empty());
    Ok(Some(Chunk {
        data: Bytes::from(data),
        usage,
        usage_only,
    }))
}

/// A stream of chunks from an SSE response: idle timeout between events, the call's
/// deadline overall, an error if the stream ends without its terminator.
pub fn event_stream<F>(
    config: &ProviderConfig,
    response: reqwest::Response,
    deadline: Instant,
    translate: F,
) -> ChunkStream
where
    F: FnMut(&str, SseEvent) -> Result<Option<Chunk>, UpstreamError> + Send + 'static,
{
    struct State<S, F> {
        body: S,
        decoder: SseDecoder,
        pending: VecDeque<SseEvent>,
        scratch: Vec<SseEvent>,
        config: ProviderConfig,
        deadline: Instant,
        translate: F,
        done: bool,
    }
    let state = State {
        body: response.bytes_stream(),
        decoder: SseDecoder::new(),
        pending: VecDeque::new(),
        scratch: Vec::new(),
        config: config.clone(),
        deadline: deadline.min(Instant::now() + config.timeouts.total),
        translate,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            if let Some(event) = s.pending.pop_front() {
                let is_done = event.data == "[DONE]";
                match (s.translate)(&s.config.id, event) {
                    Ok(Some(chunk)) => return Some((Ok(chunk), s)),
                    Ok(None) if is_done => return None,
                    Ok(None) => continue,
                    Err(e) => {
                        s.done = true;
                        return Some((Err(e), s));
                    }
                }
            }
            let idle = Instant::now() + s.config.timeouts.idle;
            let (limit, phase) = if idle < s.deadline {
                (idle, "idle")
            } else {
                (s.deadline, "total")
            };
            match timeout_at(limit, s.body.next()).await {
                Err(_) => {
                    s.done = true;
                    return Some((Err(timeout(&s.config, phase, limit)), s));
                }
                Ok(Some(Ok(bytes))) => {
                    s.decoder.push(&bytes, &mut s.scratch);
                    s.pending.extend(s.scratch.drain(..));
                }
                Ok(Some(Err(e))) => {
                    s.done = true;
                    return Some((Err(transport_error(&s.config, &e)), s));
                }
                Ok(None) => {
                    s.done = true;
                    s.decoder.finish();
                    return Some((
                        Err(UpstreamError::Protocol {
                            provider: s.config.id.clone(),
                            detail: "the stream ended before its last event".into(),
                        }),
                        s,
                    ));
                }
            }
        }
    });
    Box::pin(stream) as std::pin::Pin<Box<dyn Stream<Item = _> + Send>>
}

/// `stream_options` with `include_usage: true`, keeping any other option the client set.
fn with_usage(existing: Option<&RawValue>) -> Box<RawValue> {
    let mut map = existing
        .and_then(|raw| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get()).ok()
        })
        .unwrap_or_default();
    map.insert("include_usage".into(), serde_json::Value::Bool(true));
    serde_json::value::to_raw_value(&map).unwrap_or_else(|_| {
        RawValue::from_string(r#"{"include_usage":true}"#.into()).unwrap_or_default()
    })
}

impl Adapter for OpenAiAdapter {
    fn wire(&self) -> WireFormat {
        WireFormat::OpenAi
    }

    fn config(&self) -> &ProviderConfig {
        &self.config
    }

    async fn chat(&self, req: &ChatRequest, at: Attempt<'_>) -> Result<Reply, UpstreamError> {
        let mut body = Vec::with_capacity(256);
        req.fields.write_with(&mut body, at.upstream_model, &[]);
        self.complete(&self.chat_url, body, at).await
    }

    async fn chat_stream(
        &self,
        req: &ChatRequest,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        let body = self.stream_body(&req.fields, at.upstream_model);
        self.stream(&self.chat_url, body, at).await
    }

    async fn embeddings(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        let mut body = Vec::with_capacity(256);
        req.fields.write_with(&mut body, at.upstream_model, &[]);
        self.complete(&self.embeddings_url, body, at).await
    }

    async fn completions(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        let mut body = Vec::with_capacity(256);
        req.fields.write_with(&mut body, at.upstream_model, &[]);
        self.complete(&self.completions_url, body, at).await
    }

    async fn completions_stream(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        let body = self.stream_body(&req.fields, at.upstream_model);
        self.stream(&self.completions_url, body, at).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: String::new(),
            data: data.into(),
        }
    }

    #[test]
    fn usage_only_chunk_is_marked() {
        let c = openai_chunk("p", event(r#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#))
            .unwrap()
            .unwrap();
        assert!(c.usage_only);
        assert_eq!(c.usage.unwrap().output, 2);
        let c = openai_chunk(
            "p",
            event(r#"{"id":"x","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}"#),
        )
        .unwrap()
        .unwrap();
        assert!(!c.usage_only && c.usage.is_none());
        assert!(openai_chunk("p", event("[DONE]")).unwrap().is_none());
    }

    #[test]
    fn error_event_is_an_error() {
        let err = openai_chunk(
            "p",
            event(r#"{"error":{"message":"overloaded","type":"server_error"}}"#),
        )
        .unwrap_err();
        assert!(
            matches!(err, UpstreamError::Status { ref message, .. } if message == "overloaded")
        );
    }

    #[test]
    fn error_fields_are_truncated() {
        let long = "x".repeat(2000);
        let body =
            format!(r#"{{"error":{{"message":"{long}","code":"bad","param":"temperature"}}}}"#);
        let (m, c, p) = error_fields(body.as_bytes());
        assert!(m.unwrap().len() <= MAX_MESSAGE + 3);
        assert_eq!(c.as_deref(), Some("bad"));
        assert_eq!(p.as_deref(), Some("temperature"));
    }
}
