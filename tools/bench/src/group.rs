//! The `consume-group` workload: a consumer group reads a pre-filled topic from the start, first
//! with one member; once half the records are read a second member joins. Measured: the group's
//! records/s over the whole read, and the rebalance time: from the second member's start until
//! every partition yields records again (whichever member now owns it).
//!
//! Clients: `krab-group` (two `Consumer`s with `group.id`, `poll_batch`), `rdkafka-group` (two
//! librdkafka `BaseConsumer`s subscribing). The rebalance time is measured at the joining member:
//! from its start until it has yielded records of every partition it reads (the ones that moved
//! to it flowing at their new owner). Both with the classic protocol and the eager `range`
//! assignor (both clients' default), auto-commit on: the re-reads a rebalance causes are counted
//! (distinct records are what ends the run).

use crate::procfs;
use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Distinct records per partition (a bit per offset), the join and when every partition
/// flowed again after it.
struct Progress {
    seen: Vec<Vec<u64>>,
    distinct: u64,
    reads: u64,
    joined: Option<Instant>,
    /// When the joining member first yielded each partition, after its start.
    moved: BTreeMap<i32, Duration>,
    first: Option<Instant>,
}

impl Progress {
    fn new(partitions: i32) -> Self {
        Progress {
            seen: vec![Vec::new(); partitions.max(0) as usize],
            distinct: 0,
            reads: 0,
            joined: None,
            moved: BTreeMap::new(),
            first: None,
        }
    }

    /// A record read by member `member` (0: the first, 1: the one that joins).
    fn record(&mut self, member: usize, partition: i32, offset: i64) -> Result<()> {
        let now = Instant::now();
        self.first.get_or_insert(now);
        let bits = usize::try_from(partition)
            .ok()
            .and_then(|p| self.seen.get_mut(p))
            .with_context(|| format!("a record of partition {partition}, outside the topic"))?;
        let o = usize::try_from(offset).context("a negative offset")?;
        if bits.len() <= o / 64 {
            bits.resize(o / 64 + 1, 0);
        }
        let (word, bit) = (o / 64, 1u64 << (o % 64));
        if bits[word] & bit == 0 {
            bits[word] |= bit;
            self.distinct += 1;
        }
        self.reads += 1;
        if let (1, Some(joined)) = (member, self.joined) {
            self.moved.entry(partition).or_insert(now - joined);
        }
        Ok(())
    }
}

fn lock(p: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// The report of one process.
pub(crate) fn run(a: &GroupArgs) -> Result<serde_json::Value> {
    ensure!(a.partitions > 0 && a.records > 0, "--partitions and --records must be positive");
    let t0 = Instant::now();
    let cpu0 = procfs::cpu_seconds()?;
    let group = format!("krab-bench-{}-{}", std::process::id(), t0.elapsed().as_nanos());
    let progress = Arc::new(Mutex::new(Progress::new(a.partitions)));
    let note = match a.client.as_str() {
        "krab-group" => krab(a, &group, &progress)?,
        "rdkafka-group" => rdkafka(a, &group, &progress)?,
        other => bail!("unknown group client `{other}` (known: krab-group, rdkafka-group)"),
    };
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_s = procfs::cpu_seconds()? - cpu0;
    let p = lock(&progress);
    ensure!(p.distinct == a.records, "read {} of {} distinct records", p.distinct, a.records);
    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    let reading = p.first.map_or(seconds, |f| f.elapsed().as_secs_f64().min(seconds));
    Ok(serde_json::json!({
        "client": a.client,
        "workload": "consume-group",
        "records": a.records,
        "seconds": round(seconds, 3),
        "records_per_s": round(a.records as f64 / reading, 1),
        "rebalance_ms": round(p.moved.values().max().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3), 1),
        "moved": p.moved.len(),
        "reread": p.reads - p.distinct,
        "cpu_s": round(cpu_s, 2),
        "cpu_us_per_record": round(cpu_s * 1e6 / a.records as f64, 3),
        "peak_rss_mb": round(procfs::peak_rss_mb().unwrap_or(f64::NAN), 1),
        "threads": procfs::threads()?,
        "note": note,
    }))
}

