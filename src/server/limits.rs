//! Limits on what a client may make the gateway hold before it is authenticated or
//! its request is understood: the size of a request head, and (with `body`) how many
//! request bodies are read at once. Timeouts on reading heads live in `serve`.

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::StatusCode;

use crate::api::ApiError;

/// Most header fields a request may carry.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values a request may carry.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most header fields hyper parses: past `MAX_HEADERS`, up to this many still reach our
/// check and get its OpenAI-shaped 431; more get hyper's own bare 431.
pub const MAX_PARSED_HEADERS: usize = MAX_HEADERS * 4;
/// Most bytes of a request head a connection may make the gateway hold: hyper's HTTP/1
/// read buffer and the HTTP/2 header list. A head between `MAX_HEADER_BYTES` and this
/// gets our OpenAI-shaped 431; a larger one never reaches our code, and hyper answers it
/// with a bare 431 (no body) and closes the connection: hyper has no hook to shape it.
pub const MAX_HEAD_BUFFER: usize = 256 * 1024;

/// `app` with oversized request heads answered by an OpenAI-shaped 431. (A head larger
/// than `MAX_HEAD_BUFFER`, or with more than `MAX_PARSED_HEADERS` fields, is refused by
/// hyper itself with a bare 431 before any of our code runs.)
pub fn header_block(app: Router) -> Router {
    app.layer(middleware::from_fn(check_headers))
}

async fn check_headers(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        let mut response = ApiError::InvalidRequest {
            message: format!(
                "The request headers are too large: at most {MAX_HEADERS} fields and {MAX_HEADER_BYTES} bytes."
            ),
            param: None,
            code: Some("request_header_fields_too_large"),
        }
        .into_response();
        *response.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        // Refused before the request-context layer, so it gets its fresh id here (a
        // client's own id is not read from a head this large).
        if let Ok(id) = http::HeaderValue::from_str(&super::app::new_request_id()) {
            response.headers_mut().insert("x-request-id", id);
        }
        return response;
    }
    next.run(req).await
}
