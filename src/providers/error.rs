//! `UpstreamError`: one upstream failure, classified once when it is built (what kind,
//! whose fault, whether another attempt may succeed, how long the upstream asked us to
//! wait), and `client_error`, the one place a failed call's upstream errors become the
//! `ApiError` its client sees. Adapters build these; they never map them to HTTP.

use std::fmt;
use std::time::Duration;

use ::http::StatusCode;

use crate::api::{ApiError, ErrorLabel};

/// What went wrong, decided once from the transport error or the upstream's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// The backend could not be reached.
    Connect,
    /// The backend did not answer in time.
    Timeout,
    /// 429: the backend's own rate limit.
    RateLimited,
    /// 503 or Anthropic's 529: overloaded, try again shortly.
    Overloaded,
    /// Any other 5xx (or an error event inside a stream).
    ServerError,
    /// 401/403: the backend refused the gateway's own credentials.
    Credentials,
    /// Any other 4xx: the backend refused the request itself.
    Rejected,
    /// A reply that breaks its wire format.
    Protocol,
    /// The request holds something this backend's wire format cannot express.
    Unsupported,
}

/// Whose fault a failure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request itself (another backend may still take it when the fault is the wire format's).
    Client,
    /// The backend: down, slow, overloaded, or speaking its wire format wrong.
    Provider,
    /// The gateway's own setup (its credentials for the backend).
    Gateway,
}

/// An upstream failure. Build it with `connect`, `timeout`, `protocol`, `unsupported` or
/// `status`; every property a caller needs is settled there and only read afterwards.
#[derive(Debug, Clone)]
pub struct UpstreamError {
    /// The provider's id (never a URL or a key).
    pub provider: String,
    pub kind: UpstreamKind,
    pub fault: Fault,
    retryable: bool,
    retry_after: Option<Duration>,
    /// The upstream's HTTP status, for failures that carried one.
    pub status: Option<u16>,
    /// The upstream's own message (truncated by the adapter), or what we saw.
    pub message: String,
    /// The upstream's error code, passed on for a rejected request.
    pub code: Option<String>,
    /// The offending request field: the upstream's `param`, or the field a wire format cannot express.
    pub param: Option<String>,
}

/// What a non-2xx upstream reply said, as its adapter read it.
#[derive(Debug, Clone, Default)]
pub struct StatusReply {
    pub status: u16,
    pub message: String,
    pub code: Option<String>,
    pub param: Option<String>,
    pub retry_after: Option<Duration>,
}

impl UpstreamError {
    fn new(provider: &str, kind: UpstreamKind, message: String) -> UpstreamError {
        let (fault, retryable) = match kind {
            UpstreamKind::Connect
            | UpstreamKind::Timeout
            | UpstreamKind::RateLimited
            | UpstreamKind::Overloaded
            | UpstreamKind::ServerError
            | UpstreamKind::Protocol => (Fault::Provider, true),
            UpstreamKind::Credentials => (Fault::Gateway, false),
            UpstreamKind::Rejected | UpstreamKind::Unsupported => (Fault::Client, false),
        };
        UpstreamError {
            provider: provider.to_string(),
            kind,
            fault,
            retryable,
            retry_after: None,
            status: None,
            message,
            code: None,
            param: None,
        }
    }

    /// The backend could not be reached.
    pub fn connect(provider: &str, detail: impl Into<String>) -> UpstreamError {
        UpstreamError::new(provider, UpstreamKind::Connect, detail.into())
    }

    /// The backend did not answer within `after` (`phase`: connect, first byte, idle, total).
    pub fn timeout(provider: &str, phase: &'static str, after: Duration) -> UpstreamError {
        let message = format!("did not answer within {}ms ({phase})", after.as_millis());
        UpstreamError::new(provider, UpstreamKind::Timeout, message)
    }

    /// The reply breaks its wire format.
    pub fn protocol(provider: &str, detail: impl Into<String>) -> UpstreamError {
        UpstreamError::new(provider, UpstreamKind::Protocol, detail.into())
    }

    /// The request holds `field`, which this backend's wire format cannot express.
    pub fn unsupported(
        provider: &str,
        field: impl Into<String>,
        detail: impl Into<String>,
    ) -> UpstreamError {
        let mut e = UpstreamError::new(provider, UpstreamKind::Unsupported, detail.into());
        e.param = Some(field.into());
        e
    }

    /// A non-2xx reply (or an error event carrying a status): the only place a status
    /// becomes a kind.
    pub fn status(provider: &str, reply: StatusReply) -> UpstreamError {
        let kind = match reply.status {
            429 => UpstreamKind::RateLimited,
            503 | 529 => UpstreamKind::Overloaded,
            401 | 403 => UpstreamKind::Credentials,
            400..=499 => UpstreamKind::Rejected,
            _ => UpstreamKind::ServerError,
        };
        let mut e = UpstreamError::new(provider, kind, reply.message);
        // The upstream timed out waiting for our request: another attempt may do better.
        e.retryable |= reply.status == 408;
        e.status = Some(reply.status);
        e.code = reply.code;
        e.param = reply.param;
        e.retry_after = reply.retry_after;
        e
    }

    /// True when another backend (or a later attempt) may succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// How long the upstream asked us to wait before trying it again.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// How this attempt failed, as a metric and ledger label.
    pub fn label(&self) -> ErrorLabel {
        match self.kind {
            UpstreamKind::Connect => ErrorLabel::Connect,
            UpstreamKind::Timeout => ErrorLabel::UpstreamTimeout,
            UpstreamKind::RateLimited => ErrorLabel::UpstreamRateLimited,
            UpstreamKind::Overloaded | UpstreamKind::ServerError => ErrorLabel::Upstream5xx,
            UpstreamKind::Credentials | UpstreamKind::Rejected => ErrorLabel::Upstream4xx,
            UpstreamKind::Protocol => ErrorLabel::Protocol,
            UpstreamKind::Unsupported => ErrorLabel::Unsupported,
        }
    }

