//! One `Metrics` struct, registered once on its own registry and held in app state.
//! Names carry units; labels come from closed sets only (provider and model ids from the
//! config and catalog, tiers, route names, endpoints, status classes, error types) —
//! never key ids or raw client strings. `model` is always the public catalog id the
//! client asks for, never a provider's upstream id. Every family is in the exposition
//! from the first scrape, its series at zero (`declare`); of `bazaar_tokens_total`,
//! the series of direct calls (a route's appear with its first call).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::api::error::ErrorLabel;
use crate::config::{Config, Slot};
use prometheus::{
    core::Collector, proto::MetricFamily, Counter, Gauge, GaugeVec, Histogram, HistogramOpts,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric bazaar exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Front-end requests by endpoint and status class (the histogram's count is the request count).
    pub request_duration: HistogramVec,
    /// Failures the client saw, by `error.type`.
    pub errors: IntCounterVec,
    /// Successful upstream calls, by backend, whole duration.
    pub upstream_duration: HistogramVec,
    /// Time to first byte (reply or first stream chunk) of successful upstream calls.
    pub upstream_ttft: HistogramVec,
    /// Failed upstream attempts by backend and failure class.
    pub upstream_failures: IntCounterVec,
    /// Calls answered by a later candidate after earlier ones failed.
    pub fallbacks: IntCounterVec,
    pub tokens: IntCounterVec,
    pub cost_usd: prometheus::CounterVec,
    /// Calls whose price was unknown.
    pub unpriced: IntCounterVec,
    pub breaker_state: IntGaugeVec,
    pub upstream_in_flight: IntGaugeVec,
    pub ledger_queue_depth: IntGauge,
    pub ledger_spilled_rows: IntGauge,
    pub ledger_write_duration: HistogramVec,
    pub config_reloads: IntCounterVec,
    pub savings_usd: Gauge,
    pub up: GaugeVec,
    /// Which `Metrics` this is (clones share it), for the slots it fills (`SeriesSlot`).
    id: u64,
}

const BACKEND: &[&str] = &["provider", "model", "tier"];
const CALL: &[&str] = &["provider", "model", "tier", "route"];

/// The `error_type` label's values: what `ApiError::label` can say to a client.
const ERROR_TYPES: &[ErrorLabel] = &[
    ErrorLabel::InvalidRequest,
    ErrorLabel::Authentication,
    ErrorLabel::InsufficientQuota,
    ErrorLabel::Permission,
    ErrorLabel::NotFound,
    ErrorLabel::RateLimit,
    ErrorLabel::Upstream,
    ErrorLabel::ServiceUnavailable,
    ErrorLabel::Timeout,
    ErrorLabel::Server,
];
/// The `error` label of upstream failures: what `UpstreamError::label` can say.
const UPSTREAM_FAILURES: &[ErrorLabel] = &[
    ErrorLabel::Connect,
    ErrorLabel::UpstreamTimeout,
    ErrorLabel::UpstreamRateLimited,
    ErrorLabel::Upstream5xx,
    ErrorLabel::Upstream4xx,
    ErrorLabel::Protocol,
    ErrorLabel::Unsupported,
];
/// The token buckets of `bazaar_tokens_total`.
const TOKEN_BUCKETS: [&str; 5] = [
    "input",
    "cached_input",
    "cache_write",
    "output",
    "reasoning",
];
/// The endpoints that call backends: their request histograms exist from the start.
const CALL_ENDPOINTS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/embeddings",
    "/v1/completions",
];

