//! The HTTP side every adapter shares: the clients, auth headers, sending with the
//! first-byte timeout, reading a body before the deadline, turning transport failures
//! into `UpstreamError`, and driving an SSE body through a wire format's stream
//! translator. Nothing here knows a wire format; classification is passed in.
//! `UpstreamClient` is one provider's connection pool (`providers::pool`: a call drives
//! its own HTTP/1.1 connection), shared by every wire format, with targets built once
//! per provider (no URL parsing, redirect or retry layer per call).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Future, Stream, StreamExt};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, PROXY_AUTHORIZATION,
    USER_AGENT,
};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyDataStream, BodyExt, Full};
use tokio::time::{timeout_at, Instant};

use super::connect::Connector;
pub use super::pool::UpstreamBody;
use super::pool::{IdleLimits, Pool, SendError};
use super::presets::AuthStyle;
use super::sse::{SseDecoder, SseEvent};
use super::{
    parse_retry_after, Attempt, BuildError, Chunk, ChunkStream, UpstreamError, UpstreamMeta,
};
use crate::config::ProviderConfig;

/// Idle connections per provider: the 8 most recently used are kept up to 90 s (hyper's
/// and Go's keep-alive); those a burst opened beyond them close 5 s after their last use
/// (HAProxy's `pool-purge-delay`), so a burst's connections and their buffers do not
/// outlive it; never more than 256.
const POOL_IDLE: IdleLimits = IdleLimits {
    keep: 8,
    surplus_for: Duration::from_secs(5),
    idle_for: Duration::from_secs(90),
    max: 256,
};

/// One provider's pooled HTTP/1.1 and HTTP/2 (by ALPN) client over TCP, TLS by rustls
/// with the Mozilla roots for `https`, through the provider's proxy if it has one
/// (`connect`). The caller hands over a prebuilt `Uri` and header map, so a call parses
/// no URL; an HTTP/1.1 exchange runs on the calling task (`pool`).
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    pool: Arc<Pool>,
}

impl UpstreamClient {
    /// The client for one provider: its connect timeout and proxy, TCP_NODELAY, a warm pool.
    pub fn new(config: &ProviderConfig) -> Result<UpstreamClient, BuildError> {
        let connector = Connector::new(config)?;
        Ok(UpstreamClient {
            pool: Pool::new(connector, POOL_IDLE),
        })
    }

    /// Idle connections kept for the next calls.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle()
    }

    /// A POST of `body` to `uri` with `headers` (the provider's base headers) and the
    /// call's request id.
    pub fn post(
        uri: Uri,
        headers: &HeaderMap,
        request_id: &str,
        body: Vec<u8>,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let sent = request.headers_mut();
        sent.reserve(headers.len() + 1);
        for (name, value) in headers {
            sent.append(name, value.clone());
        }
        // Request ids are checked where they are minted or taken from the client.
        if let Ok(id) = HeaderValue::from_str(request_id) {
            sent.insert(X_REQUEST_ID, id);
        }
        request
    }

    /// Sends `request` with the first-byte timeout; a non-2xx reply goes through `classify`.
    pub async fn send(
        &self,
        config: &ProviderConfig,
        request: Request<Full<Bytes>>,
        at: Attempt<'_>,
        classify: Classify,
    ) -> Result<(Response<UpstreamBody>, UpstreamMeta), UpstreamError> {
        let deadline = first_byte_deadline(config, at);
        let response = match timeout_at(deadline, self.pool.send(request)).await {
            Err(_) => return Err(timeout(config, "first byte")),
            Ok(Err(e)) => {
                let failure = match e {
                    SendError::Connect(_) => Failure::Connect,
                    SendError::Send(_) => Failure::Send,
                };
                return Err(transport_failure(config, failure, &e));
            }
            Ok(Ok(r)) => r,
        };
        let meta = meta(response.headers());
        if response.status().is_success() {
            return Ok((response, meta));
        }
        let (parts, body) = response.into_parts();
        // An error body past the limit is classified by its status alone.
        let body = async { read_capped(body, config.max_reply_bytes).await.ok() };
        Err(refusal(
            config,
            parts.status,
            &parts.headers,
            deadline,
            body,
            classify,
        )
        .await)
    }
}

