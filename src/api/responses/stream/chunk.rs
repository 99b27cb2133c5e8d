//! Reading a `chat.completion.chunk` for the stream writer: a narrow hand parser for
//! the shape nearly every chunk has (at most one choice, whose delta holds `content`,
//! `refusal` or reasoning text, with scalar fields beside them), and serde's full parse
//! for anything else. The fast path never decides differently from serde: on any input
//! it does not fully understand (an escaped key, a duplicate, a nested value it would
//! have to skip, a tool call, a second choice, a lone surrogate, a number where a count
//! goes) it gives up and the full parse reads the chunk, so errors always come from serde.

use std::borrow::Cow;

use crate::api::chat_view::{ChoiceIn, DeltaIn};
use crate::api::responses::write::plain_len;

/// What the writer reads of a chunk of the common shape.
pub(super) struct TextChunk<'a> {
    pub model: Option<Cow<'a, str>>,
    /// The only choice, if any.
    pub choice: Option<ChoiceIn<'a>>,
}

/// The chunk read by the narrow parser, `None` when it is not of the shape it reads.
#[cfg(test)]
pub(super) fn fast(data: &[u8]) -> Option<TextChunk<'_>> {
    fast_with_head(data, &mut None, &mut None)
}

/// Like `fast`, with where its one delta text string lies, if it has one (`span`), and
/// the parser's state where the `choices` value starts, if the chunk has one (`at`, see
/// `Head`): set beside the chunk, not returned with it, which would move it once more.
fn fast_with_head<'a>(
    data: &'a [u8],
    span: &mut Option<Span>,
    at: &mut Option<HeadAt<'a>>,
) -> Option<TextChunk<'a>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut p = Parser::new(text);
    let chunk = p.chunk(at)?;
    p.ws();
    *span = p.span.filter(|_| p.spans == 1);
    (p.at == p.bytes.len()).then_some(chunk)
}

/// Where a chunk's `choices` value starts, and what the parser had read before it.
struct HeadAt<'a> {
    at: usize,
    id: bool,
    model: Option<Option<Cow<'a, str>>>,
}

/// The bytes of the last chunk read in full up to its `choices` value, and the parser's
/// state there (the top-level keys read before it). A chunk with the same bytes up to
/// there reads the same up to there (the parser's every decision depends on the bytes
/// before it), so only its rest is read: the id, object, creation time and model every
/// chunk of a stream repeats are not read again for a chunk of another shape (the role
/// chunk, the first text, the finish).
#[derive(Debug, Default)]
struct Head {
    bytes: Vec<u8>,
    valid: bool,
    id: bool,
    model: Option<Option<String>>,
}

impl Head {
    fn fits(&self, data: &[u8]) -> bool {
        self.valid && data.starts_with(&self.bytes)
    }

    fn keep(&mut self, data: &[u8], at: &HeadAt<'_>) {
        let Some(bytes) = data.get(..at.at) else {
            self.valid = false;
            return;
        };
        self.bytes.clear();
        self.bytes.extend_from_slice(bytes);
        self.id = at.id;
        self.model = at.model.as_ref().map(|m| m.as_deref().map(str::to_string));
        self.valid = true;
    }

    /// `data`, which `fits`, read from its `choices` value on (`span` as in `data`).
    fn read<'a>(&'a self, data: &'a [u8], span: &mut Option<Span>) -> Option<TextChunk<'a>> {
        let skip = self.bytes.len();
        let rest = data.get(skip..)?;
        // The head ends at an ASCII byte (`:` or whitespace): the rest is valid UTF-8
        // exactly when the whole is.
        let text = std::str::from_utf8(rest).ok()?;
        let mut p = Parser::new(text);
        let id = self.id.then_some(None);
        let model = self.model.as_ref().map(|m| m.as_deref().map(Cow::Borrowed));
        let chunk = p.chunk_from_choices(id, model)?;
        p.ws();
        *span = p.span.filter(|_| p.spans == 1).map(|s| Span {
            field: s.field,
            start: s.start + skip,
            end: s.end + skip,
        });
        (p.at == p.bytes.len()).then_some(chunk)
    }
}

