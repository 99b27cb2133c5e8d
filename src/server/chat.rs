//! `POST /v1/chat/completions` and `POST /v1/route/explain`: authenticate, parse once,
//! plan, walk the plan until a backend answers, then relay the reply or the stream.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::HeaderMap;
use tokio::time::Instant;

use super::auth::Caller;
use super::body::JsonBody;
use super::meter::{admit, cost_header, served_by, Metered};
use super::relay::{self, RouteHeaders};
use super::state::{AppState, Runtime};
use super::RequestId;
use crate::api::openai::ChatRequest;
use crate::api::ApiError;
use crate::billing::cost::cost_nanos;
use crate::billing::meter::{content_chars, with_usage_cost, Ending};
use crate::providers::{Attempt, Chunk, StreamReply, UpstreamError};
use crate::router::prefs::Prefs;
use crate::router::{self, explain, fallback, CallShape, RoutePlan};
use bytes::Bytes;

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    match handle(&state, &request_id, &headers, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/route/explain`: the plan a chat request would get, without calling any backend.
pub async fn explain(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let result = (|| {
        let runtime = state.runtime();
        let caller = state.authenticate(&headers, &runtime)?;
        let req = ChatRequest::parse(&body)?;
        let plan = plan_chat(&runtime, &state, &req, &headers, &caller)?;
        Ok::<_, ApiError>(
            Json(explain::explain(
                &plan,
                &runtime.config,
                req.estimated_prompt_tokens(),
            ))
            .into_response(),
        )
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Builds the routing plan of a chat request.
pub fn plan_chat(
    runtime: &Runtime,
    state: &AppState,
    req: &ChatRequest,
    headers: &HeaderMap,
    caller: &Caller,
) -> Result<RoutePlan, ApiError> {
    let provider_ids: Vec<&str> = runtime
        .config
        .providers
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    let prefs = Prefs::parse(&req.fields, headers, &provider_ids)?;
    let call = CallShape {
        model: &req.model,
        needs: req.needs,
        prompt_tokens: req.estimated_prompt_tokens(),
        max_tokens: req.max_tokens,
        prompt_head: &req.prompt_head,
        user: req.user.as_deref(),
    };
    router::build_plan(
        &runtime.config,
        &state.router,
        &call,
        &prefs,
        &caller.limits(),
        Instant::now(),
    )
}

async fn handle(
    state: &Arc<AppState>,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let runtime = state.runtime();
    let caller = state.authenticate(headers, &runtime)?;
    let req = ChatRequest::parse(body)?;
    let metered = Metered::new(
        state,
        &runtime,
        &caller,
        &request_id.0,
        "chat",
        &req.model,
        req.estimated_prompt_tokens(),
    );
    let result = serve_chat(
        state, &runtime, &caller, &metered, request_id, headers, &req,
    )
    .await;
    if let Err(e) = &result {
        // Refused or failed calls are ledger rows too (tokens 0, nothing charged).
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

async fn serve_chat(
    state: &Arc<AppState>,
    runtime: &Arc<Runtime>,
    caller: &Caller,
    metered: &Metered,
    request_id: &RequestId,
    headers: &HeaderMap,
    req: &ChatRequest,
) -> Result<Response, ApiError> {
    caller.check_model(&req.model)?;
    let plan = plan_chat(runtime, state, req, headers, caller)?;
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
    let request_id = &*request_id.0;
    let settings = &runtime.config.router;

    if !req.stream {
        let served = fallback::run(
            &plan,
            &runtime.providers,
            &state.router,
            &settings.breaker,
            deadline,
            |candidate, provider| {
                provider.chat(
                    req,
                    Attempt {
                        upstream_model: &candidate.upstream,
                        request_id,
                        deadline,
                    },
                )
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
        let ending = Ending {
            usage: reply.usage,
            output_chars: reply_chars(&reply.body),
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
        |candidate, provider| async move {
            let reply = provider
                .chat_stream(
                    req,
                    Attempt {
                        upstream_model: &candidate.upstream,
                        request_id,
                        deadline,
                    },
                )
                .await?;
            first_chunk(reply, provider.id()).await
        },
    )
    .await
    .map_err(|e| e.error)?;
    let route = route_headers(runtime, &plan.route, served.candidate);
    let (first, reply) = served.value;
    let attempt = served.attempt;
    let ttft = attempt.first_byte;
    let fallbacks = served.failed_attempts;
    let meta = reply.meta;
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
            if let Some(e) = &end.error {
                tracing::warn!(
                    error = e.label(),
                    chunks = end.chunks,
                    "Stream failed after its first byte: {e}"
                );
            }
            let output = end.usage.map(|u| u.completion_tokens());
            attempt.finish(
                &state.router,
                &settings.breaker,
                settings.affinity_ttl,
                output,
                Some(meta),
                end.error.as_ref(),
            );
            // A cut or abandoned stream is billed for what was sent, estimated when the backend never reported usage.
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

/// Characters of text content in a complete reply (for estimates when usage is missing).
fn reply_chars(body: &[u8]) -> usize {
    content_chars(body)
}

/// Waits for the first chunk, so a stream that fails before any byte can still fall back.
pub async fn first_chunk(
    mut reply: StreamReply,
    provider: &str,
) -> Result<(Chunk, StreamReply), UpstreamError> {
    use futures_util::StreamExt;
    match reply.chunks.next().await {
        Some(Ok(chunk)) => Ok((chunk, reply)),
        Some(Err(e)) => Err(e),
        None => Err(UpstreamError::Protocol {
            provider: provider.to_string(),
            detail: "the stream ended before its first chunk".into(),
        }),
    }
}

/// The longest total timeout among the plan's providers: the call's overall deadline.
pub fn max_total(runtime: &Runtime, plan: &RoutePlan) -> std::time::Duration {
    plan.candidates
        .iter()
        .filter_map(|c| runtime.config.providers.get(c.provider))
        .map(|p| p.timeouts.total)
        .max()
        .unwrap_or(std::time::Duration::from_secs(600))
}

/// The `x-bazaar-*` headers for the candidate that served the call.
pub fn route_headers(
    runtime: &Runtime,
    route: &str,
    candidate: &router::Candidate,
) -> RouteHeaders {
    let provider = runtime
        .config
        .providers
        .get(candidate.provider)
        .map(|p| p.id.as_str())
        .unwrap_or("");
    RouteHeaders {
        backend: format!("{provider}/{}", candidate.upstream),
        route: route.to_string(),
    }
}
