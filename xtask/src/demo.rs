//! `cargo xtask demo`: krab's main job, end to end, on a machine with nothing installed.
//!
//! It starts librdkafka's mock cluster (3 brokers), creates a 12-partition topic and produces
//! keyed records with krab's producer at a paced rate, each record's value its sequence number.
//! Meanwhile a schedule of incidents moves partition leaders and takes broker 2 down and back
//! up. A live view shows, per partition, the leader, acknowledged records/s, stalls and whether
//! it is flowing, plus the Metadata requests krab sent and the cluster received. At the end it
//! flushes, awaits every delivery, closes, reads the whole topic back with confluent-kafka and
//! checks that every sequence number is in the topic exactly once, at the partition and offset
//! its acknowledgement named, in send order per key. It exits non-zero otherwise.
//!
//! `--broker kafka` runs the same on a 3-node Apache Kafka cluster (replication 3,
//! min.insync.replicas 2): real leader moves (reassignment + preferred election), a real
//! `kill -9` of broker 2 (the controller fences it and fails its partitions over), its restart
//! (log recovery, catching up into the ISR), and preferred leaders restored. krab connects
//! through the per-broker proxies, which count the Metadata requests it sends.

use crate::brokers::Venv;
use crate::brokers::kafka::{KafkaCluster, KafkaOptions};
use crate::brokers::mock::MockCluster;
use anyhow::{Context, Result, bail, ensure};
use krab_producer::{DeliveryFuture, PartitionStats, Producer, ProducerConfig, Record, java_default_partition};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

const TOPIC: &str = "krab-demo";
const PARTITIONS: i32 = 12;
const BROKERS: i32 = 3;
/// Distinct keys; key `k` gets sequence numbers `k, k + KEYS, k + 2 * KEYS, ...`.
const KEYS: u64 = 1000;
const METADATA: i16 = 3;
/// A partition with records outstanding and no acknowledgement for this long is "stalled".
const STALLED_AFTER: Duration = Duration::from_millis(300);

const USAGE: &str = "usage: cargo xtask demo [--broker mock|kafka (default mock)] [--seconds N (default 35; kafka 60)] \
                     [--rate R records/s (default 20000; kafka 5000)]";

struct Options {
    seconds: u64,
    rate: u64,
    kafka: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options { seconds: 0, rate: 0, kafka: false };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--broker" {
            o.kafka = match it.next().map(String::as_str) {
                Some("kafka") => true,
                Some("mock") => false,
                other => bail!("demo: --broker mock|kafka, not {other:?} ({USAGE})"),
            };
            continue;
        }
        let mut value = |name: &str| -> Result<u64> {
            let v = it.next().with_context(|| format!("{name} needs a value ({USAGE})"))?;
            v.parse().with_context(|| format!("{name} `{v}` is not a whole number"))
        };
        match arg.as_str() {
            "--seconds" => o.seconds = value("--seconds")?,
            "--rate" => o.rate = value("--rate")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("demo: unknown option `{other}` ({USAGE})"),
        }
    }
    // Kafka's incidents take seconds each (tools in their own JVMs, fencing, log recovery), and
    // its three JVMs share the machine with the producer.
    if o.seconds == 0 {
        o.seconds = if o.kafka { 60 } else { 35 };
    }
    if o.rate == 0 {
        o.rate = if o.kafka { 5_000 } else { 20_000 };
    }
    ensure!(o.seconds >= 4, "--seconds must be at least 4 (the incidents need room)");
    ensure!((1..=1_000_000).contains(&o.rate), "--rate must be 1..=1000000 records/s");
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Incidents
// ---------------------------------------------------------------------------------------------

enum Incident {
    /// Moves each partition's leader to the next broker.
    Move(Vec<i32>),
    /// The broker refuses connections; the mock leaves its partitions' leader unchanged. Kafka:
    /// `kill -9` of the broker's JVM.
    Down(i32),
    /// Moves every partition the broker leads to the other brokers. Kafka: waits until the
    /// controller has fenced the dead broker and failed its partitions over.
    Evacuate(i32),
    Up(i32),
    /// Moves the partitions first led by the broker back to it.
    Restore(i32),
}

/// The schedule of a 35-second run, in seconds; other durations scale it.
fn schedule(seconds: u64) -> Vec<(Duration, Incident)> {
    let at = |s: f64| Duration::from_secs_f64(s / 35.0 * seconds as f64);
    vec![
        (at(8.0), Incident::Move(vec![0, 1, 2])),
        (at(15.0), Incident::Down(2)),
        (at(17.0), Incident::Evacuate(2)),
        (at(24.0), Incident::Up(2)),
        (at(27.0), Incident::Restore(2)),
    ]
}

