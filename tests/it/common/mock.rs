//! `MockUpstream`: an in-process server on 127.0.0.1:0 that speaks the OpenAI, Azure,
//! Anthropic and Gemini wire formats. OpenAI-style paths answer like the simulated
//! backend; Anthropic (`…/messages`) and Gemini (`…:generateContent`) paths replay the
//! recorded-shape fixtures in `tests/fixtures/`. A test can script the next replies
//! (status, delay, raw body, a fixture, a stream cut after N events) and read back every
//! request it received.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use bazaar::demo::sim::{self, SimSpec};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tower::ServiceExt;

/// One scripted reply, used once, in order.
#[derive(Debug, Clone)]
pub enum Step {
    /// Reply with this status and JSON body.
    Status(u16, String),
    /// Reply with this status, body and extra headers.
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Wait, then answer normally.
    Delay(Duration),
    /// Answer normally but end the body after `n` SSE events (no `[DONE]`).
    CutAfter(usize),
    /// Send the response headers, then hang forever (an idle stream).
    Hang,
    /// Reply with the first `events` SSE events of a `.sse` fixture, then end the body
    /// (a stream cut by the upstream).
    FixtureCut { file: &'static str, events: usize },
    /// Send the first `events` SSE events of a `.sse` fixture, then keep the body open
    /// and silent (an upstream still generating when the client goes away).
    FixtureThenHang { file: &'static str, events: usize },
    /// Reply with a file from `tests/fixtures/` (`.sse` as an event stream).
    Fixture {
        status: u16,
        file: &'static str,
        headers: Vec<(String, String)>,
    },
}

impl Step {
    /// A fixture reply with `status` and no extra headers.
    pub fn fixture(status: u16, file: &'static str) -> Step {
        Step::Fixture {
            status,
            file,
            headers: Vec::new(),
        }
    }
}

/// The text of `tests/fixtures/{file}`.
pub fn fixture_text(file: &str) -> String {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_response(status: u16, file: &str, headers: Vec<(String, String)>) -> Response {
    let content_type = if file.ends_with(".sse") {
        "text/event-stream"
    } else {
        "application/json"
    };
    let mut b = Response::builder()
        .status(status)
        .header("content-type", content_type);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.body(Body::from(fixture_text(file))).unwrap()
}

/// The fixture a wire format's normal reply replays, chosen by path and request body;
/// `None` for OpenAI-style paths, which the simulated backend answers.
fn wire_fixture(path: &str, body: &serde_json::Value) -> Option<&'static str> {
    let tools = body.get("tools").is_some_and(|t| !t.is_null());
    let stream = body.get("stream") == Some(&serde_json::Value::Bool(true));
    if path.ends_with("/messages") {
        return Some(match (stream, tools) {
            (true, true) => "anthropic/stream_tool_use.sse",
            (true, false) => "anthropic/stream_text.sse",
            (false, true) => "anthropic/reply_tool_use.json",
            (false, false) => "anthropic/reply_text.json",
        });
    }
    if path.ends_with(":batchEmbedContents") {
        return Some("gemini/embed_reply.json");
    }
    if path.ends_with(":streamGenerateContent") {
        return Some(if tools {
            "gemini/stream_function_call.sse"
        } else {
            "gemini/stream_text.sse"
        });
    }
    if path.ends_with(":generateContent") {
        return Some(if tools {
            "gemini/reply_function_call.json"
        } else {
            "gemini/reply_text.json"
        });
    }
    None
}

/// Rewrites an OpenAI-style path under any prefix (Azure's `/openai/deployments/…`) to
/// the simulated backend's `/v1/…`.
fn sim_parts(mut parts: http::request::Parts) -> http::request::Parts {
    let path = parts.uri.path();
    for endpoint in ["/chat/completions", "/completions", "/embeddings"] {
        if path.ends_with(endpoint) {
            if path != format!("/v1{endpoint}") {
                parts.uri = format!("/v1{endpoint}").parse().unwrap();
            }
            break;
        }
    }
    parts
}

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The query string, empty when there is none.
    pub query: String,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
}

struct Shared {
    script: Mutex<VecDeque<Step>>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    /// Reply bodies that ended, whether sent in full or dropped by the peer.
    bodies_closed: std::sync::atomic::AtomicUsize,
    closed: Notify,
    sim: Router,
}

/// Counts a reply body as closed when dropped.
struct CloseGuard(Arc<Shared>);

impl Drop for CloseGuard {
    fn drop(&mut self) {
        self.0
            .bodies_closed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.closed.notify_waiters();
    }
}

/// A running mock; stops when dropped.
pub struct MockUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl MockUpstream {
    /// Starts a mock with the default simulated behaviour.
    pub async fn start() -> MockUpstream {
        MockUpstream::with_spec(SimSpec::default()).await
    }

