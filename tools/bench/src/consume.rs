//! The `consume` workload: read every record of a pre-filled topic (partitions `0..P`) from the
//! beginning until N records have arrived. One client per process.
//!
//! The clock starts before the client is created (as in franz-bench's consume), so it covers
//! metadata, the offset look-ups and every fetch; CPU is the whole process (all its threads).
//! No group, nothing committed: each client is assigned the partitions at their start. Every
//! client verifies what it read: N records, each partition's offsets contiguous from its first.
//!
//! Clients:
//! - `krab-stream`: `Consumer` as a `Stream` (`next().await` per record);
//! - `krab-batch`: `Consumer::poll_batch(--max-poll N)`;
//! - `rdkafka-base`: librdkafka's `BaseConsumer::poll` in a loop;
//! - `rdkafka-stream`: `StreamConsumer::recv().await` on a current-thread runtime;
//! - `rskafka`: one task per partition calling `PartitionClient::fetch_records`.
//!
//! librdkafka gets `fetch.queue.backoff.ms=10` (its default of 1000 ms stalls a partition whose
//! pre-fetch queue filled up). Every client checks CRCs (krab's and librdkafka's default).

use crate::procfs;
use anyhow::{Context, Result, bail, ensure};
use std::time::{Duration, Instant};

/// The consume clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsumeClient {
    KrabStream,
    KrabBatch,
    RdkafkaBase,
    RdkafkaStream,
    Rskafka,
}

impl ConsumeClient {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "krab-stream" => Self::KrabStream,
            "krab-batch" => Self::KrabBatch,
            "rdkafka-base" => Self::RdkafkaBase,
            "rdkafka-stream" => Self::RdkafkaStream,
            "rskafka" => Self::Rskafka,
            other => bail!(
                "unknown client `{other}` (known: krab-stream, krab-batch, rdkafka-base, rdkafka-stream, rskafka)"
            ),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::KrabStream => "krab-stream",
            Self::KrabBatch => "krab-batch",
            Self::RdkafkaBase => "rdkafka-base",
            Self::RdkafkaStream => "rdkafka-stream",
            Self::Rskafka => "rskafka",
        }
    }
}

/// What one `consume` process does.
#[derive(Debug, Clone)]
pub(crate) struct ConsumeArgs {
    pub(crate) client: ConsumeClient,
    pub(crate) bootstrap: String,
    pub(crate) topic: String,
    /// Records to read (the topic holds exactly these).
    pub(crate) records: u64,
    pub(crate) partitions: i32,
    /// krab-batch: records per `poll_batch`.
    pub(crate) max_poll: usize,
    /// Tokio worker threads for krab and rskafka (1: current-thread runtime).
    pub(crate) threads: usize,
    /// Give up after this long.
    pub(crate) timeout: Duration,
    /// The value size the topic was filled with (for krab's memory bound).
    pub(crate) size: usize,
}

/// Counts what a client read and checks that each partition's offsets are contiguous.
pub(crate) struct Tally {
    records: u64,
    value_bytes: u64,
    /// The next offset expected per partition (`None` before its first record).
    next: Vec<Option<i64>>,
}

impl Tally {
    pub(crate) fn new(partitions: i32) -> Self {
        Tally { records: 0, value_bytes: 0, next: vec![None; partitions.max(0) as usize] }
    }

    /// One record of `partition` at `offset` with a value of `value_len` bytes.
    pub(crate) fn record(&mut self, partition: i32, offset: i64, value_len: usize) -> Result<()> {
        let slot = usize::try_from(partition)
            .ok()
            .and_then(|p| self.next.get_mut(p))
            .with_context(|| format!("a record of partition {partition}, outside the topic"))?;
        if let Some(expected) = *slot {
            ensure!(offset == expected, "partition {partition}: offset {offset} after {}", expected - 1);
        }
        *slot = Some(offset + 1);
        self.records += 1;
        self.value_bytes += value_len as u64;
        Ok(())
    }
}

