//! `mock/tracing-events`: krab's telemetry seen in-process while leaders move on the mock
//! cluster. A tracing collector and a metrics recorder (krab-testkit's `EventLog` and
//! `TestRecorder`) are installed for a thread of the scenario's own, whose current-thread runtime
//! runs a producer and a consumer of one 6-partition topic; the leaders of 3 partitions move
//! while both run. Asserted: in the producer and in the consumer, moved partitions (all of them,
//! or some: one may find its new leader in a refresh the others asked for, without stalling) get
//! a "partition stalled" event and then a "partition resumed" event, and no other partition does;
//! a "metadata refreshed" event with reason `stale`; the stalled-partitions gauges went up
//! during the move and are 0 after; the request counters' Metadata requests equal what the mock
//! counted; every record is acknowledged; nothing at WARN or above.

use super::support::{METADATA, ctl, wait_for};
use super::test_cluster::{Caps, require};
use crate::brokers::mock::MockCluster;
use anyhow::{Context, Result, ensure};
use futures_util::StreamExt;
use krab_cluster::telemetry as names;
use krab_consumer::{Consumer, ConsumerConfig, Offset, TopicPartition};
use krab_producer::{Producer, ProducerConfig, Record};
use krab_testkit::observe::{CapturedEvent, EventLog, TestRecorder};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TOPIC: &str = "krab-it-tracing-events";
const PARTITIONS: i32 = 6;
const MOVED: [i32; 3] = [0, 2, 4];
const PRODUCER: &str = "krab-it-tracing-producer";
const CONSUMER: &str = "krab-it-tracing-consumer";
/// Watching on after recovery (longer than `retry.backoff.max.ms`, 1 s), so that a late stall or
/// refresh is seen.
const SETTLE: Duration = Duration::from_millis(1500);

