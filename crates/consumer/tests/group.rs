//! The consumer's group member end to end, through the public API only, against fake brokers
//! whose group APIs a `FakeCoordinator` answers (classic protocol) and whose records come from
//! in-memory logs. Time is paused: sessions of 1 s and heartbeats every 100 ms cost nothing.

mod support;

use futures_util::StreamExt;
use krab_consumer::{Consumer, ConsumerConfig, RebalanceEvent, RebalanceEvents, RevokeAck, TopicPartition};
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use krab_testkit::GroupState;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Fake, TOPIC};
use tokio::time::Instant;

const GROUP: &str = "g";

/// A rebalance event, by partition numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
    Lost(Vec<i32>),
}

fn numbers(partitions: &[TopicPartition]) -> Vec<i32> {
    let mut ps: Vec<i32> = partitions.iter().map(|tp| tp.partition).collect();
    ps.sort();
    ps
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, p)
}

/// One group member and what the application saw of it.
struct Member {
    consumer: Consumer,
    events: RebalanceEvents,
    /// (partition, offset) of every record returned, in order.
    records: Vec<(i32, i64)>,
    log: Vec<Ev>,
    /// Keep revocations' acks instead of acknowledging at once.
    hold: bool,
    held: Vec<RevokeAck>,
    /// Read records while pumped (else only events are taken).
    reading: bool,
    /// Stop reading once this many records were returned.
    read_limit: Option<usize>,
    /// When a revocation is seen: the positions the application's handle reports then, and
    /// the coordinator's commit log length.
    on_revoke: Vec<(BTreeMap<i32, Option<i64>>, usize)>,
    fake: Arc<Fake>,
}

impl Member {
    async fn new(fake: &Arc<Fake>, properties: &[(&str, &str)]) -> Member {
        let mut config = ConsumerConfig::default().bootstrap_servers([fake.cluster.addr(1)]);
        let defaults = [
            ("group.id", GROUP),
            ("session.timeout.ms", "1000"),
            ("heartbeat.interval.ms", "100"),
            ("max.poll.interval.ms", "10000"),
            ("auto.offset.reset", "earliest"),
            ("fetch.max.wait.ms", "100"),
            ("retry.backoff.ms", "50"),
        ];
        for (k, v) in defaults.iter().chain(properties) {
            config.set(k, v).unwrap();
        }
        let mut consumer = fake.consumer(config).await;
        let events = consumer.rebalance_events().expect("events, once");
        Member {
            consumer,
            events,
            records: Vec::new(),
            log: Vec::new(),
            hold: false,
            held: Vec::new(),
            reading: true,
            read_limit: None,
            on_revoke: Vec::new(),
            fake: fake.clone(),
        }
    }

    fn subscribe(&self) {
        self.consumer.subscribe([TOPIC]).unwrap();
    }

    fn owned(&self) -> Vec<i32> {
        numbers(&self.consumer.assignment())
    }

    fn id(&self) -> String {
        self.consumer.group_membership().unwrap().0
    }

    fn generation(&self) -> i32 {
        self.consumer.group_membership().unwrap().1
    }

    fn read_more(&self) -> bool {
        self.reading && self.read_limit.is_none_or(|n| self.records.len() < n)
    }

