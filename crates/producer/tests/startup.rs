//! Starting an idempotent producer against a cluster whose transaction coordinator is not ready
//! yet, as on a new Apache Kafka cluster: InitProducerId answers COORDINATOR_LOAD_IN_PROGRESS or
//! COORDINATOR_NOT_AVAILABLE until `__transaction_state` is created and loaded.

mod support;

use krab_producer::{ErrorKind, Producer};
use krab_protocol::error_code::ErrorCode;
use std::time::Duration;
use support::{FakeCluster, config, settle};

/// Retriable InitProducerId answers are asked again after the backoff; the producer then starts
/// and delivers with the id it got.
#[tokio::test(start_paused = true)]
async fn connect_asks_again_while_the_coordinator_loads() {
    let fake = FakeCluster::new(3);
    fake.create_topic("t", 3);
    // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, then success.
    fake.fail_init_producer_id([14, 15, 14]);
    let producer = Producer::connect_with(config(&fake), fake.transport()).await.expect("the producer starts");
    let d = producer.send(krab_producer::Record::new("t", "v").partition(0)).await.expect("accepted");
    let meta = settle(d, Duration::from_secs(5)).await.expect("delivered");
    assert_eq!((meta.partition, meta.offset), (0, 0));
}

/// A code no retry can fix fails `connect` at once, with that code.
#[tokio::test(start_paused = true)]
async fn connect_fails_on_a_fatal_init_producer_id_answer() {
    let fake = FakeCluster::new(1);
    fake.create_topic("t", 1);
    // CLUSTER_AUTHORIZATION_FAILED.
    fake.fail_init_producer_id([31]);
    let started = tokio::time::Instant::now();
    let err = Producer::connect_with(config(&fake), fake.transport()).await.err().expect("connect fails");
    assert_eq!(err.kind(), ErrorKind::Broker(ErrorCode::from_code(31)));
    assert!(started.elapsed() < Duration::from_secs(1), "failed after {:?}", started.elapsed());
}

/// Records sent while their topic is still being created wait for it; records sent after it
/// became usable queue behind them: the partition's log holds them all in send order.
#[tokio::test(start_paused = true)]
async fn records_sent_around_a_topic_becoming_usable_keep_send_order() {
    let fake = FakeCluster::new(2);
    fake.set_auto_create(Some(2));
    let producer = Producer::connect_with(config(&fake), fake.transport()).await.expect("the producer starts");
    let mut deliveries = Vec::new();
    for i in 0..60 {
        let record = krab_producer::Record::new("fresh", format!("r{i}")).partition(1);
        deliveries.push(producer.send(record).await.expect("accepted"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for d in deliveries {
        settle(d, Duration::from_secs(5)).await.expect("delivered");
    }
    let expected: Vec<String> = (0..60).map(|i| format!("r{i}")).collect();
    assert_eq!(support::values(&fake, "fresh", 1), expected);
}
