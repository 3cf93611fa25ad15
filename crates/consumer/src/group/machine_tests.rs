//! Tests of the classic group member ([`Machine`]): one test per rule of the module doc, then
//! property tests that run it against a model coordinator answering every request it sends by a
//! generated script (success or any code a group API can answer, in every phase; eager and
//! cooperative; static and dynamic; with and without the application's calls in between) and
//! check its invariants after every input.
//!
//! Everything is deterministic: time is a fake clock (an `Instant` taken once, moved by hand),
//! and the property tests run from a fixed seed and persist nothing.

use super::*;
use crate::group::assignor::{CooperativeStickyAssignor, RangeAssignor, RoundRobinAssignor};
use crate::group::core_model::CoreModel;
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};

const HEARTBEAT: Duration = Duration::from_millis(300);
const SESSION: Duration = Duration::from_millis(1_000);
const BACKOFF: Duration = Duration::from_millis(100);
const MS: Duration = Duration::from_millis(1);

fn settings(assignors: Vec<Arc<dyn PartitionAssignor>>, instance_id: Option<&str>) -> Settings {
    Settings {
        instance_id: instance_id.map(str::to_owned),
        session_timeout: SESSION,
        heartbeat_interval: HEARTBEAT,
        retry_backoff: BACKOFF,
        assignors,
        auto_commit: false,
    }
}

/// Eager: `range`, then `roundrobin`.
fn eager() -> Settings {
    settings(vec![Arc::new(RangeAssignor), Arc::new(RoundRobinAssignor)], None)
}

