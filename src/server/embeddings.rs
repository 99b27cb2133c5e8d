//! `POST /v1/embeddings` and the legacy `POST /v1/completions`: plain pass-through
//! with routing and fallback over the model's own providers; completions may stream.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::HeaderMap;
use tokio::time::Instant;

use super::auth::Caller;
use super::body::JsonBody;
use super::chat::{first_chunk, max_total, route_headers};
use super::meter::{admit, cost_header, served_by, Metered};
use super::relay;
use super::state::{AppState, Runtime};
use super::RequestId;
use crate::api::openai::PassthroughRequest;
use crate::api::ApiError;
use crate::billing::cost::cost_nanos;
use crate::billing::meter::{content_chars, with_usage_cost, Ending};
use crate::providers::Attempt;
use crate::router::filter::CallerLimits;
use crate::router::prefs::Prefs;
use crate::router::{self, fallback, CallShape, RoutePlan};
use bytes::Bytes;

/// A plan for a pass-through call: the model's own providers, ordered by the default policy.
fn plan_passthrough(
    runtime: &Runtime,
    state: &AppState,
    req: &PassthroughRequest,
) -> Result<RoutePlan, ApiError> {
    if runtime.config.route(&req.model).is_some() {
        return Err(ApiError::invalid(
            "model",
            format!(
                "`{}` is a chat route; this endpoint needs a concrete model.",
                req.model
            ),
        ));
    }
    let call = CallShape {
        model: &req.model,
        needs: Default::default(),
        prompt_tokens: req.estimated_prompt_tokens(),
        max_tokens: req.max_tokens,
        prompt_head: "",
        user: None,
    };
    router::build_plan(
        &runtime.config,
        &state.router,
        &call,
        &Prefs::default(),
        &CallerLimits::default(),
        Instant::now(),
    )
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    handle(&state, &request_id, &headers, &body, Kind::Embeddings)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    handle(&state, &request_id, &headers, &body, Kind::Completions)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Embeddings,
    Completions,
}

async fn handle(
    state: &Arc<AppState>,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: &[u8],
    kind: Kind,
) -> Result<Response, ApiError> {
    let runtime = state.runtime();
    let caller = state.authenticate(headers, &runtime)?;
    let req = match kind {
        Kind::Embeddings => PassthroughRequest::parse_embeddings(body)?,
        Kind::Completions => PassthroughRequest::parse_completions(body)?,
    };
    let endpoint = if kind == Kind::Embeddings {
        "embeddings"
    } else {
        "completions"
    };
    let metered = Metered::new(
        state,
        &runtime,
        &caller,
        &request_id.0,
        endpoint,
        &req.model,
        req.estimated_prompt_tokens(),
    );
    let result = serve(
        state,
        &runtime,
        &caller,
        &metered,
        &request_id.0,
        &req,
        kind,
    )
    .await;
    if let Err(e) = &result {
        metered.finish(
            None,
            Ending {
                status: e.status().as_u16(),
                error_type: Some(e.error_type()),
                ..Default::default()
            },
        );
    }
    result
}

async fn serve(
    state: &Arc<AppState>,
    runtime: &Arc<Runtime>,
    caller: &Caller,
    metered: &Metered,
    request_id: &str,
    req: &PassthroughRequest,
    kind: Kind,
) -> Result<Response, ApiError> {
    caller.check_model(&req.model)?;
    let plan = plan_passthrough(runtime, state, req)?;
    let admission = admit(
        state,
        runtime,
        caller,
        &plan,
        req.estimated_prompt_tokens(),
        req.max_tokens,
    )
    .await?;
    let deadline = Instant::now() + max_total(runtime, &plan);
    let settings = &runtime.config.router;
    if !req.stream {
        let served = fallback::run(
            &plan,
            &runtime.providers,
            &state.router,
            &settings.breaker,
            deadline,
            |c, p| async move {
                let at = Attempt {
                    upstream_model: &c.upstream,
                    request_id,
                    deadline,
                };
                match kind {
                    Kind::Embeddings => p.embeddings(req, at).await,
                    Kind::Completions => p.completions(req, at).await,
                }
            },
        )
        .await
        .map_err(|e| e.error)?;
        let route = route_headers(runtime, &plan.route, served.candidate);
        let reply = served.value;
        let ttft = served.attempt.first_byte;
        served.attempt.finish(
            &state.router,
            &settings.breaker,
            settings.affinity_ttl,
            reply.usage.map(|u| u.completion_tokens()),
            Some(reply.meta),
            None,
        );
        let by = served_by(state, runtime, &plan.route, served.candidate);
        let output_chars = if kind == Kind::Completions {
            content_chars(&reply.body)
        } else {
            0
        };
        let ending = Ending {
            usage: reply.usage,
            output_chars,
            status: 200,
            ttft: Some(ttft),
            fallbacks: served.failed_attempts,
            ..Default::default()
        };
        let cost = metered.finish(Some(&by), ending);
        admission.settle(cost);
        let body = with_usage_cost(&reply.body, cost)
            .map(Bytes::from)
            .unwrap_or(reply.body);
        let mut response = relay::json(body, &route);
        response
            .headers_mut()
            .insert("x-bazaar-cost-usd", cost_header(cost));
        return Ok(response);
    }
    let served = fallback::run(
        &plan,
        &runtime.providers,
        &state.router,
        &settings.breaker,
        deadline,
        |c, p| async move {
            let reply = p
                .completions_stream(
                    req,
                    Attempt {
                        upstream_model: &c.upstream,
                        request_id,
                        deadline,
                    },
                )
                .await?;
            first_chunk(reply, p.id()).await
        },
    )
    .await
    .map_err(|e| e.error)?;
    let route = route_headers(runtime, &plan.route, served.candidate);
    let (first, reply) = served.value;
    let (attempt, meta, fallbacks) = (served.attempt, reply.meta, served.failed_attempts);
    let ttft = attempt.first_byte;
    let by = served_by(state, runtime, &plan.route, served.candidate);
    let (price, markup) = (by.price, caller.markup_bp);
    let usage_cost: relay::UsageCost = Box::new(move |u| cost_nanos(u, &price, markup));
    let (state, settings, meter) = (state.clone(), settings.clone(), metered.clone_for_stream());
    Ok(relay::sse(
        first,
        reply.chunks,
        req.client_wants_usage,
        usage_cost,
        &route,
        move |end| {
            let output = end.usage.map(|u| u.completion_tokens());
            attempt.finish(
                &state.router,
                &settings.breaker,
                settings.affinity_ttl,
                output,
                Some(meta),
                end.error.as_ref(),
            );
            let (status, error_type) = match (&end.error, end.client_gone) {
                (Some(e), _) => (502, Some(e.label())),
                (None, true) => (499, Some("client_closed")),
                (None, false) => (200, None),
            };
            let cost = meter.finish(
                Some(&by),
                Ending {
                    usage: end.usage,
                    output_chars: end.output_chars,
                    status,
                    error_type,
                    ttft: Some(ttft),
                    fallbacks,
                    ..Default::default()
                },
            );
            admission.settle(cost);
        },
    ))
}
