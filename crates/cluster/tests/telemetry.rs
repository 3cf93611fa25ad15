//! Telemetry of the cluster layer over in-memory fake brokers: each request in a `krab.request`
//! span, the request metrics counting what the brokers saw, metadata refreshes with their reason,
//! and failures recorded on the span and counted.

use krab_cluster::telemetry as names;
use krab_cluster::{Cluster, ConnectionConfig, MetadataResolver, RequestError, ResolveRequest, ResolverConfig};
use krab_protocol::ApiKey;
use krab_protocol::messages::{AnyRequest, MetadataRequest};
use krab_testkit::observe::{EventLog, TestRecorder};
use krab_testkit::{FakeBroker, FakeCluster, Reply};
use std::time::Duration;
use tower::ServiceExt;

const CLIENT: &str = "telemetry-test";

async fn connect(fake: &FakeCluster) -> Cluster {
    let mut config = fake.config();
    config.connection.client_id = Some(CLIENT.into());
    fake.connect(config).await.expect("connects")
}

#[tokio::test(start_paused = true)]
async fn requests_are_spanned_and_counted_as_the_brokers_saw_them() {
    let recorder = TestRecorder::new();
    let _metrics = recorder.set_default();
    let log = EventLog::new();
    let _tracing = log.set_default();

    let fake = FakeCluster::new(2);
    fake.create_topic("t", 2);
    let cluster = connect(&fake).await;
    let resolver = MetadataResolver::new(cluster.clone(), ResolverConfig::default());
    let snap = resolver.clone().oneshot(ResolveRequest::topics(["t"])).await.expect("resolves");
    // A leader move found by a caller: one refresh newer than the snapshot it used.
    let epoch = fake.move_leader("t", 0, 2);
    let fresh = resolver.clone().oneshot(ResolveRequest::refresh(["t"], snap.generation)).await.expect("refreshes");
    assert_eq!(fresh.partition("t", 0).map(|p| (p.leader, p.leader_epoch)), Some((Some(2), epoch)));
    cluster.broker(2).await.expect("broker 2").call(|_| MetadataRequest::default()).await.expect("answered");

    let client = [("client_id", CLIENT)];
    for api in [ApiKey::ApiVersions, ApiKey::Metadata] {
        let labels = [("client_id", CLIENT), ("api", api.name())];
        let counted = recorder.counter(names::REQUESTS, &labels);
        assert_eq!(counted, fake.requests(api), "{} requests counted as the brokers saw them", api.name());
        assert_eq!(recorder.histogram(names::REQUEST_LATENCY, &labels).len() as u64, counted, "{}", api.name());
        assert!(recorder.counter(names::BYTES_SENT, &labels) > 0);
        assert!(recorder.counter(names::BYTES_RECEIVED, &labels) > 0);
    }
    assert_eq!(recorder.counter(names::REQUEST_ERRORS, &client), 0);
    // By broker: the bootstrap connection, then brokers by id.
    let by_broker = |broker: &str| {
        recorder.counter(names::REQUESTS, &[("client_id", CLIENT), ("api", "Metadata"), ("broker", broker)])
    };
    assert_eq!(by_broker("bootstrap") + by_broker("1") + by_broker("2"), fake.requests(ApiKey::Metadata));
    assert!(by_broker("2") >= 1);

    // Metadata refreshes by reason: the bootstrap's, the unknown topic's, the stale snapshot's.
    let reason = |r: &str| recorder.counter(names::METADATA_REFRESHES, &[("client_id", CLIENT), ("reason", r)]);
    assert_eq!((reason("bootstrap"), reason("resolve"), reason("stale")), (1, 1, 1));
    assert_eq!(recorder.counter(names::METADATA_REFRESHES, &client), cluster.metadata_requests());
    let refreshed = log.with_message("metadata refreshed");
    let reasons: Vec<&str> = refreshed.iter().filter_map(|e| e.field("reason")).collect();
    assert_eq!(reasons, ["bootstrap", "resolve", "stale"], "{refreshed:?}");
    let last = refreshed.last().unwrap();
    assert_eq!(last.field("generation"), Some(fresh.generation.to_string().as_str()));
    assert_eq!(last.field("topics"), Some("1"));

    // One closed span per request, with its fields.
    let spans = log.closed_spans("krab.request");
    let metadata: Vec<_> =
        spans.iter().filter(|s| s.fields.get("api").map(String::as_str) == Some("Metadata")).collect();
    assert_eq!(metadata.len() as u64, fake.requests(ApiKey::Metadata), "{spans:?}");
    for s in &spans {
        for field in ["version", "broker", "correlation_id", "latency_us"] {
            assert!(s.fields.contains_key(field), "{field} in {s:?}");
        }
        assert!(!s.fields.contains_key("error"), "{s:?}");
    }
    assert!(metadata.iter().any(|s| s.fields["broker"] == "2"), "{metadata:?}");
    assert!(
        spans.iter().any(|s| s.fields["broker"] == fake.addr(1).to_string()),
        "the bootstrap connection by address"
    );
    // A healthy run says nothing at INFO or above.
    assert!(log.at_least(tracing::Level::INFO).is_empty(), "{:?}", log.at_least(tracing::Level::INFO));
}

#[tokio::test(start_paused = true)]
async fn a_request_without_answer_records_its_error_on_the_span_and_counts() {
    let recorder = TestRecorder::new();
    let _metrics = recorder.set_default();
    let log = EventLog::new();
    let _tracing = log.set_default();

    let broker = FakeBroker::new();
    broker.set_handler(|_, request| match request {
        AnyRequest::Metadata(_) => Reply::Never,
        _ => Reply::Default,
    });
    let timeout = Duration::from_millis(500);
    let config =
        ConnectionConfig { client_id: Some(CLIENT.into()), request_timeout: timeout, ..ConnectionConfig::default() };
    let (client, _conn) = broker.connect(config);
    let r = client.send(&MetadataRequest::default(), 12).await;
    assert!(matches!(r, Err(RequestError::TimedOut(_))), "{r:?}");

    let labels = [("client_id", CLIENT), ("api", "Metadata"), ("broker", "unknown")];
    assert_eq!(recorder.counter(names::REQUESTS, &labels), 1);
    assert_eq!(recorder.counter(names::REQUEST_ERRORS, &labels), 1);
    assert!(recorder.histogram(names::REQUEST_LATENCY, &labels).is_empty(), "no answer, no latency");
    let spans = log.closed_spans("krab.request");
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert!(spans[0].fields["error"].contains("no response within 500ms"), "{spans:?}");
    assert!(spans[0].fields["latency_us"].parse::<u64>().unwrap() >= 500_000, "{spans:?}");
    let failed = log.with_message("request failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].level, tracing::Level::DEBUG);
    assert_eq!(failed[0].spans.last().map(|s| s.name.as_str()), Some("krab.request"), "inside the request's span");
}
