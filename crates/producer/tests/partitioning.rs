//! Where the producer puts records: the built-in partitioners through the flush loop and the
//! contract of a custom [`Partitioner`].

mod support;

use bytes::Bytes;
use krab_producer::{ErrorKind, PartitionInfo, Partitioner, PartitionerKind, Record, java_default_partition};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use support::{Harness, settle, with_partitioner};

/// `uniform_sticky` with keyed records: the sticky partition moves on once a batch's worth of
/// records went to it, as Java's built-in partitioner does with `partitioner.ignore.keys`, and
/// the records between two switches share a partition.
#[tokio::test(start_paused = true)]
async fn uniform_sticky_moves_on_with_keyed_records() {
    let h = Harness::start(1, &[("t", 8)], |c| c.partitioner(PartitionerKind::UniformSticky).batch_size(1024)).await;
    let mut deliveries = Vec::new();
    for i in 0..300 {
        let record = Record::new("t", Bytes::from(vec![b'v'; 100])).key(format!("key-{i}"));
        deliveries.push(h.producer.send(record).await.expect("accepted"));
    }
    let mut partitions = Vec::new();
    for d in deliveries {
        partitions.push(settle(d, Duration::from_secs(10)).await.expect("delivered").partition);
    }
    let distinct: BTreeSet<i32> = partitions.iter().copied().collect();
    assert!(distinct.len() >= 2, "300 records of ~100 bytes with batch.size 1024 stayed on {distinct:?}");
    // Sticky, not scattered: about one switch per batch.size of records.
    let switches = partitions.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches <= 300 / 5, "{switches} switches: records are scattered, not sticky");
}

/// The default partitioner's unkeyed records keep switching while keyed records of the same
/// topic fill other partitions.
#[tokio::test(start_paused = true)]
async fn default_sticky_moves_on_amid_keyed_records() {
    let h = Harness::start(1, &[("t", 8)], |c| c.batch_size(1024)).await;
    let mut unkeyed = Vec::new();
    for i in 0..300 {
        let keyed = Record::new("t", Bytes::from(vec![b'k'; 100])).key(format!("key-{i}"));
        drop(h.producer.send(keyed).await.expect("accepted"));
        let record = Record::new("t", Bytes::from(vec![b'v'; 100]));
        unkeyed.push(h.producer.send(record).await.expect("accepted"));
    }
    let mut partitions = BTreeSet::new();
    for d in unkeyed {
        partitions.insert(settle(d, Duration::from_secs(10)).await.expect("delivered").partition);
    }
    assert!(partitions.len() >= 2, "unkeyed records stayed on {partitions:?}");
}

/// Routes key `mine` to partition 1, key `bad` to a partition that does not exist, and has no
/// opinion on anything else.
#[derive(Debug)]
struct Picky;

impl Partitioner for Picky {
    fn partition(&self, _: &str, key: Option<&[u8]>, _: Option<&[u8]>, info: &PartitionInfo<'_>) -> Option<i32> {
        match key {
            Some(b"mine") => Some(1),
            Some(b"bad") => Some(info.count),
            Some(b"negative") => Some(-1),
            _ => None,
        }
    }
}

/// A custom partitioner's `None` defers to the default partitioner: keyed records land where
/// murmur2 puts them (so a key keeps its partition), unkeyed ones stick to one partition.
#[tokio::test(start_paused = true)]
async fn a_custom_partitioner_without_opinion_falls_back_to_the_default() {
    let h = with_partitioner(1, &[("t", 12)], Arc::new(Picky), |c| c).await;
    for letter in b'a'..=b'z' {
        for _ in 0..2 {
            let record = Record::new("t", Bytes::from_static(b"v")).key(vec![letter]);
            let d = h.producer.send(record).await.expect("accepted");
            let meta = settle(d, Duration::from_secs(5)).await.expect("delivered");
            assert_eq!(meta.partition, java_default_partition(&[letter], 12), "key {}", letter as char);
        }
    }
    let mine = h.producer.send(Record::new("t", Bytes::from_static(b"v")).key("mine")).await.expect("accepted");
    assert_eq!(settle(mine, Duration::from_secs(5)).await.expect("delivered").partition, 1);

    let mut unkeyed = BTreeSet::new();
    for _ in 0..20 {
        let d = h.producer.send(Record::new("t", Bytes::from_static(b"v"))).await.expect("accepted");
        unkeyed.insert(settle(d, Duration::from_secs(5)).await.expect("delivered").partition);
    }
    assert_eq!(unkeyed.len(), 1, "small unkeyed records stick to one partition: {unkeyed:?}");
}

/// A partition outside the topic from a custom partitioner fails that record with
/// `InvalidPartition`; the records around it are delivered.
#[tokio::test(start_paused = true)]
async fn a_custom_partitioner_out_of_range_fails_the_record() {
    let h = with_partitioner(1, &[("t", 3)], Arc::new(Picky), |c| c).await;
    let before = h.producer.send(Record::new("t", Bytes::from_static(b"before")).key("mine")).await.unwrap();
    let bad = h.producer.send(Record::new("t", Bytes::from_static(b"bad")).key("bad")).await.unwrap();
    let negative = h.producer.send(Record::new("t", Bytes::from_static(b"neg")).key("negative")).await.unwrap();
    let after = h.producer.send(Record::new("t", Bytes::from_static(b"after")).key("mine")).await.unwrap();
    for d in [bad, negative] {
        let e = settle(d, Duration::from_secs(5)).await.expect_err("out of range");
        assert_eq!(e.kind(), ErrorKind::InvalidPartition, "{e}");
    }
    for d in [before, after] {
        assert_eq!(settle(d, Duration::from_secs(5)).await.expect("delivered").partition, 1);
    }
    assert_eq!(h.log("t", 1), vec!["before", "after"]);
    let total: usize = (0..3).map(|p| h.log("t", p).len()).sum();
    assert_eq!(total, 2, "the rejected records went nowhere");
}
