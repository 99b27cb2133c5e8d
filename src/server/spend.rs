//! The spend API (docs/spend-api.md): `GET /v1/spend` (totals, groups, time series),
//! `GET /v1/spend/calls` (recent ledger rows) and `GET /v1/spend/export?format=csv`.
//! The master key sees everything; any other key sees only its own rows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::state::AppState;
use crate::api::ApiError;
use crate::billing::cost::usd;
use crate::billing::ledger::{Aggregate, Cursor, Filter, GroupBy, LedgerRow};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// The query string every spend endpoint accepts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendQuery {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
    granularity: Option<String>,
    key: Option<String>,
    team: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    tier: Option<String>,
    route: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    before: Option<i64>,
    format: Option<String>,
}

/// The latest time a query may name: the end of year 9999, as RFC 3339 can write it.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// A query time (unix seconds or RFC 3339) in milliseconds; a 400 naming `param` when it
/// is neither or lies outside 1970-01-01 to 9999-12-31 (so no arithmetic on it wraps).
fn parse_time(value: &str, param: &str) -> Result<i64, ApiError> {
    let ms = match value.parse::<i64>() {
        Ok(secs) => secs.checked_mul(1000),
        Err(_) => chrono::DateTime::parse_from_rfc3339(value)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| {
                ApiError::invalid(
                    param,
                    format!("`{param}` must be RFC 3339 (2026-11-25T00:00:00Z) or unix seconds"),
                )
            })?,
    };
    ms.filter(|ms| (0..=MAX_TIME_MS).contains(ms))
        .ok_or_else(|| {
            ApiError::invalid(
                param,
                format!("`{param}` must lie between 1970-01-01 and 9999-12-31"),
            )
        })
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl SpendQuery {
    /// The filter this query asks for, narrowed to the caller's own rows unless admin.
    fn filter(&self, caller: &Caller, now_ms: i64) -> Result<Filter, ApiError> {
        let to_ms = self
            .to
            .as_deref()
            .map(|t| parse_time(t, "to"))
            .transpose()?
            .unwrap_or(now_ms.saturating_add(1));
        let from_ms = self
            .from
            .as_deref()
            .map(|t| parse_time(t, "from"))
            .transpose()?
            .unwrap_or(to_ms.saturating_sub(7 * DAY_MS).max(0));
        if from_ms >= to_ms {
            return Err(ApiError::invalid("from", "`from` must be before `to`"));
        }
        let mut equals = Vec::new();
        for (group, value) in [
            (GroupBy::Key, &self.key),
            (GroupBy::Team, &self.team),
            (GroupBy::Model, &self.model),
            (GroupBy::Provider, &self.provider),
            (GroupBy::Tier, &self.tier),
            (GroupBy::Route, &self.route),
        ] {
            if let Some(v) = value {
                equals.push((group, v.clone()));
            }
        }
        // A key sees its own spend only, whatever it asks for: its rows by id, not by
        // name, so a key reusing a revoked key's name sees none of that key's calls.
        let key_id = (!caller.admin).then(|| caller.key_id().to_string());
        if key_id.is_some() {
            equals.retain(|(g, _)| *g != GroupBy::Key);
        }
        let errors = match self.status.as_deref() {
            None => None,
            Some("ok") => Some(false),
            Some("error") => Some(true),
            Some(other) => {
                return Err(ApiError::invalid(
                    "status",
                    format!("`status` must be ok or error, not `{other}`"),
                ))
            }
        };
        Ok(Filter {
            from_ms,
            to_ms,
            equals,
            key_id,
            errors,
        })
    }
}

