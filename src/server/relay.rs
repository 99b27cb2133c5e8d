//! Sending a served reply back to the client: the JSON body as the upstream wrote it,
//! or an SSE stream forwarded chunk by chunk as it arrives (no buffering), with the
//! routing headers. A stream that fails after its first byte ends with an error event.
//! How chunks become SSE bytes is the front end's `Framer` (OpenAI's here; Anthropic's
//! in `messages`); usage, accounting and the end callback are the same for both.

use std::convert::Infallible;

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use crate::api::rewrite::with_usage_cost;
use crate::api::{ApiError, Usage};
use crate::billing::cost::usd_number;
use crate::billing::meter::{plausible, Billed, BodyShape, SentText};
use crate::config::ModelTarget;
use crate::providers::{Chunk, ChunkStream, UpstreamError};

/// Routing outcome headers every served response carries (a value that is not a valid
/// header value is left out).
#[derive(Debug, Clone)]
pub struct RouteHeaders {
    /// `provider/upstream-model`.
    pub backend: Option<HeaderValue>,
    pub route: Option<HeaderValue>,
}

/// Header names built once: a `&str` name is copied into a new allocation per insert.
const X_BAZAAR_BACKEND: HeaderName = HeaderName::from_static("x-bazaar-backend");
const X_BAZAAR_ROUTE: HeaderName = HeaderName::from_static("x-bazaar-route");
/// `x-bazaar-cost-usd`.
pub const X_BAZAAR_COST_USD: HeaderName = HeaderName::from_static("x-bazaar-cost-usd");

impl RouteHeaders {
    /// The headers of a call to `upstream` on `provider` for the route (or model) `route`.
    pub fn new(provider: &str, upstream: &str, route: &str) -> RouteHeaders {
        let mut backend = String::with_capacity(provider.len() + 1 + upstream.len());
        backend.push_str(provider);
        backend.push('/');
        backend.push_str(upstream);
        RouteHeaders {
            // The string's buffer becomes the value's: no second copy.
            backend: HeaderValue::from_maybe_shared(Bytes::from(backend)).ok(),
            route: HeaderValue::from_str(route).ok(),
        }
    }

    /// The headers of a call `target` (on `provider`) serves for the route (or model)
    /// `route`: the target's own made on its first call and kept in its slot, so a call
    /// writes no `provider/upstream` text (a route's name is still copied).
    pub fn of_target(provider: &str, target: &ModelTarget, route: &str) -> RouteHeaders {
        // The values depend on the config alone: every reader of the slot may share them.
        const ANY: u64 = 0;
        let [backend, model] = match target.headers.get(ANY) {
            Some(kept) => kept.clone(),
            None => {
                let made = RouteHeaders::new(provider, &target.upstream, &target.model);
                let kept = [made.backend, made.route];
                target.headers.fill(ANY, kept.clone());
                kept
            }
        };
        RouteHeaders {
            backend,
            route: if route == &*target.model {
                model
            } else {
                HeaderValue::from_str(route).ok()
            },
        }
    }

    fn apply(self, response: &mut Response) {
        let headers = response.headers_mut();
        if let Some(v) = self.backend {
            headers.insert(X_BAZAAR_BACKEND, v);
        }
        if let Some(v) = self.route {
            headers.insert(X_BAZAAR_ROUTE, v);
        }
    }
}

/// A complete JSON reply.
pub fn json(body: Bytes, route: RouteHeaders) -> Response {
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    route.apply(&mut response);
    response
}

/// How a stream ended, handed to the `on_end` callback exactly once.
#[derive(Debug, Clone, Default)]
pub struct StreamEnd {
    /// The last usage the backend reported: complete, or a running report (see `Usage`).
    pub usage: Option<Usage>,
    /// Chunks forwarded to the client.
    pub chunks: u64,
    /// The upstream failed after the first byte.
    pub error: Option<UpstreamError>,
    /// The client went away before the end.
    pub client_gone: bool,
    /// Text forwarded (for counting the buckets the backend did not report).
    pub sent: SentText,
}

/// Prices a usage report, for the `usage.cost` field of the final usage chunk.
pub type UsageCost = Box<dyn Fn(&Usage) -> Option<u64> + Send>;

