//! A broker that times and counts every operation of the broker it wraps, for `/metrics`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_broker::{
    Broker, BrokerError, BrokerHandler, ClientInfo, History, HistoryQuery, JoinLeave, NodeRecord,
    StreamOptions, StreamPosition, Usage,
};
use switchboard_proto::Value;

use crate::metrics::{BrokerOp, BrokerStats};

/// Wraps a broker: same behaviour, each call's latency and failure recorded by operation.
pub(crate) struct TimedBroker {
    inner: Arc<dyn Broker>,
    stats: Arc<BrokerStats>,
}

impl TimedBroker {
    /// Times `inner`'s operations into `stats`.
    pub(crate) fn new(inner: Arc<dyn Broker>, stats: Arc<BrokerStats>) -> Self {
        Self { inner, stats }
    }

    async fn timed<T>(
        &self,
        op: BrokerOp,
        call: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        let started = Instant::now();
        let result = call.await;
        self.stats.record(op, started.elapsed(), result.is_err());
        result
    }
}

#[async_trait::async_trait]
impl Broker for TimedBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>) {
        self.inner.set_handler(handler);
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.timed(BrokerOp::Subscribe, self.inner.subscribe(channel)).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.timed(BrokerOp::Unsubscribe, self.inner.unsubscribe(channel)).await
    }

    async fn publish(
        &self,
        channel: &str,
        data: Value,
        info: Option<Arc<ClientInfo>>,
        options: &StreamOptions,
    ) -> Result<StreamPosition, BrokerError> {
        self.timed(BrokerOp::Publish, self.inner.publish(channel, data, info, options)).await
    }

    async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        options: &StreamOptions,
    ) -> Result<History, BrokerError> {
        self.timed(BrokerOp::History, self.inner.history(channel, query, options)).await
    }

    async fn join(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: JoinLeave,
    ) -> Result<(), BrokerError> {
        self.timed(BrokerOp::Join, self.inner.join(channel, client, announce)).await
    }

    async fn leave(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: JoinLeave,
    ) -> Result<(), BrokerError> {
        self.timed(BrokerOp::Leave, self.inner.leave(channel, client, announce)).await
    }

    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, BrokerError> {
        self.timed(BrokerOp::Presence, self.inner.presence(channel)).await
    }

    // Timed as `presence`: the same read, without the list.
    async fn presence_count(&self, channel: &str) -> Result<usize, BrokerError> {
        self.timed(BrokerOp::Presence, self.inner.presence_count(channel)).await
    }

    // Not timed: the registry is not among the operations `/metrics` reports.
    async fn register_node(
        &self,
        node: &str,
        info: &str,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        self.inner.register_node(node, info, ttl).await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, BrokerError> {
        self.inner.nodes().await
    }

    // Not timed: node messages are not among the operations `/metrics` reports.
    async fn listen_as(&self, node: &str) -> Result<(), BrokerError> {
        self.inner.listen_as(node).await
    }

    async fn send_to_node(&self, node: &str, message: Bytes) -> Result<(), BrokerError> {
        self.inner.send_to_node(node, message).await
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }
}
