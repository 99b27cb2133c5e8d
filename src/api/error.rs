//! `ApiError`: every failure a client can see, rendered as OpenAI-shaped JSON.
//! Variants follow DESIGN.md's status table one to one. Rendering never logs: the
//! error rides in the response extensions and one middleware logs it once.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error label the gateway writes, to metrics (`error_type`, `error`) and to the
/// ledger's `error_type` alike: a closed set, so a new label is a new variant here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorLabel {
    // What a client was told (OpenAI's `error.type`): `ApiError::label`.
    InvalidRequest,
    Authentication,
    InsufficientQuota,
    Permission,
    NotFound,
    RateLimit,
    Upstream,
    ServiceUnavailable,
    Timeout,
    Server,
    // How one upstream attempt failed: `UpstreamError::label`.
    Connect,
    UpstreamTimeout,
    UpstreamRateLimited,
    Upstream5xx,
    Upstream4xx,
    Protocol,
    Unsupported,
    /// The client went away before a stream ended.
    ClientClosed,
}

impl ErrorLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorLabel::InvalidRequest => "invalid_request_error",
            ErrorLabel::Authentication => "authentication_error",
            ErrorLabel::InsufficientQuota => "insufficient_quota",
            ErrorLabel::Permission => "permission_error",
            ErrorLabel::NotFound => "not_found_error",
            ErrorLabel::RateLimit => "rate_limit_error",
            ErrorLabel::Upstream => "upstream_error",
            ErrorLabel::ServiceUnavailable => "service_unavailable",
            ErrorLabel::Timeout => "timeout_error",
            ErrorLabel::Server => "server_error",
            ErrorLabel::Connect => "connect",
            ErrorLabel::UpstreamTimeout => "timeout",
            ErrorLabel::UpstreamRateLimited => "rate_limited",
            ErrorLabel::Upstream5xx => "upstream_5xx",
            ErrorLabel::Upstream4xx => "upstream_4xx",
            ErrorLabel::Protocol => "protocol",
            ErrorLabel::Unsupported => "unsupported",
            ErrorLabel::ClientClosed => "client_closed",
        }
    }
}

