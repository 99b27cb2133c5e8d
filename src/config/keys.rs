//! Keys and teams: `[[keys]]` and `[[teams]]`, and the one resolver of a key's and a
//! team's settings, which the config file, the admin API and `bazaar keys create` all go
//! through. Settings in, runtime form out; it never stores or looks up a key (billing does).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::problems::{under, Problems, ValueError};
use super::raw::{RawKey, RawTeam};
use super::secret::{self, DigestState, KeyHash};
use crate::catalog::Tier;

/// A gateway key clients may present.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// The key's identity in the ledger: `config:<name>` for a key of the config, the
    /// stored id (`key_…`) for a virtual key. Unlike the name, never reused. Shared
    /// (like the name and team): each call's ledger row holds them without a copy.
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub team: Option<Arc<str>>,
    pub hash: KeyHash,
    /// Markup in basis points on this key's costs.
    pub markup_bp: u32,
    pub limits: Limits,
    /// Allowed models or routes; empty: all.
    pub models: Vec<String>,
    /// Allowed tiers; empty: all.
    pub tiers: Vec<Tier>,
    /// Admit calls unchecked when the shared state is unreachable (else refuse them).
    pub fail_open: bool,
}

/// A budget: at most `limit_nanos` per UTC calendar `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit_nanos: u64,
    pub period: Period,
}

/// A UTC calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

/// Budget and rate limits of a key or team.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub budget: Option<Budget>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// A team: the limits all its keys share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamConfig {
    pub name: String,
    pub limits: Limits,
}

/// The longest key or team name, in bytes: names go into every ledger row and label.
const MAX_NAME_BYTES: usize = 128;

/// Parses `"50/month"`: USD (exact) per day, week or month.
pub fn parse_budget(text: &str) -> Result<Budget, ValueError> {
    let (amount, period) = text
        .split_once('/')
        .ok_or_else(|| ValueError::NotABudget(text.to_string()))?;
    let micros = crate::catalog::parse_usd_micros(amount.trim())
        .ok_or_else(|| ValueError::NotUsd(amount.to_string()))?;
    let period = match period.trim() {
        "day" => Period::Day,
        "week" => Period::Week,
        "month" => Period::Month,
        other => return Err(ValueError::UnknownPeriod(other.to_string())),
    };
    Ok(Budget {
        limit_nanos: micros * 1000,
        period,
    })
}

/// A key's settings as written, wherever they were written: a `[[keys]]` entry, an
/// admin API body or `bazaar keys create` flags. `resolve` holds the rules for all three.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeySettings<'a> {
    pub name: &'a str,
    pub team: Option<&'a str>,
    /// `"50/month"`.
    pub budget: Option<&'a str>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub models: &'a [String],
    pub tiers: &'a [String],
    pub markup_percent: Option<f64>,
    /// `closed` or `open`; `None` is `closed`, the documented default.
    pub on_shared_state_error: Option<&'a str>,
}

impl KeySettings<'_> {
    /// The runtime form of the key with `hash`. Each problem is recorded under `path`
    /// (`keys[0]`, or empty for a request body); the result is only meaningful when
    /// none was.
    pub fn resolve(&self, hash: KeyHash, path: &str, problems: &mut Problems) -> KeyConfig {
        if self.name.trim().is_empty() {
            problems.add(under(path, "name"), "is empty");
        }
        if self.name.len() > MAX_NAME_BYTES {
            problems.add(
                under(path, "name"),
                format!("is longer than {MAX_NAME_BYTES} bytes"),
            );
        }
        let tiers = problems.tiers(self.tiers, &under(path, "tiers"));
        let markup_bp = match self.markup_percent {
            Some(p) if p.is_finite() && (0.0..=1000.0).contains(&p) => (p * 100.0).round() as u32,
            Some(_) => {
                problems.add(under(path, "markup_percent"), "must be between 0 and 1000");
                0
            }
            None => 0,
        };
        let budget = self.budget.and_then(|b| {
            parse_budget(b)
                .map_err(|m| problems.add(under(path, "budget"), m))
                .ok()
        });
        let fail_open = match self.on_shared_state_error {
            None | Some("closed") => false,
            Some("open") => true,
            Some(other) => {
                problems.add(
                    under(path, "on_shared_state_error"),
                    format!("`{other}` must be open or closed"),
                );
                false
            }
        };
        KeyConfig {
            id: format!("config:{}", self.name).into(),
            name: self.name.into(),
            team: self.team.map(Arc::from),
            hash,
            markup_bp,
            limits: Limits {
                budget,
                rpm: self.rpm,
                tpm: self.tpm,
            },
            models: self.models.to_vec(),
            tiers,
            fail_open,
        }
    }
}

