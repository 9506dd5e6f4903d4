//! `switchboard connect`, `subscribe` and `publish` as a user runs them: spawned binaries
//! against a spawned `switchboard serve`, every wait bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_test_support::cli::{Serve, Served};
use switchboard_test_support::wait;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "a-development-secret-of-32-bytes!";

#[test]
fn subscribe_prints_what_publish_publishes() {
    let server = server(&[]);
    let sub = Proc::spawn(&["subscribe", &ws(&server), "chat:lobby"], &[]);
    sub.stderr_until("subscribed to chat:lobby");

    let ack = ok_json(&run(&["publish", &ws(&server), "chat:lobby", r#"{"text":"hi"}"#], ""));
    assert_eq!(ack["offset"], 1, "{ack}");
    let epoch = ack["epoch"].as_str().expect("an epoch").to_owned();
    let line = sub.json_line();
    assert_eq!(line["channel"], "chat:lobby", "{line}");
    assert_eq!(line["offset"], 1, "{line}");
    assert_eq!(line["epoch"], epoch.as_str(), "{line}");
    assert_eq!(line["data"], json!({"text": "hi"}), "{line}");
    assert!(line["info"]["client"].is_string(), "a client's publication names it: {line}");

    // Not JSON: published as a string. No joins or leaves without --presence-events.
    let ack = ok_json(&run(&["publish", &http(&server), "chat:lobby", "hello world"], ""));
    assert_eq!(ack["offset"], 2, "{ack}");
    let line = sub.json_line();
    assert_eq!((line["offset"].clone(), line["data"].clone()), (json!(2), json!("hello world")));

    sub.signal("TERM");
    let (status, stdout, _) = sub.finish();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(stdout.is_empty(), "{stdout:?}");
}

#[test]
fn publish_reads_stdin_and_acks_each_line() {
    let server = server(&[]);
    let out = run(&["publish", &ws(&server), "chat:feed"], "{\"n\":1}\n\nplain text\n42\n");
    assert!(out.status.success(), "{}", out.stderr);
    let acks: Vec<Value> = out.stdout.lines().map(parse).collect();
    assert_eq!(acks.len(), 3, "one ack per non-blank line: {}", out.stdout);
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack["offset"], i + 1, "{ack}");
        assert_eq!(ack["epoch"], acks[0]["epoch"], "{ack}");
        assert_eq!(ack.as_object().map(|o| o.len()), Some(2), "only offset and epoch: {ack}");
    }
}

#[test]
fn subscribe_since_replays_history_in_order() {
    let server = server(&[]);
    let out = run(&["publish", &ws(&server), "chat:log"], "one\ntwo\nthree\n");
    assert!(out.status.success(), "{}", out.stderr);
    let first = parse(out.stdout.lines().next().expect("an ack"));
    let epoch = first["epoch"].as_str().expect("an epoch").to_owned();

    let since = format!("1:{epoch}");
    let sub = Proc::spawn(&["subscribe", &ws(&server), "chat:log", "--since", &since], &[]);
    for (offset, data) in [(2, "two"), (3, "three")] {
        let line = sub.json_line();
        assert_eq!((line["offset"].clone(), line["data"].clone()), (json!(offset), json!(data)));
        assert_eq!(line["epoch"], epoch.as_str(), "{line}");
    }
    // Live publications follow the replayed ones.
    ok_json(&run(&["publish", &ws(&server), "chat:log", "four"], ""));
    assert_eq!(sub.json_line()["offset"], 4);
    sub.signal("INT");
    assert!(sub.finish().0.success());

    // A position from another epoch cannot be recovered: a warning, then live publications.
    let sub = Proc::spawn(
        &["subscribe", &ws(&server), "chat:log", "--since-offset", "1", "--since-epoch", "nope"],
        &[],
    );
    let warning = sub.stderr_until("cannot be recovered");
    assert!(warning.contains("1:nope"), "{warning}");
    ok_json(&run(&["publish", &ws(&server), "chat:log", "five"], ""));
    assert_eq!(sub.json_line()["data"], "five");
    sub.signal("TERM");
    assert!(sub.finish().0.success());
}

#[test]
fn subscribe_since_recovers_more_than_one_reply_holds() {
    let server = server(&[]);
    // Twenty publications of 60 KB: more than the 1 MiB outbound queue in one reply.
    let lines: String = (1..=20).map(|n| format!("{n:02}{}\n", "x".repeat(60_000))).collect();
    let out = run(&["publish", &ws(&server), "chat:big"], &lines);
    assert!(out.status.success(), "{}", out.stderr);
    let epoch = parse(out.stdout.lines().next().expect("an ack"))["epoch"].clone();
    let epoch = epoch.as_str().expect("an epoch").to_owned();

    let since = format!("1:{epoch}");
    let sub = Proc::spawn(&["subscribe", &ws(&server), "chat:big", "--since", &since], &[]);
    for offset in 2..=20 {
        let line = sub.json_line();
        assert_eq!(line["offset"], offset);
        assert!(line["data"].as_str().is_some_and(|d| d.starts_with(&format!("{offset:02}x"))));
    }
    ok_json(&run(&["publish", &ws(&server), "chat:big", "live"], ""));
    assert_eq!(sub.json_line()["offset"], 21);
    sub.signal("INT");
    let (status, _, stderr) = sub.finish();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("cannot be recovered") && !stderr.contains("reconnect"), "{stderr}");
}

