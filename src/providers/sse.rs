//! An incremental Server-Sent Events decoder: bytes in, whole events out, however
//! the bytes were split. Handles `\n`, `\r\n` and `\r` line ends, multi-line `data`,
//! comments and `event:` names, per the WHATWG EventSource parsing rules.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; empty for the default `message`.
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

/// Buffers partial lines between pushes; yields an event at each blank line.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
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
        // Only the new bytes can hold a line end: a long line is scanned once, not once
        // per push.
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
                    // `\r` at the very end: a `\n` may follow in the next push.
                    None => self.after_cr = true,
                }
            }
            self.buf.advance(skip);
            self.line(&line, out);
        }
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

    proptest! {
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
