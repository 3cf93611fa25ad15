//! Topics: create (partitions, replication factor or replica assignment, configs), delete,
//! list, describe (partitions and configs), and add partitions. Creating, deleting and adding
//! partitions go to the controller.

use crate::client::{Admin, retried};
use crate::configs::ConfigEntry;
use crate::error::{AdminError, check};
use crate::resource::{ConfigResource, Results};
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::create_partitions::{CreatePartitionsAssignment, CreatePartitionsTopic};
use krab_protocol::messages::create_topics::{CreatableReplicaAssignment, CreatableTopic, CreateableTopicConfig};
use krab_protocol::messages::delete_topics::DeleteTopicState;
use krab_protocol::messages::{CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest};
use krab_protocol::{ApiKey, Uuid};
use std::collections::BTreeMap;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The name.
    pub name: String,
    /// Partitions (`None`: the broker's `num.partitions`); ignored with an assignment.
    pub partitions: Option<i32>,
    /// Replication factor (`None`: the broker's `default.replication.factor`); ignored with an
    /// assignment.
    pub replication_factor: Option<i16>,
    /// Explicit replicas per partition (the first is the preferred leader).
    pub assignment: BTreeMap<i32, Vec<i32>>,
    /// Topic configs (`cleanup.policy`, `retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and `replication_factor` replicas each.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        NewTopic {
            name: name.into(),
            partitions: Some(partitions),
            replication_factor: Some(replication_factor),
            assignment: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    /// A topic with the broker's default partition count and replication factor.
    pub fn with_defaults(name: impl Into<String>) -> Self {
        NewTopic { partitions: None, replication_factor: None, ..Self::new(name, -1, -1) }
    }

    /// A topic whose partition `p` has replicas `assignment[p]` (partitions numbered from 0).
    pub fn with_assignment(name: impl Into<String>, assignment: impl IntoIterator<Item = Vec<i32>>) -> Self {
        let assignment = (0..).zip(assignment).collect();
        NewTopic { partitions: None, replication_factor: None, assignment, ..Self::new(name, -1, -1) }
    }

    /// Adds a topic config.
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(name.into(), value.into());
        self
    }
}

/// What the controller made of a created topic (Kafka 2.4+ reports it; older brokers leave
/// the fields empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    /// The topic id (zero before Kafka 2.8).
    pub id: Uuid,
    /// Partitions (-1 when not reported).
    pub partitions: i32,
    /// Replication factor (-1 when not reported).
    pub replication_factor: i16,
    /// The topic's configs as created, when reported.
    pub configs: Vec<ConfigEntry>,
}

/// A topic in [`Admin::list_topics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// The name.
    pub name: String,
    /// The topic id (zero when the broker sends none).
    pub id: Uuid,
    /// Whether it is internal (`__consumer_offsets`, `__transaction_state`).
    pub internal: bool,
    /// Its partition count.
    pub partitions: usize,
}

/// A topic as [`Admin::describe_topics`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The name.
    pub name: String,
    /// The topic id (zero when the broker sends none).
    pub id: Uuid,
    /// Whether it is internal.
    pub internal: bool,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionDescription>,
    /// Its configs (every one, defaults included), sorted by name.
    pub configs: Vec<ConfigEntry>,
}

impl TopicDescription {
    /// A config's value, if set (or defaulted) on the topic.
    pub fn config(&self, name: &str) -> Option<&str> {
        self.configs.iter().find(|c| c.name == name).and_then(|c| c.value.as_deref())
    }
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The index.
    pub partition: i32,
    /// The leader, if it has one.
    pub leader: Option<i32>,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The replicas (the first is the preferred leader).
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// New partitions for a topic ([`Admin::create_partitions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartitions {
    /// The topic's partition count afterwards.
    pub total: i32,
    /// Replicas of each new partition, in order (empty: the controller places them).
    pub assignment: Vec<Vec<i32>>,
}

