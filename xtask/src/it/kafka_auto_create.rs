//! `kafka/auto-create`: the first send to a topic that does not exist yet. Apache Kafka creates it
//! (`auto.create.topics.enable`), and its first Metadata answer is LEADER_NOT_AVAILABLE with no
//! partitions: the producer must ask again until the topic is usable and deliver within 2 s, not
//! at the delivery timeout.

use super::kafka_support::{KafkaCtx, METADATA};
use super::support::{ms, producer_config};
use super::test_cluster::{Caps, require};
use anyhow::{Result, ensure};
use krab_producer::{Producer, Record};
use std::time::{Duration, Instant};

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    require(&*ctx.kafka, Caps { counts_requests: true, ..Caps::default() })?;
    let topic: std::sync::Arc<str> = format!("krab-it-auto-create-{}", std::process::id()).into();
    let mut config = producer_config(&ctx.kafka.bootstrap())?;
    // Fail fast if the topic is never re-asked for (instead of the default 120 s).
    config.delivery_timeout = Some(Duration::from_secs(20));
    let producer = Producer::connect(config).await?;
    let before = ctx.kafka.requests(METADATA);
    let start = Instant::now();
    let mut futures = Vec::new();
    for i in 0..100 {
        futures.push(producer.send(Record::new(topic.clone(), format!("auto-{i}")).key(format!("k{i}"))).await?);
    }
    // When the producer's own metadata first showed the topic usable (Kafka's creation time).
    let usable = {
        let producer = producer.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            loop {
                let snap = producer.cluster().snapshot();
                if snap.topic(&topic).is_some_and(|t| t.error.is_ok() && !t.partitions.is_empty()) {
                    return start.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut first = None;
    let mut last = Duration::ZERO;
    for f in futures {
        let m = f.await?;
        let at = start.elapsed();
        first.get_or_insert(at);
        last = at;
        ensure!(m.offset >= 0, "acknowledged without an offset: {m:?}");
    }
    let metadata = ctx.kafka.requests(METADATA) - before;
    let usable = usable.await?;
    producer.close(Duration::from_secs(10)).await?;
    let first = first.unwrap_or_default();
    ensure!(
        last <= Duration::from_secs(2),
        "100 records to a new topic took {} (first {}; usable in the producer's metadata after {}, \
         {metadata} Metadata requests): over 2 s",
        ms(last),
        ms(first),
        ms(usable)
    );
    Ok(format!(
        "100 records to a new topic acknowledged in {} (first in {}; usable in the producer's metadata after {}), \
         {metadata} Metadata requests at the proxies",
        ms(last),
        ms(first),
        ms(usable)
    ))
}
