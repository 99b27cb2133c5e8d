//! The `bazaar` command: `serve`, `demo`, `check`, `keys`, `catalog`, `probe`, `router`
//! (train and evaluate the predictor), and the hidden `sim` backend for tests and benches. A thin shell over the library: it parses
//! flags, loads config and wires signals (SIGTERM drains, SIGHUP reloads); it holds no
//! gateway logic. The only place that uses anyhow.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bazaar::config::{process_env, Config};
use bazaar::{AppState, Runtime};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bazaar",
    version,
    about = "An OpenAI-compatible LLM routing gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (on the embedded default config when no file is given).
    Serve {
        /// The config file (TOML). Without one: the embedded default, serving every
        /// provider whose key is in the environment (`OPENAI_API_KEY`, …).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override `server.listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Validate a config file and report every problem with its TOML path.
    Check {
        /// The config file (TOML) to validate.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The gateway in front of simulated frontier, open-hosted and local backends: no keys needed.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Send simulated traffic for a minute so the dashboard fills.
        #[arg(long)]
        traffic: bool,
        /// The demo ledger, e.g. `sqlite://demo.sqlite` to keep one across runs
        /// (default: a fresh SQLite file under the system's temporary directory).
        #[arg(long)]
        ledger: Option<String>,
    },
    /// Run a simulated OpenAI-compatible backend (for tests, benches and demos).
    #[command(hide = true)]
    Sim {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Delay before the first byte of each reply.
        #[arg(long, default_value_t = 0)]
        ttft_ms: u64,
        /// Output tokens per second (0: all at once).
        #[arg(long, default_value_t = 0.0)]
        tokens_per_sec: f64,
        /// Answer 401 unless this key is presented.
        #[arg(long)]
        require_key: Option<String>,
    },
    /// Create, list or revoke virtual keys in the ledger database.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        /// The config naming the ledger database (default: the embedded config).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Exit 0 if the URL answers 200 (a container HEALTHCHECK or exec probe without curl).
    Probe {
        #[arg(default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
    /// Inspect or import the model catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Fit the quality predictor and measure routing quality (docs/routing.md).
    Router {
        #[command(subcommand)]
        command: bazaar::router::predict::cli::RouterCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed once and stored hashed.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        team: Option<String>,
        /// `50/month`, `5/day`, `20/week` (USD).
        #[arg(long)]
        budget: Option<String>,
        #[arg(long)]
        rpm: Option<u32>,
        #[arg(long)]
        tpm: Option<u32>,
        /// Comma-separated models or routes the key may use.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Comma-separated tiers the key may use.
        #[arg(long, value_delimiter = ',')]
        tiers: Vec<String>,
        /// Visible markup on this key's costs, in percent.
        #[arg(long)]
        markup: Option<f64>,
        /// Days until the key expires.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Print what bazaar believes: every model and offer, or one model with every figure's source.
    Show {
        model: Option<String>,
        /// Show the catalog as this config resolves it (built-in + `catalog.file` + overrides).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Convert a LiteLLM or OpenRouter price list into a catalog file for `catalog.file`.
    Import {
        file: PathBuf,
        /// `litellm` or `openrouter`; detected when omitted.
        #[arg(long)]
        format: Option<String>,
        /// Where to write the catalog JSON (default: stdout).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_filter = process_env("BAZAAR_LOG").unwrap_or_else(|| "info".into());
    let json_logs = process_env("BAZAAR_LOG_FORMAT").as_deref() != Some("text");
    match cli.command {
        Command::Check { config } => match Config::load(&config, &process_env) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} providers, {} models, {} keys)",
                    config.display(),
                    cfg.providers.len(),
                    cfg.models.len(),
                    cfg.keys.len()
                );
                for (route, reason) in bazaar::router::unservable_routes(&cfg) {
                    println!("warning: route `{route}` cannot serve a plain request: {reason}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Keys { command, config } => match run_keys(command, config) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bazaar keys: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Probe { url } => match probe(&url) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bazaar probe: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Catalog { command } => match run_catalog(command) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bazaar catalog: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Router { command } => match bazaar::router::predict::cli::run(command) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bazaar router: {e}");
                ExitCode::from(2)
            }
        },
        Command::Demo {
            listen,
            traffic,
            ledger,
        } => {
            bazaar::telemetry::logging::init(&log_filter, json_logs);
            match run_demo(&listen, traffic, ledger) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bazaar demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sim {
            listen,
            ttft_ms,
            tokens_per_sec,
            require_key,
        } => {
            let spec = bazaar::demo::sim::SimSpec {
                ttft: std::time::Duration::from_millis(ttft_ms),
                tokens_per_sec,
                require_key,
                ..Default::default()
            };
            match run_sim(&listen, spec) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bazaar sim: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config, listen } => {
            bazaar::telemetry::logging::init(&log_filter, json_logs);
            match run_serve(config, listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bazaar: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[allow(clippy::print_stdout)]
fn run_demo(listen: &str, traffic: bool, ledger: Option<String>) -> anyhow::Result<()> {
    use bazaar::demo::run::{self, DEMO_KEY, DEMO_MASTER_KEY};
    const TRAFFIC_FOR: std::time::Duration = std::time::Duration::from_secs(60);
    let (ledger, ledger_shown) = match ledger {
        Some(url) => (url.clone(), url),
        None => {
            let (url, file) =
                run::fresh_ledger().context("cannot create the demo's ledger directory")?;
            (
                url,
                format!(
                    "{} (fresh for this run; --ledger sqlite://FILE keeps one)",
                    file.display()
                ),
            )
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let toml = run::start_backends(listen, &ledger, stop.clone()).await?;
        let mut config = Config::from_toml(&toml, &process_env)?;
        config.rebase_paths(std::path::Path::new("."));
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let state = AppState::new(Runtime::build(config)?);
        bazaar::start_billing(&state, bazaar::billing::system_clock()).await?;
        println!("bazaar demo: simulated backends of three tiers behind http://{addr}/v1");
        println!("  client key: {DEMO_KEY}   dashboard: http://{addr}/dashboard (key {DEMO_MASTER_KEY})");
        println!("  ledger: {ledger_shown}");
        println!("  try: curl http://{addr}/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' -H 'Content-Type: application/json' -d '{{\"model\":\"auto\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'");
        if traffic {
            let ends = chrono::Utc::now() + TRAFFIC_FOR;
            println!(
                "  sending simulated traffic until {} UTC (one host is overloaded now and then, so some calls fall back or fail; a trial key runs out of budget)",
                ends.format("%H:%M:%S")
            );
            let (base, shutdown) = (format!("http://{addr}"), state.shutdown.clone());
            state.tasks.spawn(async move {
                let sent = run::traffic(base, TRAFFIC_FOR, 600, shutdown.clone()).await;
                if !shutdown.is_cancelled() {
                    println!("  simulated traffic done: {sent} calls; the gateway keeps serving");
                }
            });
        }
        println!("  Ctrl-C stops the demo");
        let result = bazaar::serve(state, listener, shutdown_signal()).await;
        stop.cancel();
        result?;
        Ok(())
    })
}

#[allow(clippy::print_stdout)]
fn run_sim(listen: &str, spec: bazaar::demo::sim::SimSpec) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        // The one line a parent process reads to learn the port.
        println!("listening on {}", listener.local_addr()?);
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, bazaar::demo::sim::router(spec))
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        Ok(())
    })
}

fn run_keys(command: KeysCommand, config: Option<PathBuf>) -> anyhow::Result<String> {
    use bazaar::billing::keys::{self, NewKey};
    let config = match &config {
        Some(p) => Config::load_offline(p, &process_env)?,
        None => Config::resolve(&Config::embedded_default(&process_env), &process_env)?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let ledger = bazaar::billing::ledger::Ledger::connect(&config.ledger.url)
            .await
            .with_context(|| format!("cannot open the ledger at {}", bazaar::config::redact_url(&config.ledger.url)))?;
        let now = (bazaar::billing::system_clock())();
        Ok(match command {
            KeysCommand::Create { name, team, budget, rpm, tpm, models, tiers, markup, expires_in_days } => {
                let settings = NewKey {
                    name,
                    team,
                    budget,
                    rpm,
                    tpm,
                    models,
                    tiers,
                    markup_percent: markup,
                    expires_ms: expires_in_days.map(|d| now + i64::from(d) * 86_400_000),
                };
                let (id, key) = keys::create_for(&config, &ledger, &settings, now).await?;
                format!("{key}\nid: {id} (the key above is shown once; running gateways pick it up within 10 s)\n")
            }
            KeysCommand::List => {
                let mut out = String::new();
                for k in keys::list(&ledger).await? {
                    out.push_str(&serde_json::to_string(&k)?);
                    out.push('\n');
                }
                out
            }
            KeysCommand::Revoke { id } => {
                anyhow::ensure!(keys::revoke(&ledger, &id).await?, "no key `{id}`");
                format!("revoked {id}\n")
            }
        })
    })
}

