//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as an I/O-free
//! state machine, eager and cooperative (KIP-429) alike, over the reconcile/commit [`Core`] it
//! shares with the KIP-848 member.
//!
//! Inputs are the answers to the requests it asked for (`on_*`), the steps of a revocation and
//! commit answers (through the core, [`Machine::core_mut`], and [`Machine::released`]), time
//! (`tick`), and the application's wishes (subscribe, leave). Outputs are [`Action`]s taken with
//! [`Machine::next_action`], and [`Machine::deadline`], the next instant it wants a tick. One
//! group request is in flight at a time (commits are the core's, beside it); the driver sends
//! what it is told and feeds back what came of it, and nothing here knows about sockets or
//! clocks.
//!
//! Rules it keeps (Kafka's `AbstractCoordinator` and `ConsumerCoordinator`, KIP-394, KIP-345):
//! - MEMBER_ID_REQUIRED: join again at once with the member id the coordinator gave.
//! - UNKNOWN_MEMBER_ID: the membership is gone: owned partitions are lost, the member id is
//!   cleared, join again. ILLEGAL_GENERATION: lost too, the member id is kept.
//! - FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED, INCONSISTENT_GROUP_PROTOCOL,
//!   INVALID_SESSION_TIMEOUT, GROUP_MAX_SIZE_REACHED, UNSUPPORTED_VERSION: fatal.
//! - NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, a lost connection: find the coordinator again,
//!   keep the membership.
//! - REBALANCE_IN_PROGRESS on a heartbeat: join again. Eager: revoke everything first.
//!   Cooperative: keep what is owned and say so in the subscription.
//! - Cooperative: after SyncGroup, revoke owned − assigned; when anything was revoked, join
//!   again (the follow-up rebalance hands the freed partitions out).
//! - Static members (`group.instance.id`) never send LeaveGroup.
//! - While a revocation waits for the application, heartbeats go on: a lost membership is lost
//!   at once, a fatal code ends the member, anything else waits for the revocation's end.

use crate::group::action::{Action, Failure, Phase, Request, Stamp};
use crate::group::assignor::{MemberSubscription, PartitionAssignor, RebalanceProtocol};
use crate::group::core::Core;
use crate::group::protocol::{decode_assignment, decode_subscription, encode_assignment, encode_subscription};
use bytes::Bytes;
use krab_buffer::TopicPartition;
use krab_protocol::error_code::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The subscription metadata version krab sends (v1 carries owned partitions, v2 the generation).
const SUBSCRIPTION_VERSION: i16 = 2;
/// The assignment version krab sends.
const ASSIGNMENT_VERSION: i16 = 1;

/// The settings the machine runs by.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `group.instance.id` (static membership).
    pub(crate) instance_id: Option<String>,
    /// `session.timeout.ms`.
    pub(crate) session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub(crate) heartbeat_interval: Duration,
    /// `retry.backoff.ms`: the wait after a retriable failure.
    pub(crate) retry_backoff: Duration,
    /// `partition.assignment.strategy`, in order of preference.
    pub(crate) assignors: Vec<Arc<dyn PartitionAssignor>>,
    /// `enable.auto.commit`: revocations commit first.
    pub(crate) auto_commit: bool,
}

impl Settings {
    /// Cooperative only when every configured assignor is (KIP-429: one eager assignor makes the
    /// member eager, so that members can move from eager to cooperative one bounce at a time).
    pub(crate) fn protocol(&self) -> RebalanceProtocol {
        if !self.assignors.is_empty() && self.assignors.iter().all(|a| a.protocol() == RebalanceProtocol::Cooperative) {
            RebalanceProtocol::Cooperative
        } else {
            RebalanceProtocol::Eager
        }
    }
}

/// What to do once a revocation is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRevoke {
    Join,
    Leave,
    /// Cooperative: assign what SyncGroup added, then join again (the follow-up rebalance).
    AssignThenRejoin,
}

