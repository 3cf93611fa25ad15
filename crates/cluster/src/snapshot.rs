//! The cluster's metadata as an immutable snapshot, published atomically.
//!
//! Producers and consumers read leaders from an `Arc<ClusterSnapshot>` without taking a lock.
//! A new snapshot is built by merging a Metadata response into the previous one; a merge never
//! moves a partition's leader epoch backwards (a lagging broker's answer cannot undo a newer one).

use crate::transport::BrokerAddr;
use krab_protocol::Uuid;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::MetadataResponse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// A broker as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker id.
    pub id: i32,
    /// Where to connect.
    pub addr: BrokerAddr,
    /// The rack, if configured.
    pub rack: Option<String>,
}

/// One partition's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: i32,
    /// The leader's broker id; `None` while there is no leader.
    pub leader: Option<i32>,
    /// The leader epoch (-1 when the broker does not send one).
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// The partition-level error from the last metadata (e.g. LEADER_NOT_AVAILABLE).
    pub error: ErrorCode,
}

/// One topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// The topic id (zero when the broker does not send one).
    pub id: Uuid,
    /// The topic-level error from the last metadata (e.g. UNKNOWN_TOPIC_OR_PARTITION).
    pub error: ErrorCode,
    /// Whether the topic is internal.
    pub internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// The partition with this index.
    pub fn partition(&self, partition: i32) -> Option<&PartitionInfo> {
        match self.partitions.get(usize::try_from(partition).ok()?) {
            Some(p) if p.partition == partition => Some(p),
            _ => self.partitions.iter().find(|p| p.partition == partition),
        }
    }
}

/// An immutable view of the cluster's metadata.
#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    /// Increases by one with every published snapshot.
    pub generation: u64,
    /// The cluster id, if the broker sent one.
    pub cluster_id: Option<String>,
    /// The controller's broker id, if known.
    pub controller: Option<i32>,
    /// Brokers by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name.
    pub topics: HashMap<String, Arc<TopicInfo>>,
    /// When the metadata behind this snapshot was received.
    pub updated_at: Instant,
}

impl Default for ClusterSnapshot {
    fn default() -> Self {
        Self {
            generation: 0,
            cluster_id: None,
            controller: None,
            brokers: BTreeMap::new(),
            topics: HashMap::new(),
            updated_at: Instant::now(),
        }
    }
}

