//! Helpers shared by the client's integration tests: a TCP proxy that can cut every
//! connection on demand, a scripted WebSocket server for behaviour a correct server never
//! shows (duplicates, gaps), and bounded waits.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::{Value, json};
use switchboard_codec::{
    CloseCode, Connection, Event, HandshakeLimits, Limits, Message, Role, ServerHandshake,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// Each test binary uses its own subset of these too.
#[allow(unused_imports)]
pub(crate) use switchboard_test_support::rust_client::{
    LIMIT, connected, fast, next_event, next_non_presence, next_publication, wait_state,
};

/// A TCP proxy on `127.0.0.1:0` forwarding to `upstream`. [`cut`](Self::cut) drops every
/// forwarded connection at once, as a network failure would (no close frame);
/// [`block`](Self::block) makes it drop new connections as soon as they arrive.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    accepted: Arc<AtomicUsize>,
    blocked: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let upstream = Arc::new(Mutex::new(upstream));
        let task = tokio::spawn({
            let (accepted, blocked, links) =
                (Arc::clone(&accepted), Arc::clone(&blocked), Arc::clone(&links));
            let upstream = Arc::clone(&upstream);
            async move {
                while let Ok((mut down, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    if blocked.load(Ordering::SeqCst) {
                        drop(down);
                        continue;
                    }
                    let to = *upstream.lock().expect("upstream lock");
                    let link = tokio::spawn(async move {
                        let Ok(mut up) = TcpStream::connect(to).await else { return };
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    });
                    links.lock().expect("links lock").push(link);
                }
            }
        });
        Self { addr, upstream, accepted, blocked, links, task }
    }

    /// The `ws://` URL of the server behind the proxy.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Drops every forwarded connection now.
    pub(crate) fn cut(&self) {
        for link in self.links.lock().expect("links lock").drain(..) {
            link.abort();
        }
    }

    /// Forwards new connections to `upstream` from now on (another node behind the same
    /// address, as a load balancer without sticky sessions would).
    pub(crate) fn redirect(&self, upstream: SocketAddr) {
        *self.upstream.lock().expect("upstream lock") = upstream;
    }

    /// While on, new connections are closed as soon as they are accepted.
    pub(crate) fn block(&self, on: bool) {
        self.blocked.store(on, Ordering::SeqCst);
    }

    /// Connections accepted so far (blocked ones included).
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// A WebSocket server that does only what the test tells it to, speaking JSON.
#[derive(Debug)]
pub(crate) struct ScriptedServer {
    pub(crate) addr: SocketAddr,
    listener: TcpListener,
}

impl ScriptedServer {
    pub(crate) async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the scripted server");
        let addr = listener.local_addr().expect("the scripted server's address");
        Self { addr, listener }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Accepts the next connection and completes its opening handshake.
    pub(crate) async fn accept(&self) -> ScriptedConn {
        let (mut stream, _) = tokio::time::timeout(LIMIT, self.listener.accept())
            .await
            .expect("a connection in time")
            .expect("accept");
        let mut buf = BytesMut::with_capacity(4096);
        let (hs, used) = loop {
            assert!(stream.read_buf(&mut buf).await.expect("read the request") > 0, "eof");
            if let Some(parsed) =
                ServerHandshake::parse(&buf, &HandshakeLimits::default()).expect("a valid request")
            {
                break parsed;
            }
        };
        let _ = buf.split_to(used);
        let protocol = hs.select_protocol(&["switchboard.v1.json"]);
        stream.write_all(&hs.response(protocol, None)).await.expect("write the 101");
        ScriptedConn { stream, conn: Connection::new(Role::Server, Limits::default()), buf }
    }

    /// Accepts the next connection and answers its upgrade request with `response`.
    pub(crate) async fn refuse(&self, response: &str) {
        let (mut stream, _) = tokio::time::timeout(LIMIT, self.listener.accept())
            .await
            .expect("a connection in time")
            .expect("accept");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            assert!(stream.read_buf(&mut head).await.expect("read the request") > 0, "eof");
        }
        stream.write_all(response.as_bytes()).await.expect("write the refusal");
    }

    /// Whether a connection arrives within `limit`.
    pub(crate) async fn connection_within(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.listener.accept()).await.is_ok()
    }

    /// Accepts a connection and answers its `connect` with `ping_interval`.
    pub(crate) async fn accept_connected(&self, ping_interval: u32) -> ScriptedConn {
        let mut conn = self.accept().await;
        let connect = conn.recv().await;
        assert_eq!(connect["type"], "connect", "{connect}");
        conn.reply(&connect, connect_result(ping_interval)).await;
        conn
    }
}

/// What a server answers to `connect`.
pub(crate) fn connect_result(ping_interval: u32) -> Value {
    json!({
        "client": "c1",
        "version": "0.1.0",
        "ping_interval": ping_interval,
        "limits": {"max_message_size": 65536, "max_subscriptions": 128}
    })
}

/// One scripted connection.
#[derive(Debug)]
pub(crate) struct ScriptedConn {
    stream: TcpStream,
    conn: Connection,
    buf: BytesMut,
}

impl ScriptedConn {
    /// The next command, as JSON.
    pub(crate) async fn recv(&mut self) -> Value {
        tokio::time::timeout(LIMIT, async {
            loop {
                if !self.buf.is_empty() {
                    self.conn.handle_read(&mut self.buf, Instant::now()).expect("valid frames");
                }
                let event = self.conn.poll_event();
                self.flush().await;
                match event {
                    Some(Event::Text(text)) => {
                        return serde_json::from_slice(&text).expect("a JSON command");
                    }
                    Some(Event::Close(frame)) => panic!("client closed: {frame:?}"),
                    Some(_) => continue,
                    None => {}
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "client went away");
            }
        })
        .await
        .expect("a command in time")
    }

    /// Sends a message.
    pub(crate) async fn send(&mut self, message: Value) {
        self.conn.send(Message::text(message.to_string())).expect("open connection");
        self.flush().await;
    }

    /// Answers `command` with `result`.
    pub(crate) async fn reply(&mut self, command: &Value, result: Value) {
        self.send(json!({"id": command["id"], "result": result})).await;
    }

    /// Sends a publication push.
    pub(crate) async fn publication(&mut self, channel: &str, offset: u64) {
        let push =
            json!({"push": "publication", "channel": channel, "offset": offset, "data": offset});
        self.send(push).await;
    }

    /// Closes with `code`.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) {
        self.conn.close(CloseCode(code), reason, Instant::now()).expect("a sendable code");
        self.flush().await;
    }

    /// Whether the client closed the TCP connection within `limit`.
    pub(crate) async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut sink = [0u8; 1024];
        tokio::time::timeout(limit, async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    async fn flush(&mut self) {
        while let Some(bytes) = self.conn.poll_transmit() {
            self.stream.write_all(&bytes).await.expect("write");
        }
    }
}
