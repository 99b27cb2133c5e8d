//! A simulated OpenAI-compatible backend: chat (plain and streamed, tools, `n`),
//! embeddings (float and base64) and legacy completions, with configurable time to
//! first token and token rate. `bazaar demo`, the load bench and the SDK suites run
//! against it; it never calls the network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

/// How a simulated backend behaves.
#[derive(Debug, Clone)]
pub struct SimSpec {
    /// Delay before the first byte of a reply.
    pub ttft: Duration,
    /// Output tokens per second after the first; 0 sends the whole reply at once.
    pub tokens_per_sec: f64,
    /// The words of every reply (truncated to `max_tokens`).
    pub reply: String,
    /// When set, requests must carry `Authorization: Bearer <key>` (else 401, as OpenAI answers).
    pub require_key: Option<String>,
    /// Every n-th chat call is answered 503 (overloaded), as a busy host does; 0: never.
    pub fail_every: u64,
}

impl Default for SimSpec {
    fn default() -> Self {
        SimSpec {
            ttft: Duration::ZERO,
            tokens_per_sec: 0.0,
            reply: "Hello! This is a simulated reply from the bazaar test backend.".into(),
            require_key: None,
            fail_every: 0,
        }
    }
}

/// An axum router answering the OpenAI API under `/v1`.
pub fn router(spec: SimSpec) -> Router {
    let failing = Arc::new(Failing {
        every: spec.fail_every,
        calls: AtomicU64::new(0),
    });
    let spec = Arc::new(spec);
    Router::new()
        .route(
            "/v1/chat/completions",
            post(chat).layer(axum::middleware::from_fn_with_state(failing, fail_some)),
        )
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .layer(axum::middleware::from_fn_with_state(
            spec.clone(),
            check_key,
        ))
        .with_state(spec)
}

/// Counts chat calls to fail every `every`-th one.
struct Failing {
    every: u64,
    calls: AtomicU64,
}

async fn fail_some(
    State(failing): State<Arc<Failing>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let n = failing.calls.fetch_add(1, Ordering::Relaxed) + 1;
    if failing.every > 0 && n % failing.every == 0 {
        let body = json!({"error": {"message": "The server is overloaded. Please try again later.", "type": "server_error", "param": null, "code": null}});
        return (http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    next.run(req).await
}

async fn check_key(
    State(spec): State<Arc<SimSpec>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(key) = &spec.require_key {
        let presented = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(key.as_str()) {
            let shown: String = presented.unwrap_or("").chars().take(6).collect();
            let body = json!({"error": {"message": format!("Incorrect API key provided: {shown}***. You can find your API key at https://platform.openai.com/account/api-keys."), "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
            return (http::StatusCode::UNAUTHORIZED, Json(body)).into_response();
        }
    }
    next.run(req).await
}

#[derive(Deserialize, Default)]
struct SimRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<Value>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

impl SimRequest {
    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    fn prompt_tokens(&self) -> u64 {
        let chars: usize = self
            .messages
            .iter()
            .map(|m| m.to_string().len())
            .sum::<usize>()
            + self
                .prompt
                .as_ref()
                .map(|p| p.to_string().len())
                .unwrap_or(0)
            + self
                .input
                .as_ref()
                .map(|p| p.to_string().len())
                .unwrap_or(0);
        (chars as u64).div_ceil(4).max(1)
    }

    fn words<'a>(&self, spec: &'a SimSpec) -> Vec<&'a str> {
        let limit = self
            .max_completion_tokens
            .or(self.max_tokens)
            .unwrap_or(u64::MAX) as usize;
        spec.reply.split_inclusive(' ').take(limit.max(1)).collect()
    }

    fn tool_name(&self) -> Option<String> {
        let tool = self.tools.as_ref()?.first()?;
        tool.pointer("/function/name")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    })
}

fn parse(body: &Bytes) -> Result<SimRequest, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        (
            http::StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": format!("invalid body: {e}"), "type": "invalid_request_error", "param": null, "code": null}})),
        )
            .into_response()
            .into()
    })
}

const TOOL_ARGS: &str = r#"{"location":"Paris","unit":"celsius"}"#;

