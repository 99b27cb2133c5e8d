//! Limits on what a client may make the gateway hold before it is authenticated or
//! its request is understood: the size of a request head, how long a connection may sit
//! idle, and (with `body`) how many request bodies are read at once. hyper's own
//! header-read timeout is set in `serve`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use tokio_util::sync::CancellationToken;

use crate::api::ApiError;

/// Most header fields a request may carry.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values a request may carry.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most header fields hyper parses: past `MAX_HEADERS`, up to this many still reach our
/// check and get its OpenAI-shaped 431; more get hyper's own bare 431.
pub const MAX_PARSED_HEADERS: usize = MAX_HEADERS * 4;
/// Most bytes of a request head a connection may make the gateway hold: hyper's HTTP/1
/// read buffer and the HTTP/2 header list. A head between `MAX_HEADER_BYTES` and this
/// gets our OpenAI-shaped 431; a larger one never reaches our code, and hyper answers it
/// with a bare 431 (no body) and closes the connection: hyper has no hook to shape it.
pub const MAX_HEAD_BUFFER: usize = 256 * 1024;

/// The OpenAI-shaped 431 for a request head over our bounds, if it is. (A head larger
/// than `MAX_HEAD_BUFFER`, or with more than `MAX_PARSED_HEADERS` fields, is refused by
/// hyper itself with a bare 431 before any of our code runs.)
pub fn oversized_head(headers: &http::HeaderMap) -> Option<Response> {
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() <= MAX_HEADERS && bytes <= MAX_HEADER_BYTES {
        return None;
    }
    let mut response = ApiError::InvalidRequest {
        message: format!(
            "The request headers are too large: at most {MAX_HEADERS} fields and {MAX_HEADER_BYTES} bytes."
        ),
        param: None,
        code: Some("request_header_fields_too_large"),
    }
    .into_response();
    *response.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    // Refused before the request context, so it gets its fresh id here (a client's own
    // id is not read from a head this large).
    if let Ok(id) = http::HeaderValue::from_str(&super::app::new_request_id()) {
        response.headers_mut().insert(super::app::X_REQUEST_ID, id);
    }
    Some(response)
}

/// What one connection's requests tell its idle watch: each request's start and end,
/// how many are in flight (a response streaming its body included), and whether one came
/// over HTTP/1.
#[derive(Debug, Default)]
pub struct Activity {
    events: AtomicU64,
    in_flight: AtomicU64,
    http1: AtomicBool,
}

/// A request in flight on a connection, from its head to the end of its response body
/// (drop it with the body).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl InFlight {
    /// `body`, holding this request in flight until the body is dropped (read to its end,
    /// or abandoned with the connection). One wrapper, not a second boxed body.
    pub fn track(self, body: axum::body::Body) -> TrackedBody {
        TrackedBody {
            body,
            _in_flight: self,
        }
    }
}

/// A response body with its request's `InFlight`: frames, end and size are the body's.
pub struct TrackedBody {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

impl Activity {
    /// Notes a request arriving on the connection; it is in flight until the guard drops.
    pub fn request(self: &Arc<Self>, version: http::Version) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(1, Ordering::Relaxed);
        if version < http::Version::HTTP_2 {
            self.http1.store(true, Ordering::Relaxed);
        }
        InFlight(self.clone())
    }

    fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    fn http1(&self) -> bool {
        self.http1.load(Ordering::Relaxed)
    }
}

/// Runs `connection` until it ends. When `drain` is cancelled it is asked to finish
/// (`shutdown`: answers in progress complete, no new request is taken). A connection
/// that has not spoken HTTP/1 is asked the same once a whole `idle` period passes with
/// no request starting, ending or in flight, and dropped if it is still open, and still
/// idle, a period later (a peer that never acknowledges the goodbye). hyper bounds an
/// HTTP/1 connection's wait for its next head itself (`header_read_timeout`); it has no
/// such bound for HTTP/2, where a peer that sent the preface could otherwise hold its
/// connection for ever.
pub async fn watch_connection<C: Future>(
    connection: C,
    shutdown: impl Fn(Pin<&mut C>),
    activity: &Activity,
    idle: Duration,
    drain: &CancellationToken,
) {
    tokio::pin!(connection);
    let mut seen = activity.events();
    loop {
        tokio::select! {
            _ = &mut connection => return,
            _ = drain.cancelled() => {
                shutdown(connection.as_mut());
                connection.await;
                return;
            }
            _ = tokio::time::sleep(idle) => {
                let now = activity.events();
                if now == seen && !activity.busy() && !activity.http1() {
                    break;
                }
                seen = now;
            }
        }
    }
    shutdown(connection.as_mut());
    loop {
        tokio::select! {
            _ = &mut connection => return,
            _ = drain.cancelled() => {
                connection.await;
                return;
            }
            _ = tokio::time::sleep(idle) => {
                if !activity.busy() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const IDLE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_tracked_body_is_in_flight_until_dropped_and_is_the_body_it_wraps() {
        use http_body_util::BodyExt;
        let activity = Arc::new(Activity::default());
        let body = activity
            .request(http::Version::HTTP_11)
            .track(axum::body::Body::from("hello"));
        assert_eq!(activity.in_flight.load(Ordering::Relaxed), 1);
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(5));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(activity.in_flight.load(Ordering::Relaxed), 0);
        let unread = activity
            .request(http::Version::HTTP_11)
            .track(axum::body::Body::from("x"));
        assert_eq!(activity.in_flight.load(Ordering::Relaxed), 1);
        drop(unread);
        assert_eq!(activity.in_flight.load(Ordering::Relaxed), 0);
    }

    /// Watches a connection that never ends by itself; returns how many times it was
    /// asked to shut down, and whether the watch ended (the connection was dropped),
    /// after `periods` idle periods pass with `busy` held.
    async fn watched(activity: Arc<Activity>, periods: u32) -> (usize, bool) {
        let asked = Arc::new(AtomicUsize::new(0));
        let counted = asked.clone();
        let drain = CancellationToken::new();
        let watch = watch_connection(
            std::future::pending::<()>(),
            move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            },
            &activity,
            IDLE,
            &drain,
        );
        tokio::pin!(watch);
        let mut ended = false;
        for _ in 0..periods {
            tokio::select! {
                _ = &mut watch => { ended = true; break; }
                _ = tokio::time::sleep(IDLE + Duration::from_millis(1)) => {}
            }
        }
        (asked.load(Ordering::SeqCst), ended)
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_asked_to_go_then_dropped() {
        assert_eq!(watched(Arc::new(Activity::default()), 3).await, (1, true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_with_a_call_in_flight_is_kept() {
        let activity = Arc::new(Activity::default());
        let held = activity.request(http::Version::HTTP_2);
        assert_eq!(watched(activity.clone(), 5).await, (0, false));
        drop(held);
        // Its end is activity too: one whole quiet period more before it is asked to go.
        assert_eq!(watched(activity, 3).await, (1, true));
    }

    #[tokio::test(start_paused = true)]
    async fn an_http1_connection_is_left_to_hyper() {
        let activity = Arc::new(Activity::default());
        drop(activity.request(http::Version::HTTP_11));
        assert_eq!(watched(activity, 5).await, (0, false));
    }
}
