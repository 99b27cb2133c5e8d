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

/// The seed of every token hash (the weights depend on it, like every constant below).
const TOKEN_SEED: u64 = 0x243f_6a88_85a3_08d3;
/// Odd multipliers of the hashes (from the golden ratio and splitmix64).
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
const MIX2: u64 = 0xbf58_476d_1ce4_e5b9;
/// Set in a bigram's hash so a bigram is never the plain xor of two unigrams.
const BIGRAM: u64 = 0x94d0_49bb_1331_11eb;
/// Every byte's 0x20 bit: or-ed into ASCII letters and digits, it lowercases the letters
/// and leaves the digits as they are.
const ASCII_LOWER: u64 = 0x2020_2020_2020_2020;

/// The hash of `bytes` with `or` or-ed into each 8-byte chunk (`ASCII_LOWER` lowercases
/// an ASCII alphanumeric token on the fly, 0 hashes the bytes as they are): one multiply
/// per 8 bytes and one to finish. Stable across platforms and releases (the weights
/// depend on it).
pub const fn hash_bytes(bytes: &[u8], or: u64) -> u64 {
    let mut h = TOKEN_SEED ^ (bytes.len() as u64).wrapping_mul(MIX);
    let mut i = 0;
    while i < bytes.len() {
        let mut chunk = 0u64;
        let mut j = 0;
        while j < 8 && i + j < bytes.len() {
            chunk |= ((bytes[i + j] as u64) | (or & 0xff)) << (8 * j);
            j += 1;
        }
        h = (h ^ chunk).wrapping_mul(MIX2).rotate_left(29);
        i += 8;
    }
    h ^= h >> 32;
    h = h.wrapping_mul(MIX);
    h ^ (h >> 29)
}

/// The hash of the bigram `a b` from its tokens' hashes: a rotate and two xors (the
/// buckets' multiply in `gram_buckets` mixes it).
fn bigram(a: u64, b: u64) -> u64 {
    a.rotate_left(23) ^ b ^ BIGRAM
}

/// The buckets of the gram hashed `h` in a layout of `2^bits` buckets (`bits` ≤ 22): the
/// top `bits` of one multiply, and for a layout with `split` the second bucket from the
/// `bits` below them.
pub fn gram_buckets(h: u64, bits: u32) -> (usize, usize) {
    let x = h.wrapping_mul(MIX);
    let mask = (1u64 << bits) - 1;
    (
        (x.rotate_left(bits) & mask) as usize,
        (x.rotate_left(2 * bits) & mask) as usize,
    )
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

/// The math and code word lists in one, math first: a token is looked up once.
const WORDS: [&str; MATH_WORDS.len() + CODE_WORDS.len()] = {
    let mut out = [""; MATH_WORDS.len() + CODE_WORDS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = if i < MATH_WORDS.len() {
            MATH_WORDS[i]
        } else {
            CODE_WORDS[i - MATH_WORDS.len()]
        };
        i += 1;
    }
    out
};

/// Bit i: `WORDS[i]` starts with byte b in either case (at index b).
const WORDS_BY_FIRST: [u64; 256] = {
    let mut out = [0u64; 256];
    let mut i = 0;
    while i < WORDS.len() {
        let first = WORDS[i].as_bytes()[0];
        out[first as usize] |= 1 << i;
        out[first.to_ascii_uppercase() as usize] |= 1 << i;
        i += 1;
    }
    out
};

/// Bit i: `WORDS[i]` is n bytes long (at index n; none is 16 or longer).
const WORDS_BY_LEN: [u64; 16] = {
    let mut out = [0u64; 16];
    let mut i = 0;
    while i < WORDS.len() {
        out[WORDS[i].len()] |= 1 << i;
        i += 1;
    }
    out
};

/// Each of `WORDS` as two little-endian words (zero past its end).
const WORD_BYTES: [(u64, u64); WORDS.len()] = {
    let mut out = [(0u64, 0u64); WORDS.len()];
    let mut i = 0;
    while i < WORDS.len() {
        let w = WORDS[i].as_bytes();
        let mut j = 0;
        while j < w.len() {
            if j < 8 {
                out[i].0 |= (w[j] as u64) << (8 * j);
            } else {
                out[i].1 |= (w[j] as u64) << (8 * (j - 8));
            }
            j += 1;
        }
        i += 1;
    }
    out
};

// The word bitmaps hold every word, each of them lowercase ASCII letters.
const _: () = {
    assert!(WORDS.len() <= 64);
    let mut i = 0;
    while i < WORDS.len() {
        let w = WORDS[i].as_bytes();
        assert!(!w.is_empty() && w.len() < 16);
        let mut j = 0;
        while j < w.len() {
            assert!(w[j].is_ascii_lowercase());
            j += 1;
        }
        i += 1;
    }
};

/// The bits of `WORDS` the ASCII word `bytes[start..end]` (letters and digits, the
/// first `first`) is, in any case: none unless a word starts with its first letter and
/// is as long (most tokens stop there, inline), else its bytes lowercased against those
/// words'.
#[inline(always)]
fn ascii_word(bytes: &[u8], first: u8, start: usize, end: usize) -> u64 {
    let Some(by_len) = WORDS_BY_LEN.get(end - start) else {
        return 0;
    };
    let candidates = WORDS_BY_FIRST[usize::from(first)] & by_len;
    if candidates == 0 {
        return 0;
    }
    ascii_word_among(bytes, start, end, candidates)
}

/// `ascii_word` for a token of the length and first letter of the `candidates`.
#[inline(never)]
fn ascii_word_among(bytes: &[u8], start: usize, end: usize, mut candidates: u64) -> u64 {
    let len = end - start;
    let lower = |at: usize, n: usize| {
        let present = u64::MAX >> (64 - 8 * n);
        load_short(bytes, at, n) | (ASCII_LOWER & present)
    };
    let low = lower(start, len.min(8));
    let high = if len > 8 {
        lower(start + 8, len - 8)
    } else {
        0
    };
    let mut found = 0;
    while candidates != 0 {
        let i = candidates.trailing_zeros() as usize;
        candidates &= candidates - 1;
        if WORD_BYTES.get(i) == Some(&(low, high)) {
            found |= 1 << i;
        }
    }
    found
}

/// How a token hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// ASCII letters and digits: lowercased, eight bytes at a time (`hash_word`).
    AsciiWord,
    /// Alphanumeric characters, some outside ASCII: its lowercase form.
    Word,
    /// One character, neither alphanumeric nor a space: as written.
    Other,
}

