//! TCP + TLS 1.3 with mutual authentication bound to PeerIds.
//!
//! Each node presents a self-signed certificate for its own ed25519 key; there are
//! no certificate authorities. What makes a connection trustworthy is the key:
//!
//! - the dialer accepts the server only if the certificate's key is the PeerId it
//!   meant to reach (when it knows it; a bare `HOST:PORT` learns the id instead);
//! - the listener requires a client certificate and learns the client's PeerId
//!   from it;
//! - both sides check the TLS 1.3 `CertificateVerify` signature with that key, so
//!   presenting someone else's certificate without their secret key fails.
//!
//! Only TLS 1.3 and Ed25519 signatures are offered; ALPN must be `peerconnect/1`.
//! Live connections are capped by two semaphores, one for connections we accept
//! and one for those we dial, so a flood of incoming connections cannot take the
//! slots our own dials need (nor the reverse); a handshake (TLS and Hello
//! together) that does not finish within [`HANDSHAKE_TIMEOUT`] is dropped.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::identity::{Identity, PeerId};
use crate::proto::wire::{self, DecodeError, Hello};

/// ALPN protocol id of PeerConnect's TLS connections.
pub const ALPN: &[u8] = b"peerconnect/1";

/// Unsent bytes the kernel may hold per connection before the socket stops
/// being writable. Small, so the multiplexer (which sees only writability) keeps
/// data in its own queues and can move it to another lane when this one stalls,
/// instead of megabytes waiting behind a lossy TCP connection.
pub const NOTSENT_LOWAT: u32 = 128 * 1024;

/// Resource: a connection slot and a socket held by a peer that has not proven
/// anything yet. Limit: the TLS handshake and the Hello exchange together must
/// finish within this (a LAN needs milliseconds). At the limit: the connection
/// is dropped and counted as a failed handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410), before the 32 secret bytes.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("tls handshake failed: {0}")]
    Tls(String),
    #[error("handshake with {0} timed out")]
    Timeout(SocketAddr),
    #[error("expected peer {expected} but {addr} presented {got}")]
    WrongPeer {
        addr: SocketAddr,
        expected: PeerId,
        got: PeerId,
    },
    #[error("{0} did not negotiate ALPN peerconnect/1")]
    NoAlpn(SocketAddr),
    #[error("bad certificate: {0}")]
    BadCertificate(&'static str),
    #[error("connection limit of {0} reached")]
    TooManyConnections(usize),
    #[error("bad hello from {addr}: {source}")]
    BadHello {
        addr: SocketAddr,
        #[source]
        source: DecodeError,
    },
    #[error("cannot build tls configuration: {0}")]
    Config(String),
}

/// Reads the PeerId out of a certificate: the Ed25519 key of its subject.
pub fn peer_id_from_cert(cert: &CertificateDer<'_>) -> Result<PeerId, Error> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| Error::BadCertificate("not a parsable x.509 certificate"))?;
    let spki = ee.subject_public_key_info();
    let spki: &[u8] = spki.as_ref();
    let key = spki
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .ok_or(Error::BadCertificate("key is not ed25519"))?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| Error::BadCertificate("ed25519 key has the wrong length"))?;
    Ok(PeerId::from_bytes(key))
}

