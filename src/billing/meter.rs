//! One call's metering: from how it ended to its ledger row and cost. Every bucket the
//! backend reported is billed as reported; a bucket it did not report (no usage at all,
//! or a stream cut before its report was complete) is estimated — the prompt from the
//! request, output and reasoning by counting the text sent — and the row names those.

use memchr::memmem::Finder;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::cost::{cost_nanos, usd_number};
use super::ledger::{Estimated, LedgerRow};
use crate::api::openai::RawObject;
use crate::api::responses::reply::ResponsesUsage;
use crate::api::rewrite::{splice_cost, Members, UsageAt};
use crate::api::usage::Buckets;
use crate::api::{ErrorLabel, Usage};
use crate::catalog::{Price, Tier};
use crate::config::{Config, ProviderConfig};
use crate::telemetry::metrics::TargetSeries;

/// Who and what a call is, known before any backend is called.
#[derive(Debug, Clone)]
pub struct CallMeter {
    pub ts_ms: i64,
    pub request_id: Arc<str>,
    pub key_name: Arc<str>,
    /// `Caller::key_id`.
    pub key_id: Arc<str>,
    pub team: Option<Arc<str>>,
    pub endpoint: &'static str,
    pub route: Arc<str>,
    /// Markup in basis points for this caller.
    pub markup_bp: u32,
    /// Estimated prompt tokens, for calls whose backend reports no usage.
    pub prompt_tokens_estimate: u64,
}

/// The backend that served (or last failed) the call.
#[derive(Debug, Clone)]
pub struct ServedBy {
    pub provider: Arc<str>,
    pub model: Arc<str>,
    pub tier: Tier,
    pub price: Price,
    /// The savings reference's price (the route's frontier model).
    pub reference_price: Option<Price>,
    /// The backend's metric series, when the caller has them (else billing looks its
    /// series up by label).
    pub series: Option<Arc<TargetSeries>>,
}

/// How a call ended.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    /// The backend's report: complete, or a stream's running report whose `estimated`
    /// buckets it had not reported yet; `None` when it reported nothing.
    pub usage: Option<Usage>,
    /// Text sent (content, tool-call arguments, reasoning), counted for the buckets the
    /// backend did not report; may be left empty when `usage` is complete.
    pub sent: SentText,
    /// A backend answered (a reply, or a stream's first chunk): it took the prompt.
    pub answered: bool,
    pub status: u16,
    pub error_type: Option<ErrorLabel>,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub fallbacks: u32,
}

impl CallMeter {
    /// The usage to bill: every bucket the backend reported, as reported; the others
    /// estimated (the prompt from the request, output and reasoning from the text sent)
    /// and named in `estimated`. A call no backend answered, that sent nothing and
    /// failed, has none.
    pub fn usage_for(&self, ending: &Ending) -> Usage {
        let reported = match ending.usage {
            // A count no call can reach is the upstream's bug (or its attack on our
            // arithmetic), not usage: the call is counted as if it reported none.
            Some(u) if !plausible(&u) => {
                tracing::warn!(
                    request_id = %self.request_id,
                    "The backend reported an impossible token count; the call's usage is estimated instead."
                );
                Usage::default().lacking(Buckets::ALL)
            }
            Some(u) if u.is_reported() => return u,
            Some(u) => u,
            None if ending.answered || ending.status < 400 || !ending.sent.is_empty() => {
                Usage::default().lacking(Buckets::ALL)
            }
            None => return Usage::default(),
        };
        let lacking = reported.estimated;
        let mut usage = reported;
        // The prompt side is reported whole or not at all; its estimate is all input.
        if lacking.contains(Buckets::INPUT) {
            usage.input = self.prompt_tokens_estimate;
        }
        if lacking.contains(Buckets::CACHED_INPUT) {
            usage.cached_input = 0;
        }
        if lacking.contains(Buckets::CACHE_WRITE) {
            usage.cache_write = 0;
            usage.cache_write_1h = 0;
        }
        if lacking.intersects(Buckets::OUTPUT | Buckets::REASONING) {
            let (output, reasoning) = ending.sent.tokens();
            if lacking.contains(Buckets::OUTPUT) {
                usage.output = output;
            }
            if lacking.contains(Buckets::REASONING) {
                usage.reasoning = reasoning;
            }
        }
        usage
    }

