//! `producer/tansu`: every compression codec, headers (a null-valued one too), null keys and
//! values written by krab read back identically by confluent-kafka.

use super::support::*;
use crate::brokers::Venv;
use crate::brokers::tansu::Tansu;
use anyhow::{Context, Result, bail};
use krab_producer::{Compression, Producer, Record};
use std::collections::BTreeMap;
use std::time::Duration;

/// Records with every shape that matters to a reader: null and empty keys and values, headers
/// (null-valued, empty, repeated, non-ASCII names), compressible and tiny values, timestamps out
/// of order within a batch.
/// The timestamps krab sets on the interop records.
const BASE_TS: i64 = 1_700_000_000_000;

pub(super) fn interop_records(topic: &str, codec: &str) -> Vec<Record> {
    let filler = format!("{codec} compressible payload ").repeat(12);
    (0..240_i64)
        .map(|i| {
            let key = match i % 5 {
                0 => None,
                1 => Some(format!("key-{i}").into_bytes()),
                2 => Some(Vec::new()),
                _ => Some(format!("k{}", i % 7).into_bytes()),
            };
            let value = match i % 4 {
                0 => Some(format!("{i}: {filler}").into_bytes()),
                1 => None,
                2 => Some(Vec::new()),
                _ => Some(vec![i as u8, 0, 255, 7]),
            };
            let headers: Vec<(String, Option<Vec<u8>>)> = match i % 3 {
                0 => Vec::new(),
                1 => vec![("trace".into(), Some(format!("t-{i}").into_bytes())), ("null-header".into(), None)],
                _ => vec![
                    ("empty".into(), Some(Vec::new())),
                    ("dup".into(), Some(b"first".to_vec())),
                    ("dup".into(), Some(b"second".to_vec())),
                    ("ünïcode".into(), None),
                ],
            };
            Record {
                topic: topic.into(),
                partition: None,
                key: key.map(Into::into),
                value: value.map(Into::into),
                headers: headers.into_iter().map(|(k, v)| (k, v.map(Into::into))).collect(),
                timestamp: Some(BASE_TS + (i * 37) % 1000),
            }
        })
        .collect()
}

pub(super) fn describe(key: &Option<Vec<u8>>) -> String {
    key.as_ref().map_or_else(|| "null".into(), |k| to_hex(k))
}

/// Every codec krab writes.
pub(super) const CODECS: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

/// The reference client that reads the records back.
pub(super) enum Reader<'a> {
    ConfluentKafka(&'a Venv),
    Java(&'a super::java_client::JavaClient),
}

/// The codec scenario on tansu (topics created straight on the broker).
pub(super) async fn codecs_interop(venv: &Venv, tansu: &Tansu) -> Result<()> {
    for codec in CODECS {
        tokio::task::block_in_place(|| tansu.create_topic(&format!("krab-it-codec-{}", codec.name()), 3))?;
    }
    codecs_roundtrip(&tansu.bootstrap(), "krab-it-codec", Reader::ConfluentKafka(venv)).await.map(drop)
}

/// krab writes `interop_records` with every codec to the existing 3-partition topics
/// `<prefix>-<codec>`; the reader must read back exactly what was sent, where krab said.
pub(super) async fn codecs_roundtrip(bootstrap: &str, prefix: &str, reader: Reader<'_>) -> Result<String> {
    let mut problems = Vec::new();
    let mut identical = 0;
    for codec in CODECS {
        let name = codec.name();
        let topic = format!("{prefix}-{name}");
        let partitions = 3;
        let mut config = producer_config(bootstrap)?;
        config.compression = codec;
        config.linger = Duration::from_millis(20);
        let producer = Producer::connect(config).await?;
        let sent = interop_records(&topic, name);
        let mut futures = Vec::new();
        for r in &sent {
            futures.push(producer.send(r.clone()).await?);
        }
        producer.flush().await?;
        let mut at: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        for (i, f) in futures.into_iter().enumerate() {
            let m = f.await.with_context(|| format!("{name}: record {i}"))?;
            if m.timestamp != sent[i].timestamp.unwrap_or_default() {
                problems.push(format!("{name}: record {i} acked with timestamp {}", m.timestamp));
            }
            at.insert((m.partition, m.offset), i);
        }
        producer.close(Duration::from_secs(10)).await?;
        let (read, extents) = match &reader {
            Reader::ConfluentKafka(venv) => consume_all(venv, bootstrap, &topic, partitions).await?,
            Reader::Java(java) => java.consume(bootstrap, &topic, partitions, "read_uncommitted").await?,
        };
        let mut mismatches = Vec::new();
        let mut matched = 0;
        for r in &read {
            let Some(&i) = at.get(&(r.partition, r.offset)) else {
                mismatches.push(format!("{}@{}: not a record krab acknowledged", r.partition, r.offset));
                continue;
            };
            let s = &sent[i];
            let want = Consumed {
                partition: r.partition,
                offset: r.offset,
                timestamp: s.timestamp.unwrap_or_default(),
                timestamp_type: 1,
                key: s.key.as_ref().map(|b| b.to_vec()),
                value: s.value.as_ref().map(|b| b.to_vec()),
                headers: s.headers.iter().map(|(k, v)| (k.clone(), v.as_ref().map(|b| b.to_vec()))).collect(),
            };
            if *r == want {
                matched += 1;
                identical += 1;
            } else {
                mismatches.push(format!(
                    "record {i} at {}@{}: sent key {} value {} headers {:?} ts {}, read key {} value {} headers {:?} ts {} \
                     (type {})",
                    r.partition,
                    r.offset,
                    describe(&want.key),
                    describe(&want.value),
                    want.headers,
                    want.timestamp,
                    describe(&r.key),
                    describe(&r.value),
                    r.headers,
                    r.timestamp,
                    r.timestamp_type
                ));
            }
        }
        let fetched: i64 = extents.values().map(|e| e.eof - e.lo).sum();
        println!(
            "  {name}: sent {}, read {} (fetch high watermarks {:?}), identical {matched}",
            sent.len(),
            read.len(),
            extents.values().map(|e| e.eof).collect::<Vec<_>>()
        );
        if read.len() != sent.len() || fetched != sent.len() as i64 {
            mismatches.push(format!("read {} records (watermarks say {fetched}), sent {}", read.len(), sent.len()));
        }
        if !mismatches.is_empty() {
            problems.push(format!(
                "{name}: {} problems: {}",
                mismatches.len(),
                mismatches.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(format!("{identical} records over {} codecs read back identically", CODECS.len()))
    } else {
        bail!("{}", problems.join("\n  "))
    }
}
