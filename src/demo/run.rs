//! `bazaar demo`: the gateway in front of simulated backends of all three tiers —
//! a frontier model and an embedding model, one open-weight model on two hosts (one of
//! them overloaded now and then, so calls fall back), a local model — priced like the
//! real ones (from the catalog) with realistic latency and token rates, demo keys (one
//! with a budget it soon spends, so some calls are refused), and an optional traffic
//! generator so every view of the dashboard fills within a minute.

use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::sim::{self, SimSpec};

/// The demo's client key.
pub const DEMO_KEY: &str = "bzr-demo";
/// The demo's master key (dashboard: everything).
pub const DEMO_MASTER_KEY: &str = "bzr-demo-master";
/// A trial key whose small daily budget the traffic soon spends: its later calls get 402.
const TRIAL_KEY: &str = "bzr-demo-trial";
/// The embedding model the demo serves.
const EMBEDDING_MODEL: &str = "text-embedding-3-small";

/// One simulated backend: provider preset, served models, behaviour.
struct Backend {
    provider: &'static str,
    models: &'static [&'static str],
    ttft_ms: u64,
    tokens_per_sec: f64,
    /// Every n-th chat call is a 503 (0: never), so the router falls back.
    fail_every: u64,
}

const BACKENDS: &[Backend] = &[
    Backend {
        provider: "openai",
        models: &["gpt-4o", "gpt-4o-mini", EMBEDDING_MODEL],
        ttft_ms: 450,
        tokens_per_sec: 90.0,
        fail_every: 0,
    },
    Backend {
        provider: "groq",
        models: &["llama-3.3-70b"],
        ttft_ms: 120,
        tokens_per_sec: 280.0,
        fail_every: 3,
    },
    Backend {
        provider: "together",
        models: &["llama-3.3-70b"],
        ttft_ms: 300,
        tokens_per_sec: 110.0,
        fail_every: 0,
    },
    Backend {
        provider: "ollama",
        models: &["qwen3-8b"],
        ttft_ms: 180,
        tokens_per_sec: 45.0,
        fail_every: 0,
    },
];

/// Starts the simulated backends on loopback and returns the demo config (TOML) for them.
pub async fn start_backends(
    listen: &str,
    ledger_url: &str,
    stop: CancellationToken,
) -> std::io::Result<String> {
    let mut toml = format!(
        "[server]\nlisten = \"{listen}\"\nmaster_key = \"{DEMO_MASTER_KEY}\"\n\n[ledger]\nurl = \"{ledger_url}\"\n\n[[keys]]\nname = \"demo\"\nkey = \"{DEMO_KEY}\"\nteam = \"demo-team\"\n\n[[keys]]\nname = \"demo-batch\"\nkey = \"bzr-demo-batch\"\nteam = \"batch\"\n\n[[keys]]\nname = \"demo-trial\"\nkey = \"{TRIAL_KEY}\"\nteam = \"batch\"\nbudget = \"0.0005/day\"\n\n[routes.support]\nmodels = [\"llama-3.3-70b\", \"qwen3-8b\", \"gpt-4o-mini\"]\npolicy = \"cheapest-above-quality\"\nquality_floor = 50\nreference = \"gpt-4o\"\n"
    );
    for b in BACKENDS {
        let spec = SimSpec {
            ttft: Duration::from_millis(b.ttft_ms),
            tokens_per_sec: b.tokens_per_sec,
            reply: "Routing picks the backend that serves each call best: price, latency and quality, weighed per request, with fallback when a provider fails.".into(),
            require_key: None,
            fail_every: b.fail_every,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let stop = stop.clone();
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = axum::serve(listener, sim::router(spec))
            .with_graceful_shutdown(async move { stop.cancelled().await });
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            let _ = server.await;
        });
        let models: Vec<String> = b.models.iter().map(|m| format!("\"{m}\"")).collect();
        toml.push_str(&format!(
            "\n[providers.{}]\nbase_url = \"http://{addr}/v1\"\napi_key = \"sk-simulated\"\ncatalog = false\nmodels = [{}]\n",
            b.provider,
            models.join(", ")
        ));
    }
    Ok(toml)
}

