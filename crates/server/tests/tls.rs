//! WSS over real sockets: certificate files, ALPN, reload without dropping connections, the
//! generated development certificate, and unusable files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use switchboard_codec::{
    ClientHandshake, Connection, Event, HandshakeLimits, Limits, Message, Role,
};
use switchboard_server::{Config, Error, Server, TlsReloader, TlsSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const LIMIT: Duration = Duration::from_secs(5);

/// A certificate for localhost in PEM, and its key.
fn certificate() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("generate a certificate");
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

/// Writes `cert` and `key` into a fresh directory of the test's own.
fn write_files(dir: &std::path::Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("create the test directory");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert).expect("write cert");
    std::fs::write(&key_path, key).expect("write key");
    (cert_path, key_path)
}

fn test_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("switchboard-tls-{name}-{}", std::process::id()))
}

async fn start(source: TlsSource) -> (SocketAddr, TlsReloader, Option<String>) {
    let mut config = Config::default();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.tls = Some(source);
    let server = Server::bind(config).await.expect("bind with tls");
    let addr = server.local_addr();
    let reloader = server.tls_reloader();
    let dev = server.dev_certificate().map(str::to_owned);
    tokio::spawn(server.run());
    (addr, reloader, dev)
}

/// A TLS connection trusting only `cert_pem`, upgraded on `/echo`.
async fn connect(
    addr: SocketAddr,
    cert_pem: &str,
) -> std::io::Result<(TlsStream<TcpStream>, Connection)> {
    let mut roots = rustls::RootCertStore::empty();
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("a pem certificate");
    roots.add(cert).expect("trust the certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut tls = TlsConnector::from(Arc::new(client)).connect(name, tcp).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let hs = ClientHandshake::new();
    tls.write_all(&hs.request("localhost", "/echo", &[])).await?;
    let mut buf = BytesMut::new();
    loop {
        if tls.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        match hs.verify(&buf, &HandshakeLimits::default()) {
            Ok(Some((_, used))) => {
                assert_eq!(used, buf.len(), "nothing after the 101 yet");
                return Ok((tls, Connection::new(Role::Client, Limits::default())));
            }
            Ok(None) => continue,
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
}

/// Sends `text` and returns what comes back.
async fn echo(tls: &mut TlsStream<TcpStream>, conn: &mut Connection, text: &str) -> String {
    conn.send(Message::text(text)).expect("open");
    while let Some(out) = conn.poll_transmit() {
        tls.write_all(&out).await.expect("write");
    }
    let mut buf = BytesMut::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(Event::Text(t)) = conn.poll_event() {
            return String::from_utf8(t.to_vec()).expect("utf-8");
        }
        let read = tokio::time::timeout_at(deadline, tls.read_buf(&mut buf)).await;
        assert!(read.expect("an echo in time").expect("read") > 0, "closed");
        conn.handle_read(&mut buf, Instant::now()).expect("valid frames");
    }
}

#[tokio::test]
async fn serves_wss_from_pem_files_and_reloads_without_dropping_connections() {
    let dir = test_dir("reload");
    let (cert_a, key_a) = certificate();
    let (cert_path, key_path) = write_files(&dir, &cert_a, &key_a);
    let (addr, reloader, _) = start(TlsSource::Files { cert: cert_path, key: key_path }).await;

    let (mut old, mut old_conn) = connect(addr, &cert_a).await.unwrap();
    assert_eq!(echo(&mut old, &mut old_conn, "before").await, "before");

    let (cert_b, key_b) = certificate();
    write_files(&dir, &cert_b, &key_b);
    reloader.reload().unwrap();

    // New connections get the new certificate and no longer the old one.
    let (mut new, mut new_conn) = connect(addr, &cert_b).await.unwrap();
    assert_eq!(echo(&mut new, &mut new_conn, "new").await, "new");
    assert!(connect(addr, &cert_a).await.is_err(), "the old certificate is still served");
    // The connection opened before the reload is untouched.
    assert_eq!(echo(&mut old, &mut old_conn, "after").await, "after");

    // A broken file keeps the current certificate.
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    assert!(matches!(reloader.reload(), Err(Error::Tls(_))));
    let (mut again, mut again_conn) = connect(addr, &cert_b).await.unwrap();
    assert_eq!(echo(&mut again, &mut again_conn, "still").await, "still");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn dev_certificate_serves_localhost() {
    let (addr, _, pem) = start(TlsSource::DevSelfSigned).await;
    let pem = pem.expect("a generated certificate");
    let (mut tls, mut conn) = connect(addr, &pem).await.unwrap();
    assert_eq!(echo(&mut tls, &mut conn, "dev").await, "dev");
}

#[tokio::test]
async fn plain_http_to_a_tls_port_is_not_served() {
    let (addr, _, _) = start(TlsSource::DevSelfSigned).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(LIMIT, tcp.read_to_end(&mut got)).await;
    assert!(!String::from_utf8_lossy(&got).contains("200"), "{got:?}");
}

#[tokio::test]
async fn unusable_files_fail_at_bind_with_the_path() {
    let dir = test_dir("bad");
    let (cert_path, key_path) = write_files(&dir, "no certificate here", "no key");
    let mut config = Config::default();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.tls = Some(TlsSource::Files { cert: cert_path.clone(), key: key_path });
    let err = Server::bind(config).await.unwrap_err();
    assert!(err.to_string().contains(&cert_path.display().to_string()), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
