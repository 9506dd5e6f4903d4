//! What every node knows of the others: the live nodes and their loads, through the broker's
//! node registry, and the requests that must reach every node (disconnecting a user).
//!
//! Each node registers a [`Report`] of itself every [`REPORT_EVERY`], valid for
//! [`REPORT_TTL`], and removes it when it shuts down; a node that dies drops out of the list
//! within [`REPORT_TTL`]. `GET /api/nodes` and `GET /api/channels` read the reports (this
//! node's own live, the others' as last registered), so any node answers for all of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use switchboard_broker::BrokerError;

use crate::fallback::relay;
use crate::metrics::resident_memory_bytes;
use crate::node::Kick;
use crate::state::Shared;

/// How often a node registers its report.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(5);

/// How long a report stays listed without renewal: three missed reports.
pub(crate) const REPORT_TTL: Duration = Duration::from_secs(15);

/// How many of its busiest channels a node reports.
pub(crate) const REPORTED_CHANNELS: usize = 100;

/// What a node says about itself in the registry, and what `GET /api/nodes` lists.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Report {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) uptime_seconds: u64,
    pub(crate) connections: usize,
    pub(crate) subscriptions: usize,
    pub(crate) channels: usize,
    /// Resident memory, where the system tells it.
    pub(crate) memory_bytes: Option<u64>,
    pub(crate) publications: u64,
    pub(crate) messages_received: u64,
    /// When the report was made, in ms since the Unix epoch, by the node's clock.
    pub(crate) reported_at_ms: u64,
    /// Up to [`REPORTED_CHANNELS`] of its channels with the most subscribers, busiest first; not
    /// listed by `GET /api/nodes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) busiest: Vec<(String, usize)>,
}

/// This node's report, now.
pub(crate) fn report(shared: &Shared) -> Report {
    let node = &shared.node;
    let memory = resident_memory_bytes();
    Report {
        name: shared.sessions.node().to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: shared.started.elapsed().as_secs(),
        connections: node.connection_count(),
        subscriptions: node.hub.subscription_count(),
        channels: node.hub.channel_count(),
        memory_bytes: (memory > 0).then_some(memory),
        publications: shared.metrics.publications.get(),
        messages_received: shared.metrics.messages_in.get(),
        reported_at_ms: unix_ms(),
        busiest: node
            .hub
            .busiest(REPORTED_CHANNELS)
            .into_iter()
            .map(|(name, count)| (name.to_string(), count))
            .collect(),
    }
}

/// Registers this node's report every [`REPORT_EVERY`] until the server shuts down, then
/// removes it.
pub(crate) async fn keep_registered(shared: Arc<Shared>) {
    let name = shared.sessions.node().to_owned();
    let mut every = tokio::time::interval(REPORT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            _ = every.tick() => {}
        }
        let info = match serde_json::to_string(&report(&shared)) {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode this node's report");
                continue;
            }
        };
        if let Err(e) = shared.node.broker.register_node(&name, &info, REPORT_TTL).await {
            // The next tick tries again; meanwhile other nodes list this one until it expires.
            tracing::debug!(error = %e, "cannot register this node");
        }
    }
    if let Err(e) = shared.node.broker.register_node(&name, "", Duration::ZERO).await {
        tracing::debug!(error = %e, "cannot remove this node from the registry");
    }
}

/// One node, as `GET /api/nodes` lists it.
#[derive(Debug, Serialize)]
pub(crate) struct Listed {
    #[serde(flatten)]
    report: Report,
    /// Whether it is the node answering.
    current: bool,
    /// How old its report is, by the answering node's clock (0 for itself).
    age_ms: u64,
}

/// Every live node, this one first, then by name. The others as they last reported; a
/// report that cannot be read is left out (a node of another version, say) and logged.
pub(crate) async fn nodes(shared: &Shared) -> Result<Vec<Listed>, BrokerError> {
    let me = report(shared);
    let now = unix_ms();
    let mut others: Vec<Listed> = shared
        .node
        .broker
        .nodes()
        .await?
        .into_iter()
        .filter(|record| record.name != me.name)
        .filter_map(|record| match serde_json::from_str::<Report>(&record.info) {
            Ok(report) => Some(report),
            Err(e) => {
                tracing::debug!(node = %record.name, error = %e, "unreadable node report");
                None
            }
        })
        .map(|report| Listed {
            age_ms: now.saturating_sub(report.reported_at_ms),
            current: false,
            report,
        })
        .collect();
    others.sort_by(|a, b| a.report.name.cmp(&b.report.name));
    let mut all = vec![Listed { report: me, current: true, age_ms: 0 }];
    all.append(&mut others);
    for listed in &mut all {
        listed.report.busiest = Vec::new();
    }
    Ok(all)
}

