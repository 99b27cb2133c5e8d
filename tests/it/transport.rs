//! The upstream transport every wire format shares (`providers::http`, `connect`): the
//! connect limit over TCP and TLS, the first-byte and idle limits, chunks forwarded as
//! they arrive, and the explicit upstream proxy. Anthropic and Gemini backends are held
//! to the same limits as OpenAI-compatible ones.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// The proxy's credentials in the tests below, and what they send.
const PROXY_USER: &str = "gw";
const PROXY_PASSWORD: &str = "hunter22-proxy";
/// `Basic ` and base64("gw:hunter22-proxy").
const PROXY_AUTH: &str = "Basic Z3c6aHVudGVyMjItcHJveHk=";

/// A tiny HTTP proxy on 127.0.0.1 that records the head of the first request on each
/// connection it accepts (so it counts them): CONNECT opens a tunnel to the address it
/// names; a request in absolute form is passed on, with the rest of its connection, to
/// the host it names. A request without `PROXY_AUTH` gets a 407.
struct TestProxy {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    async fn start() -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(proxy_connection(client, seen.clone()));
            }
        });
        TestProxy { addr, heads }
    }

    /// `http://user:password@addr`, with `password`.
    fn url(&self, password: &str) -> String {
        format!("http://{PROXY_USER}:{password}@{}", self.addr)
    }

    /// The first request head of each connection, in the order they came.
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

async fn proxy_connection(mut client: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    heads.lock().unwrap().push(head.clone());
    let authorized = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("proxy-authorization") && value.trim() == PROXY_AUTH
        })
    });
    if !authorized {
        let refusal = "HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n";
        let _ = client.write_all(refusal.as_bytes()).await;
        return;
    }
    let target = head.split_whitespace().nth(1).unwrap_or_default();
    let (tunnel, target) = match target.strip_prefix("http://") {
        Some(rest) => (false, rest.split('/').next().unwrap_or_default()),
        None => (true, target),
    };
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return;
    };
    let sent = if tunnel {
        let established = "HTTP/1.1 200 Connection established\r\n\r\n";
        client.write_all(established.as_bytes()).await
    } else {
        upstream.write_all(&buf).await
    };
    if sent.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// An `http` upstream behind a proxy is called in absolute form through it, with the
/// proxy's credentials, for every wire format; the calls succeed.
#[tokio::test]
async fn an_http_upstream_is_called_through_its_proxy_in_absolute_form() {
    for kind in ["openai", "anthropic", "gemini"] {
        let (mock, proxy) = (MockUpstream::start().await, TestProxy::start().await);
        let base = match kind {
            "gemini" => mock.gemini_base_url(),
            _ => mock.base_url(),
        };
        let line = format!(
            "kind = \"{kind}\"\nproxy = \"{}\"",
            proxy.url(PROXY_PASSWORD)
        );
        let gw = one_backend(&line, &base, "").await;
        for (path, body) in calls(false) {
            let resp = gw.post(path, body).await;
            assert_eq!(
                resp.status(),
                200,
                "{kind} {path}: {}",
                resp.text().await.unwrap()
            );
        }
        assert_eq!(mock.received().len(), 2, "{kind}");
        let heads = proxy.heads();
        assert!(!heads.is_empty(), "{kind}: the proxy saw no connection");
        for head in heads {
            let target = format!("POST {}/", mock.root_url());
            assert!(head.starts_with(&target), "{kind}: {head}");
            assert!(head.contains(PROXY_AUTH), "{kind}: {head}");
        }
    }
}

/// The message of the 502 a chat call gets from a `kind` provider at `base_url` behind
/// the proxy at `proxy_url`.
async fn failed_chat(kind: &str, proxy_url: &str, base_url: &str) -> String {
    let line = format!("kind = \"{kind}\"\nproxy = \"{proxy_url}\"");
    let gw = one_backend(&line, base_url, "").await;
    let resp = gw
        .post("/v1/chat/completions", calls(false)[0].1.clone())
        .await;
    assert_eq!(resp.status(), 502);
    error_message(resp).await
}

/// An `https` upstream behind a proxy is reached through a CONNECT tunnel carrying the
/// proxy's credentials, and the TLS handshake runs inside it, with the upstream: the
/// upstream here receives a TLS ClientHello, then hangs up, which is a 502 naming the
/// proxy but never its password.
#[tokio::test]
async fn an_https_upstream_is_reached_through_a_connect_tunnel() {
    let proxy = TestProxy::start().await;
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = upstream.local_addr().unwrap();
    let (first_byte, mut got_first_byte) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = upstream.accept().await {
            let _ = first_byte.send(socket.read_u8().await.ok());
        }
    });
    let base = format!("https://{target}/v1");
    let message = failed_chat("anthropic", &proxy.url(PROXY_PASSWORD), &base).await;
    assert!(
        message.contains(&format!("through proxy http://{}", proxy.addr)),
        "{message}"
    );
    assert!(!message.contains(PROXY_PASSWORD), "{message}");
    // A TLS handshake record.
    assert_eq!(got_first_byte.recv().await, Some(Some(0x16)));
    let heads = proxy.heads();
    assert!(
        heads[0].starts_with(&format!("CONNECT {target} HTTP/1.1\r\n")),
        "{heads:?}"
    );
    assert!(heads[0].contains(PROXY_AUTH), "{heads:?}");
}

/// A proxy that refuses the credentials (407 to CONNECT) is a 502 saying so.
#[tokio::test]
async fn a_proxy_refusing_the_credentials_is_a_502_saying_so() {
    let proxy = TestProxy::start().await;
    let wrong = "not-the-password";
    let base = "https://generativelanguage.example/v1beta";
    let message = failed_chat("gemini", &proxy.url(wrong), base).await;
    assert!(
        message.contains("proxy authorization required"),
        "{message}"
    );
    assert!(!message.contains(wrong), "{message}");
    let heads = proxy.heads();
    assert!(
        heads[0].starts_with("CONNECT generativelanguage.example:443 HTTP/1.1"),
        "{heads:?}"
    );
}
