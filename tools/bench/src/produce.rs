//! The `produce` workload: N records of S bytes to one topic, sent one by one (rskafka: in
//! pre-built batches), then flushed; every record must be acknowledged. One client per process.
//!
//! Same for every client: acks=1 with idempotence off (or `--acks all`, with idempotence as each
//! client's default has it: on for krab, off for librdkafka), the same linger and batch size, the same
//! payload bytes (slices of one pseudo-random "text" pool, compressible about 2x by lz4, so the
//! lz4 case compresses real work), no key, and the same partition spread: record `i` goes to
//! partition `i % P` (explicit partitions; rskafka: batch `k` of consecutive records goes to
//! partition `k % P`). A warm-up (connection, metadata, first batches) is sent and flushed
//! before the clock starts. The clock covers sending every record and the final flush, so
//! records/s is records *acknowledged* per second; CPU is the whole process (all its threads).

use crate::procfs;
use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The produce clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProduceClient {
    Krab,
    RdkafkaBase,
    RdkafkaFuture,
    Rskafka,
}

impl ProduceClient {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "krab" => Self::Krab,
            "rdkafka" | "rdkafka-base" => Self::RdkafkaBase,
            "rdkafka-future" => Self::RdkafkaFuture,
            "rskafka" => Self::Rskafka,
            other => bail!("unknown client `{other}` (known: krab, rdkafka-base, rdkafka-future, rskafka)"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Krab => "krab",
            Self::RdkafkaBase => "rdkafka-base",
            Self::RdkafkaFuture => "rdkafka-future",
            Self::Rskafka => "rskafka",
        }
    }
}

/// What one `produce` process does.
#[derive(Debug, Clone)]
pub(crate) struct ProduceArgs {
    pub(crate) client: ProduceClient,
    pub(crate) bootstrap: String,
    pub(crate) topic: String,
    pub(crate) records: u64,
    pub(crate) size: usize,
    /// `none` or `lz4`.
    pub(crate) compression: String,
    pub(crate) partitions: i32,
    pub(crate) linger: Duration,
    pub(crate) batch_size: usize,
    pub(crate) buffer_memory: usize,
    /// krab: tokio worker threads (1: current-thread runtime).
    pub(crate) threads: usize,
    pub(crate) warmup_records: u64,
    /// rskafka: records per produce call.
    pub(crate) rskafka_batch: usize,
    /// rskafka: produce calls in flight.
    pub(crate) concurrency: usize,
    /// krab: keep every DeliveryFuture and await them all after flush (default: drop them).
    pub(crate) keep_futures: bool,
    /// `1` (idempotence off) or `all` (idempotence as the client's default has it).
    pub(crate) acks: String,
}

impl ProduceArgs {
    fn acks_all(&self) -> bool {
        self.acks == "all"
    }
}

/// The payload bytes: one pool of word-like text, record `i` a slice of it (the same bytes for
/// every client).
pub(crate) struct Pool {
    data: Bytes,
    size: usize,
}

impl Pool {
    pub(crate) fn new(size: usize) -> Self {
        const WORDS: &[&str] = &[
            "kafka",
            "record",
            "batch",
            "partition",
            "offset",
            "broker",
            "leader",
            "replica",
            "topic",
            "producer",
            "consumer",
            "group",
            "commit",
            "fetch",
            "linger",
            "acks",
            "lz4",
            "zstd",
            "snappy",
            "gzip",
            "krab",
            "tokio",
            "future",
            "buffer",
            "memory",
            "latency",
            "throughput",
            "value",
            "key",
            "header",
            "timestamp",
            "sequence",
        ];
        let len = (512 << 10).max(size * 64);
        let mut data = Vec::with_capacity(len + 16);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while data.len() < len {
            // xorshift64*: deterministic, the same bytes for every client.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            if r.is_multiple_of(5) {
                data.extend_from_slice(format!("{} ", r % 100_000).as_bytes());
            } else {
                data.extend_from_slice(WORDS[(r >> 32) as usize % WORDS.len()].as_bytes());
                data.push(b' ');
            }
        }
        data.truncate(len);
        Self { data: Bytes::from(data), size }
    }

    /// Record `i` starts `size + 3` bytes after record `i - 1` (wrapping): the pool streams
    /// through the caches as freshly serialized values would be warm, and the whole pool (512 KiB)
    /// fits in L2.
    fn offset(&self, i: u64) -> usize {
        (i.wrapping_mul(self.size as u64 + 3) % (self.data.len() - self.size) as u64) as usize
    }

    /// Record `i`'s value, zero-copy.
    pub(crate) fn value(&self, i: u64) -> Bytes {
        let o = self.offset(i);
        self.data.slice(o..o + self.size)
    }

    pub(crate) fn slice(&self, i: u64) -> &[u8] {
        let o = self.offset(i);
        &self.data[o..o + self.size]
    }
}

