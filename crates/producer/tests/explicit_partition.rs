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

/// Records to partitions that do not exist, interleaved with records to partitions that do:
/// a refresh settles every record queued behind the first missing one (they arrived before the
/// refresh, so its answer holds for them too: not one refresh each), `flush` returns once every
/// record is settled, and the producer's stats count both outcomes.
#[tokio::test(start_paused = true)]
async fn records_behind_a_missing_partition_settle_after_one_refresh() {
    let h = Harness::start(1, &[("t", 3)], |c| c).await;
    let before = h.producer.metadata_requests();
    let mut failed = Vec::new();
    for i in 0..600 {
        let d = h.send("t", Some(i % 6), &format!("v{i}")).await;
        if i % 6 >= 3 {
            failed.push(d);
        }
    }
    tokio::time::timeout(Duration::from_secs(30), h.producer.flush()).await.expect("flush returns").expect("flush");
    for p in 0..3 {
        assert_eq!(h.log("t", p).len(), 100, "partition {p} holds its records once flush returned");
    }
    for d in failed {
        let e = settle(d, Duration::ZERO).await.expect_err("no such partition");
        assert_eq!(e.kind(), ErrorKind::InvalidPartition, "{e}");
    }
    let refreshes = h.producer.metadata_requests() - before;
    // One for the records sent before its answer, one for those sent after.
    assert!(refreshes <= 2, "{refreshes} metadata requests for 300 records to missing partitions");
    let stats = h.producer.stats();
    assert_eq!(stats.values().map(|s| s.acked).sum::<u64>(), 300);
    assert_eq!(stats.values().map(|s| s.failed).sum::<u64>(), 300, "{stats:?}");
}

/// The same records to a topic that does not exist yet and is auto-created with 3 partitions
/// (Kafka first answers LEADER_NOT_AVAILABLE): `flush` still waits for every record.
#[tokio::test(start_paused = true)]
async fn flush_waits_for_records_to_an_auto_created_topic_with_fewer_partitions() {
    let h = Harness::start(2, &[], |c| c).await;
    h.fake.set_auto_create(Some(3));
    let mut deliveries = Vec::new();
    for i in 0..600 {
        deliveries.push((i % 6, h.send("fresh", Some(i % 6), &format!("v{i}")).await));
    }
    tokio::time::timeout(Duration::from_secs(30), h.producer.flush()).await.expect("flush returns").expect("flush");
    let stats = h.producer.stats();
    let settled = stats.values().map(|s| s.acked + s.failed).sum::<u64>();
    assert_eq!(settled, 600, "every record settled once flush returned: {stats:?}");
    for (p, d) in deliveries {
        let r = settle(d, Duration::ZERO).await;
        if p < 3 {
            r.expect("delivered");
        } else {
            assert_eq!(r.expect_err("no such partition").kind(), ErrorKind::InvalidPartition);
        }
    }
    for p in 0..3 {
        assert_eq!(h.log("fresh", p).len(), 100);
    }
}
