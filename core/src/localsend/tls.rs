//! LocalSend's TLS: a self-signed certificate (kept in the data dir, so the
//! fingerprint LocalSend devices remember stays), the fingerprint (SHA-256 of
//! the certificate's DER, uppercase hex), a server that asks for a client
//! certificate without requiring one, and a client that takes any server
//! certificate and reports its fingerprint (LocalSend pins fingerprints, not
//! names: there is no CA).

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

const KEY_FILE: &str = "localsend-key.pem";
const CERT_FILE: &str = "localsend-cert.der";

/// The node's LocalSend certificate.
#[derive(Debug, Clone)]
pub(crate) struct Cert {
    pub der: CertificateDer<'static>,
    key: Vec<u8>,
    pub fingerprint: String,
}

/// SHA-256 of `der`, uppercase hex.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    hex_upper(d.as_ref())
}

pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Cert {
    /// The certificate kept in `dir`, or a new one (saved there when given).
    pub fn load_or_create(dir: Option<&Path>) -> io::Result<Self> {
        if let Some(dir) = dir {
            let (k, c) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
            if let (Ok(pem), Ok(der)) = (std::fs::read_to_string(&k), std::fs::read(&c)) {
                let key = rcgen::KeyPair::from_pem(&pem).map_err(other)?;
                return Ok(Self::from_parts(der, key.serialize_der()));
            }
            let (cert, key) = Self::generate()?;
            // Neither or only one was there (a start cut short): both anew.
            write_private(&k, key.serialize_pem().as_bytes())?;
            write_private(&c, &cert.der)?;
            return Ok(cert);
        }
        Ok(Self::generate()?.0)
    }

    fn from_parts(der: Vec<u8>, key: Vec<u8>) -> Self {
        Self {
            fingerprint: fingerprint(&der),
            der: CertificateDer::from(der),
            key,
        }
    }

    fn generate() -> io::Result<(Self, rcgen::KeyPair)> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(other)?;
        let params = rcgen::CertificateParams::new(vec!["localsend".to_string()]).map_err(other)?;
        let cert = params.self_signed(&key).map_err(other)?;
        Ok((
            Self::from_parts(cert.der().to_vec(), key.serialize_der()),
            key,
        ))
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut f = crate::data_dir::create_private(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS: our certificate; a client certificate is asked for
/// (the current app sends one) and taken if its signature checks; its
/// fingerprint is then compared with what the client claims.
pub(crate) fn server_config(cert: &Cert) -> io::Result<Arc<rustls::ServerConfig>> {
    let p = provider();
    let c = rustls::ServerConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(other)?
        .with_client_cert_verifier(Arc::new(AnyCert(p)))
        .with_single_cert(vec![cert.der.clone()], cert.key())
        .map_err(other)?;
    Ok(Arc::new(c))
}

/// The client's TLS: any server certificate (the caller compares its
/// fingerprint), and ours as the client certificate.
pub(crate) fn client_config(cert: &Cert) -> io::Result<Arc<rustls::ClientConfig>> {
    let p = provider();
    let c = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(p)))
        .with_client_auth_cert(vec![cert.der.clone()], cert.key())
        .map_err(other)?;
    Ok(Arc::new(c))
}

/// Takes any certificate whose handshake signature checks: LocalSend has no
/// CA; identity is the fingerprint, compared by the caller.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl AnyCert {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for AnyCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ServerCertVerifier for AnyCert {
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
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_kept_so_the_fingerprint_stays() {
        let dir = tempfile::tempdir().unwrap();
        let a = Cert::load_or_create(Some(dir.path())).unwrap();
        let b = Cert::load_or_create(Some(dir.path())).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        assert!(
            a.fingerprint
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_eq!(a.fingerprint, fingerprint(&b.der));
        let c = Cert::load_or_create(None).unwrap();
        assert_ne!(a.fingerprint, c.fingerprint);
        server_config(&a).unwrap();
        client_config(&a).unwrap();
    }
}
