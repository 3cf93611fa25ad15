//! SASL refusals reach the records: a broker that refuses the producer's credentials fails the
//! records it leads with the typed authentication error, at once and without a retry storm,
//! while the partitions of brokers that accept keep flowing.

mod support;

use bytes::Bytes;
use krab_producer::{ErrorKind, SaslConfig, SaslMechanism, SecurityConfig};
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::{AnyRequest, AnyResponse, SaslAuthenticateResponse, SaslHandshakeResponse};
use krab_testkit::{FakeBroker, Reply};
use std::time::Duration;
use support::{Harness, settle};

/// Broker `broker` plays a PLAIN server that accepts `alice`/`secret` only if `accept`.
fn plain(broker: &FakeBroker, accept: bool) {
    broker.set_handler(move |_, request| match request {
        AnyRequest::SaslHandshake(_) => Reply::Respond(AnyResponse::SaslHandshake(Box::new(SaslHandshakeResponse {
            error_code: 0,
            mechanisms: vec!["PLAIN".into()],
        }))),
        AnyRequest::SaslAuthenticate(a) => {
            let ok = accept && a.auth_bytes.as_ref() == b"\0alice\0secret";
            Reply::Respond(AnyResponse::SaslAuthenticate(Box::new(SaslAuthenticateResponse {
                error_code: if ok { 0 } else { ErrorCode::SaslAuthenticationFailed.code() },
                error_message: (!ok).then(|| "Authentication failed: Invalid username or password".into()),
                auth_bytes: Bytes::new(),
                ..Default::default()
            })))
        }
        _ => Reply::Default,
    });
}

#[tokio::test(start_paused = true)]
async fn records_led_by_a_broker_refusing_the_credentials_fail_with_the_typed_error() {
    // Partition 0 is led by broker 1, which accepts; partition 1 by broker 2, which refuses.
    let fake = krab_testkit::FakeCluster::new(2);
    plain(fake.broker(1), true);
    plain(fake.broker(2), false);
    fake.create_topic("t", 2);
    fake.set_partition("t", 0, 1, 0);
    fake.set_partition("t", 1, 2, 0);
    let config = support::config(&fake).security(SecurityConfig::sasl(SaslConfig::plain("alice", "secret"), None));
    let producer = krab_producer::Producer::connect_with(config, fake.transport()).await.expect("broker 1 accepts");
    let h = Harness { fake, producer };
    let refused = h.send("t", Some(1), "to broker 2").await;
    let accepted = h.send("t", Some(0), "to broker 1").await;
    let e = settle(refused, Duration::from_secs(10)).await.expect_err("broker 2 refuses");
    assert_eq!(e.kind(), ErrorKind::Authentication(SaslMechanism::Plain), "{e:#}");
    assert!(!e.is_retriable());
    settle(accepted, Duration::from_secs(10)).await.expect("broker 1's partition flows");
    assert_eq!(h.log("t", 0), vec!["to broker 1"]);
    let attempts = h.fake.broker(2).requests(ApiKey::SaslAuthenticate);
    assert_eq!(attempts, 1, "one authentication attempt at the refusing broker, not a retry loop");
}
