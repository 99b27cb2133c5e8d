//! `POST /v1/chat/completions`: authenticate, parse once, plan, walk the plan until a
//! backend answers, then relay the reply or the stream.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::HeaderMap;
use tokio::time::Instant;

use super::auth::authenticate;
use super::body::JsonBody;
use super::relay::{self, RouteHeaders};
use super::state::AppState;
use super::RequestId;
use crate::api::openai::ChatRequest;
use crate::api::ApiError;
use crate::providers::{Attempt, Chunk, StreamReply, UpstreamError};
use crate::router::{self, fallback};

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

async fn handle(
    state: &AppState,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let runtime = state.runtime();
    let _caller = authenticate(headers, &runtime.config)?;
    let req = ChatRequest::parse(body)?;
    let plan = router::plan(&runtime.config, &req.model)?;
    let deadline = Instant::now() + max_total(&runtime, &plan);
    let (req, request_id) = (&req, &*request_id.0);

    if !req.stream {
        let served = fallback::run(&plan, &runtime.providers, |candidate, provider| {
            provider.chat(
                req,
                Attempt {
                    upstream_model: &candidate.upstream,
                    request_id,
                    deadline,
                },
            )
        })
        .await
        .map_err(|e| e.error)?;
        let route = route_headers(&runtime, &plan.route, served.candidate);
        return Ok(relay::json(served.value.body, &route));
    }

    let served = fallback::run(
        &plan,
        &runtime.providers,
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
    let route = route_headers(&runtime, &plan.route, served.candidate);
    let (first, reply) = served.value;
    Ok(relay::sse(
        first,
        reply.chunks,
        req.client_wants_usage,
        &route,
        |end| {
            if let Some(e) = &end.error {
                tracing::warn!(
                    error = e.label(),
                    chunks = end.chunks,
                    "Stream failed after its first byte: {e}"
                );
            }
        },
    ))
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
pub fn max_total(runtime: &super::state::Runtime, plan: &router::RoutePlan) -> std::time::Duration {
    plan.candidates
        .iter()
        .filter_map(|c| runtime.config.providers.get(c.provider))
        .map(|p| p.timeouts.total)
        .max()
        .unwrap_or(std::time::Duration::from_secs(600))
}

/// The `x-bazaar-*` headers for the candidate that served the call.
pub fn route_headers(
    runtime: &super::state::Runtime,
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
