//! Usage × price = cost, in integer nano-dollars. A bucket with tokens and no known
//! price makes the whole cost unknown (`None`), never zero. A markup is integer basis
//! points on top, shown, never hidden.

use crate::api::Usage;
use crate::catalog::Price;

/// The cost of `usage` at `price` plus `markup_bp` basis points (100 bp = 1%), in
/// nano-dollars; `None` when a bucket with tokens has no known price. A cost too large
/// to count is `u64::MAX` (more than any budget), never wrapped or dropped.
pub fn cost_nanos(usage: &Usage, price: &Price, markup_bp: u32) -> Option<u64> {
    let input = price.input;
    let output = price.output;
    let (writes, writes_1h) = usage.cache_writes();
    let buckets = [
        (usage.input, input),
        (usage.cached_input, price.cached_input.or(input)),
        (writes, price.cache_write.or(input)),
        (
            writes_1h,
            price.cache_write_1h.or(input.map(|p| p.saturating_mul(2))),
        ),
        (usage.output, output),
        (usage.reasoning, price.reasoning.or(output)),
    ];
    // micro-dollars per million tokens × tokens / 1000 = nano-dollars.
    let mut total: u128 = 0;
    for (tokens, per_mtok) in buckets {
        if tokens == 0 {
            continue;
        }
        // u64 × u64 fits in u128; only the sum of six can overflow.
        total = total.saturating_add(tokens as u128 * per_mtok? as u128);
    }
    // Every call's sum fits in 64 bits: its divisions need no 128-bit arithmetic, and
    // without a markup there is nothing to multiply (the same result either way).
    if let Ok(total) = u64::try_from(total) {
        let base = total.div_ceil(1000);
        if markup_bp == 0 {
            return Some(base);
        }
        if let Some(scaled) = base.checked_mul(10_000 + u64::from(markup_bp)) {
            return Some(scaled / 10_000);
        }
    }
    let base = total.div_ceil(1000);
    let marked = base.saturating_mul(10_000 + markup_bp as u128) / 10_000;
    Some(u64::try_from(marked).unwrap_or(u64::MAX))
}

