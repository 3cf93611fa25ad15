//! The flush loop: the one task that owns the send buffer.
//!
//! It receives records, flushes and close from producer handles (a bounded queue, see `inbox`), and
//! outcomes from the per-broker sender tasks and the resolver (an unbounded channel of events).
//! It never does I/O itself and never holds a lock across an await, so a slow broker only delays
//! the partitions it leads.
//!
//! Recovery: a rebalancing error on a partition (see `krab_cluster::rebalance`) stalls that
//! partition only, requeues its batch at its place, and asks the resolver for a snapshot newer
//! than the one that failed. Failures on many partitions in one loop turn become one resolve
//! call (and the resolver coalesces further). When the new snapshot arrives the partitions
//! resume, and their batches go to the new leader in order.
//!
//! Layout: this file holds the loop's state and its main loop; each child module adds the
//! methods of one job (`intake`, `dispatch`, `outcome`, `recovery`, `epochs`, `lifecycle`), and
//! `idempotence` is a leaf they and this file use. Children name this file's types; this file
//! names nothing of theirs but that leaf, so no two files import each other.

mod dispatch;
mod epochs;
mod idempotence;
mod intake;
mod lifecycle;
mod outcome;
mod recovery;
mod retry_timers;

use crate::command::{Command, Envelope};
use crate::config::ProducerConfig;
use crate::error::Error;
use crate::inbox::Inbox;
use crate::partitioner::{Partitioner, Placement};
use crate::record::DeliverySender;
use crate::sender::{self, JobOutcome, ProduceJob, SendSettings};
use crate::stats::Stats;
use crate::telemetry::ProducerMetrics;
use crate::time::{CLOCK_EVERY, Clock, add, now, sleep_until};
use krab_buffer::{Accumulator, AccumulatorConfig, MemoryPool, ProducerBatch, QueueId, TopicPartition};
use krab_cluster::{BoxResolver, Cluster, ClusterSnapshot, ResolveError};
use retry_timers::RetryTimers;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// A record the flush loop took in: its timestamp and arrival time are fixed.
pub(crate) struct Accepted {
    env: Envelope,
    timestamp: i64,
    enqueued_at: Instant,
    /// Its place among the records the loop took in: a flush covers those before its own.
    arrival: u64,
    /// The generation of the snapshot when it arrived. A record queued behind others is judged
    /// against a later snapshot, and any snapshot newer than this one is news to the record.
    seen: u64,
    /// For a record sent to a partition beyond the topic's known count: the generation of the
    /// snapshot that lacked it. It waits for metadata newer than that (the topic may have grown).
    stale: Option<u64>,
}

/// A pending `flush()`: done once no record sent before it is buffered, waiting or in flight.
struct PendingFlush {
    /// Every batch with a lower id must be settled.
    batch_mark: u64,
    /// Every record waiting for metadata with a lower [`Accepted::arrival`] must have left
    /// `waiting` (and its batch, then, settled: see `drain_waiting`).
    arrival_mark: u64,
    done: oneshot::Sender<()>,
}

/// The topic records were last appended to. A run of records to one topic (the usual case; the
/// user clones one `Arc<str>`) skips the per-record lookups: topic metadata, partitions
/// available to the partitioner, and each partition's accumulator queue. Dropped whenever the
/// snapshot or a partition's availability changes.
struct TopicCache {
    topic: Arc<str>,
    count: i32,
    /// The partitions the partitioner may pick, fetched on first use.
    available: Option<Arc<[i32]>>,
    /// Each partition's accumulator queue, fetched on first use.
    queues: Vec<Option<QueueId>>,
    /// Per partition, bytes of partitioner-placed records appended since the partitioner was
    /// last told that partition's batch is complete.
    filled: Vec<usize>,
}

pub(crate) enum Event {
    Produced(JobOutcome),
    Resolved(Result<Arc<ClusterSnapshot>, ResolveError>),
    ProducerId(Result<(i64, i16), Error>),
}

