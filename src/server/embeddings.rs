//! `POST /v1/embeddings` and the legacy `POST /v1/completions`: plain pass-through
//! with routing and fallback over the model's own providers (an `OpenAiShape` walked by
//! `call::serve`); completions may stream.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::auth::Caller;
use super::body::Incoming;
use super::call;
use super::chat::OpenAiShape;
use super::state::{AppState, Runtime};
use crate::api::openai::PassthroughRequest;
use crate::api::ApiError;
use crate::router::prefs::Prefs;
use crate::router::{self, CallShape, RoutePlan};

/// A plan for a pass-through call: the model's own providers, ordered by the default policy.
pub fn plan_passthrough(
    runtime: &Runtime,
    state: &AppState,
    req: &PassthroughRequest,
    caller: &Caller,
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
        predict_view: "",
        user: None,
        headers: None,
    };
    router::build_plan(
        &runtime.config,
        &state.router,
        &call,
        &Prefs::default(),
        &caller.limits(),
        Instant::now(),
    )
}

pub async fn embeddings(State(state): State<Arc<AppState>>, incoming: Incoming) -> Response {
    let parse =
        |body: &[u8]| PassthroughRequest::parse_embeddings(body).map(OpenAiShape::Embeddings);
    call::handle(&state, incoming, parse)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn completions(State(state): State<Arc<AppState>>, incoming: Incoming) -> Response {
    let parse =
        |body: &[u8]| PassthroughRequest::parse_completions(body).map(OpenAiShape::Completions);
    call::handle(&state, incoming, parse)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