/// The classic group member.
#[derive(Debug)]
pub(crate) struct Machine {
    settings: Settings,
    phase: Phase,
    member_id: String,
    generation: i32,
    protocol: Option<String>,
    /// The topics subscribed to.
    topics: BTreeSet<String>,
    /// Partitions owned, the revocation in progress, commits, actions.
    pub(super) core: Core,
    /// Whether the coordinator is known (FindCoordinator answered since the last failure).
    coordinator: bool,
    /// A request is in flight (its answer pending).
    in_flight: bool,
    /// Join again once the current step is over (a subscription change, a follow-up rebalance).
    rejoin: bool,
    after_revoke: AfterRevoke,
    /// The revocation ended while a heartbeat was in flight: what follows it waits for the
    /// answer.
    resume_pending: bool,
    /// A heartbeat during a revocation failed: what follows the revocation waits until then.
    retry_at: Option<Instant>,
    /// The generation whose SyncGroup succeeded (heartbeats during a revocation go only for it).
    synced: i32,
    /// The leader's JoinGroup members, until partition counts arrive.
    members: Vec<MemberSubscription>,
    /// Next heartbeat (Stable), or when a retry may go (after a failure).
    next_at: Option<Instant>,
    /// Last successful heartbeat (or join): no answer for `session.timeout.ms` means the
    /// coordinator is unknown.
    alive_at: Instant,
    leaving: bool,
    /// [`Machine::poll_expired`] gave up the request in flight: its answer is dropped.
    abandoned: bool,
}

impl Machine {
    /// A member that has not joined yet.
    pub(crate) fn new(settings: Settings, now: Instant) -> Self {
        let auto_commit = settings.auto_commit;
        Machine {
            settings,
            phase: Phase::Unjoined,
            member_id: String::new(),
            generation: -1,
            protocol: None,
            topics: BTreeSet::new(),
            core: Core::new(auto_commit),
            coordinator: false,
            in_flight: false,
            rejoin: false,
            after_revoke: AfterRevoke::Join,
            resume_pending: false,
            retry_at: None,
            synced: -1,
            members: Vec::new(),
            next_at: Some(now),
            alive_at: now,
            leaving: false,
            abandoned: false,
        }
    }

    /// The phase.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The member id ("" before the first join).
    pub(crate) fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The generation (-1 when not in one).
    pub(crate) fn generation(&self) -> i32 {
        self.generation
    }

    /// Whether commits may go now (a member of a live generation, not mid-rebalance).
    pub(crate) fn can_commit(&self) -> bool {
        self.generation >= 0 && self.generation == self.synced && matches!(self.phase, Phase::Stable | Phase::Revoking)
    }

    /// The membership commits go under now, if any.
    pub(crate) fn stamp(&self) -> Option<Stamp> {
        self.can_commit().then(|| Stamp { generation: self.generation, member_id: self.member_id.clone() })
    }

    /// The partitions owned.
    pub(crate) fn owned(&self) -> &BTreeSet<TopicPartition> {
        self.core.owned()
    }

    /// The reconcile/commit core (commits, revocation steps).
    pub(crate) fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    /// The next action, if any.
    pub(crate) fn next_action(&mut self) -> Option<Action> {
        self.core.next_action()
    }

