//! Requests-per-minute and tokens-per-minute limits per key and team, with governor's
//! GCRA limiters (one per scope, created on first use).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Every scope's limiters.
#[derive(Debug, Default)]
pub struct RateLimits {
    limiters: Mutex<HashMap<(String, u32), Arc<DefaultDirectRateLimiter>>>,
}

/// A refused call: which limit (`requests per minute (60)`; the caller names the scope),
/// and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub what: String,
    pub retry_after: Duration,
}

impl RateLimits {
    fn limiter(&self, scope: &str, per_minute: u32) -> Option<Arc<DefaultDirectRateLimiter>> {
        let n = NonZeroU32::new(per_minute)?;
        let mut map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            map.entry((scope.to_string(), per_minute))
                .or_insert_with(|| Arc::new(RateLimiter::direct(Quota::per_minute(n))))
                .clone(),
        )
    }

    /// Takes one request from `scope`'s RPM limit.
    pub fn check_request(&self, scope: &str, rpm: u32) -> Result<(), Limited> {
        let Some(limiter) = self.limiter(&format!("{scope}:rpm"), rpm) else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| Limited {
            what: format!("requests per minute ({rpm})"),
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Takes `tokens` from `scope`'s TPM limit.
    pub fn check_tokens(&self, scope: &str, tpm: u32, tokens: u64) -> Result<(), Limited> {
        let Some(limiter) = self.limiter(&format!("{scope}:tpm"), tpm) else {
            return Ok(());
        };
        let what = format!("tokens per minute ({tpm})");
        let n = NonZeroU32::new(u32::try_from(tokens.max(1)).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Limited {
                what,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            }),
            // More tokens than a whole minute allows: it can never fit.
            Err(_) => Err(Limited {
                what: format!("{what}: this request alone needs {tokens}"),
                retry_after: Duration::from_secs(60),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_refuses_the_excess_with_a_retry_after() {
        let l = RateLimits::default();
        for _ in 0..3 {
            assert!(l.check_request("key:k", 3).is_ok());
        }
        let refused = l.check_request("key:k", 3).unwrap_err();
        assert!(
            refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(20)
        );
        assert!(
            l.check_request("key:other", 3).is_ok(),
            "scopes are separate"
        );
    }

    #[test]
    fn tpm_counts_tokens() {
        let l = RateLimits::default();
        assert!(l.check_tokens("key:k", 1_000, 600).is_ok());
        assert!(l.check_tokens("key:k", 1_000, 600).is_err());
        assert!(l.check_tokens("key:k", 1_000, 5_000).is_err());
    }
}