impl std::fmt::Display for ErrorLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure as the client sees it. Messages never carry secrets or raw upstream bodies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed JSON, a wrong-typed or invalid field, a request no backend can express.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// 401: missing or unknown gateway key.
    #[error("{0}")]
    Unauthorized(String),
    /// 402: the key's or team's budget cannot cover this call.
    #[error("{0}")]
    BudgetExhausted(String),
    /// 403: the key may not use this model, tier or endpoint.
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown model, route or path.
    #[error("{message}")]
    NotFound {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// 413: body over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: a gateway limit or every backend's rate limit; `retry_after` becomes `Retry-After`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// An upstream 4xx passed on with its status and the upstream's own message.
    #[error("{message}")]
    UpstreamRejected {
        status: StatusCode,
        message: String,
        param: Option<String>,
        code: Option<String>,
    },
    /// 502: upstream unreachable, 5xx, or a reply that breaks its wire format.
    #[error("{0}")]
    BadGateway(String),
    /// 503: no backend is available (all circuits open, draining).
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 504: the upstream did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// 500: a gateway bug; the message is generic.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming the offending field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// A 400 about the request as a whole.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// A 404 for a `model` nobody serves.
    pub fn model_not_found(model: &str) -> Self {
        ApiError::NotFound {
            message: format!("The model `{model}` does not exist or is not served by this gateway; GET /v1/models lists what is."),
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// The HTTP status; exhaustive so a new variant must pick one.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BudgetExhausted(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UpstreamRejected { status, .. } => *status,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The label of what the client was told; exhaustive so a new variant must pick one.
    pub fn label(&self) -> ErrorLabel {
        match self {
            ApiError::InvalidRequest { .. } => ErrorLabel::InvalidRequest,
            ApiError::Unauthorized(_) => ErrorLabel::Authentication,
            ApiError::BudgetExhausted(_) => ErrorLabel::InsufficientQuota,
            ApiError::Forbidden(_) => ErrorLabel::Permission,
            ApiError::NotFound { .. } => ErrorLabel::NotFound,
            ApiError::PayloadTooLarge(_) => ErrorLabel::InvalidRequest,
            ApiError::RateLimited { .. } => ErrorLabel::RateLimit,
            ApiError::UpstreamRejected { .. } => ErrorLabel::Upstream,
            ApiError::BadGateway(_) => ErrorLabel::Upstream,
            ApiError::Unavailable { .. } => ErrorLabel::ServiceUnavailable,
            ApiError::GatewayTimeout(_) => ErrorLabel::Timeout,
            ApiError::Internal(_) => ErrorLabel::Server,
        }
    }

    /// The OpenAI `error.type`; also the `error_type` metric label.
    pub fn error_type(&self) -> &'static str {
        self.label().as_str()
    }

    fn code(&self) -> Option<&str> {
        match self {
            ApiError::InvalidRequest { code, .. } | ApiError::NotFound { code, .. } => *code,
            ApiError::UpstreamRejected { code, .. } => code.as_deref(),
            ApiError::Unauthorized(_) => Some("invalid_api_key"),
            ApiError::BudgetExhausted(_) => Some("budget_exceeded"),
            ApiError::Forbidden(_) => Some("not_allowed"),
            ApiError::PayloadTooLarge(_) => Some("body_too_large"),
            ApiError::RateLimited { .. } => Some("rate_limit_exceeded"),
            ApiError::BadGateway(_) => Some("bad_gateway"),
            ApiError::Unavailable { .. } => Some("unavailable"),
            ApiError::GatewayTimeout(_) => Some("upstream_timeout"),
            ApiError::Internal(_) => None,
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::InvalidRequest { param, .. }
            | ApiError::NotFound { param, .. }
            | ApiError::UpstreamRejected { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after, .. }
            | ApiError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The OpenAI-shaped JSON body: `{"error":{"message","type","code","param"}}`.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: String,
            r#type: &'a str,
            code: Option<&'a str>,
            param: Option<&'a str>,
        }
        let body = Body {
            error: Inner {
                message: self.to_string(),
                r#type: self.error_type(),
                code: self.code(),
                param: self.param(),
            },
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"error":{"message":"internal error","type":"server_error","code":null,"param":null}}"#.to_vec())
    }
}

/// Marker put in response extensions so the logging middleware can report the error once.
#[derive(Debug, Clone)]
pub struct LoggedError(pub ApiError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.to_json()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = self.retry_after() {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response.extensions_mut().insert(LoggedError(self));
        response
    }
}

/// A backend's reply or stream chunk that a front-end translation cannot read; the
/// server reports it as the backend's protocol error (a 502), never as the client's.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("a chunk is not JSON ({0})")]
    Chunk(serde_json::Error),
    #[error("the reply is not a chat completion ({0})")]
    NotChatCompletion(serde_json::Error),
    #[error("the reply is not a response object ({0})")]
    NotResponseObject(serde_json::Error),
    /// Anthropic's blocks cannot interleave: a tool call's arguments must not resume
    /// after another block began.
    #[error("arguments for tool call {0} arrived after another call began")]
    ToolCallResumed(u64),
    /// The translated reply could not be written out.
    #[error("{0}")]
    Render(serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openai_shape() {
        let err = ApiError::invalid("messages", "`messages` must be an array");
        let v: serde_json::Value = serde_json::from_slice(&err.to_json()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["message"], "`messages` must be an array");
        assert!(v["error"]["code"].is_null());
    }

    #[test]
    fn rate_limit_sets_retry_after_rounded_up() {
        let resp = ApiError::RateLimited {
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(1500)),
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }
}
