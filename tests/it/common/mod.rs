//! Shared test harness: `TestGateway` runs the real server through `bazaar::serve` on
//! 127.0.0.1:0; `MockUpstream` plays the providers.

pub mod mock;
pub mod process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bazaar::config::Config;
use bazaar::{AppState, Runtime};
pub use mock::{fixture_text, MockUpstream, Received, Step};
pub use process::ServeProcess;

/// The gateway key every test config declares.
pub const KEY: &str = "bzr-test-key";
/// The master key every test config declares.
pub const MASTER: &str = "bzr-test-master";

/// A running gateway; shuts down when dropped.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub client: reqwest::Client,
    /// The temporary directory of its ledger's relative paths (`restart` reuses it).
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A wall clock that moves only when the test says: the ledger stamps rows by it and
/// stored responses expire by it. It starts at the system's time.
#[derive(Clone)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    pub fn new() -> TestClock {
        TestClock(Arc::new(
            AtomicI64::new((bazaar::billing::system_clock())()),
        ))
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap();
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// The clock to hand the gateway.
    pub fn clock(&self) -> bazaar::billing::Clock {
        let now = self.0.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    }
}

/// Resolves a test config (no environment).
fn parse(toml: &str) -> Config {
    let env = |_: &str| None;
    Config::from_toml(toml, &env).unwrap_or_else(|e| panic!("{e}"))
}

/// A config with one OpenAI-compatible provider `mock` serving `gpt-4o-mini` and `text-embedding-3-small`.
pub fn single_provider_config(mock: &MockUpstream) -> String {
    format!(
        r#"
        [server]
        master_key = "{MASTER}"
        drain_timeout = "5s"

        [providers.mock]
        base_url = "{}"
        api_key = "sk-upstream-secret-123"
        tier = "frontier"
        models = ["gpt-4o-mini", "text-embedding-3-small", "gpt-3.5-turbo-instruct"]
        [providers.mock.timeouts]
        first_byte = "2s"
        idle = "1s"
        total = "10s"

        [[keys]]
        name = "app"
        key = "{KEY}"
        team = "web"
        "#,
        mock.base_url()
    )
}

/// A gateway whose model `m` is served as `up-model` by one provider `up` at `base_url`,
/// declared with `provider_line` (its `kind = …` or `preset = …`), with generous
/// timeouts, a breaker that never opens, the test key and `extra` TOML.
pub async fn one_backend(provider_line: &str, base_url: &str, extra: &str) -> TestGateway {
    let timeouts = "first_byte = \"2s\"\nidle = \"1s\"\ntotal = \"10s\"";
    one_backend_timed(provider_line, base_url, timeouts, extra).await
}

/// `one_backend` with the provider's `timeouts` table given (TOML lines).
pub async fn one_backend_timed(
    provider_line: &str,
    base_url: &str,
    timeouts: &str,
    extra: &str,
) -> TestGateway {
    let toml = format!(
        r#"
        [router.breaker]
        threshold = 1000
        [providers.up]
        {provider_line}
        base_url = "{base_url}"
        api_key = "sk-upstream"
        tier = "frontier"
        catalog = false
        [providers.up.timeouts]
        {timeouts}
        [[models]]
        id = "m"
        provider = "up"
        upstream = "up-model"
        [[keys]]
        name = "app"
        key = "{KEY}"
        {extra}
        "#
    );
    TestGateway::start(&toml).await
}

impl TestGateway {
    /// Starts a gateway on `toml`.
    pub async fn start(toml: &str) -> TestGateway {
        TestGateway::start_config(parse(toml)).await
    }

    /// Starts a gateway on a resolved config, with its ledger in a fresh temporary SQLite file.
    pub async fn start_config(config: Config) -> TestGateway {
        TestGateway::launch(config, None, bazaar::billing::system_clock()).await
    }

    /// Starts a gateway on `toml` whose ledger and stored responses tell the time by
    /// `clock` (so a test moves time past a TTL instead of waiting for it).
    pub async fn start_with_clock(toml: &str, clock: &TestClock) -> TestGateway {
        TestGateway::launch(parse(toml), None, clock.clock()).await
    }

    /// Starts a gateway on `toml` with the ledger paths of an earlier one (`dir`, its
    /// `dir`): a restart, which finds what that one flushed or spilled when it shut down;
    /// it tells the time by `clock`.
    pub async fn restart(toml: &str, dir: &std::path::Path, clock: &TestClock) -> TestGateway {
        TestGateway::launch(parse(toml), Some(dir.to_path_buf()), clock.clock()).await
    }

