//! The HTTP side every adapter shares: the client, auth headers, sending with the
//! first-byte timeout, reading a body before the deadline, turning transport failures
//! into `UpstreamError`, and driving an SSE body through a wire format's stream
//! translator. Nothing here knows a wire format; classification is passed in.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use tokio::time::{timeout_at, Instant};

use super::presets::AuthStyle;
use super::sse::{SseDecoder, SseEvent};
use super::{
    parse_retry_after, Attempt, BuildError, Chunk, ChunkStream, UpstreamError, UpstreamMeta,
};
use crate::config::ProviderConfig;

/// Builds the HTTP client for one provider: its connect timeout, TCP_NODELAY, a warm pool.
pub fn http_client(config: &ProviderConfig) -> Result<reqwest::Client, BuildError> {
    reqwest::Client::builder()
        .connect_timeout(config.timeouts.connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .user_agent(concat!("bazaar/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(BuildError::Client)
}

/// The headers sent on every call: JSON content type, the key in the provider's auth
/// style, the wire format's fixed headers, then the operator's own (which win).
pub fn base_headers(
    config: &ProviderConfig,
    fixed: &[(&'static str, &'static str)],
) -> Result<HeaderMap, BuildError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in fixed {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if let Some(key) = &config.api_key {
        let (name, value) = match config.auth {
            AuthStyle::Bearer | AuthStyle::None => {
                (AUTHORIZATION, format!("Bearer {}", key.expose()))
            }
            AuthStyle::Header(name) => (HeaderName::from_static(name), key.expose().to_string()),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| BuildError::field("api_key", "not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    for (name, value) in &config.headers {
        let field = || format!("headers.{name}");
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| BuildError::field(field(), e))?;
        let mut value =
            HeaderValue::from_str(value.expose()).map_err(|e| BuildError::field(field(), e))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// A non-2xx reply, read so the wire format can say what went wrong.
#[derive(Debug, Clone, Copy)]
pub struct ErrorReply<'a> {
    pub status: u16,
    /// From the `Retry-After` header, if it parsed.
    pub retry_after: Option<Duration>,
    pub body: &'a [u8],
}

/// Turns a wire format's error reply into an `UpstreamError` for provider `provider`.
pub type Classify = fn(provider: &str, reply: ErrorReply<'_>) -> UpstreamError;

/// Sends a request with the first-byte timeout; a non-2xx reply goes through `classify`.
pub async fn send(
    config: &ProviderConfig,
    request: reqwest::RequestBuilder,
    at: Attempt<'_>,
    classify: Classify,
) -> Result<(reqwest::Response, UpstreamMeta), UpstreamError> {
    let first_byte = Instant::now() + config.timeouts.first_byte;
    let deadline = first_byte.min(at.deadline);
    let response = match timeout_at(deadline, request.send()).await {
        Err(_) => return Err(timeout(config, "first byte")),
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
        deadline.max(Instant::now() + Duration::from_secs(1)),
        response.bytes(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    let error = classify(
        &config.id,
        ErrorReply {
            status,
            retry_after,
            body: &body,
        },
    );
    // The body may quote the key we sent: never let it reach a client or a log.
    Err(error.scrubbed(config))
}

/// Reads a whole reply body before the attempt's deadline or the provider's total timeout.
pub async fn read_body(
    config: &ProviderConfig,
    response: reqwest::Response,
    at: Attempt<'_>,
) -> Result<Bytes, UpstreamError> {
    let deadline = at.deadline.min(Instant::now() + config.timeouts.total);
    match timeout_at(deadline, response.bytes()).await {
        Err(_) => Err(timeout(config, "body")),
        Ok(Err(e)) => Err(transport_error(config, &e)),
        Ok(Ok(body)) => Ok(body),
    }
}

fn timeout(config: &ProviderConfig, phase: &'static str) -> UpstreamError {
    let after = match phase {
        "first byte" => config.timeouts.first_byte,
        "idle" => config.timeouts.idle,
        _ => config.timeouts.total,
    };
    UpstreamError::timeout(&config.id, phase, after)
}

/// Classifies a transport error without echoing URLs, headers or secrets.
pub fn transport_error(config: &ProviderConfig, e: &reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        return UpstreamError::timeout(&config.id, "connect", config.timeouts.connect);
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
    let error = if e.is_connect() {
        UpstreamError::connect(&config.id, detail)
    } else {
        UpstreamError::protocol(&config.id, detail)
    };
    // A cause may quote a URL, and Gemini's carry the key in the query.
    error.scrubbed(config)
}

/// Reads the remaining-quota headers: OpenAI's `x-ratelimit-remaining-*` (Groq, Together
/// and others copy them) and Anthropic's `anthropic-ratelimit-*-remaining`.
pub fn meta(headers: &HeaderMap) -> UpstreamMeta {
    let num = |names: [&str; 2]| {
        names.iter().find_map(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        })
    };
    UpstreamMeta {
        remaining_requests: num([
            "x-ratelimit-remaining-requests",
            "anthropic-ratelimit-requests-remaining",
        ]),
        remaining_tokens: num([
            "x-ratelimit-remaining-tokens",
            "anthropic-ratelimit-tokens-remaining",
        ]),
    }
}

/// One wire format's stream translation: a small state machine fed one SSE event at a
/// time. Pure: no I/O, no clock; the caller owns timeouts.
pub trait StreamTranslator: Send + 'static {
    /// Translates one event, appending the chunks it yields to `out`. Returns true when
    /// this was the stream's last event; later bytes are not read.
    fn event(&mut self, event: SseEvent, out: &mut Vec<Chunk>) -> Result<bool, UpstreamError>;

    /// The body ended before a last event: flush what the format allows, or say the
    /// stream was cut.
    fn end(&mut self, out: &mut Vec<Chunk>) -> Result<(), UpstreamError>;
}

/// Runs a whole transcript through a translator (tests and fixtures): every chunk, then
/// the error that ended it, if any.
pub fn translate_all<T: StreamTranslator>(
    translator: &mut T,
    bytes: &[u8],
) -> (Vec<Chunk>, Option<UpstreamError>) {
    let mut out = Vec::new();
    for event in super::sse::decode_all(bytes) {
        match translator.event(event, &mut out) {
            Ok(true) => return (out, None),
            Ok(false) => {}
            Err(e) => return (out, Some(e)),
        }
    }
    let end = translator.end(&mut out).err();
    (out, end)
}

/// A stream of chunks from an SSE response: idle timeout between reads, the call's
/// deadline overall, chunks forwarded as soon as their event is complete. Chunks
/// translated before a failure are delivered, then the failure, then nothing.
pub fn event_stream<T: StreamTranslator>(
    config: &ProviderConfig,
    response: reqwest::Response,
    deadline: Instant,
    translator: T,
) -> ChunkStream {
    struct State<S, T> {
        body: S,
        decoder: SseDecoder,
        events: Vec<SseEvent>,
        ready: VecDeque<Result<Chunk, UpstreamError>>,
        scratch: Vec<Chunk>,
        config: ProviderConfig,
        deadline: Instant,
        translator: T,
        /// No more bytes will be read; drain `ready`, then end.
        finished: bool,
    }
    let state = State {
        body: response.bytes_stream(),
        decoder: SseDecoder::new(),
        events: Vec::new(),
        ready: VecDeque::new(),
        scratch: Vec::new(),
        config: config.clone(),
        deadline: deadline.min(Instant::now() + config.timeouts.total),
        translator,
        finished: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(item) = s.ready.pop_front() {
                return Some((item, s));
            }
            if s.finished {
                return None;
            }
            let idle = Instant::now() + s.config.timeouts.idle;
            let (limit, phase) = if idle < s.deadline {
                (idle, "idle")
            } else {
                (s.deadline, "total")
            };
            let outcome = match timeout_at(limit, s.body.next()).await {
                Err(_) => Err(timeout(&s.config, phase)),
                Ok(Some(Ok(bytes))) => {
                    s.decoder.push(&bytes, &mut s.events);
                    feed(&mut s.translator, &mut s.events, &mut s.scratch)
                }
                Ok(Some(Err(e))) => Err(transport_error(&s.config, &e)),
                Ok(None) => {
                    s.decoder.finish();
                    s.translator.end(&mut s.scratch).map(|()| true)
                }
            };
            s.ready.extend(s.scratch.drain(..).map(Ok));
            match outcome {
                Ok(last) => s.finished = last,
                Err(e) => {
                    // An error event's message is upstream text, like an error body's.
                    s.ready.push_back(Err(e.scrubbed(&s.config)));
                    s.finished = true;
                }
            }
        }
    });
    Box::pin(stream) as std::pin::Pin<Box<dyn Stream<Item = _> + Send>>
}

/// Feeds decoded events to the translator until one is the last or fails.
fn feed<T: StreamTranslator>(
    translator: &mut T,
    events: &mut Vec<SseEvent>,
    out: &mut Vec<Chunk>,
) -> Result<bool, UpstreamError> {
    let mut last = false;
    for event in events.drain(..) {
        if last {
            continue;
        }
        last = translator.event(event, out)?;
    }
    Ok(last)
}
