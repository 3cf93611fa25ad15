//! A fake group coordinator for the classic consumer group protocol: FindCoordinator,
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit and OffsetFetch answered from
//! in-memory groups, for a test's handler to delegate to:
//!
//! ```text
//! let coord = FakeCoordinator::for_cluster(&cluster, 1);
//! cluster.broker(id).set_handler(move |header, request| {
//!     if let Some(reply) = coord.handle(id, &header, &request) { return reply; }
//!     Reply::Default
//! });
//! ```
//!
//! Groups follow Apache Kafka's states (Empty, PreparingRebalance, CompletingRebalance,
//! Stable): a JoinGroup is held until every member has rejoined or the rebalance timeout has
//! passed; followers' SyncGroups are held until the leader's brings the assignments. Time is
//! tokio's, so tests may pause it: sessions expire and rebalances time out on timers of their
//! own, and are also checked on every request. Not modelled: static membership's fencing
//! (instance ids are only echoed), session timeout bounds, transactional offsets.

use crate::cluster::FakeCluster;
use crate::reply::Reply;
use crate::{FAKE_PORT, lock};
use bytes::Bytes;
use krab_cluster::BrokerAddr;
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::find_coordinator::Coordinator;
use krab_protocol::messages::join_group::JoinGroupResponseMember;
use krab_protocol::messages::leave_group::MemberResponse;
use krab_protocol::messages::offset_commit::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use krab_protocol::messages::offset_fetch::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use krab_protocol::messages::{
    AnyRequest, AnyResponse, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, SyncGroupRequest, SyncGroupResponse,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

const NONE: i16 = 0;
const NOT_COORDINATOR: i16 = ErrorCode::NotCoordinator.code();
const ILLEGAL_GENERATION: i16 = ErrorCode::IllegalGeneration.code();
const INCONSISTENT_GROUP_PROTOCOL: i16 = ErrorCode::InconsistentGroupProtocol.code();
const INVALID_GROUP_ID: i16 = ErrorCode::InvalidGroupId.code();
const UNKNOWN_MEMBER_ID: i16 = ErrorCode::UnknownMemberId.code();
const REBALANCE_IN_PROGRESS: i16 = ErrorCode::RebalanceInProgress.code();
const MEMBER_ID_REQUIRED: i16 = ErrorCode::MemberIdRequired.code();

/// Where a group is in the classic protocol's rebalance cycle (Apache Kafka's group states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupState {
    /// No members (offsets may still be stored).
    #[default]
    Empty,
    /// Waiting for every member to (re)join.
    PreparingRebalance,
    /// A new generation was announced; waiting for the leader's SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

/// A snapshot of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The state.
    pub state: GroupState,
    /// The current generation (0 before the first rebalance).
    pub generation: i32,
    /// The protocol (assignor) chosen for the generation.
    pub protocol: Option<String>,
    /// The leader of the generation.
    pub leader: Option<String>,
    /// Member ids, in the order they joined.
    pub members: Vec<String>,
    /// The leader's assignments of the generation, by member id (empty until its SyncGroup).
    pub assignments: BTreeMap<String, Bytes>,
}

/// An offset stored by OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to read.
    pub offset: i64,
    /// The committed leader epoch (-1: none).
    pub leader_epoch: i32,
    /// The metadata string.
    pub metadata: Option<String>,
}

/// One OffsetCommit request as the coordinator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    /// The broker it reached.
    pub broker: i32,
    /// The group.
    pub group: String,
    /// The generation it carried.
    pub generation: i32,
    /// The member id it carried.
    pub member_id: String,
    /// (topic, partition, offset), in request order.
    pub offsets: Vec<(String, i32, i64)>,
    /// The code every partition was answered (0: stored).
    pub error_code: i16,
}

/// One member's LeaveGroup as the coordinator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveRecord {
    /// The broker it reached.
    pub broker: i32,
    /// The group.
    pub group: String,
    /// The member id leaving.
    pub member_id: String,
    /// The code it was answered (0: removed).
    pub error_code: i16,
}

/// A request answered later: its version and where the answer goes.
struct Waiter {
    version: i16,
    tx: oneshot::Sender<Reply>,
}

