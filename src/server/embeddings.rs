//! `POST /v1/embeddings` and the legacy `POST /v1/completions`: plain pass-through
//! with routing and fallback over the model's own providers; completions may stream.

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
use super::state::{AppState, Runtime};
use super::RequestId;
use crate::api::openai::PassthroughRequest;
use crate::api::ApiError;
use crate::providers::Attempt;
use crate::router::filter::CallerLimits;
use crate::router::prefs::Prefs;
use crate::router::{self, fallback, CallShape, RoutePlan};

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
    let result = async {
        let runtime = state.runtime();
        authenticate(&headers, &runtime.config)?;
        let req = PassthroughRequest::parse_embeddings(&body)?;
        let plan = plan_passthrough(&runtime, &state, &req)?;
        let deadline = Instant::now() + max_total(&runtime, &plan);
        let (req, request_id) = (&req, &*request_id.0);
        let settings = &runtime.config.router;
        let served = fallback::run(
            &plan,
            &runtime.providers,
            &state.router,
            &settings.breaker,
            deadline,
            |c, p| {
                p.embeddings(
                    req,
                    Attempt {
                        upstream_model: &c.upstream,
                        request_id,
                        deadline,
                    },
                )
            },
        )
        .await
        .map_err(|e| e.error)?;
        let route = route_headers(&runtime, &plan.route, served.candidate);
        let reply = served.value;
        served.attempt.finish(
            &state.router,
            &settings.breaker,
            settings.affinity_ttl,
            None,
            Some(reply.meta),
            None,
        );
        Ok::<_, ApiError>(relay::json(reply.body, &route))
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
        let plan = plan_passthrough(&runtime, &state, &req)?;
        let deadline = Instant::now() + max_total(&runtime, &plan);
        let (req, request_id) = (&req, &*request_id.0);
        let settings = &runtime.config.router;
        if !req.stream {
            let served = fallback::run(
                &plan,
                &runtime.providers,
                &state.router,
                &settings.breaker,
                deadline,
                |c, p| {
                    p.completions(
                        req,
                        Attempt {
                            upstream_model: &c.upstream,
                            request_id,
                            deadline,
                        },
                    )
                },
            )
            .await
            .map_err(|e| e.error)?;
            let route = route_headers(&runtime, &plan.route, served.candidate);
            let reply = served.value;
            let output = reply.usage.map(|u| u.completion_tokens());
            served.attempt.finish(
                &state.router,
                &settings.breaker,
                settings.affinity_ttl,
                output,
                Some(reply.meta),
                None,
            );
            return Ok::<_, ApiError>(relay::json(reply.body, &route));
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
        let route = route_headers(&runtime, &plan.route, served.candidate);
        let (first, reply) = served.value;
        let (attempt, meta, state, settings) =
            (served.attempt, reply.meta, state.clone(), settings.clone());
        Ok(relay::sse(
            first,
            reply.chunks,
            req.client_wants_usage,
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
            },
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