/// Cooperative: `cooperative-sticky` alone.
fn cooperative() -> Settings {
    settings(vec![Arc::new(CooperativeStickyAssignor)], None)
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// Partitions of topic `t`.
fn t(partitions: &[i32]) -> Vec<TopicPartition> {
    partitions.iter().map(|&p| tp("t", p)).collect()
}

fn set(partitions: &[TopicPartition]) -> BTreeSet<TopicPartition> {
    partitions.iter().cloned().collect()
}

fn topics(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Every action the machine has queued.
fn drain(m: &mut Machine) -> Vec<Action> {
    std::iter::from_fn(|| m.next_action()).collect()
}

/// Carries a revocation through as a driver does with nothing to commit and nobody listening:
/// paused, released at once; the Release and Remove actions are taken.
fn revoked(m: &mut Machine, at: Instant) {
    m.core.pause_for_test();
    m.released(at);
    m.core.take_for_test(|a| matches!(a, Action::Remove(_)));
}

/// The one request `actions` hold, and nothing else.
fn only_send(actions: Vec<Action>) -> Request {
    match <[Action; 1]>::try_from(actions) {
        Ok([Action::Send(request)]) => request,
        other => panic!("expected exactly one request, got {other:?}"),
    }
}

/// The one JoinGroup `actions` hold: its member id, protocols, and the subscription they carry
/// (every protocol carries the same).
fn only_join(actions: Vec<Action>) -> (String, Vec<(String, Bytes)>, MemberSubscription) {
    let Request::Join { member_id, protocols } = only_send(actions) else { panic!("expected a JoinGroup") };
    assert!(!protocols.is_empty());
    assert!(protocols.iter().all(|(_, metadata)| *metadata == protocols[0].1), "one subscription for all protocols");
    let sub = decode_subscription(&member_id, None, &protocols[0].1).expect("the subscription decodes");
    (member_id, protocols, sub)
}

fn names(protocols: &[(String, Bytes)]) -> Vec<&str> {
    protocols.iter().map(|(name, _)| name.as_str()).collect()
}

/// A JoinGroup answer for a follower (`leader` is someone else) or a leader with no members listed.
fn joined(generation: i32, member_id: &str, leader: &str, protocol: &str) -> Joined {
    Joined {
        generation,
        protocol: Some(protocol.to_string()),
        leader: leader.to_string(),
        member_id: member_id.to_string(),
        members: Vec::new(),
    }
}

/// A member subscribed to `t` with its first JoinGroup in flight; its protocols.
fn joining(settings: Settings, now: Instant) -> (Machine, Vec<(String, Bytes)>) {
    let mut m = Machine::new(settings, now);
    m.subscribe(topics(&["t"]), now);
    m.tick(now);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.on_coordinator(Ok(()), now);
    let (member_id, protocols, _) = only_join(drain(&mut m));
    assert_eq!(member_id, "");
    (m, protocols)
}

/// A member subscribed to `t`, in generation 1 as `m-1` (a follower), assigned `parts` of `t` at
/// `now`.
fn stable(settings: Settings, parts: &[i32], now: Instant) -> Machine {
    let (mut m, protocols) = joining(settings, now);
    m.on_join(Ok(joined(1, "m-1", "m-0", &protocols[0].0)), now);
    assert!(matches!(only_send(drain(&mut m)), Request::Sync { .. }));
    m.on_sync(Ok(encode_assignment(&t(parts), 1)), now);
    let expected = if parts.is_empty() { vec![] } else { vec![Action::Assign(set(&t(parts)).into_iter().collect())] };
    assert_eq!(drain(&mut m), expected);
    assert_eq!((m.phase(), m.generation(), m.member_id()), (Phase::Stable, 1, "m-1"));
    m
}

/// Ticks at `at`, when a heartbeat must be due, and returns the request that went.
fn heartbeat(m: &mut Machine, at: Instant) -> Request {
    assert_eq!(m.deadline(), Some(at), "a heartbeat is due");
    m.tick(at);
    let request = only_send(drain(m));
    assert!(matches!(request, Request::Heartbeat { .. }), "{request:?}");
    request
}

/// Which request a member has in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Heartbeat,
    Join,
    Sync,
}

/// A cooperative member (so that its partitions are still owned mid-rebalance) in generation 1
/// owning `t-0` and `t-1`, with `kind` in flight at the returned instant: a heartbeat, the
/// JoinGroup after that heartbeat answered REBALANCE_IN_PROGRESS, or the SyncGroup after that.
fn with_in_flight(kind: Kind, settings: Settings, now: Instant) -> (Machine, Instant) {
    let mut m = stable(settings, &[0, 1], now);
    let at = now + HEARTBEAT;
    heartbeat(&mut m, at);
    if kind == Kind::Heartbeat {
        return (m, at);
    }
    m.on_heartbeat(Err(Failure::Code(ErrorCode::RebalanceInProgress)), at);
    let (_, protocols, sub) = only_join(drain(&mut m));
    assert_eq!(sub.owned, t(&[0, 1]));
    if kind == Kind::Join {
        return (m, at);
    }
    m.on_join(Ok(joined(2, "m-1", "m-0", &protocols[0].0)), at);
    assert!(matches!(only_send(drain(&mut m)), Request::Sync { generation: 2, .. }));
    (m, at)
}

/// Answers the request of `kind` in flight with `failure`.
fn fail(m: &mut Machine, kind: Kind, failure: Failure, at: Instant) {
    match kind {
        Kind::Heartbeat => m.on_heartbeat(Err(failure), at),
        Kind::Join => m.on_join(Err((failure, String::new())), at),
        Kind::Sync => m.on_sync(Err(failure), at),
    }
}

const KINDS: [Kind; 3] = [Kind::Heartbeat, Kind::Join, Kind::Sync];

// ---------------------------------------------------------------------------------------------
// Joining.

#[test]
fn first_join_finds_the_coordinator_then_joins_with_every_assignor_in_order() {
    let now = Instant::now();
    let mut m = Machine::new(eager(), now);
    m.subscribe(topics(&["t"]), now);
    assert_eq!(m.deadline(), Some(now));
    m.tick(now);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    assert_eq!((m.phase(), m.deadline()), (Phase::Finding, None));
    m.on_coordinator(Ok(()), now);
    let (member_id, protocols, sub) = only_join(drain(&mut m));
    assert_eq!(member_id, "");
    assert_eq!(names(&protocols), ["range", "roundrobin"]);
    assert_eq!((sub.topics, sub.owned, sub.generation), (strings(&["t"]), vec![], -1));
    assert_eq!((m.phase(), m.deadline(), m.can_commit()), (Phase::Joining, None, false));
}

#[test]
fn one_eager_assignor_makes_the_member_eager_and_protocols_keep_their_order() {
    let mixed = settings(vec![Arc::new(CooperativeStickyAssignor), Arc::new(RangeAssignor)], None);
    assert_eq!(mixed.protocol(), RebalanceProtocol::Eager);
    assert_eq!(cooperative().protocol(), RebalanceProtocol::Cooperative);
    assert_eq!(settings(vec![], None).protocol(), RebalanceProtocol::Eager);
    let (_, protocols) = joining(mixed, Instant::now());
    assert_eq!(names(&protocols), ["cooperative-sticky", "range"]);
}

#[test]
fn a_failed_find_coordinator_is_retried_after_the_backoff() {
    let now = Instant::now();
    let mut m = Machine::new(eager(), now);
    m.subscribe(topics(&["t"]), now);
    m.tick(now);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.on_coordinator(Err(Failure::Transport), now);
    assert_eq!((drain(&mut m), m.deadline()), (vec![], Some(now + BACKOFF)));
    m.tick(now + BACKOFF - MS);
    assert_eq!(drain(&mut m), vec![]);
    m.tick(now + BACKOFF);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.on_coordinator(Err(Failure::Code(ErrorCode::GroupAuthorizationFailed)), now + BACKOFF);
    assert_eq!(drain(&mut m), vec![Action::Fatal(ErrorCode::GroupAuthorizationFailed)]);
    assert_eq!((m.phase(), m.deadline()), (Phase::Done, None));
}

#[test]
fn no_join_without_a_subscription() {
    let now = Instant::now();
    let mut m = Machine::new(eager(), now);
    m.tick(now);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.on_coordinator(Ok(()), now);
    assert_eq!((drain(&mut m), m.phase(), m.deadline()), (vec![], Phase::Unjoined, None));
    m.subscribe(topics(&["t"]), now + MS);
    assert_eq!(m.deadline(), Some(now + MS));
    m.tick(now + MS);
    only_join(drain(&mut m));
}

#[test]
fn member_id_required_joins_again_at_once_with_the_given_id() {
    let now = Instant::now();
    let (mut m, _) = joining(eager(), now);
    m.on_join(Err((Failure::Code(ErrorCode::MemberIdRequired), "m-7".into())), now);
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!((m.member_id(), m.deadline()), ("m-7", Some(now)));
    m.tick(now);
    let (member_id, protocols, _) = only_join(drain(&mut m));
    assert_eq!(member_id, "m-7");
    assert_eq!(names(&protocols), ["range", "roundrobin"]);
}

#[test]
fn the_leader_asks_for_partition_counts_then_syncs_every_members_assignment() {
    let now = Instant::now();
    let (mut m, protocols) = joining(eager(), now);
    let own = protocols[0].1.clone();
    let other = encode_subscription(&strings(&["t", "u"]), &[], -1, 2);
    m.on_join(
        Ok(Joined {
            generation: 3,
            protocol: Some("range".into()),
            leader: "m-1".into(),
            member_id: "m-1".into(),
            members: vec![("m-1".into(), None, own.clone()), ("m-2".into(), None, other.clone())],
        }),
        now,
    );
    assert_eq!(drain(&mut m), vec![Action::Metadata(strings(&["t", "u"]))]);
    assert_eq!((m.phase(), m.generation(), m.member_id()), (Phase::Assigning, 3, "m-1"));
    let counts = BTreeMap::from([("t".to_string(), 4), ("u".to_string(), 2)]);
    m.on_partition_counts(&counts, now);
    let Request::Sync { generation, member_id, protocol, assignments } = only_send(drain(&mut m)) else {
        panic!("expected a SyncGroup")
    };
    assert_eq!((generation, member_id.as_str(), protocol.as_str()), (3, "m-1", "range"));
    assert_eq!(assignments.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["m-1", "m-2"]);
    let decoded: BTreeMap<String, Vec<TopicPartition>> =
        assignments.iter().map(|(id, bytes)| (id.clone(), decode_assignment(bytes).unwrap())).collect();
    let subs = [decode_subscription("m-1", None, &own).unwrap(), decode_subscription("m-2", None, &other).unwrap()];
    assert_eq!(decoded, RangeAssignor.assign(&counts, &subs));
    assert_eq!(
        decoded,
        BTreeMap::from([
            ("m-1".to_string(), t(&[0, 1])),
            ("m-2".to_string(), vec![tp("t", 2), tp("t", 3), tp("u", 0), tp("u", 1)]),
        ])
    );
    // The coordinator hands the leader its own part back.
    m.on_sync(Ok(assignments[0].1.clone()), now);
    assert_eq!(drain(&mut m), vec![Action::Assign(t(&[0, 1]))]);
    assert_eq!(m.phase(), Phase::Stable);
}

#[test]
fn the_leader_runs_the_assignor_the_coordinator_chose_over_topics_it_knows() {
    let now = Instant::now();
    let (mut m, protocols) = joining(eager(), now);
    let own = protocols[1].1.clone();
    let other = encode_subscription(&strings(&["t", "gone"]), &[], -1, 2);
    m.on_join(
        Ok(Joined {
            generation: 1,
            protocol: Some("roundrobin".into()),
            leader: "m-1".into(),
            member_id: "m-1".into(),
            members: vec![("m-2".into(), None, other), ("m-1".into(), None, own)],
        }),
        now,
    );
    assert_eq!(drain(&mut m), vec![Action::Metadata(strings(&["gone", "t"]))]);
    // "gone" does not exist: it is not assignable.
    m.on_partition_counts(&BTreeMap::from([("t".to_string(), 4)]), now);
    let Request::Sync { protocol, assignments, .. } = only_send(drain(&mut m)) else { panic!("expected a SyncGroup") };
    assert_eq!(protocol, "roundrobin");
    let decoded: BTreeMap<String, Vec<TopicPartition>> =
        assignments.iter().map(|(id, bytes)| (id.clone(), decode_assignment(bytes).unwrap())).collect();
    assert_eq!(decoded, BTreeMap::from([("m-1".to_string(), t(&[0, 2])), ("m-2".to_string(), t(&[1, 3]))]));
}

#[test]
fn a_protocol_the_member_cannot_run_is_fatal() {
    let now = Instant::now();
    let (mut m, protocols) = joining(eager(), now);
    let mut answer = joined(1, "m-1", "m-1", "sticky");
    answer.members = vec![("m-1".into(), None, protocols[0].1.clone())];
    m.on_join(Ok(answer), now);
    assert_eq!(drain(&mut m), vec![Action::Metadata(strings(&["t"]))]);
    m.on_partition_counts(&BTreeMap::from([("t".to_string(), 4)]), now);
    assert_eq!(drain(&mut m), vec![Action::Fatal(ErrorCode::InconsistentGroupProtocol)]);

    let (mut m, _) = joining(eager(), now);
    m.on_join(Ok(Joined { protocol: None, ..joined(1, "m-1", "m-0", "") }), now);
    assert_eq!(drain(&mut m), vec![Action::Fatal(ErrorCode::InconsistentGroupProtocol)]);
    assert_eq!(m.phase(), Phase::Done);
}

#[test]
fn a_follower_syncs_with_no_assignments() {
    let now = Instant::now();
    let (mut m, _) = joining(eager(), now);
    m.on_join(Ok(joined(4, "m-1", "m-0", "range")), now);
    assert_eq!(
        only_send(drain(&mut m)),
        Request::Sync { generation: 4, member_id: "m-1".into(), protocol: "range".into(), assignments: vec![] }
    );
    assert_eq!((m.phase(), m.generation(), m.deadline()), (Phase::Syncing, 4, None));
}

#[test]
fn sync_group_assigns_the_decoded_partitions_and_the_member_is_stable() {
    let now = Instant::now();
    let (mut m, _) = joining(eager(), now);
    m.on_join(Ok(joined(1, "m-1", "m-0", "range")), now);
    only_send(drain(&mut m));
    m.on_sync(Ok(encode_assignment(&[tp("t", 2), tp("t", 0)], 1)), now);
    assert_eq!(drain(&mut m), vec![Action::Assign(t(&[0, 2]))]);
    assert_eq!((m.phase(), m.owned(), m.can_commit()), (Phase::Stable, &set(&t(&[0, 2])), true));
    assert_eq!(m.deadline(), Some(now + HEARTBEAT));

    // Given nothing (an empty byte string): stable, nothing to assign.
    let (mut m, _) = joining(eager(), now);
    m.on_join(Ok(joined(1, "m-1", "m-0", "range")), now);
    only_send(drain(&mut m));
    m.on_sync(Ok(Bytes::new()), now);
    assert_eq!((drain(&mut m), m.phase()), (vec![], Phase::Stable));
}

#[test]
fn an_unreadable_assignment_joins_again_after_the_backoff() {
    let now = Instant::now();
    let (mut m, _) = joining(eager(), now);
    m.on_join(Ok(joined(1, "m-1", "m-0", "range")), now);
    only_send(drain(&mut m));
    m.on_sync(Ok(Bytes::from_static(&[0, 0, 0, 0, 0, 9])), now);
    assert_eq!((drain(&mut m), m.phase(), m.deadline()), (vec![], Phase::Unjoined, Some(now + BACKOFF)));
    m.tick(now + BACKOFF);
    let (member_id, _, _) = only_join(drain(&mut m));
    assert_eq!(member_id, "m-1");
}

// ---------------------------------------------------------------------------------------------
// Stable: heartbeats and rebalances.

#[test]
fn heartbeats_go_every_heartbeat_interval() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0], now);
    assert_eq!(m.deadline(), Some(now + HEARTBEAT));
    m.tick(now + HEARTBEAT - MS);
    assert_eq!(drain(&mut m), vec![]);
    let mut at = now + HEARTBEAT;
    for _ in 0..3 {
        assert_eq!(heartbeat(&mut m, at), Request::Heartbeat { generation: 1, member_id: "m-1".into() });
        assert_eq!(m.deadline(), None, "nothing more while the heartbeat is in flight");
        m.tick(at + HEARTBEAT);
        assert_eq!(drain(&mut m), vec![]);
        at += 7 * MS;
        m.on_heartbeat(Ok(()), at);
        assert_eq!((drain(&mut m), m.phase()), (vec![], Phase::Stable));
        at += HEARTBEAT;
    }
}

