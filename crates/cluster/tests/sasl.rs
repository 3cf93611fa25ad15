//! SASL against the testkit's fake broker playing a PLAIN server: authentication right after
//! ApiVersions, typed refusals after one round trip, and re-authentication on the same connection
//! before the session lifetime it gave ends (KIP-368), with nothing written between a
//! re-authentication's SaslHandshake and its SaslAuthenticate while other requests keep coming.

use bytes::Bytes;
use krab_cluster::rebalance::{Recovery, classify};
use krab_cluster::{Broker, BrokerAddr, ClusterError, ConnectionConfig, SaslConfig, SaslMechanism, SecurityConfig};
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::{
    AnyRequest, AnyResponse, MetadataRequest, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use krab_testkit::{FakeBroker, FakeCluster, Reply};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the fake PLAIN server saw and decided.
#[derive(Default)]
struct Server {
    /// API keys in arrival order.
    seen: Vec<ApiKey>,
    /// When the current session ends.
    session_ends: Option<Instant>,
    /// Requests refused because the session had ended.
    expired: u32,
}

/// A PLAIN server accepting `alice`/`secret`, giving sessions of `lifetime`, closing a connection
/// that sends anything but SASL after its session ended (as Kafka does).
fn plain_server(broker: &FakeBroker, lifetime: Duration) -> Arc<Mutex<Server>> {
    let server = Arc::new(Mutex::new(Server::default()));
    let s = server.clone();
    broker.set_handler(move |header, request| {
        let mut s = s.lock().unwrap();
        s.seen.push(ApiKey::from_i16(header.request_api_key).expect("a known API"));
        match request {
            AnyRequest::SaslHandshake(h) => {
                let ok = h.mechanism == "PLAIN";
                Reply::Respond(AnyResponse::SaslHandshake(Box::new(SaslHandshakeResponse {
                    error_code: if ok { 0 } else { ErrorCode::UnsupportedSaslMechanism.code() },
                    mechanisms: vec!["PLAIN".into()],
                })))
            }
            AnyRequest::SaslAuthenticate(a) => {
                let good = a.auth_bytes.as_ref() == b"\0alice\0secret";
                if good {
                    s.session_ends = Some(Instant::now() + lifetime);
                }
                Reply::Respond(AnyResponse::SaslAuthenticate(Box::new(SaslAuthenticateResponse {
                    error_code: if good { 0 } else { ErrorCode::SaslAuthenticationFailed.code() },
                    error_message: (!good).then(|| "Authentication failed: Invalid username or password".into()),
                    auth_bytes: Bytes::new(),
                    session_lifetime_ms: if good { lifetime.as_millis() as i64 } else { 0 },
                    ..Default::default()
                })))
            }
            AnyRequest::ApiVersions(_) => Reply::Default,
            _ if s.session_ends.is_none_or(|end| Instant::now() >= end) => {
                s.expired += 1;
                Reply::Close
            }
            _ => Reply::Default,
        }
    });
    server
}

fn config(sasl: SaslConfig) -> ConnectionConfig {
    ConnectionConfig { sasl: Some(sasl), request_timeout: Duration::from_secs(5), ..ConnectionConfig::default() }
}

async fn connect(broker: &FakeBroker, sasl: SaslConfig) -> Result<Broker, ClusterError> {
    Broker::connect(broker.transport(), BrokerAddr::new("broker-1", 9092), None, config(sasl)).await
}

#[tokio::test]
async fn a_connection_re_authenticates_before_its_session_ends_while_requests_keep_coming() {
    let fake = FakeCluster::new(1);
    let broker = fake.broker(1).clone();
    let lifetime = Duration::from_millis(300);
    let server = plain_server(&broker, lifetime);
    let client = connect(&broker, SaslConfig::plain("alice", "secret")).await.expect("authenticated");
    let started = Instant::now();
    // Four tasks keep requests in flight on the one connection for four session lifetimes.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while started.elapsed() < lifetime * 4 {
                    client.call(|_| MetadataRequest { topics: Some(Vec::new()), ..Default::default() }).await?;
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok::<_, ClusterError>(n)
            })
        })
        .collect();
    let mut requests = 0;
    for t in tasks {
        requests += t.await.unwrap().expect("every request succeeds across re-authentications");
    }
    let s = server.lock().unwrap();
    assert_eq!(s.expired, 0, "no request reached the broker after its session ended");
    let reauths = client.reauthentications();
    assert!(reauths >= 3, "{reauths} re-authentications over 4 sessions ({requests} requests)");
    let handshakes = s.seen.iter().filter(|k| **k == ApiKey::SaslHandshake).count() as u64;
    assert_eq!(handshakes, reauths + 1, "one handshake per authentication");
    for (i, k) in s.seen.iter().enumerate() {
        if *k == ApiKey::SaslHandshake {
            assert_eq!(s.seen.get(i + 1), Some(&ApiKey::SaslAuthenticate), "request {i}: nothing between the two");
        }
    }
    assert!(client.is_connected());
}

