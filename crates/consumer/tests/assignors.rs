//! The partition assignors through the public API: hand-computed examples that Apache Kafka's
//! Java assignors give for the same input (so a krab leader and a Java leader agree), and
//! properties over generated groups.

use krab_consumer::TopicPartition;
use krab_consumer::group::assignor::{
    CooperativeStickyAssignor, MemberSubscription, PartitionAssignor, RangeAssignor, RebalanceProtocol,
    RoundRobinAssignor,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type Assignment = BTreeMap<String, Vec<TopicPartition>>;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
    topics.iter().map(|&(t, n)| (t.to_string(), n)).collect()
}

fn member(id: &str, topics: &[&str]) -> MemberSubscription {
    MemberSubscription {
        member_id: id.to_string(),
        group_instance_id: None,
        topics: topics.iter().map(|t| t.to_string()).collect(),
        owned: Vec::new(),
        generation: -1,
    }
}

fn static_member(id: &str, instance: &str, topics: &[&str]) -> MemberSubscription {
    MemberSubscription { group_instance_id: Some(instance.to_string()), ..member(id, topics) }
}

fn owning(mut m: MemberSubscription, owned: &[(&str, i32)], generation: i32) -> MemberSubscription {
    m.owned = owned.iter().map(|&(t, p)| tp(t, p)).collect();
    m.generation = generation;
    m
}

/// The expected assignment, written as member -> [(topic, partition)].
fn expected(members: &[(&str, &[(&str, i32)])]) -> Assignment {
    members.iter().map(|&(m, parts)| (m.to_string(), parts.iter().map(|&(t, p)| tp(t, p)).collect())).collect()
}

/// The next round's subscriptions: every member owns what `out` gave it, from `generation`.
fn follow_up(members: &[MemberSubscription], out: &Assignment, generation: i32) -> Vec<MemberSubscription> {
    members.iter().map(|m| MemberSubscription { owned: out[&m.member_id].clone(), generation, ..m.clone() }).collect()
}

// ---------------------------------------------------------------------------------------------
// range
// ---------------------------------------------------------------------------------------------

#[test]
fn range_two_members_two_topics() {
    let out = RangeAssignor
        .assign(&counts(&[("t0", 3), ("t1", 3)]), &[member("c1", &["t0", "t1"]), member("c0", &["t1", "t0"])]);
    assert_eq!(
        out,
        expected(&[("c0", &[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]), ("c1", &[("t0", 2), ("t1", 2)])])
    );
}

#[test]
fn range_mixed_subscriptions() {
    // Java's RangeAssignorTest.testMultipleConsumersMixedTopics.
    let members = [member("consumer1", &["t1"]), member("consumer2", &["t1", "t2"]), member("consumer3", &["t1"])];
    let out = RangeAssignor.assign(&counts(&[("t1", 3), ("t2", 2)]), &members);
    assert_eq!(
        out,
        expected(&[
            ("consumer1", &[("t1", 0)]),
            ("consumer2", &[("t1", 1), ("t2", 0), ("t2", 1)]),
            ("consumer3", &[("t1", 2)]),
        ])
    );
}

#[test]
fn range_more_members_than_partitions() {
    let members = [member("a", &["t"]), member("b", &["t"]), member("c", &["t"])];
    let out = RangeAssignor.assign(&counts(&[("t", 2)]), &members);
    assert_eq!(out, expected(&[("a", &[("t", 0)]), ("b", &[("t", 1)]), ("c", &[])]));
}

#[test]
fn range_static_members_by_instance_id() {
    // Java's MemberInfo order: static members first, by instance id, then dynamic members by
    // member id; member ids of static members do not matter.
    let members = [static_member("a", "i-2", &["t"]), member("0-dynamic", &["t"]), static_member("b", "i-1", &["t"])];
    let out = RangeAssignor.assign(&counts(&[("t", 5)]), &members);
    assert_eq!(
        out,
        expected(&[("b", &[("t", 0), ("t", 1)]), ("a", &[("t", 2), ("t", 3)]), ("0-dynamic", &[("t", 4)])])
    );

    // The same instances rejoining under new member ids get the same partitions.
    let members = [static_member("z", "i-2", &["t"]), member("0-dynamic", &["t"]), static_member("y", "i-1", &["t"])];
    let out = RangeAssignor.assign(&counts(&[("t", 5)]), &members);
    assert_eq!(
        out,
        expected(&[("y", &[("t", 0), ("t", 1)]), ("z", &[("t", 2), ("t", 3)]), ("0-dynamic", &[("t", 4)])])
    );
}

