//! Tests: the driver's side of the core, as a model both members' property tests share. It
//! carries out the core's actions the way the driver does (positions read when a revocation
//! pauses, one commit in flight, acknowledgements when the script says) and checks, after every
//! action, what the core promises:
//! - at most one commit in flight, stamped with the membership the member has when it goes;
//! - every application commit answered exactly once;
//! - with auto-commit, a revocation's moved positions committed, and answered, before its
//!   release;
//! - partitions removed only after the application acknowledged their release;
//! - a lost revocation never released or removed.

use crate::group::action::{Action, CommitOffset, CommitRequest, CommitResult, Failure, Stamp};
use krab_buffer::TopicPartition;
use krab_protocol::error_code::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug)]
struct Revocation {
    partitions: Vec<TopicPartition>,
    /// The commit it must make before its release (auto-commit, positions that moved).
    commit: Option<BTreeSet<TopicPartition>>,
    commit_answered: bool,
    released: bool,
    acked: bool,
}

/// What the model knows of the core's side of a run.
#[derive(Debug, Default)]
pub(crate) struct CoreModel {
    auto_commit: bool,
    /// The application's position of each partition (it reads on between inputs).
    positions: BTreeMap<TopicPartition, i64>,
    /// What the core knows committed (answered without error, not forgotten since).
    committed: BTreeMap<TopicPartition, i64>,
    revocation: Option<Revocation>,
    in_flight: Option<CommitRequest>,
    /// Application commits asked and not answered.
    pending: BTreeSet<u64>,
    next_id: u64,
    /// Counters, for the report of a run.
    pub(crate) commits: usize,
    pub(crate) releases: usize,
}

impl CoreModel {
    pub(crate) fn new(auto_commit: bool) -> Self {
        CoreModel { auto_commit, ..CoreModel::default() }
    }

    /// The application read a record of every partition in `owned`.
    pub(crate) fn read(&mut self, owned: &BTreeSet<TopicPartition>) {
        for tp in owned {
            *self.positions.entry(tp.clone()).or_insert(0) += 1;
        }
    }

    fn position(&self, tp: &TopicPartition) -> i64 {
        self.positions.get(tp).copied().unwrap_or(0)
    }

    /// A revocation began (the member already took `partitions` out of what it owns): the
    /// positions the driver reads under the pause, for [`Core::paused`](super::core::Core::paused).
    pub(crate) fn revoke(
        &mut self,
        partitions: &[TopicPartition],
        stamp: Option<&Stamp>,
    ) -> Result<Vec<CommitOffset>, String> {
        if let Some(r) = &self.revocation {
            return Err(format!("revoking {partitions:?} while {:?} is still being revoked", r.partitions));
        }
        let positions: Vec<CommitOffset> =
            partitions.iter().map(|tp| (tp.clone(), self.position(tp), None, String::new())).collect();
        let moved: BTreeSet<TopicPartition> = positions
            .iter()
            .filter(|(tp, o, _, _)| self.committed.get(tp) != Some(o))
            .map(|(tp, _, _, _)| tp.clone())
            .collect();
        let commit = (self.auto_commit && stamp.is_some() && !moved.is_empty()).then_some(moved);
        self.revocation = Some(Revocation {
            partitions: partitions.to_vec(),
            commit,
            commit_answered: false,
            released: false,
            acked: false,
        });
        Ok(positions)
    }

    /// The application commits every owned position: the id and offsets to give the core.
    pub(crate) fn user_commit(&mut self, owned: &BTreeSet<TopicPartition>) -> (u64, Vec<CommitOffset>) {
        self.next_id += 1;
        self.pending.insert(self.next_id);
        let offsets = owned.iter().map(|tp| (tp.clone(), self.position(tp), None, String::new())).collect();
        (self.next_id, offsets)
    }

    /// The positions of `owned` an auto-commit interval hands the core.
    pub(crate) fn interval(&self, owned: &BTreeSet<TopicPartition>) -> Vec<CommitOffset> {
        owned.iter().map(|tp| (tp.clone(), self.position(tp), None, String::new())).collect()
    }

