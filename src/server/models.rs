//! `GET /v1/models`: every model id this configuration can serve, in OpenAI's list shape.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde::Serialize;

use super::state::AppState;

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    owned_by: &'a str,
}

pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    if let Err(e) = state.authenticate(&headers, &runtime) {
        return e.into_response();
    }
    let data = runtime
        .config
        .models
        .iter()
        .filter_map(|(id, targets)| {
            let first = targets.first()?;
            Some(ModelObject {
                id,
                object: "model",
                created: 0,
                owned_by: &runtime.config.providers[first.provider].id,
            })
        })
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}