/// Writes one front end's SSE frames for a stream of chunks.
pub trait Framer: Send + 'static {
    /// Writes `chunk`; `cost` is the call's cost when the chunk carries a complete usage
    /// report. Returns false when the chunk was withheld from the client.
    fn chunk(&mut self, chunk: &Chunk, cost: Option<u64>, out: &mut BytesMut) -> bool;
    /// Writes the error that ends a stream after its first byte; `billed` is what the
    /// call was billed.
    fn error(&mut self, error: &ApiError, billed: Option<&Billed>, out: &mut BytesMut);
    /// Writes whatever closes a complete stream; `billed` is what the call was billed.
    fn end(&mut self, billed: Option<&Billed>, out: &mut BytesMut);
    /// The shape of the chunks' data, for counting the text they carry.
    fn text_shape(&self) -> BodyShape {
        BodyShape::OpenAi
    }
}

/// The fields a usage chunk written by the gateway repeats from the stream's chunks.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct ChunkHead {
    #[serde(default)]
    id: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    created: u64,
    #[serde(default)]
    model: String,
}

/// OpenAI's framing: `data:` frames, the usage-only chunk only for clients that asked
/// (with the call's cost in it, as OpenRouter does), an error object, then `[DONE]`.
/// A client that asked for usage gets a usage chunk whatever the backend reported: when
/// it sent none, or the stream was cut before it, the gateway writes one with what the
/// call was billed (`usage.estimated: true`).
#[derive(Debug, Clone)]
pub struct OpenAiFramer {
    client_wants_usage: bool,
    head: Option<ChunkHead>,
    usage_sent: bool,
}

impl OpenAiFramer {
    pub fn new(client_wants_usage: bool) -> OpenAiFramer {
        OpenAiFramer {
            client_wants_usage,
            head: None,
            usage_sent: false,
        }
    }

    /// The usage chunk of a client that asked for usage and has not had it.
    fn billed_usage(&mut self, billed: Option<&Billed>, out: &mut BytesMut) {
        let Some(billed) = billed.filter(|_| self.client_wants_usage && !self.usage_sent) else {
            return;
        };
        let head = self.head.take().unwrap_or_default();
        let object = if head.object.is_empty() {
            "chat.completion.chunk"
        } else {
            head.object.as_str()
        };
        let chunk = serde_json::json!({
            "id": head.id, "object": object, "created": head.created, "model": head.model,
            "choices": [], "usage": billed.usage_json(None, BodyShape::OpenAi),
        });
        if let Ok(data) = serde_json::to_vec(&chunk) {
            put_frame(out, &data);
            self.usage_sent = true;
        }
    }
}

impl Framer for OpenAiFramer {
    fn chunk(&mut self, chunk: &Chunk, cost: Option<u64>, out: &mut BytesMut) -> bool {
        // Azure's first chunk (prompt filter results) has no id: take the first that has.
        if self.client_wants_usage && self.head.as_ref().is_none_or(|h| h.id.is_empty()) {
            self.head = serde_json::from_slice(&chunk.data).ok();
        }
        let reported = chunk.usage.is_some_and(|u| u.is_reported());
        // A usage-only chunk reaches only a client that asked, and only a complete report:
        // an incomplete or unreadable one gives way to the billed usage chunk at the end.
        if chunk.usage_only && !(reported && self.client_wants_usage) {
            return false;
        }
        // A running report (a stream's usage so far) rides on a content chunk as it is.
        if !reported {
            put_frame(out, &chunk.data);
            return true;
        }
        match with_usage_cost(&chunk.data, cost.map(usd_number)) {
            Some(data) => {
                put_frame(out, &data);
                self.usage_sent = true;
            }
            None => put_frame(out, &chunk.data),
        }
        true
    }

    fn error(&mut self, error: &ApiError, billed: Option<&Billed>, out: &mut BytesMut) {
        self.billed_usage(billed, out);
        put_frame(out, &error_event(error));
    }

    fn end(&mut self, billed: Option<&Billed>, out: &mut BytesMut) {
        self.billed_usage(billed, out);
        out.put_slice(b"data: [DONE]\n\n");
    }
}

