//! The fake coordinator's answers, request by request (every answer also encoded at its
//! version, as the fake broker would).

use super::*;
use futures_util::FutureExt;
use krab_protocol::messages::join_group::JoinGroupRequestProtocol;
use krab_protocol::messages::leave_group::MemberIdentity;
use krab_protocol::messages::offset_commit::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use krab_protocol::messages::offset_fetch::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use krab_protocol::messages::sync_group::SyncGroupRequestAssignment;
use std::future::Future;
use std::pin::Pin;

const G: &str = "g";

fn header(api: ApiKey, version: i16) -> RequestHeader {
    RequestHeader {
        request_api_key: api as i16,
        request_api_version: version,
        client_id: Some("c".into()),
        ..Default::default()
    }
}

fn encodes(response: &AnyResponse, version: i16) {
    let mut buf = Vec::new();
    response.encode(&mut buf, version).unwrap_or_else(|e| panic!("encodes at v{version}: {e}"));
}

/// An answer held by the coordinator.
struct Pending(Pin<Box<dyn Future<Output = Reply> + Send>>, i16);

impl Pending {
    /// The answer if it came.
    fn ready(&mut self) -> Option<AnyResponse> {
        match (&mut self.0).now_or_never()? {
            Reply::Respond(r) => {
                encodes(&r, self.1);
                Some(r)
            }
            _ => panic!("not a response"),
        }
    }
}

enum Answer {
    Now(AnyResponse),
    Held(Pending),
}

fn call(c: &FakeCoordinator, broker: i32, api: ApiKey, version: i16, request: AnyRequest) -> Answer {
    match c.handle(broker, &header(api, version), &request).expect("a coordinator API") {
        Reply::Respond(r) => {
            encodes(&r, version);
            Answer::Now(r)
        }
        Reply::Later(f) => Answer::Held(Pending(f, version)),
        _ => panic!("unexpected reply"),
    }
}

fn now(answer: Answer) -> AnyResponse {
    match answer {
        Answer::Now(r) => r,
        Answer::Held(mut p) => p.ready().expect("answered at once"),
    }
}

fn held(answer: Answer) -> Pending {
    match answer {
        Answer::Held(p) => p,
        Answer::Now(r) => panic!("answered at once: {r:?}"),
    }
}