fn krab(a: &GroupArgs, group: &str, progress: &Arc<Mutex<Progress>>) -> Result<String> {
    use krab_consumer::{Consumer, ConsumerConfig};
    let rt = crate::runtime(2)?;
    rt.block_on(async {
        let member = |index: usize, name: &'static str| {
            let (bootstrap, topic, group, progress) = (a.bootstrap.clone(), a.topic.clone(), group.to_string(), progress.clone());
            let records = a.records;
            tokio::spawn(async move {
                let config = ConsumerConfig::from_properties([
                    ("bootstrap.servers", bootstrap.as_str()),
                    ("client.id", name),
                    ("group.id", group.as_str()),
                    ("auto.offset.reset", "earliest"),
                    ("partition.assignment.strategy", "range"),
                ])?;
                let mut consumer = Consumer::connect(config).await.context("connecting")?;
                consumer.subscribe([topic])?;
                while lock(&progress).distinct < records {
                    let Ok(batch) = tokio::time::timeout(Duration::from_millis(100), consumer.poll_batch(500)).await else {
                        continue;
                    };
                    let mut p = lock(&progress);
                    for part in batch? {
                        for r in &part.records {
                            p.record(index, r.partition, r.offset)?;
                        }
                    }
                }
                consumer.close().await?;
                anyhow::Ok(())
            })
        };
        let first = member(0, "krab-group-0");
        let deadline = tokio::time::Instant::now() + a.timeout;
        while lock(progress).distinct < a.records / 2 {
            ensure!(tokio::time::Instant::now() < deadline, "read {} of {} records in {:?}", lock(progress).distinct, a.records, a.timeout);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lock(progress).joined = Some(Instant::now());
        let second = member(1, "krab-group-1");
        let both = async {
            first.await??;
            second.await??;
            anyhow::Ok(())
        };
        tokio::time::timeout_at(deadline, both).await.map_err(|_| anyhow::anyhow!("not read within {:?}", a.timeout))??;
        anyhow::Ok(format!(
            "2 krab Consumers in one group (classic, range, auto-commit), poll_batch(500); the second joins at half; {}",
            crate::runtime_name(2)
        ))
    })
}

fn rdkafka(a: &GroupArgs, group: &str, progress: &Arc<Mutex<Progress>>) -> Result<String> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let member = |index: usize, name: &'static str| {
        let (bootstrap, topic, group, progress) =
            (a.bootstrap.clone(), a.topic.clone(), group.to_string(), progress.clone());
        let (records, timeout) = (a.records, a.timeout);
        std::thread::spawn(move || -> Result<()> {
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("client.id", name)
                .set("group.id", &group)
                .set("auto.offset.reset", "earliest")
                .set("partition.assignment.strategy", "range")
                .set("enable.partition.eof", "false")
                .set("fetch.queue.backoff.ms", "10")
                .create()
                .context("creating a BaseConsumer")?;
            consumer.subscribe(&[&topic])?;
            let deadline = Instant::now() + timeout;
            while lock(&progress).distinct < records {
                ensure!(Instant::now() < deadline, "not read within {timeout:?}");
                match consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Ok(m)) => lock(&progress).record(index, m.partition(), m.offset())?,
                    Some(Err(e)) => bail!("poll: {e}"),
                }
            }
            drop(consumer);
            Ok(())
        })
    };
    let first = member(0, "rdkafka-group-0");
    let deadline = Instant::now() + a.timeout;
    while lock(progress).distinct < a.records / 2 {
        ensure!(
            Instant::now() < deadline,
            "read {} of {} records in {:?}",
            lock(progress).distinct,
            a.records,
            a.timeout
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    lock(progress).joined = Some(Instant::now());
    let second = member(1, "rdkafka-group-1");
    first.join().map_err(|_| anyhow::anyhow!("a member panicked"))??;
    second.join().map_err(|_| anyhow::anyhow!("a member panicked"))??;
    Ok("2 librdkafka BaseConsumers in one group (classic, range, auto-commit), poll(100 ms) per record, one thread each; \
        the second joins at half"
        .into())
}
