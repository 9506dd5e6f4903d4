//! `switchboard init` as a newcomer runs it: the file it writes, then the commands it prints,
//! run as printed (through `sh`, with the binary under test first on `PATH`) against the
//! server started from that file.

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_test_support::cli::Serve;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);
/// The variables that would fill in a flag of the commands run here.
const ENV: [&str; 5] = [
    "SWITCHBOARD_API_KEY",
    "SWITCHBOARD_CONFIG",
    "SWITCHBOARD_JWT_SECRET",
    "SWITCHBOARD_LISTEN",
    "SWITCHBOARD_TOKEN",
];

#[test]
fn the_printed_commands_run_against_the_written_file() {
    let dir = Dir::new("commands");
    let path = dir.0.join("s.toml");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let out =
        switchboard(&["init".as_ref(), path.as_os_str(), "--listen".as_ref(), listen.as_ref()]);
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(&path).expect("test setup").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let (jwt_secret, api_key) = secrets(&path);
    assert!(jwt_secret.len() >= 64 && api_key.len() >= 64, "{jwt_secret} {api_key}");
    assert_ne!(jwt_secret, api_key);

    // A second file: new secrets.
    let other = dir.0.join("t.toml");
    assert!(switchboard(&["init".as_ref(), other.as_os_str()]).status.success());
    let (other_jwt, other_key) = secrets(&other);
    assert!(other_jwt != jwt_secret && other_key != api_key, "secrets repeat across runs");

    let stdout = String::from_utf8(out.stdout).expect("test setup");
    let commands: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("switchboard ") || line.starts_with("SWITCHBOARD_"))
        .collect();
    let [serve, token, publish] = commands[..] else { panic!("three commands: {stdout}") };

    // 1. The server, from the file alone.
    assert_eq!(serve, format!("switchboard serve --config {}", path.display()), "{stdout}");
    let mut server = ENV
        .iter()
        .fold(Serve::without_listen(BIN), |serve, var| serve.env_remove(var))
        .args(["--config".as_ref(), path.as_os_str()])
        .start();
    assert_eq!(server.addr.to_string(), listen, "the file's listen address");
    let ws = format!("ws://{listen}");

    // 2. A token for alice, which opens the signed-in namespace to her.
    let minted = shell(token);
    assert!(minted.status.success(), "{token}: {minted:?}");
    let alice = String::from_utf8(minted.stdout).expect("test setup").trim().to_owned();
    assert_eq!(alice.split('.').count(), 3, "a JWT: {alice}");
    let anonymous = switchboard(&["subscribe", &ws, "rooms:lobby"].map(AsRef::as_ref));
    assert_eq!(anonymous.status.code(), Some(1), "rooms refuse anonymous: {anonymous:?}");
    let sub = Subscriber::spawn(&["--token", &alice, &ws, "rooms:lobby", "news:headlines"]);
    sub.wait_subscribed(&["rooms:lobby", "news:headlines"]);

    // 3. The backend's publication, through the HTTP API with the file's key.
    let published = shell(publish);
    assert!(published.status.success(), "{publish}: {published:?}");
    let ack: Value = serde_json::from_slice(&published.stdout).expect("a JSON acknowledgement");
    assert_eq!(ack["offset"], 1, "{ack}");
    let line = sub.next_line();
    assert_eq!(line["channel"], "news:headlines", "{line}");
    assert_eq!(line["data"], json!({"title": "hello"}), "{line}");

    // Alice publishes in her rooms; no client publishes news.
    let args = ["publish", "--token", &alice, &ws, "rooms:lobby", "hi"];
    let out = switchboard(&args.map(AsRef::as_ref));
    assert!(out.status.success(), "{out:?}");
    let line = sub.next_line();
    assert_eq!(
        (line["channel"].clone(), line["data"].clone()),
        (json!("rooms:lobby"), json!("hi"))
    );
    let args = ["publish", "--token", &alice, &ws, "news:headlines", "fake"];
    let out = switchboard(&args.map(AsRef::as_ref));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not publish"), "{out:?}");

    drop(sub);
    assert!(server.terminate(WAIT).success(), "{}", server.log());
}

