//! The producer's integration scenarios (`cargo xtask it`), against brokers started here:
//!
//! - mock cluster, 3 brokers: 200,000 records through seven incidents: 4 leaders moved; a broker
//!   down and its partitions moved; then 5 times NOT_LEADER_OR_FOLLOWER injected on one Produce
//!   request. Each must cost exactly one Metadata request at the cluster; the acknowledgement gaps
//!   of every partition are measured; then everything is read back with confluent-kafka and
//!   checked for loss, duplicates and order.
//! - mock cluster with 500 ms of RTT: `send` (accepting into the buffer) stays fast.
//! - tansu: every compression codec, headers (a null-valued one too), null keys and values read
//!   back identically by confluent-kafka; keys land where Java's murmur2 puts them.
//!
//! `--only producer` runs these alone (`producer-mock`, `producer-tansu`: one broker kind).

use crate::brokers::mock::MockCluster;
use crate::brokers::tansu::{Options, Tansu};
use crate::brokers::{Venv, free_port};
use anyhow::{Context, Result, bail, ensure};
use krab_producer::{
    Compression, DeliveryFuture, PartitionStats, Producer, ProducerConfig, Record, RecordMetadata, java_default_partition,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const METADATA: i16 = 3;
const PRODUCE: i16 = 0;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// Runs the producer scenarios that `only` selects (`None`: all).
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    only: Option<&str>,
    record: &mut impl FnMut(&str, Result<()>),
) -> Result<()> {
    let wants = |kind: &str| only.is_none_or(|o| o == kind || o == "producer" || o == format!("producer-{kind}"));
    if wants("tansu") {
        let venv = Venv::ensure()?;
        let tansu = Tansu::start(&venv, Options::new(free_port()?))?;
        println!("tansu for the producer at {}", tansu.bootstrap());
        record(
            "producer/tansu: every codec, headers, null keys and values read back identically by confluent-kafka",
            rt.block_on(codecs_interop(&venv, &tansu)),
        );
        record(
            "producer/tansu: keys a..z land on Java's murmur2 partitions (12 and 6 partitions)",
            rt.block_on(key_placement(&venv, &tansu)),
        );
    }
    if wants("mock") {
        let venv = Venv::ensure()?;
        let mock = Arc::new(MockCluster::start(3)?);
        mock.start_tracking()?;
        println!("mock cluster for the producer at {}", mock.bootstrap());
        record(
            "producer/mock: 200k records through leader moves, a broker down and injected errors",
            rt.block_on(leader_moves(&venv, &mock)),
        );
        record("producer/mock: send stays fast while the flush is slow (rtt 500 ms)", rt.block_on(send_latency(&mock)));
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// Helpers
// -------------------------------------------------------------------------------------------

/// Runs a mock-cluster control command (blocking pipe I/O) on the blocking pool, so that no
/// runtime worker is held up while the producer runs.
async fn ctl<T: Send + 'static>(
    mock: &Arc<MockCluster>,
    f: impl FnOnce(&MockCluster) -> Result<T> + Send + 'static,
) -> Result<T> {
    let mock = mock.clone();
    tokio::task::spawn_blocking(move || f(&mock)).await?
}

/// Polls `f` every 2 ms until it yields a value.
async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
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

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Result<Vec<u8>> {
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
struct Consumed {
    partition: i32,
    offset: i64,
    timestamp: i64,
    /// 1: create time, 2: log-append time.
    timestamp_type: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// How far confluent-kafka read a partition.
#[derive(Debug, Clone, Copy)]
struct Extent {
    /// The Fetch high watermark (where the partition EOF was reported).
    eof: i64,
    /// ListOffsets earliest.
    lo: i64,
    /// ListOffsets latest (wrong on tansu's memory storage; informational there).
    hi: i64,
}

fn opt_hex(v: &serde_json::Value) -> Result<Option<Vec<u8>>> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => from_hex(s).map(Some),
        other => bail!("expected hex or null, got {other}"),
    }
}

fn parse_consumed(v: &serde_json::Value) -> Result<Consumed> {
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
async fn consume_all(
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
    let mut records = Vec::new();
    let mut extents = BTreeMap::new();
    for line in text.lines() {
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
    ensure!(extents.len() == partitions as usize, "consume_check.py reported {} partitions' extents", extents.len());
    Ok((records, extents))
}

fn producer_config(bootstrap: &str) -> Result<ProducerConfig> {
    let mut config = ProducerConfig::new(bootstrap)?;
    config.client_id = "krab-it-producer".into();
    config.request_timeout = Duration::from_secs(10);
    Ok(config)
}

/// Leaders of a topic's partitions in the producer's current metadata.
fn leaders(producer: &Producer, topic: &str) -> BTreeMap<i32, i32> {
    producer
        .cluster()
        .snapshot()
        .topic(topic)
        .map(|t| t.partitions.iter().map(|p| (p.partition, p.leader.unwrap_or(-1))).collect())
        .unwrap_or_default()
}

// -------------------------------------------------------------------------------------------
// Scenario 1: leader moves on the mock cluster
// -------------------------------------------------------------------------------------------

const MOVES_TOPIC: &str = "krab-it-producer-moves";
const PARTITIONS: i32 = 12;
const RECORDS: u64 = 200_000;
/// Records per second: steady traffic on every partition for ~12.5 s, so that each incident
/// happens while all partitions are busy.
const RATE: f64 = 16_000.0;
const LINGER: Duration = Duration::from_millis(5);
/// How long to keep watching after recovery, so that a late extra Metadata request is counted:
/// longer than the producer's longest wait between resolves (`retry.backoff.max.ms`, 1 s).
const SETTLE: Duration = Duration::from_millis(1100);
/// The longest acknowledgement gap allowed to a partition an incident does not involve. In steady
/// state a partition is acknowledged once per linger interval (its batch waits `linger`, the
/// mock answers in well under a millisecond). Allowed: 4 linger intervals (the batch in progress
/// when the incident starts, plus flush-loop turns busy with requeues and the resolve) and 30 ms
/// for the round trip, the 1 ms sampling of the stats and scheduling on a shared 2-core runner.
/// Stalls of the machine itself are added (see [`machine_stall`]).
const UNINVOLVED_GAP_BOUND: Duration = Duration::from_millis(4 * 5 + 30);
/// The broker the probe talks to; incident b takes down another one.
const PROBE_BROKER: i32 = 3;
/// The probe's pace.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

fn key_of(seq: u64) -> String {
    format!("k{}", seq % 1000)
}

/// The longest gap between consecutive `times` overlapping `[from, to]` (an open gap running past
/// `to` counts up to `to`).
fn max_gap(times: &[Instant], from: Instant, to: Instant) -> Duration {
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
struct AckLog {
    times: BTreeMap<i32, Vec<Instant>>,
    /// When the monitor sampled: a silence here means the runtime (and so the producer, which
    /// shares it) was not scheduled.
    samples: Vec<Instant>,
}

impl AckLog {
    fn max_gap(&self, partition: i32, from: Instant, to: Instant) -> Duration {
        self.times.get(&partition).map_or(to - from, |t| max_gap(t, from, to))
    }
}

fn spawn_ack_monitor(producer: Producer, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<AckLog> {
    tokio::spawn(async move {
        let mut times: BTreeMap<i32, Vec<Instant>> = BTreeMap::new();
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            samples.push(Instant::now());
            for (tp, s) in producer.stats() {
                if &*tp.topic != MOVES_TOPIC {
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

/// How responsive the machine and the mock are, apart from the producer: a thread of its own,
/// with its own runtime and connection, sends ApiVersions to one broker every 2 ms and records
/// when the answers arrive. When it sees a stall (the single-threaded mock or this process not
/// scheduled, on a runner shared with a fuzzer), every partition's acknowledgements were delayed
/// as much, so the uninvolved-gap bound allows for it. The producer cannot hide its own pauses
/// here: the probe shares no task, lock or connection with it.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<Vec<Instant>>>,
}

impl Probe {
    fn start(addr: krab_cluster::BrokerAddr) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let config =
                    krab_cluster::ConnectionConfig { client_id: Some("krab-it-probe".into()), ..Default::default() };
                let transport = krab_cluster::TcpTransport::new(Duration::from_secs(5));
                let broker = krab_cluster::Broker::connect(transport, addr, Some(PROBE_BROKER), config).await?;
                let mut answers = Vec::new();
                while !flag.load(Ordering::Relaxed) {
                    broker.call(|_| krab_protocol::messages::ApiVersionsRequest::default()).await?;
                    answers.push(Instant::now());
                    tokio::time::sleep(PROBE_INTERVAL).await;
                }
                Ok(answers)
            })
        });
        Probe { stop, thread }
    }

    fn finish(self) -> Result<Vec<Instant>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| anyhow::anyhow!("the probe thread panicked"))?
    }
}

/// How long the machine demonstrably stood still in `[from, to]`: the longest silence of the
/// probe (the mock or the machine) or of the ack monitor (this process's runtime, which the
/// producer shares) beyond their own pace. A monitor silence also stretches every observed gap
/// by as much, since the acknowledgements in between go unseen.
fn machine_stall(probe: &[Instant], log: &AckLog, from: Instant, to: Instant) -> Duration {
    let probe = max_gap(probe, from, to).saturating_sub(PROBE_INTERVAL + Duration::from_millis(1));
    let monitor = max_gap(&log.samples, from, to).saturating_sub(Duration::from_millis(2));
    probe.max(monitor)
}

/// One field of each partition's stats, for the scenario's topic.
fn per_partition<T>(producer: &Producer, field: impl Fn(&PartitionStats) -> T) -> BTreeMap<i32, T> {
    producer.stats().iter().filter(|(tp, _)| &*tp.topic == MOVES_TOPIC).map(|(tp, s)| (tp.partition, field(s))).collect()
}

fn stalls(producer: &Producer) -> BTreeMap<i32, u64> {
    per_partition(producer, |s| s.stalls)
}

fn last_acks(producer: &Producer) -> BTreeMap<i32, Option<Instant>> {
    per_partition(producer, |s| s.last_ack)
}

fn newly_stalled(before: &BTreeMap<i32, u64>, now: &BTreeMap<i32, u64>) -> BTreeSet<i32> {
    now.iter().filter(|(p, n)| **n > before.get(p).copied().unwrap_or(0)).map(|(p, _)| *p).collect()
}

/// Waits until every partition in `parts` is acknowledged after `after`; returns when.
async fn acked_after(producer: &Producer, parts: &BTreeSet<i32>, after: Instant, what: &str) -> Result<Instant> {
    wait_for(what, Duration::from_secs(15), || {
        let acks = last_acks(producer);
        parts.iter().all(|p| acks.get(p).copied().flatten().is_some_and(|t| t > after)).then(Instant::now)
    })
    .await
}

/// Waits until the producer's metadata shows `moves` applied; returns when.
async fn leaders_seen(producer: &Producer, moves: &BTreeMap<i32, i32>) -> Result<Instant> {
    wait_for("the new leaders in the producer's metadata", Duration::from_secs(10), || {
        let now = leaders(producer, MOVES_TOPIC);
        moves.iter().all(|(p, to)| now.get(p) == Some(to)).then(Instant::now)
    })
    .await
}

fn moves_text(moves: &BTreeMap<i32, i32>, before: &BTreeMap<i32, i32>) -> String {
    moves.iter().map(|(p, to)| format!("{p}:{}->{to}", before[p])).collect::<Vec<_>>().join(" ")
}

/// What one incident measured.
struct Incident {
    name: String,
    started: Instant,
    recovered: Instant,
    ended: Instant,
    /// Metadata requests that reached the mock from the incident until the end of the settle time.
    metadata: u64,
    involved: BTreeSet<i32>,
    stalled: BTreeSet<i32>,
}

impl Incident {
    /// What it measured, problems found, and a one-line summary.
    fn report(&self, log: &AckLog, probe: &[Instant]) -> (String, Vec<String>, String) {
        let stall = machine_stall(probe, log, self.started, self.ended);
        let bound = UNINVOLVED_GAP_BOUND + stall;
        let mut text = format!(
            "  incident {}: recovered in {}; Metadata requests at the mock {} (expected 1); newly stalled {:?}\n",
            self.name,
            ms(self.recovered - self.started),
            self.metadata,
            self.stalled
        );
        let mut worst_uninvolved = (Duration::ZERO, -1);
        let mut involved = Vec::new();
        let mut problems = Vec::new();
        if self.metadata != 1 {
            problems.push(format!(
                "incident {}: {} Metadata requests reached the cluster, expected exactly 1",
                self.name, self.metadata
            ));
        }
        for p in 0..PARTITIONS {
            let gap = log.max_gap(p, self.started, self.ended);
            if self.involved.contains(&p) {
                involved.push(format!("{p}:{}", ms(gap)));
                continue;
            }
            worst_uninvolved = worst_uninvolved.max((gap, p));
            if gap > bound {
                problems.push(format!(
                    "incident {}: partition {p} (not involved) went {} without an ack",
                    self.name,
                    ms(gap)
                ));
            }
            if self.stalled.contains(&p) {
                problems.push(format!("incident {}: partition {p} (not involved) stalled", self.name));
            }
        }
        text.push_str(&format!(
            "    longest ack gap: involved {}; uninvolved {} (partition {}; bound {} = {} + machine stall {})",
            if involved.is_empty() { "-".to_string() } else { involved.join(" ") },
            ms(worst_uninvolved.0),
            worst_uninvolved.1,
            ms(bound),
            ms(UNINVOLVED_GAP_BOUND),
            ms(stall)
        ));
        let summary = format!(
            "{}: {} Metadata, uninvolved ack gap {}",
            self.name.split_once(' ').map_or(self.name.as_str(), |(id, _)| id),
            self.metadata,
            ms(worst_uninvolved.0)
        );
        (text, problems, summary)
    }
}

/// Produces `RECORDS` records at `RATE`, publishing progress; returns the delivery futures in
/// sequence order.
fn spawn_producing(producer: Producer, sent: Arc<AtomicU64>) -> tokio::task::JoinHandle<Result<Vec<DeliveryFuture>>> {
    tokio::spawn(async move {
        let start = Instant::now();
        let topic: Arc<str> = Arc::from(MOVES_TOPIC);
        let mut futures = Vec::with_capacity(RECORDS as usize);
        for seq in 0..RECORDS {
            let due = start + Duration::from_secs_f64(seq as f64 / RATE);
            if Instant::now() < due {
                tokio::time::sleep_until(due.into()).await;
            }
            let key = key_of(seq);
            let record = Record::new(topic.clone(), format!("{seq}|{key}")).key(key);
            futures.push(producer.send(record).await.with_context(|| format!("send #{seq}"))?);
            sent.store(seq + 1, Ordering::Relaxed);
        }
        Ok(futures)
    })
}

async fn wait_sent(sent: &AtomicU64, n: u64) -> Result<()> {
    wait_for(&format!("{n} records sent"), Duration::from_secs(60), || {
        (sent.load(Ordering::Relaxed) >= n).then_some(())
    })
    .await
}

/// Incident a: move the leaders of 4 partitions, spread over the brokers.
async fn incident_move(mock: &Arc<MockCluster>, producer: &Producer, sent: &AtomicU64) -> Result<Incident> {
    let before = leaders(producer, MOVES_TOPIC);
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (&p, &l) in &before {
        by_leader.entry(l).or_default().push(p);
    }
    let mut moves: BTreeMap<i32, i32> = BTreeMap::new();
    'pick: for round in 0.. {
        let mut any = false;
        for (&leader, parts) in &by_leader {
            if let Some(&p) = parts.get(round) {
                any = true;
                moves.insert(p, leader % 3 + 1);
                if moves.len() == 4 {
                    break 'pick;
                }
            }
        }
        ensure!(any, "fewer than 4 partitions to move: {before:?}");
    }
    let (incident, _) = move_leaders(mock, producer, sent, "a (4 leaders moved)", &before, None, moves).await?;
    Ok(incident)
}

/// Incident b: a broker goes down and its partitions move to the other two, as a controller fails
/// them over. Returns the incident, the partitions, and the number of records sent when the
/// broker went down.
async fn incident_down(
    mock: &Arc<MockCluster>,
    producer: &Producer,
    sent: &AtomicU64,
) -> Result<(Incident, BTreeSet<i32>, u64)> {
    let before = leaders(producer, MOVES_TOPIC);
    let mut count: BTreeMap<i32, usize> = BTreeMap::new();
    for &l in before.values().filter(|l| **l != PROBE_BROKER) {
        *count.entry(l).or_default() += 1;
    }
    let victim = count.iter().max_by_key(|(b, n)| (**n, -**b)).map(|(b, _)| *b).context("no leaders")?;
    let victims: BTreeSet<i32> = before.iter().filter(|(_, l)| **l == victim).map(|(p, _)| *p).collect();
    let others: Vec<i32> = (1..=3).filter(|b| *b != victim).collect();
    let moves: BTreeMap<i32, i32> = victims.iter().enumerate().map(|(i, &p)| (p, others[i % others.len()])).collect();
    let name = "b (broker down, its partitions moved)";
    let (incident, sent_at_down) = move_leaders(mock, producer, sent, name, &before, Some(victim), moves).await?;
    Ok((incident, victims, sent_at_down))
}

/// One control step that moves `moves` (partition → new leader), taking broker `down` down first
/// if given (and back up once measured); then measures the incident until every moved partition
/// is acknowledged by its new leader and the settle time has passed. Also returns the records
/// sent right after the step.
async fn move_leaders(
    mock: &Arc<MockCluster>,
    producer: &Producer,
    sent: &AtomicU64,
    name: &str,
    before: &BTreeMap<i32, i32>,
    down: Option<i32>,
    moves: BTreeMap<i32, i32>,
) -> Result<(Incident, u64)> {
    let stalls_before = stalls(producer);
    ctl(mock, move |m| m.reset_tracking()).await?;
    let started = Instant::now();
    let all = moves.clone();
    ctl(mock, move |m| {
        if let Some(broker) = down {
            m.broker_down(broker)?;
        }
        all.iter().try_for_each(|(&p, &to)| m.set_leader(MOVES_TOPIC, p, to))
    })
    .await?;
    let step_took = started.elapsed();
    let sent_then = sent.load(Ordering::Relaxed);
    let seen = leaders_seen(producer, &moves).await?;
    println!(
        "  incident {}: {}moved {} in {}",
        name.split_once(' ').map_or(name, |(id, _)| id),
        down.map_or(String::new(), |b| format!("broker {b} down and its partitions ")),
        moves_text(&moves, before),
        ms(step_took)
    );
    let involved: BTreeSet<i32> = moves.keys().copied().collect();
    let recovered =
        acked_after(producer, &involved, seen, "the moved partitions acknowledged by their new leaders").await?;
    tokio::time::sleep(SETTLE).await;
    let metadata = ctl(mock, move |m| m.request_count(METADATA)).await?;
    let stalled = newly_stalled(&stalls_before, &stalls(producer));
    if let Some(broker) = down {
        ctl(mock, move |m| m.broker_up(broker)).await?;
    }
    let incident =
        Incident { name: name.into(), started, recovered, ended: Instant::now(), metadata, involved, stalled };
    Ok((incident, sent_then))
}

/// How many times incident c is repeated.
const ERRORS: usize = 5;
/// Incident c's settle time: a second Metadata request, were one coming, would follow the first
/// within the resolver's minimum interval and the producer's retry backoff (100 ms each).
const ERROR_SETTLE: Duration = Duration::from_millis(600);

/// Incident c (one of [`ERRORS`]): the next Produce request, to whichever broker, is answered
/// NOT_LEADER_OR_FOLLOWER for every partition it carries. The metadata does not change: the
/// producer stalls those partitions, asks once, finds the same leaders and resumes them.
async fn incident_error(mock: &Arc<MockCluster>, producer: &Producer, k: usize) -> Result<Incident> {
    let stalls_before = stalls(producer);
    ctl(mock, move |m| m.reset_tracking()).await?;
    let started = Instant::now();
    ctl(mock, move |m| m.push_errors(PRODUCE, NOT_LEADER_OR_FOLLOWER, 1)).await?;
    wait_for("a partition stalled by the injected error", Duration::from_secs(5), || {
        (!newly_stalled(&stalls_before, &stalls(producer)).is_empty()).then_some(())
    })
    .await?;
    let refreshed = wait_for("a metadata refresh", Duration::from_secs(10), || {
        let at = producer.cluster().snapshot().updated_at;
        (at > started).then_some(at)
    })
    .await?;
    let involved = newly_stalled(&stalls_before, &stalls(producer));
    let recovered =
        acked_after(producer, &involved, refreshed, "the stalled partitions acknowledged again").await?;
    tokio::time::sleep(ERROR_SETTLE).await;
    let metadata = ctl(mock, move |m| m.request_count(METADATA)).await?;
    let stalled = newly_stalled(&stalls_before, &stalls(producer));
    Ok(Incident {
        name: format!("c{k} (NOT_LEADER_OR_FOLLOWER on one Produce request)"),
        started,
        recovered,
        ended: Instant::now(),
        metadata,
        involved,
        stalled,
    })
}

async fn leader_moves(venv: &Venv, mock: &Arc<MockCluster>) -> Result<()> {
    ctl(mock, move |m| m.create_topic(MOVES_TOPIC, PARTITIONS as u32, 3)).await?;
    let mut config = producer_config(mock.bootstrap())?;
    config.linger = LINGER;
    // One batch in flight per partition. The mock checks idempotent sequence numbers only for
    // transactional producers (rdkafka_mock.c, validate_records): with more in flight, a batch
    // behind one that hit an injected error would be written ahead of its retry, where Kafka
    // rejects it with OUT_OF_ORDER_SEQUENCE_NUMBER. The order checked below is the producer's own.
    config.max_in_flight = 1;
    ensure!(config.idempotence(), "idempotence is on by default with acks=all");
    let producer = Producer::connect(config).await?;
    let probe_addr = producer
        .cluster()
        .snapshot()
        .brokers
        .get(&PROBE_BROKER)
        .map(|b| b.addr.clone())
        .context("the probe's broker in metadata")?;
    let probe = Probe::start(probe_addr);
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = spawn_ack_monitor(producer.clone(), stop.clone());
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let producing = spawn_producing(producer.clone(), sent.clone());

    let outcome = async {
        wait_sent(&sent, 40_000).await?;
        let steady = (started + Duration::from_millis(500), Instant::now());
        let mut incidents = vec![incident_move(mock, &producer, &sent).await?];
        wait_sent(&sent, 70_000).await?;
        let (b, down_partitions, sent_at_down) = incident_down(mock, &producer, &sent).await?;
        incidents.push(b);
        wait_sent(&sent, 100_000).await?;
        for k in 1..=ERRORS {
            incidents.push(incident_error(mock, &producer, k).await?);
        }
        ensure!(
            sent.load(Ordering::Relaxed) < RECORDS,
            "production ended before the last incident was over: the gaps measured nothing"
        );
        anyhow::Ok((steady, incidents, down_partitions, sent_at_down))
    }
    .await;
    let (steady, incidents, down_partitions, sent_at_down) = match outcome {
        Ok(v) => v,
        Err(e) => {
            producing.abort();
            stop.store(true, Ordering::Relaxed);
            let _ = monitor.await;
            let _ = probe.finish();
            return Err(e);
        }
    };
    let futures = producing.await??;
    producer.flush().await?;
    let send_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let log = monitor.await?;
    let probe = probe.finish().context("the probe")?;

    // Delivery results.
    let mut delivered: Vec<Option<RecordMetadata>> = Vec::with_capacity(futures.len());
    let mut failures = Vec::new();
    for (seq, f) in futures.into_iter().enumerate() {
        match f.await {
            Ok(m) => delivered.push(Some(m)),
            Err(e) => {
                failures.push(format!("#{seq}: {e}"));
                delivered.push(None);
            }
        }
    }
    producer.close(Duration::from_secs(10)).await?;
    let acked: u64 = producer.stats().values().map(|s| s.acked).sum();
    println!(
        "  sent {RECORDS} records in {send_time:?} (linger {}, acks=all, idempotent); acked {acked}, failed {}",
        ms(LINGER),
        failures.len()
    );

    let mut problems = Vec::new();
    let (steady_worst, steady_partition) =
        (0..PARTITIONS).map(|p| (log.max_gap(p, steady.0, steady.1), p)).max().unwrap_or_default();
    println!(
        "  steady state before the incidents: longest ack gap {} (partition {steady_partition}), machine stall {}",
        ms(steady_worst),
        ms(machine_stall(&probe, &log, steady.0, steady.1))
    );
    let mut summaries = Vec::new();
    for incident in &incidents {
        let (text, found, summary) = incident.report(&log, &probe);
        println!("{text}");
        problems.extend(found);
        summaries.push(summary);
    }
    if !failures.is_empty() {
        problems.push(format!("{} deliveries failed, first: {:?}", failures.len(), &failures[..failures.len().min(5)]));
    }

    // Read everything back with confluent-kafka.
    let read_started = Instant::now();
    let (records, extents) = consume_all(venv, mock.bootstrap(), MOVES_TOPIC, PARTITIONS).await?;
    println!("  confluent-kafka read {} records in {:?}", records.len(), read_started.elapsed());
    let (found, read_back) = check_moves_log(&records, &extents, &delivered, &down_partitions, sent_at_down);
    problems.extend(found);
    println!(
        "  summary: sent {RECORDS}, acked {acked}, failed {}; {read_back}; {}",
        failures.len(),
        summaries.join("; ")
    );
    if problems.is_empty() { Ok(()) } else { bail!("{}", problems.join("\n  ")) }
}

/// Checks the log read back against what was sent and acknowledged: every sequence number once,
/// in order within each partition, each key on its murmur2 partition, each acknowledged offset
/// holding its record.
///
/// One kind of duplicate is the mock's, not the producer's: when a broker goes down, the mock
/// drops responses it has queued but not written, and it does not deduplicate retries of a
/// non-transactional idempotent producer as Kafka does. Such a duplicate is an earlier copy nobody
/// acknowledged, of a record sent before the broker went down, on one of its partitions,
/// followed by the acknowledged copy of the retry. Those are reported, not failed.
fn check_moves_log(
    records: &[Consumed],
    extents: &BTreeMap<i32, Extent>,
    delivered: &[Option<RecordMetadata>],
    down_partitions: &BTreeSet<i32>,
    sent_at_down: u64,
) -> (Vec<String>, String) {
    let mut problems = Vec::new();
    for (p, e) in extents {
        let n = records.iter().filter(|r| r.partition == *p).count() as i64;
        if e.lo != 0 || n != e.eof - e.lo || e.hi != e.eof {
            problems.push(format!(
                "partition {p}: read {n} records; watermarks: earliest {}, fetch {}, latest {} (truncated or short?)",
                e.lo, e.eof, e.hi
            ));
        }
    }
    let mut seen: HashMap<u64, Vec<(i32, i64)>> = HashMap::with_capacity(records.len());
    let mut last_in_partition: BTreeMap<i32, (i64, u64)> = BTreeMap::new();
    let mut key_partition: HashMap<String, BTreeSet<i32>> = HashMap::new();
    let mut disorder = Vec::new();
    let mut malformed = Vec::new();
    let mut sorted: Vec<&Consumed> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in sorted {
        let value = r.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        let key = r.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        let Some((seq, vkey)) = value.split_once('|').and_then(|(s, k)| Some((s.parse::<u64>().ok()?, k))) else {
            malformed.push(format!("{}@{}: value {value:?}", r.partition, r.offset));
            continue;
        };
        if vkey != key || key != key_of(seq) {
            malformed.push(format!("{}@{}: key {key:?}, value {value:?}", r.partition, r.offset));
        }
        let copies = seen.entry(seq).or_default();
        copies.push((r.partition, r.offset));
        key_partition.entry(key.to_string()).or_default().insert(r.partition);
        let previous = last_in_partition.get(&r.partition).copied();
        if let Some((offset, prev)) = previous.filter(|(_, prev)| seq <= *prev && copies.len() == 1) {
            disorder.push(format!("partition {}: #{prev}@{offset} before #{seq}@{}", r.partition, r.offset));
        }
        if copies.len() == 1 || seq > last_in_partition.get(&r.partition).map_or(0, |x| x.1) {
            last_in_partition.insert(r.partition, (r.offset, seq));
        }
    }
    let lost: Vec<u64> = (0..RECORDS).filter(|s| !seen.contains_key(s)).collect();
    let mut explained = 0;
    let mut duplicated: Vec<(u64, Vec<(i32, i64)>)> = Vec::new();
    for (&seq, copies) in &seen {
        if copies.len() < 2 {
            continue;
        }
        let acked_last = delivered
            .get(seq as usize)
            .and_then(Option::as_ref)
            .is_some_and(|m| copies.iter().all(|&(p, o)| p == m.partition && o <= m.offset));
        if copies.len() == 2 && acked_last && seq < sent_at_down && down_partitions.contains(&copies[0].0) {
            explained += 1;
        } else {
            duplicated.push((seq, copies.clone()));
        }
    }
    duplicated.sort();
    let mut misplaced = Vec::new();
    for (key, parts) in &key_partition {
        let want = java_default_partition(key.as_bytes(), PARTITIONS);
        if parts.len() != 1 || !parts.contains(&want) {
            misplaced.push(format!("{key}: on {parts:?}, murmur2 says {want}"));
        }
    }
    let mut wrong_offsets = Vec::new();
    for (seq, m) in delivered.iter().enumerate() {
        let Some(m) = m else { continue };
        let at = seen.get(&(seq as u64)).map(Vec::as_slice).unwrap_or_default();
        if !at.contains(&(m.partition, m.offset)) {
            wrong_offsets.push(format!("#{seq}: acked at {}@{}, found at {at:?}", m.partition, m.offset));
        }
    }
    println!(
        "  read back: {} records, {} distinct sequence numbers; lost {}, duplicated {} (+{explained} by the mock when \
         the broker went down), out of order {}, keys on another partition {}, acknowledged offsets not holding their \
         record {}",
        records.len(),
        seen.len(),
        lost.len(),
        duplicated.len(),
        disorder.len(),
        misplaced.len(),
        wrong_offsets.len()
    );
    let sample = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if !lost.is_empty() {
        problems.push(format!("{} sequence numbers lost, first {:?}", lost.len(), &lost[..lost.len().min(10)]));
    }
    if !duplicated.is_empty() {
        problems.push(format!(
            "{} sequence numbers duplicated, first (seq, [(partition, offset)]) {:?}",
            duplicated.len(),
            &duplicated[..duplicated.len().min(5)]
        ));
    }
    if !disorder.is_empty() {
        problems.push(format!("{} out-of-order records: {}", disorder.len(), sample(&disorder)));
    }
    if !misplaced.is_empty() {
        problems.push(format!("{} keys misplaced: {}", misplaced.len(), sample(&misplaced)));
    }
    if !malformed.is_empty() {
        problems.push(format!("{} malformed records: {}", malformed.len(), sample(&malformed)));
    }
    if !wrong_offsets.is_empty() {
        problems.push(format!(
            "{} acknowledgements disagree with the log: {}",
            wrong_offsets.len(),
            sample(&wrong_offsets)
        ));
    }
    let summary = format!(
        "read back {}: lost {}, duplicated {} (+{explained} by the mock), out of order {}",
        records.len(),
        lost.len(),
        duplicated.len(),
        disorder.len()
    );
    (problems, summary)
}

// -------------------------------------------------------------------------------------------
// Scenario 3: send latency while the flush is slow
// -------------------------------------------------------------------------------------------

async fn send_latency(mock: &Arc<MockCluster>) -> Result<()> {
    const N: usize = 20_000;
    let topic = "krab-it-producer-latency";
    ctl(mock, move |m| m.create_topic(topic, PARTITIONS as u32, 3)).await?;
    let mut config = producer_config(mock.bootstrap())?;
    config.buffer_memory = 64 * 1024 * 1024;
    let producer = Producer::connect(config).await?;
    // Warm up: metadata for the topic and a connection to every broker.
    for p in 0..PARTITIONS {
        producer.send(Record::new(topic, "warm-up").partition(p)).await?.await?;
    }
    ctl(mock, move |m| m.set_rtt(-1, 500)).await?;
    let result = async {
        let mut latencies = Vec::with_capacity(N);
        let mut futures = Vec::with_capacity(N);
        let started = Instant::now();
        for i in 0..N {
            let record = Record::new(topic, format!("value {i:>40}")).key(format!("key-{i}"));
            let t = Instant::now();
            let f = producer.send(record).await?;
            latencies.push(t.elapsed());
            futures.push(f);
        }
        let sending = started.elapsed();
        let acked_while_sending = producer.stats().values().map(|s| s.acked).sum::<u64>() - PARTITIONS as u64;
        producer.flush().await?;
        let flushed = started.elapsed();
        for f in futures {
            f.await?;
        }
        let slow = latencies.iter().filter(|d| **d >= Duration::from_millis(1)).count();
        latencies.sort();
        let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        let (p50, p99, max) = (pct(0.50), pct(0.99), latencies[latencies.len() - 1]);
        let us = |d: Duration| format!("{:.1}us", d.as_secs_f64() * 1e6);
        println!(
            "  {N} sends with 500 ms RTT: accepted in {sending:?}, all acknowledged after {flushed:?}; send latency \
             p50 {} p99 {} max {} ({slow} of {N} took 1 ms or more; {acked_while_sending} acknowledged while sending)",
            us(p50),
            us(p99),
            us(max)
        );
        ensure!(p99 < Duration::from_millis(1), "send p99 {p99:?} >= 1 ms while the buffer had room");
        anyhow::Ok(())
    }
    .await;
    ctl(mock, move |m| m.set_rtt(-1, 0)).await?;
    producer.close(Duration::from_secs(10)).await?;
    result
}

// -------------------------------------------------------------------------------------------
// Scenario 2: interop on tansu
// -------------------------------------------------------------------------------------------

const BASE_TS: i64 = 1_700_000_000_000;

/// Records with every shape that matters to a reader: null and empty keys and values, headers
/// (null-valued, empty, repeated, non-ASCII names), compressible and tiny values, timestamps out
/// of order within a batch.
fn interop_records(topic: &str, codec: &str) -> Vec<Record> {
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

fn describe(key: &Option<Vec<u8>>) -> String {
    key.as_ref().map_or_else(|| "null".into(), |k| to_hex(k))
}

async fn codecs_interop(venv: &Venv, tansu: &Tansu) -> Result<()> {
    let mut problems = Vec::new();
    for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let name = codec.name();
        let topic = format!("krab-it-codec-{name}");
        let partitions = 3;
        tokio::task::block_in_place(|| tansu.create_topic(&topic, partitions as u32))?;
        let mut config = producer_config(&tansu.bootstrap())?;
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
        let (read, extents) = consume_all(venv, &tansu.bootstrap(), &topic, partitions).await?;
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
    if problems.is_empty() { Ok(()) } else { bail!("{}", problems.join("\n  ")) }
}

/// Java's murmur2 partitions of keys "a".."z" in a 12-partition topic.
const JAVA_PARTITIONS_12: [i32; 26] =
    [4, 8, 10, 5, 2, 3, 3, 1, 2, 2, 8, 4, 8, 9, 11, 2, 3, 9, 11, 1, 3, 5, 6, 10, 0, 2];

async fn key_placement(venv: &Venv, tansu: &Tansu) -> Result<()> {
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
