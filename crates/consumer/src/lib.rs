//! krab's consumer: one fetch task per broker, a bounded prefetch buffer, and records delivered
//! through a cancel-safe `Stream`.
//!
//! ```text
//! let consumer = Consumer::connect(ConsumerConfig::new("localhost:9092")?).await?;
//! consumer.assign([(TopicPartition::new("events", 0), Offset::Earliest)]);
//! while let Some(record) = consumer.next().await { let record = record?; ... }
//! ```
//!
//! See the crate's README for the fetch path and its invariants.
#![forbid(unsafe_code)]

mod config;
mod consumer;
mod error;
mod fetcher;
pub mod group;
mod leaders;
mod records;
mod session;
mod shared;
mod state;
mod telemetry;

pub use config::{AutoOffsetReset, ConfigError, ConsumerConfig, CustomAssignors, GroupProtocol};
pub use consumer::Consumer;
pub use error::{Error, ErrorKind};
pub use group::assignor::{
    CooperativeStickyAssignor, MemberSubscription, PartitionAssignor, RangeAssignor, RebalanceProtocol,
    RoundRobinAssignor,
};
pub use group::events::{RebalanceEvent, RebalanceEvents, RevokeAck};
pub use krab_buffer::TopicPartition;
pub use krab_cluster::{
    SaslConfig, SaslMechanism, SecurityConfig, SecurityProtocol, TlsFailure, TlsFailureKind, TlsSettings,
};
pub use krab_protocol::records::{RecordHeader, TimestampType};
pub use records::IsolationLevel;
pub use state::{ConsumerRecord, Offset, PartitionRecords};