// ---------------------------------------------------------------------------------------------
// roundrobin
// ---------------------------------------------------------------------------------------------

#[test]
fn roundrobin_two_members_two_topics() {
    let out = RoundRobinAssignor
        .assign(&counts(&[("t0", 3), ("t1", 3)]), &[member("c1", &["t1", "t0"]), member("c0", &["t0", "t1"])]);
    assert_eq!(
        out,
        expected(&[("c0", &[("t0", 0), ("t0", 2), ("t1", 1)]), ("c1", &[("t0", 1), ("t1", 0), ("t1", 2)])])
    );
}

#[test]
fn roundrobin_mixed_subscriptions() {
    // Java's RoundRobinAssignorTest.testMultipleConsumersMixedTopics: the cycle passes over
    // members not subscribed to a partition's topic.
    let members = [member("consumer1", &["t1"]), member("consumer2", &["t1", "t2"]), member("consumer3", &["t1"])];
    let out = RoundRobinAssignor.assign(&counts(&[("t1", 3), ("t2", 2)]), &members);
    assert_eq!(
        out,
        expected(&[
            ("consumer1", &[("t1", 0)]),
            ("consumer2", &[("t1", 1), ("t2", 0), ("t2", 1)]),
            ("consumer3", &[("t1", 2)]),
        ])
    );
}

#[test]
fn roundrobin_skipping_keeps_the_cycle() {
    // t0-0 a, t0-1 b, t1-0: c is passed over (not subscribed) to a, t1-1 b, t1-2 a.
    let members = [member("a", &["t0", "t1"]), member("b", &["t0", "t1"]), member("c", &["t0"])];
    let out = RoundRobinAssignor.assign(&counts(&[("t0", 2), ("t1", 3)]), &members);
    assert_eq!(out, expected(&[("a", &[("t0", 0), ("t1", 0), ("t1", 2)]), ("b", &[("t0", 1), ("t1", 1)]), ("c", &[])]));
}

#[test]
fn roundrobin_static_members_by_instance_id() {
    let members = [static_member("a", "i-2", &["t"]), member("0-dynamic", &["t"]), static_member("b", "i-1", &["t"])];
    let out = RoundRobinAssignor.assign(&counts(&[("t", 5)]), &members);
    assert_eq!(
        out,
        expected(&[("b", &[("t", 0), ("t", 3)]), ("a", &[("t", 1), ("t", 4)]), ("0-dynamic", &[("t", 2)])])
    );
}

// ---------------------------------------------------------------------------------------------
// All assignors: what is not assignable
// ---------------------------------------------------------------------------------------------

fn assignors() -> [&'static dyn PartitionAssignor; 3] {
    [&RangeAssignor, &RoundRobinAssignor, &CooperativeStickyAssignor]
}

#[test]
fn names_and_protocols() {
    let named: Vec<_> = assignors().iter().map(|a| (a.name().to_string(), a.protocol())).collect();
    assert_eq!(
        named,
        [
            ("range".to_string(), RebalanceProtocol::Eager),
            ("roundrobin".to_string(), RebalanceProtocol::Eager),
            ("cooperative-sticky".to_string(), RebalanceProtocol::Cooperative),
        ]
    );
}

