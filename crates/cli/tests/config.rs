//! `switchboard config` and `switchboard serve --config` as a user runs them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::json;
use switchboard_test_support::cli::{LIMIT, Serve, Served};
use switchboard_test_support::client::WsClient;
use switchboard_test_support::protocol::call;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// Writes `text` to a file of this test process named `name`.
fn write_file(name: &str, text: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("switchboard-config-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).expect("test setup");
    path
}

fn check(path: &PathBuf) -> Output {
    Command::new(BIN).args(["config", "check"]).arg(path).output().expect("test setup")
}

/// The error `config check` prints for `text`, after `switchboard: PATH:`.
fn check_error(name: &str, text: &str) -> String {
    let path = write_file(name, text);
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).expect("test setup");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let prefix = format!("switchboard: {}:", path.display());
    std::fs::remove_file(&path).expect("test setup");
    stderr.strip_prefix(&prefix).unwrap_or_else(|| panic!("{stderr}")).trim_end().to_owned()
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("test setup").local_addr().expect("test setup").port()
}

/// `switchboard serve` with `args` and `env`, waited for until it listens; killed on drop.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Served {
    Serve::without_listen(BIN).args(args).envs(env.iter().copied()).start()
}

#[test]
fn default_config_passes_check() {
    let out = Command::new(BIN).args(["config", "default"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[namespaces.\"\"]"), "{text}");
    let path = write_file("default", &text);
    let out = check(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "ok\n");
}

#[test]
fn unknown_key_is_reported_at_its_line_and_column() {
    let error = check_error(
        "unknown",
        "listen = \"127.0.0.1:8080\"\n\n[namespaces.news]\nhistory_size = 5\nhistroy_size = 3\n",
    );
    assert!(error.starts_with("5:1: unknown field `histroy_size`, expected one of"), "{error}");
}

#[test]
fn bad_type_is_reported_at_its_line_and_column() {
    let error = check_error("type", "[limits]\nmax_connections = \"many\"\n");
    assert!(error.starts_with("2:19: invalid type"), "{error}");
}

#[test]
fn bad_rate_is_reported_at_its_line_and_column() {
    let error = check_error("rate", "[limits]\n\nmessage_rate = \"10:x\"\n");
    assert!(error.starts_with("3:16: "), "{error}");
    assert!(error.contains("\"x\""), "{error}");
}

#[test]
fn bad_values_are_refused() {
    let cases = [
        ("[timeouts]\nidle_timeout = \"soon\"\n", "2:16: "),
        ("[namespaces.\"bad name\"]\n", "invalid namespace name"),
        ("[auth]\njwt_secret = \"short\"\n", "2:14: jwt_secret too short"),
        ("[tls]\ncert = \"cert.pem\"\n", "2:8: tls.cert needs tls.key"),
        ("[namespaces.x]\nanonymous = \"maybe\"\n", "2:13: unknown variant"),
        ("listen = \"nowhere\"\n", "1:10: "),
    ];
    for (i, (text, expected)) in cases.into_iter().enumerate() {
        let error = check_error(&format!("bad{i}"), text);
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn serve_applies_namespaces_and_listen_from_the_file() {
    let port = free_port();
    let path = write_file(
        "serve",
        &format!(
            "listen = \"127.0.0.1:{port}\"\ndemo = false\n\n\
             [namespaces.news]\nanonymous = \"subscribe\"\n"
        ),
    );
    let served = serve(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(served.addr.port(), port);
    let addr = served.addr;
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(
        async move {
            let mut ws = WsClient::connect(addr, "/ws").await.unwrap();
            let hello = call(&mut ws, &json!({"id": 1, "type": "connect"})).await;
            assert!(hello["result"]["client"].is_string(), "{hello}");
            let sub = json!({"id": 2, "type": "subscribe", "channel": "news:x"});
            let sub = call(&mut ws, &sub).await;
            assert!(sub["result"]["epoch"].is_string(), "{sub}");
            let publish = json!({"id": 3, "type": "publish", "channel": "news:x", "data": 1});
            let publish = call(&mut ws, &publish).await;
            assert_eq!(publish["error"]["code"], "unauthorized", "{publish}");
            // The file's namespaces replace the built-in ones.
            let chat = json!({"id": 4, "type": "subscribe", "channel": "chat:x"});
            let chat = call(&mut ws, &chat).await;
            assert_eq!(chat["error"]["code"], "unknown_namespace", "{chat}");
        },
    );
    drop(served);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_file_leaving_out_the_demo_s_namespaces_is_warned_about() {
    let path = write_file(
        "namespaces-warning",
        "listen = \"127.0.0.1:0\"\n[namespaces.news]\nanonymous = \"subscribe\"\n",
    );
    let config = path.to_str().unwrap();
    let served = serve(&["--config", config], &[]);
    let warning = served.next_line(LIMIT, |line| line.contains("WARN"));
    for needed in [
        "leave out board, chat, cursor and ticker",
        "in effect: news;",
        "add [namespaces.board], [namespaces.chat],",
    ] {
        assert!(warning.contains(needed), "{needed:?} in {warning}");
    }
    drop(served);

    // Without the demo nothing uses them: the block says what is served, no warning.
    let mut served = serve(&["--config", config, "--no-demo"], &[]);
    assert!(served.terminate(LIMIT).success());
    let rest = served.rest_of_lines(LIMIT).join("\n");
    let log = served.log();
    assert!(!log.contains("WARN"), "{log}{rest}");
    assert!(log.contains("  namespaces news\n"), "{log}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn namespaces_from_the_environment_set_keys_over_the_file() {
    let port = free_port();
    let path = write_file(
        "namespaces-env",
        &format!(
            "listen = \"127.0.0.1:{port}\"\ndemo = false\n\
             [namespaces.news]\nanonymous = \"subscribe\"\nhistory_size = 5\n"
        ),
    );
    let env = [("SWITCHBOARD_NAMESPACES", "news:anonymous=publish; extra:anonymous=subscribe")];
    let served = serve(&["--config", path.to_str().unwrap()], &env);
    let addr = served.addr;
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(
        async move {
            let mut ws = WsClient::connect(addr, "/ws").await.unwrap();
            let publish = json!({"id": 1, "type": "publish", "channel": "news:x", "data": 1});
            let publish = call(&mut ws, &publish).await;
            assert_eq!(publish["result"]["offset"], 1, "{publish}");
            // The file's history size is kept: only `anonymous` was set over it.
            let history = json!({"id": 2, "type": "history", "channel": "news:x", "limit": 100});
            let history = call(&mut ws, &history).await;
            assert_eq!(history["result"]["publications"].as_array().map(Vec::len), Some(1));
            let sub = json!({"id": 3, "type": "subscribe", "channel": "extra:y"});
            assert!(call(&mut ws, &sub).await["result"]["epoch"].is_string());
            let publish = json!({"id": 4, "type": "publish", "channel": "extra:y", "data": 1});
            let publish = call(&mut ws, &publish).await;
            assert_eq!(publish["error"]["code"], "unauthorized", "{publish}");
        },
    );
    drop(served);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn environment_overrides_the_file_and_a_flag_the_environment() {
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let path = write_file("precedence", &format!("listen = \"127.0.0.1:{file_port}\"\n"));
    let config = path.to_str().unwrap();
    let env_listen = format!("127.0.0.1:{env_port}");
    let env = [("SWITCHBOARD_LISTEN", env_listen.as_str())];

    let from_env = serve(&["--config", config], &env);
    assert_eq!(from_env.addr.port(), env_port);
    drop(from_env);

    let flag_listen = format!("127.0.0.1:{flag_port}");
    let from_flag = serve(&["--config", config, "--listen", &flag_listen], &env);
    assert_eq!(from_flag.addr.port(), flag_port);
    drop(from_flag);

    // SWITCHBOARD_CONFIG names the file too.
    let from_file = serve(&[], &[("SWITCHBOARD_CONFIG", config)]);
    assert_eq!(from_file.addr.port(), file_port);
    drop(from_file);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_boolean_variable_set_to_false_still_overrides_the_file() {
    let path = write_file("bool-env", "listen = \"127.0.0.1:0\"\necho = false\n");
    let config = path.to_str().unwrap();
    let echo = |env: &[(&str, &str)]| {
        let served = serve(&["--config", config], env);
        let echo = served.next_line(LIMIT, |line| line.contains("  echo "));
        echo.contains(&format!("ws://{}/echo", served.addr))
    };
    assert!(!echo(&[]), "the file turns echo off");
    assert!(echo(&[("SWITCHBOARD_NO_ECHO", "false")]), "the variable is set: echo stays on");
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn address_rates_come_from_the_file_and_the_environment() {
    let path = write_file(
        "address-rates",
        "listen = \"127.0.0.1:0\"\n[limits]\naddress_message_rate = \"1:3\"\napi_rate = \"1:2\"\n",
    );
    let config = path.to_str().unwrap();
    let env = [("SWITCHBOARD_LIMIT_LOOPBACK", "true"), ("SWITCHBOARD_API_KEY", "k")];
    let served = serve(&["--config", config], &env);
    std::fs::remove_file(&path).unwrap();
    let mut codes = Vec::new();
    for _ in 0..2 {
        let mut ws = WsClient::connect(served.addr, "/ws").await.expect("handshake");
        for id in 1..=2 {
            let reply = call(&mut ws, &json!({"id": id, "type": "ping"})).await;
            codes.push(reply["error"]["code"].as_str().unwrap_or("ok").to_owned());
        }
    }
    // Three commands for the address across both connections.
    assert_eq!(codes, ["ok", "ok", "ok", "rate_limited"]);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let request =
            b"GET /api/history?channel=a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        statuses.push(WsClient::expect_refusal(served.addr, request).await.unwrap().status);
    }
    assert_eq!(statuses, [401, 401, 429]);
}

#[test]
fn serve_refuses_a_bad_file_in_one_line() {
    let path = write_file("serve-bad", "[hub]\nmax_subscriptions = -1\n");
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("{}:2:21: ", path.display())), "{stderr}");
}
