//! A group's committed offsets at its coordinator: list, alter (the group must be empty),
//! delete; and its lag against the partitions' end offsets.

use crate::client::{Admin, retried};
use crate::error::{AdminError, check};
use crate::offsets::OffsetSpec;
use crate::resource::{Results, TopicPartition};
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::offset_commit::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use krab_protocol::messages::offset_delete::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use krab_protocol::messages::offset_fetch::OffsetFetchRequestGroup;
use krab_protocol::messages::{OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest};
use std::collections::BTreeMap;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will read.
    pub offset: i64,
    /// The leader epoch of the last record read, when the committer sent it.
    pub leader_epoch: Option<i32>,
    /// The committer's metadata string.
    pub metadata: String,
}

/// A partition's lag in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// The committed offset.
    pub committed: i64,
    /// The log end offset.
    pub end: i64,
    /// `end - committed` (never negative).
    pub lag: i64,
}

impl Admin {
    /// The group's committed offsets (every partition it has one for), read stable: the
    /// coordinator waits out commits in flight (KIP-447, Kafka 2.5+).
    pub async fn list_group_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, CommittedOffset>, AdminError> {
        self.whole(ApiKey::OffsetFetch, |_, _| async move {
            let broker = self.coordinator(group).await?;
            let response = broker
                .call(|version| {
                    if version >= 8 {
                        OffsetFetchRequest {
                            groups: vec![OffsetFetchRequestGroup {
                                group_id: group.to_string(),
                                topics: None,
                                ..Default::default()
                            }],
                            require_stable: true,
                            ..Default::default()
                        }
                    } else {
                        OffsetFetchRequest {
                            group_id: group.to_string(),
                            topics: None,
                            require_stable: version >= 7,
                            ..Default::default()
                        }
                    }
                })
                .await?;
            let mut offsets = BTreeMap::new();
            let mut add =
                |topic: &str, partition: i32, offset: i64, epoch: i32, metadata: Option<String>, code: i16| {
                    let tp = TopicPartition::new(topic, partition);
                    check(ApiKey::OffsetFetch, || format!("group {group} partition {tp}"), code, None)?;
                    if offset >= 0 {
                        let leader_epoch = (epoch >= 0).then_some(epoch);
                        offsets.insert(
                            tp,
                            CommittedOffset { offset, leader_epoch, metadata: metadata.unwrap_or_default() },
                        );
                    }
                    Ok::<_, AdminError>(())
                };
            if let Some(g) = response.groups.into_iter().find(|g| g.group_id == group) {
                check(ApiKey::OffsetFetch, || format!("group {group}"), g.error_code, None)?;
                for t in g.topics {
                    for p in t.partitions {
                        add(
                            &t.name,
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.metadata,
                            p.error_code,
                        )?;
                    }
                }
            } else {
                check(ApiKey::OffsetFetch, || format!("group {group}"), response.error_code, None)?;
                for t in response.topics {
                    for p in t.partitions {
                        add(
                            &t.name,
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.metadata,
                            p.error_code,
                        )?;
                    }
                }
            }
            Ok(offsets)
        })
        .await
    }

    /// Sets the group's committed offsets (e.g. to reset where it resumes). The group must have
    /// no members (else UNKNOWN_MEMBER_ID per partition, as Kafka answers an outsider).
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<Results<TopicPartition, ()>, AdminError> {
        let wanted: BTreeMap<TopicPartition, i64> = offsets.iter().cloned().collect();
        let wanted = &wanted;
        let results = self
            .each(
                ApiKey::OffsetCommit,
                wanted.keys().cloned().collect(),
                retried,
                |asked: Vec<TopicPartition>, _, _| async move {
                    let broker = self.coordinator(group).await?;
                    let mut topics: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
                    for tp in &asked {
                        topics.entry(tp.topic.clone()).or_default().push(OffsetCommitRequestPartition {
                            partition_index: tp.partition,
                            committed_offset: wanted[tp],
                            committed_leader_epoch: -1,
                            commit_timestamp: -1,
                            committed_metadata: Some(String::new()),
                            ..Default::default()
                        });
                    }
                    let response = broker
                        .call(|_| OffsetCommitRequest {
                            group_id: group.to_string(),
                            generation_id_or_member_epoch: -1,
                            member_id: String::new(),
                            retention_time_ms: -1,
                            topics: topics
                                .into_iter()
                                .map(|(name, partitions)| OffsetCommitRequestTopic {
                                    name,
                                    partitions,
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .await?;
                    let mut out = Vec::new();
                    for t in response.topics {
                        for p in t.partitions {
                            let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                            let r = check(
                                ApiKey::OffsetCommit,
                                || format!("group {group} partition {tp}"),
                                p.error_code,
                                None,
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

    /// Deletes the group's committed offsets of these partitions (KIP-496). The group must not
    /// be subscribed to their topics (GROUP_SUBSCRIBED_TO_TOPIC otherwise).
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Results<TopicPartition, ()>, AdminError> {
        let results = self
            .each(ApiKey::OffsetDelete, partitions.to_vec(), retried, |asked: Vec<TopicPartition>, _, _| async move {
                let broker = self.coordinator(group).await?;
                let mut topics: BTreeMap<String, Vec<OffsetDeleteRequestPartition>> = BTreeMap::new();
                for tp in &asked {
                    topics
                        .entry(tp.topic.clone())
                        .or_default()
                        .push(OffsetDeleteRequestPartition { partition_index: tp.partition });
                }
                let response = broker
                    .call(|_| OffsetDeleteRequest {
                        group_id: group.to_string(),
                        topics: topics
                            .into_iter()
                            .map(|(name, partitions)| OffsetDeleteRequestTopic { name, partitions })
                            .collect(),
                    })
                    .await?;
                // A group-level error (GROUP_ID_NOT_FOUND, NOT_COORDINATOR) is every partition's.
                let group_code = ErrorCode::from_code(response.error_code);
                if group_code.is_err() {
                    return Err(AdminError::broker(format!("group {group}"), ApiKey::OffsetDelete, group_code, None));
                }
                let mut out = Vec::new();
                for t in response.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                        let r =
                            check(ApiKey::OffsetDelete, || format!("group {group} partition {tp}"), p.error_code, None);
                        out.push((tp, r));
                    }
                }
                Ok(out)
            })
            .await;
        Ok(results)
    }

    /// The group's lag on every partition it has committed: the log end offset (from each
    /// leader) minus the committed offset.
    pub async fn group_lag(&self, group: &str) -> Result<Results<TopicPartition, PartitionLag>, AdminError> {
        let committed = self.list_group_offsets(group).await?;
        let asked: Vec<(TopicPartition, OffsetSpec)> =
            committed.keys().map(|tp| (tp.clone(), OffsetSpec::Latest)).collect();
        let ends = self.list_offsets(&asked).await?;
        Ok(ends
            .into_iter()
            .map(|(tp, end)| {
                let committed = committed[&tp].offset;
                let lag =
                    end.map(|end| PartitionLag { committed, end: end.offset, lag: (end.offset - committed).max(0) });
                (tp, lag)
            })
            .collect())
    }
}