#[test]
fn subscribe_prints_joins_and_leaves_when_asked() {
    let server = server(&[]);
    let watcher = Proc::spawn(&["subscribe", &ws(&server), "chat:room", "--presence-events"], &[]);
    watcher.stderr_until("subscribed to chat:room");
    let other = Proc::spawn(&["subscribe", &ws(&server), "chat:room"], &[]);
    other.stderr_until("subscribed to chat:room");
    other.signal("TERM");
    assert!(other.finish().0.success());

    // Joins (the watcher's own may be among them, protocol §4), then the other's leave.
    let mut joined = Vec::new();
    let left = loop {
        let line = watcher.json_line();
        assert_eq!(line["channel"], "chat:room", "{line}");
        if let Some(id) = line["join"]["client"].as_str() {
            joined.push(id.to_owned());
        } else {
            break line["leave"]["client"].as_str().expect("a join or a leave").to_owned();
        }
    };
    assert!(joined.contains(&left), "{left} left without a join: {joined:?}");
    watcher.signal("TERM");
    assert!(watcher.finish().0.success());
}

#[test]
fn subscribe_exits_0_when_stdout_closes() {
    let server = server(&[]);
    let mut sub = Proc::spawn_without_stdout_reader(&["subscribe", &ws(&server), "chat:pipe"]);
    sub.stderr_until("subscribed to chat:pipe");
    let stdout = sub.child.stdout.take().expect("stdout");
    ok_json(&run(&["publish", &ws(&server), "chat:pipe", "first"], ""));
    // Read one line, then close the pipe, as `head -n 1` does.
    let line = first_line_then_close(stdout);
    assert_eq!(parse(&line)["data"], "first");
    ok_json(&run(&["publish", &ws(&server), "chat:pipe", "second"], ""));
    let (status, _, stderr) = sub.finish();
    assert!(status.success(), "a closed stdout is not a failure: {status:?} {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn publish_with_an_api_key_goes_through_http() {
    let key = "an-api-key-for-the-cli-tests";
    let server = server(&["--api-key", key]);
    // The HTTP API publishes in every namespace, even the default one closed to anonymous
    // connections.
    let out =
        run_env(&["publish", &ws(&server), "news", "[1,2]"], "", &[("SWITCHBOARD_API_KEY", key)]);
    let ack = ok_json(&out);
    assert_eq!(ack["offset"], 1, "{ack}");

    let out = run_env(
        &["publish", &http(&server), "chat:api"],
        "a\nb\n",
        &[("SWITCHBOARD_API_KEY", key)],
    );
    assert!(out.status.success(), "{}", out.stderr);
    let offsets: Vec<Value> = out.stdout.lines().map(|l| parse(l)["offset"].clone()).collect();
    assert_eq!(offsets, [json!(1), json!(2)]);

    let out = run(&["publish", &ws(&server), "chat:api", "x", "--api-key", "wrong"], "");
    assert_failed_with(&out, &["401", "unauthorized", "/api/publish"]);
}

#[test]
fn connect_sends_json_commands_and_prints_each_message() {
    let server = server(&[]);
    for protocol in ["json", "msgpack"] {
        let channel = format!("chat:{protocol}");
        let input = format!(
            "{{\"type\":\"subscribe\",\"channel\":\"{channel}\"}}\n\
             hello\n\
             {{\"id\":7,\"type\":\"publish\",\"channel\":\"{channel}\",\"data\":\"x\"}}\n\
             {{\"type\":\"ping\"}}\n"
        );
        let out = run(&["connect", &ws(&server), "--protocol", protocol], &input);
        assert!(out.status.success(), "{protocol}: {}", out.stderr);
        let lines: Vec<Value> = out.stdout.lines().map(parse).collect();
        assert_eq!(lines.len(), 4, "{protocol}: {}", out.stdout);
        let reply = |id: u64| lines.iter().find(|l| l["id"] == id).cloned();
        let subscribed = reply(1).expect("the subscribe reply, numbered 1");
        assert!(subscribed["result"]["epoch"].is_string(), "{subscribed}");
        assert_eq!(reply(7).expect("the publish reply")["result"]["offset"], 1);
        let ping = reply(8).expect("the ping reply, numbered after 7");
        assert_eq!(ping, json!({"id": 8, "result": {}}));
        let push = lines.iter().find(|l| l["push"] == "publication").expect("the publication");
        assert_eq!(
            (push["channel"].as_str(), &push["data"]),
            (Some(channel.as_str()), &json!("x"))
        );
        assert!(out.stderr.contains("not JSON") && out.stderr.contains("--raw"), "{}", out.stderr);
    }
}

#[test]
fn connect_raw_talks_plain_text_to_any_websocket() {
    let server = server(&[]);
    let out = run(
        &["connect", "--raw", &format!("{}/echo", ws(&server))],
        "hello\n{\"not\":\"parsed\"}\n",
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "hello\n{\"not\":\"parsed\"}\n");
}

#[test]
fn wss_works_with_a_trusted_certificate() {
    let dir = std::env::temp_dir().join(format!("switchboard-cli-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    std::fs::write(&cert, generated.cert.pem()).expect("write the certificate");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write the key");
    let server = server(&[
        "--tls-cert",
        cert.to_str().expect("a UTF-8 path"),
        "--tls-key",
        key.to_str().expect("a UTF-8 path"),
    ]);
    let port = server.addr.port();
    let cacert = cert.to_str().expect("a UTF-8 path");

    let echo = format!("wss://localhost:{port}/echo");
    let out = run(&["connect", "--raw", &echo, "--cacert", cacert], "secure\n");
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "secure\n");
    let ack = ok_json(&run(
        &["publish", &format!("https://localhost:{port}"), "chat:tls", "hi", "--cacert", cacert],
        "",
    ));
    assert_eq!(ack["offset"], 1);

    // Without it, the certificate is not trusted, and the error says what to do.
    let out = run(&["connect", "--raw", &echo], "x\n");
    assert_failed_with(&out, &["certificate", "--cacert"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_urls_are_usage_errors() {
    for (url, why) in [
        ("ftp://127.0.0.1/", "ws://, wss://, http:// or https://"),
        ("127.0.0.1:8080", "ws://, wss://, http:// or https://"),
        ("ws:///ws", "no host"),
    ] {
        for args in [
            vec!["connect", url],
            vec!["subscribe", url, "chat:x"],
            vec!["publish", url, "chat:x", "1"],
        ] {
            let out = run(&args, "");
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
            let first = out.stderr.lines().next().unwrap_or_default();
            assert!(first.starts_with(&format!("error: invalid value '{url}'")), "{first}");
            assert!(first.contains(why), "{args:?}: {}", out.stderr);
        }
    }
}

#[test]
fn a_websocket_that_is_not_the_hub_is_called_so() {
    let server = server(&[]);
    let echo = format!("{}/echo", ws(&server));
    for args in
        [vec!["publish", echo.as_str(), "chat:x", "1"], vec!["subscribe", echo.as_str(), "chat:x"]]
    {
        // The echo endpoint sends the client's `connect` back: what was received is shown.
        let needles = ["not a Switchboard /ws endpoint", "answer to `connect` was {\"id\":1,"];
        assert_failed_with(&run(&args, ""), &needles);
    }
}

#[test]
fn another_server_s_html_error_page_is_summed_up_in_one_line() {
    let addr = html_not_found_server();
    let (ws_url, http_url) = (format!("ws://{addr}"), format!("http://{addr}"));
    for args in [
        vec!["connect", ws_url.as_str()],
        vec!["connect", "--raw", ws_url.as_str()],
        vec!["subscribe", ws_url.as_str(), "chat:x"],
        vec!["subscribe", "--transport", "sse", ws_url.as_str(), "chat:x"],
        vec!["publish", ws_url.as_str(), "chat:x", "1"],
        vec!["publish", http_url.as_str(), "chat:x", "1", "--api-key", "k"],
    ] {
        let out = run(&args, "");
        assert_failed_with(&out, &["404: an HTML page titled \"404 Not Found\""]);
        assert!(!out.stderr.contains('<'), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn a_refused_connection_names_the_address() {
    let addr = free_addr();
    let url = format!("ws://{addr}");
    for args in [
        vec!["connect", url.as_str()],
        vec!["connect", "--raw", url.as_str()],
        vec!["subscribe", url.as_str(), "chat:x"],
        vec!["publish", url.as_str(), "chat:x", "1"],
        vec!["publish", url.as_str(), "chat:x", "1", "--api-key", "k"],
    ] {
        let out = run(&args, "");
        assert_failed_with(&out, &[&addr, "connection refused"]);
    }
}

#[test]
fn a_401_says_why_the_server_refused() {
    let server = server(&["--require-auth", "--jwt-secret", SECRET]);
    let why = "requires a token";
    assert_failed_with(&run(&["connect", &ws(&server)], ""), &["401", why]);
    assert_failed_with(&run(&["subscribe", &ws(&server), "chat:x"], ""), &["401", why]);
    assert_failed_with(&run(&["publish", &ws(&server), "chat:x", "1"], ""), &["401", why]);
    let bad_token = [("SWITCHBOARD_TOKEN", "x.y.z")];
    let out = run_env(&["subscribe", &ws(&server), "chat:x"], "", &bad_token);
    assert_failed_with(&out, &["401"]);

    // A token from `switchboard token` gets in.
    let token = mint_token();
    let out =
        run_env(&["publish", &ws(&server), "chat:x", "1"], "", &[("SWITCHBOARD_TOKEN", &token)]);
    assert_eq!(ok_json(&out)["offset"], 1);
}

#[test]
fn a_ticket_given_as_token_works_once_for_publish_subscribe_and_connect() {
    let key = "an-api-key-for-the-ticket-tests";
    // Credentials required, no token verifier: only tickets from the API get in.
    let server = server(&["--require-auth", "--api-key", key]);
    let first = mint_ticket(&server, key);
    let sub =
        Proc::spawn(&["subscribe", &ws(&server), "chat:tickets"], &[("SWITCHBOARD_TOKEN", &first)]);
    sub.stderr_until("subscribed to chat:tickets");

    let second = mint_ticket(&server, key);
    let out = run(&["publish", "--token", &second, &ws(&server), "chat:tickets", "hi"], "");
    assert_eq!(ok_json(&out)["offset"], 1);
    let line = sub.json_line();
    assert_eq!(line["data"], "hi", "{line}");
    assert_eq!(line["info"]["user"], "ann", "the ticket's user published: {line}");

    // Spent: a second use is refused at the door, with what to do about it.
    let out = run(&["publish", "--token", &second, &ws(&server), "chat:tickets", "again"], "");
    assert_failed_with(&out, &["401 ticket_invalid", "already used", "POST /api/ticket"]);
    let out = run(&["connect", "--token", &first, &ws(&server)], "");
    assert_failed_with(&out, &["401 ticket_invalid", "POST /api/ticket"]);

    // `connect` sends what is typed: a `connect` without a token, as the ticket is spent.
    let third = mint_ticket(&server, key);
    let out = run(&["connect", "--token", &third, &ws(&server)], "{\"type\":\"connect\"}\n");
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(parse(out.stdout.trim())["result"]["user"], "ann", "{}", out.stdout);
    sub.signal("TERM");
    assert!(sub.finish().0.success());
}

#[test]
fn refused_commands_are_errors_with_the_servers_code() {
    let server = server(&["--jwt-secret", SECRET]);
    // The default namespace is closed to anonymous connections: `unauthorized`, and to a
    // token that does not grant the channel: `permission_denied`.
    assert_failed_with(
        &run(&["subscribe", &ws(&server), "news"], ""),
        &["cannot subscribe to news", "unauthorized", "anonymous"],
    );
    let token = mint_token();
    let ann = [("SWITCHBOARD_TOKEN", token.as_str())];
    assert_failed_with(
        &run_env(&["subscribe", &ws(&server), "chat:ok", "news"], "", &ann),
        &["cannot subscribe to news", "permission_denied"],
    );
    assert_failed_with(
        &run_env(&["publish", &ws(&server), "news", "1"], "", &ann),
        &["cannot publish to news", "permission_denied"],
    );
    assert_failed_with(&run(&["publish", &ws(&server), "nope:x", "1"], ""), &["unknown_namespace"]);
    // A refusal stops publishing from standard input: what follows is not sent.
    let out = run_env(&["publish", &ws(&server), "news"], "1\n2\n", &ann);
    assert_failed_with(&out, &["permission_denied"]);
    // `connect` prints error replies like any other message.
    let out = run_env(
        &["connect", &ws(&server)],
        "{\"type\":\"subscribe\",\"channel\":\"news\"}\n",
        &ann,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(parse(out.stdout.trim())["error"]["code"], "permission_denied", "{}", out.stdout);
}

/// A token for `ann`, who may subscribe and publish to `chat:*` only.
fn mint_token() -> String {
    let out = Command::new(BIN)
        .args(["token", "--user", "ann", "--channels", "chat:*", "--publish", "chat:*"])
        .env("SWITCHBOARD_JWT_SECRET", SECRET)
        .output()
        .expect("mint a token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("a UTF-8 token").trim().to_owned()
}

/// A one-time ticket for `ann`, who may subscribe and publish to `chat:*`, from
/// `POST /api/ticket` with the API key `key`.
fn mint_ticket(server: &Served, key: &str) -> String {
    let authorization = format!("apikey {key}");
    let headers = [("Authorization", authorization.as_str()), ("Content-Type", "application/json")];
    let body = json!({"user": "ann", "channels": ["chat:*"], "publish": ["chat:*"]}).to_string();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let response = runtime.block_on(switchboard_test_support::http::request(
        server.addr,
        "POST",
        "/api/ticket",
        &headers,
        &body,
    ));
    assert_eq!(response.status, 200, "{response:?}");
    response.json()["ticket"].as_str().expect("a ticket").to_owned()
}

/// A `switchboard serve` on a free port that takes no API key from the test's environment;
/// killed (by its PID) when dropped.
fn server(args: &[&str]) -> Served {
    Serve::new(BIN).args(args).env_remove("SWITCHBOARD_API_KEY").start()
}

/// The server's `ws://` base URL.
fn ws(server: &Served) -> String {
    format!("ws://{}", server.addr)
}

/// The server's `http://` base URL.
fn http(server: &Served) -> String {
    format!("http://{}", server.addr)
}

/// A spawned client command whose output is read on threads, so every read can be bounded.
struct Proc {
    child: Child,
    stdout: Option<Receiver<String>>,
    stderr: Receiver<String>,
}

impl Proc {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut proc = Self::spawn_without_stdout_reader_env(args, env);
        let stdout = proc.child.stdout.take().expect("stdout");
        proc.stdout = Some(lines(stdout));
        proc
    }

    fn spawn_without_stdout_reader(args: &[&str]) -> Self {
        Self::spawn_without_stdout_reader_env(args, &[])
    }

    fn spawn_without_stdout_reader_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = command(args, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard");
        let stderr = lines(child.stderr.take().expect("stderr"));
        Self { child, stdout: None, stderr }
    }

    /// The next line on standard output, as JSON.
    fn json_line(&self) -> Value {
        let stdout = self.stdout.as_ref().expect("stdout is read");
        let line = stdout.recv_timeout(WAIT).unwrap_or_else(|_| panic!("no line within {WAIT:?}"));
        parse(&line)
    }

    /// Reads standard error until a line contains `needle`; returns that line.
    fn stderr_until(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no {needle:?} on stderr within {WAIT:?}"),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Closes standard input, waits for the exit and returns the status with what is left on
    /// standard output and standard error.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        drop(self.child.stdin.take());
        let status = wait_bounded(&mut self.child);
        let stdout = self.stdout.take().map(|rx| rx.try_iter().collect()).unwrap_or_default();
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        (status, stdout, stderr.join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A finished command.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a client command with `input` on standard input, to its end, within [`WAIT`].
fn run(args: &[&str], input: &str) -> Output {
    run_env(args, input, &[])
}

fn run_env(args: &[&str], input: &str, env: &[(&str, &str)]) -> Output {
    finish(command(args, env), input)
}

/// Runs `command` with `input` on standard input, to its end, within [`WAIT`].
fn finish(mut command: Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    std::thread::spawn(move || {
        // A command that fails early stops reading: its error is the finding, not this.
        let _ = stdin.write_all(input.as_bytes());
    });
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));
    let status = wait_bounded(&mut child);
    let text = |rx: Receiver<String>| rx.recv_timeout(WAIT).expect("the output");
    Output { status, stdout: text(stdout), stderr: text(stderr) }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("SWITCHBOARD_TOKEN").env_remove("SWITCHBOARD_API_KEY");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Waits for `child` to exit within [`WAIT`], killing it (by its PID) if it does not.
fn wait_bounded(child: &mut Child) -> ExitStatus {
    let mut status = None;
    wait::wait_until_blocking(WAIT, || {
        status = child.try_wait().expect("wait for the child");
        status.is_some()
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("switchboard did not exit within {WAIT:?}");
    })
}

/// Lines of `pipe`, as they come.
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

/// All of `pipe`, once it closes.
fn read_all(mut pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// Reads one line from `stdout` and closes it.
fn first_line_then_close(stdout: ChildStdout) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(WAIT).expect("a line on stdout")
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
}

/// A successful command's only line of output, as JSON.
fn ok_json(out: &Output) -> Value {
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    parse(out.stdout.trim())
}

/// A failure (exit 1) with one line on standard error holding every one of `needles`.
fn assert_failed_with(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    for needle in needles {
        assert!(out.stderr.contains(needle), "{needle:?} in {}", out.stderr);
    }
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

/// A loopback HTTP server that is not Switchboard: it answers every request with a 404 HTML
/// page, as a web server's default error page does. It serves until the test process ends.
fn html_not_found_server() -> std::net::SocketAddr {
    const PAGE: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n\
                        <center><h1>404 Not Found</h1></center>\r\n<hr><center>web</center>\r\n\
                        </body>\r\n</html>\r\n";
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(WAIT));
            // The request head, to its blank line; the body of a POST is left unread.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let response = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    addr
}

/// A loopback address where nothing listens.
fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").to_string()
}