#[test]
fn eager_rebalance_in_progress_revokes_everything_then_joins_owning_nothing() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0, 1], now);
    let at = now + HEARTBEAT;
    heartbeat(&mut m, at);
    m.on_heartbeat(Err(Failure::Code(ErrorCode::RebalanceInProgress)), at);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0, 1]))]);
    assert_eq!((m.phase(), m.owned().len()), (Phase::Revoking, 0));
    assert_eq!(m.deadline(), Some(at + HEARTBEAT), "heartbeats go on while it runs");
    assert!(m.can_commit(), "the revocation commits first");
    revoked(&mut m, at + MS);
    let (member_id, _, sub) = only_join(drain(&mut m));
    // No owned partitions, and so no generation either: an eager subscription is the same
    // bytes every time.
    assert_eq!((member_id.as_str(), sub.owned, sub.generation), ("m-1", vec![], -1));
}

#[test]
fn heartbeats_go_on_while_a_revocation_waits_for_the_application_and_the_join_waits_for_their_answer() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0, 1], now);
    let at = now + HEARTBEAT;
    heartbeat(&mut m, at);
    m.on_heartbeat(Err(Failure::Code(ErrorCode::RebalanceInProgress)), at);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0, 1]))]);
    m.core.pause_for_test();
    // The application holds the acknowledgement for three heartbeat intervals.
    let mut beat = at;
    for _ in 0..3 {
        beat += HEARTBEAT;
        assert_eq!(heartbeat(&mut m, beat), Request::Heartbeat { generation: 1, member_id: "m-1".into() });
        m.on_heartbeat(Err(Failure::Code(ErrorCode::RebalanceInProgress)), beat);
        assert!(drain(&mut m).is_empty(), "still revoking");
        assert_eq!(m.phase(), Phase::Revoking);
    }
    // Acknowledged while a heartbeat is in flight: the join goes once it is answered.
    heartbeat(&mut m, beat + HEARTBEAT);
    m.released(beat + HEARTBEAT);
    assert_eq!(drain(&mut m), vec![Action::Remove(t(&[0, 1]))]);
    m.on_heartbeat(Ok(()), beat + HEARTBEAT + MS);
    let (member_id, _, sub) = only_join(drain(&mut m));
    assert_eq!((member_id.as_str(), sub.owned), ("m-1", vec![]));
}

#[test]
fn a_membership_lost_during_a_revocation_loses_it_and_joins_again_at_once() {
    for (code, id) in [(ErrorCode::UnknownMemberId, ""), (ErrorCode::IllegalGeneration, "m-1")] {
        let (mut m, now) = with_in_flight(Kind::Sync, cooperative(), Instant::now());
        m.on_sync(Ok(encode_assignment(&t(&[1, 2]), 1)), now);
        assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0]))]);
        m.core.pause_for_test();
        heartbeat(&mut m, now + HEARTBEAT);
        m.on_heartbeat(Err(Failure::Code(code)), now + HEARTBEAT);
        // Lost: what it owned and what it was revoking; t-2 never comes. The follow-up join
        // goes at once, with no commit possible meanwhile.
        assert_eq!(drain(&mut m), vec![Action::Lost(t(&[0, 1]))], "{code:?}");
        assert!(m.stamp().is_none());
        m.tick(now + HEARTBEAT);
        let (member_id, _, sub) = only_join(drain(&mut m));
        assert_eq!((member_id.as_str(), sub.owned), (id, vec![]), "{code:?}");
        // The acknowledgement, when it comes, releases nothing.
        m.released(now + HEARTBEAT * 2);
        assert!(drain(&mut m).is_empty());
    }
}

#[test]
fn a_coordinator_lost_during_a_revocation_is_found_after_it_before_joining() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0], now);
    m.subscribe(topics(&["t", "u"]), now);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0]))]);
    m.core.pause_for_test();
    heartbeat(&mut m, now);
    m.on_heartbeat(Err(Failure::Transport), now);
    assert_eq!(m.deadline(), None, "no heartbeat without a coordinator");
    m.released(now + MS);
    assert_eq!(drain(&mut m), vec![Action::Remove(t(&[0]))]);
    let due = now + BACKOFF;
    assert_eq!(m.deadline(), Some(due), "after the backoff");
    m.tick(due);
    assert_eq!(drain(&mut m), vec![Action::Send(Request::FindCoordinator)]);
}

#[test]
fn cooperative_rebalance_in_progress_joins_at_once_listing_what_is_owned() {
    let now = Instant::now();
    let mut m = stable(cooperative(), &[0, 1], now);
    let at = now + HEARTBEAT;
    heartbeat(&mut m, at);
    m.on_heartbeat(Err(Failure::Code(ErrorCode::RebalanceInProgress)), at);
    let (member_id, protocols, sub) = only_join(drain(&mut m));
    assert_eq!(names(&protocols), ["cooperative-sticky"]);
    assert_eq!((member_id.as_str(), sub.topics, sub.owned, sub.generation), ("m-1", strings(&["t"]), t(&[0, 1]), 1));
    assert_eq!(m.owned(), &set(&t(&[0, 1])), "nothing revoked");
}

#[test]
fn cooperative_sync_revokes_what_moved_then_assigns_what_came_then_joins_again() {
    let now = Instant::now();
    let (mut m, at) = with_in_flight(Kind::Sync, cooperative(), now);
    m.on_sync(Ok(encode_assignment(&t(&[1, 2]), 1)), at);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0]))]);
    assert_eq!((m.phase(), m.owned()), (Phase::Revoking, &set(&t(&[1]))));
    revoked(&mut m, at);
    assert_eq!(drain(&mut m), vec![Action::Assign(t(&[2]))]);
    assert_eq!((m.phase(), m.owned()), (Phase::Stable, &set(&t(&[1, 2]))));
    // The follow-up rebalance, at once.
    assert_eq!(m.deadline(), Some(at));
    m.tick(at);
    let (_, protocols, sub) = only_join(drain(&mut m));
    assert_eq!((sub.owned, sub.generation), (t(&[1, 2]), 2));
    // Nothing revoked this time: assign what came, no follow-up.
    m.on_join(Ok(joined(3, "m-1", "m-0", &protocols[0].0)), at);
    only_send(drain(&mut m));
    m.on_sync(Ok(encode_assignment(&t(&[1, 2, 3]), 1)), at);
    assert_eq!(drain(&mut m), vec![Action::Assign(t(&[3]))]);
    assert_eq!(heartbeat(&mut m, at + HEARTBEAT), Request::Heartbeat { generation: 3, member_id: "m-1".into() });
}

#[test]
fn unknown_member_id_loses_everything_forgets_the_member_id_and_joins_again() {
    for kind in KINDS {
        let now = Instant::now();
        let (mut m, at) = with_in_flight(kind, cooperative(), now);
        fail(&mut m, kind, Failure::Code(ErrorCode::UnknownMemberId), at);
        assert_eq!(drain(&mut m), vec![Action::Lost(t(&[0, 1]))], "{kind:?}");
        assert_eq!((m.member_id(), m.generation(), m.owned().len()), ("", -1, 0), "{kind:?}");
        assert_eq!(m.deadline(), Some(at), "{kind:?}: at once");
        m.tick(at);
        let (member_id, _, sub) = only_join(drain(&mut m));
        assert_eq!((member_id.as_str(), sub.owned, sub.generation), ("", vec![], -1), "{kind:?}");
    }
}

#[test]
fn illegal_generation_loses_everything_keeps_the_member_id_and_joins_again() {
    for kind in KINDS {
        let now = Instant::now();
        let (mut m, at) = with_in_flight(kind, cooperative(), now);
        fail(&mut m, kind, Failure::Code(ErrorCode::IllegalGeneration), at);
        assert_eq!(drain(&mut m), vec![Action::Lost(t(&[0, 1]))], "{kind:?}");
        assert_eq!((m.member_id(), m.generation(), m.owned().len()), ("m-1", -1, 0), "{kind:?}");
        m.tick(at);
        let (member_id, _, sub) = only_join(drain(&mut m));
        assert_eq!((member_id.as_str(), sub.owned, sub.generation), ("m-1", vec![], -1), "{kind:?}");
    }
}

#[test]
fn fatal_codes_end_the_member() {
    let fatal = [
        ErrorCode::FencedInstanceId,
        ErrorCode::GroupAuthorizationFailed,
        ErrorCode::InconsistentGroupProtocol,
        ErrorCode::InvalidSessionTimeout,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::UnsupportedVersion,
        ErrorCode::InvalidGroupId,
    ];
    for kind in KINDS {
        for code in fatal {
            let now = Instant::now();
            let (mut m, at) = with_in_flight(kind, settings(vec![Arc::new(CooperativeStickyAssignor)], Some("i")), now);
            fail(&mut m, kind, Failure::Code(code), at);
            assert_eq!(drain(&mut m), vec![Action::Lost(t(&[0, 1])), Action::Fatal(code)], "{kind:?} {code:?}");
            assert_eq!((m.phase(), m.deadline(), m.can_commit()), (Phase::Done, None, false));
            // Nothing more, whatever comes.
            let later = at + SESSION;
            m.tick(later);
            m.subscribe(topics(&["u"]), later);
            m.leave(later);
            m.poll_expired(later);
            m.poll_resumed(later);
            m.tick(later);
            assert_eq!((drain(&mut m), m.deadline()), (vec![], None), "{kind:?} {code:?}");
        }
    }
}