/// The channels with the most subscribers over every node, as `GET /api/channels` answers.
#[derive(Debug, Serialize)]
pub(crate) struct Channels {
    channels: Vec<ChannelLoad>,
    /// Whether channels were left out: more than `limit`, or a node has more than it
    /// reports (the counts of those are then missing from the sums).
    truncated: bool,
}

/// One channel's subscribers, summed over the nodes.
#[derive(Debug, Serialize)]
struct ChannelLoad {
    channel: String,
    subscribers: usize,
}

/// The `limit` busiest channels over every live node (at most [`REPORTED_CHANNELS`]).
pub(crate) async fn channels(shared: &Shared, limit: usize) -> Result<Channels, BrokerError> {
    let limit = limit.min(REPORTED_CHANNELS);
    let me = report(shared);
    let mut reports = vec![me];
    for record in shared.node.broker.nodes().await? {
        if record.name == reports[0].name {
            continue;
        }
        if let Ok(report) = serde_json::from_str::<Report>(&record.info) {
            reports.push(report);
        }
    }
    let mut truncated = false;
    let mut sums: HashMap<String, usize> = HashMap::new();
    for report in reports {
        truncated |= report.channels > report.busiest.len();
        for (channel, count) in report.busiest {
            *sums.entry(channel).or_default() += count;
        }
    }
    let mut channels: Vec<ChannelLoad> = sums
        .into_iter()
        .map(|(channel, subscribers)| ChannelLoad { channel, subscribers })
        .collect();
    channels
        .sort_by(|a, b| b.subscribers.cmp(&a.subscribers).then_with(|| a.channel.cmp(&b.channel)));
    truncated |= channels.len() > limit;
    channels.truncate(limit);
    Ok(Channels { channels, truncated })
}

/// Whom a disconnect is for.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Target {
    Client(String),
    User(String),
}

/// What disconnecting on every node came to.
#[derive(Debug, Serialize)]
pub(crate) struct Disconnected {
    /// How many connections were asked to close, on every node that answered.
    pub(crate) disconnected: usize,
    /// Whether every live node answered. When not, some of the connections may still be
    /// open: `unreachable` names the nodes that did not answer in time (empty when the
    /// nodes could not even be listed).
    pub(crate) complete: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) unreachable: Vec<String>,
}

/// Asks `target`'s connections on this node, and on every other live node through the
/// broker, to close with `kick`.
pub(crate) async fn disconnect(shared: &Arc<Shared>, target: &Target, kick: &Kick) -> Disconnected {
    let mut disconnected = disconnect_here(shared, target, kick);
    let me = shared.sessions.node();
    let others: Vec<String> = match shared.node.broker.nodes().await {
        Ok(records) => records.into_iter().map(|r| r.name).filter(|name| name != me).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the nodes: disconnected on this node only");
            return Disconnected { disconnected, complete: false, unreachable: Vec::new() };
        }
    };
    let asked = others.iter().map(|node| relay::disconnect(shared, node, target, kick));
    let answers = futures_util::future::join_all(asked).await;
    let mut unreachable = Vec::new();
    for (node, answer) in others.into_iter().zip(answers) {
        match answer {
            Ok(count) => disconnected += count,
            // Gone since it last registered: none of its clients are connected anywhere.
            Err(BrokerError::UnknownNode(_)) => {}
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "a node did not confirm a disconnect");
                unreachable.push(node);
            }
        }
    }
    Disconnected { disconnected, complete: unreachable.is_empty(), unreachable }
}

/// Asks `target`'s connections on this node to close; how many there were.
pub(crate) fn disconnect_here(shared: &Shared, target: &Target, kick: &Kick) -> usize {
    match target {
        Target::Client(id) => usize::from(shared.node.disconnect_client(id, kick.clone())),
        Target::User(user) => shared.node.disconnect_user(user, kick),
    }
}

fn unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
