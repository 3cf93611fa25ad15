//! The application's handle: assignment and positions, and records as a `Stream` or in batches.

use crate::config::ConsumerConfig;
use crate::error::{Error, ErrorKind};
use crate::group::driver::{Command, Driver, Status};
use crate::group::events::{RebalanceEvent, RebalanceEvents};
use crate::shared::Shared;
use crate::state::{Budgets, ConsumerRecord, Offset, PartitionRecords, Run, State};
use futures_util::Stream;
use krab_buffer::TopicPartition;
use krab_cluster::{BoxResolver, Cluster, ClusterConfig, MetadataResolver, ResolverConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use tokio::sync::{mpsc, oneshot};

/// A consumer of manually assigned partitions.
///
/// Records flow from one fetch task per broker into a bounded buffer; [`Consumer`] hands them
/// out as a [`Stream`] of [`ConsumerRecord`]s or through [`Consumer::poll_batch`]. Both are
/// cancel-safe: a partition's position moves only when its records are returned, so dropping a
/// pending `next()` or `poll_batch` loses nothing.
///
/// Per-partition failures arrive in-band as `Err` items naming the partition
/// ([`Error::partition`]); the other partitions keep flowing.
///
/// Dropping the consumer stops its tasks.
#[derive(Debug)]
pub struct Consumer {
    shared: Arc<Shared>,
    cluster: Cluster,
    /// `isolation.level=read_committed` (lag is then counted to the last stable offset).
    read_committed: bool,
    /// The group member's task, when `group.id` is set.
    group: Option<GroupHandle>,
    /// The `Stream`'s current run: one partition's chunk lent by the partition table, handed
    /// out record by record without the lock (see [`Run`]).
    run: Option<Run>,
    /// The table's change counter, and its value when `run` was last known good.
    changes: Arc<AtomicU64>,
    seen: u64,
    /// `krab_consumer_e2e_latency_seconds`, sampled once per chunk handed out.
    e2e: metrics::Histogram,
}

impl Consumer {
    /// Connects to the cluster (`bootstrap.servers`) with the default coalescing resolver, over
    /// TCP or TLS as `security.protocol` says.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer, Error> {
        config.validate().map_err(|e| Error::with_source(ErrorKind::Config, "invalid consumer configuration", e))?;
        let mut c = ClusterConfig::new(config.bootstrap_servers.clone());
        c.connection.client_id = Some(config.client_id.clone());
        c.connection.request_timeout = config.request_timeout;
        // A Fetch response may carry fetch.max.bytes of records plus framing.
        c.connection.max_response_size =
            c.connection.max_response_size.max(usize::try_from(config.fetch_max_bytes).unwrap_or(0) + (1 << 20));
        c.metadata_max_age = config.metadata_max_age;
        c.reconnect_backoff = config.retry_backoff;
        c.reconnect_backoff_max = config.retry_backoff_max;
        c.security = config.security.clone();
        let cluster = Cluster::connect(c).await?;
        let resolver = MetadataResolver::new(
            cluster.clone(),
            ResolverConfig { deadline: config.request_timeout, ..ResolverConfig::default() },
        );
        Self::with_parts(config, cluster, BoxResolver::new(resolver))
    }

    /// A consumer over an existing cluster handle and a resolver of the caller's choosing. Must
    /// be called within a tokio runtime.
    pub fn with_parts(config: ConsumerConfig, cluster: Cluster, resolver: BoxResolver) -> Result<Consumer, Error> {
        config.validate().map_err(|e| Error::with_source(ErrorKind::Config, "invalid consumer configuration", e))?;
        let budgets = Budgets { partition: config.partition_budget(), total: config.buffer_budget() };
        let state = State::new(budgets, config.auto_offset_reset);
        let changes = state.changes();
        let shared = Arc::new(Shared::new(state));
        let config = Arc::new(config);
        tokio::spawn(crate::leaders::run(shared.clone(), cluster.clone(), resolver, config.clone()));
        let group = config.group_id.clone().map(|group| {
            let (commands, rx) = mpsc::unbounded_channel();
            let (events_tx, events) = mpsc::unbounded_channel();
            let status = Arc::new(Status::default());
            let driver = Driver::new(group, config.clone(), cluster.clone(), shared.clone(), status.clone(), events_tx);
            tokio::spawn(driver.run(rx));
            GroupHandle { commands, status, events: Some(events), started: tokio::time::Instant::now() }
        });
        let read_committed = config.isolation_level == crate::records::IsolationLevel::ReadCommitted;
        let e2e = crate::telemetry::e2e_latency(&config.client_id);
        Ok(Consumer { shared, cluster, read_committed, group, run: None, changes, seen: 0, e2e })
    }

    fn group(&self) -> Result<&GroupHandle, Error> {
        self.group
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Config, "no group.id: subscribe and commits need a consumer group"))
    }

    /// Joins the consumer group (`group.id`) subscribed to `topics`; the group's coordinator
    /// assigns partitions, which are then fetched from their committed offsets
    /// (`auto.offset.reset` where there is none). Calling it again changes the subscription.
    /// Do not mix with [`Consumer::assign`].
    pub fn subscribe<I, S>(&self, topics: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics: BTreeSet<String> = topics.into_iter().map(Into::into).collect();
        self.group()?.send(Command::Subscribe(topics))
    }

    /// Joins the consumer group subscribed to every topic whose whole name matches `pattern` (a
    /// regular expression; internal topics never match). The cluster's topics are matched again
    /// every `metadata.max.age.ms`: a new matching topic joins the subscription, a deleted one
    /// leaves it.
    pub fn subscribe_pattern(&self, pattern: &str) -> Result<(), Error> {
        let group = self.group()?;
        let regex = regex::Regex::new(pattern)
            .map_err(|e| Error::with_source(ErrorKind::Config, format!("invalid topic pattern `{pattern}`"), e))?;
        group.send(Command::SubscribePattern(regex))
    }

    /// The rebalance events of this member ([`RebalanceEvent`]), once: the first call takes them.
    /// While they are taken, a revocation waits for its [`RevokeAck`](crate::RevokeAck) (at most
    /// `max.poll.interval.ms`); left untaken, revocations go on at once.
    pub fn rebalance_events(&mut self) -> Option<RebalanceEvents> {
        let group = self.group.as_mut()?;
        let rx = group.events.take()?;
        group.status.listening.store(true, Ordering::Release);
        Some(RebalanceEvents { rx })
    }

    /// Commits the position of every assigned partition (the next record each will return), with
    /// the generation and member id; waits for the coordinator's answer. Commits are sent one at
    /// a time in the order asked.
    pub async fn commit(&self) -> Result<(), Error> {
        let group = self.group()?;
        let offsets = self.current_offsets();
        group.ask(|reply| Command::Commit(offsets, reply)).await?
    }

    /// Starts a commit of every assigned partition's position at once (like [`Consumer::commit`])
    /// and returns its outcome as a future, which may be dropped: the commit goes either way, in
    /// order with the others.
    pub fn commit_async(&self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let sent = self.group().and_then(|group| {
            let offsets = self.current_offsets();
            let (tx, rx) = oneshot::channel();
            group.send(Command::Commit(offsets, tx)).map(|()| rx)
        });
        async move {
            match sent {
                Ok(rx) => rx.await.map_err(|_| Error::new(ErrorKind::Closed, "the group member has stopped"))?,
                Err(e) => Err(e),
            }
        }
    }

    /// Every assigned partition's position (the next record it will return), with the leader
    /// epoch of the last batch consumed.
    fn current_offsets(&self) -> Vec<crate::group::driver::CommitOffset> {
        let epochs: BTreeMap<TopicPartition, Option<i32>> =
            self.shared.lock().committable(None).into_iter().map(|(tp, _, e)| (tp, e)).collect();
        let mut offsets = Vec::new();
        for tp in self.assignment() {
            if let Ok(Some(o)) = self.position(&tp) {
                let epoch = epochs.get(&tp).copied().flatten();
                offsets.push((tp, o, epoch, String::new()));
            }
        }
        offsets
    }

    /// Each assigned partition's lag: its log end offset (the last stable offset under
    /// `read_committed`), asked of its leader now, minus this consumer's position. Partitions
    /// whose position or end is not known yet are left out.
    pub async fn lag(&self) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        use krab_protocol::messages::ListOffsetsRequest;
        use krab_protocol::messages::list_offsets::{ListOffsetsPartition, ListOffsetsTopic};
        let positions: BTreeMap<TopicPartition, i64> =
            self.assignment().into_iter().filter_map(|tp| Some((tp.clone(), self.position(&tp).ok()??))).collect();
        let snapshot = self.cluster.snapshot();
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for tp in positions.keys() {
            if let Some(leader) = snapshot.partition(&tp.topic, tp.partition).and_then(|p| p.leader) {
                by_leader.entry(leader).or_default().entry(tp.topic.to_string()).or_default().push(tp.partition);
            }
        }
        let isolation = i8::from(self.read_committed);
        let mut out = BTreeMap::new();
        for (leader, topics) in by_leader {
            let broker = self.cluster.broker(leader).await?;
            let response = broker
                .call(|_| ListOffsetsRequest {
                    replica_id: -1,
                    isolation_level: isolation,
                    topics: topics
                        .into_iter()
                        .map(|(name, partitions)| ListOffsetsTopic {
                            name,
                            partitions: partitions
                                .into_iter()
                                .map(|p| ListOffsetsPartition {
                                    partition_index: p,
                                    current_leader_epoch: -1,
                                    timestamp: -1,
                                    max_num_offsets: 1,
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .await?;
            for t in response.topics {
                for p in t.partitions.into_iter().filter(|p| p.error_code == 0) {
                    let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                    if let Some(&position) = positions.get(&tp) {
                        out.insert(tp, (p.offset - position).max(0));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Commits these offsets (each the next offset to read) with metadata strings.
    pub async fn commit_offsets(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64, String)>,
    ) -> Result<(), Error> {
        let group = self.group()?;
        let offsets = offsets.into_iter().map(|(tp, o, m)| (tp, o, None, m)).collect();
        group.ask(|reply| Command::Commit(offsets, reply)).await?
    }

    /// The group's committed offsets of these partitions (`None`: nothing committed).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, Error> {
        let group = self.group()?;
        group.ask(|reply| Command::Committed(partitions.to_vec(), reply)).await?
    }

    /// This member's id and generation (`("", -1)` while not in one); `None` without a group.
    pub fn group_membership(&self) -> Option<(String, i32)> {
        let group = self.group.as_ref()?;
        let m = group.status.member.lock().unwrap_or_else(|p| p.into_inner());
        Some(m.clone())
    }

    /// Leaves the group (committing first with `enable.auto.commit`; a static member does not
    /// send LeaveGroup) and stops. Without a group, just stops.
    pub async fn close(self) -> Result<(), Error> {
        if let Some(group) = &self.group {
            group.ask(Command::Close).await??;
        }
        Ok(())
    }

    /// Notes that the application polled (the `max.poll.interval.ms` watchdog reads it).
    #[inline(always)]
    fn polled(&self) {
        if let Some(g) = &self.group {
            g.status.polled_ms.store(g.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Replaces the assignment: each partition starts at its [`Offset`]. Partitions no longer
    /// assigned drop what they buffered.
    pub fn assign(&self, partitions: impl IntoIterator<Item = (TopicPartition, Offset)>) {
        let wake = self.shared.lock().assign(partitions.into_iter().collect());
        self.shared.wake(wake);
    }

    /// The assigned partitions, sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.lock().assignment()
    }

    /// Moves an assigned partition to `offset`, dropping what it buffered and any error it was
    /// stopped on.
    pub fn seek(&self, partition: &TopicPartition, offset: Offset) -> Result<(), Error> {
        let wake = self.shared.lock().seek(partition, offset)?;
        self.shared.wake(wake);
        Ok(())
    }

    /// Stops fetching and returning records of these partitions (what they buffered is kept).
    pub fn pause<'a>(&self, partitions: impl IntoIterator<Item = &'a TopicPartition>) -> Result<(), Error> {
        self.set_paused(partitions, true)
    }

    /// Undoes [`Consumer::pause`].
    pub fn resume<'a>(&self, partitions: impl IntoIterator<Item = &'a TopicPartition>) -> Result<(), Error> {
        self.set_paused(partitions, false)
    }

    fn set_paused<'a>(
        &self,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
        paused: bool,
    ) -> Result<(), Error> {
        let mut wakes = Vec::new();
        let result = {
            let mut state = self.shared.lock();
            partitions.into_iter().try_for_each(|tp| {
                wakes.push(state.set_paused(tp, paused)?);
                Ok(())
            })
        };
        wakes.into_iter().for_each(|w| self.shared.wake(w));
        result
    }

    /// The offset of the next record this consumer will return for `partition`; `None` while
    /// its start offset is being looked up.
    pub fn position(&self, partition: &TopicPartition) -> Result<Option<i64>, Error> {
        let state = self.shared.lock();
        let position = state.position(partition)?;
        match &self.run {
            // Records lent to the Stream but not yet returned still count as not consumed.
            Some(run) if run.partition() == partition && state.holds(run) => Ok(Some(run.next_offset())),
            _ => Ok(position),
        }
    }

    /// Checks the lent run against seeks, reassignments and pauses since it was last checked:
    /// one atomic load when nothing changed; otherwise the run goes back to the partition table
    /// (dropped if its partition was sought or reassigned, kept there if it was paused).
    #[inline(always)]
    fn check_run(&mut self) {
        if self.run.is_none() {
            return;
        }
        let now = self.changes.load(Ordering::Acquire);
        if now == self.seen {
            return;
        }
        let mut state = self.shared.lock();
        self.seen = self.changes.load(Ordering::Acquire);
        if let Some(run) = self.run.take() {
            if state.holds(&run) && !state.is_paused(run.partition()) {
                self.run = Some(run);
                return;
            }
            let wake = state.give_back(run);
            drop(state);
            self.shared.wake(wake);
        }
    }

    /// Hands out the run's next record; a drained run goes back at once (freeing its bytes and
    /// moving the position past its batch).
    #[inline(always)]
    fn pop_run(&mut self) -> Option<ConsumerRecord> {
        let run = self.run.as_mut()?;
        let record = run.pop();
        if run.is_drained() {
            if let Some(run) = self.run.take() {
                let wake = self.shared.lock().finish_run(run);
                self.shared.wake(wake);
            }
        }
        record
    }

    /// Bytes of fetched records waiting to be returned.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.lock().buffered()
    }

    /// The cluster handle.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Polls for up to `max` records, grouped by partition (at least one record when ready), or
    /// the next error.
    ///
    /// Like tokio's own channels, each call that hands something out spends one unit of the
    /// task's cooperative budget, so a task draining a full buffer yields now and then and the
    /// fetch tasks sharing its thread keep the next responses coming.
    pub fn poll_batch_ready(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Result<Vec<PartitionRecords>, Error>> {
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        self.polled();
        self.check_run();
        if let Some(run) = &self.run {
            // What the Stream left of its run comes first, as a batch of its own.
            let partition = run.partition().clone();
            let n = run.remaining().min(max.max(1));
            let records: Vec<ConsumerRecord> = std::iter::from_fn(|| self.pop_run()).take(n).collect();
            coop.made_progress();
            return Poll::Ready(Ok(vec![PartitionRecords { partition, records }]));
        }
        let (taken, wake) = self.shared.lock().take(max, Some(cx.waker()));
        self.shared.wake(wake);
        match taken {
            Some(r) => {
                if let Ok(batch) = &r {
                    for p in batch {
                        let first = p.records.first().map_or(-1, |r| r.timestamp);
                        crate::telemetry::sample_e2e(&self.e2e, first);
                    }
                }
                coop.made_progress();
                Poll::Ready(r)
            }
            None => Poll::Pending,
        }
    }

    /// Waits for up to `max` records, grouped by partition, or the next error. Cancel-safe.
    pub async fn poll_batch(&mut self, max: usize) -> Result<Vec<PartitionRecords>, Error> {
        std::future::poll_fn(|cx| self.poll_batch_ready(cx, max)).await
    }
}

impl Stream for Consumer {
    type Item = Result<ConsumerRecord, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // One unit of the task's cooperative budget per item, as in `poll_batch_ready`.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        this.check_run();
        loop {
            if this.run.is_none() {
                this.polled();
                // One lock for a whole chunk: its records are then handed out from the run.
                let mut state = this.shared.lock();
                match state.take_run(Some(cx.waker())) {
                    Some(Ok(run)) => {
                        this.seen = this.changes.load(Ordering::Acquire);
                        crate::telemetry::sample_e2e(&this.e2e, run.next_timestamp());
                        this.run = Some(run);
                    }
                    Some(Err(e)) => {
                        coop.made_progress();
                        return Poll::Ready(Some(Err(e)));
                    }
                    None => return Poll::Pending,
                }
            }
            // Chunks are never empty; were one, it would go back drained and the next be taken.
            if let Some(record) = this.pop_run() {
                coop.made_progress();
                return Poll::Ready(Some(Ok(record)));
            }
        }
    }
}

/// The application's side of the group member's task.
#[derive(Debug)]
struct GroupHandle {
    commands: mpsc::UnboundedSender<Command>,
    status: Arc<Status>,
    events: Option<mpsc::UnboundedReceiver<RebalanceEvent>>,
    started: tokio::time::Instant,
}

impl GroupHandle {
    fn send(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).map_err(|_| Error::new(ErrorKind::Closed, "the group member has stopped"))
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(command(tx))?;
        rx.await.map_err(|_| Error::new(ErrorKind::Closed, "the group member has stopped"))
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.shared.close();
    }
}