/// Writes the values of records `0..records` of `size` bytes, one per line (the pool holds no
/// newline), for tools that read their payloads from a file (Kafka's ProducerPerformance).
pub(crate) fn write_payload(out: &mut impl std::io::Write, size: usize, records: u64) -> Result<()> {
    ensure!(size > 0 && records > 0, "--size and --records must be positive");
    let pool = Pool::new(size);
    for i in 0..records {
        out.write_all(pool.slice(i))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Wall clock and process CPU at the start of the measured part.
struct Meter {
    t0: Instant,
    cpu0: f64,
}

impl Meter {
    fn start() -> Result<Self> {
        Ok(Self { t0: Instant::now(), cpu0: procfs::cpu_seconds()? })
    }

    /// (wall seconds, CPU seconds, threads of the process now).
    fn stop(self) -> Result<(f64, f64, u64)> {
        let seconds = self.t0.elapsed().as_secs_f64();
        Ok((seconds, procfs::cpu_seconds()? - self.cpu0, procfs::threads()?))
    }
}

pub(crate) fn run(a: &ProduceArgs) -> Result<serde_json::Value> {
    ensure!(a.partitions > 0 && a.records > 0 && a.size > 0, "--partitions, --records and --size must be positive");
    ensure!(matches!(a.compression.as_str(), "none" | "lz4"), "--compression none|lz4");
    ensure!(matches!(a.acks.as_str(), "1" | "all"), "--acks 1|all");
    let pool = Pool::new(a.size);
    let ((seconds, cpu_s, threads), note) = match a.client {
        ProduceClient::Krab => krab(a, &pool)?,
        ProduceClient::RdkafkaBase => rdkafka_base(a, &pool)?,
        ProduceClient::RdkafkaFuture => rdkafka_future(a, &pool)?,
        ProduceClient::Rskafka => rskafka(a, &pool)?,
    };
    let round = |x: f64, digits: i32| {
        let k = 10f64.powi(digits);
        (x * k).round() / k
    };
    let bytes = a.records * a.size as u64;
    Ok(serde_json::json!({
        "client": a.client.name(),
        "workload": "produce",
        "records": a.records,
        "record_bytes": a.size,
        "compression": a.compression,
        "acks": a.acks,
        "seconds": round(seconds, 3),
        "records_per_s": round(a.records as f64 / seconds, 1),
        "mb_per_s": round(bytes as f64 / seconds / 1e6, 2),
        "cpu_s": round(cpu_s, 2),
        "cpu_us_per_record": round(cpu_s * 1e6 / a.records as f64, 3),
        "peak_rss_mb": round(procfs::peak_rss_mb().unwrap_or(f64::NAN), 1),
        "threads": threads,
        "note": note,
    }))
}

// ---------------------------------------------------------------------------------------------
// krab

fn krab(a: &ProduceArgs, pool: &Pool) -> Result<((f64, f64, u64), String)> {
    use krab_producer::{Acks, Compression, Producer, ProducerConfig, Record};
    let rt = crate::runtime(a.threads)?;
    rt.block_on(async {
        let config = ProducerConfig::new(&a.bootstrap)?
            .client_id("krab-bench")
            .linger(a.linger)
            .batch_size(a.batch_size)
            .max_request_size(a.batch_size.max(1 << 20))
            .buffer_memory(a.buffer_memory)
            .compression(if a.compression == "lz4" { Compression::Lz4 } else { Compression::None });
        // acks=all keeps krab's default: idempotence on.
        let config =
            if a.acks_all() { config.acks(Acks::All) } else { config.acks(Acks::Leader).enable_idempotence(false) };
        let producer = Producer::connect(config).await.context("connecting")?;
        let topic: Arc<str> = Arc::from(a.topic.as_str());
        let p = a.partitions as u64;
        let record = |i: u64| Record {
            topic: topic.clone(),
            partition: Some((i % p) as i32),
            key: None,
            value: Some(pool.value(i)),
            headers: Vec::new(),
            timestamp: None,
        };
        for i in 0..a.warmup_records {
            drop(producer.send(record(i)).await?);
        }
        producer.flush().await?;

        let meter = Meter::start()?;
        if a.keep_futures {
            let mut futures = Vec::with_capacity(a.records as usize);
            for i in 0..a.records {
                futures.push(producer.send(record(i)).await?);
            }
            producer.flush().await?;
            for f in futures {
                f.await.context("a record failed")?;
            }
        } else {
            for i in 0..a.records {
                // The DeliveryFuture is dropped: the outcome is counted in producer.stats().
                drop(producer.send(record(i)).await?);
            }
            producer.flush().await?;
        }
        let measured = meter.stop()?;

        let stats = producer.stats();
        let acked: u64 = stats.values().map(|s| s.acked).sum();
        let failed: u64 = stats.values().map(|s| s.failed).sum();
        let expected = a.records + a.warmup_records;
        ensure!(failed == 0 && acked == expected, "krab: {acked} acked, {failed} failed, {expected} sent");
        producer.close(Duration::from_secs(10)).await?;
        let note = format!(
            "Producer::send(record).await per record from one task, DeliveryFutures {}, then flush(); \
             {} tokio runtime; acks={} ({}); all {expected} records acked per producer.stats()",
            if a.keep_futures { "kept and awaited after flush" } else { "dropped" },
            crate::runtime_name(a.threads),
            a.acks,
            if a.acks_all() { "idempotence on, krab's default" } else { "idempotence off" },
        );
        anyhow::Ok((measured, note))
    })
}

// ---------------------------------------------------------------------------------------------
// librdkafka

fn rdkafka_config(a: &ProduceArgs) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &a.bootstrap)
        .set("client.id", "rdkafka-bench")
        .set("linger.ms", a.linger.as_millis().to_string())
        .set("batch.size", a.batch_size.to_string())
        // Let batch.size, not the message count, end a batch (as in krab).
        .set("batch.num.messages", "1000000")
        // The same memory bound as krab's buffer.memory; the message count never binds.
        .set("queue.buffering.max.kbytes", (a.buffer_memory / 1024).max(1).to_string())
        .set("queue.buffering.max.messages", "10000000")
        .set("compression.codec", &a.compression);
    if a.acks_all() {
        // librdkafka's default: enable.idempotence=false.
        c.set("acks", "all");
    } else {
        c.set("acks", "1").set("enable.idempotence", "false");
    }
    c
}