/// One token of a part of the text: a run of alphanumerics (lowercased) or a single
/// other non-space character, `start..end` in the part's bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    start: u32,
    end: u32,
    kind: Kind,
}

impl Span {
    fn raw<'a>(&self, part: &'a str) -> &'a str {
        &part[self.start as usize..self.end as usize]
    }

    /// The token's text as the features see it: alphanumerics lowercased.
    fn lower(&self, part: &str, out: &mut String) {
        out.clear();
        let raw = self.raw(part);
        if self.kind != Kind::Word {
            out.push_str(raw);
            out.make_ascii_lowercase();
            return;
        }
        for c in raw.chars() {
            if c.is_alphanumeric() {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        }
    }

    /// The unigram hash of the token (`lower` is scratch space).
    #[inline]
    fn hash(&self, part: &str, lower: &mut String) -> u64 {
        let bytes = part.as_bytes();
        let (start, end) = (self.start as usize, self.end as usize);
        match self.kind {
            Kind::AsciiWord => hash_word(bytes, start, end),
            Kind::Other => match bytes
                .get(start)
                .and_then(|b| BYTE_HASHES.get(usize::from(*b)))
            {
                Some(h) => *h,
                None => self.hash_lower(part, lower),
            },
            Kind::Word => self.hash_lower(part, lower),
        }
    }

    /// The hash of the token's lowercase form (its bytes, for a character that is not
    /// alphanumeric), out of line: most tokens are ASCII.
    #[inline(never)]
    fn hash_lower(&self, part: &str, lower: &mut String) -> u64 {
        self.lower(part, lower);
        hash_bytes(lower.as_bytes(), 0)
    }
}

/// The shape counters of the bounded text, gathered in the same pass as its tokens.
#[derive(Debug, Default, Clone, PartialEq)]
struct Shape {
    bytes: usize,
    lines: usize,
    digits: usize,
    numbers: usize,
    symbols: usize,
    question: bool,
    /// Inside a number (digits, with `.` or `,` between them); carried from head to tail.
    in_number: bool,
    markers: usize,
    sentences: usize,
    /// Bit i: `WORDS[i]` occurs.
    words: u64,
}

/// What the walk needs to know of a byte: one table lookup per byte.
const LETTER: u16 = 1;
const DIGIT: u16 = 1 << 1;
/// `char::is_whitespace` for an ASCII byte.
const SPACE: u16 = 1 << 2;
const NEWLINE: u16 = 1 << 3;
/// Ends a sentence: `.`, `?`, `!`.
const STOP: u16 = 1 << 4;
const QUESTION: u16 = 1 << 5;
/// A math symbol: `=`, `+`, `*`, `/`, `^`, `<`, `>`.
const SYMBOL: u16 = 1 << 6;
/// Keeps a number going between digits: `.`, `,`.
const JOIN: u16 = 1 << 7;
/// May start a code marker that is not part of a word: `{`, `}`, `;`, `(`, `` ` ``.
const MARK: u16 = 1 << 8;
/// Part of a character outside ASCII (the walk decodes it).
const UTF8: u16 = 1 << 9;

/// The class bits of each byte.
const CLASS: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < table.len() {
        let b = i as u8;
        let mut class = 0;
        if b.is_ascii_alphabetic() {
            class |= LETTER;
        }
        if b.is_ascii_digit() {
            class |= DIGIT;
        }
        if matches!(b, b' ' | b'\t'..=b'\r') {
            class |= SPACE;
        }
        if b == b'\n' {
            class |= NEWLINE;
        }
        if matches!(b, b'.' | b'?' | b'!') {
            class |= STOP;
        }
        if b == b'?' {
            class |= QUESTION;
        }
        if matches!(b, b'=' | b'+' | b'*' | b'/' | b'^' | b'<' | b'>') {
            class |= SYMBOL;
        }
        if matches!(b, b'.' | b',') {
            class |= JOIN;
        }
        if matches!(b, b'{' | b'}' | b';' | b'(' | b'`') {
            class |= MARK;
        }
        if !b.is_ascii() {
            class |= UTF8;
        }
        table[i] = class;
        i += 1;
    }
    table
};

/// The bit of `marker` (one of `CODE_MARKERS`) in a set of markers seen; 0 for no marker.
const fn marker_bit(marker: &str) -> u16 {
    let mut i = 0;
    while i < CODE_MARKERS.len() {
        if eq_bytes(CODE_MARKERS[i].as_bytes(), marker.as_bytes()) {
            return 1 << i;
        }
        i += 1;
    }
    0
}

const fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const DEF: u16 = marker_bit("def ");
const RETURN: u16 = marker_bit("return");
const FENCE: u16 = marker_bit("```");
const OPEN: u16 = marker_bit("{");
const CLOSE: u16 = marker_bit("}");
const SEMICOLON: u16 = marker_bit(";");
const CALL: u16 = marker_bit("()");
const IMPORT: u16 = marker_bit("import ");
const PRINT: u16 = marker_bit("print(");
// Every marker has its own bit, and every one of `CODE_MARKERS` is found.
const _: () = assert!(
    (DEF | RETURN | FENCE | OPEN | CLOSE | SEMICOLON | CALL | IMPORT | PRINT).count_ones() as usize
        == CODE_MARKERS.len()
);

/// The code markers that start at byte `i` of `bytes`, a `MARK` byte. With the words'
/// markers (`word_markers`, `return_marker`) these are exactly the markers occurring in
/// the text: a marker's letters all lie in one word, and one that is no word starts at
/// a `MARK`.
fn markers_at(bytes: &[u8], i: usize) -> u16 {
    match bytes[i] {
        b'{' => OPEN,
        b'}' => CLOSE,
        b';' => SEMICOLON,
        b'(' if bytes.get(i + 1) == Some(&b')') => CALL,
        b'`' if bytes[i..].starts_with(b"```") => FENCE,
        _ => 0,
    }
}

