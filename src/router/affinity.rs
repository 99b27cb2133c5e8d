//! Session affinity: calls of one session (the `user` field, `x-bazaar-session`, or the
//! same long prompt prefix) stick to the backend that served the last one while it
//! stays healthy, so the provider's prompt cache stays warm.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Prompts shorter than this (in characters of their head) get no prefix affinity.
pub const PREFIX_CHARS: usize = 1024;
/// Most sessions remembered; expired ones are pruned when it is reached.
pub const CAPACITY: usize = 100_000;

/// Remembered session → backend (`provider/upstream`), with expiry.
#[derive(Debug, Default)]
pub struct Affinity {
    sessions: Mutex<HashMap<u64, (String, Instant)>>,
}

/// The session key of a call, if it has one: explicit session, then `user`, then a long prefix.
pub fn session_key(session: Option<&str>, user: Option<&str>, prompt_head: &str) -> Option<u64> {
    let mut h = DefaultHasher::new();
    if let Some(s) = session {
        ("session", s).hash(&mut h);
    } else if let Some(u) = user {
        ("user", u).hash(&mut h);
    } else if prompt_head.len() >= PREFIX_CHARS {
        let mut end = PREFIX_CHARS;
        while !prompt_head.is_char_boundary(end) {
            end -= 1;
        }
        ("prefix", &prompt_head[..end]).hash(&mut h);
    } else {
        return None;
    }
    Some(h.finish())
}

impl Affinity {
    /// The backend this session last used, if not expired.
    pub fn get(&self, key: u64, now: Instant) -> Option<String> {
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key)
            .filter(|(_, until)| *until > now)
            .map(|(b, _)| b.clone())
    }

    /// Remembers that `backend` served this session.
    pub fn set(&self, key: u64, backend: String, now: Instant, ttl: Duration) {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= CAPACITY {
                // Still full of live sessions: forget an arbitrary tenth rather than grow.
                let drop: Vec<u64> = map.keys().take(CAPACITY / 10).copied().collect();
                for k in drop {
                    map.remove(&k);
                }
            }
        }
        map.insert(key, (backend, now + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sessions_expire() {
        let a = Affinity::default();
        let key = session_key(Some("s1"), None, "").unwrap();
        a.set(
            key,
            "groq/llama".into(),
            Instant::now(),
            Duration::from_secs(60),
        );
        assert_eq!(a.get(key, Instant::now()).as_deref(), Some("groq/llama"));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(a.get(key, Instant::now()), None);
    }

    #[test]
    fn keys_come_from_session_user_or_long_prefix() {
        assert!(session_key(None, None, "short").is_none());
        assert_eq!(
            session_key(None, Some("u"), ""),
            session_key(None, Some("u"), "other")
        );
        let long = "x".repeat(2000);
        assert!(session_key(None, None, &long).is_some());
        assert_ne!(
            session_key(Some("u"), None, ""),
            session_key(None, Some("u"), "")
        );
    }
}
