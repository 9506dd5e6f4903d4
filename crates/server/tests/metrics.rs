//! `/metrics` over real sockets: every kind of refusal and disconnect shows up, counted once.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use switchboard_codec::{CloseCode, Event, Message};
use switchboard_server::Rate;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::http::upgrade;
use switchboard_test_support::metrics::{self, sample};
use switchboard_test_support::protocol::{call, next_json};
use switchboard_test_support::server::{TestServer, open_config};
use switchboard_test_support::wait;

const LIMIT: Duration = Duration::from_secs(5);

async fn scrape(addr: SocketAddr) -> String {
    let response = metrics::scrape(addr).await;
    assert!(response.contains("application/openmetrics-text"), "{response}");
    response
}

#[tokio::test]
async fn refusals_before_the_upgrade_are_counted_by_reason() {
    let server = TestServer::start(open_config()).await;
    let addr = server.addr;
    let bad_key = upgrade(addr, "/ws", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
    let foreign = upgrade(addr, "/ws", "Origin: https://evil.example\r\n");
    let protocol = upgrade(addr, "/ws", "Sec-WebSocket-Protocol: mqtt\r\n");
    for (request, status) in
        [(bad_key, 400), (foreign.clone(), 403), (foreign, 403), (protocol, 400)]
    {
        let refusal = WsClient::expect_refusal(addr, request.as_bytes()).await.unwrap();
        assert_eq!(refusal.status, status);
    }
    let text = scrape(addr).await;
    let failures = "switchboard_handshake_failures_total";
    assert_eq!(
        sample(&text, &format!("{failures}{{reason=\"invalid_key\"}}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, &format!("{failures}{{reason=\"origin_not_allowed\"}}")), Some(2.0));
    assert_eq!(
        sample(&text, &format!("{failures}{{reason=\"unsupported_subprotocol\"}}")),
        Some(1.0)
    );
}

#[tokio::test]
async fn deliveries_count_one_per_subscriber_and_replies_are_sent_messages() {
    let server = TestServer::start(open_config()).await;
    let addr = server.addr;
    let channel = "chat:metrics";
    let mut subscribers = Vec::new();
    for id in 1..=2 {
        let mut ws = WsClient::connect(addr, "/ws").await.unwrap();
        let reply =
            call(&mut ws, &json!({"id": id, "type": "subscribe", "channel": channel})).await;
        assert!(reply.get("result").is_some(), "{reply}");
        subscribers.push(ws);
    }
    let mut publisher = WsClient::connect(addr, "/ws").await.unwrap();
    let before = scrape(addr).await;
    assert_eq!(sample(&before, "switchboard_deliveries_total"), Some(0.0), "{before}");
    let command = json!({"id": 1, "type": "publish", "channel": channel, "data": "hi"});
    let reply = call(&mut publisher, &command).await;
    assert!(reply.get("result").is_some(), "{reply}");
    for ws in &mut subscribers {
        loop {
            let push = next_json(ws).await;
            if push["push"] == "publication" {
                break;
            }
        }
    }
    let text = scrape(addr).await;
    assert_eq!(sample(&text, "switchboard_deliveries_total"), Some(2.0), "{text}");
    assert_eq!(sample(&text, "switchboard_publications_total"), Some(1.0), "{text}");
    // Two subscribe replies, a join, the publish reply and the two publications (the
    // second subscriber's join may or may not have reached the first yet).
    let sent = sample(&text, "switchboard_messages_sent_total").unwrap_or_default();
    assert!(sent >= 5.0, "{text}");
    assert!(sample(&text, "switchboard_bytes_sent_total").unwrap_or_default() > 0.0);
    // One latency observation per delivery, in cumulative buckets ending at +Inf.
    assert_eq!(sample(&text, "switchboard_delivery_latency_seconds_count"), Some(2.0), "{text}");
    assert_eq!(
        sample(&text, "switchboard_delivery_latency_seconds_bucket{le=\"+Inf\"}"),
        Some(2.0),
        "{text}"
    );
    let sum = sample(&text, "switchboard_delivery_latency_seconds_sum").expect("a sum");
    assert!(sum > 0.0 && sum < 2.0 * LIMIT.as_secs_f64(), "{text}");
    // The broker timed each operation: one publish, two subscribes' history reads.
    let publish = "switchboard_broker_latency_seconds_count{op=\"publish\"}";
    assert_eq!(sample(&text, publish), Some(1.0), "{text}");
    let history = "switchboard_broker_latency_seconds_count{op=\"history\"}";
    assert_eq!(sample(&text, history), Some(2.0), "{text}");
    assert_eq!(sample(&text, "switchboard_broker_errors_total{op=\"publish\"}"), Some(0.0));

    // A second publication moves each by exactly one per subscriber / per publish.
    let command = json!({"id": 2, "type": "publish", "channel": channel, "data": "again"});
    assert!(call(&mut publisher, &command).await.get("result").is_some());
    for ws in &mut subscribers {
        while next_json(ws).await["push"] != "publication" {}
    }
    let text = scrape(addr).await;
    assert_eq!(sample(&text, "switchboard_delivery_latency_seconds_count"), Some(4.0), "{text}");
    assert_eq!(sample(&text, publish), Some(2.0), "{text}");
}

#[tokio::test]
async fn connections_messages_and_close_codes_are_counted() {
    let server = TestServer::start(open_config()).await;
    let addr = server.addr;
    let mut ws = WsClient::connect(addr, "/echo").await.unwrap();
    for _ in 0..3 {
        ws.send(Message::text("hello")).await.unwrap();
        assert!(matches!(ws.recv_timeout(LIMIT).await.unwrap(), Some(Event::Text(_))));
    }
    let text = scrape(addr).await;
    assert_eq!(sample(&text, "switchboard_connections_active{transport=\"echo\"}"), Some(1.0));
    assert_eq!(sample(&text, "switchboard_messages_received_total"), Some(3.0), "{text}");
    assert_eq!(sample(&text, "switchboard_bytes_received_total"), Some(15.0));
    // Each echo counted once, with its payload.
    assert_eq!(sample(&text, "switchboard_messages_sent_total"), Some(3.0), "{text}");
    assert_eq!(sample(&text, "switchboard_bytes_sent_total"), Some(15.0));

    // An unmasked frame: a protocol error, closed with 1002.
    ws.send_raw(&[0x81, 0x01, b'x']).await.unwrap();
    assert_eq!(ws.expect_close(LIMIT).await.unwrap(), Some(CloseCode::PROTOCOL_ERROR));
    ws.expect_eof(LIMIT).await.unwrap();
    drop(ws);
    let closed = "switchboard_connections_closed_total{transport=\"echo\",code=\"1002\",cause=\"protocol_error\"}";
    let text =
        scrape_until(addr, "no close counted", |text| sample(text, closed) == Some(1.0)).await;
    assert_eq!(
        sample(&text, "switchboard_protocol_errors_total{reason=\"unmasked_frame\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "switchboard_connections_active{transport=\"echo\"}"), Some(0.0));
}

/// The first scrape for which `counted` holds, within [`LIMIT`]; else a panic with `failure`
/// and the last scrape.
async fn scrape_until(addr: SocketAddr, failure: &str, counted: impl Fn(&str) -> bool) -> String {
    let scraped = wait::poll_until(LIMIT, || async {
        let text = scrape(addr).await;
        counted(&text).then_some(text)
    })
    .await;
    match scraped {
        Some(text) => text,
        None => panic!("{failure}: {}", scrape(addr).await),
    }
}

#[tokio::test]
async fn rate_limits_and_command_errors_are_counted() {
    let mut config = open_config();
    config.rate_limits.message_rate = Some(Rate::new(1, 2));
    let server = TestServer::start(config).await;
    let mut ws = WsClient::connect(server.addr, "/ws").await.unwrap();
    for id in 1..=4 {
        let command = json!({"id": id, "type": "subscribe", "channel": "bad name"});
        ws.send(Message::text(command.to_string())).await.unwrap();
    }
    let mut codes = Vec::new();
    while codes.len() < 4 {
        if let Some(Event::Text(t)) = ws.recv_timeout(LIMIT).await.unwrap() {
            let reply: serde_json::Value = serde_json::from_slice(&t).unwrap();
            codes.push(reply["error"]["code"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(codes, ["invalid_channel", "invalid_channel", "rate_limited", "rate_limited"]);
    let text = scrape(server.addr).await;
    assert_eq!(
        sample(&text, "switchboard_command_errors_total{reason=\"invalid_channel\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(sample(&text, "switchboard_rate_limited_total{reason=\"message_rate\"}"), Some(2.0));
    assert!(sample(&text, "switchboard_process_resident_memory_bytes").is_some_and(|v| v > 0.0));
}

#[tokio::test]
async fn refused_credentials_and_address_limits_are_counted() {
    use std::sync::Arc;
    use switchboard_auth::{Algorithm, VerifierBuilder};
    let mut config = open_config();
    let verifier = VerifierBuilder::hmac(Algorithm::Hs256, vec![7u8; 32]).build().unwrap();
    config.auth.verifier = Some(Arc::new(verifier));
    config.rate_limits.max_connections_per_ip = 1;
    config.rate_limits.exempt_loopback = false;
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let forged = upgrade(addr, "/ws", "Authorization: Bearer aaa.bbb.ccc\r\n");
    let refusal = WsClient::expect_refusal(addr, forged.as_bytes()).await.unwrap();
    assert_eq!(refusal.status, 401);
    let _held = WsClient::connect(addr, "/ws").await.unwrap();
    let second = WsClient::expect_refusal(addr, upgrade(addr, "/ws", "").as_bytes()).await.unwrap();
    assert_eq!(second.status, 429);
    let text = scrape(addr).await;
    let failures = "switchboard_handshake_failures_total";
    assert_eq!(sample(&text, &format!("{failures}{{reason=\"malformed\"}}")), Some(1.0), "{text}");
    assert_eq!(sample(&text, &format!("{failures}{{reason=\"ip_connection_limit\"}}")), Some(1.0));
    assert_eq!(
        sample(&text, "switchboard_rate_limited_total{reason=\"max_connections_per_ip\"}"),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn tickets_required_credentials_and_handshake_rates_are_counted() {
    let mut config = open_config();
    config.auth.required = true;
    config.rate_limits.exempt_loopback = false;
    config.rate_limits.handshake_rate = Some(Rate::new(1, 3));
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for request in [
            upgrade(addr, "/ws", ""),
            upgrade(addr, "/ws?ticket=forged", ""),
            upgrade(addr, "/ws", ""),
            upgrade(addr, "/ws", ""),
        ] {
            out.push(WsClient::expect_refusal(addr, request.as_bytes()).await.unwrap().status);
        }
        out
    };
    assert_eq!(statuses, [401, 401, 401, 429]);
    let text = scrape(addr).await;
    let failures = "switchboard_handshake_failures_total";
    assert_eq!(sample(&text, &format!("{failures}{{reason=\"credentials_required\"}}")), Some(2.0));
    assert_eq!(
        sample(&text, &format!("{failures}{{reason=\"ticket_invalid\"}}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("{failures}{{reason=\"handshake_rate_limited\"}}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "switchboard_rate_limited_total{reason=\"handshake_rate\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn failed_tls_handshakes_are_counted() {
    use switchboard_server::{Server, TlsSource};
    let mut config = open_config();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.tls = Some(TlsSource::DevSelfSigned);
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run());
    // Plain HTTP to the TLS port: the TLS handshake fails.
    let plain = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let _ = WsClient::expect_refusal(addr, plain.as_bytes()).await;
    let text = tls_scrape(addr).await;
    assert!(
        sample(&text, "switchboard_handshake_failures_total{reason=\"tls_handshake\"}")
            .is_some_and(|v| v >= 1.0),
        "{text}"
    );
}

/// `GET /metrics` over TLS, accepting the server's self-signed certificate.
async fn tls_scrape(addr: SocketAddr) -> String {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("tls handshake");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut body = Vec::new();
    let _ = tokio::time::timeout(LIMIT, tls.read_to_end(&mut body)).await;
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn connection_caps_byte_rates_and_their_closes_are_counted() {
    let mut config = open_config();
    config.rate_limits.max_connections = 2;
    config.rate_limits.byte_rate = Some(Rate::new(1, 100));
    config.rate_limits.max_rejections = 2;
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let mut a = WsClient::connect(addr, "/ws").await.unwrap();
    let _b = WsClient::connect(addr, "/ws").await.unwrap();
    let third = WsClient::expect_refusal(addr, upgrade(addr, "/ws", "").as_bytes()).await.unwrap();
    assert_eq!(third.status, 503);
    // 200-byte commands against a 100-byte burst (the first, with a full bucket, takes it all):
    // refused until a streak of more than 2 closes with 1008.
    let pad = "x".repeat(200);
    for id in 1..=6 {
        let command = json!({"id": id, "type": "ping", "pad": pad});
        if a.send(Message::text(command.to_string())).await.is_err() {
            break;
        }
    }
    assert_eq!(a.expect_close(LIMIT).await.unwrap(), Some(CloseCode::POLICY_VIOLATION));
    a.expect_eof(LIMIT).await.unwrap();
    drop(a);
    let closed =
        "switchboard_connections_closed_total{transport=\"ws\",code=\"1008\",cause=\"local\"}";
    let text =
        scrape_until(addr, "no 1008 close counted", |text| sample(text, closed) == Some(1.0)).await;
    let failures = "switchboard_handshake_failures_total";
    assert_eq!(sample(&text, &format!("{failures}{{reason=\"connection_limit\"}}")), Some(1.0));
    assert_eq!(
        sample(&text, "switchboard_rate_limited_total{reason=\"max_connections\"}"),
        Some(1.0)
    );
    assert!(
        sample(&text, "switchboard_rate_limited_total{reason=\"byte_rate\"}")
            .is_some_and(|v| v >= 2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "switchboard_rate_limited_total{reason=\"sustained_excess\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn close_codes_a_peer_picks_make_a_bounded_number_of_series() {
    let mut config = open_config();
    config.rate_limits.handshake_rate = None;
    let server = TestServer::start(config).await;
    let addr = server.addr;
    // 200 codes of the private range and 50 application codes the server does not define,
    // then one it does: 251 closes, 3 series.
    let codes = (3000..3200).chain(4500..4550).chain([4001]);
    for code in codes.clone() {
        let mut ws = WsClient::connect(addr, "/echo").await.unwrap();
        ws.close(CloseCode(code), "bye").await.unwrap();
        assert_eq!(ws.expect_close(LIMIT).await.unwrap(), Some(CloseCode(code)));
    }
    let family = "switchboard_connections_closed_total{";
    let series = |text: &str| -> Vec<String> {
        text.lines().filter(|line| line.starts_with(family)).map(str::to_owned).collect()
    };
    let total = |text: &str| -> f64 {
        series(text).iter().filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok()).sum()
    };
    let text = scrape_until(addr, "not 251 closes counted", |text| total(text) == 251.0).await;
    let labels =
        |code: &str| format!("{family}transport=\"echo\",code=\"{code}\",cause=\"remote\"}}");
    assert_eq!(sample(&text, &labels("3xxx")), Some(200.0), "{text}");
    assert_eq!(sample(&text, &labels("4xxx")), Some(50.0), "{text}");
    assert_eq!(sample(&text, &labels("4001")), Some(1.0), "{text}");
    assert_eq!(series(&text).len(), 3, "{:#?}", series(&text));
}
