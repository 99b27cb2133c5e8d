//! Load benchmark: the same requests sent directly to a fast mock upstream, through an
//! nginx `proxy_pass` hop (the floor), and through bazaar with its default config (the
//! SQLite ledger on), in one run. Per scenario it prints added latency (p50/p99; for
//! streams the added time to first chunk), requests/s, CPU time per 1,000 requests of
//! the proxy process, its peak RSS during the scenario, the ledger rows written and
//! spilled, and the load average; then the budget verdicts. Scenarios: chat, streamed
//! chat, embeddings, a route whose first candidate is down (fallback), a route of 50
//! candidates (router cost) and an Anthropic backend (translation cost; its mock runs
//! in this process).
//!
//! Run: `cargo bench --bench load` (add `-- --quick` for a short run, `--requests N`
//! per scenario instead of 20,000, `--only chat` for the chat case, `--only route` for the cases whose name starts so, `--concurrency 16`
//! for one level of concurrency only, `--gateway PATH` to measure another build of the gateway, e.g. an older commit's, against the same mocks,
//! `--counters` to count, by `perf stat` attached to nginx and the gateway, system calls, `futex` calls, context switches and CPU migrations per call).
//! nginx is used when `/usr/sbin/nginx` exists (Debian's `nginx` package).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_types,
    clippy::disallowed_methods
)]

#[path = "common/host.rs"]
mod host;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use host::loadavg;

const KEY: &str = "bzr-bench-key";
/// Models of the 50-candidate route (`route-50`), all served by the mock.
const ROUTE_50: usize = 50;

struct Proc(Child);

