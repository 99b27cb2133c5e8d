//! Routing settings as config states them: the policy that orders candidates, the
//! weights of the balanced utility and the circuit breaker's thresholds. Plain data:
//! the router reads these and owns what they mean at call time; nothing here routes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How to order the candidates that passed the filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Lowest expected cost of this request; ties by latency.
    Cheapest,
    /// Lowest expected latency (time to first token + generation, with load).
    Fastest,
    /// Highest quality prior for the request's task; ties by cost.
    Quality,
    /// Highest weighted utility of quality, cost and latency, each normalised over the candidates.
    Balanced,
    /// The cheapest candidate whose quality for the task clears the route's floor.
    CheapestAboveQuality,
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::Cheapest,
        Policy::Fastest,
        Policy::Quality,
        Policy::Balanced,
        Policy::CheapestAboveQuality,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Cheapest => "cheapest",
            Policy::Fastest => "fastest",
            Policy::Quality => "quality",
            Policy::Balanced => "balanced",
            Policy::CheapestAboveQuality => "cheapest-above-quality",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown policy `{s}`; expected one of {}",
                    Policy::ALL.map(|p| p.as_str()).join(", ")
                )
            })
    }
}

/// Weights of the `balanced` utility; only their ratios matter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub cost: f64,
    pub latency: f64,
    pub quality: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            cost: 1.0,
            latency: 0.5,
            quality: 1.0,
        }
    }
}

/// Circuit breaker settings (`[router.breaker]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub threshold: u32,
    /// First cool-down; doubles on each consecutive re-open up to `max_cooldown`.
    pub cooldown: Duration,
    pub max_cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            threshold: 5,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip() {
        for p in Policy::ALL {
            assert_eq!(p.to_string().parse::<Policy>().unwrap(), p);
        }
        assert!("random".parse::<Policy>().is_err());
    }
}
