//! The cluster and its controller: describe the cluster, elect leaders, and move replicas
//! (partition reassignments).

use crate::client::{Admin, retried};
use crate::error::{AdminError, check};
use crate::resource::{Results, TopicPartition};
use krab_protocol::ApiKey;
use krab_protocol::messages::alter_partition_reassignments::{ReassignablePartition, ReassignableTopic};
use krab_protocol::messages::elect_leaders::TopicPartitions;
use krab_protocol::messages::list_partition_reassignments::ListPartitionReassignmentsTopics;
use krab_protocol::messages::{
    AlterPartitionReassignmentsRequest, DescribeClusterRequest, ElectLeadersRequest, ListPartitionReassignmentsRequest,
};
use std::collections::BTreeMap;

/// The cluster as [`Admin::describe_cluster`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: String,
    /// The controller's broker id as brokers report it (KRaft: a broker that forwards).
    pub controller: Option<i32>,
    /// The brokers, by id.
    pub brokers: Vec<BrokerDescription>,
}

/// A broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    /// Its id.
    pub id: i32,
    /// Its advertised host.
    pub host: String,
    /// Its advertised port.
    pub port: i32,
    /// Its rack, if configured.
    pub rack: Option<String>,
}

/// Which leader an election picks ([`Admin::elect_leaders`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// The preferred replica (the first of the replica list), when in sync.
    Preferred,
    /// Any live replica when no in-sync one is left (may lose records).
    Unclean,
}

/// A reassignment in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    /// The replica set, current and target.
    pub replicas: Vec<i32>,
    /// Replicas being added.
    pub adding: Vec<i32>,
    /// Replicas being removed.
    pub removing: Vec<i32>,
}

fn grouped(partitions: &[TopicPartition]) -> BTreeMap<String, Vec<i32>> {
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics.entry(tp.topic.clone()).or_default().push(tp.partition);
    }
    topics
}

