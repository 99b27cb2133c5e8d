//! Shared state of the running gateway: the current `Runtime` (config plus the
//! providers built from it, swapped whole on reload), readiness, the task tracker, the
//! router's live state and the billing handle.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::KeyMemo;
use crate::billing::meter::default_reference_price;
use crate::billing::Billing;
use crate::catalog::Price;
use crate::config::{Config, ConfigError, ConfigProblem};
use crate::providers::Provider;
use crate::router::RouterState;

/// One complete, consistent configuration and the adapters built from it. A call
/// keeps the `Arc<Runtime>` it started with, so a reload never changes it mid-flight.
#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    /// Same order as `config.providers`.
    pub providers: Vec<Provider>,
    /// The savings reference's price for calls whose route names none of its own
    /// (`billing::meter::default_reference_price`), worked out once per config.
    pub default_reference_price: Option<Price>,
    /// Presented keys' hashes, for this config's lifetime (`auth::KeyMemo`).
    pub keys: KeyMemo,
}

impl Runtime {
    /// Builds every provider's adapter; fails with the providers that could not be built.
    pub fn build(config: Config) -> Result<Runtime, ConfigError> {
        let mut providers = Vec::with_capacity(config.providers.len());
        let mut problems = Vec::new();
        for p in &config.providers {
            match Provider::build(p) {
                Ok(provider) => providers.push(provider),
                Err(e) => problems.push(ConfigProblem {
                    path: format!("providers.{}", p.id),
                    message: e.to_string(),
                }),
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Runtime {
            default_reference_price: default_reference_price(&config),
            keys: KeyMemo::new(),
            config,
            providers,
        })
    }
}

/// Everything handlers share.
#[derive(Debug)]
pub struct AppState {
    runtime: ArcSwap<Runtime>,
    ready: AtomicBool,
    /// Every background task; shutdown waits on it.
    pub tasks: TaskTracker,
    /// Live routing stats and session affinity; they outlive reloads.
    pub router: Arc<RouterState>,
    /// Cancelled when draining begins: background loops stop.
    pub shutdown: CancellationToken,
    /// Cancelled once the HTTP server has stopped: the ledger writer flushes and ends.
    pub stopped: CancellationToken,
    /// Keys, limits, budgets and the ledger (connected by `bazaar::start_billing`).
    pub billing: Arc<Billing>,
    /// Stored responses (`previous_response_id`), beside the ledger once it is connected.
    pub responses: std::sync::OnceLock<Arc<super::responses_store::ResponseStore>>,
    /// Kept prompts and feedback for retraining, beside the ledger once it is connected.
    pub learn: std::sync::OnceLock<Arc<crate::billing::ledger::learn::LearnStore>>,
    /// Turns to read a request body (`server.max_bodies_in_flight`, sized at start).
    pub bodies: tokio::sync::Semaphore,
    reloads_applied: AtomicU64,
    reloads_rejected: AtomicU64,
}

impl AppState {
    pub fn new(runtime: Runtime) -> Arc<AppState> {
        let router = Arc::new(RouterState::default());
        router.metrics.declare(&runtime.config);
        let tasks = TaskTracker::new();
        let billing = Arc::new(Billing::new(router.metrics.clone(), tasks.clone()));
        let bodies = tokio::sync::Semaphore::new(runtime.config.server.max_bodies_in_flight);
        Arc::new(AppState {
            bodies,
            runtime: ArcSwap::from_pointee(runtime),
            ready: AtomicBool::new(true),
            tasks,
            router,
            shutdown: CancellationToken::new(),
            stopped: CancellationToken::new(),
            billing,
            responses: std::sync::OnceLock::new(),
            learn: std::sync::OnceLock::new(),
            reloads_applied: AtomicU64::new(0),
            reloads_rejected: AtomicU64::new(0),
        })
    }

    /// The runtime a new call should use.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Swaps in a new runtime; calls in flight keep the old one.
    pub fn replace_runtime(&self, runtime: Runtime) {
        self.runtime.store(Arc::new(runtime));
    }

    /// Applies a reloaded config: built in full and swapped atomically, or refused with
    /// the old config kept. Returns whether it was applied.
    pub fn reload(&self, loaded: Result<Config, ConfigError>) -> bool {
        let current = self.runtime();
        let result = loaded.and_then(|config| {
            if config.server.listen != current.config.server.listen {
                tracing::warn!(old = %current.config.server.listen, new = %config.server.listen, "server.listen changed; it takes effect at the next restart.");
            }
            Runtime::build(config)
        });
        match result {
            Ok(runtime) => {
                let (providers, models) = (runtime.providers.len(), runtime.config.models.len());
                self.router.metrics.declare(&runtime.config);
                if let Some(store) = self.responses.get() {
                    store.set_ttl(runtime.config.responses_ttl);
                }
                self.replace_runtime(runtime);
                // Said once it is in place: a call that reads this line next gets the
                // new config, on whichever thread it runs.
                tracing::info!(providers, models, "Config reloaded.");
                self.reloads_applied.fetch_add(1, Ordering::Relaxed);
                self.router
                    .metrics
                    .config_reloads
                    .with_label_values(&["applied"])
                    .inc();
                true
            }
            Err(e) => {
                tracing::warn!(
                    problems = e.problems.len(),
                    "Config reload refused; keeping the running config. {e}"
                );
                self.reloads_rejected.fetch_add(1, Ordering::Relaxed);
                self.router
                    .metrics
                    .config_reloads
                    .with_label_values(&["refused"])
                    .inc();
                false
            }
        }
    }

    /// The caller of a request, by its key.
    pub fn authenticate(
        &self,
        headers: &http::HeaderMap,
        runtime: &Runtime,
    ) -> Result<super::auth::Caller, crate::api::ApiError> {
        super::auth::authenticate(
            headers,
            &runtime.config,
            &self.billing.keys,
            &runtime.keys,
            self.now_ms(),
        )
    }

    /// Wall-clock milliseconds from the billing clock (0 before billing starts).
    pub fn now_ms(&self) -> i64 {
        self.billing.now_ms()
    }

    /// Reloads applied and refused since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads_applied.load(Ordering::Relaxed),
            self.reloads_rejected.load(Ordering::Relaxed),
        )
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
