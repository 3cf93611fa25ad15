//! What the group members (classic and KIP-848) and the driver say to each other: the requests
//! a member asks for, the actions it hands the driver, and the commit vocabulary of the core
//! they share. Nothing here does anything.

use bytes::Bytes;
use krab_buffer::TopicPartition;
use krab_protocol::error_code::ErrorCode;

/// An offset to commit: partition, next offset, leader epoch of the last record, metadata.
pub(crate) type CommitOffset = (TopicPartition, i64, Option<i32>, String);

/// An OffsetCommit to send, stamped when it is sent with the membership it is sent under.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CommitRequest {
    /// The offsets.
    pub(crate) offsets: Vec<CommitOffset>,
    /// The generation (classic) or member epoch (KIP-848).
    pub(crate) generation: i32,
    /// The member id.
    pub(crate) member_id: String,
}

/// What came of an OffsetCommit: each partition's code, or no answer.
pub(crate) type CommitResult = Result<Vec<(TopicPartition, ErrorCode)>, Failure>;

/// Why an application's commit failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommitError {
    /// The member is not in a generation (rebalancing, or out of the group): nothing to commit
    /// under.
    NotMember,
    /// The coordinator did not answer.
    Unanswered,
    /// The coordinator refused this partition's offset with this code.
    Refused(TopicPartition, ErrorCode),
}

/// The membership commits go under (a member that may commit now has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The generation (classic) or member epoch (KIP-848).
    pub(crate) generation: i32,
    /// The member id.
    pub(crate) member_id: String,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The coordinator answered this code.
    Code(ErrorCode),
    /// The request did not get an answer (connection lost, timed out, coordinator unreachable).
    Transport,
}

/// A request the driver must send to the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    /// FindCoordinator for the group.
    FindCoordinator,
    /// JoinGroup.
    Join {
        /// The member id ("" the first time).
        member_id: String,
        /// The protocols (assignor names) and their subscription metadata, in preference order.
        protocols: Vec<(String, Bytes)>,
    },
    /// SyncGroup; the leader sends every member's assignment.
    Sync {
        /// The generation joined.
        generation: i32,
        /// This member's id.
        member_id: String,
        /// The protocol chosen.
        protocol: String,
        /// Member id → encoded assignment (empty unless leader).
        assignments: Vec<(String, Bytes)>,
    },
    /// Heartbeat.
    Heartbeat {
        /// The generation.
        generation: i32,
        /// The member id.
        member_id: String,
    },
    /// LeaveGroup (dynamic members only).
    Leave {
        /// The member id.
        member_id: String,
    },
    /// ConsumerGroupHeartbeat (KIP-848): join (epoch 0), heartbeat, acknowledge, leave (-1, -2).
    ConsumerHeartbeat {
        /// The member id ("" to be given one).
        member_id: String,
        /// The member epoch.
        epoch: i32,
        /// The subscription (`None` on a leave).
        topics: Option<Vec<String>>,
        /// `group.remote.assignor`.
        assignor: Option<String>,
        /// The partitions owned (`None` on a leave).
        owned: Option<Vec<TopicPartition>>,
    },
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Send this request; answer with the matching `on_*`.
    Send(Request),
    /// The leader needs these topics' partition counts: answer with `on_partition_counts`.
    Metadata(Vec<String>),
    /// A revocation begins: stop handing these partitions' records to the application, then
    /// answer with `paused` and their positions (read at once, under the same lock).
    Revoke(Vec<TopicPartition>),
    /// Send this OffsetCommit (at most one is in flight); answer with `on_commit`.
    Commit(CommitRequest),
    /// The outcome of the application's commit `id`.
    Committed {
        /// The id the commit was asked with.
        id: u64,
        /// What came of it.
        result: Result<(), CommitError>,
    },
    /// Tell the application these partitions are revoked and, once it acknowledges (at once
    /// when nobody listens), answer with `released`.
    Release(Vec<TopicPartition>),
    /// Stop fetching these (revoked) partitions and drop what they buffered.
    Remove(Vec<TopicPartition>),
    /// Start fetching these partitions (at their committed offsets) and tell the application.
    Assign(Vec<TopicPartition>),
    /// These partitions are no longer owned and may already be someone else's: stop fetching
    /// them without committing, and tell the application.
    Lost(Vec<TopicPartition>),
    /// The member cannot go on (the code says why).
    Fatal(ErrorCode),
    /// The member left the group (after `leave`).
    Left,
}

/// Where the member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No coordinator known: FindCoordinator goes when `retry_at` allows.
    Unjoined,
    /// FindCoordinator in flight.
    Finding,
    /// Waiting for the driver to finish a revocation before joining (eager) or going on.
    Revoking,
    /// JoinGroup in flight.
    Joining,
    /// The leader waits for partition counts.
    Assigning,
    /// SyncGroup in flight.
    Syncing,
    /// A member of the current generation, heartbeating.
    Stable,
    /// LeaveGroup in flight, or about to be.
    Leaving,
    /// Out of the group for good (left, or fatal).
    Done,
}
