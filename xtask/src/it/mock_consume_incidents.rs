//! `mock/consume-incidents`: 12 partitions on the mock cluster (3 brokers), filled beforehand by
//! krab's idempotent producer with `<partition>-<seq>` values; krab's consumer reads them at a
//! fixed pace while (a) the leaders of 4 partitions move and (b) a broker goes down and its
//! partitions move to the other two. Asserted: every record yielded exactly once, in order per
//! partition, at the offset it was produced to; one Metadata request per incident at the mock;
//! partitions the incident does not involve keep yielding (longest gap printed and bounded).
//!
//! Why a broker down costs one request too: its fetch task's failure (the connection closed, then
//! the reconnect refused) marks only its partitions stale at the failing snapshot's generation,
//! and all of them ride one `refresh`; the new snapshot names their new leaders, so nothing asks
//! again. The down broker's task keeps redialling with backoff, which costs connections, not
//! Metadata.

use super::consume_support::{Reading, check, consumer_config, gap, produce_beforehand};
use super::support::{METADATA, ctl, ms, producer_config};
use super::test_cluster::{Caps, require};
use crate::brokers::mock::MockCluster;
use anyhow::{Context, Result, bail, ensure};
use krab_cluster::Cluster;
use krab_consumer::Consumer;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TOPIC: &str = "krab-it-consume-incidents";
const PARTITIONS: i32 = 12;
const PER_PARTITION: u64 = 6_000;
/// Records per second while an incident plays.
const RATE: u64 = 4_800;
/// Watching on after recovery, so a late extra Metadata request is counted (longer than
/// `retry.backoff.max.ms`, 1 s).
const SETTLE: Duration = Duration::from_millis(1100);
/// The longest gap allowed to a partition an incident does not involve: generous (the pace
/// gives each partition records every ~60 ms; the machine is shared).
const UNINVOLVED_GAP_BOUND: Duration = Duration::from_millis(1500);

fn leaders(cluster: &Cluster) -> BTreeMap<i32, i32> {
    cluster
        .snapshot()
        .topic(TOPIC)
        .map(|t| t.partitions.iter().map(|p| (p.partition, p.leader.unwrap_or(-1))).collect())
        .unwrap_or_default()
}

/// What one incident measured.
struct Measured {
    name: &'static str,
    metadata: u64,
    involved_gap: Duration,
    uninvolved_gap: (Duration, i32),
}

