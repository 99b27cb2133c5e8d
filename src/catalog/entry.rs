//! One catalog entry's parts: tier, prices, limits, capabilities, quality priors.
//! Money is integers: prices in micro-dollars per million tokens (exact for any price
//! quoted to six decimals), so a call's cost in nano-dollars is exact integer arithmetic.

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
    type Err = super::CatalogError;
    fn from_str(s: &str) -> Result<Tier, super::CatalogError> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| super::CatalogError::UnknownTier(s.to_string()))
    }
}

/// Prices in micro-dollars per million tokens ($2.50/Mtok = 2_500_000). `None` is
/// "unknown", never zero: an unknown price must not be billed as free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input: Option<u64>,
    /// Cached-input reads; falls back to `input` when unknown.
    #[serde(default)]
    pub cached_input: Option<u64>,
    /// Cache writes; falls back to `input` when unknown.
    #[serde(default)]
    pub cache_write: Option<u64>,
    /// Cache writes that last an hour (Anthropic's 1-hour cache); falls back to twice
    /// `input`, Anthropic's rate for them, when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<u64>,
    pub output: Option<u64>,
    /// Reasoning tokens; falls back to `output` when unknown.
    #[serde(default)]
    pub reasoning: Option<u64>,
}

impl Price {
    /// A price known in full, with cached/write/reasoning at the input/output rates.
    pub const fn flat(input: u64, output: u64) -> Price {
        Price {
            input: Some(input),
            cached_input: None,
            cache_write: None,
            cache_write_1h: None,
            output: Some(output),
            reasoning: None,
        }
    }

    /// Free (a local backend with no configured running cost).
    pub const FREE: Price = Price::flat(0, 0);
}

/// What a model can take in and do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub tools: bool,
    #[serde(default)]
    pub vision: bool,
    #[serde(default)]
    pub json_schema: bool,
    #[serde(default)]
    pub reasoning: bool,
    #[serde(default)]
    pub embeddings: bool,
}

/// Size limits in tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub context: Option<u64>,
    pub max_output: Option<u64>,
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

/// Parses a dollar amount written in decimal ("2.5", "0.075", "3") into integer
/// micro-dollars, exactly; more than six decimals, a sign or junk is `None`.
pub fn parse_usd_micros(text: &str) -> Option<u64> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.len() > 6 {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut frac_micros: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..6 {
        frac_micros *= 10;
    }
    whole.checked_mul(1_000_000)?.checked_add(frac_micros)
}

#[cfg(test)]
mod money_tests {
    use super::*;

    #[test]
    fn parses_decimal_dollars_exactly() {
        assert_eq!(parse_usd_micros("2.5"), Some(2_500_000));
        assert_eq!(parse_usd_micros("0.075"), Some(75_000));
        assert_eq!(parse_usd_micros("3"), Some(3_000_000));
        assert_eq!(parse_usd_micros(".1"), Some(100_000));
        assert_eq!(parse_usd_micros("0.0000001"), None);
        assert_eq!(parse_usd_micros("-1"), None);
        assert_eq!(parse_usd_micros("1e3"), None);
    }
}
