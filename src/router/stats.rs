//! Live statistics per backend (provider + upstream model): EWMA of time to first
//! token, total latency and output tokens/s, error rate, in-flight calls, rate-limit
//! headroom, a `Retry-After` hold, and the circuit breaker. Shared across reloads.

use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::breaker::{Breaker, BreakerSettings, BreakerState, Transition};
use crate::config::Slot;
use crate::providers::UpstreamMeta;

/// Smoothing of the moving averages: each new sample weighs `ALPHA`.
pub const ALPHA: f64 = 0.2;

/// An exponentially weighted moving average; empty until the first sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ewma(Option<f64>);

impl Ewma {
    pub fn observe(&mut self, sample: f64) {
        self.0 = Some(match self.0 {
            None => sample,
            Some(v) => v + ALPHA * (sample - v),
        });
    }

    pub fn get(&self) -> Option<f64> {
        self.0
    }
}

/// The mutable part of one backend's stats.
#[derive(Debug, Default)]
struct Inner {
    ttft_ms: Ewma,
    latency_ms: Ewma,
    tokens_per_sec: Ewma,
    error_rate: Ewma,
    remaining_requests: Option<u64>,
    remaining_tokens: Option<u64>,
    hold_until: Option<Instant>,
    breaker: Breaker,
}

/// One backend's live stats.
#[derive(Debug, Default)]
pub struct BackendStats {
    inner: Mutex<Inner>,
    in_flight: AtomicI64,
}

/// A copy of one backend's stats at a moment, for scoring and explain.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub ttft_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub tokens_per_sec: Option<f64>,
    pub error_rate: Option<f64>,
    pub in_flight: i64,
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    /// Held back after a 429 until this long from now.
    pub held_for: Option<Duration>,
    pub breaker: Option<BreakerState>,
}

/// How one attempt ended, as the stats learn it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Success {
        ttft: Duration,
        total: Duration,
        output_tokens: Option<u64>,
    },
    Failure {
        retry_after: Option<Duration>,
    },
}

impl BackendStats {
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Snapshot {
            ttft_ms: inner.ttft_ms.get(),
            latency_ms: inner.latency_ms.get(),
            tokens_per_sec: inner.tokens_per_sec.get(),
            error_rate: inner.error_rate.get(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            remaining_requests: inner.remaining_requests,
            remaining_tokens: inner.remaining_tokens,
            held_for: inner.hold_until.filter(|t| *t > now).map(|t| t - now),
            breaker: Some(inner.breaker.state(now)),
        }
    }

    /// Takes the breaker's admission (a half-open breaker lets one probe through).
    pub fn try_admit(&self, now: Instant) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.breaker.try_admit(now)
    }

    /// Learns from an attempt; returns the breaker transition it caused.
    pub fn record(
        &self,
        outcome: Outcome,
        meta: Option<UpstreamMeta>,
        now: Instant,
        breaker: &BreakerSettings,
    ) -> Transition {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(meta) = meta {
            inner.remaining_requests = meta.remaining_requests.or(inner.remaining_requests);
            inner.remaining_tokens = meta.remaining_tokens.or(inner.remaining_tokens);
        }
        match outcome {
            Outcome::Success {
                ttft,
                total,
                output_tokens,
            } => {
                inner.ttft_ms.observe(ttft.as_secs_f64() * 1000.0);
                inner.latency_ms.observe(total.as_secs_f64() * 1000.0);
                let generating = total.saturating_sub(ttft).as_secs_f64();
                if let Some(tokens) = output_tokens.filter(|t| *t > 1) {
                    if generating > 0.0 {
                        inner.tokens_per_sec.observe(tokens as f64 / generating);
                    }
                }
                inner.error_rate.observe(0.0);
                inner.hold_until = None;
                inner.breaker.record_success()
            }
            Outcome::Failure { retry_after } => {
                inner.error_rate.observe(1.0);
                if let Some(after) = retry_after {
                    inner.hold_until = Some(now + after);
                }
                inner.breaker.record_failure(now, breaker)
            }
        }
    }

    /// Counts a call in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// Decrements the backend's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<BackendStats>);

