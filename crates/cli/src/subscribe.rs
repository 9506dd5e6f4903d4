//! `switchboard subscribe`: print a channel's publications as JSON lines.
//!
//! Built on `switchboard-client`, so it reconnects by itself and recovers what it missed
//! (protocol §5): the lines on standard output come in offset order, without duplicates,
//! across reconnections. Status and warnings go to standard error.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use switchboard_client::{
    ClientInfo, ConnectionState, ServerUrl, StreamPosition, Subscription, SubscriptionEvent,
};
use switchboard_proto::Value;
use tokio::sync::mpsc;

use crate::common::{self, CommonArgs, ProtocolArg, TransportArg, close, failure};

/// Flags of `switchboard subscribe`.
#[derive(Debug, clap::Args)]
pub(crate) struct SubscribeArgs {
    /// Server URL: ws://, wss://, http:// or https:// (read as ws:// and wss://). Without a
    /// path: /ws.
    #[arg(value_parser = common::server_url)]
    url: ServerUrl,
    /// Channels to subscribe to.
    #[arg(required = true)]
    channels: Vec<String>,
    /// Also print joins and leaves, as `{"channel", "join": client}` and
    /// `{"channel", "leave": client}`.
    #[arg(long)]
    presence_events: bool,
    /// Replay the publications after this position first (one channel only): the `offset`
    /// and `epoch` of a line printed earlier or of a publish acknowledgement. When they
    /// cannot all be recovered, a warning says so and live publications follow.
    #[arg(long, value_name = "OFFSET:EPOCH", value_parser = position,
          conflicts_with_all = ["since_offset", "since_epoch"])]
    since: Option<StreamPosition>,
    /// --since in two parts: the offset.
    #[arg(long, value_name = "OFFSET", requires = "since_epoch")]
    since_offset: Option<u64>,
    /// --since in two parts: the epoch.
    #[arg(long, value_name = "EPOCH", requires = "since_offset")]
    since_epoch: Option<String>,
    /// Wire format.
    #[arg(long, value_enum, default_value_t)]
    protocol: ProtocolArg,
    /// How to reach the server: a WebSocket, or Server-Sent Events (`GET /sse` down,
    /// `POST /session` up; JSON only), for networks whose proxies break WebSocket upgrades.
    #[arg(long, value_enum, default_value_t)]
    transport: TransportArg,
    /// No status lines on standard error (subscribed, reconnected); warnings and errors
    /// still go there.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// Runs `switchboard subscribe`.
pub(crate) fn run(args: &SubscribeArgs) -> anyhow::Result<ExitCode> {
    let since = match (&args.since, args.since_offset, &args.since_epoch) {
        (Some(position), _, _) => Some(position.clone()),
        (None, Some(offset), Some(epoch)) => Some(StreamPosition { offset, epoch: epoch.clone() }),
        _ => None,
    };
    if args.transport == TransportArg::Sse && args.protocol != ProtocolArg::Json {
        eprintln!("switchboard: --transport sse speaks JSON only");
        return Ok(ExitCode::from(2));
    }
    if since.is_some() && args.channels.len() != 1 {
        eprintln!("switchboard: --since takes exactly one channel: a position is one stream's");
        return Ok(ExitCode::from(2));
    }
    common::runtime()?.block_on(subscribe(args, since))
}

/// What the subscription tasks tell the printing loop.
#[derive(Debug)]
enum Report {
    /// A line for standard output.
    Line(String),
    /// A warning for standard error.
    Warning(String),
    /// A subscription ended for good.
    Ended(String),
}

