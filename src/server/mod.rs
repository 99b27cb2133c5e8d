//! The axum front end: routes, auth, body limits, health, request ids and shutdown.
//! Handlers parse and authenticate, then hand the call to the router and adapters.

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod chat;
pub mod embeddings;
pub mod health;
pub mod messages;
pub mod meter;
pub mod models;
pub mod relay;
pub mod respond;
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
