//! `kafka/consume-incidents`: 12 partitions (RF 3) on the 3-node Apache Kafka, filled beforehand
//! by krab's idempotent producer with `<partition>-<seq>` values; krab's consumer reads them at a
//! fixed pace while (a) a leader is `kill -9`ed (restarted once measured) and (b) a leader is
//! `SIGSTOP`ped (continued once measured). Asserted: every record yielded exactly once, in order
//! per partition, at its produced offset; partitions led by the other brokers keep yielding
//! (longest gap printed and bounded); Metadata requests counted at the proxies.
//!
//! What an incident costs in Metadata: the first failure (connection reset; for the frozen broker,
//! the fetch timing out at `request.timeout.ms`) costs one request. Until the controller fences
//! the broker (`broker.session.timeout.ms`, 4 s here) metadata still names it leader, so the
//! consumer polls, as the design says for a dead broker still named leader: at most one request
//! per `retry.backoff.ms`, the interval doubling up to `retry.backoff.max.ms`. The assertion is
//! that bound over the time the incident took (at least 1, at most 1 + the polls the backoff
//! schedule allows), not an exact count, because the fencing time is the cluster's.

use super::consume_support::{Reading, check, consumer_config, gap, produce_beforehand};
use super::kafka_support::{KafkaCtx, METADATA, kctl};
use super::support::{ms, producer_config};
use super::test_cluster::{Caps, TestCluster, require};
use anyhow::{Result, bail, ensure};
use krab_consumer::Consumer;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TOPIC: &str = "krab-it-kafka-consume-incidents";
const PARTITIONS: i32 = 12;
const PER_PARTITION: u64 = 8_000;
/// Records per second while an incident plays.
const RATE: u64 = 2_400;
/// Watching on after recovery, so a late extra Metadata request is counted.
const SETTLE: Duration = Duration::from_millis(1100);
/// The longest gap allowed to a partition the incident does not involve: generous, for three
/// JVMs and the client on two shared cores.
const UNINVOLVED_GAP_BOUND: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Fault {
    Kill(i32),
    Freeze(i32),
}

struct Measured {
    what: String,
    metadata: u64,
    allowed: u64,
    involved_gap: Duration,
    uninvolved_gap: Duration,
}

/// Metadata requests the backoff schedule allows in `window`: the first, then one per poll
/// (`retry.backoff.ms` doubling up to `retry.backoff.max.ms`).
fn allowed_polls(window: Duration, backoff: Duration, max: Duration) -> u64 {
    let (mut t, mut step, mut n) = (Duration::ZERO, backoff, 1);
    while t + step <= window {
        t += step;
        n += 1;
        step = (step * 2).min(max);
    }
    n
}

