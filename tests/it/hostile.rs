//! A batch of hostile inputs at every endpoint: each gets a clean 4xx, the process stays healthy.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

#[tokio::test]
async fn hostile_inputs_get_clean_4xx() {
    let mock = MockUpstream::start().await;
    let toml = single_provider_config(&mock).replace(
        "drain_timeout = \"5s\"",
        "drain_timeout = \"5s\"\nmax_body_bytes = 1048576",
    );
    let gw = TestGateway::start(&toml).await;
    let deep = format!(
        "{{\"model\":\"gpt-4o-mini\",\"messages\":{}{}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let huge_string = format!("{{\"model\":\"{}\",\"messages\":[]}}", "m".repeat(900_000));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "application/json",
            b"{\"model\": \"gpt-4o-mini\", \"messages\": [".to_vec(),
        ),
        ("application/json", deep.into_bytes()),
        ("application/json", huge_string.into_bytes()),
        ("application/json", vec![0xff, 0xfe, 0xfd, b'{', b'}']),
        ("application/json", b"null".to_vec()),
        ("application/json", b"[]".to_vec()),
        (
            "application/json",
            b"{\"model\":{\"$gt\":\"\"},\"messages\":[]}".to_vec(),
        ),
        ("application/json", "x".repeat(2_000_000).into_bytes()),
        ("text/plain", b"{\"model\":\"gpt-4o-mini\"}".to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"model=gpt-4o-mini".to_vec(),
        ),
        (
            "application/json",
            b"{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":{\"a\":1}}]}"
                .to_vec(),
        ),
        (
            "application/json",
            b"{\"model\":\"gpt-4o-mini\",\"input\":[[[[1]]]],\"prompt\":{}}".to_vec(),
        ),
    ];
    for path in ["/v1/chat/completions", "/v1/embeddings", "/v1/completions"] {
        for (ct, body) in &bodies {
            let resp = gw
                .client
                .post(gw.url(path))
                .bearer_auth(KEY)
                .header("content-type", *ct)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                (400..500).contains(&status),
                "{path} {ct} {}: {status}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            let v: serde_json::Value = resp
                .json()
                .await
                .unwrap_or_else(|e| panic!("{path}: not JSON: {e}"));
            assert!(v["error"]["message"].is_string());
        }
    }
    // A giant header: hyper refuses it; the process must stay up.
    let giant = "a".repeat(200_000);
    let _ = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("x-giant", giant)
        .bearer_auth(KEY)
        .send()
        .await;
    // A giant Authorization header is just a wrong key.
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("k".repeat(8000))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        mock.received().is_empty(),
        "nothing hostile may reach the upstream"
    );
    assert_eq!(
        gw.client
            .get(gw.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A config whose server reads heads and bodies with short timeouts.
fn impatient_config(mock: &MockUpstream) -> String {
    single_provider_config(mock).replace(
        "drain_timeout = \"5s\"",
        "drain_timeout = \"5s\"\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"",
    )
}

/// Writes `head` on a fresh connection and reads whatever comes back until the server
/// closes it or `within` passes; returns what was read and whether it closed in time.
async fn exchange(addr: std::net::SocketAddr, head: &[u8], within: Duration) -> (String, bool) {
    let tcp = stall(addr, head).await;
    until_closed(tcp, within).await
}

/// A connection that sent `head` and nothing more.
async fn stall(addr: std::net::SocketAddr, head: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head).await.unwrap();
    tcp
}

/// `n` connections, half of them stalled in the middle of a request head and half
/// silent, each watched until the server closes it (or 10 s pass).
async fn stall_many(
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<tokio::task::JoinHandle<(String, bool)>> {
    let mut stalled = Vec::new();
    for i in 0..n {
        let head: &[u8] = if i % 2 == 0 {
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        } else {
            b""
        };
        let tcp = stall(addr, head).await;
        stalled.push(tokio::spawn(until_closed(tcp, Duration::from_secs(10))));
    }
    stalled
}

/// Reads until the server closes `tcp` or `within` passes: what was read, and whether
/// it closed in time.
async fn until_closed(mut tcp: TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// Issue 13, item 3: an unauthenticated request is answered from its headers; its body
/// (here declared as 8 MB and never sent) is not waited for.
#[tokio::test]
async fn issue_13_unauthenticated_bodies_are_refused_before_they_are_read() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    for (path, shape) in [
        ("/v1/chat/completions", "invalid_api_key"),
        ("/v1/embeddings", "invalid_api_key"),
        ("/v1/messages", "authentication_error"),
        ("/admin/keys", "invalid_api_key"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8388608\r\n\r\n{{\"model\":"
        );
        let (reply, _) = exchange(gw.addr, head.as_bytes(), Duration::from_secs(3)).await;
        assert!(reply.starts_with("HTTP/1.1 401"), "{path}: {reply}");
        assert!(reply.contains(shape), "{path}: {reply}");
    }
    // With a key, the body is read, and one that never arrives gets a 400 in time.
    let gw = TestGateway::start(&impatient_config(&mock)).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\":"
    );
    let (reply, _) = exchange(gw.addr, head.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("body_read_timeout"), "{reply}");
    assert!(mock.received().is_empty());
}

/// Issue 13, item 9: an oversized request head gets a 431. Up to the head buffer
/// (`MAX_HEAD_BUFFER`, 256 KiB) it reaches our check, which answers in OpenAI's shape;
/// a head that fills the buffer never reaches our code, and hyper answers a bare 431 and
/// closes the connection. Over HTTP/2 the same bound is the header list size.
#[tokio::test]
async fn issue_13_oversized_heads_get_a_431() {
    use bazaar::server::limits::MAX_HEAD_BUFFER;
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let start = format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n");
    // A field whose head is `total` bytes in all (with its blank line when `ended`).
    let padded = |total: usize, ended: bool| {
        let end = if ended { "\r\n\r\n" } else { "" };
        let room = total - start.len() - "x-big: ".len() - end.len();
        format!("{start}x-big: {}{end}", "a".repeat(room))
    };
    let many_fields = format!(
        "{start}{}\r\n",
        (0..150)
            .map(|i| format!("x-f{i}: v\r\n"))
            .collect::<String>()
    );
    for head in [
        padded(100 * 1024, true),
        padded(MAX_HEAD_BUFFER - 1024, true),
        many_fields,
    ] {
        let (reply, closed) = exchange(gw.addr, head.as_bytes(), Duration::from_secs(5)).await;
        assert!(closed);
        assert!(
            reply.starts_with("HTTP/1.1 431"),
            "{}",
            &reply[..reply.len().min(200)]
        );
        assert!(reply.contains("application/json"), "{reply}");
        assert!(
            reply.contains("\"code\":\"request_header_fields_too_large\""),
            "{reply}"
        );
    }
    // Exactly a full buffer of head with no end: hyper's own 431, without a body. (Every
    // byte sent is read, so the close is clean and the reply arrives whole.)
    let (reply, closed) = exchange(
        gw.addr,
        padded(MAX_HEAD_BUFFER, false).as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(closed);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert!(!reply.contains("error"), "{reply}");

    // HTTP/2 (prior knowledge): our 431 below the bound; above it, no call is served.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let get = |bytes: usize| {
        h2.get(gw.url("/v1/models"))
            .bearer_auth(KEY)
            .header("x-big", "a".repeat(bytes))
            .send()
    };
    let resp = get(100 * 1024).await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let e = expect_error(resp, 431).await;
    assert_eq!(e["code"], "request_header_fields_too_large");
    if let Ok(resp) = get(MAX_HEAD_BUFFER + 1024).await {
        assert_eq!(resp.status(), 431);
    }
    let healthz = gw.client.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
}

/// Issue 13, item 3: request heads that never finish are closed after
/// `header_read_timeout`, and `/healthz` answers quickly while they are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_stalled_heads_are_closed_and_healthz_stays_fast() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&impatient_config(&mock)).await;
    let quiet = quiet_healthz(&gw.url("/healthz")).await;
    let stalled = stall_many(gw.addr, 300).await;
    let slowest = healthz_while(&gw.url("/healthz"), || {
        stalled.iter().any(|t| !t.is_finished())
    })
    .await;
    for t in stalled {
        let (reply, closed) = t.await.unwrap();
        assert!(closed, "a stalled connection stayed open");
        assert!(!reply.contains("200 OK"), "{reply}");
    }
    eprintln!("300 stalled heads: /healthz {slowest:?}, quiet {quiet:?}");
    slowest.assert_fast(&quiet);
}

/// Issue 13: a kept-alive connection left idle after its answer is closed once
/// `header_read_timeout` passes without the next request head: the wait for the next
/// head is the idle time, so an idle connection is held no longer than a stalled one.
#[tokio::test]
async fn issue_13_an_idle_kept_alive_connection_is_closed() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&impatient_config(&mock)).await;
    let (reply, closed) = exchange(
        gw.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(!reply.contains("connection: close"), "kept alive: {reply}");
    assert!(closed, "an idle kept-alive connection stayed open");
}

/// Issue 13: HTTP/2 has no header-read timeout of its own, so a peer that sends the
/// preface and nothing more would hold its connection for ever. One with no new request
/// for `header_read_timeout` is sent GOAWAY and closed; a call in flight when that
/// happens is answered in full first.
#[tokio::test]
async fn issue_13_an_idle_http2_connection_is_closed_but_its_calls_finish() {
    let mock = MockUpstream::start().await;
    let toml = impatient_config(&mock).replace("first_byte = \"2s\"", "first_byte = \"10s\"");
    let gw = TestGateway::start(&toml).await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    let (_, closed) = exchange(gw.addr, preface, Duration::from_secs(5)).await;
    assert!(closed, "an idle HTTP/2 connection stayed open");

    // Slower than two idle periods: the connection is told to go away while it runs.
    mock.script([Step::Delay(Duration::from_secs(3))]);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["choices"].is_array(), "{body}");
}

/// How quickly `/healthz` answered while something ran.
#[derive(Debug)]
struct Latency {
    median: Duration,
    slowest: Duration,
}

impl Latency {
    /// The check every attack test makes. The issue's bar is 100 ms: the median under
    /// attack must meet it, or, on a machine so loaded that a probe with no attack at all
    /// (`quiet`, measured first in the same test) is already slower, stay within 3x of
    /// that. A single answer may be slower, but never 5 s: the defect was 24 s, or no
    /// answer at all.
    fn assert_fast(&self, quiet: &Latency) {
        let bar = Duration::from_millis(100).max(quiet.median * 3);
        assert!(
            self.median < bar && self.slowest < Duration::from_secs(5),
            "/healthz: {self:?} (quiet: {quiet:?})"
        );
    }
}

/// Five probes of `url` before any attack: what this machine manages right now.
async fn quiet_healthz(url: &str) -> Latency {
    let mut probes = 0;
    healthz_while(url, || {
        probes += 1;
        probes < 5
    })
    .await
}

/// Polls `url` until `busy` turns false (at least once); each answer must be 200.
async fn healthz_while(url: &str, mut busy: impl FnMut() -> bool) -> Latency {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut took = Vec::new();
    while busy() || took.is_empty() {
        let started = std::time::SystemTime::now();
        let status = client.get(url).send().await.unwrap().status();
        assert_eq!(status, 200);
        took.push(started.elapsed().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took.sort();
    Latency {
        median: took[took.len() / 2],
        slowest: took[took.len() - 1],
    }
}

/// Issue 13, item 2: a reply without usage whose text is a million repeated characters
/// is counted without stalling or crashing the gateway, and billed, flagged estimated.
#[tokio::test]
async fn issue_13_a_megabyte_reply_without_usage_is_billed_as_estimated() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let text = "a".repeat(1_000_000);
    let reply = serde_json::json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]
    });
    mock.script([Step::Status(200, reply.to_string())]);
    let started = std::time::SystemTime::now();
    let resp = gw
        .post(
            "/v1/chat/completions",
            serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .map(str::len),
        Some(1_000_000)
    );
    // Seconds in a debug build on a busy machine; a stack overflow or minutes before.
    assert!(started.elapsed().unwrap() < Duration::from_secs(30));
    let rows = crate::billing::wait_rows(&gw, 1).await;
    assert_eq!(rows, 1);
    let ledger = &gw.state.billing.connected().unwrap().ledger;
    let everything = bazaar::billing::ledger::Filter {
        from_ms: 0,
        to_ms: i64::MAX,
        ..Default::default()
    };
    let row = ledger
        .calls(&everything, 10, None)
        .await
        .unwrap()
        .remove(0)
        .1;
    assert_eq!((row.status, row.estimated.any()), (200, true), "{row:?}");
    // ~8 characters a token over a run of one letter; far more than the prompt.
    assert!((60_000..=400_000).contains(&row.output_tokens), "{row:?}");
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The real `bazaar serve` on `toml`, with the address it reports listening on.
struct Served {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    /// Its SQLite ledger's URL.
    ledger: String,
    /// Its config and ledger, removed when it is dropped.
    dir: std::path::PathBuf,
}

