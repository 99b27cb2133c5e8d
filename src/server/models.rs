//! `GET /v1/models`: every model id this configuration can serve, then every route
//! (`auto`, `cheap`, `fast` and the configured ones), in OpenAI's list shape. Each entry
//! says which it is in a `bazaar` object, an extra field OpenAI clients ignore.

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
    bazaar: Kind,
}

/// What an id names: a concrete model, or a route the router resolves per call.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Kind {
    Model,
    Route { policy: &'static str },
}

/// Lists models, then routes. A route whose name is also a model id is left out: the
/// model is what a request with that id gets.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    if let Err(e) = state.authenticate(&headers, &runtime) {
        return e.into_response();
    }
    let config = &runtime.config;
    let models = config.models.iter().filter_map(|(id, targets)| {
        let first = targets.first()?;
        Some(ModelObject {
            id,
            object: "model",
            created: 0,
            owned_by: &config.providers[first.provider].id,
            bazaar: Kind::Model,
        })
    });
    let routes = config
        .routes
        .iter()
        .filter(|(name, _)| config.route(name).is_some())
        .map(|(name, route)| ModelObject {
            id: name,
            object: "model",
            created: 0,
            owned_by: "bazaar",
            bazaar: Kind::Route {
                policy: route.policy.as_str(),
            },
        });
    Json(ModelList {
        object: "list",
        data: models.chain(routes).collect(),
    })
    .into_response()
}