impl Proc {
    /// SIGTERM, then waits for the exit (once).
    fn stop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// utime + stime of a process and its threads, in seconds: whole 10 ms ticks, threads
/// that have exited included.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The CPU time of `pids`, read two ways: in ticks (`cpu_seconds`), and per live thread in
/// nanoseconds (the first field of `/proc/PID/task/TID/schedstat`).
struct CpuReading {
    ticks: f64,
    threads: HashMap<(u32, u32), u64>,
}

impl CpuReading {
    fn take(pids: &[u32]) -> CpuReading {
        let mut threads = HashMap::new();
        for &pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                    continue;
                };
                let on_cpu = std::fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok());
                if let Some(ns) = on_cpu {
                    threads.insert((pid, tid), ns);
                }
            }
        }
        CpuReading {
            ticks: pids.iter().map(|p| cpu_seconds(*p)).sum(),
            threads,
        }
    }

    /// Seconds of CPU spent between `self` and `later`: to the nanosecond when every
    /// thread of `self` is still there, otherwise (a thread exited and took its time with
    /// it) in ticks, which keep dead threads' time but move in steps of 10 ms — at 4,000
    /// calls of ≈ 25 µs, a tenth of the figure.
    fn seconds_until(&self, later: &CpuReading) -> f64 {
        let all_lived = self.threads.keys().all(|id| later.threads.contains_key(id));
        if self.threads.is_empty() || !all_lived {
            return later.ticks - self.ticks;
        }
        // A thread started during the run counts from zero.
        let ns: u64 = later
            .threads
            .iter()
            .map(|(id, ns)| ns.saturating_sub(self.threads.get(id).copied().unwrap_or(0)))
            .sum();
        ns as f64 / 1e9
    }
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Samples the summed RSS of `pids` every 5 ms until dropped; `peak_kb` is the highest seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pids: Vec<u32>) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let rss: u64 = pids.iter().map(|pid| status_kb(*pid, "VmRSS")).sum();
                p.fetch_max(rss, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak_kb(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Kernel-side counters of the proxy's processes over one scenario, by `perf stat`
/// attached to them (`--counters`): context switches, CPU migrations, system calls and
/// `futex` calls (cross-thread wake-ups and parking). Counts, not times: steady under load.
struct Counters {
    child: Child,
    out: std::path::PathBuf,
}

/// What `Counters` counted, in the order of `Counters::EVENTS`.
#[derive(Clone, Copy, Default)]
struct Counted {
    switches: f64,
    migrations: f64,
    syscalls: f64,
    futex: f64,
}

impl Counters {
    const EVENTS: &'static str =
        "context-switches,cpu-migrations,raw_syscalls:sys_enter,syscalls:sys_enter_futex";

    /// Attaches to `pids`; `None` if there are none or `perf` cannot attach.
    fn start(pids: &[u32], out: std::path::PathBuf) -> Option<Counters> {
        if pids.is_empty() {
            return None;
        }
        let pids = pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let child = Command::new("perf")
            .args(["stat", "-x", ",", "-e", Self::EVENTS, "-p", &pids, "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // perf attaches after it starts: give it the time to (its output has no signal for it).
        std::thread::sleep(Duration::from_millis(300));
        Some(Counters { child, out })
    }

    /// SIGINT, then the counts perf wrote.
    fn stop(mut self) -> Counted {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let count = |event: &str| {
            text.lines()
                .find(|l| l.split(',').nth(2) == Some(event))
                .and_then(|l| l.split(',').next()?.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        Counted {
            switches: count("context-switches"),
            migrations: count("cpu-migrations"),
            syscalls: count("raw_syscalls:sys_enter"),
            futex: count("syscalls:sys_enter_futex"),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Chat,
    Stream,
    Embeddings,
    RouteWithFallback,
    Route50,
    Anthropic,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Chat => "chat",
            Case::Stream => "chat stream",
            Case::Embeddings => "embeddings",
            Case::RouteWithFallback => "route+fallback",
            Case::Route50 => "route 50 cand.",
            Case::Anthropic => "anthropic",
        }
    }
    /// The path a target is called on: direct and nginx calls of the Anthropic case speak
    /// Anthropic's wire format to its mock; bazaar is called in OpenAI's and translates.
    fn path(self, target: Target) -> &'static str {
        match self {
            Case::Embeddings => "/v1/embeddings",
            Case::Anthropic if target != Target::Bazaar => "/v1/messages",
            _ => "/v1/chat/completions",
        }
    }
    fn body(self, target: Target) -> String {
        let via_bazaar = target == Target::Bazaar;
        let model = match self {
            Case::Embeddings => "text-embedding-3-small",
            Case::RouteWithFallback if via_bazaar => "fallback-route",
            Case::Route50 if via_bazaar => "route-50",
            Case::Anthropic => "claude-bench",
            _ => "gpt-4o-mini",
        };
        match self {
            Case::Embeddings => format!(
                r#"{{"model":"{model}","input":"The quick brown fox jumps over the lazy dog"}}"#
            ),
            Case::Stream => format!(
                r#"{{"model":"{model}","stream":true,"max_tokens":16,"messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"Say hello to the benchmark."}}]}}"#
            ),
            Case::Anthropic if !via_bazaar => format!(
                r#"{{"model":"{model}","max_tokens":16,"system":"You are terse.","messages":[{{"role":"user","content":"Say hello to the benchmark."}}]}}"#
            ),
            _ => format!(
                r#"{{"model":"{model}","max_tokens":16,"messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"Say hello to the benchmark."}}]}}"#
            ),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Target {
    Direct,
    Nginx,
    Bazaar,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::Bazaar => "bazaar",
        }
    }
}

struct Outcome {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
}

async fn run(
    client: &reqwest::Client,
    base: &str,
    case: Case,
    target: Target,
    concurrency: usize,
    total: usize,
) -> Outcome {
    let url = format!("{base}{}", case.path(target));
    let body = bytes::Bytes::from(case.body(target));
    let per_worker = total / concurrency;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            let mut errors = 0;
            for _ in 0..per_worker {
                let t0 = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .header("x-api-key", KEY)
                    .header("anthropic-version", "2023-06-01")
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match resp {
                    Ok(mut r) if r.status().is_success() => {
                        if case == Case::Stream {
                            // Time to first chunk, then drain the rest.
                            let first = r.chunk().await;
                            lat.push(t0.elapsed());
                            if first.is_err() {
                                errors += 1;
                            }
                            while let Ok(Some(_)) = r.chunk().await {}
                        } else {
                            let _ = r.bytes().await;
                            lat.push(t0.elapsed());
                        }
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Outcome {
        latencies,
        elapsed,
        errors,
    }
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

/// A canned Anthropic Messages reply; the mock for the Anthropic case.
async fn anthropic_messages() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-bench","content":[{"type":"text","text":"Hello! This is a simulated reply from the bazaar bench."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":21,"output_tokens":12}}"#,
    )
        .into_response()
}

/// Starts the Anthropic mock on its own thread (its own single-threaded runtime, like a
/// separate process) and returns its address.
fn start_anthropic_mock() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app =
                axum::Router::new().route("/v1/messages", axum::routing::post(anthropic_messages));
            let _ = axum::serve(listener, app).await;
        });
    });
    addr
}

/// The gateway's config: one OpenAI-compatible mock provider, one key and everything
/// else at its defaults (so the SQLite ledger is on), plus the routes the cases use.
fn gateway_config(gw_port: u16, sim_addr: &str, anthropic_addr: &str) -> String {
    let dead_port = free_port();
    let mut models = String::new();
    let mut route_50 = Vec::new();
    for i in 0..ROUTE_50 {
        // Prices and priors differ, so the router really has to score them.
        models.push_str(&format!(
            "[[models]]\nid = \"cand-{i:02}\"\nprovider = \"mock\"\ninput_price = {:.2}\noutput_price = {:.2}\nquality = {}\n",
            0.1 + i as f64 * 0.05,
            0.2 + i as f64 * 0.1,
            40 + i % 50
        ));
        route_50.push(format!("\"cand-{i:02}\""));
    }
    format!(
        r#"
[server]
listen = "127.0.0.1:{gw_port}"
[providers.mock]
base_url = "http://{sim_addr}/v1"
tier = "local"
models = ["gpt-4o-mini", "text-embedding-3-small"]
[providers.claude]
kind = "anthropic"
base_url = "http://{anthropic_addr}/v1"
api_key = "bench"
tier = "frontier"
catalog = false
[providers.dead]
base_url = "http://127.0.0.1:{dead_port}/v1"
tier = "local"
[providers.dead.timeouts]
connect = "200ms"
[[models]]
id = "dead-model"
provider = "dead"
input_price = 0
output_price = 0
quality = 90
[[models]]
id = "gpt-4o-mini"
provider = "mock"
input_price = 0
output_price = 0
quality = 50
[[models]]
id = "claude-bench"
provider = "claude"
input_price = 3
output_price = 15
quality = 80
{models}
[routes.fallback-route]
models = ["dead-model", "gpt-4o-mini"]
policy = "quality"
[routes.route-50]
models = [{}]
policy = "balanced"
[router.breaker]
threshold = 1000000
[[keys]]
name = "bench"
key = "{KEY}"
"#,
        route_50.join(", ")
    )
}

fn nginx_config(
    dir: &std::path::Path,
    sim_addr: &str,
    port: u16,
    anthropic_addr: &str,
    anthropic_port: u16,
) -> String {
    format!(
        r#"
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log crit;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream mock {{ server {sim_addr}; keepalive 128; }}
  upstream claude {{ server {anthropic_addr}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
  server {{
    listen 127.0.0.1:{anthropic_port};
    location / {{
      proxy_pass http://claude;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"#,
        dir = dir.display()
    )
}

/// The gateway's ledger as the bench sees it: rows in the SQLite file and rows spilled
/// (the `bazaar_ledger_spilled_rows` gauge).
struct LedgerProbe {
    db: sqlx::SqlitePool,
    metrics_url: String,
}

impl LedgerProbe {
    async fn rows(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ledger")
            .fetch_one(&self.db)
            .await
            .unwrap_or(-1)
    }

    async fn spilled(&self, client: &reqwest::Client) -> i64 {
        let text = match client.get(&self.metrics_url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return -1,
        };
        text.lines()
            .find(|l| l.starts_with("bazaar_ledger_spilled_rows "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map(|v| v as i64)
            .unwrap_or(-1)
    }

    /// Rows once the writer has caught up with `expected` (or stopped making progress
    /// for a second: whatever is missing then was spilled or lost).
    async fn settled_rows(&self, expected: i64) -> i64 {
        let mut last = self.rows().await;
        let mut still = Instant::now();
        while last < expected && still.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.rows().await;
            if now != last {
                still = Instant::now();
                last = now;
            }
        }
        last
    }
}

struct Row {
    case: Case,
    conc: usize,
    target: Target,
    p50: f64,
    p99: f64,
    add50: f64,
    add99: f64,
    rps: f64,
    cpu_per_k: f64,
    peak_rss_kb: u64,
    /// Ledger rows written and spilled during the scenario (bazaar only).
    ledger: Option<(i64, i64)>,
    /// Kernel-side counts per call (`--counters`; not for direct calls).
    per_call: Option<Counted>,
    errors: usize,
    load: String,
}

impl Row {
    fn print(&self) {
        let ledger = match self.ledger {
            Some((w, s)) => format!("{w:>8} {s:>7}"),
            None => format!("{:>8} {:>7}", "-", "-"),
        };
        let rss = if self.peak_rss_kb == 0 {
            "-".to_string()
        } else {
            format!("{:.1}", self.peak_rss_kb as f64 / 1024.0)
        };
        println!(
            "{:<15} {:>4} {:<7} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>9.1} {:>7} {ledger} {:>6} {:>5}",
            self.case.name(),
            self.conc,
            self.target.name(),
            self.p50,
            self.p99,
            self.add50,
            self.add99,
            self.rps,
            self.cpu_per_k,
            rss,
            self.errors,
            self.load
        );
        if let Some(c) = self.per_call {
            println!(
                "{:<20} per call: {:.2} syscalls, {:.2} futex, {:.2} context switches, {:.3} CPU migrations",
                "", c.syscalls, c.futex, c.switches, c.migrations
            );
        }
    }

    fn json(&self) -> String {
        let (written, spilled) = self.ledger.unwrap_or((-1, -1));
        let counted = match self.per_call {
            // An event perf could not count is -1 (JSON has no NaN).
            Some(c) => {
                let n = |v: f64| if v.is_finite() { v } else { -1.0 };
                format!(
                    r#","syscalls_per_call":{:.3},"futex_per_call":{:.3},"context_switches_per_call":{:.3},"cpu_migrations_per_call":{:.4}"#,
                    n(c.syscalls),
                    n(c.futex),
                    n(c.switches),
                    n(c.migrations)
                )
            }
            None => String::new(),
        };
        format!(
            r#"{{"case":"{}","concurrency":{},"target":"{}","p50_us":{:.1},"p99_us":{:.1},"added_p50_us":{:.1},"added_p99_us":{:.1},"rps":{:.1},"cpu_ms_per_1k":{:.2},"peak_rss_kb":{},"ledger_rows_written":{written},"ledger_rows_spilled":{spilled},"errors":{},"loadavg":"{}"{counted}}}"#,
            self.case.name(),
            self.conc,
            self.target.name(),
            self.p50,
            self.p99,
            self.add50,
            self.add99,
            if self.rps.is_finite() { self.rps } else { 0.0 },
            if self.cpu_per_k.is_finite() {
                self.cpu_per_k
            } else {
                -1.0
            },
            self.peak_rss_kb,
            self.errors,
            self.load
        )
    }
}

/// What `--help` prints.
const USAGE: &str = "\
load: the gateway against nginx and a direct call to the same mock, per scenario
  --only NAME          one case by its name (chat, \"chat stream\", embeddings, route+fallback, \"route 50 cand.\",
                       anthropic), or every case whose name starts with NAME (e.g. route)
  --concurrency N      one level of concurrency only (1, 16 or 64)
  --requests N         calls a scenario (default 20,000; --quick 600)
  --quick              a short run (also BAZAAR_BENCH_QUICK)
  --gateway PATH       measure another build of the gateway against the same mocks
  --counters           system calls, futex calls, context switches and migrations per call (perf stat)
  --help               this text
";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(refused) = usage_error(&args[1..]) {
        if refused.is_empty() {
            print!("{USAGE}");
            return;
        }
        eprint!("load: {refused}\n{USAGE}");
        std::process::exit(2);
    }
    let quick = args.iter().any(|a| a == "--quick") || std::env::var("BAZAAR_BENCH_QUICK").is_ok();
    let only: Option<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let per_case = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        // 20,000 a scenario: at c=16 that is under a second of calls, and a shorter
        // window is swayed by one transient (a WAL checkpoint, a rollup) in either proxy.
        .unwrap_or(if quick { 600 } else { 20_000 });
    let counters = args.iter().any(|a| a == "--counters");
    let only_conc: Option<usize> = args
        .iter()
        .position(|a| a == "--concurrency")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    let bin = env!("CARGO_BIN_EXE_bazaar");
    // The gateway under test; the mocks always come from this build.
    let gateway_bin: String = args
        .iter()
        .position(|a| a == "--gateway")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| bin.to_string());
    let dir = std::env::temp_dir().join(format!("bazaar-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The mock upstreams: bazaar's OpenAI-compatible simulator, and an Anthropic one.
    let mut sim = Command::new(bin)
        .args(["sim", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let sim_addr = line.trim().trim_start_matches("listening on ").to_string();
    let _sim = Proc(sim);
    let anthropic_addr = start_anthropic_mock();

    // bazaar in front of them, with its default config otherwise (the SQLite ledger on,
    // beside the config file).
    let gw_port = free_port();
    let config = dir.join("bazaar.toml");
    std::fs::write(&config, gateway_config(gw_port, &sim_addr, &anthropic_addr)).unwrap();
    let mut gateway_cmd = Command::new(&gateway_bin);
    gateway_cmd
        .args(["serve", "--config"])
        .arg(&config)
        // Older builds put a relative ledger path in the working directory, not beside the config.
        .current_dir(&dir)
        .env("BAZAAR_LOG", "warn")
        .stderr(Stdio::null());
    if let Ok(threads) = std::env::var("BAZAAR_WORKER_THREADS") {
        gateway_cmd.env("BAZAAR_WORKER_THREADS", threads);
    }
    let gateway = gateway_cmd.spawn().unwrap();
    let gw_pid = gateway.id();
    let mut gateway = Proc(gateway);

    // nginx as the floor: one server per mock.
    let nginx_port = free_port();
    let nginx_anthropic_port = free_port();
    let nginx = if std::path::Path::new("/usr/sbin/nginx").exists() {
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(
            dir.join("nginx.conf"),
            nginx_config(
                &dir,
                &sim_addr,
                nginx_port,
                &anthropic_addr,
                nginx_anthropic_port,
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Some(Proc(child))
    } else {
        eprintln!("nginx not found (apt-get install nginx): the floor is skipped");
        None
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sent_to_bazaar = rt.block_on(async {
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build().unwrap();
        for _ in 0..200 {
            if client.get(format!("http://127.0.0.1:{gw_port}/readyz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let idle_rss = status_kb(gw_pid, "VmRSS");
        let probe = LedgerProbe {
            db: sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(
                    sqlx::sqlite::SqliteConnectOptions::new()
                        .filename(dir.join("bazaar-ledger.sqlite"))
                        .read_only(true),
                )
                .await
                .unwrap(),
            metrics_url: format!("http://127.0.0.1:{gw_port}/metrics"),
        };
        // nginx forks its worker after start: wait until it exists.
        let mut nginx_pids: Vec<u32> = Vec::new();
        if let Some(n) = nginx.as_ref() {
            let master = n.0.id();
            for _ in 0..100 {
                let _ = client.get(format!("http://127.0.0.1:{nginx_port}/v1/models")).send().await;
                let workers = children_of(master);
                if !workers.is_empty() {
                    nginx_pids = std::iter::once(master).chain(workers).collect();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let mut targets: Vec<Target> = vec![Target::Direct];
        if nginx.is_some() {
            targets.push(Target::Nginx);
        }
        targets.push(Target::Bazaar);
        let base = |target: Target, case: Case| match (target, case) {
            (Target::Direct, Case::Anthropic) => format!("http://{anthropic_addr}"),
            (Target::Direct, _) => format!("http://{sim_addr}"),
            (Target::Nginx, Case::Anthropic) => format!("http://127.0.0.1:{nginx_anthropic_port}"),
            (Target::Nginx, _) => format!("http://127.0.0.1:{nginx_port}"),
            (Target::Bazaar, _) => format!("http://127.0.0.1:{gw_port}"),
        };
        let pids = |target: Target| match target {
            Target::Direct => vec![],
            Target::Nginx => nginx_pids.clone(),
            Target::Bazaar => vec![gw_pid],
        };

        println!(
            "bazaar load bench ({per_case} requests per scenario; gateway {gateway_bin}; load average at start: {}; gateway worker threads: {})",
            loadavg(),
            std::env::var("BAZAAR_WORKER_THREADS").unwrap_or_else(|_| "default".into())
        );
        println!(
            "{:<15} {:>4} {:<7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>7} {:>6} {:>5}",
            "case", "conc", "target", "p50 µs", "p99 µs", "+p50 µs", "+p99 µs", "req/s", "cpu ms/1k", "RSS MB", "ledger", "spilled", "errors", "load"
        );
        let mut verdicts = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        let mut sent: i64 = 0;
        let mut spilled_total = 0;
        let cases = [Case::Chat, Case::Stream, Case::Embeddings, Case::RouteWithFallback, Case::Route50, Case::Anthropic];
        for case in cases {
            // `--only chat` is the chat case alone; `--only route` every case starting so.
            let exact = only.as_deref().is_some_and(|o| cases.iter().any(|c| c.name() == o));
            if only.as_deref().is_some_and(|o| if exact { case.name() != o } else { !case.name().starts_with(o) }) {
                continue;
            }
            for conc in [1usize, 16, 64] {
                if only_conc.is_some_and(|c| c != conc) {
                    continue;
                }
                let mut direct_p = (0.0, 0.0);
                let mut nginx_stats = None;
                for &target in &targets {
                    // Only bazaar knows routes.
                    if case == Case::RouteWithFallback && target == Target::Nginx {
                        continue;
                    }
                    let (base, pids) = (base(target, case), pids(target));
                    // Warm the pools.
                    let warm = run(&client, &base, case, target, conc, conc * 4).await;
                    let before = if target == Target::Bazaar {
                        sent += (warm.latencies.len() + warm.errors) as i64;
                        Some((probe.settled_rows(sent).await, probe.spilled(&client).await))
                    } else {
                        None
                    };
                    let sampler = RssSampler::start(pids.clone());
                    let perf = if counters { Counters::start(&pids, dir.join("perf-stat.csv")) } else { None };
                    let cpu0 = CpuReading::take(&pids);
                    let out = run(&client, &base, case, target, conc, per_case).await;
                    let cpu = cpu0.seconds_until(&CpuReading::take(&pids));
                    let counted = perf.map(Counters::stop);
                    let peak_rss_kb = sampler.peak_kb();
                    let n = out.latencies.len().max(1) as f64;
                    let per_call = counted.map(|c| Counted {
                        switches: c.switches / n,
                        migrations: c.migrations / n,
                        syscalls: c.syscalls / n,
                        futex: c.futex / n,
                    });
                    let (p50, p99) = (pct(&out.latencies, 0.50), pct(&out.latencies, 0.99));
                    let rps = n / out.elapsed.as_secs_f64();
                    let cpu_per_k = if pids.is_empty() { f64::NAN } else { cpu * 1000.0 / n * 1000.0 };
                    if target == Target::Direct {
                        direct_p = (p50, p99);
                    }
                    let (add50, add99) = if target == Target::Direct { (0.0, 0.0) } else { (p50 - direct_p.0, p99 - direct_p.1) };
                    let ledger = match before {
                        Some((rows0, spilled0)) => {
                            sent += (out.latencies.len() + out.errors) as i64;
                            let rows1 = probe.settled_rows(sent).await;
                            let spilled1 = probe.spilled(&client).await;
                            spilled_total = spilled1;
                            Some((rows1 - rows0, spilled1 - spilled0))
                        }
                        None => None,
                    };
                    let row = Row { case, conc, target, p50, p99, add50, add99, rps, cpu_per_k, peak_rss_kb, ledger, per_call, errors: out.errors, load: loadavg() };
                    row.print();
                    if target == Target::Nginx {
                        nginx_stats = Some((rps, cpu_per_k));
                    }
                    if target == Target::Bazaar && case == Case::Chat && conc == 1 {
                        verdicts.push(format!("added p50 at c=1 {add50:.0} µs (budget 100): {}", if add50 <= 100.0 { "within" } else { "OVER" }));
                        verdicts.push(format!("added p99 at c=1 {add99:.0} µs (budget 500): {}", if add99 <= 500.0 { "within" } else { "OVER" }));
                    }
                    if target == Target::Bazaar && case == Case::Chat && conc == 16 {
                        if let Some((nrps, ncpu)) = nginx_stats {
                            verdicts.push(format!("CPU/call at c=16 {:.2}x nginx (budget 2x): {}", cpu_per_k / ncpu, if cpu_per_k <= 2.0 * ncpu { "within" } else { "OVER" }));
                            verdicts.push(format!("req/s at c=16 {:.2}x nginx (budget >= 0.5x): {}", rps / nrps, if rps >= 0.5 * nrps { "within" } else { "OVER" }));
                        }
                    }
                    rows.push(row);
                }
            }
        }
        let peak = status_kb(gw_pid, "VmHWM");
        verdicts.push(format!("idle RSS {:.1} MB (budget 30 MB): {}", idle_rss as f64 / 1024.0, if idle_rss <= 30 * 1024 { "within" } else { "OVER" }));
        verdicts.push(format!("peak RSS under load {:.1} MB (budget 30 MB): {}", peak as f64 / 1024.0, if peak <= 30 * 1024 { "within" } else { "OVER" }));
        verdicts.push(format!("ledger rows spilled while the database was up: {spilled_total} (budget 0): {}", if spilled_total == 0 { "within" } else { "OVER" }));
        println!();
        for v in &verdicts {
            println!("  {v}");
        }
        let json = format!(
            "{{\"rows\":[{}],\"idle_rss_kb\":{idle_rss},\"peak_rss_kb\":{peak},\"ledger_rows_spilled\":{spilled_total}}}\n",
            rows.iter().map(Row::json).collect::<Vec<_>>().join(",")
        );
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench-load.json");
        let _ = std::fs::write(&out, json);
        probe.db.close().await;
        sent
    });
    drop(nginx);
    // SIGTERM: the gateway flushes its ledger; every call sent is a row or a spilled line.
    gateway.stop();
    let in_db = rt.block_on(async {
        let db = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("bazaar-ledger.sqlite")),
        )
        .await
        .unwrap();
        let n = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ledger")
            .fetch_one(&db)
            .await
            .unwrap_or(-1);
        db.close().await;
        n
    });
    let in_spill: usize = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().contains(".spill.jsonl"))
                .map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .count()
                })
                .sum()
        })
        .unwrap_or(0);
    println!("  after SIGTERM: {sent_to_bazaar} calls sent to bazaar, {in_db} ledger rows, {in_spill} rows left in spill files");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Some("")` when `--help` was asked for, `Some(reason)` for an argument the bench does
/// not know (a typo would otherwise run the whole bench with its defaults), else `None`.
/// `--bench` is what `cargo bench` passes to every bench.
fn usage_error(args: &[String]) -> Option<String> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Some(String::new()),
            "--quick" | "--counters" | "--bench" => {}
            "--only" | "--requests" | "--concurrency" | "--gateway" => {
                if args.next().is_none() {
                    return Some(format!("{arg} needs a value"));
                }
            }
            other => return Some(format!("unknown argument `{other}`")),
        }
    }
    None
}