/// The code markers that end in the word `word` followed by `next`: `def `, `import `
/// and `print(` (`return` lies in a word, and is searched for in the whole part). The
/// word's last letter decides which one to compare, if any.
#[inline]
fn word_markers(word: &[u8], next: Option<u8>) -> u16 {
    match (next, word.last()) {
        (Some(b' '), Some(b'f')) if word.ends_with(b"def") => DEF,
        (Some(b' '), Some(b't')) if word.ends_with(b"import") => IMPORT,
        (Some(b'('), Some(b't')) if word.ends_with(b"print") => PRINT,
        _ => 0,
    }
}

/// `RETURN` if `part` holds `return`: its letters all lie in one word, so one search of
/// the part finds what a search of each word would.
fn return_marker(part: &[u8]) -> u16 {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"return"));
    if FINDER.find(part).is_some() {
        RETURN
    } else {
        0
    }
}

/// The hash of each one-byte token (`hash_bytes` of the byte).
const BYTE_HASHES: [u64; 128] = {
    let mut out = [0u64; 128];
    let mut i = 0;
    while i < out.len() {
        out[i] = hash_bytes(&[i as u8], 0);
        i += 1;
    }
    out
};

/// The top bit of every byte of a word.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
/// Every byte of a word set to `b`.
const fn splat(b: u8) -> u64 {
    (b as u64) * 0x0101_0101_0101_0101
}

/// The ASCII letters and the ASCII digits of the eight bytes of `word`, each as the top
/// bit of its byte (`CLASS`'s `LETTER` and `DIGIT`, eight bytes at once). Each byte's
/// low seven bits are compared by adding an offset that carries into its top bit, which
/// cannot carry into the next byte.
#[inline]
fn ascii_alphanumerics(word: u64) -> (u64, u64) {
    let ascii = !word & HIGH_BITS;
    let low = word & !HIGH_BITS;
    // `| 0x20` lowercases the letters and maps no other byte into `a..=z`.
    let folded = low | splat(0x20);
    let letters =
        folded.wrapping_add(splat(0x80 - b'a')) & !folded.wrapping_add(splat(0x80 - b'z' - 1));
    let digits = low.wrapping_add(splat(0x80 - b'0')) & !low.wrapping_add(splat(0x80 - b'9' - 1));
    (letters & ascii, digits & ascii)
}

/// The eight bytes of `bytes` from `at` as one little-endian word, if there are eight.
fn load(bytes: &[u8], at: usize) -> Option<u64> {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes.get(at..at.checked_add(8)?)?);
    Some(u64::from_le_bytes(word))
}

/// The `len` (1–7) bytes of `bytes` from `at` as a little-endian word, the rest zero:
/// one load reaching past them (or ending with them) where the text has eight bytes.
fn load_short(bytes: &[u8], at: usize, len: usize) -> u64 {
    let present = u64::MAX >> (64 - 8 * len);
    if let Some(word) = load(bytes, at) {
        return word & present;
    }
    if let Some(word) = (at + len).checked_sub(8).and_then(|from| load(bytes, from)) {
        return word >> (64 - 8 * len);
    }
    let mut word = [0u8; 8];
    word[..len].copy_from_slice(&bytes[at..at + len]);
    u64::from_le_bytes(word)
}

/// `hash_bytes(&bytes[start..end], ASCII_LOWER)`, eight bytes per load (the last load
/// may read past `end` and masks those bytes off).
fn hash_word(bytes: &[u8], start: usize, end: usize) -> u64 {
    let len = end - start;
    let mut h = TOKEN_SEED ^ (len as u64).wrapping_mul(MIX);
    let mut at = start;
    // Every chunk but the last is whole; the last holds 1–8 bytes.
    while at + 8 < end {
        let word = load(bytes, at).unwrap_or(0);
        h = (h ^ (word | ASCII_LOWER))
            .wrapping_mul(MIX2)
            .rotate_left(29);
        at += 8;
    }
    let rest = end - at;
    if rest > 0 {
        let present = u64::MAX >> (64 - 8 * rest);
        let word = load_short(bytes, at, rest);
        h = (h ^ (word | (ASCII_LOWER & present)))
            .wrapping_mul(MIX2)
            .rotate_left(29);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(MIX);
    h ^ (h >> 29)
}

/// Counts the shape of `part` into `shape` and calls `each` for every token in order
/// (`lower` is scratch space): `walk_ascii` for ASCII text (most prompts), else
/// `walk_chars`, the same counts and tokens. Tokens are not hashed here: a prompt
/// whose word grams the weights ignore needs only its shape.
#[inline]
fn walk(part: &str, shape: &mut Shape, lower: &mut String, mut each: impl FnMut(Span)) {
    if !walk_ascii(part, shape, &mut each) {
        walk_chars(part, shape, lower, each);
    }
}

/// Bytes of a part `walk_ascii` reads in 64-byte blocks (the head, the longest part).
const ASCII_BLOCKS: usize = HEAD_BYTES / 64;

/// The top bit of each byte of `top` (only top bits set) gathered into the low eight
/// bits, byte j's as bit j: one multiply, whose partial products never overlap.
#[inline(always)]
fn gather(top: u64) -> u64 {
    top.wrapping_mul(0x0002_0408_1020_4081) >> 56
}

/// The bytes of a 64-byte block (bit j: byte j) that are letters or digits, digits,
/// and neither nor a space (`b' '`), and the or of all its bytes. Exact where every
/// byte is ASCII, which the or's top bits tell: the byte-wise sums below carry out
/// of a byte only from one at 0x80 or above.
#[inline(always)]
fn ascii_classes(block: &[u8; 64]) -> (u64, u64, u64, u64) {
    let (mut alnum, mut digit, mut other, mut high) = (0u64, 0u64, 0u64, 0u64);
    for (i, chunk) in block.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        high |= word;
        // `| 0x20` lowercases the letters and maps no other byte into `a..=z`; a sum
        // with an offset carries into a byte's top bit when the byte is at least the
        // offset's complement.
        let folded = word | splat(0x20);
        let letters =
            folded.wrapping_add(splat(0x80 - b'a')) & !folded.wrapping_add(splat(0x80 - b'z' - 1));
        let digits =
            word.wrapping_add(splat(0x80 - b'0')) & !word.wrapping_add(splat(0x80 - b'9' - 1));
        let both = (letters | digits) & HIGH_BITS;
        // A byte of `word ^ spaces` is zero (its top bit stays clear) where `word` is ` `.
        let space = !(word ^ splat(b' ')).wrapping_add(splat(0x7f)) & HIGH_BITS;
        alnum |= gather(both) << (8 * i);
        digit |= gather(digits & HIGH_BITS) << (8 * i);
        other |= gather(HIGH_BITS & !(both | space)) << (8 * i);
    }
    (alnum, digit, other, high)
}

