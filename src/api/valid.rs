//! A scan of JSON text that validates as it goes, by serde_json's grammar: an object's
//! top-level members handed on as their text, without a deserializer's calls, copies of
//! keys or a second pass for nesting depth. Whatever it does not read plainly (an escaped
//! top-level key, nesting past the limit, text that is not JSON) is `None`, for the
//! caller to hand to serde_json, whose answer then stands. Never panics.

use super::responses::scan::{space, string_end};

/// Reads `text`, which must be one JSON object (whitespace around it allowed): `member`
/// gets each member's key (written without escapes) and its value's text, in order, and
/// may refuse it (`None`). `None` unless the whole text is valid JSON whose values nest
/// at most `depth` containers deep (a member's value counting as one level when it is an
/// object or array) and whose keys at the top have no escapes.
pub fn object<'a>(
    text: &'a str,
    depth: u32,
    mut member: impl FnMut(&'a str, &'a str) -> Option<()>,
) -> Option<()> {
    let b = text.as_bytes();
    let mut i = space(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = space(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (end, escaped) = string_end(b, i)?;
            if escaped {
                return None;
            }
            let key = text.get(i + 1..end - 1)?;
            i = space(b, end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            let start = space(b, i + 1);
            i = value_end(b, start, depth)?;
            member(key, text.get(start..i)?)?;
            i = space(b, i);
            match b.get(i)? {
                b',' => i = space(b, i + 1),
                b'}' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (space(b, i) == b.len()).then_some(())
}

/// Reads the members of the object at byte `at` of `text`, which is valid JSON:
/// `member` gets each key and the byte its value starts at, and returns where the value
/// ends (having read it), or `None`, as the whole read is then. `None` too for an
/// escaped key. Where the object ends.
pub fn members<'a>(
    text: &'a str,
    at: usize,
    mut member: impl FnMut(&'a str, usize) -> Option<usize>,
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
        let (end, escaped) = string_end(b, i)?;
        if escaped {
            return None;
        }
        let key = text.get(i + 1..end - 1)?;
        // Past the colon, to the value.
        i = space(b, space(b, end) + 1);
        i = space(b, member(key, i)?);
        match b.get(i)? {
            b',' => i = space(b, i + 1),
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Marks member `bit` as given; `None` when it was already.
pub fn once(seen: &mut u8, bit: u8) -> Option<()> {
    let had = *seen & 1 << bit != 0;
    *seen |= 1 << bit;
    (!had).then_some(())
}

/// Where the number starting at `at` ends; `None` unless it is a JSON number.
fn number_end(b: &[u8], at: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = at + usize::from(b.get(at) == Some(&b'-'));
    i = match b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i + 1),
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    // A digit right after a lone `0` (`01`) is not JSON; anything else ends the number.
    (!b.get(i).is_some_and(u8::is_ascii_digit)).then_some(i)
}

/// Where the JSON value starting at `at` ends; `None` unless it is a valid JSON value
/// of at most `limit` nested containers (itself included), `limit` at most 128.
fn value_end(b: &[u8], at: usize, limit: u32) -> Option<usize> {
    // One bit per open container, set for an object.
    let (mut objects, mut depth) = (0u128, 0u32);
    let mut i = at;
    loop {
        // A value starts at `i`.
        match *b.get(i)? {
            b'"' => i = string_end(b, i)?.0,
            open @ (b'{' | b'[') => {
                if depth >= limit.min(128) {
                    return None;
                }
                let object = open == b'{';
                i = space(b, i + 1);
                if b.get(i) == Some(if object { &b'}' } else { &b']' }) {
                    i += 1;
                } else {
                    objects = objects << 1 | u128::from(object);
                    depth += 1;
                    if object {
                        i = member_value(b, i)?;
                    }
                    continue;
                }
            }
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            _ => i = number_end(b, i)?,
        }
        // After a value: close what it ends, or find the next.
        loop {
            if depth == 0 {
                return Some(i);
            }
            i = space(b, i);
            let object = objects & 1 == 1;
            match *b.get(i)? {
                b',' => {
                    i = space(b, i + 1);
                    if object {
                        i = member_value(b, i)?;
                    }
                    break;
                }
                b'}' if object => {}
                b']' if !object => {}
                _ => return None,
            }
            objects >>= 1;
            depth -= 1;
            i += 1;
        }
    }
}

/// Past a member's key and colon at `at`: where its value starts.
fn member_value(b: &[u8], at: usize) -> Option<usize> {
    if b.get(at) != Some(&b'"') {
        return None;
    }
    let i = space(b, string_end(b, at)?.0);
    (b.get(i) == Some(&b':')).then(|| space(b, i + 1))
}

fn literal(b: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    (b.get(at..at + word.len())? == word).then_some(at + word.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    /// A JSON value: scalars of every kind (numbers with fractions and exponents,
    /// strings that need escapes), nested arrays and objects with billing's keys.
    pub(crate) fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let scalar = (
            0u8..5,
            any::<i64>(),
            -1e12f64..1e12,
            "[a-z\"\\\\\n\u{e9}\u{1F600}/ ]{0,12}",
        )
            .prop_map(|(kind, int, float, text)| match kind {
                0 => Value::Null,
                1 => Value::Bool(int % 2 == 0),
                2 => Value::from(int),
                3 => Value::from(float),
                _ => Value::from(text),
            });
        scalar.prop_recursive(4, 32, 6, |inner| {
            let key = "usage|error|model|cost|bazaar|[a-z\"]{0,4}";
            (any::<bool>(), prop::collection::vec((key, inner), 0..5)).prop_map(|(array, items)| {
                if array {
                    Value::Array(items.into_iter().map(|(_, v)| v).collect())
                } else {
                    Value::Object(items.into_iter().collect())
                }
            })
        })
    }
}
