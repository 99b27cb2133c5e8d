//! `POST /v1/embeddings` and the legacy `POST /v1/completions`: plain pass-through
//! with routing and fallback; completions may stream.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::HeaderMap;
use tokio::time::Instant;

use super::auth::authenticate;
use super::body::JsonBody;
use super::chat::{first_chunk, max_total, route_headers};
use super::relay;
use super::state::AppState;
use super::RequestId;
use crate::api::openai::PassthroughRequest;
use crate::api::ApiError;
use crate::providers::Attempt;
use crate::router::{self, fallback};

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let result = async {
        let runtime = state.runtime();
        authenticate(&headers, &runtime.config)?;
        let req = PassthroughRequest::parse_embeddings(&body)?;
        let plan = router::plan(&runtime.config, &req.model)?;
        let deadline = Instant::now() + max_total(&runtime, &plan);
        let (req, request_id) = (&req, &*request_id.0);
        let served = fallback::run(&plan, &runtime.providers, |candidate, provider| {
            provider.embeddings(
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
        Ok::<_, ApiError>(relay::json(served.value.body, &route))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let result = async {
        let runtime = state.runtime();
        authenticate(&headers, &runtime.config)?;
        let req = PassthroughRequest::parse_completions(&body)?;
        let plan = router::plan(&runtime.config, &req.model)?;
        let deadline = Instant::now() + max_total(&runtime, &plan);
        let (req, request_id) = (&req, &*request_id.0);
        if !req.stream {
            let served = fallback::run(&plan, &runtime.providers, |candidate, provider| {
                provider.completions(
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
            return Ok::<_, ApiError>(relay::json(served.value.body, &route));
        }
        let served = fallback::run(
            &plan,
            &runtime.providers,
            |candidate, provider| async move {
                let reply = provider
                    .completions_stream(
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
            |_| {},
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
