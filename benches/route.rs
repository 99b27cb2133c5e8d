//! Micro-benchmark: one routing decision (`build_plan`) over 50 candidates.
//! Budget: <= 5 µs per decision. Run with `cargo bench --bench route`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_types
)]

use std::time::Instant;

use bazaar::api::openai::ChatRequest;
use bazaar::config::Config;
use bazaar::router::filter::CallerLimits;
use bazaar::router::prefs::Prefs;
use bazaar::router::{build_plan, CallShape, RouterState};

fn config() -> Config {
    let mut toml = String::from("[[keys]]\nname = \"k\"\nkey = \"bzr-bench\"\n");
    for p in 0..5 {
        toml.push_str(&format!(
            "[providers.p{p}]\nbase_url = \"http://127.0.0.1:{}/v1\"\ntier = \"local\"\n",
            9000 + p
        ));
    }
    for m in 0..10 {
        for p in 0..5 {
            toml.push_str(&format!(
                "[[models]]\nid = \"model-{m}\"\nprovider = \"p{p}\"\nupstream = \"up-{m}-{p}\"\n"
            ));
        }
    }
    Config::from_toml(&toml, &|_| None).unwrap()
}

fn main() {
    let config = config();
    let state = RouterState::default();
    let body = br#"{"model":"auto","max_tokens":200,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Write a python function that merges two sorted lists."}]}"#;
    let req = ChatRequest::parse(body).unwrap();
    let prefs = Prefs::default();
    let caller = CallerLimits::default();
    let call = CallShape {
        model: &req.model,
        needs: req.needs,
        prompt_tokens: req.estimated_prompt_tokens(),
        max_tokens: req.max_tokens,
        prompt_head: &req.prompt_head,
        user: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let now = tokio::time::Instant::now();
        let plan = build_plan(&config, &state, &call, &prefs, &caller, now).unwrap();
        assert_eq!(plan.scored.len(), 50);
        let iterations = 20_000;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..iterations {
                let plan = build_plan(&config, &state, &call, &prefs, &caller, now).unwrap();
                std::hint::black_box(plan);
            }
            best = best.min(start.elapsed().as_secs_f64() * 1e6 / iterations as f64);
        }
        let verdict = if best <= 5.0 { "within" } else { "OVER" };
        println!("route decision over 50 candidates: {best:.2} µs (best of 5 runs of {iterations}); budget 5 µs: {verdict}");
    });
}