fn initial_leader(partition: i32) -> i32 {
    partition % BROKERS + 1
}

/// The cluster under the demo.
enum Target {
    Mock(MockCluster),
    Kafka(KafkaCluster),
}

impl Target {
    /// Where krab connects (Kafka: the proxies, which count its requests).
    fn bootstrap(&self) -> String {
        match self {
            Target::Mock(m) => m.bootstrap().to_owned(),
            Target::Kafka(k) => k.bootstrap(),
        }
    }

    /// Where the read-back connects (Kafka: straight to the brokers).
    fn reader_bootstrap(&self) -> String {
        match self {
            Target::Mock(m) => m.bootstrap().to_owned(),
            Target::Kafka(k) => k.direct_bootstrap(),
        }
    }

    /// Metadata requests the cluster (the mock, or Kafka's proxies) received from clients.
    fn metadata_requests(&self) -> Result<u64> {
        match self {
            Target::Mock(m) => m.request_count(METADATA),
            Target::Kafka(k) => Ok(k.requests(METADATA)),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Mock(_) => "mock cluster",
            Target::Kafka(_) => "Kafka",
        }
    }
}

/// What the demo did to the cluster, shared by the incident task and the view.
struct World {
    /// Each partition's leader at the start (Kafka: as the controller placed them).
    initial: Vec<i32>,
    leaders: Vec<i32>,
    down: Vec<i32>,
    /// Partitions an incident affected (moved, or led by a broker that went down).
    touched: Vec<bool>,
    events: Vec<(Duration, String)>,
}

fn parts(ps: &[i32]) -> String {
    ps.iter().map(|p| format!("p{p}")).collect::<Vec<_>>().join(" ")
}

/// Applies one incident to the cluster and the model; returns its description.
fn apply(target: &Target, world: &Mutex<World>, incident: &Incident) -> Result<String> {
    match target {
        Target::Mock(mock) => apply_mock(mock, world, incident),
        Target::Kafka(kafka) => apply_kafka(kafka, world, incident),
    }
}

/// Applies one incident to the mock and the model; returns its description.
fn apply_mock(mock: &MockCluster, world: &Mutex<World>, incident: &Incident) -> Result<String> {
    let (leaders, initial) = {
        let w = world.lock().unwrap_or_else(|p| p.into_inner());
        (w.leaders.clone(), w.initial.clone())
    };
    let led_by = |b: i32| -> Vec<i32> { (0..PARTITIONS).filter(|&p| leaders[p as usize] == b).collect() };
    let mut moves = Vec::new();
    let text = match incident {
        Incident::Move(ps) => {
            for &p in ps {
                moves.push((p, leaders[p as usize] % BROKERS + 1));
            }
            let list: Vec<String> = moves.iter().map(|&(p, to)| format!("p{p} {}→{to}", leaders[p as usize])).collect();
            format!("leaders moved: {}", list.join(", "))
        }
        Incident::Down(b) => {
            mock.broker_down(*b)?;
            let ps = led_by(*b);
            let mut w = world.lock().unwrap_or_else(|p| p.into_inner());
            w.down.push(*b);
            for &p in &ps {
                w.touched[p as usize] = true;
            }
            format!("broker {b} down; {} still name it leader", parts(&ps))
        }
        Incident::Evacuate(b) => {
            let others: Vec<i32> = (1..=BROKERS).filter(|x| x != b).collect();
            for (i, p) in led_by(*b).into_iter().enumerate() {
                moves.push((p, others[i % others.len()]));
            }
            let list: Vec<String> = moves.iter().map(|&(p, to)| format!("p{p}→{to}")).collect();
            format!("leaders moved off broker {b}: {}", list.join(", "))
        }
        Incident::Up(b) => {
            mock.broker_up(*b)?;
            world.lock().unwrap_or_else(|p| p.into_inner()).down.retain(|x| x != b);
            format!("broker {b} back up, leading nothing yet")
        }
        Incident::Restore(b) => {
            for p in (0..PARTITIONS).filter(|&p| initial[p as usize] == *b && leaders[p as usize] != *b) {
                moves.push((p, *b));
            }
            let ps: Vec<i32> = moves.iter().map(|m| m.0).collect();
            format!("preferred leaders restored: {} back to broker {b}", parts(&ps))
        }
    };
    for &(p, to) in &moves {
        mock.set_leader(TOPIC, p, to)?;
        let mut w = world.lock().unwrap_or_else(|p| p.into_inner());
        w.leaders[p as usize] = to;
        w.touched[p as usize] = true;
    }
    Ok(text)
}

