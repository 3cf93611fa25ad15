//! Helpers the integration scenarios share: mock control off the runtime, polling, reading a topic
//! back with confluent-kafka, the acknowledgement monitor and its gaps.

use crate::brokers::Venv;
use crate::brokers::mock::MockCluster;
use anyhow::{Context, Result, bail, ensure};
use krab_producer::{PartitionStats, Producer, ProducerConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

// -------------------------------------------------------------------------------------------
// Helpers
// -------------------------------------------------------------------------------------------

pub(super) const METADATA: i16 = 3;
pub(super) const PRODUCE: i16 = 0;
pub(super) const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// Runs a mock-cluster control command (blocking pipe I/O) on the blocking pool, so that no
/// runtime worker is held up while the producer runs.
pub(super) async fn ctl<T: Send + 'static>(
    mock: &Arc<MockCluster>,
    f: impl FnOnce(&MockCluster) -> Result<T> + Send + 'static,
) -> Result<T> {
    let mock = mock.clone();
    tokio::task::spawn_blocking(move || f(&mock)).await?
}

/// Polls `f` every 2 ms until it yields a value.
pub(super) async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

pub(super) fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn from_hex(s: &str) -> Result<Vec<u8>> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digits = std::str::from_utf8(pair).ok().filter(|d| d.len() == 2);
            digits.and_then(|d| u8::from_str_radix(d, 16).ok()).with_context(|| format!("bad hex {s:?}"))
        })
        .collect()
}

/// A record as confluent-kafka read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Consumed {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) timestamp: i64,
    /// 1: create time, 2: log-append time.
    pub(super) timestamp_type: i64,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
    pub(super) headers: Vec<(String, Option<Vec<u8>>)>,
}

/// How far confluent-kafka read a partition.
#[derive(Debug, Clone, Copy)]
pub(super) struct Extent {
    /// The Fetch high watermark (where the partition EOF was reported).
    pub(super) eof: i64,
    /// ListOffsets earliest.
    pub(super) lo: i64,
    /// ListOffsets latest (wrong on tansu's memory storage; informational there).
    pub(super) hi: i64,
}

pub(super) fn opt_hex(v: &serde_json::Value) -> Result<Option<Vec<u8>>> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => from_hex(s).map(Some),
        other => bail!("expected hex or null, got {other}"),
    }
}