impl Waiter {
    fn send(self, reply: impl FnOnce(i16) -> Reply) {
        let _ = self.tx.send(reply(self.version));
    }
}

/// A reply that comes when the returned sender is given one (never, if it is dropped).
fn deferred(version: i16) -> (Waiter, Reply) {
    let (tx, rx) = oneshot::channel();
    (Waiter { version, tx }, Reply::Later(Box::pin(async move { rx.await.unwrap_or(Reply::Never) })))
}

struct Member {
    id: String,
    instance_id: Option<String>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    last_seen: Instant,
    /// Its JoinGroup, held until the rebalance completes.
    join: Option<Waiter>,
}

#[derive(Default)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: Vec<Member>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED, until they join (or their session ends).
    pending: Vec<(String, Instant)>,
    rebalance_deadline: Option<Instant>,
    /// Followers' SyncGroups, held until the leader's.
    syncs: Vec<(String, Waiter)>,
    assignments: BTreeMap<String, Bytes>,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
}

fn join_error(version: i16, error_code: i16, member_id: &str) -> Reply {
    respond(JoinGroupResponse {
        error_code,
        member_id: member_id.to_string(),
        protocol_name: if version >= 7 { None } else { Some(String::new()) },
        ..Default::default()
    })
}

fn sync_error(error_code: i16) -> Reply {
    respond(SyncGroupResponse { error_code, ..Default::default() })
}

fn respond(response: impl Into<Boxed>) -> Reply {
    Reply::Respond(response.into().0)
}

/// A group response as an [`AnyResponse`] (the group APIs are not all [`IntoAny`](crate::IntoAny)).
struct Boxed(AnyResponse);

macro_rules! boxed {
    ($($ty:ident => $variant:ident),* $(,)?) => {$(
        impl From<$ty> for Boxed {
            fn from(r: $ty) -> Boxed {
                Boxed(AnyResponse::$variant(Box::new(r)))
            }
        }
    )*};
}

