//! The KIP-848 consumer group protocol (`group.protocol=consumer`) as an I/O-free state
//! machine: one request, ConsumerGroupHeartbeat, carries the member's subscription and the
//! partitions it owns; the coordinator answers with the member's epoch and its target
//! assignment, computed by a server-side assignor (`group.remote.assignor`).
//!
//! Reconciliation, in the [`Core`] it shares with the classic member: partitions owned but not
//! in the target are revoked first (committed, told to the application, removed); then the
//! target's new partitions are assigned; then a heartbeat at once acknowledges the new owned set (the coordinator hands a revoked partition to its next
//! owner only once its previous owner's heartbeat no longer lists it).
//!
//! Rules it keeps:
//! - Join with epoch 0; leave with epoch -1 (a static member: -2). A negative epoch in a
//!   successful answer is ignored.
//! - FENCED_MEMBER_EPOCH: owned partitions are lost; join again at epoch 0 with the same member
//!   id (a new id would strand partitions). UNKNOWN_MEMBER_ID: lost; join again with a new id.
//! - NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, a lost connection: find the coordinator again.
//!   The next heartbeat is built afresh from the current state, never a replay of the lost one.
//! - FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED, UNSUPPORTED_ASSIGNOR, GROUP_MAX_SIZE_REACHED,
//!   INVALID_REQUEST, UNSUPPORTED_VERSION: fatal. UNRELEASED_INSTANCE_ID (a static member's
//!   previous incarnation still known): retry after the backoff.
//!
//! It speaks the same [`Action`]s as the classic machine, so the driver carries out both alike.
//! No heartbeat goes while a revocation waits for the application (the coordinator's rebalance
//! timeout bounds it, as the acknowledgement's wait does).

use crate::group::action::{Action, Failure, Phase, Request, Stamp};
use crate::group::core::Core;
use krab_buffer::TopicPartition;
use krab_protocol::error_code::ErrorCode;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The settings the machine runs by.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `group.instance.id`.
    pub(crate) instance_id: Option<String>,
    /// `group.remote.assignor` (`None`: the broker's default).
    pub(crate) assignor: Option<String>,
    /// `retry.backoff.ms`.
    pub(crate) retry_backoff: Duration,
    /// `enable.auto.commit`: revocations commit first.
    pub(crate) auto_commit: bool,
}

/// A successful ConsumerGroupHeartbeat answer, topic ids resolved to names by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The member id (the coordinator names it on the first join).
    pub(crate) member_id: Option<String>,
    /// The member epoch.
    pub(crate) epoch: i32,
    /// How often to heartbeat.
    pub(crate) interval: Duration,
    /// The target assignment, when it changed (`None`: unchanged).
    pub(crate) assignment: Option<BTreeSet<TopicPartition>>,
}

/// The KIP-848 group member.
#[derive(Debug)]
pub(crate) struct Kip848 {
    settings: Settings,
    phase: Phase,
    member_id: String,
    epoch: i32,
    topics: BTreeSet<String>,
    /// Partitions owned, the revocation in progress, commits, actions.
    pub(super) core: Core,
    coordinator: bool,
    in_flight: bool,
    /// The last heartbeat carried the full state (subscription, owned); after a failure or a
    /// change the next one does again.
    interval: Duration,
    next_at: Option<Instant>,
    leaving: bool,
    /// `max.poll.interval.ms` passed: out of the group until the application polls.
    expired: bool,
}