    /// Starts a gateway on `config` with `clock`; the relative paths of its ledger (the
    /// default SQLite file, the spill file) are put in `dir` (a fresh temporary directory
    /// when `None`), never in the working directory, which every test shares.
    async fn launch(
        mut config: Config,
        dir: Option<PathBuf>,
        clock: bazaar::billing::Clock,
    ) -> TestGateway {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_dead_test_dirs);
        let dir = dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "bazaar-it-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ))
        });
        std::fs::create_dir_all(&dir).unwrap();
        config.rebase_paths(&dir);
        // The gateway closes a kept-alive connection idle for `header_read_timeout`; a
        // client keeping idle connections longer may reuse one just as it is closed, and
        // the request fails (`IncompleteMessage`). So the test client, like the SDKs
        // (httpx keeps them 5 s), lets go of them well before.
        let client = reqwest::Client::builder()
            .pool_idle_timeout(config.server.header_read_timeout / 2)
            .build()
            .unwrap();
        let state = AppState::new(Runtime::build(config).unwrap());
        bazaar::start_billing(&state, clock).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(bazaar::serve(state.clone(), listener, async move {
            let _ = stopped.await;
        }));
        TestGateway {
            addr,
            state,
            client,
            dir,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// Watches the config file at `path` as the binary does (every 20 ms, no SIGHUP),
    /// reloading this gateway; the receiver gets whether each reload was applied.
    pub fn watch_config(
        &self,
        path: &std::path::Path,
    ) -> tokio::sync::mpsc::UnboundedReceiver<bool> {
        let (_no_hup, hup_rx) = tokio::sync::mpsc::channel(1);
        let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
        let state = self.state.clone();
        tokio::spawn(bazaar::config::reload::watch(
            path.to_path_buf(),
            |_| None,
            std::time::Duration::from_millis(20),
            hup_rx,
            self.state.shutdown.clone(),
            move |loaded| {
                let _ = done_tx.send(state.reload(loaded));
                std::future::ready(())
            },
        ));
        done_rx
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs JSON with the test key.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.post_as(KEY, path, body).await
    }

    /// POSTs JSON with `key`.
    pub async fn post_as(
        &self,
        key: &str,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// GETs `path` with `key` and reads the JSON body.
    pub async fn get_json(&self, path: &str, key: &str) -> serde_json::Value {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GETs `path` with `key` and reads the body as text.
    pub async fn get_text(&self, path: &str, key: &str) -> String {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sends SIGTERM's equivalent and waits for the drain to finish.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.take() {
            Some(done) => done.await.unwrap(),
            None => Ok(()),
        }
    }
}

/// Removes the temporary directories `TestGateway::launch` made in earlier runs whose
/// test process has ended (`bazaar-it-PID-N` with no `/proc/PID`). A directory cannot be
/// removed when its gateway stops, because a test may restart a gateway on it; a live
/// process's directories, this run's or a concurrent run's, are left alone.
fn sweep_dead_test_dirs() {
    if !std::path::Path::new("/proc/self").exists() {
        return; // no way to tell a live process from an ended one
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("bazaar-it-")) else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('-') else {
            continue;
        };
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if numeric(pid) && numeric(n) && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Reads an SSE body into its `data:` payloads (including `[DONE]`).
pub async fn sse_events(response: reqwest::Response) -> Vec<String> {
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// Asserts an OpenAI-shaped error body with `status`, returning the `error` object.
pub async fn expect_error(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert!(
        response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().starts_with("application/json"))
            .unwrap_or(false),
        "error content-type"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error object in {body}"))
        .clone();
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(
        error.get("code").is_some() && error.get("param").is_some(),
        "{body}"
    );
    error
}

/// The URL of an external test service (`BAZAAR_TEST_POSTGRES_URL`, `BAZAAR_TEST_REDIS_URL`,
/// set by `scripts/services.sh`). In CI (`CI` set) a missing one fails the test, so the
/// suite cannot pass by skipping; elsewhere it returns `None` after saying loudly what
/// `test` skips.
pub fn test_service(var: &str, test: &str) -> Option<String> {
    if let Some(url) = bazaar::config::process_env(var) {
        return Some(url);
    }
    assert!(
        bazaar::config::process_env("CI").is_none(),
        "{test}: {var} must be set in CI (start it with scripts/services.sh)"
    );
    eprintln!("SKIPPED {test}: {var} is not set (scripts/services.sh starts it)");
    None
}

/// A database of its own, made for `test` on the test PostgreSQL server
/// (`BAZAAR_TEST_POSTGRES_URL`), and its URL; `None` where `test_service` skips it.
/// `drop_postgres` removes it.
pub async fn fresh_postgres(test: &str) -> Option<String> {
    let server = test_service("BAZAAR_TEST_POSTGRES_URL", test)?;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    // Short: PostgreSQL cuts names at 63 bytes.
    let name = format!(
        "bazaar_it_db_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    on_postgres_server(&format!("CREATE DATABASE {name}")).await;
    let (scheme, rest) = server.split_once("://").unwrap();
    let host = rest.split(['/', '?']).next().unwrap();
    Some(format!("{scheme}://{host}/{name}"))
}

/// Drops a database `fresh_postgres` made.
pub async fn drop_postgres(url: &str) {
    let name = url.rsplit('/').next().unwrap();
    on_postgres_server(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// Runs `sql` on the test PostgreSQL server's own database.
async fn on_postgres_server(sql: &str) {
    let server = bazaar::config::process_env("BAZAAR_TEST_POSTGRES_URL").unwrap();
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&server).await.unwrap();
    sqlx::query(sql).execute(&admin).await.unwrap();
    admin.close().await;
}

/// Runs `find` until it returns something, waiting for the ledger writer to insert
/// another row between tries, so a test reads the ledger once per batch written rather
/// than on a timer; fails when no row is written for 10 s.
pub async fn once_written<T, F>(gw: &TestGateway, what: &str, mut find: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let sink = &gw.state.billing.connected().unwrap().sink;
    loop {
        // Read the count first: a row written after it wakes the wait below.
        let written = sink.written(0).await;
        if let Some(found) = find().await {
            return found;
        }
        let more = sink.written(written + 1);
        tokio::time::timeout(std::time::Duration::from_secs(10), more)
            .await
            .unwrap_or_else(|_| panic!("{what}: not in the ledger, and no row written for 10 s"));
    }
}

/// An upstream slow enough (5 ms to the first token, 400 tokens/s) that a shutdown during
/// `send_sixty_calls` finds some calls finished and others in flight.
pub async fn sixty_calls_mock() -> MockUpstream {
    MockUpstream::with_spec(bazaar::demo::sim::SimSpec {
        ttft: Duration::from_millis(5),
        tokens_per_sec: 400.0,
        ..Default::default()
    })
    .await
}

/// How many of `send_sixty_calls`' calls were answered in full.
pub async fn answered(tasks: Vec<tokio::task::JoinHandle<i64>>) -> i64 {
    let mut answered = 0;
    for t in tasks {
        answered += t.await.unwrap();
    }
    answered
}

/// The ledger at `url` and its rows of successful calls, checked to be exactly one per
/// answered call (of at least 10 answered). `what` names the case in a failure.
pub async fn one_row_per_answered_call(
    url: &str,
    answered: i64,
    what: &str,
) -> (
    bazaar::billing::ledger::Ledger,
    Vec<(i64, bazaar::billing::ledger::LedgerRow)>,
) {
    let ledger = bazaar::billing::ledger::Ledger::connect(url).await.unwrap();
    let ok = bazaar::billing::ledger::Filter {
        from_ms: 0,
        to_ms: i64::MAX,
        errors: Some(false),
        ..Default::default()
    };
    let rows = ledger.calls(&ok, 10_000, None).await.unwrap();
    assert!(answered >= 10, "{what}: {answered} answered");
    assert_eq!(
        rows.len() as i64,
        answered,
        "{what}: one ledger row per answered call"
    );
    (ledger, rows)
}

/// Sends 60 chat calls for `model` to `url` at once, every other one streamed, the last
/// 30 each started a millisecond after the one before (so some are still arriving while
/// the first finish). Each task says whether its call was answered in full (1) or not
/// (0); the receiver counts the calls that have finished, for a test to wait on.
pub fn send_sixty_calls(
    client: &reqwest::Client,
    url: &str,
    model: &'static str,
) -> (
    Vec<tokio::task::JoinHandle<i64>>,
    tokio::sync::watch::Receiver<usize>,
) {
    let (done, finished) = tokio::sync::watch::channel(0);
    let done = Arc::new(done);
    let tasks = (0..60)
        .map(|i: u64| {
            let (client, url, done) = (client.clone(), url.to_string(), done.clone());
            tokio::spawn(async move {
                if i >= 30 {
                    tokio::time::sleep(Duration::from_millis(i - 30)).await;
                }
                let body = serde_json::json!({"model": model, "stream": i % 2 == 0, "messages": [{"role": "user", "content": "hello there"}]});
                let resp = client.post(url).bearer_auth(KEY).json(&body).send().await;
                let answered = match resp {
                    Ok(r) if r.status() == 200 => r.bytes().await.is_ok() as i64,
                    _ => 0,
                };
                done.send_modify(|n| *n += 1);
                answered
            })
        })
        .collect();
    (tasks, finished)
}