boxed!(
    FindCoordinatorResponse => FindCoordinator,
    JoinGroupResponse => JoinGroup,
    SyncGroupResponse => SyncGroup,
    HeartbeatResponse => Heartbeat,
    LeaveGroupResponse => LeaveGroup,
    OffsetCommitResponse => OffsetCommit,
    OffsetFetchResponse => OffsetFetch,
);

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Group {
    fn index(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == member_id)
    }

    fn view(&self) -> GroupView {
        GroupView {
            state: self.state,
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self.members.iter().map(|m| m.id.clone()).collect(),
            assignments: self.assignments.clone(),
        }
    }

    /// Whether a member with these protocols may join: the group's protocol type, and one
    /// protocol every other member supports too.
    fn supports(&self, member_id: &str, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        let others: Vec<&Member> = self.members.iter().filter(|m| m.id != member_id).collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref().is_some_and(|t| t != protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| others.iter().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    /// The first protocol of the first member's list that every member supports.
    fn choose_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| self.members.iter().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
            .cloned()
    }

    /// The JoinGroup answer of the current generation to `member_id` (every member's metadata
    /// for the leader).
    fn join_ok(&self, version: i16, member_id: &str) -> Reply {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|m| JoinGroupResponseMember {
                    member_id: m.id.clone(),
                    group_instance_id: if version >= 5 { m.instance_id.clone() } else { None },
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default(),
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        };
        respond(JoinGroupResponse {
            generation_id: self.generation,
            protocol_type: if version >= 7 { self.protocol_type.clone() } else { None },
            protocol_name: Some(protocol),
            leader,
            member_id: member_id.to_string(),
            members,
            ..Default::default()
        })
    }

    fn sync_ok(&self, version: i16, member_id: &str) -> Reply {
        respond(SyncGroupResponse {
            protocol_type: if version >= 5 { self.protocol_type.clone() } else { None },
            protocol_name: if version >= 5 { self.protocol.clone() } else { None },
            assignment: self.assignments.get(member_id).cloned().unwrap_or_default(),
            ..Default::default()
        })
    }

    /// Starts a rebalance (held SyncGroups are answered REBALANCE_IN_PROGRESS).
    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        for (_, waiter) in self.syncs.drain(..) {
            waiter.send(|_| sync_error(REBALANCE_IN_PROGRESS));
        }
        self.assignments.clear();
        self.state = GroupState::PreparingRebalance;
        let timeout = self.members.iter().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
    }

    /// Completes the rebalance once every member has rejoined, or its timeout has passed (the
    /// members that did not rejoin are then removed).
    fn try_complete(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let late = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !late && self.members.iter().any(|m| m.join.is_none()) {
            return;
        }
        self.members.retain(|m| m.join.is_some());
        self.rebalance_deadline = None;
        self.assignments.clear();
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        let Some(protocol) = self.choose_protocol() else {
            for m in &mut self.members {
                if let Some(waiter) = m.join.take() {
                    let id = m.id.clone();
                    waiter.send(|v| join_error(v, INCONSISTENT_GROUP_PROTOCOL, &id));
                }
            }
            self.members.clear();
            self.state = GroupState::Empty;
            return;
        };
        self.protocol = Some(protocol);
        self.leader = self.members.first().map(|m| m.id.clone());
        self.state = GroupState::CompletingRebalance;
        let waiters: Vec<(String, Waiter)> = self
            .members
            .iter_mut()
            .filter_map(|m| {
                m.last_seen = now;
                Some((m.id.clone(), m.join.take()?))
            })
            .collect();
        for (id, waiter) in waiters {
            waiter.send(|v| self.join_ok(v, &id));
        }
    }

    /// Removes a member (its held requests are answered UNKNOWN_MEMBER_ID); the others
    /// rebalance.
    fn remove(&mut self, member_id: &str, now: Instant) -> bool {
        let Some(i) = self.index(member_id) else { return false };
        let member = self.members.remove(i);
        if let Some(waiter) = member.join {
            waiter.send(|v| join_error(v, UNKNOWN_MEMBER_ID, member_id));
        }
        if let Some(i) = self.syncs.iter().position(|(id, _)| id == member_id) {
            self.syncs.remove(i).1.send(|_| sync_error(UNKNOWN_MEMBER_ID));
        }
        if self.state != GroupState::Empty {
            self.prepare_rebalance(now);
            self.try_complete(now);
        }
        true
    }

    /// Removes the members whose session ended and the pending ids never used; completes a
    /// rebalance whose timeout passed.
    fn expire(&mut self, now: Instant) {
        self.pending.retain(|(_, until)| *until > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| self.keeps_alive(m).is_some_and(|until| now >= until))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove(&id, now);
        }
        self.try_complete(now);
    }

    /// When the member's session ends (`None`: never while a request of it is held).
    fn keeps_alive(&self, m: &Member) -> Option<Instant> {
        if m.join.is_some() || self.syncs.iter().any(|(id, _)| *id == m.id) {
            return None;
        }
        Some(m.last_seen + m.session_timeout)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let rebalance = self.rebalance_deadline.filter(|_| self.state == GroupState::PreparingRebalance);
        let sessions = self.members.iter().filter_map(|m| self.keeps_alive(m));
        let pending = self.pending.iter().map(|(_, until)| *until);
        rebalance.into_iter().chain(sessions).chain(pending).min()
    }
}

struct Inner {
    coordinator: i32,
    brokers: BTreeMap<i32, BrokerAddr>,
    groups: BTreeMap<String, Group>,
    faults: HashMap<i16, VecDeque<i16>>,
    requests: HashMap<i16, u64>,
    commits: Vec<CommitRecord>,
    leaves: Vec<LeaveRecord>,
    next_member: u64,
    /// When the armed timer fires.
    timer: Option<Instant>,
}

/// An in-memory classic group coordinator shared by the brokers of a fake cluster. Cheap to
/// clone (a handle); see the module docs for how a handler uses it.
#[derive(Clone)]
pub struct FakeCoordinator {
    inner: Arc<Mutex<Inner>>,
}

impl FakeCoordinator {
    /// A coordinator on broker `coordinator`, brokers being `broker-<id>:9092`.
    pub fn new(coordinator: i32) -> Self {
        Self::with_brokers(BTreeMap::new(), coordinator)
    }

