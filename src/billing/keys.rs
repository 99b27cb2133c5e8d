//! Virtual keys (`bzr-…`) and teams made at run time: created by the admin API or
//! `bazaar keys create`, stored only as SHA-256 hashes in the ledger database, and
//! cached in memory, so the request path never queries the database for a key. Their
//! settings are checked by config's one key resolver; this module has no rules of its own.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::ledger::{GroupBy, Ledger, LedgerError};
use crate::config::secret::DigestState;
/// Re-exported from `config::secret`, where key hashing lives; kept so
/// `billing::keys::{hash_key, KeyHash}` still name them.
pub use crate::config::secret::{hash_key, KeyHash};
use crate::config::{
    Budget, ConfigError, KeyConfig, KeySettings, Problems, TeamConfig, TeamSettings,
};

fn hex(hash: &KeyHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<KeyHash> {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    bytes.try_into().ok()
}

/// A new key's settings, as the admin API and the CLI take them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    #[serde(default)]
    pub team: Option<String>,
    /// `"50/month"`.
    #[serde(default)]
    pub budget: Option<String>,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u32>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub tiers: Vec<String>,
    #[serde(default)]
    pub markup_percent: Option<f64>,
    /// Unix milliseconds after which the key stops working.
    #[serde(default)]
    pub expires_ms: Option<i64>,
}

/// A stored key as listed (never the key itself).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: String,
    #[serde(flatten)]
    pub settings: NewKey,
    pub revoked: bool,
    pub created_ms: i64,
}

/// A team's settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    pub name: String,
    #[serde(default)]
    pub budget: Option<String>,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u32>,
}

impl NewKey {
    /// The settings as the one key resolver takes them. A virtual key has no
    /// `on_shared_state_error` of its own: it gets the documented default, `closed`.
    pub fn settings(&self) -> KeySettings<'_> {
        KeySettings {
            name: &self.name,
            team: self.team.as_deref(),
            budget: self.budget.as_deref(),
            rpm: self.rpm,
            tpm: self.tpm,
            models: &self.models,
            tiers: &self.tiers,
            markup_percent: self.markup_percent,
            on_shared_state_error: None,
        }
    }

    /// Checks the settings with the rules of a `[[keys]]` entry and turns them into the
    /// runtime form; every problem is in the error, each at its field.
    pub fn to_config(&self, hash: KeyHash) -> Result<KeyConfig, ConfigError> {
        let mut problems = Problems::default();
        let key = self.settings().resolve(hash, "", &mut problems);
        problems.finish(key)
    }
}

impl NewTeam {
    /// Checks the settings with the rules of a `[[teams]]` entry (and a name is required).
    pub fn to_config(&self) -> Result<TeamConfig, ConfigError> {
        let mut problems = Problems::default();
        if self.name.trim().is_empty() {
            problems.add("name", "is empty");
        }
        let settings = TeamSettings {
            name: &self.name,
            budget: self.budget.as_deref(),
            rpm: self.rpm,
            tpm: self.tpm,
        };
        let team = settings.resolve("", &mut problems);
        problems.finish(team)
    }
}

/// Live virtual keys by hash, with when each expires. Shared: a call holds its key
/// without copying it.
type LiveKeys = HashMap<KeyHash, (Arc<KeyConfig>, Option<i64>), DigestState>;

/// Virtual keys and teams in the database, and their in-memory cache.
#[derive(Debug, Default)]
pub struct KeyStore {
    keys: RwLock<LiveKeys>,
    teams: RwLock<HashMap<String, TeamConfig>>,
}