async fn subscribe(
    args: &SubscribeArgs,
    since: Option<StreamPosition>,
) -> anyhow::Result<ExitCode> {
    let target = args.url.clone().with_default_path("/ws");
    let client =
        common::client(&target, &args.common, args.protocol.into(), args.transport.into())?;
    common::first_connection(&client, &target, args.common.timeout).await?;
    let (reports, mut incoming) = mpsc::unbounded_channel();
    // All or nothing: a refused channel ends the command before anything is printed.
    let mut subscriptions = Vec::with_capacity(args.channels.len());
    for channel in &args.channels {
        let subscribed = match &since {
            Some(position) => client.subscribe_since(channel.as_str(), position.clone()).await,
            None => client.subscribe(channel.as_str()).await,
        };
        match subscribed {
            Ok(subscription) => subscriptions.push(subscription),
            Err(e) => {
                let why = failure(&client, &e);
                close(&client).await;
                anyhow::bail!("cannot subscribe to {channel}: {why}");
            }
        }
    }
    // Caught from here on: a signal sent on reading "subscribed to" must end the command
    // gracefully, not kill it.
    let mut signal = std::pin::pin!(crate::shutdown_signal());
    for subscription in subscriptions {
        if !args.quiet {
            eprintln!("switchboard: subscribed to {}", subscription.channel());
        }
        tokio::spawn(forward(subscription, reports.clone(), args.presence_events, since.clone()));
    }
    drop(reports);

    let mut states = client.state_changes();
    let mut connections = states.borrow_and_update().connections;
    let mut connected = true;
    let mut ended = 0;
    loop {
        tokio::select! {
            report = incoming.recv() => match report {
                Some(Report::Line(line)) => {
                    if let Err(e) = common::print_line(line.as_bytes()) {
                        close(&client).await;
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            return Ok(ExitCode::SUCCESS);
                        }
                        return Err(e).context("cannot write to standard output");
                    }
                }
                Some(Report::Warning(warning)) => eprintln!("switchboard: {warning}"),
                Some(Report::Ended(why)) => {
                    eprintln!("switchboard: {why}");
                    ended += 1;
                }
                // Every subscription ended: by the server's word, or the client closed.
                None => break,
            },
            changed = states.changed() => {
                if changed.is_err() {
                    break;
                }
                let change = states.borrow_and_update().clone();
                let reason = change.reason.map(|r| r.to_string()).unwrap_or_default();
                match change.state {
                    ConnectionState::Reconnecting => {
                        let delay = humantime::format_duration(round_ms(
                            change.retry_in.unwrap_or_default(),
                        ));
                        // A state receiver may skip steps: the count tells a lost connection
                        // from a failed attempt even when `Connected` went unseen.
                        let what = if connected || change.connections > connections {
                            "connection lost"
                        } else {
                            "reconnection failed"
                        };
                        eprintln!("switchboard: {what} ({reason}); reconnecting in {delay}");
                        connected = false;
                        connections = change.connections;
                    }
                    ConnectionState::Connected if !connected => {
                        connected = true;
                        connections = change.connections;
                        if !args.quiet {
                            eprintln!("switchboard: reconnected");
                        }
                    }
                    ConnectionState::Closed => anyhow::bail!("connection closed: {reason}"),
                    _ => {}
                }
            },
            _ = &mut signal => {
                close(&client).await;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    let state = client.state();
    if state.state == ConnectionState::Closed
        && let Some(reason) = state.reason
    {
        anyhow::bail!("connection closed: {reason}");
    }
    close(&client).await;
    if ended > 0 {
        anyhow::bail!("no subscription left");
    }
    Ok(ExitCode::SUCCESS)
}

/// Turns one subscription's events into reports, until it ends.
async fn forward(
    mut subscription: Subscription,
    reports: mpsc::UnboundedSender<Report>,
    presence_events: bool,
    since: Option<StreamPosition>,
) {
    let channel = subscription.channel().to_owned();
    let mut first_recovery = since;
    while let Some(event) = subscription.recv().await {
        let report = match event {
            SubscriptionEvent::Publication(p) => {
                let position = subscription.position();
                let line = PublicationLine {
                    channel: &channel,
                    offset: p.offset,
                    epoch: position.as_ref().map(|pos| pos.epoch.as_str()),
                    data: &p.data,
                    info: p.info.as_deref(),
                };
                Report::Line(to_json(&line))
            }
            SubscriptionEvent::Join(client) if presence_events => {
                Report::Line(to_json(&PresenceLine {
                    channel: &channel,
                    join: Some(&client),
                    leave: None,
                }))
            }
            SubscriptionEvent::Leave(client) if presence_events => {
                Report::Line(to_json(&PresenceLine {
                    channel: &channel,
                    join: None,
                    leave: Some(&client),
                }))
            }
            SubscriptionEvent::PresenceCount { count, joined, left } if presence_events => {
                Report::Line(to_json(&CountLine {
                    channel: &channel,
                    presence_count: Count { count, joined, left },
                }))
            }
            SubscriptionEvent::Recovered { recovered: false } => {
                let current = subscription
                    .position()
                    .map(|p| format!(" at {}:{}", p.offset, p.epoch))
                    .unwrap_or_default();
                let what = match first_recovery.take() {
                    Some(since) => {
                        format!("the publications after {}:{}", since.offset, since.epoch)
                    }
                    None => "the publications missed while disconnected".to_owned(),
                };
                Report::Warning(format!(
                    "{channel}: {what} cannot be recovered (history too short or expired, or \
                     a new epoch); continuing from the current position{current}"
                ))
            }
            SubscriptionEvent::Recovered { recovered: true } => {
                first_recovery = None;
                continue;
            }
            SubscriptionEvent::Undecodable { offset, reason } => Report::Warning(format!(
                "{channel}: publication {offset} cannot be decoded ({reason}); skipped"
            )),
            SubscriptionEvent::Unsubscribed { code, reason } => Report::Ended(format!(
                "{channel}: the server ended the subscription: {code}: {reason}"
            )),
            _ => continue,
        };
        if reports.send(report).is_err() {
            return;
        }
    }
}

/// One publication on standard output.
#[derive(Serialize)]
struct PublicationLine<'a> {
    channel: &'a str,
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a ClientInfo>,
}

/// One join or leave on standard output.
#[derive(Serialize)]
struct PresenceLine<'a> {
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    join: Option<&'a ClientInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leave: Option<&'a ClientInfo>,
}