/// `walk` for a part of ASCII text at most `HEAD_BYTES` long, 64 bytes at a time;
/// false (and nothing counted or called) for any other part. A first pass marks in
/// three bitmaps (a bit per byte) the letters and digits, the digits, and the bytes
/// that are neither nor a space; a second one visits the tokens in order from those
/// bits: the words (runs of letters and digits) and the other bytes (spaces are
/// skipped 64 at a time).
#[inline]
fn walk_ascii(part: &str, shape: &mut Shape, each: &mut impl FnMut(Span)) -> bool {
    let bytes = part.as_bytes();
    if bytes.len() > HEAD_BYTES {
        return false;
    }
    // One block past the last, all zero: a word's end is found without a bound check.
    let mut alnum = [0u64; ASCII_BLOCKS + 1];
    let mut digit = [0u64; ASCII_BLOCKS + 1];
    let mut other = [0u64; ASCII_BLOCKS + 1];
    let mut high = 0u64;
    for (k, block) in bytes.chunks(64).enumerate() {
        let (a, d, o, h) = match <&[u8; 64]>::try_from(block) {
            Ok(whole) => ascii_classes(whole),
            Err(_) => {
                // The last block, zero-padded: the padding is no letter, digit or space.
                let mut padded = [0u8; 64];
                padded[..block.len()].copy_from_slice(block);
                let (a, d, o, h) = ascii_classes(&padded);
                let valid = u64::MAX >> (64 - block.len());
                (a, d, o & valid, h)
            }
        };
        high |= h;
        if let (Some(x), Some(y), Some(z)) = (alnum.get_mut(k), digit.get_mut(k), other.get_mut(k))
        {
            (*x, *y, *z) = (a, d, o);
        }
    }
    if high & HIGH_BITS != 0 {
        return false;
    }
    // Whether a number is going on before byte `at`: digits, with `.` or `,` between
    // them (at the part's start, whether one was going on at the end of the last part).
    let carried = shape.in_number;
    let in_number_before = |mut at: usize| loop {
        let Some(prev) = at.checked_sub(1) else {
            return carried;
        };
        match bytes[prev] {
            b'0'..=b'9' => return true,
            b'.' | b',' => at = prev,
            _ => return false,
        }
    };
    let (mut lines, mut numbers, mut symbols, mut sentences) = (0, 0, 0, 0);
    let mut digits = 0;
    let mut question = false;
    let mut words = 0u64;
    let mut markers = 0u16;
    // Bit 0: the byte before the block is a letter or digit / a digit.
    let (mut after_alnum, mut after_digit) = (0u64, 0u64);
    for k in 0..bytes.len().div_ceil(64) {
        let (a, d, o) = (alnum[k], digit[k], other[k]);
        digits += d.count_ones() as usize;
        let mut starts = d & !((d << 1) | after_digit);
        while starts != 0 {
            let at = 64 * k + starts.trailing_zeros() as usize;
            starts &= starts - 1;
            numbers += usize::from(!in_number_before(at));
        }
        let mut tokens = (a & !((a << 1) | after_alnum)) | o;
        after_alnum = a >> 63;
        after_digit = d >> 63;
        while tokens != 0 {
            let j = tokens.trailing_zeros();
            tokens &= tokens - 1;
            let start = 64 * k + j as usize;
            if (o >> j) & 1 != 0 {
                let class = CLASS[usize::from(bytes[start])];
                lines += usize::from(class & NEWLINE != 0);
                symbols += usize::from(class & SYMBOL != 0);
                question |= class & QUESTION != 0;
                // A stop ends a sentence when whitespace or the part's end follows.
                if class & STOP != 0
                    && bytes
                        .get(start + 1)
                        .is_none_or(|b| CLASS[usize::from(*b)] & SPACE != 0)
                {
                    sentences += 1;
                }
                if class & MARK != 0 {
                    markers |= markers_at(bytes, start);
                }
                if class & SPACE == 0 {
                    each(Span {
                        start: start as u32,
                        end: start as u32 + 1,
                        kind: Kind::Other,
                    });
                }
                continue;
            }
            // A word: its letters and digits run to the first byte that is neither
            // (the zero bits past the text's end stop it at the latest).
            let mut end = start + (!(a >> j)).trailing_zeros() as usize;
            if end % 64 == 0 {
                for next in alnum.iter().skip(end / 64) {
                    let run = (!next).trailing_zeros() as usize;
                    end += run;
                    if run < 64 {
                        break;
                    }
                }
            }
            words |= ascii_word(bytes, bytes[start], start, end);
            // Only a word ending in `f` or `t` can end one of its markers.
            if matches!(bytes[end - 1], b'f' | b't') {
                markers |= word_markers(&bytes[start..end], bytes.get(end).copied());
            }
            each(Span {
                start: start as u32,
                end: end as u32,
                kind: Kind::AsciiWord,
            });
        }
    }
    markers |= return_marker(bytes);
    shape.bytes += bytes.len();
    shape.lines += lines;
    shape.digits += digits;
    shape.numbers += numbers;
    shape.symbols += symbols;
    shape.sentences += sentences;
    shape.question |= question;
    shape.in_number = in_number_before(bytes.len());
    shape.words |= words;
    shape.markers += markers.count_ones() as usize;
    true
}

