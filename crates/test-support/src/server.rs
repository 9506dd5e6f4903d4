//! A real server on `127.0.0.1:0` for integration tests.

use std::net::SocketAddr;

use switchboard_server::{Config, Server, ShutdownHandle};
use tokio::task::JoinHandle;

/// A running server; shut down (gracefully) when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The certificate it serves in PEM, when it serves TLS with
    /// [`TlsSource::DevSelfSigned`](switchboard_server::TlsSource::DevSelfSigned).
    pub dev_certificate: Option<String>,
    handle: ShutdownHandle,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with `config`, forcing the listen address to `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// When the loopback port cannot be bound: the test cannot run at all then.
    pub async fn start(mut config: Config) -> Self {
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = Server::bind(config).await.expect("bind 127.0.0.1:0");
        let addr = server.local_addr();
        let dev_certificate = server.dev_certificate().map(str::to_owned);
        let handle = server.shutdown_handle();
        let task = tokio::spawn(async move {
            let _ = server.run().await;
        });
        Self { addr, dev_certificate, handle, task: Some(task) }
    }

    /// Starts a graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// A config whose default namespace lets anonymous connections subscribe and publish, as
/// tests of hub behaviour (rather than of access control) need.
pub fn open_config() -> Config {
    let mut config = Config::default();
    config.hub.namespaces.insert(String::new(), open_namespace());
    config
}

/// Namespace options open to anonymous subscribers and publishers.
pub fn open_namespace() -> switchboard_server::NamespaceOptions {
    let mut options = switchboard_server::NamespaceOptions::default();
    options.anonymous = switchboard_server::Anonymous::Publish;
    options
}

/// A config for load runs: a `bench` namespace open to anonymous publishers, without
/// presence, join and leave pushes or history (only publications reach subscribers), no rate
/// limits.
pub fn bench_config() -> Config {
    let mut config = open_config();
    let mut bench = open_namespace();
    bench.presence = false;
    bench.join_leave = false;
    bench.history_size = 0;
    config.hub.namespaces.insert("bench".into(), bench);
    config.rate_limits.message_rate = None;
    config.rate_limits.byte_rate = None;
    config.rate_limits.handshake_rate = None;
    config
}
