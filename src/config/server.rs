//! The `[server]` and `[state]` sections: where the front end listens, its limits and
//! drain timings, the master key, and the Redis URL of state shared across replicas.
//! Resolves settings only; it never binds a socket or connects to Redis.

use std::time::Duration;

use super::problems::Problems;
use super::raw::{RawServer, RawState};
use super::secret::{self, redact_url, KeyHash};

/// Front-end server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub max_body_bytes: usize,
    pub master_key: Option<KeyHash>,
    /// The key `GET /metrics` asks for (the master key also serves); `None`: open.
    pub metrics_key: Option<KeyHash>,
    pub drain_timeout: Duration,
    /// Unready but still accepting, before the drain starts.
    pub shutdown_grace: Duration,
    /// Longest wait for a complete request head; the connection is closed after it.
    pub header_read_timeout: Duration,
    /// Longest wait for a complete request body.
    pub body_read_timeout: Duration,
    /// Request bodies read at once, across all connections.
    pub max_bodies_in_flight: usize,
}

/// Resolves `[server]`.
pub(super) fn resolve(
    raw: &RawServer,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> ServerConfig {
    let master_key = raw.master_key.as_deref().and_then(|v| {
        secret::resolve(v, env)
            .map_err(|m| problems.add("server.master_key", m))
            .ok()
            .map(|s| s.hash())
    });
    let metrics_key = raw.metrics_key.as_deref().and_then(|v| {
        secret::resolve(v, env)
            .map_err(|m| problems.add("server.metrics_key", m))
            .ok()
            .map(|s| s.hash())
    });
    if raw.listen.parse::<std::net::SocketAddr>().is_err() {
        problems.add(
            "server.listen",
            format!("`{}` is not an address such as 127.0.0.1:8080", raw.listen),
        );
    }
    if raw.max_body_bytes < 1024 {
        problems.add("server.max_body_bytes", "must be at least 1024");
    }
    // Zero is a valid grace (the default): no unready-but-accepting period.
    let shutdown_grace = match humantime::parse_duration(&raw.shutdown_grace) {
        Ok(d) => d,
        Err(e) => {
            problems.add(
                "server.shutdown_grace",
                format!(
                    "`{}` is not a duration such as 5s ({e})",
                    raw.shutdown_grace
                ),
            );
            Duration::ZERO
        }
    };
    let drain_timeout = problems.duration(&raw.drain_timeout, "server.drain_timeout");
    let header_read_timeout =
        problems.duration(&raw.header_read_timeout, "server.header_read_timeout");
    let body_read_timeout = problems.duration(&raw.body_read_timeout, "server.body_read_timeout");
    if raw.max_bodies_in_flight == 0 {
        problems.add("server.max_bodies_in_flight", "must be at least 1");
    }
    ServerConfig {
        listen: raw.listen.clone(),
        max_body_bytes: raw.max_body_bytes,
        master_key,
        metrics_key,
        drain_timeout,
        shutdown_grace,
        header_read_timeout,
        body_read_timeout,
        max_bodies_in_flight: raw.max_bodies_in_flight,
    }
}

/// Resolves `[state]`: the Redis URL, or `None` for in-process limits and budgets.
pub(super) fn resolve_state(
    raw: &RawState,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<String> {
    let url = raw.redis.as_deref()?;
    let url = secret::resolve_url(url, env)
        .map_err(|m| problems.add("state.redis", m))
        .ok()?;
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        problems.add(
            "state.redis",
            format!(
                "`{}` must start with redis:// or rediss://",
                redact_url(&url)
            ),
        );
        return None;
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "MASTER" => Some("bzr-master".into()),
            "REDIS" => Some("redis://:pw@cache:6379/".into()),
            "NOT_REDIS" => Some("http://u:pw@cache/".into()),
            _ => None,
        }
    }

    #[test]
    fn resolves_the_defaults_and_a_master_key() {
        let mut p = Problems::default();
        let raw = RawServer {
            master_key: Some("env:MASTER".into()),
            shutdown_grace: "0s".into(),
            ..Default::default()
        };
        let s = resolve(&raw, &env, &mut p);
        p.finish(()).unwrap();
        assert_eq!(s.master_key, Some(secret::Secret::new("bzr-master").hash()));
        assert_eq!(s.shutdown_grace, Duration::ZERO);
        assert!(!s.drain_timeout.is_zero());
    }

    #[test]
    fn reports_each_bad_field() {
        let mut p = Problems::default();
        let raw = RawServer {
            listen: "nowhere".into(),
            max_body_bytes: 10,
            master_key: Some("env:UNSET".into()),
            metrics_key: Some("env:UNSET_TOO".into()),
            shutdown_grace: "later".into(),
            drain_timeout: "0s".into(),
            header_read_timeout: "soon".into(),
            body_read_timeout: "30s".into(),
            max_bodies_in_flight: 0,
        };
        resolve(&raw, &env, &mut p);
        let err = p.finish(()).unwrap_err();
        assert_eq!(
            err.paths(),
            [
                "server.master_key",
                "server.metrics_key",
                "server.listen",
                "server.max_body_bytes",
                "server.shutdown_grace",
                "server.drain_timeout",
                "server.header_read_timeout",
                "server.max_bodies_in_flight"
            ]
        );
    }

    #[test]
    fn redis_url_must_be_redis_and_is_redacted_in_messages() {
        let mut p = Problems::default();
        let ok = RawState {
            redis: Some("env:REDIS".into()),
        };
        assert_eq!(
            resolve_state(&ok, &env, &mut p).as_deref(),
            Some("redis://:pw@cache:6379/")
        );
        let bad = RawState {
            redis: Some("env:NOT_REDIS".into()),
        };
        assert_eq!(resolve_state(&bad, &env, &mut p), None);
        let err = p.finish(()).unwrap_err();
        assert_eq!(
            err.one_line(),
            "state.redis: `http://***@cache/` must start with redis:// or rediss://"
        );
    }
}
