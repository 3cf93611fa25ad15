//! The reconcile/commit core both group members (classic eager and cooperative, KIP-848) are
//! built on, I/O-free: the partitions owned, the revocation in progress, and the commit queue.
//! A member decides *what* it owns (from a SyncGroup or a heartbeat's target); the core carries
//! out the change in the one order that is safe, and keeps commits in order.
//!
//! Reconciliation: owned − target is revoked first; the target's new partitions are assigned
//! only once that revocation is over. A revocation runs in four steps, each an [`Action`] the
//! driver carries out and answers:
//! 1. [`Action::Revoke`]: the driver pauses the partitions and reports their positions
//!    ([`Core::paused`]);
//! 2. with `enable.auto.commit`, positions that moved are committed ([`Action::Commit`]) under
//!    the membership that still owns them, and the revocation waits for the answer;
//! 3. [`Action::Release`]: the application is told and acknowledges ([`Core::released`]);
//! 4. [`Action::Remove`]: the partitions stop, and what waited for the revocation is assigned.
//!
//! Commits (the application's, the interval's, a revocation's) queue in order, one in flight at
//! a time, so a newer commit is never overtaken by an older one; each is stamped with the
//! member's generation (or epoch) and id when it is *sent*, not when it was asked for. A commit
//! that cannot go (the member is in no generation) fails the application's at once, and is
//! dropped otherwise. Offsets committed are remembered so that interval and revocation commits
//! send only what moved.

use crate::group::action::{Action, CommitError, CommitOffset, CommitRequest, CommitResult, Stamp};
use krab_buffer::TopicPartition;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Who asked for a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The application, with this id.
    User(u64),
    /// The auto-commit interval.
    Interval,
    /// The revocation in progress.
    Revocation,
}

#[derive(Debug)]
struct Queued {
    origin: Origin,
    offsets: Vec<CommitOffset>,
}

/// Where the revocation in progress is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Waiting for the driver to pause the partitions ([`Core::paused`]).
    Pausing,
    /// Waiting for the revocation's commit to be answered.
    Committing,
    /// Waiting for the application's acknowledgement ([`Core::released`]).
    Releasing,
}

#[derive(Debug)]
struct Revocation {
    partitions: Vec<TopicPartition>,
    /// Assigned once the revocation is over (cooperative, KIP-848: what the same target added).
    then_assign: Vec<TopicPartition>,
    step: Step,
}

/// The partitions owned, the revocation in progress and the commit queue of a group member.
#[derive(Debug)]
pub(crate) struct Core {
    auto_commit: bool,
    owned: BTreeSet<TopicPartition>,
    revocation: Option<Revocation>,
    queue: VecDeque<Queued>,
    in_flight: Option<Queued>,
    /// The last offset committed (or found committed) of each partition owned or being revoked.
    committed: BTreeMap<TopicPartition, i64>,
    pub(super) actions: VecDeque<Action>,
}

