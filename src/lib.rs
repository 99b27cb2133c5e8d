//! bazaar: an OpenAI-compatible LLM routing gateway.
//!
//! The data path of one call: server (auth, limits, parse) → router (candidates →
//! filter → score) → provider adapter (translate, send, stream back) → billing
//! (usage → cost → ledger) → client.

#![forbid(unsafe_code)]

pub mod api;
pub mod billing;
pub mod catalog;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod providers;
pub mod router;
pub mod server;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use server::{AppState, Runtime};

/// Connects the ledger named by the config and starts its writer on the state's task
/// tracker, so `serve` waits for its final flush.
pub async fn start_billing(
    state: &Arc<AppState>,
    clock: billing::Clock,
) -> Result<(), billing::ledger::LedgerError> {
    let config = state.runtime().config.ledger.clone();
    let (connected, writer) = billing::start(
        &config,
        clock.clone(),
        state.stopped.clone(),
        Some(state.router.metrics.ledger_write_duration.clone()),
    )
    .await?;
    let runtime = state.runtime();
    state.tasks.spawn(writer);
    if let Some(url) = runtime.config.redis.clone() {
        // Until Redis answers, each key's on_shared_state_error policy applies; keep trying.
        let connect_state = state.clone();
        state.tasks.spawn(async move {
            loop {
                match billing::shared::SharedState::connect(&url).await {
                    Ok(shared) => {
                        connect_state.billing.share(shared);
                        tracing::info!("Connected to the shared state.");
                        return;
                    }
                    Err(e) => tracing::warn!(url = %config::redact_url(&url), "Shared state unreachable; retrying in 2s: {e}"),
                }
                tokio::select! {
                    _ = connect_state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                }
            }
        });
    }
    state.billing.keys.refresh(&connected.ledger).await?;
    // Budgets continue where the ledger says this period's spend stands.
    let keys = runtime.config.keys.values().filter_map(|k| {
        Some((
            billing::ledger::GroupBy::Key,
            k.id.to_string(),
            k.limits.budget?,
        ))
    });
    let teams = runtime.config.teams.values().filter_map(|t| {
        Some((
            billing::ledger::GroupBy::Team,
            t.name.clone(),
            t.limits.budget?,
        ))
    });
    let scopes: Vec<_> = keys
        .chain(teams)
        .chain(state.billing.keys.budgeted())
        .collect();
    billing::seed_budgets(&state.billing.budgets, &connected.ledger, scopes, clock()).await?;
    // Keys created or revoked by other replicas (or the CLI) arrive within 10 s.
    let (refresh_state, ledger) = (state.clone(), connected.ledger.clone());
    state.tasks.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = refresh_state.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = refresh_state.billing.keys.refresh(&ledger).await {
                        tracing::warn!("Refreshing virtual keys failed: {e}");
                    }
                }
            }
        }
    });
    let (learn, learn_writer) =
        billing::ledger::learn::start(&connected.ledger, clock.clone(), state.stopped.clone())
            .await?;
    state.tasks.spawn(learn_writer);
    let _ = state.learn.set(learn);
    state.billing.connect(connected);
    // Stored responses live in the ledger's database, in their own table.
    let (store, store_writer) = server::responses_store::start(
        &config.url,
        clock,
        runtime.config.responses_ttl,
        state.stopped.clone(),
    )
    .await?;
    state.tasks.spawn(store_writer);
    let _ = state.responses.set(store);
    Ok(())
}

/// Serves the gateway on an already-bound listener until `shutdown` resolves, then
/// drains: /readyz turns unready at once, connections are still accepted for
/// `server.shutdown_grace`, then no new connections are taken, calls in flight get up
/// to `server.drain_timeout`, and background tasks (the ledger writer) finish.
///
/// A connection that does not send a complete request head within
/// `server.header_read_timeout` (the first one, or the next one on a kept-alive
/// connection) is closed: a slow client cannot hold a socket open for nothing. An HTTP/2
/// connection with no call for as long is sent GOAWAY and closed
/// (`server::limits::watch_connection`).
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(state, listener, shutdown, None).await
}

