//! Admin basics: create, delete and list topics, with broker errors surfaced by name.

use crate::cluster::Cluster;
use crate::error::ClusterError;
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::create_topics::{CreatableTopic, CreateableTopicConfig};
use krab_protocol::messages::delete_topics::DeleteTopicState;
use krab_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest};
use std::time::Duration;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The name.
    pub name: String,
    /// Partitions (-1: the broker's default).
    pub partitions: i32,
    /// Replication factor (-1: the broker's default).
    pub replication_factor: i16,
    /// Topic configs (`cleanup.policy`, `retention.ms`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the broker's default replication factor.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self { name: name.into(), partitions, replication_factor: -1, configs: Vec::new() }
    }

    /// Sets the replication factor.
    pub fn replication_factor(mut self, rf: i16) -> Self {
        self.replication_factor = rf;
        self
    }
}

impl Cluster {
    /// The broker that takes admin requests: the controller when metadata names one (KRaft
    /// brokers forward to it anyway), else any broker.
    async fn admin_broker(&self) -> Result<crate::broker::Broker, ClusterError> {
        match self.snapshot().controller {
            Some(id) => match self.broker(id).await {
                Ok(b) => Ok(b),
                Err(_) => self.any_broker().await,
            },
            None => self.any_broker().await,
        }
    }

    /// Creates topics; fails with the first topic's broker error (e.g. TOPIC_ALREADY_EXISTS).
    pub async fn create_topics(&self, topics: &[NewTopic], timeout: Duration) -> Result<(), ClusterError> {
        let broker = self.admin_broker().await?;
        let response = broker
            .call(|_| CreateTopicsRequest {
                topics: topics
                    .iter()
                    .map(|t| CreatableTopic {
                        name: t.name.clone(),
                        num_partitions: t.partitions,
                        replication_factor: t.replication_factor,
                        configs: t
                            .configs
                            .iter()
                            .map(|(k, v)| CreateableTopicConfig {
                                name: k.clone(),
                                value: Some(v.clone()),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
                ..Default::default()
            })
            .await?;
        for t in &response.topics {
            let code = ErrorCode::from_code(t.error_code);
            if !code.is_ok() {
                return Err(ClusterError::Broker {
                    broker: broker.label().to_string(),
                    api: ApiKey::CreateTopics,
                    code,
                    message: Some(match &t.error_message {
                        Some(m) => format!("topic {}: {m}", t.name),
                        None => format!("topic {}", t.name),
                    }),
                });
            }
        }
        Ok(())
    }

    /// Deletes topics by name; fails with the first topic's broker error.
    pub async fn delete_topics(&self, names: &[String], timeout: Duration) -> Result<(), ClusterError> {
        let broker = self.admin_broker().await?;
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
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
                    DeleteTopicsRequest { topic_names: names.to_vec(), timeout_ms, ..Default::default() }
                }
            })
            .await?;
        for r in &response.responses {
            let code = ErrorCode::from_code(r.error_code);
            if !code.is_ok() {
                let name = r.name.clone().unwrap_or_default();
                return Err(ClusterError::Broker {
                    broker: broker.label().to_string(),
                    api: ApiKey::DeleteTopics,
                    code,
                    message: Some(match &r.error_message {
                        Some(m) => format!("topic {name}: {m}"),
                        None => format!("topic {name}"),
                    }),
                });
            }
        }
        Ok(())
    }

    /// Every topic's name (internal topics included), sorted; refreshes the snapshot as it goes.
    pub async fn list_topics(&self) -> Result<Vec<String>, ClusterError> {
        let snapshot = self.fetch_metadata(None).await?;
        let mut names: Vec<String> =
            snapshot.topics.values().filter(|t| t.error.is_ok()).map(|t| t.name.clone()).collect();
        names.sort();
        Ok(names)
    }
}