/// A team's settings as written: a `[[teams]]` entry or an admin API body.
#[derive(Debug, Clone, Copy, Default)]
pub struct TeamSettings<'a> {
    pub name: &'a str,
    pub budget: Option<&'a str>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

impl TeamSettings<'_> {
    /// The runtime form of the team; each problem is recorded under `path`.
    pub fn resolve(&self, path: &str, problems: &mut Problems) -> TeamConfig {
        if self.name.len() > MAX_NAME_BYTES {
            problems.add(
                under(path, "name"),
                format!("is longer than {MAX_NAME_BYTES} bytes"),
            );
        }
        let budget = self.budget.and_then(|b| {
            parse_budget(b)
                .map_err(|m| problems.add(under(path, "budget"), m))
                .ok()
        });
        TeamConfig {
            name: self.name.to_string(),
            limits: Limits {
                budget,
                rpm: self.rpm,
                tpm: self.tpm,
            },
        }
    }
}

impl<'a> From<&'a RawKey> for KeySettings<'a> {
    fn from(k: &'a RawKey) -> Self {
        KeySettings {
            name: &k.name,
            team: k.team.as_deref(),
            budget: k.budget.as_deref(),
            rpm: k.rpm,
            tpm: k.tpm,
            models: &k.models,
            tiers: &k.tiers,
            markup_percent: k.markup_percent,
            on_shared_state_error: k.on_shared_state_error.as_deref(),
        }
    }
}

