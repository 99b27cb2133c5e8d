//! The fallback loop: walk a plan's candidates until one answers, before any byte
//! reaches the client. Retryable failures (connect, timeout, 5xx, 429) move on to the
//! next candidate; anything else ends the call. The most telling failure is reported.

use std::future::Future;

use crate::api::ApiError;
use crate::providers::{Provider, UpstreamError};

use super::{Candidate, RoutePlan};

/// The outcome of a successful walk: the value, who served it, and how many attempts failed first.
#[derive(Debug)]
pub struct Served<'p, T> {
    pub value: T,
    pub candidate: &'p Candidate,
    pub failed_attempts: u32,
}

/// A failed walk: the error for the client and every attempt's failure, in order.
#[derive(Debug)]
pub struct Exhausted {
    pub error: ApiError,
    pub failures: Vec<(Candidate, UpstreamError)>,
}

/// Calls `attempt` on each candidate in turn until one succeeds or a failure is not retryable.
pub async fn run<'p, T, F, Fut>(
    plan: &'p RoutePlan,
    providers: &'p [Provider],
    mut attempt: F,
) -> Result<Served<'p, T>, Exhausted>
where
    F: FnMut(&'p Candidate, &'p Provider) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let mut failures: Vec<(Candidate, UpstreamError)> = Vec::new();
    for candidate in &plan.candidates {
        let Some(provider) = providers.get(candidate.provider) else {
            continue;
        };
        match attempt(candidate, provider).await {
            Ok(value) => {
                return Ok(Served {
                    value,
                    candidate,
                    failed_attempts: failures.len() as u32,
                });
            }
            Err(e) => {
                tracing::warn!(
                    provider = provider.id(),
                    model = %candidate.upstream,
                    error = e.label(),
                    retryable = e.is_retryable(),
                    "Upstream attempt failed: {e}"
                );
                let stop = !e.is_retryable();
                failures.push((candidate.clone(), e));
                if stop {
                    break;
                }
            }
        }
    }
    let error = failures
        .iter()
        .max_by_key(|(_, e)| e.rank())
        .map(|(_, e)| e.clone().into_api_error())
        .unwrap_or_else(|| ApiError::Unavailable {
            message: format!("no backend is available for `{}`", plan.route),
            retry_after: None,
        });
    Err(Exhausted { error, failures })
}