/// Nano-dollars as a USD decimal string with nine places (`"0.000123450"`).
pub fn usd(nanos: u64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// Nano-dollars as a JSON number of USD, for display fields such as `usage.cost`.
pub fn usd_number(nanos: u64) -> serde_json::Number {
    // Display only: the ledger keeps the integer.
    serde_json::Number::from_f64(nanos as f64 / 1e9).unwrap_or_else(|| serde_json::Number::from(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_hours_cache_writes_have_their_own_price_twice_input_when_unset() {
        let usage = Usage {
            cache_write: 3_000,
            cache_write_1h: 2_000,
            ..Default::default()
        };
        let mut price = Price::flat(3_000_000, 15_000_000);
        price.cache_write = Some(3_750_000);
        // 1,000 × $3.75 + 2,000 × $6 per million tokens, in nano-dollars.
        let want = (1_000 * 3_750_000 + 2_000 * 6_000_000) / 1000;
        assert_eq!(cost_nanos(&usage, &price, 0), Some(want));
        price.cache_write_1h = Some(5_000_000);
        let want = (1_000 * 3_750_000 + 2_000 * 5_000_000) / 1000;
        assert_eq!(cost_nanos(&usage, &price, 0), Some(want));
        // Without an hour's writes the price of an hour plays no part.
        let five_minutes = Usage {
            cache_write_1h: 0,
            ..usage
        };
        assert_eq!(
            cost_nanos(&five_minutes, &price, 0),
            Some(3_000 * 3_750_000 / 1000)
        );
    }

    #[test]
    fn an_absurd_usage_costs_the_most_not_nothing() {
        let price = Price {
            input: Some(u64::MAX),
            cached_input: None,
            cache_write: None,
            cache_write_1h: None,
            output: Some(u64::MAX),
            reasoning: None,
        };
        let max = u(u64::MAX, u64::MAX, u64::MAX, u64::MAX, u64::MAX);
        assert_eq!(cost_nanos(&max, &price, u32::MAX), Some(u64::MAX));
        let big = Price {
            input: Some(1_000_000),
            ..price
        };
        assert_eq!(
            cost_nanos(&u(u64::MAX, 0, 0, 0, 0), &big, 0),
            Some(u64::MAX)
        );
    }

    fn u(input: u64, cached: u64, write: u64, output: u64, reasoning: u64) -> Usage {
        Usage {
            input,
            cached_input: cached,
            cache_write: write,
            cache_write_1h: 0,
            output,
            reasoning,
            estimated: Default::default(),
        }
    }

    #[test]
    fn golden_costs_per_provider_usage_shape() {
        // OpenAI gpt-4o: 1,000 prompt tokens of which 400 cached, 200 output.
        let gpt4o = Price {
            input: Some(2_500_000),
            cached_input: Some(1_250_000),
            cache_write: None,
            cache_write_1h: None,
            output: Some(10_000_000),
            reasoning: None,
        };
        assert_eq!(
            cost_nanos(&u(600, 400, 0, 200, 0), &gpt4o, 0),
            Some(1_500_000 + 500_000 + 2_000_000)
        );
        // Anthropic claude-sonnet-4-5: cache reads at $0.30, cache writes at $3.75.
        let sonnet = Price {
            input: Some(3_000_000),
            cached_input: Some(300_000),
            cache_write: Some(3_750_000),
            cache_write_1h: None,
            output: Some(15_000_000),
            reasoning: None,
        };
        assert_eq!(
            cost_nanos(&u(100, 2_000, 1_000, 50, 0), &sonnet, 0),
            Some(300_000 + 600_000 + 3_750_000 + 750_000)
        );
        // Gemini 2.5 flash: thoughts (reasoning) tokens at the output price.
        let flash = Price {
            input: Some(300_000),
            cached_input: Some(30_000),
            cache_write: None,
            cache_write_1h: None,
            output: Some(2_500_000),
            reasoning: None,
        };
        assert_eq!(
            cost_nanos(&u(1_000, 0, 0, 100, 900), &flash, 0),
            Some(300_000 + 250_000 + 2_250_000)
        );
        // o3 reasoning tokens.
        let o3 = Price {
            input: Some(2_000_000),
            cached_input: Some(500_000),
            cache_write: None,
            cache_write_1h: None,
            output: Some(8_000_000),
            reasoning: None,
        };
        assert_eq!(
            cost_nanos(&u(10, 0, 0, 10, 1_000), &o3, 0),
            Some(20_000 + 80_000 + 8_000_000)
        );
        // A 10% markup.
        assert_eq!(
            cost_nanos(&u(1_000_000, 0, 0, 0, 0), &gpt4o, 1_000),
            Some(2_750_000_000)
        );
    }

    #[test]
    fn unknown_price_is_unknown_not_free() {
        let half = Price {
            input: Some(1_000_000),
            cached_input: None,
            cache_write: None,
            cache_write_1h: None,
            output: None,
            reasoning: None,
        };
        assert_eq!(cost_nanos(&u(10, 0, 0, 5, 0), &half, 0), None);
        assert_eq!(cost_nanos(&u(10, 0, 0, 0, 0), &half, 0), Some(10_000));
        assert_eq!(cost_nanos(&u(0, 0, 0, 0, 0), &Price::default(), 0), Some(0));
        assert_eq!(usd(1_234_567_890), "1.234567890");
    }

    proptest! {
        /// Cost is never negative (unsigned) and never decreases when a token count grows.
        #[test]
        fn cost_is_monotonic(base in proptest::array::uniform5(0u64..1_000_000), bucket in 0usize..5, extra in 1u64..1_000_000,
                             prices in proptest::array::uniform5(0u64..100_000_000), markup in 0u32..5_000) {
            let price = Price { input: Some(prices[0]), cached_input: Some(prices[1]), cache_write: Some(prices[2]), cache_write_1h: None, output: Some(prices[3]), reasoning: Some(prices[4]) };
            let a = u(base[0], base[1], base[2], base[3], base[4]);
            let mut more = base;
            more[bucket] += extra;
            let b = u(more[0], more[1], more[2], more[3], more[4]);
            prop_assert!(cost_nanos(&b, &price, markup).unwrap() >= cost_nanos(&a, &price, markup).unwrap());
        }

        /// The 64-bit path costs what 128-bit arithmetic does, near its limits too.
        #[test]
        fn the_64_bit_path_costs_what_128_bit_arithmetic_does(
            tokens in proptest::array::uniform5(prop_oneof![0u64..1_000_000, Just(u64::MAX / 3), any::<u64>()]),
            prices in proptest::array::uniform5(prop_oneof![0u64..100_000_000, any::<u64>()]),
            markup in prop_oneof![Just(0u32), 0u32..5_000, any::<u32>()],
        ) {
            let price = Price { input: Some(prices[0]), cached_input: Some(prices[1]), cache_write: Some(prices[2]), cache_write_1h: None, output: Some(prices[3]), reasoning: Some(prices[4]) };
            let usage = u(tokens[0], tokens[1], tokens[2], tokens[3], tokens[4]);
            let total = tokens.iter().zip(prices).fold(0u128, |t, (n, p)| t.saturating_add(*n as u128 * p as u128));
            let wide = total.div_ceil(1000).saturating_mul(10_000 + markup as u128) / 10_000;
            prop_assert_eq!(cost_nanos(&usage, &price, markup), Some(u64::try_from(wide).unwrap_or(u64::MAX)));
        }
    }
}