#[test]
fn an_existing_file_is_kept_without_force() {
    let dir = Dir::new("force");
    let path = dir.0.join("switchboard.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:1\"\n").expect("test setup");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("test setup");

    let out = switchboard(&["init".as_ref(), path.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).expect("test setup");
    assert!(stderr.contains("already exists") && stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).expect("test setup"), "listen = \"127.0.0.1:1\"\n");

    let out = switchboard(&["init".as_ref(), path.as_os_str(), "--force".as_ref()]);
    assert!(out.status.success(), "{out:?}");
    assert!(secrets(&path).0.len() >= 64);
    let mode = std::fs::metadata(&path).expect("test setup").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "an overwritten file is made private too: {mode:o}");
}

#[test]
fn the_default_path_is_in_the_current_directory() {
    let dir = Dir::new("default");
    let out = Command::new(BIN).arg("init").current_dir(&dir.0).output().expect("test setup");
    assert!(out.status.success(), "{out:?}");
    assert!(secrets(&dir.0.join("switchboard.toml")).0.len() >= 64);
    let stdout = String::from_utf8(out.stdout).expect("test setup");
    assert!(stdout.contains("switchboard serve --config switchboard.toml\n"), "{stdout}");
    assert!(stdout.contains(" http://127.0.0.1:8080 "), "{stdout}");
}

/// A directory of this test process, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("switchboard-init-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test setup");
        Self(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `auth.jwt_secret` and `api_key` of the file at `path`.
fn secrets(path: &Path) -> (String, String) {
    let file: toml::Table =
        std::fs::read_to_string(path).expect("test setup").parse().expect("test setup");
    let jwt = file["auth"]["jwt_secret"].as_str().expect("a jwt_secret").to_owned();
    (jwt, file["api_key"].as_str().expect("an api_key").to_owned())
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("test setup").local_addr().expect("test setup").port()
}

/// Runs the binary to its end, without the variables of [`ENV`].
fn switchboard(args: &[&std::ffi::OsStr]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    run(&mut command)
}

/// Runs a printed command line with `sh`, `switchboard` being the binary under test.
fn shell(line: &str) -> Output {
    let bin_dir = Path::new(BIN).parent().expect("test setup");
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("test setup");
    let mut command = Command::new("sh");
    command.args(["-c", line]).env("PATH", path).stdin(Stdio::null());
    run(&mut command)
}

/// Runs `command` to its end within [`WAIT`], without the variables of [`ENV`].
fn run(command: &mut Command) -> Output {
    for var in ENV {
        command.env_remove(var);
    }
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("test setup");
    let pid = child.id();
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(WAIT) {
        Ok(output) => output.expect("test setup"),
        Err(_) => {
            // Its PID only.
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("{command:?} did not finish within {WAIT:?}")
        }
    }
}

/// `switchboard subscribe`, its output read on threads so that every wait is bounded;
/// killed when dropped.
struct Subscriber {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Subscriber {
    fn spawn(args: &[&str]) -> Self {
        let mut command = Command::new(BIN);
        command.arg("subscribe").args(args);
        for var in ENV {
            command.env_remove(var);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("test setup");
        let stdout = lines(child.stdout.take().expect("test setup"));
        let stderr = lines(child.stderr.take().expect("test setup"));
        Self { child, stdout, stderr }
    }

    /// Waits until it says it is subscribed to each of `channels`.
    fn wait_subscribed(&self, channels: &[&str]) {
        let mut left: Vec<&str> = channels.to_vec();
        let deadline = Instant::now() + WAIT;
        while !left.is_empty() {
            let line = self
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("not subscribed to {left:?} within {WAIT:?}"));
            left.retain(|channel| !line.ends_with(&format!("subscribed to {channel}")));
        }
    }

    /// The next publication it prints.
    fn next_line(&self) -> Value {
        let line = self.stdout.recv_timeout(WAIT).expect("a publication within the wait");
        serde_json::from_str(&line).expect("a JSON line")
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of `reader`, sent as they come from a thread.
fn lines(reader: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}
