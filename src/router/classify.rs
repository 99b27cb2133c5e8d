//! A fast classifier of the prompt's task category, for quality priors. Keyword and
//! shape heuristics over the first user/system text only: no model, one pass of a
//! deterministic automaton over the text for all its markers, and no allocation unless
//! the text is not ASCII (then a lowercase copy of at most 2 KiB).

use std::fmt;
use std::sync::OnceLock;

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::Anchored;

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
/// built once: Aho-Corasick's DFA, copied into one flat table (`Markers`) that a
/// search steps with two lookups a byte; `None` if it could not be built (then each
/// marker is searched alone).
fn markers() -> Option<&'static Markers> {
    static MARKERS: OnceLock<Option<Markers>> = OnceLock::new();
    MARKERS
        .get_or_init(|| {
            let dfa = DFA::builder()
                .ascii_case_insensitive(true)
                .prefilter(false)
                .build(CODE_MARKERS.iter().chain(MATH_MARKERS))
                .ok()?;
            Markers::of(&dfa)
        })
        .as_ref()
}

/// The entries of `Markers::next`: the table is this long whatever the automaton (a
/// state and column are masked into it, so no index is checked).
const TABLE: usize = 1 << 14;

/// The markers' automaton as a table: each state is a row of `stride` entries, one per
/// column of bytes that every state treats alike, holding the next state's row start
/// (295 states of 33 columns for the markers above). The states where a marker ends
/// come first, so one comparison says whether a byte ended one.
#[derive(Debug)]
struct Markers {
    /// The column of each byte.
    column: [u8; 256],
    next: Box<[u16; TABLE]>,
    start: u16,
    /// Row starts below this end a marker.
    matching: u16,
    /// The markers that end in each state that ends one (bit i: marker i), by row.
    ends: Vec<u64>,
    /// Entries in a row: the number of columns.
    stride: u16,
}

impl Markers {
    /// The table of an unanchored DFA (every state reachable from its start, every
    /// byte's transition), or `None` if it does not fit in `TABLE` entries.
    fn of(dfa: &DFA) -> Option<Markers> {
        let start = dfa.start_state(Anchored::No).ok()?;
        // Every state reachable from the start, by breadth (the DFA's state ids are
        // small integers: `found` is indexed by them).
        let mut states = vec![start];
        let mut found: Vec<bool> = Vec::new();
        let mut is_new = |s: StateID| {
            if found.len() <= s.as_usize() {
                found.resize(s.as_usize() + 1, false);
            }
            !std::mem::replace(&mut found[s.as_usize()], true)
        };
        is_new(start);
        let mut at = 0;
        while let Some(&s) = states.get(at) {
            for b in 0..=255u8 {
                let n = dfa.next_state(Anchored::No, s, b);
                if is_new(n) {
                    states.push(n);
                }
            }
            at += 1;
        }
        // Rows: the states ending a marker first.
        states.sort_by_key(|s| !dfa.is_match(*s));
        // Each state's row by id, a sorted list: the ids are premultiplied, so a table
        // indexed by them would take 393 KB for 295 states.
        let mut row_of: Vec<(StateID, usize)> =
            states.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        row_of.sort_unstable();
        let row = |s: StateID| {
            let at = row_of.binary_search_by_key(&s, |&(id, _)| id).ok()?;
            row_of.get(at).map(|&(_, i)| i)
        };
        // Bytes whose transitions agree in every state share a column.
        let mut columns: Vec<Vec<usize>> = Vec::new();
        let mut column = [0u8; 256];
        for b in 0..=255u8 {
            let to = states
                .iter()
                .map(|s| row(dfa.next_state(Anchored::No, *s, b)))
                .collect::<Option<Vec<usize>>>()?;
            let n = match columns.iter().position(|c| *c == to) {
                Some(n) => n,
                None => {
                    columns.push(to);
                    columns.len() - 1
                }
            };
            column[usize::from(b)] = u8::try_from(n).ok()?;
        }
        let stride = columns.len();
        if states.len() * stride > TABLE {
            return None;
        }
        let mut next = Box::new([0u16; TABLE]);
        for (c, to) in columns.iter().enumerate() {
            for (i, to) in to.iter().enumerate() {
                next[i * stride + c] = u16::try_from(to * stride).ok()?;
            }
        }
        let ends: Vec<u64> = states
            .iter()
            .take_while(|s| dfa.is_match(**s))
            .map(|s| {
                (0..dfa.match_len(*s))
                    .fold(0, |seen, i| seen | 1 << dfa.match_pattern(*s, i).as_usize())
            })
            .collect();
        Some(Markers {
            column,
            next,
            start: u16::try_from(row(start)? * stride).ok()?,
            matching: u16::try_from(ends.len() * stride).ok()?,
            ends,
            stride: u16::try_from(stride).ok()?,
        })
    }
}

