//! The attempt loop: walk a plan's candidates until one answers, before any byte
//! reaches the client, within the call's deadline (the longest total timeout of the
//! plan's providers). Retryable failures (connect, timeout, 5xx, 429) move on to the next
//! candidate (after a short jittered backoff when it is on a provider that already failed
//! in this call); a 429's `Retry-After` holds that backend back; a stream counts as
//! answered once its first chunk arrives. The live stats and the breaker hear of every
//! attempt, a stream's when it ends. Nothing here bills or writes a response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use super::breaker::{BreakerSettings, Transition};
use super::plan::RouterState;
use super::stats::{BackendStats, InFlight, Outcome};
use super::{Candidate, RoutePlan};
use crate::api::ApiError;
use crate::config::{Config, RouterConfig};
use crate::providers::{
    client_error, Attempt, Chunk, ChunkStream, Provider, Reply, StreamReply, UpstreamError,
    UpstreamKind, UpstreamMeta,
};
use crate::telemetry::metrics::TargetSeries;

/// One walk over a plan: where to send, what to report to, and until when.
#[derive(Clone, Copy)]
pub struct Walk<'p> {
    pub plan: &'p RoutePlan,
    /// The runtime's adapters, indexed by `Candidate::provider`.
    pub providers: &'p [Provider],
    pub router: &'p Arc<RouterState>,
    pub settings: &'p RouterConfig,
    /// From `deadline`: the call must be over by then.
    pub deadline: Instant,
    pub request_id: &'p str,
}

/// A successful walk: the value, who served it, and how many attempts failed first.
#[derive(Debug)]
pub struct Served<'p, T> {
    pub value: T,
    pub candidate: &'p Candidate,
    pub failed_attempts: u32,
    /// From sending the request to the reply (non-streamed) or the first chunk (streamed).
    pub ttft: Duration,
}

/// A stream whose first chunk has arrived; the rest reports the attempt when it ends.
pub struct Streamed {
    pub first: Chunk,
    pub rest: ChunkStream,
}

/// A failed walk: the error for the client and every attempt's failure, in order.
#[derive(Debug)]
pub struct Exhausted {
    pub error: ApiError,
    pub failures: Vec<(Candidate, UpstreamError)>,
}

/// The call's deadline: the longest total timeout among the plan's providers, from now.
pub fn deadline(config: &Config, plan: &RoutePlan) -> Instant {
    let total = plan
        .candidates
        .iter()
        .filter_map(|c| config.providers.get(c.provider))
        .map(|p| p.timeouts.total)
        .max()
        .unwrap_or(Duration::from_secs(600));
    Instant::now() + total
}

/// Walks the plan for a complete reply; the answering attempt is reported at once.
pub async fn reply<'p, F, Fut>(
    walk: Walk<'p>,
    mut attempt: F,
) -> Result<Served<'p, Reply>, Exhausted>
where
    F: FnMut(&'p Provider, Attempt<'p>) -> Fut,
    Fut: Future<Output = Result<Reply, UpstreamError>>,
{
    let (served, record) = run(walk, |_, provider, at| attempt(provider, at)).await?;
    let reply = &served.value;
    record.finish(
        walk.router,
        &walk.settings.breaker,
        walk.settings.affinity_ttl,
        reply.usage.map(|u| u.completion_tokens()),
        Some(reply.meta),
        None,
    );
    Ok(served)
}

/// Walks the plan for a stream; an attempt answers once its first chunk arrives, so a
/// stream that fails before any byte still falls back. The attempt is reported when the
/// rest of the stream ends, fails or is dropped.
pub async fn stream<'p, F, Fut>(
    walk: Walk<'p>,
    mut attempt: F,
) -> Result<Served<'p, Streamed>, Exhausted>
where
    F: FnMut(&'p Provider, Attempt<'p>) -> Fut,
    Fut: Future<Output = Result<StreamReply, UpstreamError>>,
{
    let (served, record) = run(walk, |_, provider, at| {
        let reply = attempt(provider, at);
        async move { first_chunk(reply.await?, provider.id()).await }
    })
    .await?;
    let (first, reply) = served.value;
    let rest = Watched {
        inner: reply.chunks,
        record: Some(record),
        router: walk.router.clone(),
        breaker: walk.settings.breaker,
        affinity_ttl: walk.settings.affinity_ttl,
        meta: reply.meta,
        output_tokens: first
            .usage
            .filter(|u| u.is_reported())
            .map(|u| u.completion_tokens()),
    };
    Ok(Served {
        value: Streamed {
            first,
            rest: Box::pin(rest),
        },
        candidate: served.candidate,
        failed_attempts: served.failed_attempts,
        ttft: served.ttft,
    })
}

/// Waits for the first chunk, so a stream that fails before any byte can still fall back.
async fn first_chunk(
    mut reply: StreamReply,
    provider: &str,
) -> Result<(Chunk, StreamReply), UpstreamError> {
    match reply.chunks.next().await {
        Some(Ok(chunk)) => Ok((chunk, reply)),
        Some(Err(e)) => Err(e),
        None => Err(UpstreamError::protocol(
            provider,
            "the stream ended before its first chunk",
        )),
    }
}

