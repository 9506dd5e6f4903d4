//! End to end through a real nginx (the Debian package) in front of two `switchboard serve`
//! nodes on one private `redis-server`, with the config `docs/scaling.md` gives: the Rust
//! client subscribes and publishes through nginx, then survives `kill -9` of a node.
//!
//! Skips (with a message) only when `/usr/sbin/nginx` is absent; CI installs it.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use switchboard_client::{Client, ConnectionState, Subscription};
use switchboard_test_support::redis::RedisServer;
use switchboard_test_support::{http, sse, wait_until_blocking};
use tokio::time::timeout;

use support::{LIMIT, Node, connected, expect_every_publication, fast, wait_state};

const NGINX: &str = "/usr/sbin/nginx";

/// A channel of the `chat` namespace, open to anonymous publishers, with a history of 100.
const CHANNEL: &str = "chat:nginx";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_through_nginx_publish_receive_and_survive_a_killed_node() {
    if !Path::new(NGINX).exists() {
        eprintln!("SKIPPED: {NGINX} is absent (apt-get install nginx); nothing was tested");
        return;
    }
    const BEFORE: u64 = 50;
    const AFTER: u64 = 50;
    const SUBSCRIBERS: usize = 4;
    let redis = RedisServer::start();
    let mut a = Node::start(&redis.url());
    let b = Node::start(&redis.url());
    let nginx = Nginx::start(&[a.addr, b.addr]);
    let url = format!("ws://{}/ws", nginx.addr);

    let ready = http::get(nginx.addr, "/readyz").await;
    assert_eq!(ready.status, 200, "{ready}");

    // Round robin without stickiness spreads these over both nodes.
    let mut clients: Vec<Client> = Vec::new();
    let mut subs: Vec<Subscription> = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let client = fast(&url).build().expect("build");
        connected(&client).await;
        subs.push(client.subscribe(CHANNEL).await.expect("subscribe through nginx"));
        clients.push(client);
    }
    let publisher = fast(&url).build().expect("build");
    connected(&publisher).await;
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            tokio::spawn(async move { expect_every_publication(&mut sub, BEFORE + AFTER).await })
        })
        .collect();
    for n in 1..=BEFORE {
        let ack = publisher.publish(CHANNEL, n).await.expect("publish through nginx");
        assert_eq!(ack.offset, n);
    }

    a.kill9();
    // Clients of the dead node (the publisher too, perhaps) reconnect through nginx, which
    // now finds only the other node; publishes made meanwhile wait in the client's queue.
    for n in BEFORE + 1..=BEFORE + AFTER {
        let ack = timeout(LIMIT, publisher.publish(CHANNEL, n))
            .await
            .expect("an ack in time")
            .expect("publish through nginx after the kill");
        assert_eq!(ack.offset, n);
    }
    for reader in readers {
        timeout(LIMIT, reader).await.expect("reader in time").expect("every publication");
    }
    let mut reconnected = 0;
    for client in &clients {
        if client.state().connections >= 2 {
            reconnected += 1;
        }
        let state = wait_state(client, |s| s.state == ConnectionState::Connected).await;
        assert_eq!(state.state, ConnectionState::Connected);
    }
    assert!(reconnected >= 1, "no subscriber was on the killed node: nginx did not balance");
    drop(nginx);
    drop(b);
}

/// Polls through `addr` until a publication of `text` arrives; the new ack.
async fn poll_for_text(addr: SocketAddr, session: &str, mut ack: u64, text: &str) -> u64 {
    loop {
        let (messages, next) = sse::poll_messages(addr, session, ack, 1).await;
        ack = next;
        if messages.iter().any(|m| m["push"] == "publication" && m["data"]["text"] == text) {
            return ack;
        }
    }
}

fn command(id: u64, kind: &str, channel: &str, text: &str) -> String {
    serde_json::json!({"id": id, "type": kind, "channel": channel, "data": {"text": text}})
        .to_string()
}