fn tokens(t: [i64; 5]) -> Value {
    json!({"input": t[0], "cached_input": t[1], "cache_write": t[2], "output": t[3], "reasoning": t[4]})
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

fn billing(state: &AppState) -> Result<&crate::billing::Connected, ApiError> {
    state
        .billing
        .connected()
        .ok_or_else(|| ApiError::Unavailable {
            message: "the ledger is not connected".into(),
            retry_after: None,
        })
}

fn db_error(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!("Spend query failed: {e}");
    ApiError::Unavailable {
        message: "the ledger could not answer; try again".into(),
        retry_after: Some(std::time::Duration::from_secs(1)),
    }
}

/// `GET /v1/spend`.
pub async fn spend(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<SpendQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let runtime = state.runtime();
        let caller = state.authenticate(&headers, &runtime)?;
        let Query(q) = query.map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}")))?;
        let billing = billing(&state)?;
        let filter = q.filter(&caller, (billing.clock)())?;
        let group_by = match q.group_by.as_deref() {
            None => GroupBy::Tier,
            Some(g) => GroupBy::parse(g).ok_or_else(|| ApiError::invalid("group_by", "`group_by` must be key, team, model, provider, tier or route"))?,
        };
        let bucket_ms = match q.granularity.as_deref() {
            None | Some("day") => DAY_MS,
            Some("hour") => HOUR_MS,
            Some(other) => return Err(ApiError::invalid("granularity", format!("`granularity` must be hour or day, not `{other}`"))),
        };
        let series = billing.ledger.aggregate(&filter, group_by, Some(bucket_ms)).await.map_err(db_error)?;
        let latencies = billing.ledger.latencies(&filter, group_by, 20_000).await.map_err(db_error)?;

        let mut groups: BTreeMap<String, Aggregate> = BTreeMap::new();
        for s in &series {
            let g = groups.entry(s.group.clone()).or_insert_with(|| Aggregate { group: s.group.clone(), ..Default::default() });
            g.requests = g.requests.saturating_add(s.requests);
            g.errors = g.errors.saturating_add(s.errors);
            g.cost_nanos = g.cost_nanos.saturating_add(s.cost_nanos);
            g.baseline_cost_nanos = g.baseline_cost_nanos.saturating_add(s.baseline_cost_nanos);
            g.unpriced = g.unpriced.saturating_add(s.unpriced);
            g.fallbacks = g.fallbacks.saturating_add(s.fallbacks);
            for i in 0..5 {
                g.tokens[i] = g.tokens[i].saturating_add(s.tokens[i]);
            }
        }
        let mut lat: HashMap<String, (Vec<i64>, Vec<i64>)> = HashMap::new();
        for (group, latency, ttft) in latencies {
            let entry = lat.entry(group).or_default();
            entry.0.push(latency);
            if let Some(t) = ttft {
                entry.1.push(t);
            }
        }
        let mut totals = Aggregate::default();
        let mut group_values: Vec<&Aggregate> = groups.values().collect();
        group_values.sort_by(|a, b| b.cost_nanos.cmp(&a.cost_nanos).then(b.requests.cmp(&a.requests)));
        let groups_json: Vec<Value> = group_values
            .iter()
            .map(|g| {
                totals.requests = totals.requests.saturating_add(g.requests);
                totals.errors = totals.errors.saturating_add(g.errors);
                totals.cost_nanos = totals.cost_nanos.saturating_add(g.cost_nanos);
                totals.baseline_cost_nanos = totals.baseline_cost_nanos.saturating_add(g.baseline_cost_nanos);
                totals.unpriced = totals.unpriced.saturating_add(g.unpriced);
                for i in 0..5 {
                    totals.tokens[i] = totals.tokens[i].saturating_add(g.tokens[i]);
                }
                let (mut l, mut t) = lat.remove(&g.group).unwrap_or_default();
                l.sort_unstable();
                t.sort_unstable();
                json!({
                    "group": g.group, "requests": g.requests, "errors": g.errors,
                    "cost_nanos": g.cost_nanos, "cost_usd": usd(g.cost_nanos.max(0) as u64),
                    "baseline_cost_nanos": g.baseline_cost_nanos, "tokens": tokens(g.tokens), "unpriced_requests": g.unpriced,
                    "latency_ms_p50": percentile(&l, 0.5), "latency_ms_p95": percentile(&l, 0.95),
                    "ttft_ms_p50": percentile(&t, 0.5), "ttft_ms_p95": percentile(&t, 0.95), "fallbacks": g.fallbacks,
                })
            })
            .collect();
        let savings = totals.baseline_cost_nanos.saturating_sub(totals.cost_nanos).max(0);
        let series_json: Vec<Value> = series
            .iter()
            .map(|s| json!({"bucket": rfc3339(s.bucket_ms), "group": s.group, "requests": s.requests, "errors": s.errors, "cost_nanos": s.cost_nanos, "baseline_cost_nanos": s.baseline_cost_nanos, "tokens": tokens(s.tokens)}))
            .collect();
        Ok::<_, ApiError>(Json(json!({
            "from": rfc3339(filter.from_ms), "to": rfc3339(filter.to_ms),
            "group_by": group_by.as_str(), "granularity": if bucket_ms == HOUR_MS { "hour" } else { "day" },
            "totals": {
                "requests": totals.requests, "errors": totals.errors,
                "cost_nanos": totals.cost_nanos, "cost_usd": usd(totals.cost_nanos.max(0) as u64),
                "baseline_cost_nanos": totals.baseline_cost_nanos, "baseline_cost_usd": usd(totals.baseline_cost_nanos.max(0) as u64),
                "savings_nanos": savings, "savings_usd": usd(savings as u64),
                "unpriced_requests": totals.unpriced, "tokens": tokens(totals.tokens),
            },
            "groups": groups_json,
            "series": series_json,
        }))
        .into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn call_json(id: i64, r: &LedgerRow) -> Value {
    json!({
        "id": id, "time": rfc3339(r.ts_ms), "request_id": r.request_id, "key": r.key_name, "key_id": r.key_id, "team": r.team,
        "route": r.route, "provider": r.provider, "model": r.model, "tier": r.tier, "endpoint": r.endpoint,
        "tokens": tokens([r.input_tokens, r.cached_input_tokens, r.cache_write_tokens, r.output_tokens, r.reasoning_tokens]),
        "cost_nanos": r.cost_nanos, "cost_usd": r.cost_nanos.map(|c| usd(c.max(0) as u64)),
        "baseline_cost_nanos": r.baseline_cost_nanos, "estimated": r.estimated.any(),
        "estimated_buckets": r.estimated.buckets().names().collect::<Vec<_>>(),
        "latency_ms": r.latency_ms, "ttft_ms": r.ttft_ms, "status": r.status, "error_type": r.error_type,
        "fallbacks": r.fallbacks, "catalog_version": r.catalog_version,
    })
}

/// `GET /v1/spend/calls`.
pub async fn calls(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<SpendQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let runtime = state.runtime();
        let caller = state.authenticate(&headers, &runtime)?;
        let Query(q) =
            query.map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}")))?;
        let billing = billing(&state)?;
        let filter = q.filter(&caller, (billing.clock)())?;
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let rows = billing
            .ledger
            .calls(&filter, limit, q.before)
            .await
            .map_err(db_error)?;
        let calls: Vec<Value> = rows.iter().map(|(id, r)| call_json(*id, r)).collect();
        Ok::<_, ApiError>(Json(json!({"calls": calls})).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Ledger rows read per query while exporting: the export holds one page at a time.
const EXPORT_PAGE: i64 = 1_000;

const CSV_HEADER: &str = "id,time,request_id,key,team,route,provider,model,tier,endpoint,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost_nanos,cost_usd,baseline_cost_nanos,estimated,latency_ms,ttft_ms,status,error_type,fallbacks,catalog_version,estimated_buckets,key_id\n";

/// `GET /v1/spend/export?format=csv`: streamed a page of rows at a time, newest first,
/// so an export of millions of calls never sits in memory whole, and its first rows are
/// on the wire before the last are read.
pub async fn export(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<SpendQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let runtime = state.runtime();
        let caller = state.authenticate(&headers, &runtime)?;
        let Query(q) =
            query.map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}")))?;
        if q.format.as_deref().unwrap_or("csv") != "csv" {
            return Err(ApiError::invalid("format", "`format` must be csv"));
        }
        let billing = billing(&state)?;
        let pages = ExportPages {
            ledger: billing.ledger.clone(),
            filter: q.filter(&caller, (billing.clock)())?,
            before: q.before,
            cursor: None,
            left: q.limit.unwrap_or(i64::MAX).max(1),
            header: true,
        };
        let body = futures_util::stream::unfold(pages, |mut pages| async move {
            let chunk = pages.next().await?;
            Some((chunk, pages))
        });
        let mut response = axum::body::Body::from_stream(body).into_response();
        let h = response.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        h.insert(
            http::header::CONTENT_DISPOSITION,
            http::HeaderValue::from_static("attachment; filename=\"bazaar-spend.csv\""),
        );
        Ok(response)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The export's position: the header, then pages of rows after a keyset cursor.
struct ExportPages {
    ledger: crate::billing::ledger::Ledger,
    filter: Filter,
    before: Option<i64>,
    cursor: Option<Cursor>,
    /// Rows still wanted (`limit`).
    left: i64,
    header: bool,
}

impl ExportPages {
    /// The next chunk of CSV; `None` once every row is out. A failed query ends the body
    /// with an error, which cuts the download (no final chunk) instead of ending it as if
    /// complete.
    async fn next(&mut self) -> Option<Result<bytes::Bytes, std::io::Error>> {
        if self.header {
            self.header = false;
            return Some(Ok(bytes::Bytes::from_static(CSV_HEADER.as_bytes())));
        }
        if self.left <= 0 {
            return None;
        }
        let page = self
            .ledger
            .calls_after(
                &self.filter,
                self.left.min(EXPORT_PAGE),
                self.before,
                self.cursor,
            )
            .await;
        match page {
            Ok(rows) => {
                let (id, last) = rows.last()?;
                self.cursor = Some(Cursor {
                    ts_ms: last.ts_ms,
                    id: *id,
                });
                self.left = if (rows.len() as i64) < EXPORT_PAGE {
                    0
                } else {
                    self.left.saturating_sub(rows.len() as i64)
                };
                let mut out = String::with_capacity(rows.len() * 256);
                for (id, r) in &rows {
                    csv_row(&mut out, *id, r);
                }
                Some(Ok(bytes::Bytes::from(out)))
            }
            Err(e) => {
                self.left = 0;
                tracing::warn!("A spend export failed part-way: {e}");
                Some(Err(std::io::Error::other("the ledger could not answer")))
            }
        }
    }
}

/// One ledger row as a CSV line, in `CSV_HEADER`'s order.
fn csv_row(out: &mut String, id: i64, r: &LedgerRow) {
    let fields = [
        id.to_string(),
        rfc3339(r.ts_ms),
        r.request_id.to_string(),
        r.key_name.to_string(),
        r.team.as_deref().unwrap_or_default().to_string(),
        r.route.to_string(),
        r.provider.to_string(),
        r.model.to_string(),
        r.tier.to_string(),
        r.endpoint.to_string(),
        r.input_tokens.to_string(),
        r.cached_input_tokens.to_string(),
        r.cache_write_tokens.to_string(),
        r.output_tokens.to_string(),
        r.reasoning_tokens.to_string(),
        r.cost_nanos.map(|c| c.to_string()).unwrap_or_default(),
        r.cost_nanos
            .map(|c| usd(c.max(0) as u64))
            .unwrap_or_default(),
        r.baseline_cost_nanos
            .map(|c| c.to_string())
            .unwrap_or_default(),
        r.estimated.any().to_string(),
        r.latency_ms.to_string(),
        r.ttft_ms.map(|t| t.to_string()).unwrap_or_default(),
        r.status.to_string(),
        r.error_type.as_deref().unwrap_or_default().to_string(),
        r.fallbacks.to_string(),
        r.catalog_version.to_string(),
        r.estimated.buckets().names().collect::<Vec<_>>().join(" "),
        r.key_id.to_string(),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push('\n');
}
