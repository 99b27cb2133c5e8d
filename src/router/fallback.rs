//! The fallback loop: walk a plan's candidates until one answers, before any byte
//! reaches the client. Retryable failures (connect, timeout, 5xx, 429) move on to the
//! next candidate (after a short jittered backoff when it is on a provider that already
//! failed in this call), within the call's deadline; a 429's
//! `Retry-After` holds that backend back; the breaker learns from every attempt.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::breaker::{BreakerSettings, Transition};
use super::plan::RouterState;
use super::stats::{BackendStats, InFlight, Outcome};
use super::{Candidate, RoutePlan};
use crate::api::ApiError;
use crate::providers::{client_error, Provider, UpstreamError, UpstreamKind, UpstreamMeta};

/// The outcome of a successful walk: the value, who served it, and how many attempts failed first.
#[derive(Debug)]
pub struct Served<'p, T> {
    pub value: T,
    pub candidate: &'p Candidate,
    pub failed_attempts: u32,
    /// The winning attempt; report its end with `AttemptRecord::finish`.
    pub attempt: AttemptRecord,
}

/// A failed walk: the error for the client and every attempt's failure, in order.
#[derive(Debug)]
pub struct Exhausted {
    pub error: ApiError,
    pub failures: Vec<(Candidate, UpstreamError)>,
}

/// The attempt that answered: keeps the backend's in-flight count until finished.
#[derive(Debug)]
pub struct AttemptRecord {
    stats: Arc<BackendStats>,
    _in_flight: InFlight,
    started: Instant,
    /// From sending the request to the reply (non-streamed) or the first chunk (streamed).
    pub first_byte: Duration,
    /// `provider/upstream`.
    pub backend: String,
    session: Option<u64>,
    /// Metric labels: provider, catalog model id, tier.
    labels: [String; 3],
}

impl AttemptRecord {
    /// Reports how the call ended (after the last byte for streams) to the live stats.
    pub fn finish(
        self,
        router: &RouterState,
        breaker: &BreakerSettings,
        affinity_ttl: Duration,
        output_tokens: Option<u64>,
        meta: Option<UpstreamMeta>,
        failure: Option<&UpstreamError>,
    ) -> Duration {
        let now = Instant::now();
        let total = now - self.started;
        let outcome = match failure {
            None => Outcome::Success {
                ttft: self.first_byte,
                total,
                output_tokens,
            },
            Some(e) => Outcome::Failure {
                retry_after: e.retry_after(),
            },
        };
        let transition = self.stats.record(outcome, meta, now, breaker);
        log_transition(&self.backend, transition);
        let labels = [
            self.labels[0].as_str(),
            self.labels[1].as_str(),
            self.labels[2].as_str(),
        ];
        match failure {
            None => {
                router
                    .metrics
                    .upstream_duration
                    .with_label_values(&labels)
                    .observe(total.as_secs_f64());
                router
                    .metrics
                    .upstream_ttft
                    .with_label_values(&labels)
                    .observe(self.first_byte.as_secs_f64());
            }
            Some(e) => {
                router
                    .metrics
                    .upstream_failures
                    .with_label_values(&[labels[0], labels[1], e.label().as_str()])
                    .inc();
            }
        }
        if failure.is_none() {
            if let Some(session) = self.session {
                router
                    .affinity
                    .set(session, self.backend.clone(), now, affinity_ttl);
            }
        }
        total
    }
}

fn log_transition(backend: &str, transition: Transition) {
    match transition {
        Transition::Opened { cooldown } => {
            tracing::warn!(
                backend,
                cooldown_ms = cooldown.as_millis() as u64,
                "Circuit opened after repeated failures."
            )
        }
        Transition::Closed => {
            tracing::info!(backend, "Circuit closed: the backend answered again.")
        }
        Transition::None => {}
    }
}

