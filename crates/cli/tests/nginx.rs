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
use switchboard_test_support::{http, wait_until_blocking};
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

/// An nginx master process (and its worker) on a free port with every file in a temp dir;
/// killed by PID when dropped.
struct Nginx {
    addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    fn start(backends: &[SocketAddr]) -> Self {
        let dir = std::env::temp_dir().join(format!("switchboard-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the nginx dir");
        let port = free_port();
        let config = dir.join("nginx.conf");
        std::fs::write(&config, nginx_config(&dir, port, backends)).expect("write nginx.conf");
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

/// The config of docs/scaling.md, with paths in `dir` and the test's ports. Keep the two in
/// step.
fn nginx_config(dir: &Path, port: u16, backends: &[SocketAddr]) -> String {
    let dir = dir.display();
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
            proxy_buffering off;
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