/// Makes a self-signed certificate for our own key.
fn self_signed(
    identity: &Identity,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), Error> {
    let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(&identity.secret_bytes());
    let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8);
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| Error::Config(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec![identity.peer_id().to_string()])
        .map_err(|e| Error::Config(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Config(e.to_string()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies certificates as "whoever holds this Ed25519 key", optionally pinned to
/// one expected PeerId. Serves as both the client- and the server-side verifier.
#[derive(Debug)]
struct PeerVerifier {
    expected: Option<PeerId>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    fn new(expected: Option<PeerId>) -> Self {
        Self {
            expected,
            algorithms: provider().signature_verification_algorithms,
        }
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let got = peer_id_from_cert(cert).map_err(|e| rustls::Error::General(e.to_string()))?;
        match self.expected {
            Some(expected) if expected != got => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(()),
        }
    }

    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Makes TLS connections for one identity, in both directions.
#[derive(Clone)]
pub struct Transport {
    identity: Identity,
    cert: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
    acceptor: TlsAcceptor,
    /// Slots of connections we accepted.
    incoming: Arc<Semaphore>,
    /// Slots of connections we dialed.
    outgoing: Arc<Semaphore>,
    max_connections: usize,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("id", &self.identity.peer_id())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport allowing `max_connections` accepted connections and, apart
    /// from them, `max_connections` dialed ones.
    pub fn new(identity: &Identity, max_connections: usize) -> Result<Self, Error> {
        let (cert, key) = self_signed(identity)?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::Config(e.to_string()))?
            .with_client_cert_verifier(Arc::new(PeerVerifier::new(None)))
            .with_single_cert(vec![cert.clone()], key.clone_key())
            .map_err(|e| Error::Config(e.to_string()))?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        // Session tickets would let a client resume without presenting its
        // certificate again; every connection must prove its key.
        server.send_tls13_tickets = 0;
        // Without tickets nothing would ever be stored in the session cache;
        // the default one allocates 256 entries (~25 KiB) per node up front.
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Self {
            identity: identity.clone(),
            cert,
            key: Arc::new(key),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            incoming: Arc::new(Semaphore::new(max_connections)),
            outgoing: Arc::new(Semaphore::new(max_connections)),
            max_connections,
        })
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    fn permit(&self, limit: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, Error> {
        limit
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::TooManyConnections(self.max_connections))
    }

    fn client_config(&self, expected: Option<PeerId>) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerVerifier::new(expected)))
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|e| Error::Config(e.to_string()))?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(client))
    }

    /// Dials `addr`. With `expected`, the server must prove it holds that key.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<Connection, Error> {
        self.connect_with(addr, expected, TcpStream::connect(addr))
            .await
    }

    /// Like [`Transport::connect`], over a TCP connection `tcp` makes (bound to
    /// a chosen local address, say). For tests and the abuse bench.
    pub async fn connect_with(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
        tcp: impl std::future::Future<Output = io::Result<TcpStream>>,
    ) -> Result<Connection, Error> {
        let permit = self.permit(&self.outgoing)?;
        let fut = async {
            let tcp = tcp.await?;
            tune(&tcp)?;
            let connector = TlsConnector::from(self.client_config(expected)?);
            let name = ServerName::try_from("peerconnect").expect("static name is valid");
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| tls_error(e, addr, expected))?;
            Connection::new(TlsStream::Client(tls), addr, permit)
        };
        let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
            .await
            .map_err(|_| Error::Timeout(addr))??;
        if let Some(expected) = expected
            && conn.peer != expected
        {
            return Err(Error::WrongPeer {
                addr,
                expected,
                got: conn.peer,
            });
        }
        Ok(conn)
    }

    /// Runs the server side of the handshake on an accepted TCP connection.
    pub async fn accept(&self, tcp: TcpStream, addr: SocketAddr) -> Result<Connection, Error> {
        let permit = self.permit(&self.incoming)?;
        tune(&tcp)?;
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp))
            .await
            .map_err(|_| Error::Timeout(addr))?
            .map_err(|e| Error::Tls(e.to_string()))?;
        Connection::new(TlsStream::Server(tls), addr, permit)
    }
}

/// Socket options of every peer connection.
fn tune(tcp: &TcpStream) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let sock = socket2::SockRef::from(tcp);
        // Not fatal: older kernels lack it, and it only tunes failover.
        if let Err(e) = sock.set_tcp_notsent_lowat(NOTSENT_LOWAT) {
            tracing::debug!(error = %e, "TCP_NOTSENT_LOWAT not set");
        }
    }
    Ok(())
}

