//! A `Producer` over a cluster of in-memory fake brokers (krab-testkit), with paused-time
//! friendly helpers.
#![allow(dead_code, unused_imports, unreachable_pub)]

use bytes::Bytes;
use krab_producer::{DeliveryFuture, Error, Producer, ProducerConfig, Record, RecordMetadata};
pub use krab_testkit::{FakeCluster, ProduceStep, Reply};
use std::time::Duration;

/// A fake cluster of `brokers` brokers with the given topics, and a producer over it whose
/// config `tweak` may adjust (defaults: linger 0, retry backoff 100 ms, max 1 s).
pub struct Harness {
    /// The fake brokers.
    pub fake: FakeCluster,
    /// The producer under test.
    pub producer: Producer,
}

/// The config the harness starts from.
pub fn config(fake: &FakeCluster) -> ProducerConfig {
    ProducerConfig::from_brokers([fake.addr(1)])
        .linger(Duration::ZERO)
        .retry_backoff(Duration::from_millis(100))
        .retry_backoff_max(Duration::from_secs(1))
}

impl Harness {
    /// Starts a harness.
    pub async fn start(
        brokers: i32,
        topics: &[(&str, i32)],
        tweak: impl FnOnce(ProducerConfig) -> ProducerConfig,
    ) -> Self {
        Self::try_start(brokers, topics, tweak).await.expect("the producer starts")
    }

    /// Starts a harness; the error if the producer does not start.
    pub async fn try_start(
        brokers: i32,
        topics: &[(&str, i32)],
        tweak: impl FnOnce(ProducerConfig) -> ProducerConfig,
    ) -> Result<Self, Error> {
        let fake = FakeCluster::new(brokers);
        for (t, n) in topics {
            fake.create_topic(t, *n);
        }
        let producer = Producer::connect_with(tweak(config(&fake)), fake.transport()).await?;
        Ok(Self { fake, producer })
    }

    /// Sends a record with this value to `topic` (partition chosen by the partitioner unless given).
    pub async fn send(&self, topic: &str, partition: Option<i32>, value: &str) -> DeliveryFuture {
        let mut record = Record::new(topic, Bytes::copy_from_slice(value.as_bytes()));
        if let Some(p) = partition {
            record = record.partition(p);
        }
        self.producer.send(record).await.expect("send accepts the record")
    }

    /// The values in a partition's log, as strings.
    pub fn log(&self, topic: &str, partition: i32) -> Vec<String> {
        values(&self.fake, topic, partition)
    }
}

/// The values in a partition's log, as strings.
pub fn values(fake: &FakeCluster, topic: &str, partition: i32) -> Vec<String> {
    fake.log(topic, partition)
        .values()
        .into_iter()
        .map(|v| String::from_utf8(v.unwrap_or_default().to_vec()).expect("utf-8 values"))
        .collect()
}

/// Awaits a delivery, failing the test if it does not settle within `within` (tokio time).
pub async fn settle(delivery: DeliveryFuture, within: Duration) -> Result<RecordMetadata, Error> {
    tokio::time::timeout(within, delivery).await.expect("the delivery settles in time")
}

/// A fake cluster with the given topics and a producer over it using `partitioner`.
pub async fn with_partitioner(
    brokers: i32,
    topics: &[(&str, i32)],
    partitioner: std::sync::Arc<dyn krab_producer::Partitioner>,
    tweak: impl FnOnce(ProducerConfig) -> ProducerConfig,
) -> Harness {
    let fake = FakeCluster::new(brokers);
    for (t, n) in topics {
        fake.create_topic(t, *n);
    }
    let config = tweak(config(&fake));
    let cluster = fake.connect(fake.config()).await.expect("cluster connects");
    let resolver = krab_cluster::MetadataResolver::new(cluster.clone(), krab_cluster::ResolverConfig::default());
    let producer = Producer::with_parts(config, cluster, krab_cluster::BoxResolver::new(resolver), partitioner)
        .await
        .expect("the producer starts");
    Harness { fake, producer }
}
