//! What the consumer incident scenarios share: a topic filled beforehand with known values
//! (`<partition>-<seq>`), a paced reader that logs every record krab's consumer yields and when,
//! and the exactly-once, in-order check of that log against what was produced.

use super::support::max_gap;
use anyhow::{Context, Result, ensure};
use krab_consumer::{Consumer, ConsumerConfig, Offset, TopicPartition};
use krab_producer::{Producer, Record};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Partition → offset → value, as the producer's acknowledgements put them.
pub(super) type Produced = BTreeMap<i32, BTreeMap<i64, String>>;

/// Produces `per_partition` records to each partition with krab's idempotent producer (small
/// batches, so a fetch of `max.partition.fetch.bytes` stays small); returns where each went.
pub(super) async fn produce_beforehand(
    mut config: krab_producer::ProducerConfig,
    topic: &str,
    partitions: i32,
    per_partition: u64,
) -> Result<Produced> {
    config.batch_size = 1024;
    config.enable_idempotence = Some(true);
    let producer = Producer::connect(config).await?;
    let topic: Arc<str> = topic.into();
    let mut futures = Vec::new();
    for seq in 0..per_partition {
        for p in 0..partitions {
            let value = format!("{p}-{seq}");
            futures.push((p, value.clone(), producer.send(Record::new(topic.clone(), value).partition(p)).await?));
        }
    }
    let mut produced = Produced::new();
    for (p, value, f) in futures {
        let m = f.await.with_context(|| format!("producing {value}"))?;
        ensure!(m.partition == p, "{value} acknowledged on partition {}", m.partition);
        ensure!(produced.entry(p).or_default().insert(m.offset, value).is_none(), "offset {p}@{} twice", m.offset);
    }
    producer.close(Duration::from_secs(10)).await?;
    Ok(produced)
}

/// The consumer's settings in these scenarios: small fetches and budgets, so the reader's pace,
/// not a prefetch of the whole log, decides when records are fetched, and incidents hit
/// partitions mid-read.
pub(super) fn consumer_config(bootstrap: &str) -> Result<ConsumerConfig> {
    Ok(ConsumerConfig::new(bootstrap)?
        .client_id("krab-it-consumer")
        .max_partition_fetch_bytes(2048)
        .queued_max_kbytes(64)
        .request_timeout(Duration::from_secs(5)))
}

/// Records a partition can have fetched ahead of the application, at most: its budget (two
/// `max.partition.fetch.bytes`, counted in memory, so fewer records than bytes), one response on
/// top, which may carry a whole producer batch (1 KiB here) beyond the limit. A partition that
/// yielded this many records past where it was when an incident started has fetched from its new
/// leader.
pub(super) const FETCHED_AHEAD: i64 = 600;

/// One record as the consumer yielded it.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) value: String,
    pub(super) at: Instant,
}

/// A reader task: `poll_batch` at a pace (records per second; 0: paused; `u64::MAX`: as fast as
/// the consumer yields), logging every record.
pub(super) struct Reading {
    pub(super) log: Arc<Mutex<Vec<Seen>>>,
    pub(super) errors: Arc<Mutex<Vec<String>>>,
    pub(super) rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Consumer>,
}