#[test]
fn losing_the_coordinator_on_a_heartbeat_finds_it_again_and_heartbeats_on() {
    let failures = [
        Failure::Code(ErrorCode::NotCoordinator),
        Failure::Code(ErrorCode::CoordinatorNotAvailable),
        Failure::Code(ErrorCode::RequestTimedOut),
        Failure::Transport,
    ];
    for failure in failures {
        let now = Instant::now();
        let mut m = stable(eager(), &[0, 1], now);
        let at = now + HEARTBEAT;
        heartbeat(&mut m, at);
        m.on_heartbeat(Err(failure), at);
        assert_eq!(drain(&mut m), vec![], "{failure:?}: nothing lost");
        assert_eq!(m.deadline(), Some(at + BACKOFF), "{failure:?}");
        m.tick(at + BACKOFF);
        assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator, "{failure:?}");
        let found = at + BACKOFF + 3 * MS;
        m.on_coordinator(Ok(()), found);
        assert_eq!(drain(&mut m), vec![], "{failure:?}: no rejoin");
        assert_eq!(heartbeat(&mut m, found), Request::Heartbeat { generation: 1, member_id: "m-1".into() });
        m.on_heartbeat(Ok(()), found);
        assert_eq!((m.phase(), m.owned(), m.generation()), (Phase::Stable, &set(&t(&[0, 1])), 1), "{failure:?}");
    }
}

#[test]
fn coordinator_load_in_progress_on_a_heartbeat_heartbeats_again_after_the_backoff() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0], now);
    let at = now + HEARTBEAT;
    heartbeat(&mut m, at);
    m.on_heartbeat(Err(Failure::Code(ErrorCode::CoordinatorLoadInProgress)), at);
    assert_eq!(drain(&mut m), vec![]);
    heartbeat(&mut m, at + BACKOFF);
}

#[test]
fn heartbeats_failing_for_a_whole_session_lose_the_partitions() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0, 1], now);
    let mut at = now + HEARTBEAT;
    loop {
        heartbeat(&mut m, at);
        m.on_heartbeat(Err(Failure::Code(ErrorCode::UnknownServerError)), at);
        let actions = drain(&mut m);
        if at.duration_since(now) < SESSION {
            assert_eq!((actions, m.phase()), (vec![], Phase::Stable));
            at += BACKOFF;
        } else {
            assert_eq!(actions, vec![Action::Lost(t(&[0, 1]))]);
            assert_eq!((m.phase(), m.generation()), (Phase::Unjoined, -1));
            break;
        }
    }
    m.tick(at + BACKOFF);
    let (member_id, _, _) = only_join(drain(&mut m));
    assert_eq!(member_id, "m-1");
}

// ---------------------------------------------------------------------------------------------
// Losing the coordinator mid-rebalance.

#[test]
fn losing_the_coordinator_mid_sync_joins_again_once_it_is_found() {
    for failure in [Failure::Code(ErrorCode::NotCoordinator), Failure::Transport] {
        let now = Instant::now();
        let (mut m, _) = joining(eager(), now);
        m.on_join(Ok(joined(1, "m-1", "m-0", "range")), now);
        only_send(drain(&mut m));
        m.on_sync(Err(failure), now);
        assert_eq!(drain(&mut m), vec![]);
        m.tick(now + BACKOFF);
        assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
        m.on_coordinator(Ok(()), now + BACKOFF);
        // Generation 1 was never synced: heartbeating it would keep the member in the group with
        // no partitions.
        let (member_id, _, _) = only_join(drain(&mut m));
        assert_eq!(member_id, "m-1", "{failure:?}");
    }
}

#[test]
fn losing_the_coordinator_mid_join_joins_again_once_it_is_found() {
    let now = Instant::now();
    let (mut m, at) = with_in_flight(Kind::Join, cooperative(), now);
    m.on_join(Err((Failure::Code(ErrorCode::NotCoordinator), String::new())), at);
    assert_eq!(drain(&mut m), vec![]);
    m.tick(at + BACKOFF);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.on_coordinator(Ok(()), at + BACKOFF);
    let (member_id, _, sub) = only_join(drain(&mut m));
    assert_eq!((member_id.as_str(), sub.owned), ("m-1", t(&[0, 1])));
}

#[test]
fn an_eager_member_revokes_before_a_rejoin_decided_while_finding_the_coordinator() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0, 1], now);
    let at = now + HEARTBEAT;
    heartbeat(&mut m, at);
    m.on_heartbeat(Err(Failure::Code(ErrorCode::NotCoordinator)), at);
    m.tick(at + BACKOFF);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.subscribe(topics(&["t", "u"]), at + BACKOFF);
    m.on_coordinator(Ok(()), at + BACKOFF);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0, 1]))]);
    revoked(&mut m, at + BACKOFF);
    let (_, _, sub) = only_join(drain(&mut m));
    assert_eq!((sub.topics, sub.owned), (strings(&["t", "u"]), vec![]));
}

#[test]
fn a_subscription_changed_while_the_coordinator_is_unknown_joins_once_it_is_found() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0, 1], now);
    let at = now + HEARTBEAT;
    heartbeat(&mut m, at);
    m.on_heartbeat(Err(Failure::Transport), at);
    m.subscribe(topics(&["t", "u"]), at);
    assert_eq!(drain(&mut m), vec![], "no JoinGroup to a coordinator not known");
    m.tick(m.deadline().expect("due"));
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.on_coordinator(Ok(()), at);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0, 1]))]);
    revoked(&mut m, at);
    let (_, _, sub) = only_join(drain(&mut m));
    assert_eq!(sub.topics, strings(&["t", "u"]));
    // Synced or not, that join's generation is heartbeated only once SyncGroup answers.
    m.on_join(Ok(joined(2, "m-1", "m-0", "range")), at);
    only_send(drain(&mut m));
    m.on_sync(Err(Failure::Code(ErrorCode::CoordinatorLoadInProgress)), at);
    m.tick(at + BACKOFF);
    let (member_id, _, _) = only_join(drain(&mut m));
    assert_eq!(member_id, "m-1");
}

// ---------------------------------------------------------------------------------------------
// The application's wishes.

#[test]
fn a_dynamic_member_leaves_by_revoking_then_sending_leave_group() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0, 1], now);
    m.leave(now);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0, 1]))]);
    revoked(&mut m, now);
    assert_eq!(only_send(drain(&mut m)), Request::Leave { member_id: "m-1".into() });
    assert_eq!((m.phase(), m.deadline()), (Phase::Leaving, None));
    m.on_leave(Err(Failure::Transport), now);
    assert_eq!(drain(&mut m), vec![Action::Left]);
    assert_eq!((m.phase(), m.deadline(), m.generation()), (Phase::Done, None, -1));

    // Asked mid-heartbeat: decided once the heartbeat is answered.
    let mut m = stable(cooperative(), &[3], now);
    let at = now + HEARTBEAT;
    heartbeat(&mut m, at);
    m.leave(at);
    assert_eq!(drain(&mut m), vec![]);
    m.on_heartbeat(Ok(()), at);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[3]))]);
    revoked(&mut m, at);
    assert_eq!(only_send(drain(&mut m)), Request::Leave { member_id: "m-1".into() });
    m.on_leave(Ok(()), at);
    assert_eq!(drain(&mut m), vec![Action::Left]);

    // Never joined: out at once.
    let mut m = Machine::new(eager(), now);
    m.subscribe(topics(&["t"]), now);
    m.leave(now);
    assert_eq!(drain(&mut m), vec![Action::Left]);
}

#[test]
fn a_static_member_leaves_without_leave_group() {
    let now = Instant::now();
    let mut m = stable(settings(vec![Arc::new(RangeAssignor)], Some("i-1")), &[0, 1], now);
    m.leave(now);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0, 1]))]);
    revoked(&mut m, now);
    assert_eq!(drain(&mut m), vec![Action::Left]);
    assert_eq!((m.phase(), m.deadline()), (Phase::Done, None));
}

#[test]
fn a_new_subscription_joins_again() {
    let now = Instant::now();
    // Eager: the same topics change nothing; new ones revoke everything, then join.
    let mut m = stable(eager(), &[0, 1], now);
    m.subscribe(topics(&["t"]), now);
    assert_eq!((drain(&mut m), m.deadline()), (vec![], Some(now + HEARTBEAT)));
    m.subscribe(topics(&["t", "u"]), now + MS);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0, 1]))]);
    revoked(&mut m, now + MS);
    let (member_id, _, sub) = only_join(drain(&mut m));
    assert_eq!((member_id.as_str(), sub.topics, sub.owned), ("m-1", strings(&["t", "u"]), vec![]));

    // Cooperative: more topics join at once keeping what is owned.
    let mut m = stable(cooperative(), &[0, 1], now);
    m.subscribe(topics(&["t", "u"]), now);
    let (_, _, sub) = only_join(drain(&mut m));
    assert_eq!((sub.topics, sub.owned), (strings(&["t", "u"]), t(&[0, 1])));

    // Cooperative: a topic dropped is revoked before joining.
    let mut m = stable(cooperative(), &[0, 1], now);
    m.subscribe(topics(&["u"]), now);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0, 1]))]);
    revoked(&mut m, now);
    let (_, _, sub) = only_join(drain(&mut m));
    assert_eq!((sub.topics, sub.owned), (strings(&["u"]), vec![]));

    // Asked mid-heartbeat: the rejoin follows the heartbeat.
    let mut m = stable(eager(), &[0], now);
    let at = now + HEARTBEAT;
    heartbeat(&mut m, at);
    m.subscribe(topics(&["u"]), at);
    assert_eq!(drain(&mut m), vec![]);
    m.on_heartbeat(Ok(()), at);
    let due = m.deadline().expect("a rejoin is due");
    m.tick(due);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0]))]);
    revoked(&mut m, due);
    let (_, _, sub) = only_join(drain(&mut m));
    assert_eq!(sub.topics, strings(&["u"]));
}

