//! Reading a `chat.completion.chunk` for the stream writer: a narrow hand parser for
//! the shape nearly every chunk has (at most one choice, whose delta holds `content`,
//! `refusal` or reasoning text, with scalar fields beside them), and serde's full parse
//! for anything else. The fast path never decides differently from serde: on any input
//! it does not fully understand (an escaped key, a duplicate, a nested value it would
//! have to skip, a tool call, a second choice, a lone surrogate, a number where a count
//! goes) it gives up and the full parse reads the chunk, so errors always come from serde.

use std::borrow::Cow;

use crate::api::chat_view::{ChoiceIn, DeltaIn};

/// What the writer reads of a chunk of the common shape.
pub(super) struct TextChunk<'a> {
    pub model: Option<Cow<'a, str>>,
    /// The only choice, if any.
    pub choice: Option<ChoiceIn<'a>>,
}

/// The chunk read by the narrow parser, `None` when it is not of the shape it reads.
pub(super) fn fast(data: &[u8]) -> Option<TextChunk<'_>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut p = Parser {
        text,
        bytes: data,
        at: 0,
    };
    let chunk = p.chunk()?;
    p.ws();
    (p.at == p.bytes.len()).then_some(chunk)
}

/// The length of the start of `bytes` that a JSON string holds as it is: up to the first
/// quote, backslash or control character (serde_json escapes exactly these on writing,
/// and stops at them on reading). Eight bytes at a time.
pub(super) fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    for word in bytes.chunks_exact(8) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let w = u64::from_le_bytes(eight);
        // Per byte: zero after xor with '"' or '\\', or below 0x20. The lowest flagged
        // byte is always a true one (borrows only carry upwards).
        let quote = w ^ (ONES * u64::from(b'"'));
        let slash = w ^ (ONES * u64::from(b'\\'));
        let flags = ((quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

/// Sets `slot` once; a second value is a duplicate key, which serde refuses.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Skips JSON whitespace (the four characters serde_json accepts).
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Consumes `byte` after optional whitespace.
    fn eat(&mut self, byte: u8) -> Option<()> {
        self.ws();
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    /// Walks the members of an object (its `{` already consumed), calling `member` with
    /// each key (a string without escapes) with the parser at its value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = match self.string()? {
                Cow::Borrowed(key) => key,
                // An escaped key: serde unescapes it before matching; not read here.
                Cow::Owned(_) => return None,
            };
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn chunk(&mut self) -> Option<TextChunk<'a>> {
        self.eat(b'{')?;
        let (mut id, mut model, mut choices) = (None, None, None);
        self.members(|p, key| match key {
            "id" => once(&mut id, p.opt_string()?),
            "model" => once(&mut model, p.opt_string()?),
            "choices" => once(&mut choices, p.choices()?),
            _ => p.scalar(),
        })?;
        // `id` is checked as serde checks it, and not kept: the writer names its own.
        let _ = id;
        Some(TextChunk {
            model: model.flatten(),
            choice: choices.flatten(),
        })
    }

    /// An array of no or one choice.
    fn choices(&mut self) -> Option<Option<ChoiceIn<'a>>> {
        self.eat(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Some(None);
        }
        let choice = self.choice()?;
        self.eat(b']')?;
        Some(Some(choice))
    }

    fn choice(&mut self) -> Option<ChoiceIn<'a>> {
        self.eat(b'{')?;
        let (mut index, mut delta, mut finish_reason) = (None, None, None);
        self.members(|p, key| match key {
            "index" => once(&mut index, p.index()?),
            "delta" => once(&mut delta, p.delta()?),
            "finish_reason" => once(&mut finish_reason, p.opt_string()?),
            _ => p.scalar(),
        })?;
        Some(ChoiceIn {
            index: index.unwrap_or(0),
            delta: delta.flatten(),
            finish_reason: finish_reason.flatten(),
        })
    }

    /// A delta object or `null`; `None` (not read here) for tool calls, thinking blocks
    /// or any other nested value.
    fn delta(&mut self) -> Option<Option<DeltaIn<'a>>> {
        if self.literal("null") {
            return Some(None);
        }
        self.eat(b'{')?;
        let (mut content, mut refusal, mut reasoning) = (None, None, None);
        self.members(|p, key| match key {
            "content" => once(&mut content, p.opt_string()?),
            "refusal" => once(&mut refusal, p.opt_string()?),
            // serde's alias: both names fill one field, and both at once are a duplicate.
            "reasoning_content" | "reasoning" => once(&mut reasoning, p.opt_string()?),
            "tool_calls" | "thinking_blocks" => None,
            _ => p.scalar(),
        })?;
        Some(Some(DeltaIn {
            refusal: refusal.flatten(),
            content: content.flatten(),
            reasoning_content: reasoning.flatten(),
            tool_calls: Vec::new(),
            thinking_blocks: Vec::new(),
        }))
    }

    /// A choice's index: digits that fit a `u32` (anything else is left to serde).
    fn index(&mut self) -> Option<u32> {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        let digits = self.text.get(start..self.at)?;
        if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        digits.parse().ok()
    }

    fn literal(&mut self, word: &str) -> bool {
        let found = self.bytes[self.at..].starts_with(word.as_bytes());
        if found {
            self.at += word.len();
        }
        found
    }

    /// A string or `null`.
    fn opt_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.literal("null") {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A value of a field serde ignores: a string, number, `true`, `false` or `null`,
    /// checked as strictly as serde checks what it skips. Objects and arrays: `None`.
    fn scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.number(),
            _ => ["null", "true", "false"]
                .iter()
                .any(|w| self.literal(w))
                .then_some(()),
        }
    }

    /// A JSON number: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digit()?;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digit()?;
            self.digits();
        }
        Some(())
    }

    fn digit(&mut self) -> Option<()> {
        self.peek().filter(u8::is_ascii_digit).map(|_| self.at += 1)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// A string, borrowed when it has no escapes. Control characters, unknown escapes
    /// and lone surrogates are left to serde.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.at += 1;
        let start = self.at;
        // The common case: no escape before the closing quote.
        self.at += plain_len(&self.bytes[start..]);
        match self.peek()? {
            b'"' => {
                let s = self.text.get(start..self.at)?;
                self.at += 1;
                return Some(Cow::Borrowed(s));
            }
            b'\\' => {}
            _ => return None,
        }
        let mut owned = String::with_capacity(self.at - start + 16);
        owned.push_str(self.text.get(start..self.at)?);
        loop {
            let run = self.at;
            self.at += plain_len(&self.bytes[run..]);
            owned.push_str(self.text.get(run..self.at)?);
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(Cow::Owned(owned));
                }
                b'\\' => {
                    self.at += 1;
                    let c = match self.peek()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            self.at += 1;
                            let unit = self.hex4()?;
                            let c = match unit {
                                0xD800..=0xDBFF => {
                                    if !self.literal("\\u") {
                                        return None;
                                    }
                                    let low = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&low) {
                                        return None;
                                    }
                                    let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                                    char::from_u32(code)?
                                }
                                0xDC00..=0xDFFF => return None,
                                _ => char::from_u32(unit)?,
                            };
                            owned.push(c);
                            continue;
                        }
                        _ => return None,
                    };
                    self.at += 1;
                    owned.push(c);
                }
                _ => return None,
            }
        }
    }

    /// Four hex digits of a `\u` escape.
    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(digits, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::api::chat_view::ChunkIn;

    /// Everything the writer reads of a choice, comparable.
    fn choice_view(ch: &ChoiceIn<'_>) -> String {
        let mut s = format!(" [index={} finish={:?}", ch.index, ch.finish_reason);
        if let Some(d) = &ch.delta {
            s.push_str(&format!(
                " delta content={:?} refusal={:?} reasoning={:?} tools={} thinking={}",
                d.content,
                d.refusal,
                d.reasoning_content,
                d.tool_calls.len(),
                d.thinking_blocks.len()
            ));
        }
        s.push(']');
        s
    }

    fn view(c: &ChunkIn<'_>) -> String {
        let mut s = format!("model={:?}", c.model);
        for ch in &c.choices {
            s.push_str(&choice_view(ch));
        }
        s
    }

    fn fast_view(c: &TextChunk<'_>) -> String {
        let mut s = format!("model={:?}", c.model);
        if let Some(ch) = &c.choice {
            s.push_str(&choice_view(ch));
        }
        s
    }

    /// Whether the fast path read `text`; an error when it read it otherwise than serde
    /// (or read what serde refuses).
    fn agree(text: &str) -> Result<bool, String> {
        let Some(fast) = fast(text.as_bytes()) else {
            return Ok(false);
        };
        match ChunkIn::parse(text.as_bytes()) {
            Ok(serde) if view(&serde) == fast_view(&fast) => Ok(true),
            Ok(serde) => Err(format!(
                "{text:?}: serde read {}, the fast path {}",
                view(&serde),
                fast_view(&fast)
            )),
            Err(e) => Err(format!(
                "{text:?}: serde refuses it ({e}), the fast path read {}",
                fast_view(&fast)
            )),
        }
    }

    #[test]
    fn common_chunks_take_the_fast_path_and_read_as_serde_does() {
        let fast_ones = [
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" word1"},"finish_reason":null}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning":"think"}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"b"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"line\n\"q\" \u00e9 \ud83d\ude00 \/ \\ \b\f\r\t"}}]}"#,
            r#"{"choices":[{"index":0,"delta":null,"finish_reason":"length"}],"created":-1.5e+3,"x":true,"y":false}"#,
            " { \"choices\" : [ ] } \n",
            "{}",
            r#"{"choices":[{"index":4294967295,"delta":{"content":"é😀"}}]}"#,
        ];
        for text in fast_ones {
            assert_eq!(agree(text), Ok(true), "{text}");
        }
        let slow_ones = [
            r#"{"choices":[{"index":1,"delta":{"content":"b"}},{"index":0,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"}}],"model":"a","model":"b"}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning":"a","reasoning_content":"b"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"\ud800"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"\udc00"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"\x"}}]}"#,
            "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\u{1}\"}}]}",
            r#"{"choices":[{"index":0.0,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"index":-0,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"index":4294967296,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"index":01,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"index":null}]}"#,
            r#"{"choices":null}"#,
            r#"{"choices":[{"index":0,"delta":{"content":5}}]}"#,
            r#"{"ch\u006fices":[]}"#,
            r#"{"choices":[]} x"#,
            r#"{"choices":[],}"#,
            r#"{"created":01}"#,
            r#"{"created":1.}"#,
            r#"{"created":-}"#,
            r#"{"x":nul}"#,
            r#"[]"#,
            "",
        ];
        for text in slow_ones {
            assert_eq!(agree(text), Ok(false), "{text}");
        }
        // Invalid UTF-8 is serde's to refuse.
        assert!(fast(b"{\"model\":\"\xff\"}").is_none());
        assert!(ChunkIn::parse(b"{\"model\":\"\xff\"}").is_err());
    }

    /// Pieces of chunk JSON: valid ones, invalid ones and shapes the fast path leaves to serde.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(" ".to_string()),
            Just("\n\t\r".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("null".to_string()),
            Just("\\u00e9".to_string()),
            Just("\\ud83d\\ude00".to_string()),
            Just("\\ud83d".to_string()),
            Just("\\n".to_string()),
            Just("\u{1}".to_string()),
            Just("é".to_string()),
            Just("-0.5e3".to_string()),
            Just("\"content\":".to_string()),
            Just("\"index\":".to_string()),
            Just("\"reasoning\":\"r\"".to_string()),
            Just("\"tool_calls\":[]".to_string()),
            "[a-z0-9 ]{0,6}",
        ]
    }

    /// Chunks of the common shape with their fields in any order, any values.
    fn chunk() -> impl Strategy<Value = String> {
        let text = prop_oneof![
            "\\PC{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just("null".to_string()),
            Just("\"a\\/b\\u0041\\t\"".to_string()),
            Just("5".to_string()),
        ];
        let index = prop_oneof![
            Just("0".to_string()),
            Just("1".to_string()),
            Just("0.0".to_string()),
            Just("-1".to_string()),
            Just("99999999999".to_string()),
            Just("null".to_string()),
        ];
        let delta_key = prop_oneof![
            Just("content"),
            Just("refusal"),
            Just("reasoning"),
            Just("reasoning_content"),
            Just("role"),
            Just("extra"),
        ];
        let delta =
            proptest::collection::vec((delta_key, text.clone()), 0..4).prop_map(|members| {
                let inner: Vec<String> = members
                    .iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", inner.join(","))
            });
        let choice = (
            index,
            prop_oneof![delta, Just("null".to_string())],
            text.clone(),
            any::<u8>(),
        )
            .prop_map(|(index, delta, finish, order)| {
                let mut members = vec![
                    format!("\"index\":{index}"),
                    format!("\"delta\":{delta}"),
                    format!("\"finish_reason\":{finish}"),
                    "\"logprobs\":null".to_string(),
                ];
                members.rotate_left(usize::from(order) % 4);
                members.truncate(1 + usize::from(order) % 4);
                format!("{{{}}}", members.join(" , "))
            });
        let choices =
            proptest::collection::vec(choice, 0..3).prop_map(|c| format!("[{}]", c.join(",")));
        (choices, text.clone(), text, any::<u8>()).prop_map(|(choices, model, id, order)| {
            let mut members = [
                format!("\"id\":{id}"),
                "\"object\":\"chat.completion.chunk\"".to_string(),
                "\"created\":1700000000".to_string(),
                format!("\"model\":{model}"),
                format!("\"choices\":{choices}"),
            ];
            members.rotate_left(usize::from(order) % 5);
            format!("{{{}}}", members.join(","))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn plain_len_stops_where_serde_would(bytes in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff, Just(b'a')], 0..40)) {
            let naive = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(bytes.len());
            prop_assert_eq!(plain_len(&bytes), naive);
        }

        #[test]
        fn generated_chunks_read_as_serde_reads_them(text in chunk()) {
            agree(&text).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn mangled_chunks_read_as_serde_reads_them(
            text in chunk(),
            at in any::<prop::sample::Index>(),
            cut in 0usize..4,
            insert in piece(),
        ) {
            // Replace a few bytes at a character boundary with a piece of JSON.
            let mut cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            cuts.push(text.len());
            let start = cuts[at.index(cuts.len())];
            let end = cuts.iter().copied().find(|&i| i >= start + cut).unwrap_or(text.len());
            let mangled = format!("{}{}{}", &text[..start], insert, &text[end..]);
            agree(&mangled).map_err(TestCaseError::fail)?;
        }
    }
}