    /// The ledger row for this call and its cost in nano-dollars (`None`: price unknown).
    /// The row shares the call's text (request id, key, team, route), the server's and
    /// the catalog version rather than copying them.
    pub fn row(
        &self,
        served: Option<ServedBy>,
        ending: &Ending,
        catalog_version: Arc<str>,
    ) -> (LedgerRow, Billed) {
        let usage = self.usage_for(ending);
        let cost = match &served {
            Some(s) => cost_nanos(&usage, &s.price, self.markup_bp),
            None => Some(0),
        };
        let baseline = served
            .as_ref()
            .and_then(|s| s.reference_price.as_ref())
            .and_then(|p| cost_nanos(&usage, p, 0));
        let tier = served
            .as_ref()
            .map(|s| Cow::Borrowed(s.tier.as_str()))
            .unwrap_or_default();
        let (provider, model) = served.map(|s| (s.provider, s.model)).unwrap_or_default();
        let row = LedgerRow {
            ts_ms: self.ts_ms,
            request_id: self.request_id.clone(),
            key_name: self.key_name.clone(),
            key_id: self.key_id.clone(),
            team: self.team.clone(),
            route: self.route.clone(),
            provider,
            model,
            tier,
            endpoint: Cow::Borrowed(self.endpoint),
            input_tokens: column(usage.input),
            cached_input_tokens: column(usage.cached_input),
            cache_write_tokens: column(usage.cache_write),
            output_tokens: column(usage.output),
            reasoning_tokens: column(usage.reasoning),
            cost_nanos: cost.map(column),
            baseline_cost_nanos: baseline.or(cost).map(column),
            catalog_version,
            estimated: Estimated::new(usage.estimated),
            latency_ms: ending.latency.as_millis() as i64,
            ttft_ms: ending.ttft.map(|d| d.as_millis() as i64),
            status: i32::from(ending.status),
            error_type: ending.error_type.map(|l| Cow::Borrowed(l.as_str())),
            fallbacks: ending.fallbacks as i32,
        };
        (row, Billed { usage, cost })
    }
}

/// The most tokens one bucket of one call can plausibly hold (about 4.3 billion): far
/// above any model's context or output, the same bound requests are held to.
const MAX_PLAUSIBLE_TOKENS: u64 = crate::api::openai::MAX_TOKENS_FIELD;

/// True when every bucket of a backend's report is a count a call could reach.
pub fn plausible(usage: &Usage) -> bool {
    [
        usage.input,
        usage.cached_input,
        usage.cache_write,
        usage.output,
        usage.reasoning,
    ]
    .iter()
    .all(|t| *t <= MAX_PLAUSIBLE_TOKENS)
}

/// A count as a ledger column (signed 64-bit), capped rather than wrapped.
fn column(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A local server with a running cost: that cost spread over its measured output rate
/// (prompt tokens free). `None` when it is not local or has no cost configured.
pub fn local_price(provider: &ProviderConfig, tokens_per_sec: f64) -> Option<Price> {
    let per_hour = provider.cost_per_hour_micros?;
    if provider.tier != Tier::Local || tokens_per_sec <= 0.0 {
        return None;
    }
    // micro-dollars per hour / tokens per hour × 1e6 tokens = micro-dollars per Mtok.
    let per_mtok = (per_hour as f64 / (tokens_per_sec * 3600.0) * 1e6).round() as u64;
    Some(Price {
        input: Some(0),
        cached_input: Some(0),
        cache_write: Some(0),
        cache_write_1h: Some(0),
        output: Some(per_mtok),
        reasoning: Some(per_mtok),
    })
}

/// The price of the route's reference frontier model (or the router's default
/// reference), against which savings are counted.
pub fn reference_price(config: &Config, route: &str) -> Option<Price> {
    let reference = config
        .route(route)
        .and_then(|r| r.reference.as_deref())
        .unwrap_or(&config.router.reference);
    price_of(config, reference)
}

/// `reference_price` of a call whose route names no reference of its own: the same for
/// every such call of one config, so worked out once per config.
pub fn default_reference_price(config: &Config) -> Option<Price> {
    price_of(config, &config.router.reference)
}

/// The price of `reference` (a served model, an alias or a catalog model id).
fn price_of(config: &Config, reference: &str) -> Option<Price> {
    let reference = config.canonical(reference);
    if let Some(target) = config
        .models
        .get(reference)
        .and_then(|t| t.iter().find(|t| t.facts.price.input.is_some()))
    {
        return Some(target.facts.price);
    }
    let (_, entry) = config.catalog.model(reference)?;
    entry
        .offers
        .iter()
        .find_map(|o| o.price.filter(|p| p.input.is_some()))
}

/// What a call was billed: its usage (the `estimated` buckets counted by the gateway)
/// and its cost in nano-dollars (`None`: the price is unknown). The client is shown the
/// same figures the ledger records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billed {
    pub usage: Usage,
    pub cost: Option<u64>,
}

