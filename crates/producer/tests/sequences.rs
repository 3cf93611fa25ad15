//! Sequence numbers under failures: the cascade of OUT_OF_ORDER_SEQUENCE_NUMBER behind one failed
//! batch is not a lost sequence (F6), and batches that may already be in the log are never
//! numbered again (F2).

mod support;

use krab_producer::ProducerConfig;
use krab_protocol::ApiKey;
use std::time::Duration;
use support::{Harness, ProduceStep, settle};

/// One record per batch, up to 5 batches of a partition in flight.
fn small_batches(c: ProducerConfig) -> ProducerConfig {
    let mut c = c;
    c.batch_size = 1;
    c
}

/// (producer id, epoch, base sequence) of every batch in a partition's log.
fn stamps(h: &Harness, topic: &str, partition: i32) -> Vec<(i64, i16, i32)> {
    h.fake.log(topic, partition).batches().iter().map(|b| (b.producer_id, b.producer_epoch, b.base_sequence)).collect()
}

/// Five batches in flight; the first fails once with a retriable code (NOT_ENOUGH_REPLICAS),
/// so the broker answers the four behind it OUT_OF_ORDER_SEQUENCE_NUMBER. That cascade is not
/// a lost sequence: no epoch bump, no new producer id; the batches are retried in order and
/// each is in the log once.
#[tokio::test(start_paused = true)]
async fn the_out_of_order_cascade_behind_a_retried_batch_is_just_retried() {
    let h = Harness::start(1, &[("t", 1)], small_batches).await;
    settle(h.send("t", Some(0), "warm").await, Duration::from_secs(5)).await.expect("delivered");
    h.fake.script_produce("t", 0, [ProduceStep::Error(19)]);
    let mut deliveries = Vec::new();
    for i in 1..=5 {
        deliveries.push(h.send("t", Some(0), &format!("b{i}")).await);
    }
    for d in deliveries {
        settle(d, Duration::from_secs(10)).await.expect("delivered");
    }
    assert_eq!(h.log("t", 0), vec!["warm", "b1", "b2", "b3", "b4", "b5"]);
    let expected: Vec<(i64, i16, i32)> = (0..6).map(|s| (1000, 0, s)).collect();
    assert_eq!(stamps(&h, "t", 0), expected, "same producer id and epoch, sequences in order");
    assert_eq!(h.fake.requests(ApiKey::InitProducerId), 1);
    assert!(h.fake.requests(ApiKey::Produce) >= 10, "b2..b5 were answered out of order and resent");
}