    /// How telling this failure is when several attempts failed: the client gets the highest.
    fn rank(&self) -> u8 {
        match self.kind {
            UpstreamKind::Unsupported => 6,
            UpstreamKind::Credentials | UpstreamKind::Rejected => 5,
            UpstreamKind::RateLimited => 4,
            UpstreamKind::Timeout => 3,
            UpstreamKind::Overloaded | UpstreamKind::ServerError => 2,
            UpstreamKind::Protocol => 1,
            UpstreamKind::Connect => 0,
        }
    }

    /// What the client sees when this is the only failure (a stream cut after its first byte).
    pub fn to_api_error(&self) -> ApiError {
        client_error(std::iter::once(self))
            .unwrap_or_else(|| ApiError::BadGateway(self.to_string()))
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.provider;
        match (&self.kind, self.status) {
            (UpstreamKind::Connect, _) => {
                write!(f, "could not reach provider `{p}`: {}", self.message)
            }
            (UpstreamKind::Timeout, _) => write!(f, "provider `{p}` {}", self.message),
            (UpstreamKind::Protocol, _) => {
                write!(f, "provider `{p}` sent a malformed reply: {}", self.message)
            }
            (UpstreamKind::Unsupported, _) => write!(
                f,
                "provider `{p}` cannot express `{}`: {}",
                self.param.as_deref().unwrap_or(""),
                self.message
            ),
            (_, status) => write!(
                f,
                "provider `{p}` returned {}: {}",
                status.unwrap_or(0),
                self.message
            ),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// Why a provider's adapter could not be built from its resolved config (reported under
/// the provider's config path).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// A config field that cannot go on the wire (`api_key`, `base_url`, `headers.NAME`).
    #[error("{field}: {detail}")]
    Field { field: String, detail: String },
}

impl BuildError {
    pub fn field(field: impl Into<String>, detail: impl ToString) -> BuildError {
        BuildError::Field {
            field: field.into(),
            detail: detail.to_string(),
        }
    }
}

/// The error a client sees for a call whose attempts failed with `failures`: the most
/// telling one, mapped to its status; a rate limit carries the soonest `Retry-After` of
/// them all. `None` when there were no failures.
pub fn client_error<'a>(
    failures: impl IntoIterator<Item = &'a UpstreamError> + Clone,
) -> Option<ApiError> {
    let worst = failures.clone().into_iter().max_by_key(|e| e.rank())?;
    let message = worst.to_string();
    Some(match worst.kind {
        UpstreamKind::Connect | UpstreamKind::Protocol | UpstreamKind::ServerError => {
            ApiError::BadGateway(message)
        }
        UpstreamKind::Timeout => ApiError::GatewayTimeout(message),
        UpstreamKind::Unsupported => ApiError::InvalidRequest {
            message,
            param: worst.param.clone(),
            code: Some("unsupported_by_backend"),
        },
        UpstreamKind::RateLimited => ApiError::RateLimited {
            message,
            retry_after: failures.into_iter().filter_map(|e| e.retry_after).min(),
        },
        UpstreamKind::Overloaded => ApiError::Unavailable {
            message,
            retry_after: worst.retry_after,
        },
        // Not the client's fault: an operator must fix the gateway's key for this backend.
        UpstreamKind::Credentials => ApiError::BadGateway(format!(
            "provider `{}` rejected the gateway's credentials; an operator must check its api_key",
            worst.provider
        )),
        UpstreamKind::Rejected => ApiError::UpstreamRejected {
            status: worst
                .status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::BAD_REQUEST),
            message: worst.message.clone(),
            code: worst.code.clone(),
            param: worst.param.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<u64>) -> UpstreamError {
        UpstreamError::status(
            "p",
            StatusReply {
                status,
                retry_after: retry_after.map(Duration::from_secs),
                ..Default::default()
            },
        )
    }

    #[test]
    fn statuses_are_classified_once() {
        assert!(status(500, None).is_retryable());
        assert!(status(429, None).is_retryable());
        assert!(status(408, None).is_retryable());
        assert!(!status(400, None).is_retryable());
        assert_eq!(status(401, None).fault, Fault::Gateway);
        assert_eq!(status(422, None).fault, Fault::Client);
        assert_eq!(status(529, None).fault, Fault::Provider);
        assert_eq!(status(503, None).label(), ErrorLabel::Upstream5xx);
        assert_eq!(
            status(401, None).to_api_error().status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            status(422, None).to_api_error().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(529, None).to_api_error().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn the_most_telling_failure_wins_with_the_soonest_retry_after() {
        let failures = [
            UpstreamError::connect("a", "refused"),
            status(429, Some(30)),
            status(429, Some(5)),
            status(500, None),
        ];
        match client_error(failures.iter()) {
            Some(ApiError::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(5)))
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        let rejected = [status(500, None), status(400, None)];
        assert_eq!(
            client_error(rejected.iter()).map(|e| e.status()),
            Some(StatusCode::BAD_REQUEST)
        );
        assert!(client_error(std::iter::empty()).is_none());
    }

    #[test]
    fn display_keeps_the_provider_and_the_status() {
        let e = UpstreamError::status(
            "groq",
            StatusReply {
                status: 502,
                message: "bad".into(),
                ..Default::default()
            },
        );
        assert_eq!(e.to_string(), "provider `groq` returned 502: bad");
        let e = UpstreamError::timeout("groq", "first byte", Duration::from_millis(1500));
        assert_eq!(
            e.to_string(),
            "provider `groq` did not answer within 1500ms (first byte)"
        );
    }
}
