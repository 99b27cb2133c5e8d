//! One catalog entry's parts: tier, prices, limits and capabilities.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The three tiers of backend a call can go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Closed frontier APIs at full price.
    Frontier,
    /// Open-weight models on hosted providers.
    OpenHosted,
    /// A server on the operator's own hardware: zero marginal cost.
    Local,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Frontier, Tier::OpenHosted, Tier::Local];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Frontier => "frontier",
            Tier::OpenHosted => "open-hosted",
            Tier::Local => "local",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Tier, String> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown tier `{s}`; expected frontier, open-hosted or local"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_round_trips() {
        for t in Tier::ALL {
            assert_eq!(t.to_string().parse::<Tier>().unwrap(), t);
        }
    }
}