impl Kip848 {
    /// A member that has not joined yet.
    pub(crate) fn new(settings: Settings, now: Instant) -> Self {
        let auto_commit = settings.auto_commit;
        Kip848 {
            settings,
            phase: Phase::Unjoined,
            member_id: String::new(),
            epoch: 0,
            topics: BTreeSet::new(),
            core: Core::new(auto_commit),
            coordinator: false,
            in_flight: false,
            interval: Duration::from_secs(5),
            next_at: Some(now),
            leaving: false,
            expired: false,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The member epoch, which commits carry (-1 when not a member).
    pub(crate) fn generation(&self) -> i32 {
        if self.epoch > 0 && matches!(self.phase, Phase::Stable | Phase::Revoking) { self.epoch } else { -1 }
    }

    pub(crate) fn can_commit(&self) -> bool {
        self.generation() > 0
    }

    /// The membership commits go under now, if any.
    pub(crate) fn stamp(&self) -> Option<Stamp> {
        self.can_commit().then(|| Stamp { generation: self.epoch, member_id: self.member_id.clone() })
    }

    pub(crate) fn owned(&self) -> &BTreeSet<TopicPartition> {
        self.core.owned()
    }

    /// The reconcile/commit core (commits, revocation steps).
    pub(crate) fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    pub(crate) fn next_action(&mut self) -> Option<Action> {
        self.core.next_action()
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.in_flight || self.phase == Phase::Done || self.phase == Phase::Revoking {
            return None;
        }
        self.next_at
    }

    pub(crate) fn subscribe(&mut self, topics: BTreeSet<String>, now: Instant) {
        if topics == self.topics {
            return;
        }
        self.topics = topics;
        if self.phase != Phase::Done {
            self.next_at = Some(now);
        }
    }

    pub(crate) fn leave(&mut self, now: Instant) {
        if self.leaving || self.phase == Phase::Done {
            return;
        }
        self.leaving = true;
        if !self.in_flight && self.phase != Phase::Revoking {
            self.begin_leave(now);
        }
    }

    fn begin_leave(&mut self, now: Instant) {
        if self.core.revoke_all() {
            self.phase = Phase::Revoking;
            return;
        }
        self.send_leave(now);
    }

    fn send_leave(&mut self, _now: Instant) {
        if self.coordinator && !self.member_id.is_empty() && self.epoch > 0 {
            self.phase = Phase::Leaving;
            let epoch = if self.settings.instance_id.is_some() { -2 } else { -1 };
            self.send(epoch, false);
        } else {
            self.finish();
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.epoch = -1;
        self.core.push(Action::Left);
    }

    fn send(&mut self, epoch: i32, _full: bool) {
        self.in_flight = true;
        let joining_or_acting = epoch >= 0;
        let owned: Vec<TopicPartition> = self.owned().iter().cloned().collect();
        self.core.push(Action::Send(Request::ConsumerHeartbeat {
            member_id: self.member_id.clone(),
            epoch,
            topics: joining_or_acting.then(|| self.topics.iter().cloned().collect()),
            assignor: if joining_or_acting { self.settings.assignor.clone() } else { None },
            owned: joining_or_acting.then_some(owned),
        }));
    }

    pub(crate) fn tick(&mut self, now: Instant) {
        if self.in_flight || self.phase == Phase::Done || self.next_at.is_none_or(|t| now < t) {
            return;
        }
        self.next_at = None;
        if self.leaving && self.phase != Phase::Revoking && (self.coordinator || self.epoch <= 0) {
            self.begin_leave(now);
            return;
        }
        if !self.coordinator {
            self.phase = Phase::Finding;
            self.in_flight = true;
            self.core.push(Action::Send(Request::FindCoordinator));
            return;
        }
        if self.expired {
            return;
        }
        match self.phase {
            Phase::Unjoined | Phase::Finding if self.topics.is_empty() => self.phase = Phase::Unjoined,
            Phase::Unjoined | Phase::Finding => {
                self.phase = Phase::Joining;
                self.epoch = 0;
                self.send(0, true);
            }
            Phase::Stable | Phase::Joining => self.send(self.epoch, true),
            _ => {}
        }
    }

    /// The application acknowledged the revocation (or nobody listens): the core removes the
    /// partitions and assigns what waited; the new owned set is acknowledged at once.
    pub(crate) fn released(&mut self, now: Instant) {
        if self.leaving {
            // Leaving: what the target added is never taken.
            self.core.cancel_assign();
        }
        if !self.core.released() || self.phase != Phase::Revoking {
            return;
        }
        if self.leaving {
            // A reconciliation's revocation may leave partitions owned: those go too first.
            self.begin_leave(now);
            return;
        }
        self.phase = Phase::Stable;
        // Acknowledge the new owned set at once.
        self.next_at = Some(now);
    }

    fn lose(&mut self) {
        self.core.lose();
    }

    fn fatal(&mut self, code: ErrorCode) {
        self.lose();
        self.phase = Phase::Done;
        self.epoch = -1;
        self.core.push(Action::Fatal(code));
    }

    pub(crate) fn on_coordinator(&mut self, result: Result<(), Failure>, now: Instant) {
        if self.phase != Phase::Finding {
            return;
        }
        self.in_flight = false;
        match result {
            Ok(()) => {
                self.coordinator = true;
                // Rejoin (epoch 0) or carry on heartbeating with the epoch held.
                self.phase = if self.epoch > 0 { Phase::Stable } else { Phase::Unjoined };
                self.next_at = Some(now);
            }
            Err(Failure::Code(code @ ErrorCode::GroupAuthorizationFailed)) => self.fatal(code),
            Err(_) => {
                self.phase = Phase::Unjoined;
                self.next_at = Some(now + self.settings.retry_backoff);
            }
        }
    }

    /// A ConsumerGroupHeartbeat answer.
    pub(crate) fn on_heartbeat(&mut self, result: Result<Answer, Failure>, now: Instant) {
        if !self.in_flight {
            return;
        }
        self.in_flight = false;
        if self.expired || self.phase == Phase::Unjoined {
            // The answer to an expiry's leave: out until polled (or, polled meanwhile, join now).
            self.phase = Phase::Unjoined;
            self.next_at = if self.expired { None } else { Some(now) };
            if self.leaving {
                // Asked to leave meanwhile: out now (nothing is owned since the expiry).
                self.begin_leave(now);
            }
            return;
        }
        if !matches!(self.phase, Phase::Joining | Phase::Stable | Phase::Leaving) {
            return;
        }
        if self.phase == Phase::Leaving {
            // Whatever the answer, the member is out.
            self.epoch = -1;
            self.finish();
            return;
        }
        let answer = match result {
            Ok(a) => a,
            Err(failure) => {
                self.failed(failure, now);
                return;
            }
        };
        if let Some(id) = answer.member_id.filter(|id| !id.is_empty()) {
            self.member_id = id;
        }
        if answer.epoch >= 0 {
            self.epoch = answer.epoch;
        }
        if !answer.interval.is_zero() {
            self.interval = answer.interval;
        }
        self.phase = Phase::Stable;
        // Nothing is due while a heartbeat is in flight but a subscription changed meanwhile
        // (`subscribe`): that goes at once.
        self.next_at = Some(if self.next_at.is_some() { now } else { now + self.interval });
        if let Some(target) = answer.assignment {
            let before = self.owned().len();
            if self.core.reconcile(&target) {
                self.phase = Phase::Revoking;
            } else if self.owned().len() != before {
                self.next_at = Some(now);
            }
        }
        if self.leaving && self.phase == Phase::Stable {
            self.begin_leave(now);
        }
    }

    fn failed(&mut self, failure: Failure, now: Instant) {
        match failure {
            Failure::Code(ErrorCode::FencedMemberEpoch) => {
                // Same member id, epoch 0.
                self.lose();
                self.epoch = 0;
                self.phase = Phase::Unjoined;
                self.next_at = Some(now);
            }
            Failure::Code(ErrorCode::UnknownMemberId) => {
                self.lose();
                self.member_id.clear();
                self.epoch = 0;
                self.phase = Phase::Unjoined;
                self.next_at = Some(now);
            }
            Failure::Transport
            | Failure::Code(
                ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::RequestTimedOut,
            ) => {
                self.coordinator = false;
                if self.epoch <= 0 {
                    self.phase = Phase::Unjoined;
                }
                self.next_at = Some(now + self.settings.retry_backoff);
            }
            Failure::Code(
                code @ (ErrorCode::FencedInstanceId
                | ErrorCode::GroupAuthorizationFailed
                | ErrorCode::UnsupportedAssignor
                | ErrorCode::GroupMaxSizeReached
                | ErrorCode::InvalidRequest
                | ErrorCode::UnsupportedVersion
                | ErrorCode::InvalidGroupId),
            ) => self.fatal(code),
            Failure::Code(_) => {
                // UNRELEASED_INSTANCE_ID, COORDINATOR_LOAD_IN_PROGRESS, anything else: after the
                // backoff, as it was.
                if self.epoch <= 0 {
                    self.phase = Phase::Unjoined;
                }
                self.next_at = Some(now + self.settings.retry_backoff);
            }
        }
        if self.leaving && !self.in_flight && self.phase != Phase::Revoking && self.phase != Phase::Done {
            self.begin_leave(now);
        }
    }

    /// `max.poll.interval.ms` passed without a poll: leave (epoch -1; a static member -2) and
    /// stay out until the application polls again.
    pub(crate) fn poll_expired(&mut self, now: Instant) {
        if self.phase == Phase::Done || self.leaving || self.expired || self.epoch <= 0 {
            return;
        }
        self.expired = true;
        self.lose();
        if !self.in_flight && self.coordinator {
            let epoch = if self.settings.instance_id.is_some() { -2 } else { -1 };
            self.send(epoch, false);
        }
        // The answer (whatever it is) leaves the member unjoined; a FindCoordinator in flight is
        // still answered (`on_coordinator` takes it only while finding).
        if self.phase != Phase::Finding {
            self.phase = Phase::Unjoined;
        }
        self.epoch = 0;
        self.next_at = None;
        let _ = now;
    }

    /// The application polls again after an expiry: join again at epoch 0.
    pub(crate) fn poll_resumed(&mut self, now: Instant) {
        if !self.expired || self.phase == Phase::Done {
            return;
        }
        self.expired = false;
        self.epoch = 0;
        if self.phase != Phase::Finding {
            self.phase = Phase::Unjoined;
        }
        if !self.in_flight {
            self.next_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            instance_id: None,
            assignor: Some("uniform".into()),
            retry_backoff: Duration::from_millis(100),
            auto_commit: false,
        }
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn drain(m: &mut Kip848) -> Vec<Action> {
        std::iter::from_fn(|| m.next_action()).collect()
    }

    fn answer(epoch: i32, assignment: Option<&[i32]>) -> Answer {
        Answer {
            member_id: Some("m-1".into()),
            epoch,
            interval: Duration::from_secs(5),
            assignment: assignment.map(|ps| ps.iter().map(|&p| tp(p)).collect()),
        }
    }

    /// A member found, subscribed and joined with `owned` assigned at epoch 1.
    fn joined(owned: &[i32]) -> (Kip848, Instant) {
        let now = Instant::now();
        let mut m = Kip848::new(settings(), now);
        m.subscribe(["t".to_string()].into(), now);
        m.tick(now);
        assert_eq!(drain(&mut m), [Action::Send(Request::FindCoordinator)]);
        m.on_coordinator(Ok(()), now);
        m.tick(now);
        match drain(&mut m).as_slice() {
            [
                Action::Send(Request::ConsumerHeartbeat {
                    member_id,
                    epoch: 0,
                    topics: Some(t),
                    assignor,
                    owned: Some(o),
                }),
            ] => {
                assert!(member_id.is_empty());
                assert_eq!(t, &["t".to_string()]);
                assert_eq!(assignor.as_deref(), Some("uniform"));
                assert!(o.is_empty());
            }
            other => panic!("{other:?}"),
        }
        m.on_heartbeat(Ok(answer(1, Some(owned))), now);
        let actions = drain(&mut m);
        if !owned.is_empty() {
            assert_eq!(actions, [Action::Assign(owned.iter().map(|&p| tp(p)).collect())]);
        }
        (m, now)
    }

    fn heartbeat(m: &mut Kip848, now: Instant) -> (i32, Vec<TopicPartition>) {
        m.tick(now);
        match drain(m).as_slice() {
            [Action::Send(Request::ConsumerHeartbeat { epoch, owned: Some(o), member_id, .. })] => {
                assert_eq!(member_id, "m-1");
                (*epoch, o.clone())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn joins_at_epoch_zero_takes_the_id_and_acknowledges_its_assignment_at_once() {
        let (mut m, now) = joined(&[0, 1]);
        assert_eq!(m.member_id(), "m-1");
        assert_eq!(m.generation(), 1);
        assert_eq!(m.deadline(), Some(now), "the acknowledging heartbeat goes at once");
        assert_eq!(heartbeat(&mut m, now), (1, vec![tp(0), tp(1)]));
        m.on_heartbeat(Ok(answer(1, None)), now);
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.deadline(), Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn reconciling_revokes_first_then_assigns_then_acknowledges() {
        let (mut m, now) = joined(&[0, 1]);
        heartbeat(&mut m, now);
        m.on_heartbeat(Ok(answer(2, Some(&[1, 2]))), now);
        assert_eq!(drain(&mut m), [Action::Revoke(vec![tp(0)])]);
        assert_eq!(m.deadline(), None, "nothing goes while the revocation runs");
        m.core.pause_for_test();
        m.released(now);
        m.core.take_for_test(|a| matches!(a, Action::Remove(_)));
        assert_eq!(drain(&mut m), [Action::Assign(vec![tp(2)])]);
        assert_eq!(heartbeat(&mut m, now), (2, vec![tp(1), tp(2)]));
    }

    #[test]
    fn a_fenced_epoch_loses_everything_and_rejoins_with_the_same_id_at_epoch_zero() {
        let (mut m, now) = joined(&[0]);
        heartbeat(&mut m, now);
        m.on_heartbeat(Err(Failure::Code(ErrorCode::FencedMemberEpoch)), now);
        assert_eq!(drain(&mut m), [Action::Lost(vec![tp(0)])]);
        assert_eq!(heartbeat(&mut m, now), (0, vec![]));
        assert_eq!(m.member_id(), "m-1");
    }

    #[test]
    fn an_unknown_member_id_rejoins_with_a_new_one() {
        let (mut m, now) = joined(&[0]);
        heartbeat(&mut m, now);
        m.on_heartbeat(Err(Failure::Code(ErrorCode::UnknownMemberId)), now);
        assert_eq!(drain(&mut m), [Action::Lost(vec![tp(0)])]);
        m.tick(now);
        assert!(
            matches!(drain(&mut m).as_slice(), [Action::Send(Request::ConsumerHeartbeat { member_id, epoch: 0, .. })] if member_id.is_empty())
        );
    }

    #[test]
    fn a_lost_coordinator_is_found_again_and_the_epoch_kept() {
        let (mut m, now) = joined(&[0]);
        heartbeat(&mut m, now);
        m.on_heartbeat(Err(Failure::Transport), now);
        assert!(drain(&mut m).is_empty(), "nothing lost");
        let later = now + Duration::from_millis(100);
        m.tick(later);
        assert_eq!(drain(&mut m), [Action::Send(Request::FindCoordinator)]);
        m.on_coordinator(Ok(()), later);
        assert_eq!(heartbeat(&mut m, later), (1, vec![tp(0)]), "a fresh heartbeat with the epoch held");
    }

    #[test]
    fn fatal_codes_end_the_member() {
        for code in [ErrorCode::FencedInstanceId, ErrorCode::GroupAuthorizationFailed, ErrorCode::UnsupportedAssignor] {
            let (mut m, now) = joined(&[0]);
            heartbeat(&mut m, now);
            m.on_heartbeat(Err(Failure::Code(code)), now);
            assert_eq!(drain(&mut m), [Action::Lost(vec![tp(0)]), Action::Fatal(code)]);
            m.tick(now + Duration::from_secs(60));
            assert!(drain(&mut m).is_empty());
        }
    }

    #[test]
    fn leaving_revokes_then_sends_epoch_minus_one_or_minus_two_for_a_static_member() {
        for (instance, epoch) in [(None, -1), (Some("i-1".to_string()), -2)] {
            let (mut m, now) = joined(&[0]);
            m.settings.instance_id = instance;
            heartbeat(&mut m, now);
            m.on_heartbeat(Ok(answer(1, None)), now);
            m.leave(now);
            assert_eq!(drain(&mut m), [Action::Revoke(vec![tp(0)])]);
            m.core.pause_for_test();
            m.released(now);
            m.core.take_for_test(|a| matches!(a, Action::Remove(_)));
            match drain(&mut m).as_slice() {
                [Action::Send(Request::ConsumerHeartbeat { epoch: e, topics: None, owned: None, .. })] => {
                    assert_eq!(*e, epoch)
                }
                other => panic!("{other:?}"),
            }
            m.on_heartbeat(Ok(answer(-1, None)), now);
            assert_eq!(drain(&mut m), [Action::Left]);
        }
    }

    #[test]
    fn an_expired_member_leaves_and_rejoins_at_epoch_zero_once_polled() {
        let (mut m, now) = joined(&[0]);
        heartbeat(&mut m, now);
        m.on_heartbeat(Ok(answer(1, None)), now);
        m.poll_expired(now);
        let actions = drain(&mut m);
        assert_eq!(actions[0], Action::Lost(vec![tp(0)]));
        assert!(matches!(&actions[1], Action::Send(Request::ConsumerHeartbeat { epoch: -1, .. })));
        m.on_heartbeat(Ok(answer(-1, None)), now);
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.deadline(), None, "out until polled");
        m.poll_resumed(now);
        assert_eq!(heartbeat(&mut m, now), (0, vec![]));
    }
}

#[cfg(test)]
#[path = "kip848_tests.rs"]
mod model_tests;