/// Applies one incident to Kafka (leader moves with Kafka's tools, `kill -9`, restart) and
/// takes the leaders the controller then publishes into the model.
fn apply_kafka(kafka: &KafkaCluster, world: &Mutex<World>, incident: &Incident) -> Result<String> {
    let (leaders, initial) = {
        let w = world.lock().unwrap_or_else(|p| p.into_inner());
        (w.leaders.clone(), w.initial.clone())
    };
    let led_by = |b: i32| -> Vec<i32> { (0..PARTITIONS).filter(|&p| leaders[p as usize] == b).collect() };
    let mut touched = Vec::new();
    let text = match incident {
        Incident::Move(ps) => {
            let moves: BTreeMap<i32, i32> = ps.iter().map(|&p| (p, leaders[p as usize] % BROKERS + 1)).collect();
            kafka.move_leaders(TOPIC, &moves)?;
            touched.extend(moves.keys().copied());
            let list: Vec<String> = moves.iter().map(|(p, to)| format!("p{p} {}→{to}", leaders[*p as usize])).collect();
            format!("leaders moved (reassignment + preferred election): {}", list.join(", "))
        }
        Incident::Down(b) => {
            kafka.kill(*b)?;
            let ps = led_by(*b);
            touched.extend(ps.iter().copied());
            world.lock().unwrap_or_else(|p| p.into_inner()).down.push(*b);
            format!("broker {b} killed (kill -9) while leading {}", parts(&ps))
        }
        Incident::Evacuate(b) => {
            let started = Instant::now();
            kafka.wait_partitions(TOPIC, Duration::from_secs(60), |m| {
                m.values().all(|s| s.leader.is_some() && s.leader != Some(*b))
            })?;
            let ps = led_by(*b);
            touched.extend(ps.iter().copied());
            format!(
                "controller fenced broker {b} and failed {} over ({:.1}s after this check began)",
                parts(&ps),
                started.elapsed().as_secs_f64()
            )
        }
        Incident::Up(b) => {
            let started = Instant::now();
            kafka.restart(*b)?;
            world.lock().unwrap_or_else(|p| p.into_inner()).down.retain(|x| x != b);
            format!("broker {b} restarted (log recovery), serving after {:.1}s", started.elapsed().as_secs_f64())
        }
        Incident::Restore(b) => {
            kafka.wait_isr_full(TOPIC, Duration::from_secs(90))?;
            let moves: BTreeMap<i32, i32> = (0..PARTITIONS)
                .filter(|&p| initial[p as usize] == *b && leaders[p as usize] != *b)
                .map(|p| (p, *b))
                .collect();
            if !moves.is_empty() {
                kafka.move_leaders(TOPIC, &moves)?;
            }
            touched.extend(moves.keys().copied());
            let ps: Vec<i32> = moves.keys().copied().collect();
            format!("broker {b} back in every ISR; preferred leaders restored: {} back to it", parts(&ps))
        }
    };
    let now = kafka.leaders(TOPIC)?;
    let mut w = world.lock().unwrap_or_else(|p| p.into_inner());
    for (p, leader) in now {
        if let Some(slot) = w.leaders.get_mut(p as usize) {
            *slot = leader;
        }
    }
    for p in touched {
        w.touched[p as usize] = true;
    }
    Ok(text)
}

