//! One broker connection against the in-memory fake broker: correlation, failure propagation,
//! size limits, timeouts, in-flight bound, acks=0, client.id and version negotiation.

use krab_cluster::{ApiVersions, Cluster, ClusterError, ConnectionConfig, DisconnectReason, RequestError, negotiate};
use krab_protocol::messages::metadata::{MetadataRequestTopic, MetadataResponseTopic};
use krab_protocol::messages::{AnyRequest, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse};
use krab_protocol::{ApiKey, VersionRange};
use krab_testkit::{FakeBroker, FakeCluster, Held, Reply};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::mpsc;

const METADATA_V: i16 = 12;

fn metadata_request(topic: &str) -> MetadataRequest {
    MetadataRequest {
        topics: Some(vec![MetadataRequestTopic { name: Some(topic.to_string()), ..Default::default() }]),
        ..Default::default()
    }
}

/// A Metadata answer naming `topic`, so that a caller can tell whose answer it got.
fn answer_for(topic: &str) -> MetadataResponse {
    MetadataResponse {
        topics: vec![MetadataResponseTopic { name: Some(topic.to_string()), ..Default::default() }],
        ..Default::default()
    }
}

/// A broker that hands every Metadata request to the test, and answers the rest by default.
fn holding_broker() -> (FakeBroker, mpsc::UnboundedReceiver<Held>) {
    let broker = FakeBroker::new();
    let (tx, rx) = mpsc::unbounded_channel();
    broker.set_handler(move |_, request| match request {
        AnyRequest::Metadata(_) => Reply::Hold(tx.clone()),
        _ => Reply::Default,
    });
    (broker, rx)
}

async fn next_held(rx: &mut mpsc::UnboundedReceiver<Held>) -> Held {
    rx.recv().await.expect("the fake broker is alive")
}

/// Pipelined requests are matched to responses by correlation id, not by order.
#[tokio::test]
async fn responses_completing_out_of_order_reach_their_own_callers() {
    let (broker, mut held) = holding_broker();
    let (client, _conn) = broker.connect(ConnectionConfig::default());
    let calls: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|topic| {
            let client = client.clone();
            tokio::spawn(async move { (topic, client.send(&metadata_request(topic), METADATA_V).await) })
        })
        .collect();
    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.push(Some(next_held(&mut held).await));
    }
    let ids: HashSet<i32> = requests.iter().flatten().map(|h| h.header().correlation_id).collect();
    assert_eq!(ids.len(), 3, "every request has its own correlation id");
    assert_eq!(client.in_flight(), 3);
    // The broker answers the third request written, then the first, then the second.
    for i in [2, 0, 1] {
        let h = requests[i].take().unwrap();
        let topic = h.metadata_topics().pop().unwrap();
        h.respond(answer_for(&topic));
    }
    for call in calls {
        let (topic, response) = call.await.unwrap();
        let response = response.unwrap_or_else(|e| panic!("request for {topic}: {e}"));
        assert_eq!(response.topics[0].name.as_deref(), Some(topic), "{topic} got another caller's response");
    }
    assert_eq!(client.in_flight(), 0);
    assert!(!client.is_closed());
}

/// When the broker closes the connection, every request in flight fails, marked as possibly
/// sent; a request made afterwards fails as never sent.
#[tokio::test]
async fn connection_death_fails_every_request_in_flight() {
    let (broker, mut held) = holding_broker();
    let (client, conn) = broker.connect(ConnectionConfig::default());
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.send(&metadata_request(&format!("t{i}")), METADATA_V).await })
        })
        .collect();
    let mut requests = Vec::new();
    for _ in 0..5 {
        requests.push(next_held(&mut held).await);
    }
    requests.remove(0).close();
    for call in calls {
        match call.await.unwrap() {
            Err(RequestError::ConnectionLost { reason: DisconnectReason::Eof, sent: true }) => {}
            other => panic!("expected ConnectionLost {{ Eof, sent: true }}, got {other:?}"),
        }
    }
    assert_eq!(conn.await.unwrap(), Err(DisconnectReason::Eof));
    assert!(client.is_closed());
    match client.send(&metadata_request("late"), METADATA_V).await {
        Err(RequestError::ConnectionLost { reason: DisconnectReason::Eof, sent: false }) => {}
        other => panic!("expected ConnectionLost {{ sent: false }}, got {other:?}"),
    }
    assert_eq!(broker.requests(ApiKey::Metadata), 5, "the late request was never written");
}