impl Served {
    fn start(toml: &str, tag: &str) -> Served {
        Served::start_with(toml, tag, &[])
    }

    /// `start`, with these environment variables set for the process.
    fn start_with(toml: &str, tag: &str, env: &[(&str, &str)]) -> Served {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!("bazaar-hostile-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bazaar.toml");
        let ledger = format!("sqlite://{}", dir.join("ledger.sqlite").display());
        let toml = format!("{toml}\n[ledger]\nurl = \"{ledger}\"\n");
        std::fs::write(&path, toml).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0"])
            .env("BAZAAR_LOG", "warn,bazaar=info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("bazaar exited before listening")
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "Listening." {
                break v["listen"].as_str().unwrap().parse().unwrap();
            }
        };
        // Keep draining its logs so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Served {
            child,
            addr,
            ledger,
            dir,
        }
    }

    /// Stops it as SIGTERM does (the ledger is flushed) and waits for it to exit.
    fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends a request head declaring an 8 MB body without a key, then as much of the body
/// as the server takes before it answers and closes.
async fn unauthenticated_upload(addr: std::net::SocketAddr, body: bytes::Bytes) -> String {
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut tcp = stall(addr, head.as_bytes()).await;
    let _ = tcp.write_all(&body).await;
    until_closed(tcp, Duration::from_secs(10)).await.0
}

