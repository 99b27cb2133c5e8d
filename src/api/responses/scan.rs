//! A reader of JSON text that is valid already (the client's body, checked whole when it
//! was split into fields; a stored conversation, checked when it was stored): the members
//! of an object and the elements of an array, each handed on as its text, without a
//! deserializer's checks and calls. Translation reads input items and tools through it.
//! It never panics and never reads past the text: what does not read is `None`.

use std::borrow::Cow;

use super::write::plain_len;

/// `at` moved past any JSON whitespace.
pub(crate) fn space(b: &[u8], mut at: usize) -> usize {
    while matches!(b.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Where the JSON string opening at `at` ends (past its closing quote), and whether it
/// holds an escape; `None` when it is not a valid JSON string (a control character, an
/// unknown escape), so text not checked before can be read by it too.
pub(crate) fn string_end(b: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        i += plain_len(b.get(i..)?);
        match b.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i += match b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                    b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                    _ => return None,
                };
            }
            // A control character: not a JSON string.
            _ => return None,
        }
    }
}

/// Where the JSON value starting at `at` ends.
pub(crate) fn value_end(b: &[u8], at: usize) -> Option<usize> {
    match *b.get(at)? {
        b'"' => string_end(b, at).map(|(end, _)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match *b.get(i)? {
                    b'"' => {
                        i = string_end(b, i)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // A number, `true`, `false` or `null`: up to what follows a value.
        _ => {
            let mut i = at;
            while !matches!(
                b.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                i += 1;
            }
            (i > at).then_some(i)
        }
    }
}

/// Reads the object at byte `at` of `text`: `member` gets each key (unescaped) and the
/// text of its value, in order, and may refuse it (`None`). Where the object ends; `None`
/// when there is no object at `at` or a member was refused.
pub(super) fn object<'a>(
    text: &'a str,
    at: usize,
    mut member: impl FnMut(Cow<'a, str>, &'a str) -> Option<()>,
) -> Option<usize> {
    let b = text.as_bytes();
    if b.get(at) != Some(&b'{') {
        return None;
    }
    let mut i = space(b, at + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key = string(text, i)?;
        i = space(b, key.1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = space(b, i + 1);
        let end = value_end(b, i)?;
        member(key.0, text.get(i..end)?)?;
        i = space(b, end);
        match b.get(i)? {
            b',' => i = space(b, i + 1),
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// The JSON string at byte `at` of `text`, unescaped (borrowed when it has no escapes),
/// and where it ends.
fn string(text: &str, at: usize) -> Option<(Cow<'_, str>, usize)> {
    let (end, escaped) = string_end(text.as_bytes(), at)?;
    let json = text.get(at..end)?;
    let value = match escaped {
        false => Cow::Borrowed(json.get(1..json.len() - 1)?),
        true => Cow::Owned(serde_json::from_str::<String>(json).ok()?),
    };
    Some((value, end))
}

/// The text of the JSON string `json` (`None` when `json` is not a string).
pub(crate) fn text(json: &str) -> Option<Cow<'_, str>> {
    match json.as_bytes().first() {
        Some(b'"') => string(json, 0).map(|(s, _)| s),
        _ => None,
    }
}

/// Reads the array `text`, element by element: `element` gets each one's index and the
/// byte it starts at, and returns where it ends (having read it) or its error. `Err(None)`
/// when `text` is not an array.
pub(super) fn elements<E>(
    text: &str,
    mut element: impl FnMut(usize, usize) -> Result<usize, E>,
) -> Result<(), Option<E>> {
    let b = text.as_bytes();
    let mut at = space(b, 0);
    if b.get(at) != Some(&b'[') {
        return Err(None);
    }
    at = space(b, at + 1);
    if b.get(at) == Some(&b']') {
        return Ok(());
    }
    let mut i = 0;
    loop {
        at = space(b, element(i, at).map_err(Some)?);
        match b.get(at) {
            Some(b',') => at = space(b, at + 1),
            Some(b']') => return Ok(()),
            _ => return Err(None),
        }
        i += 1;
    }
}

/// Every element of the array `text`, each read by `read` (given the byte it starts at,
/// it returns the element and where it ends); `None` if one does not read.
pub(super) fn all<'a, T>(
    text: &'a str,
    read: impl Fn(&'a str, usize) -> Option<(T, usize)>,
) -> Option<Vec<T>> {
    let mut out = Vec::new();
    elements(text, |_, at| {
        let (value, end) = read(text, at).ok_or(())?;
        out.push(value);
        Ok::<_, ()>(end)
    })
    .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    /// The text of the value starting at byte `at` of `text`.
    fn value(text: &str, at: usize) -> Option<&str> {
        text.get(at..value_end(text.as_bytes(), at)?)
    }

    /// The members of object `text` as the scanner reads them.
    fn members(text: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let end = object(text, 0, |k, v| {
            out.push((k.into_owned(), v.to_string()));
            Some(())
        })?;
        (end == text.len()).then_some(out)
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e9f64..1e9).prop_map(serde_json::Value::from),
            "[a-z\"\\\\\n\u{e9}\u{1F600} ]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
                prop::collection::vec(("[a-z\"\\\\]{0,6}", inner), 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `text` with whitespace added after each structural character.
    fn spaced(text: &str) -> String {
        let mut out = String::new();
        let mut in_string = false;
        let mut escaped = false;
        for c in text.chars() {
            out.push(c);
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_string = true,
                '{' | '[' | ',' | ':' => out.push_str(" \n\t"),
                _ => {}
            }
        }
        out
    }

    proptest! {
        #[test]
        fn objects_read_as_serde_reads_them(
            members_in in prop::collection::vec(("[a-z\"\\\\\u{e9}]{0,6}", json()), 0..6),
            wide in any::<bool>(),
        ) {
            let object_in = serde_json::Value::Object(members_in.into_iter().collect());
            let mut text = serde_json::to_string(&object_in).unwrap();
            if wide {
                text = spaced(&text);
            }
            let by_serde: Vec<(String, String)> =
                serde_json::from_str::<indexmap_free::Members>(&text).unwrap().0;
            prop_assert_eq!(members(&text), Some(by_serde));
        }

        #[test]
        fn arrays_split_as_serde_splits_them(values in prop::collection::vec(json(), 0..6), wide in any::<bool>()) {
            let mut text = serde_json::to_string(&values).unwrap();
            if wide {
                text = spaced(&text);
            }
            let by_serde: Vec<&RawValue> = serde_json::from_str(&text).unwrap();
            let mut read = Vec::new();
            let done = elements::<()>(&text, |_, at| {
                let v = value(&text, at).ok_or(())?;
                read.push(v);
                Ok(at + v.len())
            });
            prop_assert!(done.is_ok());
            prop_assert_eq!(read, by_serde.iter().map(|v| v.get()).collect::<Vec<_>>());
        }

        #[test]
        fn strings_read_as_serde_reads_them(s in "[a-z\"\\\\\n\u{0}\u{e9}\u{1F600}/]{0,16}") {
            let json = serde_json::to_string(&s).unwrap();
            let read = text(&json);
            prop_assert_eq!(read.as_deref(), Some(s.as_str()));
        }

        #[test]
        fn any_text_reads_without_panicking(text_in in "[\\[\\]{}\",:\\\\a-c0-9 ]{0,24}") {
            let _ = members(&text_in);
            let _ = elements::<()>(&text_in, |_, at| value(&text_in, at).map(|v| at + v.len()).ok_or(()));
            let _ = text(&text_in);
        }
    }

    /// The members of a JSON object in order, keys unescaped, values as their text.
    mod indexmap_free {
        use serde::de::{MapAccess, Visitor};
        use serde::{Deserialize, Deserializer};
        use serde_json::value::RawValue;

        pub struct Members(pub Vec<(String, String)>);

        impl<'de> Deserialize<'de> for Members {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Members;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                        let mut out = Vec::new();
                        while let Some((k, v)) = m.next_entry::<String, &RawValue>()? {
                            out.push((k, v.get().to_string()));
                        }
                        Ok(Members(out))
                    }
                }
                d.deserialize_map(V)
            }
        }
    }

    #[test]
    fn objects_with_escaped_keys_and_nesting() {
        let text = r#"{"a\u0062":{"x":[1,{"y":"}"}]},"c" : "d\"]" ,"e":-1.5e3}"#;
        assert_eq!(
            members(text),
            Some(vec![
                ("ab".to_string(), r#"{"x":[1,{"y":"}"}]}"#.to_string()),
                ("c".to_string(), r#""d\"]""#.to_string()),
                ("e".to_string(), "-1.5e3".to_string()),
            ])
        );
        assert_eq!(members("[1]"), None);
        assert_eq!(members(r#"{"a":1"#), None);
    }
}