#[tokio::test]
async fn wrong_credentials_fail_with_the_typed_error_after_one_round_trip() {
    let fake = FakeCluster::new(1);
    let broker = fake.broker(1).clone();
    let server = plain_server(&broker, Duration::from_secs(60));
    let e = connect(&broker, SaslConfig::plain("alice", "wrong")).await.expect_err("refused");
    let failure = e.auth_failure().expect("an authentication failure").clone();
    assert_eq!(failure.mechanism, SaslMechanism::Plain);
    assert_eq!(failure.code, Some(ErrorCode::SaslAuthenticationFailed));
    assert!(failure.message.contains("Invalid username or password"), "{failure}");
    assert!(!e.is_retriable());
    assert_eq!(classify(&e), Recovery::Fail);
    assert!(!format!("{e} {e:?}").contains("wrong"), "the password stays out of errors: {e:?}");
    let seen = server.lock().unwrap().seen.clone();
    assert_eq!(seen, vec![ApiKey::ApiVersions, ApiKey::SaslHandshake, ApiKey::SaslAuthenticate]);
}

#[tokio::test]
async fn a_mechanism_the_broker_does_not_enable_is_named_with_those_it_does() {
    let fake = FakeCluster::new(1);
    let broker = fake.broker(1).clone();
    plain_server(&broker, Duration::from_secs(60));
    let e = connect(&broker, SaslConfig::scram_sha256("alice", "secret")).await.expect_err("refused");
    let failure = e.auth_failure().expect("an authentication failure");
    assert_eq!(
        (failure.mechanism, failure.code),
        (SaslMechanism::ScramSha256, Some(ErrorCode::UnsupportedSaslMechanism))
    );
    assert!(failure.message.contains("it enables PLAIN"), "{failure}");
}

#[tokio::test]
async fn the_cluster_returns_an_authentication_failure_at_once_without_retrying() {
    let fake = FakeCluster::new(1);
    let server = plain_server(fake.broker(1), Duration::from_secs(60));
    let mut config = fake.config();
    config.security = SecurityConfig::sasl(SaslConfig::plain("alice", "wrong"), None);
    config.bootstrap_rounds = 5;
    let started = Instant::now();
    let e = fake.connect(config).await.expect_err("refused");
    assert!(e.auth_failure().is_some(), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    let attempts = server.lock().unwrap().seen.iter().filter(|k| **k == ApiKey::SaslAuthenticate).count();
    assert_eq!(attempts, 1, "one authentication attempt, no retry rounds");
    // With the right password the cluster connects and serves metadata.
    let mut config = fake.config();
    config.security = SecurityConfig::sasl(SaslConfig::plain("alice", "secret"), None);
    let cluster = fake.connect(config).await.expect("connected");
    assert!(cluster.snapshot().brokers.contains_key(&1));
}
