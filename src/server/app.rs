//! Every route in one function, and the request middleware: request id in and out,
//! one span per request, and the one place errors are logged.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use prometheus::Histogram;
use tower::ServiceExt;
use tracing::Instrument;

use super::state::AppState;
use super::{
    admin, chat, count_tokens, embeddings, feedback, health, messages, models, responses, spend,
    RequestId,
};
use crate::api::error::LoggedError;
use crate::api::ApiError;

/// The complete HTTP app: every route, and the request middleware applied once around
/// them all. (A layer on the `Router` wraps each route on its own, and each call then
/// clones and boxes every layer's service and future.)
#[derive(Clone)]
pub struct App(Arc<AppInner>);

struct AppInner {
    routes: Router,
    /// Every route's path pattern, in the order `routes` were declared: the `endpoint`
    /// label of the request metrics.
    patterns: Vec<&'static str>,
    /// The request-duration series of each pattern, then of `unmatched`.
    durations: Vec<Durations>,
    state: Arc<AppState>,
}

/// One endpoint's request-duration series by status class (`CLASSES`), each looked up on
/// its first request and kept: a lookup by label values hashes them and takes the
/// vector's lock, on every call.
type Durations = [OnceLock<Histogram>; 4];

/// The `status_class` label's values, in `Durations` order.
const CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "other"];

/// Every route: its path pattern and what answers it. The one table the router and the
/// metrics' `endpoint` label are both built from.
fn routes() -> Vec<(&'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("/v1/chat/completions", post(chat::completions)),
        ("/v1/messages", post(messages::create)),
        (
            "/v1/messages/count_tokens",
            post(count_tokens::count_tokens),
        ),
        ("/v1/responses", post(responses::create)),
        (
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        ),
        (
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        ),
        ("/v1/completions", post(embeddings::completions)),
        ("/v1/embeddings", post(embeddings::embeddings)),
        ("/v1/models", get(models::list)),
        ("/v1/route/explain", post(chat::explain)),
        ("/v1/feedback", post(feedback::create)),
        ("/v1/spend", get(spend::spend)),
        ("/v1/spend/calls", get(spend::calls)),
        ("/v1/spend/export", get(spend::export)),
        ("/admin/keys", post(admin::create_key).get(admin::list_keys)),
        ("/admin/keys/{id}", delete(admin::revoke_key)),
        (
            "/admin/teams",
            post(admin::upsert_team).get(admin::list_teams),
        ),
        ("/admin/teams/{name}", delete(admin::delete_team)),
        ("/healthz", get(health::healthz)),
        ("/readyz", get(health::readyz)),
        ("/metrics", get(metrics)),
        ("/dashboard", get(crate::dashboard::index)),
        ("/dashboard/{file}", get(crate::dashboard::file)),
        ("/favicon.ico", get(crate::dashboard::favicon)),
    ]
}