/// Reads a whole reply body from `UpstreamClient` before the attempt's deadline or the
/// provider's total timeout, and no more than its `max_reply_bytes`: a body declared or
/// found longer is a protocol failure, and dropping it closes the connection.
pub async fn read_reply(
    config: &ProviderConfig,
    response: Response<UpstreamBody>,
    at: Attempt<'_>,
) -> Result<Bytes, UpstreamError> {
    let deadline = at.deadline.min(Instant::now() + config.timeouts.total);
    match timeout_at(
        deadline,
        read_capped(response.into_body(), config.max_reply_bytes),
    )
    .await
    {
        Err(_) => Err(timeout(config, "body")),
        Ok(Err(Capped::Broke(e))) => Err(transport_failure(config, Failure::Body, &*e)),
        Ok(Err(Capped::TooLarge)) => Err(too_large(config, "reply body")),
        Ok(Ok(body)) => Ok(body),
    }
}

/// Why `read_capped` read no whole body.
enum Capped {
    /// Longer than the limit, by its `Content-Length` or by what arrived.
    TooLarge,
    Broke(Box<dyn std::error::Error + Send + Sync>),
}

/// Reads `body` whole if it is at most `limit` bytes; stops reading as soon as it
/// declares or delivers more. A body of one frame (the usual reply) is that frame's
/// bytes, neither copied nor listed; more are joined into one buffer.
async fn read_capped(mut body: UpstreamBody, limit: usize) -> Result<Bytes, Capped> {
    use hyper::body::Body as _;
    if usize::try_from(body.size_hint().lower()).map_or(true, |n| n > limit) {
        return Err(Capped::TooLarge);
    }
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Capped::Broke(Box::new(e)))?;
        // Trailers carry no body.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        read += data.len();
        if read > limit {
            return Err(Capped::TooLarge);
        }
        match &mut joined {
            Some(buf) => buf.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut buf = BytesMut::with_capacity(read);
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or(first, BytesMut::freeze))
}

/// The failure of a reply (`what`) longer than the provider's `max_reply_bytes`.
fn too_large(config: &ProviderConfig, what: &str) -> UpstreamError {
    UpstreamError::protocol(
        &config.id,
        format!(
            "the {what} passed the gateway's limit of {} bytes (providers.{}.max_reply_bytes); \
             the connection was closed",
            config.max_reply_bytes, config.id
        ),
    )
}

/// `event_stream` over a reply from `UpstreamClient`.
pub fn reply_stream<T: StreamTranslator>(
    config: &ProviderConfig,
    response: Response<UpstreamBody>,
    deadline: Instant,
    translator: T,
) -> ChunkStream {
    let body = BodyDataStream::new(response.into_body());
    chunk_stream(config, body, body_failure, deadline, translator)
}