impl Metrics {
    /// Builds and registers every metric (infallible with these static definitions).
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let latency_buckets = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
        ];
        let m = Metrics {
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "bazaar_request_duration_seconds",
                    "Front-end request duration, by endpoint and status class.",
                )
                .buckets(latency_buckets.clone()),
                &["endpoint", "status_class"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            errors: IntCounterVec::new(
                Opts::new(
                    "bazaar_errors_total",
                    "Errors returned to clients, by OpenAI error type.",
                ),
                &["error_type"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            upstream_duration: HistogramVec::new(
                HistogramOpts::new(
                    "bazaar_upstream_duration_seconds",
                    "Successful upstream calls, whole duration.",
                )
                .buckets(latency_buckets.clone()),
                BACKEND,
            )
            .unwrap_or_else(|_| unreachable_metric()),
            upstream_ttft: HistogramVec::new(
                HistogramOpts::new(
                    "bazaar_upstream_ttft_seconds",
                    "Time to the first byte of a successful upstream reply or stream.",
                )
                .buckets(latency_buckets.clone()),
                BACKEND,
            )
            .unwrap_or_else(|_| unreachable_metric()),
            upstream_failures: IntCounterVec::new(
                Opts::new(
                    "bazaar_upstream_failures_total",
                    "Failed upstream attempts, by class.",
                ),
                &["provider", "model", "error"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "bazaar_fallbacks_total",
                    "Calls answered after earlier candidates failed.",
                ),
                &["route"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            tokens: IntCounterVec::new(
                Opts::new("bazaar_tokens_total", "Tokens billed, by bucket."),
                &["provider", "model", "tier", "route", "bucket"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            cost_usd: prometheus::CounterVec::new(
                Opts::new("bazaar_cost_usd_total", "Cost billed, in USD."),
                CALL,
            )
            .unwrap_or_else(|_| unreachable_metric()),
            unpriced: IntCounterVec::new(
                Opts::new(
                    "bazaar_unpriced_calls_total",
                    "Calls whose backend price is unknown.",
                ),
                &["provider", "model"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "bazaar_breaker_state",
                    "Circuit state per backend: 0 closed, 1 half-open, 2 open.",
                ),
                &["provider", "model"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            upstream_in_flight: IntGaugeVec::new(
                Opts::new("bazaar_upstream_in_flight", "Calls in flight per backend."),
                &["provider", "model"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            ledger_queue_depth: IntGauge::new(
                "bazaar_ledger_queue_depth",
                "Ledger rows waiting to be written.",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            ledger_spilled_rows: IntGauge::new(
                "bazaar_ledger_spilled_rows",
                "Ledger rows written to the spill file since start.",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            ledger_write_duration: HistogramVec::new(
                HistogramOpts::new(
                    "bazaar_ledger_write_duration_seconds",
                    "Ledger batch writes.",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
                &["result"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            config_reloads: IntCounterVec::new(
                Opts::new(
                    "bazaar_config_reloads_total",
                    "Config reloads, applied or refused.",
                ),
                &["result"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            savings_usd: Gauge::new(
                "bazaar_savings_usd",
                "Savings against the reference frontier models since start, in USD.",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            up: GaugeVec::new(
                Opts::new(
                    "bazaar_build_info",
                    "Always 1; the version label says which build.",
                ),
                &["version"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            registry,
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(1);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
        };
        for c in m.collectors() {
            if let Err(e) = m.registry.register(c) {
                tracing::error!("A metric could not be registered: {e}");
            }
        }
        m.up.with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        m
    }

    /// Creates every series whose labels the config determines, at zero, so every family
    /// is exported from the first scrape and counters exist before their first event
    /// (`rate()` and alert rules need the series). Called at start and after each reload:
    /// new backends and routes get their series; those of removed ones keep their values.
    pub fn declare(&self, config: &Config) {
        for error_type in ERROR_TYPES {
            self.errors.with_label_values(&[error_type.as_str()]);
        }
        for result in ["applied", "refused"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for result in ["ok", "error"] {
            self.ledger_write_duration.with_label_values(&[result]);
        }
        for endpoint in CALL_ENDPOINTS {
            for class in ["2xx", "4xx", "5xx"] {
                self.request_duration.with_label_values(&[endpoint, class]);
            }
        }
        for route in config.routes.keys() {
            self.fallbacks.with_label_values(&[route]);
        }
        for (model, targets) in &config.models {
            // A direct call is labelled with the model id as its route.
            let routes: Vec<&str> = std::iter::once(model.as_str())
                .chain(
                    config
                        .routes
                        .values()
                        .filter(|r| {
                            r.models.is_empty()
                                || r.models.iter().any(|m| config.canonical(m) == model)
                        })
                        .map(|r| r.name.as_str()),
                )
                .collect();
            for target in targets {
                let Some(provider) = config.providers.get(target.provider) else {
                    continue;
                };
                let (provider, tier) = (provider.id.as_str(), target.facts.tier.as_str());
                self.upstream_duration
                    .with_label_values(&[provider, model, tier]);
                self.upstream_ttft
                    .with_label_values(&[provider, model, tier]);
                for failure in UPSTREAM_FAILURES {
                    self.upstream_failures
                        .with_label_values(&[provider, model, failure.as_str()]);
                }
                self.breaker_state.with_label_values(&[provider, model]);
                self.upstream_in_flight
                    .with_label_values(&[provider, model]);
                self.unpriced.with_label_values(&[provider, model]);
                for route in &routes {
                    self.cost_usd
                        .with_label_values(&[provider, model, tier, route]);
                }
                // Tokens by bucket only for a direct call (the model id as its route): by
                // every route too they were five series per route a model is in, most of
                // the declared series (1,340 of the load bench's 4,231, ~0.9 MB). A
                // route's token series appear with its first call.
                for bucket in TOKEN_BUCKETS {
                    self.tokens
                        .with_label_values(&[provider, model, tier, model, bucket]);
                }
            }
        }
    }

    /// Every family's collector (each exports one family).
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.request_duration.clone()),
            Box::new(self.errors.clone()),
            Box::new(self.upstream_duration.clone()),
            Box::new(self.upstream_ttft.clone()),
            Box::new(self.upstream_failures.clone()),
            Box::new(self.fallbacks.clone()),
            Box::new(self.tokens.clone()),
            Box::new(self.cost_usd.clone()),
            Box::new(self.unpriced.clone()),
            Box::new(self.breaker_state.clone()),
            Box::new(self.upstream_in_flight.clone()),
            Box::new(self.ledger_queue_depth.clone()),
            Box::new(self.ledger_spilled_rows.clone()),
            Box::new(self.ledger_write_duration.clone()),
            Box::new(self.config_reloads.clone()),
            Box::new(self.savings_usd.clone()),
            Box::new(self.up.clone()),
        ]
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.families().collect()
    }

    /// The Prometheus text exposition in pieces: what `Registry::gather` and
    /// `TextEncoder` would write at once (families in name order, series in label-value
    /// order, empty families left out), byte for byte, but only one family's series are
    /// collected at a time and its text is encoded and handed out in pieces of about
    /// `PIECE` bytes, so a scrape holds its largest family's series and a piece or two
    /// of text, and none of its blocks is big enough for the allocator to map on its own.
    pub fn families(&self) -> impl Iterator<Item = String> + Send + 'static {
        let mut collectors = self.collectors();
        collectors.sort_by(|a, b| family_name(&**a).cmp(family_name(&**b)));
        collectors
            .into_iter()
            .flat_map(|c| c.collect())
            .flat_map(pieces)
    }
}

/// The text a scrape hands out at a time, in bytes (a piece ends at the first series
/// past it): far below glibc's 128 KiB mmap threshold. A block above that threshold is
/// mapped on its own, and once such a block is freed glibc raises the threshold to its
/// size, so every later block that size stays in the request thread's arena.
const PIECE: usize = 16 * 1024;

/// Series encoded at a time within a piece.
const SERIES_AT_A_TIME: usize = 8;

/// One family's text in pieces of about `PIECE` bytes, its series sorted by label values
/// (in place: a stable sort would allocate a buffer as large as the series). The first
/// piece starts with the family's `# HELP` and `# TYPE` lines; the encoder writes them
/// for each group of series, so they are cut from all groups but the first.
fn pieces(mut family: MetricFamily) -> impl Iterator<Item = String> + Send {
    let mut series = family.take_metric();
    series.sort_unstable_by(|a, b| {
        let (a, b) = (a.get_label(), b.get_label());
        a.len()
            .cmp(&b.len())
            .then_with(|| a.iter().map(|l| l.value()).cmp(b.iter().map(|l| l.value())))
    });
    let mut series = series.into_iter();
    let mut first = true;
    let mut group = String::new();
    std::iter::from_fn(move || {
        let mut piece = String::new();
        while piece.len() < PIECE {
            let next: Vec<_> = series.by_ref().take(SERIES_AT_A_TIME).collect();
            if next.is_empty() {
                break;
            }
            family.set_metric(next);
            group.clear();
            if let Err(e) =
                TextEncoder::new().encode_utf8(std::slice::from_ref(&family), &mut group)
            {
                tracing::warn!("Encoding metrics failed: {e}");
                return None;
            }
            let body = if first {
                0
            } else {
                // After the two header lines.
                group
                    .match_indices('\n')
                    .nth(1)
                    .map_or(group.len(), |(at, _)| at + 1)
            };
            first = false;
            if piece.capacity() == 0 {
                piece.reserve_exact(PIECE + PIECE / 4);
            }
            piece.push_str(&group[body..]);
        }
        (!piece.is_empty()).then_some(piece)
    })
}

/// The name of the one family a collector of `Metrics` exports.
fn family_name(c: &dyn Collector) -> &str {
    c.desc().first().map_or("", |d| d.fq_name.as_str())
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The series of one backend (a config's model target: provider, public model, tier),
/// looked up by label values once and then kept in the target's `SeriesSlot`, so a call
/// counts into them without a lookup.
#[derive(Debug)]
pub struct TargetSeries {
    pub upstream_duration: Histogram,
    pub upstream_ttft: Histogram,
    /// Billing's series of this backend by route, found on each route's first call.
    routes: RwLock<Vec<(Box<str>, Arc<CallSeries>)>>,
    /// The labels: the provider's id, the public model id, the tier.
    pub provider: Arc<str>,
    pub model: Arc<str>,
    pub tier: &'static str,
}

/// Billing's series of one backend on one route.
#[derive(Debug)]
pub struct CallSeries {
    /// `bazaar_tokens_total`, in `TOKEN_BUCKETS` order.
    pub tokens: [IntCounter; 5],
    pub cost_usd: Counter,
    pub unpriced: IntCounter,
}

impl CallSeries {
    /// Looked up by their labels: provider, model, tier, route.
    pub fn of(metrics: &Metrics, labels: [&str; 4]) -> CallSeries {
        CallSeries {
            tokens: TOKEN_BUCKETS.map(|bucket| {
                metrics
                    .tokens
                    .with_label_values(&[labels[0], labels[1], labels[2], labels[3], bucket])
            }),
            cost_usd: metrics.cost_usd.with_label_values(&labels),
            unpriced: metrics.unpriced.with_label_values(&labels[..2]),
        }
    }
}

/// Routes whose billing series a backend keeps (a route is a name the config defines:
/// a route, a model id or an alias); past them a call looks its series up by label.
const ROUTES_KEPT: usize = 16;

impl TargetSeries {
    /// Billing's series for calls on `route`.
    pub fn route(&self, metrics: &Metrics, route: &str) -> Arc<CallSeries> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, series)) = routes.iter().find(|(r, _)| **r == *route) {
            return series.clone();
        }
        drop(routes);
        let series = Arc::new(CallSeries::of(
            metrics,
            [&self.provider, &self.model, self.tier, route],
        ));
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        if routes.len() < ROUTES_KEPT && !routes.iter().any(|(r, _)| **r == *route) {
            routes.push((route.into(), series.clone()));
        }
        series
    }
}

/// A config target's handle on its series, filled by the first `Metrics` that looks
/// them up through it (the gateway's, which lives across reloads: a reloaded config's
/// targets look theirs up once more). Series are never removed from a family, so the
/// handles stay the ones the families export.
pub type SeriesSlot = Slot<Arc<TargetSeries>>;

impl Metrics {
    /// The series of `provider`/`model` at `tier`: the target's `slot`'s, or (the first
    /// time through this config, or for another `Metrics`) looked up by label.
    pub fn target_series(
        &self,
        slot: &SeriesSlot,
        provider: &str,
        model: &Arc<str>,
        tier: &'static str,
    ) -> Arc<TargetSeries> {
        if let Some(series) = slot.get(self.id) {
            return series.clone();
        }
        let labels = [provider, model, tier];
        let series = Arc::new(TargetSeries {
            upstream_duration: self.upstream_duration.with_label_values(&labels),
            upstream_ttft: self.upstream_ttft.with_label_values(&labels),
            routes: RwLock::default(),
            provider: provider.into(),
            model: model.clone(),
            tier,
        });
        slot.fill(self.id, series.clone());
        series
    }
}

/// Metric definitions are static and valid; this is never reached.
#[cold]
fn unreachable_metric<T>() -> T {
    #[allow(clippy::panic)]
    {
        panic!("a static metric definition is invalid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    fn value(metrics: &Metrics, line_start: &str) -> Option<String> {
        metrics
            .render()
            .lines()
            .find(|l| l.starts_with(line_start))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
    }

    #[test]
    fn declared_at_start_cost_by_every_route_and_tokens_by_direct_calls() {
        let toml = "[providers.b]\ntier = \"local\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
            catalog = false\n[[models]]\nid = \"zeta\"\nprovider = \"b\"\n\
            [routes.fast]\nmodels = [\"zeta\"]\n";
        let config = Config::from_toml(toml, &|_| None).unwrap();
        let metrics = Metrics::new();
        metrics.declare(&config);
        let labels = |route: &str| format!(r#"model="zeta",provider="b",route="{route}""#);
        let cost =
            |route: &str| format!("bazaar_cost_usd_total{{{},tier=\"local\"}}", labels(route));
        let tokens = |route: &str| {
            format!(
                r#"bazaar_tokens_total{{bucket="output",{},tier="local"}}"#,
                labels(route)
            )
        };
        for route in ["zeta", "fast"] {
            assert_eq!(
                value(&metrics, &cost(route)).as_deref(),
                Some("0"),
                "{route}"
            );
        }
        assert_eq!(value(&metrics, &tokens("zeta")).as_deref(), Some("0"));
        assert_eq!(value(&metrics, &tokens("fast")), None);
        // A route's token series appears with its first call.
        let series = metrics.target_series(&SeriesSlot::default(), "b", &"zeta".into(), "local");
        let output = TOKEN_BUCKETS.iter().position(|b| *b == "output").unwrap();
        series.route(&metrics, "fast").tokens[output].inc_by(3);
        assert_eq!(value(&metrics, &tokens("fast")).as_deref(), Some("3"));
    }

    #[test]
    fn the_exposition_is_the_registry_encoders_byte_for_byte() {
        let toml = "[providers.b]\ntier = \"local\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
            catalog = false\n[providers.a]\ntier = \"frontier\"\n\
            base_url = \"http://127.0.0.1:2/v1\"\ncatalog = false\n\
            [[models]]\nid = \"zeta\"\nprovider = \"b\"\n\
            [[models]]\nid = \"alpha\"\nprovider = \"a\"\n\
            [[models]]\nid = \"alpha\"\nprovider = \"b\"\n\
            [routes.fast]\nmodels = [\"zeta\", \"alpha\"]\n";
        let config = Config::from_toml(toml, &|_| None).unwrap();
        let metrics = Metrics::new();
        metrics.declare(&config);
        let slot = SeriesSlot::default();
        let series = metrics.target_series(&slot, "b", &"zeta".into(), "local");
        series.upstream_duration.observe(0.07);
        series.route(&metrics, "fast").tokens[1].inc_by(3);
        series.route(&metrics, "fast").cost_usd.inc_by(0.125);
        metrics
            .errors
            .with_label_values(&["rate_limit_error"])
            .inc();
        metrics.ledger_queue_depth.set(4);
        metrics.savings_usd.set(1.5);
        let mut old = Vec::new();
        TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut old)
            .unwrap();
        let old = String::from_utf8(old).unwrap();
        assert!(old.contains("bazaar_tokens_total{bucket=\"cached_input\",model=\"zeta\""));
        assert_eq!(metrics.render(), old);
        assert_eq!(metrics.families().count(), 17);
    }

    #[test]
    fn a_large_family_is_handed_out_in_pieces_that_make_the_encoders_text() {
        let metrics = Metrics::new();
        for i in 0..400 {
            let model = format!("model-{i:03}");
            metrics
                .upstream_duration
                .with_label_values(&["p", &model, "local"])
                .observe(0.01 * f64::from(i));
            metrics
                .upstream_failures
                .with_label_values(&["p", &model, "timeout"])
                .inc();
        }
        let mut old = Vec::new();
        TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut old)
            .unwrap();
        let pieces: Vec<String> = metrics.families().collect();
        assert!(pieces.len() > 4, "{} pieces", pieces.len());
        // A piece passes `PIECE` by at most one group of series.
        assert!(pieces.iter().all(|p| p.len() < 2 * PIECE + PIECE / 2));
        assert_eq!(pieces.concat(), String::from_utf8(old).unwrap());
    }

    #[test]
    fn a_slot_counts_into_the_exported_series_of_its_own_metrics() {
        let (a, b) = (Metrics::new(), Metrics::new());
        let slot = SeriesSlot::default();
        let model: Arc<str> = "m".into();
        let series = a.target_series(&slot, "p", &model, "local");
        series.upstream_duration.observe(0.5);
        let on_route = series.route(&a, "r");
        on_route.tokens[0].inc_by(7);
        on_route.tokens[3].inc_by(2);
        on_route.cost_usd.inc_by(0.25);
        // The same handles on the next call, without a lookup.
        assert!(Arc::ptr_eq(
            &series,
            &a.target_series(&slot, "p", &model, "local")
        ));
        assert!(Arc::ptr_eq(&on_route, &series.route(&a, "r")));
        let tokens =
            r#"bazaar_tokens_total{bucket="input",model="m",provider="p",route="r",tier="local"}"#;
        assert_eq!(value(&a, tokens).as_deref(), Some("7"));
        let output =
            r#"bazaar_tokens_total{bucket="output",model="m",provider="p",route="r",tier="local"}"#;
        assert_eq!(value(&a, output).as_deref(), Some("2"));
        let cost = r#"bazaar_cost_usd_total{model="m",provider="p",route="r",tier="local"}"#;
        assert_eq!(value(&a, cost).as_deref(), Some("0.25"));
        let count =
            r#"bazaar_upstream_duration_seconds_count{model="m",provider="p",tier="local"}"#;
        assert_eq!(value(&a, count).as_deref(), Some("1"));
        // Another `Metrics` reading the same slot counts into its own series.
        b.target_series(&slot, "p", &model, "local")
            .upstream_duration
            .observe(0.5);
        assert_eq!(value(&b, count).as_deref(), Some("1"));
        assert_eq!(value(&a, count).as_deref(), Some("1"));
        // A backend keeps the series of a bounded number of routes; past them a call
        // still counts, into series looked up by label.
        for i in 0..ROUTES_KEPT + 4 {
            series.route(&a, &format!("route{i}")).unpriced.inc();
        }
        series.route(&a, "route19").unpriced.inc();
        let unpriced = r#"bazaar_unpriced_calls_total{model="m",provider="p"}"#;
        assert_eq!(value(&a, unpriced).as_deref(), Some("21"));
        assert_eq!(series.routes.read().unwrap().len(), ROUTES_KEPT);
    }
}