/// Which text of a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Field {
    #[default]
    Content,
    Refusal,
    Reasoning,
}

/// Where a delta's text string lies in a chunk: its quotes included.
#[derive(Debug, Clone, Copy)]
struct Span {
    field: Field,
    start: usize,
    end: usize,
}

/// The last chunk read by hand that had one delta text, as the bytes before and after
/// that text and what the narrow parser read of it. A chunk with the same bytes around a
/// text without escapes reads the same but for the text (the parser's every decision
/// before the text depends on the bytes before it, and after it on the same state and the
/// bytes after it): it is read with two comparisons and a scan of the text. Streams send
/// hundreds of such chunks, differing in their text alone.
#[derive(Debug, Default)]
struct Shape {
    valid: bool,
    /// The chunk up to the text's opening quote.
    prefix: Vec<u8>,
    /// The chunk after the text's closing quote.
    suffix: Vec<u8>,
    field: Field,
    model: Option<String>,
    index: u32,
    finish_reason: Option<String>,
    /// The delta's texts other than `field` (before or after it in the chunk).
    content: Option<String>,
    refusal: Option<String>,
    reasoning: Option<String>,
}

fn owned(to: &mut Option<String>, from: Option<&str>) {
    match (to.as_mut(), from) {
        (Some(to), Some(from)) => {
            to.clear();
            to.push_str(from);
        }
        (_, from) => *to = from.map(str::to_string),
    }
}

/// What the writer remembers of the chunks it read, to read the next ones quickly: the
/// last chunk's shape around its text, and its bytes up to its choices.
#[derive(Debug, Default)]
pub(super) struct Memo {
    shape: Shape,
    head: Head,
}

impl Memo {
    /// The chunk `data` as the narrow parser reads it (`None`: left to serde), read
    /// against the last chunk's shape, or from its choices on when it starts as the last
    /// chunk read in full did.
    pub(super) fn read<'a>(&'a mut self, data: &'a [u8]) -> Option<TextChunk<'a>> {
        if let Some(text) = self.shape.same_shape(data) {
            return Some(self.shape.with_text(text));
        }
        let fits = self.head.fits(data);
        let Memo { shape, head } = self;
        let mut span = None;
        let chunk = if fits {
            head.read(data, &mut span)?
        } else {
            let mut at = None;
            let chunk = fast_with_head(data, &mut span, &mut at)?;
            match at {
                Some(at) => head.keep(data, &at),
                None => head.valid = false,
            }
            chunk
        };
        // A chunk without one text (a role, a finish) leaves the shape remembered.
        if let (Some(span), Some(choice)) = (span, &chunk.choice) {
            shape.remember(data, span, &chunk, choice);
        }
        Some(chunk)
    }

    /// See `Shape::only_content`.
    pub(super) fn only_content<'d>(&self, data: &'d [u8]) -> Option<&'d str> {
        self.shape.only_content(data)
    }

    #[cfg(test)]
    fn same_shape<'d>(&self, data: &'d [u8]) -> Option<&'d str> {
        self.shape.same_shape(data)
    }
}

