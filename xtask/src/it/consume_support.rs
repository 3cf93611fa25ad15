//! What the consumer scenarios share: a topic filled beforehand with known values
//! (`<partition>-<seq>`), a paced reader that logs every record krab's consumer yields and when,
//! the exactly-once, in-order check of that log against what was produced; reading assigned
//! partitions up to given end offsets; records for reference writers (the Java client's
//! `produce`, `scripts/produce_interop.py`) in their line format, and their delivery reports.

use super::support::{Consumed, max_gap, to_hex};
use anyhow::{Context, Result, bail, ensure};
use krab_consumer::{Consumer, ConsumerConfig, ConsumerRecord, Offset, TimestampType, TopicPartition};
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

/// Assigns `topic`'s partitions from the beginning and reads until every partition's position
/// reaches its end offset in `ends` (partitions not named there are not assigned); returns the
/// records in the order the consumer yielded them. Any error yielded fails the read.
pub(super) async fn read_to_ends(
    consumer: &mut Consumer,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<Vec<ConsumerRecord>> {
    consumer.assign(ends.keys().map(|&p| (TopicPartition::new(topic, p), Offset::Earliest)));
    read_until(consumer, topic, ends, timeout).await
}

/// Reads on (the assignment as it is) until every partition in `ends` has its position at or
/// past its end offset; returns the records in the order the consumer yielded them.
pub(super) async fn read_until(
    consumer: &mut Consumer,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<Vec<ConsumerRecord>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let behind: Vec<(i32, Option<i64>, i64)> = ends
            .iter()
            .map(|(&p, &end)| (p, consumer.position(&TopicPartition::new(topic, p)).ok().flatten(), end))
            .filter(|(_, at, end)| at.is_none_or(|a| a < *end))
            .collect();
        if behind.is_empty() {
            return Ok(out);
        }
        if Instant::now() > deadline {
            bail!(
                "{topic}: read {} records; after {timeout:?} (partition, position, end) still behind: {behind:?}",
                out.len()
            );
        }
        match tokio::time::timeout(Duration::from_millis(100), consumer.poll_batch(500)).await {
            Err(_) => {}
            Ok(Err(e)) => bail!("{topic}: the consumer yielded an error after {} records: {e}", out.len()),
            Ok(Ok(batch)) => out.extend(batch.into_iter().flat_map(|b| b.records)),
        }
    }
}

/// Keeps polling for `period` and returns whatever the consumer yields meanwhile (an error
/// fails).
pub(super) async fn read_for(consumer: &mut Consumer, period: Duration) -> Result<Vec<ConsumerRecord>> {
    let deadline = Instant::now() + period;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, consumer.poll_batch(500)).await {
            Err(_) => break,
            Ok(Err(e)) => bail!("the consumer yielded an error: {e}"),
            Ok(Ok(batch)) => out.extend(batch.into_iter().flat_map(|b| b.records)),
        }
    }
    Ok(out)
}

/// A record krab's consumer yielded, in the reference readers' shape (timestamp type 1 create
/// time, 2 log-append time).
pub(super) fn consumed(r: &ConsumerRecord) -> Consumed {
    Consumed {
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        timestamp_type: match r.timestamp_type {
            TimestampType::CreateTime => 1,
            TimestampType::LogAppendTime => 2,
        },
        key: r.key.as_ref().map(|b| b.to_vec()),
        value: r.value.as_ref().map(|b| b.to_vec()),
        headers: r
            .headers
            .iter()
            .map(|h| (String::from_utf8_lossy(&h.key).into_owned(), h.value.as_ref().map(|v| v.to_vec())))
            .collect(),
    }
}

/// A record for a reference writer: explicit partition and CreateTime timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ToWrite {
    pub(super) partition: i32,
    pub(super) timestamp: i64,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
    pub(super) headers: Vec<(String, Option<Vec<u8>>)>,
}

impl ToWrite {
    /// The writers' input line: `PARTITION TIMESTAMP KEY VALUE NHEADERS [NAME VALUE]...`, bytes
    /// as `-` (null) or `x<hex>`.
    pub(super) fn line(&self) -> String {
        let b = |v: Option<&[u8]>| v.map_or_else(|| "-".to_string(), |v| format!("x{}", to_hex(v)));
        let mut f = vec![
            self.partition.to_string(),
            self.timestamp.to_string(),
            b(self.key.as_deref()),
            b(self.value.as_deref()),
            self.headers.len().to_string(),
        ];
        for (name, value) in &self.headers {
            f.push(b(Some(name.as_bytes())));
            f.push(b(value.as_deref()));
        }
        f.join(" ")
    }

    /// What a reader must see for this record written at `offset`.
    pub(super) fn expected(&self, offset: i64) -> Consumed {
        Consumed {
            partition: self.partition,
            offset,
            timestamp: self.timestamp,
            timestamp_type: 1,
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.clone(),
        }
    }
}

/// A writer's delivery report per input record, in input order: `(partition, offset)` or the
/// error text.
pub(super) fn parse_deliveries(text: &str, count: usize) -> Result<Vec<Result<(i32, i64), String>>> {
    let mut out: Vec<Option<Result<(i32, i64), String>>> = vec![None; count];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("delivery line {line:?}"))?;
        let i = v["i"].as_u64().with_context(|| format!("no index in {line:?}"))? as usize;
        let slot = out.get_mut(i).with_context(|| format!("index {i} of {count} records"))?;
        *slot = Some(match v["err"].as_str() {
            Some(e) => Err(e.to_string()),
            None => {
                let p = v["p"].as_i64().context("p")? as i32;
                Ok((p, v["o"].as_i64().context("o")?))
            }
        });
    }
    out.into_iter().enumerate().map(|(i, d)| d.with_context(|| format!("no delivery report for record {i}"))).collect()
}

/// A request frame the proxy recorded, decoded as `R`: its header and body. `None` for frames of
/// other APIs.
pub(super) fn decode_request<R: krab_protocol::Request>(
    frame: &[u8],
) -> Result<Option<(krab_protocol::messages::RequestHeader, R)>> {
    use krab_protocol::Message;
    use krab_protocol::messages::RequestHeader;
    ensure!(frame.len() >= 4, "a {}-byte request frame", frame.len());
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    if key != R::KEY as i16 {
        return Ok(None);
    }
    let frame = bytes::Bytes::copy_from_slice(frame);
    let header_version = R::KEY.request_header_version(version);
    let header = RequestHeader::decode(&frame, header_version).context("request header")?;
    let body = frame.slice(header.encoded_len(header_version)..);
    let request = R::decode(&body, version).with_context(|| format!("{:?} v{version} request", R::KEY))?;
    Ok(Some((header, request)))
}

/// A response frame the proxy recorded, to a request of type `R` at `version`.
pub(super) fn decode_response<R: krab_protocol::Request>(frame: &[u8], version: i16) -> Result<R::Response> {
    let frame = bytes::Bytes::copy_from_slice(frame);
    let (_, response) = krab_protocol::decode_response::<R>(&frame, version)
        .with_context(|| format!("{:?} v{version} response", R::KEY))?;
    Ok(response)
}