struct Job {
    broker: i32,
    /// The generation of the snapshot the batches were routed with.
    generation: u64,
    batches: Vec<ProducerBatch<DeliverySender>>,
}

/// How often a partition's batches may meet UNKNOWN_TOPIC_OR_PARTITION on Produce (metadata
/// lagging a topic's creation) before they fail with it (or the delivery timeout, if sooner).
const UNKNOWN_PARTITION_ROUNDS: u32 = 5;

pub(crate) struct FlushLoop {
    config: ProducerConfig,
    cluster: Cluster,
    resolver: BoxResolver,
    partitioner: Placement,
    inbox: Arc<Inbox>,
    /// The commands being handled (kept for its allocation).
    incoming: Vec<Command>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    acc: Accumulator<DeliverySender>,
    memory: MemoryPool,
    snapshot: Arc<ClusterSnapshot>,
    changes: watch::Receiver<u64>,
    senders: HashMap<i32, mpsc::UnboundedSender<ProduceJob>>,
    /// Permits for encoding on the blocking pool, shared by the senders.
    offload: Arc<tokio::sync::Semaphore>,
    settings: SendSettings,
    jobs: HashMap<u64, Job>,
    next_job: u64,
    waiting: HashMap<Arc<str>, Vec<Accepted>>,
    /// Stalled partitions and the snapshot generation each found stale: while any remain, the
    /// loop keeps asking for newer metadata (after backoff), whatever became of earlier asks.
    stalled: HashMap<TopicPartition, u64>,
    /// When each stalled partition stalled (for the "partition resumed" event).
    stalled_since: HashMap<TopicPartition, Instant>,
    /// Partitions that stalled and have not had a batch acknowledged since.
    recovering: std::collections::HashSet<TopicPartition>,
    /// Resolves in a row while partitions keep failing to recover (a leader still down): the
    /// wait between them doubles from `retry.backoff.ms` up to `retry.backoff.max.ms`.
    resolve_streak: u32,
    resolving: bool,
    resolve_after: Option<Instant>,
    retry_at: RetryTimers,
    /// Sequence bookkeeping of the partitions with idempotence.
    sequences: HashMap<TopicPartition, idempotence::PartitionSequences>,
    /// Per partition, UNKNOWN_TOPIC_OR_PARTITION answers to Produce since its last
    /// acknowledgement: bounded by [`UNKNOWN_PARTITION_ROUNDS`].
    unknown_rounds: HashMap<TopicPartition, u32>,
    available: HashMap<Arc<str>, Arc<[i32]>>,
    /// [`TopicCache::filled`] of the topics not cached now.
    filled: HashMap<Arc<str>, Vec<usize>>,
    topic_cache: Option<TopicCache>,
    flushes: Vec<PendingFlush>,
    /// The next [`Accepted::arrival`].
    arrivals: u64,
    /// The newest [`Accepted::stale`] generation of the records waiting for a refresh.
    refresh: Option<u64>,
    /// The stale generation the resolve in flight asks to be newer than, for those records.
    refresh_asked: Option<u64>,
    /// The newest such generation a resolve has answered: records stale at or before it have
    /// seen fresh metadata.
    refreshed: Option<u64>,
    closing: Option<(Instant, oneshot::Sender<usize>)>,
    idempotent: bool,
    /// Partitions waiting to move to a new epoch (see `idempotence::PartitionSequences`).
    bumps: HashSet<TopicPartition>,
    /// Of those, the ones with no batch of unknown outcome left: they send nothing until they
    /// have moved (new batches would only be numbered into the gap).
    held: HashSet<TopicPartition>,
    /// A partition's epochs are used up: a new producer id is wanted.
    need_id: bool,
    /// Asking the cluster for a new producer id (the epoch is used up).
    ids: idempotence::ProducerIds,
    next_expiry: Instant,
    stats: Arc<Stats>,
    metrics: ProducerMetrics,
}

