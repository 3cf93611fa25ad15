//! krab's admin client: what operators do to a Kafka cluster, each request sent to the broker
//! that owns it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), krab_admin::AdminError> {
//! use krab_admin::{Admin, AdminConfig, AlterConfigOp, ConfigResource, NewTopic};
//! let admin = Admin::connect(AdminConfig::new("localhost:9092")?).await?;
//! let created = admin.create_topics(&[NewTopic::new("orders", 6, 3).config("retention.ms", "86400000")]).await?;
//! created["orders"].as_ref().map_err(Clone::clone)?;
//! admin
//!     .incremental_alter_configs(&[(
//!         ConfigResource::Topic("orders".into()),
//!         vec![AlterConfigOp::Set("cleanup.policy".into(), "compact".into())],
//!     )])
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! - **Topics:** create (partitions and replication factor, or explicit replicas; configs),
//!   delete, list, describe (partitions and configs), add partitions.
//! - **Configs:** describe and incrementally alter (KIP-339) topic and broker configs.
//! - **Groups:** list, describe (members and their assignments), delete; list, alter and delete
//!   committed offsets; lag.
//! - **Partitions:** list offsets (earliest, latest, by time), delete records, elect leaders,
//!   reassign replicas.
//! - **Security:** describe, create and delete ACLs; describe and alter SCRAM credentials.
//! - **Cluster:** describe (id, controller, brokers).
//!
//! Routing: topic creation and deletion, partitions, elections, reassignments and SCRAM
//! changes go to the controller (which KRaft brokers forward); group calls to the group's
//! coordinator (FindCoordinator); list offsets and delete records to each partition's leader;
//! a broker's configs to that broker; the rest to any broker. Every call has one timeout and
//! retries what a retry can fix (NOT_CONTROLLER, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
//! a leader election, a lost connection), re-resolving the route each time. Results are per
//! resource ([`Results`]): each topic, group, partition or binding has its own `Result`,
//! whose error names it.
#![forbid(unsafe_code)]

mod acls;
mod client;
mod config;
mod configs;
mod controller;
mod error;
mod group_offsets;
mod groups;
mod offsets;
mod resource;
mod scram;
mod topics;

pub use acls::{AclBinding, AclFilter, AclOperation, AclPermission, PatternType, ResourceType};
pub use client::Admin;
pub use config::{AdminConfig, ConfigError};
pub use configs::{AlterConfigOp, ConfigEntry, ConfigSource};
pub use controller::{BrokerDescription, ClusterDescription, ElectionType, Reassignment};
pub use error::AdminError;
pub use group_offsets::{CommittedOffset, PartitionLag};
pub use groups::{GroupDescription, GroupListing, MemberDescription};
pub use krab_cluster::Secret;
pub use krab_protocol::error_code::ErrorCode;
pub use offsets::{ListedOffset, OffsetSpec};
pub use resource::{ConfigResource, Results, TopicPartition};
pub use scram::{ScramAlteration, ScramCredentialInfo, ScramMechanism};
pub use topics::{CreatedTopic, NewPartitions, NewTopic, PartitionDescription, TopicDescription, TopicListing};