impl Billed {
    /// The client's `usage` object in `shape`: the backend's own object (`reported`)
    /// when it reported every bucket, else the billed counts with `estimated: true`;
    /// either way with `cost` in USD (`null` when unknown). Both extra fields are ones
    /// OpenAI and Anthropic clients ignore.
    pub fn usage_json(
        &self,
        reported: Option<&RawValue>,
        shape: BodyShape,
    ) -> serde_json::Map<String, serde_json::Value> {
        self.usage_over(reported, || match shape {
            BodyShape::OpenAi => serde_json::to_value(self.usage.to_openai()),
            BodyShape::Anthropic => serde_json::to_value(self.usage.to_anthropic()),
        })
    }

    /// `usage_json` in the Responses API's shape (`input_tokens`, `output_tokens`,
    /// `total_tokens` and their details).
    pub fn responses_usage_json(
        &self,
        reported: Option<&RawValue>,
    ) -> serde_json::Map<String, serde_json::Value> {
        self.usage_over(reported, || {
            serde_json::to_value(ResponsesUsage::from_usage(&self.usage))
        })
    }

    fn usage_over(
        &self,
        reported: Option<&RawValue>,
        counts: impl FnOnce() -> serde_json::Result<serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut map: serde_json::Map<String, serde_json::Value> = reported
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or_default();
        if !self.usage.is_reported() || map.is_empty() {
            if let Ok(serde_json::Value::Object(counts)) = counts() {
                map.extend(counts);
            }
        }
        if !self.usage.is_reported() {
            map.insert("estimated".into(), serde_json::Value::Bool(true));
        }
        map.insert(
            "cost".into(),
            self.cost
                .map(|c| serde_json::Value::Number(usd_number(c)))
                .unwrap_or(serde_json::Value::Null),
        );
        map
    }
}

/// Rewrites a reply body in `shape` so its `usage` says what the call was billed (see
/// `Billed::usage_json`), adding it when the backend reported none; `None` when the
/// body is not a JSON object.
pub fn with_billed_usage(body: &[u8], billed: &Billed, shape: BodyShape) -> Option<Vec<u8>> {
    spliced_cost(body, billed).or_else(|| rewritten_usage(body, billed, shape))
}

/// `with_billed_usage` by parsing the body and writing it again with its new `usage`.
fn rewritten_usage(body: &[u8], billed: &Billed, shape: BodyShape) -> Option<Vec<u8>> {
    let fields = RawObject::parse(body).ok()?;
    let usage = billed.usage_json(fields.get("usage"), shape);
    with_usage(&fields, body.len(), &usage)
}

/// `with_billed_usage` for the common reply, without parsing and rewriting the body:
/// when the backend reported every bucket in a `usage` object (one, non-empty, with no
/// `cost` of its own) and the body has none of the fields the full rewrite drops or
/// normalises, the cost is spliced into the usage object's bytes and everything else is
/// copied as it came. `None`: the full rewrite applies.
fn spliced_cost(body: &[u8], billed: &Billed) -> Option<Vec<u8>> {
    if !billed.usage.is_reported() {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let usage = Members::of(text)?.usage_range(text)?;
    splice_cost(body, usage, billed.cost.map(usd_number))
}

/// `with_billed_usage` for a reply whose provider found its usage object (`usage_at`)
/// when it read the reply: the cost is spliced in there without reading the body again.
/// Any other reply (no such place, another body, usage the backend did not report in
/// full) takes `with_billed_usage`.
pub fn served_with_billed_usage(
    body: Bytes,
    usage_at: Option<&UsageAt>,
    billed: &Billed,
    shape: BodyShape,
) -> Bytes {
    let spliced = usage_at
        .filter(|_| billed.usage.is_reported())
        .and_then(|at| at.splice(&body, billed.cost.map(usd_number)));
    match spliced.or_else(|| with_billed_usage(&body, billed, shape)) {
        Some(out) => Bytes::from(out),
        None => body,
    }
}

/// `with_billed_usage` for a Responses API response object (a plain reply, or the
/// `response` of a stream's `response.completed`).
pub fn response_with_billed_usage(body: &[u8], billed: &Billed) -> Option<Vec<u8>> {
    let fields = RawObject::parse(body).ok()?;
    let usage = billed.responses_usage_json(fields.get("usage"));
    with_usage(&fields, body.len(), &usage)
}

fn with_usage(
    fields: &RawObject,
    len: usize,
    usage: &serde_json::Map<String, serde_json::Value>,
) -> Option<Vec<u8>> {
    let raw = serde_json::value::to_raw_value(usage).ok()?;
    let model: String = fields
        .typed("model", "a string")
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(len + 64);
    fields.write_with(&mut out, &model, &[("usage", &*raw as &RawValue)]);
    Some(out)
}

/// The wire shape of bodies and chunks whose text is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyShape {
    /// OpenAI's: `content`, `text`, tool-call `arguments`, `refusal` are output;
    /// `reasoning_content` is reasoning.
    OpenAi,
    /// Anthropic Messages: `text`, tool-use `input` (or its `partial_json` fragments) are
    /// output; `thinking` is reasoning.
    Anthropic,
}