impl Core {
    /// `auto_commit`: `enable.auto.commit` (revocations commit first).
    pub(crate) fn new(auto_commit: bool) -> Self {
        Core {
            auto_commit,
            owned: BTreeSet::new(),
            revocation: None,
            queue: VecDeque::new(),
            in_flight: None,
            committed: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// The partitions owned (those being revoked no longer are).
    pub(crate) fn owned(&self) -> &BTreeSet<TopicPartition> {
        &self.owned
    }

    /// Whether a revocation is in progress.
    pub(crate) fn revoking(&self) -> bool {
        self.revocation.is_some()
    }

    /// Queues an action for the driver.
    pub(crate) fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    /// The next action, if any.
    pub(crate) fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Owns `partitions` now, and tells the driver to fetch them.
    pub(crate) fn assign(&mut self, partitions: Vec<TopicPartition>) {
        let added: Vec<TopicPartition> = partitions.into_iter().filter(|tp| self.owned.insert(tp.clone())).collect();
        if !added.is_empty() {
            self.actions.push_back(Action::Assign(added));
        }
    }

    /// Moves towards `target`: revokes owned − target first (true: a revocation began, and the
    /// target's new partitions wait for it), or assigns target − owned at once (false).
    pub(crate) fn reconcile(&mut self, target: &BTreeSet<TopicPartition>) -> bool {
        let revoked: Vec<TopicPartition> = self.owned.difference(target).cloned().collect();
        let added: Vec<TopicPartition> = target.difference(&self.owned).cloned().collect();
        if revoked.is_empty() {
            self.assign(added);
            false
        } else {
            self.revoke(revoked, added);
            true
        }
    }

    /// Begins revoking `partitions` (owned; not empty), then assigns `then_assign`.
    pub(crate) fn revoke(&mut self, partitions: Vec<TopicPartition>, then_assign: Vec<TopicPartition>) {
        debug_assert!(self.revocation.is_none(), "one revocation at a time");
        for tp in &partitions {
            self.owned.remove(tp);
        }
        self.actions.push_back(Action::Revoke(partitions.clone()));
        self.revocation = Some(Revocation { partitions, then_assign, step: Step::Pausing });
    }

    /// Begins revoking everything owned (true), or does nothing when nothing is (false).
    pub(crate) fn revoke_all(&mut self) -> bool {
        if self.owned.is_empty() {
            return false;
        }
        let all: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        self.revoke(all, Vec::new());
        true
    }

    /// What the revocation in progress was to assign afterwards is not taken (the member is
    /// leaving).
    pub(crate) fn cancel_assign(&mut self) {
        if let Some(r) = &mut self.revocation {
            r.then_assign.clear();
        }
    }

    /// The membership is gone: everything owned is lost (no commit of it is possible), and so
    /// is a revocation in progress (its commit is not sent; its acknowledgement, when it
    /// comes, releases nothing), with what it was to assign.
    pub(crate) fn lose(&mut self) {
        let mut all: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
        if let Some(r) = self.revocation.take() {
            all.extend(r.partitions);
            all.sort();
        }
        self.queue.retain(|q| q.origin != Origin::Revocation);
        for tp in &all {
            self.committed.remove(tp);
        }
        if !all.is_empty() {
            self.actions.push_back(Action::Lost(all));
        }
    }

    /// The driver paused the revoked partitions; these are their positions. With auto-commit
    /// and a membership to commit under, those that moved are committed before the release.
    pub(crate) fn paused(&mut self, positions: Vec<CommitOffset>, stamp: Option<Stamp>) {
        let Some(r) = &mut self.revocation else { return };
        if r.step != Step::Pausing {
            return;
        }
        let revoked = &r.partitions;
        let moved: Vec<CommitOffset> = positions
            .into_iter()
            .filter(|(tp, o, _, _)| revoked.contains(tp) && self.committed.get(tp) != Some(o))
            .collect();
        if self.auto_commit && stamp.is_some() && !moved.is_empty() {
            r.step = Step::Committing;
            self.queue.push_back(Queued { origin: Origin::Revocation, offsets: moved });
            self.pump(stamp);
        } else {
            self.release();
        }
    }

    fn release(&mut self) {
        if let Some(r) = &mut self.revocation {
            r.step = Step::Releasing;
            self.actions.push_back(Action::Release(r.partitions.clone()));
        }
    }

    /// The application acknowledged the revocation (or nobody listens): the partitions are
    /// removed and what waited is assigned. True when a revocation was waiting for this (the
    /// member's own continuation then runs).
    pub(crate) fn released(&mut self) -> bool {
        if self.revocation.as_ref().is_none_or(|r| r.step != Step::Releasing) {
            return false;
        }
        let r = self.revocation.take().expect("checked");
        for tp in &r.partitions {
            self.committed.remove(tp);
        }
        self.actions.push_back(Action::Remove(r.partitions));
        self.assign(r.then_assign);
        true
    }

    /// The application's commit `id` of `offsets`: queued behind those asked before it, or
    /// failed at once when there is no membership to commit under.
    pub(crate) fn commit(&mut self, id: u64, offsets: Vec<CommitOffset>, stamp: Option<Stamp>) {
        if offsets.is_empty() {
            self.actions.push_back(Action::Committed { id, result: Ok(()) });
        } else if stamp.is_none() {
            self.actions.push_back(Action::Committed { id, result: Err(CommitError::NotMember) });
        } else {
            self.queue.push_back(Queued { origin: Origin::User(id), offsets });
            self.pump(stamp);
        }
    }

    /// The auto-commit interval came: the positions of owned partitions that moved since their
    /// last commit (or the commit in flight or queued) are committed. An interval commit still
    /// queued takes the newer positions instead of queueing a second one.
    pub(crate) fn interval(&mut self, positions: Vec<CommitOffset>, stamp: Option<Stamp>) {
        if stamp.is_none() {
            return;
        }
        let pending = |tp: &TopicPartition| -> Option<i64> {
            let queued = self.queue.iter().rev().chain(self.in_flight.iter());
            queued.flat_map(|q| q.offsets.iter()).find(|(t, _, _, _)| t == tp).map(|(_, o, _, _)| *o)
        };
        let moved: Vec<CommitOffset> = positions
            .into_iter()
            .filter(|(tp, o, _, _)| {
                self.owned.contains(tp) && pending(tp).or_else(|| self.committed.get(tp).copied()) != Some(*o)
            })
            .collect();
        if moved.is_empty() {
            return;
        }
        if let Some(q) = self.queue.iter_mut().find(|q| q.origin == Origin::Interval) {
            for offset in moved {
                match q.offsets.iter_mut().find(|(t, _, _, _)| *t == offset.0) {
                    Some(slot) => *slot = offset,
                    None => q.offsets.push(offset),
                }
            }
            return;
        }
        self.queue.push_back(Queued { origin: Origin::Interval, offsets: moved });
        self.pump(stamp);
    }

    /// Offsets found committed (OffsetFetch on assignment): interval commits skip them until
    /// the position moves.
    pub(crate) fn found_committed(&mut self, tp: TopicPartition, offset: i64) {
        self.committed.insert(tp, offset);
    }

    /// The commit in flight was answered; the next queued one goes, stamped with `stamp`.
    pub(crate) fn on_commit(&mut self, result: CommitResult, stamp: Option<Stamp>) {
        let Some(done) = self.in_flight.take() else { return };
        let outcome = match result {
            Err(_) => Err(CommitError::Unanswered),
            Ok(codes) => {
                let mut first = None;
                for (tp, code) in codes {
                    if code.is_ok() {
                        let tracked = self.owned.contains(&tp)
                            || self.revocation.as_ref().is_some_and(|r| r.partitions.contains(&tp));
                        if let Some((_, o, _, _)) = done.offsets.iter().find(|(t, _, _, _)| *t == tp)
                            && tracked
                        {
                            self.committed.insert(tp, *o);
                        }
                    } else if first.is_none() {
                        first = Some(CommitError::Refused(tp, code));
                    }
                }
                first.map_or(Ok(()), Err)
            }
        };
        match done.origin {
            Origin::User(id) => self.actions.push_back(Action::Committed { id, result: outcome }),
            Origin::Interval => {}
            Origin::Revocation => {
                if self.revocation.as_ref().is_some_and(|r| r.step == Step::Committing) {
                    self.release();
                }
            }
        }
        self.pump(stamp);
    }

    /// Sends the next queued commit when none is in flight: stamped with `stamp`, or, with no
    /// membership to commit under, failed (the application's), dropped (the interval's) or
    /// skipped (a revocation's, which then goes on to its release).
    fn pump(&mut self, stamp: Option<Stamp>) {
        while self.in_flight.is_none() {
            let Some(next) = self.queue.pop_front() else { return };
            match &stamp {
                Some(s) => {
                    self.actions.push_back(Action::Commit(CommitRequest {
                        offsets: next.offsets.clone(),
                        generation: s.generation,
                        member_id: s.member_id.clone(),
                    }));
                    self.in_flight = Some(next);
                }
                None => match next.origin {
                    Origin::User(id) => {
                        self.actions.push_back(Action::Committed { id, result: Err(CommitError::NotMember) })
                    }
                    Origin::Interval => {}
                    Origin::Revocation => {
                        if self.revocation.as_ref().is_some_and(|r| r.step == Step::Committing) {
                            self.release();
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
impl Core {
    /// Tests: the driver paused the revocation's partitions and found nothing to commit; the
    /// Release that follows is taken off the queue.
    pub(crate) fn pause_for_test(&mut self) {
        self.paused(Vec::new(), None);
        self.take_for_test(|a| matches!(a, Action::Release(_)));
    }

    /// Tests: takes the first queued action `which` matches off the queue.
    pub(crate) fn take_for_test(&mut self, which: impl Fn(&Action) -> bool) -> Action {
        let i = self.actions.iter().position(which).expect("the action is queued");
        self.actions.remove(i).expect("present")
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
