//! krab's producer: a message-based design that keeps unaffected partitions flowing while the
//! cluster moves partition leaders.
//!
//! ```text
//! Producer::send ──(bounded queue)────► flush loop ──► one sender task per broker ──► Produce
//!   (reserve buffer.memory)            (owns the        (pipelined requests)
//!                                       accumulator)  ◄──(outcomes as messages)──┘
//! ```
//!
//! - [`Producer`] is `Clone + Send + Sync`; `send` waits only while the buffer is full, never on
//!   the network, and returns a [`DeliveryFuture`] resolving to [`RecordMetadata`].
//! - The flush loop is the only owner of the send buffer: no mutex around it, no lock held
//!   across I/O.
//! - A rebalancing error (leader moved, connection to the leader failed) stalls only the
//!   partitions concerned, asks the resolver once for all of them, and moves their batches to the
//!   new leader in order; every other partition keeps sending.
//! - Idempotence (on by default when the broker supports it): producer id, epoch and
//!   per-partition sequence numbers, so retries never duplicate.
#![forbid(unsafe_code)]

mod command;
mod config;
mod error;
mod flush;
mod inbox;
mod partitioner;
mod producer;
mod record;
mod sender;
mod stats;
mod telemetry;
mod time;

pub use config::{Acks, ConfigError, DEFAULT_DELIVERY_TIMEOUT, ProducerConfig};
pub use error::{Error, ErrorKind};
pub use krab_buffer::TopicPartition;
pub use krab_cluster::{
    SaslConfig, SaslMechanism, SecurityConfig, SecurityProtocol, TlsFailure, TlsFailureKind, TlsSettings,
};
pub use krab_protocol::records::Compression;
pub use partitioner::{
    DefaultPartitioner, PartitionInfo, Partitioner, PartitionerKind, RoundRobinPartitioner, UnknownPartitioner,
    java_default_partition, murmur2,
};
pub use producer::{Producer, TrySendError};
pub use record::{DeliveryFuture, Record, RecordMetadata};
pub use stats::PartitionStats;
