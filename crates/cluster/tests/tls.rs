//! TLS against the testkit's fake broker behind a rustls acceptor on a loopback port, with a CA
//! and certificates made by rcgen for each test: a trusted chain connects (also with mutual TLS);
//! a wrong CA, a wrong host name and a missing client certificate each fail with the typed TLS
//! error after exactly one TCP connection; a peer that never answers the handshake fails within
//! the connect timeout.
#![cfg(feature = "tls")]

use krab_cluster::{BrokerAddr, Cluster, ClusterConfig, ClusterError, SecurityConfig, TlsFailureKind, TlsSettings};
use krab_testkit::FakeBroker;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A CA: its certificate (PEM) and an issuer to sign with.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
}

/// A certificate for `names`, signed by `ca`: (certificate PEM, PKCS#8 key PEM).
fn leaf(ca: &Ca, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A directory of PEM files for one test, removed at the end.
struct Files(PathBuf);

impl Files {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("krab-tls-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TLS-terminating fake broker on a loopback port; counts the TCP connections it accepts.
struct TlsBroker {
    port: u16,
    accepted: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl TlsBroker {
    /// Serves `cert`/`key`; with `client_ca`, requires client certificates signed by it.
    async fn start(cert: &str, key: &str, client_ca: Option<&str>) -> Self {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let config = match client_ca {
            None => builder.with_no_client_auth().with_single_cert(chain, key).unwrap(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier).with_single_cert(chain, key).unwrap()
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let broker = FakeBroker::new();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let broker = broker.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        broker.serve(tls);
                    }
                });
            }
        });
        Self { port, accepted, _task: task }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn config(host: &str, port: u16, tls: TlsSettings) -> ClusterConfig {
    let mut c = ClusterConfig::new(vec![BrokerAddr::new(host, port)]);
    c.connection.request_timeout = Duration::from_secs(5);
    c.security = SecurityConfig::tls(tls);
    c
}

fn tls_kind(e: &ClusterError) -> TlsFailureKind {
    match e {
        ClusterError::Tls { broker, addr, failure } => {
            assert_eq!(broker, "bootstrap");
            assert!(addr.contains(':'), "{addr}");
            failure.kind
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

/// One broker certificate for "localhost" only, and the CA file that trusts it.
async fn localhost_broker(files: &Files, client_ca: Option<&Ca>) -> (TlsBroker, Ca, PathBuf) {
    let ca = ca("krab test CA");
    let (cert, key) = leaf(&ca, &["localhost"]);
    let broker = TlsBroker::start(&cert, &key, client_ca.map(|c| c.pem.as_str())).await;
    let ca_file = files.write("ca.pem", &ca.pem);
    (broker, ca, ca_file)
}

#[tokio::test]
async fn a_trusted_chain_connects_and_talks_kafka() {
    let files = Files::new("good");
    let (broker, _ca, ca_file) = localhost_broker(&files, None).await;
    let cluster = Cluster::connect(config("localhost", broker.port, TlsSettings::default().ca_location(&ca_file)))
        .await
        .expect("TLS connect");
    assert_eq!(cluster.metadata_requests(), 1);
    assert_eq!(broker.accepted(), 1);
}

#[tokio::test]
async fn an_unknown_ca_fails_typed_after_one_connection() {
    let files = Files::new("wrong-ca");
    let (broker, _ca, _) = localhost_broker(&files, None).await;
    let other = files.write("other-ca.pem", &ca("some other CA").pem);
    let e = Cluster::connect(config("localhost", broker.port, TlsSettings::default().ca_location(&other)))
        .await
        .unwrap_err();
    assert_eq!(tls_kind(&e), TlsFailureKind::UnknownCa, "{e}");
    assert!(!e.is_retriable());
    assert_eq!(broker.accepted(), 1, "a TLS failure is not retried");
}

#[tokio::test]
async fn a_wrong_host_name_fails_typed_unless_the_check_is_turned_off() {
    let files = Files::new("wrong-name");
    let (broker, _ca, ca_file) = localhost_broker(&files, None).await;
    // The certificate names "localhost" only; 127.0.0.1 is not in it.
    let settings = TlsSettings::default().ca_location(&ca_file);
    let e = Cluster::connect(config("127.0.0.1", broker.port, settings.clone())).await.unwrap_err();
    assert_eq!(tls_kind(&e), TlsFailureKind::HostNameMismatch, "{e}");
    assert!(!e.is_retriable());
    assert_eq!(broker.accepted(), 1, "a TLS failure is not retried");
    Cluster::connect(config("127.0.0.1", broker.port, settings.danger_accept_any_host_name()))
        .await
        .expect("the opt-out accepts the name but still checks the chain");
    // The opt-out does not extend to the chain.
    let other = files.write("other-ca.pem", &ca("some other CA").pem);
    let e = Cluster::connect(config(
        "127.0.0.1",
        broker.port,
        TlsSettings::default().ca_location(&other).danger_accept_any_host_name(),
    ))
    .await
    .unwrap_err();
    assert_eq!(tls_kind(&e), TlsFailureKind::UnknownCa, "{e}");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let files = Files::new("mtls");
    let client_ca = ca("krab client CA");
    let (broker, _ca, ca_file) = localhost_broker(&files, Some(&client_ca)).await;
    let settings = TlsSettings::default().ca_location(&ca_file);

    let started = Instant::now();
    let e = Cluster::connect(config("localhost", broker.port, settings.clone())).await.unwrap_err();
    assert_eq!(tls_kind(&e), TlsFailureKind::ClientCertificateRejected, "{e}");
    assert!(!e.is_retriable());
    assert_eq!(broker.accepted(), 1, "a TLS failure is not retried");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    let (cert, key) = leaf(&client_ca, &["krab-client"]);
    let (cert, key) = (files.write("client.pem", &cert), files.write("client.key", &key));
    Cluster::connect(config("localhost", broker.port, settings.clone().client_certificate(&cert, &key)))
        .await
        .expect("mTLS connect");
    assert_eq!(broker.accepted(), 2);

    // A certificate from a CA the broker does not trust is refused too.
    let (cert, key) = leaf(&ca("a stranger CA"), &["krab-client"]);
    let (cert, key) = (files.write("stranger.pem", &cert), files.write("stranger.key", &key));
    let e =
        Cluster::connect(config("localhost", broker.port, settings.client_certificate(&cert, &key))).await.unwrap_err();
    assert_eq!(tls_kind(&e), TlsFailureKind::ClientCertificateRejected, "{e}");
    assert_eq!(broker.accepted(), 3);
}

/// A TLS server that completes the handshake (asking for a client certificate, optional, when
/// `ask` names a CA) and then closes the connection without a word: the way a broker refusing a
/// missing client certificate may look when its alert is lost.
async fn closing_server(cert: &str, key: &str, ask: Option<&str>) -> (u16, Arc<AtomicU64>) {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let config = match ask {
        None => builder.with_no_client_auth().with_single_cert(chain, key).unwrap(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier).with_single_cert(chain, key).unwrap()
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            // Handshake, then drop the stream: a TCP close with no alert and no close_notify.
            let _ = acceptor.accept(tcp).await;
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn a_broker_that_asked_for_a_client_certificate_and_closes_silently_is_a_tls_failure() {
    let files = Files::new("silent-close");
    let ca = ca("krab test CA");
    let (cert, key) = leaf(&ca, &["localhost"]);
    let ca_file = files.write("ca.pem", &ca.pem);
    let (port, accepted) = closing_server(&cert, &key, Some(&ca.pem)).await;
    let e =
        Cluster::connect(config("localhost", port, TlsSettings::default().ca_location(&ca_file))).await.unwrap_err();
    assert_eq!(tls_kind(&e), TlsFailureKind::ClientCertificateRejected, "{e}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A broker that asked for nothing and closes is an ordinary lost connection: retried.
    let (port, accepted) = closing_server(&cert, &key, None).await;
    let mut c = config("localhost", port, TlsSettings::default().ca_location(&ca_file));
    c.reconnect_backoff = Duration::from_millis(1);
    c.reconnect_backoff_max = Duration::from_millis(5);
    let e = Cluster::connect(c).await.unwrap_err();
    assert!(e.tls_failure().is_none() && e.is_retriable(), "{e:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "three bootstrap rounds");
}

#[tokio::test]
async fn a_key_that_does_not_match_its_certificate_is_a_config_error() {
    let files = Files::new("mismatch");
    let ca = ca("krab test CA");
    let (cert, _) = leaf(&ca, &["c"]);
    let (_, other_key) = leaf(&ca, &["c"]);
    let settings = TlsSettings::default()
        .ca_location(files.write("ca.pem", &ca.pem))
        .client_certificate(files.write("c.pem", &cert), files.write("k.pem", &other_key));
    match Cluster::connect(config("localhost", 1, settings)).await {
        Err(ClusterError::Config { key: "ssl.key.location", message }) => {
            assert!(message.contains("k.pem"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let settings = TlsSettings::default().ca_location(files.write("ca.pem", &ca.pem)).client_certificate(
        files.write("c2.pem", &cert),
        files.write("garbage.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
    );
    match Cluster::connect(config("localhost", 1, settings)).await {
        Err(ClusterError::Config { key: "ssl.key.location", message }) => {
            assert!(message.contains("garbage.key"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_silent_peer_cannot_hang_the_handshake() {
    let files = Files::new("silent");
    let ca_file = files.write("ca.pem", &ca("krab test CA").pem);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let mut c = config("localhost", port, TlsSettings::default().ca_location(ca_file.as_path()));
    c.connection.request_timeout = Duration::from_millis(300);
    c.bootstrap_rounds = 1;
    let started = Instant::now();
    let e = Cluster::connect(c).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(e.to_string().contains("did not finish"), "{e}");
    task.abort();
}
