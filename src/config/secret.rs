//! `Secret`: a credential read from config or the environment. Debug and Display
//! redact it, so a secret cannot reach a log line or an error message by accident.

use std::fmt;

/// A credential. Only `expose()` reveals it, at the point it is put on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The credential itself, for an outgoing header or a hash; never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret value in the TOML comes from: `env:NAME` reads the environment,
/// anything else is the literal value.
pub fn resolve(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Secret, String> {
    match value.strip_prefix("env:") {
        Some("") => Err("`env:` needs a variable name".into()),
        Some(name) => match lookup(name) {
            Some(v) if !v.is_empty() => Ok(Secret(v)),
            Some(_) => Err(format!("env var {name} is empty")),
            None => Err(format!("env var {name} is not set")),
        },
        None => Ok(Secret(value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }

    #[test]
    fn env_lookup() {
        let env = |name: &str| (name == "K").then(|| "v".to_string());
        assert_eq!(resolve("env:K", &env).unwrap().expose(), "v");
        assert_eq!(
            resolve("env:MISSING", &env).unwrap_err(),
            "env var MISSING is not set"
        );
        assert_eq!(resolve("literal", &env).unwrap().expose(), "literal");
    }
}
