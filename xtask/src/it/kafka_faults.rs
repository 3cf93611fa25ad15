//! The incidents the Kafka scenarios play while a producer runs, and what each measured: the
//! Metadata requests counted at the proxies, how long until every involved partition was
//! acknowledged again, and (from the acknowledgement log, at the end) the longest gap of the
//! partitions the incident did not involve.

use super::kafka_support::{KafkaCtx, METADATA, kctl};
use super::support::{AckLog, last_acks, ms};
use super::test_cluster::TestCluster;
use crate::proxy::Fault;
use anyhow::{Result, bail};
use krab_producer::Producer;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One incident.
#[derive(Debug, Clone)]
pub(super) enum Incident {
    /// Partition → new leader (reassignment + preferred election).
    MoveLeaders(BTreeMap<i32, i32>),
    /// `kill -9` a broker, restart it after the given time.
    Kill(i32, Duration),
    /// `SIGSTOP` a broker, `SIGCONT` it after the given time.
    Freeze(i32, Duration),
    /// Its proxy accepts and never answers for the given time, then cuts its connections.
    Blackhole(i32, Duration),
    /// Its proxy delays every response by the first duration, for the second.
    Delay(i32, Duration, Duration),
    /// Every proxy cuts every connection at once.
    CutAll,
}

impl Incident {
    pub(super) fn describe(&self) -> String {
        match self {
            Incident::MoveLeaders(m) => {
                format!(
                    "leaders moved ({})",
                    m.iter().map(|(p, to)| format!("{p}->{to}")).collect::<Vec<_>>().join(" ")
                )
            }
            Incident::Kill(b, d) => format!("broker {b} kill -9, restarted after {}", ms(*d)),
            Incident::Freeze(b, d) => format!("broker {b} SIGSTOP for {}", ms(*d)),
            Incident::Blackhole(b, d) => format!("broker {b} blackholed for {}", ms(*d)),
            Incident::Delay(b, by, d) => format!("broker {b} responses delayed {} for {}", ms(*by), ms(*d)),
            Incident::CutAll => "all connections cut".into(),
        }
    }

    /// The broker it acts on, if one.
    fn broker(&self) -> Option<i32> {
        match self {
            Incident::Kill(b, _) | Incident::Freeze(b, _) | Incident::Blackhole(b, _) | Incident::Delay(b, _, _) => {
                Some(*b)
            }
            _ => None,
        }
    }
}

/// What one incident measured.
pub(super) struct Measured {
    pub(super) incident: Incident,
    pub(super) involved: BTreeSet<i32>,
    pub(super) start: Instant,
    /// When every involved partition was acknowledged again after the fault ended.
    pub(super) recovered: Instant,
    pub(super) fault_ended: Instant,
    pub(super) metadata: u64,
}

impl Measured {
    /// One report line; the uninvolved partitions' longest gap comes from the ack log.
    pub(super) fn line(&self, log: &AckLog, partitions: i32) -> (String, Duration) {
        let gap = (0..partitions)
            .filter(|p| !self.involved.contains(p))
            .map(|p| log.max_gap(p, self.start, self.recovered))
            .max()
            .unwrap_or_default();
        let text = format!(
            "{}: {} Metadata requests, involved partitions {:?} acknowledged {} after the fault ended, \
             uninvolved longest ack gap {}",
            self.incident.describe(),
            self.metadata,
            self.involved,
            ms(self.recovered - self.fault_ended),
            if self.involved.len() as i32 == partitions { "-".into() } else { ms(gap) }
        );
        (text, gap)
    }
}