    /// The coordinator answers the commit in flight (`None`: none is), with `failure` or success.
    pub(crate) fn answer(
        &mut self,
        failure: Option<Failure>,
        owned: &BTreeSet<TopicPartition>,
    ) -> Option<CommitResult> {
        let request = self.in_flight.take()?;
        let revoking: Vec<TopicPartition> = self.revocation.iter().flat_map(|r| r.partitions.clone()).collect();
        if let Some(r) = &mut self.revocation
            && let Some(expected) = &r.commit
            && request.offsets.iter().map(|(tp, _, _, _)| tp).collect::<BTreeSet<_>>() == expected.iter().collect()
        {
            r.commit_answered = true;
        }
        Some(match failure {
            Some(Failure::Transport) => Err(Failure::Transport),
            Some(Failure::Code(code)) => Ok(request.offsets.iter().map(|(tp, _, _, _)| (tp.clone(), code)).collect()),
            None => {
                for (tp, o, _, _) in &request.offsets {
                    if revoking.contains(tp) || owned.contains(tp) {
                        self.committed.insert(tp.clone(), *o);
                    }
                }
                Ok(request.offsets.iter().map(|(tp, _, _, _)| (tp.clone(), ErrorCode::None)).collect())
            }
        })
    }

    /// The application acknowledges the release awaited (false: none is).
    pub(crate) fn ack(&mut self) -> bool {
        match &mut self.revocation {
            Some(r) if r.released && !r.acked => {
                r.acked = true;
                true
            }
            _ => false,
        }
    }

    /// Partitions lost: those owned leave `owned`; the rest must be the revocation in progress,
    /// which is lost with them.
    pub(crate) fn lost(
        &mut self,
        partitions: &[TopicPartition],
        owned: &mut BTreeSet<TopicPartition>,
    ) -> Result<(), String> {
        let revoking: Vec<TopicPartition> = self.revocation.iter().flat_map(|r| r.partitions.clone()).collect();
        for tp in partitions {
            if !owned.remove(tp) && !revoking.contains(tp) {
                return Err(format!("losing {tp}, neither owned nor being revoked"));
            }
            self.forget(tp);
        }
        if !revoking.is_empty() {
            if !revoking.iter().all(|tp| partitions.contains(tp)) {
                return Err(format!("losing {partitions:?}: part of the revocation of {revoking:?} only"));
            }
            self.revocation = None;
        }
        Ok(())
    }

    fn forget(&mut self, tp: &TopicPartition) {
        self.committed.remove(tp);
        self.positions.remove(tp);
    }

    /// Nothing of the core's is pending: no commit in flight or unanswered, no revocation.
    pub(crate) fn idle(&self) -> bool {
        self.in_flight.is_none() && self.pending.is_empty() && self.revocation.is_none()
    }

    /// Whether a revocation is in progress (paused, committing or awaiting its ack).
    pub(crate) fn revoking(&self) -> bool {
        self.revocation.is_some()
    }

    /// Whether a release waits for the application.
    pub(crate) fn awaiting_ack(&self) -> bool {
        self.revocation.as_ref().is_some_and(|r| r.released && !r.acked)
    }

    /// Whether the core waits for something the script provides (a commit answer, an ack).
    pub(crate) fn waiting(&self) -> bool {
        self.in_flight.is_some() || self.awaiting_ack()
    }

    /// Checks one of the core's actions (`stamp`: the member's now).
    pub(crate) fn process(&mut self, action: &Action, stamp: Option<&Stamp>) -> Result<(), String> {
        match action {
            Action::Commit(request) => {
                if let Some(before) = &self.in_flight {
                    return Err(format!("{request:?} sent with {before:?} in flight"));
                }
                let Some(stamp) = stamp else { return Err(format!("{request:?} sent with no membership")) };
                if (request.generation, &request.member_id) != (stamp.generation, &stamp.member_id) {
                    return Err(format!("{request:?} stamped otherwise than the member's {stamp:?}"));
                }
                if request.offsets.is_empty() {
                    return Err("an empty commit".into());
                }
                self.commits += 1;
                self.in_flight = Some(request.clone());
            }
            Action::Committed { id, .. } => {
                if !self.pending.remove(id) {
                    return Err(format!("commit {id} answered twice, or never asked"));
                }
            }
            Action::Release(partitions) => {
                let Some(r) = &mut self.revocation else {
                    return Err(format!("releasing {partitions:?}, not revoked"));
                };
                if r.partitions != *partitions || r.released {
                    return Err(format!("releasing {partitions:?}; the revocation is {r:?}"));
                }
                if r.commit.is_some() && !r.commit_answered {
                    return Err(format!("releasing {partitions:?} before their commit was answered"));
                }
                r.released = true;
                self.releases += 1;
            }
            Action::Remove(partitions) => {
                match &self.revocation {
                    Some(r) if r.acked && r.partitions == *partitions => {}
                    r => return Err(format!("removing {partitions:?}; the revocation is {r:?}")),
                }
                self.revocation = None;
                for tp in partitions {
                    self.forget(tp);
                }
            }
            other => return Err(format!("{other:?} is not the core's")),
        }
        Ok(())
    }
}
