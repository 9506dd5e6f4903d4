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
    /// The stream sequence of the message stored before it in the channel (as the publish
    /// expected it), if any.
    pub(crate) previous: Option<u64>,
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
            previous: header(PREVIOUS_HEADER).and_then(|p| p.parse().ok()).filter(|&p| p > 0),
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

/// Which messages, read from a channel's top backwards, history may serve: the
/// consecutive run of publications in the top's epoch, at most `wanted` of them, none
/// older than the TTL, and at most the byte cap of payload.
#[derive(Debug)]
pub(crate) struct Walk {
    epoch: String,
    /// The offset the next message must have.
    expected: u64,
    /// How many more to take.
    remaining: u64,
    /// Payload bytes left under the cap; `None`: no cap.
    bytes_left: Option<usize>,
    /// Messages stored before this (ms since the Unix epoch) have aged out.
    oldest_ms: u64,
}

impl Walk {
    /// A walk back from `top` for `wanted` publications, with the namespace's TTL and the
    /// byte cap (0: none).
    pub(crate) fn new(top: &Top, wanted: u64, ttl_ms: u64, now_ms: u64, max_bytes: usize) -> Self {
        Self {
            epoch: top.epoch.clone(),
            expected: top.offset,
            remaining: wanted,
            bytes_left: (max_bytes > 0).then_some(max_bytes),
            oldest_ms: now_ms.saturating_sub(ttl_ms),
        }
    }

    /// Whether it has all it wants (or nothing is left to want).
    pub(crate) fn is_done(&self) -> bool {
        self.remaining == 0 || self.expected == 0
    }

    /// Takes `message` if it continues the run: the offset before the last one taken, in
    /// the same epoch, fresh enough and within the byte cap.
    pub(crate) fn take(&mut self, message: &Message) -> bool {
        if self.is_done()
            || message.epoch != self.epoch
            || message.offset != self.expected
            || message.time_ms < self.oldest_ms
        {
            return false;
        }
        if let Some(left) = &mut self.bytes_left {
            match left.checked_sub(message.payload.len()) {
                Some(rest) => *left = rest,
                None => return false,
            }
        }
        self.expected -= 1;
        self.remaining -= 1;
        true
    }
}

/// A server timestamp in ms since the Unix epoch (0 before it).
pub(crate) fn datetime_ms(time: async_nats::datetime::DateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// The header holding a message's offset in its channel.
pub(crate) const OFFSET_HEADER: &str = "Sb-Offset";

/// The header holding a message's epoch.
pub(crate) const EPOCH_HEADER: &str = "Sb-Epoch";

/// The header holding the stream sequence of the channel's message before this one (0 for
/// none): history reads walk back along it, reading only what they serve.
pub(crate) const PREVIOUS_HEADER: &str = "Sb-Previous";

#[cfg(test)]
mod tests {
    use super::*;

    fn message(offset: u64, epoch: &str, time_ms: u64, bytes: usize) -> Message {
        Message {
            sequence: offset * 10,
            offset,
            epoch: epoch.to_owned(),
            time_ms,
            previous: offset.checked_sub(1).map(|o| o * 10),
            payload: Bytes::from(vec![b'x'; bytes]),
        }
    }

    /// The offsets a walk from the last of `messages` takes, going back.
    fn walk(messages: &[Message], wanted: u64, ttl_ms: u64, max_bytes: usize) -> Vec<u64> {
        let top = messages.last().expect("a top").top();
        let mut walk = Walk::new(&top, wanted, ttl_ms, 1000, max_bytes);
        let mut taken: Vec<u64> =
            messages.iter().rev().take_while(|m| walk.take(m)).map(|m| m.offset).collect();
        taken.reverse();
        taken
    }

    #[test]
    fn a_walk_takes_the_consecutive_run_ending_at_the_top() {
        let run: Vec<_> = (0..=5).map(|o| message(o, "e", 1000, 10)).collect();
        assert_eq!(walk(&run, 10, 100, 0), [1, 2, 3, 4, 5], "never the marker");
        assert_eq!(walk(&run, 2, 100, 0), [4, 5], "as many as wanted");
        assert!(walk(&run, 0, 100, 0).is_empty(), "none wanted");
        assert_eq!(walk(&run, 10, 100, 30), [3, 4, 5], "within the byte cap");
        let mut holed = run;
        holed.remove(3);
        assert_eq!(walk(&holed, 10, 100, 0), [4, 5], "up to a hole");
        let mut reset = vec![message(7, "old", 1000, 10), message(8, "old", 1000, 10)];
        reset.extend([message(0, "e", 1000, 0), message(1, "e", 1000, 10)]);
        assert_eq!(walk(&reset, 10, 100, 0), [1], "the top's epoch only");
        let mut aging = vec![message(1, "e", 100, 10), message(2, "e", 900, 10)];
        aging.push(message(3, "e", 950, 10));
        assert_eq!(walk(&aging, 10, 100, 0), [2, 3], "aged out by the ttl");
    }

    #[test]
    fn a_top_expires_after_its_ttl() {
        let top = message(3, "e", 1000, 0).top();
        assert!(!top.is_expired(500, 1500));
        assert!(top.is_expired(500, 1501));
    }
}