/// A response whose size prefix exceeds the limit is refused from the prefix alone: the broker
/// sends 4 bytes announcing 1 GiB and nothing else, and the request fails at once.
#[tokio::test]
async fn oversized_response_is_refused_from_its_size_prefix() {
    let (broker, mut held) = holding_broker();
    let config = ConnectionConfig {
        max_response_size: 1 << 20,
        request_timeout: Duration::from_secs(60),
        ..ConnectionConfig::default()
    };
    let (client, conn) = broker.connect(config);
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.send(&metadata_request("first"), METADATA_V).await })
    };
    let h1 = next_held(&mut held).await;
    let second = {
        let client = client.clone();
        tokio::spawn(async move { client.send(&metadata_request("second"), METADATA_V).await })
    };
    let _h2 = next_held(&mut held).await;
    let started = std::time::Instant::now();
    h1.reply(Reply::huge_prefix(1 << 30));
    let first = tokio::time::timeout(Duration::from_secs(5), first).await.expect("refused promptly").unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    match first {
        Err(RequestError::ResponseTooLarge { size, max }) => assert_eq!((size, max), (1 << 30, 1 << 20)),
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
    // The stream cannot be resynchronised: the connection is closed and the other request fails.
    match second.await.unwrap() {
        Err(RequestError::ConnectionLost { reason: DisconnectReason::ResponseTooLarge { .. }, sent: true }) => {}
        other => panic!("expected ConnectionLost {{ ResponseTooLarge }}, got {other:?}"),
    }
    assert_eq!(conn.await.unwrap(), Err(DisconnectReason::ResponseTooLarge { size: 1 << 30, max: 1 << 20 }));
    broker.wait_disconnects(1).await;
}

