//! `kafka/admin`: krab's admin client against Apache Kafka, every answer checked against what
//! the cluster then shows.
//!
//! - Topics: create with configs (the controller's answer carries them) → describe shows them →
//!   alter incrementally (set, delete, append) → describe → add partitions → produce → delete
//!   records → list offsets → delete the topic. Refusals come back per resource, by name:
//!   TOPIC_ALREADY_EXISTS beside a topic created in the same call, an unknown config name,
//!   fewer partitions, deleting beyond the high watermark, an unknown topic (not retried).
//! - Broker configs: describe broker 1 (asked of broker 1), set a dynamic one, delete it.
//! - Groups: two reference consumers (confluent-kafka) in a group read part of a topic and
//!   commit: list, describe (members, their assignments), committed offsets and lag must match
//!   what they report; altering offsets of a live group is refused; once they leave, alter and
//!   delete offsets, then delete the group.
//! - The cluster: describe it; move a partition's preferred leader by a reassignment, then elect
//!   it; a second election is not needed.

use super::admin_support::{admin, all, eventually, refused};
use super::consume_support::produce_beforehand;
use super::kafka_support::KafkaCtx;
use super::support::{ms, producer_config};
use anyhow::{Context, Result, bail, ensure};
use krab_admin::{
    Admin, AlterConfigOp, ConfigResource, ConfigSource, ElectionType, ErrorCode, NewPartitions, NewTopic, OffsetSpec,
    TopicPartition,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TOPIC: &str = "admin-topic";
const SETTLE: Duration = Duration::from_secs(20);

fn tp(topic: &str, p: i32) -> TopicPartition {
    TopicPartition::new(topic, p)
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    let bootstrap = ctx.kafka.bootstrap();
    let admin = admin(&bootstrap).await.context("admin connect")?;
    let mut notes = Vec::new();
    topics(&admin, &bootstrap, &mut notes).await.context("topics")?;
    broker_configs(&admin, &mut notes).await.context("broker configs")?;
    groups(ctx, &admin, &bootstrap, &mut notes).await.context("groups")?;
    cluster(&admin, &mut notes).await.context("cluster")?;
    Ok(notes.join("; "))
}

async fn topic_configs(admin: &Admin, topic: &str) -> Result<BTreeMap<String, krab_admin::ConfigEntry>> {
    let r = ConfigResource::Topic(topic.into());
    let mut d = all("describe_configs", admin.describe_configs(std::slice::from_ref(&r)).await?)?;
    Ok(d.remove(&r).unwrap_or_default().into_iter().map(|c| (c.name.clone(), c)).collect())
}

async fn topics(admin: &Admin, bootstrap: &str, notes: &mut Vec<String>) -> Result<()> {
    let started = Instant::now();
    let new = NewTopic::new(TOPIC, 3, 3)
        .config("retention.ms", "3600000")
        .config("max.message.bytes", "200000")
        .config("cleanup.policy", "delete");
    let created = all("create_topics", admin.create_topics(&[new]).await?)?;
    let c = &created[TOPIC];
    ensure!(c.partitions == 3 && c.replication_factor == 3, "created {c:?}");
    ensure!(
        c.configs.iter().any(|e| e.name == "retention.ms" && e.value.as_deref() == Some("3600000")),
        "the CreateTopics answer lacks retention.ms=3600000"
    );
    // Per resource: the existing topic is refused by name, the other one created.
    let again = admin.create_topics(&[NewTopic::new(TOPIC, 3, 3), NewTopic::new("admin-topic-2", 1, 1)]).await?;
    ensure!(matches!(again.get("admin-topic-2"), Some(Ok(_))), "admin-topic-2: {:?}", again.get("admin-topic-2"));
    let e = refused("create_topics again", again, &TOPIC.to_string())?;
    ensure!(e.error_code() == Some(ErrorCode::TopicAlreadyExists), "{e}");
    ensure!(e.to_string().contains("topic admin-topic"), "the error does not name the topic: {e}");

    let (d, _) = eventually("the new topic described", SETTLE, || async {
        let mut d = admin.describe_topics(&[TOPIC]).await?;
        match d.remove(TOPIC) {
            Some(Ok(d))
                if d.partitions.len() == 3 && d.partitions.iter().all(|p| p.leader.is_some() && p.isr.len() == 3) =>
            {
                Ok(Some(d))
            }
            Some(Err(e)) if e.error_code() != Some(ErrorCode::UnknownTopicOrPartition) => Err(e.into()),
            _ => Ok(None),
        }
    })
    .await?;
    ensure!(d.config("retention.ms") == Some("3600000"), "retention.ms = {:?}", d.config("retention.ms"));
    ensure!(d.config("max.message.bytes") == Some("200000"), "max.message.bytes = {:?}", d.config("max.message.bytes"));
    let source = d.configs.iter().find(|c| c.name == "retention.ms").map(|c| c.source);
    ensure!(source == Some(ConfigSource::DynamicTopic), "retention.ms comes from {source:?}");

    let resource = ConfigResource::Topic(TOPIC.into());
    let ops = vec![
        AlterConfigOp::Set("retention.ms".into(), "7200000".into()),
        AlterConfigOp::Delete("max.message.bytes".into()),
        AlterConfigOp::Append("cleanup.policy".into(), "compact".into()),
    ];
    all("incremental_alter_configs", admin.incremental_alter_configs(&[(resource.clone(), ops)]).await?)?;
    let (_, altered_in) = eventually("the altered configs", SETTLE, || async {
        let c = topic_configs(admin, TOPIC).await?;
        let value = |n: &str| c.get(n).and_then(|e| e.value.clone()).unwrap_or_default();
        let max_source = c.get("max.message.bytes").map(|e| e.source);
        Ok((value("retention.ms") == "7200000"
            && value("cleanup.policy") == "delete,compact"
            && max_source.is_some_and(|s| s != ConfigSource::DynamicTopic))
        .then_some(()))
    })
    .await?;
    // Back to delete only: a compacted topic refuses the unkeyed records written below.
    let subtract = vec![AlterConfigOp::Subtract("cleanup.policy".into(), "compact".into())];
    all("subtract", admin.incremental_alter_configs(&[(resource.clone(), subtract)]).await?)?;
    eventually("cleanup.policy=delete", SETTLE, || async {
        let c = topic_configs(admin, TOPIC).await?;
        Ok((c.get("cleanup.policy").and_then(|e| e.value.as_deref()) == Some("delete")).then_some(()))
    })
    .await?;
    let bad = admin
        .incremental_alter_configs(&[(resource.clone(), vec![AlterConfigOp::Set("no.such.config".into(), "1".into())])])
        .await?;
    let bad = refused("an unknown config", bad, &resource)?;
    ensure!(bad.error_code().is_some_and(|c| !c.is_retriable()), "an unknown config name: {bad}");

    all("create_partitions", admin.create_partitions(&[(TOPIC, NewPartitions::increase_to(5))]).await?)?;
    eventually("5 partitions", SETTLE, || async {
        let d = all("describe_topics", admin.describe_topics(&[TOPIC]).await?)?;
        Ok((d[TOPIC].partitions.len() == 5 && d[TOPIC].partitions.iter().all(|p| p.leader.is_some())).then_some(()))
    })
    .await?;
    let fewer = refused(
        "fewer partitions",
        admin.create_partitions(&[(TOPIC, NewPartitions::increase_to(4))]).await?,
        &TOPIC.to_string(),
    )?;
    ensure!(fewer.error_code() == Some(ErrorCode::InvalidPartitions), "fewer partitions: {fewer}");

    produce_beforehand(producer_config(bootstrap)?, TOPIC, 5, 100).await.context("producing")?;
    let deleted = all("delete_records", admin.delete_records(&[(tp(TOPIC, 0), 40), (tp(TOPIC, 1), -1)]).await?)?;
    ensure!(deleted[&tp(TOPIC, 0)] == 40 && deleted[&tp(TOPIC, 1)] == 100, "low watermarks {deleted:?}");
    let beyond = refused("beyond the end", admin.delete_records(&[(tp(TOPIC, 2), 1000)]).await?, &tp(TOPIC, 2))?;
    ensure!(beyond.error_code() == Some(ErrorCode::OffsetOutOfRange), "deleting beyond the end: {beyond}");
    let asked = [
        (tp(TOPIC, 0), OffsetSpec::Earliest),
        (tp(TOPIC, 1), OffsetSpec::Earliest),
        (tp(TOPIC, 2), OffsetSpec::Earliest),
        (tp(TOPIC, 4), OffsetSpec::Timestamp(0)),
    ];
    let earliest = all("list_offsets", admin.list_offsets(&asked).await?)?;
    let latest = all(
        "list_offsets",
        admin.list_offsets(&(0..5).map(|p| (tp(TOPIC, p), OffsetSpec::Latest)).collect::<Vec<_>>()).await?,
    )?;
    let first = |p: i32| earliest[&tp(TOPIC, p)].offset;
    ensure!(first(0) == 40 && first(1) == 100 && first(2) == 0 && first(4) == 0, "earliest offsets {earliest:?}");
    ensure!(latest.values().all(|o| o.offset == 100), "latest offsets {latest:?}");

    all("delete_topics", admin.delete_topics(&[TOPIC, "admin-topic-2"]).await?)?;
    eventually("the topics gone", SETTLE, || async {
        let names: BTreeSet<String> = admin.list_topics().await?.into_iter().map(|t| t.name).collect();
        Ok((!names.contains(TOPIC) && !names.contains("admin-topic-2")).then_some(()))
    })
    .await?;
    let asked_at = Instant::now();
    let gone = refused("describe a deleted topic", admin.describe_topics(&[TOPIC]).await?, &TOPIC.to_string())?;
    let took = asked_at.elapsed();
    ensure!(gone.error_code() == Some(ErrorCode::UnknownTopicOrPartition), "a deleted topic: {gone}");
    ensure!(took < Duration::from_secs(5), "an unknown topic took {} (retried?)", ms(took));
    notes.push(format!(
        "topic created with 3 configs, altered (set/delete/append, seen after {}; subtract), 3→5 partitions, records deleted below 40, deleted; \
         refusals by name: TOPIC_ALREADY_EXISTS, {}, INVALID_PARTITIONS, OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION in {} ({})",
        ms(altered_in),
        bad.error_code().map(|c| c.name()).unwrap_or("?"),
        ms(took),
        ms(started.elapsed())
    ));
    Ok(())
}

async fn broker_configs(admin: &Admin, notes: &mut Vec<String>) -> Result<()> {
    const KEY: &str = "max.connections";
    let broker = ConfigResource::Broker(1);
    let describe = || async {
        let mut d = all("describe broker configs", admin.describe_configs(std::slice::from_ref(&broker)).await?)?;
        Ok::<_, anyhow::Error>(d.remove(&broker).unwrap_or_default())
    };
    let before = describe().await?;
    let retention = before.iter().find(|c| c.name == "log.retention.ms").context("no log.retention.ms")?;
    ensure!(
        retention.value.as_deref() == Some("-1") && retention.source == ConfigSource::StaticBroker,
        "broker 1's log.retention.ms: {retention:?}"
    );
    let set = vec![AlterConfigOp::Set(KEY.into(), "100000".into())];
    all("set a broker config", admin.incremental_alter_configs(&[(broker.clone(), set)]).await?)?;
    let (_, seen) = eventually("the dynamic broker config", SETTLE, || async {
        let c = describe().await?;
        Ok(c.iter()
            .any(|c| c.name == KEY && c.value.as_deref() == Some("100000") && c.source == ConfigSource::DynamicBroker)
            .then_some(()))
    })
    .await?;
    all(
        "delete a broker config",
        admin.incremental_alter_configs(&[(broker.clone(), vec![AlterConfigOp::Delete(KEY.into())])]).await?,
    )?;
    eventually("the broker config back to its default", SETTLE, || async {
        let c = describe().await?;
        Ok(c.iter().any(|c| c.name == KEY && c.source != ConfigSource::DynamicBroker).then_some(()))
    })
    .await?;
    notes.push(format!(
        "broker 1: {} configs, {KEY} set dynamically (seen after {}) and deleted",
        before.len(),
        ms(seen)
    ));
    Ok(())
}

/// The reference group's report once it has read and committed.
struct GroupReport {
    committed: BTreeMap<i32, i64>,
    members: BTreeMap<String, Vec<i32>>,
}

async fn read_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>, what: &str) -> Result<String> {
    match tokio::time::timeout(Duration::from_secs(150), lines.next_line()).await {
        Ok(Ok(Some(line))) => Ok(line),
        Ok(Ok(None)) => bail!("the reference group ended before {what}"),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("no {what} from the reference group within 150 s"),
    }
}

