//! F13: the loop's recovery bookkeeping ends when its reason does. A partition whose records all
//! failed stops counting as "recovering" (so later resolves are paced by retry.backoff.ms again),
//! and UNKNOWN_TOPIC_OR_PARTITION on produce re-resolves a bounded number of times, then fails
//! the records with the broker's error.

mod support;

use krab_producer::ErrorKind;
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use std::time::Duration;
use support::{Harness, ProduceStep, settle};
use tokio::time::Instant;

/// Partition t-1's leader (broker 2) is gone for good: its record expires. Afterwards a new,
/// auto-created topic (first answered LEADER_NOT_AVAILABLE) is asked for again after
/// retry.backoff.ms (100 ms), not after retry.backoff.max.ms (1 s) as if t-1 still recovered.
#[tokio::test(start_paused = true)]
async fn a_partition_whose_records_expired_no_longer_slows_resolves() {
    let h = Harness::start(2, &[("t", 2)], |c| {
        c.delivery_timeout(Duration::from_secs(3)).request_timeout(Duration::from_secs(1))
    })
    .await;
    h.fake.set_down(2, true);
    let lost = h.send("t", Some(1), "lost").await;
    let e = settle(lost, Duration::from_secs(10)).await.expect_err("its leader never came back");
    assert_eq!(e.kind(), ErrorKind::DeliveryTimeout, "{e}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.fake.set_auto_create(Some(1));
    let start = Instant::now();
    let d = h.send("fresh", Some(0), "first").await;
    settle(d, Duration::from_secs(5)).await.expect("delivered");
    eprintln!("auto-created topic delivered after {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_millis(600), "the second resolve waited {:?}", start.elapsed());
    assert_eq!(h.log("fresh", 0), vec!["first"]);
}

/// The leader keeps answering UNKNOWN_TOPIC_OR_PARTITION while metadata names the partition:
/// after a few re-resolves (5) the record fails with that code, long before the delivery
/// timeout (120 s).
#[tokio::test(start_paused = true)]
async fn unknown_topic_or_partition_on_produce_is_retried_a_bounded_number_of_times() {
    let h = Harness::start(1, &[("t", 1)], |c| c).await;
    h.fake.script_produce("t", 0, std::iter::repeat_n(ProduceStep::Error(3), 50));
    let start = Instant::now();
    let d = h.send("t", Some(0), "ghost").await;
    let e = settle(d, Duration::from_secs(60)).await.expect_err("fails with the broker's error");
    assert_eq!(e.kind(), ErrorKind::Broker(ErrorCode::UnknownTopicOrPartition), "{e}");
    assert!(start.elapsed() < Duration::from_secs(30), "failed after {:?}", start.elapsed());
    let produced = h.fake.requests(ApiKey::Produce);
    eprintln!("failed after {:?} and {produced} Produce requests", start.elapsed());
    assert!((5..=7).contains(&produced), "{produced} Produce requests");
    assert!(h.log("t", 0).is_empty());
}
