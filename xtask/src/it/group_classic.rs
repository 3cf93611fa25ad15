//! `tansu/group-classic` and `kafka/group-classic`: krab's consumer group (classic protocol,
//! eager `range`) against a real broker.
//!
//! - 100,000 records over 6 partitions, written by confluent-kafka (librdkafka).
//! - Three krab consumers in one group read them with auto-commit. Once 40 % are read, the third
//!   leaves (LeaveGroup, after committing its positions); the other two take its partitions over
//!   from the committed offsets and finish.
//! - Every record is read; re-reads are counted and printed (they can come only from positions
//!   not committed when ownership moved).
//! - Then both leave, 600 more records are written, and a restarted member in the same group
//!   first sees the committed offsets at the old end of every partition, then reads exactly the
//!   600 new records: it resumed from the commits.

use super::admin_support::{admin, all, eventually};
use super::group_support::{create_topic, ends, group_config, write};
use super::support::ms;
use crate::brokers::Venv;
use anyhow::{Context, Result, ensure};
use krab_consumer::{Consumer, ConsumerConfig, TopicPartition};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 6;
const TOTAL: usize = 100_000;
const MORE: usize = 600;

/// Who read what: (partition, offset) → times read.
type Reads = Arc<Mutex<HashMap<(i32, i64), u32>>>;

fn member_config(
    bootstrap: &str,
    group: &str,
    name: &str,
    session_ms: u64,
    extra: &[(&str, &str)],
) -> Result<ConsumerConfig> {
    let mut c = group_config(bootstrap, group, name, "range", session_ms)?;
    for (k, v) in extra {
        c.set(k, v)?;
    }
    c.validate()?;
    Ok(c)
}

