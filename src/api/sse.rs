//! Server-sent event framing for the front ends whose events are named (Anthropic
//! Messages, OpenAI Responses): `event: <name>` then `data: <json>`. Writes into a
//! buffer only; the streams that use it decide what to send.

use bytes::{BufMut, BytesMut};
use serde::Serialize;

/// Appends one named event carrying `data` as JSON to `out`.
pub fn frame(out: &mut BytesMut, event: &str, data: &impl Serialize) {
    out.put_slice(b"event: ");
    out.put_slice(event.as_bytes());
    out.put_slice(b"\ndata: ");
    // Serialising these shapes into memory cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), data);
    out.put_slice(b"\n\n");
}