/// Issue 13, item 3, against the release shape of the gateway (its own process): 300
/// stalled heads and 200 unauthenticated 8 MB uploads at once. `/healthz` keeps answering
/// fast (`Latency::assert_fast`), and the process's memory is back within 2x of idle afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_slow_and_unauthenticated_clients_hold_no_memory() {
    let mock = MockUpstream::start().await;
    let served = Served::start(&impatient_config(&mock), "burst");
    let pid = served.child.id();
    let healthz = format!("http://{}/healthz", served.addr);
    let quiet = quiet_healthz(&healthz).await;
    eprintln!("quiet /healthz: {quiet:?}");
    let idle = rss_kib(pid);

    // The attackers run on their own threads, so the /healthz probe here is not
    // starved by them.
    let addr = served.addr;
    let attack = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let stalled = stall_many(addr, 300).await;
            let body = bytes::Bytes::from(vec![b' '; 8 * 1024 * 1024]);
            let uploads: Vec<_> = (0..200)
                .map(|_| tokio::spawn(unauthenticated_upload(addr, body.clone())))
                .collect();
            for t in uploads {
                let reply = t.await.unwrap();
                assert!(
                    reply.is_empty() || reply.starts_with("HTTP/1.1 401"),
                    "{reply}"
                );
            }
            for t in stalled {
                assert!(t.await.unwrap().1, "a stalled connection stayed open");
            }
        })
    });
    let mut peak = 0;
    let slowest = healthz_while(&healthz, || {
        peak = peak.max(rss_kib(pid));
        !attack.is_finished()
    })
    .await;
    attack.join().unwrap();
    let after = rss_kib(pid);
    eprintln!("RSS idle {idle} KiB, peak {peak} KiB, after {after} KiB; /healthz {slowest:?}");
    slowest.assert_fast(&quiet);
    assert!(
        after <= 2 * idle,
        "RSS {after} KiB after the burst, {idle} KiB idle"
    );
}

