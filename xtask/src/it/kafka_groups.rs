//! Group scenarios on Kafka beyond the classic read-all run (`group_classic.rs`):
//!
//! - `kafka/group-cooperative`: three `cooperative-sticky` members read 12 partitions; a fourth
//!   joins, then one leaves. No member is ever revoked a partition it keeps (checked on every
//!   event), the partitions that do not move keep yielding through the rebalance (the longest
//!   gap is printed and bounded), and every record is read.
//! - `kafka/group-static`: two static members (`group.instance.id`); one restarts within the
//!   session timeout: no rebalance (the other member sees no event and keeps its generation), the
//!   restarted one gets its own partitions back in the same generation.
//! - `kafka/group-coordinator-kill`: the group coordinator's broker is `kill -9`ed mid-read; the
//!   members find the new coordinator, keep their commits, and read every record.

use super::admin_support::admin;
use super::group_support::{Log, Member, Seen, create_topic, ends, gap, group_config, lock, until, write};
use super::kafka_support::{KafkaCtx, kctl};
use super::support::ms;
use anyhow::{Context, Result, ensure};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Creates `topic` (RF 3) and writes `per_partition` records to each partition with
/// confluent-kafka; returns each partition's end offset.
async fn prepare(ctx: &KafkaCtx<'_>, topic: &str, partitions: i32, per_partition: usize) -> Result<BTreeMap<i32, i64>> {
    let bootstrap = ctx.kafka.bootstrap();
    create_topic(&admin(&bootstrap).await?, topic, partitions, 3).await?;
    let n = per_partition * partitions as usize;
    Ok(ends(&write(ctx.venv, &bootstrap, topic, partitions, 0, n).await?))
}

/// Every written record read, by the union of the logs; returns the duplicates.
fn check_all_read(logs: &[Arc<Mutex<Log>>], ends: &BTreeMap<i32, i64>) -> Result<u32> {
    let mut reads: HashMap<(i32, i64), u32> = HashMap::new();
    for l in logs {
        for (k, n) in &lock(l).reads {
            *reads.entry(*k).or_insert(0) += n;
        }
    }
    for (p, &end) in ends {
        for o in 0..end {
            ensure!(reads.contains_key(&(*p, o)), "record {p}@{o} was never read");
        }
    }
    Ok(reads.values().map(|n| n - 1).sum())
}

fn distinct(logs: &[&Member]) -> usize {
    let mut seen = BTreeSet::new();
    for m in logs {
        seen.extend(m.log().reads.keys().copied());
    }
    seen.len()
}

/// No member was revoked a partition it owns at the end of the window (cooperative: only what
/// moves is revoked); returns the partitions each revoked in the window.
fn revoked_kept(member: &Member, from: Instant) -> Result<BTreeSet<i32>> {
    let log = member.log();
    let mut revoked = BTreeSet::new();
    for (t, e) in &log.events {
        if *t >= from {
            if let Seen::Revoked(ps) = e {
                revoked.extend(ps.iter().copied());
            }
            ensure!(!matches!(e, Seen::Lost(_)), "a member lost partitions in a cooperative rebalance: {e:?}");
        }
    }
    let kept: BTreeSet<i32> = revoked.intersection(&log.owned).copied().collect();
    ensure!(kept.is_empty(), "revoked {kept:?}, which it owns again (revoked {revoked:?}, owns {:?})", log.owned);
    Ok(revoked)
}

