//! Opening a connection: TCP, TLS for `wss://`, and the opening handshake (RFC 6455 §4.1),
//! with the pieces of [`crate::connect`]; or an SSE session (`docs/transports.md`).

use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use switchboard_codec::{DeflateConfig, DeflateParams};
use switchboard_proto::Format;

use crate::builder::{Settings, Transport};
use crate::connect::{ByteStream, Handshake, HttpRefusal, UpgradeError, open_stream};
use crate::error::DisconnectReason;
use crate::sse::SseLink;

/// An open connection.
pub(crate) enum Opened {
    /// An upgraded WebSocket.
    Ws {
        io: Box<dyn ByteStream>,
        /// Bytes read past the response head: the first WebSocket frames, if any.
        buf: BytesMut,
        /// The wire format the server chose.
        format: Format,
        /// The permessage-deflate parameters the server accepted, with the settings this end
        /// offered them with.
        deflate: Option<Box<(DeflateParams, DeflateConfig)>>,
    },
    /// An SSE session, its `session` event read.
    Sse(SseLink),
}

impl Opened {
    /// The wire format spoken.
    pub(crate) fn format(&self) -> Format {
        match self {
            Opened::Ws { format, .. } => *format,
            // The HTTP transports speak JSON only.
            Opened::Sse(_) => Format::Json,
        }
    }
}

/// Opens a connection over the configured transport, sending `token` as
/// `Authorization: Bearer`: a WebSocket offering the configured format, or an SSE session.
pub(crate) async fn open(
    settings: Arc<Settings>,
    token: Option<String>,
) -> Result<Opened, DisconnectReason> {
    if settings.transport == Transport::Sse {
        return SseLink::open(settings, token).await.map(Opened::Sse);
    }
    let url = &settings.url;
    let mut io = open_stream(url, settings.tls.as_ref()).await.map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidInput {
            // A host name TLS cannot verify: the URL's fault, not the network's.
            DisconnectReason::Protocol(e.to_string())
        } else {
            DisconnectReason::io(&e)
        }
    })?;
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut handshake = Handshake::new(url).protocols(&[settings.format.subprotocol()]);
    let deflate_config = settings.compression.then(|| {
        let mut config = DeflateConfig::default();
        config.enabled = true;
        config
    });
    if let Some(config) = &deflate_config {
        handshake = handshake.deflate(config);
    }
    for (name, value) in &settings.headers {
        handshake = handshake.header(name, value);
    }
    if let Some(bearer) = &bearer {
        handshake = handshake.header("Authorization", bearer);
    }
    let mut buf = BytesMut::with_capacity(4096);
    let accepted = handshake.perform(&mut io, &mut buf).await.map_err(|e| match e {
        UpgradeError::Io(e) => DisconnectReason::io(&e),
        UpgradeError::Closed => {
            DisconnectReason::Io { kind: io::ErrorKind::UnexpectedEof, message: e.to_string() }
        }
        UpgradeError::Refused(refusal) => {
            let HttpRefusal { status, code, message, retry_after } = *refusal;
            DisconnectReason::Refused { status, code, message, retry_after }
        }
        other => DisconnectReason::Protocol(other.to_string()),
    })?;
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
    let deflate = accepted.deflate.zip(deflate_config).map(Box::new);
    Ok(Opened::Ws { io, buf, format, deflate })
}