async fn chat(State(spec): State<Arc<SimSpec>>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let words = req.words(&spec);
    let completion = words.len() as u64;
    let prompt = req.prompt_tokens();
    let n = req.n.unwrap_or(1).max(1);
    let id = format!("chatcmpl-sim{:x}", rand::random::<u64>());
    let tool = req.tool_name();
    if !req.stream {
        pause(spec.ttft + stream_time(&spec, completion)).await;
        let choices: Vec<Value> = (0..n)
            .map(|i| match &tool {
                Some(name) => json!({
                    "index": i, "finish_reason": "tool_calls", "logprobs": null,
                    "message": {"role": "assistant", "content": null, "refusal": null,
                        "tool_calls": [{"id": format!("call_sim{i}"), "type": "function", "function": {"name": name, "arguments": TOOL_ARGS}}]}
                }),
                None => json!({
                    "index": i, "finish_reason": "stop", "logprobs": null,
                    "message": {"role": "assistant", "content": words.concat(), "refusal": null}
                }),
            })
            .collect();
        return Json(json!({
            "id": id, "object": "chat.completion", "created": now(), "model": req.model,
            "system_fingerprint": "fp_sim", "choices": choices, "usage": usage(prompt, completion * n)
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": now(), "model": req.model,
            "system_fingerprint": "fp_sim",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]})
    };
    let mut events: Vec<Value> = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    match &tool {
        Some(name) => {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_sim0", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            for piece in [&TOOL_ARGS[..12], &TOOL_ARGS[12..27], &TOOL_ARGS[27..]] {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
            events.push(chunk(json!({}), Some("tool_calls")));
        }
        None => {
            for w in &words {
                events.push(chunk(json!({"content": w}), None));
            }
            events.push(chunk(json!({}), Some("stop")));
        }
    }
    if req.include_usage() {
        events.push(json!({"id": id, "object": "chat.completion.chunk", "created": now(), "model": req.model,
            "choices": [], "usage": usage(prompt, completion)}));
    }
    sse_body(spec, events)
}

/// Sleeps unless `d` is zero: a zero sleep still waits for the timer's next tick (~1 ms).
async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

fn stream_time(spec: &SimSpec, tokens: u64) -> Duration {
    if spec.tokens_per_sec > 0.0 {
        Duration::from_secs_f64(tokens as f64 / spec.tokens_per_sec)
    } else {
        Duration::ZERO
    }
}

fn sse_body(spec: Arc<SimSpec>, events: Vec<Value>) -> Response {
    let gap = if spec.tokens_per_sec > 0.0 {
        Duration::from_secs_f64(1.0 / spec.tokens_per_sec)
    } else {
        Duration::ZERO
    };
    let ttft = spec.ttft;
    let frames: Vec<Bytes> = events
        .into_iter()
        .map(|e| Bytes::from(format!("data: {e}\n\n")))
        .chain([Bytes::from_static(b"data: [DONE]\n\n")])
        .collect();
    let stream = futures_util::stream::unfold(
        (frames.into_iter(), true),
        move |(mut it, first)| async move {
            let frame = it.next()?;
            let wait = if first { ttft } else { gap };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Some((Ok::<_, std::convert::Infallible>(frame), (it, false)))
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

async fn completions(State(spec): State<Arc<SimSpec>>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let words = req.words(&spec);
    let completion = words.len() as u64;
    let prompt = req.prompt_tokens();
    let id = format!("cmpl-sim{:x}", rand::random::<u64>());
    if !req.stream {
        pause(spec.ttft + stream_time(&spec, completion)).await;
        return Json(json!({
            "id": id, "object": "text_completion", "created": now(), "model": req.model,
            "choices": [{"text": words.concat(), "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        }))
        .into_response();
    }
    let mut events: Vec<Value> = words
        .iter()
        .map(|w| {
            json!({"id": id, "object": "text_completion", "created": now(), "model": req.model,
            "choices": [{"text": w, "index": 0, "logprobs": null, "finish_reason": null}]})
        })
        .collect();
    events.push(
        json!({"id": id, "object": "text_completion", "created": now(), "model": req.model,
        "choices": [{"text": "", "index": 0, "logprobs": null, "finish_reason": "stop"}]}),
    );
    if req.include_usage() {
        events.push(json!({"id": id, "object": "text_completion", "created": now(), "model": req.model, "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}));
    }
    sse_body(spec, events)
}

async fn embeddings(State(spec): State<Arc<SimSpec>>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    pause(spec.ttft).await;
    let inputs = match &req.input {
        Some(Value::Array(items)) if items.iter().all(|i| !i.is_number()) => items.len(),
        _ => 1,
    };
    let dims = req.dimensions.unwrap_or(8).clamp(1, 4096);
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let vector: Vec<f32> = (0..dims).map(|d| ((i + d) as f32 * 0.37).sin()).collect();
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let prompt = req.prompt_tokens();
    Json(json!({"object": "list", "data": data, "model": req.model, "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}))
        .into_response()
}

async fn models() -> Response {
    Json(json!({"object": "list", "data": [{"id": "sim", "object": "model", "created": 0, "owned_by": "bazaar"}]})).into_response()
}