pub(super) async fn cooperative(ctx: &KafkaCtx<'_>) -> Result<String> {
    const PARTITIONS: i32 = 12;
    let pid = std::process::id();
    let topic = format!("krab-it-group-coop-{pid}");
    let group = topic.clone();
    let bootstrap = ctx.kafka.bootstrap();
    let ends = prepare(ctx, &topic, PARTITIONS, 4000).await?;
    let total: usize = ends.values().map(|&e| e as usize).sum();
    let start = |i: usize| {
        let config = group_config(&bootstrap, &group, &format!("krab-it-coop-{i}"), "cooperative-sticky", 10_000);
        let topic = topic.clone();
        async move { Member::start(config?, &topic, 20, Duration::from_millis(50)).await }
    };
    let mut members = vec![start(0).await?, start(1).await?, start(2).await?];
    let settled = |ms: &[Member], n: usize| {
        let owned: Vec<BTreeSet<i32>> = ms.iter().map(Member::owned).collect();
        let union: BTreeSet<i32> = owned.iter().flatten().copied().collect();
        union.len() == PARTITIONS as usize
            && owned.iter().map(BTreeSet::len).sum::<usize>() == PARTITIONS as usize
            && owned.iter().all(|o| o.len() == PARTITIONS as usize / n)
    };
    until("3 members with 4 partitions each", Duration::from_secs(60), || settled(&members, 3)).await?;

    // A fourth member joins.
    let before: Vec<BTreeSet<i32>> = members.iter().map(Member::owned).collect();
    let joined_at = Instant::now();
    members.push(start(3).await?);
    let join_took = until("4 members with 3 partitions each", Duration::from_secs(60), || settled(&members, 4)).await?;
    let join_end = Instant::now();
    let mut worst_join = Duration::ZERO;
    let mut moved = 0;
    for (m, old) in members.iter().zip(&before) {
        let revoked = revoked_kept(m, joined_at)?;
        moved += revoked.len();
        let now = m.owned();
        let log = m.log();
        for p in old.intersection(&now) {
            worst_join = worst_join.max(gap(&log, *p, joined_at, join_end));
        }
    }
    ensure!(moved == 3, "{moved} partitions revoked for the new member, expected 3 (one from each)");

    // One of the first three leaves.
    let before: Vec<BTreeSet<i32>> = members.iter().skip(1).map(Member::owned).collect();
    let left_at = Instant::now();
    let leaver = members.remove(0);
    let leaver_log = leaver.stop().await?;
    let leave_took =
        until("3 members with 4 partitions each again", Duration::from_secs(60), || settled(&members, 3)).await?;
    let leave_end = Instant::now();
    let mut worst_leave = Duration::ZERO;
    for (m, old) in members.iter().zip(&before) {
        let revoked = revoked_kept(m, left_at)?;
        ensure!(revoked.is_empty(), "a remaining member was revoked {revoked:?} when another left");
        let log = m.log();
        for p in old {
            worst_leave = worst_leave.max(gap(&log, *p, left_at, leave_end));
        }
    }
    ensure!(
        worst_join < Duration::from_secs(5) && worst_leave < Duration::from_secs(5),
        "partitions that did not move stopped yielding for {} (join) / {} (leave)",
        ms(worst_join),
        ms(worst_leave)
    );
    let refs: Vec<&Member> = members.iter().collect();
    let read_in = until("every record read", Duration::from_secs(240), || {
        distinct(&refs) + lock(&leaver_log).reads.len() >= total
    })
    .await;
    let mut logs = vec![leaver_log];
    for m in members {
        logs.push(m.stop().await?);
    }
    read_in?;
    let duplicates = check_all_read(&logs, &ends)?;
    Ok(format!(
        "{total} records over {PARTITIONS} partitions; a 4th member joined: 3 partitions moved (one revoked from each, none revoked \
         that a member kept), settled in {}, longest gap of a partition that did not move {}; a member left: no revocation, \
         settled in {}, longest gap {}; all read, {duplicates} twice",
        ms(join_took),
        ms(worst_join),
        ms(leave_took),
        ms(worst_leave)
    ))
}