impl KeyStore {
    /// The live key with this hash (not revoked, not expired at `now_ms`).
    pub fn lookup(&self, hash: &KeyHash, now_ms: i64) -> Option<Arc<KeyConfig>> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let (key, expires) = keys.get(hash)?;
        if expires.is_some_and(|e| e <= now_ms) {
            return None;
        }
        Some(key.clone())
    }

    /// Adds or replaces a live key, as a refresh would (tests: a store without a database).
    #[cfg(test)]
    pub(crate) fn put(&self, key: KeyConfig, expires_ms: Option<i64>) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.insert(key.hash, (Arc::new(key), expires_ms));
    }

    /// Drops a key, as a refresh after its revocation would (tests).
    #[cfg(test)]
    pub(crate) fn remove(&self, hash: &KeyHash) {
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }

    /// A team defined through the admin API.
    pub fn team(&self, name: &str) -> Option<TeamConfig> {
        self.teams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every virtual key and team with a budget, as (scope kind, identity, budget): a key
    /// by its id, a team by its name.
    pub fn budgeted(&self) -> Vec<(GroupBy, String, Budget)> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let teams = self.teams.read().unwrap_or_else(|p| p.into_inner());
        keys.values()
            .filter_map(|(k, _)| Some((GroupBy::Key, k.id.to_string(), k.limits.budget?)))
            .chain(
                teams
                    .values()
                    .filter_map(|t| Some((GroupBy::Team, t.name.clone(), t.limits.budget?))),
            )
            .collect()
    }

    /// Reloads the cache from the database (at start, after changes, and periodically).
    pub async fn refresh(&self, ledger: &Ledger) -> Result<(), LedgerError> {
        let rows = sqlx::query("SELECT hash, name, team, budget, rpm, tpm, models, tiers, markup_bp, expires_ms, id FROM virtual_keys WHERE revoked = 0")
            .fetch_all(ledger.pool())
            .await?;
        let mut keys = LiveKeys::default();
        for r in rows {
            let Some(hash) = unhex(&r.try_get::<String, _>(0)?) else {
                continue;
            };
            let settings = NewKey {
                name: r.try_get(1)?,
                team: r.try_get(2)?,
                budget: r.try_get(3)?,
                rpm: r.try_get::<Option<i64>, _>(4)?.map(|v| v as u32),
                tpm: r.try_get::<Option<i64>, _>(5)?.map(|v| v as u32),
                models: split(&r.try_get::<String, _>(6)?),
                tiers: split(&r.try_get::<String, _>(7)?),
                markup_percent: Some(r.try_get::<i64, _>(8)? as f64 / 100.0),
                expires_ms: r.try_get(9)?,
            };
            match settings.to_config(hash) {
                Ok(mut k) => {
                    k.id = r.try_get::<String, _>(10)?.into();
                    keys.insert(hash, (Arc::new(k), settings.expires_ms));
                }
                Err(e) => {
                    tracing::warn!(name = %settings.name, "A stored key's settings are invalid and it is ignored: {}", e.one_line())
                }
            }
        }
        let rows = sqlx::query("SELECT name, budget, rpm, tpm FROM teams")
            .fetch_all(ledger.pool())
            .await?;
        let mut teams = HashMap::new();
        for r in rows {
            let t = NewTeam {
                name: r.try_get(0)?,
                budget: r.try_get(1)?,
                rpm: r.try_get::<Option<i64>, _>(2)?.map(|v| v as u32),
                tpm: r.try_get::<Option<i64>, _>(3)?.map(|v| v as u32),
            };
            if let Ok(team) = t.to_config() {
                teams.insert(team.name.clone(), team);
            }
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        *self.teams.write().unwrap_or_else(|p| p.into_inner()) = teams;
        Ok(())
    }
}

/// Settings refused by the config rules, as the admin API reports them: `field: message; …`.
fn invalid(e: ConfigError) -> LedgerError {
    LedgerError::Invalid(e.one_line())
}

fn split(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Creates a key; returns its id and the key itself (shown once, stored only hashed).
/// Refused when a live virtual key already has the name (callers also refuse the names
/// of config keys, which this store does not know).
pub async fn create(
    ledger: &Ledger,
    settings: &NewKey,
    now_ms: i64,
) -> Result<(String, String), LedgerError> {
    let key = format!("bzr-{:032x}", rand::random::<u128>());
    let hash = hash_key(&key);
    let resolved = settings.to_config(hash).map_err(invalid)?;
    // Admins' spend views group by name: two live keys with one name would be one line
    // there. (Budgets, rate limits and a key's own spend view are keyed by its id.)
    let taken = sqlx::query("SELECT id FROM virtual_keys WHERE name = $1 AND revoked = 0")
        .bind(settings.name.clone())
        .fetch_optional(ledger.pool())
        .await?;
    if taken.is_some() {
        return Err(LedgerError::Invalid(format!(
            "a live key named `{}` exists; revoke it first or choose another name",
            settings.name
        )));
    }
    let id = format!("key_{:016x}", rand::random::<u64>());
    sqlx::query("INSERT INTO virtual_keys (id, hash, name, team, budget, rpm, tpm, models, tiers, markup_bp, expires_ms, revoked, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12)")
        .bind(id.clone())
        .bind(hex(&hash))
        .bind(settings.name.clone())
        .bind(settings.team.clone())
        .bind(settings.budget.clone())
        .bind(settings.rpm.map(i64::from))
        .bind(settings.tpm.map(i64::from))
        .bind(settings.models.join(","))
        .bind(settings.tiers.join(","))
        .bind(i64::from(resolved.markup_bp))
        .bind(settings.expires_ms)
        .bind(now_ms)
        .execute(ledger.pool())
        .await?;
    Ok((id, key))
}

/// `create`, also refusing the names of the config's own keys (and `master`, the
/// master key's name in the ledger): a virtual key must not share their spend or budget.
pub async fn create_for(
    config: &crate::config::Config,
    ledger: &Ledger,
    settings: &NewKey,
    now_ms: i64,
) -> Result<(String, String), LedgerError> {
    let name = settings.name.trim();
    if name == "master" || config.keys.values().any(|k| *k.name == *name) {
        return Err(LedgerError::Invalid(format!(
            "`{name}` is the name of a key in the config; choose another name"
        )));
    }
    create(ledger, settings, now_ms).await
}

/// Every stored key (revoked ones included), newest first.
pub async fn list(ledger: &Ledger) -> Result<Vec<KeyInfo>, LedgerError> {
    let rows = sqlx::query("SELECT id, name, team, budget, rpm, tpm, models, tiers, markup_bp, expires_ms, revoked, created_ms FROM virtual_keys ORDER BY created_ms DESC")
        .fetch_all(ledger.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(KeyInfo {
                id: r.try_get(0)?,
                settings: NewKey {
                    name: r.try_get(1)?,
                    team: r.try_get(2)?,
                    budget: r.try_get(3)?,
                    rpm: r.try_get::<Option<i64>, _>(4)?.map(|v| v as u32),
                    tpm: r.try_get::<Option<i64>, _>(5)?.map(|v| v as u32),
                    models: split(&r.try_get::<String, _>(6)?),
                    tiers: split(&r.try_get::<String, _>(7)?),
                    markup_percent: Some(r.try_get::<i64, _>(8)? as f64 / 100.0),
                    expires_ms: r.try_get(9)?,
                },
                revoked: r.try_get::<i64, _>(10)? != 0,
                created_ms: r.try_get(11)?,
            })
        })
        .collect()
}

