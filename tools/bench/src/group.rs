//! The `consume-group` workload, in two phases, one consumer group per process:
//!
//! 1. Throughput: one member subscribes and reads the pre-filled topic (the backlog) from the
//!    start. Reported: records/s from its first record to the last of the backlog, and CPU per
//!    record over that phase.
//! 2. Rebalance: records are written at a steady rate (krab's producer in this process) and a
//!    second member joins. Reported: the time from the join until the joining member has yielded
//!    records of every partition it was assigned (the moved partitions flowing at their new
//!    owner).
//!
//! Clients: `krab-group` (`Consumer`s with `group.id`, `poll_batch`), `rdkafka-group`
//! (librdkafka `BaseConsumer`s subscribing). Classic protocol, eager `range`, auto-commit, as
//! both clients' defaults.

use crate::procfs;
use anyhow::{Context, Result, bail, ensure};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records written per second while the second member joins.
const LIVE_RATE: u64 = 20_000;

/// What one `consume-group` process does.
#[derive(Debug, Clone)]
pub(crate) struct GroupArgs {
    pub(crate) client: String,
    pub(crate) bootstrap: String,
    pub(crate) topic: String,
    pub(crate) records: u64,
    pub(crate) partitions: i32,
    pub(crate) timeout: Duration,
}

/// What the members read.
#[derive(Default)]
struct Progress {
    /// Backlog records read (offsets below each partition's backlog end), distinct.
    backlog: u64,
    seen: BTreeMap<i32, Vec<u64>>,
    first: Option<Instant>,
    backlog_done: Option<Instant>,
    joined: Option<Instant>,
    /// The joining member's assignment, as it last reported it.
    assigned: BTreeSet<i32>,
    /// When the joining member first yielded each partition after joining.
    moved: BTreeMap<i32, Duration>,
    /// The CPU seconds when the backlog was read.
    backlog_cpu: Option<f64>,
}

impl Progress {
    fn record(&mut self, member: usize, partition: i32, offset: i64, records: u64, partitions: i32) -> Result<()> {
        let now = Instant::now();
        self.first.get_or_insert(now);
        ensure!((0..partitions).contains(&partition), "a record of partition {partition}, outside the topic");
        let per_partition = records / partitions as u64 + u64::from((partition as u64) < records % partitions as u64);
        let o = u64::try_from(offset).context("a negative offset")?;
        if o < per_partition {
            let bits = self.seen.entry(partition).or_default();
            let (word, bit) = ((o / 64) as usize, 1u64 << (o % 64));
            if bits.len() <= word {
                bits.resize(word + 1, 0);
            }
            if bits[word] & bit == 0 {
                bits[word] |= bit;
                self.backlog += 1;
                if self.backlog == records {
                    self.backlog_done = Some(now);
                    self.backlog_cpu = procfs::cpu_seconds().ok();
                }
            }
        }
        if let (1, Some(joined)) = (member, self.joined) {
            self.moved.entry(partition).or_insert(now - joined);
        }
        Ok(())
    }

    /// The rebalance time, once the joining member yielded every partition it owns.
    fn rebalanced(&self) -> Option<Duration> {
        if self.assigned.is_empty() || !self.assigned.iter().all(|p| self.moved.contains_key(p)) {
            return None;
        }
        self.assigned.iter().filter_map(|p| self.moved.get(p)).max().copied()
    }
}