pub(super) async fn static_membership(ctx: &KafkaCtx<'_>) -> Result<String> {
    const PARTITIONS: i32 = 6;
    let pid = std::process::id();
    let topic = format!("krab-it-group-static-{pid}");
    let group = topic.clone();
    let bootstrap = ctx.kafka.bootstrap();
    let ends = prepare(ctx, &topic, PARTITIONS, 3000).await?;
    let total: usize = ends.values().map(|&e| e as usize).sum();
    let config = |i: usize| -> Result<_> {
        let mut c = group_config(&bootstrap, &group, &format!("krab-it-static-{i}"), "range", 15_000)?;
        c.set("group.instance.id", &format!("{topic}-{i}"))?;
        Ok(c)
    };
    let a = Member::start(config(0)?, &topic, 20, Duration::from_millis(50)).await?;
    let b = Member::start(config(1)?, &topic, 20, Duration::from_millis(50)).await?;
    until("both static members assigned", Duration::from_secs(60), || a.owned().len() == 3 && b.owned().len() == 3)
        .await?;
    // Let the first generation settle (a join may have raced the other's).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a_owned = a.owned();
    let b_events = b.log().events.len();
    let generation = b.log().membership.last().map(|m| m.1).context("b's membership")?;
    let restarted_at = Instant::now();
    let a_log = a.stop().await?;
    let a2 = Member::start(config(0)?, &topic, 20, Duration::from_millis(50)).await?;
    let back_in =
        until("the restarted static member assigned", Duration::from_secs(30), || a2.owned().len() == 3).await?;
    ensure!(a2.owned() == a_owned, "the restarted member got {:?}, it had {a_owned:?}", a2.owned());
    let a2_generation = a2.log().membership.last().map(|m| m.1).context("a2's membership")?;
    ensure!(
        a2_generation == generation,
        "the restarted member is in generation {a2_generation}, the group was in {generation}"
    );
    // The other member saw no rebalance.
    tokio::time::sleep(Duration::from_secs(3)).await;
    {
        let log = b.log();
        ensure!(log.events.len() == b_events, "the other member saw {:?} after the restart", &log.events[b_events..]);
    }
    let b_first = *b.owned().iter().next().context("b owns nothing")?;
    let b_gap = gap(&b.log(), b_first, restarted_at, Instant::now());
    let refs = [&a2, &b];
    let read =
        until("every record read", Duration::from_secs(180), || distinct(&refs) + lock(&a_log).reads.len() >= total)
            .await;
    let logs = vec![a_log, a2.stop().await?, b.stop().await?];
    read?;
    let duplicates = check_all_read(&logs, &ends)?;
    Ok(format!(
        "{total} records over {PARTITIONS} partitions, 2 static members; one restarted: back with its partitions {a_owned:?} in {} in the \
         same generation {generation}, the other saw no rebalance (its longest gap {}); all read, {duplicates} twice",
        ms(back_in),
        ms(b_gap)
    ))
}

/// The coordinator of `group`, by FindCoordinator on the control listeners.
async fn coordinator_of(ctx: &KafkaCtx<'_>, group: &str) -> Result<i32> {
    let bootstrap = krab_cluster::transport::parse_bootstrap(&ctx.kafka.direct_bootstrap())?;
    let cluster = krab_cluster::Cluster::connect(krab_cluster::ClusterConfig::new(bootstrap)).await?;
    Ok(cluster.find_coordinator(group).await?)
}