/// The report of one consume process.
pub(crate) fn run(a: &ConsumeArgs) -> Result<serde_json::Value> {
    ensure!(a.partitions > 0 && a.records > 0, "--partitions and --records must be positive");
    let rss0 = procfs::rss_mb().unwrap_or(f64::NAN);
    let t0 = Instant::now();
    let cpu0 = procfs::cpu_seconds()?;
    let (tally, note, extra) = match a.client {
        ConsumeClient::KrabStream | ConsumeClient::KrabBatch => krab(a)?,
        ConsumeClient::RdkafkaBase => (rdkafka_base(a)?, rdkafka_note("BaseConsumer::poll(100 ms) per record"), None),
        ConsumeClient::RdkafkaStream => {
            (rdkafka_stream(a)?, rdkafka_note("StreamConsumer::recv().await per record, current-thread runtime"), None)
        }
        ConsumeClient::Rskafka => rskafka(a)?,
    };
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_s = procfs::cpu_seconds()? - cpu0;
    ensure!(tally.records == a.records, "read {} of {} records", tally.records, a.records);
    let round = |x: f64, digits: i32| {
        let k = 10f64.powi(digits);
        (x * k).round() / k
    };
    let mut report = serde_json::json!({
        "client": a.client.name(),
        "workload": "consume",
        "records": a.records,
        "record_bytes": tally.value_bytes / a.records,
        "seconds": round(seconds, 3),
        "records_per_s": round(a.records as f64 / seconds, 1),
        "mb_per_s": round(tally.value_bytes as f64 / seconds / 1e6, 2),
        "cpu_s": round(cpu_s, 2),
        "cpu_us_per_record": round(cpu_s * 1e6 / a.records as f64, 3),
        "peak_rss_mb": round(procfs::peak_rss_mb().unwrap_or(f64::NAN), 1),
        "start_rss_mb": round(rss0, 1),
        "threads": procfs::threads()?,
        "note": note,
    });
    if let (Some(extra), Some(map)) = (extra, report.as_object_mut()) {
        map.extend(extra);
    }
    Ok(report)
}

fn deadline_error(a: &ConsumeArgs, read: u64) -> anyhow::Error {
    anyhow::anyhow!("read {read} of {} records within {:?}", a.records, a.timeout)
}

// ---------------------------------------------------------------------------------------------
// krab

type Extra = Option<serde_json::Map<String, serde_json::Value>>;

