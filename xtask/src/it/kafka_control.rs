//! The cluster control API the Kafka scenarios share: topics, the leader/ISR map, leader moves,
//! `kill -9` and restart, `SIGSTOP`/`SIGCONT`, ISR healing.
//!
//! Every control request goes to the brokers' INTERNAL listeners, never through a proxy, so the
//! proxies count only the traffic of the client under test. Leader moves use Kafka's own tools:
//! a reassignment that puts the new leader first in the replica list, then a preferred-leader
//! election (a reassignment alone keeps a leader that is still a replica).

use crate::brokers::kafka::KafkaCluster;
use anyhow::{Context, Result, bail, ensure};
use krab_cluster::{Cluster, ClusterConfig, NewTopic, transport::parse_bootstrap};
use krab_protocol::messages::ListOffsetsRequest;
use krab_protocol::messages::list_offsets::{ListOffsetsPartition, ListOffsetsTopic};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One partition's state as the controller published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionState {
    pub(crate) leader: Option<i32>,
    pub(crate) leader_epoch: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
}

/// Runs `f` on a fresh current-thread runtime: control calls are synchronous, so scenarios call
/// them from `spawn_blocking` (see `support::ctl`) and the mock's and Kafka's controls look alike.
fn block<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}

impl KafkaCluster {
    async fn control_client(&self) -> Result<Cluster> {
        let mut cfg = ClusterConfig::new(parse_bootstrap(&self.direct_bootstrap())?);
        cfg.connection.client_id = Some("krab-it-control".into());
        cfg.connection.request_timeout = Duration::from_secs(15);
        Ok(Cluster::connect(cfg).await?)
    }

