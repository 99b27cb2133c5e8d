//! An incremental Server-Sent Events decoder: bytes in, whole events out, however
//! the bytes were split. Handles `\n`, `\r\n` and `\r` line ends, multi-line `data`,
//! comments and `event:` names, per the WHATWG EventSource parsing rules.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; empty for the default `message`.
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

/// Reads lines straight from the bytes pushed; only a line a push leaves unfinished is
/// copied, to be ended by the next. Yields an event at each blank line.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// The unfinished line of the last push.
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    /// The last byte consumed was `\r`, so a leading `\n` in the next push ends that same line.
    after_cr: bool,
}

impl SseDecoder {
    pub fn new() -> SseDecoder {
        SseDecoder::default()
    }

    /// Feeds bytes; appends every event they complete to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        let mut input = bytes;
        if input.is_empty() {
            return;
        }
        if self.after_cr && input[0] == b'\n' {
            input = &input[1..];
        }
        self.after_cr = false;
        // A line the last push left unfinished ends at the first line end here (its own
        // bytes were scanned then: a long line is scanned once, not once per push).
        if !self.buf.is_empty() {
            let Some(at) = memchr::memchr2(b'\n', b'\r', input) else {
                self.buf.extend_from_slice(input);
                return;
            };
            self.buf.extend_from_slice(&input[..at]);
            let line = std::mem::take(&mut self.buf);
            self.line(&line, out);
            // Its buffer is kept for the next unfinished line.
            self.buf = line;
            self.buf.clear();
            input = self.after_line(input, at);
        }
        while let Some(at) = memchr::memchr2(b'\n', b'\r', input) {
            self.line(&input[..at], out);
            input = self.after_line(input, at);
        }
        self.buf.extend_from_slice(input);
    }

    /// The input after the line end at `at`: `\n`, `\r\n` or `\r` (at the very end, a
    /// `\r` whose `\n` may come first in the next push).
    fn after_line<'a>(&mut self, input: &'a [u8], at: usize) -> &'a [u8] {
        let skip = match (input[at], input.get(at + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r', None) => {
                self.after_cr = true;
                1
            }
            _ => 1,
        };
        &input[at + skip..]
    }

    /// Bytes held for the event being read: its unfinished line, its `data` so far
    /// and its name. What bounds one event is the caller's to decide.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.data.len() + self.event.len()
    }

    /// Ends the input: an unterminated last event is dropped, as EventSource does.
    /// Returns true when bytes of an incomplete event were pending (a cut stream).
    pub fn finish(&mut self) -> bool {
        let pending = !self.buf.is_empty() || self.has_data;
        self.buf.clear();
        self.data.clear();
        self.event.clear();
        self.has_data = false;
        pending
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let Some(&first) = line.first() else {
            if self.has_data {
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
                self.has_data = false;
            } else {
                self.event.clear();
            }
            return;
        };
        if first == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        // Checked whole first: nearly every value is valid, and the check is far
        // quicker than the lossy conversion's walk.
        let value = match std::str::from_utf8(value) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = value.into_owned(),
            _ => {}
        }
    }
}

/// One SSE frame, `event:` and `data:` lines, as a wire format that names its events
/// sends it (Anthropic's, Responses'): how native streams are passed through.
pub fn named_frame(name: &str, data: &str) -> Bytes {
    let mut frame = BytesMut::with_capacity(data.len() + name.len() + 16);
    frame.put_slice(b"event: ");
    frame.put_slice(name.as_bytes());
    frame.put_slice(b"\ndata: ");
    frame.put_slice(data.as_bytes());
    frame.put_slice(b"\n\n");
    frame.freeze()
}