async fn incident(
    mock: &Arc<MockCluster>,
    cluster: &Cluster,
    reading: &Reading,
    name: &'static str,
    down: Option<i32>,
    moves: BTreeMap<i32, i32>,
) -> Result<Measured> {
    reading.rate.store(RATE, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctl(mock, |m| m.reset_tracking()).await?;
    let from = reading.positions();
    let started = Instant::now();
    let all = moves.clone();
    ctl(mock, move |m| {
        if let Some(b) = down {
            m.broker_down(b)?;
        }
        all.iter().try_for_each(|(&p, &to)| m.set_leader(TOPIC, p, to))
    })
    .await?;
    let involved: BTreeSet<i32> = moves.keys().copied().collect();
    let recovered = reading.recovered(&involved, &from, Duration::from_secs(30)).await?;
    tokio::time::sleep(SETTLE).await;
    let metadata = ctl(mock, |m| m.request_count(METADATA)).await?;
    reading.rate.store(0, Ordering::Relaxed);
    if let Some(b) = down {
        ctl(mock, move |m| m.broker_up(b)).await?;
    }
    let now = leaders(cluster);
    ensure!(moves.iter().all(|(p, to)| now.get(p) == Some(to)), "{name}: the consumer's leaders are {now:?}");
    let log = reading.log.lock().unwrap().clone();
    let involved_gap = involved.iter().map(|&p| gap(&log, p, started, recovered)).max().unwrap_or_default();
    let uninvolved_gap = (0..PARTITIONS)
        .filter(|p| !involved.contains(p))
        .map(|p| (gap(&log, p, started, recovered), p))
        .max()
        .unwrap_or_default();
    println!(
        "  incident {name}: {} Metadata requests; involved {involved:?} longest gap {}, recovered after {}; \
         uninvolved longest gap {} (partition {})",
        metadata,
        ms(involved_gap),
        ms(recovered - started),
        ms(uninvolved_gap.0),
        uninvolved_gap.1
    );
    Ok(Measured { name, metadata, involved_gap, uninvolved_gap })
}

pub(super) async fn run(mock: &Arc<MockCluster>) -> Result<String> {
    require(&**mock, Caps { leader_moves: true, broker_down: true, counts_requests: true, ..Caps::default() })?;
    ctl(mock, |m| m.create_topic(TOPIC, PARTITIONS as u32, 3)).await?;
    let started = Instant::now();
    let produced = produce_beforehand(producer_config(mock.bootstrap())?, TOPIC, PARTITIONS, PER_PARTITION).await?;
    let total: usize = produced.values().map(BTreeMap::len).sum();
    let consumer = Consumer::connect(consumer_config(mock.bootstrap())?).await?;
    let cluster = consumer.cluster().clone();
    let reading = Reading::start(consumer, TOPIC, PARTITIONS, RATE);
    let outcome = async {
        reading.recovered(&(0..PARTITIONS).collect(), &BTreeMap::new(), Duration::from_secs(30)).await?;
        // a: four partitions, spread over the leaders, each to the next broker.
        let before = leaders(&cluster);
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (&p, &l) in &before {
            by_leader.entry(l).or_default().push(p);
        }
        let mut moves = BTreeMap::new();
        'pick: for round in 0..PARTITIONS as usize {
            for (&l, parts) in &by_leader {
                if let Some(&p) = parts.get(round) {
                    moves.insert(p, l % 3 + 1);
                    if moves.len() == 4 {
                        break 'pick;
                    }
                }
            }
        }
        ensure!(moves.len() == 4, "fewer than 4 partitions to move: {before:?}");
        let a = incident(mock, &cluster, &reading, "a (4 leaders moved)", None, moves).await?;
        // b: the broker leading most partitions goes down; they move to the other two.
        let before = leaders(&cluster);
        let mut count: BTreeMap<i32, usize> = BTreeMap::new();
        for &l in before.values() {
            *count.entry(l).or_default() += 1;
        }
        let victim = count.iter().max_by_key(|(b, n)| (**n, -**b)).map(|(b, _)| *b).context("no leaders")?;
        let others: Vec<i32> = (1..=3).filter(|b| *b != victim).collect();
        let moves: BTreeMap<i32, i32> = before
            .iter()
            .filter(|(_, l)| **l == victim)
            .enumerate()
            .map(|(i, (&p, _))| (p, others[i % others.len()]))
            .collect();
        let b =
            incident(mock, &cluster, &reading, "b (broker down, its partitions moved)", Some(victim), moves).await?;
        ensure!(reading.count() < total, "the records ran out before the last incident was over");
        anyhow::Ok(vec![a, b])
    }
    .await;
    if outcome.is_err() {
        reading.abort();
    }
    let measured = outcome?;
    let (log, errors, consumer) = reading.finish(total, Duration::from_secs(60)).await?;
    drop(consumer);
    let took = started.elapsed();
    let (mut problems, summary) = check(&produced, &log);
    if !errors.is_empty() {
        problems.push(format!("{} errors yielded: {:?}", errors.len(), &errors[..errors.len().min(5)]));
    }
    let mut lines = Vec::new();
    for m in &measured {
        if m.metadata != 1 {
            problems.push(format!("incident {}: {} Metadata requests, expected exactly 1", m.name, m.metadata));
        }
        if m.uninvolved_gap.0 > UNINVOLVED_GAP_BOUND {
            problems.push(format!(
                "incident {}: uninvolved partition {} went {} without a record",
                m.name,
                m.uninvolved_gap.1,
                ms(m.uninvolved_gap.0)
            ));
        }
        let id = m.name.split_once(' ').map_or(m.name, |(id, _)| id);
        lines.push(format!(
            "{id}: {} Metadata, gap involved {} uninvolved {}",
            m.metadata,
            ms(m.involved_gap),
            ms(m.uninvolved_gap.0)
        ));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(format!("{total} records; {summary}; {}; {:.1} s", lines.join("; "), took.as_secs_f64()))
}
