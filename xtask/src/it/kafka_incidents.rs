//! `kafka/incidents`: 200,000 keyed records (sequence numbers in the values) to a 12-partition
//! RF 3 topic with acks=all, idempotence, 5 requests in flight and lz4, while Apache Kafka goes
//! through: the leaders of 4 partitions moved; a broker `kill -9`ed (the controller fails its
//! partitions over) and restarted; a broker `SIGSTOP`ped past `request.timeout.ms` and resumed;
//! a broker blackholed by its proxy for 10 s; every connection cut under load. The log is read
//! back with Kafka's Java client and with confluent-kafka: every record exactly once, in send
//! order per partition, acknowledged offsets holding their records. Printed per incident: the
//! Metadata requests counted at the proxies and the uninvolved partitions' longest ack gap.

use super::kafka_faults::{Incident, Measured, play};
use super::kafka_support::{KafkaCtx, Monitor, Producing, check_log, kctl, read_back};
use super::support::{ms, producer_config};
use super::test_cluster::{Caps, require};
use anyhow::{Result, bail};
use krab_producer::{Compression, Producer};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TOPIC: &str = "krab-it-kafka-incidents";
const PARTITIONS: i32 = 12;
const RECORDS: u64 = 200_000;
/// Records per second at most while the incidents play; the rest goes out unthrottled afterwards.
const RATE: u64 = 2_000;
/// A generous guess at how long one incident lasts (a kill and restart of a JVM on a loaded
/// machine is the longest), to spread the records over the incidents left.
const INCIDENT_BUDGET: Duration = Duration::from_secs(45);
/// Records kept back for after the incidents, so there is load until the last one.
const RESERVE: u64 = 20_000;
/// The uninvolved partitions' longest ack gap allowed where the cluster itself stays healthy
/// (leader moves, a blackholed proxy): generous, for three JVMs and the client on two cores.
const HEALTHY_GAP_BOUND: Duration = Duration::from_secs(5);

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    require(&*ctx.kafka, Caps::ALL)?;
    let parts = kctl(&ctx.kafka, |k| k.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")])).await?;
    // Four partitions, each to the next broker: every broker loses and gains leaderships.
    let moves: BTreeMap<i32, i32> =
        parts.iter().filter_map(|(&p, s)| s.leader.map(|l| (p, l % 3 + 1))).take(4).collect();
    let mut config = producer_config(&ctx.kafka.bootstrap())?;
    config.max_in_flight = 5;
    config.compression = Compression::Lz4;
    config.linger = Duration::from_millis(5);
    config.request_timeout = Duration::from_secs(5);
    config.enable_idempotence = Some(true);
    let producer = Producer::connect(config).await?;
    let monitor = Monitor::start(&producer, TOPIC);
    let started = Instant::now();
    let run = Producing::start(producer.clone(), TOPIC, RECORDS, RATE);
    let incidents = [
        Incident::MoveLeaders(moves),
        Incident::Kill(2, Duration::from_secs(5)),
        Incident::Freeze(3, Duration::from_secs(8)),
        Incident::Blackhole(1, Duration::from_secs(10)),
        Incident::CutAll,
    ];
    let outcome = async {
        run.wait_sent(4_000).await?;
        let mut measured: Vec<Measured> = Vec::new();
        let count = incidents.len() as u64;
        for (i, incident) in incidents.into_iter().enumerate() {
            let left = (RECORDS - RESERVE).saturating_sub(run.sent());
            if left == 0 {
                bail!("the records ran out before {}", incident.describe());
            }
            // Spread what is left over the incidents still to come, so each plays under load.
            let rate = (left as f64 / ((count - i as u64) as f64 * INCIDENT_BUDGET.as_secs_f64())) as u64;
            run.rate.store(rate.clamp(200, RATE), std::sync::atomic::Ordering::Relaxed);
            let m = play(ctx, &producer, TOPIC, incident).await?;
            println!(
                "  {}: {} Metadata requests, recovered {} after the fault ended ({} records sent so far)",
                m.incident.describe(),
                m.metadata,
                ms(m.recovered - m.fault_ended),
                run.sent()
            );
            measured.push(m);
        }
        anyhow::Ok(measured)
    }
    .await;
    let measured = run.unless_failed(outcome)?;
    let delivered = run.finish().await?;
    producer.flush().await?;
    let took = started.elapsed();
    let log = monitor.finish().await?;
    producer.close(Duration::from_secs(10)).await?;
    let mut problems = Vec::new();
    let mut lines = Vec::new();
    for m in &measured {
        let (line, gap) = m.line(&log, PARTITIONS);
        println!("  {line}");
        let healthy = matches!(m.incident, Incident::MoveLeaders(_) | Incident::Blackhole(..));
        if healthy && gap > HEALTHY_GAP_BOUND {
            problems.push(format!("{}: an uninvolved partition waited {} for an ack", m.incident.describe(), ms(gap)));
        }
        lines.push(format!("{}: {} Metadata, gap {}", m.incident.describe(), m.metadata, ms(gap)));
    }
    let (records, extents, how) = read_back(ctx, TOPIC, PARTITIONS).await?;
    let check = check_log(&records, &extents, &delivered, PARTITIONS, |_| false);
    problems.extend(check.problems.iter().cloned());
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(format!("{RECORDS} records in {:.1} s; {}; {}; {how}", took.as_secs_f64(), check.summary(), lines.join("; ")))
}