/// Decodes a whole transcript at once (tests and fixtures).
pub fn decode_all(bytes: &[u8]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    decoder.push(bytes, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TRANSCRIPT: &str = "data: {\"a\":1}\n\n: keep-alive\n\nevent: message_start\r\ndata: {\"b\":\r\ndata: 2}\r\n\r\ndata: [DONE]\r\r";

    #[test]
    fn decodes_events() {
        let events = decode_all(TRANSCRIPT.as_bytes());
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[1].event, "message_start");
        assert_eq!(events[1].data, "{\"b\":\n2}");
        assert_eq!(events[2].data, "[DONE]");
    }

    #[test]
    fn cut_stream_is_reported() {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        d.push(b"data: {\"a\":1}\n\ndata: {\"b\"", &mut out);
        assert_eq!(out.len(), 1);
        assert!(d.finish());
    }

    #[test]
    fn an_unended_event_is_pending_until_its_blank_line() {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for _ in 0..1000 {
            d.push(b"xxxxxxxxxx", &mut out);
        }
        assert_eq!(d.pending(), 10_000);
        d.push(b"\ndata: abc\ndata: de", &mut out);
        assert_eq!(d.pending(), "abc".len() + "data: de".len());
        d.push(b"f\n\n", &mut out);
        assert_eq!(d.pending(), 0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, "abc\ndef");
    }

    /// The decoder before it read lines in place: every byte copied into one buffer,
    /// every value through the lossy UTF-8 conversion. What it yields, and what it holds
    /// after each push, is what the decoder must yield and hold.
    #[derive(Default)]
    struct Reference {
        buf: BytesMut,
        event: String,
        data: String,
        has_data: bool,
        after_cr: bool,
    }

    impl Reference {
        fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
            use bytes::Buf;
            let mut input = bytes;
            if input.is_empty() {
                return;
            }
            if self.after_cr && input[0] == b'\n' {
                input = &input[1..];
            }
            self.after_cr = false;
            let mut scanned = self.buf.len();
            self.buf.extend_from_slice(input);
            while let Some(at) = memchr::memchr2(b'\n', b'\r', &self.buf[scanned..]) {
                let end = scanned + at;
                scanned = 0;
                let is_cr = self.buf[end] == b'\r';
                let line = self.buf.split_to(end);
                let mut skip = 1;
                if is_cr {
                    match self.buf.get(1) {
                        Some(b'\n') => skip = 2,
                        Some(_) => {}
                        None => self.after_cr = true,
                    }
                }
                self.buf.advance(skip);
                self.line(&line, out);
            }
        }

        fn pending(&self) -> usize {
            self.buf.len() + self.data.len() + self.event.len()
        }

        fn finish(&mut self) -> bool {
            let pending = !self.buf.is_empty() || self.has_data;
            *self = Reference::default();
            pending
        }

        fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
            if line.is_empty() {
                if self.has_data {
                    out.push(SseEvent {
                        event: std::mem::take(&mut self.event),
                        data: std::mem::take(&mut self.data),
                    });
                    self.has_data = false;
                } else {
                    self.event.clear();
                }
                return;
            }
            if line[0] == b':' {
                return;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &[][..]),
            };
            let value = String::from_utf8_lossy(value);
            match field {
                b"data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(&value);
                    self.has_data = true;
                }
                b"event" => self.event = value.into_owned(),
                _ => {}
            }
        }
    }

    /// Transcripts built of SSE's own pieces, line ends of every kind, broken UTF-8
    /// and random bytes.
    fn hostile() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"data".to_vec()),
            Just(b"data:".to_vec()),
            Just(b"data: ".to_vec()),
            Just(b"event:".to_vec()),
            Just(b"event: message_start".to_vec()),
            Just(b": keep-alive".to_vec()),
            Just(b"id: 7".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n\n".to_vec()),
            Just(b":".to_vec()),
            Just(b" ".to_vec()),
            Just(br#"{"id":"x","choices":[{"delta":{"content":"hi"}}]}"#.to_vec()),
            Just(b"[DONE]".to_vec()),
            Just("é€😀".as_bytes().to_vec()),
            Just(vec![0xff]),
            Just(vec![0xc3]),
            Just(vec![0xe2, 0x82]),
            proptest::collection::vec(any::<u8>(), 0..6),
        ];
        proptest::collection::vec(piece, 0..48).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn reads_as_the_copying_decoder_did(
            bytes in hostile(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let (mut decoder, mut reference) = (SseDecoder::new(), Reference::default());
            let (mut out, mut expected) = (Vec::new(), Vec::new());
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                decoder.push(&bytes[start..cut], &mut out);
                reference.push(&bytes[start..cut], &mut expected);
                prop_assert_eq!(&out, &expected);
                prop_assert_eq!(decoder.pending(), reference.pending());
                start = cut;
            }
            prop_assert_eq!(decoder.finish(), reference.finish());
        }

        #[test]
        fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0usize..TRANSCRIPT.len(), 0..8)) {
            let bytes = TRANSCRIPT.as_bytes();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut decoder = SseDecoder::new();
            let mut out = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                decoder.push(&bytes[start..cut], &mut out);
                start = cut;
            }
            prop_assert_eq!(out, decode_all(bytes));
        }
    }
}
