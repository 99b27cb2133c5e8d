//! Counting tokens a backend did not report. When a stream is cut, times out or is
//! abandoned (or a reply carries no usage), the text actually sent is counted with
//! tiktoken's `cl100k_base` BPE — close to the newer `o200k_base` on English (which is
//! more compact on other scripts) at half its memory, an approximation for other model
//! families — and the row is flagged `estimated`. Never used when usage arrived.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

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

/// The tokens in `text`: tiktoken's count, or one token per 4 characters if the
/// tokenizer could not be loaded.
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match bpe() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => (text.chars().count() as u64).div_ceil(4),
    }
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
}
