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

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

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
            k.name.clone(),
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
    state.billing.connect(connected);
    // Stored responses live in the ledger's database, in their own table.
    let (store, store_writer) = server::responses_store::start(
        &config.url,
        clock,
        server::responses_store::DEFAULT_TTL,
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
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        // Without TCP_NODELAY, Nagle's algorithm adds ~40 ms to small replies.
        let _ = tcp.set_nodelay(true);
    });
    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_state = state.clone();
    let app = server::router(state.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
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
        let _ = began_tx.send(());
    });
    let drain = state.runtime().config.server.drain_timeout;
    let deadline = async move {
        if began_rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server.into_future() => result?,
        _ = deadline => tracing::warn!(drain_ms = drain.as_millis() as u64, "Drain deadline passed; closing the remaining connections."),
    }
    state.stopped.cancel();
    state.tasks.close();
    state.tasks.wait().await;
    tracing::info!("Stopped.");
    Ok(())
}