    /// Creates a topic (RF ≤ nodes; configs such as `min.insync.replicas`) and waits until
    /// every partition has a leader.
    pub(crate) fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        rf: i16,
        configs: &[(&str, &str)],
    ) -> Result<BTreeMap<i32, PartitionState>> {
        block(async {
            let c = self.control_client().await?;
            let mut topic = NewTopic::new(name, partitions).replication_factor(rf);
            topic.configs = configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            c.create_topics(&[topic], Duration::from_secs(30)).await.with_context(|| format!("creating {name}"))?;
            Ok(())
        })?;
        self.wait_partitions(name, Duration::from_secs(30), |m| {
            m.len() == partitions as usize && m.values().all(|p| p.leader.is_some() && p.isr.len() == rf as usize)
        })
    }

    /// The topic's partitions as a broker's metadata shows them now (empty: unknown topic).
    pub(crate) fn partitions(&self, topic: &str) -> Result<BTreeMap<i32, PartitionState>> {
        block(async {
            let c = self.control_client().await?;
            let snap = c.fetch_metadata(Some(&[topic.to_string()])).await?;
            let Some(t) = snap.topic(topic) else { return Ok(BTreeMap::new()) };
            Ok(t.partitions
                .iter()
                .map(|p| {
                    let state = PartitionState {
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                    };
                    (p.partition, state)
                })
                .collect())
        })
    }

    /// Each partition's end offset as its leader lists it (ListOffsets LATEST): the high
    /// watermark, or under `read_committed` (`isolation` 1) the last stable offset.
    pub(crate) fn end_offsets(&self, topic: &str, isolation: i8) -> Result<BTreeMap<i32, i64>> {
        block(async {
            let c = self.control_client().await?;
            let snap = c.fetch_metadata(Some(&[topic.to_string()])).await?;
            let t = snap.topic(topic).with_context(|| format!("{topic} not in metadata"))?;
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            for p in &t.partitions {
                let leader = p.leader.with_context(|| format!("{topic}-{} has no leader", p.partition))?;
                by_leader.entry(leader).or_default().push(p.partition);
            }
            let mut out = BTreeMap::new();
            for (leader, parts) in by_leader {
                let broker = c.broker(leader).await?;
                let version = broker.version_of::<ListOffsetsRequest>()?;
                let request = ListOffsetsRequest {
                    replica_id: -1,
                    isolation_level: isolation,
                    topics: vec![ListOffsetsTopic {
                        name: topic.to_string(),
                        partitions: parts
                            .iter()
                            .map(|&p| ListOffsetsPartition { partition_index: p, timestamp: -1, ..Default::default() })
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                let response = broker.send(&request, version).await?;
                for t in response.topics {
                    for p in t.partitions {
                        ensure!(p.error_code == 0, "ListOffsets {topic}-{}: error {}", p.partition_index, p.error_code);
                        out.insert(p.partition_index, p.offset);
                    }
                }
            }
            ensure!(
                out.len() == t.partitions.len(),
                "ListOffsets answered {} of {} partitions",
                out.len(),
                t.partitions.len()
            );
            Ok(out)
        })
    }

    /// Partition → leader (-1: none).
    pub(crate) fn leaders(&self, topic: &str) -> Result<BTreeMap<i32, i32>> {
        Ok(self.partitions(topic)?.into_iter().map(|(p, s)| (p, s.leader.unwrap_or(-1))).collect())
    }

    /// Polls the topic's metadata until `done` holds.
    pub(crate) fn wait_partitions(
        &self,
        topic: &str,
        timeout: Duration,
        done: impl Fn(&BTreeMap<i32, PartitionState>) -> bool,
    ) -> Result<BTreeMap<i32, PartitionState>> {
        let start = Instant::now();
        loop {
            // A metadata request can fail while a node is down or frozen: keep polling.
            let last = self.partitions(topic);
            if let Ok(m) = &last
                && done(m)
            {
                return last;
            }
            if start.elapsed() > timeout {
                bail!("{topic}: condition not reached within {timeout:?}; last metadata {last:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every partition of `topic` has all its replicas in sync again.
    pub(crate) fn wait_isr_full(&self, topic: &str, timeout: Duration) -> Result<()> {
        self.wait_partitions(topic, timeout, |m| {
            !m.is_empty() && m.values().all(|p| p.leader.is_some() && p.isr.len() == p.replicas.len())
        })
        .map(drop)
    }

    /// Moves each partition's leader to the given node: reorders the replicas so it comes first
    /// (adding it in place of the last replica if it is not one), then runs a preferred election.
    /// Returns once the metadata shows every new leader.
    pub(crate) fn move_leaders(&self, topic: &str, moves: &BTreeMap<i32, i32>) -> Result<()> {
        let now = self.partitions(topic)?;
        let mut assignment = Vec::new();
        let mut elect = Vec::new();
        for (&p, &to) in moves {
            let state = now.get(&p).with_context(|| format!("{topic}-{p} not in metadata"))?;
            let mut replicas: Vec<i32> = state.replicas.iter().copied().filter(|&r| r != to).collect();
            if replicas.len() == state.replicas.len() {
                replicas.pop();
            }
            replicas.insert(0, to);
            assignment.push(serde_json::json!({"topic": topic, "partition": p, "replicas": replicas}));
            elect.push(serde_json::json!({"topic": topic, "partition": p}));
        }
        let dir = self.log_dir(1)?.parent().context("run dir")?.to_path_buf();
        let reassign = dir.join("reassign.json");
        let election = dir.join("election.json");
        std::fs::write(&reassign, serde_json::json!({"version": 1, "partitions": assignment}).to_string())?;
        std::fs::write(&election, serde_json::json!({"partitions": elect}).to_string())?;
        let bs = self.direct_bootstrap();
        self.dist().run_tool(
            "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
            &["--bootstrap-server", &bs, "--reassignment-json-file", path(&reassign)?, "--execute"],
        )?;
        // Reordering the same replicas completes at once; new replicas must catch up first.
        let want: BTreeMap<i32, Vec<i32>> = assignment
            .iter()
            .map(|a| {
                let p = a["partition"].as_i64().unwrap_or(-1) as i32;
                let r = a["replicas"].as_array().map(|v| v.iter().filter_map(|x| x.as_i64()).map(|x| x as i32));
                (p, r.map(Iterator::collect).unwrap_or_default())
            })
            .collect();
        self.wait_partitions(topic, Duration::from_secs(60), |m| {
            want.iter().all(|(p, r)| m.get(p).is_some_and(|s| &s.replicas == r && s.isr.contains(&r[0])))
        })?;
        self.dist().run_tool(
            "org.apache.kafka.tools.LeaderElectionCommand",
            &["--bootstrap-server", &bs, "--election-type", "preferred", "--path-to-json-file", path(&election)?],
        )?;
        self.wait_partitions(topic, Duration::from_secs(30), |m| {
            moves.iter().all(|(p, to)| m.get(p).is_some_and(|s| s.leader == Some(*to)))
        })?;
        Ok(())
    }
}

fn path(p: &std::path::Path) -> Result<&str> {
    let s = p.to_str().context("non-UTF-8 path")?;
    ensure!(!s.is_empty(), "empty path");
    Ok(s)
}
