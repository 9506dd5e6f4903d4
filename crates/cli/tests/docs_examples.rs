//! The command lines of the README's "From the command line" and of `docs/clients.md`'s
//! command-line section, run as pasted against a real server: only the program (this build),
//! the address and the example host are replaced.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_test_support::cli::Serve;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const WAIT: Duration = Duration::from_secs(10);

/// The README's examples: `cargo run --release --` stands for this build's binary and
/// 127.0.0.1:8080 for the test server's address.
#[test]
fn the_readme_command_line_examples_run_as_pasted() {
    let section = section(include_str!("../../../README.md"), "From the command line");
    let commands = sh_lines(section);
    let names: Vec<&str> = commands
        .iter()
        .map(|c| c.split("cargo run --release -- ").nth(1).and_then(|r| r.split(' ').next()))
        .map(|name| name.expect("a `cargo run --release --` command"))
        .collect();
    assert_eq!(names, ["subscribe", "publish", "connect", "token", "init"], "{commands:#?}");
    let dir = Scratch::new("readme");
    let plain = Serve::new(BIN).env_remove("SWITCHBOARD_API_KEY").start();
    let addr = plain.addr.to_string();
    let pasted = |command: &str| {
        command
            .replace("cargo run --release --", &format!("'{BIN}'"))
            .replace("127.0.0.1:8080", &addr)
    };

    // The subscriber prints what the publisher publishes, and the publisher its ack.
    let sub = Shell::spawn(&format!("exec {}", pasted(commands[0])), &dir.0, &[]);
    sub.stderr_until("subscribed to chat:lobby");
    let ack = run(&pasted(commands[1]), &dir.0, &[]);
    assert_eq!((ack["offset"].clone(), ack["epoch"].is_string()), (json!(1), true), "{ack}");
    let line = parse(&sub.line());
    assert_eq!(line["data"], json!({"text": "hello"}), "{line}");
    drop(sub);

    // `connect` prints what the README says it prints.
    let connected = output(&pasted(commands[2]), &dir.0, &[]);
    assert!(connected.status.success(), "{}", String::from_utf8_lossy(&connected.stderr));
    assert_eq!(String::from_utf8_lossy(&connected.stdout).trim(), r#"{"id":1,"result":{}}"#);
    assert!(section.contains("This one prints `{\"id\":1,\"result\":{}}`"), "{section}");

    // `token` mints a JWT that a server with the README's secret accepts, and this one
    // refuses as the README says.
    let minted = output(&pasted(commands[3]), &dir.0, &[]);
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let token = String::from_utf8_lossy(&minted.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let secret = section
        .split("--jwt-secret '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the README names the server's --jwt-secret");
    assert!(commands[3].contains(&format!("--secret '{secret}'")), "{}", commands[3]);
    let secured =
        Serve::new(BIN).args(["--jwt-secret", secret]).env_remove("SWITCHBOARD_API_KEY").start();
    let publish =
        |addr: &str| format!("'{BIN}' publish --token '{token}' ws://{addr} chat:lobby hi");
    run(&publish(&secured.addr.to_string()), &dir.0, &[]);
    let refused = output(&publish(&addr), &dir.0, &[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401 tokens_not_accepted"), "{stderr}");
    assert!(section.contains("401 `tokens_not_accepted`"), "{section}");

    // `init` writes switchboard.toml in the current directory.
    let init = output(&pasted(commands[4]), &dir.0, &[]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    assert!(dir.0.join("switchboard.toml").is_file());
}

#[test]
fn the_clients_md_command_line_examples_run_as_pasted() {
    let section = section(include_str!("../../../docs/clients.md"), "Command line");
    let lines: Vec<&str> = sh_lines(section)
        .into_iter()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .collect();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let [follow, last, resume, publish, tail, api] = lines[..] else { unreachable!() };

    // A server as `switchboard init` configures one: it has the `news` namespace and an API
    // key, as the example host of the last line does.
    let dir = Scratch::new("clients-md");
    let init = Command::new(BIN).arg("init").current_dir(&dir.0).output().expect("init");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let file = std::fs::read_to_string(dir.0.join("switchboard.toml")).expect("the file");
    let key = file
        .lines()
        .find_map(|line| line.strip_prefix("api_key = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("init wrote an API key");
    let server = Serve::new(BIN)
        .args(["--config", "switchboard.toml"])
        .env_remove("SWITCHBOARD_API_KEY")
        .current_dir(&dir.0)
        .start();
    let addr = server.addr.to_string();
    let pasted = |line: &str| {
        line.replace("switchboard ", &format!("'{BIN}' "))
            .replace("127.0.0.1:8080", &addr)
            .replace("https://rt.example.com", &format!("http://{addr}"))
    };

    // Follow a channel with jq: the text of what is published.
    let following = Shell::spawn(&pasted(follow), &dir.0, &[]);
    following.stderr_until("subscribed to chat:lobby");
    let ack = run(&pasted(publish), &dir.0, &[]);
    assert_eq!((ack["offset"].clone(), ack["epoch"].is_string()), (json!(1), true), "{ack}");
    // jq holds its output while it writes to a pipe (to a terminal it writes each line): the
    // subscriber's end is jq's end of input, and it writes what it held.
    following.stop_switchboard();
    assert_eq!(following.line(), "hello");
    drop(following);

    // Resume where the last run stopped: a run wrote offsets 2 and 3 to lobby.jsonl, 4 and 5
    // came while nothing ran; the resumed run appends 4, 5 and what follows, once each.
    let say = |n: u64| {
        let line = format!("'{BIN}' publish ws://{addr} chat:lobby '{{\"n\":{n}}}'");
        assert_eq!(run(&line, &dir.0, &[])["offset"], n);
    };
    let jsonl = dir.0.join("lobby.jsonl");
    let offsets = || -> Vec<u64> {
        let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
        text.lines().map(|line| parse(line)["offset"].as_u64().expect("an offset")).collect()
    };
    let first = format!("exec '{BIN}' subscribe ws://{addr} chat:lobby >> lobby.jsonl");
    let first = Shell::spawn(&first, &dir.0, &[]);
    first.stderr_until("subscribed to chat:lobby");
    say(2);
    say(3);
    wait_for(|| offsets() == [2, 3], || format!("the first run wrote {:?}", offsets()));
    drop(first);
    say(4);
    say(5);
    let resumed = Shell::spawn(&format!("{}\n{}", pasted(last), pasted(resume)), &dir.0, &[]);
    wait_for(|| offsets() == [2, 3, 4, 5], || format!("resumed: {:?}", offsets()));
    say(6);
    wait_for(|| offsets() == [2, 3, 4, 5, 6], || format!("then live: {:?}", offsets()));
    drop(resumed);

    // Publish each line of a growing log.
    std::fs::write(dir.0.join("app.log"), "started\nlistening\n").expect("app.log");
    let logs = format!("exec '{BIN}' subscribe ws://{addr} chat:logs");
    let logs = Shell::spawn(&logs, &dir.0, &[]);
    logs.stderr_until("subscribed to chat:logs");
    let tailing = Shell::spawn(&pasted(tail), &dir.0, &[]);
    assert_eq!(parse(&logs.line())["data"], "started");
    assert_eq!(parse(&logs.line())["data"], "listening");
    let mut log = std::fs::OpenOptions::new().append(true).open(dir.0.join("app.log")).unwrap();
    std::io::Write::write_all(&mut log, b"{\"level\":\"warn\"}\n").expect("append");
    assert_eq!(parse(&logs.line())["data"], json!({"level": "warn"}));
    drop(tailing);

    // Through the HTTP API, with the key in $KEY.
    let ack = run(&pasted(api), &dir.0, &[("KEY", key)]);
    assert_eq!(ack["offset"], 1, "{ack}");
}

/// A shell script in a process group of its own (a pipeline is several processes), with its
/// output read on threads so every read is bounded; the group is ended when dropped.
struct Shell {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Shell {
    fn spawn(script: &str, dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .envs(env.iter().copied())
            .env_remove("SWITCHBOARD_TOKEN")
            .env_remove("SWITCHBOARD_API_KEY")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let stderr = lines(child.stderr.take().expect("stderr"));
        Self { child, stdout, stderr }
    }

    /// Ends the group's `switchboard` processes (SIGTERM), leaving the others to finish.
    fn stop_switchboard(&self) {
        let group = self.child.id().to_string();
        let stopped = Command::new("pkill")
            .args(["-TERM", "-g", &group, "-x", "switchboard"])
            .status()
            .expect("run pkill");
        assert!(stopped.success(), "no switchboard in the group");
    }

    /// The next line on standard output.
    fn line(&self) -> String {
        self.stdout.recv_timeout(WAIT).unwrap_or_else(|_| panic!("no line within {WAIT:?}"))
    }

    /// Reads standard error until a line contains `needle`.
    fn stderr_until(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!("no {needle:?} on standard error within {WAIT:?}"),
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // The group is this script's alone: its id is the script's own process id.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// The section of `markdown` under the heading `## {heading}`, to the next such heading.
fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    markdown
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("no section {heading:?}"))
}

/// The lines of the ```sh blocks in `markdown`, comments kept.
fn sh_lines(markdown: &str) -> Vec<&str> {
    markdown
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split("\n```").next())
        .flat_map(str::lines)
        .collect()
}

/// Runs `script` to its end.
fn output(script: &str, dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .envs(env.iter().copied())
        .env_remove("SWITCHBOARD_TOKEN")
        .env_remove("SWITCHBOARD_API_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

/// Runs `script` to its end, which must be a success; its standard output, one JSON line.
fn run(script: &str, dir: &Path, env: &[(&str, &str)]) -> Value {
    let out = output(script, dir, env);
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    parse(String::from_utf8_lossy(&out.stdout).trim())
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Checks `done` until it holds, within [`WAIT`]: a file another process writes has no event
/// to wait for.
fn wait_for(done: impl Fn() -> bool, describe: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{}", describe());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory of this test's own, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("switchboard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a scratch directory");
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
