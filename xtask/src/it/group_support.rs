//! What the group scenarios share: a krab group member run as a task that reads at an
//! application's pace and records what it read, when, and every rebalance event it saw.

use super::admin_support::{all, eventually};
use super::consumer_interop_codecs::librdkafka_write;
use super::support::to_hex;
use crate::brokers::Venv;
use anyhow::{Context, Result, bail, ensure};
use futures_util::StreamExt;
use krab_admin::{Admin, NewTopic};
use krab_consumer::{Consumer, ConsumerConfig, RebalanceEvent, TopicPartition};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A rebalance event as a member saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seen {
    Assigned(BTreeSet<i32>),
    Revoked(BTreeSet<i32>),
    Lost(BTreeSet<i32>),
}

/// What one member did.
#[derive(Debug, Default)]
pub(super) struct Log {
    /// (partition, offset) → times read.
    pub(super) reads: HashMap<(i32, i64), u32>,
    /// When each partition last yielded a record, and every arrival time.
    pub(super) arrivals: BTreeMap<i32, Vec<Instant>>,
    /// Rebalance events, in order, with their time.
    pub(super) events: Vec<(Instant, Seen)>,
    /// Partitions owned now (by the events).
    pub(super) owned: BTreeSet<i32>,
    /// (member id, generation) after each event.
    pub(super) membership: Vec<(String, i32)>,
}

/// A running member.
pub(super) struct Member {
    pub(super) log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

fn partitions(tps: &[TopicPartition]) -> BTreeSet<i32> {
    tps.iter().map(|tp| tp.partition).collect()
}

impl Member {
    /// Connects, subscribes to `topic` and reads `batch` records every `pace` until stopped.
    pub(super) async fn start(config: ConsumerConfig, topic: &str, batch: usize, pace: Duration) -> Result<Member> {
        let mut consumer = Consumer::connect(config).await.context("member connect")?;
        let mut events = consumer.rebalance_events().context("rebalance events")?;
        consumer.subscribe([topic.to_string()])?;
        let log: Arc<Mutex<Log>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut events_open = true;
            loop {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                tokio::select! {
                    event = events.next(), if events_open => {
                        let Some(event) = event else { events_open = false; continue };
                        let now = Instant::now();
                        let mut log = lock(&l);
                        let seen = match event {
                            RebalanceEvent::Assigned(tps) => {
                                log.owned.extend(partitions(&tps));
                                Seen::Assigned(partitions(&tps))
                            }
                            RebalanceEvent::Revoked { partitions: tps, ack } => {
                                for p in partitions(&tps) {
                                    log.owned.remove(&p);
                                }
                                ack.ack();
                                Seen::Revoked(partitions(&tps))
                            }
                            RebalanceEvent::Lost(tps) => {
                                for p in partitions(&tps) {
                                    log.owned.remove(&p);
                                }
                                Seen::Lost(partitions(&tps))
                            }
                            _ => continue,
                        };
                        log.events.push((now, seen));
                        if let Some(m) = consumer.group_membership() {
                            log.membership.push(m);
                        }
                    }
                    batch = tokio::time::timeout(Duration::from_millis(100), consumer.poll_batch(batch)) => {
                        let Ok(batch) = batch else { continue };
                        let now = Instant::now();
                        {
                            let mut log = lock(&l);
                            for r in batch?.into_iter().flat_map(|b| b.records) {
                                *log.reads.entry((r.partition, r.offset)).or_insert(0) += 1;
                                log.arrivals.entry(r.partition).or_default().push(now);
                            }
                        }
                        tokio::time::sleep(pace).await;
                    }
                }
            }
            consumer.close().await.context("member close")?;
            Ok(())
        });
        Ok(Member { log, stop, task })
    }

    /// The member's log.
    pub(super) fn log(&self) -> MutexGuard<'_, Log> {
        lock(&self.log)
    }

    /// Partitions it owns now.
    pub(super) fn owned(&self) -> BTreeSet<i32> {
        self.log().owned.clone()
    }

    /// Stops reading and closes the consumer (commit, revoke, leave).
    pub(super) async fn stop(self) -> Result<Arc<Mutex<Log>>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await??;
        Ok(self.log)
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A group member's settings: earliest, a short session, 1 s auto-commits, `strategy`.
pub(super) fn group_config(
    bootstrap: &str,
    group: &str,
    name: &str,
    strategy: &str,
    session_ms: u64,
) -> Result<ConsumerConfig> {
    let mut c = ConsumerConfig::new(bootstrap)?.client_id(name).request_timeout(Duration::from_secs(10));
    for (k, v) in [
        ("group.id", group.to_string()),
        ("auto.offset.reset", "earliest".to_string()),
        ("session.timeout.ms", session_ms.to_string()),
        ("heartbeat.interval.ms", (session_ms / 6).max(100).to_string()),
        ("max.poll.interval.ms", "30000".to_string()),
        ("auto.commit.interval.ms", "1000".to_string()),
        ("partition.assignment.strategy", strategy.to_string()),
    ] {
        c.set(k, &v)?;
    }
    c.validate()?;
    Ok(c)
}

/// Waits until `f` holds, for at most `timeout`.
pub(super) async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<Duration> {
    let started = Instant::now();
    while !f() {
        anyhow::ensure!(started.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed())
}

/// The longest gap between records of `partition` (or from `from` to its first record, and
/// from its last record to `to`) within [from, to].
pub(super) fn gap(log: &Log, partition: i32, from: Instant, to: Instant) -> Duration {
    let times = log.arrivals.get(&partition).map(Vec::as_slice).unwrap_or(&[]);
    super::support::max_gap(times, from, to)
}

/// Creates `topic` and waits until every partition has a leader.
pub(super) async fn create_topic(admin: &Admin, topic: &str, partitions: i32, rf: i16) -> Result<()> {
    all("create the topic", admin.create_topics(&[NewTopic::new(topic, partitions, rf)]).await?)?;
    eventually("the topic's leaders", Duration::from_secs(30), || async {
        let d = admin.describe_topics(&[topic]).await?;
        Ok(matches!(d.get(topic), Some(Ok(t)) if t.partitions.len() == partitions as usize && t.partitions.iter().all(|p| p.leader.is_some())).then_some(()))
    })
    .await?;
    Ok(())
}

/// Writes `n` records (values `v<first+i>`, record i to partition i mod `partitions`) with
/// confluent-kafka; returns the partition → offsets they were acknowledged at.
pub(super) async fn write(
    venv: &Venv,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    first: usize,
    n: usize,
) -> Result<BTreeMap<i32, Vec<i64>>> {
    let input: String = (first..first + n)
        .map(|i| format!("{} -1 - x{} 0\n", i as i32 % partitions, to_hex(format!("v{i}").as_bytes())))
        .collect();
    let text = librdkafka_write(venv, bootstrap, topic, "lz4", &[], &input).await?;
    let mut out: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if let Some(e) = v.get("err") {
            bail!("confluent-kafka failed to write a record: {e}");
        }
        out.entry(v["p"].as_i64().context("p")? as i32).or_default().push(v["o"].as_i64().context("o")?);
    }
    let acked = out.values().map(Vec::len).sum::<usize>();
    ensure!(acked == n, "{acked} of {n} records acknowledged");
    Ok(out)
}

/// Each partition's end offset after `written` (one past its last acknowledged offset).
pub(super) fn ends(written: &BTreeMap<i32, Vec<i64>>) -> BTreeMap<i32, i64> {
    written.iter().map(|(p, os)| (*p, os.iter().max().map_or(0, |o| o + 1))).collect()
}
