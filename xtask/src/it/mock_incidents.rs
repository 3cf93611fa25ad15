//! `producer/mock`: 200,000 records through seven incidents on the mock cluster (3 brokers): 4
//! leaders moved; a broker down and its partitions moved; then 5 times NOT_LEADER_OR_FOLLOWER
//! injected on one Produce request. Each must cost exactly one Metadata request at the cluster; the
//! acknowledgement gaps of every partition are measured; then everything is read back with
//! confluent-kafka and checked for loss, duplicates and order.

use super::support::*;
use super::test_cluster::{Caps, require};
use crate::brokers::Venv;
use crate::brokers::mock::MockCluster;
use anyhow::{Context, Result, bail, ensure};
use krab_producer::{DeliveryFuture, Producer, Record, RecordMetadata, java_default_partition};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    let stalls_before = stalls(producer, MOVES_TOPIC);
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
    let seen = leaders_seen(producer, MOVES_TOPIC, &moves).await?;
    println!(
        "  incident {}: {}moved {} in {}",
        name.split_once(' ').map_or(name, |(id, _)| id),
        down.map_or(String::new(), |b| format!("broker {b} down and its partitions ")),
        moves_text(&moves, before),
        ms(step_took)
    );
    let involved: BTreeSet<i32> = moves.keys().copied().collect();
    let recovered =
        acked_after(producer, MOVES_TOPIC, &involved, seen, "the moved partitions acknowledged by their new leaders")
            .await?;
    tokio::time::sleep(SETTLE).await;
    let metadata = ctl(mock, move |m| m.request_count(METADATA)).await?;
    let stalled = newly_stalled(&stalls_before, &stalls(producer, MOVES_TOPIC));
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
    let stalls_before = stalls(producer, MOVES_TOPIC);
    ctl(mock, move |m| m.reset_tracking()).await?;
    let started = Instant::now();
    ctl(mock, move |m| m.push_errors(PRODUCE, NOT_LEADER_OR_FOLLOWER, 1)).await?;
    wait_for("a partition stalled by the injected error", Duration::from_secs(5), || {
        (!newly_stalled(&stalls_before, &stalls(producer, MOVES_TOPIC)).is_empty()).then_some(())
    })
    .await?;
    let refreshed = wait_for("a metadata refresh", Duration::from_secs(10), || {
        let at = producer.cluster().snapshot().updated_at;
        (at > started).then_some(at)
    })
    .await?;
    let involved = newly_stalled(&stalls_before, &stalls(producer, MOVES_TOPIC));
    let recovered =
        acked_after(producer, MOVES_TOPIC, &involved, refreshed, "the stalled partitions acknowledged again").await?;
    tokio::time::sleep(ERROR_SETTLE).await;
    let metadata = ctl(mock, move |m| m.request_count(METADATA)).await?;
    let stalled = newly_stalled(&stalls_before, &stalls(producer, MOVES_TOPIC));
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

pub(super) async fn leader_moves(venv: &Venv, mock: &Arc<MockCluster>) -> Result<()> {
    require(&**mock, Caps { leader_moves: true, broker_down: true, counts_requests: true, ..Caps::default() })?;
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
    let monitor = spawn_ack_monitor(producer.clone(), MOVES_TOPIC, stop.clone());
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
