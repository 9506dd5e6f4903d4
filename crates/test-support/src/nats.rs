//! A private `nats-server` with JetStream per test, on a free port of 127.0.0.1.
//!
//! Never touches the machine's own NATS on 4222: each [`NatsServer`] spawns its own child
//! process (`nats-server -js -a 127.0.0.1 -p <port> -sd <dir>`) with its JetStream storage in
//! a temporary directory of its own, kills exactly that child's PID when stopped or dropped,
//! and removes the directory on drop. The binary is `nats-server` from `PATH` (else
//! `/usr/sbin/nats-server`), or the path in the `NATS_SERVER` environment variable.
//!
//! Starting and restarting block the calling thread until the server greets a connection
//! with an `INFO` naming it (each server gets a unique name) and offering JetStream, bounded
//! by [`START_TIMEOUT`]; that takes milliseconds, so calling them from an async test is fine.
//!
//! ```no_run
//! use switchboard_test_support::nats::NatsServer;
//! let mut nats = NatsServer::start();
//! let url = nats.url();  // nats://127.0.0.1:<port>
//! nats.pause();          // a hung server: connections stay open, nothing answers
//! nats.resume();
//! nats.stop();           // an outage: connections drop, the port refuses
//! nats.restart();        // the same port and storage: streams survive
//! nats.restart_empty();  // the same port, storage wiped: everything stored is lost
//! # drop(url);
//! ```

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A `nats-server` child process on its own port and storage directory, killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    store: PathBuf,
    /// Arguments given to every start of this server besides the usual ones.
    extra: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Spawns a server on a free port with an empty storage directory and waits until it
    /// greets connections.
    ///
    /// # Panics
    ///
    /// When no server comes up within [`START_TIMEOUT`] after a few tries (no `nats-server`
    /// binary, or ports keep being taken), or the directory cannot be made.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// As [`start`](Self::start), with more arguments for `nats-server` (authentication,
    /// TLS), kept for restarts.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|&arg| arg.to_owned()).collect();
        let store = std::env::temp_dir().join(unique_name());
        std::fs::create_dir_all(&store)
            .unwrap_or_else(|e| panic!("creating {}: {e}", store.display()));
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn(port, &store, &extra) {
                Ok(child) => return Self { port, store, extra, child: Some(child) },
                // Another process may have taken the port between probing and binding.
                Err(e) => last_error = e,
            }
        }
        drop(std::fs::remove_dir_all(&store));
        panic!("could not start nats-server: {last_error}");
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server process is running (stopped servers are not).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit. Clients see their
    /// connections drop and new ones refused. Does nothing when already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Freezes the server (SIGSTOP to its PID): connections stay open but nothing is
    /// answered, like a hung host. Undo with [`resume`](Self::resume); dropping a paused
    /// server still kills it.
    ///
    /// # Panics
    ///
    /// When the server is stopped or the signal cannot be sent.
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// Lets a [`pause`](Self::pause)d server run again (SIGCONT).
    ///
    /// # Panics
    ///
    /// When the server is stopped or the signal cannot be sent.
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    /// Stops the server if running and starts it again on the same port with the same
    /// storage: what JetStream had written survives.
    ///
    /// # Panics
    ///
    /// When the new server does not come up within [`START_TIMEOUT`].
    pub fn restart(&mut self) {
        self.stop();
        match spawn(self.port, &self.store, &self.extra) {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("could not restart nats-server on port {}: {e}", self.port),
        }
    }

    /// Stops the server if running, wipes its storage and starts a fresh one on the same
    /// port: every stream and bucket is gone.
    ///
    /// # Panics
    ///
    /// As [`restart`](Self::restart), or when the storage cannot be wiped.
    pub fn restart_empty(&mut self) {
        self.stop();
        drop(std::fs::remove_dir_all(&self.store));
        std::fs::create_dir_all(&self.store)
            .unwrap_or_else(|e| panic!("creating {}: {e}", self.store.display()));
        self.restart();
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the nats-server is stopped");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("running kill {signal}: {e}"));
        assert!(status.success(), "kill {signal} {} failed: {status}", child.id());
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        drop(std::fs::remove_dir_all(&self.store));
    }
}

/// Spawns `nats-server` on `port` storing in `store`, with `extra` arguments, and waits for its greeting; kills it
/// if it does not come up.
fn spawn(port: u16, store: &std::path::Path, extra: &[String]) -> Result<Child, String> {
    let name = unique_name();
    let store = store.to_str().ok_or("the storage path is not UTF-8")?;
    let run = |binary: &str| {
        Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd", store, "-n", &name])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let spawned = match std::env::var("NATS_SERVER") {
        Ok(binary) => run(&binary).map_err(|e| format!("spawning {binary}: {e}")),
        // Debian installs it in /usr/sbin, which a user's PATH may not hold.
        Err(_) => run("nats-server")
            .or_else(|_| run(DEBIAN_BINARY))
            .map_err(|e| format!("spawning nats-server (nor {DEBIAN_BINARY}): {e}")),
    };
    let mut child = spawned?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("nats-server on port {port} exited: {status}"));
        }
        // Ours, not a server some other test started on the same port a moment earlier.
        if greets_as(port, &name) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            return Err(format!(
                "nats-server on port {port} did not answer within {START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the server on `port` greets with an `INFO` naming it `name` and offering
/// JetStream.
fn greets_as(port: u16, name: &str) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    if stream.set_read_timeout(Some(Duration::from_millis(500))).is_err() {
        return false;
    }
    let mut greeting = Vec::new();
    let mut chunk = [0; 4096];
    while !greeting.ends_with(b"\r\n") && greeting.len() < MAX_GREETING {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => greeting.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&greeting);
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    compact.starts_with("INFO")
        && compact.contains(&format!("\"server_name\":\"{name}\""))
        && compact.contains("\"jetstream\":true")
}

/// A name no other server of this machine has: the process, a counter and the time.
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("switchboard-test-{}-{n}-{nanos}", std::process::id())
}

/// Kills exactly this child (its own PID) and reaps it.
fn kill(child: &mut Child) {
    // An error means it already exited; `wait` reaps it either way.
    drop(child.kill());
    drop(child.wait());
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
    listener.local_addr().expect("a bound listener has an address").port()
}

/// Where the Debian package puts the server.
const DEBIAN_BINARY: &str = "/usr/sbin/nats-server";

/// How long a server may take to greet its first connection.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// More than an `INFO` line ever says.
const MAX_GREETING: usize = 64 * 1024;

/// Ports tried before giving up.
const START_ATTEMPTS: usize = 3;