impl InFlight {
    pub fn stats(&self) -> &Arc<BackendStats> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stats of every backend seen, by provider id then upstream model id.
#[derive(Debug)]
pub struct Stats {
    // Looked up for a backend's first call through a config (then its target's
    // `StatsSlot` holds it): a fast non-cryptographic hash (keys are config-defined
    // ids, not attacker-chosen).
    backends: RwLock<FxHashMap<String, FxHashMap<String, Arc<BackendStats>>>>,
    /// Which `Stats` this is, for the slots it fills (`StatsSlot`).
    id: u64,
}

impl Default for Stats {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Stats {
            backends: RwLock::default(),
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// A config target's handle on its backend's stats, filled by the first `Stats` that
/// looks the backend up through it (the gateway's, which lives across reloads: a
/// reloaded config's targets look theirs up once more). Backends are never removed from
/// a `Stats`, so the handle stays the one its map holds.
pub type StatsSlot = Slot<Arc<BackendStats>>;

impl Stats {
    /// The stats of `provider`/`upstream`, created on first use. The common case is
    /// a read lock and two lookups by `&str`, with no allocation.
    pub fn backend(&self, provider: &str, upstream: &str) -> Arc<BackendStats> {
        let map = self.backends.read().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(provider).and_then(|m| m.get(upstream)) {
            return b.clone();
        }
        drop(map);
        let mut map = self.backends.write().unwrap_or_else(|p| p.into_inner());
        map.entry(provider.to_string())
            .or_default()
            .entry(upstream.to_string())
            .or_default()
            .clone()
    }

    /// The stats of `provider`/`upstream` through a target's `slot`: the handle the slot
    /// holds, or (the first time through this config) the lookup of `backend`, kept in
    /// the slot.
    pub fn backend_in<'s>(
        &self,
        slot: &'s StatsSlot,
        provider: &str,
        upstream: &str,
    ) -> Cow<'s, Arc<BackendStats>> {
        if let Some(b) = slot.get(self.id) {
            return Cow::Borrowed(b);
        }
        let b = self.backend(provider, upstream);
        slot.fill(self.id, b.clone());
        Cow::Owned(b)
    }

    /// Every backend's snapshot as (`provider`, `upstream`, snapshot), sorted, for metrics.
    pub fn all(&self, now: Instant) -> Vec<(String, String, Snapshot)> {
        let map = self.backends.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = map
            .iter()
            .flat_map(|(p, models)| {
                models
                    .iter()
                    .map(move |(m, v)| (p.clone(), m.clone(), v.snapshot(now)))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_moves_toward_samples() {
        let mut e = Ewma::default();
        assert_eq!(e.get(), None);
        e.observe(100.0);
        e.observe(200.0);
        assert!((e.get().unwrap() - 120.0).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_a_backend_back_until_it_passes() {
        let b = Arc::new(BackendStats::default());
        let s = BreakerSettings::default();
        b.record(
            Outcome::Failure {
                retry_after: Some(Duration::from_secs(3)),
            },
            None,
            Instant::now(),
            &s,
        );
        assert_eq!(
            b.snapshot(Instant::now()).held_for,
            Some(Duration::from_secs(3))
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(b.snapshot(Instant::now()).held_for, None);
    }

    #[tokio::test(start_paused = true)]
    async fn ewma_latency_and_throughput_learn_from_successes() {
        let b = Arc::new(BackendStats::default());
        let s = BreakerSettings::default();
        for _ in 0..20 {
            let outcome = Outcome::Success {
                ttft: Duration::from_millis(100),
                total: Duration::from_millis(1100),
                output_tokens: Some(50),
            };
            b.record(outcome, None, Instant::now(), &s);
        }
        let snap = b.snapshot(Instant::now());
        assert!((snap.ttft_ms.unwrap() - 100.0).abs() < 1e-6);
        assert!((snap.tokens_per_sec.unwrap() - 50.0).abs() < 1e-6);
        let guard = b.start();
        assert_eq!(b.snapshot(Instant::now()).in_flight, 1);
        drop(guard);
        assert_eq!(b.snapshot(Instant::now()).in_flight, 0);
    }
}
