//! Edits of OpenAI bodies (replies and stream chunks) without parsing them whole: the
//! call's cost written into the `usage` block, as OpenRouter does. Wire format only: the
//! cost arrives already priced. A reply's top-level members are read once (`Members`):
//! the provider reads its usage from them, and where the usage object sits, so the
//! cost is spliced into the body's bytes without a second parse.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::openai::{RawObject, GATEWAY_FIELDS};

/// The top-level members of a JSON object as far as billing reads them, borrowed from
/// the body.
#[derive(Debug)]
pub struct Members<'a> {
    /// The last `usage` member's value (`null` included).
    pub usage: Option<&'a RawValue>,
    /// The last `error` member's value (`null` included).
    pub error: Option<&'a RawValue>,
    /// `usage` or `error` appears more than once.
    pub repeated: bool,
    len: usize,
    cost: bool,
    /// No duplicate `usage` or `model`, `model` a string, no gateway field, no escaped
    /// key: nothing the full rewrite would drop or normalise.
    plain: bool,
}

impl<'a> Members<'a> {
    /// The members of `text`; `None` when it is not one JSON object.
    pub fn of(text: &'a str) -> Option<Members<'a>> {
        serde_json::from_str(text).ok()
    }

    /// Where the call's cost can be spliced into `text` (whose members these are): the
    /// bytes of its `usage` object, when the body is plain and its usage is a plain,
    /// non-empty object with no `cost` of its own. `None`: the full rewrite applies.
    pub fn usage_range(&self, text: &str) -> Option<Range<usize>> {
        let usage = self.usage.filter(|_| self.plain)?;
        let inner = Members::of(usage.get())?;
        if !inner.plain || inner.len == 0 || inner.cost {
            return None;
        }
        let usage = usage.get();
        let start = (usage.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        let end = start + usage.len();
        (text.get(start..end) == Some(usage) && usage.ends_with('}')).then_some(start..end)
    }
}

/// A member's name: borrowed from the body, or unescaped (and so not plain).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Visit)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut m = Members {
                    usage: None,
                    error: None,
                    repeated: false,
                    len: 0,
                    cost: false,
                    plain: true,
                };
                let mut model = false;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    m.len += 1;
                    m.plain &= matches!(key, Cow::Borrowed(_));
                    match &*key {
                        "usage" => {
                            m.repeated |= m.usage.is_some();
                            m.plain &= m.usage.is_none();
                            m.usage = Some(map.next_value()?);
                        }
                        "error" => {
                            m.repeated |= m.error.is_some();
                            m.error = Some(map.next_value()?);
                        }
                        "model" => {
                            let value: &'de RawValue = map.next_value()?;
                            m.plain &= !model && value.get().starts_with('"');
                            model = true;
                        }
                        k => {
                            m.cost |= k == "cost";
                            m.plain &= !GATEWAY_FIELDS.contains(&k);
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Where a reply's `usage` object is in its body, as the provider's one read of the
/// reply found it (`Members::usage_range`). It holds the body it was found in, so it
/// never applies to another (a translated body, say).
#[derive(Debug, Clone)]
pub struct UsageAt {
    body: Bytes,
    range: Range<usize>,
}

impl UsageAt {
    pub fn new(body: &Bytes, range: Range<usize>) -> UsageAt {
        UsageAt {
            body: body.clone(),
            range,
        }
    }

    /// `body` with `cost_usd` spliced into its usage object, when `body` is the one this
    /// was found in (the same bytes: this handle keeps them alive, so the same address
    /// is the same body).
    pub fn splice(&self, body: &Bytes, cost_usd: Option<serde_json::Number>) -> Option<Vec<u8>> {
        let same = self.body.as_ptr() == body.as_ptr() && self.body.len() == body.len();
        if !same {
            return None;
        }
        splice_cost(body, self.range.clone(), cost_usd)
    }
}

/// `body` with `"cost": cost_usd` (`null` when unknown) added as the last member of the
/// object at `usage` (a range `Members::usage_range` gave); everything else is copied as
/// it came. Sized exactly, so the buffer becomes a `Bytes` without another allocation.
pub fn splice_cost(
    body: &[u8],
    usage: Range<usize>,
    cost_usd: Option<serde_json::Number>,
) -> Option<Vec<u8>> {
    let close = usage.end.checked_sub(1)?;
    if body.get(close) != Some(&b'}') {
        return None;
    }
    // A number is at most a few dozen bytes: written on the stack first, to size the body.
    let mut number = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut number[..]);
    match cost_usd {
        Some(c) => serde_json::to_writer(&mut cursor, &c).ok()?,
        None => std::io::Write::write_all(&mut cursor, b"null").ok()?,
    }
    let written = cursor.position() as usize;
    let number = &number[..written];
    const KEY: &[u8] = b",\"cost\":";
    let mut out = Vec::with_capacity(body.len() + KEY.len() + number.len());
    out.extend_from_slice(&body[..close]);
    out.extend_from_slice(KEY);
    out.extend_from_slice(number);
    out.extend_from_slice(&body[close..]);
    Some(out)
}

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