impl FlushLoop {
    pub(crate) async fn start(
        config: ProducerConfig,
        cluster: Cluster,
        resolver: BoxResolver,
        partitioner: Arc<dyn Partitioner>,
        inbox: Arc<Inbox>,
        memory: MemoryPool,
        stats: Arc<Stats>,
    ) -> Result<FlushLoop, Error> {
        let mut acc = Accumulator::new(AccumulatorConfig {
            batch_size: config.batch_size,
            linger: config.linger,
            max_request_size: config.max_request_size,
            compression: config.compression,
            compression_level: config.compression_level,
            max_in_flight_per_partition: config.max_in_flight,
            delivery_timeout: config.effective_delivery_timeout(),
            // Idle buffers come on top of buffer.memory: keep a quarter of it at most.
            spare_bytes: config.buffer_memory / 4,
        });
        let idempotent = if config.idempotence() {
            match idempotence::first_producer_id(&cluster, &config).await {
                Ok(Some((pid, epoch))) => {
                    tracing::debug!(producer_id = pid, epoch, "idempotent producer");
                    acc.set_producer(pid, epoch);
                    true
                }
                Ok(None) => {
                    tracing::info!("the broker does not support idempotence (InitProducerId); producing without it");
                    false
                }
                Err(e) => return Err(e),
            }
        } else {
            false
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        let settings = SendSettings {
            acks: config.acks.as_i16(),
            timeout_ms: i32::try_from(config.request_timeout.as_millis()).unwrap_or(i32::MAX),
        };
        let ids = idempotence::ProducerIds::new(&config);
        let metrics = ProducerMetrics::new(&config.client_id);
        Ok(FlushLoop {
            metrics,
            stalled_since: HashMap::new(),
            ids,
            snapshot: cluster.snapshot(),
            changes: cluster.subscribe(),
            config,
            cluster,
            resolver,
            partitioner: Placement::new(partitioner),
            inbox,
            incoming: Vec::new(),
            events_tx,
            events,
            acc,
            memory,
            senders: HashMap::new(),
            offload: sender::offload_permits(),
            settings,
            jobs: HashMap::new(),
            next_job: 0,
            waiting: HashMap::new(),
            stalled: HashMap::new(),
            recovering: std::collections::HashSet::new(),
            resolve_streak: 0,
            resolving: false,
            resolve_after: None,
            retry_at: RetryTimers::default(),
            sequences: HashMap::new(),
            unknown_rounds: HashMap::new(),
            available: HashMap::new(),
            filled: HashMap::new(),
            topic_cache: None,
            flushes: Vec::new(),
            arrivals: 0,
            refresh: None,
            refresh_asked: None,
            refreshed: None,
            closing: None,
            idempotent,
            bumps: HashSet::new(),
            held: HashSet::new(),
            need_id: false,
            next_expiry: now(),
            stats,
        })
    }

    pub(crate) async fn run(mut self) {
        loop {
            let wake = self.next_wake(now());
            tokio::select! {
                biased;
                Some(event) = self.events.recv() => {
                    self.on_event(event);
                    while let Ok(event) = self.events.try_recv() {
                        self.on_event(event);
                    }
                }
                Ok(()) = self.changes.changed() => {
                    let snapshot = self.cluster.snapshot();
                    self.on_snapshot(snapshot);
                }
                () = self.inbox.ready(), if self.closing.is_none() => {
                    let mut batch = std::mem::take(&mut self.incoming);
                    let abandoned = self.inbox.take(&mut batch);
                    let mut clock = Clock::read();
                    for (i, c) in batch.drain(..).enumerate() {
                        if i > 0 && i % CLOCK_EVERY == 0 {
                            clock = Clock::read();
                        }
                        self.on_command(c, clock);
                    }
                    self.incoming = batch;
                    if abandoned && self.closing.is_none() {
                        // Every handle is gone: deliver what is buffered, as close() would.
                        self.begin_close(add(now(), self.config.effective_delivery_timeout()), None);
                    }
                }
                () = sleep_until(wake) => {}
            }
            let now = now();
            if now >= self.next_expiry {
                self.expire(now);
                self.next_expiry = now + Duration::from_millis(100);
            }
            self.retry_at.prune(now);
            self.maybe_bump_epochs(now);
            self.dispatch(now);
            self.maybe_resolve(now);
            self.check_flushes();
            // One atomic load per loop turn (a turn takes in a whole burst of records).
            self.metrics.buffer_in_use(self.memory.total().saturating_sub(self.memory.available()));
            if self.check_close(now) {
                // Commands queued after close began are dropped: their senders learn it.
                self.inbox.close();
                self.inbox.take(&mut self.incoming);
                self.incoming.clear();
                return;
            }
        }
    }

    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let snapshot = &self.snapshot;
        let retry_at = &self.retry_at;
        let held = &self.held;
        let mut wake = self.acc.next_ready_at(now, |tp| leader(snapshot, retry_at, held, now, tp));
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
            }
        };
        consider(self.retry_at.next_after(now));
        consider(Some(self.next_expiry));
        if self.need_id {
            consider(self.ids.wake_at());
        }
        consider(self.closing.as_ref().map(|(d, _)| *d));
        if !self.resolving && self.wants_resolve() {
            consider(Some(self.resolve_after.unwrap_or(now)));
        }
        wake
    }

    #[inline(always)]
    pub(super) fn on_command(&mut self, command: Command, clock: Clock) {
        match command {
            Command::Send(env) => self.accept(env, clock),
            Command::Flush(done) => {
                self.acc.seal_all();
                let flush = PendingFlush { batch_mark: self.acc.next_batch_id(), arrival_mark: self.arrivals, done };
                self.flushes.push(flush);
            }
            Command::Close { deadline, done } => self.begin_close(deadline, Some(done)),
        }
    }

    pub(super) fn begin_close(&mut self, deadline: Instant, done: Option<oneshot::Sender<usize>>) {
        self.acc.seal_all();
        let (tx, _rx) = oneshot::channel::<usize>();
        self.closing = Some((deadline, done.unwrap_or(tx)));
        self.inbox.close();
    }

    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            Event::Produced(outcome) => self.on_produced(outcome),
            Event::Resolved(result) => {
                self.resolving = false;
                let backoff = self
                    .config
                    .retry_backoff
                    .saturating_mul(1 << self.resolve_streak.min(16))
                    .min(self.config.retry_backoff_max.max(self.config.retry_backoff));
                self.resolve_after = Some(add(now(), backoff));
                if !self.recovering.is_empty() {
                    self.resolve_streak += 1;
                }
                let asked = self.refresh_asked.take();
                match result {
                    Ok(snapshot) => {
                        self.on_snapshot(snapshot);
                        if let Some(g) = asked {
                            // Records waiting for this refresh now go, or fail, even if the
                            // snapshot reached the loop earlier through the cluster's updates.
                            self.refreshed = Some(self.refreshed.map_or(g, |r| r.max(g)));
                            self.drain_waiting();
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "metadata resolve failed; retrying after backoff"),
                }
            }
            Event::ProducerId(result) => self.on_producer_id(result, now()),
        }
    }
}

/// The leader to send a partition's batches to, unless it is backing off after an error or
/// held for a new epoch.
fn leader(
    snapshot: &ClusterSnapshot,
    retry_at: &RetryTimers,
    held: &HashSet<TopicPartition>,
    now: Instant,
    tp: &TopicPartition,
) -> Option<i32> {
    if retry_at.blocks(tp, now) || (!held.is_empty() && held.contains(tp)) {
        return None;
    }
    snapshot.partition(&tp.topic, tp.partition)?.leader
}
