//! Our own JSON body extractor: the caller authenticated from the headers before a byte
//! of the body is read, the content type checked, the size limited by the current
//! config, the read bounded in time and in how many run at once, and every rejection an
//! OpenAI-shaped error (401, 400, 413, 503), never axum's plain 4xx.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::auth::Caller;
use super::state::{AppState, Runtime};
use super::RequestId;
use crate::api::ApiError;

/// The raw bytes of a JSON request body, sent by an authenticated caller.
pub struct JsonBody(pub Bytes);

/// What a call endpoint receives: the request's id, its headers, its JSON body, and the
/// caller the extractor authenticated under `runtime` (handed on, so a key is hashed
/// and looked up once per call).
pub struct Incoming {
    pub request_id: RequestId,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub caller: Caller,
    pub runtime: Arc<Runtime>,
}

impl FromRequest<Arc<AppState>> for Incoming {
    type Rejection = Refused;

    async fn from_request(mut req: Request, state: &Arc<AppState>) -> Result<Incoming, Refused> {
        let request_id = req.extensions_mut().remove::<RequestId>();
        Incoming::read(req, state, request_id).await
    }
}

impl Incoming {
    /// What `from_request` makes of `req`, with its id (a request `server::app` hands
    /// straight to its handler has it given, not in its extensions).
    pub async fn read(
        req: Request,
        state: &Arc<AppState>,
        request_id: Option<RequestId>,
    ) -> Result<Incoming, Refused> {
        // The head is taken apart rather than copied: the call keeps the headers.
        let (parts, body) = req.into_parts();
        let anthropic = is_anthropic(&parts.uri);
        let (caller, runtime, body) = read(&parts.headers, body, state)
            .await
            .map_err(|error| Refused { error, anthropic })?;
        let request_id = request_id.ok_or_else(|| Refused {
            error: ApiError::Internal("the request has no id".into()),
            anthropic,
        })?;
        Ok(Incoming {
            request_id,
            headers: parts.headers,
            body,
            caller,
            runtime,
        })
    }
}

/// A refused body, answered in the shape of the endpoint's API (Anthropic's on
/// `/v1/messages`, OpenAI's elsewhere).
pub struct Refused {
    error: ApiError,
    anthropic: bool,
}

fn is_anthropic(uri: &http::Uri) -> bool {
    uri.path() == "/v1/messages"
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        if self.anthropic {
            super::messages::anthropic_error(self.error)
        } else {
            self.error.into_response()
        }
    }
}

impl FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = Refused;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<JsonBody, Refused> {
        let anthropic = is_anthropic(req.uri());
        let (parts, body) = req.into_parts();
        read(&parts.headers, body, state)
            .await
            .map(|(_, _, body)| JsonBody(body))
            .map_err(|error| Refused { error, anthropic })
    }
}

/// The caller, the runtime it was authenticated under, and the body.
async fn read(
    headers: &http::HeaderMap,
    body: axum::body::Body,
    state: &Arc<AppState>,
) -> Result<(Caller, Arc<Runtime>, Bytes), ApiError> {
    let runtime = state.runtime();
    // Unauthenticated bodies are never read: a stranger cannot make us buffer them.
    let caller = state.authenticate(headers, &runtime)?;
    let settings = &runtime.config.server;
    let limit = settings.max_body_bytes;
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match content_type {
        Some(ct) if is_json(ct) => {}
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
    // Bodies are read as sent: a compressed one would fail as JSON with a misleading
    // message, and a plain one mislabelled would be accepted, so a coding is refused by name.
    if let Some(coding) = headers.get(http::header::CONTENT_ENCODING) {
        let coding = String::from_utf8_lossy(coding.as_bytes());
        if !coding.trim().eq_ignore_ascii_case("identity") {
            return Err(ApiError::invalid(
                "Content-Encoding",
                format!(
                    "Request bodies are read uncompressed; `Content-Encoding: {}` is not accepted.",
                    coding.chars().take(100).collect::<String>()
                ),
            ));
        }
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let read_timeout = settings.body_read_timeout;
    // One timer for both waits, made once: each is raced against it, the turn first.
    let expired = tokio::time::sleep_until(Instant::now() + read_timeout);
    tokio::pin!(expired);
    let turn = tokio::select! {
        biased;
        turn = state.bodies.acquire() => turn.ok(),
        () = &mut expired => None,
    };
    let _turn = turn.ok_or_else(|| ApiError::Unavailable {
        message: "Too many request bodies are being received right now; try again.".into(),
        retry_after: Some(std::time::Duration::from_secs(1)),
    })?;
    let read = read_body(body, limit, declared.unwrap_or(0));
    tokio::select! {
        biased;
        result = read => result.map(|body| (caller, runtime, body)),
        () = &mut expired => Err(ApiError::InvalidRequest {
            message: format!(
                "The request body was not received within {} s.",
                read_timeout.as_secs_f64()
            ),
            param: None,
            code: Some("body_read_timeout"),
        }),
    }
}

/// Whether a `Content-Type` names JSON (`application/json`, any case, any parameters).
fn is_json(content_type: &str) -> bool {
    const JSON: &str = "application/json";
    content_type
        .trim()
        .get(..JSON.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(JSON))
}

/// Reads a body of at most `limit` bytes into one buffer, sized up front by the declared
/// length (so a large body is never held twice while it is joined).
async fn read_body(
    mut body: axum::body::Body,
    limit: usize,
    declared: usize,
) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::with_capacity(declared);
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| ApiError::bad_request("The request body could not be read."))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "The request body is larger than this gateway's limit of {limit} bytes."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_in_any_case_with_parameters() {
        for ct in [
            "application/json",
            " Application/JSON; charset=utf-8",
            "application/json-seq",
        ] {
            assert!(is_json(ct), "{ct}");
        }
        for ct in ["text/plain", "application/jso", "", "applicatión/json"] {
            assert!(!is_json(ct), "{ct}");
        }
    }
}
