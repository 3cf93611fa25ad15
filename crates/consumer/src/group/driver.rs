//! The task that drives a group member: it sends what the member ([`Machine`] or [`Kip848`])
//! asks for to the group's coordinator (over a connection of its own, whose request timeout
//! covers a JoinGroup held for the whole rebalance timeout), feeds the answers back, and carries
//! out the core's actions on the partition table: pause, remove, assign, lose. It holds at most
//! two requests in flight, the member's and the core's commit, and waits for a revocation's
//! acknowledgement in the same loop, so heartbeats, commits and the application's calls go on
//! meanwhile (a commit asked while handling `Revoked` is answered before ownership moves).
//!
//! No lock is held across I/O: the partition table is locked for a few map operations at a
//! time (positions to commit, partitions to add or remove).

use crate::config::{AutoOffsetReset, ConsumerConfig, GroupProtocol};
use crate::error::{Error, ErrorKind};
use crate::group::action::{Action, CommitError, CommitRequest, CommitResult, Failure, Phase, Request, Stamp};
use crate::group::core::Core;
use crate::group::events::{RebalanceEvent, RevokeAck};
use crate::group::kip848::{self, Kip848};
use crate::group::machine::{Joined, Machine, Settings};
use crate::shared::Shared;
use crate::state::Offset;
use bytes::Bytes;
use krab_buffer::TopicPartition;
use krab_cluster::{Broker, Cluster, ClusterError};
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::consumer_group_heartbeat::TopicPartitions as HeartbeatPartitions;
use krab_protocol::messages::join_group::JoinGroupRequestProtocol;
use krab_protocol::messages::leave_group::MemberIdentity;
use krab_protocol::messages::offset_commit::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use krab_protocol::messages::offset_fetch::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use krab_protocol::messages::sync_group::SyncGroupRequestAssignment;
use krab_protocol::messages::{
    ConsumerGroupHeartbeatRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub(crate) use crate::group::action::CommitOffset;

/// What the application asks of its group.
pub(crate) enum Command {
    Subscribe(BTreeSet<String>),
    /// Subscribe to every topic whose whole name matches (internal topics never).
    SubscribePattern(regex::Regex),
    /// Commit these offsets.
    Commit(Vec<CommitOffset>, oneshot::Sender<Result<(), Error>>),
    /// The committed offsets of these partitions.
    Committed(Vec<TopicPartition>, oneshot::Sender<Result<BTreeMap<TopicPartition, Option<i64>>, Error>>),
    /// Commit (with auto-commit), revoke, leave; then the task ends.
    Close(oneshot::Sender<Result<(), Error>>),
}

/// What the application handle and the driver share besides commands.
#[derive(Debug, Default)]
pub(crate) struct Status {
    /// When the application last polled, in ms since the driver started.
    pub(crate) polled_ms: AtomicU64,
    /// Whether the application takes rebalance events (then revocations wait for its ack).
    pub(crate) listening: AtomicBool,
    /// (member id, generation) of the current membership.
    pub(crate) member: Mutex<(String, i32)>,
}

type Answer = Pin<Box<dyn Future<Output = Reply> + Send>>;
/// A commit's answer: the coordinator connection made for it (if one was), and each
/// partition's code or why there was no answer.
type CommitAnswer = Pin<Box<dyn Future<Output = (Option<(i32, Broker)>, Result<CommitCodes, Error>)> + Send>>;
type CommitCodes = Vec<(TopicPartition, ErrorCode)>;

enum Reply {
    Coordinator(Result<(i32, Broker), Failure>),
    Join(Result<Joined, (Failure, String)>),
    Sync(Result<Bytes, Failure>),
    Heartbeat(Result<(), Failure>),
    Leave(Result<(), Failure>),
    ConsumerHeartbeat(Result<kip848::Answer, Failure>),
}

/// The member: classic or KIP-848, both speaking [`Action`]s.
#[derive(Debug)]
enum Member {
    Classic(Machine),
    Consumer(Kip848),
}

macro_rules! both {
    ($self:expr, $m:ident => $e:expr) => {
        match $self {
            Member::Classic($m) => $e,
            Member::Consumer($m) => $e,
        }
    };
}

impl Member {
    fn next_action(&mut self) -> Option<Action> {
        both!(self, m => m.next_action())
    }
    fn deadline(&self) -> Option<std::time::Instant> {
        both!(self, m => m.deadline())
    }
    fn tick(&mut self, now: std::time::Instant) {
        both!(self, m => m.tick(now))
    }
    fn subscribe(&mut self, topics: BTreeSet<String>, now: std::time::Instant) {
        both!(self, m => m.subscribe(topics, now))
    }
    fn leave(&mut self, now: std::time::Instant) {
        both!(self, m => m.leave(now))
    }
    fn released(&mut self, now: std::time::Instant) {
        both!(self, m => m.released(now))
    }
    fn stamp(&self) -> Option<Stamp> {
        both!(self, m => m.stamp())
    }
    fn core_mut(&mut self) -> &mut Core {
        both!(self, m => m.core_mut())
    }
    fn poll_expired(&mut self, now: std::time::Instant) {
        both!(self, m => m.poll_expired(now))
    }
    fn poll_resumed(&mut self, now: std::time::Instant) {
        both!(self, m => m.poll_resumed(now))
    }
    fn member_id(&self) -> &str {
        both!(self, m => m.member_id())
    }
    fn generation(&self) -> i32 {
        both!(self, m => m.generation())
    }
    fn owned(&self) -> &BTreeSet<TopicPartition> {
        both!(self, m => m.owned())
    }
    fn phase(&self) -> Phase {
        both!(self, m => m.phase())
    }
    fn on_coordinator(&mut self, result: Result<(), Failure>, now: std::time::Instant) {
        both!(self, m => m.on_coordinator(result, now))
    }
}

fn failure(e: &ClusterError) -> Failure {
    match e {
        // No retry helps: the broker cannot speak this API (KIP-848 needs Kafka 4.0+).
        ClusterError::NoCommonVersion { .. } | ClusterError::UnsupportedApi { .. } => {
            Failure::Code(ErrorCode::UnsupportedVersion)
        }
        _ => match e.error_code() {
            Some(code) => Failure::Code(code),
            None => Failure::Transport,
        },
    }
}

fn code(code: i16) -> Result<(), Failure> {
    let c = ErrorCode::from_code(code);
    if c.is_ok() { Ok(()) } else { Err(Failure::Code(c)) }
}

pub(crate) struct Driver {
    group: String,
    config: Arc<ConsumerConfig>,
    cluster: Cluster,
    shared: Arc<Shared>,
    status: Arc<Status>,
    machine: Member,
    started: Instant,
    coordinator: Option<(i32, Broker)>,
    events: mpsc::UnboundedSender<RebalanceEvent>,
    /// The application's commits not answered yet, by id.
    replies: BTreeMap<u64, oneshot::Sender<Result<(), Error>>>,
    next_commit: u64,
    /// Why the last commit got no answer (the core only knows that it did not).
    commit_failure: Option<Error>,
    /// The revocation's acknowledgement awaited, and until when.
    ack: Option<(oneshot::Receiver<()>, Instant)>,
    expired: bool,
    /// Closing: revocations no longer wait for the application's ack (it asked to stop).
    closing: bool,
    /// A pattern subscription, matched against the cluster's topics every
    /// `metadata.max.age.ms`.
    pattern: Option<regex::Regex>,
    /// `krab_consumer_rebalances_total` by event: assigned, revoked, lost.
    rebalances: [metrics::Counter; 3],
}

impl Driver {
    pub(crate) fn new(
        group: String,
        config: Arc<ConsumerConfig>,
        cluster: Cluster,
        shared: Arc<Shared>,
        status: Arc<Status>,
        events: mpsc::UnboundedSender<RebalanceEvent>,
    ) -> Self {
        let settings = Settings {
            instance_id: config.group_instance_id.clone(),
            session_timeout: config.session_timeout,
            heartbeat_interval: config.heartbeat_interval,
            retry_backoff: config.retry_backoff,
            assignors: config.partition_assignment_strategy.iter().filter_map(|n| config.assignor_named(n)).collect(),
            auto_commit: config.enable_auto_commit,
        };
        let now = Instant::now();
        let machine = match config.group_protocol {
            GroupProtocol::Classic => Member::Classic(Machine::new(settings, now.into_std())),
            GroupProtocol::Consumer => Member::Consumer(Kip848::new(
                kip848::Settings {
                    instance_id: config.group_instance_id.clone(),
                    assignor: config.group_remote_assignor.clone(),
                    retry_backoff: config.retry_backoff,
                    auto_commit: config.enable_auto_commit,
                },
                now.into_std(),
            )),
        };
        let rebalances =
            ["assigned", "revoked", "lost"].map(|event| crate::telemetry::rebalances(&config.client_id, &group, event));
        Driver {
            rebalances,
            group,
            machine,
            config,
            cluster,
            shared,
            status,
            started: now,
            coordinator: None,
            events,
            replies: BTreeMap::new(),
            next_commit: 0,
            commit_failure: None,
            ack: None,
            expired: false,
            closing: false,
            pattern: None,
        }
    }

    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }

    /// Runs until the member has left (after `Close`, or the consumer dropped) or failed.
    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut in_flight: Option<Answer> = None;
        // The commit in flight (the core sends one at a time).
        let mut committing: Option<CommitAnswer> = None;
        let mut close: Option<oneshot::Sender<Result<(), Error>>> = None;
        let mut auto_commit = tokio::time::interval(self.config.auto_commit_interval);
        auto_commit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watchdog = tokio::time::interval(Duration::from_millis(500));
        let mut rematch = tokio::time::interval(self.config.metadata_max_age.max(Duration::from_secs(1)));
        rematch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        loop {
            while let Some(action) = self.machine.next_action() {
                tracing::debug!(group = %self.group, ?action, phase = ?self.machine.phase(), "group action");
                if let Some(end) = self.carry_out(action, &mut in_flight, &mut committing).await {
                    self.set_member();
                    self.finish(end, close.take());
                    return;
                }
            }
            self.set_member();
            let deadline = self.machine.deadline().map(Instant::from_std);
            tokio::select! {
                reply = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                    in_flight = None;
                    self.on_reply(reply);
                }
                (found, result) = async { committing.as_mut().expect("guarded").await }, if committing.is_some() => {
                    committing = None;
                    self.on_commit(found, result);
                }
                () = async {
                    let (done, until) = self.ack.as_mut().expect("guarded");
                    tokio::select! {
                        _ = done => {}
                        () = tokio::time::sleep_until(*until) => {
                            tracing::warn!(group = %self.group, "a revocation was not acknowledged within max.poll.interval.ms; going on");
                        }
                    }
                }, if self.ack.is_some() => {
                    self.ack = None;
                    self.machine.released(self.now());
                }
                () = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    self.machine.tick(self.now());
                }
                command = commands.recv(), if commands_open => match command {
                    Some(Command::Subscribe(topics)) => {
                        self.pattern = None;
                        self.machine.subscribe(topics, self.now());
                    }
                    Some(Command::SubscribePattern(pattern)) => {
                        self.pattern = Some(pattern);
                        self.match_pattern().await;
                    }
                    Some(Command::Commit(offsets, reply)) => {
                        let id = self.next_commit;
                        self.next_commit += 1;
                        self.replies.insert(id, reply);
                        let stamp = self.machine.stamp();
                        self.machine.core_mut().commit(id, offsets, stamp);
                    }
                    Some(Command::Committed(partitions, reply)) => {
                        let result = self.fetch_committed(&partitions).await.map(|m| {
                            partitions.iter().map(|tp| (tp.clone(), m.get(tp).copied())).collect()
                        });
                        let _ = reply.send(result);
                    }
                    Some(Command::Close(reply)) => {
                        close = Some(reply);
                        self.close();
                    }
                    None => {
                        // The consumer was dropped: leave the group as on close.
                        commands_open = false;
                        self.close();
                    }
                },
                _ = auto_commit.tick(), if self.config.enable_auto_commit => {
                    let stamp = self.machine.stamp();
                    if stamp.is_some() {
                        let positions = self.positions();
                        self.machine.core_mut().interval(positions, stamp);
                    }
                }
                _ = watchdog.tick() => self.watch_polls(),
                _ = rematch.tick(), if self.pattern.is_some() => self.match_pattern().await,
            }
        }
    }

    fn set_member(&self) {
        let mut m = self.status.member.lock().unwrap_or_else(|p| p.into_inner());
        *m = (self.machine.member_id().to_string(), self.machine.generation());
    }

    /// Subscribes to the topics matching the pattern now (a new topic joins the subscription,
    /// a deleted one leaves it).
    async fn match_pattern(&mut self) {
        let Some(pattern) = &self.pattern else { return };
        match self.cluster.fetch_metadata(None).await {
            Ok(snapshot) => {
                let topics =
                    matching(pattern, snapshot.topics.values().filter(|t| !t.internal).map(|t| t.name.as_str()));
                self.machine.subscribe(topics, self.now());
            }
            Err(e) => tracing::debug!(group = %self.group, error = %e, "listing topics for the pattern failed"),
        }
    }

    /// `max.poll.interval.ms` without a poll: the member leaves until the application polls.
    fn watch_polls(&mut self) {
        if self.closing {
            return;
        }
        let polled = Duration::from_millis(self.status.polled_ms.load(Ordering::Relaxed));
        let idle = self.started.elapsed().saturating_sub(polled);
        if !self.expired && idle > self.config.max_poll_interval && self.machine.generation() >= 0 {
            tracing::warn!(group = %self.group, ?idle, "max.poll.interval.ms passed without a poll; leaving the group");
            self.expired = true;
            self.machine.poll_expired(self.now());
        } else if self.expired && idle < self.config.max_poll_interval {
            self.expired = false;
            self.machine.poll_resumed(self.now());
        }
    }

    fn emit(&self, event: RebalanceEvent) {
        if self.status.listening.load(Ordering::Acquire) {
            let _ = self.events.send(event);
        }
    }

    /// A request to the coordinator that got no answer, or NOT_COORDINATOR: its connection is
    /// dropped, and the next one goes to the coordinator found afresh.
    fn forget_coordinator_after(&mut self, failure: Option<Failure>) {
        if matches!(failure, Some(Failure::Transport | Failure::Code(ErrorCode::NotCoordinator))) {
            self.coordinator = None;
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let now = self.now();
        match reply {
            Reply::Coordinator(r) => {
                let r = match r {
                    Ok((id, broker)) => {
                        tracing::debug!(group = %self.group, coordinator = id, "coordinator found");
                        self.coordinator = Some((id, broker));
                        Ok(())
                    }
                    Err(f) => {
                        self.coordinator = None;
                        Err(f)
                    }
                };
                self.machine.on_coordinator(r, now);
            }
            Reply::Join(r) => {
                match &r {
                    Ok(j) => {
                        tracing::debug!(group = %self.group, generation = j.generation, leader = %j.leader, members = j.members.len(), "joined")
                    }
                    Err((f, _)) => tracing::debug!(group = %self.group, failure = ?f, "JoinGroup failed"),
                }
                self.forget_coordinator_after(r.as_ref().err().map(|(f, _)| *f));
                if let Member::Classic(m) = &mut self.machine {
                    m.on_join(r, now);
                }
            }
            Reply::Sync(r) => {
                if let Err(f) = &r {
                    tracing::debug!(group = %self.group, failure = ?f, "SyncGroup failed");
                }
                self.forget_coordinator_after(r.as_ref().err().copied());
                if let Member::Classic(m) = &mut self.machine {
                    m.on_sync(r, now);
                }
            }
            Reply::Heartbeat(r) => {
                self.forget_coordinator_after(r.err());
                if let Member::Classic(m) = &mut self.machine {
                    m.on_heartbeat(r, now);
                }
            }
            Reply::Leave(r) => {
                if let Member::Classic(m) = &mut self.machine {
                    m.on_leave(r, now);
                }
            }
            Reply::ConsumerHeartbeat(r) => {
                self.forget_coordinator_after(r.as_ref().err().copied());
                if let Member::Consumer(m) = &mut self.machine {
                    m.on_heartbeat(r, now);
                }
            }
        }
    }

    /// Starts `request`; its answer comes back through the select loop.
    fn send(&mut self, request: Request) -> Answer {
        let group = self.group.clone();
        let instance = self.config.group_instance_id.clone();
        let session_ms = millis(self.config.session_timeout);
        let rebalance_ms = millis(self.config.max_poll_interval);
        let coordinator = self.coordinator.as_ref().map(|(_, b)| b.clone());
        match request {
            Request::FindCoordinator => {
                let cluster = self.cluster.clone();
                let timeout = self.coordinator_timeout();
                Box::pin(async move {
                    let found = async {
                        let id = find_coordinator(&cluster, &group).await?;
                        let broker = dedicated(&cluster, id, timeout).await.map_err(|e| failure(&e))?;
                        Ok((id, broker))
                    };
                    Reply::Coordinator(found.await)
                })
            }
            Request::Join { member_id, protocols } => Box::pin(async move {
                let Some(broker) = coordinator else { return Reply::Join(Err((Failure::Transport, member_id))) };
                let request = JoinGroupRequest {
                    group_id: group,
                    session_timeout_ms: session_ms,
                    rebalance_timeout_ms: rebalance_ms,
                    member_id: member_id.clone(),
                    group_instance_id: instance,
                    protocol_type: "consumer".into(),
                    protocols: protocols
                        .into_iter()
                        .map(|(name, metadata)| JoinGroupRequestProtocol { name, metadata, ..Default::default() })
                        .collect(),
                    ..Default::default()
                };
                let r = match broker.version_of::<JoinGroupRequest>() {
                    Ok(v) => broker.send(&request, v).await,
                    Err(e) => Err(e),
                };
                Reply::Join(match r {
                    Err(e) => Err((failure(&e), member_id)),
                    Ok(r) => match code(r.error_code) {
                        Err(f) => Err((f, r.member_id)),
                        Ok(()) => Ok(Joined {
                            generation: r.generation_id,
                            protocol: r.protocol_name,
                            leader: r.leader,
                            member_id: r.member_id,
                            members: r
                                .members
                                .into_iter()
                                .map(|m| (m.member_id, m.group_instance_id, m.metadata))
                                .collect(),
                        }),
                    },
                })
            }),
            Request::Sync { generation, member_id, protocol, assignments } => Box::pin(async move {
                let Some(broker) = coordinator else { return Reply::Sync(Err(Failure::Transport)) };
                let r = broker
                    .call(|_| SyncGroupRequest {
                        group_id: group,
                        generation_id: generation,
                        member_id,
                        group_instance_id: instance,
                        protocol_type: Some("consumer".into()),
                        protocol_name: Some(protocol),
                        assignments: assignments
                            .into_iter()
                            .map(|(member_id, assignment)| SyncGroupRequestAssignment {
                                member_id,
                                assignment,
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .await;
                Reply::Sync(match r {
                    Err(e) => Err(failure(&e)),
                    Ok(r) => code(r.error_code).map(|()| r.assignment),
                })
            }),
            Request::Heartbeat { generation, member_id } => Box::pin(async move {
                let Some(broker) = coordinator else { return Reply::Heartbeat(Err(Failure::Transport)) };
                let r = broker
                    .call(|_| HeartbeatRequest {
                        group_id: group,
                        generation_id: generation,
                        member_id,
                        group_instance_id: instance,
                        ..Default::default()
                    })
                    .await;
                Reply::Heartbeat(match r {
                    Err(e) => Err(failure(&e)),
                    Ok(r) => code(r.error_code),
                })
            }),
            Request::ConsumerHeartbeat { member_id, epoch, topics, assignor, owned } => {
                let cluster = self.cluster.clone();
                let subscribed: Vec<String> = topics.clone().unwrap_or_default();
                Box::pin(async move {
                    let Some(broker) = coordinator else { return Reply::ConsumerHeartbeat(Err(Failure::Transport)) };
                    let owned = match owned {
                        None => None,
                        Some(owned) => match topic_ids(&cluster, &owned).await {
                            Ok(ids) => Some(ids),
                            Err(f) => return Reply::ConsumerHeartbeat(Err(f)),
                        },
                    };
                    let request = ConsumerGroupHeartbeatRequest {
                        group_id: group,
                        member_id,
                        member_epoch: epoch,
                        instance_id: instance,
                        rebalance_timeout_ms: if epoch == 0 { rebalance_ms } else { -1 },
                        subscribed_topic_names: topics,
                        server_assignor: assignor,
                        topic_partitions: owned,
                        ..Default::default()
                    };
                    let r = broker.call(|_| request).await;
                    Reply::ConsumerHeartbeat(match r {
                        Err(e) => Err(failure(&e)),
                        Ok(r) => match code(r.error_code) {
                            Err(f) => Err(f),
                            Ok(()) => {
                                let assignment = match r.assignment {
                                    None => None,
                                    Some(a) => Some(topic_names(&cluster, &subscribed, a.topic_partitions).await),
                                };
                                Ok(kip848::Answer {
                                    member_id: r.member_id,
                                    epoch: r.member_epoch,
                                    interval: Duration::from_millis(
                                        u64::try_from(r.heartbeat_interval_ms).unwrap_or(0),
                                    ),
                                    assignment,
                                })
                            }
                        },
                    })
                })
            }
            Request::Leave { member_id } => Box::pin(async move {
                let Some(broker) = coordinator else { return Reply::Leave(Err(Failure::Transport)) };
                let r = broker
                    .call(|version| {
                        if version >= 3 {
                            LeaveGroupRequest {
                                group_id: group,
                                members: vec![MemberIdentity {
                                    member_id,
                                    group_instance_id: None,
                                    ..Default::default()
                                }],
                                ..Default::default()
                            }
                        } else {
                            LeaveGroupRequest { group_id: group, member_id, ..Default::default() }
                        }
                    })
                    .await;
                Reply::Leave(match r {
                    Err(e) => Err(failure(&e)),
                    Ok(r) => code(r.error_code),
                })
            }),
        }
    }

    /// The coordinator connection: made after FindCoordinator named broker `id`.
    async fn coordinator(&mut self) -> Result<Broker, Error> {
        if let Some((_, b)) = &self.coordinator {
            if b.is_connected() {
                return Ok(b.clone());
            }
        }
        let id = find_coordinator(&self.cluster, &self.group)
            .await
            .map_err(|f| Error::new(ErrorKind::Cluster, format!("group {}: no coordinator ({f:?})", self.group)))?;
        self.connect_coordinator(id).await
    }

    /// A JoinGroup may be held for the whole rebalance timeout.
    fn coordinator_timeout(&self) -> Duration {
        self.config.request_timeout.max(self.config.max_poll_interval + Duration::from_secs(5))
    }

    async fn connect_coordinator(&mut self, id: i32) -> Result<Broker, Error> {
        let broker = dedicated(&self.cluster, id, self.coordinator_timeout()).await?;
        self.coordinator = Some((id, broker.clone()));
        Ok(broker)
    }

    async fn partition_counts(&self, topics: &[String]) -> BTreeMap<String, i32> {
        match self.cluster.fetch_metadata(Some(topics)).await {
            Ok(s) => topics
                .iter()
                .filter_map(|t| {
                    let info = s.topic(t)?;
                    (info.error.is_ok() && !info.partitions.is_empty())
                        .then(|| (t.clone(), info.partitions.len() as i32))
                })
                .collect(),
            Err(e) => {
                tracing::debug!(group = %self.group, error = %e, "leader's metadata failed; assigning nothing");
                BTreeMap::new()
            }
        }
    }

    /// Carries out one action (`Some`: the member has ended, left or fatally).
    async fn carry_out(
        &mut self,
        action: Action,
        in_flight: &mut Option<Answer>,
        committing: &mut Option<CommitAnswer>,
    ) -> Option<Result<(), Error>> {
        match action {
            Action::Send(request) => *in_flight = Some(self.send(request)),
            Action::Metadata(topics) => {
                let counts = self.partition_counts(&topics).await;
                let now = self.now();
                if let Member::Classic(m) = &mut self.machine {
                    m.on_partition_counts(&counts, now);
                }
            }
            Action::Revoke(partitions) => self.pause(&partitions),
            Action::Commit(request) => *committing = Some(self.send_commit(request)),
            Action::Committed { id, result } => {
                let result = result.map_err(|e| self.commit_error(e));
                if let Some(reply) = self.replies.remove(&id) {
                    let _ = reply.send(result);
                }
            }
            Action::Release(partitions) => self.release(partitions),
            Action::Remove(partitions) => {
                let wake = self.shared.lock().remove(&partitions);
                self.shared.wake(wake);
                self.rebalanced(1, &partitions);
            }
            Action::Assign(partitions) => self.assign(partitions).await,
            Action::Lost(partitions) => {
                let wake = self.shared.lock().remove(&partitions);
                self.shared.wake(wake);
                self.rebalanced(2, &partitions);
                self.emit(RebalanceEvent::Lost(partitions));
            }
            Action::Fatal(code) => {
                let e = Error::new(ErrorKind::Broker(code), format!("group {}: {code}", self.group));
                tracing::warn!(group = %self.group, error = %e, "the group member cannot go on");
                let wake = self.shared.lock().fail_group(e.clone());
                self.shared.wake(wake);
                return Some(Err(e));
            }
            Action::Left => return Some(Ok(())),
        }
        None
    }

    /// Partitions were assigned (`event` 0), revoked (1, once they left the table) or lost (2):
    /// one INFO event of the same shape for each, and the counter.
    fn rebalanced(&self, event: usize, partitions: &[TopicPartition]) {
        let (group, generation, member) = (&self.group, self.machine.generation(), self.machine.member_id());
        let n = partitions.len();
        match event {
            0 => {
                tracing::info!(group = %group, generation, member, partitions = n, list = ?partitions, "partitions assigned")
            }
            1 => {
                tracing::info!(group = %group, generation, member, partitions = n, list = ?partitions, "partitions revoked")
            }
            _ => {
                tracing::info!(group = %group, generation, member, partitions = n, list = ?partitions, "partitions lost")
            }
        }
        self.rebalances[event.min(2)].increment(1);
    }

    /// The member ended: `close` (if asked) gets `end`, commits not answered an error.
    fn finish(&mut self, end: Result<(), Error>, close: Option<oneshot::Sender<Result<(), Error>>>) {
        for (_, reply) in std::mem::take(&mut self.replies) {
            let _ = reply.send(Err(Error::new(
                ErrorKind::Closed,
                format!("group {}: the member left the group before the commit was answered", self.group),
            )));
        }
        if let Some(reply) = close {
            let _ = reply.send(end);
        }
    }

    /// Close asked (or the consumer dropped): revocations no longer wait for the application,
    /// which is not taking events any more (one awaited now is released at once).
    fn close(&mut self) {
        self.closing = true;
        if self.ack.take().is_some() {
            self.machine.released(self.now());
        }
        self.machine.leave(self.now());
    }

    /// A revocation's first step: no more records of these partitions reach the application
    /// (what they buffered stays until they are removed), and their positions, read under the
    /// same lock, are the last ones it got: the core commits those.
    fn pause(&mut self, partitions: &[TopicPartition]) {
        let positions: Vec<CommitOffset> = {
            let mut state = self.shared.lock();
            for tp in partitions {
                let _ = state.set_paused(tp, true);
            }
            state.committable(Some(partitions)).into_iter().map(|(tp, o, e)| (tp, o, e, String::new())).collect()
        };
        let stamp = self.machine.stamp();
        self.machine.core_mut().paused(positions, stamp);
    }

    /// A revocation's acknowledgement: the application is told and awaited (at most
    /// `max.poll.interval.ms`), or, when it does not listen or is closing, released at once.
    fn release(&mut self, partitions: Vec<TopicPartition>) {
        if self.status.listening.load(Ordering::Acquire) {
            let (ack, done) = RevokeAck::new();
            let _ = self.events.send(RebalanceEvent::Revoked { partitions, ack });
            if !self.closing {
                self.ack = Some((done, Instant::now() + self.config.max_poll_interval));
                return;
            }
        }
        self.machine.released(self.now());
    }

    /// A commit was answered (or not): the core learns each partition's code.
    fn on_commit(&mut self, found: Option<(i32, Broker)>, result: Result<CommitCodes, Error>) {
        if found.is_some() {
            self.coordinator = found;
        }
        let result: CommitResult = match result {
            Ok(codes) => {
                if codes
                    .iter()
                    .any(|(_, c)| matches!(c, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable))
                {
                    self.coordinator = None;
                }
                Ok(codes)
            }
            Err(e) => {
                tracing::debug!(group = %self.group, error = %e, "commit failed");
                // The next request finds the coordinator again.
                self.coordinator = None;
                self.commit_failure = Some(e);
                Err(Failure::Transport)
            }
        };
        let stamp = self.machine.stamp();
        self.machine.core_mut().on_commit(result, stamp);
    }

    /// The application's error for a commit that failed.
    fn commit_error(&mut self, e: CommitError) -> Error {
        match e {
            CommitError::NotMember => Error::new(
                ErrorKind::Broker(ErrorCode::RebalanceInProgress),
                format!("group {}: not a member of a generation (rebalancing); commit again after it", self.group),
            ),
            CommitError::Unanswered => self.commit_failure.take().unwrap_or_else(|| {
                Error::new(ErrorKind::Cluster, format!("group {}: the commit got no answer", self.group))
            }),
            CommitError::Refused(tp, c) => {
                Error::new(ErrorKind::Broker(c), format!("group {}: commit of {tp} failed: {c}", self.group))
            }
        }
    }

    /// Starts fetching newly assigned partitions at their committed offsets (`auto.offset.reset`
    /// where there is none).
    async fn assign(&mut self, partitions: Vec<TopicPartition>) {
        let mut committed = BTreeMap::new();
        for attempt in 0..10 {
            match self.fetch_committed(&partitions).await {
                Ok(c) => {
                    committed = c;
                    break;
                }
                Err(e) => {
                    tracing::debug!(group = %self.group, error = %e, attempt, "fetching committed offsets failed");
                    tokio::time::sleep(self.config.retry_backoff * (attempt + 1)).await;
                }
            }
        }
        let reset = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => Some(Offset::Earliest),
            AutoOffsetReset::Latest => Some(Offset::Latest),
            AutoOffsetReset::None => None,
        };
        let mut starts = Vec::new();
        for tp in &partitions {
            match committed.get(tp) {
                Some(&o) => {
                    self.machine.core_mut().found_committed(tp.clone(), o);
                    starts.push((tp.clone(), Offset::At(o)));
                }
                None => match reset {
                    Some(r) => starts.push((tp.clone(), r)),
                    None => {
                        let e =
                            Error::new(ErrorKind::OffsetOutOfRange, "no committed offset and auto.offset.reset=none")
                                .for_partition(tp);
                        let wake = self.shared.lock().fail_group(e);
                        self.shared.wake(wake);
                    }
                },
            }
        }
        let wake = self.shared.lock().add(starts);
        self.shared.wake(wake);
        self.rebalanced(0, &partitions);
        self.emit(RebalanceEvent::Assigned(partitions));
    }

    /// Positions of owned partitions that are known (the core sends only those that moved).
    fn positions(&self) -> Vec<CommitOffset> {
        let owned = self.machine.owned();
        self.shared
            .lock()
            .committable(None)
            .into_iter()
            .filter(|(tp, _, _)| owned.contains(tp))
            .map(|(tp, o, e)| (tp, o, e, String::new()))
            .collect()
    }

    /// Starts an OffsetCommit stamped with the membership the core gave; its answer comes back
    /// through the select loop. The coordinator is found first when no connection to it is up.
    fn send_commit(&self, request: CommitRequest) -> CommitAnswer {
        let cluster = self.cluster.clone();
        let group = self.group.clone();
        let instance = self.config.group_instance_id.clone();
        let timeout = self.coordinator_timeout();
        let known = self.coordinator.as_ref().filter(|(_, b)| b.is_connected()).map(|(_, b)| b.clone());
        Box::pin(async move {
            let (broker, found) = match known {
                Some(b) => (b, None),
                None => {
                    let id = match find_coordinator(&cluster, &group).await {
                        Ok(id) => id,
                        Err(f) => {
                            let e = Error::new(ErrorKind::Cluster, format!("group {group}: no coordinator ({f:?})"));
                            return (None, Err(e));
                        }
                    };
                    match dedicated(&cluster, id, timeout).await {
                        Ok(b) => (b.clone(), Some((id, b))),
                        Err(e) => return (None, Err(Error::from(e))),
                    }
                }
            };
            let mut topics: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
            for (tp, offset, epoch, metadata) in &request.offsets {
                topics.entry(tp.topic.to_string()).or_default().push(OffsetCommitRequestPartition {
                    partition_index: tp.partition,
                    committed_offset: *offset,
                    committed_leader_epoch: epoch.unwrap_or(-1),
                    commit_timestamp: -1,
                    committed_metadata: Some(metadata.clone()),
                    ..Default::default()
                });
            }
            let commit = OffsetCommitRequest {
                group_id: group,
                generation_id_or_member_epoch: request.generation,
                member_id: request.member_id,
                group_instance_id: instance,
                retention_time_ms: -1,
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| OffsetCommitRequestTopic { name, partitions, ..Default::default() })
                    .collect(),
                ..Default::default()
            };
            let result = broker.call(|_| commit).await.map_err(Error::from).map(|response| {
                let mut codes = Vec::new();
                for t in &response.topics {
                    for p in &t.partitions {
                        codes.push((
                            TopicPartition::new(t.name.as_str(), p.partition_index),
                            ErrorCode::from_code(p.error_code),
                        ));
                    }
                }
                codes
            });
            (found, result)
        })
    }

    /// OffsetFetch (stable) of these partitions: those with a committed offset.
    async fn fetch_committed(&mut self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        let broker = self.coordinator().await?;
        let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            topics.entry(tp.topic.to_string()).or_default().push(tp.partition);
        }
        let group = self.group.clone();
        let response = broker
            .call(|version| {
                if version >= 8 {
                    OffsetFetchRequest {
                        groups: vec![OffsetFetchRequestGroup {
                            group_id: group.clone(),
                            topics: Some(
                                topics
                                    .iter()
                                    .map(|(name, ps)| OffsetFetchRequestTopics {
                                        name: name.clone(),
                                        partition_indexes: ps.clone(),
                                        ..Default::default()
                                    })
                                    .collect(),
                            ),
                            ..Default::default()
                        }],
                        require_stable: true,
                        ..Default::default()
                    }
                } else {
                    OffsetFetchRequest {
                        group_id: group.clone(),
                        topics: Some(
                            topics
                                .iter()
                                .map(|(name, ps)| OffsetFetchRequestTopic {
                                    name: name.clone(),
                                    partition_indexes: ps.clone(),
                                    ..Default::default()
                                })
                                .collect(),
                        ),
                        require_stable: version >= 7,
                        ..Default::default()
                    }
                }
            })
            .await
            .map_err(|e| {
                self.coordinator = None;
                Error::from(e)
            })?;
        let fail = |c: i16, what: &str| -> Result<(), Error> {
            let c = ErrorCode::from_code(c);
            if c.is_ok() {
                Ok(())
            } else {
                Err(Error::new(ErrorKind::Broker(c), format!("group {group}: fetching committed offsets{what}: {c}")))
            }
        };
        let mut out = BTreeMap::new();
        let mut answered = BTreeSet::new();
        if let Some(g) = response.groups.iter().find(|g| g.group_id == group) {
            fail(g.error_code, "")?;
            for t in &g.topics {
                for p in &t.partitions {
                    fail(p.error_code, &format!(" of {}-{}", t.name, p.partition_index))?;
                    let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                    answered.insert(tp.clone());
                    if p.committed_offset >= 0 {
                        out.insert(tp, p.committed_offset);
                    }
                }
            }
        } else {
            fail(response.error_code, "")?;
            for t in &response.topics {
                for p in &t.partitions {
                    fail(p.error_code, &format!(" of {}-{}", t.name, p.partition_index))?;
                    let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                    answered.insert(tp.clone());
                    if p.committed_offset >= 0 {
                        out.insert(tp, p.committed_offset);
                    }
                }
            }
        }
        // An answer that leaves partitions out is not "no offset": ask again.
        if let Some(missing) = partitions.iter().find(|tp| !answered.contains(tp)) {
            return Err(Error::new(ErrorKind::Cluster, format!("group {group}: OffsetFetch left out {missing}")));
        }
        Ok(out)
    }
}

/// The owned partitions by topic id (KIP-848 speaks ids), reading metadata for topics the
/// snapshot has no id of.
async fn topic_ids(cluster: &Cluster, owned: &[TopicPartition]) -> Result<Vec<HeartbeatPartitions>, Failure> {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in owned {
        by_topic.entry(tp.topic.to_string()).or_default().push(tp.partition);
    }
    let known = |s: &krab_cluster::ClusterSnapshot| {
        by_topic.keys().all(|t| s.topic(t).is_some_and(|i| i.id != krab_protocol::Uuid::ZERO))
    };
    let mut snapshot = cluster.snapshot();
    if !known(&snapshot) {
        let topics: Vec<String> = by_topic.keys().cloned().collect();
        snapshot = cluster.fetch_metadata(Some(&topics)).await.map_err(|e| failure(&e))?;
    }
    Ok(by_topic
        .into_iter()
        .filter_map(|(t, partitions)| {
            let id = snapshot.topic(&t)?.id;
            Some(HeartbeatPartitions { topic_id: id, partitions, ..Default::default() })
        })
        .collect())
}

/// An assignment's topic ids as names (metadata read for ids the snapshot does not know; an id
/// no metadata names is left out, and comes back in a later heartbeat's assignment).
async fn topic_names(
    cluster: &Cluster,
    subscribed: &[String],
    assigned: Vec<HeartbeatPartitions>,
) -> BTreeSet<TopicPartition> {
    let name_of = |s: &krab_cluster::ClusterSnapshot, id: krab_protocol::Uuid| {
        s.topics.values().find(|t| t.id == id).map(|t| t.name.clone())
    };
    let mut snapshot = cluster.snapshot();
    if assigned.iter().any(|a| name_of(&snapshot, a.topic_id).is_none()) {
        if let Ok(s) = cluster.fetch_metadata(Some(subscribed)).await {
            snapshot = s;
        }
    }
    let mut out = BTreeSet::new();
    for a in assigned {
        match name_of(&snapshot, a.topic_id) {
            Some(name) => out.extend(a.partitions.iter().map(|&p| TopicPartition::new(name.as_str(), p))),
            None => tracing::debug!(topic_id = %a.topic_id, "an assigned topic id no metadata names; left out"),
        }
    }
    out
}

/// The topics whose whole name `pattern` matches.
pub(crate) fn matching<'a>(pattern: &regex::Regex, topics: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    topics
        .filter(|t| pattern.find(t).is_some_and(|m| m.start() == 0 && m.end() == t.len()))
        .map(str::to_string)
        .collect()
}

/// A coordinator connection of the driver's own, reading metadata once if the snapshot does
/// not know the broker yet.
async fn dedicated(cluster: &Cluster, id: i32, timeout: Duration) -> Result<Broker, ClusterError> {
    match cluster.dedicated(id, timeout).await {
        Err(ClusterError::UnknownBroker(_)) => {
            cluster.fetch_metadata(Some(&[])).await?;
            cluster.dedicated(id, timeout).await
        }
        r => r,
    }
}

/// FindCoordinator for `group` at any broker: the coordinator's broker id.
async fn find_coordinator(cluster: &Cluster, group: &str) -> Result<i32, Failure> {
    cluster.find_coordinator(group).await.map_err(|e| failure(&e))
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_matches_whole_topic_names() {
        let p = regex::Regex::new("orders-.*|audit").unwrap();
        let topics = ["orders-eu", "orders-us", "audit", "audit-log", "my-orders-eu", "payments"];
        let got: Vec<String> = matching(&p, topics.into_iter()).into_iter().collect();
        assert_eq!(got, ["audit", "orders-eu", "orders-us"]);
        assert!(matching(&regex::Regex::new("nothing").unwrap(), topics.into_iter()).is_empty());
    }
}
