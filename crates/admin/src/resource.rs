//! The names admin calls key their results by: partitions and config resources.

use std::collections::BTreeMap;
use std::fmt;

/// Per-resource outcomes of one call: each resource asked about, with its own result.
pub type Results<K, T> = BTreeMap<K, Result<T, crate::AdminError>>;

/// A topic's partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`'s partition `partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Something with configs: a topic, or one broker (its dynamic and static settings).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigResource {
    /// A topic's configs (`retention.ms`, `cleanup.policy`, ...).
    Topic(String),
    /// One broker's configs; describing and altering them goes to that broker.
    Broker(i32),
    /// The dynamic defaults of every broker (altered through any broker).
    BrokerDefault,
}

impl ConfigResource {
    /// The protocol's resource type (Kafka's `ConfigResource.Type`).
    pub(crate) fn type_code(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => 2,
            ConfigResource::Broker(_) | ConfigResource::BrokerDefault => 4,
        }
    }

    /// The protocol's resource name (the default broker resource has an empty name).
    pub(crate) fn name(&self) -> String {
        match self {
            ConfigResource::Topic(t) => t.clone(),
            ConfigResource::Broker(id) => id.to_string(),
            ConfigResource::BrokerDefault => String::new(),
        }
    }

    /// The broker that must answer for it, if any.
    pub(crate) fn broker(&self) -> Option<i32> {
        match self {
            ConfigResource::Broker(id) => Some(*id),
            _ => None,
        }
    }

    /// The resource a response names, matched against what was asked.
    pub(crate) fn matches(&self, type_code: i8, name: &str) -> bool {
        self.type_code() == type_code && self.name() == name
    }
}

impl fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigResource::Topic(t) => write!(f, "topic {t}"),
            ConfigResource::Broker(id) => write!(f, "broker {id}"),
            ConfigResource::BrokerDefault => f.write_str("the broker defaults"),
        }
    }
}