/// Text sent to the client, by the bucket it would be billed in, for counting what the
/// backend did not report. Only the start of each text is kept (what the tokenizer
/// counts exactly, `tokens::EXACT_BYTES`) with the length of the whole, so a reply of
/// any size costs the same memory and counting time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentText {
    /// The start of the output text.
    pub output: String,
    /// The start of the reasoning text.
    pub reasoning: String,
    /// Bytes of output text in all (at least `output`'s length when set by hand).
    pub output_bytes: u64,
    pub reasoning_bytes: u64,
    /// The token counts (output, reasoning), once made by `count_off_worker`.
    pub counted: Option<(u64, u64)>,
}

impl SentText {
    /// The text of one whole body.
    pub fn of(shape: BodyShape, body: &[u8]) -> SentText {
        let mut sent = SentText::default();
        sent.push(shape, body);
        sent
    }

    pub fn is_empty(&self) -> bool {
        self.output.is_empty()
            && self.reasoning.is_empty()
            && self.output_bytes == 0
            && self.reasoning_bytes == 0
    }

    /// The tokens of the output and reasoning text: as counted off the workers if they
    /// were, else counted here (bounded work: the heads only).
    pub fn tokens(&self) -> (u64, u64) {
        self.counted.unwrap_or_else(|| self.count())
    }

    fn count(&self) -> (u64, u64) {
        (
            super::tokens::count_head(&self.output, self.output_bytes),
            super::tokens::count_head(&self.reasoning, self.reasoning_bytes),
        )
    }

    /// Counts the text on tokio's blocking pool, off the async workers (the tokenizer's
    /// first use loads it, ≈ 75 ms in a release build, and each count is CPU work), so a
    /// reply without usage never holds up other requests. A count that fails (its
    /// thread panicked) is replaced by 4 bytes a token; either way the row is written,
    /// flagged estimated. Nothing to count: no thread is used.
    pub async fn count_off_worker(&mut self) {
        if self.counted.is_some() || self.is_empty() {
            return;
        }
        let heads = SentText {
            counted: None,
            ..self.clone()
        };
        let counted = tokio::task::spawn_blocking(move || heads.count())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("Counting a reply's tokens failed; estimating 4 bytes a token: {e}");
                (
                    self.output_bytes.max(self.output.len() as u64).div_ceil(4),
                    self.reasoning_bytes
                        .max(self.reasoning.len() as u64)
                        .div_ceil(4),
                )
            });
        self.counted = Some(counted);
    }

    /// Appends the text of one body or chunk in `shape`, found without parsing the
    /// whole of it.
    pub fn push(&mut self, shape: BodyShape, chunk: &[u8]) {
        let (output, reasoning) = match shape {
            BodyShape::OpenAi => (&KEYS.openai_output[..], &KEYS.openai_reasoning[..]),
            BodyShape::Anthropic => (&KEYS.anthropic_output[..], &KEYS.anthropic_reasoning[..]),
        };
        for key in output {
            push_values(chunk, key, &mut self.output, &mut self.output_bytes);
        }
        for key in reasoning {
            push_values(chunk, key, &mut self.reasoning, &mut self.reasoning_bytes);
        }
        // A count made earlier no longer covers the text.
        self.counted = None;
    }
}

