//! WSS: a rustls server configuration from PEM files (or a generated development
//! certificate), swapped in place when the files change, without touching open connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::Error;

/// Where the server's certificate comes from.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum TlsSource {
    /// A PEM certificate chain and its PEM private key, re-read on every reload.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`, generated at start.
    /// For local testing only: browsers and clients must be told to trust it.
    DevSelfSigned,
}

/// The live TLS configuration.
#[derive(Debug)]
pub(crate) struct TlsState {
    source: TlsSource,
    current: RwLock<Arc<ServerConfig>>,
    /// The generated certificate, in PEM, for `DevSelfSigned`.
    dev_cert_pem: Option<String>,
}

impl TlsState {
    /// Loads the certificate and key.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] naming the file and what is wrong with it.
    pub(crate) fn load(source: TlsSource) -> Result<Self, Error> {
        let (config, dev_cert_pem) = match &source {
            TlsSource::Files { cert, key } => (from_files(cert, key)?, None),
            TlsSource::DevSelfSigned => {
                let (config, pem) = self_signed()?;
                (config, Some(pem))
            }
        };
        Ok(Self { source, current: RwLock::new(Arc::new(config)), dev_cert_pem })
    }

    /// An acceptor with the current configuration.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&current))
    }

    /// Re-reads the files; new connections use them, open ones keep theirs. A failed reload
    /// keeps the previous configuration.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] when the new files are unusable.
    pub(crate) fn reload(&self) -> Result<(), Error> {
        let TlsSource::Files { cert, key } = &self.source else { return Ok(()) };
        let config = Arc::new(from_files(cert, key)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// The generated development certificate, in PEM.
    pub(crate) fn dev_cert_pem(&self) -> Option<&str> {
        self.dev_cert_pem.as_deref()
    }
}

fn from_files(cert: &Path, key: &Path) -> Result<ServerConfig, Error> {
    let tls_error = |path: &Path, what: String| Error::Tls(format!("{}: {what}", path.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_error(cert, "no certificate in the file".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, e.to_string()))?;
    build(certs, key)
}

fn self_signed() -> Result<(ServerConfig, String), Error> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| Error::Tls(format!("cannot generate a development certificate: {e}")))?;
    let pem = generated.cert.pem();
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(|e| Error::Tls(format!("generated key: {e}")))?;
    Ok((build(vec![generated.cert.der().clone()], key)?, pem))
}

/// TLS 1.3 and 1.2 with the ring provider; ALPN `http/1.1`, the protocol WebSocket
/// upgrades ride on (RFC 6455 §4.1; RFC 8441 for HTTP/2 is not offered).
fn build(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