fn body_failure(config: &ProviderConfig, e: &hyper::Error) -> UpstreamError {
    transport_failure(config, Failure::Body, e)
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The headers sent on every call: JSON content type, accept and user agent, the key in
/// the provider's auth style, the wire format's fixed headers, then the operator's own
/// (which win); and the proxy's credentials when an `http` upstream is reached through
/// one (an `https` upstream's tunnel carries them on its CONNECT only).
pub fn base_headers(
    config: &ProviderConfig,
    fixed: &[(&'static str, &'static str)],
) -> Result<HeaderMap, BuildError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("bazaar/", env!("CARGO_PKG_VERSION"))),
    );
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
    let proxy_auth = config.proxy.as_ref().and_then(|p| p.authorization.as_ref());
    if let Some(auth) = proxy_auth.filter(|_| config.base_url.starts_with("http://")) {
        let mut value = HeaderValue::from_str(auth.expose())
            .map_err(|_| BuildError::field("proxy", "not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(PROXY_AUTHORIZATION, value);
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

/// When the first byte of a reply must have come: the provider's first-byte timeout,
/// or the attempt's deadline if that is sooner.
fn first_byte_deadline(config: &ProviderConfig, at: Attempt<'_>) -> Instant {
    (Instant::now() + config.timeouts.first_byte).min(at.deadline)
}

/// The error of a non-2xx reply: its body (read for at least a second more) classified
/// by the wire format, scrubbed of the key.
async fn refusal(
    config: &ProviderConfig,
    status: http::StatusCode,
    headers: &HeaderMap,
    deadline: Instant,
    body: impl Future<Output = Option<Bytes>>,
    classify: Classify,
) -> UpstreamError {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = timeout_at(deadline.max(Instant::now() + Duration::from_secs(1)), body)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let error = classify(
        &config.id,
        ErrorReply {
            status: status.as_u16(),
            retry_after,
            body: &body,
        },
    );
    // The body may quote the key we sent: never let it reach a client or a log.
    error.scrubbed(config)
}

fn timeout(config: &ProviderConfig, phase: &'static str) -> UpstreamError {
    let after = match phase {
        "first byte" => config.timeouts.first_byte,
        "idle" => config.timeouts.idle,
        _ => config.timeouts.total,
    };
    UpstreamError::timeout(&config.id, phase, after)
}

/// What a transport failure broke.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    Connect,
    Body,
    Send,
}

/// The `UpstreamError` of a transport failure, with the deepest cause of `e` (e.g.
/// "Connection refused"), scrubbed: a cause may quote a URL or a header. A connect that
/// timed out is a timeout.
fn transport_failure(
    config: &ProviderConfig,
    failure: Failure,
    e: &(dyn std::error::Error + 'static),
) -> UpstreamError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = None;
    let mut timed_out = false;
    let mut source = e.source();
    while let Some(s) = source {
        timed_out |= s
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        cause = Some(s);
        source = s.source();
    }
    if failure == Failure::Connect && timed_out {
        return UpstreamError::timeout(&config.id, "connect", config.timeouts.connect);
    }
    let detail = match failure {
        Failure::Connect => "connection failed",
        Failure::Body => "the connection broke while reading the reply",
        Failure::Send => "the request could not be sent",
    };
    let detail = match (cause.map(ToString::to_string), &config.proxy) {
        (Some(cause), Some(proxy)) if !cause.is_empty() => {
            format!("{detail} (through proxy {proxy}: {cause})")
        }
        (_, Some(proxy)) => format!("{detail} (through proxy {proxy})"),
        (Some(cause), None) if !cause.is_empty() => format!("{detail} ({cause})"),
        _ => detail.to_string(),
    };
    let error = if failure == Failure::Connect {
        UpstreamError::connect(&config.id, detail)
    } else {
        UpstreamError::protocol(&config.id, detail)
    };
    error.scrubbed(config)
}

/// Reads the remaining-quota headers: OpenAI's `x-ratelimit-remaining-*` (Groq, Together
/// and others copy them) and Anthropic's `anthropic-ratelimit-*-remaining`.
pub fn meta(headers: &HeaderMap) -> UpstreamMeta {
    // Static names: a `&str` name is parsed and checked again on every lookup.
    const REMAINING_REQUESTS: [HeaderName; 2] = [
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
    ];
    const REMAINING_TOKENS: [HeaderName; 2] = [
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
    ];
    // Most replies carry none: one pass over the names, without hashing any, says so.
    let any = headers.keys().any(|name| {
        let name = name.as_str();
        name.starts_with("x-ratelimit-remaining-") || name.starts_with("anthropic-ratelimit-")
    });
    if !any {
        return UpstreamMeta::default();
    }
    let num = |names: &[HeaderName; 2]| {
        names.iter().find_map(|name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        })
    };
    UpstreamMeta {
        remaining_requests: num(&REMAINING_REQUESTS),
        remaining_tokens: num(&REMAINING_TOKENS),
    }
}

/// One wire format's stream translation: a small state machine fed one SSE event at a
/// time. Pure: no I/O, no clock; the caller owns timeouts.
pub trait StreamTranslator: Send + Unpin + 'static {
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

/// A stream of chunks from an SSE body: idle timeout between reads, the call's deadline
/// overall, chunks forwarded as soon as their event is complete. Chunks translated
/// before a failure are delivered, then the failure, then nothing.
fn chunk_stream<B, E, T>(
    config: &ProviderConfig,
    body: B,
    failed: fn(&ProviderConfig, &E) -> UpstreamError,
    deadline: Instant,
    translator: T,
) -> ChunkStream
where
    B: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Send + 'static,
    T: StreamTranslator,
{
    let deadline = deadline.min(Instant::now() + config.timeouts.total);
    Box::pin(SseChunks {
        body,
        failed,
        decoder: SseDecoder::new(),
        events: Vec::new(),
        ready: Vec::new(),
        failure: None,
        config: config.clone(),
        deadline,
        translator,
        finished: false,
        waiting_since: None,
        timer: Box::pin(tokio::time::sleep_until(deadline)),
        timer_set: false,
    })
}

/// `chunk_stream`'s state.
struct SseChunks<B, E, T> {
    body: B,
    failed: fn(&ProviderConfig, &E) -> UpstreamError,
    decoder: SseDecoder,
    events: Vec<SseEvent>,
    /// Chunks translated and not yet taken, last first.
    ready: Vec<Chunk>,
    /// The failure that ends the stream, after `ready`.
    failure: Option<UpstreamError>,
    config: ProviderConfig,
    deadline: Instant,
    translator: T,
    /// No more bytes will be read; drain `ready`, then end.
    finished: bool,
    /// When the wait for the body's next bytes began.
    waiting_since: Option<Instant>,
    /// One timer for the whole stream, set for a wait's limit when the wait finds it
    /// unset, and set again only when it fires before the current wait's limit: a read
    /// sets no timer of its own.
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_set: bool,
}

impl<B, E, T> SseChunks<B, E, T>
where
    B: Stream<Item = Result<Bytes, E>> + Unpin,
    T: StreamTranslator,
{
    /// The current wait's limit and its phase: the idle timeout since the wait began,
    /// or the call's deadline if that is sooner.
    fn limit(&self, since: Instant) -> (Instant, &'static str) {
        let idle = since + self.config.timeouts.idle;
        if idle < self.deadline {
            (idle, "idle")
        } else {
            (self.deadline, "total")
        }
    }

    /// Reads the body until it has chunks, fails, ends or has nothing yet.
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, UpstreamError>> {
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        let item = match self.body.poll_next_unpin(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => loop {
                let (limit, phase) = self.limit(since);
                if !self.timer_set {
                    self.timer.as_mut().reset(limit);
                    self.timer_set = true;
                }
                if self.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // The timer was set for an earlier wait: set it for this one.
                self.timer_set = false;
                if Instant::now() >= limit {
                    return Poll::Ready(Err(timeout(&self.config, phase)));
                }
            },
        };
        self.waiting_since = None;
        Poll::Ready(match item {
            Some(Ok(bytes)) => {
                self.decoder.push(&bytes, &mut self.events);
                let fed = feed(&mut self.translator, &mut self.events, &mut self.ready);
                // An event that never ends (a line without a newline, data lines
                // without a blank one) is bounded like a whole reply.
                match fed {
                    Ok(false) if self.decoder.pending() > self.config.max_reply_bytes => {
                        Err(too_large(&self.config, "stream event"))
                    }
                    fed => fed,
                }
            }
            Some(Err(e)) => Err((self.failed)(&self.config, &e)),
            None => {
                self.decoder.finish();
                self.translator.end(&mut self.ready).map(|()| true)
            }
        })
    }
}

impl<B, E, T> Stream for SseChunks<B, E, T>
where
    B: Stream<Item = Result<Bytes, E>> + Unpin,
    T: StreamTranslator,
{
    type Item = Result<Chunk, UpstreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let s = self.get_mut();
        loop {
            if let Some(chunk) = s.ready.pop() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if let Some(e) = s.failure.take() {
                return Poll::Ready(Some(Err(e)));
            }
            if s.finished {
                return Poll::Ready(None);
            }
            let outcome = std::task::ready!(s.read(cx));
            // Taken from the end: the chunks in the order they were translated.
            s.ready.reverse();
            match outcome {
                Ok(last) => s.finished = last,
                Err(e) => {
                    // An error event's message is upstream text, like an error body's.
                    s.failure = Some(e.scrubbed(&s.config));
                    s.finished = true;
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::providers::UpstreamKind;

    #[test]
    fn remaining_quota_is_read_from_either_spelling_and_absent_without_one() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            for (name, value) in pairs {
                map.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            map
        };
        let read = |pairs| {
            let m = meta(&headers(pairs));
            (m.remaining_requests, m.remaining_tokens)
        };
        assert_eq!(read(&[]), (None, None));
        assert_eq!(read(&[("x-ratelimit-limit-requests", "10")]), (None, None));
        assert_eq!(
            read(&[
                ("x-ratelimit-remaining-requests", " 7 "),
                ("x-ratelimit-remaining-tokens", "900")
            ]),
            (Some(7), Some(900))
        );
        assert_eq!(
            read(&[
                ("anthropic-ratelimit-requests-remaining", "3"),
                ("anthropic-ratelimit-tokens-remaining", "many")
            ]),
            (Some(3), None)
        );
        assert_eq!(
            read(&[("anthropic-ratelimit-tokens-remaining", "12")]),
            (None, Some(12))
        );
    }

    /// A TLS handshake that never completes is a connect timeout (`timeouts.connect`
    /// covers TCP and TLS), not a wait for the first-byte timeout.
    #[tokio::test]
    async fn a_stalled_tls_handshake_is_a_connect_timeout() {
        // Accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (keep, mut kept) = tokio::sync::mpsc::unbounded_channel();
        // The test's own accept loop; nothing to drain at shutdown.
        #[allow(clippy::disallowed_methods)]
        let _accept = tokio::task::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = keep.send(socket);
            }
        });
        let toml = format!(
            "[providers.p]\ntier = \"frontier\"\nbase_url = \"https://{addr}/v1\"\napi_key = \"k\"\ncatalog = false\n[providers.p.timeouts]\nconnect = \"200ms\"\nfirst_byte = \"600s\"\n"
        );
        let config = Config::from_toml(&toml, &|_| None).unwrap();
        let provider = config.providers[0].clone();
        let client = UpstreamClient::new(&provider).unwrap();
        let headers = base_headers(&provider, &[]).unwrap();
        let uri = Uri::try_from(format!("https://{addr}/v1/chat/completions")).unwrap();
        let at = Attempt {
            upstream_model: "m",
            request_id: "r",
            deadline: Instant::now() + Duration::from_secs(600),
        };
        let request = UpstreamClient::post(uri, &headers, "r", b"{}".to_vec());
        // Without the limit over TLS this would wait for `first_byte` (600 s).
        let error = tokio::time::timeout(
            Duration::from_secs(30),
            client.send(&provider, request, at, crate::providers::openai::classify),
        )
        .await
        .expect("the connect limit ends a stalled handshake, not first_byte")
        .unwrap_err();
        assert_eq!(error.kind, UpstreamKind::Timeout, "{error}");
        // The TCP connect went through: it was the handshake that stalled.
        assert!(kept.recv().await.is_some());
    }
}
