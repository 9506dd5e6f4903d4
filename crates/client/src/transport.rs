//! Opening a connection: TCP, TLS for `wss://`, and the opening handshake (RFC 6455 §4.1).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rustls::pki_types::ServerName;
use switchboard_codec::{ClientHandshake, HandshakeError, HandshakeLimits};
use switchboard_proto::Format;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::builder::Settings;
use crate::error::DisconnectReason;

/// A byte stream the driver can own: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An upgraded connection.
pub(crate) struct Opened {
    pub(crate) io: Box<dyn Io>,
    /// Bytes read past the response head: the first WebSocket frames, if any.
    pub(crate) buf: BytesMut,
    /// The wire format the server chose.
    pub(crate) format: Format,
}

/// Connects and upgrades, offering the configured format and sending `token` as
/// `Authorization: Bearer`.
pub(crate) async fn open(
    settings: Arc<Settings>,
    token: Option<String>,
) -> Result<Opened, DisconnectReason> {
    let endpoint = &settings.endpoint;
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| DisconnectReason::io(&e))?;
    // Commands are small and latency-bound; the codec already coalesces bursts.
    tcp.set_nodelay(true).map_err(|e| DisconnectReason::io(&e))?;
    let io: Box<dyn Io> = match &settings.tls {
        Some(config) => {
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|e| DisconnectReason::Protocol(format!("invalid tls server name: {e}")))?;
            let tls = TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(|e| DisconnectReason::io(&e))?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    handshake(io, &settings, token.as_deref()).await
}

async fn handshake(
    mut io: Box<dyn Io>,
    settings: &Settings,
    token: Option<&str>,
) -> Result<Opened, DisconnectReason> {
    let endpoint = &settings.endpoint;
    let hs = ClientHandshake::new().with_protocols([settings.format.subprotocol()]);
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> =
        settings.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    let request = hs.request(&endpoint.authority, &endpoint.resource, &headers);
    let io_err = |e: io::Error| DisconnectReason::io(&e);
    io.write_all(&request).await.map_err(io_err)?;
    io.flush().await.map_err(io_err)?;
    let limits = HandshakeLimits::default();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if io.read_buf(&mut buf).await.map_err(io_err)? == 0 {
            return Err(DisconnectReason::Io {
                kind: io::ErrorKind::UnexpectedEof,
                message: "connection closed during the opening handshake".to_owned(),
            });
        }
        match hs.verify(&buf, &limits) {
            Ok(None) => {}
            Ok(Some((accepted, used))) => {
                buf.advance(used);
                let format = match accepted.protocol.as_deref() {
                    Some(name) => Format::from_subprotocol(name),
                    // A server that ignores subprotocols speaks JSON (protocol §1).
                    None => (settings.format == Format::Json).then_some(Format::Json),
                };
                let Some(format) = format else {
                    return Err(DisconnectReason::Protocol(format!(
                        "the server did not accept {}",
                        settings.format.subprotocol()
                    )));
                };
                return Ok(Opened { io, buf, format });
            }
            Err(HandshakeError::UnexpectedStatus(status)) => {
                return Err(refusal(status, &mut io, buf).await);
            }
            Err(e) => {
                return Err(DisconnectReason::Protocol(format!("invalid handshake response: {e}")));
            }
        }
    }
}

/// Reads the body of a refused upgrade and makes a reason of it: the server's JSON
/// `{"error": {"code", "message"}}` when it sent one, and `Retry-After`.
async fn refusal(status: u16, io: &mut Box<dyn Io>, mut buf: BytesMut) -> DisconnectReason {
    let (head_len, content_length, retry_after) = {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let find = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::trim)
                };
                let length = find("content-length").and_then(|v| v.parse::<usize>().ok());
                // RFC 9110 §10.2.3: delay-seconds (an HTTP-date is not worth a clock here).
                let retry = find("retry-after")
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(MAX_RETRY_AFTER_SECS)));
                (n, length, retry)
            }
            _ => (buf.len(), Some(0), None),
        }
    };
    let want = head_len + content_length.unwrap_or(MAX_REFUSAL_BODY).min(MAX_REFUSAL_BODY);
    let _ = tokio::time::timeout(REFUSAL_BODY_WAIT, async {
        while buf.len() < want {
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let body = &buf[head_len.min(buf.len())..buf.len().min(want)];
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = json.as_ref().and_then(|j| j.get("error"));
    let code = error.and_then(|e| e.get("code")).and_then(|c| c.as_str()).map(str::to_owned);
    let message = match error.and_then(|e| e.get("message")).and_then(|m| m.as_str()) {
        Some(message) => message.to_owned(),
        None => {
            let text = String::from_utf8_lossy(body);
            text.trim().chars().take(200).collect()
        }
    };
    DisconnectReason::Refused { status, code, message, retry_after }
}

/// How much of a refusal's body is read.
const MAX_REFUSAL_BODY: usize = 4096;
/// How long to wait for a refusal's body after its head.
const REFUSAL_BODY_WAIT: Duration = Duration::from_secs(1);
/// The longest `Retry-After` honoured: a day.
const MAX_RETRY_AFTER_SECS: u64 = 86_400;
