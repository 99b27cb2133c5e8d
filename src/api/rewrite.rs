//! Edits of OpenAI bodies (replies and stream chunks) without parsing them whole: the
//! call's cost written into the `usage` block, as OpenRouter does. Wire format only: the
//! cost arrives already priced. A reply's top-level members are read once (`Members`):
//! the provider reads its usage from them, and where the usage object sits, so the
//! cost is spliced into the body's bytes without a second parse. The members are read by
//! a validating scan of the text (`scan_members`), which hands anything it does not
//! read plainly to serde_json, so what is accepted and read is serde_json's answer.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::openai::{RawObject, GATEWAY_FIELDS};
use super::responses::scan::value_end;
use super::usage::{CompletionDetails, OpenAiUsage, PromptDetails};
use super::valid::{self, members, once};

/// The top-level members of a JSON object as far as billing reads them, borrowed from
/// the body.
#[derive(Debug, PartialEq, Eq)]
pub struct Members<'a> {
    /// The text of the last `usage` member's value (`null` included).
    pub usage: Option<&'a str>,
    /// The text of the last `error` member's value (`null` included).
    pub error: Option<&'a str>,
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
        scan_members(text).or_else(|| serde_json::from_str(text).ok())
    }

    fn new() -> Members<'a> {
        Members {
            usage: None,
            error: None,
            repeated: false,
            len: 0,
            cost: false,
            plain: true,
        }
    }

    /// Notes member `key` (unescaped; `borrowed` when written without escapes) with the
    /// text of its value.
    fn member(&mut self, key: &str, borrowed: bool, value: &'a str, model_seen: &mut bool) {
        self.len += 1;
        self.plain &= borrowed;
        match key {
            "usage" => {
                self.repeated |= self.usage.is_some();
                self.plain &= self.usage.is_none();
                self.usage = Some(value);
            }
            "error" => {
                self.repeated |= self.error.is_some();
                self.error = Some(value);
            }
            "model" => {
                self.plain &= !*model_seen && value.starts_with('"');
                *model_seen = true;
            }
            k => {
                self.cost |= k == "cost";
                self.plain &= !GATEWAY_FIELDS.contains(&k);
            }
        }
    }

    /// Where the call's cost can be spliced into `text` (whose members these are): the
    /// bytes of its `usage` object, when the body is plain and its usage is a plain,
    /// non-empty object with no `cost` of its own. `None`: the full rewrite applies.
    pub fn usage_range(&self, text: &str) -> Option<Range<usize>> {
        let inner = Members::of(self.usage.filter(|_| self.plain)?)?;
        if !inner.plain || inner.len == 0 || inner.cost {
            return None;
        }
        self.usage_span(text)
    }

    /// `usage_range` for a usage object already found spliceable (`PlainUsage`).
    pub fn usage_span(&self, text: &str) -> Option<Range<usize>> {
        let usage = self.usage.filter(|_| self.plain)?;
        let start = (usage.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        let end = start + usage.len();
        (text.get(start..end) == Some(usage) && usage.ends_with('}')).then_some(start..end)
    }
}

/// A reply's `usage` object read in one pass: its counts as serde reads `OpenAiUsage`,
/// and whether the call's cost can be spliced into it (what `Members::usage_range` asks
/// of the object itself), without reading it once for each.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainUsage {
    pub usage: OpenAiUsage,
    /// A non-empty object with no `cost`, nothing the full rewrite would change.
    pub spliceable: bool,
}