/// The summed joins and leaves of a large channel on standard output.
#[derive(Serialize)]
struct CountLine<'a> {
    channel: &'a str,
    presence_count: Count,
}

/// What a `presence_count` push says.
#[derive(Serialize)]
struct Count {
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    joined: u64,
    left: u64,
}

fn to_json(line: &impl Serialize) -> String {
    // JSON values and strings always serialize.
    serde_json::to_string(line).unwrap_or_default()
}

/// `OFFSET:EPOCH`.
fn position(s: &str) -> Result<StreamPosition, String> {
    let (offset, epoch) = s.split_once(':').ok_or("expected OFFSET:EPOCH")?;
    let offset = offset.parse().map_err(|_| format!("{offset:?} is not an offset"))?;
    if epoch.is_empty() {
        return Err("expected OFFSET:EPOCH, with an epoch".to_owned());
    }
    Ok(StreamPosition { offset, epoch: epoch.to_owned() })
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_offset_then_epoch() {
        let p = position("41:b3e1:f0").unwrap();
        assert_eq!((p.offset, p.epoch.as_str()), (41, "b3e1:f0"));
        assert!(position("41").is_err());
        assert!(position("x:e").is_err());
        assert!(position("4:").is_err());
    }

    #[test]
    fn publication_lines_keep_their_field_order() {
        let data = serde_json::json!({"text": "hi"});
        let line = PublicationLine {
            channel: "chat:a",
            offset: 3,
            epoch: Some("e"),
            data: &data,
            info: None,
        };
        assert_eq!(
            to_json(&line),
            r#"{"channel":"chat:a","offset":3,"epoch":"e","data":{"text":"hi"}}"#
        );
    }
}
