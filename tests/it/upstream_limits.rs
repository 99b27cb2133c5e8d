//! A broken or hostile upstream cannot make the gateway hold an unbounded reply: a body
//! (or a single stream event) past the provider's `max_reply_bytes` ends the attempt with
//! a 502 in OpenAI's shape, the upstream connection is closed, and the call's ledger row
//! is written. The upstream here is raw TCP, so it can lie about its length, never end a
//! chunked body, or send a line without an end.

use std::net::SocketAddr;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::common::*;

/// The limit every gateway here is given.
const LIMIT: usize = 64 * 1024;
/// What the upstream sends at most before it goes silent (keeping the connection open).
const SENT_AT_MOST: usize = 80 * 1024 * 1024;
/// A gateway that stopped reading near `LIMIT` let the upstream write less than this:
/// `LIMIT` plus what the kernel buffers on loopback (receive buffer up to 32 MiB here,
/// send buffer up to 4 MiB) and hyper's read buffer.
const STOPPED_WITHIN: usize = 48 * 1024 * 1024;

/// How a reply body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// `Content-Length` with this value, whatever is sent.
    Length(u64),
    /// Chunked, and never ended.
    Chunked,
}

/// One raw reply: status line, type, framing, then `prefix` and `filler` repeated until
/// `total` bytes of body were sent; then silence until the gateway hangs up.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    content_type: &'static str,
    framing: Framing,
    prefix: &'static str,
    filler: &'static str,
    total: usize,
}

impl Answer {
    /// A JSON reply of `total` bytes that never ends as JSON.
    fn json(framing: Framing, total: usize) -> Answer {
        Answer {
            status: 200,
            content_type: "application/json",
            framing,
            prefix: "{\"pad\":\"",
            filler: "x",
            total,
        }
    }

    /// An endless event stream: `prefix`, then `filler` for ever.
    fn sse(prefix: &'static str, filler: &'static str) -> Answer {
        Answer {
            status: 200,
            content_type: "text/event-stream",
            framing: Framing::Chunked,
            prefix,
            filler,
            total: SENT_AT_MOST,
        }
    }
}

/// What the upstream saw of one connection.
#[derive(Debug)]
struct Sent {
    /// Body bytes written before the gateway hung up (or `total`).
    bytes: usize,
}

/// A raw HTTP/1.1 upstream answering every request with one `Answer`, reporting each
/// connection once the gateway has closed it.
struct RawUpstream {
    addr: SocketAddr,
    closed: mpsc::UnboundedReceiver<Sent>,
}

impl RawUpstream {
    async fn start(answer: Answer) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, closed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let sent = answer_one(socket, answer).await;
                    let _ = tx.send(sent);
                });
            }
        });
        RawUpstream { addr, closed }
    }

    fn base_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits for the gateway to close a connection, and says how much it was sent.
    async fn wait_closed(&mut self) -> Sent {
        self.closed.recv().await.unwrap()
    }
}

/// Reads one request (head and `Content-Length` body), writes `answer`, then waits for
/// the peer to close.
async fn answer_one(mut socket: TcpStream, answer: Answer) -> Sent {
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let body_start = loop {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return Sent { bytes: 0 };
        }
        seen.extend_from_slice(&buf[..n]);
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&seen[..body_start]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while seen.len() < body_start + length {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return Sent { bytes: 0 };
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let framing = match answer.framing {
        Framing::Length(n) => format!("content-length: {n}"),
        Framing::Chunked => "transfer-encoding: chunked".to_string(),
    };
    let head = format!(
        "HTTP/1.1 {} X\r\ncontent-type: {}\r\n{framing}\r\n\r\n",
        answer.status, answer.content_type
    );
    if socket.write_all(head.as_bytes()).await.is_err() {
        return Sent { bytes: 0 };
    }
    let block = answer.filler.repeat(64 * 1024 / answer.filler.len());
    let mut bytes = 0;
    let mut next = answer.prefix.as_bytes();
    while bytes < answer.total {
        let part = &next[..next.len().min(answer.total - bytes)];
        next = block.as_bytes();
        if part.is_empty() {
            continue; // an empty chunk would end a chunked body
        }
        let written = match answer.framing {
            Framing::Length(_) => socket.write_all(part).await,
            Framing::Chunked => {
                let framed = [format!("{:x}\r\n", part.len()).as_bytes(), part, b"\r\n"].concat();
                socket.write_all(&framed).await
            }
        };
        if written.is_err() {
            return Sent { bytes };
        }
        bytes += part.len();
    }
    // Silent, the connection open, until the gateway hangs up.
    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
    Sent { bytes }
}

/// A gateway with one provider `up` of wire format `kind` at `base_url`, limited to
/// `LIMIT`, and the master key to read the ledger.
async fn gateway(kind: &str, base_url: &str) -> TestGateway {
    let line = format!("kind = \"{kind}\"\nmax_reply_bytes = {LIMIT}");
    let extra = format!("[server]\nmaster_key = \"{MASTER}\"");
    one_backend(&line, base_url, &extra).await
}

fn chat(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "max_tokens": 5,
           "messages": [{"role": "user", "content": "hi"}]})
}

