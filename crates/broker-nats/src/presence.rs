//! Presence: one key per channel in the presence bucket, a JSON object of the clients
//! present, changed only by compare and set so that concurrent nodes never lose an entry
//! and a leave is announced once.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use async_nats::jetstream::kv;
use bytes::Bytes;
use switchboard_broker::{BrokerError, ClientInfo};

use crate::live::{EVENT_HEADER, JOIN, LEAVE};
use crate::{MAX_ATTEMPTS, Shared, now_ms, to_json, unavailable};

/// One client present in a channel.
#[derive(serde::Deserialize, serde::Serialize)]
struct Entry {
    client: ClientInfo,
    /// Whether its leave is announced when it expires.
    announce: bool,
    /// When it expires unless refreshed, in ms since the Unix epoch.
    expires_ms: u64,
}

/// A channel's presence, by client id.
type Entries = BTreeMap<String, Entry>;

impl Shared {
    /// Adds or replaces `client`, then announces the join when `announce`.
    pub(crate) async fn join(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let lifetime = crate::millis(self.config.presence_lifetime());
        self.change_presence(channel, |entries, now| {
            let expires_ms = now.saturating_add(lifetime);
            entries
                .insert(client.id.clone(), Entry { client: client.clone(), announce, expires_ms });
            ((), true)
        })
        .await?;
        if announce {
            self.announce(channel, JOIN, client).await?;
        }
        Ok(())
    }

    /// Removes `client`; announces the leave when `announce` and it was present.
    pub(crate) async fn leave(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let removed = self
            .change_presence(channel, |entries, _| {
                let removed = entries.remove(&client.id).is_some();
                (removed, removed)
            })
            .await?;
        if removed && announce {
            self.announce(channel, LEAVE, client).await?;
        }
        Ok(())
    }

    /// Everyone present and not expired, sorted by client id.
    pub(crate) async fn present(&self, channel: &str) -> Result<Vec<ClientInfo>, BrokerError> {
        let key = self.names.channel(channel)?.presence_key;
        let (entries, _) = self.read_presence(&key).await?;
        let now = now_ms();
        Ok(entries.into_values().filter(|e| e.expires_ms > now).map(|e| e.client).collect())
    }

    /// The heartbeat's work on one channel: refreshes `ids` and drops expired entries,
    /// announcing their leaves.
    pub(crate) async fn refresh(&self, channel: &str, ids: &[String]) -> Result<(), BrokerError> {
        let lifetime = crate::millis(self.config.presence_lifetime());
        self.change_presence(channel, |entries, now| {
            let mut changed = false;
            for id in ids {
                if let Some(entry) = entries.get_mut(id) {
                    entry.expires_ms = now.saturating_add(lifetime);
                    changed = true;
                }
            }
            ((), changed)
        })
        .await
    }

    /// Reads the channel's entries, drops the expired ones, applies `change` (which says
    /// whether it changed anything), and writes the result back unless someone wrote in
    /// between (then starts over). Announces the leaves of expired entries once written.
    async fn change_presence<R>(
        &self,
        channel: &str,
        mut change: impl FnMut(&mut Entries, u64) -> (R, bool),
    ) -> Result<R, BrokerError> {
        let key = self.names.channel(channel)?.presence_key;
        for _ in 0..MAX_ATTEMPTS {
            let (mut entries, revision) = self.read_presence(&key).await?;
            let now = now_ms();
            let expired: Vec<Entry> = {
                let ids: Vec<String> = entries
                    .iter()
                    .filter(|(_, e)| e.expires_ms <= now)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.iter().filter_map(|id| entries.remove(id)).collect()
            };
            let (result, changed) = change(&mut entries, now);
            if !changed && expired.is_empty() {
                return Ok(result);
            }
            if self.write_presence(&key, &entries, revision).await? {
                for entry in expired.iter().filter(|e| e.announce) {
                    self.announce(channel, LEAVE, &entry.client).await?;
                }
                return Ok(result);
            }
        }
        Err(BrokerError::Unavailable(format!("presence on {channel:?} kept changing")))
    }

    /// The channel's entries and the revision they were read at (`None`: never written).
    async fn read_presence(&self, key: &str) -> Result<(Entries, Option<u64>), BrokerError> {
        let presence = self.storage().presence;
        let Some(entry) = presence.entry(key).await.map_err(unavailable)? else {
            return Ok((Entries::new(), None));
        };
        let entries = if entry.operation == kv::Operation::Put && !entry.value.is_empty() {
            serde_json::from_slice(&entry.value).map_err(|e| {
                BrokerError::Internal(format!("bad presence at revision {}: {e}", entry.revision))
            })?
        } else {
            Entries::new()
        };
        Ok((entries, Some(entry.revision)))
    }

    /// Writes `entries` if the key is still at `revision`; `false` when it is not.
    async fn write_presence(
        &self,
        key: &str,
        entries: &Entries,
        revision: Option<u64>,
    ) -> Result<bool, BrokerError> {
        let presence = self.storage().presence;
        let value = Bytes::from(to_json(entries)?);
        match revision {
            Some(revision) => match presence.update(key, value, revision).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(unavailable(e)),
            },
            None => match presence.create(key, value).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(unavailable(e)),
            },
        }
    }

    /// Tells the channel's subscribed nodes that `client` joined or left.
    async fn announce(
        &self,
        channel: &str,
        event: &str,
        client: &ClientInfo,
    ) -> Result<(), BrokerError> {
        let subject = self.names.channel(channel)?.live;
        let mut headers = HeaderMap::new();
        headers.insert(EVENT_HEADER, event);
        let payload = Bytes::from(to_json(client)?);
        self.client.publish_with_headers(subject, headers, payload).await.map_err(unavailable)
    }
}
