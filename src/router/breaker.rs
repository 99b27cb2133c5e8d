//! A circuit breaker per backend: after `threshold` consecutive failures it opens for
//! a cool-down (doubling on each re-open, capped), then lets one probe through
//! (half-open); the probe's success closes it, its failure re-opens it. Its settings are
//! config data (`config::routes`); it keeps state per backend and never picks one.

use std::time::Duration;

use tokio::time::Instant;

/// Re-exported from `config::routes`, where the breaker's settings (config data) live;
/// kept so `router::breaker::BreakerSettings` still names them.
pub use crate::config::routes::BreakerSettings;

/// The state a breaker is in, for metrics and explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { retry_in: Duration },
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 half-open, 2 open: the `bazaar_breaker_state` gauge value.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open { .. } => 2,
        }
    }
}

/// One backend's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    failures: u32,
    opened_until: Option<Instant>,
    reopen_count: u32,
    probe_in_flight: bool,
}

/// What changed when an outcome was recorded (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened { cooldown: Duration },
    Closed,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new()
    }
}

impl Breaker {
    pub fn new() -> Breaker {
        Breaker {
            failures: 0,
            opened_until: None,
            reopen_count: 0,
            probe_in_flight: false,
        }
    }

    /// The current state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.opened_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open {
                retry_in: until - now,
            },
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go to this backend now; a half-open breaker admits one probe.
    pub fn try_admit(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen if self.probe_in_flight => false,
            BreakerState::HalfOpen => {
                self.probe_in_flight = true;
                true
            }
        }
    }

    /// Whether a call could be admitted, without taking the probe slot (for planning).
    pub fn would_admit(&self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen => !self.probe_in_flight,
        }
    }

    pub fn record_success(&mut self) -> Transition {
        self.failures = 0;
        self.probe_in_flight = false;
        if self.opened_until.take().is_some() {
            self.reopen_count = 0;
            return Transition::Closed;
        }
        Transition::None
    }

    pub fn record_failure(&mut self, now: Instant, settings: &BreakerSettings) -> Transition {
        self.failures += 1;
        let was_probe = std::mem::take(&mut self.probe_in_flight);
        if was_probe || self.failures >= settings.threshold {
            let factor = 1u32 << self.reopen_count.min(16);
            let cooldown = settings
                .cooldown
                .saturating_mul(factor)
                .min(settings.max_cooldown);
            self.opened_until = Some(now + cooldown);
            self.reopen_count += 1;
            self.failures = 0;
            return Transition::Opened { cooldown };
        }
        Transition::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_cools_down_probes_and_closes() {
        let s = BreakerSettings {
            threshold: 3,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(60),
        };
        let mut b = Breaker::new();
        for _ in 0..2 {
            assert_eq!(b.record_failure(Instant::now(), &s), Transition::None);
        }
        assert_eq!(
            b.record_failure(Instant::now(), &s),
            Transition::Opened {
                cooldown: Duration::from_secs(10)
            }
        );
        assert!(!b.try_admit(Instant::now()));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.state(Instant::now()), BreakerState::HalfOpen);
        assert!(b.try_admit(Instant::now()), "one probe");
        assert!(!b.try_admit(Instant::now()), "only one probe");
        // The probe fails: open again for twice as long.
        assert_eq!(
            b.record_failure(Instant::now(), &s),
            Transition::Opened {
                cooldown: Duration::from_secs(20)
            }
        );
        tokio::time::advance(Duration::from_secs(19)).await;
        assert!(!b.try_admit(Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.try_admit(Instant::now()));
        assert_eq!(b.record_success(), Transition::Closed);
        assert_eq!(b.state(Instant::now()), BreakerState::Closed);
    }
}
