//! The engine's client side under the Autobahn TestSuite (`wstest -m fuzzingserver`).
//!
//! Asks the fuzzing server how many cases it has, runs each one by echoing every message it
//! receives, then asks the server to write its reports.
//!
//! Usage: `autobahn-client [ADDR] [--deflate]` (default `127.0.0.1:9001`). With
//! `--deflate`, each case's connection offers permessage-deflate (RFC 7692), for cases 12
//! and 13.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use switchboard_codec::{DeflateConfig, Event, Message};
use switchboard_test_support::client::WsClient;

const AGENT: &str = "switchboard";

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let deflate = args.iter().any(|a| a == "--deflate").then(|| {
        let mut config = DeflateConfig::default();
        config.enabled = true;
        config.min_size = 0;
        config
    });
    let addr: SocketAddr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("127.0.0.1:9001", String::as_str)
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;

    let mut counter = WsClient::connect(addr, "/getCaseCount").await?;
    let count: u32 = match counter.recv().await? {
        Some(Event::Text(text)) => String::from_utf8_lossy(&text)
            .trim()
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        other => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")));
        }
    };
    let _ = counter.expect_close(Duration::from_secs(5)).await;
    eprintln!("running {count} cases");

    for case in 1..=count {
        if let Err(e) = run_case(addr, case, deflate.as_ref()).await {
            eprintln!("case {case}: {e}");
        }
    }

    let mut report = WsClient::connect(addr, &format!("/updateReports?agent={AGENT}")).await?;
    let _ = report.expect_close(Duration::from_secs(30)).await;
    Ok(())
}

/// Echoes until the server closes. Protocol violations by the fuzzer are expected: the
/// codec has already queued the right close frame, so they end the case, not the run.
async fn run_case(addr: SocketAddr, case: u32, deflate: Option<&DeflateConfig>) -> io::Result<()> {
    let path = format!("/runCase?case={case}&agent={AGENT}");
    let mut ws = match deflate {
        Some(config) => WsClient::connect_deflate(addr, &path, config).await?,
        None => WsClient::connect(addr, &path).await?,
    };
    loop {
        match ws.recv().await {
            Ok(Some(Event::Text(data))) => {
                let _ = ws.send(Message::Text(data)).await;
            }
            Ok(Some(Event::Binary(data))) => {
                let _ = ws.send(Message::Binary(data)).await;
            }
            Ok(Some(Event::Close(_))) => {
                // RFC 6455 §7.1.1: the server closes TCP first; wait for it, bounded.
                let _ = ws.expect_eof(Duration::from_secs(5)).await;
                return Ok(());
            }
            Ok(Some(Event::Ping(_) | Event::Pong(_))) => {}
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = ws.expect_eof(Duration::from_secs(5)).await;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}
