//! Consumer groups: list (every broker coordinates some), describe and delete (each at its
//! coordinator).

use crate::client::{Admin, retried, round_deadline};
use crate::error::{AdminError, check};
use crate::resource::{Results, TopicPartition};
use bytes::Bytes;
use futures_util::future::join_all;
use krab_protocol::ApiKey;
use krab_protocol::Message;
use krab_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest,
};

/// A group in [`Admin::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// The protocol type (`consumer` for consumer groups; empty for groups that only commit).
    pub protocol_type: String,
    /// The state (`Stable`, `Empty`, ...), when the broker reports it (Kafka 2.6+).
    pub state: String,
    /// The group type (`classic`, `consumer`), when the broker reports it (Kafka 3.8+).
    pub group_type: String,
}

/// A group as [`Admin::describe_groups`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// The state: `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty` or `Dead`
    /// (a group that does not exist).
    pub state: String,
    /// The protocol type (`consumer`).
    pub protocol_type: String,
    /// The assignor in use (`range`, `cooperative-sticky`, ...).
    pub protocol: String,
    /// The members.
    pub members: Vec<MemberDescription>,
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its `group.instance.id` (static membership), if any.
    pub group_instance_id: Option<String>,
    /// Its `client.id`.
    pub client_id: String,
    /// The host it connected from.
    pub client_host: String,
    /// The partitions assigned to it (decoded for consumer groups; empty otherwise).
    pub assignment: Vec<TopicPartition>,
}

/// The partitions of a consumer-protocol assignment (a version, then the assignment).
fn decode_assignment(bytes: &Bytes) -> Vec<TopicPartition> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    match ConsumerProtocolAssignment::decode(&bytes.slice(2..), version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .flat_map(|t| t.partitions.into_iter().map(move |p| TopicPartition::new(t.topic.clone(), p)))
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "undecodable member assignment");
            Vec::new()
        }
    }
}

impl Admin {
    /// Every group of the cluster, sorted by id: ListGroups asked of every broker (each lists
    /// the groups it coordinates).
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, AdminError> {
        self.whole(ApiKey::ListGroups, |_, _| async move {
            let snapshot = self.cluster.fetch_metadata(Some(&[])).await?;
            let asks = snapshot.brokers.keys().map(|&id| async move {
                let broker = self.broker(id).await?;
                let response = broker.call(|_| ListGroupsRequest::default()).await?;
                check(ApiKey::ListGroups, || format!("the groups of broker {id}"), response.error_code, None)?;
                Ok::<_, AdminError>(response.groups)
            });
            let mut groups = Vec::new();
            for listed in join_all(asks).await {
                groups.extend(listed?.into_iter().map(|g| GroupListing {
                    group_id: g.group_id,
                    protocol_type: g.protocol_type,
                    state: g.group_state,
                    group_type: g.group_type,
                }));
            }
            groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            groups.dedup_by(|a, b| a.group_id == b.group_id);
            Ok(groups)
        })
        .await
    }

    /// Describes groups, each at its coordinator. A group that does not exist is described
    /// with state `Dead` and no members (as Kafka answers).
    pub async fn describe_groups(
        &self,
        groups: &[impl AsRef<str>],
    ) -> Result<Results<String, GroupDescription>, AdminError> {
        let groups: Vec<String> = groups.iter().map(|g| g.as_ref().to_string()).collect();
        let results = self
            .each(ApiKey::DescribeGroups, groups, retried, |asked: Vec<String>, _, timeout_ms| async move {
                let deadline = round_deadline(timeout_ms);
                let rounds = asked.into_iter().map(|group| async move {
                    let result = self
                        .part(ApiKey::DescribeGroups, deadline, async {
                            let broker = self.coordinator(&group).await?;
                            let response = broker
                                .call(|_| DescribeGroupsRequest { groups: vec![group.clone()], ..Default::default() })
                                .await?;
                            let g =
                                response.groups.into_iter().find(|g| g.group_id == group).ok_or_else(|| {
                                    AdminError::missing(ApiKey::DescribeGroups, format!("group {group}"))
                                })?;
                            check(ApiKey::DescribeGroups, || format!("group {group}"), g.error_code, None)?;
                            let consumer = g.protocol_type == "consumer";
                            Ok(GroupDescription {
                                group_id: g.group_id,
                                state: g.group_state,
                                protocol_type: g.protocol_type,
                                protocol: g.protocol_data,
                                members: g
                                    .members
                                    .into_iter()
                                    .map(|m| MemberDescription {
                                        assignment: if consumer {
                                            decode_assignment(&m.member_assignment)
                                        } else {
                                            Vec::new()
                                        },
                                        member_id: m.member_id,
                                        group_instance_id: m.group_instance_id,
                                        client_id: m.client_id,
                                        client_host: m.client_host,
                                    })
                                    .collect(),
                            })
                        })
                        .await;
                    (group, result)
                });
                Ok(join_all(rounds).await)
            })
            .await;
        Ok(results)
    }

    /// Deletes groups (each must be empty: no members), with their committed offsets.
    pub async fn delete_groups(&self, groups: &[impl AsRef<str>]) -> Result<Results<String, ()>, AdminError> {
        let groups: Vec<String> = groups.iter().map(|g| g.as_ref().to_string()).collect();
        let results = self
            .each(ApiKey::DeleteGroups, groups, retried, |asked: Vec<String>, _, timeout_ms| async move {
                let deadline = round_deadline(timeout_ms);
                let rounds = asked.into_iter().map(|group| async move {
                    let result = self
                        .part(ApiKey::DeleteGroups, deadline, async {
                            let broker = self.coordinator(&group).await?;
                            let response = broker
                                .call(|_| DeleteGroupsRequest {
                                    groups_names: vec![group.clone()],
                                    ..Default::default()
                                })
                                .await?;
                            let r =
                                response.results.into_iter().find(|r| r.group_id == group).ok_or_else(|| {
                                    AdminError::missing(ApiKey::DeleteGroups, format!("group {group}"))
                                })?;
                            check(ApiKey::DeleteGroups, || format!("group {group}"), r.error_code, None)
                        })
                        .await;
                    (group, result)
                });
                Ok(join_all(rounds).await)
            })
            .await;
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use krab_protocol::messages::consumer_protocol_assignment::TopicPartition as Assigned;

    #[test]
    fn member_assignments_decode_and_garbage_is_empty() {
        let a = ConsumerProtocolAssignment {
            assigned_partitions: vec![Assigned { topic: "t".into(), partitions: vec![0, 2] }],
            ..Default::default()
        };
        let mut buf = bytes::BytesMut::new();
        buf.put_i16(1);
        a.encode(&mut buf, 1).unwrap();
        assert_eq!(decode_assignment(&buf.freeze()), vec![TopicPartition::new("t", 0), TopicPartition::new("t", 2)]);
        assert!(decode_assignment(&Bytes::from_static(&[0, 1, 0xff, 0xff, 0xff])).is_empty());
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_empty());
    }
}
