//! `bazaar demo`: the gateway in front of simulated backends of all three tiers —
//! a frontier model, one open-weight model on two hosts, a local model — priced like the
//! real ones (from the catalog) with realistic latency and token rates, a demo key, and
//! an optional traffic generator so the dashboard fills within a minute.

use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::sim::{self, SimSpec};

/// The demo's client key.
pub const DEMO_KEY: &str = "bzr-demo";
/// The demo's master key (dashboard: everything).
pub const DEMO_MASTER_KEY: &str = "bzr-demo-master";

/// One simulated backend: provider preset, served models, behaviour.
struct Backend {
    provider: &'static str,
    models: &'static [&'static str],
    ttft_ms: u64,
    tokens_per_sec: f64,
}

const BACKENDS: &[Backend] = &[
    Backend {
        provider: "openai",
        models: &["gpt-4o", "gpt-4o-mini"],
        ttft_ms: 450,
        tokens_per_sec: 90.0,
    },
    Backend {
        provider: "groq",
        models: &["llama-3.3-70b"],
        ttft_ms: 120,
        tokens_per_sec: 280.0,
    },
    Backend {
        provider: "together",
        models: &["llama-3.3-70b"],
        ttft_ms: 300,
        tokens_per_sec: 110.0,
    },
    Backend {
        provider: "ollama",
        models: &["qwen3-8b"],
        ttft_ms: 180,
        tokens_per_sec: 45.0,
    },
];

/// Starts the simulated backends on loopback and returns the demo config (TOML) for them.
pub async fn start_backends(
    listen: &str,
    ledger_url: &str,
    stop: CancellationToken,
) -> std::io::Result<String> {
    let mut toml = format!(
        "[server]\nlisten = \"{listen}\"\nmaster_key = \"{DEMO_MASTER_KEY}\"\n\n[ledger]\nurl = \"{ledger_url}\"\n\n[[keys]]\nname = \"demo\"\nkey = \"{DEMO_KEY}\"\nteam = \"demo-team\"\n\n[[keys]]\nname = \"demo-batch\"\nkey = \"bzr-demo-batch\"\nteam = \"batch\"\n\n[routes.support]\nmodels = [\"llama-3.3-70b\", \"qwen3-8b\", \"gpt-4o-mini\"]\npolicy = \"cheapest-above-quality\"\nquality_floor = 50\nreference = \"gpt-4o\"\n"
    );
    for b in BACKENDS {
        let spec = SimSpec {
            ttft: Duration::from_millis(b.ttft_ms),
            tokens_per_sec: b.tokens_per_sec,
            reply: "Routing picks the backend that serves each call best: price, latency and quality, weighed per request, with fallback when a provider fails.".into(),
            require_key: None,
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
/// (bounded: at most `max_requests`), until `stop`.
pub async fn traffic(
    base_url: String,
    duration: Duration,
    max_requests: usize,
    stop: CancellationToken,
) {
    let client = reqwest::Client::new();
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
    let started = tokio::time::Instant::now();
    let gap = duration
        .checked_div(max_requests.max(1) as u32)
        .unwrap_or(Duration::from_millis(100));
    for i in 0..max_requests {
        if stop.is_cancelled() || started.elapsed() > duration {
            return;
        }
        let key = if i % 4 == 3 {
            "bzr-demo-batch"
        } else {
            DEMO_KEY
        };
        let body = json!({
            "model": models[i % models.len()],
            "max_tokens": 40 + (i % 5) * 30,
            "stream": i % 3 == 0,
            "messages": [{"role": "user", "content": prompts[i % prompts.len()]}],
        });
        let request = client
            .post(format!("{base_url}/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send();
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            if let Ok(resp) = request.await {
                let _ = resp.bytes().await;
            }
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(gap) => {}
        }
    }
}