/// A request without a response times out, and the connection is closed: a stuck response
/// blocks every response after it.
#[tokio::test(start_paused = true)]
async fn request_timeout_closes_the_connection() {
    let broker = FakeBroker::new();
    broker.set_handler(|_, request| match request {
        AnyRequest::Metadata(_) => Reply::Never,
        _ => Reply::Default,
    });
    let timeout = Duration::from_millis(500);
    let (client, conn) = broker.connect(ConnectionConfig { request_timeout: timeout, ..ConnectionConfig::default() });
    let started = tokio::time::Instant::now();
    let stuck = {
        let client = client.clone();
        tokio::spawn(async move { client.send(&metadata_request("stuck"), METADATA_V).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let behind = {
        let client = client.clone();
        tokio::spawn(async move { client.send(&metadata_request("behind"), METADATA_V).await })
    };
    match stuck.await.unwrap() {
        Err(RequestError::TimedOut(d)) => assert_eq!(d, timeout),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout && elapsed < timeout + Duration::from_millis(50), "timed out after {elapsed:?}");
    match behind.await.unwrap() {
        Err(RequestError::ConnectionLost { reason: DisconnectReason::RequestTimedOut(d), sent: true }) => {
            assert_eq!(d, timeout)
        }
        other => panic!("expected ConnectionLost {{ RequestTimedOut, sent: true }}, got {other:?}"),
    }
    assert_eq!(conn.await.unwrap(), Err(DisconnectReason::RequestTimedOut(timeout)));
    broker.wait_disconnects(1).await;
    assert!(client.is_closed());
    assert!(matches!(
        client.send(&metadata_request("late"), METADATA_V).await,
        Err(RequestError::ConnectionLost { sent: false, .. })
    ));
}

/// With max_in_flight = 2 and a broker holding its answers, the third request is not written
/// until a slot frees.
#[tokio::test(start_paused = true)]
async fn in_flight_requests_are_bounded() {
    let (broker, mut held) = holding_broker();
    let (client, _conn) = broker.connect(ConnectionConfig { max_in_flight: 2, ..ConnectionConfig::default() });
    let calls: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|topic| {
            let client = client.clone();
            tokio::spawn(async move { client.send(&metadata_request(topic), METADATA_V).await })
        })
        .collect();
    let h1 = next_held(&mut held).await;
    let h2 = next_held(&mut held).await;
    // With the clock paused, this returns only once every task is idle: the third request had
    // every chance to be written.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // acks=0 requests take no slot: one written now reaches the broker, proving that the
    // connection still writes, and that nothing was queued before it.
    client.send_no_response(&ProduceRequest { acks: 0, timeout_ms: 1000, ..Default::default() }, 8).await.unwrap();
    broker.wait_requests(ApiKey::Produce, 1).await;
    assert_eq!(broker.requests(ApiKey::Metadata), 2, "the third request waits for a slot");
    assert_eq!(client.in_flight(), 2);
    assert!(held.try_recv().is_err());

    h1.respond_default();
    let h3 = next_held(&mut held).await;
    assert_eq!(broker.requests(ApiKey::Metadata), 3, "a freed slot lets the third request go");
    h2.respond_default();
    h3.respond_default();
    for call in calls {
        call.await.unwrap().unwrap();
    }
}

/// acks=0: `send_no_response` resolves once written, the broker sees the request, and a stray
/// response to it does not kill the connection.
#[tokio::test]
async fn acks_zero_requests_resolve_when_written_and_tolerate_stray_responses() {
    let broker = FakeBroker::new();
    let (tx, mut held) = mpsc::unbounded_channel();
    broker.set_handler(move |_, request| match request {
        AnyRequest::Produce(_) => Reply::Hold(tx.clone()),
        _ => Reply::Default,
    });
    let (client, _conn) = broker.connect(ConnectionConfig::default());
    let produce = ProduceRequest { acks: 0, timeout_ms: 1000, ..Default::default() };
    // Resolves although the broker has not answered (and holds the request).
    tokio::time::timeout(Duration::from_secs(5), client.send_no_response(&produce, 8))
        .await
        .expect("resolves once written")
        .unwrap();
    let h = next_held(&mut held).await;
    assert!(matches!(h.request(), AnyRequest::Produce(p) if p.acks == 0));
    assert_eq!(h.header().request_api_version, 8);
    // Some brokers answer anyway.
    h.respond(ProduceResponse::default());
    // The stray answer is read (and skipped) before this request's answer.
    let response = client.send(&metadata_request("t"), METADATA_V).await.expect("connection survives");
    assert_eq!(response.topics[0].name.as_deref(), Some("t"));
    assert!(!client.is_closed());
    assert_eq!(broker.requests(ApiKey::Produce), 1);
}

/// The configured client.id travels in every request header, flexible (v2) or not (v1).
#[tokio::test]
async fn client_id_is_sent_as_configured() {
    let broker = FakeBroker::new();
    for client_id in [Some("orders-service"), None] {
        let config = ConnectionConfig { client_id: client_id.map(str::to_string), ..ConnectionConfig::default() };
        let (client, _conn) = broker.connect(config);
        for version in [1, METADATA_V] {
            client.send(&metadata_request("t"), version).await.unwrap();
            let (header, _) = broker.received().pop().unwrap();
            assert_eq!(header.request_api_version, version);
            assert_eq!(header.client_id.as_deref(), client_id, "Metadata v{version}");
        }
    }
    assert_eq!(ConnectionConfig::default().client_id.as_deref(), Some("krab"));
}

async fn negotiate_with(broker: &FakeBroker) -> Result<ApiVersions, ClusterError> {
    let (client, _conn) = broker.connect(ConnectionConfig::default());
    negotiate(&client, "fake").await
}

/// A broker that does not know ApiVersions v3 answers UNSUPPORTED_VERSION with a v0 body listing
/// the versions it has (KIP-511, like librdkafka's mock): krab retries with the best of those.
#[tokio::test]
async fn negotiation_falls_back_to_the_version_the_broker_lists() {
    for broker_max in [2, 1] {
        let broker = FakeBroker::new();
        broker.set_api_range(ApiKey::ApiVersions, 0, broker_max);
        let versions = negotiate_with(&broker).await.unwrap();
        assert_eq!(versions.negotiated_with, broker_max);
        assert_eq!(broker.versions_received(ApiKey::ApiVersions), vec![3, broker_max]);
        assert_eq!(versions.version_for(ApiKey::Metadata).unwrap(), ApiKey::Metadata.versions().max);
        assert_eq!(versions.broker_range(ApiKey::Produce), Some(ApiKey::Produce.versions()));
        // The same through `Broker::connect` over a transport.
        let addr = krab_cluster::BrokerAddr::new("broker-1", krab_testkit::FAKE_PORT);
        let b = krab_cluster::Broker::connect(broker.transport(), addr, Some(1), ConnectionConfig::default())
            .await
            .unwrap();
        assert_eq!(b.versions().negotiated_with, broker_max);
        assert_eq!(b.version_of::<MetadataRequest>().unwrap(), ApiKey::Metadata.versions().max);
    }
    // A broker that knows v3 gets it the first time, with the client software fields.
    let broker = FakeBroker::new();
    assert_eq!(negotiate_with(&broker).await.unwrap().negotiated_with, 3);
    match &broker.received()[..] {
        [(header, AnyRequest::ApiVersions(req))] => {
            assert_eq!(header.request_api_version, 3);
            assert_eq!(req.client_software_name, "krab");
        }
        other => panic!("expected one ApiVersions request, got {other:?}"),
    }
}

/// An UNSUPPORTED_VERSION answer whose body is garbage makes krab fall back to version 0.
#[tokio::test]
async fn negotiation_falls_back_to_v0_on_a_garbage_error_body() {
    let broker = FakeBroker::new();
    broker.set_handler(|header, _| {
        if header.request_api_key == ApiKey::ApiVersions as i16 && header.request_api_version > 0 {
            // error_code 35, then an api_keys array claiming 2^31-1 entries.
            Reply::RawBody(bytes::Bytes::from_static(&[0, 35, 0x7f, 0xff, 0xff, 0xff, 0xde, 0xad]))
        } else {
            Reply::Default
        }
    });
    let versions = negotiate_with(&broker).await.unwrap();
    assert_eq!(versions.negotiated_with, 0);
    assert_eq!(broker.versions_received(ApiKey::ApiVersions), vec![3, 0]);
    assert_eq!(versions.version_for(ApiKey::Metadata).unwrap(), ApiKey::Metadata.versions().max);
}

/// A broker whose Metadata range does not overlap krab's: a NoCommonVersion error naming the API
/// and both ranges, from the version table and from connecting a cluster.
#[tokio::test]
async fn no_common_version_names_the_api_and_both_ranges() {
    let broker = FakeBroker::new();
    broker.set_api_range(ApiKey::Metadata, 13, 15);
    let versions = negotiate_with(&broker).await.unwrap();
    let err = versions.version_for(ApiKey::Metadata).unwrap_err();
    match &err {
        ClusterError::NoCommonVersion { api: ApiKey::Metadata, theirs, ours, .. } => {
            assert_eq!(*theirs, VersionRange::new(13, 15));
            assert_eq!(*ours, ApiKey::Metadata.versions());
        }
        other => panic!("expected NoCommonVersion, got {other:?}"),
    }
    let text = err.to_string();
    for part in ["Metadata", "13..=15", "0..=12"] {
        assert!(text.contains(part), "{text:?} lacks {part}");
    }
    assert!(versions.version_for(ApiKey::Produce).is_ok());

    // The cluster's first Metadata request hits the same wall.
    let fake = FakeCluster::new(1);
    fake.broker(1).set_api_range(ApiKey::Metadata, 13, 15);
    match Cluster::connect_with(fake.config(), fake.transport()).await {
        Err(ClusterError::NoCommonVersion { api: ApiKey::Metadata, .. }) => {}
        other => panic!("expected NoCommonVersion, got {other:?}"),
    }
    assert_eq!(fake.requests(ApiKey::Metadata), 0, "nothing was sent at a version the broker lacks");
}

/// A response that arrives late but within the timeout is delivered.
#[tokio::test(start_paused = true)]
async fn a_delayed_response_within_the_timeout_is_delivered() {
    let broker = FakeBroker::new();
    broker.set_handler(|_, request| match request {
        AnyRequest::Metadata(_) => Reply::after(Duration::from_millis(400), Reply::Default),
        _ => Reply::Default,
    });
    let (client, _conn) =
        broker.connect(ConnectionConfig { request_timeout: Duration::from_millis(500), ..ConnectionConfig::default() });
    let started = tokio::time::Instant::now();
    client.send(&metadata_request("t"), METADATA_V).await.expect("answered in time");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(!client.is_closed());
}

/// Protocol violations close the connection with a precise reason: a response for a correlation
/// id nobody waits for, and a negative size prefix.
#[tokio::test]
async fn protocol_violations_close_the_connection_with_their_reason() {
    let mut frame = bytes::BytesMut::new();
    bytes::BufMut::put_i32(&mut frame, 8);
    bytes::BufMut::put_i32(&mut frame, 999_999);
    bytes::BufMut::put_i32(&mut frame, 0);
    let cases = [
        (frame.freeze(), DisconnectReason::UnexpectedCorrelationId(999_999)),
        (bytes::Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]), DisconnectReason::NegativeFrameLength(-2)),
    ];
    for (bytes, expected) in cases {
        let broker = FakeBroker::new();
        broker.set_handler(move |_, request| match request {
            AnyRequest::Metadata(_) => Reply::RawFrame(bytes.clone()),
            _ => Reply::Default,
        });
        let (client, conn) = broker.connect(ConnectionConfig::default());
        match client.send(&metadata_request("t"), METADATA_V).await {
            Err(RequestError::ConnectionLost { reason, sent: true }) => assert_eq!(reason, expected),
            other => panic!("expected ConnectionLost {{ {expected:?} }}, got {other:?}"),
        }
        assert_eq!(conn.await.unwrap(), Err(expected));
    }
}