#[test]
fn an_expired_dynamic_member_loses_leaves_and_waits_for_a_poll_to_join_again() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0, 1], now);
    m.poll_expired(now + MS);
    assert_eq!(drain(&mut m), vec![Action::Lost(t(&[0, 1])), Action::Send(Request::Leave { member_id: "m-1".into() })]);
    assert_eq!((m.member_id(), m.generation(), m.can_commit()), ("", -1, false));
    m.on_leave(Ok(()), now + 2 * MS);
    assert_eq!(drain(&mut m), vec![], "expired, not left: the member is not done");
    assert_eq!((m.phase(), m.deadline()), (Phase::Unjoined, None));
    m.tick(now + SESSION * 10);
    assert_eq!(drain(&mut m), vec![]);
    let resumed = now + SESSION * 10;
    m.poll_resumed(resumed);
    assert_eq!(m.deadline(), Some(resumed));
    m.tick(resumed);
    let (member_id, _, sub) = only_join(drain(&mut m));
    assert_eq!((member_id.as_str(), sub.owned, sub.generation), ("", vec![], -1));
}

#[test]
fn an_expired_static_member_stays_silent_until_a_poll() {
    let now = Instant::now();
    let mut m = stable(settings(vec![Arc::new(CooperativeStickyAssignor)], Some("i-1")), &[0, 1], now);
    m.poll_expired(now);
    assert_eq!(drain(&mut m), vec![Action::Lost(t(&[0, 1]))]);
    assert_eq!((m.phase(), m.deadline(), m.member_id()), (Phase::Unjoined, None, "m-1"));
    m.tick(now + SESSION);
    assert_eq!(drain(&mut m), vec![]);
    m.poll_resumed(now + SESSION);
    m.tick(now + SESSION);
    let (member_id, _, sub) = only_join(drain(&mut m));
    assert_eq!((member_id.as_str(), sub.owned), ("m-1", vec![]));
}

#[test]
fn a_poll_resumed_while_the_expiry_leave_group_is_in_flight_joins_once_it_is_answered() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0], now);
    m.poll_expired(now);
    assert_eq!(drain(&mut m).len(), 2);
    m.poll_resumed(now + MS);
    m.on_leave(Ok(()), now + 5 * MS);
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.deadline(), Some(now + 5 * MS));
    m.tick(now + 5 * MS);
    only_join(drain(&mut m));
}

#[test]
fn an_expiry_with_a_request_in_flight_drops_its_answer_then_leaves() {
    for kind in KINDS {
        for dynamic in [true, false] {
            let now = Instant::now();
            let instance = if dynamic { None } else { Some("i-1") };
            let (mut m, at) = with_in_flight(kind, settings(vec![Arc::new(CooperativeStickyAssignor)], instance), now);
            m.poll_expired(at);
            assert_eq!(drain(&mut m), vec![Action::Lost(t(&[0, 1]))], "{kind:?}");
            match kind {
                Kind::Heartbeat => m.on_heartbeat(Ok(()), at + MS),
                Kind::Join => m.on_join(Ok(joined(2, "m-1", "m-0", "cooperative-sticky")), at + MS),
                Kind::Sync => m.on_sync(Ok(encode_assignment(&t(&[0, 1, 2]), 1)), at + MS),
            }
            if dynamic {
                assert_eq!(only_send(drain(&mut m)), Request::Leave { member_id: "m-1".into() }, "{kind:?}");
                m.on_leave(Ok(()), at + 2 * MS);
            }
            assert_eq!((drain(&mut m), m.deadline(), m.owned().len()), (vec![], None, 0), "{kind:?} {dynamic}");
            m.poll_resumed(at + 3 * MS);
            m.tick(at + 3 * MS);
            let (member_id, _, sub) = only_join(drain(&mut m));
            let expected = if dynamic { "" } else { "m-1" };
            assert_eq!((member_id.as_str(), sub.owned), (expected, vec![]), "{kind:?} {dynamic}");
        }
    }
    // A fatal code in the dropped answer is fatal all the same.
    let now = Instant::now();
    let (mut m, at) = with_in_flight(Kind::Heartbeat, cooperative(), now);
    m.poll_expired(at);
    drain(&mut m);
    m.on_heartbeat(Err(Failure::Code(ErrorCode::GroupAuthorizationFailed)), at);
    assert_eq!(drain(&mut m), vec![Action::Fatal(ErrorCode::GroupAuthorizationFailed)]);
}

#[test]
fn a_leave_after_an_expiry_ends_the_member() {
    let now = Instant::now();
    let mut m = stable(eager(), &[0], now);
    m.poll_expired(now);
    drain(&mut m);
    m.leave(now);
    assert_eq!(drain(&mut m), vec![], "the expiry's LeaveGroup is in flight");
    m.on_leave(Ok(()), now);
    assert_eq!(drain(&mut m), vec![Action::Left]);

    let mut m = stable(eager(), &[0], now);
    m.poll_expired(now);
    drain(&mut m);
    m.on_leave(Ok(()), now);
    m.leave(now);
    assert_eq!(drain(&mut m), vec![Action::Left]);
}

// ---------------------------------------------------------------------------------------------
// Property tests against a model coordinator.

/// Every code a group API (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup) can
/// answer, each offered to every request whether or not that API really answers it.
const CODES: [ErrorCode; 14] = [
    ErrorCode::NotCoordinator,
    ErrorCode::CoordinatorNotAvailable,
    ErrorCode::CoordinatorLoadInProgress,
    ErrorCode::RebalanceInProgress,
    ErrorCode::UnknownMemberId,
    ErrorCode::IllegalGeneration,
    ErrorCode::MemberIdRequired,
    ErrorCode::FencedInstanceId,
    ErrorCode::GroupAuthorizationFailed,
    ErrorCode::InconsistentGroupProtocol,
    ErrorCode::InvalidSessionTimeout,
    ErrorCode::GroupMaxSizeReached,
    ErrorCode::RequestTimedOut,
    ErrorCode::UnknownServerError,
];

/// The codes that end a member when JoinGroup, SyncGroup or a heartbeat answers them.
const FATAL: [ErrorCode; 5] = [
    ErrorCode::FencedInstanceId,
    ErrorCode::GroupAuthorizationFailed,
    ErrorCode::InconsistentGroupProtocol,
    ErrorCode::InvalidSessionTimeout,
    ErrorCode::GroupMaxSizeReached,
];

/// How many requests the member may take, once the coordinator answers only successes, to be
/// stable with every partition (or out, after `leave`).
const LIVENESS: usize = 24;

/// Who the model coordinator makes the member in a JoinGroup answered with success.
#[derive(Debug, Clone)]
enum Role {
    /// The leader of a group of one.
    Alone,
    /// The leader of a group with a second member, `peer`, subscribed to `t`.
    WithPeer,
    /// A follower, given the partitions of `t` whose bits are set.
    Follower(u8),
}

/// What the model coordinator answers the request in flight.
#[derive(Debug, Clone)]
struct Answer {
    /// `None`: success.
    failure: Option<Failure>,
    /// How long the answer takes.
    latency: Duration,
    /// For a JoinGroup answered with success.
    role: Role,
    /// For a JoinGroup answered with success: which of the offered protocols it picks.
    protocol: usize,
}

/// Something the application does between answers.
#[derive(Debug, Clone)]
enum App {
    Subscribe(BTreeSet<String>),
    Leave,
    PollExpired,
    PollResumed,
    /// Commit every owned position.
    Commit,
    /// The auto-commit interval came.
    Interval,
    /// Acknowledge the revocation awaited.
    Ack,
}

#[derive(Debug, Clone)]
enum Step {
    /// Answers the request in flight; with none, time passes to the deadline first.
    Answer(Answer),
    App(App),
    /// Answers the commit in flight (`None`: success), if any.
    Commit(Option<Failure>),
}

fn failure() -> impl Strategy<Value = Failure> {
    prop_oneof![
        1 => Just(Failure::Transport),
        14 => proptest::sample::select(CODES.to_vec()).prop_map(Failure::Code),
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        prop_oneof![3 => Just(None), 2 => failure().prop_map(Some)],
        prop_oneof![Just(0u64), Just(1), Just(40), Just(1_200)].prop_map(Duration::from_millis),
        prop_oneof![2 => Just(Role::Alone), 1 => Just(Role::WithPeer), 1 => (0u8..16).prop_map(Role::Follower)],
        0usize..4,
    )
        .prop_map(|(failure, latency, role, protocol)| Answer { failure, latency, role, protocol })
}

