//! The cost dashboard: one page and its assets (uPlot, vendored with its licence),
//! embedded in the binary and served under `/dashboard`. The page reads only the spend
//! API with the key the user enters; nothing here touches the ledger directly.

use crate::api::ApiError;
use crate::server::PathParam;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const UPLOT_JS: &str = include_str!("assets/uplot.min.js");
const UPLOT_CSS: &str = include_str!("assets/uplot.min.css");
const UPLOT_LICENSE: &str = include_str!("assets/uplot.LICENSE");
const FAVICON: &str = include_str!("assets/favicon.svg");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page needs nothing from other origins.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:",
        ),
    );
    response
}

/// `GET /dashboard`.
pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /dashboard/{file}`.
pub async fn file(PathParam(name): PathParam) -> Response {
    match name.as_str() {
        "app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => asset(APP_CSS, "text/css; charset=utf-8"),
        "uplot.min.js" => asset(UPLOT_JS, "text/javascript; charset=utf-8"),
        "uplot.min.css" => asset(UPLOT_CSS, "text/css; charset=utf-8"),
        "uplot.LICENSE" => asset(UPLOT_LICENSE, "text/plain; charset=utf-8"),
        "favicon.svg" => favicon().await,
        _ => ApiError::NotFound {
            message: format!(
                "Unknown dashboard file `{}`.",
                name.chars().take(200).collect::<String>()
            ),
            param: None,
            code: Some("unknown_url"),
        }
        .into_response(),
    }
}

/// `GET /favicon.ico`: the dashboard's icon (SVG, which browsers take at this path too),
/// so a browser's automatic request does not end in a 404.
pub async fn favicon() -> Response {
    asset(FAVICON, "image/svg+xml")
}
