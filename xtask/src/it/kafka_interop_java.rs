//! `kafka/interop-java`: what krab writes to Apache Kafka — every codec, headers (a null-valued one
//! too), null and empty keys and values, explicit timestamps — Kafka's Java client reads back
//! identically; and keys "a".."z" land where the Java producer puts them.

use super::kafka_support::{KafkaCtx, kctl};
use super::support::producer_config;
use super::tansu_codecs::{CODECS, Reader, codecs_roundtrip};
use anyhow::{Result, bail};
use krab_producer::{Producer, Record};
use std::time::Duration;

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    let bootstrap = ctx.kafka.bootstrap();
    for codec in CODECS {
        let topic = format!("krab-it-java-codec-{}", codec.name());
        kctl(&ctx.kafka, move |k| k.create_topic(&topic, 3, 3, &[])).await?;
    }
    let codecs = codecs_roundtrip(&bootstrap, "krab-it-java-codec", Reader::Java(ctx.java)).await?;

    // Key placement: the Java producer's partitioner against krab's, on the same topics.
    let keys: Vec<String> = (b'a'..=b'z').map(|c| (c as char).to_string()).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut problems = Vec::new();
    for partitions in [12, 6] {
        let java_topic = format!("krab-it-java-keys-{partitions}-java");
        let krab_topic = format!("krab-it-java-keys-{partitions}-krab");
        for t in [java_topic.clone(), krab_topic.clone()] {
            kctl(&ctx.kafka, move |k| k.create_topic(&t, partitions, 3, &[])).await?;
        }
        let java = ctx.java.key_partitions(&bootstrap, &java_topic, &key_refs).await?;
        let producer = Producer::connect(producer_config(&bootstrap)?).await?;
        let topic: std::sync::Arc<str> = krab_topic.as_str().into();
        let mut futures = Vec::new();
        for k in &keys {
            futures.push(producer.send(Record::new(topic.clone(), k.clone()).key(k.clone())).await?);
        }
        let mut krab = Vec::new();
        for f in futures {
            krab.push(f.await?.partition);
        }
        producer.close(Duration::from_secs(10)).await?;
        for (k, p) in keys.iter().zip(&krab) {
            if java.get(k) != Some(p) {
                problems.push(format!("{partitions} partitions, key {k:?}: Java producer {:?}, krab {p}", java.get(k)));
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(format!("{codecs} by the Java client; keys a..z on the Java producer's partitions (12 and 6 partitions)"))
}