fn app() -> impl Strategy<Value = App> {
    prop_oneof![
        2 => Just(App::Subscribe(topics(&["t"]))),
        2 => Just(App::Subscribe(topics(&["t", "u"]))),
        2 => Just(App::Subscribe(topics(&["u"]))),
        1 => Just(App::Subscribe(BTreeSet::new())),
        1 => Just(App::Leave),
        4 => Just(App::PollExpired),
        4 => Just(App::PollResumed),
        3 => Just(App::Commit),
        3 => Just(App::Interval),
        6 => Just(App::Ack),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => answer().prop_map(Step::Answer),
        2 => app().prop_map(Step::App),
        2 => prop_oneof![3 => Just(None), 1 => failure().prop_map(Some)].prop_map(Step::Commit),
    ]
}

/// Eager (one or two eager assignors, or cooperative-sticky with an eager one) or cooperative;
/// static or dynamic; auto-commit or not.
fn member() -> impl Strategy<Value = Settings> {
    (0usize..4, any::<bool>(), any::<bool>())
        .prop_map(|(which, is_static, auto_commit)| Settings { auto_commit, ..member_settings(which, is_static) })
}

/// A generation the model coordinator formed with the member.
#[derive(Debug, Clone)]
struct Formed {
    generation: i32,
    member_id: String,
    protocol: String,
    /// The leader's members (the member's own id first), or `None` for a follower.
    members: Option<Vec<String>>,
    /// The topics the leader must ask partition counts for.
    topics: Vec<String>,
    /// A follower's assignment.
    assignment: Vec<TopicPartition>,
    /// The member led a group of one.
    alone: bool,
}

/// The model coordinator's memory.
#[derive(Debug, Default)]
struct Coordinator {
    next_id: u32,
    ids: BTreeSet<String>,
    generation: i32,
    /// The last generation a JoinGroup formed.
    formed: Option<Formed>,
    /// The generation and member id whose SyncGroup last succeeded.
    synced: Option<(i32, String)>,
}

impl Coordinator {
    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        let id = format!("member-{}", self.next_id);
        self.ids.insert(id.clone());
        id
    }
}

/// A run of the machine against the model coordinator, and what the test knows of it.
struct Run {
    m: Machine,
    settings: Settings,
    start: Instant,
    now: Instant,
    coordinator: Coordinator,
    /// The request sent and not answered yet.
    in_flight: Option<Request>,
    /// What the driver would be fetching: Assign adds, Revoke and Lost remove.
    owned: BTreeSet<TopicPartition>,
    /// The last assignment a SyncGroup answered.
    assignment: BTreeSet<TopicPartition>,
    /// The subscription.
    topics: BTreeSet<String>,
    /// Fatal or Left, once seen.
    end: Option<Action>,
    leave_asked: bool,
    /// `poll_expired` was called and `poll_resumed` not since.
    expired: bool,
    /// The subscription changed while expired (which may bring the member back).
    resubscribed: bool,
    /// Requests sent since the expiry.
    sent_expired: usize,
    /// The expiry gave up the request in flight: the machine drops its answer (but for a fatal
    /// code), so a failure in it asks for no backoff.
    abandoned: bool,
    /// The member id the next JoinGroup must carry: the one MEMBER_ID_REQUIRED gave, none after
    /// UNKNOWN_MEMBER_ID, the same after ILLEGAL_GENERATION.
    next_join_id: Option<String>,
    /// A cooperative SyncGroup revoked something: the next request is the follow-up JoinGroup.
    follow_up: bool,
    /// When a failure was answered after which the next request must wait for the backoff.
    backoff_from: Option<Instant>,
    /// The earliest application call since the last tick (a deadline it set may be that old).
    app_at: Option<Instant>,
    trace: Vec<String>,
    /// The driver's side of the core: positions, commits, acknowledgements.
    core: CoreModel,
}

impl Run {
    fn new(settings: Settings) -> Self {
        let auto_commit = settings.auto_commit;
        let start = Instant::now();
        let mut m = Machine::new(settings.clone(), start);
        m.subscribe(topics(&["t"]), start);
        Run {
            m,
            settings,
            start,
            now: start,
            coordinator: Coordinator::default(),
            in_flight: None,
            owned: BTreeSet::new(),
            assignment: BTreeSet::new(),
            topics: topics(&["t"]),
            end: None,
            leave_asked: false,
            expired: false,
            resubscribed: false,
            sent_expired: 0,
            abandoned: false,
            next_join_id: None,
            follow_up: false,
            backoff_from: None,
            app_at: None,
            trace: Vec::new(),
            core: CoreModel::new(auto_commit),
        }
    }

    fn is_static(&self) -> bool {
        self.settings.instance_id.is_some()
    }

    fn cooperative(&self) -> bool {
        self.settings.protocol() == RebalanceProtocol::Cooperative
    }

    fn log(&mut self, what: String) {
        let at = self.now.duration_since(self.start).as_millis();
        self.trace.push(format!("{at:>6}ms {:?}: {what}", self.m.phase()));
    }

    /// A failure, with the run so far.
    fn failed(&self, why: String) -> String {
        let from = self.trace.len().saturating_sub(60);
        format!(
            "{why}\n  settings: {:?} static={} \n  trace:\n    {}",
            self.settings.assignors.iter().map(|a| a.name()).collect::<Vec<_>>(),
            self.is_static(),
            self.trace[from..].join("\n    ")
        )
    }

    /// Takes every action queued and checks the invariants that hold between inputs.
    fn settle(&mut self) -> Result<usize, String> {
        let mut n = 0;
        while let Some(action) = self.m.next_action() {
            n += 1;
            if n > 16 {
                return Err(self.failed("more than 16 actions from one input".into()));
            }
            self.process(action)?;
        }
        if self.owned != *self.m.owned() {
            return Err(self.failed(format!("owned {:?}, the machine says {:?}", self.owned, self.m.owned())));
        }
        if self.m.in_flight != self.in_flight.is_some() {
            return Err(self.failed(format!("in flight: {:?}, the machine says {}", self.in_flight, self.m.in_flight)));
        }
        if self.end.is_some() && (self.m.deadline().is_some() || self.in_flight.is_some()) {
            return Err(self.failed("a deadline or a request after the end".into()));
        }
        Ok(n)
    }

    fn process(&mut self, action: Action) -> Result<(), String> {
        self.log(format!("{action:?}"));
        if let Some(end) = &self.end {
            return Err(self.failed(format!("{action:?} after {end:?}")));
        }
        match action {
            Action::Send(request) => {
                if let Some(before) = &self.in_flight {
                    return Err(self.failed(format!("{request:?} sent with {before:?} in flight")));
                }
                self.check_request(&request)?;
                self.in_flight = Some(request);
            }
            Action::Metadata(topics) => {
                let expected = self.coordinator.formed.as_ref().map(|f| f.topics.clone());
                if self.m.phase() != Phase::Assigning || expected.as_ref() != Some(&topics) {
                    return Err(self.failed(format!("metadata for {topics:?}, the members want {expected:?}")));
                }
                let counts = topics.iter().filter(|t| *t == "t").map(|t| (t.clone(), 4)).collect();
                self.m.on_partition_counts(&counts, self.now);
            }
            Action::Revoke(partitions) => {
                if partitions.is_empty() || !partitions.iter().all(|tp| self.owned.remove(tp)) {
                    return Err(self.failed(format!("revoking {partitions:?}, not all owned")));
                }
                let stamp = self.m.stamp();
                let positions = self.core.revoke(&partitions, stamp.as_ref()).map_err(|e| self.failed(e))?;
                self.m.core_mut().paused(positions, stamp);
            }
            Action::Lost(partitions) => {
                if partitions.is_empty() {
                    return Err(self.failed("losing nothing".into()));
                }
                self.core.lost(&partitions, &mut self.owned).map_err(|e| self.failed(e))?;
            }
            Action::Commit(_) | Action::Committed { .. } | Action::Release(_) | Action::Remove(_) => {
                let stamp = self.m.stamp();
                if let (Action::Commit(_), Some(s)) = (&action, &stamp) {
                    let synced = self.coordinator.synced.as_ref().map(|(g, id)| (*g, id));
                    if synced != Some((s.generation, &s.member_id)) {
                        return Err(self.failed(format!("a commit as {s:?}; the coordinator synced {synced:?}")));
                    }
                }
                self.core.process(&action, stamp.as_ref()).map_err(|e| self.failed(e))?;
            }
            Action::Assign(partitions) => {
                if partitions.is_empty() || !partitions.iter().all(|tp| self.owned.insert(tp.clone())) {
                    return Err(self.failed(format!("assigning {partitions:?}, some owned already")));
                }
                // Whatever the last SyncGroup did not give is revoked before anything is added.
                if !self.owned.is_subset(&self.assignment) {
                    return Err(self.failed(format!(
                        "owning {:?} after an assignment of {:?}: not revoked first",
                        self.owned, self.assignment
                    )));
                }
            }
            Action::Fatal(code) => {
                if !FATAL.contains(&code) && code != ErrorCode::InvalidGroupId {
                    return Err(self.failed(format!("fatal {code:?}")));
                }
                self.end = Some(Action::Fatal(code));
            }
            Action::Left => {
                if !self.leave_asked {
                    return Err(self.failed("left, never asked to".into()));
                }
                self.end = Some(Action::Left);
            }
        }
        Ok(())
    }

