//! Prompt features for the quality predictor: hashed word unigrams and bigrams in a
//! fixed-size space (L2-normalised), plus a few dense shape features (length, lines,
//! numbers, math and code markers, multiple-choice layout). Pure and bounded: only the
//! first `HEAD_BYTES` and last `TAIL_BYTES` of a text are read (the predictor is given
//! the bounded view of `view.rs`, which fits).

/// Bytes read from the start of a prompt.
pub const HEAD_BYTES: usize = 4096;
/// Bytes read from the end of a prompt longer than `HEAD_BYTES + TAIL_BYTES`.
pub const TAIL_BYTES: usize = 1024;

/// The dense shape features, in layout order (each in roughly 0–1).
pub const SHAPE_NAMES: [&str; 14] = [
    "multiple-choice",
    "length",
    "lines",
    "digits",
    "numbers",
    "math-symbols",
    "code-markers",
    "question",
    "math-words",
    "code-words",
    "sentences",
    "has-numbers",
    "length with numbers",
    "sentences with numbers",
];

/// Dense features: the multiple-choice flag, each shape feature for every prompt, then
/// each again for multiple-choice prompts only (how they differ there). The shared copy
/// is what carries over to prompts unlike any multiple-choice set.
pub const DENSE: usize = 1 + 2 * (SHAPE_NAMES.len() - 1);

const MATH_WORDS: &[&str] = &[
    "solve",
    "calculate",
    "compute",
    "find",
    "integral",
    "derivative",
    "equation",
    "prove",
    "probability",
    "sum",
    "product",
    "total",
    "percent",
    "average",
    "many",
    "much",
    "value",
    "evaluate",
];
const CODE_WORDS: &[&str] = &[
    "def",
    "function",
    "return",
    "class",
    "import",
    "print",
    "code",
    "python",
    "java",
    "program",
    "int",
    "string",
    "array",
    "list",
    "implement",
    "algorithm",
    "sql",
];
const CODE_MARKERS: &[&str] = &[
    "def ", "return", "```", "{", "}", ";", "()", "import ", "print(",
];

/// The features of one prompt: sorted hashed buckets with their values, and the dense part.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// `(bucket, value)`, buckets ascending and distinct, values L2-normalised.
    pub hashed: Vec<(u32, f32)>,
    pub dense: [f32; DENSE],
}

/// One token of the text: a run of alphanumerics (lowercased) or a single other
/// non-space character.
fn tokens(text: &str, mut each: impl FnMut(&str)) {
    let mut word = String::new();
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        } else if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                word.push(l);
            }
        } else {
            if !word.is_empty() {
                each(&word);
                word.clear();
            }
            if !c.is_whitespace() {
                each(c.encode_utf8(&mut buf));
            }
        }
    }
    if !word.is_empty() {
        each(&word);
    }
}

/// FNV-1a, 64 bit: stable across platforms and releases (the weights depend on it).
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn bigram(a: u64, b: u64) -> u64 {
    fnv1a(a.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15, &b.to_le_bytes())
}

/// The bounded view of a prompt: its first `HEAD_BYTES`, and its last `TAIL_BYTES` when longer.
pub fn bounded(text: &str) -> (&str, &str) {
    let floor = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    if text.len() <= HEAD_BYTES + TAIL_BYTES {
        return (text, "");
    }
    let head = floor(HEAD_BYTES);
    let mut tail = floor(text.len() - TAIL_BYTES);
    if tail < head {
        tail = head;
    }
    (&text[..head], &text[tail..])
}

/// A token's hash, as used for unigram buckets.
fn token_hash(token: &str) -> u64 {
    fnv1a(1, token.as_bytes())
}

/// Calls `each(hash, label_parts)` for every unigram and bigram of the bounded text.
pub fn grams(text: &str, mut each: impl FnMut(u64, &str, Option<&str>)) {
    let (head, tail) = bounded(text);
    for part in [head, tail] {
        let mut prev: Option<(u64, String)> = None;
        tokens(part, |t| {
            let h = token_hash(t);
            each(h, t, None);
            if let Some((ph, pt)) = &prev {
                each(bigram(*ph, h), pt, Some(t));
            }
            match &mut prev {
                Some((ph, pt)) => {
                    *ph = h;
                    pt.clear();
                    pt.push_str(t);
                }
                None => prev = Some((h, t.to_string())),
            }
        });
    }
}

/// The second bucket of gram hash `h` in a layout with `split` (see `extract`).
pub fn split_hash(h: u64) -> u64 {
    fnv1a(7, &h.to_le_bytes())
}

