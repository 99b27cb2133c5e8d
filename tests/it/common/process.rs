//! The real `bazaar` binary as a child process, for the tests that need one (several
//! replicas sharing Redis and PostgreSQL): it binds port 0 and the test reads the
//! address from its "Listening." log line, so no port is guessed or reused.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A running `bazaar serve`; stopped with SIGTERM (so it drains and flushes its ledger)
/// and waited for when dropped.
pub struct ServeProcess {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Every line it has written to stderr, as its log thread read them.
    logs: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts `bazaar serve --config <config> --listen 127.0.0.1:0` and waits for the
    /// address it reports (its logs keep draining on a thread afterwards). The address
    /// is bound before the ledger connects; a request sent meanwhile waits in the
    /// listen backlog until the gateway serves it.
    pub fn start(config: &Path) -> ServeProcess {
        ServeProcess::start_logging(config, "warn,bazaar=info")
    }

    /// [`ServeProcess::start`] with the log filter `filter` (`BAZAAR_LOG`); its JSON log
    /// lines are kept for [`ServeProcess::stop`] to return.
    pub fn start_logging(config: &Path, filter: &str) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env("BAZAAR_LOG", filter)
            .env("BAZAAR_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = match lines.next() {
                Some(line) => line.unwrap(),
                None => panic!("bazaar serve exited before listening: {:?}", child.wait()),
            };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            logs.lock().unwrap().push(line);
            if v["message"] == "Listening." {
                break v["listen"].as_str().unwrap().parse().unwrap();
            }
        };
        let kept = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        ServeProcess {
            child,
            addr,
            logs,
            reader: Some(reader),
        }
    }

    /// Stops the gateway as [`Drop`] does and returns every line it logged, to its last.
    pub fn stop(mut self) -> Vec<String> {
        self.terminate();
        std::mem::take(&mut *self.logs.lock().unwrap())
    }

    fn terminate(&mut self) {
        let Some(reader) = self.reader.take() else {
            return; // Already stopped.
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        // The process has exited, so its stderr ends and the reader sees every line.
        let _ = reader.join();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Its process id (to signal it while it serves).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}
