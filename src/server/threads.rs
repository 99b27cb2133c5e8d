//! Request threads: one current-thread tokio runtime per thread, each serving the
//! connections handed to it from their first byte to their close. A call's client
//! connection, its upstream connection (`providers::pool` keeps them per thread) and its
//! timers all live on one thread, so answering it wakes no other. The runtime that runs
//! `bazaar::serve_on` keeps the listener, the signals and the background work (the
//! ledger writer, purges, reloads).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;

/// The request threads, running until dropped (which ends their runtimes and joins them).
#[derive(Debug)]
pub struct RequestThreads {
    threads: Vec<RequestThread>,
}

#[derive(Debug)]
struct RequestThread {
    handle: Handle,
    /// Connections open on it: a new one goes to the thread with the fewest.
    open: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One connection counted on its thread until dropped.
#[derive(Debug)]
pub struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many request threads start when `BAZAAR_WORKER_THREADS` does not say: one per
/// core but one, and at least one. The remaining core runs what the calls leave behind
/// them (the ledger's writer and its SQLite thread, the accept loop, the kernel's work
/// for the sockets) and whatever shares the machine (the application beside a sidecar),
/// without preempting a request thread: on two cores one request thread spends 5-12 %
/// less CPU per call at 16 concurrent calls than two (docs/performance.md).
pub fn default_count(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

impl RequestThreads {
    /// Starts `n` request threads (at least one).
    pub fn start(n: usize) -> std::io::Result<RequestThreads> {
        let mut threads = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("bazaar-request-{i}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            threads.push(RequestThread {
                handle,
                open: Arc::default(),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(RequestThreads { threads })
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// The thread with the fewest open connections, and the new connection counted on it.
    pub(crate) fn pick(&self) -> Option<(&Handle, Open)> {
        let least = self
            .threads
            .iter()
            .min_by_key(|t| t.open.load(Ordering::Relaxed))?;
        least.open.fetch_add(1, Ordering::Relaxed);
        Some((&least.handle, Open(least.open.clone())))
    }
}

impl Drop for RequestThreads {
    fn drop(&mut self) {
        for t in &mut self.threads {
            drop(t.stop.take());
        }
        for t in &mut self.threads {
            if let Some(thread) = t.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::default_count;

    #[test]
    fn one_core_is_left_to_the_rest_but_one_thread_always_serves() {
        assert_eq!(default_count(0), 1);
        assert_eq!(default_count(1), 1);
        assert_eq!(default_count(2), 1);
        assert_eq!(default_count(4), 3);
        assert_eq!(default_count(16), 15);
    }
}
