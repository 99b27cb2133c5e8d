//! One call's metering: from how it ended to its ledger row and cost. When the backend
//! reported no usage (or a stream was cut), the output actually sent is counted with a
//! tokenizer, the prompt is estimated from the request, and the row is marked `estimated`.

use std::time::Duration;

use serde_json::value::RawValue;

use super::cost::{cost_nanos, usd_number};
use super::ledger::LedgerRow;
use crate::api::openai::RawObject;
use crate::api::{ErrorLabel, Usage};
use crate::catalog::{Price, Tier};

/// Who and what a call is, known before any backend is called.
#[derive(Debug, Clone)]
pub struct CallMeter {
    pub ts_ms: i64,
    pub request_id: String,
    pub key_name: String,
    pub team: Option<String>,
    pub endpoint: &'static str,
    pub route: String,
    /// Markup in basis points for this caller.
    pub markup_bp: u32,
    /// Estimated prompt tokens, for calls whose backend reports no usage.
    pub prompt_tokens_estimate: u64,
}

/// The backend that served (or last failed) the call.
#[derive(Debug, Clone)]
pub struct ServedBy {
    pub provider: String,
    pub model: String,
    pub tier: Tier,
    pub price: Price,
    /// The savings reference's price (the route's frontier model).
    pub reference_price: Option<Price>,
}

/// How a call ended.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    pub usage: Option<Usage>,
    /// Output text sent (content, tool-call arguments, reasoning), counted when `usage`
    /// is `None`; may be left empty when `usage` is known.
    pub output_text: String,
    pub status: u16,
    pub error_type: Option<ErrorLabel>,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub fallbacks: u32,
}

impl CallMeter {
    /// The usage to bill: the backend's, or an estimate for a call that produced output
    /// or succeeded without a report.
    pub fn usage_for(&self, ending: &Ending) -> Usage {
        match ending.usage {
            Some(u) => u,
            None if ending.status < 400 || !ending.output_text.is_empty() => Usage {
                input: self.prompt_tokens_estimate,
                output: super::tokens::count(&ending.output_text),
                estimated: true,
                ..Default::default()
            },
            None => Usage::default(),
        }
    }

    /// The ledger row for this call and its cost in nano-dollars (`None`: price unknown).
    pub fn row(
        &self,
        served: Option<&ServedBy>,
        ending: &Ending,
        catalog_version: &str,
    ) -> (LedgerRow, Option<u64>) {
        let usage = self.usage_for(ending);
        let cost = match served {
            Some(s) => cost_nanos(&usage, &s.price, self.markup_bp),
            None => Some(0),
        };
        let baseline = served
            .and_then(|s| s.reference_price.as_ref())
            .and_then(|p| cost_nanos(&usage, p, 0));
        let row = LedgerRow {
            ts_ms: self.ts_ms,
            request_id: self.request_id.clone(),
            key_name: self.key_name.clone(),
            team: self.team.clone(),
            route: self.route.clone(),
            provider: served.map(|s| s.provider.clone()).unwrap_or_default(),
            model: served.map(|s| s.model.clone()).unwrap_or_default(),
            tier: served
                .map(|s| s.tier.as_str().to_string())
                .unwrap_or_default(),
            endpoint: self.endpoint.to_string(),
            input_tokens: usage.input as i64,
            cached_input_tokens: usage.cached_input as i64,
            cache_write_tokens: usage.cache_write as i64,
            output_tokens: usage.output as i64,
            reasoning_tokens: usage.reasoning as i64,
            cost_nanos: cost.map(|c| c as i64),
            baseline_cost_nanos: baseline.map(|c| c as i64).or(cost.map(|c| c as i64)),
            catalog_version: catalog_version.to_string(),
            estimated: usage.estimated,
            latency_ms: ending.latency.as_millis() as i64,
            ttft_ms: ending.ttft.map(|d| d.as_millis() as i64),
            status: i32::from(ending.status),
            error_type: ending.error_type.map(|l| l.as_str().to_string()),
            fallbacks: ending.fallbacks as i32,
        };
        (row, cost)
    }
}

