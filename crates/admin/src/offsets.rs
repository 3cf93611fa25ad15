//! Partition offsets at their leaders: list offsets (earliest, latest, by timestamp) and delete
//! records before an offset.

use crate::client::{Admin, retried_at_leader, round_deadline};
use crate::error::{AdminError, check};
use crate::resource::{Results, TopicPartition};
use futures_util::future::join_all;
use krab_protocol::ApiKey;
use krab_protocol::messages::delete_records::{DeleteRecordsPartition, DeleteRecordsTopic};
use krab_protocol::messages::list_offsets::{ListOffsetsPartition, ListOffsetsTopic};
use krab_protocol::messages::{DeleteRecordsRequest, ListOffsetsRequest};
use std::collections::BTreeMap;

/// Which offset [`Admin::list_offsets`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the next offset to be written).
    Latest,
    /// The first offset whose timestamp is at or after this one (milliseconds since the epoch).
    Timestamp(i64),
    /// The offset of the record with the largest timestamp (KIP-734, Kafka 3.0+).
    MaxTimestamp,
}

impl OffsetSpec {
    fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Latest => -1,
            OffsetSpec::Earliest => -2,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// A listed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset (-1: no record at or after the timestamp asked for).
    pub offset: i64,
    /// The record's timestamp, when asked by timestamp (-1 otherwise).
    pub timestamp: i64,
    /// The leader epoch of the offset, when known.
    pub leader_epoch: Option<i32>,
}

/// Per-leader requests of one round, each partition's answer found in its leader's response.
async fn at_leaders<T, F, Fut>(
    admin: &Admin,
    api: ApiKey,
    timeout_ms: i32,
    asked: Vec<TopicPartition>,
    ask: F,
) -> Result<Vec<(TopicPartition, Result<T, AdminError>)>, AdminError>
where
    F: Fn(krab_cluster::Broker, Vec<TopicPartition>) -> Fut,
    Fut: Future<Output = Result<Vec<(TopicPartition, Result<T, AdminError>)>, AdminError>>,
{
    let deadline = round_deadline(timeout_ms);
    let (leaders, failed) = admin.by_leader(&asked).await?;
    let mut out: Vec<(TopicPartition, Result<T, AdminError>)> =
        failed.into_iter().map(|(tp, e)| (tp, Err(e))).collect();
    let rounds = leaders.into_iter().map(|(leader, partitions)| {
        let ask = &ask;
        async move {
            let answered = admin
                .part(api, deadline, async {
                    let broker = admin.broker(leader).await?;
                    ask(broker, partitions.clone()).await
                })
                .await;
            // A leader that cannot be reached, or does not answer in time, fails only its own
            // partitions (retried, unless time is up).
            answered.unwrap_or_else(|e| partitions.into_iter().map(|tp| (tp, Err(e.clone()))).collect())
        }
    });
    for answered in join_all(rounds).await {
        out.extend(answered);
    }
    Ok(out)
}

fn by_topic<T: Clone>(items: &[(TopicPartition, T)]) -> BTreeMap<String, Vec<(i32, T)>> {
    let mut topics: BTreeMap<String, Vec<(i32, T)>> = BTreeMap::new();
    for (tp, v) in items {
        topics.entry(tp.topic.clone()).or_default().push((tp.partition, v.clone()));
    }
    topics
}

impl Admin {
    /// Offsets of partitions, asked of their leaders (read-uncommitted).
    pub async fn list_offsets(
        &self,
        partitions: &[(TopicPartition, OffsetSpec)],
    ) -> Result<Results<TopicPartition, ListedOffset>, AdminError> {
        let specs: BTreeMap<TopicPartition, OffsetSpec> = partitions.iter().cloned().collect();
        let specs = &specs;
        let results = self
            .each(
                ApiKey::ListOffsets,
                specs.keys().cloned().collect(),
                retried_at_leader,
                |asked, _, timeout_ms| async move {
                    at_leaders(self, ApiKey::ListOffsets, timeout_ms, asked, |broker, partitions| async move {
                        let items: Vec<(TopicPartition, OffsetSpec)> =
                            partitions.iter().map(|tp| (tp.clone(), specs[tp])).collect();
                        let response = broker
                            .call(|_| ListOffsetsRequest {
                                replica_id: -1,
                                isolation_level: 0,
                                topics: by_topic(&items)
                                    .into_iter()
                                    .map(|(name, parts)| ListOffsetsTopic {
                                        name,
                                        partitions: parts
                                            .into_iter()
                                            .map(|(p, spec)| ListOffsetsPartition {
                                                partition_index: p,
                                                current_leader_epoch: -1,
                                                timestamp: spec.timestamp(),
                                                max_num_offsets: 1,
                                                ..Default::default()
                                            })
                                            .collect(),
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
                                let r = check(ApiKey::ListOffsets, || format!("partition {tp}"), p.error_code, None)
                                    .map(|()| {
                                        ListedOffset {
                                            // Version 0 answers with a list of offsets.
                                            offset: if p.old_style_offsets.is_empty() {
                                                p.offset
                                            } else {
                                                p.old_style_offsets[0]
                                            },
                                            timestamp: p.timestamp,
                                            leader_epoch: (p.leader_epoch >= 0).then_some(p.leader_epoch),
                                        }
                                    });
                                out.push((tp, r));
                            }
                        }
                        Ok(out)
                    })
                    .await
                },
            )
            .await;
        Ok(results)
    }

    /// Deletes the records of each partition below the given offset (-1: the high watermark),
    /// asking each leader; each result is the partition's new log start offset.
    pub async fn delete_records(
        &self,
        before: &[(TopicPartition, i64)],
    ) -> Result<Results<TopicPartition, i64>, AdminError> {
        let offsets: BTreeMap<TopicPartition, i64> = before.iter().cloned().collect();
        let offsets = &offsets;
        let results = self
            .each(
                ApiKey::DeleteRecords,
                offsets.keys().cloned().collect(),
                retried_at_leader,
                |asked, _, timeout_ms| async move {
                    at_leaders(self, ApiKey::DeleteRecords, timeout_ms, asked, |broker, partitions| async move {
                        let items: Vec<(TopicPartition, i64)> =
                            partitions.iter().map(|tp| (tp.clone(), offsets[tp])).collect();
                        let response = broker
                            .call(|_| DeleteRecordsRequest {
                                topics: by_topic(&items)
                                    .into_iter()
                                    .map(|(name, parts)| DeleteRecordsTopic {
                                        name,
                                        partitions: parts
                                            .into_iter()
                                            .map(|(p, offset)| DeleteRecordsPartition {
                                                partition_index: p,
                                                offset,
                                                ..Default::default()
                                            })
                                            .collect(),
                                        ..Default::default()
                                    })
                                    .collect(),
                                timeout_ms,
                                ..Default::default()
                            })
                            .await?;
                        let mut out = Vec::new();
                        for t in response.topics {
                            for p in t.partitions {
                                let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                                let r = check(ApiKey::DeleteRecords, || format!("partition {tp}"), p.error_code, None)
                                    .map(|()| p.low_watermark);
                                out.push((tp, r));
                            }
                        }
                        Ok(out)
                    })
                    .await
                },
            )
            .await;
        Ok(results)
    }
}
