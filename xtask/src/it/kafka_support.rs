//! What the Kafka scenarios share: their context, control calls off the runtime, a paced keyed
//! producing run, reading a topic back with two reference clients, and the strict log check
//! (every record exactly once, in send order per partition, acknowledged offsets holding their
//! records).

use super::java_client::JavaClient;
use super::kafka_soak::SoakSize;
use super::support::{Consumed, Extent, consume_all, key_of, ms};
use crate::brokers::Venv;
use crate::brokers::kafka::KafkaCluster;
use anyhow::{Result, bail, ensure};
use krab_producer::{DeliveryFuture, Producer, Record, RecordMetadata, java_default_partition};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The Metadata API key.
pub(super) const METADATA: i16 = 3;

/// What every Kafka scenario gets.
pub(crate) struct KafkaCtx<'a> {
    pub(crate) kafka: Arc<KafkaCluster>,
    pub(crate) venv: &'a Venv,
    pub(crate) java: &'a JavaClient,
    pub(crate) soak: SoakSize,
    pub(crate) seed: Option<u64>,
}

/// Runs a control call (blocking: tools, process signals) on the blocking pool.
pub(super) async fn kctl<T: Send + 'static>(
    kafka: &Arc<KafkaCluster>,
    f: impl FnOnce(&KafkaCluster) -> Result<T> + Send + 'static,
) -> Result<T> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || f(&kafka)).await?
}

/// A producing run: records `seq` = 0.. with key `key_of(seq)` and value `"<seq>|<key>"`, at a
/// pace the scenario can change while it runs (0: as fast as `send` takes them).
pub(super) struct Producing {
    pub(super) sent: Arc<AtomicU64>,
    pub(super) rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Result<Vec<DeliveryFuture>>>,
}

