//! krab's cluster layer: the only crate that owns sockets and correlation ids.
//!
//! - [`handshake`] turns any byte stream into a pipelined broker connection: a cheap-to-clone
//!   [`BrokerClient`] and the [`Connection`] driver that owns the socket.
//! - [`negotiate`] runs the ApiVersions exchange (with the KIP-511 fallback); [`Broker`] is a
//!   connection plus the versions agreed with the broker.
//! - [`Cluster`] bootstraps, keeps a lazy pool of broker connections with reconnect backoff, and
//!   publishes metadata as an immutable [`ClusterSnapshot`] read without locks.
//! - [`MetadataResolver`] is the topic resolver: a `tower::Service<ResolveRequest>` that
//!   coalesces callers into single Metadata requests. Swap it for your own if you like.
//! - [`rebalance`] decides which failures mean "re-resolve this partition".
//! - The transport is a seam: any `tower::Service<BrokerAddr>` yielding a byte stream. With the
//!   `tls` feature (on by default), [`TlsTransport`] is TLS over TCP (`security.protocol=SSL`).
//! - [`sasl`]: PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER on any transport
//!   (`SASL_PLAINTEXT`, `SASL_SSL`), with re-authentication before the session ends (KIP-368).
//! - [`telemetry`]: every request in a `krab.request` span; request, byte, latency and metadata
//!   metrics through the `metrics` facade (names shared with the producer and consumer).
#![forbid(unsafe_code)]

mod admin;
mod broker;
mod cluster;
mod connection;
mod coordinator;
mod error;
pub mod rebalance;
mod resolver;
pub mod sasl;
mod security;
mod snapshot;
pub mod telemetry;
#[cfg(feature = "tls")]
mod tls;
pub mod transport;
mod versions;

pub use admin::NewTopic;
pub use broker::Broker;
pub use cluster::{BoxTransport, Cluster, ClusterConfig};
pub use connection::{BrokerClient, Connection, ConnectionConfig, handshake};
pub use error::{ClusterError, DisconnectReason, RequestError, TlsFailure, TlsFailureKind};
pub use resolver::{MetadataResolver, ResolveError, ResolveRequest, ResolverConfig};
pub use sasl::{AuthFailure, SaslConfig, SaslMechanism, Secret};
pub use security::{
    InvalidSecurityProperty, SECURITY_PROPERTIES, SaslSettings, SecurityConfig, SecurityProtocol, TlsSettings,
    TokenProviderRef,
};
pub use snapshot::{BrokerInfo, ClusterSnapshot, PartitionInfo, TopicInfo};
#[cfg(feature = "tls")]
pub use tls::{TlsStream, TlsTransport};
pub use transport::{BrokerAddr, TcpTransport};
pub use versions::{ApiVersions, negotiate};

/// A type-erased resolver, for code that takes whatever resolver the user supplies.
pub type BoxResolver = tower::util::BoxCloneSyncService<ResolveRequest, std::sync::Arc<ClusterSnapshot>, ResolveError>;
