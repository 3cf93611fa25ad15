//! TLS over TCP (`security.protocol=SSL`): [`TlsTransport`], a transport (see
//! [`transport`](crate::transport)) that connects with [`TcpTransport`] and then runs a rustls
//! client handshake, bounded by the same connect timeout.
//!
//! - The broker's chain is verified against `ssl.ca.location` (PEM) or the system roots, and its
//!   certificate against the host name connected to (SNI is sent for host names, not for IPs),
//!   unless [`TlsSettings::danger_accept_any_host_name`] turned the name check off.
//! - A client certificate (mutual TLS) is presented when the broker asks and one is configured.
//! - Every TLS failure surfaces as an I/O error wrapping a [`TlsFailure`], which the cluster
//!   turns into [`ClusterError::Tls`]. In TLS 1.3 a broker that wants a client certificate
//!   refuses a missing one only after the client considers the handshake done, on the first
//!   read; the stream remembers that the broker asked and krab had none, so that this refusal
//!   (an alert, or a plain close) is reported as such.

use crate::error::{ClusterError, TlsFailure, TlsFailureKind};
use crate::security::TlsSettings;
use crate::transport::{BrokerAddr, TcpTransport};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::Service;

/// TLS over TCP. Cheap to clone: the settings are read (and the PEM files parsed) once, by
/// [`TlsTransport::new`].
#[derive(Clone)]
pub struct TlsTransport {
    tcp: TcpTransport,
    config: Arc<ClientConfig>,
    client_key: Option<Arc<CertifiedKey>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("client_certificate", &self.client_key.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

fn config_error(key: &'static str, message: impl Into<String>) -> ClusterError {
    ClusterError::Config { key, message: message.into() }
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ClusterError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| config_error(key, format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(key, format!("{} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_error(key, format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

impl TlsTransport {
    /// A TLS transport with these settings; TCP connects and the TLS handshake each give up
    /// after `connect_timeout`. Fails with [`ClusterError::Config`] naming the setting and the
    /// file when a PEM file cannot be read or holds nothing usable.
    pub fn new(settings: &TlsSettings, connect_timeout: Duration) -> Result<Self, ClusterError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &settings.ca_location {
            Some(path) => {
                for cert in read_certs("ssl.ca.location", path)? {
                    roots.add(cert).map_err(|e| {
                        config_error(
                            "ssl.ca.location",
                            format!("{} holds an unusable CA certificate: {e}", path.display()),
                        )
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
                    return Err(config_error(
                        "ssl.ca.location",
                        format!("no system root certificates found{why}; give the brokers' CA in ssl.ca.location"),
                    ));
                }
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| config_error("ssl.ca.location", format!("no usable CA certificate: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> =
            if settings.verify_host_name { webpki } else { Arc::new(AnyHostName(webpki)) };
        let client_key = match (&settings.certificate_location, &settings.key_location) {
            (Some(cert), Some(key)) => Some(Arc::new(load_client_key(&provider, cert, key)?)),
            (None, None) => None,
            (Some(_), None) => return Err(config_error("ssl.key.location", "needed with ssl.certificate.location")),
            (None, Some(_)) => return Err(config_error("ssl.certificate.location", "needed with ssl.key.location")),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("security.protocol", format!("no TLS version available: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(ClientKey { key: client_key.clone(), asked: Default::default() }));
        Ok(Self { tcp: TcpTransport::new(connect_timeout), config: Arc::new(config), client_key, connect_timeout })
    }
}

fn load_client_key(provider: &CryptoProvider, cert: &Path, key: &Path) -> Result<CertifiedKey, ClusterError> {
    let chain = read_certs("ssl.certificate.location", cert)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        config_error("ssl.key.location", format!("{} holds no usable unencrypted private key: {e}", key.display()))
    })?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| config_error("ssl.key.location", format!("{}: unsupported private key: {e}", key.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        config_error(
            "ssl.key.location",
            format!("{} does not belong to the certificate in {}: {e}", key.display(), cert.display()),
        )
    })?;
    Ok(certified)
}

/// The client certificate of one connection, which also records whether the broker asked for one.
#[derive(Debug)]
struct ClientKey {
    key: Option<Arc<CertifiedKey>>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for ClientKey {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// The opt-out of host-name verification: the chain is still verified in full.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // webpki checks the name only after the chain: this error means the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The kind of a rustls failure.
fn classify(e: &rustls::Error) -> TlsFailureKind {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => TlsFailureKind::UnknownCa,
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            TlsFailureKind::HostNameMismatch
        }
        rustls::Error::InvalidCertificate(_) => TlsFailureKind::BadCertificate,
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied,
        ) => TlsFailureKind::ClientCertificateRejected,
        _ => TlsFailureKind::Handshake,
    }
}

/// What one connection knows for telling its failures apart.
#[derive(Debug, Clone)]
struct Peer {
    addr: BrokerAddr,
    /// The broker asked for a client certificate and krab had none.
    asked_without_key: Arc<AtomicBool>,
    has_key: bool,
}

impl Peer {
    fn asked_without_key(&self) -> bool {
        !self.has_key && self.asked_without_key.load(Ordering::Relaxed)
    }

    fn missing_key(&self, what: &str) -> io::Error {
        let failure = TlsFailure::new(
            TlsFailureKind::ClientCertificateRejected,
            format!(
                "{} asked for a client certificate, none is configured (ssl.certificate.location), and it {what}",
                self.addr
            ),
        );
        io::Error::new(io::ErrorKind::PermissionDenied, failure)
    }

    /// The I/O error to report for `e`, seen before any application byte was read if `fresh`.
    fn map(&self, e: io::Error, fresh: bool) -> io::Error {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            let failure = TlsFailure::new(classify(tls), tls.to_string());
            return io::Error::new(e.kind(), failure);
        }
        let closed = matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        );
        if fresh && closed && self.asked_without_key() {
            return self.missing_key(&format!("closed the connection ({e})"));
        }
        e
    }
}

impl Service<BrokerAddr> for TlsTransport {
    type Response = TlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, addr: BrokerAddr) -> Self::Future {
        let asked = Arc::new(AtomicBool::new(false));
        let mut config = (*self.config).clone();
        config.client_auth_cert_resolver = Arc::new(ClientKey { key: self.client_key.clone(), asked: asked.clone() });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let peer = Peer { addr: addr.clone(), asked_without_key: asked, has_key: self.client_key.is_some() };
        let tcp = self.tcp.call(addr.clone());
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let name = ServerName::try_from(addr.host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("`{}`: {e}", addr.host)))?;
            let tcp = tcp.await?;
            let tls = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return Err(peer.map(e, true)),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the TLS handshake with {addr} did not finish within {timeout:?}"),
                    ));
                }
            };
            Ok(TlsStream { inner: tls, peer, got_data: false })
        })
    }
}

/// A TLS connection to a broker, whose failures are I/O errors wrapping a [`TlsFailure`].
pub struct TlsStream {
    inner: tokio_rustls::client::TlsStream<TcpStream>,
    peer: Peer,
    /// An application byte has been read: the handshake was accepted by the broker.
    got_data: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").field("broker", &self.peer.addr).finish()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.got_data = true;
                } else if !this.got_data && this.peer.asked_without_key() {
                    return Poll::Ready(Err(this.peer.missing_key("closed the connection")));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.peer.map(e, !this.got_data))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        Pin::new(&mut this.inner).poll_write(cx, data).map_err(|e| this.peer.map(e, !this.got_data))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        Pin::new(&mut this.inner).poll_flush(cx).map_err(|e| this.peer.map(e, !this.got_data))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs).map_err(|e| this.peer.map(e, !this.got_data))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_failures_are_classified() {
        let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(classify(&e), TlsFailureKind::UnknownCa);
        let e = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert_eq!(classify(&e), TlsFailureKind::HostNameMismatch);
        let e = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(classify(&e), TlsFailureKind::BadCertificate);
        let e = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        assert_eq!(classify(&e), TlsFailureKind::ClientCertificateRejected);
        let e = rustls::Error::AlertReceived(AlertDescription::ProtocolVersion);
        assert_eq!(classify(&e), TlsFailureKind::Handshake);
    }

    #[test]
    fn a_missing_or_broken_pem_file_is_a_config_error_naming_it() {
        let missing = TlsSettings::default().ca_location("/nonexistent/krab-ca.pem");
        match TlsTransport::new(&missing, Duration::from_secs(1)) {
            Err(ClusterError::Config { key: "ssl.ca.location", message }) => {
                assert!(message.contains("/nonexistent/krab-ca.pem"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let dir = std::env::temp_dir().join(format!("krab-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        match TlsTransport::new(&TlsSettings::default().ca_location(&junk), Duration::from_secs(1)) {
            Err(ClusterError::Config { key: "ssl.ca.location", message }) => {
                assert!(message.contains("junk.pem"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