/// One member: subscribes, reads until told to stop, then closes (committing, leaving).
fn member(
    config: ConsumerConfig,
    topic: String,
    reads: Reads,
    unique: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<usize>> {
    tokio::spawn(async move {
        let mut consumer = Consumer::connect(config).await.context("member connect")?;
        consumer.subscribe([topic])?;
        let mut read = 0;
        while !stop.load(Ordering::Relaxed) {
            let Ok(batch) = tokio::time::timeout(Duration::from_millis(200), consumer.poll_batch(100)).await else {
                continue;
            };
            // An application's pace (about 2,000 records/s per member), so that the read is
            // still in its first half when a member leaves.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut reads = reads.lock().unwrap_or_else(|p| p.into_inner());
            for r in batch?.into_iter().flat_map(|b| b.records) {
                read += 1;
                let n = reads.entry((r.partition, r.offset)).or_insert(0);
                *n += 1;
                if *n == 1 {
                    unique.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        consumer.close().await.context("member close")?;
        Ok(read)
    })
}

pub(super) async fn run(venv: &Venv, bootstrap: &str, rf: i16, session_ms: u64, label: &str) -> Result<String> {
    run_with(venv, bootstrap, rf, session_ms, label, &[]).await
}

/// [`run`] with extra consumer properties (`group.protocol=consumer`, ...).
async fn run_with(
    venv: &Venv,
    bootstrap: &str,
    rf: i16,
    session_ms: u64,
    label: &str,
    extra: &[(&str, &str)],
) -> Result<String> {
    let pid = std::process::id();
    let topic = format!("krab-it-group-{label}-{pid}");
    let group = format!("krab-it-group-{label}-{pid}");
    let admin = admin(bootstrap).await?;
    create_topic(&admin, &topic, PARTITIONS, rf).await?;
    let written = write(venv, bootstrap, &topic, PARTITIONS, 0, TOTAL).await.context("writing with confluent-kafka")?;
    let ends = ends(&written);

    let reads: Reads = Arc::default();
    let unique = Arc::new(AtomicUsize::new(0));
    let stops: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let started = Instant::now();
    let members: Vec<_> = (0..3)
        .map(|i| {
            let config = member_config(bootstrap, &group, &format!("krab-it-member-{i}"), session_ms, extra)?;
            Ok(member(config, topic.clone(), reads.clone(), unique.clone(), stops[i].clone()))
        })
        .collect::<Result<_>>()?;
    let mut members: Vec<Option<_>> = members.into_iter().map(Some).collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    while unique.load(Ordering::Relaxed) < TOTAL * 4 / 10 {
        ensure!(Instant::now() < deadline, "read {} of {TOTAL} records in 240 s", unique.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left_at = unique.load(Ordering::Relaxed);
    stops[2].store(true, Ordering::Relaxed);
    let third = members[2].take().context("member 2")?.await?.context("member 2")?;
    let left_after = started.elapsed();
    while unique.load(Ordering::Relaxed) < TOTAL {
        ensure!(
            Instant::now() < deadline,
            "read {} of {TOTAL} records in 240 s after member 2 left at {left_at}",
            unique.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let read_all = started.elapsed();
    let mut per_member = vec![0, 0, third];
    let snapshot = |reads: &Reads| reads.lock().unwrap_or_else(|p| p.into_inner()).clone();
    {
        let all_reads = snapshot(&reads);
        for &(p, o) in all_reads.keys() {
            ensure!(ends.get(&p).is_some_and(|&e| o < e), "read {p}@{o}, which was never written");
        }
        ensure!(all_reads.len() == TOTAL, "{} distinct records read of {TOTAL}", all_reads.len());
    }

    // A restarted member resumes from the committed offsets. Member 0 stops (commit, leave) and
    // a new member takes its place while member 1 stays, so the group never empties: tansu
    // makes a departed leader the leader of an emptied group's next generation, whose only
    // member then waits for an assignment that never comes (see ARCHITECTURE.md).
    stops[0].store(true, Ordering::Relaxed);
    per_member[0] = members[0].take().context("member 0")?.await?.context("member 0")?;
    let tps: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(topic.as_str(), p)).collect();
    let mut restarted =
        Consumer::connect(member_config(bootstrap, &group, "krab-it-member-restarted", session_ms, extra)?).await?;
    // Member 1 commits what it took over within an auto-commit interval.
    let (committed, _) = eventually("the committed offsets at the ends", Duration::from_secs(20), || async {
        let committed = restarted.committed(&tps).await?;
        let at_ends = tps.iter().all(|tp| committed.get(tp).copied().flatten() == ends.get(&tp.partition).copied());
        Ok(at_ends.then_some(committed))
    })
    .await?;
    let before = snapshot(&reads);
    let duplicates: u32 = before.values().map(|n| n - 1).sum();
    ensure!(
        (duplicates as usize) < TOTAL / 20,
        "{duplicates} records read twice: more than the uncommitted window explains"
    );
    restarted.subscribe([topic.clone()])?;
    let resumed = Instant::now();
    let mut again: BTreeMap<(i32, i64), u32> = BTreeMap::new();
    // Its share first (nothing new to read yet: whatever comes is checked below), then the new
    // records.
    while restarted.assignment().is_empty() {
        ensure!(resumed.elapsed() < Duration::from_secs(60), "the restarted member got no partitions in 60 s");
        if let Ok(batch) = tokio::time::timeout(Duration::from_millis(100), restarted.poll_batch(1000)).await {
            for r in batch?.into_iter().flat_map(|b| b.records) {
                *again.entry((r.partition, r.offset)).or_insert(0) += 1;
            }
        }
    }
    let more = write(venv, bootstrap, &topic, PARTITIONS, TOTAL, MORE).await.context("writing more")?;
    let new_by_member_1 =
        |reads: &Reads| snapshot(reads).into_iter().filter(|((p, o), _)| *o >= ends[p]).collect::<Vec<_>>();
    while again.len() + new_by_member_1(&reads).len() < MORE {
        ensure!(
            resumed.elapsed() < Duration::from_secs(60),
            "the restarted member and member 1 read {} + {} of {MORE} new records in 60 s",
            again.len(),
            new_by_member_1(&reads).len()
        );
        let Ok(batch) = tokio::time::timeout(Duration::from_millis(200), restarted.poll_batch(1000)).await else {
            continue;
        };
        for r in batch?.into_iter().flat_map(|b| b.records) {
            *again.entry((r.partition, r.offset)).or_insert(0) += 1;
        }
    }
    // A moment more: nothing older may follow.
    if let Ok(batch) = tokio::time::timeout(Duration::from_secs(2), restarted.poll_batch(1000)).await {
        for r in batch?.into_iter().flat_map(|b| b.records) {
            *again.entry((r.partition, r.offset)).or_insert(0) += 1;
        }
    }
    let resumed_in = resumed.elapsed();
    let restarted_read = again.len();
    restarted.close().await?;
    stops[1].store(true, Ordering::Relaxed);
    per_member[1] = members[1].take().context("member 1")?.await?.context("member 1")?;
    let after = snapshot(&reads);
    for (k, n) in &before {
        ensure!(after.get(k) == Some(n), "record {}@{} was read again after the restart", k.0, k.1);
    }
    for ((p, o), n) in after.iter().filter(|((p, o), _)| *o >= ends[p]) {
        *again.entry((*p, *o)).or_insert(0) += n;
    }
    for (&(p, o), &n) in &again {
        ensure!(o >= ends[&p], "the restarted member re-read {p}@{o} (committed {})", ends[&p]);
        ensure!(n == 1, "{p}@{o} read {n} times after the restart");
        ensure!(
            more.get(&p).is_some_and(|os| os.contains(&o)),
            "{p}@{o} read after the restart is not among the new records"
        );
    }
    ensure!(again.len() == MORE, "{} records read after the restart, expected {MORE}", again.len());
    ensure!(restarted_read > 0, "the restarted member read none of the new records");
    ensure!(committed.len() == PARTITIONS as usize, "committed offsets of {} partitions", committed.len());
    all("delete the topic", admin.delete_topics(&[&topic]).await?)?;
    Ok(format!(
        "{TOTAL} records over {PARTITIONS} partitions (confluent-kafka) read by 3 members {per_member:?}; member 2 left at {left_at} read \
         ({}), all read after {}; {duplicates} read twice (uncommitted window); a restarted member beside member 1: committed \
         offsets at the ends, the {MORE} new records read exactly once ({restarted_read} by it) in {}, none older",
        ms(left_after),
        ms(read_all),
        ms(resumed_in)
    ))
}

/// `kafka/group-classic` on the 3-node cluster (RF 3), through the proxies.
pub(super) async fn kafka(ctx: &super::kafka_support::KafkaCtx<'_>) -> Result<String> {
    run(ctx.venv, &ctx.kafka.bootstrap(), 3, 10_000, "kafka").await
}

/// `kafka/group-kip848`: the same flow with `group.protocol=consumer` (KIP-848), once with each
/// server-side assignor.
pub(super) async fn kip848(ctx: &super::kafka_support::KafkaCtx<'_>) -> Result<String> {
    let mut parts = Vec::new();
    for assignor in ["uniform", "range"] {
        let extra = [("group.protocol", "consumer"), ("group.remote.assignor", assignor)];
        let done = run_with(ctx.venv, &ctx.kafka.bootstrap(), 3, 10_000, &format!("kip848-{assignor}"), &extra)
            .await
            .with_context(|| format!("group.remote.assignor={assignor}"))?;
        parts.push(format!("{assignor}: {done}"));
    }
    Ok(parts.join("; "))
}