/// The features of `text` with `buckets` hashed buckets (a power of two). With `split`,
/// every gram of a prompt that is not multiple-choice is counted a second time in its
/// own bucket, so free-form prompts can learn what n-grams mean for them apart from
/// what they mean in multiple-choice ones (and share it where it is the same).
pub fn extract(text: &str, buckets: u32, split: bool) -> Features {
    let mask = u64::from(buckets.max(1).next_power_of_two() - 1);
    let dense = dense(text);
    let second = split && dense[0] == 0.0;
    let mut raw: Vec<u32> = Vec::with_capacity(1024);
    grams(text, |h, _, _| {
        raw.push((h & mask) as u32);
        if second {
            raw.push((split_hash(h) & mask) as u32);
        }
    });
    sort_buckets(&mut raw, mask);
    let mut hashed: Vec<(u32, f32)> = Vec::with_capacity(raw.len());
    for b in raw {
        match hashed.last_mut() {
            Some((last, v)) if *last == b => *v += 1.0,
            _ => hashed.push((b, 1.0)),
        }
    }
    let norm = hashed.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for (_, v) in &mut hashed {
            *v /= norm;
        }
    }
    Features { hashed, dense }
}

/// Sorts bucket numbers of at most `mask` ascending: a radix sort, 8 bits a pass (two
/// passes for 2^14 buckets), for the hundreds to thousands of grams of a long prompt;
/// a comparison sort for short ones.
fn sort_buckets(v: &mut Vec<u32>, mask: u64) {
    if v.len() < 256 {
        v.sort_unstable();
        return;
    }
    let bits = 64 - mask.leading_zeros();
    let mut out = vec![0u32; v.len()];
    let mut shift = 0;
    while shift < bits {
        let digit = |x: u32| ((x >> shift) & 0xff) as usize;
        let mut start = [0usize; 256];
        for &x in v.iter() {
            start[digit(x)] += 1;
        }
        let mut at = 0;
        for s in &mut start {
            let n = *s;
            *s = at;
            at += n;
        }
        for &x in v.iter() {
            let d = digit(x);
            out[start[d]] = x;
            start[d] += 1;
        }
        std::mem::swap(v, &mut out);
        shift += 8;
    }
}

fn dense(text: &str) -> [f32; DENSE] {
    let (head, tail) = bounded(text);
    let mut bytes = 0usize;
    let mut lines = 0usize;
    let mut digits = 0usize;
    let mut numbers = 0usize;
    let mut symbols = 0usize;
    let mut question = false;
    let mut in_number = false;
    let mut markers = 0usize;
    let mut math_words = [false; MATH_WORDS.len()];
    let mut code_words = [false; CODE_WORDS.len()];
    let mut sentences = 0usize;
    let mut prev = ' ';
    for part in [head, tail] {
        bytes += part.len();
        for c in part.chars() {
            if c == '\n' {
                lines += 1;
            }
            if c.is_ascii_digit() {
                digits += 1;
                if !in_number {
                    numbers += 1;
                }
                in_number = true;
            } else if !(in_number && (c == '.' || c == ',')) {
                in_number = false;
            }
            if matches!(c, '=' | '+' | '*' | '/' | '^' | '<' | '>') {
                symbols += 1;
            }
            question |= c == '?';
            // A sentence ends at `.`, `?` or `!` before a space or the end.
            if matches!(prev, '.' | '?' | '!') && c.is_whitespace() {
                sentences += 1;
            }
            prev = c;
        }
        if matches!(prev, '.' | '?' | '!') {
            sentences += 1;
        }
        prev = ' ';
        markers += CODE_MARKERS
            .iter()
            .filter(|m| memchr::memmem::find(part.as_bytes(), m.as_bytes()).is_some())
            .count();
        tokens(part, |t| {
            if let Some(i) = MATH_WORDS.iter().position(|w| *w == t) {
                math_words[i] = true;
            }
            if let Some(i) = CODE_WORDS.iter().position(|w| *w == t) {
                code_words[i] = true;
            }
        });
    }
    let count = |flags: &[bool]| flags.iter().filter(|f| **f).count() as f32;
    let mc = multiple_choice(head) || multiple_choice(tail);
    let length = (bytes as f32).ln_1p() / 7.0 - 1.0;
    let sentences = (sentences as f32).ln_1p() / 3.0;
    let has_numbers = f32::from(u8::from(numbers >= 2));
    let shape = [
        length,
        (lines as f32).ln_1p() / 3.0,
        (digits as f32 / bytes.max(1) as f32 * 10.0).min(1.0),
        (numbers as f32).ln_1p() / 3.0,
        (symbols as f32 / 10.0).min(1.0),
        (markers as f32 / 3.0).min(1.0),
        f32::from(u8::from(question)),
        (count(&math_words) / 2.0).min(1.0),
        (count(&code_words) / 2.0).min(1.0),
        sentences,
        has_numbers,
        length * has_numbers,
        sentences * has_numbers,
    ];
    let mut out = [0.0f32; DENSE];
    let m = f32::from(u8::from(mc));
    out[0] = m;
    for (i, v) in shape.iter().enumerate() {
        out[1 + i] = *v;
        out[1 + shape.len() + i] = v * m;
    }
    out
}