struct Relay<F: FnOnce(StreamEnd) -> Billed, R: Framer> {
    first: Option<Chunk>,
    rest: ChunkStream,
    framer: R,
    usage_cost: UsageCost,
    end: StreamEnd,
    /// Chunks sent and not yet read for their text.
    unread: Unread,
    /// The buffer writes are split off.
    out: BytesMut,
    on_end: Option<F>,
    finished: bool,
}

impl<F: FnOnce(StreamEnd) -> Billed, R: Framer> Relay<F, R> {
    /// Counts the text sent, off the async workers, unless the backend reported it all.
    async fn count_unreported(&mut self) {
        if !self.end.usage.is_some_and(|u| u.is_reported()) {
            self.settle_sent();
            self.end.sent.count_off_worker().await;
        }
    }

    /// Reads the chunks' text into `end.sent`, unless the backend's last report makes
    /// it unneeded (complete and plausible: billing takes it whole).
    fn settle_sent(&mut self) {
        let billed_as_reported = self
            .end
            .usage
            .is_some_and(|u| u.is_reported() && plausible(&u));
        if billed_as_reported {
            self.unread.clear();
        } else {
            self.unread
                .read_into(&mut self.end.sent, self.framer.text_shape());
        }
    }

    fn finish(&mut self) -> Option<Billed> {
        let on_end = self.on_end.take()?;
        self.settle_sent();
        Some(on_end(std::mem::take(&mut self.end)))
    }
}

/// The data of chunks sent to the client, kept as bytes until the stream's end says
/// whether their text is needed: a backend that reports usage (nearly every stream)
/// leaves it unread. Bounded: past `Unread::MAX` bytes they are read and dropped.
#[derive(Debug, Default)]
struct Unread {
    /// Each chunk's length (4 bytes, little-endian), then its data: one buffer, one
    /// allocation for a short stream's chunks.
    bytes: Vec<u8>,
}

impl Unread {
    /// Bytes held before they are read (a short stream's chunks, all in the one
    /// allocation made at the first): a long stream's text is read as it goes.
    const MAX: usize = 4 * 1024;

    fn keep(&mut self, data: &[u8], sent: &mut SentText, shape: BodyShape) {
        let Ok(len) = u32::try_from(data.len()).map(u32::to_le_bytes) else {
            self.read_into(sent, shape);
            sent.push(shape, data);
            return;
        };
        if self.bytes.len() + 4 + data.len() > Unread::MAX {
            self.read_into(sent, shape);
            if 4 + data.len() > Unread::MAX {
                sent.push(shape, data);
                return;
            }
        }
        if self.bytes.capacity() == 0 {
            self.bytes.reserve(Unread::MAX);
        }
        self.bytes.extend_from_slice(&len);
        self.bytes.extend_from_slice(data);
    }