impl Reading {
    pub(super) fn start(consumer: Consumer, topic: &str, partitions: i32, rate: u64) -> Self {
        let tps: Vec<_> = (0..partitions).map(|p| (TopicPartition::new(topic, p), Offset::Earliest)).collect();
        consumer.assign(tps);
        let log = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let rate = Arc::new(AtomicU64::new(rate));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, e, r, s) = (log.clone(), errors.clone(), rate.clone(), stop.clone());
        let handle = tokio::spawn(async move {
            let mut consumer = consumer;
            const MAX: usize = 24;
            while !s.load(Ordering::Relaxed) {
                let pace = r.load(Ordering::Relaxed);
                if pace == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let started = Instant::now();
                match tokio::time::timeout(Duration::from_millis(50), consumer.poll_batch(MAX)).await {
                    Err(_) => continue,
                    Ok(Err(err)) => e.lock().unwrap().push(err.to_string()),
                    Ok(Ok(batch)) => {
                        let at = Instant::now();
                        let mut log = l.lock().unwrap();
                        for rec in batch.into_iter().flat_map(|b| b.records) {
                            let value = rec
                                .value
                                .as_deref()
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                                .unwrap_or_default();
                            log.push(Seen { partition: rec.partition, offset: rec.offset, value, at });
                        }
                    }
                }
                if pace != u64::MAX {
                    let due = started + Duration::from_secs_f64(MAX as f64 / pace as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            consumer
        });
        Reading { log, errors, rate, stop, handle }
    }

    pub(super) fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The last offset each partition yielded.
    pub(super) fn positions(&self) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        for s in self.log.lock().unwrap().iter() {
            out.insert(s.partition, s.offset);
        }
        out
    }

    /// Waits until each of `parts` yielded a record [`FETCHED_AHEAD`] past `from` (so it fetched
    /// again after the incident); returns when.
    pub(super) async fn recovered(
        &self,
        parts: &BTreeSet<i32>,
        from: &BTreeMap<i32, i64>,
        timeout: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.positions();
            let behind: Vec<i32> = parts
                .iter()
                .copied()
                .filter(|p| now.get(p).copied().unwrap_or(-1) < from.get(p).copied().unwrap_or(-1) + FETCHED_AHEAD)
                .collect();
            if behind.is_empty() {
                return Ok(Instant::now());
            }
            ensure!(!self.handle.is_finished(), "the reader stopped");
            ensure!(
                Instant::now() < deadline,
                "partitions {behind:?} yielded nothing new within {timeout:?} (positions {now:?}, errors {:?})",
                self.errors.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Reads the rest as fast as it comes, until `total` records were yielded; returns the log.
    pub(super) async fn finish(self, total: usize, timeout: Duration) -> Result<(Vec<Seen>, Vec<String>, Consumer)> {
        self.rate.store(u64::MAX, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        while self.count() < total && Instant::now() < deadline && !self.handle.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let consumer = self.handle.await?;
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        Ok((log, errors, consumer))
    }

    /// Stops the reader (a scenario bailing out).
    pub(super) fn abort(&self) {
        self.handle.abort();
    }
}

/// The longest gap between records of `partition` yielded within `[from, to]`.
pub(super) fn gap(log: &[Seen], partition: i32, from: Instant, to: Instant) -> Duration {
    let times: Vec<Instant> = log.iter().filter(|s| s.partition == partition).map(|s| s.at).collect();
    max_gap(&times, from, to)
}

/// Checks the log against what was produced: per partition, exactly the produced offsets, in
/// order, each with its value; no gap, no repeat. Returns problems and a summary.
pub(super) fn check(produced: &Produced, log: &[Seen]) -> (Vec<String>, String) {
    let mut problems = Vec::new();
    let (mut repeats, mut gaps, mut wrong, mut missing) = (0u64, 0u64, 0u64, 0u64);
    let mut by_partition: BTreeMap<i32, Vec<&Seen>> = BTreeMap::new();
    for s in log {
        by_partition.entry(s.partition).or_default().push(s);
    }
    for (p, want) in produced {
        let got = by_partition.remove(p).unwrap_or_default();
        let want: Vec<(i64, &String)> = want.iter().map(|(o, v)| (*o, v)).collect();
        let mut next = 0usize;
        let mut last: Option<i64> = None;
        for s in &got {
            if let Some(l) = last
                && s.offset <= l
            {
                repeats += 1;
                if problems.len() < 10 {
                    problems.push(format!("partition {p}: offset {} yielded after {l}", s.offset));
                }
                continue;
            }
            last = Some(s.offset);
            match want.get(next) {
                Some(&(o, v)) if o == s.offset && *v == s.value => next += 1,
                Some(&(o, v)) => {
                    if o < s.offset {
                        gaps += 1;
                    } else {
                        wrong += 1;
                    }
                    if problems.len() < 10 {
                        problems
                            .push(format!("partition {p}: expected {o} {v:?} next, got {} {:?}", s.offset, s.value));
                    }
                    // Resynchronise after the offset yielded.
                    next = want.partition_point(|(o, _)| *o <= s.offset);
                }
                None => {
                    wrong += 1;
                    if problems.len() < 10 {
                        problems.push(format!("partition {p}: {} {:?} was never produced", s.offset, s.value));
                    }
                }
            }
        }
        let left = (want.len() - next.min(want.len())) as u64;
        if left > 0 {
            missing += left;
            problems.push(format!("partition {p}: {left} produced records never yielded"));
        }
    }
    for (p, got) in by_partition {
        problems.push(format!("partition {p}: {} records yielded from a partition never produced to", got.len()));
    }
    let summary = format!(
        "{} records yielded, repeated {repeats}, skipped {gaps}, wrong {wrong}, never yielded {missing}",
        log.len()
    );
    (problems, summary)
}
