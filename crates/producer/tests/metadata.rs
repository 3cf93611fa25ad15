//! Topics whose metadata is not usable yet: auto-creation, topic errors, failed resolves,
//! unknown topics (F1), and leaderless partitions (F3).

mod support;

use krab_producer::ErrorKind;
use krab_protocol::ApiKey;
use krab_protocol::messages::AnyRequest;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::{Harness, Reply, settle};
use tokio::time::Instant;

/// Kafka answers the first Metadata request for a topic it auto-creates with
/// LEADER_NOT_AVAILABLE and no partitions: the producer asks again after backoff, and the
/// first record is delivered within about retry.backoff, not at the delivery timeout.
#[tokio::test(start_paused = true)]
async fn an_auto_created_topic_gets_its_first_records_within_the_backoff() {
    let h = Harness::start(2, &[], |c| c).await;
    h.fake.set_auto_create(Some(2));
    let start = Instant::now();
    let d = h.send("fresh", Some(1), "first").await;
    settle(d, Duration::from_secs(2)).await.expect("delivered");
    assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
    assert_eq!(h.log("fresh", 1), vec!["first"]);
}

/// A topic answered with a retriable topic error keeps being asked for (paced by the backoff)
/// until it is usable; then its records are delivered.
#[tokio::test(start_paused = true)]
async fn a_topic_with_a_retriable_error_is_polled_until_usable() {
    let h = Harness::start(1, &[("t", 1)], |c| c).await;
    h.fake.set_topic_error("t", Some(5));
    let d = h.send("t", Some(0), "late").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = h.fake.requests(ApiKey::Metadata);
    assert!(asked >= 3, "polled while unusable ({asked} Metadata requests)");
    assert!(asked < 40, "paced by the backoff ({asked} Metadata requests)");
    h.fake.set_topic_error("t", None);
    settle(d, Duration::from_secs(2)).await.expect("delivered once the topic is usable");
    assert_eq!(h.log("t", 0), vec!["late"]);
}

/// A resolve that fails (the connection drops under the Metadata request) does not lose the
/// topics it asked for: they are asked again.
#[tokio::test(start_paused = true)]
async fn a_failed_resolve_asks_again() {
    let h = Harness::start(1, &[("t", 1), ("u", 1)], |c| c).await;
    let dropped = Arc::new(AtomicU32::new(0));
    let d2 = dropped.clone();
    h.fake.set_handler(move |_, request| match request {
        AnyRequest::Metadata(m)
            if m.topics.iter().flatten().any(|t| t.name.as_deref() == Some("u"))
                && d2.fetch_add(1, Ordering::SeqCst) < 2 =>
        {
            Reply::Close
        }
        _ => Reply::Default,
    });
    let d = h.send("u", Some(0), "after-failures").await;
    settle(d, Duration::from_secs(5)).await.expect("delivered");
    assert!(dropped.load(Ordering::SeqCst) >= 3, "two failed resolves, then one that worked");
    assert_eq!(h.log("u", 0), vec!["after-failures"]);
}

/// With auto-creation off, a topic that does not exist fails its records with UnknownTopic at
/// max.block.ms, not earlier and not at the delivery timeout.
#[tokio::test(start_paused = true)]
async fn an_unknown_topic_fails_with_unknown_topic_at_max_block() {
    let h = Harness::start(1, &[], |c| c.max_block(Duration::from_secs(2)).allow_auto_create_topics(false)).await;
    let start = Instant::now();
    let d = h.send("nope", None, "x").await;
    let e = settle(d, Duration::from_secs(5)).await.expect_err("unknown topic");
    assert_eq!(e.kind(), ErrorKind::UnknownTopic, "{e}");
    assert!(start.elapsed() >= Duration::from_secs(2), "failed after {:?}", start.elapsed());
    assert!(e.to_string().contains("nope"), "{e}");
}

/// F3, the RF=1 broker restart: the refresh after the leader's connection fails says the
/// partition has no leader. The partition stays stalled and the producer keeps polling (paced
/// by the backoff) until the broker is back as leader; the buffered records are then
/// delivered, while the other partition keeps flowing meanwhile.
#[tokio::test(start_paused = true)]
async fn a_partition_left_leaderless_is_polled_until_a_leader_appears() {
    let h = Harness::start(2, &[("t", 2)], |c| c.reconnect_backoff(Duration::from_millis(1), Duration::from_millis(5)))
        .await;
    // Partition 1 is led by broker 2: warm it up, then restart broker 2.
    settle(h.send("t", Some(1), "before").await, Duration::from_secs(5)).await.expect("delivered");
    h.fake.set_down(2, true);
    h.fake.set_partition("t", 1, -1, 0);
    let stuck = h.send("t", Some(1), "during").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle(h.send("t", Some(0), "elsewhere").await, Duration::from_secs(2)).await.expect("partition 0 flows");
    let polls = h.fake.requests(ApiKey::Metadata);
    h.fake.set_down(2, false);
    h.fake.set_partition("t", 1, 2, 1);
    settle(stuck, Duration::from_secs(5)).await.expect("delivered once the leader is back");
    assert!(h.fake.requests(ApiKey::Metadata) > polls, "kept polling after the outage");
    assert_eq!(h.log("t", 1), vec!["before", "during"]);
    assert_eq!(h.log("t", 0), vec!["elsewhere"]);
}

/// A record sent to a partition the current snapshot already gives no leader is not forgotten:
/// the producer polls metadata until a leader appears.
#[tokio::test(start_paused = true)]
async fn a_record_for_a_partition_without_leader_waits_for_one() {
    let h = Harness::start(1, &[("t", 2)], |c| c).await;
    h.fake.set_partition("t", 0, -1, 0);
    // Learn the leaderless partition through a send to the other one.
    settle(h.send("t", Some(1), "warm").await, Duration::from_secs(5)).await.expect("delivered");
    let d = h.send("t", Some(0), "patient").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.fake.set_partition("t", 0, 1, 1);
    settle(d, Duration::from_secs(5)).await.expect("delivered once a leader appears");
    assert_eq!(h.log("t", 0), vec!["patient"]);
}

/// A topic the broker refuses (TOPIC_AUTHORIZATION_FAILED) fails its records at once; once it
/// is allowed (an ACL added), the next record asks for fresh metadata and is delivered, instead
/// of waiting on the refusal it cached until `max.block.ms`.
#[tokio::test(start_paused = true)]
async fn a_refused_topic_fails_at_once_and_the_next_record_asks_again() {
    let h = Harness::start(1, &[("t", 1)], |c| c).await;
    h.fake.set_topic_error("t", Some(29));
    let start = Instant::now();
    let e = settle(h.send("t", Some(0), "denied").await, Duration::from_secs(5)).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Broker(krab_protocol::error_code::ErrorCode::TopicAuthorizationFailed), "{e}");
    assert!(!e.is_retriable(), "{e}");
    assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
    // Still refused: the next record fails too, after asking again, not after max.block.ms.
    let asked = h.fake.requests(ApiKey::Metadata);
    let e = settle(h.send("t", Some(0), "denied again").await, Duration::from_secs(5)).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Broker(krab_protocol::error_code::ErrorCode::TopicAuthorizationFailed), "{e}");
    assert!(h.fake.requests(ApiKey::Metadata) > asked, "the second record did not ask for metadata");
    h.fake.set_topic_error("t", None);
    let start = Instant::now();
    settle(h.send("t", Some(0), "allowed").await, Duration::from_secs(5)).await.expect("delivered once allowed");
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert_eq!(h.log("t", 0), vec!["allowed"]);
}