impl Producing {
    pub(super) fn start(producer: Producer, topic: &str, total: u64, rate: u64) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        let rate = Arc::new(AtomicU64::new(rate));
        let topic: Arc<str> = topic.into();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r, halt) = (sent.clone(), rate.clone(), stop.clone());
        let handle = tokio::spawn(async move {
            let mut futures = Vec::with_capacity(total.min(1 << 20) as usize);
            let mut paced_from = (Instant::now(), 0u64);
            let mut last_rate = r.load(Ordering::Relaxed);
            for seq in 0..total {
                if halt.load(Ordering::Relaxed) {
                    break;
                }
                let now_rate = r.load(Ordering::Relaxed);
                if now_rate != last_rate {
                    paced_from = (Instant::now(), seq);
                    last_rate = now_rate;
                }
                if now_rate > 0 {
                    let due = paced_from.0 + Duration::from_secs_f64((seq - paced_from.1) as f64 / now_rate as f64);
                    let now = Instant::now();
                    if due > now + Duration::from_millis(1) {
                        tokio::time::sleep(due - now).await;
                    }
                }
                let key = key_of(seq);
                let record = Record::new(topic.clone(), format!("{seq}|{key}")).key(key);
                futures.push(producer.send(record).await?);
                s.store(seq + 1, Ordering::Relaxed);
            }
            Ok(futures)
        });
        Self { sent, rate, stop, handle }
    }

    pub(super) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` records were sent.
    pub(super) async fn wait_sent(&self, n: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.sent() < n {
            ensure!(!self.handle.is_finished(), "producing stopped at {} of the {n} records waited for", self.sent());
            ensure!(Instant::now() < deadline, "only {} records sent, waited for {n}", self.sent());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Stops sending; `finish` then returns the outcomes of what was sent.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Sends the rest unthrottled and returns every delivery outcome, in sequence order.
    pub(super) async fn finish(self) -> Result<Vec<Result<RecordMetadata, String>>> {
        self.rate.store(0, Ordering::Relaxed);
        let futures = self.handle.await??;
        let mut out = Vec::with_capacity(futures.len());
        for f in futures {
            out.push(f.await.map_err(|e| e.to_string()));
        }
        Ok(out)
    }

    /// Passes `r` through, stopping the run first if it is an error (a scenario bailing out
    /// mid-run leaves no producing task behind).
    pub(super) fn unless_failed<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.handle.abort();
        }
        r
    }
}

/// Reads the topic back with Kafka's Java client and with confluent-kafka; they must agree
/// exactly (same records, offsets, timestamps, keys, values, headers).
pub(super) async fn read_back(
    ctx: &KafkaCtx<'_>,
    topic: &str,
    partitions: i32,
) -> Result<(Vec<Consumed>, BTreeMap<i32, Extent>, String)> {
    let bootstrap = ctx.kafka.bootstrap();
    let t = Instant::now();
    let (java, java_ext) = ctx.java.consume(&bootstrap, topic, partitions, "read_uncommitted").await?;
    let java_took = t.elapsed();
    let t = Instant::now();
    let (rdk, rdk_ext) = consume_all(ctx.venv, &bootstrap, topic, partitions).await?;
    let rdk_took = t.elapsed();
    let sorted = |v: &[Consumed]| {
        let mut v = v.to_vec();
        v.sort_by_key(|r| (r.partition, r.offset));
        v
    };
    let (a, b) = (sorted(&java), sorted(&rdk));
    if a != b {
        let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        bail!(
            "the Java client read {} records, confluent-kafka {}; first difference at #{first}: {:?} vs {:?}",
            a.len(),
            b.len(),
            a.get(first),
            b.get(first)
        );
    }
    for (p, e) in &java_ext {
        let r = rdk_ext.get(p);
        ensure!(
            r.is_some_and(|r| r.eof == e.eof),
            "partition {p}: end offsets differ: Java {e:?}, confluent-kafka {r:?}"
        );
    }
    let how =
        format!("read back identically by the Java client ({}) and confluent-kafka ({})", ms(java_took), ms(rdk_took));
    Ok((java, java_ext, how))
}

/// What the log check found.
pub(super) struct LogCheck {
    pub(super) problems: Vec<String>,
    pub(super) acked: u64,
    pub(super) failed: u64,
    pub(super) failed_in_log: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) reordered: u64,
}

impl LogCheck {
    pub(super) fn summary(&self) -> String {
        format!(
            "acked {}, failed {} ({} of them in the log once), lost {}, duplicated {}, reordered {}",
            self.acked, self.failed, self.failed_in_log, self.lost, self.duplicated, self.reordered
        )
    }
}

/// Checks the log against what was sent: every acknowledged record is in the log exactly once,
/// at its acknowledged offset; a failed one is absent or there once (a timed-out request may
/// still have been written); nothing is there twice; within a partition, records appear in send
/// order; each key is on its murmur2 partition. `failure_ok` says which delivery errors are
/// acceptable (e.g. only delivery timeouts).
pub(super) fn check_log(
    records: &[Consumed],
    extents: &BTreeMap<i32, Extent>,
    delivered: &[Result<RecordMetadata, String>],
    partitions: i32,
    failure_ok: impl Fn(&str) -> bool,
) -> LogCheck {
    let mut problems = Vec::new();
    for (p, e) in extents {
        let n = records.iter().filter(|r| r.partition == *p).count() as i64;
        if n != e.eof - e.lo {
            problems.push(format!("partition {p}: read {n} records between offsets {} and {}", e.lo, e.eof));
        }
    }
    let mut at: HashMap<u64, Vec<(i32, i64)>> = HashMap::with_capacity(records.len());
    let mut last: BTreeMap<i32, u64> = BTreeMap::new();
    let mut reordered = Vec::new();
    let mut malformed = Vec::new();
    let mut sorted: Vec<&Consumed> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in sorted {
        let value = r.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        let key = r.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        let Some(seq) = value.split_once('|').and_then(|(s, k)| s.parse::<u64>().ok().filter(|_| k == key)) else {
            malformed.push(format!("{}@{}: key {key:?} value {value:?}", r.partition, r.offset));
            continue;
        };
        if key != key_of(seq) || java_default_partition(key.as_bytes(), partitions) != r.partition {
            malformed.push(format!("{}@{}: #{seq} with key {key:?} on the wrong partition", r.partition, r.offset));
        }
        at.entry(seq).or_default().push((r.partition, r.offset));
        if let Some(prev) = last.insert(r.partition, seq)
            && prev >= seq
        {
            reordered.push(format!("partition {}: #{prev} before #{seq}@{}", r.partition, r.offset));
        }
    }
    let (mut acked, mut failed, mut failed_in_log, mut lost) = (0, 0, 0, 0);
    let mut wrong = Vec::new();
    let mut bad_failures = Vec::new();
    for (seq, d) in delivered.iter().enumerate() {
        let copies = at.get(&(seq as u64)).map(Vec::as_slice).unwrap_or_default();
        match d {
            Ok(m) => {
                acked += 1;
                if copies.is_empty() {
                    lost += 1;
                    if lost <= 5 {
                        wrong.push(format!("#{seq} acknowledged at {}@{} is not in the log", m.partition, m.offset));
                    }
                } else if !copies.contains(&(m.partition, m.offset)) {
                    wrong
                        .push(format!("#{seq} acknowledged at {}@{}, in the log at {copies:?}", m.partition, m.offset));
                }
            }
            Err(e) => {
                failed += 1;
                failed_in_log += u64::from(!copies.is_empty());
                if !failure_ok(e) && bad_failures.len() < 5 {
                    bad_failures.push(format!("#{seq}: {e}"));
                }
            }
        }
    }
    let duplicated: Vec<_> = at.iter().filter(|(_, c)| c.len() > 1).map(|(s, c)| (*s, c.clone())).collect();
    let beyond = at.keys().filter(|&&s| s as usize >= delivered.len()).count();
    let sample = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
    if lost > 0 || !wrong.is_empty() {
        problems.push(format!("{lost} acknowledged records lost; acknowledgements disagreeing: {}", sample(&wrong)));
    }
    if !duplicated.is_empty() {
        let mut d = duplicated.clone();
        d.sort();
        problems.push(format!("{} records in the log more than once, first {:?}", d.len(), &d[..d.len().min(5)]));
    }
    if !reordered.is_empty() {
        problems.push(format!("{} records out of send order: {}", reordered.len(), sample(&reordered)));
    }
    if !malformed.is_empty() {
        problems.push(format!("{} malformed or misplaced records: {}", malformed.len(), sample(&malformed)));
    }
    if beyond > 0 {
        problems.push(format!("{beyond} records in the log were never sent"));
    }
    if !bad_failures.is_empty() {
        problems.push(format!("deliveries failed with unexpected errors: {}", sample(&bad_failures)));
    }
    LogCheck {
        problems,
        acked,
        failed,
        failed_in_log,
        lost,
        duplicated: duplicated.len() as u64,
        reordered: reordered.len() as u64,
    }
}

/// A delivery error that a passed delivery timeout explains.
pub(super) fn is_timeout_error(e: &str) -> bool {
    e.contains("timed out") || e.contains("timeout")
}

/// Samples, every millisecond, the producer's per-partition acknowledgement times for a topic
/// (see `support::spawn_ack_monitor`), and stops on drop of the returned guard's flag.
pub(super) struct Monitor {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) handle: tokio::task::JoinHandle<super::support::AckLog>,
}

impl Monitor {
    pub(super) fn start(producer: &Producer, topic: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = super::support::spawn_ack_monitor(producer.clone(), topic, stop.clone());
        Self { stop, handle }
    }

    pub(super) async fn finish(self) -> Result<super::support::AckLog> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.handle.await?)
    }
}
