//! In-memory fake Kafka brokers for krab's hermetic tests (never a dependency of a library).
//!
//! - [`FakeBroker`] serves the broker side of a `tokio::io::duplex` (or of loopback TCP
//!   connections): it reads frames with krab's `FrameCodec`, decodes the request header and body,
//!   and answers through a per-test handler `Fn(RequestHeader, AnyRequest) -> Reply`. Replies can
//!   be sent at once, later, out of order ([`Reply::Hold`] hands the request to the test, which
//!   answers it whenever it likes), as raw bytes, never, or by closing the connection.
//! - Default handlers answer ApiVersions (every `ApiKey::ALL` at `api.versions()`, with the
//!   KIP-511 fallback answer when asked a version above the advertised one), Metadata (from a
//!   configurable cluster: leaderless partitions, topic errors, auto-creation answered with
//!   LEADER_NOT_AVAILABLE first as Apache Kafka does), CreateTopics, DeleteTopics,
//!   InitProducerId (fresh producer ids, epoch bumps, scripted errors) and Produce.
//! - Produce is answered from a per-partition log ([`PartitionLog`]) that checks producer ids,
//!   epochs and sequence numbers the way a real broker does (DUPLICATE_SEQUENCE_NUMBER,
//!   OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH), and follows per-partition scripts
//!   ([`ProduceStep`]: error codes, delays, appending then hanging or dropping the connection).
//! - [`FakeCoordinator`] is an in-memory group coordinator (classic protocol: FindCoordinator,
//!   JoinGroup with KIP-394 member ids, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit fenced by
//!   generation and member id, OffsetFetch) that a test's handler delegates to, with a log of
//!   commits, scripted error codes per API and a coordinator that can move between brokers.
//! - [`FakeCluster`] is a set of fake brokers sharing one state, and [`FakeTransport`] is a
//!   `tower::Service<BrokerAddr>` for `Cluster::connect_with` that maps broker addresses to them
//!   in memory, with per-broker "down" (connection refused) and "hang" switches.
//! - [`observe`]: a `metrics` recorder and a tracing collector for tests of krab's telemetry.
#![forbid(unsafe_code)]

mod broker;
mod cluster;
mod coordinator;
mod log;
pub mod observe;
mod reply;
mod state;
mod transport;

pub use broker::{FakeBroker, Stats};
pub use cluster::FakeCluster;
pub use coordinator::{CommitRecord, CommittedOffset, FakeCoordinator, GroupState, GroupView, LeaveRecord};
pub use log::{PartitionLog, ProduceStep, StoredBatch};
pub use reply::{Held, IntoAny, Reply};
pub use state::{ClusterState, FakePartition};
pub use transport::FakeTransport;

use std::sync::{Mutex, MutexGuard};

/// The port every in-memory fake broker advertises (hosts differ: `broker-<id>`).
pub const FAKE_PORT: u16 = 9092;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
