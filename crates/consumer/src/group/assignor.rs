//! Client-side partition assignors of the classic consumer group protocol: the group leader runs
//! one over every member's subscription and sends each member its partitions in SyncGroup.
//!
//! The three assignors match Apache Kafka's Java ones (`RangeAssignor`, `RoundRobinAssignor`,
//! `CooperativeStickyAssignor`), so krab can share a group with Java and librdkafka members
//! whichever of them leads:
//!
//! - members are ordered as Java orders them: static members (with a `group.instance.id`) first,
//!   by instance id, then dynamic members by member id; strings compare as Java's do (UTF-16
//!   code units);
//! - a topic missing from the partition counts (unknown, or not authorized) is not assignable;
//! - every member gets an entry in the result, possibly empty.
//!
//! The functions are pure: no I/O, no clock, no randomness; equal inputs give equal outputs
//! whatever the order of the members and of their topics and owned partitions.

use krab_buffer::TopicPartition;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How a rebalance protocol revokes (KIP-429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RebalanceProtocol {
    /// Every member revokes all its partitions before the group rebalances.
    Eager,
    /// Members keep their partitions through a rebalance and revoke only those that move; a
    /// partition that moves is revoked in one rebalance and assigned in the next.
    Cooperative,
}

/// One member's subscription as the group leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id the coordinator gave the member.
    pub member_id: String,
    /// Its `group.instance.id`, for static members.
    pub group_instance_id: Option<String>,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// Partitions the member owns now (cooperative; empty under eager).
    pub owned: Vec<TopicPartition>,
    /// The generation its owned partitions are from (-1 unknown).
    pub generation: i32,
}

/// A partition assignor run by the group leader.
pub trait PartitionAssignor: Send + Sync + std::fmt::Debug + 'static {
    /// The protocol name sent in JoinGroup (`range`, `roundrobin`, `cooperative-sticky`).
    fn name(&self) -> &str;

    /// Eager unless the assignor supports cooperative rebalancing.
    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }

    /// Every member's partitions. `partitions` is each subscribed topic's partition count (topics
    /// not in it are not assignable: unknown or not authorized). Every member id gets an entry,
    /// possibly empty.
    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> BTreeMap<String, Vec<TopicPartition>>;
}

/// Kafka's `range` assignor: for each topic, the members subscribed to it (in member order) each
/// get a run of consecutive partitions, `n / m` long, one longer for the first `n % m`.
///
/// Balanced per topic, not overall: with identical subscriptions the first members get one
/// extra partition of every topic whose count does not divide evenly, which co-partitions topics
/// (partition `p` of every topic goes to the same member).
#[derive(Debug, Default, Clone, Copy)]
pub struct RangeAssignor;

/// Kafka's `roundrobin` assignor: every partition of every subscribed topic, sorted by topic
/// then partition, dealt to the members in order in a cycle, passing over members not
/// subscribed to the partition's topic.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoundRobinAssignor;

/// Kafka's `cooperative-sticky` assignor (KIP-54 stickiness, KIP-429 cooperative rebalancing).
///
/// It starts from the partitions members own (those still assignable and still subscribed to;
/// a partition two members claim stays with the one of the higher generation, and with neither
/// on a tie), moves as few of them as balance needs, and gives out the rest to the least loaded
/// members. With identical subscriptions member counts end within one of each other; with
/// different subscriptions it balances as far as moving single partitions between members
/// subscribed to their topics allows.
///
/// A partition that moves from its owner to another member is left out of both this round:
/// the owner revokes it, and the new member gets it in the follow-up rebalance, so a partition
/// is never consumed by two members at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct CooperativeStickyAssignor;

impl PartitionAssignor for RangeAssignor {
    fn name(&self) -> &str {
        "range"
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let group = Group::new(partitions, members);
        let mut out = group.empty_assignment();
        // Each topic's split is independent of the others', so the order of topics is free.
        for (t, topic) in group.topics.iter().enumerate() {
            let subscribers: Vec<usize> = (0..group.members.len()).filter(|&m| group.subscribes(m, t)).collect();
            if subscribers.is_empty() {
                continue;
            }
            let n = topic.partitions as usize;
            let (per, extra) = (n / subscribers.len(), n % subscribers.len());
            for (i, &m) in subscribers.iter().enumerate() {
                let start = per * i + i.min(extra);
                let len = per + usize::from(i < extra);
                out[m].extend((start..start + len).map(|p| (t, p as i32)));
            }
        }
        group.into_result(out)
    }
}

