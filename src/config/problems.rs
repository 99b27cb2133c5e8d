//! `Problems`: every problem found while resolving a config, each with its TOML path,
//! collected in file order so `bazaar check`, startup and reload report them all at
//! once. It collects and renders; it never reads a file or the environment.

use std::fmt;
use std::time::Duration;

use crate::catalog::Tier;

/// One problem in a config, with the TOML path it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a config, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// The TOML path of each problem, in order (what tests compare).
    #[cfg(test)]
    pub fn paths(&self) -> Vec<&str> {
        self.problems.iter().map(|p| p.path.as_str()).collect()
    }

    /// The problems on one line, `path: message; …`, for an API error body.
    pub fn one_line(&self) -> String {
        self.problems
            .iter()
            .map(ConfigProblem::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{n} problem{} in the config:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A config value that does not mean anything (a bad budget, policy or `env:` secret):
/// what `Problems` records at the value's path and the admin API returns as a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("`{0}` is not a budget such as 50/month")]
    NotABudget(String),
    #[error("`{0}` is not a USD amount")]
    NotUsd(String),
    #[error("unknown period `{0}`; expected day, week or month")]
    UnknownPeriod(String),
    #[error("unknown policy `{0}`; expected one of {1}")]
    UnknownPolicy(String, &'static str),
    #[error("`env:` needs a variable name")]
    EnvNameMissing,
    #[error("env var {0} is empty")]
    EnvEmpty(String),
    #[error("env var {0} is not set")]
    EnvUnset(String),
}

/// The collector each config section resolves into.
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<ConfigProblem>,
}

impl Problems {
    /// Records a problem at `path`.
    pub fn add(&mut self, path: impl Into<String>, message: impl fmt::Display) {
        self.list.push(ConfigProblem {
            path: path.into(),
            message: message.to_string(),
        });
    }

    /// `value` when nothing was recorded, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.list,
            })
        }
    }

    /// A duration greater than zero such as `500ms` or `30s`; one second (with a
    /// problem recorded) otherwise, so resolving can go on.
    pub fn duration(&mut self, text: &str, path: &str) -> Duration {
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.add(path, "must be greater than zero");
                Duration::from_secs(1)
            }
            Err(e) => {
                self.add(
                    path,
                    format!("`{text}` is not a duration such as 500ms or 30s ({e})"),
                );
                Duration::from_secs(1)
            }
        }
    }

    /// The tiers named in `list`; each unknown one is a problem at `path[i]`.
    pub fn tiers(&mut self, list: &[String], path: &str) -> Vec<Tier> {
        let mut tiers = Vec::new();
        for (i, t) in list.iter().enumerate() {
            match t.parse() {
                Ok(t) => tiers.push(t),
                Err(m) => self.add(format!("{path}[{i}]"), m),
            }
        }
        tiers
    }
}

/// `field` under `path`: `keys[0].budget`, or just `budget` when `path` is empty (a
/// request body rather than a config file).
pub fn under(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_in_order_and_renders_every_problem() {
        let mut p = Problems::default();
        assert_eq!(p.duration("2s", "a"), Duration::from_secs(2));
        assert_eq!(p.duration("0s", "b"), Duration::from_secs(1));
        p.duration("soon", "c");
        let tiers = p.tiers(&["local".into(), "cheap".into()], "d");
        assert_eq!(tiers, [Tier::Local]);
        let err = p.finish(()).unwrap_err();
        assert_eq!(err.paths(), ["b", "c", "d[1]"]);
        assert!(err
            .to_string()
            .starts_with("3 problems in the config:\n  b: must be greater than zero\n"));
        assert!(err
            .one_line()
            .starts_with("b: must be greater than zero; c: `soon`"));
    }

    #[test]
    fn nothing_recorded_is_ok() {
        assert_eq!(Problems::default().finish(7).unwrap(), 7);
        assert_eq!(under("", "name"), "name");
        assert_eq!(under("keys[2]", "name"), "keys[2].name");
    }
}
