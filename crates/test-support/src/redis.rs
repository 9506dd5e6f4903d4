//! A private `redis-server` per test, on a free port of 127.0.0.1.
//!
//! Never touches the machine's own Redis on 6379: each [`RedisServer`] spawns its own
//! child process with persistence off (`--save "" --appendonly no`), and kills exactly that
//! child's PID when stopped or dropped. The binary is `redis-server` from `PATH`, or the
//! path in the `REDIS_SERVER` environment variable.
//!
//! Starting and restarting block the calling thread until the server answers `PING` and its
//! `INFO` shows the child's PID (bounded by [`START_TIMEOUT`]); that takes milliseconds, so
//! calling them from an async test is fine.
//!
//! ```no_run
//! use switchboard_test_support::redis::RedisServer;
//! let mut redis = RedisServer::start();
//! let url = redis.url(); // redis://127.0.0.1:<port>/0
//! redis.pause();         // a hung server: connections stay open, nothing answers
//! redis.resume();
//! redis.stop();          // an outage: connections drop, the port refuses
//! redis.restart();       // the same port, empty
//! # drop(url);
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process on its own port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Spawns a server on a free port and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// When no server comes up within [`START_TIMEOUT`] after a few tries (no `redis-server`
    /// binary, or ports keep being taken).
    pub fn start() -> Self {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn(port) {
                Ok(child) => return Self { port, child: Some(child) },
                // Another process may have taken the port between probing and binding.
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
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

    /// Stops the server if running and starts a fresh, empty one on the same port.
    ///
    /// # Panics
    ///
    /// When the new server does not answer `PING` within [`START_TIMEOUT`].
    pub fn restart(&mut self) {
        self.stop();
        match spawn(self.port) {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("could not restart redis-server on port {}: {e}", self.port),
        }
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the redis-server is stopped");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("running kill {signal}: {e}"));
        assert!(status.success(), "kill {signal} {} failed: {status}", child.id());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `redis-server` on `port` and waits for its `PING`; kills it if it does not come up.
fn spawn(port: u16) -> Result<Child, String> {
    let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
    let mut child = Command::new(&binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning {binary}: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server on port {port} exited: {status}"));
        }
        // Ours, not a server some other test started on the same port a moment earlier.
        if answers_as(port, child.id()) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            return Err(format!(
                "redis-server on port {port} did not answer within {START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the server on `port` answers `PING` and is process `pid`.
fn answers_as(port: u16, pid: u32) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err()
        || stream.write_all(b"PING\r\nINFO server\r\n").is_err()
    {
        return false;
    }
    let wanted = format!("\r\nprocess_id:{pid}\r\n");
    let mut reply = Vec::new();
    let mut chunk = [0; 4096];
    while reply.len() < MAX_REPLY {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&reply);
        if text.starts_with("+PONG\r\n") && text.contains(&wanted) {
            return true;
        }
    }
    false
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

/// How long a server may take to answer its first `PING`.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// More than `INFO server` ever says.
const MAX_REPLY: usize = 64 * 1024;

/// Ports tried before giving up.
const START_ATTEMPTS: usize = 3;
