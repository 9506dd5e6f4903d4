//! TLS for `wss://` and `https://`: rustls with the ring provider and Mozilla's roots.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::url::ServerUrl;

/// A TLS client configuration: TLS 1.2 and 1.3 with the ring provider, trusting Mozilla's
/// root certificates (`webpki-roots`) and `extra_roots` (a private CA, or the certificate
/// `switchboard serve --dev-tls` writes).
///
/// ```
/// let config = switchboard_client::connect::tls_config(&[])?;
/// assert!(config.alpn_protocols.is_empty());
/// # Ok::<(), rustls::Error>(())
/// ```
///
/// # Errors
///
/// A certificate that is not a usable trust anchor.
pub fn tls_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    // An explicit provider: the process-wide default may be unset or another backend.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Reads the PEM certificates in `path`, for [`tls_config`].
///
/// # Errors
///
/// The file cannot be read, holds a malformed PEM section, or holds no certificate
/// ([`io::ErrorKind::InvalidData`]).
pub fn read_pem_certificates(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let invalid = |e: rustls::pki_types::pem::Error| match e {
        rustls::pki_types::pem::Error::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(invalid)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    if certs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no certificate in the file"));
    }
    Ok(certs)
}

/// Runs the TLS handshake over `tcp`, verifying the certificate against `url`'s host.
pub(super) async fn handshake(
    config: &Arc<rustls::ClientConfig>,
    url: &ServerUrl,
    tcp: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(url.host().to_owned()).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("invalid tls server name: {e}"))
    })?;
    tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp).await
}
