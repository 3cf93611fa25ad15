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
    let Err(err) = Producer::connect_with(config(&fake), fake.transport()).await else {
        panic!("connect succeeded despite CLUSTER_AUTHORIZATION_FAILED");
    };
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

/// The first batch of a partition fails (a leader that is not ready yet answers with a
/// retriable error) while the next ones are in flight behind it, as on a topic Kafka has just
/// created: the broker rejects those with OUT_OF_ORDER_SEQUENCE_NUMBER. Whatever the producer
/// does to recover, the partition's log must hold every record once, in send order.
async fn first_batch_fails_with(code: i16) {
    use support::ProduceStep;
    let fake = FakeCluster::new(1);
    fake.create_topic("t", 1);
    let mut steps = vec![ProduceStep::Error(code)];
    steps.extend((0..8).map(|_| ProduceStep::Delay(Duration::from_millis(30))));
    fake.script_produce("t", 0, steps);
    let producer = Producer::connect_with(config(&fake).max_in_flight(5), fake.transport()).await.expect("starts");
    let mut deliveries = Vec::new();
    for i in 0..200 {
        let record = krab_producer::Record::new("t", format!("r{i}")).partition(0);
        deliveries.push(producer.send(record).await.expect("accepted"));
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for d in deliveries {
        settle(d, Duration::from_secs(30)).await.expect("delivered");
    }
    let expected: Vec<String> = (0..200).map(|i| format!("r{i}")).collect();
    assert_eq!(support::values(&fake, "t", 0), expected);
}

#[tokio::test(start_paused = true)]
async fn a_first_batch_refused_not_leader_keeps_send_order() {
    first_batch_fails_with(6).await;
}

#[tokio::test(start_paused = true)]
async fn a_first_batch_refused_not_enough_replicas_keeps_send_order() {
    first_batch_fails_with(19).await;
}