/// Options laid out one per line: a line starting `A.` (or `A)`) followed later by one starting `B.`.
fn multiple_choice(text: &str) -> bool {
    let starts = |l: &str, c: char| {
        let mut it = l.trim_start().chars();
        it.next() == Some(c) && matches!(it.next(), Some('.') | Some(')'))
    };
    let mut seen_a = false;
    for line in text.lines() {
        if starts(line, 'A') {
            seen_a = true;
        } else if seen_a && starts(line, 'B') {
            return true;
        }
    }
    false
}

/// The name of dense feature `i`, for explanations.
pub fn dense_name(i: usize) -> String {
    let n = SHAPE_NAMES.len() - 1;
    match i {
        0 => SHAPE_NAMES[0].to_string(),
        i if i <= n => SHAPE_NAMES[i].to_string(),
        i => SHAPE_NAMES
            .get(i - n)
            .map(|s| format!("{s} (multiple-choice)"))
            .unwrap_or_else(|| "?".into()),
    }
}

/// A hash of everything the feature layout depends on; a weights file records it.
pub fn layout_hash(buckets: u32, split: bool) -> u64 {
    let mut desc = format!(
        "v2;head={HEAD_BYTES};tail={TAIL_BYTES};buckets={buckets};uni+bi;split={split};l2;"
    );
    for n in SHAPE_NAMES {
        desc.push_str(n);
        desc.push(',');
    }
    for w in MATH_WORDS.iter().chain(CODE_WORDS).chain(CODE_MARKERS) {
        desc.push_str(w);
        desc.push('|');
    }
    fnv1a(0, desc.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_prompt_same_features() {
        let a = extract("Solve 3x + 7 = 22 for x.", 1 << 14, true);
        let b = extract("Solve 3x + 7 = 22 for x.", 1 << 14, true);
        assert_eq!(a, b);
        let norm: f32 = a.hashed.iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(a.hashed.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(a.hashed.iter().all(|(b, _)| *b < 1 << 14));
    }

    #[test]
    fn multiple_choice_is_seen() {
        let mc = extract(
            "Which?\nA. one\nB. two\nC. three\nD. four\nAnswer:",
            1024,
            true,
        );
        assert_eq!(mc.dense[0], 1.0);
        let plain = extract("Write a poem about the sea.", 1024, true);
        assert_eq!(plain.dense[0], 0.0);
    }

    #[test]
    fn work_is_bounded_on_a_huge_prompt() {
        let huge = "word ".repeat(200_000) + "ending";
        let (head, tail) = bounded(&huge);
        assert!(head.len() <= HEAD_BYTES && tail.len() <= TAIL_BYTES);
        assert!(tail.ends_with("ending"));
        let f = extract(&huge, 1 << 14, true);
        // At most one unigram and one bigram per byte read, each in two buckets.
        assert!(f.hashed.len() <= 4 * (HEAD_BYTES + TAIL_BYTES));
    }

    #[test]
    fn bounded_respects_char_boundaries() {
        let s = "é".repeat(5000);
        let (head, tail) = bounded(&s);
        assert!(!head.is_empty() && !tail.is_empty());
    }

    /// A fingerprint of every feature of a varied set of prompts: the shipped weights
    /// were fitted on these exact values, so a faster extraction must not move one bit.
    #[test]
    fn features_are_bit_for_bit_what_the_weights_were_fitted_on() {
        let long = "Some 12,5 numbers; def f(x): return x**2 -> ".repeat(200);
        let prompts = [
            String::new(),
            "Solve 3x + 7 = 22 for x.".to_string(),
            "Which?\nA. one\nB. two\nC. three\nD. four\nAnswer:".to_string(),
            "  İstanbul'da ÉTÉ straße ΣΊΣΥΦΟΣ 東京 naïve café 🙂 x²+y² ½".to_string(),
            "```python\nimport os\nprint(os.getcwd())\n```\nWhy does this fail? {a;b}".to_string(),
            "How many apples? She had 3.5 kg, then 1,200 g more. Total percent?! Yes. No."
                .to_string(),
            long.clone(),
            format!("A) yes\n{long}\nB) no"),
            "é".repeat(3000),
        ];
        let mut h = 0u64;
        for p in &prompts {
            for (buckets, split) in [(1 << 14, true), (1 << 10, false)] {
                let f = extract(p, buckets, split);
                for (b, v) in &f.hashed {
                    h = fnv1a(h, &b.to_le_bytes());
                    h = fnv1a(h, &v.to_bits().to_le_bytes());
                }
                for v in f.dense {
                    h = fnv1a(h, &v.to_bits().to_le_bytes());
                }
            }
        }
        assert_eq!(h, 0x76dd_3f2f_42f6_40a9, "fingerprint {h:#x}");
    }

    #[test]
    fn layout_hash_depends_on_buckets() {
        assert_ne!(layout_hash(1 << 14, true), layout_hash(1 << 15, true));
        assert_ne!(layout_hash(1 << 14, true), layout_hash(1 << 14, false));
        assert_eq!(layout_hash(1 << 14, true), layout_hash(1 << 14, true));
    }
}