async fn groups(ctx: &KafkaCtx<'_>, admin: &Admin, bootstrap: &str, notes: &mut Vec<String>) -> Result<()> {
    const GROUP_TOPIC: &str = "admin-group-topic";
    const GROUP: &str = "admin-group";
    const PER_PARTITION: u64 = 300;
    const READ: usize = 600;
    all("create the group's topic", admin.create_topics(&[NewTopic::new(GROUP_TOPIC, 3, 3)]).await?)?;
    eventually("the group's topic", SETTLE, || async {
        let d = admin.describe_topics(&[GROUP_TOPIC]).await?;
        Ok(matches!(d.get(GROUP_TOPIC), Some(Ok(t)) if t.partitions.iter().all(|p| p.leader.is_some())).then_some(()))
    })
    .await?;
    let script = crate::project_root().join("xtask").join("scripts").join("group_members.py");
    let mut child = tokio::process::Command::new(ctx.venv.python())
        .arg(&script)
        .args([bootstrap, GROUP_TOPIC, GROUP, "2", &READ.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", script.display()))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let joined = read_line(&mut lines, "JOINED").await?;
    ensure!(joined == "JOINED", "the reference group said {joined}");
    produce_beforehand(producer_config(bootstrap)?, GROUP_TOPIC, 3, PER_PARTITION).await.context("producing")?;
    let report: serde_json::Value = serde_json::from_str(&read_line(&mut lines, "its commits").await?)?;
    let report = GroupReport {
        committed: report["committed"]
            .as_object()
            .context("committed")?
            .iter()
            .map(|(p, o)| Ok((p.parse()?, o.as_i64().context("offset")?)))
            .collect::<Result<_>>()?,
        members: report["members"]
            .as_object()
            .context("members")?
            .iter()
            .map(|(id, ps)| {
                let ps =
                    ps.as_array().context("partitions")?.iter().filter_map(|p| p.as_i64()).map(|p| p as i32).collect();
                Ok((id.clone(), ps))
            })
            .collect::<Result<_>>()?,
    };
    ensure!(report.committed.values().sum::<i64>() == READ as i64, "committed {:?}", report.committed);

    let listed = admin.list_groups().await?;
    let g = listed.iter().find(|g| g.group_id == GROUP).context("list_groups lacks the group")?;
    ensure!(g.protocol_type == "consumer", "listed {g:?}");
    let described = all("describe_groups", admin.describe_groups(&[GROUP]).await?)?;
    let d = &described[GROUP];
    ensure!(d.state == "Stable" && d.protocol_type == "consumer" && d.members.len() == 2, "described {d:?}");
    let assignments: BTreeMap<String, Vec<i32>> = d
        .members
        .iter()
        .map(|m| {
            let mut ps: Vec<i32> =
                m.assignment.iter().filter(|tp| tp.topic == GROUP_TOPIC).map(|tp| tp.partition).collect();
            ps.sort();
            (m.client_id.clone(), ps)
        })
        .collect();
    ensure!(
        assignments == report.members,
        "described assignments {assignments:?}, the members report {:?}",
        report.members
    );

    let offsets = admin.list_group_offsets(GROUP).await?;
    let committed: BTreeMap<i32, i64> =
        offsets.iter().filter(|(tp, _)| tp.topic == GROUP_TOPIC).map(|(tp, c)| (tp.partition, c.offset)).collect();
    ensure!(
        committed == report.committed,
        "list_group_offsets {committed:?}, the members committed {:?}",
        report.committed
    );
    let lag = all("group_lag", admin.group_lag(GROUP).await?)?;
    for (tp, l) in &lag {
        ensure!(l.end == PER_PARTITION as i64 && l.lag == l.end - report.committed[&tp.partition], "{tp}: lag {l:?}");
    }
    let total_lag: i64 = lag.values().map(|l| l.lag).sum::<i64>()
        + (0..3).filter(|p| !report.committed.contains_key(p)).count() as i64 * PER_PARTITION as i64;
    ensure!(total_lag == 3 * PER_PARTITION as i64 - READ as i64, "total lag {total_lag}");

    // A live group's offsets are the members' to commit.
    let live = refused(
        "altering a live group's offsets",
        admin.alter_group_offsets(GROUP, &[(tp(GROUP_TOPIC, 0), 0)]).await?,
        &tp(GROUP_TOPIC, 0),
    )?;
    ensure!(live.error_code().is_some(), "altering a live group's offsets: {live}");

    stdin.shutdown().await?;
    drop(stdin);
    let closed = read_line(&mut lines, "CLOSED").await?;
    ensure!(closed == "CLOSED", "the reference group said {closed}");
    let status = child.wait().await?;
    ensure!(status.success(), "the reference group exited with {status}");
    eventually("the group empty", SETTLE, || async {
        let d = all("describe_groups", admin.describe_groups(&[GROUP]).await?)?;
        Ok((d[GROUP].state == "Empty" && d[GROUP].members.is_empty()).then_some(()))
    })
    .await?;
    all("alter_group_offsets", admin.alter_group_offsets(GROUP, &[(tp(GROUP_TOPIC, 0), 10)]).await?)?;
    let offsets = admin.list_group_offsets(GROUP).await?;
    ensure!(offsets.get(&tp(GROUP_TOPIC, 0)).map(|c| c.offset) == Some(10), "after altering: {offsets:?}");
    let lag0 = all("group_lag", admin.group_lag(GROUP).await?)?;
    ensure!(
        lag0.get(&tp(GROUP_TOPIC, 0)).map(|l| l.lag) == Some(PER_PARTITION as i64 - 10),
        "lag after altering {lag0:?}"
    );
    all("delete_group_offsets", admin.delete_group_offsets(GROUP, &[tp(GROUP_TOPIC, 0)]).await?)?;
    let offsets = admin.list_group_offsets(GROUP).await?;
    ensure!(!offsets.contains_key(&tp(GROUP_TOPIC, 0)), "after deleting partition 0's offset: {offsets:?}");
    all("delete_groups", admin.delete_groups(&[GROUP]).await?)?;
    let listed = admin.list_groups().await?;
    ensure!(listed.iter().all(|g| g.group_id != GROUP), "the deleted group is still listed");
    all("delete the group's topic", admin.delete_topics(&[GROUP_TOPIC]).await?)?;
    notes.push(format!(
        "group of 2 reference consumers: listed, described (Stable, assignments {:?}), committed {:?} = list_group_offsets, lag {total_lag} of {}; \
         live group's offsets refused ({}); after leaving: altered, deleted, group deleted",
        report.members,
        report.committed,
        3 * PER_PARTITION,
        live.error_code().map(|c| c.name()).unwrap_or("?")
    ));
    Ok(())
}

async fn cluster(admin: &Admin, notes: &mut Vec<String>) -> Result<()> {
    const ELECT: &str = "admin-elect";
    let c = admin.describe_cluster().await?;
    ensure!(c.brokers.len() == 3 && c.controller.is_some() && !c.cluster_id.is_empty(), "described {c:?}");
    ensure!(Some(&c.cluster_id) == admin.cluster().snapshot().cluster_id.as_ref(), "cluster id {}", c.cluster_id);

    all(
        "create with a replica assignment",
        admin.create_topics(&[NewTopic::with_assignment(ELECT, [vec![1, 2, 3]])]).await?,
    )?;
    let leader = |want: i32, replicas: Vec<i32>| async move {
        let d = admin.describe_topics(&[ELECT]).await?;
        Ok(match d.get(ELECT) {
            Some(Ok(t)) => t
                .partitions
                .first()
                .is_some_and(|p| p.leader == Some(want) && p.replicas == replicas && p.isr.len() == 3)
                .then_some(()),
            _ => None,
        })
    };
    eventually("partition 0 led by broker 1 on [1, 2, 3]", SETTLE, || leader(1, vec![1, 2, 3])).await?;
    let p0 = tp(ELECT, 0);
    all(
        "alter_partition_reassignments",
        admin.alter_partition_reassignments(&[(p0.clone(), Some(vec![2, 1, 3]))]).await?,
    )?;
    eventually("the reassignment done", SETTLE, || async {
        Ok(admin.list_partition_reassignments(None).await?.is_empty().then_some(()))
    })
    .await?;
    // A reassignment that keeps the leader a replica leaves it leading.
    eventually("replicas [2, 1, 3], leader still 1", SETTLE, || leader(1, vec![2, 1, 3])).await?;
    let started = Instant::now();
    all("elect_leaders", admin.elect_leaders(ElectionType::Preferred, std::slice::from_ref(&p0)).await?)?;
    eventually("broker 2 leading", SETTLE, || leader(2, vec![2, 1, 3])).await?;
    let elected_in = started.elapsed();
    let asked_at = Instant::now();
    let again = refused(
        "a second election",
        admin.elect_leaders(ElectionType::Preferred, std::slice::from_ref(&p0)).await?,
        &p0,
    )?;
    let again_in = asked_at.elapsed();
    ensure!(again.error_code() == Some(ErrorCode::ElectionNotNeeded), "a second election: {again}");
    ensure!(again_in < Duration::from_secs(5), "ELECTION_NOT_NEEDED took {} (retried?)", ms(again_in));
    all("delete the election topic", admin.delete_topics(&[ELECT]).await?)?;
    notes.push(format!(
        "cluster {} with 3 brokers, controller {:?}; reassigned [1,2,3]→[2,1,3] and elected broker 2 (leading {} after the call); \
         a second election: ELECTION_NOT_NEEDED in {}",
        c.cluster_id,
        c.controller,
        ms(elected_in),
        ms(again_in)
    ));
    Ok(())
}