pub(super) async fn coordinator_kill(ctx: &KafkaCtx<'_>) -> Result<String> {
    const PARTITIONS: i32 = 6;
    let pid = std::process::id();
    let topic = format!("krab-it-group-kill-{pid}");
    let group = topic.clone();
    let bootstrap = ctx.kafka.bootstrap();
    let ends = prepare(ctx, &topic, PARTITIONS, 6000).await?;
    let total: usize = ends.values().map(|&e| e as usize).sum();
    let members = vec![
        Member::start(
            group_config(&bootstrap, &group, "krab-it-kill-0", "range", 10_000)?,
            &topic,
            20,
            Duration::from_millis(30),
        )
        .await?,
        Member::start(
            group_config(&bootstrap, &group, "krab-it-kill-1", "range", 10_000)?,
            &topic,
            20,
            Duration::from_millis(30),
        )
        .await?,
    ];
    let refs: Vec<&Member> = members.iter().collect();
    until("a third read", Duration::from_secs(120), || distinct(&refs) >= total / 3).await?;
    let coordinator = coordinator_of(ctx, &group).await?;
    let killed_at = Instant::now();
    kctl(&ctx.kafka, move |k| k.kill(coordinator)).await?;
    let read = until("every record read", Duration::from_secs(180), || distinct(&refs) >= total).await;
    let read_after = killed_at.elapsed();
    let new_coordinator = coordinator_of(ctx, &group).await.unwrap_or(-1);
    let mut logs = Vec::new();
    for m in members {
        logs.push(m.stop().await?);
    }
    kctl(&ctx.kafka, move |k| k.restart(coordinator)).await?;
    read?;
    let duplicates = check_all_read(&logs, &ends)?;
    ensure!(new_coordinator != coordinator, "the coordinator is still broker {coordinator}");
    // The commits survived the move: the group's committed offsets are the ends.
    let admin = admin(&bootstrap).await?;
    let committed = admin.list_group_offsets(&group).await?;
    for (p, end) in &ends {
        let c = committed.get(&krab_admin::TopicPartition::new(topic.as_str(), *p)).map(|c| c.offset);
        ensure!(c == Some(*end), "partition {p}: committed {c:?}, expected {end}");
    }
    Ok(format!(
        "{total} records over {PARTITIONS} partitions, 2 members; coordinator broker {coordinator} killed at a third: the group moved to \
         broker {new_coordinator}, every record read {} after the kill ({duplicates} twice), committed offsets at the ends",
        ms(read_after)
    ))
}

/// A confluent-kafka member (`scripts/group_reader.py`) and what it reported.
struct PyMember {
    stdin: Option<tokio::process::ChildStdin>,
    child: tokio::process::Child,
    state: Arc<Mutex<PyState>>,
}

#[derive(Default)]
struct PyState {
    owned: BTreeSet<i32>,
    read: usize,
    reads: Option<Vec<(i32, i64)>>,
}