/// POSTs `body` to `path` as call `id`.
async fn call(gw: &TestGateway, path: &str, body: Value, id: &str) -> reqwest::Response {
    gw.client
        .post(gw.url(path))
        .bearer_auth(KEY)
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Asserts the 502 of a reply past the limit (in OpenAI's error shape, or Anthropic's
/// for `/v1/messages`), that the upstream was cut off near it, and the call's ledger row:
/// 502 `upstream_error`, as for any call whose attempts all failed.
async fn expect_cut_off(gw: &TestGateway, up: &mut RawUpstream, resp: reqwest::Response, id: &str) {
    let anthropic_shape = resp.url().path() == "/v1/messages";
    let error = if anthropic_shape {
        assert_eq!(resp.status(), 502, "{id}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["type"], "error", "{id}: {body}");
        assert_eq!(body["error"]["type"], "api_error", "{id}: {body}");
        body["error"].clone()
    } else {
        let error = expect_error(resp, 502).await;
        assert_eq!(error["type"], "upstream_error", "{id}: {error}");
        error
    };
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("max_reply_bytes") && message.contains(&LIMIT.to_string()),
        "{id}: {message}"
    );
    let sent = up.wait_closed().await;
    assert!(sent.bytes < STOPPED_WITHIN, "{id}: {sent:?}");
    let row = crate::metering::row_of(gw, id).await;
    assert_eq!(row["status"], 502, "{id}: {row}");
    assert_eq!(row["error_type"], "upstream_error", "{id}: {row}");
}

/// A chat call (`stream` or not) named `id` to an OpenAI-compatible upstream answering
/// `answer` is cut off at the limit.
async fn chat_is_cut_off(answer: Answer, stream: bool, id: &str) {
    let mut up = RawUpstream::start(answer).await;
    let gw = gateway("openai", &up.base_url("/v1")).await;
    let resp = call(&gw, "/v1/chat/completions", chat(stream), id).await;
    expect_cut_off(&gw, &mut up, resp, id).await;
}

/// Every wire format's buffered read, with a body that is chunked and never ends.
#[tokio::test]
async fn an_endless_reply_body_is_cut_off_at_the_limit_for_every_wire_format() {
    let cases = [
        ("openai", "/v1", "/v1/chat/completions", chat(false)),
        (
            "openai",
            "/v1",
            "/v1/embeddings",
            json!({"model": "m", "input": "hi"}),
        ),
        (
            "openai",
            "/v1",
            "/v1/completions",
            json!({"model": "m", "prompt": "hi"}),
        ),
        ("anthropic", "/v1", "/v1/chat/completions", chat(false)),
        ("anthropic", "/v1", "/v1/messages", chat(false)),
        ("gemini", "/v1beta", "/v1/chat/completions", chat(false)),
        (
            "gemini",
            "/v1beta",
            "/v1/embeddings",
            json!({"model": "m", "input": "hi"}),
        ),
    ];
    // The request id names the case: `endless-{index}`.
    for (i, (kind, base, path, body)) in cases.into_iter().enumerate() {
        let mut up = RawUpstream::start(Answer::json(Framing::Chunked, SENT_AT_MOST)).await;
        let gw = gateway(kind, &up.base_url(base)).await;
        let id = format!("endless-{i}");
        let resp = call(&gw, path, body, &id).await;
        expect_cut_off(&gw, &mut up, resp, &id).await;
    }
}

/// The Responses API served natively (the `openai` preset) reads its reply the same way.
#[tokio::test]
async fn an_endless_native_responses_reply_is_cut_off() {
    let mut up = RawUpstream::start(Answer::json(Framing::Chunked, SENT_AT_MOST)).await;
    let line = format!("preset = \"openai\"\nmax_reply_bytes = {LIMIT}");
    let extra = format!("[server]\nmaster_key = \"{MASTER}\"");
    let gw = one_backend(&line, &up.base_url("/v1"), &extra).await;
    let resp = call(
        &gw,
        "/v1/responses",
        json!({"model": "m", "input": "hi"}),
        "resp",
    )
    .await;
    expect_cut_off(&gw, &mut up, resp, "resp").await;
}

/// A `Content-Length` past the limit is refused before the body is read, whether it is
/// true (1 MiB sent) or a lie (a terabyte announced, then the body trickles and stalls).
#[tokio::test]
async fn a_declared_length_past_the_limit_is_refused_before_reading() {
    let honest = Answer::json(Framing::Length(1024 * 1024), 1024 * 1024);
    let liar = Answer::json(Framing::Length(1 << 40), SENT_AT_MOST);
    for (name, answer) in [("honest", honest), ("liar", liar)] {
        chat_is_cut_off(answer, false, name).await;
    }
}

/// A `Content-Length` below the limit is all that is read, however much more the
/// upstream sends: the reply is what it declared (not JSON here: a malformed reply).
#[tokio::test]
async fn a_short_declared_length_is_all_that_is_read() {
    let mut up = RawUpstream::start(Answer::json(Framing::Length(1000), SENT_AT_MOST)).await;
    let gw = gateway("openai", &up.base_url("/v1")).await;
    let resp = call(&gw, "/v1/chat/completions", chat(false), "short").await;
    let error = expect_error(resp, 502).await;
    assert!(
        !error["message"]
            .as_str()
            .unwrap()
            .contains("max_reply_bytes"),
        "{error}"
    );
    let sent = up.wait_closed().await;
    assert!(sent.bytes < STOPPED_WITHIN, "{sent:?}");
}

/// An error reply's body is read for its message up to the same limit; past it the
/// error is classified by its status alone and the connection closed.
#[tokio::test]
async fn an_endless_error_body_is_cut_off() {
    let answer = Answer {
        status: 500,
        ..Answer::json(Framing::Chunked, SENT_AT_MOST)
    };
    let mut up = RawUpstream::start(answer).await;
    let gw = gateway("openai", &up.base_url("/v1")).await;
    let resp = call(&gw, "/v1/chat/completions", chat(false), "error-body").await;
    let error = expect_error(resp, 502).await;
    assert!(
        error["message"].as_str().unwrap().contains("returned 500"),
        "{error}"
    );
    let sent = up.wait_closed().await;
    assert!(sent.bytes < STOPPED_WITHIN, "{sent:?}");
    let row = crate::metering::row_of(&gw, "error-body").await;
    assert_eq!(row["status"], 502, "{row}");
}

/// Anthropic's token count reads its reply under the limit too; the client still gets
/// the gateway's own estimate.
#[tokio::test]
async fn an_endless_token_count_reply_is_cut_off_and_estimated() {
    let mut up = RawUpstream::start(Answer::json(Framing::Chunked, SENT_AT_MOST)).await;
    let gw = gateway("anthropic", &up.base_url("/v1")).await;
    let resp = call(&gw, "/v1/messages/count_tokens", chat(false), "count").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-bazaar-token-count"], "estimated");
    let sent = up.wait_closed().await;
    assert!(sent.bytes < STOPPED_WITHIN, "{sent:?}");
}

const FIRST_CHUNK: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";

/// A stream event that never ends fails the attempt before the first byte: a line
/// without a newline, or `data:` lines without the blank line that ends an event.
#[tokio::test]
async fn an_endless_stream_event_is_cut_off_before_the_first_byte() {
    let cases = [
        ("line", Answer::sse("data: {\"a\":\"", "x")),
        ("data-lines", Answer::sse("", "data: xxxxxxx\n")),
    ];
    for (name, answer) in cases {
        chat_is_cut_off(answer, true, name).await;
    }
}

/// After the first chunk has reached the client, an endless event ends the stream with
/// an error event naming the limit; the row says 502.
#[tokio::test]
async fn an_endless_stream_event_after_the_first_chunk_ends_the_stream_with_an_error() {
    let mut up = RawUpstream::start(Answer::sse(FIRST_CHUNK, "x")).await;
    let gw = gateway("openai", &up.base_url("/v1")).await;
    let resp = call(&gw, "/v1/chat/completions", chat(true), "late").await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(resp).await;
    assert!(events[0].contains("\"hi\""), "{events:?}");
    let last = events.last().unwrap();
    assert!(
        last.contains("max_reply_bytes") && last.contains("\"error\""),
        "{events:?}"
    );
    let sent = up.wait_closed().await;
    assert!(sent.bytes < STOPPED_WITHIN, "{sent:?}");
    let row = crate::metering::row_of(&gw, "late").await;
    assert_eq!(row["status"], 502, "{row}");
    assert_eq!(row["error_type"], "protocol", "{row}");
}