pub(super) fn parse_consumed(v: &serde_json::Value) -> Result<Consumed> {
    let int = |k: &str| v[k].as_i64().with_context(|| format!("field {k} in {v}"));
    let headers = v["h"]
        .as_array()
        .context("headers")?
        .iter()
        .map(|h| Ok((h[0].as_str().context("header name")?.to_string(), opt_hex(&h[1])?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Consumed {
        partition: i32::try_from(int("p")?)?,
        offset: int("o")?,
        timestamp: int("ts")?,
        timestamp_type: int("tt")?,
        key: opt_hex(&v["k"])?,
        value: opt_hex(&v["v"])?,
        headers,
    })
}

/// Reads every partition of `topic` from the beginning to its high watermark with confluent-kafka
/// (`xtask/scripts/consume_check.py`).
pub(super) async fn consume_all(
    venv: &Venv,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<(Vec<Consumed>, BTreeMap<i32, Extent>)> {
    let script = crate::project_root().join("xtask").join("scripts").join("consume_check.py");
    let out = tokio::process::Command::new(venv.python())
        .arg(&script)
        .args([bootstrap, topic, &partitions.to_string(), "90"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("consume_check.py {topic} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8(out.stdout).context("consume_check.py output")?;
    parse_consumed_lines(&text, partitions)
}

/// Parses a reader's output (`consume_check.py`'s format, which the Java client also writes):
/// one record object per line, then the `end` line with each partition's extent.
pub(super) fn parse_consumed_lines(text: &str, partitions: i32) -> Result<(Vec<Consumed>, BTreeMap<i32, Extent>)> {
    let mut records = Vec::new();
    let mut extents = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("output line {line:?}"))?;
        if let Some(end) = v.get("end") {
            for (p, e) in end.as_object().context("end")? {
                let int = |k: &str| e[k].as_i64().with_context(|| format!("end.{p}.{k}"));
                extents.insert(p.parse()?, Extent { eof: int("eof")?, lo: int("lo")?, hi: int("hi")? });
            }
        } else {
            records.push(parse_consumed(&v)?);
        }
    }
    ensure!(extents.len() == partitions as usize, "the reader reported {} partitions' extents", extents.len());
    Ok((records, extents))
}

pub(super) fn producer_config(bootstrap: &str) -> Result<ProducerConfig> {
    let mut config = ProducerConfig::new(bootstrap)?;
    config.client_id = "krab-it-producer".into();
    config.request_timeout = Duration::from_secs(10);
    Ok(config)
}

/// Leaders of a topic's partitions in the producer's current metadata.
pub(super) fn leaders(producer: &Producer, topic: &str) -> BTreeMap<i32, i32> {
    producer
        .cluster()
        .snapshot()
        .topic(topic)
        .map(|t| t.partitions.iter().map(|p| (p.partition, p.leader.unwrap_or(-1))).collect())
        .unwrap_or_default()
}

pub(super) fn key_of(seq: u64) -> String {
    format!("k{}", seq % 1000)
}

/// The longest gap between consecutive `times` overlapping `[from, to]` (an open gap running past
/// `to` counts up to `to`).
pub(super) fn max_gap(times: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut worst = Duration::ZERO;
    let mut prev: Option<Instant> = None;
    for &t in times {
        if let Some(p) = prev.filter(|p| t > from && *p < to) {
            worst = worst.max(t - p);
        }
        prev = Some(t);
        if t > to {
            return worst;
        }
    }
    match prev {
        Some(p) => worst.max(to.saturating_duration_since(p.max(from))),
        None => to - from,
    }
}

/// The acknowledgement times of each partition, as seen by sampling `Producer::stats` every
/// millisecond. A gap between two observed acknowledgements is at most one sampling period longer
/// than the real gap, never shorter.
pub(super) struct AckLog {
    pub(super) times: BTreeMap<i32, Vec<Instant>>,
    /// When the monitor sampled: a silence here means the runtime (and so the producer, which
    /// shares it) was not scheduled.
    pub(super) samples: Vec<Instant>,
}

impl AckLog {
    pub(super) fn max_gap(&self, partition: i32, from: Instant, to: Instant) -> Duration {
        self.times.get(&partition).map_or(to - from, |t| max_gap(t, from, to))
    }
}

pub(super) fn spawn_ack_monitor(
    producer: Producer,
    topic: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<AckLog> {
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let mut times: BTreeMap<i32, Vec<Instant>> = BTreeMap::new();
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            samples.push(Instant::now());
            for (tp, s) in producer.stats() {
                if *tp.topic != *topic {
                    continue;
                }
                let Some(at) = s.last_ack else { continue };
                let log = times.entry(tp.partition).or_default();
                if log.last() != Some(&at) {
                    log.push(at);
                }
            }
            if stop.load(Ordering::Relaxed) {
                return AckLog { times, samples };
            }
        }
    })
}

/// One field of each partition's stats, for the scenario's topic.
pub(super) fn per_partition<T>(
    producer: &Producer,
    topic: &str,
    field: impl Fn(&PartitionStats) -> T,
) -> BTreeMap<i32, T> {
    producer.stats().iter().filter(|(tp, _)| &*tp.topic == topic).map(|(tp, s)| (tp.partition, field(s))).collect()
}

pub(super) fn stalls(producer: &Producer, topic: &str) -> BTreeMap<i32, u64> {
    per_partition(producer, topic, |s| s.stalls)
}

pub(super) fn last_acks(producer: &Producer, topic: &str) -> BTreeMap<i32, Option<Instant>> {
    per_partition(producer, topic, |s| s.last_ack)
}

pub(super) fn newly_stalled(before: &BTreeMap<i32, u64>, now: &BTreeMap<i32, u64>) -> BTreeSet<i32> {
    now.iter().filter(|(p, n)| **n > before.get(p).copied().unwrap_or(0)).map(|(p, _)| *p).collect()
}

/// Waits until every partition in `parts` is acknowledged after `after`; returns when.
pub(super) async fn acked_after(
    producer: &Producer,
    topic: &str,
    parts: &BTreeSet<i32>,
    after: Instant,
    what: &str,
) -> Result<Instant> {
    wait_for(what, Duration::from_secs(15), || {
        let acks = last_acks(producer, topic);
        parts.iter().all(|p| acks.get(p).copied().flatten().is_some_and(|t| t > after)).then(Instant::now)
    })
    .await
}

/// Waits until the producer's metadata shows `moves` applied; returns when.
pub(super) async fn leaders_seen(producer: &Producer, topic: &str, moves: &BTreeMap<i32, i32>) -> Result<Instant> {
    wait_for("the new leaders in the producer's metadata", Duration::from_secs(10), || {
        let now = leaders(producer, topic);
        moves.iter().all(|(p, to)| now.get(p) == Some(to)).then(Instant::now)
    })
    .await
}

pub(super) fn moves_text(moves: &BTreeMap<i32, i32>, before: &BTreeMap<i32, i32>) -> String {
    moves.iter().map(|(p, to)| format!("{p}:{}->{to}", before[p])).collect::<Vec<_>>().join(" ")
}