#[derive(Default)]
struct Counter {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl rdkafka::ClientContext for Counter {}

impl rdkafka::producer::ProducerContext for Counter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn is_queue_full(e: &rdkafka::error::KafkaError) -> bool {
    matches!(e, rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull))
}

/// BaseProducer: send in a loop, serve delivery reports with poll(0) every 1024 sends and
/// poll(1 ms) on QueueFull (then retry the same record), flush; count successful deliveries.
fn rdkafka_base(a: &ProduceArgs, pool: &Pool) -> Result<((f64, f64, u64), String)> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer<Counter> =
        rdkafka_config(a).create_with_context(Counter::default()).context("creating the BaseProducer")?;
    let p = a.partitions as u64;
    let mut queue_full = 0u64;
    let mut send_range = |from: u64, to: u64| -> Result<()> {
        let mut i = from;
        while i < to {
            let record = BaseRecord::<(), [u8]>::to(&a.topic).partition((i % p) as i32).payload(pool.slice(i));
            match producer.send(record) {
                Ok(()) => {
                    i += 1;
                    if i.is_multiple_of(1024) {
                        producer.poll(Duration::ZERO);
                    }
                }
                Err((e, _)) if is_queue_full(&e) => {
                    queue_full += 1;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("send: {e}"),
            }
        }
        producer.flush(Duration::from_secs(120)).context("flush")?;
        Ok(())
    };
    send_range(0, a.warmup_records)?;
    let meter = Meter::start()?;
    send_range(a.warmup_records, a.warmup_records + a.records)?;
    let measured = meter.stop()?;
    let ctx = producer.context();
    let (ok, failed) = (ctx.ok.load(Ordering::Relaxed), ctx.failed.load(Ordering::Relaxed));
    let expected = a.records + a.warmup_records;
    ensure!(failed == 0 && ok == expected, "rdkafka: {ok} delivered, {failed} failed, {expected} sent");
    let note = format!(
        "BaseProducer::send per record, poll(0) every 1024 sends, poll(1 ms) + retry on QueueFull \
         ({queue_full} times), flush(); acks={}; all {expected} delivery reports OK",
        a.acks
    );
    Ok((measured, note))
}