impl PartitionAssignor for RoundRobinAssignor {
    fn name(&self) -> &str {
        "roundrobin"
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let group = Group::new(partitions, members);
        let mut out = group.empty_assignment();
        let m = group.members.len();
        let mut next = 0;
        for t in group.topics_in_java_order() {
            // Only topics somebody subscribes to are assignable, so the search below ends.
            if !(0..m).any(|i| group.subscribes(i, t)) {
                continue;
            }
            for p in 0..group.topics[t].partitions {
                while !group.subscribes(next, t) {
                    next = (next + 1) % m;
                }
                out[next].push((t, p));
                next = (next + 1) % m;
            }
        }
        group.into_result(out)
    }
}

impl PartitionAssignor for CooperativeStickyAssignor {
    fn name(&self) -> &str {
        "cooperative-sticky"
    }

    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Cooperative
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let group = Group::new(partitions, members);
        let owners = group.valid_owners();
        let target = sticky_target(&group, &owners);
        // The cooperative adjustment: a partition moving away from its owner is assigned to
        // nobody this round; its owner revokes it and the new member gets it next round.
        let out = target
            .into_iter()
            .enumerate()
            .map(|(m, parts)| parts.into_iter().filter(|tp| owners.get(tp).is_none_or(|&o| o == m)).collect())
            .collect();
        group.into_result(out)
    }
}

/// A partition: the index of its topic in [`Group::topics`], and its number.
type Part = (usize, i32);

/// An assignable topic.
struct Topic {
    name: Arc<str>,
    partitions: i32,
}

/// A member, with its subscription reduced to assignable topics.
struct Member<'a> {
    sub: &'a MemberSubscription,
    /// Indexes into [`Group::topics`].
    topics: BTreeSet<usize>,
}

/// The leader's view of the group: assignable topics and members in Java's order.
struct Group<'a> {
    topics: Vec<Topic>,
    members: Vec<Member<'a>>,
}

impl<'a> Group<'a> {
    fn new(partitions: &BTreeMap<String, i32>, members: &'a [MemberSubscription]) -> Self {
        let topics: Vec<Topic> = partitions
            .iter()
            .map(|(name, &n)| Topic { name: Arc::from(name.as_str()), partitions: n.max(0) })
            .collect();
        let index: BTreeMap<&str, usize> = partitions.keys().enumerate().map(|(i, name)| (name.as_str(), i)).collect();
        // A member id listed twice counts once (the first listing): ids are unique in a group.
        let mut seen = BTreeSet::new();
        let mut members: Vec<Member<'a>> = members
            .iter()
            .filter(|sub| seen.insert(sub.member_id.as_str()))
            .map(|sub| Member {
                sub,
                topics: sub.topics.iter().filter_map(|t| index.get(t.as_str()).copied()).collect(),
            })
            .collect();
        members.sort_by(|a, b| java_member_order(a.sub, b.sub));
        Self { topics, members }
    }

    fn subscribes(&self, member: usize, topic: usize) -> bool {
        self.members[member].topics.contains(&topic)
    }

    /// Topic indexes sorted as Java's `TreeSet<String>` sorts topic names.
    fn topics_in_java_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.topics.len()).collect();
        order.sort_by(|&a, &b| java_str_cmp(&self.topics[a].name, &self.topics[b].name));
        order
    }

    fn empty_assignment(&self) -> Vec<Vec<Part>> {
        vec![Vec::new(); self.members.len()]
    }

    /// A partition of `topic` if it is assignable: a known topic, a partition it has.
    fn part(&self, tp: &TopicPartition) -> Option<Part> {
        let t = self.topics.binary_search_by(|topic| (*topic.name).cmp(&*tp.topic)).ok()?;
        (0..self.topics[t].partitions).contains(&tp.partition).then_some((t, tp.partition))
    }

    /// Who validly owns each partition: a member that claims it, still subscribes to its topic,
    /// and whose generation is higher than every other claimant's (on a tie nobody owns it).
    fn valid_owners(&self) -> BTreeMap<Part, usize> {
        let mut claims: BTreeMap<Part, Vec<(i32, usize)>> = BTreeMap::new();
        for (m, member) in self.members.iter().enumerate() {
            let owned: BTreeSet<Part> = member.sub.owned.iter().filter_map(|tp| self.part(tp)).collect();
            for part in owned.into_iter().filter(|&(t, _)| member.topics.contains(&t)) {
                claims.entry(part).or_default().push((member.sub.generation, m));
            }
        }
        claims
            .into_iter()
            .filter_map(|(part, claimants)| {
                let top = claimants.iter().map(|&(generation, _)| generation).max()?;
                let mut best = claimants.iter().filter(|&&(generation, _)| generation == top);
                match (best.next(), best.next()) {
                    (Some(&(_, m)), None) => Some((part, m)),
                    _ => None,
                }
            })
            .collect()
    }

    fn into_result(self, out: Vec<Vec<Part>>) -> BTreeMap<String, Vec<TopicPartition>> {
        self.members
            .iter()
            .zip(out)
            .map(|(member, mut parts)| {
                // Topic indexes follow topic names' order.
                parts.sort_unstable();
                let parts =
                    parts.into_iter().map(|(t, p)| TopicPartition::new(self.topics[t].name.clone(), p)).collect();
                (member.sub.member_id.clone(), parts)
            })
            .collect()
    }
}