impl PlainUsage {
    /// Reads `text`, an object already found valid JSON (the reply's `usage` member as
    /// its scan handed it on). `None` unless every member `OpenAiUsage` reads (and every
    /// member of its details objects) is `null` or an integer written plainly (digits, no
    /// sign, no leading zero, within 64 bits), none of them is given twice and no key is
    /// escaped: anything else is left to serde, whose answer then stands
    /// (property-tested against serde below).
    pub fn read(text: &str) -> Option<PlainUsage> {
        // Which of `OpenAiUsage`'s members were given, a bit each (a repeat is serde's
        // `duplicate field` error).
        let mut seen = 0u8;
        let mut usage = OpenAiUsage::default();
        let mut m = Members::new();
        let mut model = false;
        let b = text.as_bytes();
        let end = members(text, 0, |key, at| {
            let (bit, slot) = match key {
                "prompt_tokens" => (0, &mut usage.prompt_tokens),
                "completion_tokens" => (1, &mut usage.completion_tokens),
                "total_tokens" => (2, &mut usage.total_tokens),
                "cache_creation_input_tokens" => (3, &mut usage.cache_creation_input_tokens),
                "prompt_cache_hit_tokens" => (4, &mut usage.prompt_cache_hit_tokens),
                "cached_tokens" => (5, &mut usage.cached_tokens),
                "prompt_tokens_details" => {
                    once(&mut seen, 6)?;
                    let (found, end) = details(text, at, "cached_tokens")?;
                    usage.prompt_tokens_details =
                        found.map(|cached_tokens| PromptDetails { cached_tokens });
                    m.member(key, true, "", &mut model);
                    return Some(end);
                }
                "completion_tokens_details" => {
                    once(&mut seen, 7)?;
                    let (found, end) = details(text, at, "reasoning_tokens")?;
                    usage.completion_tokens_details =
                        found.map(|reasoning_tokens| CompletionDetails { reasoning_tokens });
                    m.member(key, true, "", &mut model);
                    return Some(end);
                }
                _ => {
                    let end = value_end(b, at)?;
                    m.member(key, true, text.get(at..end)?, &mut model);
                    return Some(end);
                }
            };
            once(&mut seen, bit)?;
            let (value, end) = count(b, at)?;
            *slot = value;
            m.member(key, true, "", &mut model);
            Some(end)
        })?;
        (end == text.len()).then_some(PlainUsage {
            usage,
            spliceable: m.plain && m.len > 0 && !m.cost,
        })
    }
}

/// The count at byte `at` of valid JSON `b` as `PlainUsage::read` takes it (`null`, or
/// digits without a leading zero that fit in 64 bits), and where it ends; `None` for
/// anything else.
fn count(b: &[u8], at: usize) -> Option<(Option<u64>, usize)> {
    if b.get(at..at + 4) == Some(&b"null"[..]) {
        return Some((None, at + 4));
    }
    let mut n = 0u64;
    let mut i = at;
    while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        i += 1;
    }
    let leading_zero = b.get(at) == Some(&b'0') && i > at + 1;
    // Valid JSON: a number that goes on past its digits has a fraction or an exponent.
    let more = matches!(b.get(i), Some(b'.' | b'e' | b'E'));
    (i > at && !leading_zero && !more).then_some((Some(n), i))
}

/// A details object at byte `at` of `text` (`null`, or an object whose member `name` is
/// a count as `count` takes it, given at most once, the others ignored) and where it
/// ends: `None` for `null`, else its `name`.
fn details(text: &str, at: usize, name: &str) -> Option<(Option<Option<u64>>, usize)> {
    let b = text.as_bytes();
    if b.get(at..at + 4) == Some(&b"null"[..]) {
        return Some((None, at + 4));
    }
    let (mut found, mut given) = (None, false);
    let end = members(text, at, |key, at| {
        if key != name {
            return value_end(b, at);
        }
        if std::mem::replace(&mut given, true) {
            return None;
        }
        let (value, end) = count(b, at)?;
        found = value;
        Some(end)
    })?;
    Some((Some(found), end))
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
                let mut m = Members::new();
                let mut model = false;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let borrowed = matches!(key, Cow::Borrowed(_));
                    let value = match &*key {
                        "usage" | "error" | "model" => map.next_value::<&'de RawValue>()?.get(),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            ""
                        }
                    };
                    m.member(&key, borrowed, value, &mut model);
                }
                Ok(m)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The members of `text` read by `valid::object`; `None` for anything it does not read
