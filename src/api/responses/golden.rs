//! Golden files for the Responses front end's output (the chat body a request becomes,
//! the events a stream becomes), so that faster code provably writes the same bytes.
//! Random ids and clock readings are normalised before comparing. A missing file is
//! written from the current output and the test fails, asking for a rerun.

use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/responses_golden"
    ))
    .join(name)
}

/// `text` with every generated id (`msg_`, `fc_`, `rs_`, `resp_`, `call_` and 32 hex
/// digits) and every `created_at`/`completed_at` value replaced by a fixed one.
pub fn normalised(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if let Some(prefix) = ["msg_", "fc_", "rs_", "resp_", "call_"]
            .iter()
            .find(|p| rest.starts_with(**p))
        {
            let hex = &rest.as_bytes()[prefix.len()..];
            if hex.len() >= 32 && hex[..32].iter().all(|b| b.is_ascii_hexdigit()) {
                out.push_str(prefix);
                out.push_str("ID");
                i += prefix.len() + 32;
                continue;
            }
        }
        if let Some(key) = ["\"created_at\":", "\"completed_at\":"]
            .iter()
            .find(|k| rest.starts_with(**k))
        {
            out.push_str(key);
            out.push('T');
            i += key.len();
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        i += c.len_utf8().max(1);
    }
    out
}

/// Compares `actual` (normalised) with the golden file `name`.
pub fn check(name: &str, actual: &str) {
    let actual = normalised(actual);
    let file = path(name);
    match std::fs::read_to_string(&file) {
        Ok(expected) => assert!(
            expected == actual,
            "{name} differs from its golden file {}:\n--- expected\n{expected}\n--- actual\n{actual}",
            file.display()
        ),
        Err(_) => {
            std::fs::write(&file, &actual).unwrap();
            panic!("golden file {} written; run the test again", file.display());
        }
    }
}
