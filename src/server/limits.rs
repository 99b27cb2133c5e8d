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

/// `app` with oversized request heads answered by an OpenAI-shaped 431. (A head larger
/// than hyper's read buffer, about 400 KB, is refused by hyper itself with a bare 431
/// before any of our code runs.)
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
        return response;
    }
    next.run(req).await
}