impl ClusterSnapshot {
    /// A topic's metadata.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name).map(|t| &**t)
    }

    /// A partition's metadata.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionInfo> {
        self.topic(topic)?.partition(partition)
    }

    /// The broker leading a partition, when there is one and metadata knows the broker.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<&BrokerInfo> {
        self.brokers.get(&self.partition(topic, partition)?.leader?)
    }

    /// Builds the next snapshot: `self` with `response` merged in.
    ///
    /// - Brokers, cluster id and controller come from the response.
    /// - Topics in the response replace their entries partition by partition, except that a
    ///   partition whose known leader epoch is newer than the response's keeps its entry.
    /// - A topic whose id in the response is non-zero and differs from the known one was
    ///   re-created: its entry is replaced whole, whatever the epochs.
    /// - With `all_topics` (the request asked for every topic), topics absent from the response
    ///   were deleted and are dropped; otherwise they are kept as they were.
    pub fn merge(&self, response: &MetadataResponse, all_topics: bool) -> ClusterSnapshot {
        let brokers: BTreeMap<i32, BrokerInfo> = response
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    id: b.node_id,
                    addr: BrokerAddr::new(b.host.clone(), b.port as u16),
                    rack: b.rack.clone(),
                };
                (b.node_id, info)
            })
            .collect();
        let mut topics = if all_topics { HashMap::new() } else { self.topics.clone() };
        for t in &response.topics {
            let Some(name) = t.name.clone() else { continue };
            let error = ErrorCode::from_code(t.error_code);
            let old = self.topics.get(&name).filter(|o| {
                // A different topic id means the topic was deleted and re-created: its leader
                // epochs started again from 0, so nothing known about the old one applies.
                let recreated = t.topic_id != Uuid::ZERO && t.topic_id != o.id;
                if recreated {
                    tracing::debug!(topic = %name, old = %o.id, new = %t.topic_id, "topic re-created");
                }
                !recreated
            });
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| {
                    let fresh = PartitionInfo {
                        partition: p.partition_index,
                        leader: (p.leader_id >= 0).then_some(p.leader_id),
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.clone(),
                        isr: p.isr_nodes.clone(),
                        error: ErrorCode::from_code(p.error_code),
                    };
                    match old.and_then(|o| o.partition(p.partition_index)) {
                        Some(known) if known.leader_epoch >= 0 && fresh.leader_epoch < known.leader_epoch => {
                            tracing::debug!(
                                topic = %name,
                                partition = p.partition_index,
                                known = known.leader_epoch,
                                received = fresh.leader_epoch,
                                "ignoring stale partition metadata"
                            );
                            known.clone()
                        }
                        _ => fresh,
                    }
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            if partitions.is_empty() && error.is_retriable() {
                // A transient topic error (leader election, creation in progress): keep what we knew.
                if let Some(old) = old {
                    partitions = old.partitions.clone();
                }
            }
            // A broker that sends no topic id (zero) does not make us forget the known one.
            let id = match (t.topic_id, old) {
                (Uuid::ZERO, Some(o)) => o.id,
                (id, _) => id,
            };
            let info = TopicInfo { name: name.clone(), id, error, internal: t.is_internal, partitions };
            topics.insert(name, Arc::new(info));
        }
        ClusterSnapshot {
            generation: self.generation + 1,
            cluster_id: response.cluster_id.clone().or_else(|| self.cluster_id.clone()),
            controller: (response.controller_id >= 0).then_some(response.controller_id),
            brokers,
            topics,
            updated_at: Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use krab_protocol::messages::metadata::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};

    fn response(leaders: &[(i32, i32, i32)]) -> MetadataResponse {
        MetadataResponse {
            brokers: (1..=3)
                .map(|id| MetadataResponseBroker {
                    node_id: id,
                    host: "h".into(),
                    port: 9000 + id,
                    ..Default::default()
                })
                .collect(),
            controller_id: 1,
            topics: vec![MetadataResponseTopic {
                name: Some("t".into()),
                partitions: leaders
                    .iter()
                    .map(|&(p, leader, epoch)| MetadataResponsePartition {
                        partition_index: p,
                        leader_id: leader,
                        leader_epoch: epoch,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn merge_never_moves_a_leader_epoch_backwards() {
        let s1 = ClusterSnapshot::default().merge(&response(&[(0, 1, 5), (1, 2, 5)]), false);
        assert_eq!(s1.generation, 1);
        // A lagging broker reports partition 0 at epoch 4 (old leader 3) and partition 1 at epoch 6.
        let s2 = s1.merge(&response(&[(0, 3, 4), (1, 3, 6)]), false);
        assert_eq!(s2.generation, 2);
        assert_eq!(s2.partition("t", 0).unwrap().leader, Some(1), "stale answer ignored");
        assert_eq!(s2.partition("t", 0).unwrap().leader_epoch, 5);
        assert_eq!(s2.partition("t", 1).unwrap().leader, Some(3), "newer answer applied");
        assert_eq!(s2.leader("t", 1).unwrap().addr, BrokerAddr::new("h", 9003));
    }

    #[test]
    fn partial_refresh_keeps_other_topics_and_full_refresh_drops_deleted_ones() {
        let mut other = response(&[(0, 1, 1)]);
        other.topics[0].name = Some("u".into());
        let s = ClusterSnapshot::default().merge(&other, false).merge(&response(&[(0, 2, 0)]), false);
        assert!(s.topic("u").is_some() && s.topic("t").is_some());
        let full = s.merge(&response(&[(0, 2, 0)]), true);
        assert!(full.topic("u").is_none());
    }

    #[test]
    fn a_recreated_topic_replaces_the_old_one_whatever_its_epochs() {
        let mut old = response(&[(0, 1, 7), (1, 2, 7)]);
        old.topics[0].topic_id = Uuid([1; 16]);
        let s1 = ClusterSnapshot::default().merge(&old, false);
        // Deleted and re-created: new id, epochs from 0, other leaders.
        let mut new = response(&[(0, 3, 0), (1, 3, 0)]);
        new.topics[0].topic_id = Uuid([2; 16]);
        let s2 = s1.merge(&new, false);
        let t = s2.topic("t").unwrap();
        assert_eq!(t.id, Uuid([2; 16]));
        for p in 0..2 {
            assert_eq!(s2.partition("t", p).unwrap().leader, Some(3), "partition {p}");
            assert_eq!(s2.partition("t", p).unwrap().leader_epoch, 0);
        }
        // The same id again with an older epoch is still a stale answer; a zero id (a broker
        // that does not send ids) does not count as a re-creation.
        let mut lagging = response(&[(0, 1, -1), (1, 2, 0)]);
        lagging.topics[0].topic_id = Uuid::ZERO;
        let mut newer = response(&[(0, 2, 1), (1, 2, 1)]);
        newer.topics[0].topic_id = Uuid([2; 16]);
        let s3 = s2.merge(&newer, false);
        let mut stale = response(&[(0, 1, 0), (1, 1, 0)]);
        stale.topics[0].topic_id = Uuid([2; 16]);
        let s4 = s3.merge(&stale, false);
        assert_eq!(s4.partition("t", 0).unwrap().leader, Some(2), "stale answer for the same id ignored");
        let s5 = s4.merge(&lagging, false);
        assert_eq!(s5.partition("t", 1).unwrap().leader, Some(2), "zero id: the epoch guard applies");
        assert_eq!(s5.partition("t", 1).unwrap().leader_epoch, 1);
    }

    #[test]
    fn no_leader_is_none() {
        let s = ClusterSnapshot::default().merge(&response(&[(0, -1, 3)]), false);
        assert_eq!(s.partition("t", 0).unwrap().leader, None);
        assert!(s.leader("t", 0).is_none());
    }
}
