//! The producer end to end against in-memory fake brokers: delivery, ordering and idempotence as
//! the brokers' logs see them.

mod support;

use krab_producer::ErrorKind;
use krab_protocol::error_code::ErrorCode;
use std::time::Duration;
use support::{Harness, ProduceStep, settle};

/// Records to one partition land in its log in order, once each, with consecutive offsets.
#[tokio::test(start_paused = true)]
async fn records_are_delivered_in_order_with_consecutive_offsets() {
    let h = Harness::start(3, &[("t", 3)], |c| c).await;
    let mut deliveries = Vec::new();
    for i in 0..20 {
        deliveries.push(h.send("t", Some(1), &format!("r{i}")).await);
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        let meta = settle(d, Duration::from_secs(5)).await.expect("delivered");
        assert_eq!((meta.partition, meta.offset), (1, i as i64));
    }
    let expected: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    assert_eq!(h.log("t", 1), expected);
    assert!(h.log("t", 0).is_empty());
}

/// Batches carry the producer id the broker handed out, sequences counting from 0.
#[tokio::test(start_paused = true)]
async fn batches_carry_the_producer_id_and_sequences_from_zero() {
    let h = Harness::start(1, &[("t", 1)], |c| c).await;
    for i in 0..3 {
        settle(h.send("t", Some(0), &format!("r{i}")).await, Duration::from_secs(5)).await.expect("delivered");
    }
    let log = h.fake.log("t", 0);
    let ids: Vec<(i64, i16, i32)> =
        log.batches().iter().map(|b| (b.producer_id, b.producer_epoch, b.base_sequence)).collect();
    assert_eq!(ids, vec![(1000, 0, 0), (1000, 0, 1), (1000, 0, 2)]);
}

/// A batch the broker appended before the connection dropped is resent with the same sequence:
/// the broker reports a duplicate, the record is delivered, and the log holds it once.
#[tokio::test(start_paused = true)]
async fn a_batch_appended_before_the_connection_dropped_is_in_the_log_once() {
    let h = Harness::start(1, &[("t", 1)], |c| c).await;
    h.fake.script_produce("t", 0, [ProduceStep::AppendThenDrop]);
    let d = h.send("t", Some(0), "once").await;
    settle(d, Duration::from_secs(10)).await.expect("delivered after the retry");
    assert_eq!(h.log("t", 0), vec!["once"]);
    assert_eq!(h.fake.state().script_left("t", 0), 0);
}

/// Without idempotence, a per-partition retriable error is retried after backoff and the record
/// delivered; a fatal one fails the record with the broker's code.
#[tokio::test(start_paused = true)]
async fn retriable_errors_are_retried_and_fatal_ones_fail_the_record() {
    let h = Harness::start(1, &[("t", 2)], |c| c.enable_idempotence(false)).await;
    // NOT_ENOUGH_REPLICAS (19) is retriable; MESSAGE_TOO_LARGE (10) is not.
    h.fake.script_produce("t", 0, [ProduceStep::Error(19), ProduceStep::Error(19)]);
    h.fake.script_produce("t", 1, [ProduceStep::Error(10)]);
    let ok = h.send("t", Some(0), "retried").await;
    let bad = h.send("t", Some(1), "refused").await;
    settle(ok, Duration::from_secs(10)).await.expect("delivered after two retries");
    let e = settle(bad, Duration::from_secs(10)).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Broker(ErrorCode::MessageTooLarge));
    assert_eq!(h.log("t", 0), vec!["retried"]);
    assert!(h.log("t", 1).is_empty());
}
