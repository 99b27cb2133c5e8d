//! The real `bazaar` binary as a child process, for the tests that need one (several
//! replicas sharing Redis and PostgreSQL): it binds port 0 and the test reads the
//! address from its "Listening." log line, so no port is guessed or reused.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `bazaar serve`; stopped with SIGTERM (so it drains and flushes its ledger)
/// and waited for when dropped.
pub struct ServeProcess {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl ServeProcess {
    /// Starts `bazaar serve --config <config> --listen 127.0.0.1:0` and waits for the
    /// address it reports (its logs keep draining on a thread afterwards). The address
    /// is bound before the ledger connects; a request sent meanwhile waits in the
    /// listen backlog until the gateway serves it.
    pub fn start(config: &Path) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env("BAZAAR_LOG", "warn,bazaar=info")
            .env("BAZAAR_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = match lines.next() {
                Some(line) => line.unwrap(),
                None => panic!("bazaar serve exited before listening: {:?}", child.wait()),
            };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "Listening." {
                break v["listen"].as_str().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        ServeProcess { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
