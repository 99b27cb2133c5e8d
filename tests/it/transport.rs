//! The upstream transport every wire format shares (`providers::http`): the connect
//! limit over TCP and TLS, the first-byte and idle limits, and chunks forwarded as they
//! arrive. Anthropic and Gemini backends are held to the same limits as OpenAI-compatible ones.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::common::*;

/// A gateway whose model `m` is served as `up-model` by one provider `up` of wire format
/// `kind` at `base_url`, with `timeouts` (TOML lines).
async fn backend(kind: &str, base_url: &str, timeouts: &str) -> TestGateway {
    one_backend_timed(&format!("kind = \"{kind}\""), base_url, timeouts, "").await
}

/// Accepts TCP connections and never says a word: a TLS handshake with it stalls. The
/// receiver gets each accepted socket (kept open).
async fn silent_listener() -> (SocketAddr, mpsc::UnboundedReceiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (keep, kept) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = keep.send(socket);
        }
    });
    (addr, kept)
}

/// The calls each translating or passing-through wire format serves: path and body.
fn calls(stream: bool) -> [(&'static str, Value); 2] {
    let messages = json!([{"role": "user", "content": "hi"}]);
    [
        (
            "/v1/chat/completions",
            json!({"model": "m", "stream": stream, "messages": messages}),
        ),
        (
            "/v1/messages",
            json!({"model": "m", "max_tokens": 64, "stream": stream, "messages": messages}),
        ),
    ]
}

/// The error message of a chat (OpenAI-shaped) or messages (Anthropic-shaped) error body.
async fn error_message(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.unwrap();
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"))
        .to_string()
}

/// A TLS handshake that never completes ends at `timeouts.connect` for Anthropic and
/// Gemini backends too (a 504 naming the connect phase), not at `first_byte`.
#[tokio::test]
async fn a_stalled_tls_handshake_is_a_connect_timeout_for_every_wire_format() {
    for kind in ["anthropic", "gemini"] {
        let (addr, mut kept) = silent_listener().await;
        let gw = backend(
            kind,
            &format!("https://{addr}/v1"),
            "connect = \"200ms\"\nfirst_byte = \"600s\"\ntotal = \"600s\"",
        )
        .await;
        for (path, body) in calls(false) {
            // Without the limit over TLS this would wait for `first_byte` (600 s).
            let resp = tokio::time::timeout(Duration::from_secs(60), gw.post(path, body))
                .await
                .unwrap_or_else(|_| panic!("{kind} {path}: the connect limit did not end it"));
            assert_eq!(resp.status(), 504, "{kind} {path}");
            let message = error_message(resp).await;
            assert!(message.contains("(connect)"), "{kind} {path}: {message}");
            // The TCP connect went through: it was the handshake that stalled.
            assert!(kept.recv().await.is_some(), "{kind} {path}");
        }
    }
}

/// An Anthropic or Gemini backend that sends no reply head within `first_byte` is a 504
/// naming that phase.
#[tokio::test]
async fn a_slow_first_byte_is_a_504_for_every_wire_format() {
    for kind in ["anthropic", "gemini"] {
        let mock = MockUpstream::start().await;
        let base = match kind {
            "gemini" => mock.gemini_base_url(),
            _ => mock.base_url(),
        };
        let gw = backend(kind, &base, "first_byte = \"300ms\"\ntotal = \"600s\"").await;
        for (path, body) in calls(false) {
            mock.script([Step::Delay(Duration::from_secs(30))]);
            let resp = gw.post(path, body).await;
            assert_eq!(resp.status(), 504, "{kind} {path}");
            let message = error_message(resp).await;
            assert!(message.contains("(first byte)"), "{kind} {path}: {message}");
        }
    }
}

/// Streams whose upstream sends its first events, then falls silent: Anthropic and
/// Gemini, each through chat and messages. `(wire format, path, fixture, events sent)`.
const SILENT_STREAMS: [(&str, &str, &str, usize); 4] = [
    (
        "anthropic",
        "/v1/chat/completions",
        "anthropic/stream_text.sse",
        4,
    ),
    ("anthropic", "/v1/messages", "anthropic/stream_text.sse", 4),
    (
        "gemini",
        "/v1/chat/completions",
        "gemini/stream_text.sse",
        1,
    ),
    ("gemini", "/v1/messages", "gemini/stream_text.sse", 1),
];

/// Starts a stream of `SILENT_STREAMS` against a fresh mock, the gateway's idle limit
/// being `idle`; returns the client's response and the gateway and mock serving it.
async fn silent_stream(
    (kind, path, file, events): (&str, &str, &'static str, usize),
    idle: &str,
) -> (reqwest::Response, TestGateway, MockUpstream) {
    let mock = MockUpstream::start().await;
    let base = match kind {
        "gemini" => mock.gemini_base_url(),
        _ => mock.base_url(),
    };
    let gw = backend(kind, &base, &format!("idle = \"{idle}\"\ntotal = \"600s\"")).await;
    mock.script([Step::FixtureThenHang { file, events }]);
    let (_, body) = calls(true).into_iter().find(|(p, _)| *p == path).unwrap();
    let resp = gw.post(path, body).await;
    assert_eq!(resp.status(), 200, "{kind} {path}");
    (resp, gw, mock)
}

/// Each upstream event is forwarded as it arrives: the client reads the first text
/// while the upstream's body is still open (and silent for longer than the test runs).
#[tokio::test]
async fn stream_chunks_are_forwarded_as_they_arrive_for_every_wire_format() {
    for case in SILENT_STREAMS {
        let (mut resp, _gw, _mock) = silent_stream(case, "600s").await;
        let mut got = String::new();
        while !got.contains("Hello") {
            let chunk = tokio::time::timeout(Duration::from_secs(60), resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("{case:?}: held back; so far: {got}"))
                .unwrap()
                .unwrap_or_else(|| panic!("{case:?}: ended early: {got}"));
            got.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A stream silent for `idle` after its first events ends with an error event naming
/// the idle limit, after the events that came.
#[tokio::test]
async fn a_silent_stream_ends_at_the_idle_limit_for_every_wire_format() {
    for case in SILENT_STREAMS {
        let (resp, _gw, _mock) = silent_stream(case, "1s").await;
        let text = resp.text().await.unwrap();
        let (hello, idle) = (text.find("Hello"), text.find("(idle)"));
        assert!(hello.is_some() && hello < idle, "{case:?}: {text}");
    }
}
