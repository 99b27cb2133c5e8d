//! Micro-benchmark: one routing decision (`build_plan`) over 50 candidates, with the
//! quality predictor off (budget: <= 5 µs) and on for a 2 KB prompt (budget: p50 <= 20 µs;
//! two of the candidates are models the embedded weights know): `on`, a prompt of a shape
//! the embedded weights read no words of (free-form, numbers, no question: only its
//! shape is scored), and `known`, the same request asked as a question (a shape they
//! know: every word gram is hashed, counted and weighed). Also the resident memory the
//! embedded weights add. Run with `cargo bench --bench route` (`-- off`, `-- on` or
//! `-- known` for one case alone, and `--iterations=N`, e.g. under a profiler).

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

fn config(predictor: bool) -> Config {
    let mut toml = String::from("[[keys]]\nname = \"k\"\nkey = \"bzr-bench\"\n");
    toml.push_str(&format!("[router.predictor]\nenabled = {predictor}\n"));
    for p in 0..5 {
        toml.push_str(&format!(
            "[providers.p{p}]\nbase_url = \"http://127.0.0.1:{}/v1\"\ntier = \"local\"\n",
            9000 + p
        ));
    }
    for m in 0..10 {
        let id = match m {
            0 => "gpt-4-1106-preview".to_string(),
            1 => "mixtral-8x7b-instruct".to_string(),
            m => format!("model-{m}"),
        };
        for p in 0..5 {
            toml.push_str(&format!(
                "[[models]]\nid = \"{id}\"\nprovider = \"p{p}\"\nupstream = \"up-{m}-{p}\"\nquality = {}\n",
                50 + 4 * m
            ));
        }
    }
    Config::from_toml(&toml, &|_| None).unwrap()
}

/// Resident set size of this process in KiB (Linux), for the memory figure.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench(label: &str, config: &Config, body: &[u8], budget_us: f64, iterations: usize) {
    let state = RouterState::default();
    let req = ChatRequest::parse(body).unwrap();
    let prefs = Prefs::default();
    let caller = CallerLimits::default();
    let call = CallShape::of(&req);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let now = tokio::time::Instant::now();
        let plan = build_plan(config, &state, &call, &prefs, &caller, now).unwrap();
        assert_eq!(plan.scored.len(), 50);
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            let plan = build_plan(config, &state, &call, &prefs, &caller, now).unwrap();
            std::hint::black_box(plan);
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(f64::total_cmp);
        let p50 = samples[iterations / 2];
        let p99 = samples[iterations * 99 / 100];
        let verdict = if p50 <= budget_us { "within" } else { "OVER" };
        println!("route decision over 50 candidates, {label}: p50 {p50:.2} µs, p99 {p99:.2} µs ({iterations} decisions); budget p50 {budget_us} µs: {verdict}");
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| matches!(*a, "off" | "on" | "known"))
        .collect();
    let iterations = args
        .iter()
        .find_map(|a| a.strip_prefix("--iterations="))
        .map_or(20_000, |n| n.parse::<usize>().unwrap().max(2));
    let run = |case: &str| only.is_empty() || only.contains(&case);
    let start = rss_kib();
    let off = config(false);
    let small = br#"{"model":"auto","max_tokens":200,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Write a python function that merges two sorted lists."}]}"#;
    if run("off") {
        bench("predictor off", &off, small, 5.0, iterations);
    }
    // What the predictor adds: a second config with it on, against one more without it
    // (each config holds its own copy of the catalog; the weights are parsed once).
    let before = rss_kib();
    let again = config(false);
    let without = rss_kib();
    let on = config(true);
    let with = rss_kib();
    let two_kb = |sentence: &str| {
        let prompt = sentence.repeat(20).chars().take(2048).collect::<String>();
        let body = serde_json::json!({"model": "auto", "max_tokens": 200, "messages": [{"role": "user", "content": prompt}]});
        serde_json::to_vec(&body).unwrap()
    };
    if run("on") {
        let body = two_kb("Explain, step by step, how to compute the derivative of x^3 + 2x at x = 4, and why the power rule works. ");
        bench("predictor on, 2 KB prompt", &on, &body, 20.0, iterations);
    }
    if run("known") {
        let body = two_kb("How do you compute the derivative of x^3 + 2x at x = 4, step by step, and why does the power rule work? ");
        bench(
            "predictor on, 2 KB prompt of a shape it reads words of",
            &on,
            &body,
            20.0,
            iterations,
        );
    }
    let after = rss_kib();
    if let (Some(s), Some(b), Some(n), Some(w), Some(a)) = (start, before, without, with, after) {
        let config = n.saturating_sub(b);
        let predictor = w.saturating_sub(n).saturating_sub(config);
        println!("resident memory: {s} KiB at start, {b} KiB after the first case; a config without the predictor +{config} KiB, one with it +{} KiB: the predictor adds {predictor} KiB; {a} KiB after deciding with it", w.saturating_sub(n));
    }
    drop(again);
}