    /// Starts a mock whose normal replies follow `spec`.
    pub async fn with_spec(spec: SimSpec) -> MockUpstream {
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            received: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            bodies_closed: Default::default(),
            closed: Notify::new(),
            sim: sim::router(spec),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        MockUpstream {
            addr,
            shared,
            _stop: stop,
        }
    }

    /// The base URL a provider config points at (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The base URL of the mock as a Gemini endpoint (`…/v1beta`).
    pub fn gemini_base_url(&self) -> String {
        format!("http://{}/v1beta", self.addr)
    }

    /// The mock's root, as an Azure resource endpoint.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues scripted replies for the next requests.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.shared.script.lock().unwrap().extend(steps);
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` reply bodies have ended (sent in full or dropped).
    pub async fn wait_closed(&self, n: usize) {
        loop {
            let notified = self.shared.closed.notified();
            if self
                .shared
                .bodies_closed
                .load(std::sync::atomic::Ordering::SeqCst)
                >= n
            {
                return;
            }
            notified.await;
        }
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_received(&self, n: usize) {
        loop {
            let notified = self.shared.arrived.notified();
            if self.shared.received.lock().unwrap().len() >= n {
                return;
            }
            notified.await;
        }
    }
}

/// The first `n` SSE events of a transcript, each with its blank line.
fn first_events(text: &str, n: usize) -> String {
    text.split_inclusive("\n\n").take(n).collect()
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    shared.received.lock().unwrap().push(Received {
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts.headers.clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    });
    shared.arrived.notify_waiters();
    let step = shared.script.lock().unwrap().pop_front();
    let normal = |parts: http::request::Parts, bytes: Bytes| {
        let sim = shared.sim.clone();
        async move {
            let body: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            if let Some(file) = wire_fixture(parts.uri.path(), &body) {
                return fixture_response(200, file, Vec::new());
            }
            sim.oneshot(Request::from_parts(sim_parts(parts), Body::from(bytes)))
                .await
                .unwrap()
        }
    };
    let guard = CloseGuard(shared.clone());
    let response = match step {
        None => normal(parts, bytes).await,
        Some(Step::Status(status, body)) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap(),
        Some(Step::Raw {
            status,
            headers,
            body,
        }) => {
            let mut b = Response::builder().status(status);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Body::from(body)).unwrap()
        }
        Some(Step::Delay(d)) => {
            tokio::time::sleep(d).await;
            normal(parts, bytes).await
        }
        Some(Step::CutAfter(n)) => {
            let response = normal(parts, bytes).await;
            let (parts, body) = response.into_parts();
            let all = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let kept = first_events(&String::from_utf8_lossy(&all), n);
            Response::from_parts(parts, Body::from(kept))
        }
        Some(Step::Fixture {
            status,
            file,
            headers,
        }) => fixture_response(status, file, headers),
        Some(Step::FixtureCut { file, events }) => {
            let kept = first_events(&fixture_text(file), events);
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(kept))
                .unwrap()
        }
        Some(Step::FixtureThenHang { file, events }) => {
            let kept = Bytes::from(first_events(&fixture_text(file), events));
            let first =
                futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(kept) });
            let stream = futures_util::stream::pending::<Result<Bytes, std::convert::Infallible>>();
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(first.chain(stream)))
                .unwrap()
        }
        Some(Step::Hang) => {
            let stream = futures_util::stream::pending::<Result<Bytes, std::convert::Infallible>>();
            let first = futures_util::stream::once(async {
                Ok::<_, std::convert::Infallible>(Bytes::from_static(b": waiting\n\n"))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(first.chain(stream)))
                .unwrap()
        }
    };
    let (parts, body) = response.into_parts();
    let guarded = body.into_data_stream().map(move |frame| {
        let _keep = &guard;
        frame
    });
    Response::from_parts(parts, Body::from_stream(guarded))
}
