//! `producer/tansu`: keys a..z land on the partitions Java's murmur2 partitioner picks.

use super::support::*;
use crate::brokers::Venv;
use crate::brokers::tansu::Tansu;
use anyhow::{Result, bail};
use krab_producer::{Producer, Record, java_default_partition};
use std::collections::HashMap;
use std::time::Duration;

/// Java's murmur2 partitions of keys "a".."z" in a 12-partition topic.
const JAVA_PARTITIONS_12: [i32; 26] =
    [4, 8, 10, 5, 2, 3, 3, 1, 2, 2, 8, 4, 8, 9, 11, 2, 3, 9, 11, 1, 3, 5, 6, 10, 0, 2];

pub(super) async fn key_placement(venv: &Venv, tansu: &Tansu) -> Result<()> {
    let mut problems = Vec::new();
    for partitions in [12, 6] {
        let topic = format!("krab-it-keys-{partitions}");
        tokio::task::block_in_place(|| tansu.create_topic(&topic, partitions as u32))?;
        let producer = Producer::connect(producer_config(&tansu.bootstrap())?).await?;
        let keys: Vec<String> = ('a'..='z').map(String::from).collect();
        let mut futures = Vec::new();
        for k in &keys {
            futures.push(producer.send(Record::new(topic.as_str(), format!("value of {k}")).key(k.clone())).await?);
        }
        producer.flush().await?;
        let mut acked = Vec::new();
        for f in futures {
            acked.push(f.await?.partition);
        }
        producer.close(Duration::from_secs(10)).await?;
        let (read, _) = consume_all(venv, &tansu.bootstrap(), &topic, partitions).await?;
        let consumed: HashMap<Vec<u8>, Vec<i32>> = read.iter().fold(HashMap::new(), |mut m, r| {
            m.entry(r.key.clone().unwrap_or_default()).or_default().push(r.partition);
            m
        });
        // Kafka's placement is toPositive(murmur2) % count; 6 divides 12, so the 6-partition table
        // follows from the 12-partition one.
        let expected: Vec<i32> = JAVA_PARTITIONS_12.iter().map(|p| p % partitions).collect();
        let krab: Vec<i32> = keys.iter().map(|k| java_default_partition(k.as_bytes(), partitions)).collect();
        let read_back: Vec<String> = keys
            .iter()
            .map(|k| match consumed.get(k.as_bytes()).map(Vec::as_slice) {
                Some([p]) => p.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        println!("  {partitions} partitions, keys a..z: expected {expected:?}");
        println!("    acked {acked:?}; consumer saw [{}]", read_back.join(", "));
        for (i, k) in keys.iter().enumerate() {
            let want = expected[i];
            if krab[i] != want || acked[i] != want || read_back[i] != want.to_string() {
                problems.push(format!(
                    "{partitions} partitions, key {k:?}: Java {want}, java_default_partition {}, acked {}, consumer {}",
                    krab[i], acked[i], read_back[i]
                ));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { bail!("{}", problems.join("\n  ")) }
}