    /// Checks a request as the machine sends it.
    fn check_request(&mut self, request: &Request) -> Result<(), String> {
        let is_leave = matches!(request, Request::Leave { .. });
        if let Some(from) = self.backoff_from.take()
            && !is_leave
            && self.now < from + BACKOFF
        {
            return Err(self.failed(format!(
                "{request:?} {}ms after a failure that calls for the backoff",
                self.now.duration_since(from).as_millis()
            )));
        }
        if self.expired && !self.resubscribed {
            self.sent_expired += 1;
            if self.is_static() || !is_leave || self.sent_expired > 1 {
                return Err(self.failed(format!("{request:?} while expired (only one LeaveGroup may go)")));
            }
        }
        // Heartbeats go on while the revocation before the follow-up runs, and a coordinator
        // lost meanwhile is found first.
        if self.follow_up
            && self.m.phase() != Phase::Revoking
            && *request != Request::FindCoordinator
            && std::mem::take(&mut self.follow_up)
            && !matches!(request, Request::Join { .. })
            && !(is_leave && (self.leave_asked || self.expired))
        {
            return Err(self.failed(format!("{request:?}, not the follow-up JoinGroup")));
        }
        match request {
            Request::FindCoordinator => {}
            Request::Join { member_id, protocols } => {
                if let Some(id) = self.next_join_id.take()
                    && *member_id != id
                {
                    return Err(self.failed(format!("joining as {member_id:?}, not {id:?}")));
                }
                let names: Vec<&str> = self.settings.assignors.iter().map(|a| a.name()).collect();
                if protocols.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>() != names {
                    return Err(self.failed("protocols are not the assignors in order".into()));
                }
                if !member_id.is_empty() && !self.coordinator.ids.contains(member_id) {
                    return Err(self.failed(format!("joining as {member_id}, an id never given")));
                }
                if protocols.iter().any(|(_, m)| *m != protocols[0].1) {
                    return Err(self.failed("protocols with different subscriptions".into()));
                }
                let sub = decode_subscription(member_id, None, &protocols[0].1).map_err(|e| self.failed(e))?;
                let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
                if !self.cooperative() && !owned.is_empty() {
                    return Err(self.failed(format!("an eager member joins owning {owned:?}")));
                }
                let topics: Vec<String> = self.topics.iter().cloned().collect();
                let generation = if self.cooperative() { self.m.generation() } else { -1 };
                if sub.topics != topics || sub.owned != owned || sub.generation != generation {
                    return Err(self.failed(format!(
                        "subscription {sub:?}; expected topics {topics:?}, owned {owned:?}, generation {generation}"
                    )));
                }
            }
            Request::Sync { generation, member_id, protocol, assignments } => {
                let Some(formed) = &self.coordinator.formed else {
                    return Err(self.failed("SyncGroup before any JoinGroup succeeded".into()));
                };
                if (*generation, member_id, protocol) != (formed.generation, &formed.member_id, &formed.protocol) {
                    return Err(self.failed(format!("SyncGroup for another generation than {formed:?}")));
                }
                match &formed.members {
                    None if !assignments.is_empty() => {
                        return Err(self.failed("a follower sends assignments".into()));
                    }
                    None => {}
                    Some(members) => {
                        let ids: BTreeSet<&String> = assignments.iter().map(|(id, _)| id).collect();
                        if ids != members.iter().collect() || ids.len() != assignments.len() {
                            return Err(self.failed(format!("assignments for {ids:?}, the members are {members:?}")));
                        }
                        let mut given = BTreeSet::new();
                        for (id, bytes) in assignments {
                            let parts = decode_assignment(bytes).map_err(|e| self.failed(e))?;
                            if !parts.iter().all(|tp| tp.topic.as_ref() == "t" && (0..4).contains(&tp.partition))
                                || !parts.iter().all(|tp| given.insert(tp.clone()))
                            {
                                return Err(self.failed(format!("{id} is given {parts:?}")));
                            }
                        }
                    }
                }
            }
            Request::Heartbeat { generation, member_id } => {
                let current = self.coordinator.formed.as_ref().map(|f| (f.generation, &f.member_id));
                let synced = self.coordinator.synced.as_ref().map(|(g, id)| (*g, id));
                if synced != Some((*generation, member_id)) || current != synced {
                    return Err(self.failed(format!(
                        "heartbeat of ({generation}, {member_id}): the last generation formed is {current:?}, synced \
                         {synced:?}"
                    )));
                }
            }
            Request::Leave { member_id } => {
                if self.is_static() {
                    return Err(self.failed("a static member sends LeaveGroup".into()));
                }
                if !self.coordinator.ids.contains(member_id) {
                    return Err(self.failed(format!("leaving as {member_id}, an id never given")));
                }
            }
            Request::ConsumerHeartbeat { .. } => {
                return Err(self.failed("the classic machine sent a ConsumerGroupHeartbeat".into()));
            }
        }
        Ok(())
    }

    /// The model coordinator answers the request in flight.
    fn answer(&mut self, answer: &Answer) -> Result<(), String> {
        let request = self.in_flight.take().expect("a request in flight");
        self.now += answer.latency;
        let failure = answer.failure;
        self.log(format!("answer {failure:?} to {request:?}"));
        // Which failures call for the backoff before the next request, and which are fatal.
        let immediate = |codes: &[ErrorCode]| match failure {
            None => true,
            Some(Failure::Code(code)) => codes.contains(&code) || FATAL.contains(&code),
            Some(Failure::Transport) => false,
        };
        let mut fatal = failure.and_then(|f| match f {
            Failure::Code(code) if FATAL.contains(&code) => Some(code),
            _ => None,
        });
        let wait = match &request {
            Request::FindCoordinator => {
                fatal = fatal.filter(|&code| code == ErrorCode::GroupAuthorizationFailed);
                failure.is_some()
            }
            Request::Join { .. } => !immediate(&[
                ErrorCode::MemberIdRequired,
                ErrorCode::UnknownMemberId,
                ErrorCode::IllegalGeneration,
                ErrorCode::RebalanceInProgress,
            ]),
            Request::Sync { .. } | Request::Heartbeat { .. } => {
                !immediate(&[ErrorCode::UnknownMemberId, ErrorCode::IllegalGeneration, ErrorCode::RebalanceInProgress])
            }
            Request::Leave { .. } => {
                fatal = None;
                false
            }
            Request::ConsumerHeartbeat { .. } => unreachable!("the classic machine never sends it"),
        };
        let dropped = std::mem::take(&mut self.abandoned);
        self.backoff_from = (wait && !dropped).then_some(self.now);
        if let Request::Join { member_id, .. } | Request::Sync { member_id, .. } | Request::Heartbeat { member_id, .. } =
            &request
            && !dropped
        {
            match failure {
                Some(Failure::Code(ErrorCode::UnknownMemberId)) => self.next_join_id = Some(String::new()),
                Some(Failure::Code(ErrorCode::IllegalGeneration)) => self.next_join_id = Some(member_id.clone()),
                _ => {}
            }
        }
        let now = self.now;
        let result = failure.map_or(Ok(()), Err);
        match request {
            Request::FindCoordinator => self.m.on_coordinator(result, now),
            Request::Join { member_id, protocols } => match failure {
                None => {
                    let id = if member_id.is_empty() { self.coordinator.fresh_id() } else { member_id };
                    self.coordinator.generation += 1;
                    let (protocol, metadata) = protocols[answer.protocol % protocols.len()].clone();
                    let own = (id.clone(), self.settings.instance_id.clone(), metadata.clone());
                    let peer = ("peer".to_string(), None, encode_subscription(&strings(&["t"]), &[], -1, 2));
                    let mut topics: BTreeSet<String> = decode_subscription(&id, None, &metadata)
                        .map_err(|e| self.failed(e))?
                        .topics
                        .into_iter()
                        .collect();
                    let (leader, members, assignment) = match answer.role {
                        Role::Alone => (id.clone(), vec![own], vec![]),
                        Role::WithPeer => {
                            topics.insert("t".into());
                            (id.clone(), vec![own, peer], vec![])
                        }
                        Role::Follower(mask) => {
                            let parts = (0..4).filter(|p| mask & (1 << p) != 0).collect::<Vec<_>>();
                            ("leader".to_string(), vec![], t(&parts))
                        }
                    };
                    let is_leader = leader == id;
                    let alone = matches!(answer.role, Role::Alone);
                    self.coordinator.formed = Some(Formed {
                        generation: self.coordinator.generation,
                        member_id: id.clone(),
                        protocol: protocol.clone(),
                        members: is_leader.then(|| members.iter().map(|(id, _, _)| id.clone()).collect()),
                        topics: topics.into_iter().collect(),
                        assignment,
                        alone,
                    });
                    let joined = Joined {
                        generation: self.coordinator.generation,
                        protocol: Some(protocol),
                        leader,
                        member_id: id,
                        members,
                    };
                    self.m.on_join(Ok(joined), now);
                }
                Some(f @ Failure::Code(ErrorCode::MemberIdRequired)) => {
                    let id = self.coordinator.fresh_id();
                    if !dropped {
                        self.next_join_id = Some(id.clone());
                    }
                    self.m.on_join(Err((f, id)), now);
                }
                Some(f) => self.m.on_join(Err((f, String::new())), now),
            },
            Request::Sync { generation, member_id, assignments, .. } => match failure {
                None => {
                    let formed = self.coordinator.formed.clone().expect("checked when sent");
                    let bytes = match formed.members {
                        Some(_) => assignments.iter().find(|(id, _)| *id == member_id).expect("checked").1.clone(),
                        None => encode_assignment(&formed.assignment, 1),
                    };
                    self.assignment = decode_assignment(&bytes).expect("checked").into_iter().collect();
                    self.follow_up = !dropped && self.cooperative() && !self.owned.is_subset(&self.assignment);
                    self.coordinator.synced = Some((generation, member_id));
                    self.m.on_sync(Ok(bytes), now);
                }
                Some(f) => self.m.on_sync(Err(f), now),
            },
            Request::Heartbeat { .. } => self.m.on_heartbeat(result, now),
            Request::Leave { .. } => self.m.on_leave(result, now),
            Request::ConsumerHeartbeat { .. } => unreachable!("the classic machine never sends it"),
        }
        self.settle()?;
        if let Some(code) = fatal
            && self.end != Some(Action::Fatal(code))
        {
            return Err(self.failed(format!("{code:?} answered, not fatal")));
        }
        Ok(())
    }