/// Requests for other nodes' sessions that `node` forwarded.
async fn forwarded(node: SocketAddr) -> f64 {
    let text = switchboard_test_support::metrics::scrape(node).await;
    switchboard_test_support::metrics::sample(
        &text,
        "switchboard_http_session_requests_forwarded_total",
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_sessions_work_across_nodes_behind_round_robin_nginx() {
    if !Path::new(NGINX).exists() {
        eprintln!("SKIPPED: {NGINX} is absent (apt-get install nginx); nothing was tested");
        return;
    }
    let redis = RedisServer::start();
    let a = Node::start(&redis.url());
    let b = Node::start(&redis.url());
    let nginx = Nginx::start(&[a.addr, b.addr]);
    let lb = nginx.addr;

    // Every request goes through nginx, which sends each to the next node in turn: a
    // session's commands and polls land on both nodes.
    let listener = sse::open_poll(lb).await;
    let (mut stream, streamer) = sse::open_sse(lb, &[]).await;
    let publisher = sse::open_poll(lb).await;
    for session in [&listener, &streamer] {
        let posted = sse::post(lb, session, &command(1, "subscribe", "chat:rr", "")).await;
        assert_eq!(posted.status, 204, "{posted}");
    }
    assert_eq!(stream.next_json().await["id"], 1);
    let mut ack = 0;
    for n in 0..10u64 {
        let text = format!("m{n}");
        let posted = sse::post(lb, &publisher, &command(n + 1, "publish", "chat:rr", &text)).await;
        assert_eq!(posted.status, 204, "{posted}");
        ack = poll_for_text(lb, &listener, ack, &text).await;
        loop {
            let event = stream.next_json().await;
            if event["push"] == "publication" {
                assert_eq!(event["data"]["text"], text.as_str(), "in order on the stream");
                break;
            }
        }
    }
    let crossed = forwarded(a.addr).await + forwarded(b.addr).await;
    assert!(crossed >= 10.0, "requests crossed between the nodes: {crossed} forwarded");
    drop(nginx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_polling_and_sse_get_through_nginx_with_its_default_buffering() {
    if !Path::new(NGINX).exists() {
        eprintln!("SKIPPED: {NGINX} is absent (apt-get install nginx); nothing was tested");
        return;
    }
    let node = Node::start_with(&[]);
    let nginx = Nginx::start_with(&[node.addr], Buffering::Default);
    let lb = nginx.addr;
    // A long-poll is one whole response: buffering delays nothing.
    let listener = sse::open_poll(lb).await;
    sse::post(lb, &listener, &command(1, "subscribe", "chat:buf", "")).await;
    let publisher = sse::open_poll(lb).await;
    sse::post(lb, &publisher, &command(1, "publish", "chat:buf", "through the buffer")).await;
    poll_for_text(lb, &listener, 0, "through the buffer").await;
    // An event stream comes through too, each event as it is written (the server also sends
    // `X-Accel-Buffering: no`, which turns nginx's buffering off for that response).
    let (mut stream, streamer) = sse::open_sse(lb, &[]).await;
    sse::post(lb, &streamer, &command(1, "subscribe", "chat:buf", "")).await;
    assert_eq!(stream.next_json().await["id"], 1);
    sse::post(lb, &publisher, &command(2, "publish", "chat:buf", "streamed")).await;
    loop {
        let event = stream.next_json().await;
        if event["push"] == "publication" {
            assert_eq!(event["data"]["text"], "streamed");
            break;
        }
    }
    drop(nginx);
}

/// An nginx master process (and its worker) on a free port with every file in a temp dir;
/// killed by PID when dropped.
struct Nginx {
    addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// nginx with the config of docs/scaling.md (response buffering off).
    fn start(backends: &[SocketAddr]) -> Self {
        Self::start_with(backends, Buffering::Off)
    }

    fn start_with(backends: &[SocketAddr], buffering: Buffering) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-nginx-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the nginx dir");
        let port = free_port();
        let config = dir.join("nginx.conf");
        std::fs::write(&config, nginx_config(&dir, port, backends, buffering))
            .expect("write nginx.conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&config)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Self { addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)), child, dir };
        let (addr, child) = (nginx.addr, &mut nginx.child);
        let mut exited = None;
        let listening = wait_until_blocking(LIMIT, || {
            exited = child.try_wait().ok().flatten();
            exited.is_some() || std::net::TcpStream::connect(addr).is_ok()
        });
        if let Some(status) = exited {
            panic!("nginx exited with {status}: {}", nginx.error_log());
        }
        assert!(listening, "nginx did not listen: {}", nginx.error_log());
        nginx
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master's PID only: it stops its worker and exits (a SIGKILLed
        // master would leave the worker running). SIGKILL if it does not.
        let pid = self.child.id().to_string();
        drop(Command::new("kill").args(["-TERM", &pid]).status());
        wait_until_blocking(LIMIT, || !matches!(self.child.try_wait(), Ok(None)));
        drop(self.child.kill());
        drop(self.child.wait());
        drop(std::fs::remove_dir_all(&self.dir));
    }
}

/// Tells one test's nginx directory from another's in the same process.
static NEXT_DIR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether nginx buffers responses from the nodes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Buffering {
    /// `proxy_buffering off`, as docs/scaling.md says.
    Off,
    /// nginx's default (`proxy_buffering on`): what an operator who changed nothing runs.
    Default,
}

/// The config of docs/scaling.md, with paths in `dir` and the test's ports. Keep the two in
/// step.
fn nginx_config(dir: &Path, port: u16, backends: &[SocketAddr], buffering: Buffering) -> String {
    let dir = dir.display();
    let buffering = match buffering {
        Buffering::Off => "proxy_buffering off;",
        Buffering::Default => "# proxy_buffering: nginx's default (on)",
    };
    let servers: String = backends.iter().map(|addr| format!("        server {addr};\n")).collect();
    format!(
        r#"worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    # RFC 6455 §4.1: hop-by-hop Upgrade and Connection must be passed on explicitly.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    upstream switchboard {{
{servers}    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
            proxy_pass http://switchboard;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # Longer than the server's ping interval (25 s), or idle sockets are cut.
            proxy_read_timeout 75s;
            proxy_send_timeout 75s;
            {buffering}
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"#
    )
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a bound listener has an address").port()
}