/// Sends varied requests through the gateway at `base_url` for about `duration`
/// (bounded: at most `max_requests`), until `stop`; returns how many it sent. Most are
/// chat calls on the demo keys; some are embeddings, some use the trial key (whose
/// budget runs out, so those become 402s), and some go to `llama-3.3-70b` on the
/// overloaded host only, without fallback (so some fail).
pub async fn traffic(
    base_url: String,
    duration: Duration,
    max_requests: usize,
    stop: CancellationToken,
) -> usize {
    let gap = duration
        .checked_div(max_requests.max(1) as u32)
        .unwrap_or(Duration::from_millis(100));
    let deadline = tokio::time::Instant::now() + duration;
    paced(base_url, max_requests, gap, Some(deadline), stop).await
}

/// The same mix as `traffic`, but exactly `requests` calls `gap` apart however long
/// that takes (unless `stop`); returns how many it sent.
pub async fn traffic_count(
    base_url: String,
    requests: usize,
    gap: Duration,
    stop: CancellationToken,
) -> usize {
    paced(base_url, requests, gap, None, stop).await
}

async fn paced(
    base_url: String,
    max_requests: usize,
    gap: Duration,
    deadline: Option<tokio::time::Instant>,
    stop: CancellationToken,
) -> usize {
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let models = [
        "auto",
        "cheap",
        "fast",
        "support",
        "gpt-4o",
        "llama-3.3-70b",
        "qwen3-8b",
        "gpt-4o-mini",
    ];
    let prompts = [
        "Write a python function that merges two sorted lists.",
        "Summarise the plot of Hamlet in three sentences.",
        "Solve 3x + 7 = 22 and explain each step.",
        "What is the capital of Australia?",
        "Refactor this JavaScript to use async/await: fetch(url).then(r => r.json())",
    ];
    let mut sent = 0;
    for i in 0..max_requests {
        let late = deadline.is_some_and(|d| tokio::time::Instant::now() > d);
        if stop.is_cancelled() || late {
            break;
        }
        // Keys cycle with another period than models, so every model is asked with
        // every key (the trial key's calls turn into 402s once its budget is spent).
        let key = match i % 6 {
            3 => "bzr-demo-batch",
            5 => TRIAL_KEY,
            _ => DEMO_KEY,
        };
        let prompt = prompts[i % prompts.len()];
        let (path, body) = if i % 11 == 7 {
            (
                "/v1/embeddings",
                json!({"model": EMBEDDING_MODEL, "input": [prompt]}),
            )
        } else {
            let mut body = json!({
                "model": models[i % models.len()],
                "max_tokens": 40 + (i % 5) * 30,
                "stream": i % 3 == 0,
                "messages": [{"role": "user", "content": prompt}],
            });
            if i % 13 == 6 {
                // OpenRouter's provider controls: this host or nothing.
                body["model"] = json!("llama-3.3-70b");
                body["provider"] = json!({"only": ["groq"], "allow_fallbacks": false});
            }
            ("/v1/chat/completions", body)
        };
        let request = http::Request::post(format!("{base_url}{path}"))
            .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())));
        // Only a malformed `base_url` fails here, and then every request would.
        let Ok(request) = request else { break };
        let sending = client.request(request);
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            if let Ok(resp) = sending.await {
                let _ = resp.into_body().collect().await;
            }
        });
        sent += 1;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(gap) => {}
        }
    }
    sent
}

/// The demo's ledger when none is given: a fresh SQLite file in a new directory under the
/// system's temporary directory, so each run starts empty and nothing is written where
/// the demo was started.
pub fn fresh_ledger() -> std::io::Result<(String, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("bazaar-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("ledger.sqlite");
    Ok((format!("sqlite://{}", file.display()), file))
}
