//! F5: epoch bumps. The producer bumps its epoch itself (epoch + 1, sequences from 0) and asks
//! for a producer id only for its first one or when the epoch is used up; a failed
//! InitProducerId is asked again after retry.backoff.ms, doubling up to retry.backoff.max.ms,
//! and a non-retriable answer fails buffered and later records with that code.

mod support;

use krab_producer::{ErrorKind, Producer};
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::{AnyRequest, InitProducerIdResponse};
use std::sync::Arc;
use std::sync::atomic::{AtomicI16, AtomicU32, Ordering};
use std::time::Duration;
use support::{FakeCluster, Harness, ProduceStep, Reply, settle};

/// (producer id, epoch, base sequence) of every batch in a partition's log.
fn stamps(h: &Harness, topic: &str, partition: i32) -> Vec<(i64, i16, i32)> {
    h.fake.log(topic, partition).batches().iter().map(|b| (b.producer_id, b.producer_epoch, b.base_sequence)).collect()
}

/// A fake cluster whose first InitProducerId hands out producer 5000 at the last epoch
/// (i16::MAX), so the next bump needs a new producer id; later InitProducerId requests are
/// answered, 1 ms later, with `code` (0: a fresh producer id, 6000).
async fn exhausted(
    code: Arc<AtomicI16>,
    tweak: impl FnOnce(krab_producer::ProducerConfig) -> krab_producer::ProducerConfig,
) -> Harness {
    let fake = FakeCluster::new(1);
    fake.create_topic("t", 2);
    let first = AtomicU32::new(0);
    fake.set_handler(move |_, request| match request {
        AnyRequest::InitProducerId(_) => {
            let (error_code, producer_id, producer_epoch) = if first.fetch_add(1, Ordering::SeqCst) == 0 {
                (0, 5000, i16::MAX)
            } else {
                match code.load(Ordering::SeqCst) {
                    0 => (0, 6000, 0),
                    c => (c, -1, -1),
                }
            };
            let response = InitProducerIdResponse { error_code, producer_id, producer_epoch, ..Default::default() };
            Reply::after(Duration::from_millis(1), Reply::respond(response))
        }
        _ => Reply::Default,
    });
    let producer = Producer::connect_with(tweak(support::config(&fake)), fake.transport()).await.expect("starts");
    Harness { fake, producer }
}

/// A batch failing for good leaves a gap in its partition's sequence numbers: the producer
/// bumps the epoch itself, without an InitProducerId request, and the next batch carries the
/// same producer id, epoch + 1 and sequence 0.
#[tokio::test(start_paused = true)]
async fn the_epoch_is_bumped_locally() {
    let h = Harness::start(1, &[("t", 1)], |c| c).await;
    settle(h.send("t", Some(0), "a").await, Duration::from_secs(5)).await.expect("delivered");
    h.fake.script_produce("t", 0, [ProduceStep::Error(10)]);
    let e = settle(h.send("t", Some(0), "too-large").await, Duration::from_secs(5)).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Broker(ErrorCode::MessageTooLarge));
    settle(h.send("t", Some(0), "b").await, Duration::from_secs(5)).await.expect("delivered");
    assert_eq!(stamps(&h, "t", 0), vec![(1000, 0, 0), (1000, 1, 0)]);
    assert_eq!(h.fake.requests(ApiKey::InitProducerId), 1, "only the first producer id was asked for");
}

/// With the epoch used up, a bump needs a new producer id. While InitProducerId keeps failing
/// with a retriable code, it is asked at most once per backoff (100 ms doubling to 1 s), not at
/// the pace of the round trip; once it succeeds, records go out under the new producer id.
#[tokio::test(start_paused = true)]
async fn a_failing_init_producer_id_is_asked_again_after_backoff() {
    let code = Arc::new(AtomicI16::new(15)); // COORDINATOR_NOT_AVAILABLE, retriable
    let h = exhausted(code.clone(), |c| c).await;
    settle(h.send("t", Some(0), "a").await, Duration::from_secs(5)).await.expect("delivered");
    h.fake.script_produce("t", 0, [ProduceStep::Error(10)]);
    settle(h.send("t", Some(0), "too-large").await, Duration::from_secs(5)).await.expect_err("refused");
    let before = h.fake.requests(ApiKey::InitProducerId);
    // Only t-0 needs the new id; it waits for it.
    let later = h.send("t", Some(0), "later").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let asked = h.fake.requests(ApiKey::InitProducerId) - before;
    // 100 + 200 + 400 + 800 + 1000 + 1000 ms: about 6 in 4 s.
    eprintln!("InitProducerId requests in 4 s of failures: {asked}");
    assert!((3..=8).contains(&asked), "{asked} InitProducerId requests in 4 s");
    code.store(0, Ordering::SeqCst);
    settle(later, Duration::from_secs(5)).await.expect("delivered under the new producer id");
    assert_eq!(stamps(&h, "t", 0), vec![(5000, i16::MAX, 0), (6000, 0, 0)]);
}

/// A non-retriable InitProducerId answer (CLUSTER_AUTHORIZATION_FAILED) is fatal: the records
/// waiting for the bump and those sent afterwards fail with that code, not with a delivery
/// timeout.
#[tokio::test(start_paused = true)]
async fn a_fatal_init_producer_id_answer_fails_records_with_its_code() {
    let code = Arc::new(AtomicI16::new(31)); // CLUSTER_AUTHORIZATION_FAILED
    let h =
        exhausted(code, |c| c.delivery_timeout(Duration::from_secs(5)).request_timeout(Duration::from_secs(1))).await;
    settle(h.send("t", Some(0), "a").await, Duration::from_secs(5)).await.expect("delivered");
    h.fake.script_produce("t", 0, [ProduceStep::Error(10)]);
    settle(h.send("t", Some(0), "too-large").await, Duration::from_secs(5)).await.expect_err("refused");
    // Sent while the new producer id is being asked for (the answer takes 1 ms).
    let buffered = h.send("t", Some(0), "buffered").await;
    let e = settle(buffered, Duration::from_secs(10)).await.expect_err("fails");
    assert_eq!(e.kind(), ErrorKind::Broker(ErrorCode::ClusterAuthorizationFailed), "{e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let e = settle(h.send("t", Some(1), "after").await, Duration::from_secs(10)).await.expect_err("fails");
    assert_eq!(e.kind(), ErrorKind::Broker(ErrorCode::ClusterAuthorizationFailed), "{e}");
    assert!(e.to_string().contains("CLUSTER_AUTHORIZATION_FAILED"), "{e}");
    assert_eq!(h.log("t", 0), vec!["a"]);
    assert!(h.log("t", 1).is_empty());
}