/// Plays one incident against the producer's topic and measures it.
pub(super) async fn play(ctx: &KafkaCtx<'_>, producer: &Producer, topic: &str, incident: Incident) -> Result<Measured> {
    let t = topic.to_owned();
    let before = kctl(&ctx.kafka, move |k| k.partitions(&t)).await?;
    let involved: BTreeSet<i32> = match (&incident, incident.broker()) {
        (Incident::MoveLeaders(m), _) => m.keys().copied().collect(),
        (Incident::CutAll, _) => before.keys().copied().collect(),
        (_, Some(b)) => before.iter().filter(|(_, s)| s.leader == Some(b)).map(|(p, _)| *p).collect(),
        _ => BTreeSet::new(),
    };
    let metadata_before = TestCluster::requests(&*ctx.kafka, METADATA)?;
    let start = Instant::now();
    match incident.clone() {
        Incident::MoveLeaders(m) => {
            let t = topic.to_owned();
            kctl(&ctx.kafka, move |k| TestCluster::move_leaders(k, &t, &m)).await?;
        }
        Incident::Kill(b, d) => {
            kctl(&ctx.kafka, move |k| k.take_down(b)).await?;
            tokio::time::sleep(d).await;
            kctl(&ctx.kafka, move |k| k.bring_up(b)).await?;
        }
        Incident::Freeze(b, d) => {
            kctl(&ctx.kafka, move |k| k.freeze(b, true)).await?;
            tokio::time::sleep(d).await;
            kctl(&ctx.kafka, move |k| k.freeze(b, false)).await?;
        }
        Incident::Blackhole(b, d) => {
            ctx.kafka.proxy(b)?.set_fault(Fault::Blackhole);
            tokio::time::sleep(d).await;
            ctx.kafka.proxy(b)?.set_fault(Fault::Pass);
        }
        Incident::Delay(b, by, d) => {
            ctx.kafka.proxy(b)?.set_fault(Fault::Delay(by));
            tokio::time::sleep(d).await;
            ctx.kafka.proxy(b)?.set_fault(Fault::Pass);
        }
        Incident::CutAll => {
            for p in ctx.kafka.proxies() {
                p.cut();
            }
        }
    }
    let fault_ended = Instant::now();
    let recovered = acked_again(producer, topic, &involved, fault_ended, Duration::from_secs(90)).await?;
    // Let a late extra Metadata request show up in the count (the producer's longest wait
    // between resolves is retry.backoff.max.ms, 1 s).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A killed or frozen broker rejoins the ISR only after catching up: wait, so the next
    // incident starts from a whole cluster (not counted in the incident).
    if matches!(incident, Incident::Kill(..) | Incident::Freeze(..)) {
        let t = topic.to_owned();
        kctl(&ctx.kafka, move |k| k.wait_isr_full(&t, Duration::from_secs(90))).await?;
    }
    let metadata = TestCluster::requests(&*ctx.kafka, METADATA)? - metadata_before;
    Ok(Measured { incident, involved, start, recovered, fault_ended, metadata })
}

/// Waits until every partition in `parts` has an acknowledgement after `after`.
async fn acked_again(
    producer: &Producer,
    topic: &str,
    parts: &BTreeSet<i32>,
    after: Instant,
    timeout: Duration,
) -> Result<Instant> {
    let deadline = after + timeout;
    loop {
        let acks = last_acks(producer, topic);
        if parts.iter().all(|p| acks.get(p).copied().flatten().is_some_and(|t| t > after)) {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            let waiting: Vec<_> =
                parts.iter().filter(|p| acks.get(p).copied().flatten().is_none_or(|t| t <= after)).collect();
            let stats: Vec<String> = producer
                .stats()
                .iter()
                .filter(|(tp, _)| &*tp.topic == topic && waiting.contains(&&tp.partition))
                .map(|(tp, s)| format!("{}: acked {} failed {} stalls {}", tp.partition, s.acked, s.failed, s.stalls))
                .collect();
            let seen = super::support::leaders(producer, topic);
            bail!(
                "partitions {waiting:?} not acknowledged within {timeout:?} after the fault ended; their stats [{}]; \
                 leaders in the producer's metadata {seen:?}; producer Metadata requests {}",
                stats.join(", "),
                producer.metadata_requests()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