impl PyMember {
    fn start(ctx: &KafkaCtx<'_>, topic: &str, group: &str, name: &str, strategy: &str) -> Result<PyMember> {
        use tokio::io::AsyncBufReadExt;
        let script = crate::project_root().join("xtask").join("scripts").join("group_reader.py");
        let mut child = tokio::process::Command::new(ctx.venv.python())
            .arg(&script)
            .args([&ctx.kafka.bootstrap(), topic, group, name, strategy])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", script.display()))?;
        let stdin = child.stdin.take();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
        let state: Arc<Mutex<PyState>> = Arc::default();
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                let ints = |v: &serde_json::Value| -> Vec<i64> {
                    v.as_array().map(|a| a.iter().filter_map(|x| x.as_i64()).collect()).unwrap_or_default()
                };
                let mut st = lock(&s);
                if let Some(a) = v.get("assigned") {
                    st.owned.extend(ints(a).into_iter().map(|p| p as i32));
                } else if let Some(r) = v.get("revoked") {
                    for p in ints(r) {
                        st.owned.remove(&(p as i32));
                    }
                } else if let Some(n) = v.get("read").and_then(|n| n.as_u64()) {
                    st.read = n as usize;
                } else if let Some(all) = v.get("reads").and_then(|r| r.as_array()) {
                    st.reads = Some(
                        all.iter().filter_map(|x| Some((x.get(0)?.as_i64()? as i32, x.get(1)?.as_i64()?))).collect(),
                    );
                }
            }
        });
        Ok(PyMember { stdin, child, state })
    }

    fn owned(&self) -> BTreeSet<i32> {
        lock(&self.state).owned.clone()
    }

    async fn ask_status(&mut self) -> Result<usize> {
        use tokio::io::AsyncWriteExt;
        if let Some(stdin) = self.stdin.as_mut() {
            stdin.write_all(b"status\n").await?;
        }
        Ok(lock(&self.state).read)
    }

    /// Closes it (it commits and leaves) and returns what it read.
    async fn stop(mut self) -> Result<Vec<(i32, i64)>> {
        drop(self.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("the reader did not exit")??;
        ensure!(status.success(), "the confluent-kafka member exited with {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        lock(&self.state).reads.take().context("the confluent-kafka member reported no reads")
    }
}

/// `kafka/group-mixed`: krab and confluent-kafka members in one group, classic (`range`, a
/// shared assignor) and then KIP-848.
pub(super) async fn mixed(ctx: &KafkaCtx<'_>) -> Result<String> {
    let classic = mixed_group(ctx, "classic").await.context("classic")?;
    let kip848 = mixed_group(ctx, "consumer").await.context("KIP-848")?;
    Ok(format!("classic range: {classic}; KIP-848: {kip848}"))
}

async fn mixed_group(ctx: &KafkaCtx<'_>, protocol: &str) -> Result<String> {
    const PARTITIONS: i32 = 6;
    let pid = std::process::id();
    let topic = format!("krab-it-group-mixed-{protocol}-{pid}");
    let group = topic.clone();
    let bootstrap = ctx.kafka.bootstrap();
    let ends = prepare(ctx, &topic, PARTITIONS, 5000).await?;
    let total: usize = ends.values().map(|&e| e as usize).sum();
    let krab_config = |name: &str| -> Result<_> {
        let mut c = group_config(&bootstrap, &group, name, "range", 10_000)?;
        c.set("group.protocol", protocol)?;
        Ok(c)
    };
    let krab = vec![
        Member::start(krab_config("krab-it-mixed-0")?, &topic, 20, Duration::from_millis(50)).await?,
        Member::start(krab_config("krab-it-mixed-1")?, &topic, 20, Duration::from_millis(50)).await?,
    ];
    let py_strategy = if protocol == "consumer" { "consumer" } else { "range" };
    let mut py = vec![
        PyMember::start(ctx, &topic, &group, "rdkafka-mixed-0", py_strategy)?,
        PyMember::start(ctx, &topic, &group, "rdkafka-mixed-1", py_strategy)?,
    ];
    // Every partition owned by exactly one member, and every member owning some.
    let exclusive = |krab: &[Member], py: &[PyMember], members: usize| {
        let sets: Vec<BTreeSet<i32>> = krab.iter().map(Member::owned).chain(py.iter().map(PyMember::owned)).collect();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        sets.len() == members
            && sets.iter().all(|s| !s.is_empty())
            && union.len() == PARTITIONS as usize
            && sets.iter().map(BTreeSet::len).sum::<usize>() == PARTITIONS as usize
    };
    let settled = until("4 members (2 krab, 2 librdkafka) sharing the 6 partitions", Duration::from_secs(90), || {
        exclusive(&krab, &py, 4)
    })
    .await?;
    let shares: Vec<usize> = krab.iter().map(|m| m.owned().len()).chain(py.iter().map(|m| m.owned().len())).collect();
    // A librdkafka member leaves; the other three share its partitions.
    let leaver = py.remove(0);
    let mut py_reads = leaver.stop().await?;
    let resettled =
        until("3 members sharing the 6 partitions", Duration::from_secs(90), || exclusive(&krab, &py, 3)).await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let py_read = py[0].ask_status().await?;
        let krab_read = distinct(&krab.iter().collect::<Vec<_>>());
        if krab_read + py_read + py_reads.len() >= total {
            break;
        }
        ensure!(Instant::now() < deadline, "read {} of {total} in 180 s", krab_read + py_read + py_reads.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the stragglers finish, then everyone leaves.
    tokio::time::sleep(Duration::from_secs(2)).await;
    py_reads.extend(py.remove(0).stop().await?);
    let mut logs = Vec::new();
    for m in krab {
        logs.push(m.stop().await?);
    }
    let mut py_log = Log::default();
    for r in py_reads {
        *py_log.reads.entry(r).or_insert(0) += 1;
    }
    logs.push(Arc::new(Mutex::new(py_log)));
    let duplicates = check_all_read(&logs, &ends)?;
    Ok(format!(
        "{total} records over {PARTITIONS} partitions; 2 krab and 2 confluent-kafka members settled in {} with shares {shares:?}, \
         every partition owned by exactly one member; a librdkafka member left: the 3 others shared all 6 after {}; all read, \
         {duplicates} twice",
        ms(settled),
        ms(resettled)
    ))
}