/// Revokes a key; false when no such key exists.
pub async fn revoke(ledger: &Ledger, id: &str) -> Result<bool, LedgerError> {
    let done = sqlx::query("UPDATE virtual_keys SET revoked = 1 WHERE id = $1")
        .bind(id.to_string())
        .execute(ledger.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Creates or replaces a team.
pub async fn upsert_team(ledger: &Ledger, team: &NewTeam, now_ms: i64) -> Result<(), LedgerError> {
    team.to_config().map_err(invalid)?;
    let mut tx = ledger.pool().begin().await?;
    sqlx::query("DELETE FROM teams WHERE name = $1")
        .bind(team.name.clone())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO teams (name, budget, rpm, tpm, created_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(team.name.clone())
    .bind(team.budget.clone())
    .bind(team.rpm.map(i64::from))
    .bind(team.tpm.map(i64::from))
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Every team defined through the admin API.
pub async fn list_teams(ledger: &Ledger) -> Result<Vec<NewTeam>, LedgerError> {
    let rows = sqlx::query("SELECT name, budget, rpm, tpm FROM teams ORDER BY name")
        .fetch_all(ledger.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(NewTeam {
                name: r.try_get(0)?,
                budget: r.try_get(1)?,
                rpm: r.try_get::<Option<i64>, _>(2)?.map(|v| v as u32),
                tpm: r.try_get::<Option<i64>, _>(3)?.map(|v| v as u32),
            })
        })
        .collect()
}

/// Deletes a team; false when it did not exist.
pub async fn delete_team(ledger: &Ledger, name: &str) -> Result<bool, LedgerError> {
    let done = sqlx::query("DELETE FROM teams WHERE name = $1")
        .bind(name.to_string())
        .execute(ledger.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_key_follows_the_config_key_rules() {
        let settings = NewKey {
            name: "partner".into(),
            budget: Some("50/month".into()),
            tiers: vec!["local".into()],
            markup_percent: Some(10.0),
            ..Default::default()
        };
        let key = settings.to_config([1; 32]).unwrap();
        assert_eq!(key.markup_bp, 1000);
        assert_eq!(key.tiers, [crate::catalog::Tier::Local]);
        assert!(key.limits.budget.is_some());
        // Closed while the shared state is unreachable: the default a config key has too.
        assert!(!key.fail_open);
        let bad = NewKey {
            name: "".into(),
            budget: Some("lots".into()),
            markup_percent: Some(5000.0),
            ..Default::default()
        };
        assert_eq!(
            bad.to_config([1; 32]).unwrap_err().one_line(),
            "name: is empty; markup_percent: must be between 0 and 1000; \
             budget: `lots` is not a budget such as 50/month"
        );
        let team = NewTeam {
            name: " ".into(),
            budget: Some("5/year".into()),
            ..Default::default()
        };
        assert_eq!(
            team.to_config().unwrap_err().one_line(),
            "name: is empty; budget: unknown period `year`; expected day, week or month"
        );
    }

    #[test]
    fn hex_round_trips() {
        let h = hash_key("bzr-x");
        assert_eq!(unhex(&hex(&h)), Some(h));
    }
}