/// FutureProducer: send_result per record; the DeliveryFutures wait in a FIFO, completed ones
/// are reaped every 1024 sends, on QueueFull the oldest is awaited; all awaited at the end.
fn rdkafka_future(a: &ProduceArgs, pool: &Pool) -> Result<((f64, f64, u64), String)> {
    use futures_util::FutureExt;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let rt = crate::runtime(1)?;
    let producer: FutureProducer = rdkafka_config(a).create().context("creating the FutureProducer")?;
    let p = a.partitions as u64;
    let mut queue_full = 0u64;
    let mut failures = 0u64;
    let mut delivered = 0u64;
    let mut send_range = |from: u64, to: u64| -> Result<()> {
        rt.block_on(async {
            let mut pending = VecDeque::new();
            let mut check = |r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, _>| match r {
                Ok(Ok(_)) => delivered += 1,
                _ => failures += 1,
            };
            let mut i = from;
            while i < to {
                let record = FutureRecord::<(), [u8]>::to(&a.topic).partition((i % p) as i32).payload(pool.slice(i));
                match producer.send_result(record) {
                    Ok(f) => {
                        pending.push_back(f);
                        i += 1;
                        if i.is_multiple_of(1024) {
                            while let Some(r) = pending.front_mut().and_then(|f| f.now_or_never()) {
                                pending.pop_front();
                                check(r);
                            }
                        }
                    }
                    Err((e, _)) if is_queue_full(&e) => {
                        queue_full += 1;
                        match pending.pop_front() {
                            Some(f) => check(f.await),
                            None => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                    Err((e, _)) => bail!("send_result: {e}"),
                }
            }
            while let Some(f) = pending.pop_front() {
                check(f.await);
            }
            Ok(())
        })
    };
    send_range(0, a.warmup_records)?;
    let meter = Meter::start()?;
    send_range(a.warmup_records, a.warmup_records + a.records)?;
    let measured = meter.stop()?;
    let expected = a.records + a.warmup_records;
    ensure!(failures == 0 && delivered == expected, "rdkafka: {delivered} delivered, {failures} failed");
    let note = format!(
        "FutureProducer::send_result per record, DeliveryFutures in a FIFO (ready ones reaped every 1024 \
         sends, the oldest awaited on QueueFull: {queue_full} times), all awaited; {expected} delivered"
    );
    Ok((measured, note))
}

// ---------------------------------------------------------------------------------------------
// rskafka

/// rskafka has no per-record API: the caller builds `Vec<Record>` batches of `rskafka_batch`
/// consecutive records (value copied into a `Vec<u8>`, one timestamp per batch) and calls
/// `PartitionClient::produce`, batch `k` to partition `k % P`, `concurrency` calls in flight.
fn rskafka(a: &ProduceArgs, pool: &Pool) -> Result<((f64, f64, u64), String)> {
    use futures_util::StreamExt;
    use futures_util::stream::FuturesUnordered;
    use rskafka::client::ClientBuilder;
    use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
    use rskafka::record::Record;
    let rt = crate::runtime(a.threads)?;
    let compression = if a.compression == "lz4" { Compression::Lz4 } else { Compression::NoCompression };
    rt.block_on(async {
        let client = ClientBuilder::new(a.bootstrap.split(',').map(str::to_owned).collect())
            .client_id("rskafka-bench")
            .build()
            .await
            .context("connecting")?;
        let mut partitions: Vec<Arc<PartitionClient>> = Vec::new();
        for p in 0..a.partitions {
            partitions.push(Arc::new(
                client.partition_client(a.topic.clone(), p, UnknownTopicHandling::Retry).await.context("partition")?,
            ));
        }
        let batch = a.rskafka_batch.max(1) as u64;
        let send_range = |from: u64, to: u64| {
            let partitions = &partitions;
            async move {
                let mut in_flight = FuturesUnordered::new();
                let mut written = 0u64;
                let mut start = from;
                let mut k = 0usize;
                while start < to || !in_flight.is_empty() {
                    if start < to && in_flight.len() < a.concurrency.max(1) {
                        let end = (start + batch).min(to);
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64);
                        let ts = chrono::DateTime::from_timestamp_millis(now).context("timestamp")?;
                        let records: Vec<Record> = (start..end)
                            .map(|i| Record {
                                key: None,
                                value: Some(pool.slice(i).to_vec()),
                                headers: Default::default(),
                                timestamp: ts,
                            })
                            .collect();
                        let client = partitions[k % partitions.len()].clone();
                        k += 1;
                        start = end;
                        in_flight.push(async move {
                            let n = records.len() as u64;
                            client.produce(records, compression).await.map(|offsets| (n, offsets.len() as u64))
                        });
                        continue;
                    }
                    if let Some(r) = in_flight.next().await {
                        let (n, acked) = r.context("produce")?;
                        ensure!(n == acked, "{n} records sent, {acked} offsets back");
                        written += n;
                    }
                }
                anyhow::Ok(written)
            }
        };
        send_range(0, a.warmup_records).await?;
        let meter = Meter::start()?;
        let written = send_range(a.warmup_records, a.warmup_records + a.records).await?;
        let measured = meter.stop()?;
        ensure!(written == a.records, "rskafka: {written} of {} records acknowledged", a.records);
        let note = format!(
            "PartitionClient::produce with pre-built Vec<Record> batches of {batch} (values copied to Vec<u8>), \
             batch k to partition k % {}, {} calls in flight, {} tokio runtime; acks=-1 always (rskafka's \
             fixed setting, whatever --acks {} asks), no idempotence, no linger",
            a.partitions,
            a.concurrency,
            crate::runtime_name(a.threads),
            a.acks
        );
        anyhow::Ok((measured, note))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_lines_are_the_records_values() {
        let mut out = Vec::new();
        write_payload(&mut out, 37, 50).unwrap();
        let pool = Pool::new(37);
        let lines: Vec<&[u8]> = out.strip_suffix(b"\n").unwrap().split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 50);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(*line, pool.slice(i as u64), "line {i}");
        }
        assert!(write_payload(&mut Vec::new(), 0, 1).is_err());
    }
}
