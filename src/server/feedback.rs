//! `POST /v1/feedback`: a client scores one of its own calls (0–1: a thumbs up, an eval,
//! a test result) by the call's request id; the score is stored against the call's ledger
//! row for `bazaar router train --from-ledger`. Another key's call answers as a missing one:
//! calls belong to the key's id, so a key that reuses a revoked key's name owns none of its.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::state::AppState;
use crate::api::ApiError;
use crate::billing::ledger::learn::Feedback;

/// Request ids longer than this are refused (ours and clients' are far shorter).
const MAX_REQUEST_ID: usize = 256;

/// A score as posted: the call's request id and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub request_id: String,
    pub score: f64,
}

/// Reads `{"request_id": "...", "score": 0.0–1.0}`; every refusal names its field.
pub fn parse(body: &[u8]) -> Result<Score, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("The body must be a JSON object."))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::bad_request("The body must be a JSON object."));
    };
    if let Some(field) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "request_id" | "score"))
    {
        return Err(ApiError::invalid(
            field.clone(),
            format!("Unknown field `{field}`; feedback takes `request_id` and `score`."),
        ));
    }
    let request_id = match object.get("request_id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_REQUEST_ID => id.clone(),
        _ => {
            return Err(ApiError::invalid(
                "request_id",
                "`request_id` is required: the `x-request-id` of the call's response (a string of at most 256 bytes).",
            ))
        }
    };
    let score = match object.get("score").and_then(Value::as_f64) {
        Some(s) if (0.0..=1.0).contains(&s) => s,
        Some(s) => {
            return Err(ApiError::invalid(
                "score",
                format!("`score` must be between 0 and 1; got {s}."),
            ))
        }
        None => {
            return Err(ApiError::invalid(
                "score",
                "`score` is required: a number between 0 and 1.",
            ))
        }
    };
    Ok(Score { request_id, score })
}

fn call_not_found(request_id: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("No call with request id `{request_id}` was made with this key."),
        param: Some("request_id".into()),
        code: Some("request_not_found"),
    }
}

/// `POST /v1/feedback`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let result = async {
        let runtime = state.runtime();
        let caller = state.authenticate(&headers, &runtime)?;
        let score = parse(&body)?;
        let store = state
            .learn
            .get()
            .ok_or_else(|| call_not_found(&score.request_id))?;
        let stored = store
            .record_feedback(&score.request_id, caller.key_id(), score.score)
            .await
            .map_err(|e| {
                tracing::warn!("Storing feedback failed: {e}");
                ApiError::Unavailable {
                    message: "Feedback cannot be stored right now; try again shortly.".into(),
                    retry_after: None,
                }
            })?;
        match stored {
            Feedback::Stored => Ok(Json(json!({
                "object": "feedback",
                "request_id": score.request_id,
                "score": score.score,
            }))
            .into_response()),
            Feedback::NotFound => Err(call_not_found(&score.request_id)),
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(body: &str) -> Option<String> {
        match parse(body.as_bytes()) {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn parses_a_score_and_names_the_bad_field() {
        assert_eq!(
            parse(br#"{"request_id":"r1","score":0.25}"#).unwrap(),
            Score {
                request_id: "r1".into(),
                score: 0.25
            }
        );
        assert_eq!(
            parse(br#"{"request_id":"r1","score":1}"#).unwrap().score,
            1.0
        );
        for (body, field) in [
            (r#"{"request_id":"r1","score":1.5}"#, "score"),
            (r#"{"request_id":"r1","score":-0.1}"#, "score"),
            (r#"{"request_id":"r1","score":"high"}"#, "score"),
            (r#"{"request_id":"r1"}"#, "score"),
            (r#"{"score":0.5}"#, "request_id"),
            (r#"{"request_id":7,"score":0.5}"#, "request_id"),
            (r#"{"request_id":"","score":0.5}"#, "request_id"),
            (r#"{"request_id":"r1","score":0.5,"note":"x"}"#, "note"),
        ] {
            assert_eq!(param(body).as_deref(), Some(field), "{body}");
        }
        assert!(parse(b"[1]").is_err());
        assert!(parse(b"{").is_err());
    }
}