/// `walk` for any text, a character at a time where it is not ASCII: the counters
/// live in locals until the end (one update of `shape` per part), and a word's ASCII
/// letters and digits are read eight bytes at a time.
fn walk_chars(part: &str, shape: &mut Shape, lower: &mut String, mut each: impl FnMut(Span)) {
    let bytes = part.as_bytes();
    let (mut lines, mut digits, mut numbers, mut symbols, mut sentences) = (0, 0, 0, 0, 0);
    let mut question = false;
    let mut in_number = shape.in_number;
    let mut words = 0u64;
    // Bit i: `CODE_MARKERS[i]` occurs in `part`.
    let mut markers = 0u16;
    // The previous character ended a sentence (`.`, `?` or `!`).
    let mut after_stop = false;
    // The bounded text's parts are at most `HEAD_BYTES` long: offsets fit in a u32.
    let span = |start: usize, end: usize, kind: Kind| Span {
        start: start as u32,
        end: end as u32,
        kind,
    };
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b' ' {
            // The commonest byte, a space: it ends a number, and a sentence after a stop.
            in_number = false;
            sentences += usize::from(after_stop);
            after_stop = false;
            i += 1;
            continue;
        }
        let class = CLASS[usize::from(b)];
        let start = i;
        if class & (LETTER | DIGIT | UTF8) == 0 {
            // ASCII, neither letter nor digit: a one-byte token unless it is a space.
            lines += usize::from(class & NEWLINE != 0);
            in_number &= class & JOIN != 0;
            symbols += usize::from(class & SYMBOL != 0);
            question |= class & QUESTION != 0;
            let space = class & SPACE != 0;
            sentences += usize::from(after_stop && space);
            after_stop = class & STOP != 0;
            if class & MARK != 0 {
                markers |= markers_at(bytes, i);
            }
            i += 1;
            if !space {
                each(span(start, i, Kind::Other));
            }
            continue;
        }
        if class & UTF8 != 0 {
            let Some(c) = part[i..].chars().next() else {
                break;
            };
            in_number = false;
            if !c.is_alphanumeric() {
                let space = c.is_whitespace();
                sentences += usize::from(after_stop && space);
                after_stop = false;
                i += c.len_utf8();
                if !space {
                    each(span(start, i, Kind::Other));
                }
                continue;
            }
        }
        // A word: ASCII letters and digits, and other alphanumeric characters.
        after_stop = false;
        let mut ascii = true;
        loop {
            // Eight bytes at a time while there are eight: the run of ASCII letters and
            // digits from `i`, its digits counted and the numbers starting in it.
            while let Some(word) = load(bytes, i) {
                let (letters, digit_bytes) = ascii_alphanumerics(word);
                let others = !(letters | digit_bytes) & HIGH_BITS;
                let run = (others.trailing_zeros() / 8) as usize;
                // The top bits of the run's bytes: those below its first other byte.
                let d = digit_bytes & (others & others.wrapping_neg()).wrapping_sub(1);
                if d != 0 {
                    // A digit starts a number unless the byte before it is a digit (or,
                    // for the first byte, a number was going on).
                    let after_digit = (d << 8) | (u64::from(in_number) << 7);
                    digits += d.count_ones() as usize;
                    numbers += (d & !after_digit).count_ones() as usize;
                }
                if run > 0 {
                    in_number = (d >> (8 * run - 1)) & 1 != 0;
                }
                i += run;
                if run < 8 {
                    break;
                }
            }
            while let Some(&b) = bytes.get(i) {
                let class = CLASS[usize::from(b)];
                if class & LETTER != 0 {
                    in_number = false;
                } else if class & DIGIT != 0 {
                    digits += 1;
                    numbers += usize::from(!in_number);
                    in_number = true;
                } else {
                    break;
                }
                i += 1;
            }
            if bytes.get(i).is_some_and(|b| *b >= 0x80) {
                if let Some(c) = part[i..].chars().next().filter(|c| c.is_alphanumeric()) {
                    ascii = false;
                    in_number = false;
                    i += c.len_utf8();
                    continue;
                }
            }
            break;
        }
        // Only a word ending in `f` or `t` can end one of its markers.
        if matches!(bytes.get(i - 1), Some(b'f' | b't')) {
            markers |= word_markers(&bytes[start..i], bytes.get(i).copied());
        }
        let token = if ascii {
            words |= ascii_word(bytes, b, start, i);
            span(start, i, Kind::AsciiWord)
        } else {
            // Lowercasing may turn a character outside ASCII into ASCII (the Kelvin
            // sign into `k`): the lowercase form is what is compared.
            let token = span(start, i, Kind::Word);
            token.lower(part, lower);
            if let Some(w) = WORDS.iter().position(|w| *w == lower.as_str()) {
                words |= 1 << w;
            }
            token
        };
        each(token);
    }
    if after_stop {
        sentences += 1;
    }
    markers |= return_marker(bytes);
    shape.bytes += bytes.len();
    shape.lines += lines;
    shape.digits += digits;
    shape.numbers += numbers;
    shape.symbols += symbols;
    shape.sentences += sentences;
    shape.question |= question;
    shape.in_number = in_number;
    shape.words |= words;
    shape.markers += markers.count_ones() as usize;
}

/// Calls `each(hash, first, second)` for every unigram (`second` is `None`) and bigram
/// of the bounded text, with the grams' tokens as the features see them (for labels).
pub fn grams(text: &str, mut each: impl FnMut(u64, &str, Option<&str>)) {
    let (head, tail) = bounded(text);
    let mut shape = Shape::default();
    let mut lower = String::new();
    for part in [head, tail] {
        let (mut prev, mut this) = (String::new(), String::new());
        let mut prev_hash: Option<u64> = None;
        let mut scratch = String::new();
        walk(part, &mut shape, &mut lower, |t| {
            let hash = t.hash(part, &mut scratch);
            t.lower(part, &mut this);
            each(hash, &this, None);
            if let Some(ph) = prev_hash {
                each(bigram(ph, hash), &prev, Some(&this));
            }
            prev_hash = Some(hash);
            std::mem::swap(&mut prev, &mut this);
        });
    }
}

/// Layouts with at most this many buckets (the shipped weights' 2^14) count grams in a
/// per-thread array; larger ones sort the grams' buckets instead.
const COUNTED_BUCKETS: usize = 1 << 14;

/// A count per bucket, and a bit per bucket counted; all zero between uses. A count
/// stays far below `u16::MAX`: the bounded text has at most one token per byte, so
/// at most 4 × (`HEAD_BYTES` + `TAIL_BYTES`) grams in all.
#[derive(Debug, Default)]
struct BucketCounts {
    counts: Vec<u16>,
    seen: Vec<u64>,
}

/// What one extraction works in, kept per thread from call to call: the tokens of the
/// bounded text, the bucket counts (34 KiB once a prompt's grams were counted) and a
/// token's lowercase form.
#[derive(Debug, Default)]
struct Scratch {
    tokens: Vec<Span>,
    buckets: BucketCounts,
    lower: String,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = Default::default();
}

