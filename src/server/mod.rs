//! The axum front end: routes, auth, body limits, health, request ids, and the one walk
//! every call takes (`call`). Handlers authenticate and parse, then hand the call to
//! `call::serve`; draining on shutdown is `bazaar::serve`'s (lib.rs), not this module's.

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod call;
pub mod chat;
pub mod count_tokens;
pub mod embeddings;
pub mod feedback;
pub mod health;
pub mod limits;
pub mod messages;
pub mod models;
pub mod relay;
pub mod responses;
pub mod responses_store;
pub mod spend;
pub mod state;
pub mod threads;

use std::sync::Arc;

/// The id of one request: the client's `x-request-id` if it sent a sane one, else a new one.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

pub use app::router;
pub use state::{AppState, Runtime};

/// The one parameter of a route's path (`/v1/responses/{id}`, `/admin/keys/{id}`),
/// percent-decoded. One that does not decode to UTF-8 is an OpenAI-shaped 400, where
/// axum's own extractor answers in plain text.
pub struct PathParam(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathParam {
    type Rejection = crate::api::ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<PathParam, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(param)| PathParam(param))
            .map_err(|e| crate::api::ApiError::bad_request(e.body_text()))
    }
}