    /// Nothing in flight: time passes to the deadline and the machine ticks. False when it has
    /// no deadline (which only a member out of the group by the application's doing may have).
    fn wait(&mut self) -> Result<bool, String> {
        let Some(deadline) = self.m.deadline() else {
            if self.end.is_none() && !self.expired && !self.topics.is_empty() && !self.core.waiting() {
                return Err(self.failed("nothing in flight, nothing due: stuck".into()));
            }
            return Ok(false);
        };
        // A deadline in the past is for at once; older than the backoff it is stale (unless an
        // application call made while a request was in flight set it).
        let floor = self.now.checked_sub(BACKOFF).unwrap_or(self.start);
        let floor = self.app_at.map_or(floor, |at| at.min(floor));
        if deadline < floor {
            return Err(
                self.failed(format!("a deadline {}ms in the past", self.now.duration_since(deadline).as_millis()))
            );
        }
        self.now = self.now.max(deadline);
        self.app_at = None;
        self.log("tick".into());
        self.m.tick(self.now);
        if self.settle()? == 0 && self.m.deadline().is_some_and(|d| d <= self.now) {
            return Err(self.failed("a tick at the deadline did nothing and left it due: a busy loop".into()));
        }
        Ok(true)
    }

    /// The application calls the machine (as the driver does: between answers, with the action
    /// queue empty).
    fn app(&mut self, call: &App) -> Result<(), String> {
        self.log(format!("app {call:?}"));
        self.backoff_from = None;
        self.app_at.get_or_insert(self.now);
        let now = self.now;
        match call {
            App::Subscribe(topics) => {
                if self.expired && *topics != self.topics {
                    self.resubscribed = true;
                }
                self.topics = topics.clone();
                self.m.subscribe(topics.clone(), now);
            }
            App::Leave => {
                self.leave_asked = true;
                self.m.leave(now);
            }
            App::PollExpired => {
                // A member asked to leave does not expire (the driver stops watching polls).
                if !self.expired && !self.leave_asked && self.m.generation() >= 0 {
                    (self.expired, self.resubscribed, self.sent_expired) = (true, false, 0);
                    self.abandoned = self.in_flight.is_some() && !self.leave_asked;
                    (self.next_join_id, self.follow_up) = (None, false);
                    self.m.poll_expired(now);
                }
            }
            App::PollResumed => {
                if self.expired {
                    self.expired = false;
                    self.m.poll_resumed(now);
                }
            }
            App::Commit => {
                let (id, offsets) = self.core.user_commit(&self.owned);
                let stamp = self.m.stamp();
                self.m.core_mut().commit(id, offsets, stamp);
            }
            App::Interval => {
                let positions = self.core.interval(&self.owned);
                let stamp = self.m.stamp();
                self.m.core_mut().interval(positions, stamp);
            }
            App::Ack => {
                if self.core.ack() {
                    self.m.released(now);
                }
            }
        }
        self.settle()?;
        Ok(())
    }

    /// Runs `script`, then answers only successes (but for one REBALANCE_IN_PROGRESS to a
    /// heartbeat when the group has changed, to the member alone): the member must be stable
    /// with every partition (or out, if asked to leave, or fatal) within [`LIVENESS`] requests.
    fn run(mut self, script: &[Step]) -> Result<(), String> {
        self.settle()?;
        let mut steps = script.iter().peekable();
        let mut guard = 0;
        while let Some(step) = steps.peek() {
            guard += 1;
            if guard > 100 * (script.len() + 1) {
                return Err(self.failed("the script does not advance".into()));
            }
            if self.end.is_some() {
                break;
            }
            match step {
                Step::App(call) => {
                    self.app(call)?;
                    steps.next();
                }
                Step::Answer(answer) => {
                    self.core.read(&self.owned);
                    if self.in_flight.is_some() {
                        self.answer(answer)?;
                        steps.next();
                    } else if !self.wait()? {
                        steps.next();
                    }
                }
                Step::Commit(failure) => {
                    self.commit_answer(*failure)?;
                    steps.next();
                }
            }
        }
        self.log("the script is over".into());
        if self.end.is_none() {
            if self.expired {
                self.app(&App::PollResumed)?;
            }
            if self.topics != topics(&["t"]) {
                self.app(&App::Subscribe(topics(&["t"])))?;
            }
        }
        let success = Answer { failure: None, latency: MS, role: Role::Alone, protocol: 0 };
        // The peer (or the other leader) is gone: the group rebalances to the member alone.
        let rebalance = Answer { failure: Some(Failure::Code(ErrorCode::RebalanceInProgress)), ..success.clone() };
        let all = set(&t(&[0, 1, 2, 3]));
        let mut answered = 0;
        loop {
            if let Some(end) = &self.end {
                if *end == Action::Left && !self.leave_asked {
                    return Err(self.failed("left".into()));
                }
                return self.after_the_end();
            }
            // What the core waits for comes at once.
            if self.core.awaiting_ack() {
                self.app(&App::Ack)?;
                continue;
            }
            if self.commit_answer(None)? {
                continue;
            }
            if !self.leave_asked
                && self.m.phase() == Phase::Stable
                && self.owned == all
                && matches!(self.in_flight, Some(Request::Heartbeat { .. }))
                && self.core.idle()
            {
                return Ok(());
            }
            if answered == LIVENESS {
                return Err(self.failed(format!("not stable with {all:?} after {LIVENESS} successes")));
            }
            if self.in_flight.is_some() {
                let alone = self.coordinator.formed.as_ref().is_some_and(|f| f.alone);
                let heartbeat = matches!(self.in_flight, Some(Request::Heartbeat { .. }));
                self.answer(if heartbeat && !alone { &rebalance } else { &success })?;
                answered += 1;
            } else if !self.wait()? {
                return Err(self.failed("nothing due, not stable".into()));
            }
        }
    }

    /// The coordinator answers the commit in flight, if any (true when one was).
    fn commit_answer(&mut self, failure: Option<Failure>) -> Result<bool, String> {
        let Some(result) = self.core.answer(failure, &self.owned) else { return Ok(false) };
        self.log(format!("commit answered {failure:?}"));
        let stamp = self.m.stamp();
        self.m.core_mut().on_commit(result, stamp);
        self.settle()?;
        Ok(true)
    }

    /// After Fatal or Left nothing the application does brings anything.
    fn after_the_end(&mut self) -> Result<(), String> {
        let later = self.now + SESSION * 10;
        self.m.tick(later);
        self.m.subscribe(topics(&["t", "v"]), later);
        self.m.leave(later);
        self.m.poll_expired(later);
        self.m.poll_resumed(later);
        self.m.tick(later);
        match self.m.next_action() {
            None if self.m.deadline().is_none() => Ok(()),
            action => Err(self.failed(format!("after the end: {action:?}, deadline {:?}", self.m.deadline()))),
        }
    }
}

fn run(settings: Settings, script: &[Step]) -> Result<(), TestCaseError> {
    Run::new(settings).run(script).map_err(TestCaseError::fail)
}

#[test]
fn the_model_runs_a_quiet_group_for_every_kind_of_member() {
    for which in 0..4 {
        for is_static in [false, true] {
            let settings = member_settings(which, is_static);
            run(settings, &[]).unwrap();
        }
    }
}

/// [`member`]'s settings, by hand.
fn member_settings(which: usize, is_static: bool) -> Settings {
    let assignors: Vec<Arc<dyn PartitionAssignor>> = match which {
        0 => vec![Arc::new(RangeAssignor)],
        1 => vec![Arc::new(RoundRobinAssignor), Arc::new(RangeAssignor)],
        2 => vec![Arc::new(CooperativeStickyAssignor)],
        _ => vec![Arc::new(CooperativeStickyAssignor), Arc::new(RangeAssignor)],
    };
    settings(assignors, is_static.then_some("instance-1"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        rng_seed: RngSeed::Fixed(0x6b72_6162_6d61_6368),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The coordinator answers by the script; the member only reacts.
    #[test]
    fn against_a_model_coordinator(
        settings in member(),
        script in proptest::collection::vec(answer().prop_map(Step::Answer), 0..80),
    ) {
        run(settings, &script)?;
    }

    /// The same, with the application subscribing, leaving, and not polling in between.
    #[test]
    fn against_a_model_coordinator_with_the_application(
        settings in member(),
        script in proptest::collection::vec(step(), 0..80),
    ) {
        run(settings, &script)?;
    }
}