impl Scratch {
    /// This thread's scratch (a fresh one if in use).
    fn take() -> Scratch {
        SCRATCH.try_with(|c| c.take()).unwrap_or_default()
    }

    /// Hands the scratch (its counts all zero) back to this thread for its next call.
    fn give_back(self) {
        let _ = SCRATCH.try_with(|c| c.set(self));
    }
}

/// The counts and the bits of `BucketCounts` as arrays of the largest counted layout,
/// whatever the layout: a bucket is masked into range, so no index is checked.
struct Counting<'a> {
    counts: &'a mut [u16; COUNTED_BUCKETS],
    seen: &'a mut [u64; COUNTED_BUCKETS / 64],
}

impl BucketCounts {
    /// The arrays to count in (allocated on first use).
    fn counting(&mut self) -> Option<Counting<'_>> {
        if self.counts.len() != COUNTED_BUCKETS {
            *self = BucketCounts {
                counts: vec![0; COUNTED_BUCKETS],
                seen: vec![0; COUNTED_BUCKETS / 64],
            };
        }
        Some(Counting {
            counts: self.counts.as_mut_slice().try_into().ok()?,
            seen: self.seen.as_mut_slice().try_into().ok()?,
        })
    }
}

impl Counting<'_> {
    #[inline]
    fn add(&mut self, bucket: usize) {
        let bucket = bucket % COUNTED_BUCKETS;
        self.counts[bucket] += 1;
        self.seen[bucket / 64] |= 1 << (bucket % 64);
    }

    /// The counted buckets ascending with their counts; leaves every count at zero.
    fn drain(self) -> Vec<(u32, f32)> {
        let n = self.seen.iter().map(|w| w.count_ones() as usize).sum();
        let mut out = Vec::with_capacity(n);
        for (w, word) in self.seen.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let b = (w * 64 + bits.trailing_zeros() as usize) % COUNTED_BUCKETS;
                bits &= bits - 1;
                let count = std::mem::take(&mut self.counts[b]);
                out.push((b as u32, f32::from(count)));
            }
        }
        out
    }
}

/// Hashes the tokens of the bounded text (`tokens`, the head's first `in_head`) and
/// gives the bucket of each of its grams (and with `second`, each gram's second
/// bucket) to `add`.
fn count_grams(
    (head, tail): (&str, &str),
    tokens: &[Span],
    in_head: usize,
    (bits, second): (u32, bool),
    lower: &mut String,
    mut add: impl FnMut(usize),
) {
    if second {
        hash_grams((head, tail), tokens, in_head, lower, |h| {
            let (first, other) = gram_buckets(h, bits);
            add(first);
            add(other);
        });
    } else {
        hash_grams((head, tail), tokens, in_head, lower, |h| {
            add(gram_buckets(h, bits).0)
        });
    }
}

/// Hashes the tokens of the bounded text and gives each gram's hash to `count`, in order.
#[inline]
fn hash_grams(
    (head, tail): (&str, &str),
    tokens: &[Span],
    in_head: usize,
    lower: &mut String,
    mut count: impl FnMut(u64),
) {
    let (head_tokens, tail_tokens) = tokens.split_at_checked(in_head).unwrap_or((tokens, &[]));
    for (part, tokens) in [(head, head_tokens), (tail, tail_tokens)] {
        let mut prev: Option<u64> = None;
        for t in tokens {
            let h = t.hash(part, lower);
            count(h);
            if let Some(p) = prev {
                count(bigram(p, h));
            }
            prev = Some(h);
        }
    }
}

/// The number of bits of a bucket index in a layout of `buckets` (rounded up to a power
/// of two, at most 2^22: the weights file allows no more).
pub fn bucket_bits(buckets: u32) -> u32 {
    buckets
        .clamp(1, 1 << 22)
        .next_power_of_two()
        .trailing_zeros()
}

/// The features of `text` with `buckets` hashed buckets (a power of two). With `split`,
/// every gram of a prompt that is not multiple-choice is counted a second time in its
/// own bucket, so free-form prompts can learn what n-grams mean for them apart from
/// what they mean in multiple-choice ones (and share it where it is the same).
///
/// One pass over the bounded text reads its tokens and its shape; then each token is
/// hashed and each gram counted straight into its bucket (no list of grams, no sort).
pub fn extract(text: &str, buckets: u32, split: bool) -> Features {
    extract_if(text, buckets, split, |_, _| true, |_| true)
}

/// `extract`, with the word grams only when `keep_grams` says so given the dense
/// features: else the features `extract` gives with `hashed` cleared, without a token
/// hashed or a gram counted. `may_keep` is asked first, given whether the text is laid
/// out as multiple choice and whether it holds a question mark, and must be true
/// whenever `keep_grams` may be for such a text: when false, the tokens are not even
/// kept for counting (and `keep_grams` is not asked).
pub fn extract_if(
    text: &str,
    buckets: u32,
    split: bool,
    may_keep: impl FnOnce(bool, bool) -> bool,
    keep_grams: impl FnOnce(&[f32; DENSE]) -> bool,
) -> Features {
    let bits = bucket_bits(buckets);
    let parts = bounded(text);
    let mc = multiple_choice(parts.0) || multiple_choice(parts.1);
    let second = split && !mc;
    let question = [parts.0, parts.1]
        .iter()
        .any(|p| memchr::memchr(b'?', p.as_bytes()).is_some());
    let counted = may_keep(mc, question);
    let mut shape = Shape::default();
    let mut scratch = Scratch::take();
    let Scratch {
        tokens,
        buckets,
        lower,
    } = &mut scratch;
    tokens.clear();
    walk(parts.0, &mut shape, lower, |t| {
        if counted {
            tokens.push(t);
        }
    });
    let in_head = tokens.len();
    walk(parts.1, &mut shape, lower, |t| {
        if counted {
            tokens.push(t);
        }
    });
    let dense = dense(&shape, mc);
    let size = 1usize << bits;
    let mut hashed = if !(counted && keep_grams(&dense)) {
        Vec::new()
    } else if let Some(mut counting) = (size <= COUNTED_BUCKETS)
        .then(|| buckets.counting())
        .flatten()
    {
        count_grams(parts, tokens, in_head, (bits, second), lower, |b| {
            counting.add(b)
        });
        counting.drain()
    } else {
        let mut raw: Vec<u32> = Vec::new();
        count_grams(parts, tokens, in_head, (bits, second), lower, |b| {
            raw.push(b as u32)
        });
        raw.sort_unstable();
        let mut hashed: Vec<(u32, f32)> = Vec::new();
        for b in raw {
            match hashed.last_mut() {
                Some((last, v)) if *last == b => *v += 1.0,
                _ => hashed.push((b, 1.0)),
            }
        }
        hashed
    };
    scratch.give_back();
    let norm = hashed.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for (_, v) in &mut hashed {
            *v /= norm;
        }
    }
    Features { hashed, dense }
}

