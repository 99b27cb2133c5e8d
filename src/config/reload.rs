//! Hot reload: the config file is re-read when it, or a file it names (the predictor's
//! weights, `[router.predictor] file`), changes on disk, or on SIGHUP; validated in full
//! (weights included) and handed to `apply`, which swaps it in atomically. A file that
//! fails validation changes nothing: the old config stays, and the reason is logged.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Config, ConfigError};

/// What a change of file looks like from outside: modification time and size.
fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The files the config at `path` reads besides itself, as it is written now: the
/// predictor's weights file when one is named (relative to the working directory, as it
/// is loaded).
fn companions(path: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(raw) = toml::from_str::<super::raw::RawConfig>(&text) else {
        return Vec::new();
    };
    let predictor = raw.router.predictor;
    predictor
        .file
        .filter(|_| predictor.enabled)
        .map(PathBuf::from)
        .into_iter()
        .collect()
}

/// The fingerprints of the config file and its companions.
fn fingerprints(path: &Path) -> Vec<Option<(SystemTime, u64)>> {
    std::iter::once(path.to_path_buf())
        .chain(companions(path))
        .map(|p| fingerprint(&p))
        .collect()
}

/// Watches `path` (and the weights file it names) every `interval` and on each message of `hup` (SIGHUP, forwarded by
/// the binary) until `stop`; each change, and each message, is passed to `apply` (which
/// may still refuse it). The file's state is taken when `watch` is called, so a change
/// made before the future first runs still counts.
pub fn watch<F, Fut>(
    path: PathBuf,
    env: fn(&str) -> Option<String>,
    interval: Duration,
    mut hup: mpsc::Receiver<()>,
    stop: CancellationToken,
    mut apply: F,
) -> impl Future<Output = ()>
where
    F: FnMut(Result<Config, ConfigError>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut last = fingerprints(&path);
    async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // Once every sender of `hup` is gone, only the file is watched (a closed channel
        // would otherwise answer every poll at once).
        let mut hup_open = true;
        loop {
            let forced = tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => false,
                msg = hup.recv(), if hup_open => match msg {
                    Some(()) => true,
                    None => {
                        hup_open = false;
                        continue;
                    }
                },
            };
            let now = fingerprints(&path);
            if !forced && now == last {
                continue;
            }
            last = now;
            tracing::debug!(forced, "Config file changed; reloading.");
            apply(Config::load(&path, &env)).await;
        }
    }
}