/// Issue 13, item 4: an upstream that quotes the key it was sent (and other key-shaped
/// strings) in an error body of any status, or in a stream's error event, never gets
/// it to the client or into the logs. The gateway is the real binary logging at DEBUG,
/// so every line it writes, from any thread, is searched.
#[tokio::test]
async fn issue_13_an_upstream_echoing_its_key_never_shows_it() {
    let secret = "hunter2-Correct-Horse";
    let foreign = "sk-proj-ABCdef0123456789ABCdef0123456789";
    let echo = format!(
        "Incorrect API key provided: {secret}. Also {foreign}; Authorization: Bearer {secret}"
    );
    let chat = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let dir = std::env::temp_dir().join(format!("bazaar-it-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let client = reqwest::Client::new();
    // A fresh gateway per case (a failing backend is held back after a few failures),
    // each sending `body` once to a mock scripted with `step`.
    let run = |step: Step, body: serde_json::Value| {
        let (dir, client) = (dir.clone(), client.clone());
        async move {
            let mock = MockUpstream::start().await;
            let config = dir.join("bazaar.toml");
            std::fs::write(
                &config,
                single_provider_config(&mock).replace("sk-upstream-secret-123", secret),
            )
            .unwrap();
            mock.script([step]);
            let gw = ServeProcess::start_logging(&config, "debug");
            let resp = client
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            let (status, text) = (resp.status().as_u16(), resp.text().await.unwrap());
            let logged = gw.stop().join("\n");
            let received = mock.received();
            assert_eq!(received.len(), 1, "{text}");
            // The key really was sent, so the upstream could echo it.
            assert_eq!(
                received[0].headers["authorization"],
                format!("Bearer {secret}").as_str()
            );
            (status, text, logged)
        }
    };
    let mut seen = Vec::new();
    for status in [
        400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504,
    ] {
        let body = serde_json::json!({"error": {"message": echo, "type": secret, "code": secret, "param": foreign}});
        let (got, text, logged) = run(Step::Status(status, body.to_string()), chat.clone()).await;
        assert!(got >= 400, "{status}: {got}");
        assert!(
            logged.contains("Upstream attempt failed"),
            "{status}: {logged}"
        );
        seen.extend([text, logged]);
    }
    // An error event after the stream started.
    let event = serde_json::json!({"error": {"message": echo}});
    let first = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": null}]});
    let mut streamed = chat.clone();
    streamed["stream"] = true.into();
    let step = Step::Raw {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: format!("data: {first}\n\ndata: {event}\n\n"),
    };
    let (_, text, logged) = run(step, streamed).await;
    seen.extend([text, logged]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(seen.iter().any(|t| t.contains("[redacted]")), "{seen:?}");
    for text in &seen {
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(foreign), "{text}");
    }
}

/// Creates virtual key `name` through the admin API: its id and the key itself.
async fn create_key(gw: &TestGateway, name: &str) -> (String, String) {
    let created = gw
        .post_as(MASTER, "/admin/keys", serde_json::json!({"name": name}))
        .await;
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    )
}

/// Revokes virtual key `id` through the admin API.
pub async fn revoke_key(gw: &TestGateway, id: &str) {
    let revoked = gw
        .client
        .delete(gw.url(&format!("/admin/keys/{id}")))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
}

/// Issue 13, item 9: a key's spend is scoped by its id, so a new key reusing a revoked
/// key's name sees none of that key's calls (in its totals, its calls or its export),
/// while the admin still sees both keys' calls under the name.
#[tokio::test]
async fn issue_13_a_key_reusing_a_revoked_name_sees_none_of_its_spend() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let chat = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let (old_id, old_key) = create_key(&gw, "a").await;
    for _ in 0..2 {
        assert_eq!(
            gw.post_as(&old_key, "/v1/chat/completions", chat.clone())
                .await
                .status(),
            200
        );
    }
    crate::billing::wait_rows(&gw, 2).await;
    let own = gw.get_json("/v1/spend/calls", &old_key).await;
    assert_eq!(own["calls"].as_array().unwrap().len(), 2, "{own}");
    assert_eq!(own["calls"][0]["key_id"], old_id.as_str());

    revoke_key(&gw, &old_id).await;
    let (new_id, new_key) = create_key(&gw, "a").await;
    assert_ne!(new_id, old_id);
    let calls = gw.get_json("/v1/spend/calls", &new_key).await;
    assert_eq!(calls["calls"], serde_json::json!([]), "{calls}");
    let spend = gw.get_json("/v1/spend?group_by=key", &new_key).await;
    assert_eq!(spend["totals"]["requests"], 0, "{spend}");
    // Asking for the name explicitly changes nothing.
    let named = gw.get_json("/v1/spend?key=a", &new_key).await;
    assert_eq!(named["totals"]["requests"], 0, "{named}");
    let csv = gw.get_text("/v1/spend/export", &new_key).await;
    assert_eq!(csv.lines().count(), 1, "the header only: {csv}");

    assert_eq!(
        gw.post_as(&new_key, "/v1/chat/completions", chat)
            .await
            .status(),
        200
    );
    crate::billing::wait_rows(&gw, 3).await;
    let calls = gw.get_json("/v1/spend/calls", &new_key).await;
    assert_eq!(calls["calls"].as_array().unwrap().len(), 1, "{calls}");
    assert_eq!(calls["calls"][0]["key_id"], new_id.as_str());
    let spend = gw.get_json("/v1/spend", &new_key).await;
    assert_eq!(spend["totals"]["requests"], 1, "{spend}");
    // The admin sees every call made under the name.
    let all = gw.get_json("/v1/spend?group_by=key&key=a", MASTER).await;
    assert_eq!(all["totals"]["requests"], 3, "{all}");
}