    fn on_event(&mut self, event: RebalanceEvent) {
        match event {
            RebalanceEvent::Assigned(ps) => self.log.push(Ev::Assigned(numbers(&ps))),
            RebalanceEvent::Lost(ps) => self.log.push(Ev::Lost(numbers(&ps))),
            RebalanceEvent::Revoked { partitions, ack } => {
                let positions =
                    partitions.iter().map(|tp| (tp.partition, self.consumer.position(tp).unwrap())).collect();
                self.on_revoke.push((positions, self.fake.coord.commits().len()));
                self.log.push(Ev::Revoked(numbers(&partitions)));
                if self.hold {
                    self.held.push(ack);
                } else {
                    ack.ack();
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    /// Takes records and events for `d` (of paused time).
    async fn pump(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let read = self.read_more();
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                record = self.consumer.next(), if read => {
                    let r = record.expect("the stream goes on").expect("no error");
                    assert_eq!(r.topic.as_ref(), TOPIC);
                    let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
                    assert_eq!(value, format!("{}-{}", r.partition, r.offset), "the record at its offset");
                    self.records.push((r.partition, r.offset));
                }
                event = self.events.next() => self.on_event(event.expect("events go on")),
            }
        }
    }

    /// Records returned by partition.
    fn read_of(&self, p: i32) -> Vec<i64> {
        self.records.iter().filter(|(q, _)| *q == p).map(|(_, o)| *o).collect()
    }
}

/// Pumps every member in steps until `done` holds (at most 60 s of paused time).
async fn until(members: &mut [&mut Member], what: &str, done: impl Fn(&[&mut Member]) -> bool) {
    let start = Instant::now();
    while !done(members) {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        futures_util::future::join_all(members.iter_mut().map(|m| m.pump(Duration::from_millis(50)))).await;
    }
}

/// Pumps every member for `d`.
async fn pump_all(members: &mut [&mut Member], d: Duration) {
    futures_util::future::join_all(members.iter_mut().map(|m| m.pump(d))).await;
}

/// Every (partition, offset) of partitions `0..partitions`, offsets `range`.
fn all(partitions: i32, range: std::ops::Range<i64>) -> Vec<(i32, i64)> {
    (0..partitions).flat_map(|p| range.clone().map(move |o| (p, o))).collect()
}

fn sorted(mut v: Vec<(i32, i64)>) -> Vec<(i32, i64)> {
    v.sort();
    v
}

/// The offsets of the commits `member` made (that were stored), in order.
fn stored_commits(fake: &Fake, member: &str) -> Vec<(i32, BTreeMap<i32, i64>)> {
    fake.coord
        .commits()
        .into_iter()
        .filter(|c| c.member_id == member && c.error_code == 0)
        .map(|c| (c.generation, c.offsets.iter().map(|(_, p, o)| (*p, *o)).collect()))
        .collect()
}

/// a. Two members split four partitions: each partition owned by exactly one member, every
/// record read exactly once between them (the first member's positions are committed when it
/// gives partitions up).
async fn two_members_split_four_partitions(strategy: &str) {
    let fake = Fake::new(2, 4);
    fake.append_all(5);
    let props = [("partition.assignment.strategy", strategy)];
    let mut a = Member::new(&fake, &props).await;
    a.subscribe();
    until(&mut [&mut a], "A alone reads everything", |m| m[0].owned() == [0, 1, 2, 3] && m[0].records.len() == 20)
        .await;
    let mut b = Member::new(&fake, &props).await;
    b.subscribe();
    until(&mut [&mut a, &mut b], "the split", |m| {
        let (a, b) = (m[0].owned(), m[1].owned());
        a.len() == 2 && b.len() == 2 && a.iter().all(|p| !b.contains(p))
    })
    .await;
    fake.append_all(5);
    until(&mut [&mut a, &mut b], "the new records", |m| m[0].records.len() + m[1].records.len() >= 40).await;
    // Settled: no more records, no more moves.
    pump_all(&mut [&mut a, &mut b], Duration::from_secs(2)).await;
    let (owned_a, owned_b) = (a.owned(), b.owned());
    let union: BTreeSet<i32> = owned_a.iter().chain(&owned_b).copied().collect();
    assert_eq!(union, BTreeSet::from([0, 1, 2, 3]), "{owned_a:?} {owned_b:?}");
    assert_eq!(owned_a.len() + owned_b.len(), 4, "each partition owned once: {owned_a:?} {owned_b:?}");
    let mut both = a.records.clone();
    both.extend(&b.records);
    assert_eq!(sorted(both), all(4, 0..10), "every record exactly once");
    // The new records of each partition were read by its owner.
    for p in 0..4 {
        let owner = if owned_a.contains(&p) { &a } else { &b };
        assert_eq!(owner.read_of(p).into_iter().filter(|o| *o >= 5).collect::<Vec<_>>(), [5, 6, 7, 8, 9]);
    }
    let g = fake.coord.group(GROUP).unwrap();
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(g.protocol.as_deref(), Some(strategy));
    assert_eq!(g.members, [a.id(), b.id()]);
    assert_eq!((a.generation(), b.generation()), (g.generation, g.generation));
    assert!(a.log.iter().all(|e| !matches!(e, Ev::Lost(_))) && b.log.iter().all(|e| !matches!(e, Ev::Lost(_))));
}

#[tokio::test(start_paused = true)]
async fn two_range_members_split_four_partitions_and_read_every_record_once() {
    two_members_split_four_partitions("range").await;
}

#[tokio::test(start_paused = true)]
async fn two_cooperative_sticky_members_split_four_partitions_and_read_every_record_once() {
    two_members_split_four_partitions("cooperative-sticky").await;
}

/// b. Commits carry the generation and member id, and go one at a time in the order asked: a
/// `commit_async` whose answer is slow is not overtaken by the `commit` after it.
#[tokio::test(start_paused = true)]
async fn commits_carry_the_generation_and_member_id_and_are_answered_in_order() {
    let fake = Fake::new(1, 4);
    fake.append_all(5);
    let mut a = Member::new(&fake, &[("enable.auto.commit", "false")]).await;
    a.subscribe();
    until(&mut [&mut a], "reading", |m| m[0].records.len() == 20).await;
    let (id, generation) = a.consumer.group_membership().unwrap();
    assert!(generation > 0 && !id.is_empty());
    // The first commit's answer takes half a session (heartbeats wait for it).
    fake.delay_next_commit(Duration::from_millis(500));
    let order = Arc::new(Mutex::new(Vec::new()));
    let asked_first = Instant::now();
    let first = a.consumer.commit_async();
    let first = {
        let order = order.clone();
        tokio::spawn(async move {
            first.await.unwrap();
            order.lock().unwrap().push("commit_async");
        })
    };
    fake.append_all(5);
    until(&mut [&mut a], "more records", |m| m[0].records.len() == 40).await;
    assert!(asked_first.elapsed() < Duration::from_millis(500), "asked while the first is unanswered");
    a.consumer.commit().await.unwrap();
    order.lock().unwrap().push("commit");
    assert!(asked_first.elapsed() >= Duration::from_millis(500), "the commit waited for the slow one before it");
    first.await.unwrap();
    assert_eq!(*order.lock().unwrap(), ["commit_async", "commit"], "answered in order");
    let every = |o: i64| (0..4).map(|p| (p, o)).collect::<BTreeMap<i32, i64>>();
    assert_eq!(stored_commits(&fake, &id), [(generation, every(5)), (generation, every(10))]);
    let log = fake.coord.commits();
    assert!(log.iter().all(|c| c.member_id == id && c.generation == generation && c.error_code == 0), "{log:?}");
    assert_eq!(fake.coord.generation(GROUP), generation);
    assert_eq!(fake.coord.committed(GROUP, TOPIC, 3).map(|c| c.offset), Some(10));
    assert_eq!(
        a.consumer.committed(&[tp(0), tp(1)]).await.unwrap(),
        BTreeMap::from([(tp(0), Some(10)), (tp(1), Some(10))])
    );
}

/// A commit whose answer is slow does not stop the heartbeats: the member outlives it.
#[tokio::test(start_paused = true)]
async fn heartbeats_go_on_while_a_commit_answer_is_slow() {
    let fake = Fake::new(1, 4);
    fake.append_all(5);
    let mut a = Member::new(&fake, &[("enable.auto.commit", "false")]).await;
    a.subscribe();
    until(&mut [&mut a], "reading", |m| m[0].records.len() == 20).await;
    let membership = a.consumer.group_membership().unwrap();
    // 2.5 session timeouts (1 s), well within request.timeout.ms (30 s).
    fake.delay_next_commit(Duration::from_millis(2500));
    a.consumer.commit().await.unwrap();
    pump_all(&mut [&mut a], Duration::from_secs(1)).await;
    assert_eq!(a.log, [Ev::Assigned(vec![0, 1, 2, 3])], "no loss");
    assert_eq!(a.consumer.group_membership(), Some(membership.clone()));
    assert_eq!(fake.coord.members(GROUP), [membership.0]);
}

/// c. While the application holds a revocation's ack (longer than the session timeout), the
/// member keeps heartbeating and stays in the group; after the ack the partitions move.
#[tokio::test(start_paused = true)]
async fn a_revocation_waits_for_the_ack_while_heartbeating_then_the_partitions_move() {
    let fake = Fake::new(1, 4);
    fake.append_all(5);
    let mut a = Member::new(&fake, &[("partition.assignment.strategy", "range")]).await;
    a.hold = true;
    a.subscribe();
    until(&mut [&mut a], "A owns everything", |m| m[0].owned() == [0, 1, 2, 3]).await;
    let a_id = a.id();
    let mut b = Member::new(&fake, &[("partition.assignment.strategy", "range")]).await;
    b.subscribe();
    until(&mut [&mut a, &mut b], "A's revocation", |m| !m[0].held.is_empty()).await;
    assert_eq!(a.log.last(), Some(&Ev::Revoked(vec![0, 1, 2, 3])));
    let beats = fake.coord.requests(ApiKey::Heartbeat);
    // Three session timeouts with the ack held.
    pump_all(&mut [&mut a, &mut b], Duration::from_secs(3)).await;
    let beaten = fake.coord.requests(ApiKey::Heartbeat) - beats;
    assert!(beaten >= 15, "heartbeats while the ack is held: {beaten}");
    let g = fake.coord.group(GROUP).unwrap();
    assert!(g.members.contains(&a_id), "A is still a member: {g:?}");
    assert_eq!(g.state, GroupState::PreparingRebalance, "the rebalance waits for A");
    assert!(!a.log.iter().any(|e| matches!(e, Ev::Lost(_))), "{:?}", a.log);
    assert!(b.owned().is_empty(), "nothing moved before the ack");
    assert_eq!(a.id(), a_id);
    a.hold = false;
    a.held.clear(); // dropping acknowledges
    until(&mut [&mut a, &mut b], "the partitions move", |m| m[0].owned() == [0, 1] && m[1].owned() == [2, 3]).await;
    assert_eq!(a.id(), a_id, "the same membership");
    assert_eq!(fake.coord.group(GROUP).unwrap().members, [a_id, b.id()]);
    assert!(!a.log.iter().any(|e| matches!(e, Ev::Lost(_))), "{:?}", a.log);
}

/// d. With enable.auto.commit, the positions of the revoked partitions (every record returned
/// counted) are committed before the Revoked event is seen.
async fn auto_commit_before_revoke(read: usize) {
    let fake = Fake::new(1, 4);
    fake.append_all(5);
    let props = [("partition.assignment.strategy", "range"), ("auto.commit.interval.ms", "600000")];
    let mut a = Member::new(&fake, &props).await;
    a.read_limit = Some(read);
    a.subscribe();
    until(&mut [&mut a], "reading", |m| m[0].records.len() == read).await;
    let (a_id, generation) = a.consumer.group_membership().unwrap();
    let mut b = Member::new(&fake, &props).await;
    b.subscribe();
    until(&mut [&mut a, &mut b], "A's revocation", |m| !m[0].on_revoke.is_empty()).await;
    let (positions, commits_then) = a.on_revoke[0].clone();
    assert_eq!(positions.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
    // What the application got of each partition is what its handle reports...
    for (p, position) in &positions {
        let next = a.read_of(*p).last().map_or(0, |o| o + 1);
        assert_eq!(*position, Some(next), "partition {p}");
    }
    // ...and what was committed before the event (a partition whose position did not move
    // since assignment, with nothing committed, may be left out).
    let log = fake.coord.commits();
    let committed: BTreeMap<i32, i64> = log[..commits_then]
        .iter()
        .filter(|c| c.member_id == a_id && c.generation == generation && c.error_code == 0)
        .flat_map(|c| c.offsets.iter().map(|(_, p, o)| (*p, *o)))
        .collect();
    for (p, position) in positions {
        let position = position.unwrap();
        match committed.get(&p) {
            Some(&o) => assert_eq!(o, position, "partition {p}: committed {committed:?}"),
            None => assert_eq!(position, 0, "partition {p} moved but was not committed: {committed:?}"),
        }
    }
    a.read_limit = None;
    until(&mut [&mut a, &mut b], "the split and every record", |m| {
        m[0].owned().len() == 2 && m[1].owned().len() == 2 && m[0].records.len() + m[1].records.len() >= 20
    })
    .await;
    pump_all(&mut [&mut a, &mut b], Duration::from_secs(1)).await;
    let mut both = a.records.clone();
    both.extend(&b.records);
    assert_eq!(sorted(both), all(4, 0..5), "no record lost or read twice");
}

#[tokio::test(start_paused = true)]
async fn auto_commit_commits_the_revoked_positions_before_the_revoked_event() {
    auto_commit_before_revoke(20).await;
}

#[tokio::test(start_paused = true)]
async fn auto_commit_before_a_revocation_counts_the_records_returned_mid_batch() {
    // 3 records of a 5-record batch returned: the Stream holds the rest of that batch.
    auto_commit_before_revoke(3).await;
}

/// e. A restarted member (same group, a new consumer) resumes from the committed offsets: the
/// only records read twice are those read after the last commit.
#[tokio::test(start_paused = true)]
async fn a_restarted_member_resumes_from_the_committed_offsets() {
    let fake = Fake::new(2, 4);
    fake.append_all(5);
    let props = [("enable.auto.commit", "false")];
    let mut a = Member::new(&fake, &props).await;
    a.subscribe();
    until(&mut [&mut a], "reading", |m| m[0].records.len() == 20).await;
    a.consumer.commit().await.unwrap();
    fake.append_all(5);
    a.read_limit = Some(28);
    until(&mut [&mut a], "8 records past the commit", |m| m[0].records.len() == 28).await;
    let a_id = a.id();
    let uncommitted: Vec<(i32, i64)> = a.records[20..].to_vec();
    assert!(uncommitted.iter().all(|(_, o)| *o >= 5));
    let Member { consumer, .. } = a;
    consumer.close().await.unwrap();
    assert!(fake.coord.members(GROUP).is_empty());
    let mut b = Member::new(&fake, &props).await;
    b.subscribe();
    until(&mut [&mut b], "the restarted member's records", |m| m[0].records.len() >= 20).await;
    pump_all(&mut [&mut b], Duration::from_secs(1)).await;
    assert_ne!(b.id(), a_id);
    assert_eq!(sorted(b.records.clone()), all(4, 5..10), "from the committed offsets on, once each");
    let twice: Vec<(i32, i64)> = sorted(b.records.iter().filter(|r| uncommitted.contains(r)).copied().collect());
    assert_eq!(twice, sorted(uncommitted), "read twice: only what was not committed");
}

/// f. The coordinator moves: the old broker answers NOT_COORDINATOR, the member finds the new
/// one, keeps its membership and partitions, and commits there.
#[tokio::test(start_paused = true)]
async fn the_member_follows_a_coordinator_move_keeping_its_partitions() {
    let fake = Fake::new(2, 4);
    fake.append_all(5);
    let mut a = Member::new(&fake, &[("enable.auto.commit", "false")]).await;
    a.subscribe();
    until(&mut [&mut a], "reading", |m| m[0].records.len() == 20).await;
    let (id, generation) = a.consumer.group_membership().unwrap();
    a.consumer.commit().await.unwrap();
    assert_eq!(fake.coord.commits().last().map(|c| c.broker), Some(1));
    let finds = fake.coord.requests(ApiKey::FindCoordinator);
    let at_2 = fake.cluster.broker(2).requests(ApiKey::Heartbeat);
    fake.coord.move_to(2);
    until(&mut [&mut a], "heartbeats at the new coordinator", |_| {
        fake.cluster.broker(2).requests(ApiKey::Heartbeat) >= at_2 + 5
    })
    .await;
    assert!(fake.coord.requests(ApiKey::FindCoordinator) > finds, "the coordinator was looked up again");
    assert_eq!(a.consumer.group_membership(), Some((id.clone(), generation)), "the same membership");
    assert_eq!(a.owned(), [0, 1, 2, 3]);
    assert_eq!(a.log, [Ev::Assigned(vec![0, 1, 2, 3])], "no revocation, no loss");
    assert_eq!(fake.coord.generation(GROUP), generation, "no rebalance");
    fake.append_all(5);
    until(&mut [&mut a], "more records", |m| m[0].records.len() == 40).await;
    a.consumer.commit().await.unwrap();
    let last = fake.coord.commits().last().cloned().unwrap();
    assert_eq!(
        (last.broker, last.generation, last.member_id.as_str(), last.error_code),
        (2, generation, id.as_str(), 0)
    );
    assert_eq!(fake.coord.committed(GROUP, TOPIC, 0).map(|c| c.offset), Some(10));
    assert_eq!(sorted(a.records.clone()), all(4, 0..10));
}

/// g. UNKNOWN_MEMBER_ID on a heartbeat: the partitions are lost, then the member joins again
/// (with a new member id) and gets them back.
#[tokio::test(start_paused = true)]
async fn unknown_member_id_on_a_heartbeat_loses_the_partitions_then_rejoins() {
    let fake = Fake::new(1, 4);
    fake.append_all(5);
    let mut a = Member::new(&fake, &[]).await;
    a.subscribe();
    until(&mut [&mut a], "assigned", |m| m[0].owned() == [0, 1, 2, 3]).await;
    let (old_id, old_generation) = a.consumer.group_membership().unwrap();
    fake.coord.fail_next(ApiKey::Heartbeat, [ErrorCode::UnknownMemberId.code()]);
    until(&mut [&mut a], "lost, then assigned again", |m| m[0].log.len() >= 3).await;
    let all4 = vec![0, 1, 2, 3];
    assert_eq!(a.log, [Ev::Assigned(all4.clone()), Ev::Lost(all4.clone()), Ev::Assigned(all4)]);
    let (new_id, new_generation) = a.consumer.group_membership().unwrap();
    assert_ne!(new_id, old_id);
    assert!(new_generation > old_generation);
    assert_eq!(a.owned(), [0, 1, 2, 3]);
    // The old membership ended with its session on the coordinator's side.
    assert_eq!(fake.coord.members(GROUP), [new_id]);
    assert_eq!(fake.coord.faults_left(ApiKey::Heartbeat), 0);
}

/// h. close() with enable.auto.commit commits the positions, revokes, and sends LeaveGroup.
#[tokio::test(start_paused = true)]
async fn close_commits_revokes_and_leaves_the_group() {
    let fake = Fake::new(1, 4);
    fake.append_all(5);
    let mut a = Member::new(&fake, &[("auto.commit.interval.ms", "600000")]).await;
    a.subscribe();
    until(&mut [&mut a], "reading", |m| m[0].records.len() == 20).await;
    let (id, generation) = a.consumer.group_membership().unwrap();
    let Member { consumer, events, log, .. } = a;
    assert_eq!(log, [Ev::Assigned(vec![0, 1, 2, 3])]);
    consumer.close().await.unwrap();
    let after: Vec<Ev> = events
        .map(|e| match e {
            RebalanceEvent::Revoked { partitions, .. } => Ev::Revoked(numbers(&partitions)),
            RebalanceEvent::Assigned(ps) => Ev::Assigned(numbers(&ps)),
            RebalanceEvent::Lost(ps) => Ev::Lost(numbers(&ps)),
            other => panic!("{other:?}"),
        })
        .collect()
        .await;
    assert_eq!(after, [Ev::Revoked(vec![0, 1, 2, 3])], "told, not waited for");
    let every5: BTreeMap<i32, i64> = (0..4).map(|p| (p, 5)).collect();
    assert_eq!(stored_commits(&fake, &id), [(generation, every5)]);
    let leaves = fake.coord.leaves();
    assert_eq!(leaves.len(), 1, "{leaves:?}");
    assert_eq!((leaves[0].member_id.as_str(), leaves[0].error_code), (id.as_str(), 0));
    // The commit went before the leave.
    let order: Vec<i16> = fake
        .cluster
        .broker(1)
        .received()
        .iter()
        .map(|(h, _)| h.request_api_key)
        .filter(|k| [ApiKey::OffsetCommit as i16, ApiKey::LeaveGroup as i16].contains(k))
        .collect();
    assert_eq!(order, [ApiKey::OffsetCommit as i16, ApiKey::LeaveGroup as i16]);
    let g = fake.coord.group(GROUP).unwrap();
    assert_eq!((g.state, g.members.len()), (GroupState::Empty, 0));
}

/// Rebalance events are INFO events of one shape (group, generation, member, partitions) and
/// counted by kind: assigned, lost (UNKNOWN_MEMBER_ID), assigned again, revoked on close.
#[tokio::test(start_paused = true)]
async fn rebalances_are_traced_alike_and_counted() {
    use krab_cluster::telemetry as names;
    use krab_testkit::observe::{EventLog, TestRecorder};
    let recorder = TestRecorder::new();
    let _metrics = recorder.set_default();
    let log = EventLog::new();
    let _tracing = log.set_default();

    let fake = Fake::new(1, 4);
    fake.append_all(5);
    let mut a = Member::new(&fake, &[("client.id", "group-telemetry")]).await;
    a.subscribe();
    until(&mut [&mut a], "assigned", |m| m[0].owned() == [0, 1, 2, 3]).await;
    fake.coord.fail_next(ApiKey::Heartbeat, [ErrorCode::UnknownMemberId.code()]);
    until(&mut [&mut a], "lost, then assigned again", |m| m[0].log.len() >= 3).await;
    let Member { consumer, .. } = a;
    consumer.close().await.unwrap();

    let rebalances: Vec<_> =
        log.at_least(tracing::Level::INFO).into_iter().filter(|e| e.message.starts_with("partitions ")).collect();
    let kinds: Vec<&str> = rebalances.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(kinds, ["partitions assigned", "partitions lost", "partitions assigned", "partitions revoked"]);
    for e in &rebalances {
        assert_eq!(e.level, tracing::Level::INFO);
        assert_eq!((e.field("group"), e.field("partitions")), (Some(GROUP), Some("4")), "{e:?}");
        for field in ["generation", "member", "list"] {
            assert!(e.fields.contains_key(field), "{field} in {e:?}");
        }
    }
    let count = |event: &str| {
        recorder.counter(
            names::CONSUMER_REBALANCES,
            &[("client_id", "group-telemetry"), ("group", GROUP), ("event", event)],
        )
    };
    assert_eq!((count("assigned"), count("lost"), count("revoked")), (2, 1, 1));
}