/// [`serve`], with each accepted connection handed to the request thread with the
/// fewest open connections (`server::threads`), or served on this runtime without them.
/// The listener, the drain and the background tasks stay on this runtime; `threads`
/// must outlive the call.
pub async fn serve_on(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    threads: Option<&server::threads::RequestThreads>,
) -> std::io::Result<()> {
    let settings = state.runtime().config.server.clone();
    let app = server::router(state.clone());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // Past hyper's own bounds it answers a bare 431; ours answer OpenAI's shape first.
        .max_headers(server::limits::MAX_PARSED_HEADERS)
        .max_buf_size(server::limits::MAX_HEAD_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(server::limits::MAX_HEAD_BUFFER as u32);
    let builder = Arc::new(builder);
    // Cancelled once no new connections are taken: each connection finishes what it is
    // answering and closes.
    let draining = tokio_util::sync::CancellationToken::new();
    let mut connections = JoinSet::new();
    let drain_state = state.clone();
    let stop_accepting = async move {
        shutdown.await;
        drain_state.set_ready(false);
        drain_state.shutdown.cancel();
        let grace = drain_state.runtime().config.server.shutdown_grace;
        if !grace.is_zero() {
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "Shutdown requested; unready, still accepting during the grace period."
            );
            tokio::time::sleep(grace).await;
        }
        tracing::info!("Draining in-flight calls; no new connections.");
    };
    tokio::pin!(stop_accepting);
    loop {
        while connections.try_join_next().is_some() {}
        let tcp = tokio::select! {
            _ = &mut stop_accepting => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        // Without TCP_NODELAY, Nagle's algorithm adds ~40 ms to small replies.
        let _ = tcp.set_nodelay(true);
        let (builder, draining, app) = (builder.clone(), draining.clone(), app.clone());
        let idle = settings.header_read_timeout;
        match threads.and_then(server::threads::RequestThreads::pick) {
            Some((thread, open)) => {
                // Its socket moves to the request thread's own I/O driver.
                let Ok(tcp) = tcp.into_std() else { continue };
                connections.spawn_on(
                    async move {
                        let _open = open;
                        if let Ok(tcp) = tokio::net::TcpStream::from_std(tcp) {
                            serve_connection(tcp, builder, app, idle, draining).await;
                        }
                    },
                    thread,
                );
            }
            None => {
                connections.spawn(serve_connection(tcp, builder, app, idle, draining));
            }
        }
    }
    drop(listener);
    let drain = settings.drain_timeout;
    draining.cancel();
    let finished = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        _ = finished => {}
        _ = tokio::time::sleep(drain) => tracing::warn!(drain_ms = drain.as_millis() as u64, "Drain deadline passed; closing the remaining connections."),
    }
    // Connections still open past the deadline are closed here.
    connections.shutdown().await;
    state.stopped.cancel();
    state.tasks.close();
    state.tasks.wait().await;
    tracing::info!("Stopped.");
    Ok(())
}

/// One client connection, from its first byte to its close or the drain.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    builder: Arc<Builder<TokioExecutor>>,
    app: server::app::App,
    idle: std::time::Duration,
    draining: tokio_util::sync::CancellationToken,
) {
    // hyper's timer starts when it reads a head; a peer that sends nothing at all
    // is dropped after the same time.
    let mut byte = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(idle, tcp.peek(&mut byte)) => match peeked {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        },
        _ = draining.cancelled() => return,
    }
    let activity = Arc::new(server::limits::Activity::default());
    let seen = activity.clone();
    let service = TowerToHyperService::new(tower::service_fn(
        move |req: http::Request<hyper::body::Incoming>| {
            // In flight from its head to the end of its response body.
            let in_flight = seen.request(req.version());
            let answer = app.clone().call(req.map(Body::new));
            async move {
                let response = answer.await;
                Ok::<_, std::convert::Infallible>(response.map(|body| in_flight.track(body)))
            }
        },
    ));
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
        .into_owned();
    server::limits::watch_connection(
        connection,
        |c| c.graceful_shutdown(),
        &activity,
        idle,
        &draining,
    )
    .await;
}

/// An accept that failed: a peer that gave up before we took it is nothing; anything
/// else (out of file descriptors: `EMFILE`) is waited out briefly, as hyper 0.14 did.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::warn!("Accepting a connection failed; pausing accepts for 100 ms: {e}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}