fn dense(shape: &Shape, mc: bool) -> [f32; DENSE] {
    let math = (shape.words & ((1 << MATH_WORDS.len()) - 1)).count_ones() as f32;
    let code = (shape.words >> MATH_WORDS.len()).count_ones() as f32;
    let length = (shape.bytes as f32).ln_1p() / 7.0 - 1.0;
    let sentences = (shape.sentences as f32).ln_1p() / 3.0;
    let has_numbers = f32::from(u8::from(shape.numbers >= 2));
    let shape = [
        length,
        (shape.lines as f32).ln_1p() / 3.0,
        (shape.digits as f32 / shape.bytes.max(1) as f32 * 10.0).min(1.0),
        (shape.numbers as f32).ln_1p() / 3.0,
        (shape.symbols as f32 / 10.0).min(1.0),
        (shape.markers as f32 / 3.0).min(1.0),
        f32::from(u8::from(shape.question)),
        (math / 2.0).min(1.0),
        (code / 2.0).min(1.0),
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
    // Such a line holds an `A` followed by `.` or `)`: most texts hold none, and one
    // search of the bytes for `A` says so.
    let bytes = text.as_bytes();
    if !memchr::memchr_iter(b'A', bytes).any(|at| matches!(bytes.get(at + 1), Some(b'.' | b')'))) {
        return false;
    }
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
        "v3;gram-hash=mul-rot;head={HEAD_BYTES};tail={TAIL_BYTES};buckets={buckets};uni+bi;split={split};l2;"
    );
    for n in SHAPE_NAMES {
        desc.push_str(n);
        desc.push(',');
    }
    for w in MATH_WORDS.iter().chain(CODE_WORDS).chain(CODE_MARKERS) {
        desc.push_str(w);
        desc.push('|');
    }
    hash_bytes(desc.as_bytes(), 0)
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
    fn a_token_hashes_as_its_lowercase_form() {
        assert_eq!(
            hash_bytes(b"HeLLo42", ASCII_LOWER),
            hash_bytes(b"hello42", 0)
        );
        assert_eq!(
            extract("The ÉTÉ Of 1999 WAS Hot.", 1 << 14, true),
            extract("the été of 1999 was hot.", 1 << 14, true)
        );
        // Chunks are zero-padded: the length keeps a token apart from one ending in NULs.
        assert_ne!(hash_bytes(b"ab", 0), hash_bytes(b"ab\0", 0));
        let (first, second) = gram_buckets(hash_bytes(b"word", 0), 14);
        assert!(first < 1 << 14 && second < 1 << 14 && first != second);
        assert_eq!(gram_buckets(hash_bytes(b"word", 0), 0), (0, 0));
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
        let mut all = Vec::new();
        for p in &prompts {
            for (buckets, split) in [(1 << 14, true), (1 << 10, false)] {
                let f = extract(p, buckets, split);
                for (b, v) in &f.hashed {
                    all.extend_from_slice(&b.to_le_bytes());
                    all.extend_from_slice(&v.to_bits().to_le_bytes());
                }
                for v in f.dense {
                    all.extend_from_slice(&v.to_bits().to_le_bytes());
                }
            }
        }
        let h = hash_bytes(&all, 0);
        assert_eq!(h, 0x3994_5f7f_f536_7791, "fingerprint {h:#x}");

        // The grams explanations label, with their hashes, in order.
        let mut all = Vec::new();
        for p in &prompts {
            grams(p, |h, a, b| {
                all.extend_from_slice(&h.to_le_bytes());
                all.extend_from_slice(a.as_bytes());
                all.push(0xff);
                if let Some(b) = b {
                    all.extend_from_slice(b.as_bytes());
                    all.push(0xfe);
                }
            });
        }
        let h = hash_bytes(&all, 0);
        assert_eq!(h, 0xb481_b32e_fd1e_d6aa, "grams fingerprint {h:#x}");
    }

    /// The walk finds the math and code words by first letter and length, then by
    /// their bytes: exactly the words a lookup of each token's lowercase form finds.
    #[test]
    fn words_are_those_of_the_lowercase_tokens() {
        let by_lookup = |text: &str| {
            let mut words = 0u64;
            grams(text, |_, token, second| {
                if second.is_none() {
                    if let Some(i) = WORDS.iter().position(|w| *w == token) {
                        words |= 1 << i;
                    }
                }
            });
            words
        };
        let by_walk = |text: &str| {
            let mut shape = Shape::default();
            walk(text, &mut shape, &mut String::new(), |_| {});
            shape.words
        };
        let mut texts: Vec<String> = vec![
            WORDS.join(" "),
            WORDS.join(",").to_uppercase(),
            WORDS
                .iter()
                .map(|w| format!("{w}s {w}1 x{w} {w}é"))
                .collect(),
            "SoLvE the PROBABILITY; Probabilityy sum3 3sum \u{212A}ind ſum ｓｕｍ Python3 JAVA"
                .into(),
            "implement\nalgorithm\tderivative(evaluate)".into(),
        ];
        let alphabet: Vec<char> = "sumdefintclasprobityLSUME 1é\u{212A}".chars().collect();
        let mut state = 11u64;
        let mut next = || {
            state = state.wrapping_mul(MIX).wrapping_add(MIX2);
            (state >> 33) as usize
        };
        for _ in 0..3000 {
            let len = next() % 16;
            texts.push(
                (0..len)
                    .map(|_| alphabet[next() % alphabet.len()])
                    .collect(),
            );
        }
        for text in &texts {
            assert_eq!(by_walk(text), by_lookup(text), "{text:?}");
        }
    }

    /// Features without their grams are `extract`'s with `hashed` cleared, and the
    /// predicate sees the dense features.
    #[test]
    fn features_without_grams_are_the_rest_of_them() {
        for text in [
            "Which?\nA. one\nB. two\nC. three\nD. four\nAnswer:",
            "Tom has 3 apples and buys 4. How many now?",
            "Write a poem about the sea.",
        ] {
            let mut all = extract(text, 1 << 14, true);
            let mut seen = None;
            let without = extract_if(
                text,
                1 << 14,
                true,
                |_, _| true,
                |d| {
                    seen = Some(*d);
                    false
                },
            );
            assert_eq!(seen, Some(all.dense));
            assert!(!all.hashed.is_empty());
            all.hashed.clear();
            assert_eq!(without, all);
            assert_eq!(
                extract_if(text, 1 << 14, true, |_, _| true, |_| true),
                extract(text, 1 << 14, true)
            );
            // Told up front that no such text keeps its grams: the same features.
            let mut told = None;
            let gated = extract_if(
                text,
                1 << 14,
                true,
                |mc, question| {
                    told = Some((mc, question));
                    false
                },
                |_| true,
            );
            assert_eq!(gated, all);
            assert_eq!(told, Some((all.dense[0] != 0.0, all.dense[7] != 0.0)));
        }
    }

    /// The walk finds code markers without searching for them; it must count exactly
    /// the markers a substring search finds, on tricky and on generated texts.
    #[test]
    fn code_markers_are_those_a_substring_search_finds() {
        let by_search = |text: &str| {
            CODE_MARKERS
                .iter()
                .filter(|m| memchr::memmem::find(text.as_bytes(), m.as_bytes()).is_some())
                .count()
        };
        let by_walk = |text: &str| {
            let mut shape = Shape::default();
            walk(text, &mut shape, &mut String::new(), |_| {});
            shape.markers
        };
        let mut texts: Vec<String> = "def|def |undef x|xdef\t|Def |noreturns|returnreturn|retur n|x() y|(\n)|( )|``|```|é```é|``é`|print (|reprint(x|printé(|importé |import\timport |ÉdefX def(|{;}|a{b}c;d|def f(x): return x; print(x) ```import os```"
            .split('|')
            .map(String::from)
            .collect();
        texts.push(String::new());
        let alphabet: Vec<char> = "defrtunimpo ()`{};é\n1.Ab".chars().collect();
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(MIX).wrapping_add(MIX2);
            (state >> 33) as usize
        };
        for _ in 0..3000 {
            let len = next() % 24;
            let text = (0..len)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect();
            texts.push(text);
        }
        for text in &texts {
            assert_eq!(by_walk(text), by_search(text), "{text:?}");
        }
    }

    /// The walk of ASCII text 64 bytes at a time counts the same shape and gives the
    /// same tokens as the walk a character at a time, whatever the bytes, the block
    /// boundaries and the number carried over from the part before.
    #[test]
    fn ascii_text_walks_the_same_by_blocks_and_by_characters() {
        let pieces = [
            "def ", "import ", "print(", "return", "()", "```", "solve", "sum", "3.5", "1,200",
            ". ", "? ", "!", "..", ".\n", "A. x\n", "B) y\n", "int", "Python ", "undef ",
            "reprint(", "x", " ", "\t", "\r\n", "\x0b", "{;}", "a1b2", "9.", ",7", "==",
        ];
        let alphabet: Vec<u8> = (0..128u8).collect();
        let mut state = 17u64;
        let mut next = || {
            state = state.wrapping_mul(MIX).wrapping_add(MIX2);
            (state >> 33) as usize
        };
        let mut texts: Vec<String> = vec![
            String::new(),
            "a".repeat(64),
            "7".repeat(129),
            "word ".repeat(819) + "x",
            "Explain, step by step, how to compute the derivative of x^3 + 2x at x = 4. "
                .repeat(30),
        ];
        for _ in 0..4000 {
            let len = match next() % 4 {
                0 => next() % 70,
                1 => next() % 300,
                _ => next() % 1500,
            };
            let mut text = String::new();
            while text.len() < len {
                if next() % 3 == 0 {
                    text.push_str(pieces[next() % pieces.len()]);
                } else {
                    text.push(char::from(alphabet[next() % alphabet.len()]));
                }
            }
            texts.push(text);
        }
        for text in &texts {
            let cut = text.len().min(next() % (text.len() + 1));
            let (head, tail) = text.split_at(cut);
            let (mut by_blocks, mut by_chars) = (Shape::default(), Shape::default());
            let (mut blocks_tokens, mut chars_tokens) = (Vec::new(), Vec::new());
            for part in [head, tail] {
                assert!(walk_ascii(part, &mut by_blocks, &mut |t| blocks_tokens.push(t)));
                walk_chars(part, &mut by_chars, &mut String::new(), |t| {
                    chars_tokens.push(t)
                });
                assert_eq!(by_blocks, by_chars, "{part:?}");
                assert_eq!(blocks_tokens, chars_tokens, "{part:?}");
            }
        }
        // Text outside ASCII, or longer than a part, is left to the walk by characters.
        let mut shape = Shape::default();
        assert!(!walk_ascii("naïve", &mut shape, &mut |_| {}));
        assert!(!walk_ascii(
            &"a".repeat(HEAD_BYTES + 1),
            &mut shape,
            &mut |_| {}
        ));
        assert_eq!(shape, Shape::default());
    }

    #[test]
    fn tokens_hash_the_same_eight_bytes_at_a_time() {
        let text = b"AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
        // Every word of every text length: loads past a word's end, loads ending at the
        // text's end, and texts shorter than one load.
        for len in 0..=text.len() {
            let text = &text[..len];
            for start in 0..len {
                for end in start..=len {
                    assert_eq!(
                        hash_word(text, start, end),
                        hash_bytes(&text[start..end], ASCII_LOWER)
                    );
                }
            }
        }
        for b in 0..128u8 {
            assert_eq!(BYTE_HASHES[usize::from(b)], hash_bytes(&[b], 0));
        }
    }

    #[test]
    fn layout_hash_depends_on_buckets() {
        assert_ne!(layout_hash(1 << 14, true), layout_hash(1 << 15, true));
        assert_ne!(layout_hash(1 << 14, true), layout_hash(1 << 14, false));
        assert_eq!(layout_hash(1 << 14, true), layout_hash(1 << 14, true));
    }
}
