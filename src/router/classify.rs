//! A fast classifier of the prompt's task category, for quality priors. Keyword and
//! shape heuristics over the first user/system text only: no model, one pass of an
//! automaton over the text for all its markers, and no allocation unless the text is
//! not ASCII (then a lowercase copy of at most 2 KiB).

use std::fmt;
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

/// The task categories the catalog has quality priors for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    General,
    Code,
    Math,
    /// A prompt too long for the general prior to mean much; quality follows the general score.
    LongContext,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::General => "general",
            Task::Code => "code",
            Task::Math => "math",
            Task::LongContext => "long-context",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Prompts above this many estimated tokens count as long-context.
pub const LONG_CONTEXT_TOKENS: u64 = 16_000;

/// A fenced code block; first of `CODE_MARKERS`, so its bit in `markers_in` is 1.
const FENCE: &str = "```";
const CODE_MARKERS: &[&str] = &[
    FENCE,
    "def ",
    "fn ",
    "function",
    "class ",
    "import ",
    "#include",
    "public static",
    "const ",
    "let ",
    "=> ",
    "traceback",
    "stack trace",
    "compile",
    "refactor",
    "unit test",
    "regex",
    "sql",
    "python",
    "javascript",
    "typescript",
    "rust",
    "golang",
    "java ",
    "c++",
    "bash",
    "dockerfile",
    "kubernetes",
    "segfault",
    "exception",
];
const MATH_MARKERS: &[&str] = &[
    "solve",
    "integral",
    "derivative",
    "equation",
    "prove",
    "theorem",
    "lemma",
    "probability",
    "matrix",
    "\\frac",
    "\\sum",
    "\\int",
    "sqrt",
    "factorial",
    "polynomial",
    "calculate",
    "how many",
    "arithmetic",
];

// Each marker has a bit in a u64.
const _: () = assert!(CODE_MARKERS.len() + MATH_MARKERS.len() <= 64);

/// One automaton for `CODE_MARKERS` then `MATH_MARKERS` (pattern ids in that order),
/// built once; `None` if it could not be built (then each marker is searched alone).
fn markers() -> Option<&'static AhoCorasick> {
    static MARKERS: OnceLock<Option<AhoCorasick>> = OnceLock::new();
    MARKERS
        .get_or_init(|| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(CODE_MARKERS.iter().chain(MATH_MARKERS))
                .ok()
        })
        .as_ref()
}

/// Bit i is set when marker i (of `CODE_MARKERS` then `MATH_MARKERS`) occurs in
/// `text`, ASCII letters matched in either case.
fn markers_in(text: &str) -> u64 {
    let Some(ac) = markers() else {
        let lower = text.to_ascii_lowercase();
        return CODE_MARKERS
            .iter()
            .chain(MATH_MARKERS)
            .enumerate()
            .filter(|(_, m)| lower.contains(*m))
            .fold(0, |seen, (i, _)| seen | 1 << i);
    };
    ac.find_overlapping_iter(text)
        .fold(0, |seen, m| seen | 1 << m.pattern().as_usize())
}

/// Classifies a prompt from its head text and estimated size.
pub fn classify(prompt_head: &str, estimated_tokens: u64) -> Task {
    if estimated_tokens > LONG_CONTEXT_TOKENS {
        return Task::LongContext;
    }
    // Markers are lowercase ASCII: on ASCII text a case-blind match is a match in its
    // lowercase form; other text is lowercased first (a few characters, like the Kelvin
    // sign, lowercase to ASCII letters).
    let seen = if prompt_head.is_ascii() {
        markers_in(prompt_head)
    } else {
        markers_in(&prompt_head.to_lowercase())
    };
    // Lowercasing changes no digit, `;`, `{` or symbol: they are counted as written.
    let (mut semicolons, mut braces, mut symbols, mut digits) = (0, 0, 0, 0);
    for b in prompt_head.bytes() {
        match b {
            b';' => semicolons += 1,
            b'{' => braces += 1,
            b'+' | b'*' | b'/' | b'=' | b'^' => symbols += 1,
            b'0'..=b'9' => digits += 1,
            _ => {}
        }
    }
    let code_bits = (1u64 << CODE_MARKERS.len()) - 1;
    let code = (seen & code_bits).count_ones() as usize
        + usize::from(semicolons >= 3)
        + usize::from(braces >= 2);
    let math = (seen >> CODE_MARKERS.len()).count_ones() as usize
        + usize::from(symbols >= 2 && digits >= 2);
    if code >= 2 && code >= math {
        Task::Code
    } else if math >= 1 && math > code {
        Task::Math
    } else if code >= 1 && math == 0 && seen & 1 != 0 {
        // Only a fenced block (bit 0).
        Task::Code
    } else {
        Task::General
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_obvious_prompts() {
        assert_eq!(
            classify(
                "Write a Python function that parses a CSV file and refactor it",
                20
            ),
            Task::Code
        );
        assert_eq!(
            classify("```rust\nfn main() { let x = 1; }\n```", 20),
            Task::Code
        );
        assert_eq!(
            classify("Solve the equation 3x + 7 = 22 for x", 20),
            Task::Math
        );
        assert_eq!(
            classify("What is the capital of France?", 20),
            Task::General
        );
        assert_eq!(classify("Summarise this", 50_000), Task::LongContext);
    }
}
