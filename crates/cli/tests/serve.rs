//! The `switchboard` binary as a user runs it.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};

use switchboard_test_support::cli::{LIMIT, Serve, Served};
use switchboard_test_support::http::upgrade;
use switchboard_test_support::wait;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[test]
fn serve_logs_its_url_serves_health_and_stops_on_sigterm() {
    let mut served = Serve::new(BIN).start();
    let addr = served.addr;
    let log = served.log();
    assert!(log.contains(&format!("http://{addr} ")), "{log}");
    let echo = served.next_line(LIMIT, |line| line.contains("  echo "));
    assert!(echo.contains(&format!("ws://{addr}/echo")), "{echo}");

    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");

    let exit = served.terminate(LIMIT);
    assert!(exit.success(), "{exit:?}");
    let rest = served.rest_of_lines(LIMIT).join("\n");
    assert!(rest.contains("SIGTERM"), "{rest}");
}

#[test]
fn port_in_use_is_one_line_and_a_failure() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN).args(["serve", "--listen", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

#[test]
fn bad_flags_are_usage_errors_naming_the_flag() {
    let out = Command::new(BIN).args(["serve", "--listen", "not-an-address"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: invalid value 'not-an-address' for '--listen"), "{stderr}");
    assert!(stderr.contains("--help"), "{stderr}");
}

#[test]
fn listen_address_comes_from_the_environment() {
    let out = Command::new(BIN)
        .args(["serve"])
        .env("SWITCHBOARD_LISTEN", "256.0.0.1:80")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("256.0.0.1:80"));
}

#[test]
fn sighup_reloads_the_tls_certificate() {
    let dir = std::env::temp_dir().join(format!("switchboard-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let write = |names: &str| {
        let generated = rcgen::generate_simple_self_signed(vec![names.to_owned()]).unwrap();
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    };
    write("localhost");
    let tls =
        [OsStr::new("--tls-cert"), cert.as_os_str(), OsStr::new("--tls-key"), key.as_os_str()];
    let mut served = Serve::new(BIN).args(tls).start();
    assert!(served.log().contains("https://"), "{}", served.log());
    let hub = served.next_line(LIMIT, |line| line.contains("  hub "));
    assert!(hub.contains("wss://"), "{hub}");
    // The rest of the block, before the reload's line.
    served.next_line(LIMIT, |line| line.contains("  namespaces "));
    let hup = || {
        let pid = served.pid().to_string();
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
    };
    write("localhost");
    hup();
    let line = served.next_line(LIMIT, |_| true);
    assert!(line.contains("tls certificate reloaded"), "{line}");
    std::fs::write(&key, "not a key").unwrap();
    hup();
    let line = served.next_line(LIMIT, |_| true);
    assert!(line.contains("tls reload failed"), "{line}");
    assert!(served.terminate(LIMIT).success());
    let _ = std::fs::remove_dir_all(dir);
}

/// The HTTP status of a WebSocket upgrade to `/ws` with `extra` headers.
fn upgrade_status(addr: SocketAddr, extra: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).expect("timeout");
    stream.write_all(upgrade(addr, "/ws", extra).as_bytes()).expect("write");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("a status line");
    String::from_utf8_lossy(&head[9..12]).parse().expect("a status")
}

#[test]
fn token_mints_what_serve_accepts() {
    let secret = "a-development-secret-of-32-bytes!";
    let out = Command::new(BIN)
        .args(["token", "--user", "ann", "--channels", "chat:*", "--ttl", "5m"])
        .env("SWITCHBOARD_JWT_SECRET", secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");

    let served = Serve::new(BIN).args(["--require-auth", "--jwt-secret", secret]).start();
    let addr = served.addr;
    assert_eq!(upgrade_status(addr, &format!("Authorization: Bearer {token}\r\n")), 101);
    assert_eq!(upgrade_status(addr, "Authorization: Bearer x.y.z\r\n"), 401);
    assert_eq!(upgrade_status(addr, ""), 401);
}

#[test]
fn token_refuses_a_short_secret_in_one_line() {
    let out =
        Command::new(BIN).args(["token", "--user", "ann", "--secret", "short"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn serve_help_names_the_close_code_rate_offenders_get() {
    let output = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8(output.stdout).unwrap();
    let start = help.find("--rate-limit-messages").expect("the flag is documented");
    let end = help[start..].find("[env:").map_or(help.len(), |n| start + n);
    let text = help[start..end].split_whitespace().collect::<Vec<_>>().join(" ");
    // The code `Session::handle` closes rate offenders with.
    let code = switchboard_codec::CloseCode::POLICY_VIOLATION.0;
    assert!(text.contains(&format!("a close with {code} (policy violation)")), "{text}");
    assert!(!help.contains("4100"), "{help}");
}

/// `switchboard serve ARGS` with none of the credential variables the test's environment may
/// hold: its exit code and standard error once it has refused to start.
///
/// # Panics
///
/// When it is still running after [`LIMIT`]: it started instead of refusing.
fn refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(BIN);
    command.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    for name in ["SWITCHBOARD_API_KEY", "SWITCHBOARD_JWT_SECRET", "SWITCHBOARD_CONFIG"] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn switchboard serve");
    let mut status = None;
    wait::wait_until_blocking(LIMIT, || {
        status = child.try_wait().expect("wait for switchboard serve");
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("switchboard serve {args:?} started instead of refusing");
    };
    let mut stderr = String::new();
    child.stderr.take().expect("piped").read_to_string(&mut stderr).expect("UTF-8 standard error");
    (status.code(), stderr)
}

#[test]
fn required_credentials_with_no_way_to_accept_any_refuse_to_start() {
    let (code, stderr) = refused(&["--require-auth"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for fix in ["--require-auth", "--jwt-secret", "--jwks", "--api-key", "POST /api/ticket"] {
        assert!(stderr.contains(fix), "{fix} in {stderr}");
    }
    let (code, stderr) = refused(&[], &[("SWITCHBOARD_FIRST_MESSAGE_AUTH", "true")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--first-message-auth") && stderr.contains("--jwt-secret"), "{stderr}");
}

#[test]
fn required_credentials_with_tickets_start_and_warn_that_the_demo_cannot_connect() {
    let mut served = Serve::new(BIN)
        .args(["--require-auth", "--api-key", "a-key"])
        .env_remove("SWITCHBOARD_JWT_SECRET")
        .start();
    let warning = served.next_line(LIMIT, |line| line.contains("WARN"));
    assert!(warning.contains("the demo at /") && warning.contains("--no-demo"), "{warning}");
    assert!(served.terminate(LIMIT).success());

    // Without the demo, nothing to warn about.
    let args = ["--require-auth", "--api-key", "a-key", "--no-demo"];
    let mut served = Serve::new(BIN).args(args).env_remove("SWITCHBOARD_JWT_SECRET").start();
    assert!(served.terminate(LIMIT).success());
    let rest = served.rest_of_lines(LIMIT).join("\n");
    assert!(!served.log().contains("WARN"), "{rest}");
}

/// The start-up block of a server started with `args`, once it is whole (its last line,
/// the namespaces, logged), with the server.
fn start_up_block(args: &[&str]) -> (Served, String) {
    let served = Serve::new(BIN).args(args).env_remove("SWITCHBOARD_API_KEY").start();
    served.next_line(LIMIT, |line| line.contains("  namespaces "));
    let log = served.log();
    (served, log)
}

/// The text of the block's line labelled `label`.
fn block_line<'a>(log: &'a str, label: &str) -> &'a str {
    let needle = format!("  {label:<10} ");
    let line = log.lines().find(|line| line.contains(&needle));
    let line = line.unwrap_or_else(|| panic!("no {label:?} line in {log}"));
    line.split_once(&needle).map_or("", |(_, text)| text)
}

#[test]
fn the_start_up_block_lists_what_the_defaults_serve() {
    let (served, log) = start_up_block(&[]);
    let addr = served.addr;
    assert!(log.contains(&format!("switchboard listening on http://{addr} ")), "{log}");
    assert_eq!(block_line(&log, "hub"), format!("ws://{addr}/ws (protocol v1, docs/protocol.md)"));
    let fallbacks = block_line(&log, "fallbacks");
    assert!(fallbacks.contains(&format!("http://{addr}/sse")) && fallbacks.contains("/poll"));
    assert_eq!(block_line(&log, "echo"), format!("ws://{addr}/echo"));
    assert_eq!(block_line(&log, "demo"), format!("http://{addr}/"));
    assert!(block_line(&log, "status").starts_with(&format!("http://{addr}/status ")), "{log}");
    assert_eq!(block_line(&log, "metrics"), format!("http://{addr}/metrics"));
    let api = block_line(&log, "http api");
    assert!(api.starts_with("off") && api.contains("--api-key"), "{api}");
    let auth = block_line(&log, "auth");
    assert!(auth.contains("publish in chat") && auth.contains("subscribe in ticker"), "{auth}");
    assert!(block_line(&log, "tokens").starts_with("off"), "{log}");
    assert!(block_line(&log, "tickets").starts_with("off"), "{log}");
    assert!(block_line(&log, "broker").starts_with("memory"), "{log}");
    let namespaces = block_line(&log, "namespaces");
    assert!(
        namespaces.starts_with("\"\" (the default")
            && namespaces.ends_with(", board, chat, cursor, ticker")
    );
}

#[test]
fn the_start_up_block_follows_the_configuration() {
    let secret = "a-development-secret-of-32-bytes!";
    let args = [
        "--api-key",
        "k3y-for-the-block",
        "--jwt-secret",
        secret,
        "--require-auth",
        "--no-echo",
        "--no-demo",
        "--disable-transport",
        "longpoll",
        "--namespace",
        "news:anonymous=subscribe",
    ];
    let (served, log) = start_up_block(&args);
    let addr = served.addr;
    assert!(block_line(&log, "http api").starts_with(&format!("http://{addr}/api/ ")), "{log}");
    let fallbacks = block_line(&log, "fallbacks");
    assert!(fallbacks.contains("/sse") && !fallbacks.contains("/poll"), "{fallbacks}");
    assert_eq!(block_line(&log, "echo"), "off (--no-echo)");
    assert_eq!(block_line(&log, "demo"), "off (--no-demo)");
    assert!(block_line(&log, "auth").starts_with("credentials required"), "{log}");
    assert!(block_line(&log, "tokens").starts_with("JWT, HS256"), "{log}");
    let tickets = block_line(&log, "tickets");
    assert!(tickets.contains("with the API key or a user's token"), "{tickets}");
    assert!(block_line(&log, "namespaces").ends_with(", chat, cursor, news, ticker"), "{log}");
    assert!(!log.contains(secret) && !log.contains("k3y-for-the-block"), "{log}");
}