    /// A coordinator on broker `coordinator` of `cluster` (FindCoordinator names its address).
    pub fn for_cluster(cluster: &FakeCluster, coordinator: i32) -> Self {
        Self::with_brokers(cluster.state().brokers.clone(), coordinator)
    }

    /// A coordinator on broker `coordinator`, FindCoordinator naming the addresses of `brokers`.
    pub fn with_brokers(brokers: BTreeMap<i32, BrokerAddr>, coordinator: i32) -> Self {
        FakeCoordinator {
            inner: Arc::new(Mutex::new(Inner {
                coordinator,
                brokers,
                groups: BTreeMap::new(),
                faults: HashMap::new(),
                requests: HashMap::new(),
                commits: Vec::new(),
                leaves: Vec::new(),
                next_member: 0,
                timer: None,
            })),
        }
    }

    /// Answers a request received by broker `broker` if it is one of the coordinator's APIs
    /// (FindCoordinator at any broker; the group APIs at the coordinator, NOT_COORDINATOR
    /// elsewhere); `None` for the others.
    pub fn handle(&self, broker: i32, header: &RequestHeader, request: &AnyRequest) -> Option<Reply> {
        let version = header.request_api_version;
        let api = header.request_api_key;
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        if !matches!(
            request,
            AnyRequest::FindCoordinator(_)
                | AnyRequest::JoinGroup(_)
                | AnyRequest::SyncGroup(_)
                | AnyRequest::Heartbeat(_)
                | AnyRequest::LeaveGroup(_)
                | AnyRequest::OffsetCommit(_)
                | AnyRequest::OffsetFetch(_)
        ) {
            return None;
        }
        *inner.requests.entry(api).or_default() += 1;
        inner.expire(now);
        let fault = inner.faults.get_mut(&api).and_then(VecDeque::pop_front);
        let error = match request {
            AnyRequest::FindCoordinator(_) => fault,
            _ => fault.or((broker != inner.coordinator).then_some(NOT_COORDINATOR)),
        };
        let reply = match request {
            AnyRequest::FindCoordinator(r) => inner.find_coordinator(r, version, error),
            AnyRequest::JoinGroup(r) => match error {
                Some(code) => join_error(version, code, &r.member_id),
                None => inner.join(header, r, now),
            },
            AnyRequest::SyncGroup(r) => match error {
                Some(code) => sync_error(code),
                None => inner.sync(version, r, now),
            },
            AnyRequest::Heartbeat(r) => {
                let error_code = error.unwrap_or_else(|| inner.heartbeat(r, now));
                respond(HeartbeatResponse { error_code, ..Default::default() })
            }
            AnyRequest::LeaveGroup(r) => inner.leave(broker, version, r, error, now),
            AnyRequest::OffsetCommit(r) => inner.commit(broker, version, r, error, now),
            AnyRequest::OffsetFetch(r) => inner.offset_fetch(version, r, error),
            _ => unreachable!("matched above"),
        };
        self.arm(&mut inner);
        Some(reply)
    }