fn krab(a: &ConsumeArgs) -> Result<(Tally, String, Extra)> {
    use futures_util::StreamExt;
    use krab_consumer::{AutoOffsetReset, Consumer, ConsumerConfig, Offset, TopicPartition};
    let rt = crate::runtime(a.threads)?;
    rt.block_on(async {
        let config =
            ConsumerConfig::new(&a.bootstrap)?.client_id("krab-bench").auto_offset_reset(AutoOffsetReset::Earliest);
        // The memory the consumer may hold: its buffer budget (the smaller of the global budget and
        // every partition at its own budget), plus one Fetch response per broker, both as the
        // consumer counts them: decoded bytes plus one `Record` struct per record (a record of
        // `size` value bytes takes about size + 10 bytes in an uncompressed batch).
        let budget = config.buffer_budget().min(config.partition_budget() * a.partitions as usize);
        let per_partition_bytes = config.max_partition_fetch_bytes as usize;
        let fetch_max = config.fetch_max_bytes as usize;
        let per_record = (a.size + 10) as f64;
        let in_memory = 1.0 + std::mem::size_of::<krab_protocol::records::Record>() as f64 / per_record;
        let (kbytes, per_partition) = (config.queued_max_kbytes, config.max_partition_fetch_bytes);
        let mut consumer = Consumer::connect(config).await.context("connecting")?;
        let topic: &str = &a.topic;
        consumer.assign((0..a.partitions).map(|p| (TopicPartition::new(topic, p), Offset::Earliest)));
        let mut tally = Tally::new(a.partitions);
        // One deadline around the whole read (a timeout per next() would cost a timer entry per
        // record, in the harness rather than the client).
        let deadline = tokio::time::Instant::now() + a.timeout;
        let mut polls = 0u64;
        let mut peak_buffered = 0usize;
        let read = async {
            while tally.records < a.records {
                if a.client == ConsumeClient::KrabBatch || tally.records.is_multiple_of(1024) {
                    peak_buffered = peak_buffered.max(consumer.buffered_bytes());
                }
                if a.client == ConsumeClient::KrabStream {
                    let record = consumer.next().await.context("the stream ended")??;
                    tally.record(record.partition, record.offset, record.value.as_ref().map_or(0, |v| v.len()))?;
                } else {
                    polls += 1;
                    for part in consumer.poll_batch(a.max_poll).await? {
                        for r in &part.records {
                            tally.record(r.partition, r.offset, r.value.as_ref().map_or(0, |v| v.len()))?;
                        }
                    }
                }
            }
            anyhow::Ok(())
        };
        let read = tokio::time::timeout_at(deadline, read).await;
        read.map_err(|_| deadline_error(a, tally.records))??;
        let brokers = consumer.cluster().snapshot().brokers.len().max(1);
        drop(consumer);
        let how = if a.client == ConsumeClient::KrabStream {
            "Consumer as a Stream, next().await per record".to_string()
        } else {
            format!("Consumer::poll_batch({}) ({polls} calls)", a.max_poll)
        };
        let note = format!(
            "{how}; assign partitions 0..{} at Earliest, no group; {} tokio runtime; check.crcs on; budget \
             queued.max.messages.kbytes {kbytes}, 2 x max.partition.fetch.bytes {per_partition} per partition",
            a.partitions - 1,
            crate::runtime_name(a.threads),
        );
        let mb = |b: usize| b as f64 / (1 << 20) as f64;
        let mut extra = serde_json::Map::new();
        extra.insert("budget_mb".into(), serde_json::json!(mb(budget)));
        // One response per broker: every partition's share at most, each broker's at most
        // fetch.max.bytes.
        let wire = (per_partition_bytes * a.partitions as usize).min(fetch_max * brokers);
        extra.insert("response_mb".into(), serde_json::json!(wire as f64 * in_memory / (1 << 20) as f64));
        // A compressed response's wire bytes live beside its decompressed records while it is
        // decoded (uncompressed records are slices of the wire bytes: no second copy).
        extra.insert("wire_mb".into(), serde_json::json!(mb(wire)));
        extra.insert("peak_buffered_mb".into(), serde_json::json!(mb(peak_buffered)));
        anyhow::Ok((tally, note, Some(extra)))
    })
}

// ---------------------------------------------------------------------------------------------
// librdkafka

fn rdkafka_note(how: &str) -> String {
    format!(
        "{how}; assign partitions at Beginning (group.id set for librdkafka, nothing committed); \
         fetch.queue.backoff.ms=10; check.crcs=true; other settings librdkafka's defaults"
    )
}

fn rdkafka_config(a: &ConsumeArgs) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &a.bootstrap)
        .set("client.id", "rdkafka-bench")
        .set("group.id", "krab-bench-rdkafka")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "true")
        .set("fetch.queue.backoff.ms", "10");
    c
}

fn assignment(a: &ConsumeArgs) -> Result<rdkafka::TopicPartitionList> {
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..a.partitions {
        tpl.add_partition_offset(&a.topic, p, rdkafka::Offset::Beginning)?;
    }
    Ok(tpl)
}

fn rdkafka_base(a: &ConsumeArgs) -> Result<Tally> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka_config(a).create().context("creating the BaseConsumer")?;
    consumer.assign(&assignment(a)?)?;
    let mut tally = Tally::new(a.partitions);
    let deadline = Instant::now() + a.timeout;
    while tally.records < a.records {
        ensure!(Instant::now() < deadline, deadline_error(a, tally.records));
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => tally.record(m.partition(), m.offset(), m.payload_len())?,
            Some(Err(e)) => bail!("poll: {e}"),
        }
    }
    Ok(tally)
}