    /// When the machine next wants [`Machine::tick`].
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.in_flight || self.phase == Phase::Done {
            return None;
        }
        self.next_at
    }

    /// Subscribes to `topics`; a change makes the member join again.
    pub(crate) fn subscribe(&mut self, topics: BTreeSet<String>, now: Instant) {
        if topics == self.topics {
            return;
        }
        self.topics = topics;
        match self.phase {
            // Not while the coordinator is unknown: it joins once the coordinator is found.
            Phase::Stable if !self.in_flight && self.coordinator => self.start_rejoin(now),
            Phase::Done => {}
            _ => self.rejoin = true,
        }
        self.next_at = Some(self.next_at.map_or(now, |t| t.min(now)));
    }

    /// Leaves the group: owned partitions are revoked first; dynamic members then send
    /// LeaveGroup, static ones just stop.
    pub(crate) fn leave(&mut self, now: Instant) {
        if self.leaving || self.phase == Phase::Done {
            return;
        }
        self.leaving = true;
        if self.in_flight || self.phase == Phase::Revoking {
            return; // decided when the answer comes, or the revocation is over
        }
        self.begin_leave(now);
    }

    fn begin_leave(&mut self, now: Instant) {
        if !self.revoke_all(AfterRevoke::Leave, now) {
            self.send_leave(now);
        }
    }

    fn send_leave(&mut self, _now: Instant) {
        if self.settings.instance_id.is_none() && !self.member_id.is_empty() && self.coordinator {
            self.phase = Phase::Leaving;
            self.send(Request::Leave { member_id: self.member_id.clone() });
        } else {
            self.finish_leave();
        }
    }

    fn finish_leave(&mut self) {
        self.phase = Phase::Done;
        self.generation = -1;
        self.core.push(Action::Left);
    }

    fn send(&mut self, request: Request) {
        self.in_flight = true;
        self.core.push(Action::Send(request));
    }

    /// Time passed: sends what is due (FindCoordinator, JoinGroup, a heartbeat).
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.in_flight || self.phase == Phase::Done || self.next_at.is_none_or(|t| now < t) {
            return;
        }
        self.next_at = None;
        if self.leaving && matches!(self.phase, Phase::Stable | Phase::Unjoined) {
            self.begin_leave(now);
            return;
        }
        match self.phase {
            Phase::Unjoined => {
                if self.coordinator {
                    self.start_join(now);
                } else {
                    self.phase = Phase::Finding;
                    self.send(Request::FindCoordinator);
                }
            }
            Phase::Stable => {
                if !self.coordinator {
                    self.phase = Phase::Unjoined;
                    self.next_at = Some(now);
                    self.tick(now);
                } else if self.rejoin {
                    self.start_rejoin(now);
                } else {
                    self.send(Request::Heartbeat { generation: self.generation, member_id: self.member_id.clone() });
                }
            }
            // The session is kept alive while the application finishes with what is revoked.
            Phase::Revoking if self.coordinator && self.generation >= 0 && self.generation == self.synced => {
                self.send(Request::Heartbeat { generation: self.generation, member_id: self.member_id.clone() });
            }
            // Joining, Syncing, Finding, Leaving: their answers drive them. Assigning waits for
            // the driver.
            _ => {}
        }
    }

    /// Joins again from Stable: eager revokes everything first.
    fn start_rejoin(&mut self, now: Instant) {
        self.rejoin = false;
        match self.settings.protocol() {
            RebalanceProtocol::Eager => {
                if !self.revoke_all(AfterRevoke::Join, now) {
                    self.start_join(now);
                }
            }
            RebalanceProtocol::Cooperative => {
                // Topics no longer subscribed are revoked before joining.
                let gone: Vec<TopicPartition> =
                    self.owned().iter().filter(|tp| !self.topics.contains(&*tp.topic)).cloned().collect();
                if gone.is_empty() {
                    self.start_join(now);
                } else {
                    self.core.revoke(gone, Vec::new());
                    self.revoking(AfterRevoke::Join, now);
                }
            }
        }
    }

    /// Revokes everything owned, then `then` (false: nothing is owned, nothing to do).
    fn revoke_all(&mut self, then: AfterRevoke, now: Instant) -> bool {
        let revoking = self.core.revoke_all();
        if revoking {
            self.revoking(then, now);
        }
        revoking
    }

    /// A revocation began in the core: wait for it, heartbeating meanwhile so that a slow
    /// acknowledgement does not cost the membership.
    fn revoking(&mut self, then: AfterRevoke, now: Instant) {
        self.phase = Phase::Revoking;
        self.after_revoke = then;
        self.resume_pending = false;
        self.next_at = Some(now + self.settings.heartbeat_interval);
    }

    fn start_join(&mut self, _now: Instant) {
        if self.topics.is_empty() && !self.leaving {
            // Nothing to consume: stay out until subscribed.
            self.phase = Phase::Unjoined;
            return;
        }
        self.rejoin = false;
        self.phase = Phase::Joining;
        let topics: Vec<String> = self.topics.iter().cloned().collect();
        // Eager owns nothing when it joins, so its subscription carries no generation either:
        // the same bytes every time, which lets a restarted static member rejoin without a
        // rebalance (the coordinator compares a static member's metadata).
        let (owned, generation): (Vec<TopicPartition>, i32) = match self.settings.protocol() {
            RebalanceProtocol::Cooperative => (self.owned().iter().cloned().collect(), self.generation),
            RebalanceProtocol::Eager => (Vec::new(), -1),
        };
        let metadata = encode_subscription(&topics, &owned, generation, SUBSCRIPTION_VERSION);
        let protocols = self.settings.assignors.iter().map(|a| (a.name().to_string(), metadata.clone())).collect();
        self.send(Request::Join { member_id: self.member_id.clone(), protocols });
    }

    /// The application acknowledged the revocation (or nobody listens): the core removes the
    /// partitions and assigns what waited; then the member goes on (once a heartbeat in flight
    /// is answered).
    pub(crate) fn released(&mut self, now: Instant) {
        if self.core.released() && self.phase == Phase::Revoking {
            if self.in_flight {
                self.resume_pending = true;
            } else {
                self.after_revocation(now);
            }
        }
    }

    /// What follows a revocation: join, leave, or (cooperative) the follow-up rebalance; after a
    /// heartbeat failed meanwhile, not before the backoff, and through FindCoordinator when it
    /// lost the coordinator.
    fn after_revocation(&mut self, now: Instant) {
        if self.phase != Phase::Revoking {
            return;
        }
        let due = self.retry_at.take().filter(|t| *t > now).unwrap_or(now);
        match self.after_revoke {
            AfterRevoke::Leave => self.send_leave(now),
            // What a cooperative member still owns goes before the leave.
            AfterRevoke::Join if self.leaving => self.begin_leave(now),
            AfterRevoke::Join => {
                if self.coordinator && due == now {
                    self.start_join(now);
                } else {
                    self.phase = Phase::Unjoined;
                    self.rejoin = true;
                    self.next_at = Some(due);
                }
            }
            AfterRevoke::AssignThenRejoin => {
                self.phase = if self.coordinator { Phase::Stable } else { Phase::Unjoined };
                // The follow-up rebalance, at once.
                self.rejoin = true;
                self.next_at = Some(due);
                self.alive_at = now;
                if self.leaving {
                    self.begin_leave(now);
                }
            }
        }
    }

    /// Declares every owned partition lost and forgets the generation.
    fn lose(&mut self) {
        self.generation = -1;
        self.core.lose();
    }

    fn fatal(&mut self, code: ErrorCode) {
        self.lose();
        self.phase = Phase::Done;
        self.core.push(Action::Fatal(code));
    }

    fn retry_after(&mut self, now: Instant) {
        self.next_at = Some(now + self.settings.retry_backoff);
    }

    /// The coordinator is unknown: find it again (the membership is kept).
    fn coordinator_lost(&mut self, now: Instant) {
        self.coordinator = false;
        if self.leaving && self.owned().is_empty() && !self.core.revoking() {
            self.finish_leave();
            return;
        }
        // A member mid-join must join again anyway (the generation it has, if any, is being
        // replaced or was never synced); a stable one resumes heartbeating.
        if self.phase != Phase::Stable {
            self.phase = Phase::Unjoined;
            self.rejoin = true;
        }
        self.retry_after(now);
    }

    /// Handles a code every group API may answer; true when handled.
    fn common(&mut self, failure: Failure, now: Instant) -> bool {
        match failure {
            Failure::Transport
            | Failure::Code(
                ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::RequestTimedOut,
            ) => {
                self.coordinator_lost(now);
                true
            }
            Failure::Code(code) if fatal_code(failure).is_some() => {
                self.fatal(code);
                true
            }
            Failure::Code(ErrorCode::CoordinatorLoadInProgress) => {
                if self.phase != Phase::Stable {
                    self.phase = Phase::Unjoined;
                }
                self.retry_after(now);
                true
            }
            _ => false,
        }
    }

    /// FindCoordinator's answer (the driver resolves the broker itself).
    pub(crate) fn on_coordinator(&mut self, result: Result<(), Failure>, now: Instant) {
        let fatal = match result {
            Err(Failure::Code(code @ (ErrorCode::GroupAuthorizationFailed | ErrorCode::InvalidGroupId))) => Some(code),
            _ => None,
        };
        if self.abandoned(fatal, now) || self.phase != Phase::Finding {
            return;
        }
        self.in_flight = false;
        match result {
            Ok(()) => {
                self.coordinator = true;
                if self.leaving {
                    self.phase = Phase::Unjoined;
                    self.begin_leave(now);
                    return;
                }
                // A member that still has a generation resumes heartbeating; others join.
                if self.generation >= 0 && !self.rejoin {
                    self.phase = Phase::Stable;
                    self.alive_at = now;
                    self.next_at = Some(now);
                } else {
                    // Eager revokes first; cooperative revokes topics no longer subscribed.
                    self.phase = Phase::Unjoined;
                    self.start_rejoin(now);
                }
            }
            Err(Failure::Code(code @ (ErrorCode::GroupAuthorizationFailed | ErrorCode::InvalidGroupId))) => {
                self.fatal(code)
            }
            Err(_) => {
                self.phase = Phase::Unjoined;
                self.retry_after(now);
            }
        }
    }

    /// JoinGroup's answer.
    pub(crate) fn on_join(&mut self, result: Result<Joined, (Failure, String)>, now: Instant) {
        let fatal = result.as_ref().err().and_then(|(f, _)| fatal_code(*f));
        if self.abandoned(fatal, now) || self.phase != Phase::Joining {
            return;
        }
        self.in_flight = false;
        let joined = match result {
            Ok(j) => j,
            Err((failure, member_id)) => {
                match failure {
                    Failure::Code(ErrorCode::MemberIdRequired) => {
                        // KIP-394: the coordinator named our id; join again with it at once.
                        self.member_id = member_id;
                        self.phase = Phase::Unjoined;
                        self.next_at = Some(now);
                    }
                    Failure::Code(ErrorCode::UnknownMemberId) => {
                        self.member_id.clear();
                        self.lose();
                        self.phase = Phase::Unjoined;
                        self.next_at = Some(now);
                    }
                    Failure::Code(ErrorCode::IllegalGeneration) => {
                        self.lose();
                        self.phase = Phase::Unjoined;
                        self.next_at = Some(now);
                    }
                    Failure::Code(ErrorCode::RebalanceInProgress) => {
                        self.phase = Phase::Unjoined;
                        self.next_at = Some(now);
                    }
                    other if self.common(other, now) => {}
                    _ => {
                        self.phase = Phase::Unjoined;
                        self.retry_after(now);
                    }
                }
                if self.leaving && self.phase == Phase::Unjoined {
                    self.begin_leave(now);
                }
                return;
            }
        };
        self.member_id = joined.member_id.clone();
        self.generation = joined.generation;
        self.protocol = joined.protocol.clone();
        if self.leaving {
            self.phase = Phase::Unjoined;
            self.begin_leave(now);
            return;
        }
        let Some(protocol) = joined.protocol else {
            self.fatal(ErrorCode::InconsistentGroupProtocol);
            return;
        };
        if joined.leader == joined.member_id {
            self.members = joined
                .members
                .iter()
                .map(|(id, instance, metadata)| {
                    decode_subscription(id, instance.clone(), metadata).unwrap_or_else(|_| MemberSubscription {
                        member_id: id.clone(),
                        group_instance_id: instance.clone(),
                        topics: Vec::new(),
                        owned: Vec::new(),
                        generation: -1,
                    })
                })
                .collect();
            let mut topics: BTreeSet<String> = BTreeSet::new();
            for m in &self.members {
                topics.extend(m.topics.iter().cloned());
            }
            self.phase = Phase::Assigning;
            self.core.push(Action::Metadata(topics.into_iter().collect()));
        } else {
            self.phase = Phase::Syncing;
            self.send(Request::Sync {
                generation: self.generation,
                member_id: self.member_id.clone(),
                protocol,
                assignments: Vec::new(),
            });
        }
    }

    /// The partition counts the leader asked for (topics missing: not assignable).
    pub(crate) fn on_partition_counts(&mut self, counts: &BTreeMap<String, i32>, _now: Instant) {
        if self.phase != Phase::Assigning {
            return;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let assignor = self.settings.assignors.iter().find(|a| a.name() == protocol).cloned();
        let members = std::mem::take(&mut self.members);
        let plan = match assignor {
            Some(a) => a.assign(counts, &members),
            None => {
                self.fatal(ErrorCode::InconsistentGroupProtocol);
                return;
            }
        };
        let assignments = members
            .iter()
            .map(|m| {
                let parts = plan.get(&m.member_id).map(Vec::as_slice).unwrap_or(&[]);
                (m.member_id.clone(), encode_assignment(parts, ASSIGNMENT_VERSION))
            })
            .collect();
        self.phase = Phase::Syncing;
        self.send(Request::Sync {
            generation: self.generation,
            member_id: self.member_id.clone(),
            protocol,
            assignments,
        });
    }

    /// SyncGroup's answer: this member's encoded assignment.
    pub(crate) fn on_sync(&mut self, result: Result<Bytes, Failure>, now: Instant) {
        if self.abandoned(result.as_ref().err().and_then(|f| fatal_code(*f)), now) || self.phase != Phase::Syncing {
            return;
        }
        self.in_flight = false;
        let bytes = match result {
            Ok(b) => b,
            Err(failure) => {
                match failure {
                    Failure::Code(ErrorCode::UnknownMemberId) => {
                        self.member_id.clear();
                        self.lose();
                        self.phase = Phase::Unjoined;
                        self.next_at = Some(now);
                    }
                    Failure::Code(ErrorCode::IllegalGeneration) => {
                        self.lose();
                        self.phase = Phase::Unjoined;
                        self.next_at = Some(now);
                    }
                    Failure::Code(ErrorCode::RebalanceInProgress) => {
                        self.phase = Phase::Unjoined;
                        self.next_at = Some(now);
                    }
                    other if self.common(other, now) => {
                        if self.phase == Phase::Stable {
                            self.phase = Phase::Unjoined;
                        }
                    }
                    _ => {
                        self.phase = Phase::Unjoined;
                        self.retry_after(now);
                    }
                }
                if self.leaving && self.phase == Phase::Unjoined {
                    self.begin_leave(now);
                }
                return;
            }
        };
        self.synced = self.generation;
        let assigned: BTreeSet<TopicPartition> = match decode_assignment(&bytes) {
            Ok(a) => a.into_iter().collect(),
            Err(_) => {
                // An assignment nobody can read: join again rather than guess.
                self.phase = Phase::Unjoined;
                self.retry_after(now);
                return;
            }
        };
        self.alive_at = now;
        self.next_at = Some(now + self.settings.heartbeat_interval);
        // Cooperative: what moves is given up first; what was added waits for that.
        if self.core.reconcile(&assigned) {
            self.revoking(AfterRevoke::AssignThenRejoin, now);
            return;
        }
        self.phase = Phase::Stable;
        if self.leaving {
            self.begin_leave(now);
        } else if self.rejoin {
            self.next_at = Some(now);
        }
    }

    /// A heartbeat's answer.
    pub(crate) fn on_heartbeat(&mut self, result: Result<(), Failure>, now: Instant) {
        if self.abandoned(result.err().and_then(fatal_code), now)
            || !matches!(self.phase, Phase::Stable | Phase::Revoking)
            || !self.in_flight
        {
            return;
        }
        self.in_flight = false;
        if self.phase == Phase::Revoking {
            self.on_keepalive(result, now);
            if std::mem::take(&mut self.resume_pending) {
                self.after_revocation(now);
            }
            return;
        }
        match result {
            Ok(()) => {
                self.alive_at = now;
                self.next_at = Some(now + self.settings.heartbeat_interval);
            }
            Err(Failure::Code(ErrorCode::RebalanceInProgress)) => {
                self.alive_at = now;
                self.start_rejoin(now);
            }
            Err(Failure::Code(ErrorCode::UnknownMemberId)) => {
                self.member_id.clear();
                self.lose();
                self.phase = Phase::Unjoined;
                self.next_at = Some(now);
            }
            Err(Failure::Code(ErrorCode::IllegalGeneration)) => {
                self.lose();
                self.phase = Phase::Unjoined;
                self.next_at = Some(now);
            }
            Err(other) => {
                if !self.common(other, now) {
                    self.retry_after(now);
                }
                // No answer for a whole session: the coordinator has surely expired us.
                if self.phase == Phase::Stable && now.duration_since(self.alive_at) >= self.settings.session_timeout {
                    self.lose();
                    self.phase = Phase::Unjoined;
                }
            }
        }
        if self.leaving && matches!(self.phase, Phase::Stable | Phase::Unjoined) && !self.in_flight {
            self.begin_leave(now);
        }
    }

    /// A heartbeat's answer during a revocation. Only the session is at stake: a lost membership
    /// is lost at once (nothing more may be committed under it), a fatal code ends the member;
    /// anything else is taken up once the revocation is over.
    fn on_keepalive(&mut self, result: Result<(), Failure>, now: Instant) {
        match result {
            Ok(()) => {
                self.alive_at = now;
                self.next_at = Some(now + self.settings.heartbeat_interval);
            }
            Err(Failure::Code(ErrorCode::RebalanceInProgress)) => {
                self.alive_at = now;
                self.rejoin = true;
                self.next_at = Some(now + self.settings.heartbeat_interval);
            }
            Err(Failure::Code(code @ (ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration))) => {
                if code == ErrorCode::UnknownMemberId {
                    self.member_id.clear();
                }
                // The revocation is lost with the rest: go on at once.
                self.lose();
                self.after_revocation(now);
            }
            Err(failure) => {
                if let Some(code) = fatal_code(failure) {
                    self.fatal(code);
                    return;
                }
                self.retry_at = Some(now + self.settings.retry_backoff);
                if matches!(
                    failure,
                    Failure::Transport
                        | Failure::Code(
                            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::RequestTimedOut
                        )
                ) {
                    self.coordinator = false;
                    self.next_at = None;
                } else {
                    self.next_at = self.retry_at;
                }
            }
        }
    }

    /// LeaveGroup's answer (whatever it is, the member is out).
    pub(crate) fn on_leave(&mut self, _result: Result<(), Failure>, now: Instant) {
        if self.phase != Phase::Leaving {
            return;
        }
        self.in_flight = false;
        self.member_id.clear();
        if self.leaving {
            self.finish_leave();
        } else {
            // The LeaveGroup of poll_expired: out of the group, not done. It joins again on
            // poll_resumed (at once if that came while this was in flight).
            self.phase = Phase::Unjoined;
            self.next_at = self.next_at.map(|_| now);
        }
    }

    /// `max.poll.interval.ms` passed without the application polling: a dynamic member leaves
    /// (its partitions are lost to it), a static one stays silent until its session expires.
    /// It joins again when the application polls ([`Machine::poll_resumed`]).
    pub(crate) fn poll_expired(&mut self, now: Instant) {
        if self.phase == Phase::Done || self.generation < 0 || self.leaving {
            return;
        }
        self.lose();
        self.next_at = None;
        if self.in_flight {
            // Given up now: its answer is dropped when it comes, and the LeaveGroup goes then.
            self.abandoned = true;
            self.phase = Phase::Unjoined;
        } else {
            self.expire(now);
        }
    }

    /// After [`Machine::poll_expired`]: a dynamic member sends LeaveGroup (when it can), a
    /// static one stays silent.
    fn expire(&mut self, now: Instant) {
        if self.settings.instance_id.is_none() && self.coordinator && !self.member_id.is_empty() {
            self.send(Request::Leave { member_id: self.member_id.clone() });
            self.phase = Phase::Leaving;
            self.member_id.clear();
        } else {
            self.phase = Phase::Unjoined;
        }
        self.next_at = self.next_at.map(|_| now);
    }

    /// Drops the answer to a request [`Machine::poll_expired`] gave up on (true when this was
    /// that answer): only a fatal code counts; then the expiry (or the leave) goes on.
    fn abandoned(&mut self, fatal: Option<ErrorCode>, now: Instant) -> bool {
        if !self.abandoned {
            return false;
        }
        self.abandoned = false;
        self.in_flight = false;
        if let Some(code) = fatal {
            self.fatal(code);
        } else if self.leaving {
            self.begin_leave(now);
        } else {
            self.expire(now);
        }
        true
    }

    /// The application polls again after [`Machine::poll_expired`] (also while the expiry's
    /// LeaveGroup, or a request given up, is in flight: the member joins once it is answered).
    pub(crate) fn poll_resumed(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Unjoined | Phase::Leaving) && !self.leaving && self.next_at.is_none() {
            self.next_at = Some(now);
        }
    }
}

/// The code, when it ends the member (answered to JoinGroup, SyncGroup or a heartbeat).
fn fatal_code(failure: Failure) -> Option<ErrorCode> {
    match failure {
        Failure::Code(
            code @ (ErrorCode::FencedInstanceId
            | ErrorCode::GroupAuthorizationFailed
            | ErrorCode::InconsistentGroupProtocol
            | ErrorCode::InvalidSessionTimeout
            | ErrorCode::GroupMaxSizeReached
            | ErrorCode::UnsupportedVersion
            | ErrorCode::InvalidGroupId),
        ) => Some(code),
        _ => None,
    }
}

/// A successful JoinGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Joined {
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// (member id, group instance id, subscription metadata), for the leader.
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
