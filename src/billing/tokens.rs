//! Counting tokens a backend did not report. When a stream is cut, times out or is
//! abandoned (or a reply carries no usage), the text actually sent is counted with
//! tiktoken's `cl100k_base` BPE — close to the newer `o200k_base` on English (which is
//! more compact on other scripts) at half its memory, an approximation for other model
//! families — and the row is flagged `estimated`. Never used when usage arrived.
//!
//! The tokenizer only ever sees short slices of a bounded prefix: its pre-split regex
//! overflows the stack on a megabyte without breaks, and its merge is quadratic in the
//! length of a piece, so a hostile reply of one repeated character would otherwise stall
//! the thread that counts it for seconds. Past the prefix, tokens are extrapolated from
//! the prefix's tokens per byte.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

/// Text counted exactly; the rest is extrapolated at the counted part's rate.
pub const EXACT_BYTES: usize = 8 * 1024;
/// The longest slice the tokenizer sees at once, cut before whitespace where there is
/// some (where the tokenizer itself would split), so the sum stays close to its count.
const SLICE_BYTES: usize = 256;

/// Loaded on first use only (≈ 28 MB and ≈ 75 ms, once, in a release build), so a
/// gateway whose backends always report usage never pays for it.
static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();

fn bpe() -> Option<&'static CoreBPE> {
    BPE.get_or_init(|| match tiktoken_rs::cl100k_base() {
        Ok(bpe) => Some(bpe),
        Err(e) => {
            tracing::warn!(
                "The tokenizer could not be loaded; estimating 4 characters a token: {e}"
            );
            None
        }
    })
    .as_ref()
}

/// The tokens in `text`: tiktoken's count of its first `EXACT_BYTES`, extrapolated over
/// the rest, or one token per 4 bytes if the tokenizer could not be loaded. Bounded
/// time whatever the text (about a millisecond in a release build).
pub fn count(text: &str) -> u64 {
    count_head(text, text.len() as u64)
}

/// `count` of a text of `total_bytes` of which only the start, `head`, was kept (at
/// least its first `EXACT_BYTES`, or all of it): the same count, without holding the rest.
pub fn count_head(head: &str, total_bytes: u64) -> u64 {
    let total_bytes = total_bytes.max(head.len() as u64);
    if total_bytes == 0 {
        return 0;
    }
    let Some(bpe) = bpe() else {
        return total_bytes.div_ceil(4);
    };
    let head = &head[..floor_boundary(head, EXACT_BYTES)];
    let counted: u64 = slices(head)
        .map(|s| bpe.encode_ordinary(s).len() as u64)
        .sum();
    let rest = total_bytes - head.len() as u64;
    if rest == 0 || head.is_empty() {
        return counted.max(u64::from(rest > 0));
    }
    // u128: no overflow whatever the lengths; the result is at most `rest` tokens per byte.
    let extra = (u128::from(rest) * u128::from(counted)).div_ceil(head.len() as u128);
    counted.saturating_add(u64::try_from(extra).unwrap_or(u64::MAX))
}

/// The largest char boundary of `text` at or below `at`.
pub fn floor_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// `text` in consecutive slices of at most `SLICE_BYTES` (or one character, if longer),
/// each cut before its last whitespace when it has some past its start.
fn slices(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = floor_boundary(rest, SLICE_BYTES);
        if end < rest.len() {
            if let Some(ws) = rest[..end].rfind(char::is_whitespace).filter(|&i| i > 0) {
                end = ws;
            }
        }
        if end == 0 {
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (slice, tail) = rest.split_at(end);
        rest = tail;
        Some(slice)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_the_openai_tokenizer() {
        assert_eq!(count(""), 0);
        assert_eq!(count("hello world"), 2);
        // Far from the 4-characters rule for code and non-Latin scripts.
        let cjk = "今日は良い天気ですね。散歩に行きましょう。";
        assert!(
            count(cjk) > (cjk.chars().count() as u64).div_ceil(4),
            "{}",
            count(cjk)
        );
    }

    #[test]
    fn slices_cover_the_text_in_order() {
        let text = format!(
            "{} {}é{}",
            "a".repeat(700),
            "b ".repeat(400),
            "ü".repeat(600)
        );
        let parts: Vec<&str> = slices(&text).collect();
        assert_eq!(parts.concat(), text);
        assert!(parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= SLICE_BYTES));
    }

    #[test]
    fn slicing_keeps_prose_counts_exact() {
        let prose = "The quick brown fox jumps over the lazy dog, again and again. ".repeat(400);
        let prose = &prose[..EXACT_BYTES - 100];
        let whole = bpe().map(|b| b.encode_ordinary(prose).len() as u64);
        assert_eq!(Some(count(prose)), whole);
    }

    #[test]
    fn a_megabyte_without_breaks_is_counted_quickly_and_extrapolated() {
        let started = std::time::SystemTime::now();
        let one = count(&"a".repeat(1_000_000));
        let elapsed = started.elapsed().unwrap_or_default();
        // The head alone is ~1/61 of the text; extrapolation scales it up.
        let head = count(&"a".repeat(EXACT_BYTES));
        assert!(one >= head * 60, "{one} vs head {head}");
        assert!(elapsed.as_secs() < 5, "{elapsed:?}");
        let prose = "word ".repeat(200_000);
        let n = count(&prose);
        assert!((190_000..=210_000).contains(&n), "{n}");
    }
}