fn rdkafka_stream(a: &ConsumeArgs) -> Result<Tally> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let rt = crate::runtime(1)?;
    rt.block_on(async {
        let consumer: StreamConsumer = rdkafka_config(a).create().context("creating the StreamConsumer")?;
        consumer.assign(&assignment(a)?)?;
        let mut tally = Tally::new(a.partitions);
        let deadline = tokio::time::Instant::now() + a.timeout;
        let read = async {
            while tally.records < a.records {
                let m = consumer.recv().await.context("recv")?;
                tally.record(m.partition(), m.offset(), m.payload_len())?;
            }
            anyhow::Ok(())
        };
        let read = tokio::time::timeout_at(deadline, read).await;
        read.map_err(|_| deadline_error(a, tally.records))??;
        anyhow::Ok(tally)
    })
}

// ---------------------------------------------------------------------------------------------
// rskafka

/// One task per partition: `fetch_records(offset, 1..1 MiB, 500 ms)` in a loop, each checking
/// its own offsets, until the partitions together hold N records (then the tasks are dropped).
fn rskafka(a: &ConsumeArgs) -> Result<(Tally, String, Extra)> {
    use rskafka::client::ClientBuilder;
    use rskafka::client::partition::UnknownTopicHandling;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let rt = crate::runtime(a.threads)?;
    rt.block_on(async {
        let client = ClientBuilder::new(a.bootstrap.split(',').map(str::to_owned).collect())
            .client_id("rskafka-bench")
            .build()
            .await
            .context("connecting")?;
        let (read, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let done = Arc::new(tokio::sync::Notify::new());
        let (failed_tx, mut failed) = tokio::sync::mpsc::unbounded_channel::<anyhow::Error>();
        let mut tasks = tokio::task::JoinSet::new();
        for p in 0..a.partitions {
            let pc = client.partition_client(a.topic.clone(), p, UnknownTopicHandling::Retry).await?;
            let (read, bytes, done, failed_tx, total) =
                (read.clone(), bytes.clone(), done.clone(), failed_tx.clone(), a.records);
            tasks.spawn(async move {
                let mut tally = Tally::new(p + 1);
                let mut offset = 0i64;
                let result: Result<()> = async {
                    loop {
                        let (records, _) = pc.fetch_records(offset, 1..(1 << 20), 500).await?;
                        let (n, b) = (tally.records, tally.value_bytes);
                        for r in records {
                            tally.record(p, r.offset, r.record.value.as_ref().map_or(0, Vec::len))?;
                            offset = r.offset + 1;
                        }
                        bytes.fetch_add(tally.value_bytes - b, Ordering::Relaxed);
                        if read.fetch_add(tally.records - n, Ordering::Relaxed) + tally.records - n >= total {
                            done.notify_one();
                        }
                    }
                }
                .await;
                if let Err(e) = result {
                    let _ = failed_tx.send(e);
                }
            });
        }
        let deadline = tokio::time::sleep(a.timeout);
        tokio::select! {
            () = done.notified() => {}
            Some(e) = failed.recv() => bail!("rskafka: {e:#}"),
            () = deadline => return Err(deadline_error(a, read.load(Ordering::Relaxed))),
        }
        tasks.abort_all();
        let tally = Tally {
            records: read.load(Ordering::Relaxed),
            value_bytes: bytes.load(Ordering::Relaxed),
            next: Vec::new(),
        };
        let note = format!(
            "PartitionClient::fetch_records(offset, 1..1 MiB, 500 ms) in a loop, one task per partition, \
             until the partitions together gave N records; {} tokio runtime; values copied into Vec<u8>",
            crate::runtime_name(a.threads)
        );
        anyhow::Ok((tally, note, None))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_counts_records_and_rejects_gaps_and_strangers() {
        let mut t = Tally::new(2);
        t.record(0, 5, 10).unwrap();
        t.record(0, 6, 10).unwrap();
        t.record(1, 0, 3).unwrap();
        assert_eq!((t.records, t.value_bytes), (3, 23));
        assert!(t.record(0, 8, 1).is_err(), "a gap");
        assert!(t.record(1, 0, 1).is_err(), "a duplicate");
        assert!(t.record(2, 0, 1).is_err(), "outside the topic");
        assert!(t.record(-1, 0, 1).is_err(), "negative");
    }
}
