//! Load benchmark: the same requests sent directly to a fast mock upstream, through an
//! nginx `proxy_pass` hop (the floor), and through bazaar, in one run. Prints added
//! latency (p50/p99; for streams the added time to first chunk), requests/s, CPU time
//! per 1,000 requests of the proxy process and its RSS, then the budget verdicts.
//!
//! Run: `cargo bench --bench load` (add `-- --quick` for a short run). nginx is used
//! when `/usr/sbin/nginx` exists (Debian's `nginx` package).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_types,
    clippy::disallowed_methods
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "bzr-bench-key";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// utime + stime of a process and its threads, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
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

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Chat,
    Stream,
    Embeddings,
    RouteWithFallback,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Chat => "chat",
            Case::Stream => "chat stream",
            Case::Embeddings => "embeddings",
            Case::RouteWithFallback => "route+fallback",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Case::Embeddings => "/v1/embeddings",
            _ => "/v1/chat/completions",
        }
    }
    fn body(self, direct: bool) -> String {
        let model = match self {
            Case::Embeddings => "text-embedding-3-small",
            Case::RouteWithFallback if !direct => "fallback-route",
            _ => "gpt-4o-mini",
        };
        match self {
            Case::Embeddings => format!(
                r#"{{"model":"{model}","input":"The quick brown fox jumps over the lazy dog"}}"#
            ),
            Case::Stream => format!(
                r#"{{"model":"{model}","stream":true,"max_tokens":16,"messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"Say hello to the benchmark."}}]}}"#
            ),
            _ => format!(
                r#"{{"model":"{model}","max_tokens":16,"messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"Say hello to the benchmark."}}]}}"#
            ),
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
    direct: bool,
    concurrency: usize,
    total: usize,
) -> Outcome {
    let url = format!("{base}{}", case.path());
    let body = case.body(direct);
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

fn main() {
    let quick =
        std::env::args().any(|a| a == "--quick") || std::env::var("BAZAAR_BENCH_QUICK").is_ok();
    let per_case = if quick { 600 } else { 4000 };
    let bin = env!("CARGO_BIN_EXE_bazaar");
    let dir = std::env::temp_dir().join(format!("bazaar-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The mock upstream.
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

    // bazaar in front of it; `fallback-route` tries a dead backend first.
    let gw_port = free_port();
    let dead_port = free_port();
    let config = dir.join("bazaar.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{gw_port}"
[providers.mock]
base_url = "http://{sim_addr}/v1"
tier = "local"
models = ["gpt-4o-mini", "text-embedding-3-small"]
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
[routes.fallback-route]
models = ["dead-model", "gpt-4o-mini"]
policy = "quality"
[router.breaker]
threshold = 1000000
[[keys]]
name = "bench"
key = "{KEY}"
"#
        ),
    )
    .unwrap();
    let gateway = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("BAZAAR_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gw_pid = gateway.id();
    let _gateway = Proc(gateway);

    // nginx as the floor.
    let nginx_port = free_port();
    let nginx = if std::path::Path::new("/usr/sbin/nginx").exists() {
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(
            dir.join("nginx.conf"),
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
  server {{
    listen 127.0.0.1:{nginx_port};
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"#,
                dir = dir.display()
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
    rt.block_on(async {
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build().unwrap();
        for _ in 0..200 {
            if client.get(format!("http://127.0.0.1:{gw_port}/readyz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let idle_rss = status_kb(gw_pid, "VmRSS");
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
        let targets: Vec<(&str, String, Vec<u32>)> = std::iter::once(("direct", format!("http://{sim_addr}"), vec![]))
            .chain(nginx.as_ref().map(|_| ("nginx", format!("http://127.0.0.1:{nginx_port}"), nginx_pids.clone())))
            .chain(std::iter::once(("bazaar", format!("http://127.0.0.1:{gw_port}"), vec![gw_pid])))
            .collect();

        println!("bazaar load bench ({} requests per case; uptime: {})", per_case, std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
        println!("{:<15} {:>4} {:<7} {:>9} {:>9} {:>10} {:>10} {:>9} {:>12} {:>7}", "case", "conc", "target", "p50 µs", "p99 µs", "+p50 µs", "+p99 µs", "req/s", "cpu ms/1k", "errors");
        let mut verdicts = Vec::new();
        let mut rows = Vec::new();
        for case in [Case::Chat, Case::Stream, Case::Embeddings, Case::RouteWithFallback] {
            for conc in [1usize, 16, 64] {
                let mut direct_p = (0.0, 0.0);
                let mut nginx_stats = None;
                for (name, base, pids) in &targets {
                    if case == Case::RouteWithFallback && *name == "nginx" {
                        continue;
                    }
                    // Warm the pools.
                    run(&client, base, case, *name == "direct", conc, conc * 4).await;
                    let cpu0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
                    let out = run(&client, base, case, *name == "direct", conc, per_case).await;
                    let cpu1: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
                    let n = out.latencies.len().max(1) as f64;
                    let (p50, p99) = (pct(&out.latencies, 0.50), pct(&out.latencies, 0.99));
                    let rps = n / out.elapsed.as_secs_f64();
                    let cpu_per_k = if pids.is_empty() { f64::NAN } else { (cpu1 - cpu0) * 1000.0 / n * 1000.0 };
                    if *name == "direct" {
                        direct_p = (p50, p99);
                    }
                    let (add50, add99) = if *name == "direct" { (0.0, 0.0) } else { (p50 - direct_p.0, p99 - direct_p.1) };
                    println!("{:<15} {:>4} {:<7} {:>9.0} {:>9.0} {:>10.0} {:>10.0} {:>9.0} {:>12.1} {:>7}", case.name(), conc, name, p50, p99, add50, add99, rps, cpu_per_k, out.errors);
                    rows.push(format!(
                        r#"{{"case":"{}","concurrency":{conc},"target":"{name}","p50_us":{p50:.1},"p99_us":{p99:.1},"added_p50_us":{add50:.1},"added_p99_us":{add99:.1},"rps":{rps:.1},"cpu_ms_per_1k":{cpu_per_k:.2},"errors":{}}}"#,
                        case.name(),
                        out.errors
                    ));
                    if *name == "nginx" {
                        nginx_stats = Some((rps, cpu_per_k));
                    }
                    if *name == "bazaar" && case == Case::Chat && conc == 1 {
                        verdicts.push(format!("added p50 at c=1 {add50:.0} µs (budget 100): {}", if add50 <= 100.0 { "within" } else { "OVER" }));
                        verdicts.push(format!("added p99 at c=1 {add99:.0} µs (budget 500): {}", if add99 <= 500.0 { "within" } else { "OVER" }));
                    }
                    if *name == "bazaar" && case == Case::Chat && conc == 16 {
                        if let Some((nrps, ncpu)) = nginx_stats {
                            verdicts.push(format!("CPU/call at c=16 {:.2}x nginx (budget 2x): {}", cpu_per_k / ncpu, if cpu_per_k <= 2.0 * ncpu { "within" } else { "OVER" }));
                            verdicts.push(format!("req/s at c=16 {:.2}x nginx (budget >= 0.5x): {}", rps / nrps, if rps >= 0.5 * nrps { "within" } else { "OVER" }));
                        }
                    }
                }
            }
        }
        let peak = status_kb(gw_pid, "VmHWM");
        verdicts.push(format!("idle RSS {:.1} MB (budget 30 MB): {}", idle_rss as f64 / 1024.0, if idle_rss <= 30 * 1024 { "within" } else { "OVER" }));
        verdicts.push(format!("peak RSS under load {:.1} MB", peak as f64 / 1024.0));
        println!();
        for v in &verdicts {
            println!("  {v}");
        }
        let json = format!("{{\"rows\":[{}],\"idle_rss_kb\":{idle_rss},\"peak_rss_kb\":{peak}}}\n", rows.join(","));
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench-load.json");
        let _ = std::fs::write(&out, json);
    });
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
}
