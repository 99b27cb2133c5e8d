//! The `[ledger]` section: which database the ledger writes to (SQLite or PostgreSQL),
//! its queue, batch and flush timings, and where rows spill when the database is down.
//! Resolves settings only; it never opens the database (billing does).

use std::path::PathBuf;
use std::time::Duration;

use super::problems::Problems;
use super::raw::{RawLedger, RawResponses};
use super::secret::{self, redact_url};

/// Where and how the ledger is written.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerConfig {
    pub url: String,
    pub queue: usize,
    pub batch: usize,
    pub flush_every: Duration,
    pub spill_file: PathBuf,
}

/// Resolves `[ledger]`.
pub(super) fn resolve(
    l: &RawLedger,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> LedgerConfig {
    if !(l.url.starts_with("sqlite:")
        || l.url.starts_with("postgres:")
        || l.url.starts_with("postgresql:")
        || l.url.starts_with("env:"))
    {
        problems.add(
            "ledger.url",
            format!(
                "`{}` must start with sqlite: or postgres: (or be env:NAME)",
                redact_url(&l.url)
            ),
        );
    }
    if l.queue == 0 || l.batch == 0 {
        problems.add("ledger", "queue and batch must be at least 1");
    }
    let sqlite_path = l
        .url
        .strip_prefix("sqlite://")
        .or_else(|| l.url.strip_prefix("sqlite:"))
        .map(|p| p.split('?').next().unwrap_or(p).to_string());
    LedgerConfig {
        url: secret::resolve_url(&l.url, env).unwrap_or_else(|m| {
            problems.add("ledger.url", m);
            l.url.clone()
        }),
        queue: l.queue,
        batch: l.batch,
        flush_every: problems.duration(&l.flush_every, "ledger.flush_every"),
        spill_file: PathBuf::from(l.spill_file.clone().unwrap_or_else(|| match &sqlite_path {
            Some(p) => format!("{p}.spill.jsonl"),
            None => "bazaar-ledger.spill.jsonl".into(),
        })),
    }
}

/// The longest `[responses] ttl` accepted: ten years.
const MAX_RESPONSES_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Resolves `[responses] ttl`: a duration above zero, at most ten years.
pub(super) fn resolve_responses_ttl(r: &RawResponses, problems: &mut Problems) -> Duration {
    let ttl = problems.duration(&r.ttl, "responses.ttl");
    if ttl > MAX_RESPONSES_TTL {
        problems.add(
            "responses.ttl",
            format!("`{}` is longer than ten years", r.ttl),
        );
        return MAX_RESPONSES_TTL;
    }
    ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_spill_file_sits_beside_the_sqlite_file() {
        let mut p = Problems::default();
        let l = resolve(
            &RawLedger {
                url: "sqlite://data/l.sqlite?mode=rwc".into(),
                ..Default::default()
            },
            &no_env,
            &mut p,
        );
        p.finish(()).unwrap();
        assert_eq!(l.spill_file, PathBuf::from("data/l.sqlite.spill.jsonl"));
        assert_eq!(l.flush_every, Duration::from_millis(200));
    }

    #[test]
    fn a_postgres_url_from_env_spills_to_the_default_file() {
        let env = |n: &str| (n == "DB").then(|| "postgres://u:pw@db/x".to_string());
        let mut p = Problems::default();
        let l = resolve(
            &RawLedger {
                url: "env:DB".into(),
                ..Default::default()
            },
            &env,
            &mut p,
        );
        p.finish(()).unwrap();
        assert_eq!(l.url, "postgres://u:pw@db/x");
        assert_eq!(l.spill_file, PathBuf::from("bazaar-ledger.spill.jsonl"));
    }

    #[test]
    fn reports_a_wrong_scheme_without_its_password_and_empty_batches() {
        let mut p = Problems::default();
        resolve(
            &RawLedger {
                url: "mysql://u:secret@db/x".into(),
                queue: 0,
                flush_every: "never".into(),
                ..Default::default()
            },
            &no_env,
            &mut p,
        );
        let err = p.finish(()).unwrap_err();
        assert_eq!(err.paths(), ["ledger.url", "ledger", "ledger.flush_every"]);
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn the_responses_ttl_defaults_to_30_days_and_must_be_a_sane_duration() {
        let mut p = Problems::default();
        let ttl = resolve_responses_ttl(&RawResponses::default(), &mut p);
        let short = resolve_responses_ttl(&RawResponses { ttl: "90m".into() }, &mut p);
        p.finish(()).unwrap();
        assert_eq!(ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(short, Duration::from_secs(90 * 60));
        let mut p = Problems::default();
        for bad in ["0s", "forever", "20years"] {
            resolve_responses_ttl(&RawResponses { ttl: bad.into() }, &mut p);
        }
        let err = p.finish(()).unwrap_err();
        assert_eq!(err.paths(), ["responses.ttl"; 3]);
    }
}
