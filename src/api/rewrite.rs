//! Edits of OpenAI bodies (replies and stream chunks) without parsing them whole: the
//! call's cost written into the `usage` block, as OpenRouter does. Wire format only: the
//! cost arrives already priced.

use serde_json::value::RawValue;

use super::openai::RawObject;

/// Rewrites an OpenAI body so its `usage` object carries `cost` (USD, `null` when the
/// price is unknown); `None` when the body has no usage object.
pub fn with_usage_cost(body: &[u8], cost_usd: Option<serde_json::Number>) -> Option<Vec<u8>> {
    let fields = RawObject::parse(body).ok()?;
    let usage = fields.get("usage")?;
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(usage.get()).ok()?;
    map.insert(
        "cost".into(),
        cost_usd
            .map(serde_json::Value::Number)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_cost_is_injected_and_fields_kept() {
        let body = br#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"extra":1}"#;
        let cost = serde_json::Number::from_f64(0.0015);
        let out = with_usage_cost(body, cost.clone()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["cost"], 0.0015);
        assert_eq!(v["usage"]["total_tokens"], 5);
        assert_eq!(v["extra"], 1);
        assert!(with_usage_cost(br#"{"id":"x"}"#, cost).is_none());
        let unknown = with_usage_cost(body, None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&unknown).unwrap();
        assert!(v["usage"]["cost"].is_null());
    }
}
