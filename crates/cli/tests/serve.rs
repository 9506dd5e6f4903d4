//! The `switchboard` binary as a user runs it.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;

use switchboard_test_support::cli::{LIMIT, Serve};
use switchboard_test_support::http::upgrade;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[test]
fn serve_logs_its_url_serves_health_and_stops_on_sigterm() {
    let mut served = Serve::new(BIN).start();
    let addr = served.addr;
    let log = served.log();
    assert!(log.contains(&format!("http://{addr} ")), "{log}");
    assert!(log.contains(&format!("ws://{addr}/echo")), "{log}");

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
    let log = served.log();
    assert!(log.contains("https://") && log.contains("wss://"), "{log}");
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
