//! The flush loop's life: a loop killed by a panic fails everything pending instead of hanging
//! (F4), huge durations mean "never" (F4), close reports what it abandoned (F14), flush and
//! send honour their bounds (max.block.ms, flush_within).

mod support;

use krab_producer::{ErrorKind, PartitionInfo, Partitioner};
use std::sync::Arc;
use std::time::Duration;
use support::{Harness, ProduceStep, settle, with_partitioner};

/// A partitioner that indexes its (empty) list of available partitions: it panics.
struct Panicky;

impl Partitioner for Panicky {
    fn partition(&self, _: &str, _: Option<&[u8]>, _: Option<&[u8]>, p: &PartitionInfo<'_>) -> Option<i32> {
        let none: &[i32] = &[];
        Some(none[p.count as usize])
    }
}

/// A panic inside the flush loop (here in a user partitioner) fails the pending deliveries with
/// Closed; later send, flush and close return errors at once instead of hanging.
#[tokio::test(start_paused = true)]
async fn a_panicking_partitioner_fails_everything_instead_of_hanging() {
    let h = with_partitioner(1, &[("t", 2)], Arc::new(Panicky), |c| c).await;
    let pinned = h.send("t", Some(0), "explicit").await;
    let placed = h.send("t", None, "placed").await;
    let e = settle(placed, Duration::from_secs(5)).await.expect_err("the loop died");
    assert_eq!(e.kind(), ErrorKind::Closed);
    // The record before it was either delivered or failed: it settles either way.
    let _ = settle(pinned, Duration::from_secs(5)).await;
    let later = tokio::time::timeout(Duration::from_secs(5), h.producer.send(krab_producer::Record::new("t", "x")))
        .await
        .expect("send does not hang");
    match later {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Closed),
        Ok(d) => assert_eq!(settle(d, Duration::from_secs(5)).await.unwrap_err().kind(), ErrorKind::Closed),
    }
    let flushed = tokio::time::timeout(Duration::from_secs(5), h.producer.flush()).await.expect("flush does not hang");
    assert_eq!(flushed.unwrap_err().kind(), ErrorKind::Closed);
    tokio::time::timeout(Duration::from_secs(5), h.producer.close(Duration::from_secs(10)))
        .await
        .expect("close does not hang")
        .expect("nothing left to abandon");
}

/// Duration::MAX for linger, delivery and request timeouts, and for close, means "never": no
/// overflow panic; flush sends the lingering batch, close(Duration::MAX) returns once done.
#[tokio::test(start_paused = true)]
async fn duration_max_everywhere_means_never_and_does_not_panic() {
    let h = Harness::start(1, &[("t", 1)], |c| {
        c.linger(Duration::MAX)
            .delivery_timeout(Duration::MAX)
            .request_timeout(Duration::MAX)
            .retry_backoff_max(Duration::MAX)
            .max_block(Duration::MAX)
    })
    .await;
    let d = h.send("t", None, "lingering").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(h.log("t", 0).is_empty(), "lingers until flushed");
    h.producer.flush_within(Duration::from_secs(5)).await.expect("flushed");
    settle(d, Duration::from_secs(1)).await.expect("delivered");
    let late = h.send("t", None, "at-close").await;
    h.producer.close(Duration::MAX).await.expect("close delivers everything");
    settle(late, Duration::from_secs(1)).await.expect("delivered by close");
    assert_eq!(h.log("t", 0), vec!["lingering", "at-close"]);
}

/// Close at its deadline fails what is left with Closed and says how many records it abandoned.
#[tokio::test(start_paused = true)]
async fn close_names_the_records_it_abandoned() {
    let h = Harness::start(1, &[("t", 1)], |c| c.enable_idempotence(false)).await;
    h.fake.script_produce("t", 0, [ProduceStep::AppendThenHang]);
    let a = h.send("t", None, "a").await;
    let b = h.send("t", None, "b").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = h.producer.close(Duration::from_secs(1)).await.expect_err("records were abandoned");
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert!(e.to_string().contains("abandoned 2 "), "{e}");
    for d in [a, b] {
        assert_eq!(settle(d, Duration::from_secs(1)).await.unwrap_err().kind(), ErrorKind::Closed);
    }
    // A second close after the first one finished: nothing to wait for.
    h.producer.close(Duration::from_secs(1)).await.expect("already closed");
}

/// flush_within gives up with Timeout while a broker hangs; the records are still pending.
#[tokio::test(start_paused = true)]
async fn flush_within_times_out_while_a_broker_hangs() {
    let h = Harness::start(1, &[("t", 1)], |c| c.enable_idempotence(false)).await;
    h.fake.script_produce("t", 0, [ProduceStep::Delay(Duration::from_secs(10))]);
    let d = h.send("t", None, "slow").await;
    let e = h.producer.flush_within(Duration::from_secs(2)).await.expect_err("times out");
    assert_eq!(e.kind(), ErrorKind::Timeout);
    settle(d, Duration::from_secs(20)).await.expect("delivered after the delay");
}

/// send waits for buffer room at most max.block.ms, then fails with Timeout.
#[tokio::test(start_paused = true)]
async fn send_waits_for_buffer_room_at_most_max_block() {
    let h = Harness::start(1, &[("t", 1)], |c| {
        c.enable_idempotence(false).buffer_memory(1024).batch_size(512).max_block(Duration::from_secs(1))
    })
    .await;
    h.fake.script_produce("t", 0, [ProduceStep::AppendThenHang]);
    let big = "x".repeat(700);
    let _held = h.send("t", None, &big).await;
    let e = tokio::time::timeout(Duration::from_secs(5), h.producer.send(krab_producer::Record::new("t", big.clone())))
        .await
        .expect("bounded by max.block.ms")
        .expect_err("no room");
    assert_eq!(e.kind(), ErrorKind::Timeout);
}