/// The complete HTTP app.
pub fn router(state: Arc<AppState>) -> App {
    let table = routes();
    let patterns: Vec<&'static str> = table.iter().map(|(pattern, _)| *pattern).collect();
    let durations = (0..=patterns.len()).map(|_| Durations::default()).collect();
    let routes = table
        .into_iter()
        .fold(Router::new(), |router, (pattern, method)| {
            router.route(pattern, method)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    App(Arc::new(AppInner {
        routes,
        patterns,
        durations,
        state,
    }))
}

impl App {
    /// Answers one request: an oversized head is refused first (`server::limits`), then
    /// the request context (id, span, metrics, the error log) runs around the routes.
    pub async fn call(self, req: Request) -> Response {
        if let Some(refused) = super::limits::oversized_head(req.headers()) {
            return refused;
        }
        let at = endpoint_at(&self.0.patterns, req.uri().path());
        let endpoint = at
            .and_then(|i| self.0.patterns.get(i).copied())
            .unwrap_or("unmatched");
        let durations = self.0.durations.get(at.unwrap_or(self.0.patterns.len()));
        let call = Endpoint {
            label: endpoint,
            durations,
        };
        request_context(&self.0.state, call, req, &self.0.routes).await
    }
}

/// The pattern of the route `path` matches (as axum matches it: a `{param}` is one
/// non-empty segment), or `unmatched`.
#[cfg(test)]
fn endpoint(patterns: &[&'static str], path: &str) -> &'static str {
    endpoint_at(patterns, path)
        .and_then(|i| patterns.get(i).copied())
        .unwrap_or("unmatched")
}

/// The index in `patterns` of the route `path` matches, if one does.
fn endpoint_at(patterns: &[&'static str], path: &str) -> Option<usize> {
    // A pattern without a `{param}` matches its own path only: compared whole, not split.
    patterns.iter().position(|pattern| {
        *pattern == path || (pattern.contains('{') && matches_pattern(pattern, path))
    })
}

/// The endpoint a request is labelled with, and its request-duration series.
struct Endpoint<'a> {
    label: &'static str,
    durations: Option<&'a Durations>,
}

fn matches_pattern(pattern: &str, path: &str) -> bool {
    let (mut want, mut got) = (pattern.split('/'), path.split('/'));
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w == g || (w.starts_with('{') && !g.is_empty()) => {}
            _ => return false,
        }
    }
}

async fn not_found(req: Request) -> Response {
    ApiError::NotFound {
        message: format!(
            "Unknown path `{}`.",
            req.uri().path().chars().take(200).collect::<String>()
        ),
        param: None,
        code: Some("unknown_url"),
    }
    .into_response()
}

/// 405, as OpenAI answers a wrong method, in its error shape (axum adds `Allow`).
async fn method_not_allowed(req: Request) -> Response {
    let mut response = ApiError::InvalidRequest {
        message: format!(
            "Method {} is not allowed on `{}`.",
            req.method(),
            req.uri().path()
        ),
        param: None,
        code: Some("method_not_allowed"),
    }
    .into_response();
    *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

fn valid_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

/// A fresh 128-bit request id in hex: 48 bits of milliseconds since the Unix epoch, then
/// 80 random bits (the layout of UUIDv7 and ULID). Ids made later sort later, so the
/// ledger's request-id index grows at its end: a random id lands on a random page of the
/// index, which costs the writer a page read and a page write per row once the index
/// outgrows the page cache.
pub fn new_request_id() -> Arc<str> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    hex_id(time_ordered(ms, rand::random::<u128>()))
}

/// The low 48 bits of `ms` above the top 80 bits of `random`.
fn time_ordered(ms: u64, random: u128) -> u128 {
    (u128::from(ms & 0xffff_ffff_ffff) << 80) | (random >> 48)
}

/// `n` as 32 lowercase hex digits, written on the stack: the `Arc` is the only allocation.
fn hex_id(n: u128) -> Arc<str> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = DIGITS[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(&hex).map(Arc::from).unwrap_or_default()
}

/// `x-request-id`: a `&str` name is copied into a new allocation per insert.
pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id as a header value that shares the id's allocation: the request's and the
/// response's header are one more allocation (the owner), not two copies.
struct SharedId(Arc<str>);

impl AsRef<[u8]> for SharedId {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn id_header(id: &Arc<str>) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from_owner(SharedId(id.clone()))).ok()
}

/// `GET /metrics`: the Prometheus exposition, with gauges read at scrape time. With
/// `[server] metrics_key` set, only that key or the master key may read it.
async fn metrics(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    headers: http::HeaderMap,
) -> Response {
    let runtime = state.runtime();
    if let Err(e) = super::auth::check_metrics_key(&headers, &runtime.config) {
        return e.into_response();
    }
    let m = &state.router.metrics;
    let now = tokio::time::Instant::now();
    // Live stats are kept per upstream id; metrics are labelled with the public model
    // id, like every other `model` label.
    let config = &runtime.config;
    let public: HashMap<(&str, &str), &str> = config
        .models
        .iter()
        .flat_map(|(id, targets)| {
            targets.iter().filter_map(move |t| {
                let provider = config.providers.get(t.provider)?;
                Some(((provider.id.as_str(), &*t.upstream), id.as_str()))
            })
        })
        .collect();
    for (provider, upstream, snap) in state.router.stats.all(now) {
        // A backend the current config no longer serves has no public id to report.
        let Some(model) = public.get(&(provider.as_str(), upstream.as_str())) else {
            continue;
        };
        if let Some(b) = snap.breaker {
            m.breaker_state
                .with_label_values(&[provider.as_str(), model])
                .set(b.gauge());
        }
        m.upstream_in_flight
            .with_label_values(&[provider.as_str(), model])
            .set(snap.in_flight);
    }
    if let Some(b) = state.billing.connected() {
        m.ledger_queue_depth.set(b.sink.queued() as i64);
        m.ledger_spilled_rows.set(b.sink.spilled() as i64);
    }
    // Family by family: hyper writes a few families' texts at a time, so a scrape never
    // holds the whole exposition (hundreds of KB with many backends) at once.
    let families = m
        .families()
        .map(|text| Ok::<_, std::convert::Infallible>(Bytes::from(text)));
    let mut response =
        axum::body::Body::from_stream(futures_util::stream::iter(families)).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn request_context(
    state: &Arc<AppState>,
    endpoint: Endpoint<'_>,
    mut req: Request,
    routes: &Router,
) -> Response {
    let started = tokio::time::Instant::now();
    let id: Arc<str> = match req.headers().get(X_REQUEST_ID).and_then(valid_request_id) {
        Some(s) => s.into(),
        None => new_request_id(),
    };
    let header = id_header(&id);
    // Handlers see the effective id in the headers too (routing seeds its tie-break draw from it).
    if let Some(v) = header.clone() {
        req.headers_mut().insert(X_REQUEST_ID, v);
    }
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    // Chat and embeddings calls, which most calls are, are answered by their handlers
    // directly (`chat::completions_routed`, `chat::embeddings_routed`).
    let post = req.method() == http::Method::POST;
    let mut response = if post && endpoint.label == "/v1/chat/completions" {
        chat::completions_routed(state.clone(), RequestId(id.clone()), req)
            .instrument(span.clone())
            .await
    } else if post && endpoint.label == "/v1/embeddings" {
        chat::embeddings_routed(state.clone(), RequestId(id.clone()), req)
            .instrument(span.clone())
            .await
    } else {
        req.extensions_mut().insert(RequestId(id.clone()));
        // Bodies are bounded by our own extractor (`server::body`), not axum's default.
        axum::extract::DefaultBodyLimit::disable().apply(&mut req);
        match routes.clone().oneshot(req).instrument(span.clone()).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    };
    if let Some(v) = header {
        response.headers_mut().insert(X_REQUEST_ID, v);
    }
    let status = response.status().as_u16();
    let class = match status {
        200..=299 => 0,
        400..=499 => 1,
        500..=599 => 2,
        _ => 3,
    };
    if endpoint.label != "/metrics" {
        if let Some(series) = endpoint.durations.and_then(|d| d.get(class)) {
            series
                .get_or_init(|| {
                    state
                        .router
                        .metrics
                        .request_duration
                        .with_label_values(&[endpoint.label, CLASSES[class]])
                })
                .observe(started.elapsed().as_secs_f64());
        }
    }
    if let Some(LoggedError(e)) = response.extensions().get::<LoggedError>() {
        state
            .router
            .metrics
            .errors
            .with_label_values(&[e.error_type()])
            .inc();
    }
    let _enter = span.enter();
    if let Some(LoggedError(e)) = response.extensions().get::<LoggedError>() {
        if status >= 500 {
            tracing::warn!(status, error_type = e.error_type(), "Request failed: {e}");
        } else {
            tracing::debug!(status, error_type = e.error_type(), "Request refused: {e}");
        }
    } else {
        tracing::debug!(status, "Request answered.");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_32_lowercase_hex_digits() {
        for n in [0, 1, 0xabc, u128::MAX, u128::MAX / 3, 1 << 127] {
            assert_eq!(&*hex_id(n), format!("{n:032x}"));
        }
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn a_request_id_starts_with_the_time_it_was_made() {
        let ms = |id: &str| u64::from_str_radix(&id[..12], 16).unwrap();
        let clock = || {
            let d = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            u64::try_from(d.as_millis()).unwrap()
        };
        let before = clock();
        let ids: Vec<Arc<str>> = (0..1000).map(|_| new_request_id()).collect();
        let after = clock();
        for id in &ids {
            assert!(
                (before..=after).contains(&ms(id)),
                "{id} made in {before}..={after}"
            );
        }
        let distinct: std::collections::HashSet<&str> = ids.iter().map(|id| &id[12..]).collect();
        assert_eq!(distinct.len(), ids.len(), "the random part repeats");
        // Later milliseconds sort later whatever the random part; the random part fills
        // the rest.
        assert!(
            hex_id(time_ordered(1_700_000_000_001, 0))
                > hex_id(time_ordered(1_700_000_000_000, u128::MAX))
        );
        assert_eq!(
            &*hex_id(time_ordered(0xabc, u128::MAX)),
            "000000000abcffffffffffffffffffff"
        );
    }

    #[test]
    fn a_request_id_header_carries_the_id() {
        let id = hex_id(0x1234);
        let header = id_header(&id).unwrap();
        assert_eq!(header.to_str().unwrap(), &*id);
        assert_eq!(header.clone(), header);
    }

    #[test]
    fn a_path_is_labelled_with_the_pattern_of_its_route() {
        let patterns: Vec<&'static str> = routes().iter().map(|(p, _)| *p).collect();
        for (path, label) in [
            ("/v1/chat/completions", "/v1/chat/completions"),
            ("/v1/responses", "/v1/responses"),
            ("/v1/responses/resp_1", "/v1/responses/{id}"),
            (
                "/v1/responses/resp_1/input_items",
                "/v1/responses/{id}/input_items",
            ),
            ("/admin/teams/web", "/admin/teams/{name}"),
            ("/dashboard/app.js", "/dashboard/{file}"),
            ("/metrics", "/metrics"),
            ("/v1/responses/", "unmatched"),
            ("/v1/models/", "unmatched"),
            ("/v1/chat", "unmatched"),
            ("/v1/chat/completions/x", "unmatched"),
            ("/", "unmatched"),
        ] {
            assert_eq!(endpoint(&patterns, path), label, "{path}");
        }
    }
}