/// plainly, which serde_json then reads or refuses (property-tested against serde below).
fn scan_members(text: &str) -> Option<Members<'_>> {
    let mut m = Members::new();
    let mut model = false;
    valid::object(text, 128, |key, value| {
        m.member(key, true, value, &mut model);
        Some(())
    })?;
    Some(m)
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

    /// What serde_json alone reads of `text`.
    fn by_serde(text: &str) -> Option<Members<'_>> {
        serde_json::from_str(text).ok()
    }

    #[test]
    fn a_reply_is_scanned_as_serde_reads_it() {
        let reply = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\"\n\u00e9","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0}},"system_fingerprint":"fp"}"#;
        let scanned = scan_members(reply).unwrap();
        assert_eq!(Some(&scanned), by_serde(reply).as_ref());
        assert!(scanned.usage.unwrap().starts_with(r#"{"prompt_tokens":3"#));
        assert!(scanned.usage_range(reply).is_some());
        for text in [
            "{}",
            " { } ",
            r#"{"usage":null,"error":{"message":"x"}}"#,
            r#"{"usage":{},"usage":{"a":1}}"#,
            r#"{"model":1,"cost":2,"bazaar":[-0.5e+3,1E2,0,true,false,null,[],[{}]]}"#,
        ] {
            assert_eq!(scan_members(text), by_serde(text), "{text}");
            assert!(scan_members(text).is_some(), "{text}");
        }
        // Not JSON, or not read plainly: left to serde.
        for text in [
            "",
            "{",
            "[]",
            "{} x",
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12g4"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"\u0061":1}"#,
            r#"{"a":tru}"#,
            r#"{"a":[}"#,
            r#"{"a" 1}"#,
        ] {
            assert_eq!(scan_members(text), None, "{text}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(129), "]".repeat(129));
        assert_eq!(scan_members(&deep), None);
        assert!(Members::of(&deep).is_some());
    }

    #[test]
    fn a_usage_object_is_read_once_or_left_to_serde() {
        let usage = r#"{"completion_tokens":11,"completion_tokens_details":{"reasoning_tokens":0},"prompt_tokens":25,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":36}"#;
        let plain = PlainUsage::read(usage).unwrap();
        assert_eq!(
            plain.usage,
            serde_json::from_str::<OpenAiUsage>(usage).unwrap()
        );
        assert!(plain.spliceable);
        let reply = format!(r#"{{"id":"c","model":"m","usage":{usage}}}"#);
        let members = Members::of(&reply).unwrap();
        assert_eq!(members.usage_span(&reply), members.usage_range(&reply));
        assert!(members.usage_range(&reply).is_some());
        for (text, spliceable) in [
            ("{}", false),
            (r#"{"prompt_tokens":1,"cost":0.1}"#, false),
            (r#"{"prompt_tokens":1,"provider":"x"}"#, false),
            (
                r#"{"prompt_tokens":null,"prompt_tokens_details":null}"#,
                true,
            ),
            (
                r#"{"prompt_tokens_details":{"cached_tokens":null,"x":[1,{"cached_tokens":1}]}}"#,
                true,
            ),
            (r#"{"total_tokens":18446744073709551615}"#, true),
        ] {
            let plain = PlainUsage::read(text).unwrap();
            assert_eq!(Some(plain.usage), serde_json::from_str(text).ok(), "{text}");
            assert_eq!(plain.spliceable, spliceable, "{text}");
        }
        // Left to serde: what it reads otherwise, or refuses.
        for text in [
            r#"{"prompt_tokens":1,"prompt_tokens":1}"#,
            r#"{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":2}}"#,
            r#"{"prompt_tokens_details":{},"prompt_tokens_details":{}}"#,
            r#"{"prompt_tokens":-0}"#,
            r#"{"prompt_tokens":1.0}"#,
            r#"{"prompt_tokens":1e2}"#,
            r#"{"prompt_tokens":01}"#,
            r#"{"prompt_tokens":"1"}"#,
            r#"{"prompt_tokens":18446744073709551616}"#,
            r#"{"prompt\u005ftokens":1}"#,
            r#"{"prompt_tokens_details":[1]}"#,
            r#"{"prompt_tokens_details":{"cached\u005ftokens":1}}"#,
            "[1,2]",
            "null",
        ] {
            assert_eq!(PlainUsage::read(text), None, "{text}");
        }
    }

    mod scanned {
        use super::*;
        use crate::api::valid::tests::json;
        use proptest::prelude::*;

        /// `members` written as an object, keys possibly repeated, with whitespace
        /// after structural characters when `wide`.
        fn written(members: &[(String, serde_json::Value)], wide: bool) -> String {
            let sep = if wide { " \n\t" } else { "" };
            let mut text = format!("{{{sep}");
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    text.push_str(&format!(",{sep}"));
                }
                let v = if wide {
                    serde_json::to_string_pretty(v)
                } else {
                    serde_json::to_string(v)
                };
                text.push_str(&format!(
                    "{}:{sep}{}",
                    serde_json::to_string(k).unwrap(),
                    v.unwrap()
                ));
            }
            text.push('}');
            text
        }

        /// A usage member's value: counts of every form, `null`, other scalars, and
        /// details objects of counts.
        fn usage_value() -> impl Strategy<Value = serde_json::Value> {
            use serde_json::Value;
            let count = prop_oneof![
                any::<u64>().prop_map(Value::from),
                (0u64..100).prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                (-1e3f64..1e3).prop_map(Value::from),
                Just(Value::Null),
                Just(Value::from("7")),
                Just(Value::from(true)),
            ];
            let details = prop::collection::vec(
                ("cached_tokens|reasoning_tokens|[a-z]{0,2}", count.clone()),
                0..3,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect()));
            prop_oneof![4 => count, 2 => details, 1 => json()]
        }

        /// A usage member's key as JSON text: the names read, escaped or not, and others.
        fn hostile_key() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                r#""prompt_tokens""#,
                r#""completion_tokens""#,
                r#""total_tokens""#,
                r#""cached_tokens""#,
                r#""prompt_cache_hit_tokens""#,
                r#""cache_creation_input_tokens""#,
                r#""prompt_tokens_details""#,
                r#""completion_tokens_details""#,
                r#""prompt\u005ftokens""#,
                r#""\u0070rompt_tokens_details""#,
                r#""pr\u00f6mpt_tokens""#,
                "\"pr\u{f6}mpt_tokens\"",
                "\"\u{1F600}\"",
                r#""\ud83d\ude00""#,
                r#""cost""#,
                r#""model""#,
                r#""usage""#,
                r#""bazaar""#,
                r#""""#,
            ])
            .prop_map(str::to_string)
        }

        /// A usage member's value as JSON text: counts of every hostile form, details
        /// objects of them, and deep or odd values.
        fn hostile_value() -> impl Strategy<Value = String> {
            let count = prop::sample::select(vec![
                "0",
                "7",
                "00",
                "-0",
                "-1",
                "1.0",
                "1e2",
                "1E+2",
                "0.5e-3",
                "1e400",
                "-1e400",
                "18446744073709551615",
                "18446744073709551616",
                "99999999999999999999999999999",
                "9223372036854775808",
                "null",
                "true",
                r#""7""#,
                r#""\ud800""#,
                "{}",
                "[]",
                "[7]",
            ])
            .prop_map(str::to_string);
            let details = prop::collection::vec(
                (
                    prop::sample::select(vec![
                        r#""cached_tokens""#,
                        r#""reasoning_tokens""#,
                        r#""cached\u005ftokens""#,
                        r#""audio_tokens""#,
                    ]),
                    count.clone(),
                ),
                0..3,
            )
            .prop_map(|m| {
                let members: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", members.join(","))
            });
            let deep = (1usize..200).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)));
            prop_oneof![5 => count, 3 => details, 1 => deep]
        }

        proptest! {
            #[test]
            fn objects_are_scanned_as_serde_reads_them(
                members in prop::collection::vec(("usage|error|model|cost|provider|[a-z\"\u{e9}]{0,4}", json()), 0..6),
                wide in any::<bool>(),
            ) {
                let text = written(&members, wide);
                let serde = by_serde(&text);
                prop_assert!(serde.is_some());
                let scanned = scan_members(&text);
                // Only an escaped key is left to serde.
                prop_assert_eq!(scanned.is_none(), members.iter().any(|(k, _)| k.contains('"')));
                if let Some(scanned) = scanned {
                    prop_assert_eq!(&scanned, serde.as_ref().unwrap());
                    prop_assert_eq!(scanned.usage_range(&text), serde.unwrap().usage_range(&text));
                }
            }

            #[test]
            fn usage_is_read_in_one_pass_as_serde_and_the_scan_read_it(
                members in prop::collection::vec((
                    "prompt_tokens|completion_tokens|total_tokens|cache_creation_input_tokens|prompt_cache_hit_tokens|cached_tokens|prompt_tokens_details|completion_tokens_details|cost|model|usage|error|provider|[a-z\"]{0,3}",
                    usage_value(),
                ), 0..7),
                wide in any::<bool>(),
            ) {
                let text = written(&members, wide);
                let serde = serde_json::from_str::<OpenAiUsage>(&text).ok();
                let plain = PlainUsage::read(&text);
                if let Some(plain) = &plain {
                    prop_assert_eq!(Some(&plain.usage), serde.as_ref());
                    let inner = Members::of(&text).unwrap();
                    prop_assert_eq!(plain.spliceable, inner.plain && inner.len > 0 && !inner.cost);
                }
                // Counts written plainly, each once, are read in the one pass.
                let plainly = |v: &serde_json::Value| v.is_null() || v.is_u64();
                let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
                keys.sort_unstable();
                let once = keys.windows(2).all(|w| w[0] != w[1]);
                let simple = members.iter().all(|(k, v)| !k.contains('"') && match k.as_str() {
                    "prompt_tokens_details" | "completion_tokens_details" => v.is_null()
                        || v.as_object().is_some_and(|o| o.values().all(plainly)),
                    "prompt_tokens" | "completion_tokens" | "total_tokens"
                    | "cache_creation_input_tokens" | "prompt_cache_hit_tokens"
                    | "cached_tokens" => plainly(v),
                    _ => true,
                });
                if once && simple {
                    prop_assert!(plain.is_some(), "{}", text);
                }
            }

            /// Usage objects as a broken or hostile upstream writes them, as text (serde
            /// cannot write most of these): counts past 64 bits, negative, fractional or
            /// out of any float's range, keys escaped, repeated or not ASCII, members
            /// nested past serde's recursion limit, odd whitespace. The one pass reads
            /// each exactly as serde does, or leaves it to serde.
            #[test]
            fn hostile_usage_is_read_as_serde_reads_it(
                members in prop::collection::vec((hostile_key(), hostile_value()), 0..7),
                space in prop::sample::select(vec!["", " ", "\t", "\r\n", " \n\t "]),
            ) {
                let text = format!(
                    "{{{space}{}{space}}}",
                    members
                        .iter()
                        .map(|(k, v)| format!("{k}{space}:{space}{v}"))
                        .collect::<Vec<_>>()
                        .join(&format!("{space},{space}"))
                );
                prop_assume!(serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok());
                let serde = serde_json::from_str::<OpenAiUsage>(&text).ok();
                if let Some(plain) = PlainUsage::read(&text) {
                    prop_assert_eq!(Some(&plain.usage), serde.as_ref(), "{}", text);
                    let inner = Members::of(&text).unwrap();
                    prop_assert_eq!(plain.spliceable, inner.plain && inner.len > 0 && !inner.cost, "{}", text);
                }
            }

            #[test]
            fn mangled_text_is_scanned_only_when_serde_reads_it(
                members in prop::collection::vec(("usage|error|[a-z]{0,3}", json()), 0..5),
                cut in any::<prop::sample::Index>(),
                byte in prop::sample::select(b"{}[],:\"\\ 0-.eE+tfnu1x\n\x01".to_vec()),
                replace in any::<bool>(),
            ) {
                let mut bytes = written(&members, false).into_bytes();
                let at = cut.index(bytes.len() + 1);
                if replace && at < bytes.len() {
                    bytes[at] = byte;
                } else {
                    bytes.insert(at, byte);
                }
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    if let Some(scanned) = scan_members(text) {
                        prop_assert_eq!(Some(scanned), by_serde(text));
                    }
                }
            }

            #[test]
            fn any_text_scans_without_panicking(text in "[\\[\\]{}\",:\\\\a-c0-9eE.+ -]{0,24}") {
                if let Some(scanned) = scan_members(&text) {
                    prop_assert_eq!(Some(scanned), by_serde(&text));
                }
            }
        }
    }
}