async fn incident(ctx: &KafkaCtx<'_>, reading: &Reading, fault: Fault) -> Result<Measured> {
    let t = TOPIC.to_owned();
    let parts = kctl(&ctx.kafka, move |k| k.partitions(&t)).await?;
    let broker = match fault {
        Fault::Kill(b) | Fault::Freeze(b) => b,
    };
    let involved: BTreeSet<i32> = parts.iter().filter(|(_, s)| s.leader == Some(broker)).map(|(p, _)| *p).collect();
    ensure!(!involved.is_empty(), "broker {broker} leads no partition: {:?}", parts.keys());
    let what = match fault {
        Fault::Kill(b) => format!("broker {b} kill -9"),
        Fault::Freeze(b) => format!("broker {b} SIGSTOP"),
    };
    reading.rate.store(RATE, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from = reading.positions();
    let metadata_before = TestCluster::requests(&*ctx.kafka, METADATA)?;
    let started = Instant::now();
    match fault {
        Fault::Kill(b) => kctl(&ctx.kafka, move |k| k.take_down(b)).await?,
        Fault::Freeze(b) => kctl(&ctx.kafka, move |k| k.freeze(b, true)).await?,
    }
    let recovered = reading.recovered(&involved, &from, Duration::from_secs(90)).await;
    tokio::time::sleep(SETTLE).await;
    let metadata = TestCluster::requests(&*ctx.kafka, METADATA)? - metadata_before;
    let window = started.elapsed();
    reading.rate.store(0, Ordering::Relaxed);
    match fault {
        Fault::Kill(b) => kctl(&ctx.kafka, move |k| k.bring_up(b)).await?,
        Fault::Freeze(b) => kctl(&ctx.kafka, move |k| k.freeze(b, false)).await?,
    }
    let recovered = recovered?;
    let t = TOPIC.to_owned();
    kctl(&ctx.kafka, move |k| k.wait_isr_full(&t, Duration::from_secs(90))).await?;
    let log = reading.log.lock().unwrap().clone();
    let involved_gap = involved.iter().map(|&p| gap(&log, p, started, recovered)).max().unwrap_or_default();
    let uninvolved_gap = (0..PARTITIONS)
        .filter(|p| !involved.contains(p))
        .map(|p| gap(&log, p, started, recovered))
        .max()
        .unwrap_or_default();
    let config = consumer_config("localhost:1")?;
    let allowed = allowed_polls(window, config.retry_backoff, config.retry_backoff_max);
    println!(
        "  {what}: {metadata} Metadata requests (allowed {allowed} in {}); involved {involved:?} longest gap {}, \
         recovered after {}; uninvolved longest gap {}",
        ms(window),
        ms(involved_gap),
        ms(recovered - started),
        ms(uninvolved_gap)
    );
    Ok(Measured { what, metadata, allowed, involved_gap, uninvolved_gap })
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    require(&*ctx.kafka, Caps::ALL)?;
    kctl(&ctx.kafka, |k| k.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")])).await?;
    let started = Instant::now();
    let produced =
        produce_beforehand(producer_config(&ctx.kafka.bootstrap())?, TOPIC, PARTITIONS, PER_PARTITION).await?;
    let total: usize = produced.values().map(BTreeMap::len).sum();
    let consumer = Consumer::connect(consumer_config(&ctx.kafka.bootstrap())?).await?;
    let reading = Reading::start(consumer, TOPIC, PARTITIONS, RATE);
    let outcome = async {
        reading.recovered(&(0..PARTITIONS).collect(), &BTreeMap::new(), Duration::from_secs(60)).await?;
        let a = incident(ctx, &reading, Fault::Kill(2)).await?;
        let b = incident(ctx, &reading, Fault::Freeze(3)).await?;
        ensure!(reading.count() < total, "the records ran out before the last incident was over");
        anyhow::Ok(vec![a, b])
    }
    .await;
    if outcome.is_err() {
        reading.abort();
    }
    let measured = outcome?;
    let (log, errors, consumer) = reading.finish(total, Duration::from_secs(120)).await?;
    drop(consumer);
    let took = started.elapsed();
    let (mut problems, summary) = check(&produced, &log);
    if !errors.is_empty() {
        problems.push(format!("{} errors yielded: {:?}", errors.len(), &errors[..errors.len().min(5)]));
    }
    let mut lines = Vec::new();
    for m in &measured {
        if m.metadata == 0 || m.metadata > m.allowed {
            problems.push(format!("{}: {} Metadata requests, expected 1 to {}", m.what, m.metadata, m.allowed));
        }
        if m.uninvolved_gap > UNINVOLVED_GAP_BOUND {
            problems.push(format!(
                "{}: an uninvolved partition went {} without a record",
                m.what,
                ms(m.uninvolved_gap)
            ));
        }
        lines.push(format!(
            "{}: {} Metadata (≤ {}), gap involved {} uninvolved {}",
            m.what,
            m.metadata,
            m.allowed,
            ms(m.involved_gap),
            ms(m.uninvolved_gap)
        ));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(format!("{total} records; {summary}; {}; {:.1} s", lines.join("; "), took.as_secs_f64()))
}