/// A response whose body does not decode fails that request only: the frame boundaries are
/// intact, so the connection carries on.
#[tokio::test]
async fn a_malformed_response_body_fails_only_its_request() {
    let broker = FakeBroker::new();
    broker.set_handler(|_, request| match request {
        AnyRequest::Metadata(m) if m.topics.iter().flatten().any(|t| t.name.as_deref() == Some("bad")) => {
            Reply::RawBody(bytes::Bytes::from_static(&[0xde, 0xad]))
        }
        _ => Reply::Default,
    });
    let (client, _conn) = broker.connect(ConnectionConfig::default());
    let err = client.send(&metadata_request("bad"), METADATA_V).await.unwrap_err();
    assert!(matches!(err, RequestError::Decode(_)), "{err:?}");
    assert!(err.may_have_reached_broker());
    client.send(&metadata_request("good"), METADATA_V).await.expect("the connection carries on");
    assert!(!client.is_closed());
}

/// `close()` fails the requests in flight with ClosedByClient; dropping every handle ends the
/// driver cleanly.
#[tokio::test]
async fn closing_and_dropping_the_client() {
    let (broker, mut held) = holding_broker();
    let (client, conn) = broker.connect(ConnectionConfig::default());
    let call = {
        let client = client.clone();
        tokio::spawn(async move { client.send(&metadata_request("t"), METADATA_V).await })
    };
    let _h = next_held(&mut held).await;
    client.close();
    match call.await.unwrap() {
        Err(RequestError::ConnectionLost { reason: DisconnectReason::ClosedByClient, sent: true }) => {}
        other => panic!("expected ConnectionLost {{ ClosedByClient }}, got {other:?}"),
    }
    assert_eq!(conn.await.unwrap(), Err(DisconnectReason::ClosedByClient));
    broker.wait_disconnects(1).await;

    let (client, conn) = broker.connect(ConnectionConfig::default());
    drop(client);
    assert_eq!(conn.await.unwrap(), Ok(()));
    broker.wait_disconnects(2).await;
}