/// Backoff before attempt `n` (1-based, after a failure): full jitter over 25 ms × 2ⁿ⁻¹, capped at 400 ms.
pub fn backoff(n: u32, jitter: f64) -> Duration {
    let ceiling = Duration::from_millis(25)
        .saturating_mul(1 << n.saturating_sub(1).min(8))
        .min(Duration::from_millis(400));
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Calls `attempt` on each candidate in turn until one succeeds, a failure is not
/// retryable, or the deadline passes.
pub async fn run<'p, T, F, Fut>(
    plan: &'p RoutePlan,
    providers: &'p [Provider],
    router: &RouterState,
    breaker: &BreakerSettings,
    deadline: Instant,
    mut attempt: F,
) -> Result<Served<'p, T>, Exhausted>
where
    F: FnMut(&'p Candidate, &'p Provider) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let mut failures: Vec<(Candidate, UpstreamError)> = Vec::new();
    let mut skipped_open = 0;
    for candidate in &plan.candidates {
        let Some(provider) = providers.get(candidate.provider) else {
            continue;
        };
        if Instant::now() >= deadline {
            break;
        }
        let stats = router.stats.backend(provider.id(), &candidate.upstream);
        if !stats.try_admit(Instant::now()) {
            skipped_open += 1;
            continue;
        }
        // Back off before going back to a provider that just failed (it may be
        // overloaded); a different provider is tried at once.
        let same_provider_failures = failures
            .iter()
            .filter(|(c, e)| {
                c.provider == candidate.provider && e.kind != UpstreamKind::Unsupported
            })
            .count() as u32;
        if same_provider_failures > 0 {
            let wait = backoff(same_provider_failures, rand::random::<f64>());
            tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
        }
        let in_flight = stats.start();
        let started = Instant::now();
        match attempt(candidate, provider).await {
            Ok(value) => {
                return Ok(Served {
                    value,
                    candidate,
                    failed_attempts: failures.len() as u32,
                    attempt: AttemptRecord {
                        stats,
                        _in_flight: in_flight,
                        started,
                        first_byte: started.elapsed(),
                        backend: format!("{}/{}", provider.id(), candidate.upstream),
                        session: plan.session,
                        labels: [
                            provider.id().to_string(),
                            candidate.model.to_string(),
                            candidate.facts.tier.as_str().to_string(),
                        ],
                    },
                });
            }
            // The request asks what this backend's wire format cannot express: not the
            // backend's failure (the breaker does not hear of it), and another may serve it.
            Err(e) if e.kind == UpstreamKind::Unsupported => {
                drop(in_flight);
                tracing::debug!(backend = %format!("{}/{}", provider.id(), candidate.upstream), "Backend cannot express the request: {e}");
                failures.push((candidate.clone(), e));
            }
            Err(e) => {
                drop(in_flight);
                let transition = stats.record(
                    Outcome::Failure {
                        retry_after: e.retry_after(),
                    },
                    None,
                    Instant::now(),
                    breaker,
                );
                let backend = format!("{}/{}", provider.id(), candidate.upstream);
                router
                    .metrics
                    .upstream_failures
                    .with_label_values(&[provider.id(), &candidate.model, e.label().as_str()])
                    .inc();
                tracing::warn!(backend = %backend, error = %e.label(), retryable = e.is_retryable(), "Upstream attempt failed: {e}");
                log_transition(&backend, transition);
                let stop = !e.is_retryable();
                failures.push((candidate.clone(), e));
                if stop {
                    break;
                }
            }
        }
    }
    let error =
        client_error(failures.iter().map(|(_, e)| e)).unwrap_or_else(|| ApiError::Unavailable {
            message: if skipped_open > 0 {
                format!(
                    "every backend for `{}` has an open circuit; try again shortly",
                    plan.route
                )
            } else {
                format!("no backend answered `{}` before the deadline", plan.route)
            },
            retry_after: Some(Duration::from_secs(1)),
        });
    Err(Exhausted { error, failures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(25));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(10, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(3, 0.0), Duration::ZERO);
    }
}