impl NewPartitions {
    /// Grows the topic to `total` partitions, placed by the controller.
    pub fn increase_to(total: i32) -> Self {
        NewPartitions { total, assignment: Vec::new() }
    }
}

impl Admin {
    /// Creates topics. Each topic's result is its own: TOPIC_ALREADY_EXISTS for one does not
    /// fail the others.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<Results<String, CreatedTopic>, AdminError> {
        for t in topics {
            if t.name.is_empty() {
                return Err(AdminError::InvalidArgument("a topic name is empty".into()));
            }
        }
        let by_name: BTreeMap<&str, &NewTopic> = topics.iter().map(|t| (t.name.as_str(), t)).collect();
        let names = by_name.keys().map(|n| n.to_string()).collect();
        let results = self
            .each(ApiKey::CreateTopics, names, retried, |names: Vec<String>, attempt, timeout_ms| {
                let topics: Vec<CreatableTopic> = names.iter().map(|n| creatable(by_name[n.as_str()])).collect();
                async move {
                    let broker = self.controller(attempt > 0).await?;
                    let response =
                        broker.call(|_| CreateTopicsRequest { topics, timeout_ms, ..Default::default() }).await?;
                    Ok(response
                        .topics
                        .into_iter()
                        .map(|t| {
                            let r = check(
                                ApiKey::CreateTopics,
                                || format!("topic {}", t.name),
                                t.error_code,
                                t.error_message.as_ref(),
                            )
                            .map(|()| CreatedTopic {
                                id: t.topic_id,
                                partitions: t.num_partitions,
                                replication_factor: t.replication_factor,
                                configs: t
                                    .configs
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(|c| {
                                        ConfigEntry::created(
                                            c.name,
                                            c.value,
                                            c.config_source,
                                            c.read_only,
                                            c.is_sensitive,
                                        )
                                    })
                                    .collect(),
                            });
                            (t.name, r)
                        })
                        .collect())
                }
            })
            .await;
        Ok(results)
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&self, names: &[impl AsRef<str>]) -> Result<Results<String, ()>, AdminError> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_string()).collect();
        let results = self
            .each(ApiKey::DeleteTopics, names, retried, |names: Vec<String>, attempt, timeout_ms| async move {
                let broker = self.controller(attempt > 0).await?;
                let response = broker
                    .call(|version| {
                        if version >= 6 {
                            DeleteTopicsRequest {
                                topics: names
                                    .iter()
                                    .map(|n| DeleteTopicState { name: Some(n.clone()), ..Default::default() })
                                    .collect(),
                                timeout_ms,
                                ..Default::default()
                            }
                        } else {
                            DeleteTopicsRequest { topic_names: names.clone(), timeout_ms, ..Default::default() }
                        }
                    })
                    .await?;
                Ok(response
                    .responses
                    .into_iter()
                    .map(|r| {
                        let name = r.name.unwrap_or_default();
                        let result = check(
                            ApiKey::DeleteTopics,
                            || format!("topic {name}"),
                            r.error_code,
                            r.error_message.as_ref(),
                        );
                        (name, result)
                    })
                    .collect())
            })
            .await;
        Ok(results)
    }

    /// Every topic, sorted by name (internal ones flagged).
    pub async fn list_topics(&self) -> Result<Vec<TopicListing>, AdminError> {
        let snapshot =
            self.whole(ApiKey::Metadata, |_, _| async move { Ok(self.cluster.fetch_metadata(None).await?) }).await?;
        let mut topics: Vec<TopicListing> = snapshot
            .topics
            .values()
            .filter(|t| t.error.is_ok())
            .map(|t| TopicListing {
                name: t.name.clone(),
                id: t.id,
                internal: t.internal,
                partitions: t.partitions.len(),
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Describes topics: partitions with leaders, replicas and ISR from fresh metadata, and
    /// every config (DescribeConfigs).
    pub async fn describe_topics(
        &self,
        names: &[impl AsRef<str>],
    ) -> Result<Results<String, TopicDescription>, AdminError> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_string()).collect();
        let snapshot = {
            let names = &names;
            self.whole(ApiKey::Metadata, |_, _| async move { Ok(self.cluster.fetch_metadata(Some(names)).await?) })
                .await?
        };
        let resources: Vec<ConfigResource> = names.iter().map(|n| ConfigResource::Topic(n.clone())).collect();
        let mut configs = self.describe_configs(&resources).await?;
        let mut out = BTreeMap::new();
        for name in names {
            let result = match snapshot.topic(&name) {
                None => Err(AdminError::broker(
                    format!("topic {name}"),
                    ApiKey::Metadata,
                    ErrorCode::UnknownTopicOrPartition,
                    None,
                )),
                Some(t) if t.error.is_err() => {
                    Err(AdminError::broker(format!("topic {name}"), ApiKey::Metadata, t.error, None))
                }
                Some(t) => match configs.remove(&ConfigResource::Topic(name.clone())) {
                    Some(Err(e)) => Err(e),
                    None => Err(AdminError::missing(ApiKey::DescribeConfigs, format!("topic {name}"))),
                    Some(Ok(configs)) => Ok(TopicDescription {
                        name: t.name.clone(),
                        id: t.id,
                        internal: t.internal,
                        partitions: t
                            .partitions
                            .iter()
                            .map(|p| PartitionDescription {
                                partition: p.partition,
                                leader: p.leader,
                                leader_epoch: p.leader_epoch,
                                replicas: p.replicas.clone(),
                                isr: p.isr.clone(),
                            })
                            .collect(),
                        configs,
                    }),
                },
            };
            out.insert(name, result);
        }
        Ok(out)
    }

    /// Adds partitions to topics (counts only grow).
    pub async fn create_partitions(
        &self,
        topics: &[(impl AsRef<str>, NewPartitions)],
    ) -> Result<Results<String, ()>, AdminError> {
        let by_name: BTreeMap<String, &NewPartitions> =
            topics.iter().map(|(n, p)| (n.as_ref().to_string(), p)).collect();
        let names = by_name.keys().cloned().collect();
        let results = self
            .each(ApiKey::CreatePartitions, names, retried, |names: Vec<String>, attempt, timeout_ms| {
                let topics: Vec<CreatePartitionsTopic> = names
                    .iter()
                    .map(|n| {
                        let p = by_name[n];
                        CreatePartitionsTopic {
                            name: n.clone(),
                            count: p.total,
                            assignments: (!p.assignment.is_empty()).then(|| {
                                p.assignment
                                    .iter()
                                    .map(|b| CreatePartitionsAssignment { broker_ids: b.clone(), ..Default::default() })
                                    .collect()
                            }),
                            ..Default::default()
                        }
                    })
                    .collect();
                async move {
                    let broker = self.controller(attempt > 0).await?;
                    let response =
                        broker.call(|_| CreatePartitionsRequest { topics, timeout_ms, ..Default::default() }).await?;
                    Ok(response
                        .results
                        .into_iter()
                        .map(|r| {
                            let result = check(
                                ApiKey::CreatePartitions,
                                || format!("topic {}", r.name),
                                r.error_code,
                                r.error_message.as_ref(),
                            );
                            (r.name, result)
                        })
                        .collect())
                }
            })
            .await;
        Ok(results)
    }
}

fn creatable(t: &NewTopic) -> CreatableTopic {
    let explicit = !t.assignment.is_empty();
    CreatableTopic {
        name: t.name.clone(),
        num_partitions: if explicit { -1 } else { t.partitions.unwrap_or(-1) },
        replication_factor: if explicit { -1 } else { t.replication_factor.unwrap_or(-1) },
        assignments: t
            .assignment
            .iter()
            .map(|(p, b)| CreatableReplicaAssignment {
                partition_index: *p,
                broker_ids: b.clone(),
                ..Default::default()
            })
            .collect(),
        configs: t
            .configs
            .iter()
            .map(|(k, v)| CreateableTopicConfig { name: k.clone(), value: Some(v.clone()), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}