/// A caller that stops waiting (its future dropped) does not free its slot while its request is
/// still outstanding at the broker: the bound holds for what the broker has in flight.
#[tokio::test(start_paused = true)]
async fn an_abandoned_request_keeps_its_slot_until_answered() {
    let (broker, mut held) = holding_broker();
    let (client, _conn) = broker.connect(ConnectionConfig { max_in_flight: 2, ..ConnectionConfig::default() });
    let abandoned = {
        let client = client.clone();
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(10), client.send(&metadata_request("a"), METADATA_V)).await
        })
    };
    let h1 = next_held(&mut held).await;
    assert!(abandoned.await.unwrap().is_err(), "the caller gave up");
    let calls: Vec<_> = ["b", "c"]
        .into_iter()
        .map(|topic| {
            let client = client.clone();
            tokio::spawn(async move { client.send(&metadata_request(topic), METADATA_V).await })
        })
        .collect();
    let h2 = next_held(&mut held).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(broker.requests(ApiKey::Metadata), 2, "two requests outstanding at the broker already");
    assert_eq!(client.in_flight(), 2);
    // The abandoned request's answer frees its slot.
    h1.respond_default();
    let h3 = next_held(&mut held).await;
    h2.respond_default();
    h3.respond_default();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert!(!client.is_closed());
}