/// Issue 13: stored responses and feedback belong to the key's id. A key that takes a
/// revoked key's name cannot read, list, continue or delete the old key's stored
/// response, nor score its call: each is a 404, as for any other key's.
#[tokio::test]
async fn issue_13_a_key_reusing_a_name_owns_none_of_its_responses_or_calls() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    async fn ask(gw: &TestGateway, key: &str, extra: serde_json::Value) -> reqwest::Response {
        let mut body = serde_json::json!({"model": "gpt-4o-mini", "input": "hi", "store": true});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        gw.post_as(key, "/v1/responses", body).await
    }
    async fn score(gw: &TestGateway, key: &str, request_id: &str) -> reqwest::Response {
        let body = serde_json::json!({"request_id": request_id, "score": 1});
        gw.post_as(key, "/v1/feedback", body).await
    }
    let read = |key: &str, path: String| gw.client.get(gw.url(&path)).bearer_auth(key).send();
    let (old_id, old_key) = create_key(&gw, "a").await;
    let stored = ask(&gw, &old_key, serde_json::json!({})).await;
    assert_eq!(stored.status(), 200);
    let request_id = stored.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let stored: serde_json::Value = stored.json().await.unwrap();
    let id = stored["id"].as_str().unwrap().to_string();
    let path = format!("/v1/responses/{id}");
    // Its own key reads it and scores the call (so the refusals below can fail).
    assert_eq!(read(&old_key, path.clone()).await.unwrap().status(), 200);
    assert_eq!(score(&gw, &old_key, &request_id).await.status(), 200);

    revoke_key(&gw, &old_id).await;
    let (_, new_key) = create_key(&gw, "a").await;
    expect_error(read(&new_key, path.clone()).await.unwrap(), 404).await;
    expect_error(
        read(&new_key, format!("{path}/input_items")).await.unwrap(),
        404,
    )
    .await;
    let e = expect_error(
        ask(
            &gw,
            &new_key,
            serde_json::json!({"previous_response_id": id}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(e["param"], "previous_response_id");
    let deleted = gw
        .client
        .delete(gw.url(&path))
        .bearer_auth(&new_key)
        .send()
        .await
        .unwrap();
    expect_error(deleted, 404).await;
    // Scored from memory and, once the call's row is written, from the ledger: neither.
    expect_error(score(&gw, &new_key, &request_id).await, 404).await;
    // Rows: the old key's call and the new key's refused continuation.
    crate::billing::wait_rows(&gw, 2).await;
    expect_error(score(&gw, &new_key, &request_id).await, 404).await;
    // The response is still there for nobody else: the master key has no claim either.
    expect_error(read(MASTER, path).await.unwrap(), 404).await;
}

/// The fields of each record of `csv` (RFC 4180: quoted fields may hold commas, doubled
/// quotes and line breaks); panics on a malformed one.
fn csv_records(csv: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let mut chars = csv.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => {
                quoted = false;
                assert!(
                    matches!(chars.peek(), Some(',' | '\n') | None),
                    "text after a closing quote"
                );
            }
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "the CSV ends mid-record"
    );
    records
}

/// Issue 13, item 6: the CSV export is streamed page by page (no `Content-Length`: the
/// body is not built before it is sent) and is complete and well formed across pages:
/// the header once, every row once, newest first, even where many rows share a
/// timestamp across a page boundary and fields hold commas, quotes and line breaks.
#[tokio::test]
async fn issue_13_the_spend_export_streams_every_row_once() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let n = 12_345;
    let rows: Vec<bazaar::billing::ledger::LedgerRow> = (0..n)
        .map(|i| bazaar::billing::ledger::LedgerRow {
            // Seven rows per millisecond, so pages end inside a run of equal timestamps.
            ts_ms: 1_790_000_000_000 + (i / 7) * 1000,
            request_id: if i % 100 == 3 {
                format!("r{i}, \"quoted\"\nsecond line").into()
            } else {
                format!("r{i}").into()
            },
            key_name: "other".into(),
            key_id: "config:other".into(),
            team: Some("web".into()),
            route: "auto".into(),
            provider: "mock".into(),
            model: "gpt-4o-mini".into(),
            tier: "frontier".into(),
            endpoint: "chat".into(),
            cost_nanos: Some(i),
            status: 200,
            ..Default::default()
        })
        .collect();
    let ledger = &gw.state.billing.connected().unwrap().ledger;
    ledger.insert(&rows).await.unwrap();

    let export = "/v1/spend/export?from=0&to=4102444800";
    let resp = gw
        .client
        .get(gw.url(export))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.content_length(),
        None,
        "a streamed body has no length up front"
    );
    let records = csv_records(&resp.text().await.unwrap());
    let header = &records[0];
    assert_eq!(header[0], "id");
    assert!(
        records.iter().all(|r| r.len() == header.len()),
        "a record with the wrong field count"
    );
    assert_eq!(
        records.iter().filter(|r| r[0] == "id").count(),
        1,
        "the header once"
    );
    let ids: Vec<&str> = records[1..].iter().map(|r| r[2].as_str()).collect();
    let expected: Vec<String> = rows
        .iter()
        .rev()
        .map(|r| r.request_id.to_string())
        .collect();
    // Every row once, newest first (ties in the order they were written, newest first).
    assert_eq!(ids, expected);

    // `limit` stops it part-way, on a page boundary or not.
    for limit in [1, 1000, 2500] {
        let limited = gw
            .get_text(&format!("{export}&limit={limit}"), MASTER)
            .await;
        let records = csv_records(&limited);
        assert_eq!(records.len(), limit + 1);
        assert_eq!(records[limit][2], expected[limit - 1]);
    }
    // Another key's export holds only its own rows: none of these.
    let own = gw.get_text(export, KEY).await;
    assert_eq!(csv_records(&own).len(), 1, "{own}");
}

