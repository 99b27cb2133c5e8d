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

use std::sync::Arc;

/// The id of one request: the client's `x-request-id` if it sent a sane one, else a new one.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

pub use app::router;
pub use state::{AppState, Runtime};
