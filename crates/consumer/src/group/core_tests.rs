//! Tests of the reconcile/commit core: the order of a revocation's steps, the commit queue, and
//! what losing the membership does to both.

use super::*;
use crate::group::action::Failure;
use krab_protocol::error_code::ErrorCode;

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

fn set(ps: &[i32]) -> BTreeSet<TopicPartition> {
    ps.iter().map(|&p| tp(p)).collect()
}

fn parts(ps: &[i32]) -> Vec<TopicPartition> {
    ps.iter().map(|&p| tp(p)).collect()
}

fn at(p: i32, offset: i64) -> CommitOffset {
    (tp(p), offset, Some(3), String::new())
}

fn stamp(generation: i32) -> Option<Stamp> {
    Some(Stamp { generation, member_id: "m-1".into() })
}

fn drain(core: &mut Core) -> Vec<Action> {
    std::iter::from_fn(|| core.next_action()).collect()
}

fn ok(ps: &[i32]) -> CommitResult {
    Ok(ps.iter().map(|&p| (tp(p), ErrorCode::None)).collect())
}

fn commit(offsets: Vec<CommitOffset>, generation: i32) -> Action {
    Action::Commit(CommitRequest { offsets, generation, member_id: "m-1".into() })
}

/// A core owning `ps`, the assignment drained.
fn owning(auto_commit: bool, ps: &[i32]) -> Core {
    let mut core = Core::new(auto_commit);
    core.assign(parts(ps));
    assert_eq!(drain(&mut core), [Action::Assign(parts(ps))]);
    core
}

#[test]
fn a_target_revokes_what_it_leaves_out_first_and_assigns_what_it_adds_after_the_release() {
    let mut core = owning(false, &[0, 1]);
    assert!(core.reconcile(&set(&[1, 2])));
    assert_eq!(drain(&mut core), [Action::Revoke(parts(&[0]))]);
    assert_eq!(core.owned(), &set(&[1]));
    core.paused(vec![at(0, 10)], stamp(1));
    assert_eq!(drain(&mut core), [Action::Release(parts(&[0]))], "no auto-commit: released at once");
    assert!(core.released());
    assert_eq!(drain(&mut core), [Action::Remove(parts(&[0])), Action::Assign(parts(&[2]))]);
    assert_eq!(core.owned(), &set(&[1, 2]));
    assert!(!core.released(), "released once");
    // A target that only adds assigns at once.
    assert!(!core.reconcile(&set(&[1, 2, 3])));
    assert_eq!(drain(&mut core), [Action::Assign(parts(&[3]))]);
}

#[test]
fn with_auto_commit_a_revocation_commits_what_moved_and_releases_only_once_that_is_answered() {
    let mut core = owning(true, &[0, 1]);
    core.found_committed(tp(1), 7);
    assert!(core.revoke_all());
    assert_eq!(drain(&mut core), [Action::Revoke(parts(&[0, 1]))]);
    // t-1 has not moved since its committed offset: only t-0 goes.
    core.paused(vec![at(0, 10), at(1, 7)], stamp(4));
    assert_eq!(drain(&mut core), [commit(vec![at(0, 10)], 4)]);
    assert!(!core.released(), "not before the commit is answered");
    core.on_commit(ok(&[0]), stamp(4));
    assert_eq!(drain(&mut core), [Action::Release(parts(&[0, 1]))]);
    assert!(core.released());
    assert_eq!(drain(&mut core), [Action::Remove(parts(&[0, 1]))]);
}

#[test]
fn a_revocation_with_nothing_moved_or_no_membership_is_released_without_a_commit() {
    let mut core = owning(true, &[0]);
    core.found_committed(tp(0), 5);
    assert!(core.revoke_all());
    drain(&mut core);
    core.paused(vec![at(0, 5)], stamp(1));
    assert_eq!(drain(&mut core), [Action::Release(parts(&[0]))]);

    let mut core = owning(true, &[0]);
    assert!(core.revoke_all());
    drain(&mut core);
    core.paused(vec![at(0, 5)], None);
    assert_eq!(drain(&mut core), [Action::Release(parts(&[0]))], "no membership to commit under");
}

#[test]
fn a_failed_revocation_commit_still_releases() {
    let mut core = owning(true, &[0]);
    assert!(core.revoke_all());
    drain(&mut core);
    core.paused(vec![at(0, 5)], stamp(1));
    drain(&mut core);
    core.on_commit(Err(Failure::Transport), stamp(1));
    assert_eq!(drain(&mut core), [Action::Release(parts(&[0]))]);
}

