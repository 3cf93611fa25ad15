//! Configs: describe and incrementally alter those of topics and brokers. A broker's own
//! configs are asked of that broker; topic configs and the broker defaults of any broker.

use crate::client::{Admin, retried, round_deadline};
use crate::error::{AdminError, check};
use crate::resource::{ConfigResource, Results};
use futures_util::future::join_all;
use krab_protocol::ApiKey;
use krab_protocol::messages::describe_configs::DescribeConfigsResource;
use krab_protocol::messages::incremental_alter_configs::{AlterConfigsResource, AlterableConfig};
use krab_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use std::collections::BTreeMap;

/// Where a config's value comes from (Kafka's `ConfigEntry.ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigSource {
    /// Set on the topic.
    DynamicTopic,
    /// Set dynamically on this broker.
    DynamicBroker,
    /// Set dynamically as the default of every broker.
    DynamicDefaultBroker,
    /// From the broker's properties file.
    StaticBroker,
    /// Kafka's built-in default.
    Default,
    /// Set dynamically on a broker logger.
    DynamicBrokerLogger,
    /// A source this client does not know (the protocol's number).
    Unknown(i8),
}

impl ConfigSource {
    fn from_code(code: i8) -> Self {
        match code {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            other => ConfigSource::Unknown(other),
        }
    }
}

/// One config of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The name (`retention.ms`, ...).
    pub name: String,
    /// The value; `None` for a sensitive one (passwords) or one without a value.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether it cannot be altered.
    pub read_only: bool,
    /// Whether the broker hides its value.
    pub sensitive: bool,
}

impl ConfigEntry {
    pub(crate) fn created(name: String, value: Option<String>, source: i8, read_only: bool, sensitive: bool) -> Self {
        ConfigEntry { name, value, source: ConfigSource::from_code(source), read_only, sensitive }
    }
}

/// One incremental change of a config ([`Admin::incremental_alter_configs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Sets `name` to `value`.
    Set(String, String),
    /// Removes `name`'s setting (back to its default).
    Delete(String),
    /// Appends `value` to the list config `name`.
    Append(String, String),
    /// Removes `value` from the list config `name`.
    Subtract(String, String),
}

impl AlterConfigOp {
    fn to_protocol(&self) -> AlterableConfig {
        let (name, op, value) = match self {
            AlterConfigOp::Set(n, v) => (n, 0, Some(v)),
            AlterConfigOp::Delete(n) => (n, 1, None),
            AlterConfigOp::Append(n, v) => (n, 2, Some(v)),
            AlterConfigOp::Subtract(n, v) => (n, 3, Some(v)),
        };
        AlterableConfig { name: name.clone(), config_operation: op, value: value.cloned(), ..Default::default() }
    }
}

/// Splits resources by the broker that must answer (`None`: any broker).
fn by_target(resources: Vec<ConfigResource>) -> BTreeMap<Option<i32>, Vec<ConfigResource>> {
    let mut groups: BTreeMap<Option<i32>, Vec<ConfigResource>> = BTreeMap::new();
    for r in resources {
        groups.entry(r.broker()).or_default().push(r);
    }
    groups
}

impl Admin {
    async fn target(&self, broker: Option<i32>) -> Result<krab_cluster::Broker, AdminError> {
        match broker {
            Some(id) => self.broker(id).await,
            None => self.any().await,
        }
    }

