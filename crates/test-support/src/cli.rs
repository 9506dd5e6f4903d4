//! The `switchboard` binary as a child process: `serve` with arguments and environment,
//! waited for until it logs where it listens, its standard error kept, killed by its PID
//! when dropped.
//!
//! The binary's path comes from the caller (`env!("CARGO_BIN_EXE_switchboard")` exists
//! only in the CLI crate's tests).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to listen, and a line to arrive, unless told otherwise.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A `switchboard serve` command line, before it starts.
#[derive(Debug)]
pub struct Serve {
    command: Command,
}

impl Serve {
    /// `<bin> serve --listen 127.0.0.1:0`, logging at `info`.
    pub fn new(bin: impl AsRef<OsStr>) -> Self {
        let mut serve = Self::without_listen(bin);
        serve.command.args(["--listen", "127.0.0.1:0"]);
        serve
    }

    /// `<bin> serve`, logging at `info`, for a listen address from elsewhere (a config file,
    /// the environment).
    pub fn without_listen(bin: impl AsRef<OsStr>) -> Self {
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .env("SWITCHBOARD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Self { command }
    }

    /// Appends arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Runs the server in `dir` (where a relative `--config` path is read from).
    #[must_use]
    pub fn current_dir(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Sets an environment variable (`SWITCHBOARD_LOG` too, which defaults to `info`).
    #[must_use]
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Sets environment variables, in order.
    #[must_use]
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.command.envs(vars);
        self
    }

    /// Removes an environment variable the test process may have, so the server does not
    /// inherit it.
    #[must_use]
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.command.env_remove(key);
        self
    }

    /// Spawns the server and waits until it logs `listening on http://ADDR` (or
    /// `https://ADDR` with TLS).
    ///
    /// # Panics
    ///
    /// When it cannot be spawned, exits first, or does not listen within [`LIMIT`]; the
    /// message holds what it logged.
    pub fn start(mut self) -> Served {
        let mut child = self.command.spawn().expect("spawn switchboard serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (sender, lines) = mpsc::channel();
        // Drained to the end, so the server never blocks on a full pipe.
        std::thread::spawn({
            let log = Arc::clone(&log);
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    {
                        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                        log.push_str(&line);
                        log.push('\n');
                    }
                    // Once nobody reads lines, keep draining for the log.
                    let _ = sender.send(line);
                }
            }
        });
        let mut served = Served { addr: SocketAddr::from(([127, 0, 0, 1], 0)), child, log, lines };
        let deadline = Instant::now() + LIMIT;
        loop {
            match served.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        served.addr = addr;
                        return served;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("switchboard serve did not listen in {LIMIT:?}: {}", served.log())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = served.child.wait().expect("wait for switchboard serve");
                    panic!("switchboard serve exited ({status}) before listening: {}", served.log())
                }
            }
        }
    }
}

/// A running `switchboard serve`; killed (SIGKILL, its PID only) when dropped.
#[derive(Debug)]
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
    lines: Receiver<String>,
}

impl Served {
    /// `ws://<addr>/ws`.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The next line of standard error for which `wanted` holds, skipping the others (the
    /// listen line is already taken).
    ///
    /// # Panics
    ///
    /// When no such line comes within `limit`, or standard error ends first.
    pub fn next_line(&self, limit: Duration, mut wanted: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("no matching log line ({e:?}) within {limit:?}: {}", self.log()),
            }
        }
    }

    /// The lines not yet taken, once standard error ends (after the process exits).
    ///
    /// # Panics
    ///
    /// When standard error stays open past `limit`.
    pub fn rest_of_lines(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => panic!("standard error still open: {rest:?}"),
            }
        }
    }

    /// Sends SIGTERM (a graceful stop) to its PID and waits for it to exit.
    ///
    /// # Panics
    ///
    /// When `kill` cannot run, or the process does not exit within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for switchboard serve") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {limit:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9` its PID, and reaps it.
    ///
    /// # Panics
    ///
    /// When `kill` fails.
    pub fn kill9(&mut self) {
        self.signal("-KILL");
        drop(self.child.wait());
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Already gone after `kill9` or `terminate`; `kill` then fails harmlessly.
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

/// The address in a `switchboard listening on http://ADDR …` (or `https://`) log line,
/// plain or JSON.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http").nth(1)?;
    let rest = rest.strip_prefix("://").or_else(|| rest.strip_prefix("s://"))?;
    let end = rest.find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)));
    let rest = &rest[..end.unwrap_or(rest.len())];
    rest.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::listening_addr;

    #[test]
    fn finds_the_address_in_plain_and_json_lines() {
        let plain = "INFO switchboard listening on http://127.0.0.1:4000 (ws at /ws)";
        assert_eq!(listening_addr(plain), Some("127.0.0.1:4000".parse().unwrap()));
        let json = r#"{"fields":{"message":"switchboard listening on http://[::1]:80"}}"#;
        assert_eq!(listening_addr(json), Some("[::1]:80".parse().unwrap()));
        let last = "listening on http://127.0.0.1:9";
        assert_eq!(listening_addr(last), Some("127.0.0.1:9".parse().unwrap()));
        let tls = "INFO switchboard listening on https://127.0.0.1:4443 (echo at wss://…)";
        assert_eq!(listening_addr(tls), Some("127.0.0.1:4443".parse().unwrap()));
        assert_eq!(listening_addr("waiting for redis"), None);
    }
}
