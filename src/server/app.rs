//! Every route in one function, and the request middleware: request id in and out,
//! one span per request, and the one place errors are logged.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use http::HeaderValue;
use tracing::Instrument;

use super::state::AppState;
use super::{
    admin, chat, count_tokens, embeddings, feedback, health, messages, models, responses, spend,
    RequestId,
};
use crate::api::error::LoggedError;
use crate::api::ApiError;

/// The complete HTTP app.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/messages", post(messages::create))
        .route(
            "/v1/messages/count_tokens",
            post(count_tokens::count_tokens),
        )
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        )
        .route("/v1/completions", post(embeddings::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(models::list))
        .route("/v1/route/explain", post(chat::explain))
        .route("/v1/feedback", post(feedback::create))
        .route("/v1/spend", get(spend::spend))
        .route("/v1/spend/calls", get(spend::calls))
        .route("/v1/spend/export", get(spend::export))
        .route("/admin/keys", post(admin::create_key).get(admin::list_keys))
        .route("/admin/keys/{id}", delete(admin::revoke_key))
        .route(
            "/admin/teams",
            post(admin::upsert_team).get(admin::list_teams),
        )
        .route("/admin/teams/{name}", delete(admin::delete_team))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route("/metrics", get(metrics))
        .route("/dashboard", get(crate::dashboard::index))
        .route("/dashboard/{file}", get(crate::dashboard::file))
        .route("/favicon.ico", get(crate::dashboard::favicon))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
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

async fn method_not_allowed(req: Request) -> Response {
    ApiError::InvalidRequest {
        message: format!(
            "Method {} is not allowed on `{}`.",
            req.method(),
            req.uri().path()
        ),
        param: None,
        code: Some("method_not_allowed"),
    }
    .into_response()
}

fn valid_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

/// A fresh 128-bit request id in hex.
pub fn new_request_id() -> Arc<str> {
    format!("{:032x}", rand::random::<u128>()).into()
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
    let mut response = m.render().into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn request_context(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = tokio::time::Instant::now();
    let endpoint = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let id: Arc<str> = match req.headers().get("x-request-id").and_then(valid_request_id) {
        Some(s) => s.into(),
        None => new_request_id(),
    };
    req.extensions_mut().insert(RequestId(id.clone()));
    // Handlers see the effective id in the headers too (routing seeds its tie-break draw from it).
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert("x-request-id", v);
    }
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut response = next.run(req).instrument(span.clone()).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status().as_u16();
    let class = match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    if endpoint != "/metrics" {
        state
            .router
            .metrics
            .request_duration
            .with_label_values(&[endpoint.as_str(), class])
            .observe(started.elapsed().as_secs_f64());
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
