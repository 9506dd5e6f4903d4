//! Usage errors, help and version as clap renders them: the whole error with the usage line
//! and suggestions, exit code 2; help and version on standard output, exit code 0.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// Runs the binary with `args` and none of the variables that would fill a flag in.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SWITCHBOARD_JWT_SECRET")
        .env_remove("SWITCHBOARD_TOKEN")
        .output()
        .expect("run switchboard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

#[test]
fn a_missing_flag_is_named_with_the_usage_line() {
    let out = run(&["token"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--secret <SECRET>"), "{stderr}");
    assert!(stderr.contains("--user <USER>"), "{stderr}");
    assert!(stderr.contains("Usage: switchboard token"), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn no_subcommand_lists_the_commands_as_a_usage_error() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Usage: switchboard <COMMAND>"), "{stderr}");
    for command in ["serve", "init", "token", "connect", "subscribe", "publish", "config", "bench"]
    {
        let listed =
            stderr.lines().any(|line| line.trim_start().starts_with(&format!("{command} ")));
        assert!(listed, "{command} in {stderr}");
    }
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn a_mistyped_subcommand_gets_a_suggestion() {
    let out = run(&["serv"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unrecognized subcommand 'serv'"), "{stderr}");
    assert!(stderr.contains("a similar subcommand exists: 'serve'"), "{stderr}");
}

#[test]
fn a_mistyped_flag_gets_a_suggestion() {
    let out = run(&["serve", "--listn", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unexpected argument '--listn'"), "{stderr}");
    assert!(stderr.contains("a similar argument exists: '--listen'"), "{stderr}");
}

#[test]
fn help_and_version_succeed_on_standard_output() {
    for args in [&["--help"][..], &["help"], &["serve", "--help"], &["token", "--help"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(text(&out.stdout).contains("Usage: switchboard"), "{args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    }
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), format!("switchboard {}\n", env!("CARGO_PKG_VERSION")));
}
