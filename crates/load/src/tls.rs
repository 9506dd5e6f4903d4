//! Whom `wss://` and `https://` connections trust: `switchboard-client`'s configuration
//! (TLS 1.2 and 1.3 with the ring provider, Mozilla's roots) with the certificates of
//! `--ca`, or with no certificate check at all under `--insecure`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use switchboard_client::connect::{read_pem_certificates, tls_config};

/// The TLS client configuration for a run: the built-in roots and those in `ca`, or, when
/// `insecure`, any certificate.
///
/// # Errors
///
/// `ca` cannot be read or holds no usable certificate.
pub(crate) fn client_config(
    ca: Option<&Path>,
    insecure: bool,
) -> Result<Arc<ClientConfig>, String> {
    let extra = match ca {
        Some(path) => read_pem_certificates(path)
            .map_err(|e| format!("--ca {}: cannot read certificates: {e}", path.display()))?,
        None => Vec::new(),
    };
    let config = tls_config(&extra).map_err(|e| match ca {
        Some(path) => format!("--ca {}: unusable certificate: {e}", path.display()),
        None => format!("tls: {e}"),
    })?;
    if !insecure {
        return Ok(config);
    }
    let mut config = Arc::unwrap_or_clone(config);
    let algorithms = config.crypto_provider().signature_verification_algorithms;
    config.dangerous().set_certificate_verifier(Arc::new(AnyCertificate { algorithms }));
    Ok(Arc::new(config))
}

/// The short name of a TLS failure, for the report's `error_kinds`.
pub(crate) fn error_kind(error: &rustls::Error) -> &'static str {
    use CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => "tls_wrong_name",
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => "tls_expired",
        rustls::Error::InvalidCertificate(_) => "tls_untrusted",
        rustls::Error::AlertReceived(_) => "tls_alert",
        _ => "tls",
    }
}

/// What to do about a TLS failure, if the options can help.
pub(crate) fn hint(error: &rustls::Error) -> &'static str {
    match error {
        rustls::Error::InvalidCertificate(_) => {
            "; --ca FILE trusts the certificates in FILE, --insecure any certificate"
        }
        _ => "",
    }
}

/// A verifier that accepts any certificate, for `--insecure`. It still checks the
/// handshake's signature against the certificate's key, so the handshake costs both sides
/// what it costs with a trusted certificate, short of the chain's validation.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_failures_have_their_own_kinds() {
        let invalid = rustls::Error::InvalidCertificate;
        assert_eq!(error_kind(&invalid(CertificateError::UnknownIssuer)), "tls_untrusted");
        assert_eq!(error_kind(&invalid(CertificateError::BadSignature)), "tls_untrusted");
        assert_eq!(error_kind(&invalid(CertificateError::NotValidForName)), "tls_wrong_name");
        assert_eq!(error_kind(&invalid(CertificateError::Expired)), "tls_expired");
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert_eq!(error_kind(&alert), "tls_alert");
        assert_eq!(error_kind(&rustls::Error::DecryptError), "tls");
        assert!(hint(&invalid(CertificateError::UnknownIssuer)).contains("--ca FILE"));
        assert_eq!(hint(&rustls::Error::DecryptError), "");
    }

    #[test]
    fn an_unreadable_ca_file_is_named() {
        let missing = Path::new("/nonexistent/switchboard-ca.pem");
        let err = client_config(Some(missing), false).expect_err("no such file");
        assert!(err.starts_with("--ca /nonexistent/switchboard-ca.pem"), "{err}");
    }
}