/// The balanced assignment the cooperative-sticky assignor aims at, before the cooperative
/// adjustment: owned partitions kept where balance allows, the others given out.
fn sticky_target(group: &Group<'_>, owners: &BTreeMap<Part, usize>) -> Vec<Vec<Part>> {
    let m = group.members.len();
    let mut target: Vec<BTreeSet<Part>> = vec![BTreeSet::new(); m];
    for (&part, &owner) in owners {
        target[owner].insert(part);
    }
    // Topic index -> its subscribers, in member order.
    let subscribers: Vec<Vec<usize>> =
        (0..group.topics.len()).map(|t| (0..m).filter(|&i| group.subscribes(i, t)).collect()).collect();
    let assignable: Vec<Part> = (0..group.topics.len())
        .filter(|&t| !subscribers[t].is_empty())
        .flat_map(|t| (0..group.topics[t].partitions).map(move |p| (t, p)))
        .collect();

    // Identical subscriptions (Java's "constrained" assignment): every member's quota is known
    // up front, `n / m` or one more for `n % m` of them, so owners keep up to their quota (the
    // larger one while there are larger quotas left, in member order) and release the rest.
    // That moves the fewest partitions; what is released then fills the members under quota.
    if m > 0 && group.members.iter().all(|member| member.topics == group.members[0].topics) {
        let (min_quota, mut extra) = (assignable.len() / m, assignable.len() % m);
        for parts in &mut target {
            let keep = if parts.len() > min_quota && extra > 0 {
                extra -= 1;
                min_quota + 1
            } else {
                min_quota
            };
            while parts.len() > keep {
                parts.pop_last();
            }
        }
    }

    // Give out every partition nobody holds to its least loaded subscriber (ties by member
    // order), the most constrained partitions (fewest subscribers) first.
    let held: BTreeSet<Part> = target.iter().flatten().copied().collect();
    let mut free: Vec<Part> = assignable.iter().copied().filter(|part| !held.contains(part)).collect();
    free.sort_by_key(|&(t, p)| (subscribers[t].len(), t, p));
    for (t, p) in free {
        let to = least_loaded(&subscribers[t], &target);
        target[to].insert((t, p));
    }

    // Balance: while some member holds a partition that a member with at least two fewer
    // partitions subscribes to, move one from the most loaded such member to the least loaded
    // such subscriber, preferring partitions the holder does not own (moving those revokes
    // nothing). Every move lowers the sum of squared counts, so this ends. With identical
    // subscriptions the steps above are balanced already and nothing moves.
    loop {
        let least: Vec<Option<usize>> =
            subscribers.iter().map(|s| (!s.is_empty()).then(|| least_loaded(s, &target))).collect();
        let mut givers: Vec<usize> = (0..m).collect();
        givers.sort_by_key(|&i| (std::cmp::Reverse(target[i].len()), i));
        let step = givers.into_iter().find_map(|from| {
            let n = target[from].len();
            let (unowned, owned): (Vec<Part>, Vec<Part>) =
                target[from].iter().copied().partition(|part| owners.get(part) != Some(&from));
            unowned
                .into_iter()
                .chain(owned)
                .find_map(|part| least[part.0].filter(|&to| target[to].len() + 1 < n).map(|to| (from, part, to)))
        });
        let Some((from, part, to)) = step else { break };
        target[from].remove(&part);
        target[to].insert(part);
    }
    target.into_iter().map(|parts| parts.into_iter().collect()).collect()
}

/// The candidate holding the fewest partitions, the first in member order on a tie.
fn least_loaded(candidates: &[usize], target: &[BTreeSet<Part>]) -> usize {
    let mut best = candidates[0];
    for &c in &candidates[1..] {
        if target[c].len() < target[best].len() {
            best = c;
        }
    }
    best
}

/// Java's `MemberInfo` order: static members first, by instance id, then dynamic members by
/// member id (member ids break the ties Java leaves unordered).
fn java_member_order(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => java_str_cmp(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| java_str_cmp(&a.member_id, &b.member_id))
}

/// Java's `String.compareTo`: UTF-16 code units, which differs from UTF-8 byte order only
/// between supplementary characters and U+E000..U+FFFF.
fn java_str_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}
