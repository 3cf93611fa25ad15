//! Records sent to an explicit partition the producer does not know: the topic may have grown
//! since the producer's last metadata, so it refreshes before failing the record.

mod support;

use krab_producer::ErrorKind;
use std::time::Duration;
use support::{Harness, settle};

/// An explicit partition beyond the partitions the producer knows, in a topic that has grown
/// since: the producer refreshes its metadata and delivers the record there.
#[tokio::test(start_paused = true)]
async fn an_explicit_partition_in_a_grown_topic_is_delivered() {
    let h = Harness::start(2, &[("t", 2)], |c| c).await;
    settle(h.send("t", Some(1), "known").await, Duration::from_secs(5)).await.expect("delivered");
    h.fake.create_topic("t", 4);
    let before = h.producer.metadata_requests();
    let d = h.send("t", Some(3), "grown").await;
    let after = h.send("t", Some(3), "behind").await;
    let meta = settle(d, Duration::from_secs(5)).await.expect("delivered after a refresh");
    assert_eq!(meta.partition, 3);
    settle(after, Duration::from_secs(5)).await.expect("delivered");
    assert_eq!(h.log("t", 3), vec!["grown", "behind"]);
    assert!(h.producer.metadata_requests() > before, "metadata was refreshed");
}

/// An explicit partition that does not exist even after a refresh fails with
/// `InvalidPartition`, well within `max.block.ms`; the topic's other records are unaffected.
#[tokio::test(start_paused = true)]
async fn an_explicit_partition_that_does_not_exist_fails_after_a_refresh() {
    let h = Harness::start(1, &[("t", 2)], |c| c.max_block(Duration::from_secs(30))).await;
    settle(h.send("t", Some(0), "known").await, Duration::from_secs(5)).await.expect("delivered");
    let before = h.producer.metadata_requests();
    let started = tokio::time::Instant::now();
    let d = h.send("t", Some(7), "nowhere").await;
    let next = h.send("t", Some(0), "next").await;
    let e = settle(d, Duration::from_secs(30)).await.expect_err("no such partition");
    assert_eq!(e.kind(), ErrorKind::InvalidPartition, "{e}");
    assert!(started.elapsed() < Duration::from_secs(30), "failed within max.block.ms");
    assert!(h.producer.metadata_requests() > before, "metadata was refreshed before failing");
    settle(next, Duration::from_secs(5)).await.expect("delivered");
    assert_eq!(h.log("t", 0), vec!["known", "next"]);
}