fn probe(url: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    runtime.block_on(async {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, http_body_util::Empty<bytes::Bytes>>(https);
        let status = tokio::time::timeout(std::time::Duration::from_secs(3), client.get(uri))
            .await
            .map_err(|_| anyhow::anyhow!("{url} did not answer within 3 s"))?
            .with_context(|| format!("{url} did not answer"))?
            .status();
        anyhow::ensure!(status.is_success(), "{url} answered {status}");
        Ok(())
    })
}

fn run_catalog(command: CatalogCommand) -> anyhow::Result<String> {
    match command {
        CatalogCommand::Show { model, config } => {
            let catalog = match config {
                Some(path) => Config::load_offline(&path, &process_env)?.catalog,
                None => bazaar::catalog::builtin::shared().clone(),
            };
            bazaar::catalog::show(&catalog, model.as_deref()).map_err(anyhow::Error::msg)
        }
        CatalogCommand::Import { file, format, out } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let format = format
                .map(|f| f.parse())
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let catalog =
                bazaar::catalog::import::import(&text, format, &file.display().to_string())
                    .map_err(anyhow::Error::msg)?;
            let json = serde_json::to_string_pretty(&catalog)?;
            let offers = catalog.offer_count();
            match out {
                Some(path) => {
                    std::fs::write(&path, json + "\n")
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    Ok(format!(
                        "wrote {}: {} models, {offers} offers\n",
                        path.display(),
                        catalog.models.len()
                    ))
                }
                None => Ok(json + "\n"),
            }
        }
    }
}

