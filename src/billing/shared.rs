//! Limits and budgets shared by every replica through Redis: each check is one Lua
//! script, atomic on the server, so a budget or an RPM limit holds across replicas.
//! Without `state.redis` the in-process stores are used instead. If Redis cannot be
//! reached, the key's `on_shared_state_error` policy decides: `closed` (refuse, the
//! default) or `open` (admit), with a log line and a metric.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use super::budget::period_start;
use crate::config::Budget;

/// A Redis connection for shared limits; cheap to clone.
#[derive(Clone)]
pub struct SharedState {
    conn: ConnectionManager,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedState(redis)")
    }
}

/// What a shared check says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Over the limit; retry after this long.
    Limited(Duration),
    /// Over budget: spent, reserved.
    OverBudget(u64, u64),
}

const COUNT: &str = r"
local c = redis.call('INCRBY', KEYS[1], ARGV[1])
if c == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return c";

const RESERVE: &str = r"
redis.call('HSETNX', KEYS[1], 'spent', ARGV[4])
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local limit = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
if spent >= limit or spent + reserved + amount > limit then return {0, spent, reserved} end
redis.call('HINCRBY', KEYS[1], 'reserved', amount)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, spent, reserved}";

const SETTLE: &str = r"
redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
return 1";

/// Milliseconds in the longest period plus a margin: budget windows expire after it.
const WINDOW_TTL_MS: i64 = 32 * 86_400_000;

impl SharedState {
    /// Connects (and keeps reconnecting) to `url`.
    pub async fn connect(url: &str) -> Result<SharedState, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(SharedState { conn })
    }

    /// Counts `n` against a per-minute limit of `limit` in a fixed one-minute window.
    pub async fn per_minute(
        &self,
        scope: &str,
        what: &str,
        limit: u32,
        n: u64,
        now_ms: i64,
    ) -> Result<Verdict, redis::RedisError> {
        let minute = now_ms.div_euclid(60_000);
        let key = format!("bazaar:{what}:{scope}:{minute}");
        let count: i64 = Script::new(COUNT)
            .key(&key)
            .arg(n.max(1))
            .arg(61_000)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if count > i64::from(limit) {
            return Ok(Verdict::Limited(Duration::from_millis(
                (60_000 - now_ms.rem_euclid(60_000)) as u64,
            )));
        }
        Ok(Verdict::Admitted)
    }

    /// Reserves `amount` in the scope's current budget window; `seed` is this period's
    /// spend from the ledger, used if this replica is the first to open the window.
    pub async fn reserve(
        &self,
        scope: &str,
        budget: Budget,
        amount: u64,
        seed: u64,
        now_ms: i64,
    ) -> Result<(Verdict, String), redis::RedisError> {
        let key = format!(
            "bazaar:budget:{scope}:{}",
            period_start(budget.period, now_ms)
        );
        let (ok, spent, reserved): (i64, i64, i64) = Script::new(RESERVE)
            .key(&key)
            .arg(budget.limit_nanos)
            .arg(amount)
            .arg(WINDOW_TTL_MS)
            .arg(seed)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let verdict = if ok == 1 {
            Verdict::Admitted
        } else {
            Verdict::OverBudget(spent.max(0) as u64, reserved.max(0) as u64)
        };
        Ok((verdict, key))
    }

    /// Replaces a reservation with the actual cost (0 releases it).
    pub async fn settle(
        &self,
        window_key: &str,
        reserved: u64,
        actual: u64,
    ) -> Result<(), redis::RedisError> {
        let _: i64 = Script::new(SETTLE)
            .key(window_key)
            .arg(reserved)
            .arg(actual)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
