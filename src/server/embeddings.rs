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
use super::chat::{first_chunk, max_total};
use super::meter::{admit, Metered};
use super::relay;
use super::respond;
use super::state::{AppState, Runtime};
use super::RequestId;
use crate::api::openai::PassthroughRequest;
use crate::api::ApiError;
use crate::billing::meter::{Ending, TextShape};
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
                error_type: Some(e.label()),
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
        return Ok(respond::reply(
            state,
            runtime,
            &plan,
            metered,
            admission,
            served,
            TextShape::OpenAi,
            respond::openai_body,
        ));
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
            let (first, reply) = first_chunk(reply, p.id()).await?;
            let framer = relay::OpenAiFramer {
                client_wants_usage: req.client_wants_usage,
            };
            Ok((first, reply, framer))
        },
    )
    .await
    .map_err(|e| e.error)?;
    Ok(respond::stream(
        state, runtime, &plan, metered, admission, served,
    ))
}