/// Runs on a thread of its own: the collector and the recorder are installed for that thread,
/// and its current-thread runtime runs every task of the clients under test.
pub(super) fn run(mock: &Arc<MockCluster>) -> Result<String> {
    let mock = mock.clone();
    std::thread::spawn(move || {
        let recorder = TestRecorder::new();
        let _metrics = recorder.set_default();
        let log = EventLog::new();
        let _tracing = log.set_default();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(scenario(&mock, &recorder, &log))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the scenario's thread panicked"))?
}

/// The partitions named by the events with `message` from `target_prefix`'s crate.
fn partitions_of(log: &EventLog, message: &str, target_prefix: &str) -> Vec<i32> {
    log.with_message(message)
        .iter()
        .filter(|e| e.target.starts_with(target_prefix))
        .filter_map(|e| e.field("partition")?.strip_prefix(&format!("{TOPIC}-"))?.parse().ok())
        .collect()
}

/// Each partition's events `first` then `then`, in order, exactly once each.
fn stalled_then_resumed(log: &EventLog, target_prefix: &str) -> Result<BTreeSet<i32>> {
    let stalled = partitions_of(log, "partition stalled", target_prefix);
    let resumed = partitions_of(log, "partition resumed", target_prefix);
    let set: BTreeSet<i32> = stalled.iter().copied().collect();
    ensure!(set.len() == stalled.len(), "{target_prefix}: a partition stalled twice: {stalled:?}");
    ensure!(
        set == resumed.iter().copied().collect::<BTreeSet<i32>>() && resumed.len() == stalled.len(),
        "{target_prefix}: stalled {stalled:?}, resumed {resumed:?}"
    );
    let events: Vec<CapturedEvent> = log.events().into_iter().filter(|e| e.target.starts_with(target_prefix)).collect();
    for p in &set {
        let name = format!("{TOPIC}-{p}");
        let at = |m: &str| events.iter().position(|e| e.message == m && e.field("partition") == Some(&name));
        ensure!(at("partition stalled") < at("partition resumed"), "{target_prefix}: {name} resumed before it stalled");
    }
    Ok(set)
}

fn metadata_requests(recorder: &TestRecorder) -> u64 {
    recorder.counter(names::REQUESTS, &[("api", "Metadata")])
}

async fn scenario(mock: &Arc<MockCluster>, recorder: &TestRecorder, log: &EventLog) -> Result<String> {
    require(&**mock, Caps { leader_moves: true, counts_requests: true, ..Caps::default() })?;
    ctl(mock, |m| m.create_topic(TOPIC, PARTITIONS as u32, 3)).await?;
    let producer = Producer::connect(
        ProducerConfig::new(mock.bootstrap())?
            .client_id(PRODUCER)
            .linger(Duration::from_millis(5))
            .request_timeout(Duration::from_secs(10)),
    )
    .await?;
    let mut consumer = Consumer::connect(
        ConsumerConfig::new(mock.bootstrap())?.client_id(CONSUMER).request_timeout(Duration::from_secs(5)),
    )
    .await?;
    consumer.assign((0..PARTITIONS).map(|p| (TopicPartition::new(TOPIC, p), Offset::Earliest)));

    // The consumer reads all along; per partition, the records it got.
    let read: Arc<Vec<AtomicU64>> = Arc::new((0..PARTITIONS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (read, stop) = (read.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(100), consumer.next()).await {
                    Ok(Some(Ok(r))) => {
                        read[r.partition as usize].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(Err(e))) => return Err(anyhow::anyhow!("the consumer failed: {e}")),
                    Ok(None) => return Err(anyhow::anyhow!("the consumer's stream ended")),
                    Err(_) => {}
                }
            }
            Ok(consumer)
        })
    };
    // The producer sends 3 records per partition every 5 ms.
    let writer = {
        let (producer, stop) = (producer.clone(), stop.clone());
        tokio::spawn(async move {
            let topic: Arc<str> = TOPIC.into();
            let mut deliveries = Vec::new();
            let mut seq = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                for _ in 0..3 {
                    for p in 0..PARTITIONS {
                        let record = Record::new(topic.clone(), format!("{seq}")).partition(p);
                        deliveries.push(producer.send(record).await?);
                        seq += 1;
                    }
                }
            }
            anyhow::Ok(deliveries)
        })
    };

    // Warm up: every partition produced and read.
    wait_for("every partition read", Duration::from_secs(20), || {
        read.iter().all(|n| n.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        log.with_message("partition stalled").is_empty(),
        "a stall before the move: {:?}",
        log.with_message("partition stalled")
    );
    let producer_gauge = |r: &TestRecorder| r.gauge(names::PRODUCER_STALLED, &[("client_id", PRODUCER)]);
    let consumer_gauge = |r: &TestRecorder| r.gauge(names::CONSUMER_STALLED, &[("client_id", CONSUMER)]);
    ensure!(
        producer_gauge(recorder).is_none_or(|g| g.max == 0.0),
        "producer gauge before: {:?}",
        producer_gauge(recorder)
    );

    // The move.
    let before = producer.cluster().snapshot();
    let moves: BTreeMap<i32, i32> = MOVED
        .iter()
        .map(|&p| {
            let leader = before.partition(TOPIC, p).and_then(|i| i.leader).context("a leader")?;
            Ok((p, leader % 3 + 1))
        })
        .collect::<Result<_>>()?;
    let before_leader: BTreeMap<i32, i32> =
        moves.keys().map(|&p| (p, before.partition(TOPIC, p).and_then(|i| i.leader).unwrap_or(-1))).collect();
    let metadata_before = metadata_requests(recorder);
    let stale_count = |r: &TestRecorder| r.counter(names::METADATA_REFRESHES, &[("reason", "stale")]);
    let stale_before = stale_count(recorder);
    let events_before = log.events().len();
    let read_before: Vec<u64> = read.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    ctl(mock, |m| m.reset_tracking()).await?;
    let started = Instant::now();
    let all = moves.clone();
    ctl(mock, move |m| all.iter().try_for_each(|(&p, &to)| m.set_leader(TOPIC, p, to))).await?;
    // Recovered: the producer's gauge back at 0 after going up, and every moved partition read on.
    wait_for("the producer's partitions to resume", Duration::from_secs(20), || {
        producer_gauge(recorder).filter(|g| g.max >= 1.0 && g.current == 0.0).map(|_| ())
    })
    .await?;
    wait_for("the moved partitions to be read from their new leaders", Duration::from_secs(20), || {
        moves.keys().all(|&p| read[p as usize].load(Ordering::Relaxed) > read_before[p as usize] + 60).then_some(())
    })
    .await?;
    let recovered = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    stop.store(true, Ordering::Relaxed);
    let deliveries = writer.await??;
    let sent = deliveries.len();
    for d in deliveries {
        d.await.context("a record failed")?;
    }
    let consumer = reader.await??;
    let mock_metadata = ctl(mock, |m| m.request_count(METADATA)).await?;

    // Events.
    let moved: BTreeSet<i32> = moves.keys().copied().collect();
    // A moved partition may also find its new leader without stalling, when a refresh asked
    // for the others comes first; an unmoved partition never stalls.
    let producer_stalled = stalled_then_resumed(log, "krab_producer")?;
    ensure!(
        !producer_stalled.is_empty() && producer_stalled.is_subset(&moved),
        "producer: stalled {producer_stalled:?}, moved {moved:?}"
    );
    let consumer_stalled = stalled_then_resumed(log, "krab_consumer")?;
    ensure!(
        !consumer_stalled.is_empty() && consumer_stalled.is_subset(&moved),
        "consumer: stalled {consumer_stalled:?}, moved {moved:?}"
    );
    let stale: Vec<CapturedEvent> = log.events()[events_before..]
        .iter()
        .filter(|e| e.message == "metadata refreshed" && e.field("reason") == Some("stale"))
        .cloned()
        .collect();
    ensure!(
        !stale.is_empty(),
        "no stale metadata refresh after the move: {:?}",
        log.with_message("metadata refreshed")
    );
    let severe = log.at_least(tracing::Level::WARN);
    ensure!(severe.is_empty(), "events at WARN or above: {severe:?}");

    // Metrics.
    let pg = producer_gauge(recorder).context("the producer's stalled-partitions gauge")?;
    let cg = consumer_gauge(recorder).context("the consumer's stalled-partitions gauge")?;
    ensure!(pg.max >= 1.0 && pg.max <= moved.len() as f64 && pg.current == 0.0, "producer gauge {pg:?}");
    ensure!(cg.max >= 1.0 && cg.max <= moved.len() as f64 && cg.current == 0.0, "consumer gauge {cg:?}");
    let counted_metadata = metadata_requests(recorder) - metadata_before;
    ensure!(
        counted_metadata == mock_metadata,
        "Metadata requests: {counted_metadata} counted by the clients, {mock_metadata} at the mock"
    );
    let stale_refreshes = stale_count(recorder) - stale_before;
    ensure!(stale_refreshes == stale.len() as u64, "{stale_refreshes} stale refreshes counted, {} traced", stale.len());
    let produce = recorder.counter(names::REQUESTS, &[("client_id", PRODUCER), ("api", "Produce")]);
    let produce_spans = log
        .closed_spans("krab.request")
        .iter()
        .filter(|s| s.fields.get("api").map(String::as_str) == Some("Produce"))
        .filter(|s| s.fields.contains_key("latency_us"))
        .count() as u64;
    ensure!(produce_spans == produce, "{produce_spans} Produce spans closed with a latency, {produce} counted");
    let acked = recorder.counter(names::PRODUCER_RECORDS_ACKED, &[("client_id", PRODUCER)]);
    ensure!(acked == sent as u64, "{acked} acknowledged by the counter, {sent} sent");
    let read_total: u64 = read.iter().map(|n| n.load(Ordering::Relaxed)).sum();
    let lags = recorder.gauges(names::CONSUMER_LAG, &[("client_id", CONSUMER)]);
    ensure!(lags.len() == PARTITIONS as usize, "{} lag gauges", lags.len());
    drop(consumer);
    producer.close(Duration::from_secs(5)).await?;
    Ok(format!(
        "moved {}; recovered in {:.0} ms; producer stalled/resumed {producer_stalled:?} (gauge max {} → {}), \
         consumer {consumer_stalled:?} (gauge max {} → {}); {} stale refreshes traced ({stale_refreshes} counted); \
         Metadata requests {counted_metadata} counted = {mock_metadata} at the mock; {produce} Produce requests, \
         {sent} records acknowledged, {read_total} read",
        moves.iter().map(|(p, to)| format!("{p}:{}->{to}", before_leader[p])).collect::<Vec<_>>().join(" "),
        recovered.as_secs_f64() * 1000.0,
        pg.max,
        pg.current,
        cg.max,
        cg.current,
        stale.len(),
    ))
}