/// Bit i is set when marker i (of `CODE_MARKERS` then `MATH_MARKERS`) occurs in
/// `text`, ASCII letters matched in either case.
fn markers_in(text: &str) -> u64 {
    let Some(m) = markers() else {
        return markers_by_search(text);
    };
    // An unanchored search over all the text: every position's matches, overlapping
    // ones included (a matching state lists each marker ending there).
    let mut seen = 0u64;
    let mut state = m.start;
    let step = |state: u16, b: u8| {
        let at = usize::from(state) + usize::from(m.column[usize::from(b)]);
        m.next[at % TABLE]
    };
    let mut ended = |state: u16| {
        if state < m.matching {
            let row = usize::from(state / m.stride.max(1));
            seen |= m.ends.get(row).copied().unwrap_or(0);
        }
    };
    // Four bytes a step, with one comparison for the four states: few end a marker.
    let chunks = text.as_bytes().chunks_exact(4);
    let rest = chunks.remainder();
    for chunk in chunks {
        let s1 = step(state, chunk[0]);
        let s2 = step(s1, chunk[1]);
        let s3 = step(s2, chunk[2]);
        state = step(s3, chunk[3]);
        if s1.min(s2).min(s3).min(state) < m.matching {
            for s in [s1, s2, s3, state] {
                ended(s);
            }
        }
    }
    for &b in rest {
        state = step(state, b);
        ended(state);
    }
    seen
}

/// `markers_in` by one substring search per marker in a lowercase copy of `text`.
fn markers_by_search(text: &str) -> u64 {
    let lower = text.to_ascii_lowercase();
    CODE_MARKERS
        .iter()
        .chain(MATH_MARKERS)
        .enumerate()
        .filter(|(_, m)| lower.contains(*m))
        .fold(0, |seen, (i, _)| seen | 1 << i)
}

/// How many `;`, `{`, math symbols (`+ * / = ^`) and ASCII digits `text` holds, each
/// capped at 255 (the classifier compares them with 3 at most). Counted in blocks of
/// 255 bytes with branch-free byte counters, which the compiler turns into vector code.
fn shape_counts(text: &[u8]) -> [u8; 4] {
    let mut total = [0u8; 4];
    for block in text.chunks(255) {
        let mut count = [0u8; 4];
        for &b in block {
            count[0] += u8::from(b == b';');
            count[1] += u8::from(b == b'{');
            count[2] +=
                u8::from((b == b'+') | (b == b'*') | (b == b'/') | (b == b'=') | (b == b'^'));
            count[3] += u8::from(b.wrapping_sub(b'0') < 10);
        }
        for (t, c) in total.iter_mut().zip(count) {
            *t = t.saturating_add(c);
        }
    }
    total
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
    let [semicolons, braces, symbols, digits] = shape_counts(prompt_head.as_bytes());
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

    /// The automaton finds exactly the markers a substring search of the lowercased
    /// text finds (overlapping ones, markers inside words, either case), and the shape
    /// counts are plain counts.
    #[test]
    fn markers_are_those_a_substring_search_finds() {
        // The table is built (else `markers_in` searches, and this compares it with itself).
        assert!(markers().is_some());
        let pieces: Vec<&str> = CODE_MARKERS
            .iter()
            .chain(MATH_MARKERS)
            .copied()
            .chain([
                "SOLVE", "Rust", "C++", "Def", "x", " ", "\\", "`", "e", "s", "=", ">", "1", ";",
                "{", "+", "é",
            ])
            .collect();
        let mut state = 11u64;
        let mut next = || {
            state = state
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(0xbf58_476d_1ce4_e5b9);
            (state >> 33) as usize
        };
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..next() % 12 {
                let p = pieces[next() % pieces.len()];
                // Cut pieces short at times, so partial markers occur too.
                let cut = (0..=p.len())
                    .rev()
                    .find(|&i| p.is_char_boundary(i) && i <= 1 + next() % (p.len() + 1))
                    .unwrap_or(0);
                text.push_str(&p[..cut]);
            }
            assert_eq!(markers_in(&text), markers_by_search(&text), "{text:?}");
            let count = |f: fn(&u8) -> bool| text.bytes().filter(f).count().min(255) as u8;
            assert_eq!(
                shape_counts(text.as_bytes()),
                [
                    count(|b| *b == b';'),
                    count(|b| *b == b'{'),
                    count(|b| b"+*/=^".contains(b)),
                    count(|b| b.is_ascii_digit()),
                ]
            );
        }
        let long = "1;{+".repeat(300);
        assert_eq!(shape_counts(long.as_bytes()), [255; 4]);
    }
}