    /// Arms a timer for the next session expiry or rebalance timeout, unless one fires before.
    fn arm(&self, inner: &mut Inner) {
        let Some(at) = inner.groups.values().filter_map(Group::next_deadline).min() else { return };
        if inner.timer.is_some_and(|t| t <= at) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        inner.timer = Some(at);
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(inner) = weak.upgrade() {
                let coordinator = FakeCoordinator { inner };
                let mut inner = lock(&coordinator.inner);
                if inner.timer == Some(at) {
                    inner.timer = None;
                }
                inner.expire(Instant::now());
                coordinator.arm(&mut inner);
            }
        });
    }

    /// Runs `f` on the state brought up to date (expired sessions and rebalance timeouts).
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = lock(&self.inner);
        inner.expire(Instant::now());
        let out = f(&mut inner);
        self.arm(&mut inner);
        out
    }

    /// The broker FindCoordinator names.
    pub fn coordinator(&self) -> i32 {
        lock(&self.inner).coordinator
    }

    /// Moves the coordinator to broker `broker` (the groups move with it); the other brokers
    /// answer the group APIs NOT_COORDINATOR from now on.
    pub fn move_to(&self, broker: i32) {
        lock(&self.inner).coordinator = broker;
    }

    /// Answers the next requests of `api` with these error codes, one each, in order (before
    /// any other check; FindCoordinator included).
    pub fn fail_next(&self, api: ApiKey, codes: impl IntoIterator<Item = i16>) {
        lock(&self.inner).faults.entry(api as i16).or_default().extend(codes);
    }

    /// Scripted error codes of `api` not used yet.
    pub fn faults_left(&self, api: ApiKey) -> usize {
        lock(&self.inner).faults.get(&(api as i16)).map_or(0, VecDeque::len)
    }

    /// Requests of `api` handled so far (at every broker, whatever their answer).
    pub fn requests(&self, api: ApiKey) -> u64 {
        lock(&self.inner).requests.get(&(api as i16)).copied().unwrap_or(0)
    }

    /// A snapshot of `group` (`None` if no request named it yet).
    pub fn group(&self, group: &str) -> Option<GroupView> {
        self.with(|inner| inner.groups.get(group).map(Group::view))
    }

    /// The member ids of `group`, in the order they joined.
    pub fn members(&self, group: &str) -> Vec<String> {
        self.group(group).map(|g| g.members).unwrap_or_default()
    }

    /// The generation of `group` (0 before its first rebalance, or unknown).
    pub fn generation(&self, group: &str) -> i32 {
        self.group(group).map_or(0, |g| g.generation)
    }

    /// The offset committed for a partition by `group`.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        let inner = lock(&self.inner);
        inner.groups.get(group)?.offsets.get(&(topic.to_string(), partition)).cloned()
    }

    /// Every OffsetCommit handled, in arrival order (rejected ones included, with their code).
    pub fn commits(&self) -> Vec<CommitRecord> {
        lock(&self.inner).commits.clone()
    }

    /// Every member named by a LeaveGroup, in arrival order.
    pub fn leaves(&self) -> Vec<LeaveRecord> {
        lock(&self.inner).leaves.clone()
    }

    /// Removes a member as its session expiring would (the others rebalance); false if it is
    /// not a member.
    pub fn remove_member(&self, group: &str, member_id: &str) -> bool {
        self.with(|inner| inner.groups.get_mut(group).is_some_and(|g| g.remove(member_id, Instant::now())))
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        for group in self.groups.values_mut() {
            group.expire(now);
        }
    }

    fn addr(&self, broker: i32) -> BrokerAddr {
        self.brokers.get(&broker).cloned().unwrap_or_else(|| BrokerAddr::new(format!("broker-{broker}"), FAKE_PORT))
    }

    fn find_coordinator(&self, r: &FindCoordinatorRequest, version: i16, error: Option<i16>) -> Reply {
        let addr = self.addr(self.coordinator);
        let (error_code, node_id, host, port) = match error {
            Some(code) => (code, -1, String::new(), -1),
            None => (NONE, self.coordinator, addr.host.clone(), i32::from(addr.port)),
        };
        if version >= 4 {
            let coordinators = r
                .coordinator_keys
                .iter()
                .map(|key| Coordinator {
                    key: key.clone(),
                    node_id,
                    host: host.clone(),
                    port,
                    error_code,
                    error_message: None,
                    ..Default::default()
                })
                .collect();
            return respond(FindCoordinatorResponse { coordinators, ..Default::default() });
        }
        respond(FindCoordinatorResponse {
            error_code,
            error_message: if version >= 1 { None } else { Some(String::new()) },
            node_id,
            host,
            port,
            ..Default::default()
        })
    }

    fn join(&mut self, header: &RequestHeader, r: &JoinGroupRequest, now: Instant) -> Reply {
        let version = header.request_api_version;
        if r.group_id.is_empty() {
            return join_error(version, INVALID_GROUP_ID, &r.member_id);
        }
        if r.protocol_type.is_empty() || r.protocols.is_empty() {
            return join_error(version, INCONSISTENT_GROUP_PROTOCOL, &r.member_id);
        }
        let session_timeout = millis(r.session_timeout_ms);
        let rebalance_timeout =
            if version >= 1 && r.rebalance_timeout_ms >= 0 { millis(r.rebalance_timeout_ms) } else { session_timeout };
        let protocols: Vec<(String, Bytes)> =
            r.protocols.iter().map(|p| (p.name.clone(), p.metadata.clone())).collect();
        let client = header.client_id.as_deref().filter(|c| !c.is_empty()).unwrap_or("member");
        let fresh = if r.member_id.is_empty() {
            self.next_member += 1;
            format!("{client}-{}", self.next_member)
        } else {
            String::new()
        };
        let group = self.groups.entry(r.group_id.clone()).or_default();
        if !group.supports(&r.member_id, &r.protocol_type, &protocols) {
            return join_error(version, INCONSISTENT_GROUP_PROTOCOL, &r.member_id);
        }
        let member_id = if r.member_id.is_empty() {
            if version >= 4 {
                // KIP-394: the member must come back with this id.
                group.pending.push((fresh.clone(), now + session_timeout));
                return join_error(version, MEMBER_ID_REQUIRED, &fresh);
            }
            fresh
        } else {
            r.member_id.clone()
        };
        let known = group.index(&member_id);
        let was_pending = group.pending.iter().any(|(id, _)| *id == member_id);
        if known.is_none() && !was_pending && !r.member_id.is_empty() {
            return join_error(version, UNKNOWN_MEMBER_ID, &member_id);
        }
        group.pending.retain(|(id, _)| *id != member_id);
        if group.members.is_empty() {
            group.protocol_type = Some(r.protocol_type.clone());
        }
        let same = known.is_some_and(|i| group.members[i].protocols == protocols);
        let i = match known {
            Some(i) => i,
            None => {
                group.members.push(Member {
                    id: member_id.clone(),
                    instance_id: r.group_instance_id.clone(),
                    session_timeout,
                    rebalance_timeout,
                    protocols: Vec::new(),
                    last_seen: now,
                    join: None,
                });
                group.members.len() - 1
            }
        };
        let m = &mut group.members[i];
        m.protocols = protocols;
        m.session_timeout = session_timeout;
        m.rebalance_timeout = rebalance_timeout;
        m.last_seen = now;
        let is_leader = group.leader.as_deref() == Some(member_id.as_str());
        // As Apache Kafka does: a member rejoining with what it had gets the current generation
        // back, unless it is the stable group's leader (then the group rebalances).
        match group.state {
            GroupState::CompletingRebalance if same => return group.join_ok(version, &member_id),
            GroupState::Stable if same && !is_leader => return group.join_ok(version, &member_id),
            _ => {}
        }
        // A JoinGroup sent again while one is held replaces it (the client gave up on it).
        let (waiter, reply) = deferred(version);
        group.members[i].join = Some(waiter);
        group.prepare_rebalance(now);
        group.try_complete(now);
        reply
    }

    fn sync(&mut self, version: i16, r: &SyncGroupRequest, now: Instant) -> Reply {
        let Some(group) = self.groups.get_mut(&r.group_id) else { return sync_error(UNKNOWN_MEMBER_ID) };
        let Some(i) = group.index(&r.member_id) else { return sync_error(UNKNOWN_MEMBER_ID) };
        if r.generation_id != group.generation {
            return sync_error(ILLEGAL_GENERATION);
        }
        if version >= 5
            && (r.protocol_type.as_ref().is_some_and(|t| Some(t) != group.protocol_type.as_ref())
                || r.protocol_name.as_ref().is_some_and(|p| Some(p) != group.protocol.as_ref()))
        {
            return sync_error(INCONSISTENT_GROUP_PROTOCOL);
        }
        group.members[i].last_seen = now;
        match group.state {
            GroupState::Empty => sync_error(UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => sync_error(REBALANCE_IN_PROGRESS),
            GroupState::Stable => group.sync_ok(version, &r.member_id),
            GroupState::CompletingRebalance => {
                let (waiter, reply) = deferred(version);
                if let Some(j) = group.syncs.iter().position(|(id, _)| *id == r.member_id) {
                    group.syncs.remove(j);
                }
                group.syncs.push((r.member_id.clone(), waiter));
                if group.leader.as_deref() == Some(r.member_id.as_str()) {
                    let members: Vec<String> = group.members.iter().map(|m| m.id.clone()).collect();
                    group.assignments = r
                        .assignments
                        .iter()
                        .filter(|a| members.contains(&a.member_id))
                        .map(|a| (a.member_id.clone(), a.assignment.clone()))
                        .collect();
                    group.state = GroupState::Stable;
                    for (id, waiter) in std::mem::take(&mut group.syncs) {
                        waiter.send(|v| group.sync_ok(v, &id));
                    }
                }
                reply
            }
        }
    }

    fn heartbeat(&mut self, r: &HeartbeatRequest, now: Instant) -> i16 {
        let Some(group) = self.groups.get_mut(&r.group_id) else { return UNKNOWN_MEMBER_ID };
        let Some(i) = group.index(&r.member_id) else { return UNKNOWN_MEMBER_ID };
        if r.generation_id != group.generation {
            return ILLEGAL_GENERATION;
        }
        group.members[i].last_seen = now;
        match group.state {
            GroupState::PreparingRebalance => REBALANCE_IN_PROGRESS,
            GroupState::Empty => UNKNOWN_MEMBER_ID,
            GroupState::CompletingRebalance | GroupState::Stable => NONE,
        }
    }

    fn leave(&mut self, broker: i32, version: i16, r: &LeaveGroupRequest, error: Option<i16>, now: Instant) -> Reply {
        let identities: Vec<(String, Option<String>)> = if version >= 3 {
            r.members.iter().map(|m| (m.member_id.clone(), m.group_instance_id.clone())).collect()
        } else {
            vec![(r.member_id.clone(), None)]
        };
        let mut answers = Vec::new();
        for (member_id, instance_id) in identities {
            let code = match error {
                Some(code) => code,
                None => {
                    let group = self.groups.get_mut(&r.group_id);
                    // A static member may leave by its instance id alone.
                    let id = match (&group, member_id.is_empty(), &instance_id) {
                        (Some(g), true, Some(instance)) => g
                            .members
                            .iter()
                            .find(|m| m.instance_id.as_ref() == Some(instance))
                            .map(|m| m.id.clone())
                            .unwrap_or_default(),
                        _ => member_id.clone(),
                    };
                    if group.is_some_and(|g| g.remove(&id, now)) { NONE } else { UNKNOWN_MEMBER_ID }
                }
            };
            self.leaves.push(LeaveRecord {
                broker,
                group: r.group_id.clone(),
                member_id: member_id.clone(),
                error_code: code,
            });
            answers.push(MemberResponse {
                member_id,
                group_instance_id: instance_id,
                error_code: code,
                ..Default::default()
            });
        }
        if version >= 3 {
            let error_code = error.unwrap_or(NONE);
            let members = if error.is_some() { Vec::new() } else { answers };
            respond(LeaveGroupResponse { error_code, members, ..Default::default() })
        } else {
            respond(LeaveGroupResponse { error_code: answers[0].error_code, ..Default::default() })
        }
    }

    /// Apache Kafka's checks of a commit: a group member of the current generation (or a
    /// commit without a generation to an empty group), not while the new generation waits for
    /// its assignment. Commits of the current generation are accepted while members rejoin, so
    /// that eager members can commit what they revoke.
    fn commit_code(&mut self, r: &OffsetCommitRequest, now: Instant) -> i16 {
        if r.group_id.is_empty() {
            return INVALID_GROUP_ID;
        }
        let group = self.groups.entry(r.group_id.clone()).or_default();
        if r.generation_id_or_member_epoch >= 0 || !r.member_id.is_empty() || r.group_instance_id.is_some() {
            let Some(i) = group.index(&r.member_id) else { return UNKNOWN_MEMBER_ID };
            if r.generation_id_or_member_epoch != group.generation {
                return ILLEGAL_GENERATION;
            }
            group.members[i].last_seen = now;
        } else if group.state != GroupState::Empty {
            return UNKNOWN_MEMBER_ID;
        }
        if group.state == GroupState::CompletingRebalance {
            return REBALANCE_IN_PROGRESS;
        }
        NONE
    }

    fn commit(
        &mut self,
        broker: i32,
        version: i16,
        r: &OffsetCommitRequest,
        error: Option<i16>,
        now: Instant,
    ) -> Reply {
        let error_code = error.unwrap_or_else(|| self.commit_code(r, now));
        let mut offsets = Vec::new();
        let mut topics = Vec::new();
        for t in &r.topics {
            let mut partitions = Vec::new();
            for p in &t.partitions {
                offsets.push((t.name.clone(), p.partition_index, p.committed_offset));
                if error_code == NONE {
                    let stored = CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 { p.committed_leader_epoch } else { -1 },
                        metadata: p.committed_metadata.clone(),
                    };
                    let group = self.groups.entry(r.group_id.clone()).or_default();
                    group.offsets.insert((t.name.clone(), p.partition_index), stored);
                }
                partitions.push(OffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code,
                    ..Default::default()
                });
            }
            topics.push(OffsetCommitResponseTopic { name: t.name.clone(), partitions, ..Default::default() });
        }
        self.commits.push(CommitRecord {
            broker,
            group: r.group_id.clone(),
            generation: r.generation_id_or_member_epoch,
            member_id: r.member_id.clone(),
            offsets,
            error_code,
        });
        respond(OffsetCommitResponse { topics, ..Default::default() })
    }

    /// The stored offsets of `topics` (`None`: every topic with one), -1 where none.
    fn stored(
        &self,
        group: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, Vec<(i32, CommittedOffset)>)> {
        let offsets = self.groups.get(group).map(|g| &g.offsets);
        let topics = topics.unwrap_or_else(|| {
            let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in offsets.into_iter().flat_map(|o| o.keys()) {
                all.entry(t.clone()).or_default().push(*p);
            }
            all.into_iter().collect()
        });
        let none = CommittedOffset { offset: -1, leader_epoch: -1, metadata: Some(String::new()) };
        topics
            .into_iter()
            .map(|(t, ps)| {
                let parts = ps
                    .into_iter()
                    .map(|p| {
                        let o = offsets.and_then(|o| o.get(&(t.clone(), p))).cloned().unwrap_or_else(|| none.clone());
                        (p, o)
                    })
                    .collect();
                (t, parts)
            })
            .collect()
    }

    fn offset_fetch(&self, version: i16, r: &OffsetFetchRequest, error: Option<i16>) -> Reply {
        if version >= 8 {
            let groups = r
                .groups
                .iter()
                .map(|g| {
                    let asked = g
                        .topics
                        .as_ref()
                        .map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect());
                    let topics = match error {
                        Some(_) => Vec::new(),
                        None => self
                            .stored(&g.group_id, asked)
                            .into_iter()
                            .map(|(name, parts)| OffsetFetchResponseTopics {
                                name,
                                partitions: parts
                                    .into_iter()
                                    .map(|(p, o)| OffsetFetchResponsePartitions {
                                        partition_index: p,
                                        committed_offset: o.offset,
                                        committed_leader_epoch: o.leader_epoch,
                                        metadata: o.metadata,
                                        ..Default::default()
                                    })
                                    .collect(),
                                ..Default::default()
                            })
                            .collect(),
                    };
                    OffsetFetchResponseGroup {
                        group_id: g.group_id.clone(),
                        topics,
                        error_code: error.unwrap_or(NONE),
                        ..Default::default()
                    }
                })
                .collect();
            return respond(OffsetFetchResponse { groups, ..Default::default() });
        }
        let asked =
            r.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect());
        // Before v2 there is no top-level error code: a fault goes to every partition.
        let (top, each) = match error {
            Some(code) if version >= 2 => (code, NONE),
            Some(code) => (NONE, code),
            None => (NONE, NONE),
        };
        let topics = if top != NONE {
            Vec::new()
        } else {
            self.stored(&r.group_id, asked)
                .into_iter()
                .map(|(name, parts)| OffsetFetchResponseTopic {
                    name,
                    partitions: parts
                        .into_iter()
                        .map(|(p, o)| OffsetFetchResponsePartition {
                            partition_index: p,
                            committed_offset: if each == NONE { o.offset } else { -1 },
                            committed_leader_epoch: if version >= 5 && each == NONE { o.leader_epoch } else { -1 },
                            metadata: o.metadata,
                            error_code: each,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect()
        };
        respond(OffsetFetchResponse { topics, error_code: top, ..Default::default() })
    }
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