fn join_request(member_id: &str, protocols: &[&str]) -> AnyRequest {
    AnyRequest::JoinGroup(Box::new(JoinGroupRequest {
        group_id: G.into(),
        session_timeout_ms: 1000,
        rebalance_timeout_ms: 5000,
        member_id: member_id.into(),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| JoinGroupRequestProtocol {
                name: (*p).into(),
                metadata: Bytes::from(format!("{member_id}:{p}")),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }))
}

fn join(c: &FakeCoordinator, member_id: &str, protocols: &[&str]) -> Answer {
    call(c, 1, ApiKey::JoinGroup, 9, join_request(member_id, protocols))
}

fn joined(r: AnyResponse) -> JoinGroupResponse {
    match r {
        AnyResponse::JoinGroup(j) => *j,
        other => panic!("{other:?}"),
    }
}

/// A member id (KIP-394) and that member joined.
fn new_member(c: &FakeCoordinator) -> String {
    let r = joined(now(join(c, "", &["range"])));
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
    r.member_id
}

fn sync(c: &FakeCoordinator, member: &str, generation: i32, assignments: &[(&str, &str)]) -> Answer {
    let request = SyncGroupRequest {
        group_id: G.into(),
        generation_id: generation,
        member_id: member.into(),
        assignments: assignments
            .iter()
            .map(|(m, a)| SyncGroupRequestAssignment {
                member_id: (*m).into(),
                assignment: Bytes::from(a.to_string()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    call(c, 1, ApiKey::SyncGroup, 5, AnyRequest::SyncGroup(Box::new(request)))
}

fn synced(r: AnyResponse) -> (i16, Bytes) {
    match r {
        AnyResponse::SyncGroup(s) => (s.error_code, s.assignment),
        other => panic!("{other:?}"),
    }
}

fn heartbeat_at(c: &FakeCoordinator, broker: i32, member: &str, generation: i32) -> i16 {
    let request = HeartbeatRequest {
        group_id: G.into(),
        generation_id: generation,
        member_id: member.into(),
        ..Default::default()
    };
    match now(call(c, broker, ApiKey::Heartbeat, 4, AnyRequest::Heartbeat(Box::new(request)))) {
        AnyResponse::Heartbeat(h) => h.error_code,
        other => panic!("{other:?}"),
    }
}

fn heartbeat(c: &FakeCoordinator, member: &str, generation: i32) -> i16 {
    heartbeat_at(c, 1, member, generation)
}

fn commit(c: &FakeCoordinator, member: &str, generation: i32, offset: i64) -> i16 {
    let request = OffsetCommitRequest {
        group_id: G.into(),
        generation_id_or_member_epoch: generation,
        member_id: member.into(),
        topics: vec![OffsetCommitRequestTopic {
            name: "t".into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: offset,
                committed_leader_epoch: 3,
                committed_metadata: Some("m".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    match now(call(c, 1, ApiKey::OffsetCommit, 9, AnyRequest::OffsetCommit(Box::new(request)))) {
        AnyResponse::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    }
}

/// One member alone in a stable generation 1.
fn stable_one(c: &FakeCoordinator) -> String {
    let a = new_member(c);
    let r = joined(now(join(c, &a, &["range"])));
    assert_eq!((r.error_code, r.generation_id, r.leader.as_str()), (0, 1, a.as_str()));
    assert_eq!(synced(now(sync(c, &a, 1, &[(&a, "all")]))), (0, Bytes::from("all")));
    a
}

#[test]
fn find_coordinator_names_the_broker_single_and_batched_and_follows_a_move() {
    let c = FakeCoordinator::new(2);
    let single = FindCoordinatorRequest { key: G.into(), ..Default::default() };
    for v in 0..=3 {
        match now(call(&c, 1, ApiKey::FindCoordinator, v, AnyRequest::FindCoordinator(Box::new(single.clone())))) {
            AnyResponse::FindCoordinator(r) => {
                assert_eq!((r.error_code, r.node_id, r.host.as_str(), r.port), (0, 2, "broker-2", 9092));
            }
            other => panic!("{other:?}"),
        }
    }
    c.move_to(3);
    let batched = FindCoordinatorRequest { coordinator_keys: vec!["a".into(), "b".into()], ..Default::default() };
    match now(call(&c, 1, ApiKey::FindCoordinator, 5, AnyRequest::FindCoordinator(Box::new(batched)))) {
        AnyResponse::FindCoordinator(r) => {
            let got: Vec<(&str, i32)> = r.coordinators.iter().map(|k| (k.key.as_str(), k.node_id)).collect();
            assert_eq!(got, [("a", 3), ("b", 3)]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.requests(ApiKey::FindCoordinator), 5);
}

#[tokio::test]
async fn a_rebalance_waits_for_every_member_and_the_followers_sync_waits_for_the_leader() {
    let c = FakeCoordinator::new(1);
    let a = stable_one(&c);
    assert_eq!(heartbeat(&c, &a, 1), 0);
    // B joins: held until A rejoins; A learns of it through its heartbeat.
    let b = new_member(&c);
    let mut b_join = held(join(&c, &b, &["roundrobin", "range"]));
    assert!(b_join.ready().is_none());
    assert_eq!(c.group(G).unwrap().state, GroupState::PreparingRebalance);
    assert_eq!(heartbeat(&c, &a, 1), REBALANCE_IN_PROGRESS);
    // Commits of the current generation still go while members rejoin.
    assert_eq!(commit(&c, &a, 1, 5), 0);
    let a_join = joined(now(join(&c, &a, &["range"])));
    let b_join = joined(b_join.ready().expect("answered once A rejoined"));
    for r in [&a_join, &b_join] {
        assert_eq!((r.generation_id, r.protocol_name.as_deref(), r.leader.as_str()), (2, Some("range"), a.as_str()));
    }
    let metadata: Vec<(String, Bytes)> =
        a_join.members.iter().map(|m| (m.member_id.clone(), m.metadata.clone())).collect();
    assert_eq!(
        metadata,
        [(a.clone(), Bytes::from(format!("{a}:range"))), (b.clone(), Bytes::from(format!("{b}:range")))]
    );
    assert!(b_join.members.is_empty(), "only the leader gets the members");
    // Between join and sync: commits are refused, heartbeats are fine.
    assert_eq!(commit(&c, &a, 2, 6), REBALANCE_IN_PROGRESS);
    assert_eq!(heartbeat(&c, &b, 2), 0);
    let mut b_sync = held(sync(&c, &b, 2, &[]));
    assert!(b_sync.ready().is_none());
    assert_eq!(synced(now(sync(&c, &a, 2, &[(&a, "p0"), (&b, "p1")]))), (0, Bytes::from("p0")));
    assert_eq!(synced(b_sync.ready().expect("the leader's sync answers it")), (0, Bytes::from("p1")));
    let g = c.group(G).unwrap();
    assert_eq!((g.state, g.generation, g.members), (GroupState::Stable, 2, vec![a.clone(), b.clone()]));
    // Fencing.
    assert_eq!(heartbeat(&c, &a, 1), ILLEGAL_GENERATION);
    assert_eq!(heartbeat(&c, "nobody", 2), UNKNOWN_MEMBER_ID);
    assert_eq!(commit(&c, &b, 1, 7), ILLEGAL_GENERATION);
    assert_eq!(commit(&c, "nobody", 2, 7), UNKNOWN_MEMBER_ID);
    assert_eq!(commit(&c, &b, 2, 8), 0);
    let log: Vec<(i32, String, i64, i16)> =
        c.commits().into_iter().map(|r| (r.generation, r.member_id, r.offsets[0].2, r.error_code)).collect();
    assert_eq!(
        log,
        [
            (1, a.clone(), 5, 0),
            (2, a.clone(), 6, REBALANCE_IN_PROGRESS),
            (1, b.clone(), 7, ILLEGAL_GENERATION),
            (2, "nobody".into(), 7, UNKNOWN_MEMBER_ID),
            (2, b.clone(), 8, 0)
        ]
    );
    assert_eq!(
        c.committed(G, "t", 0),
        Some(CommittedOffset { offset: 8, leader_epoch: 3, metadata: Some("m".into()) })
    );
}

#[tokio::test]
async fn a_join_without_a_common_protocol_or_with_an_unknown_id_is_refused() {
    let c = FakeCoordinator::new(1);
    stable_one(&c);
    let b = new_member(&c);
    assert_eq!(joined(now(join(&c, &b, &["roundrobin"]))).error_code, INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(joined(now(join(&c, "made-up", &["range"]))).error_code, UNKNOWN_MEMBER_ID);
    // Before KIP-394 (v3) an empty id joins at once.
    let _held = held(call(&c, 1, ApiKey::JoinGroup, 3, join_request("", &["range"])));
    assert_eq!(c.members(G).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn silent_members_expire_and_a_rebalance_times_out_without_them() {
    let c = FakeCoordinator::new(1);
    let a = stable_one(&c);
    let b = new_member(&c);
    let mut b_join = held(join(&c, &b, &["range"]));
    // A never rejoins: its session (1 s) ends first, and B's join completes without it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = joined(b_join.ready().expect("completed when A expired"));
    assert_eq!((r.generation_id, r.leader.as_str(), r.members.len()), (2, b.as_str(), 1));
    assert_eq!(c.members(G), std::slice::from_ref(&b));
    assert_eq!(heartbeat(&c, &a, 1), UNKNOWN_MEMBER_ID);
    // B heartbeating stays; a member whose JoinGroup is held does not expire, but the
    // rebalance times out (5 s) without the members that did not rejoin.
    assert_eq!(synced(now(sync(&c, &b, 2, &[(&b, "x")]))).0, 0);
    let d = new_member(&c);
    let mut d_join = held(join(&c, &d, &["range"]));
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if d_join.ready().is_some() {
            panic!("completed while B still heartbeats");
        }
        assert_eq!(heartbeat(&c, &b, 2), REBALANCE_IN_PROGRESS);
    }
    assert_eq!(c.members(G), [b.clone(), d.clone()]);
    // The timeout is 5 s after D joined, 4 s ago; D's session (1 s) runs from its answer.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = joined(d_join.ready().expect("the rebalance timed out"));
    assert_eq!((r.generation_id, r.members.len()), (3, 1));
    assert_eq!(c.members(G), [d]);
}

#[tokio::test]
async fn leave_group_single_and_batched_removes_and_rebalances() {
    let c = FakeCoordinator::new(1);
    let a = stable_one(&c);
    let leave_v2 = LeaveGroupRequest { group_id: G.into(), member_id: a.clone(), ..Default::default() };
    match now(call(&c, 1, ApiKey::LeaveGroup, 2, AnyRequest::LeaveGroup(Box::new(leave_v2.clone())))) {
        AnyResponse::LeaveGroup(r) => assert_eq!(r.error_code, 0),
        other => panic!("{other:?}"),
    }
    let g = c.group(G).unwrap();
    assert_eq!((g.state, g.generation, g.members.len()), (GroupState::Empty, 2, 0));
    let b = stable_after_empty(&c);
    let leave_v5 = LeaveGroupRequest {
        group_id: G.into(),
        members: vec![
            MemberIdentity { member_id: b.clone(), group_instance_id: None, ..Default::default() },
            MemberIdentity { member_id: a.clone(), group_instance_id: None, ..Default::default() },
        ],
        ..Default::default()
    };
    match now(call(&c, 1, ApiKey::LeaveGroup, 5, AnyRequest::LeaveGroup(Box::new(leave_v5)))) {
        AnyResponse::LeaveGroup(r) => {
            let codes: Vec<(String, i16)> = r.members.iter().map(|m| (m.member_id.clone(), m.error_code)).collect();
            assert_eq!(codes, [(b.clone(), 0), (a.clone(), UNKNOWN_MEMBER_ID)]);
        }
        other => panic!("{other:?}"),
    }
    let leaves: Vec<(String, i16)> = c.leaves().into_iter().map(|l| (l.member_id, l.error_code)).collect();
    assert_eq!(leaves, [(a.clone(), 0), (b, 0), (a, UNKNOWN_MEMBER_ID)]);
}

fn stable_after_empty(c: &FakeCoordinator) -> String {
    let b = new_member(c);
    let r = joined(now(join(c, &b, &["range"])));
    assert_eq!((r.generation_id, r.leader.as_str()), (3, b.as_str()));
    b
}

#[test]
fn offset_fetch_answers_stored_offsets_and_minus_one_single_and_batched() {
    let c = FakeCoordinator::new(1);
    // A commit without a generation to an empty group stores offsets (no group management).
    assert_eq!(commit(&c, "", -1, 42), 0);
    let v7 = OffsetFetchRequest {
        group_id: G.into(),
        topics: Some(vec![OffsetFetchRequestTopic {
            name: "t".into(),
            partition_indexes: vec![0, 1],
            ..Default::default()
        }]),
        ..Default::default()
    };
    match now(call(&c, 1, ApiKey::OffsetFetch, 7, AnyRequest::OffsetFetch(Box::new(v7)))) {
        AnyResponse::OffsetFetch(r) => {
            let got: Vec<(i32, i64, i32)> = r.topics[0]
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset, p.committed_leader_epoch))
                .collect();
            assert_eq!(got, [(0, 42, 3), (1, -1, -1)]);
        }
        other => panic!("{other:?}"),
    }
    let v8 = OffsetFetchRequest {
        groups: vec![
            OffsetFetchRequestGroup { group_id: G.into(), topics: None, ..Default::default() },
            OffsetFetchRequestGroup {
                group_id: "other".into(),
                topics: Some(vec![OffsetFetchRequestTopics {
                    name: "t".into(),
                    partition_indexes: vec![0],
                    ..Default::default()
                }]),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    match now(call(&c, 1, ApiKey::OffsetFetch, 9, AnyRequest::OffsetFetch(Box::new(v8)))) {
        AnyResponse::OffsetFetch(r) => {
            let got: Vec<(String, i64)> =
                r.groups.iter().map(|g| (g.group_id.clone(), g.topics[0].partitions[0].committed_offset)).collect();
            assert_eq!(got, [(G.to_string(), 42), ("other".to_string(), -1)]);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn scripted_faults_and_the_other_brokers_answer_before_anything_else() {
    let c = FakeCoordinator::new(1);
    let a = stable_one(&c);
    c.fail_next(ApiKey::Heartbeat, [ErrorCode::NotCoordinator.code(), UNKNOWN_MEMBER_ID]);
    assert_eq!(heartbeat(&c, &a, 1), NOT_COORDINATOR);
    assert_eq!(heartbeat(&c, &a, 1), UNKNOWN_MEMBER_ID);
    assert_eq!(heartbeat(&c, &a, 1), 0);
    assert_eq!(c.faults_left(ApiKey::Heartbeat), 0);
    c.fail_next(ApiKey::JoinGroup, [ErrorCode::CoordinatorLoadInProgress.code()]);
    assert_eq!(joined(now(join(&c, "", &["range"]))).error_code, ErrorCode::CoordinatorLoadInProgress.code());
    // Another broker is not the coordinator; after a move, the old one is not.
    assert_eq!(heartbeat_at(&c, 2, &a, 1), NOT_COORDINATOR);
    c.move_to(2);
    assert_eq!(heartbeat_at(&c, 1, &a, 1), NOT_COORDINATOR);
    assert_eq!(heartbeat_at(&c, 2, &a, 1), 0);
    assert_eq!(c.requests(ApiKey::Heartbeat), 6);
    assert_eq!(c.members(G), [a]);
}
