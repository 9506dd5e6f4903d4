//! The engine's client side under the Autobahn TestSuite (`wstest -m fuzzingserver`).
//!
//! Asks the fuzzing server how many cases it has, runs each one by echoing every message it
//! receives, then asks the server to write its reports.
//!
//! Usage: `autobahn-client [ADDR]` (default `127.0.0.1:9001`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use switchboard_codec::{Event, Message};
use switchboard_test_support::client::WsClient;

const AGENT: &str = "switchboard";

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned())
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
        if let Err(e) = run_case(addr, case).await {
            eprintln!("case {case}: {e}");
        }
    }

    let mut report = WsClient::connect(addr, &format!("/updateReports?agent={AGENT}")).await?;
    let _ = report.expect_close(Duration::from_secs(30)).await;
    Ok(())
}

/// Echoes until the server closes. Protocol violations by the fuzzer are expected: the
/// codec has already queued the right close frame, so they end the case, not the run.
async fn run_case(addr: SocketAddr, case: u32) -> io::Result<()> {
    let mut ws = WsClient::connect(addr, &format!("/runCase?case={case}&agent={AGENT}")).await?;
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