fn tls_error(e: io::Error, addr: SocketAddr, expected: Option<PeerId>) -> Error {
    let text = e.to_string();
    match expected {
        Some(expected) if text.contains("ApplicationVerificationFailure") => Error::Tls(format!(
            "{addr} does not hold the key of {expected} (impostor or a different node)"
        )),
        _ => Error::Tls(text),
    }
}

/// An authenticated TLS connection to a known PeerId. Holds one slot of the
/// connection limit until dropped.
pub struct Connection {
    stream: TlsStream<TcpStream>,
    pub peer: PeerId,
    pub remote: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(
        stream: TlsStream<TcpStream>,
        remote: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> Result<Self, Error> {
        let (_, session) = stream.get_ref();
        let common: &rustls::CommonState = session;
        if common.alpn_protocol() != Some(ALPN) {
            return Err(Error::NoAlpn(remote));
        }
        let cert = common
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or(Error::BadCertificate("peer presented no certificate"))?;
        let peer = peer_id_from_cert(cert)?;
        Ok(Self {
            stream,
            peer,
            remote,
            _permit: permit,
        })
    }

    /// The local address of the underlying TCP socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.get_ref().0.local_addr()
    }

    /// Sends our Hello and reads the peer's, within [`HANDSHAKE_TIMEOUT`].
    pub async fn exchange_hello(&mut self, ours: &Hello) -> Result<Hello, Error> {
        let addr = self.remote;
        let fut = async {
            let mut buf = Vec::new();
            wire::encode_frame(ours, &mut buf).map_err(|e| Error::Config(e.to_string()))?;
            self.stream.write_all(&buf).await?;
            self.stream.flush().await?;
            let theirs: Hello = read_frame(&mut self.stream)
                .await?
                .map_err(|source| Error::BadHello { addr, source })?;
            theirs
                .validate()
                .map_err(|source| Error::BadHello { addr, source })?;
            Ok(theirs)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
            .await
            .map_err(|_| Error::Timeout(addr))?
    }
}

/// Reads one frame from `r`: the outer `io::Result` is the stream failing, the inner
/// result is the frame being bad. Never buffers more than [`wire::MAX_FRAME_LEN`].
pub async fn read_frame<T: serde::de::DeserializeOwned, R: AsyncRead + Unpin>(
    r: &mut R,
) -> io::Result<Result<T, DecodeError>> {
    let mut header = [0u8; wire::HEADER_LEN];
    r.read_exact(&mut header).await?;
    let len = match wire::frame_len(header) {
        Ok(len) => len,
        Err(e) => return Ok(Err(e)),
    };
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(wire::decode_body(&body))
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    #[tokio::test]
    async fn both_sides_learn_each_others_peer_id() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let (ta, tb) = (
            Transport::new(&a, 8).unwrap(),
            Transport::new(&b, 8).unwrap(),
        );
        let (l, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (tcp, from) = l.accept().await.unwrap();
            tb.accept(tcp, from).await.unwrap().peer
        });
        let conn = ta.connect(addr, Some(b.peer_id())).await.unwrap();
        assert_eq!(conn.peer, b.peer_id());
        assert_eq!(server.await.unwrap(), a.peer_id());
    }

    #[tokio::test]
    async fn dialer_refuses_a_server_with_another_key() {
        let (a, b, c) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let ta = Transport::new(&a, 8).unwrap();
        let tc = Transport::new(&c, 8).unwrap();
        let (l, addr) = listener().await;
        tokio::spawn(async move {
            let (tcp, from) = l.accept().await.unwrap();
            let _ = tc.accept(tcp, from).await;
        });
        // we meant to reach b; c answers
        let err = ta.connect(addr, Some(b.peer_id())).await.unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err}");
    }

    #[tokio::test]
    async fn hello_is_exchanged_after_the_handshake() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let (ta, tb) = (
            Transport::new(&a, 8).unwrap(),
            Transport::new(&b, 8).unwrap(),
        );
        let (l, addr) = listener().await;
        let hello = |name: &str| Hello {
            instance: 1,
            name: name.into(),
            kind: wire::DeviceKind::Laptop,
            listen_port: 1,
        };
        let hb = hello("b");
        let server = tokio::spawn(async move {
            let (tcp, from) = l.accept().await.unwrap();
            let mut c = tb.accept(tcp, from).await.unwrap();
            c.exchange_hello(&hb).await.unwrap()
        });
        let mut c = ta.connect(addr, None).await.unwrap();
        assert_eq!(c.exchange_hello(&hello("a")).await.unwrap().name, "b");
        assert_eq!(server.await.unwrap().name, "a");
    }

    #[tokio::test]
    async fn connection_limit_refuses_extra_connections() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let ta = Transport::new(&a, 1).unwrap();
        let tb = Transport::new(&b, 8).unwrap();
        let (l, addr) = listener().await;
        tokio::spawn(async move {
            loop {
                let (tcp, from) = l.accept().await.unwrap();
                let tb = tb.clone();
                tokio::spawn(async move {
                    let c = tb.accept(tcp, from).await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    drop(c);
                });
            }
        });
        let first = ta.connect(addr, None).await.unwrap();
        assert!(matches!(
            ta.connect(addr, None).await,
            Err(Error::TooManyConnections(1))
        ));
        drop(first);
        ta.connect(addr, None).await.unwrap();
    }

    #[tokio::test]
    async fn accepted_connections_do_not_take_the_slots_of_dials() {
        let (a, b, c) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        // one slot each way
        let ta = Transport::new(&a, 1).unwrap();
        let tb = Transport::new(&b, 8).unwrap();
        let tc = Transport::new(&c, 8).unwrap();
        let (la, addr_a) = listener().await;
        let server = {
            let ta = ta.clone();
            tokio::spawn(async move {
                let (tcp, from) = la.accept().await.unwrap();
                ta.accept(tcp, from).await.unwrap()
            })
        };
        let _b_to_a = tb.connect(addr_a, Some(a.peer_id())).await.unwrap();
        let held = server.await.unwrap();
        // a's only incoming slot is taken; its dial still has its own
        let (lc, addr_c) = listener().await;
        let c_side = tokio::spawn(async move {
            let (tcp, from) = lc.accept().await.unwrap();
            tc.accept(tcp, from).await
        });
        let out = ta.connect(addr_c, Some(c.peer_id())).await;
        assert!(out.is_ok(), "dial refused: {:?}", out.err());
        assert!(c_side.await.unwrap().is_ok());
        drop(held);
    }

    /// Serves `cert` while signing the handshake with someone else's key.
    #[derive(Debug)]
    struct StolenCert(Arc<rustls::sign::CertifiedKey>);

    impl rustls::server::ResolvesServerCert for StolenCert {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    #[tokio::test]
    async fn impostor_presenting_a_stolen_certificate_is_refused() {
        let (a, b, c) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let (b_cert, _) = self_signed(&b).unwrap();
        let (_, c_key) = self_signed(&c).unwrap();
        let PrivateKeyDer::Pkcs8(c_pkcs8) = c_key else {
            unreachable!()
        };
        let signer = rustls::crypto::ring::sign::any_eddsa_type(&c_pkcs8).unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![b_cert], signer);
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(StolenCert(Arc::new(certified))));
        server.alpn_protocols = vec![ALPN.to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let (l, addr) = listener().await;
        tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        });
        let ta = Transport::new(&a, 8).unwrap();
        // a meant to reach b, and the certificate says b: only the signature tells
        let err = ta.connect(addr, Some(b.peer_id())).await.unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err}");
    }

    #[test]
    fn certificate_key_is_the_peer_id() {
        let id = Identity::generate();
        let (cert, _) = self_signed(&id).unwrap();
        assert_eq!(peer_id_from_cert(&cert).unwrap(), id.peer_id());
        assert!(peer_id_from_cert(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}