    /// Reads every kept chunk's text into `sent`, in order, one chunk at a time (as
    /// `SentText::push` was given them), and drops them.
    fn read_into(&mut self, sent: &mut SentText, shape: BodyShape) {
        let mut rest = &self.bytes[..];
        while let Some((len, after)) = rest.split_first_chunk::<4>() {
            let (data, after) = after.split_at(u32::from_le_bytes(*len) as usize);
            sent.push(shape, data);
            rest = after;
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.bytes.clear();
    }
}

impl<F: FnOnce(StreamEnd) -> Billed, R: Framer> Drop for Relay<F, R> {
    fn drop(&mut self) {
        // Dropped before the end: the client disconnected (the upstream call is dropped with us).
        if self.on_end.is_some() {
            self.end.client_gone = !self.finished;
            let _billed = self.finish();
        }
    }
}

/// The relay's write buffer at its start: a few chunks' frames.
const OUT_START: usize = 2048;

fn put_frame(out: &mut BytesMut, data: &[u8]) {
    out.reserve(data.len() + 8);
    out.put_slice(b"data: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

/// An SSE response that starts with `first` and forwards `rest` as it arrives, framed by
/// `framer`; `on_end` runs once however it ends, and returns what the call was billed
/// (which a framer may write before the stream's last frame).
pub fn sse<F, R>(
    first: Chunk,
    rest: ChunkStream,
    framer: R,
    usage_cost: UsageCost,
    route: RouteHeaders,
    on_end: F,
) -> Response
where
    F: FnOnce(StreamEnd) -> Billed + Send + 'static,
    R: Framer,
{
    // Boxed: the stream moves its state into each write's future and back out, a
    // pointer rather than the whole relay (the chunk held, the end, the callback).
    let relay = Box::new(Relay {
        first: Some(first),
        rest,
        framer,
        usage_cost,
        end: StreamEnd::default(),
        unread: Unread::default(),
        out: BytesMut::new(),
        on_end: Some(on_end),
        finished: false,
    });
    let stream = futures_util::stream::unfold(relay, |mut r| async move {
        if r.finished {
            return None;
        }
        // Wait for the next chunk, then take whatever else has already arrived without
        // waiting, so one upstream read becomes one write (nothing is held back). The
        // frames go into the relay's one buffer: a write's bytes are split off it, and
        // once the connection has sent and dropped them their room is written again.
        let mut out = std::mem::take(&mut r.out);
        if out.capacity() == 0 {
            out.reserve(OUT_START);
        }
        let mut next = match r.first.take() {
            Some(chunk) => Some(Ok(chunk)),
            None => r.rest.next().await,
        };
        loop {
            match next {
                Some(Ok(chunk)) => {
                    if !chunk.usage_only {
                        let shape = r.framer.text_shape();
                        r.unread.keep(&chunk.data, &mut r.end.sent, shape);
                    }
                    if chunk.usage.is_some() {
                        r.end.usage = chunk.usage;
                    }
                    let cost = chunk
                        .usage
                        .filter(Usage::is_reported)
                        .and_then(|usage| (r.usage_cost)(&usage));
                    if r.framer.chunk(&chunk, cost, &mut out) {
                        r.end.chunks += 1;
                    }
                }
                Some(Err(e)) => {
                    let api = e.to_api_error();
                    r.end.error = Some(e);
                    r.finished = true;
                    r.count_unreported().await;
                    let billed = r.finish();
                    r.framer.error(&api, billed.as_ref(), &mut out);
                    break;
                }
                None => {
                    r.finished = true;
                    r.count_unreported().await;
                    let billed = r.finish();
                    r.framer.end(billed.as_ref(), &mut out);
                    break;
                }
            }
            next = match r.rest.next().now_or_never() {
                Some(item) => item,
                None if out.is_empty() => r.rest.next().await,
                None => break,
            };
        }
        let write = out.split().freeze();
        r.out = out;
        Some((Ok::<Bytes, Infallible>(write), r))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    route.apply(&mut response);
    response
}

fn error_event(error: &ApiError) -> Vec<u8> {
    error.to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks kept unread, then read, give the text they gave when read one by one as
    /// they were sent: short streams, long ones read as they go, and a chunk longer
    /// than the bound.
    #[test]
    fn unread_chunks_read_as_the_chunks_did() {
        let chunk = |i: usize, words: usize| {
            format!(
                r#"{{"id":"x","choices":[{{"index":0,"delta":{{"content":"{}","reasoning_content":"r{i} "}}}}]}}"#,
                "w ".repeat(words)
            )
        };
        for (count, words) in [(0, 1), (1, 1), (20, 3), (400, 5), (3, 20_000)] {
            let chunks: Vec<String> = (0..count).map(|i| chunk(i, words)).collect();
            let mut one_by_one = SentText::default();
            for c in &chunks {
                one_by_one.push(BodyShape::OpenAi, c.as_bytes());
            }
            let mut sent = SentText::default();
            let mut unread = Unread::default();
            for c in &chunks {
                unread.keep(c.as_bytes(), &mut sent, BodyShape::OpenAi);
                assert!(unread.bytes.len() <= Unread::MAX);
            }
            unread.read_into(&mut sent, BodyShape::OpenAi);
            assert_eq!(sent, one_by_one, "{count} chunks of {words} words");
            assert!(unread.bytes.is_empty());
        }
    }
}
