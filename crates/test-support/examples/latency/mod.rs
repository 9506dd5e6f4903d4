//! What the latency examples share: a publisher at a steady rate that stamps each
//! publication with its send time, and reading that stamp back.

use std::time::{Duration, Instant};

use switchboard_codec::Message;
use switchboard_test_support::client::WsClient;

/// Publishes `messages` publications of about `size` bytes to `channel` at `rate` per second,
/// each stamped `"t":<micros since base>` just before it is sent, one acknowledged before
/// the next. The pace is the measurement's load, not a wait.
pub(crate) async fn publish_at_rate(
    publisher: &mut WsClient,
    channel: &str,
    (messages, rate, size): (usize, usize, usize),
    base: Instant,
) -> std::io::Result<()> {
    let pad = "x".repeat(size.saturating_sub(40));
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut next = tokio::time::Instant::now();
    for i in 0..messages {
        tokio::time::sleep_until(next).await;
        next += interval;
        let sent = base.elapsed().as_micros();
        let command = format!(
            r#"{{"id":{i},"type":"publish","channel":"{channel}","data":{{"t":{sent},"p":"{pad}"}}}}"#
        );
        publisher.send(Message::text(command)).await?;
        publisher.recv().await?;
    }
    Ok(())
}

/// The send time the publisher put in the payload: `"t":<micros>`.
pub(crate) fn sent_at(push: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(push).ok()?;
    let start = text.find("\"t\":")? + 4;
    let end = start + text[start..].find(|c: char| !c.is_ascii_digit())?;
    text[start..end].parse().ok()
}