/// Rewrites an OpenAI body (reply or chunk) so its `usage` object carries `cost` in USD,
/// as OpenRouter does; `None` when the body has no usage object.
pub fn with_usage_cost(body: &[u8], cost: Option<u64>) -> Option<Vec<u8>> {
    let fields = RawObject::parse(body).ok()?;
    let usage = fields.get("usage")?;
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(usage.get()).ok()?;
    map.insert(
        "cost".into(),
        cost.map(|c| serde_json::Value::Number(usd_number(c)))
            .unwrap_or(serde_json::Value::Null),
    );
    let raw = serde_json::value::to_raw_value(&map).ok()?;
    let model: String = fields
        .typed("model", "a string")
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 24);
    fields.write_with(&mut out, &model, &[("usage", &*raw as &RawValue)]);
    Some(out)
}

/// Appends the output text of one OpenAI body or chunk (`content`, `text`, tool-call
/// `arguments`, `reasoning_content`, `refusal` strings) to `out`, found without parsing
/// the whole body.
pub fn push_output_text(chunk: &[u8], out: &mut String) {
    for key in [
        &b"\"content\":"[..],
        &b"\"text\":"[..],
        &b"\"arguments\":"[..],
        &b"\"reasoning_content\":"[..],
        &b"\"refusal\":"[..],
    ] {
        let mut rest = chunk;
        while let Some(at) = memchr::memmem::find(rest, key) {
            rest = &rest[at + key.len()..];
            let trimmed = rest
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .map(|i| &rest[i..])
                .unwrap_or(&[]);
            if trimmed.first() == Some(&b'"') {
                let text = std::str::from_utf8(trimmed).unwrap_or("");
                if let Some(Ok(s)) = serde_json::Deserializer::from_str(text)
                    .into_iter::<std::borrow::Cow<str>>()
                    .next()
                {
                    out.push_str(&s);
                }
            }
        }
    }
}

/// The output text of one OpenAI body or chunk (see `push_output_text`).
pub fn output_text(chunk: &[u8]) -> String {
    let mut out = String::new();
    push_output_text(chunk, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_cost_is_injected_and_fields_kept() {
        let body = br#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"extra":1}"#;
        let out = with_usage_cost(body, Some(1_500_000)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["cost"], 0.0015);
        assert_eq!(v["usage"]["total_tokens"], 5);
        assert_eq!(v["extra"], 1);
        assert!(with_usage_cost(br#"{"id":"x"}"#, Some(1)).is_none());
    }

    #[test]
    fn output_text_is_taken_from_chunks() {
        assert_eq!(
            output_text(br#"{"choices":[{"index":0,"delta":{"content":"h\u00e9llo"}}]}"#),
            "héllo"
        );
        assert_eq!(
            output_text(br#"{"choices":[{"index":0,"delta":{"content":null}}]}"#),
            ""
        );
        assert_eq!(
            output_text(br#"{"choices":[{"text":"abc","index":0}]}"#),
            "abc"
        );
        assert_eq!(
            output_text(
                br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#
            ),
            "{\"city\":"
        );
    }

    #[test]
    fn missing_usage_is_estimated_and_flagged() {
        let meter = CallMeter {
            ts_ms: 0,
            request_id: "r".into(),
            key_name: "k".into(),
            team: None,
            endpoint: "chat",
            route: "m".into(),
            markup_bp: 0,
            prompt_tokens_estimate: 100,
        };
        let served = ServedBy {
            provider: "p".into(),
            model: "m".into(),
            tier: Tier::OpenHosted,
            price: Price::flat(1_000_000, 2_000_000),
            reference_price: Some(Price::flat(10_000_000, 20_000_000)),
        };
        // Ten tokens of output were sent before the stream was cut.
        let ending = Ending {
            usage: None,
            output_text: " hello".repeat(10),
            status: 502,
            ..Default::default()
        };
        let (row, cost) = meter.row(Some(&served), &ending, "v1");
        assert!(row.estimated);
        assert_eq!((row.input_tokens, row.output_tokens), (100, 10));
        assert_eq!(cost, Some(100_000 + 20_000));
        assert_eq!(row.baseline_cost_nanos, Some(1_000_000 + 200_000));
    }
}