impl Shape {
    /// The text of `data` if it is the remembered chunk with another text, and that
    /// chunk's choice 0 had content text and nothing else the writer reads (no other
    /// text, no finish reason): all `read` would give the writer is that text.
    fn only_content<'d>(&self, data: &'d [u8]) -> Option<&'d str> {
        let other = |t: &Option<String>| t.as_deref().is_some_and(|t| !t.is_empty());
        if self.field != Field::Content
            || self.index != 0
            || self.finish_reason.is_some()
            || other(&self.refusal)
            || other(&self.reasoning)
        {
            return None;
        }
        self.same_shape(data)
    }

    /// The text of `data` if it is the remembered chunk with another text, without escapes.
    fn same_shape<'d>(&self, data: &'d [u8]) -> Option<&'d str> {
        if !self.valid {
            return None;
        }
        let body = data
            .strip_prefix(self.prefix.as_slice())?
            .strip_prefix(b"\"")?;
        let n = plain_len(body);
        let (text, rest) = body.split_at_checked(n)?;
        if rest.strip_prefix(b"\"")? != self.suffix.as_slice() {
            return None;
        }
        std::str::from_utf8(text).ok()
    }

    fn with_text<'a>(&'a self, text: &'a str) -> TextChunk<'a> {
        let pick = |field: Field, kept: &'a Option<String>| {
            if self.field == field {
                Some(Cow::Borrowed(text))
            } else {
                kept.as_deref().map(Cow::Borrowed)
            }
        };
        TextChunk {
            model: self.model.as_deref().map(Cow::Borrowed),
            choice: Some(ChoiceIn {
                index: self.index,
                delta: Some(DeltaIn {
                    refusal: pick(Field::Refusal, &self.refusal),
                    content: pick(Field::Content, &self.content),
                    reasoning_content: pick(Field::Reasoning, &self.reasoning),
                    tool_calls: Vec::new(),
                    thinking_blocks: Vec::new(),
                }),
                finish_reason: self.finish_reason.as_deref().map(Cow::Borrowed),
            }),
        }
    }

    fn remember(&mut self, data: &[u8], span: Span, chunk: &TextChunk<'_>, choice: &ChoiceIn<'_>) {
        let (Some(before), Some(after), Some(delta)) = (
            data.get(..span.start),
            data.get(span.end..),
            choice.delta.as_ref(),
        ) else {
            self.valid = false;
            return;
        };
        self.prefix.clear();
        self.prefix.extend_from_slice(before);
        self.suffix.clear();
        self.suffix.extend_from_slice(after);
        self.field = span.field;
        owned(&mut self.model, chunk.model.as_deref());
        self.index = choice.index;
        owned(&mut self.finish_reason, choice.finish_reason.as_deref());
        owned(&mut self.content, delta.content.as_deref());
        owned(&mut self.refusal, delta.refusal.as_deref());
        owned(&mut self.reasoning, delta.reasoning_content.as_deref());
        self.valid = true;
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// The delta's text string, when it has one (`spans` counts them).
    span: Option<Span>,
    spans: u32,
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
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            bytes: text.as_bytes(),
            at: 0,
            span: None,
            spans: 0,
        }
    }

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
    fn members(&mut self, member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        self.members_from_key(member)
    }

    /// `members` from after a member's value on.
    fn members_after_value(
        &mut self,
        member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        if self.member_end()? {
            return Some(());
        }
        self.members_from_key(member)
    }

    /// `members` from a member's key on.
    fn members_from_key(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        loop {
            self.ws();
            let key = self.key()?;
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
            if self.member_end()? {
                return Some(());
            }
        }
    }

    /// After a member's value: `true` past the object's closing brace, `false` past the
    /// comma before the next member.
    fn member_end(&mut self) -> Option<bool> {
        self.ws();
        let end = match self.peek()? {
            b',' => false,
            b'}' => true,
            _ => return None,
        };
        self.at += 1;
        Some(end)
    }

    /// A key: a short string, read byte by byte. An escaped key (serde unescapes it
    /// before matching) or a control character: not read here.
    fn key(&mut self) -> Option<&'a str> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut end = start;
        loop {
            match *self.bytes.get(end)? {
                b'"' => break,
                b'\\' => return None,
                b if b < 0x20 => return None,
                _ => end += 1,
            }
        }
        let key = self.text.get(start..end)?;
        self.at = end + 1;
        Some(key)
    }

    /// A whole chunk; `head` is set to where its `choices` value starts, if it has one.
    fn chunk(&mut self, head: &mut Option<HeadAt<'a>>) -> Option<TextChunk<'a>> {
        self.eat(b'{')?;
        let (mut id, mut model, mut choices) = (None, None, None);
        self.members(|p, key| match key {
            "id" => once(&mut id, p.opt_string()?),
            "model" => once(&mut model, p.opt_string()?),
            "choices" => {
                *head = Some(HeadAt {
                    at: p.at,
                    id: id.is_some(),
                    model: model.clone(),
                });
                once(&mut choices, p.choices()?)
            }
            _ => p.skip(0),
        })?;
        Some(TextChunk {
            model: model.flatten(),
            choice: choices.flatten(),
        })
    }

    /// The rest of a chunk from its `choices` value on, the `id` and `model` before it
    /// as read (`Some` when read, each). `id` is checked as serde checks it, and not
    /// kept: the writer names its own.
    fn chunk_from_choices(
        &mut self,
        mut id: Option<Option<Cow<'a, str>>>,
        mut model: Option<Option<Cow<'a, str>>>,
    ) -> Option<TextChunk<'a>> {
        self.ws();
        let mut choices = Some(self.choices()?);
        self.members_after_value(|p, key| match key {
            "id" => once(&mut id, p.opt_string()?),
            "model" => once(&mut model, p.opt_string()?),
            "choices" => once(&mut choices, p.choices()?),
            _ => p.skip(0),
        })?;
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
            _ => p.skip(0),
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
            "content" => once(&mut content, p.text(Field::Content)?),
            "refusal" => once(&mut refusal, p.text(Field::Refusal)?),
            // serde's alias: both names fill one field, and both at once are a duplicate.
            "reasoning_content" | "reasoning" => once(&mut reasoning, p.text(Field::Reasoning)?),
            "tool_calls" | "thinking_blocks" => None,
            _ => p.skip(0),
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

    /// A delta's text (a string or `null`), its place noted when it is a string.
    fn text(&mut self, field: Field) -> Option<Option<Cow<'a, str>>> {
        let start = self.at;
        let text = self.opt_string()?;
        if text.is_some() {
            self.spans += 1;
            self.span = Some(Span {
                field,
                start,
                end: self.at,
            });
        }
        Some(text)
    }

    /// A string or `null`.
    fn opt_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.literal("null") {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A value of a field serde ignores (`usage`, `logprobs`, `system_fingerprint`, …),
    /// checked as strictly as serde checks what it skips, or `None` to leave it to serde
    /// (what `string` leaves to it, and values nested deeper than `MAX_DEPTH`: serde's
    /// limit is far above).
    fn skip(&mut self, depth: u32) -> Option<()> {
        const MAX_DEPTH: u32 = 8;
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.number(),
            b'{' if depth < MAX_DEPTH => self.list(b'}', |p| {
                p.string()?;
                p.eat(b':')?;
                p.ws();
                p.skip(depth + 1)
            }),
            b'[' if depth < MAX_DEPTH => self.list(b']', |p| p.skip(depth + 1)),
            b'{' | b'[' => None,
            _ => ["null", "true", "false"]
                .iter()
                .any(|w| self.literal(w))
                .then_some(()),
        }
    }

    /// The elements of an array or members of an object after its opening bracket, each
    /// read by `element`, up to the `close` bracket (no trailing comma, as serde).
    fn list(&mut self, close: u8, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.at += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.at += 1;
            return Some(());
        }
        loop {
            self.ws();
            element(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.at += 1,
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
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
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens_details":{"reasoning_tokens":0},"x":[1,[],{},"\u00e9",null]}}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a","audio":{"id":"x"}},"logprobs":{"content":[{"token":"a","logprob":-0.5,"bytes":[97],"top_logprobs":[]}]}}]}"#,
        ];
        for text in fast_ones {
            assert_eq!(agree(text), Ok(true), "{text}");
        }
        let slow_ones = [
            r#"{"choices":[{"index":1,"delta":{"content":"b"}},{"index":0,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
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
            r#"{"choices":[],"usage":{"a":[1,]}}"#,
            r#"{"choices":[],"usage":{"a":{"b":1,}}}"#,
            r#"{"choices":[],"usage":{"a":[[[[[[[[[[1]]]]]]]]]]}}"#,
            r#"{"choices":[],"usage":{"a" 1}}"#,
            r#"{"choices":[],"usage":{1:1}}"#,
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

    /// Reads `texts` in turn through one memo, each against `fast` alone.
    fn memo_agrees(texts: &[String]) -> Result<(), String> {
        let mut memo = Memo::default();
        for text in texts {
            let alone = fast(text.as_bytes()).map(|c| fast_view(&c));
            let remembered = memo.read(text.as_bytes()).map(|c| fast_view(&c));
            if alone != remembered {
                return Err(format!(
                    "{text:?}: alone {alone:?}, after the memo {remembered:?}"
                ));
            }
        }
        Ok(())
    }

    #[test]
    fn chunks_of_one_shape_read_as_alone() {
        let head = r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"#;
        let texts: Vec<String> = [
            r#""role":"assistant","content":""}}]}"#,
            r#""content":"a"},"finish_reason":null}]}"#,
            r#""content":"bc"},"finish_reason":null}]}"#,
            r#""content":"with "escape""},"finish_reason":null}]}"#,
            r#""content":"d"},"finish_reason":null}]}"#,
            r#""content":"e"},"finish_reason":null}] }"#,
            r#""content":"e"},"finish_reason":null}]}x"#,
            r#""content":"f"},"finish_reason":"stop"}]}"#,
            r#""content":"g"},"finish_reason":"stop"}]}"#,
            r#""content":null},"finish_reason":"stop"}]}"#,
            r#""content":"h","refusal":"r"},"finish_reason":null}]}"#,
            r#""content":"i","refusal":"r"},"finish_reason":null}]}"#,
            r#""reasoning":"j"}}]}"#,
            r#""reasoning":"k"}}]}"#,
            r#""reasoning":5}}]}"#,
        ]
        .iter()
        .map(|t| format!("{head}{t}"))
        .collect();
        assert_eq!(memo_agrees(&texts), Ok(()));
        // Chunks that start as the last one read in full, up to their choices, and go on
        // otherwise: read from their choices on, as alone.
        let head = r#"{"id":"c","model":"m","choices":"#;
        let rests: Vec<String> = [
            r#"[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#" [ {"index":0,"delta":{"content":"x"},"finish_reason":null} ] }"#,
            r#"[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
            r#"[],"model":"n"}"#,
            r#"[],"id":"d"}"#,
            r#"[],"choices":[]}"#,
            r#"[{"index":0,"delta":{"content":"é"}}],"x":[1,{"y":null}]}"#,
            r#"[{"index":0,"delta":{"content":"a"}}]}x"#,
            r#"[{"index":0,"delta":{"tool_calls":[]}}]}"#,
            r#"null}"#,
            r#"[]"#,
            r#"[]}"#,
        ]
        .iter()
        .map(|t| format!("{head}{t}"))
        .collect();
        assert_eq!(memo_agrees(&rests), Ok(()));
        let mut memo = Memo::default();
        memo.read(rests[0].as_bytes()).unwrap();
        assert!(memo.head.fits(rests[1].as_bytes()));
        // The rest is checked for UTF-8 as the whole would be.
        let mut bad = head.as_bytes().to_vec();
        bad.extend_from_slice(b"[{\"index\":0,\"delta\":{\"content\":\"\xff\"}}]}");
        assert!(memo.read(&bad).is_none());

        let mut memo = Memo::default();
        memo.read(texts[1].as_bytes()).unwrap();
        assert!(memo.same_shape(texts[2].as_bytes()).is_some());
        assert!(memo.same_shape(texts[3].as_bytes()).is_none());
        assert!(memo.same_shape(texts[5].as_bytes()).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn chunks_read_through_the_memo_read_as_alone(
            texts in proptest::collection::vec(chunk(), 1..4),
            swaps in proptest::collection::vec(("\\PC{0,8}", any::<prop::sample::Index>()), 0..6),
        ) {
            // Each generated chunk, then copies of it with one string swapped for another.
            let mut all = Vec::new();
            for text in &texts {
                all.push(text.clone());
                for (new, at) in &swaps {
                    let quotes: Vec<usize> = text.match_indices('"').map(|(i, _)| i).collect();
                    if quotes.len() < 2 {
                        continue;
                    }
                    let i = at.index(quotes.len() - 1);
                    let (a, b) = (quotes[i], quotes[i + 1]);
                    all.push(format!("{}\"{}\"{}", &text[..a], new, &text[b + 1..]));
                }
            }
            memo_agrees(&all).map_err(TestCaseError::fail)?;
        }

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