/// The keys whose values `SentText` collects, each searcher built once (building one is
/// dearer than a search through a small chunk).
struct TextKeys {
    openai_output: [Finder<'static>; 4],
    openai_reasoning: [Finder<'static>; 1],
    anthropic_output: [Finder<'static>; 3],
    anthropic_reasoning: [Finder<'static>; 1],
}

static KEYS: std::sync::LazyLock<TextKeys> = std::sync::LazyLock::new(|| TextKeys {
    openai_output: [
        Finder::new(b"\"content\":"),
        Finder::new(b"\"text\":"),
        Finder::new(b"\"arguments\":"),
        Finder::new(b"\"refusal\":"),
    ],
    openai_reasoning: [Finder::new(b"\"reasoning_content\":")],
    anthropic_output: [
        Finder::new(b"\"text\":"),
        Finder::new(b"\"partial_json\":"),
        Finder::new(b"\"input\":"),
    ],
    anthropic_reasoning: [Finder::new(b"\"thinking\":")],
});

/// Adds `text` to a kept head (up to `tokens::EXACT_BYTES`) and to the running length.
fn keep(head: &mut String, total: &mut u64, text: &str) {
    *total = total.saturating_add(text.len() as u64);
    let room = super::tokens::EXACT_BYTES.saturating_sub(head.len());
    if room > 0 {
        head.push_str(&text[..super::tokens::floor_boundary(text, room)]);
    }
}

/// Appends every value of `key` in `chunk`: a string's text, or an object's JSON (a
/// tool-use `input`); other values are skipped.
fn push_values(chunk: &[u8], key: &Finder<'static>, out: &mut String, total: &mut u64) {
    let mut rest = chunk;
    while let Some(at) = key.find(rest) {
        rest = &rest[at + key.needle().len()..];
        let trimmed = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|i| &rest[i..])
            .unwrap_or(&[]);
        match trimmed.first() {
            Some(b'"') => {
                if let Some(Ok(s)) = serde_json::Deserializer::from_slice(trimmed)
                    .into_iter::<std::borrow::Cow<str>>()
                    .next()
                {
                    keep(out, total, &s);
                }
            }
            Some(b'{') => {
                // A tool-use block opens with `"input":{}`; its arguments follow as fragments.
                if let Some(Ok(v)) = serde_json::Deserializer::from_slice(trimmed)
                    .into_iter::<&RawValue>()
                    .next()
                {
                    if v.get() != "{}" {
                        keep(out, total, v.get());
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spliced_cost_says_what_the_full_rewrite_says() {
        let billed = |cost| Billed {
            usage: Usage {
                input: 3,
                output: 2,
                ..Default::default()
            },
            cost,
        };
        let bodies: [&[u8]; 11] = [
            br#"{"id":"x","model":"m","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            br#"{"us\u0061ge":{"a":1},"model":"m"}"#,
            br#"{"usage":{"a":1},"model":"m","error":null}"#,
            br#"{ "usage" : { "prompt_tokens" : 3 } , "model" : "m", "choices": [{"message":{"content":"usage"}}] }"#,
            br#"{"usage":{"prompt_tokens":3,"cost":0.5},"model":"m"}"#,
            br#"{"usage":{},"model":"m"}"#,
            br#"{"usage":{"a":1},"usage":{"b":2},"model":"m"}"#,
            br#"{"usage":{"a":1},"model":"m","provider":"OpenAI"}"#,
            br#"{"usage":{"a":1},"model":null}"#,
            br#"{"usage":{"a":1},"model":"m"}"#,
            br#"{"usage":null,"model":"m"}"#,
        ];
        for body in bodies {
            for cost in [Some(1_500_000), None] {
                let b = billed(cost);
                let fast = with_billed_usage(body, &b, BodyShape::OpenAi)
                    .map(|o| serde_json::from_slice::<serde_json::Value>(&o).unwrap());
                let full = rewritten_usage(body, &b, BodyShape::OpenAi)
                    .map(|o| serde_json::from_slice::<serde_json::Value>(&o).unwrap());
                assert_eq!(fast, full, "{}", String::from_utf8_lossy(body));
                // Where the provider's one read found the usage, the splice writes the same bytes.
                let body = Bytes::copy_from_slice(body);
                let text = std::str::from_utf8(&body).unwrap();
                let at = Members::of(text)
                    .and_then(|m| m.usage_range(text))
                    .map(|r| UsageAt::new(&body, r));
                let served =
                    served_with_billed_usage(body.clone(), at.as_ref(), &b, BodyShape::OpenAi);
                let spliced =
                    with_billed_usage(&body, &b, BodyShape::OpenAi).unwrap_or(body.to_vec());
                assert_eq!(served, spliced, "{text}");
                // Never into another body, however alike.
                if let Some(at) = &at {
                    let copy = Bytes::copy_from_slice(&body);
                    assert!(at.splice(&copy, None).is_none());
                    assert!(at.splice(&body, None).is_some());
                }
            }
        }
        // The common reply takes the splice: the body's bytes are kept around the cost.
        let body = br#"{"id":"x", "model":"m","usage":{"prompt_tokens":3} ,"z":1}"#;
        assert_eq!(
            spliced_cost(body, &billed(Some(1_500_000))).unwrap(),
            br#"{"id":"x", "model":"m","usage":{"prompt_tokens":3,"cost":0.0015} ,"z":1}"#
        );
        assert!(
            spliced_cost(
                br#"{"usage":{"prompt_tokens":3,"cost":0.5},"model":"m"}"#,
                &billed(None)
            )
            .is_none(),
            "a cost of the upstream's own is replaced by the full rewrite"
        );
    }

    #[test]
    fn billed_usage_is_written_into_replies_of_both_shapes() {
        let reported = Billed {
            usage: Usage {
                input: 3,
                output: 2,
                ..Default::default()
            },
            cost: Some(1_500_000),
        };
        // A reported usage object is kept whole, with the cost added.
        let body = br#"{"id":"x","model":"m","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"extra":7}}"#;
        let out = with_billed_usage(body, &reported, BodyShape::OpenAi).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["extra"], 7);
        assert_eq!(v["usage"]["cost"], 0.0015);
        assert!(v["usage"].get("estimated").is_none());
        // No usage reported: the billed counts, marked estimated.
        let estimated = Billed {
            usage: Usage {
                input: 19,
                output: 15,
                reasoning: 10,
                estimated: Buckets::ALL,
                ..Default::default()
            },
            cost: None,
        };
        let out =
            with_billed_usage(br#"{"id":"x","model":"m"}"#, &estimated, BodyShape::OpenAi).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["prompt_tokens"], 19);
        assert_eq!(v["usage"]["completion_tokens"], 25);
        assert_eq!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"],
            10
        );
        assert_eq!(v["usage"]["estimated"], true);
        assert!(
            v["usage"]["cost"].is_null(),
            "an unknown price is null, never 0"
        );
        let body = br#"{"id":"m","type":"message","model":"c","usage":{"input_tokens":0,"output_tokens":0}}"#;
        let out = with_billed_usage(body, &estimated, BodyShape::Anthropic).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (
                v["usage"]["input_tokens"].as_u64(),
                v["usage"]["output_tokens"].as_u64()
            ),
            (Some(19), Some(25))
        );
        assert_eq!(v["type"], "message");
        // A Responses object: its own usage shape, with the cost.
        let body = br#"{"id":"resp_1","object":"response","model":"m","output":[]}"#;
        let out = response_with_billed_usage(body, &estimated).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["input_tokens"], 19);
        assert_eq!(v["usage"]["output_tokens"], 25);
        assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 10);
        assert_eq!(v["usage"]["total_tokens"], 44);
        assert_eq!(v["usage"]["estimated"], true);
        assert!(v["usage"]["cost"].is_null());
        assert_eq!(v["object"], "response");
        let body = br#"{"id":"resp_1","object":"response","usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}}"#;
        let out = response_with_billed_usage(body, &reported).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["total_tokens"], 5);
        assert_eq!(v["usage"]["cost"], 0.0015);
        assert!(v["usage"].get("estimated").is_none());
    }

    fn text(shape: BodyShape, chunk: &[u8]) -> SentText {
        SentText::of(shape, chunk)
    }

    fn output(s: &str) -> SentText {
        SentText {
            output: s.into(),
            output_bytes: s.len() as u64,
            ..Default::default()
        }
    }

    #[test]
    fn sent_text_is_taken_from_openai_chunks() {
        let openai = BodyShape::OpenAi;
        assert_eq!(
            text(
                openai,
                br#"{"choices":[{"index":0,"delta":{"content":"h\u00e9llo"}}]}"#
            ),
            output("héllo")
        );
        assert!(text(
            openai,
            br#"{"choices":[{"index":0,"delta":{"content":null}}]}"#
        )
        .is_empty());
        assert_eq!(
            text(openai, br#"{"choices":[{"text":"abc","index":0}]}"#),
            output("abc")
        );
        assert_eq!(
            text(
                openai,
                br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#
            ),
            output("{\"city\":")
        );
        let reasoning = text(
            openai,
            br#"{"choices":[{"index":0,"delta":{"reasoning_content":"think","content":"say"}}]}"#,
        );
        assert_eq!(
            (&*reasoning.output, &*reasoning.reasoning),
            ("say", "think")
        );
    }

    #[test]
    fn sent_text_is_taken_from_anthropic_events_and_replies() {
        let anthropic = BodyShape::Anthropic;
        let thinking = text(
            anthropic,
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Six times\"}}\n\n",
        );
        assert_eq!((&*thinking.output, &*thinking.reasoning), ("", "Six times"));
        let start = text(
            anthropic,
            br#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
        );
        assert!(start.is_empty(), "{start:?}");
        assert_eq!(
            text(
                anthropic,
                br#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}"#
            ),
            output("{\"city\":")
        );
        let reply = text(
            anthropic,
            br#"{"id":"m","type":"message","content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"text","text":"Hi"},{"type":"tool_use","id":"t","name":"f","input":{"city":"Paris"}}],"usage":{"input_tokens":1,"output_tokens":2}}"#,
        );
        assert_eq!(reply.output, r#"Hi{"city":"Paris"}"#);
        assert_eq!(reply.reasoning, "hm");
    }

    /// A call whose prompt is estimated at 100 tokens.
    fn meter() -> CallMeter {
        CallMeter {
            ts_ms: 0,
            request_id: "r".into(),
            key_name: "k".into(),
            key_id: "config:k".into(),
            team: None,
            endpoint: "chat",
            route: "m".into(),
            markup_bp: 0,
            prompt_tokens_estimate: 100,
        }
    }

    #[test]
    fn missing_usage_is_estimated_and_flagged() {
        let meter = meter();
        let served = ServedBy {
            provider: "p".into(),
            model: "m".into(),
            tier: Tier::OpenHosted,
            price: Price::flat(1_000_000, 2_000_000),
            reference_price: Some(Price::flat(10_000_000, 20_000_000)),
            series: None,
        };
        // Ten tokens of output were sent before the stream was cut.
        let ending = Ending {
            usage: None,
            sent: output(&" hello".repeat(10)),
            answered: true,
            status: 502,
            ..Default::default()
        };
        let (row, Billed { cost, .. }) = meter.row(Some(served), &ending, "v1".into());
        assert_eq!(row.estimated.buckets(), Buckets::ALL);
        assert_eq!((row.input_tokens, row.output_tokens), (100, 10));
        assert_eq!(cost, Some(100_000 + 20_000));
        assert_eq!(row.baseline_cost_nanos, Some(1_000_000 + 200_000));
        // A call no backend answered, that sent nothing, has no usage.
        let refused = Ending {
            status: 502,
            ..Default::default()
        };
        assert_eq!(meter.usage_for(&refused), Usage::default());
    }

    #[test]
    fn reported_buckets_are_billed_as_reported_and_the_rest_estimated() {
        let meter = meter();
        // Anthropic's message_start said 25 input, 400 cache reads, 100 cache writes;
        // the stream was cut before message_delta reported the output.
        let running = Usage {
            input: 25,
            cached_input: 400,
            cache_write: 100,
            ..Default::default()
        }
        .lacking(Buckets::COMPLETION);
        let ending = Ending {
            usage: Some(running),
            sent: SentText {
                output: " hello".repeat(10),
                reasoning: " think".repeat(4),
                ..Default::default()
            },
            answered: true,
            status: 502,
            ..Default::default()
        };
        let u = meter.usage_for(&ending);
        assert_eq!(
            (
                u.input,
                u.cached_input,
                u.cache_write,
                u.output,
                u.reasoning
            ),
            (25, 400, 100, 10, 4)
        );
        assert_eq!(u.estimated, Buckets::COMPLETION);
        // A complete report is taken whole, whatever text was sent.
        let complete = Usage {
            input: 3,
            output: 2,
            ..Default::default()
        };
        let ending = Ending {
            usage: Some(complete),
            ..ending
        };
        assert_eq!(meter.usage_for(&ending), complete);
    }
}
