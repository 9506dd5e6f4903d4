//! Messages as the stream stores them: a channel's offset and epoch in headers, the
//! publication's JSON as payload.

use async_nats::jetstream::message::StreamMessage;
use bytes::Bytes;
use switchboard_broker::{BrokerError, Publication};

/// One stored message of a channel.
#[derive(Clone, Debug)]
pub(crate) struct Message {
    /// Its stream sequence.
    pub(crate) sequence: u64,
    /// Its offset in the channel (0 for the marker a history read stores).
    pub(crate) offset: u64,
    pub(crate) epoch: String,
    /// When the server stored it, in ms since the Unix epoch.
    pub(crate) time_ms: u64,
    payload: Bytes,
}

impl Message {
    /// Reads a stored message; one without the broker's headers was not written by it.
    pub(crate) fn parse(message: StreamMessage) -> Result<Self, BrokerError> {
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
        let offset = header(OFFSET_HEADER).and_then(|offset| offset.parse().ok());
        let (Some(offset), Some(epoch)) = (offset, header(EPOCH_HEADER)) else {
            return Err(BrokerError::Internal(format!(
                "message {} on {} was not stored by a switchboard broker",
                message.sequence, message.subject
            )));
        };
        Ok(Self {
            sequence: message.sequence,
            offset,
            epoch,
            time_ms: datetime_ms(message.time),
            payload: message.payload,
        })
    }

    pub(crate) fn top(&self) -> Top {
        Top {
            sequence: self.sequence,
            offset: self.offset,
            epoch: self.epoch.clone(),
            time_ms: self.time_ms,
        }
    }

    /// The publication it carries.
    pub(crate) fn publication(&self) -> Result<Publication, BrokerError> {
        let publication: Publication = serde_json::from_slice(&self.payload).map_err(|e| {
            BrokerError::Internal(format!("bad publication at sequence {}: {e}", self.sequence))
        })?;
        if publication.offset != self.offset {
            return Err(BrokerError::Internal(format!(
                "publication at sequence {} says offset {}, its header {}",
                self.sequence, publication.offset, self.offset
            )));
        }
        Ok(publication)
    }
}

/// A channel's last stored message, without its payload.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Top {
    pub(crate) sequence: u64,
    pub(crate) offset: u64,
    pub(crate) epoch: String,
    pub(crate) time_ms: u64,
}

impl Top {
    /// Whether the channel's history has aged out entirely: its last message is older than
    /// the namespace's `history_ttl`.
    pub(crate) fn is_expired(&self, ttl_ms: u64, now_ms: u64) -> bool {
        self.time_ms.saturating_add(ttl_ms) < now_ms
    }
}

/// What of a channel's stored messages (oldest first) history may serve: the consecutive
/// run of publications in the last one's epoch ending at it, at most `size` of them, none
/// older than `ttl_ms`, and at most `max_bytes` of payload (0: no cap). Oldest first.
pub(crate) fn window(
    messages: Vec<Message>,
    size: u64,
    ttl_ms: u64,
    now_ms: u64,
    max_bytes: usize,
) -> Vec<Message> {
    let Some(last) = messages.last() else { return Vec::new() };
    let (epoch, mut expected) = (last.epoch.clone(), last.offset);
    let lowest = last.offset.saturating_sub(size) + 1;
    let mut bytes = 0usize;
    let mut kept = Vec::new();
    for message in messages.into_iter().rev() {
        bytes = bytes.saturating_add(message.payload.len());
        let fits = max_bytes == 0 || bytes <= max_bytes;
        let fresh = message.time_ms.saturating_add(ttl_ms) >= now_ms;
        if message.epoch != epoch
            || message.offset != expected
            || message.offset < lowest.max(1)
            || !fresh
            || !fits
        {
            break;
        }
        expected -= 1;
        kept.push(message);
    }
    kept.reverse();
    kept
}

/// A server timestamp in ms since the Unix epoch (0 before it).
pub(crate) fn datetime_ms(time: async_nats::datetime::DateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// The header holding a message's offset in its channel.
pub(crate) const OFFSET_HEADER: &str = "Sb-Offset";

/// The header holding a message's epoch.
pub(crate) const EPOCH_HEADER: &str = "Sb-Epoch";

#[cfg(test)]
mod tests {
    use super::*;

    fn message(offset: u64, epoch: &str, time_ms: u64, bytes: usize) -> Message {
        Message {
            sequence: offset * 10,
            offset,
            epoch: epoch.to_owned(),
            time_ms,
            payload: Bytes::from(vec![b'x'; bytes]),
        }
    }

    fn offsets(window: &[Message]) -> Vec<u64> {
        window.iter().map(|m| m.offset).collect()
    }

    #[test]
    fn the_window_is_the_consecutive_run_ending_at_the_top() {
        let run: Vec<_> = (0..=5).map(|o| message(o, "e", 1000, 10)).collect();
        assert_eq!(offsets(&window(run.clone(), 10, 100, 1000, 0)), [1, 2, 3, 4, 5], "no marker");
        assert_eq!(offsets(&window(run.clone(), 2, 100, 1000, 0)), [4, 5], "history size");
        assert!(window(run.clone(), 0, 100, 1000, 0).is_empty(), "history size 0");
        assert_eq!(offsets(&window(run.clone(), 10, 100, 1000, 30)), [3, 4, 5], "byte cap");
        let mut holed = run;
        holed.remove(3);
        assert_eq!(offsets(&window(holed, 10, 100, 1000, 0)), [4, 5], "after a hole");
        let mut reset = vec![message(7, "old", 1000, 10), message(8, "old", 1000, 10)];
        reset.extend([message(0, "e", 1000, 0), message(1, "e", 1000, 10)]);
        assert_eq!(offsets(&window(reset, 10, 100, 1000, 0)), [1], "the last epoch only");
        let mut aging = vec![message(1, "e", 100, 10), message(2, "e", 900, 10)];
        aging.push(message(3, "e", 950, 10));
        assert_eq!(offsets(&window(aging, 10, 100, 1000, 0)), [2, 3], "aged out by ttl");
    }

    #[test]
    fn a_top_expires_after_its_ttl() {
        let top = message(3, "e", 1000, 0).top();
        assert!(!top.is_expired(500, 1500));
        assert!(top.is_expired(500, 1501));
    }
}