impl Admin {
    /// The cluster id, controller and brokers (DescribeCluster, Kafka 2.8+; Metadata before).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, AdminError> {
        self.whole(ApiKey::DescribeCluster, |_, _| async move {
            let broker = self.any().await?;
            if broker.version_of::<DescribeClusterRequest>().is_err() {
                let s = self.cluster.fetch_metadata(Some(&[])).await?;
                return Ok(ClusterDescription {
                    cluster_id: s.cluster_id.clone().unwrap_or_default(),
                    controller: s.controller,
                    brokers: s
                        .brokers
                        .values()
                        .map(|b| BrokerDescription {
                            id: b.id,
                            host: b.addr.host.to_string(),
                            port: i32::from(b.addr.port),
                            rack: b.rack.clone(),
                        })
                        .collect(),
                });
            }
            let r = broker.call(|_| DescribeClusterRequest { endpoint_type: 1, ..Default::default() }).await?;
            check(ApiKey::DescribeCluster, || "the cluster".to_string(), r.error_code, r.error_message.as_ref())?;
            let mut brokers: Vec<BrokerDescription> = r
                .brokers
                .into_iter()
                .map(|b| BrokerDescription { id: b.broker_id, host: b.host, port: b.port, rack: b.rack })
                .collect();
            brokers.sort_by_key(|b| b.id);
            Ok(ClusterDescription {
                cluster_id: r.cluster_id,
                controller: (r.controller_id >= 0).then_some(r.controller_id),
                brokers,
            })
        })
        .await
    }

    /// Elects leaders of these partitions. A partition whose leader is already the one the
    /// election would pick answers ELECTION_NOT_NEEDED.
    pub async fn elect_leaders(
        &self,
        election: ElectionType,
        partitions: &[TopicPartition],
    ) -> Result<Results<TopicPartition, ()>, AdminError> {
        let results = self
            .each(
                ApiKey::ElectLeaders,
                partitions.to_vec(),
                retried,
                |asked: Vec<TopicPartition>, attempt, timeout_ms| async move {
                    let broker = self.controller(attempt > 0).await?;
                    let response = broker
                        .call(|_| ElectLeadersRequest {
                            election_type: match election {
                                ElectionType::Preferred => 0,
                                ElectionType::Unclean => 1,
                            },
                            topic_partitions: Some(
                                grouped(&asked)
                                    .into_iter()
                                    .map(|(topic, partitions)| TopicPartitions {
                                        topic,
                                        partitions,
                                        ..Default::default()
                                    })
                                    .collect(),
                            ),
                            timeout_ms,
                            ..Default::default()
                        })
                        .await?;
                    check(ApiKey::ElectLeaders, || "the election".to_string(), response.error_code, None)?;
                    let mut out = Vec::new();
                    for t in response.replica_election_results {
                        for p in t.partition_result {
                            let tp = TopicPartition::new(t.topic.clone(), p.partition_id);
                            let r = check(
                                ApiKey::ElectLeaders,
                                || format!("partition {tp}"),
                                p.error_code,
                                p.error_message.as_ref(),
                            );
                            out.push((tp, r));
                        }
                    }
                    Ok(out)
                },
            )
            .await;
        Ok(results)
    }

    /// Starts moving partitions to new replica sets (`None`: cancel a reassignment in
    /// progress). The controller copies the data; [`Admin::list_partition_reassignments`]
    /// shows what is still moving.
    pub async fn alter_partition_reassignments(
        &self,
        targets: &[(TopicPartition, Option<Vec<i32>>)],
    ) -> Result<Results<TopicPartition, ()>, AdminError> {
        let wanted: BTreeMap<TopicPartition, Option<Vec<i32>>> = targets.iter().cloned().collect();
        let wanted = &wanted;
        let results = self
            .each(
                ApiKey::AlterPartitionReassignments,
                wanted.keys().cloned().collect(),
                retried,
                |asked: Vec<TopicPartition>, attempt, timeout_ms| async move {
                    let broker = self.controller(attempt > 0).await?;
                    let mut topics: BTreeMap<String, Vec<ReassignablePartition>> = BTreeMap::new();
                    for tp in &asked {
                        topics.entry(tp.topic.clone()).or_default().push(ReassignablePartition {
                            partition_index: tp.partition,
                            replicas: wanted[tp].clone(),
                            ..Default::default()
                        });
                    }
                    let response = broker
                        .call(|_| AlterPartitionReassignmentsRequest {
                            timeout_ms,
                            topics: topics
                                .into_iter()
                                .map(|(name, partitions)| ReassignableTopic { name, partitions, ..Default::default() })
                                .collect(),
                            ..Default::default()
                        })
                        .await?;
                    check(
                        ApiKey::AlterPartitionReassignments,
                        || "the reassignment".to_string(),
                        response.error_code,
                        response.error_message.as_ref(),
                    )?;
                    let mut out = Vec::new();
                    for t in response.responses {
                        for p in t.partitions {
                            let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                            let r = check(
                                ApiKey::AlterPartitionReassignments,
                                || format!("partition {tp}"),
                                p.error_code,
                                p.error_message.as_ref(),
                            );
                            out.push((tp, r));
                        }
                    }
                    Ok(out)
                },
            )
            .await;
        Ok(results)
    }

    /// Reassignments in progress (of these partitions, or all when `None`).
    pub async fn list_partition_reassignments(
        &self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<BTreeMap<TopicPartition, Reassignment>, AdminError> {
        self.whole(ApiKey::ListPartitionReassignments, |attempt, timeout_ms| async move {
            let broker = self.controller(attempt > 0).await?;
            let response = broker
                .call(|_| ListPartitionReassignmentsRequest {
                    timeout_ms,
                    topics: partitions.map(|ps| {
                        grouped(ps)
                            .into_iter()
                            .map(|(name, partition_indexes)| ListPartitionReassignmentsTopics {
                                name,
                                partition_indexes,
                                ..Default::default()
                            })
                            .collect()
                    }),
                    ..Default::default()
                })
                .await?;
            check(
                ApiKey::ListPartitionReassignments,
                || "the reassignments".to_string(),
                response.error_code,
                response.error_message.as_ref(),
            )?;
            let mut out = BTreeMap::new();
            for t in response.topics {
                for p in t.partitions {
                    out.insert(
                        TopicPartition::new(t.name.clone(), p.partition_index),
                        Reassignment { replicas: p.replicas, adding: p.adding_replicas, removing: p.removing_replicas },
                    );
                }
            }
            Ok(out)
        })
        .await
    }
}