#[test]
fn commits_go_one_at_a_time_in_order_each_stamped_when_it_is_sent() {
    let mut core = owning(false, &[0, 1]);
    core.commit(1, vec![at(0, 10)], stamp(1));
    core.commit(2, vec![at(0, 20)], stamp(1));
    core.commit(3, vec![at(1, 30)], stamp(1));
    assert_eq!(drain(&mut core), [commit(vec![at(0, 10)], 1)], "one in flight");
    // The membership moved on meanwhile: the next goes under the new one.
    core.on_commit(ok(&[0]), stamp(2));
    assert_eq!(drain(&mut core), [Action::Committed { id: 1, result: Ok(()) }, commit(vec![at(0, 20)], 2)]);
    core.on_commit(Ok(vec![(tp(0), ErrorCode::IllegalGeneration)]), stamp(2));
    assert_eq!(
        drain(&mut core),
        [
            Action::Committed { id: 2, result: Err(CommitError::Refused(tp(0), ErrorCode::IllegalGeneration)) },
            commit(vec![at(1, 30)], 2)
        ]
    );
    core.on_commit(Err(Failure::Transport), stamp(2));
    assert_eq!(drain(&mut core), [Action::Committed { id: 3, result: Err(CommitError::Unanswered) }]);
    core.on_commit(ok(&[0]), stamp(2));
    assert!(drain(&mut core).is_empty(), "an answer with nothing in flight is nothing");
}

#[test]
fn an_application_commit_with_no_membership_fails_at_once_and_an_empty_one_succeeds() {
    let mut core = owning(false, &[0]);
    core.commit(1, vec![at(0, 10)], None);
    core.commit(2, Vec::new(), None);
    assert_eq!(
        drain(&mut core),
        [Action::Committed { id: 1, result: Err(CommitError::NotMember) }, Action::Committed { id: 2, result: Ok(()) }]
    );
    // Queued under a membership that is gone when its turn comes: failed then, not sent.
    core.commit(3, vec![at(0, 10)], stamp(1));
    core.commit(4, vec![at(0, 11)], stamp(1));
    drain(&mut core);
    core.on_commit(ok(&[0]), None);
    assert_eq!(
        drain(&mut core),
        [Action::Committed { id: 3, result: Ok(()) }, Action::Committed { id: 4, result: Err(CommitError::NotMember) }]
    );
}

#[test]
fn the_interval_commits_only_what_moved_and_refreshes_an_interval_commit_still_queued() {
    let mut core = owning(false, &[0, 1, 2]);
    core.found_committed(tp(2), 4);
    core.interval(vec![at(0, 10), at(2, 4)], stamp(1));
    assert_eq!(drain(&mut core), [commit(vec![at(0, 10)], 1)]);
    // t-0 at the offset in flight is not sent again; t-1 moved: queued, then refreshed.
    core.interval(vec![at(0, 10), at(1, 3)], stamp(1));
    core.interval(vec![at(0, 10), at(1, 5)], stamp(1));
    assert!(drain(&mut core).is_empty());
    core.on_commit(ok(&[0]), stamp(1));
    assert_eq!(drain(&mut core), [commit(vec![at(1, 5)], 1)], "one interval commit, the newer position");
    core.on_commit(ok(&[1]), stamp(1));
    core.interval(vec![at(0, 10), at(1, 5)], stamp(1));
    assert!(drain(&mut core).is_empty(), "nothing moved since");
    // Not a member: nothing goes.
    core.interval(vec![at(0, 11)], None);
    assert!(drain(&mut core).is_empty());
    // Only owned partitions.
    core.interval(vec![at(9, 1)], stamp(1));
    assert!(drain(&mut core).is_empty());
}

#[test]
fn losing_the_membership_loses_the_revocation_in_progress_and_its_commit() {
    let mut core = owning(true, &[0, 1, 2]);
    core.commit(1, vec![at(2, 1)], stamp(1));
    assert!(core.reconcile(&set(&[2, 3])));
    core.paused(vec![at(0, 10), at(1, 11)], stamp(1));
    assert_eq!(
        drain(&mut core),
        [commit(vec![at(2, 1)], 1), Action::Revoke(parts(&[0, 1]))],
        "the revocation's commit waits behind the application's"
    );
    core.lose();
    assert_eq!(drain(&mut core), [Action::Lost(parts(&[0, 1, 2]))]);
    assert!(core.owned().is_empty() && !core.revoking());
    // The application's commit is still answered; the revocation's never goes; nothing is
    // released or assigned.
    core.on_commit(Ok(vec![(tp(2), ErrorCode::UnknownMemberId)]), None);
    assert_eq!(
        drain(&mut core),
        [Action::Committed { id: 1, result: Err(CommitError::Refused(tp(2), ErrorCode::UnknownMemberId)) }]
    );
    assert!(!core.released());
    assert!(drain(&mut core).is_empty());
}

#[test]
fn a_leaving_member_does_not_take_what_the_revoked_target_added() {
    let mut core = owning(false, &[0]);
    assert!(core.reconcile(&set(&[1])));
    core.paused(Vec::new(), stamp(1));
    drain(&mut core);
    core.cancel_assign();
    assert!(core.released());
    assert_eq!(drain(&mut core), [Action::Remove(parts(&[0]))]);
    assert!(core.owned().is_empty());
}