    /// Every config of each resource, sorted by name.
    pub async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<Results<ConfigResource, Vec<ConfigEntry>>, AdminError> {
        let results = self
            .each(
                ApiKey::DescribeConfigs,
                resources.to_vec(),
                retried,
                |asked: Vec<ConfigResource>, _, timeout_ms| async move {
                    let deadline = round_deadline(timeout_ms);
                    let rounds = by_target(asked).into_iter().map(|(target, asked)| async move {
                        let answered: Result<Vec<_>, AdminError> = self
                            .part(ApiKey::DescribeConfigs, deadline, async {
                                let broker = self.target(target).await?;
                                let response = broker
                                    .call(|_| DescribeConfigsRequest {
                                        resources: asked
                                            .iter()
                                            .map(|r| DescribeConfigsResource {
                                                resource_type: r.type_code(),
                                                resource_name: r.name(),
                                                configuration_keys: None,
                                                ..Default::default()
                                            })
                                            .collect(),
                                        ..Default::default()
                                    })
                                    .await?;
                                Ok(asked
                                    .iter()
                                    .filter_map(|r| {
                                        let found = response
                                            .results
                                            .iter()
                                            .find(|x| r.matches(x.resource_type, &x.resource_name))?;
                                        let result = check(
                                            ApiKey::DescribeConfigs,
                                            || r.to_string(),
                                            found.error_code,
                                            found.error_message.as_ref(),
                                        )
                                        .map(|()| {
                                            let mut entries: Vec<ConfigEntry> = found
                                                .configs
                                                .iter()
                                                .map(|c| {
                                                    ConfigEntry::created(
                                                        c.name.clone(),
                                                        c.value.clone(),
                                                        c.config_source,
                                                        c.read_only,
                                                        c.is_sensitive,
                                                    )
                                                })
                                                .collect();
                                            entries.sort_by(|a, b| a.name.cmp(&b.name));
                                            entries
                                        });
                                        Some((r.clone(), result))
                                    })
                                    .collect())
                            })
                            .await;
                        // One broker failing fails only the resources asked of it.
                        answered.unwrap_or_else(|e| asked.iter().map(|r| (r.clone(), Err(e.clone()))).collect())
                    });
                    Ok(join_all(rounds).await.into_iter().flatten().collect())
                },
            )
            .await;
        Ok(results)
    }

    /// Applies incremental changes (KIP-339) to each resource's configs; settings not named are
    /// left as they are.
    pub async fn incremental_alter_configs(
        &self,
        changes: &[(ConfigResource, Vec<AlterConfigOp>)],
    ) -> Result<Results<ConfigResource, ()>, AdminError> {
        let by_resource: BTreeMap<ConfigResource, &Vec<AlterConfigOp>> =
            changes.iter().map(|(r, ops)| (r.clone(), ops)).collect();
        let resources = by_resource.keys().cloned().collect();
        let by_resource = &by_resource;
        let results = self
            .each(
                ApiKey::IncrementalAlterConfigs,
                resources,
                retried,
                |asked: Vec<ConfigResource>, _, timeout_ms| async move {
                    let deadline = round_deadline(timeout_ms);
                    let rounds = by_target(asked).into_iter().map(|(target, asked)| async move {
                        let answered: Result<Vec<_>, AdminError> = self
                            .part(ApiKey::IncrementalAlterConfigs, deadline, async {
                                let broker = self.target(target).await?;
                                let response = broker
                                    .call(|_| IncrementalAlterConfigsRequest {
                                        resources: asked
                                            .iter()
                                            .map(|r| AlterConfigsResource {
                                                resource_type: r.type_code(),
                                                resource_name: r.name(),
                                                configs: by_resource[r]
                                                    .iter()
                                                    .map(AlterConfigOp::to_protocol)
                                                    .collect(),
                                                ..Default::default()
                                            })
                                            .collect(),
                                        validate_only: false,
                                        ..Default::default()
                                    })
                                    .await?;
                                Ok(asked
                                    .iter()
                                    .filter_map(|r| {
                                        let found = response
                                            .responses
                                            .iter()
                                            .find(|x| r.matches(x.resource_type, &x.resource_name))?;
                                        let result = check(
                                            ApiKey::IncrementalAlterConfigs,
                                            || r.to_string(),
                                            found.error_code,
                                            found.error_message.as_ref(),
                                        );
                                        Some((r.clone(), result))
                                    })
                                    .collect())
                            })
                            .await;
                        answered.unwrap_or_else(|e| asked.iter().map(|r| (r.clone(), Err(e.clone()))).collect())
                    });
                    Ok(join_all(rounds).await.into_iter().flatten().collect())
                },
            )
            .await;
        Ok(results)
    }
}