async fn run_incidents(
    target: Arc<Target>,
    world: Arc<Mutex<World>>,
    changed: Arc<Notify>,
    start: Instant,
    seconds: u64,
) -> Result<()> {
    for (at, incident) in schedule(seconds) {
        tokio::time::sleep_until((start + at).into()).await;
        let (t, w) = (target.clone(), world.clone());
        let text = tokio::task::spawn_blocking(move || apply(&t, &w, &incident)).await??;
        world.lock().unwrap_or_else(|p| p.into_inner()).events.push((start.elapsed(), text));
        changed.notify_one();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Producing
// ---------------------------------------------------------------------------------------------

fn key_of(seq: u64) -> String {
    format!("key-{:04}", seq % KEYS)
}

fn partition_of(seq: u64) -> i32 {
    java_default_partition(key_of(seq).as_bytes(), PARTITIONS)
}

/// Counters the producing task keeps for the view.
struct Progress {
    sent: AtomicU64,
    sent_by_partition: Vec<AtomicU64>,
}

/// Sends `total` records paced at `rate` per second from `start`, and goes on at that rate while
/// `incidents_running` holds (Kafka's incidents can outlast the planned run on a busy machine:
/// the producer keeps producing through every one of them). Returns the records sent.
async fn produce(
    producer: Producer,
    progress: Arc<Progress>,
    deliveries: mpsc::UnboundedSender<(u64, DeliveryFuture)>,
    start: Instant,
    rate: u64,
    total: u64,
    incidents_running: Arc<AtomicBool>,
) -> Result<u64> {
    let mut seq = 0;
    while seq < total || incidents_running.load(Ordering::Relaxed) {
        let mut due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        if !incidents_running.load(Ordering::Relaxed) {
            due = due.min(total.max(seq));
        }
        while seq < due {
            let record = Record::new(TOPIC, seq.to_string()).key(key_of(seq));
            let fut = producer.send(record).await.with_context(|| format!("send of record {seq}"))?;
            progress.sent_by_partition[partition_of(seq) as usize].fetch_add(1, Ordering::Relaxed);
            progress.sent.fetch_add(1, Ordering::Relaxed);
            deliveries.send((seq, fut)).ok().context("the delivery collector stopped")?;
            seq += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(seq)
}

/// Every delivery's outcome: where each acknowledged record landed, and why others failed.
struct Deliveries {
    landed: Vec<Option<(i32, i64)>>,
    failed: u64,
    errors: BTreeMap<String, u64>,
}

async fn collect(mut rx: mpsc::UnboundedReceiver<(u64, DeliveryFuture)>) -> Deliveries {
    let mut d = Deliveries { landed: Vec::new(), failed: 0, errors: BTreeMap::new() };
    while let Some((seq, fut)) = rx.recv().await {
        let seq = seq as usize;
        if d.landed.len() <= seq {
            d.landed.resize(seq + 1, None);
        }
        match fut.await {
            Ok(md) => d.landed[seq] = Some((md.partition, md.offset)),
            Err(e) => {
                d.failed += 1;
                *d.errors.entry(e.to_string()).or_default() += 1;
            }
        }
    }
    d
}

// ---------------------------------------------------------------------------------------------
// The live view
// ---------------------------------------------------------------------------------------------

struct View {
    tty: bool,
    seconds: u64,
    rate: u64,
    drawn_lines: usize,
    printed_events: usize,
    prev: Option<(Instant, Vec<u64>)>,
    rates: Vec<f64>,
}

struct Sample {
    t: Duration,
    stats: Vec<PartitionStats>,
    krab_leaders: Vec<Option<i32>>,
    sent: Vec<u64>,
    sent_total: u64,
    krab_metadata: u64,
    cluster_metadata: u64,
}

async fn sample(producer: &Producer, target: &Arc<Target>, progress: &Progress, start: Instant) -> Result<Sample> {
    // A pipe exchange with the mock process, which may wait for an incident's commands.
    let t = target.clone();
    let cluster_metadata = tokio::task::spawn_blocking(move || t.metadata_requests()).await??;
    let mut stats = vec![PartitionStats::default(); PARTITIONS as usize];
    for (tp, s) in producer.stats() {
        if &*tp.topic == TOPIC && (0..PARTITIONS).contains(&tp.partition) {
            stats[tp.partition as usize] = s;
        }
    }
    let snapshot = producer.cluster().snapshot();
    Ok(Sample {
        t: start.elapsed(),
        stats,
        krab_leaders: (0..PARTITIONS).map(|p| snapshot.partition(TOPIC, p).and_then(|i| i.leader)).collect(),
        sent: progress.sent_by_partition.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
        sent_total: progress.sent.load(Ordering::Relaxed),
        krab_metadata: producer.metadata_requests(),
        cluster_metadata,
    })
}

fn stalled_for(s: &Sample, p: usize, now: Instant) -> Option<Duration> {
    let st = &s.stats[p];
    let outstanding = s.sent[p].saturating_sub(st.acked + st.failed);
    if outstanding == 0 {
        return None;
    }
    let age = st.last_ack.map_or(s.t, |t| now.duration_since(t));
    (age >= STALLED_AFTER).then_some(age)
}

impl View {
    /// Draws a frame (TTY) or prints a line (otherwise). `tick`: a once-a-second sample, which
    /// updates the rates; otherwise an incident just happened.
    fn show(&mut self, s: &Sample, world: &World, tick: bool) {
        let now = Instant::now();
        let acked: Vec<u64> = s.stats.iter().map(|st| st.acked).collect();
        if tick {
            if let Some((at, prev)) = &self.prev {
                let dt = now.duration_since(*at).as_secs_f64().max(1e-3);
                self.rates = acked.iter().zip(prev).map(|(a, b)| a.saturating_sub(*b) as f64 / dt).collect();
            }
            self.prev = Some((now, acked.clone()));
        }
        let acked_total: u64 = acked.iter().sum();
        let failed: u64 = s.stats.iter().map(|st| st.failed).sum();
        let stalled: Vec<Option<Duration>> = (0..PARTITIONS as usize).map(|p| stalled_for(s, p, now)).collect();
        let text = if self.tty {
            self.frame(s, world, acked_total, failed, &stalled)
        } else {
            // Incidents and the per-second line, in time order.
            let mut lines: Vec<(Duration, String)> = world.events[self.printed_events..]
                .iter()
                .map(|(at, text)| (*at, format!("t={:>4.1}s  INCIDENT  {text}", at.as_secs_f64())))
                .collect();
            self.printed_events = world.events.len();
            if tick {
                let per: Vec<String> = (0..PARTITIONS as usize)
                    .map(|p| format!("{:.0}{}", self.rates[p], if stalled[p].is_some() { "!" } else { "" }))
                    .collect();
                let line = format!(
                    "t={:>4.1}s  sent {} acked {} failed {}  Metadata krab {} cluster {}  acked/s p0..p{} (!=stalled): {}",
                    s.t.as_secs_f64(),
                    s.sent_total,
                    acked_total,
                    failed,
                    s.krab_metadata,
                    s.cluster_metadata,
                    PARTITIONS - 1,
                    per.join(" ")
                );
                lines.push((s.t, line));
            }
            lines.sort_by_key(|l| l.0);
            lines.into_iter().map(|(_, l)| l + "\n").collect()
        };
        let mut stdout = std::io::stdout().lock();
        if self.drawn_lines > 0 {
            // Cursor up over the previous frame, then clear to the end of the screen.
            let _ = write!(stdout, "\x1b[{}A\x1b[J", self.drawn_lines);
        }
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        if self.tty {
            self.drawn_lines = text.lines().count();
        }
    }

    /// The TTY frame; every line fits 80 columns, so the redraw can count lines.
    fn frame(&self, s: &Sample, world: &World, acked_total: u64, failed: u64, stalled: &[Option<Duration>]) -> String {
        let mut out = String::new();
        let brokers: Vec<String> =
            (1..=BROKERS).map(|b| format!("{b} {}", if world.down.contains(&b) { "DOWN" } else { "up" })).collect();
        let _ = writeln!(
            out,
            "krab demo · t={:.1}s of {}s{} · topic {TOPIC}, {PARTITIONS} partitions",
            s.t.as_secs_f64(),
            self.seconds,
            if s.t > Duration::from_secs(self.seconds) { " (behind the target rate)" } else { "" },
        );
        let _ = writeln!(
            out,
            "sent {} (target {}/s)  acked {} ({:.0}/s)  in flight {}  failed {}",
            s.sent_total,
            self.rate,
            acked_total,
            self.rates.iter().sum::<f64>(),
            s.sent_total.saturating_sub(acked_total + failed),
            failed
        );
        let _ = writeln!(
            out,
            "brokers {} · Metadata requests: krab {}, cluster {}",
            brokers.join(", "),
            s.krab_metadata,
            s.cluster_metadata
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "  part  leader      acked/s  acked total  stalls  longest gap  status");
        for (p, st) in s.stats.iter().enumerate() {
            let leader = world.leaders[p];
            let lead = match s.krab_leaders[p] {
                _ if world.down.contains(&leader) => format!("{leader} down"),
                Some(k) if k != leader => format!("{leader} (krab {k})"),
                _ => leader.to_string(),
            };
            let status = match stalled[p] {
                Some(age) => format!("STALLED {:.1}s", age.as_secs_f64()),
                None => "flowing".into(),
            };
            let _ = writeln!(
                out,
                "  {p:>4}  {lead:<10} {:>8.0}  {:>11}  {:>6}  {:>11}  {status}",
                self.rates[p],
                st.acked,
                st.stalls,
                format_gap(st.longest_ack_gap),
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "incidents");
        for (at, text) in &world.events {
            let _ = writeln!(out, "  t={:>4.1}s  {text}", at.as_secs_f64());
        }
        // Never wider than 80 columns: a wrapped line would break the cursor-up redraw.
        out.lines().map(|l| l.chars().take(80).collect::<String>() + "\n").collect()
    }
}

fn format_gap(d: Duration) -> String {
    if d >= Duration::from_secs(1) { format!("{:.2}s", d.as_secs_f64()) } else { format!("{}ms", d.as_millis()) }
}

// ---------------------------------------------------------------------------------------------
// Read-back and verdict
// ---------------------------------------------------------------------------------------------

struct ReadBack {
    /// (partition, offset, sequence number) in offset order per partition.
    records: Vec<(i32, i64, Option<u64>)>,
    /// (low, high) watermark per partition.
    watermarks: Vec<(i64, i64)>,
}

fn read_back(bootstrap: &str) -> Result<ReadBack> {
    let venv = Venv::ensure()?;
    let script = crate::project_root().join("xtask/scripts/demo_readback.py");
    let out = Command::new(venv.python())
        .arg(&script)
        .args([bootstrap, TOPIC, &PARTITIONS.to_string(), "120"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(out.status.success(), "{} failed: {}", script.display(), out.status);
    let text = String::from_utf8(out.stdout).context("read-back output is not UTF-8")?;
    let mut rb = ReadBack { records: Vec::new(), watermarks: vec![(0, 0); PARTITIONS as usize] };
    let mut done = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["W", p, low, high] => rb.watermarks[p.parse::<usize>()?] = (low.parse()?, high.parse()?),
            ["R", p, offset, value] => rb.records.push((p.parse()?, offset.parse()?, value.parse().ok())),
            ["DONE", n] => done = Some(n.parse::<usize>()?),
            _ => bail!("unexpected read-back line {line:?}"),
        }
    }
    ensure!(done == Some(rb.records.len()), "read-back ended early ({} records, DONE {done:?})", rb.records.len());
    rb.records.sort_by_key(|r| (r.0, r.1));
    Ok(rb)
}

#[derive(Default)]
struct Verdict {
    read: u64,
    lost: u64,
    unacked_missing: u64,
    duplicated: u64,
    foreign: u64,
    misplaced: u64,
    reordered: u64,
}

fn verify(total: u64, d: &Deliveries, rb: &ReadBack) -> Verdict {
    let mut v = Verdict { read: rb.records.len() as u64, ..Verdict::default() };
    let mut seen = vec![0u32; total as usize];
    let mut last_per_key: BTreeMap<(i32, u64), u64> = BTreeMap::new();
    for &(p, offset, seq) in &rb.records {
        let Some(seq) = seq.filter(|s| *s < total) else {
            v.foreign += 1;
            continue;
        };
        seen[seq as usize] += 1;
        if seen[seq as usize] > 1 {
            v.duplicated += 1;
            continue;
        }
        if d.landed.get(seq as usize).copied().flatten().is_some_and(|at| at != (p, offset)) || p != partition_of(seq) {
            v.misplaced += 1;
        }
        // Records of one key share a partition; offsets must follow sequence numbers.
        let prev = last_per_key.insert((p, seq % KEYS), seq);
        if prev.is_some_and(|prev| prev > seq) {
            v.reordered += 1;
        }
    }
    for (seq, n) in seen.iter().enumerate() {
        if *n == 0 {
            if d.landed.get(seq).copied().flatten().is_some() {
                v.lost += 1;
            } else {
                v.unacked_missing += 1;
            }
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The task
// ---------------------------------------------------------------------------------------------

pub(crate) fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let planned = o.seconds * o.rate;
    let (target, initial) = if o.kafka {
        eprintln!("demo: starting Apache Kafka ({BROKERS} nodes)...");
        let kafka = KafkaCluster::start(&KafkaOptions::new(BROKERS as usize))?;
        Venv::ensure()?;
        let state = kafka.create_topic(TOPIC, PARTITIONS, BROKERS as i16, &[])?;
        let initial: Vec<i32> = (0..PARTITIONS).map(|p| state.get(&p).and_then(|s| s.leader).unwrap_or(-1)).collect();
        ensure!(initial.iter().all(|&l| (1..=BROKERS).contains(&l)), "{TOPIC}: leaders {initial:?}");
        println!(
            "{} at {} (proxies; the read-back and the controls go straight to the brokers): topic {TOPIC}, \
             {PARTITIONS} partitions, replication {BROKERS}, min.insync.replicas 2, leaders {}",
            kafka.version(),
            kafka.bootstrap(),
            initial.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
        );
        (Target::Kafka(kafka), initial)
    } else {
        eprintln!("demo: building and starting librdkafka's mock cluster ({BROKERS} brokers)...");
        let mock = MockCluster::start(BROKERS as usize)?;
        // Install the reader's venv now: a fresh machine should not wait for it after producing.
        Venv::ensure()?;
        mock.create_topic(TOPIC, PARTITIONS as u32, BROKERS as u32)?;
        for p in 0..PARTITIONS {
            mock.set_leader(TOPIC, p, initial_leader(p))?;
        }
        mock.start_tracking()?;
        println!(
            "mock cluster at {}: topic {TOPIC}, {PARTITIONS} partitions, replication {BROKERS}, leaders p%3+1",
            mock.bootstrap()
        );
        (Target::Mock(mock), (0..PARTITIONS).map(initial_leader).collect())
    };
    let target = Arc::new(target);
    println!(
        "producing {planned} keyed records ({} keys) at {}/s for {}s (and on while incidents last) with krab's producer \
         (acks=all, idempotence on by default)\n",
        KEYS, o.rate, o.seconds
    );

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let outcome = rt.block_on(drive(target.clone(), &o, planned, initial))?;
    let Outcome { deliveries, stats, krab_metadata, cluster_metadata, world, elapsed, sent: total } = outcome;

    println!("\nreading {TOPIC} back with confluent-kafka...");
    let read_started = Instant::now();
    let rb = read_back(&target.reader_bootstrap())?;
    let v = verify(total, &deliveries, &rb);
    let acked = deliveries.landed.iter().filter(|l| l.is_some()).count() as u64;
    let high_sum: i64 = rb.watermarks.iter().map(|w| w.1 - w.0).sum();

    let (mut calm_gap, mut hit_gap) = (Duration::ZERO, Duration::ZERO);
    let mut hit = Vec::new();
    for (p, st) in stats.iter().enumerate() {
        if world.touched[p] {
            hit.push(p as i32);
            hit_gap = hit_gap.max(st.longest_ack_gap);
        } else {
            calm_gap = calm_gap.max(st.longest_ack_gap);
        }
    }
    let calm_stalls: u64 = (0..PARTITIONS as usize).filter(|&p| !world.touched[p]).map(|p| stats[p].stalls).sum();
    let stalls: Vec<String> = (0..PARTITIONS as usize)
        .filter(|&p| stats[p].stalls > 0)
        .map(|p| format!("p{p}×{}", stats[p].stalls))
        .collect();

    println!("\nsummary");
    println!(
        "  sent          {total} records in {:.1}s ({:.0}/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!("  acknowledged  {acked}   failed {}", deliveries.failed);
    for (e, n) in &deliveries.errors {
        println!("                {n} × {e}");
    }
    println!(
        "  read back     {} records ({} in the log by watermarks) in {:.1}s",
        v.read,
        high_sum,
        read_started.elapsed().as_secs_f64()
    );
    println!("  lost          {}   (acknowledged, not in the topic)", v.lost);
    println!("  duplicated    {}   (extra copies in the topic)", v.duplicated);
    if v.unacked_missing > 0 {
        println!("  not written   {}   (failed deliveries, absent from the topic)", v.unacked_missing);
    }
    println!("  reordered     {}   (a key's records out of send order)", v.reordered);
    println!("  misplaced     {}   (not at the partition/offset its acknowledgement named)", v.misplaced);
    if v.foreign > 0 {
        println!("  foreign       {}   (records that are no sequence number of this run)", v.foreign);
    }
    println!("  stalls        {}", if stalls.is_empty() { "none".to_string() } else { stalls.join(" ") });
    println!(
        "  ack gaps      longest {} on partitions hit by incidents ({}), {} on the others ({} stalls)",
        format_gap(hit_gap),
        parts(&hit),
        format_gap(calm_gap),
        calm_stalls
    );
    println!("  Metadata      {krab_metadata} requests sent by krab, {cluster_metadata} received by the cluster");

    let mut problems = Vec::new();
    for (n, what) in [
        (v.lost, "lost"),
        (v.duplicated, "duplicated"),
        (deliveries.failed, "failed deliveries"),
        (v.reordered, "reordered"),
        (v.misplaced, "misplaced"),
        (v.foreign, "foreign"),
    ] {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    if acked + deliveries.failed != total {
        problems.push(format!("{} deliveries never resolved", total - acked - deliveries.failed));
    }
    if problems.is_empty() {
        println!("\nPASS: every acknowledged record is in the topic exactly once, in order");
        Ok(())
    } else {
        println!("\nFAIL: {}", problems.join(", "));
        bail!("demo failed: {}", problems.join(", "))
    }
}

struct Outcome {
    deliveries: Deliveries,
    stats: Vec<PartitionStats>,
    krab_metadata: u64,
    cluster_metadata: u64,
    world: World,
    elapsed: Duration,
    /// Records sent (at least the planned number).
    sent: u64,
}

/// Connects krab's producer (which waits out a new cluster's loading transaction coordinator
/// itself).
async fn connect(target: &Target) -> Result<Producer> {
    let config = ProducerConfig::new(&target.bootstrap())?.client_id("krab-demo");
    Producer::connect(config).await.with_context(|| format!("connecting krab's producer to the {}", target.name()))
}

async fn drive(target: Arc<Target>, o: &Options, total: u64, initial: Vec<i32>) -> Result<Outcome> {
    let o_seconds = o.seconds;
    let producer = connect(&target).await?;
    let progress = Arc::new(Progress {
        sent: AtomicU64::new(0),
        sent_by_partition: (0..PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
    });
    let world = Arc::new(Mutex::new(World {
        leaders: initial.clone(),
        initial,
        down: Vec::new(),
        touched: vec![false; PARTITIONS as usize],
        events: Vec::new(),
    }));
    let changed = Arc::new(Notify::new());
    let start = Instant::now();
    let (tx, rx) = mpsc::unbounded_channel();
    let collector = tokio::spawn(collect(rx));
    let incidents_running = Arc::new(AtomicBool::new(true));
    let producing =
        tokio::spawn(produce(producer.clone(), progress.clone(), tx, start, o.rate, total, incidents_running.clone()));
    let incidents = {
        let (target, world, changed, running) = (target.clone(), world.clone(), changed.clone(), incidents_running);
        tokio::spawn(async move {
            let r = run_incidents(target, world, changed, start, o_seconds).await;
            // Done or failed: either way the producer stops at the planned count (or now).
            running.store(false, Ordering::Relaxed);
            r
        })
    };

    let mut view = View {
        tty: std::io::stdout().is_terminal(),
        seconds: o.seconds,
        rate: o.rate,
        drawn_lines: 0,
        printed_events: 0,
        prev: Some((start, vec![0; PARTITIONS as usize])),
        rates: vec![0.0; PARTITIONS as usize],
    };
    let mut next_tick = start + Duration::from_secs(1);
    let end = start + Duration::from_secs(o.seconds);
    // Once a second until the run's end, and on while the producer catches up with the target
    // rate (a slow or busy machine).
    while next_tick <= end || !producing.is_finished() {
        let tick = tokio::select! {
            () = tokio::time::sleep_until(next_tick.into()) => true,
            () = changed.notified() => false,
        };
        if tick {
            next_tick += Duration::from_secs(1);
        }
        let s = sample(&producer, &target, &progress, start).await?;
        let w = world.lock().unwrap_or_else(|p| p.into_inner());
        view.show(&s, &w, tick);
    }
    let sent = producing.await.context("the producing task panicked")??;
    incidents.await.context("the incident task panicked")??;
    let elapsed = start.elapsed();

    println!("\nproduced for {:.1}s; flushing, awaiting every delivery, closing...", elapsed.as_secs_f64());
    let drain = Instant::now();
    tokio::time::timeout(Duration::from_secs(150), producer.flush())
        .await
        .context("flush did not finish within 150s")??;
    let deliveries = tokio::time::timeout(Duration::from_secs(30), collector)
        .await
        .context("deliveries did not all resolve within 30s of the flush")?
        .context("the delivery collector panicked")?;
    let s = sample(&producer, &target, &progress, start).await?;
    producer.close(Duration::from_secs(30)).await?;
    println!("drained in {:.2}s", drain.elapsed().as_secs_f64());
    if !view.tty {
        let w = world.lock().unwrap_or_else(|p| p.into_inner());
        view.show(&s, &w, true);
    }
    let world = Arc::try_unwrap(world)
        .ok()
        .context("the world is still shared")?
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    Ok(Outcome {
        deliveries,
        stats: s.stats,
        krab_metadata: s.krab_metadata,
        cluster_metadata: s.cluster_metadata,
        world,
        elapsed,
        sent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(records: &[(u64, i64)]) -> ReadBack {
        let mut records: Vec<_> = records.iter().map(|&(seq, offset)| (partition_of(seq), offset, Some(seq))).collect();
        records.sort_by_key(|r| (r.0, r.1));
        ReadBack { records, watermarks: Vec::new() }
    }

    #[test]
    fn verify_counts_lost_duplicated_reordered_misplaced() {
        // Sequence numbers 0, KEYS and 2 * KEYS share a key, hence a partition.
        let (a, b, c) = (0, KEYS, 2 * KEYS);
        let total = c + 1;
        let mut d = Deliveries { landed: vec![None; total as usize], failed: 0, errors: BTreeMap::new() };
        for (seq, offset) in [(a, 0), (b, 1), (c, 2)] {
            d.landed[seq as usize] = Some((partition_of(seq), offset));
        }
        let clean = verify(total, &d, &log(&[(a, 0), (b, 1), (c, 2)]));
        assert_eq!((clean.lost, clean.duplicated, clean.reordered, clean.misplaced), (0, 0, 0, 0));
        assert_eq!(clean.unacked_missing, total - 3, "never-sent numbers count as not written, not lost");

        let bad = verify(total, &d, &log(&[(a, 0), (c, 1), (b, 2), (c, 3)]));
        assert_eq!(bad.lost, 0);
        assert_eq!(bad.duplicated, 1);
        assert_eq!(bad.reordered, 1, "b after c");
        assert_eq!(bad.misplaced, 2, "b and c are not where their acknowledgements said");

        let lossy = verify(total, &d, &log(&[(a, 0), (c, 2)]));
        assert_eq!(lossy.lost, 1);
    }
}