fn lock(p: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// The report of one process.
pub(crate) fn run(a: &GroupArgs) -> Result<serde_json::Value> {
    ensure!(a.partitions > 0 && a.records > 0, "--partitions and --records must be positive");
    let cpu0 = procfs::cpu_seconds()?;
    let group = format!("krab-bench-{}-{:?}", std::process::id(), Instant::now());
    let progress = Arc::new(Mutex::new(Progress::default()));
    let note = match a.client.as_str() {
        "krab-group" => krab(a, &group, &progress)?,
        "rdkafka-group" => rdkafka(a, &group, &progress)?,
        other => bail!("unknown group client `{other}` (known: krab-group, rdkafka-group)"),
    };
    let p = lock(&progress);
    let (Some(first), Some(done)) = (p.first, p.backlog_done) else { bail!("the backlog was not read") };
    let cpu_s = p.backlog_cpu.unwrap_or(f64::NAN) - cpu0;
    let rebalance = p.rebalanced().context("the joining member never yielded all its partitions")?;
    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    Ok(serde_json::json!({
        "client": a.client,
        "workload": "consume-group",
        "records": a.records,
        "records_per_s": round(a.records as f64 / (done - first).as_secs_f64(), 1),
        "rebalance_ms": round(rebalance.as_secs_f64() * 1e3, 1),
        "moved": p.assigned.len(),
        "cpu_s": round(cpu_s, 2),
        "cpu_us_per_record": round(cpu_s * 1e6 / a.records as f64, 3),
        "peak_rss_mb": round(procfs::peak_rss_mb().unwrap_or(f64::NAN), 1),
        "threads": procfs::threads()?,
        "note": note,
    }))
}

/// Writes records at [`LIVE_RATE`] until `stop`, round robin over the partitions.
async fn live_writer(a: GroupArgs, stop: Arc<AtomicBool>) -> Result<()> {
    use krab_producer::{Producer, ProducerConfig, Record};
    let producer = Producer::connect(ProducerConfig::new(&a.bootstrap)?).await?;
    let topic: Arc<str> = a.topic.as_str().into();
    let started = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * LIVE_RATE as f64) as u64;
        while sent < due {
            let p = (sent % a.partitions as u64) as i32;
            // Accepted is enough: delivery is awaited by close.
            drop(producer.send(Record::new(topic.clone(), "live").partition(p)).await?);
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    producer.close(Duration::from_secs(10)).await?;
    Ok(())
}

fn krab(a: &GroupArgs, group: &str, progress: &Arc<Mutex<Progress>>) -> Result<String> {
    use krab_consumer::{Consumer, ConsumerConfig};
    let rt = crate::runtime(2)?;
    rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let member = |index: usize, name: &'static str| {
            let (a, group, progress, stop) = (a.clone(), group.to_string(), progress.clone(), stop.clone());
            tokio::spawn(async move {
                let config = ConsumerConfig::from_properties([
                    ("bootstrap.servers", a.bootstrap.as_str()),
                    ("client.id", name),
                    ("group.id", group.as_str()),
                    ("auto.offset.reset", "earliest"),
                    ("partition.assignment.strategy", "range"),
                ])?;
                let mut consumer = Consumer::connect(config).await.context("connecting")?;
                consumer.subscribe([a.topic.clone()])?;
                while !stop.load(Ordering::Relaxed) {
                    let batch = tokio::time::timeout(Duration::from_millis(100), consumer.poll_batch(500)).await;
                    let mut p = lock(&progress);
                    if index == 1 {
                        p.assigned = consumer.assignment().iter().map(|tp| tp.partition).collect();
                    }
                    let Ok(batch) = batch else { continue };
                    for part in batch? {
                        for r in &part.records {
                            p.record(index, r.partition, r.offset, a.records, a.partitions)?;
                        }
                    }
                }
                consumer.close().await?;
                anyhow::Ok(())
            })
        };
        let deadline = tokio::time::Instant::now() + a.timeout;
        let first = member(0, "krab-group-0");
        while lock(progress).backlog_done.is_none() {
            ensure!(tokio::time::Instant::now() < deadline, "the backlog was not read within {:?}", a.timeout);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let writer = tokio::spawn(live_writer(a.clone(), stop.clone()));
        // Let the live records flow to the first member before the second joins.
        tokio::time::sleep(Duration::from_secs(1)).await;
        lock(progress).joined = Some(Instant::now());
        let second = member(1, "krab-group-1");
        while lock(progress).rebalanced().is_none() {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the joining member did not yield all its partitions in time"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::Relaxed);
        first.await??;
        second.await??;
        writer.await??;
        anyhow::Ok(format!(
            "2 krab Consumers in one group (classic, range, auto-commit), poll_batch(500); {}; the second joins while \
             {LIVE_RATE} records/s are written",
            crate::runtime_name(2)
        ))
    })
}

fn rdkafka(a: &GroupArgs, group: &str, progress: &Arc<Mutex<Progress>>) -> Result<String> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let stop = Arc::new(AtomicBool::new(false));
    let member = |index: usize, name: &'static str| {
        let (a, group, progress, stop) = (a.clone(), group.to_string(), progress.clone(), stop.clone());
        std::thread::spawn(move || -> Result<()> {
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &a.bootstrap)
                .set("client.id", name)
                .set("group.id", &group)
                .set("auto.offset.reset", "earliest")
                .set("partition.assignment.strategy", "range")
                .set("enable.partition.eof", "false")
                .set("fetch.queue.backoff.ms", "10")
                .create()
                .context("creating a BaseConsumer")?;
            consumer.subscribe(&[&a.topic])?;
            while !stop.load(Ordering::Relaxed) {
                let m = consumer.poll(Duration::from_millis(100));
                let mut p = lock(&progress);
                if index == 1 {
                    p.assigned = consumer.assignment()?.elements().iter().map(|e| e.partition()).collect();
                }
                match m {
                    None => {}
                    Some(Ok(m)) => p.record(index, m.partition(), m.offset(), a.records, a.partitions)?,
                    Some(Err(e)) => bail!("poll: {e}"),
                }
            }
            drop(consumer);
            Ok(())
        })
    };
    let deadline = Instant::now() + a.timeout;
    let first = member(0, "rdkafka-group-0");
    while lock(progress).backlog_done.is_none() {
        ensure!(Instant::now() < deadline, "the backlog was not read within {:?}", a.timeout);
        std::thread::sleep(Duration::from_millis(5));
    }
    let rt = crate::runtime(1)?;
    let writer = {
        let (a, stop) = (a.clone(), stop.clone());
        std::thread::spawn(move || rt.block_on(live_writer(a, stop)))
    };
    std::thread::sleep(Duration::from_secs(1));
    lock(progress).joined = Some(Instant::now());
    let second = member(1, "rdkafka-group-1");
    while lock(progress).rebalanced().is_none() {
        ensure!(Instant::now() < deadline, "the joining member did not yield all its partitions in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    first.join().map_err(|_| anyhow::anyhow!("a member panicked"))??;
    second.join().map_err(|_| anyhow::anyhow!("a member panicked"))??;
    writer.join().map_err(|_| anyhow::anyhow!("the writer panicked"))??;
    Ok(format!(
        "2 librdkafka BaseConsumers in one group (classic, range, auto-commit), poll(100 ms) per record, one thread each; \
         the second joins while {LIVE_RATE} records/s are written (krab's producer)"
    ))
}
