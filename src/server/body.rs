//! Our own JSON body extractor: content type checked, size limited by the current
//! config, and every rejection an OpenAI-shaped 400 (or 413), never axum's plain 4xx.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::state::AppState;
use super::RequestId;
use crate::api::ApiError;

/// The raw bytes of a JSON request body.
pub struct JsonBody(pub Bytes);

/// What a call endpoint receives: the request's id, its headers and its JSON body.
pub struct Incoming {
    pub request_id: RequestId,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl FromRequest<Arc<AppState>> for Incoming {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Incoming, ApiError> {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("the request has no id".into()))?;
        let headers = req.headers().clone();
        let JsonBody(body) = JsonBody::from_request(req, state).await?;
        Ok(Incoming {
            request_id,
            headers,
            body,
        })
    }
}

impl FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<JsonBody, ApiError> {
        let limit = state.runtime().config.server.max_body_bytes;
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match content_type {
            Some(ct)
                if ct
                    .trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json") => {}
            Some(ct) => {
                return Err(ApiError::invalid(
                    "Content-Type",
                    format!(
                        "Expected `Content-Type: application/json`, got `{}`.",
                        ct.chars().take(100).collect::<String>()
                    ),
                ))
            }
            None => {
                return Err(ApiError::invalid(
                    "Content-Type",
                    "Expected `Content-Type: application/json`.",
                ))
            }
        }
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        match Limited::new(req.into_body(), limit).collect().await {
            Ok(collected) => Ok(JsonBody(collected.to_bytes())),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
            Err(_) => Err(ApiError::bad_request("The request body could not be read.")),
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "The request body is larger than this gateway's limit of {limit} bytes."
    ))
}
