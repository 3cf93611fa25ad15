//! Sequence numbers under failures: the cascade of OUT_OF_ORDER_SEQUENCE_NUMBER behind one failed
//! batch is not a lost sequence (F6), and batches that may already be in the log are never
//! numbered again (F2).

mod support;

use krab_producer::ProducerConfig;
use krab_protocol::ApiKey;
use krab_protocol::messages::AnyRequest;
use krab_protocol::records::decode_batches;
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

/// (producer id, epoch, base sequence, first value) of every batch of `topic`-`partition` in
/// the Produce requests broker `broker` received, in order.
fn sent(h: &Harness, broker: i32, topic: &str, partition: i32) -> Vec<(i64, i16, i32, String)> {
    let mut out = Vec::new();
    for (_, request) in h.fake.broker(broker).received() {
        let AnyRequest::Produce(p) = request else { continue };
        for t in p.topic_data.iter().filter(|t| t.name == topic) {
            for d in t.partition_data.iter().filter(|d| d.index == partition) {
                let Some(bytes) = &d.records else { continue };
                for b in decode_batches(bytes).expect("a valid record set").batches {
                    let value = b.records[0].value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned());
                    out.push((b.producer_id, b.producer_epoch, b.base_sequence, value.unwrap_or_default()));
                }
            }
        }
    }
    out
}

/// F2 (a): partition t-1 (broker 2) has a batch written but unanswered (the request hangs until
/// the request timeout) when partition t-0 (broker 1) fails a batch for good. Only t-0 moves to
/// a new epoch; t-1's retry goes out with its first stamp, the broker recognises it as a
/// duplicate, and the record is in t-1's log once.
#[tokio::test(start_paused = true)]
async fn a_fatal_error_elsewhere_does_not_renumber_a_retry_of_unknown_outcome() {
    let h = Harness::start(2, &[("t", 2)], |c| {
        c.request_timeout(Duration::from_secs(2)).delivery_timeout(Duration::from_secs(30))
    })
    .await;
    for p in [0, 1] {
        settle(h.send("t", Some(p), &format!("warm-{p}")).await, Duration::from_secs(5)).await.expect("delivered");
    }
    h.fake.script_produce("t", 1, [ProduceStep::AppendThenHang]);
    h.fake.script_produce("t", 0, [ProduceStep::Error(10)]);
    let unknown = h.send("t", Some(1), "unknown").await;
    let refused = h.send("t", Some(0), "too-large").await;
    settle(refused, Duration::from_secs(5)).await.expect_err("MESSAGE_TOO_LARGE");
    settle(unknown, Duration::from_secs(20)).await.expect("delivered after its retry");
    settle(h.send("t", Some(0), "after").await, Duration::from_secs(5)).await.expect("delivered");
    let b_sent = sent(&h, 2, "t", 1);
    eprintln!("t-1 batches sent: {b_sent:?}");
    let retries: Vec<_> = b_sent.iter().filter(|s| s.3 == "unknown").collect();
    assert!(retries.len() >= 2, "sent, then retried: {b_sent:?}");
    assert!(retries.iter().all(|s| (s.0, s.1, s.2) == (1000, 0, 1)), "t-1 kept its stamp: {b_sent:?}");
    assert_eq!(h.log("t", 1), vec!["warm-1", "unknown"]);
    // t-0 alone moved to epoch 1, from sequence 0.
    assert_eq!(stamps(&h, "t", 0), vec![(1000, 0, 0), (1000, 1, 0)]);
    assert_eq!(h.log("t", 0), vec!["warm-0", "after"]);
}

/// F2 (b), the review's scenario: the broker writes b1..b5 but answers none of them (it stalls
/// until the request timeout), the producer retries them in order, and b1 comes back past its
/// delivery timeout. b2..b5 were written too: they must be retried with their first stamps
/// (the broker answers DUPLICATE_SEQUENCE_NUMBER), never renumbered under a new epoch, which
/// would write them twice.
#[tokio::test(start_paused = true)]
async fn batches_written_but_unacknowledged_are_never_renumbered() {
    let h = Harness::start(1, &[("t", 1)], |c| {
        small_batches(c).request_timeout(Duration::from_secs(2)).delivery_timeout(Duration::from_secs(5))
    })
    .await;
    settle(h.send("t", Some(0), "warm").await, Duration::from_secs(5)).await.expect("delivered");
    // b1..b5 are appended and hang; then b1's two retries hang too.
    h.fake.script_produce("t", 0, std::iter::repeat_n(ProduceStep::AppendThenHang, 7));
    let b1 = h.send("t", Some(0), "b1").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut rest = Vec::new();
    for i in 2..=5 {
        rest.push(h.send("t", Some(0), &format!("b{i}")).await);
    }
    let e = settle(b1, Duration::from_secs(20)).await.expect_err("b1 timed out");
    assert!(e.is_timeout(), "{e}");
    for d in rest {
        settle(d, Duration::from_secs(20)).await.expect("b2..b5 delivered: the broker had them");
    }
    assert_eq!(h.log("t", 0), vec!["warm", "b1", "b2", "b3", "b4", "b5"], "each once");
    let all = sent(&h, 1, "t", 0);
    eprintln!("t-0 batches sent: {all:?}");
    let renumbered: Vec<_> = all.into_iter().filter(|s| s.1 != 0).collect();
    assert!(renumbered.is_empty(), "sent under a new epoch: {renumbered:?}");
}