/// Issue 13, item 2, against the gateway's own process given a single async worker (so
/// any tokenizing on it would hold up every other request): a reply without usage of a
/// million repeated characters is counted off the worker (the tokenizer is loaded for
/// it, in this fresh process), `/healthz` answers fast meanwhile
/// (`Latency::assert_fast`), and the call's ledger row is written, flagged estimated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_counting_a_megabyte_reply_leaves_the_workers_free() {
    let mock = MockUpstream::start().await;
    let text = "a".repeat(1_000_000);
    let reply = serde_json::json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]
    });
    mock.script([Step::Status(200, reply.to_string())]);
    let mut served = Served::start_with(
        &single_provider_config(&mock),
        "count",
        &[("BAZAAR_WORKER_THREADS", "1")],
    );
    let healthz = format!("http://{}/healthz", served.addr);
    let quiet = quiet_healthz(&healthz).await;
    let url = format!("http://{}/v1/chat/completions", served.addr);
    let call = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(url)
            .bearer_auth(KEY)
            .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        (status, body)
    });
    let during = healthz_while(&healthz, || !call.is_finished()).await;
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["usage"]["estimated"], true, "{}", body["usage"]);
    eprintln!("1M-character reply without usage: /healthz {during:?}, quiet {quiet:?}");
    during.assert_fast(&quiet);

    served.stop();
    let ledger = bazaar::billing::ledger::Ledger::connect(&served.ledger)
        .await
        .unwrap();
    let everything = bazaar::billing::ledger::Filter {
        to_ms: i64::MAX,
        ..Default::default()
    };
    let rows = ledger.calls(&everything, 10, None).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0].1;
    assert_eq!((row.status, row.estimated.any()), (200, true), "{row:?}");
    // ~8 characters a token over a run of one letter; far more than the prompt.
    assert!((60_000..=400_000).contains(&row.output_tokens), "{row:?}");
    ledger.close().await;
}
