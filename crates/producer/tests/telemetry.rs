//! The producer's telemetry over in-memory fake brokers: a leader move gives the stall, refresh
//! and resume events and moves the stalled-partitions gauge up and back to 0; the request
//! counters count what the brokers saw; batch and latency histograms get one sample per batch.

mod support;

use krab_cluster::telemetry as names;
use krab_protocol::ApiKey;
use krab_testkit::observe::{EventLog, TestRecorder};
use std::time::Duration;
use support::{Harness, settle};

const CLIENT: &str = "producer-telemetry";

#[tokio::test(start_paused = true)]
async fn a_leader_move_is_traced_and_measured() {
    let recorder = TestRecorder::new();
    let _metrics = recorder.set_default();
    let log = EventLog::new();
    let _tracing = log.set_default();
    let client = [("client_id", CLIENT)];

    let h = Harness::start(2, &[("t", 2)], |c| c.client_id(CLIENT)).await;
    for round in 0..3 {
        let a = h.send("t", Some(0), &format!("a{round}")).await;
        let b = h.send("t", Some(1), &format!("b{round}")).await;
        settle(a, Duration::from_secs(5)).await.expect("delivered");
        settle(b, Duration::from_secs(5)).await.expect("delivered");
    }
    // Healthy so far: nothing at INFO or above, no stall.
    assert!(log.at_least(tracing::Level::INFO).is_empty(), "{:?}", log.at_least(tracing::Level::INFO));
    assert!(log.with_message("partition stalled").is_empty());
    let gauge = recorder.gauge(names::PRODUCER_STALLED, &client);
    assert!(gauge.is_none_or(|g| g.max == 0.0), "{gauge:?}");

    // Partition 0's leader moves from broker 1 to broker 2: broker 1 answers
    // NOT_LEADER_OR_FOLLOWER, the partition stalls, one refresh resumes it.
    let metadata_before = h.producer.metadata_requests();
    h.fake.move_leader("t", 0, 2);
    let a = h.send("t", Some(0), "a-moved").await;
    let b = h.send("t", Some(1), "b-moved").await;
    settle(a, Duration::from_secs(5)).await.expect("delivered after the move");
    settle(b, Duration::from_secs(5)).await.expect("delivered");
    assert_eq!(h.log("t", 0), ["a0", "a1", "a2", "a-moved"]);
    assert_eq!(h.producer.metadata_requests(), metadata_before + 1);

    let stalled = log.with_message("partition stalled");
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert_eq!(stalled[0].field("partition"), Some("t-0"));
    assert!(stalled[0].field("reason").is_some_and(|r| r.contains("NOT_LEADER_OR_FOLLOWER")), "{stalled:?}");
    let refreshed: Vec<_> =
        log.with_message("metadata refreshed").into_iter().filter(|e| e.field("reason") == Some("stale")).collect();
    assert_eq!(refreshed.len(), 1, "{:?}", log.with_message("metadata refreshed"));
    let resumed = log.with_message("partition resumed");
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(resumed[0].field("partition"), Some("t-0"));
    assert_eq!(resumed[0].field("generation"), refreshed[0].field("generation"));
    let order: Vec<&str> = log
        .events()
        .iter()
        .map(|e| e.message.as_str())
        .filter(|m| ["partition stalled", "partition resumed"].contains(m))
        .map(|m| if m == "partition stalled" { "stalled" } else { "resumed" })
        .collect();
    assert_eq!(order, ["stalled", "resumed"]);
    let gauge = recorder.gauge(names::PRODUCER_STALLED, &client).expect("stalled-partitions gauge");
    assert_eq!((gauge.max, gauge.current), (1.0, 0.0), "up during the move, 0 after: {gauge:?}");
    assert_eq!(recorder.counter(names::METADATA_REFRESHES, &[("client_id", CLIENT), ("reason", "stale")]), 1);

    // Request counters count what the brokers saw.
    for api in [ApiKey::Produce, ApiKey::Metadata, ApiKey::ApiVersions, ApiKey::InitProducerId] {
        let counted = recorder.counter(names::REQUESTS, &[("client_id", CLIENT), ("api", api.name())]);
        assert_eq!(counted, h.fake.requests(api), "{}", api.name());
    }
    let produce = [("client_id", CLIENT), ("api", "Produce")];
    assert_eq!(
        recorder.histogram(names::REQUEST_LATENCY, &produce).len() as u64,
        h.fake.requests(ApiKey::Produce),
        "one latency sample per Produce request"
    );

    // Per batch: one sample each; 8 records acknowledged in all, none failed.
    let records = recorder.histogram(names::PRODUCER_BATCH_RECORDS, &client);
    assert_eq!(records.iter().sum::<f64>(), 8.0, "{records:?}");
    let batches = records.len();
    assert_eq!(recorder.histogram(names::PRODUCER_BATCH_BYTES, &client).len(), batches);
    assert!(
        recorder.histogram(names::PRODUCER_BATCH_BYTES, &client).iter().all(|b| *b > 61.0),
        "a batch header and more"
    );
    assert_eq!(recorder.histogram(names::PRODUCER_LATENCY, &client).len(), batches);
    assert_eq!(recorder.counter(names::PRODUCER_RECORDS_ACKED, &client), 8);
    assert_eq!(recorder.counter(names::PRODUCER_RECORDS_FAILED, &client), 0);
    // Everything acknowledged: the buffer is empty again.
    let buffer = recorder.gauge(names::PRODUCER_BUFFER_BYTES, &client).expect("buffer gauge");
    assert!(buffer.max > 0.0, "{buffer:?}");
    h.producer.flush().await.expect("flushed");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(recorder.gauge(names::PRODUCER_BUFFER_BYTES, &client).unwrap().current, 0.0);
}

/// A retriable error on Produce retries the batch: an event and the retries counter.
#[tokio::test(start_paused = true)]
async fn a_retry_is_traced_and_counted() {
    let recorder = TestRecorder::new();
    let _metrics = recorder.set_default();
    let log = EventLog::new();
    let _tracing = log.set_default();
    let h = Harness::start(1, &[("t", 1)], |c| c.client_id(CLIENT)).await;
    // NOT_ENOUGH_REPLICAS (19): retriable on the same leader.
    h.fake.script_produce("t", 0, [support::ProduceStep::Error(19)]);
    let d = h.send("t", Some(0), "x").await;
    settle(d, Duration::from_secs(5)).await.expect("delivered on the retry");
    let retried = log.with_message("retrying batch");
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(retried[0].field("partition"), Some("t-0"));
    assert!(retried[0].field("error").is_some_and(|e| e.contains("NOT_ENOUGH_REPLICAS")), "{retried:?}");
    assert_eq!(recorder.counter(names::PRODUCER_RETRIES, &[("client_id", CLIENT)]), 1);
}