#[allow(clippy::print_stdout)]
fn run_serve(path: Option<PathBuf>, listen: Option<String>) -> anyhow::Result<()> {
    let mut config = match &path {
        Some(p) => Config::load(p, &process_env)?,
        None => {
            let raw = Config::embedded_default(&process_env);
            Config::resolve(&raw, &process_env)?
        }
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if config.providers.is_empty() {
        let vars: Vec<&str> = bazaar::config::presets::PRESETS
            .iter()
            .filter(|p| !p.base_url.is_empty())
            .filter_map(|p| p.key_env)
            .collect();
        let found = match &path {
            Some(p) => format!("{} declares no provider", p.display()),
            None => format!("none of {} is set", vars.join(", ")),
        };
        // On stdout for the person starting it, and in the logs for whoever reads them.
        println!("No provider is configured ({found}), so every call will fail. Set a provider's key (e.g. OPENAI_API_KEY) and restart, declare providers in a config file (--config), or run `bazaar demo` to try bazaar with simulated backends.");
        tracing::warn!("No provider is configured ({found}); every call will fail.");
    }
    if config.server.master_key.is_none() && config.keys.is_empty() {
        let key = format!("bzr-{:032x}", rand::random::<u128>());
        config.server.master_key = Some(bazaar::config::secret::hash_key(&key));
        // Shown once on stdout (never in the logs), like a notebook token.
        println!("No gateway key is configured; this run accepts: {key}");
    }
    // Calls are served on request threads, one current-thread runtime each (default:
    // one per core but one), so a call wakes no other thread; this thread's runtime
    // accepts, handles signals and runs the background work.
    let request_threads = process_env("BAZAAR_WORKER_THREADS")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            bazaar::server::threads::default_count(cores)
        });
    let threads = bazaar::server::threads::RequestThreads::start(request_threads)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let threads = &threads;
    runtime.block_on(async move {
        // SIGHUP's default action ends the process: the handler is in place before the
        // gateway says it is listening, so a reload asked for from then on is never fatal.
        let hup = path.as_ref().and_then(|_| {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| tracing::warn!("Cannot handle SIGHUP; the config reloads on file changes only: {e}"))
                .ok()
        });
        let addr = config.server.listen.clone();
        let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(listen = %listener.local_addr()?, providers = config.providers.len(), models = config.models.len(), "Listening.");
        let ledger_url = bazaar::config::redact_url(&config.ledger.url);
        let state = AppState::new(Runtime::build(config)?);
        bazaar::start_billing(&state, bazaar::billing::system_clock())
            .await
            .with_context(|| format!("cannot open the ledger at {ledger_url}"))?;
        if let Some(path) = path {
            let (hup_tx, hup_rx) = tokio::sync::mpsc::channel(1);
            let watcher_state = state.clone();
            state.tasks.spawn(bazaar::config::reload::watch(
                path,
                process_env,
                std::time::Duration::from_secs(2),
                hup_rx,
                state.shutdown.clone(),
                move |loaded| {
                    watcher_state.reload(loaded);
                    std::future::ready(())
                },
            ));
            if let Some(hup) = hup {
                state.tasks.spawn(forward_sighup(hup, hup_tx, state.shutdown.clone()));
            }
        }
        bazaar::serve_on(state, listener, shutdown_signal(), Some(threads)).await?;
        Ok(())
    })
}

/// Turns each SIGHUP into a reload request until shutdown.
async fn forward_sighup(
    mut hup: tokio::signal::unix::Signal,
    tx: tokio::sync::mpsc::Sender<()>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() || tx.try_send(()).is_err() && tx.is_closed() {
                    return;
                }
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