/// Resolves `[[keys]]`: each key's secret is hashed, and a key declared twice (or equal
/// to the master key) is a problem.
pub(super) fn resolve_keys(
    raw: &[RawKey],
    master_key: Option<KeyHash>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> HashMap<KeyHash, Arc<KeyConfig>, DigestState> {
    let mut keys = HashMap::default();
    for (i, k) in raw.iter().enumerate() {
        let path = format!("keys[{i}]");
        let hash = match secret::resolve(&k.key, env) {
            Ok(secret) => {
                let hash = secret.hash();
                if keys.contains_key(&hash) || Some(hash) == master_key {
                    problems.add(format!("{path}.key"), "the same key is declared twice");
                }
                Some(hash)
            }
            Err(m) => {
                problems.add(format!("{path}.key"), m);
                None
            }
        };
        // The settings are checked even when the key is not, so every problem shows at once.
        let key = KeySettings::from(k).resolve(hash.unwrap_or_default(), &path, problems);
        if let Some(hash) = hash {
            keys.insert(hash, Arc::new(key));
        }
    }
    keys
}

/// Resolves `[[teams]]`; a name declared twice is a problem.
pub(super) fn resolve_teams(
    raw: &[RawTeam],
    problems: &mut Problems,
) -> BTreeMap<String, TeamConfig> {
    let mut teams = BTreeMap::new();
    for (i, t) in raw.iter().enumerate() {
        let settings = TeamSettings {
            name: &t.name,
            budget: t.budget.as_deref(),
            rpm: t.rpm,
            tpm: t.tpm,
        };
        let team = settings.resolve(&format!("teams[{i}]"), problems);
        if teams.insert(t.name.clone(), team).is_some() {
            problems.add(
                format!("teams[{i}].name"),
                format!("team `{}` is declared twice", t.name),
            );
        }
    }
    teams
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "K").then(|| "bzr-k".to_string())
    }

    fn raw_key(name: &str, key: &str) -> RawKey {
        RawKey {
            name: name.into(),
            key: key.into(),
            team: None,
            budget: None,
            rpm: None,
            tpm: None,
            models: Vec::new(),
            tiers: Vec::new(),
            markup_percent: None,
            on_shared_state_error: None,
        }
    }

    #[test]
    fn budgets_parse_exactly() {
        assert_eq!(
            parse_budget("50/month"),
            Ok(Budget {
                limit_nanos: 50_000_000_000,
                period: Period::Month
            })
        );
        assert_eq!(
            parse_budget("0.25 / day").map(|b| b.limit_nanos),
            Ok(250_000_000)
        );
        assert!(parse_budget("50").is_err());
        assert!(parse_budget("x/month").is_err());
        assert!(parse_budget("5/year").is_err());
    }

    #[test]
    fn one_resolver_for_every_field_of_a_key() {
        let tiers = ["local".to_string(), "open-hosted".to_string()];
        let models = ["auto".to_string()];
        let settings = KeySettings {
            name: "web",
            team: Some("t"),
            budget: Some("5/day"),
            rpm: Some(60),
            tpm: None,
            models: &models,
            tiers: &tiers,
            markup_percent: Some(12.5),
            on_shared_state_error: Some("open"),
        };
        let mut p = Problems::default();
        let k = settings.resolve([7; 32], "keys[0]", &mut p);
        p.finish(()).unwrap();
        assert_eq!(k.hash, [7; 32]);
        assert_eq!(k.markup_bp, 1250);
        assert_eq!(k.tiers, [Tier::Local, Tier::OpenHosted]);
        assert_eq!(k.limits.budget.map(|b| b.period), Some(Period::Day));
        assert_eq!(k.limits.rpm, Some(60));
        assert!(k.fail_open);
        // The documented default when the shared state is unreachable: closed.
        let closed = KeySettings {
            name: "web",
            ..Default::default()
        };
        assert!(
            !closed
                .resolve([0; 32], "", &mut Problems::default())
                .fail_open
        );
    }

    #[test]
    fn every_bad_field_is_reported_under_its_path() {
        let tiers = ["cheap".to_string()];
        let settings = KeySettings {
            name: " ",
            budget: Some("lots"),
            tiers: &tiers,
            markup_percent: Some(-1.0),
            on_shared_state_error: Some("maybe"),
            ..Default::default()
        };
        let mut p = Problems::default();
        settings.resolve([0; 32], "", &mut p);
        let err = p.finish(()).unwrap_err();
        assert_eq!(
            err.paths(),
            [
                "name",
                "tiers[0]",
                "markup_percent",
                "budget",
                "on_shared_state_error"
            ]
        );
    }

    #[test]
    fn config_keys_are_hashed_and_duplicates_reported() {
        let raw = [
            raw_key("a", "env:K"),
            raw_key("b", "bzr-k"),
            raw_key("c", "env:MISSING"),
            raw_key("d", "bzr-master"),
        ];
        let mut p = Problems::default();
        let keys = resolve_keys(&raw, Some(secret::hash_key("bzr-master")), &env, &mut p);
        assert_eq!(&*keys[&secret::hash_key("bzr-k")].name, "b");
        let err = p.finish(()).unwrap_err();
        assert_eq!(
            err.one_line(),
            "keys[1].key: the same key is declared twice; keys[2].key: env var MISSING is not set; \
             keys[3].key: the same key is declared twice"
        );
    }

    #[test]
    fn teams_resolve_and_a_repeated_name_is_reported() {
        let raw = [
            RawTeam {
                name: "t".into(),
                budget: Some("500/month".into()),
                rpm: Some(10),
                tpm: None,
            },
            RawTeam {
                name: "t".into(),
                budget: Some("5/fortnight".into()),
                rpm: None,
                tpm: None,
            },
        ];
        let mut p = Problems::default();
        let teams = resolve_teams(&raw, &mut p);
        assert_eq!(teams.len(), 1);
        let err = p.finish(()).unwrap_err();
        assert_eq!(err.paths(), ["teams[1].budget", "teams[1].name"]);
    }
}