#[test]
fn unknown_topics_are_not_assigned_and_every_member_gets_an_entry() {
    let partitions = counts(&[("known", 2), ("empty", 0)]);
    let members = [member("a", &["known", "missing"]), member("b", &["missing"]), member("c", &["empty"])];
    for assignor in assignors() {
        let out = assignor.assign(&partitions, &members);
        assert_eq!(
            out,
            expected(&[("a", &[("known", 0), ("known", 1)]), ("b", &[]), ("c", &[])]),
            "{}",
            assignor.name()
        );
        assert!(assignor.assign(&partitions, &[]).is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// cooperative-sticky
// ---------------------------------------------------------------------------------------------

#[test]
fn sticky_fresh_group_is_balanced() {
    let members = [member("c2", &["t"]), member("c0", &["t"]), member("c1", &["t"])];
    let out = CooperativeStickyAssignor.assign(&counts(&[("t", 7)]), &members);
    assert_eq!(
        out,
        expected(&[
            ("c0", &[("t", 0), ("t", 3), ("t", 6)]),
            ("c1", &[("t", 1), ("t", 4)]),
            ("c2", &[("t", 2), ("t", 5)])
        ])
    );
}

#[test]
fn sticky_join_revokes_first_then_assigns() {
    let partitions = counts(&[("t", 4)]);
    let members = [owning(member("c0", &["t"]), &[("t", 0), ("t", 1), ("t", 2), ("t", 3)], 3), member("c1", &["t"])];
    let first = CooperativeStickyAssignor.assign(&partitions, &members);
    // c0 keeps half and revokes the rest; c1 gets nothing yet, since c0 still owns it.
    assert_eq!(first, expected(&[("c0", &[("t", 0), ("t", 1)]), ("c1", &[])]));
    let second = CooperativeStickyAssignor.assign(&partitions, &follow_up(&members, &first, 4));
    assert_eq!(second, expected(&[("c0", &[("t", 0), ("t", 1)]), ("c1", &[("t", 2), ("t", 3)])]));
}

#[test]
fn sticky_leave_hands_out_at_once() {
    let partitions = counts(&[("t", 6)]);
    let members = [
        owning(member("c0", &["t"]), &[("t", 0), ("t", 1)], 2),
        owning(member("c2", &["t"]), &[("t", 4), ("t", 5)], 2),
    ];
    // c1 (t-2, t-3) left: nobody owns its partitions, so they are assigned right away.
    let out = CooperativeStickyAssignor.assign(&partitions, &members);
    assert_eq!(out, expected(&[("c0", &[("t", 0), ("t", 1), ("t", 2)]), ("c2", &[("t", 3), ("t", 4), ("t", 5)])]));
}

#[test]
fn sticky_conflicting_claims() {
    let partitions = counts(&[("t", 4)]);
    // The higher generation keeps t-1; c1's claim is stale, so c1 revokes it.
    let members = [
        owning(member("c0", &["t"]), &[("t", 0), ("t", 1)], 5),
        owning(member("c1", &["t"]), &[("t", 1), ("t", 2), ("t", 3)], 4),
    ];
    let out = CooperativeStickyAssignor.assign(&partitions, &members);
    assert_eq!(out, expected(&[("c0", &[("t", 0), ("t", 1)]), ("c1", &[("t", 2), ("t", 3)])]));

    // The same generation: nobody keeps t-0, and as nobody owns it it is assigned at once.
    let members = [
        owning(member("c0", &["t"]), &[("t", 0)], 5),
        owning(member("c1", &["t"]), &[("t", 0), ("t", 1), ("t", 2)], 5),
    ];
    let out = CooperativeStickyAssignor.assign(&partitions, &members);
    assert_eq!(out, expected(&[("c0", &[("t", 0), ("t", 3)]), ("c1", &[("t", 1), ("t", 2)])]));
}

#[test]
fn sticky_ignores_claims_it_cannot_honour() {
    let partitions = counts(&[("t0", 2), ("t1", 1)]);
    let members = [
        // No longer subscribed to t1; t0-9 does not exist; "gone" was deleted.
        owning(member("c0", &["t0"]), &[("t1", 0), ("t0", 9), ("gone", 0), ("t0", 0)], 3),
        owning(member("c1", &["t0", "t1"]), &[("t0", 1)], 3),
    ];
    let out = CooperativeStickyAssignor.assign(&partitions, &members);
    assert_eq!(out, expected(&[("c0", &[("t0", 0)]), ("c1", &[("t0", 1), ("t1", 0)])]));
}

#[test]
fn sticky_different_subscriptions() {
    let partitions = counts(&[("t0", 2), ("t1", 4)]);
    let all = [("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1), ("t1", 2), ("t1", 3)];
    let members = [owning(member("c0", &["t0", "t1"]), &all, 1), member("c1", &["t1"])];
    let first = CooperativeStickyAssignor.assign(&partitions, &members);
    // c1 can only take t1 partitions: three move, revoked this round.
    assert_eq!(first, expected(&[("c0", &[("t0", 0), ("t0", 1), ("t1", 3)]), ("c1", &[])]));
    let second = CooperativeStickyAssignor.assign(&partitions, &follow_up(&members, &first, 2));
    assert_eq!(
        second,
        expected(&[("c0", &[("t0", 0), ("t0", 1), ("t1", 3)]), ("c1", &[("t1", 0), ("t1", 1), ("t1", 2)])])
    );
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

const TOPICS: [&str; 4] = ["a", "b", "c", "d"];

/// Partition counts: each topic unknown (absent) or with 0..12 partitions.
fn partitions_strategy() -> impl Strategy<Value = BTreeMap<String, i32>> {
    proptest::collection::vec(proptest::option::weighted(0.8, 0i32..12), TOPICS.len())
        .prop_map(|counts| TOPICS.iter().zip(counts).filter_map(|(t, n)| n.map(|n| (t.to_string(), n))).collect())
}

/// A subscription: a subset of the topics, sometimes with one nobody knows.
fn topics_strategy() -> impl Strategy<Value = Vec<String>> {
    (proptest::collection::vec(any::<bool>(), TOPICS.len()), any::<bool>()).prop_map(|(pick, unknown)| {
        let mut topics: Vec<String> = TOPICS.iter().zip(pick).filter(|(_, p)| *p).map(|(t, _)| t.to_string()).collect();
        if unknown {
            topics.push("unknown".to_string());
        }
        topics
    })
}

/// Members with unique ids, some static; identical subscriptions or each its own.
fn members_strategy(identical: bool) -> impl Strategy<Value = Vec<MemberSubscription>> {
    let shared = topics_strategy();
    (1usize..8, shared).prop_flat_map(move |(n, shared)| {
        (
            proptest::collection::vec(topics_strategy(), n),
            proptest::collection::vec(proptest::option::weighted(0.3, 0u8..4), n),
            Just(shared),
        )
            .prop_map(move |(topics, instances, shared)| {
                topics
                    .into_iter()
                    .zip(instances)
                    .enumerate()
                    .map(|(i, (topics, instance))| MemberSubscription {
                        // Ids whose order differs from the members' listing order.
                        member_id: format!("m{}", (i * 5) % 11),
                        group_instance_id: instance.map(|x| format!("i{x}-{i}")),
                        topics: if identical { shared.clone() } else { topics },
                        owned: Vec::new(),
                        generation: -1,
                    })
                    .collect()
            })
    })
}

/// Members as above, each claiming arbitrary partitions (some overlapping, some stale or
/// invalid) from a generation in -1..4.
fn owning_members_strategy(identical: bool) -> impl Strategy<Value = Vec<MemberSubscription>> {
    members_strategy(identical).prop_flat_map(|members| {
        let n = members.len();
        let claim = (0..TOPICS.len(), 0i32..13).prop_map(|(t, p)| tp(TOPICS[t], p));
        (
            Just(members),
            proptest::collection::vec(proptest::collection::vec(claim, 0..8), n),
            proptest::collection::vec(-1i32..4, n),
        )
            .prop_map(|(mut members, owned, generations)| {
                for ((m, owned), generation) in members.iter_mut().zip(owned).zip(generations) {
                    m.owned = owned;
                    m.generation = generation;
                }
                members
            })
    })
}

fn subscribes(m: &MemberSubscription, topic: &str) -> bool {
    m.topics.iter().any(|t| t == topic)
}

/// Every partition of a known topic somebody subscribes to.
fn assignable(partitions: &BTreeMap<String, i32>, members: &[MemberSubscription]) -> BTreeSet<TopicPartition> {
    partitions
        .iter()
        .filter(|(t, _)| members.iter().any(|m| subscribes(m, t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| tp(t, p)))
        .collect()
}

/// Every member has an entry; partitions go to at most one member, subscribed to their topic,
/// and are assignable. Returns the assigned partitions.
fn check_valid(
    partitions: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
    out: &Assignment,
) -> Result<BTreeSet<TopicPartition>, TestCaseError> {
    let ids: BTreeSet<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
    prop_assert_eq!(out.keys().map(String::as_str).collect::<BTreeSet<_>>(), ids);
    let assignable = assignable(partitions, members);
    let mut seen = BTreeSet::new();
    for m in members {
        for part in &out[&m.member_id] {
            prop_assert!(seen.insert(part.clone()), "{} assigned twice", part);
            prop_assert!(assignable.contains(part), "{} is not assignable", part);
            prop_assert!(subscribes(m, &part.topic), "{} given to {}, not subscribed", part, m.member_id);
        }
    }
    Ok(seen)
}

/// As [`check_valid`], and every assignable partition is assigned.
fn check_complete(
    partitions: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
    out: &Assignment,
) -> Result<(), TestCaseError> {
    let seen = check_valid(partitions, members, out)?;
    prop_assert_eq!(seen, assignable(partitions, members));
    Ok(())
}

fn check_balanced(out: &Assignment) -> Result<(), TestCaseError> {
    let sizes: Vec<usize> = out.values().map(Vec::len).collect();
    let (min, max) = (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
    prop_assert!(max - min <= 1, "unbalanced: {:?}", out);
    Ok(())
}

/// The same group listed in another order, with topics and owned partitions reordered.
fn shuffled(members: &[MemberSubscription]) -> Vec<MemberSubscription> {
    members
        .iter()
        .rev()
        .map(|m| {
            let mut m = m.clone();
            m.topics.reverse();
            m.owned.reverse();
            m
        })
        .collect()
}

/// Who validly owns `part`: a member claiming it, still subscribed to its topic, whose
/// generation is higher than every other claimant's.
fn valid_owner<'a>(
    partitions: &BTreeMap<String, i32>,
    members: &'a [MemberSubscription],
    part: &TopicPartition,
) -> Option<&'a str> {
    partitions.get(&*part.topic).filter(|&&n| (0..n).contains(&part.partition))?;
    let claimants: Vec<&MemberSubscription> =
        members.iter().filter(|m| m.owned.contains(part) && subscribes(m, &part.topic)).collect();
    let top = claimants.iter().map(|m| m.generation).max()?;
    match claimants.iter().filter(|m| m.generation == top).collect::<Vec<_>>()[..] {
        [m] => Some(&m.member_id),
        _ => None,
    }
}

/// Runs cooperative-sticky rounds, feeding each output back as owned with the next generation,
/// until the output is stable; returns it and the members owning it.
fn settle(partitions: &BTreeMap<String, i32>, members: &[MemberSubscription]) -> (Assignment, Vec<MemberSubscription>) {
    let mut members = members.to_vec();
    let mut generation = members.iter().map(|m| m.generation).max().unwrap_or(-1).max(0);
    for _ in 0..10 {
        let out = CooperativeStickyAssignor.assign(partitions, &members);
        generation += 1;
        let next = follow_up(&members, &out, generation);
        if next.iter().zip(&members).all(|(a, b)| a.owned == b.owned) {
            return (out, next);
        }
        members = next;
    }
    panic!("no stable assignment after 10 rounds: {members:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn range_properties(partitions in partitions_strategy(), members in members_strategy(false)) {
        let out = RangeAssignor.assign(&partitions, &members);
        check_complete(&partitions, &members, &out)?;
        prop_assert_eq!(&RangeAssignor.assign(&partitions, &shuffled(&members)), &out);
        // Per topic, its subscribers' shares are within one of each other.
        for topic in partitions.keys() {
            let shares: Vec<usize> = members
                .iter()
                .filter(|m| subscribes(m, topic))
                .map(|m| out[&m.member_id].iter().filter(|p| &*p.topic == topic).count())
                .collect();
            if let (Some(min), Some(max)) = (shares.iter().min(), shares.iter().max()) {
                prop_assert!(max - min <= 1, "{}: {:?}", topic, shares);
            }
        }
    }

    #[test]
    fn roundrobin_properties(partitions in partitions_strategy(), members in members_strategy(false)) {
        let out = RoundRobinAssignor.assign(&partitions, &members);
        check_complete(&partitions, &members, &out)?;
        prop_assert_eq!(&RoundRobinAssignor.assign(&partitions, &shuffled(&members)), &out);
    }

    #[test]
    fn roundrobin_identical_is_balanced(partitions in partitions_strategy(), members in members_strategy(true)) {
        let out = RoundRobinAssignor.assign(&partitions, &members);
        check_complete(&partitions, &members, &out)?;
        check_balanced(&out)?;
    }

    #[test]
    fn range_identical_is_complete(partitions in partitions_strategy(), members in members_strategy(true)) {
        check_complete(&partitions, &members, &RangeAssignor.assign(&partitions, &members))?;
    }

    /// Any claims at all: the output is valid and deterministic; a validly owned partition
    /// stays with its owner or goes to nobody this round (never revoked from one and given to
    /// another at once); every partition nobody validly owns is assigned at once.
    #[test]
    fn sticky_one_round(partitions in partitions_strategy(), members in owning_members_strategy(false)) {
        let out = CooperativeStickyAssignor.assign(&partitions, &members);
        let seen = check_valid(&partitions, &members, &out)?;
        prop_assert_eq!(&CooperativeStickyAssignor.assign(&partitions, &shuffled(&members)), &out);
        for part in assignable(&partitions, &members) {
            match valid_owner(&partitions, &members, &part) {
                Some(owner) => {
                    let holder = out.iter().find(|(_, parts)| parts.contains(&part)).map(|(m, _)| m.as_str());
                    prop_assert!(holder.is_none_or(|h| h == owner), "{} owned by {} given to {:?}", part, owner, holder);
                }
                None => prop_assert!(seen.contains(&part), "{} owned by nobody is not assigned", part),
            }
        }
    }

    /// The follow-up round completes the assignment without taking anything from anyone, and
    /// with identical subscriptions it is balanced and stable.
    #[test]
    fn sticky_follow_up_identical(partitions in partitions_strategy(), members in owning_members_strategy(true)) {
        let first = CooperativeStickyAssignor.assign(&partitions, &members);
        let generation = members.iter().map(|m| m.generation).max().unwrap_or(-1) + 1;
        let members2 = follow_up(&members, &first, generation);
        let second = CooperativeStickyAssignor.assign(&partitions, &members2);
        check_complete(&partitions, &members2, &second)?;
        check_balanced(&second)?;
        for (m, parts) in &first {
            let kept: BTreeSet<_> = second[m].iter().collect();
            prop_assert!(parts.iter().all(|p| kept.contains(p)), "{} lost partitions in the follow-up", m);
        }
        let third = CooperativeStickyAssignor.assign(&partitions, &follow_up(&members2, &second, generation + 1));
        prop_assert_eq!(third, second);
    }

    /// Different subscriptions: the rounds settle on a complete assignment.
    #[test]
    fn sticky_settles(partitions in partitions_strategy(), members in owning_members_strategy(false)) {
        let (out, settled) = settle(&partitions, &members);
        check_complete(&partitions, &settled, &out)?;
    }

    /// A member joins a settled group: it takes partitions only from the others (who only lose
    /// partitions), and after the follow-up round the group is balanced.
    #[test]
    fn sticky_join(partitions in partitions_strategy(), members in members_strategy(true)) {
        let (_, settled) = settle(&partitions, &members);
        let generation = settled[0].generation;
        let mut joined = settled.clone();
        joined.push(MemberSubscription { member_id: "new".into(), ..members[0].clone() });
        let first = CooperativeStickyAssignor.assign(&partitions, &joined);
        let second = CooperativeStickyAssignor.assign(&partitions, &follow_up(&joined, &first, generation + 1));
        check_complete(&partitions, &joined, &second)?;
        check_balanced(&second)?;
        for m in &settled {
            let owned: BTreeSet<_> = m.owned.iter().collect();
            prop_assert!(first[&m.member_id].iter().all(|p| owned.contains(p)), "{} gained in round one", m.member_id);
            prop_assert!(second[&m.member_id].iter().all(|p| owned.contains(p)), "{} gained in round two", m.member_id);
        }
    }

    /// A member leaves a settled group: its partitions are given out at once (nobody owns
    /// them), the others keep theirs, and the group is balanced in one round.
    #[test]
    fn sticky_leave(partitions in partitions_strategy(), members in members_strategy(true), leaver in any::<prop::sample::Index>()) {
        let (_, settled) = settle(&partitions, &members);
        let mut left = settled.clone();
        left.remove(leaver.index(left.len()));
        let out = CooperativeStickyAssignor.assign(&partitions, &left);
        check_complete(&partitions, &left, &out)?;
        check_balanced(&out)?;
        for m in &left {
            let now: BTreeSet<_> = out[&m.member_id].iter().collect();
            prop_assert!(m.owned.iter().all(|p| now.contains(p)), "{} lost partitions", m.member_id);
        }
    }
}