/// The rest of a stream, reporting its attempt to the live stats once, however it ends
/// (dropped early: the client went away, which is not the backend's failure).
struct Watched {
    inner: ChunkStream,
    record: Option<AttemptRecord>,
    router: Arc<RouterState>,
    breaker: BreakerSettings,
    affinity_ttl: Duration,
    meta: UpstreamMeta,
    output_tokens: Option<u64>,
}

impl Watched {
    fn finish(&mut self, failure: Option<&UpstreamError>) {
        if let Some(record) = self.record.take() {
            record.finish(
                &self.router,
                &self.breaker,
                self.affinity_ttl,
                self.output_tokens,
                Some(self.meta),
                failure,
            );
        }
    }
}

impl Stream for Watched {
    type Item = Result<Chunk, UpstreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.inner.as_mut().poll_next(cx));
        match &item {
            Some(Ok(chunk)) => {
                // A running report (a stream's usage so far) is not the output's count.
                if let Some(usage) = chunk.usage.filter(|u| u.is_reported()) {
                    self.output_tokens = Some(usage.completion_tokens());
                }
            }
            Some(Err(e)) => self.finish(Some(e)),
            None => self.finish(None),
        }
        Poll::Ready(item)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// The attempt that answered: keeps the backend's in-flight count until finished.
#[derive(Debug)]
struct AttemptRecord {
    stats: Arc<BackendStats>,
    _in_flight: InFlight,
    started: Instant,
    first_byte: Duration,
    /// The backend's series, whose labels name it (provider, public model, tier).
    series: Arc<TargetSeries>,
    /// The upstream model id: `provider/upstream` names the backend in logs and affinity.
    upstream: Arc<str>,
    session: Option<u64>,
}

impl AttemptRecord {
    /// Reports how the call ended (after the last byte for streams) to the live stats.
    fn finish(
        self,
        router: &RouterState,
        breaker: &BreakerSettings,
        affinity_ttl: Duration,
        output_tokens: Option<u64>,
        meta: Option<UpstreamMeta>,
        failure: Option<&UpstreamError>,
    ) {
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
        if !matches!(transition, Transition::None) {
            log_transition(&self.backend(), transition);
        }
        let series = &self.series;
        match failure {
            None => {
                series.upstream_duration.observe(total.as_secs_f64());
                series.upstream_ttft.observe(self.first_byte.as_secs_f64());
            }
            Some(e) => {
                router
                    .metrics
                    .upstream_failures
                    .with_label_values(&[&*series.provider, &*series.model, e.label().as_str()])
                    .inc();
            }
        }
        if failure.is_none() {
            if let Some(session) = self.session {
                router
                    .affinity
                    .set(session, self.backend(), now, affinity_ttl);
            }
        }
    }

    /// `provider/upstream`.
    fn backend(&self) -> String {
        format!("{}/{}", self.series.provider, self.upstream)
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
/// retryable, or the deadline passes; returns the answer with its unreported attempt.
async fn run<'p, T, F, Fut>(
    walk: Walk<'p>,
    mut attempt: F,
) -> Result<(Served<'p, T>, AttemptRecord), Exhausted>
where
    F: FnMut(&'p Candidate, &'p Provider, Attempt<'p>) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let Walk {
        plan,
        providers,
        router,
        settings,
        deadline,
        request_id,
    } = walk;
    let breaker = &settings.breaker;
    let mut failures: Vec<(Candidate, UpstreamError)> = Vec::new();
    let mut skipped_open = 0;
    for candidate in &plan.candidates {
        let Some(provider) = providers.get(candidate.provider) else {
            continue;
        };
        if Instant::now() >= deadline {
            break;
        }
        let stats = router
            .stats
            .backend_in(&candidate.stats, provider.id(), &candidate.upstream)
            .into_owned();
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
        let at = Attempt {
            upstream_model: &candidate.upstream,
            request_id,
            deadline,
        };
        // Every failure carries upstream text (an error body, a reply that failed to
        // parse): it is scrubbed here, once, before it is logged, kept or shown.
        let outcome = attempt(candidate, provider, at)
            .await
            .map_err(|e| e.scrubbed(provider.config()));
        match outcome {
            Ok(value) => {
                let first_byte = started.elapsed();
                let record = AttemptRecord {
                    stats,
                    _in_flight: in_flight,
                    started,
                    first_byte,
                    series: router.metrics.target_series(
                        &candidate.series,
                        provider.id(),
                        &candidate.model,
                        candidate.facts.tier.as_str(),
                    ),
                    upstream: candidate.upstream.clone(),
                    session: plan.session,
                };
                let served = Served {
                    value,
                    candidate,
                    failed_attempts: failures.len() as u32,
                    ttft: first_byte,
                };
                return Ok((served, record));
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
    let error = match client_error(failures.iter().map(|(_, e)| e)) {
        // Rate-limited everywhere it went: the soonest release counts the backends the
        // plan left out for an earlier Retry-After too.
        Some(ApiError::RateLimited {
            message,
            retry_after,
        }) => ApiError::RateLimited {
            message,
            retry_after: retry_after
                .into_iter()
                .chain(plan.soonest_rate_limit_release())
                .min(),
        },
        Some(error) => error,
        None => ApiError::Unavailable {
            message: if skipped_open > 0 {
                format!(
                    "every backend for `{}` has an open circuit; try again shortly",
                    plan.route
                )
            } else {
                format!("no backend answered `{}` before the deadline", plan.route)
            },
            retry_after: Some(Duration::from_secs(1)),
        },
    };
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
