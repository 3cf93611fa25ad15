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

use crate::config::ProducerConfig;
use crate::error::{Error, ErrorKind};
use crate::inbox::Inbox;
use crate::partitioner::{PartitionInfo, Partitioner, Placement};
use crate::record::{DeliverySender, Record, RecordMetadata};
use crate::sender::{self, JobOutcome, ProduceJob, SendSettings};
use crate::stats::Stats;
use bytes::Bytes;
use krab_buffer::{
    Accumulator, AccumulatorConfig, FailedBatch, MemoryPool, Payload, PendingRecord, ProducerBatch, QueueId,
    RecordSlot, Reservation, TopicPartition,
};
use krab_cluster::rebalance::{Recovery, classify, classify_code};
use krab_cluster::{BoxResolver, Cluster, ClusterSnapshot, ResolveError, ResolveRequest};
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::{InitProducerIdRequest, ProduceResponse};
use krab_protocol::records::RecordHeader;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tower::ServiceExt;

pub(crate) enum Command {
    Send(Envelope),
    Flush(oneshot::Sender<()>),
    /// `done` learns how many records were abandoned (failed with `Closed`) at the deadline.
    Close {
        deadline: Instant,
        done: oneshot::Sender<usize>,
    },
}

/// A record on its way from a producer handle to the flush loop. It carries no clock reading:
/// the flush loop stamps records when it takes them in (see [`Clock`]), so that `send` reads no
/// clock per record.
pub(crate) struct Envelope {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<(String, Option<Bytes>)>,
    /// As the user gave it; `None`: the time the flush loop takes the record in.
    pub(crate) timestamp: Option<i64>,
    pub(crate) reply: DeliverySender,
    pub(crate) reservation: Reservation,
}

impl Envelope {
    pub(crate) fn new(record: Record, reservation: Reservation, reply: DeliverySender) -> Self {
        Envelope {
            topic: record.topic,
            partition: record.partition,
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp,
            reply,
            reservation,
        }
    }
}

/// The flush loop's clock readings for records it takes in: read once per
/// [`CLOCK_EVERY`] commands instead of once per record, so a record's timestamp and its
/// delivery-timeout start are at most that many records' handling (well under a millisecond)
/// away from the moment it arrived.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    now: Instant,
    wall_ms: i64,
}

/// Commands handled per clock reading.
const CLOCK_EVERY: usize = 256;

impl Clock {
    fn read() -> Self {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Self { now: now(), wall_ms }
    }
}

/// A record the flush loop took in: its timestamp and arrival time are fixed.
pub(crate) struct Accepted {
    env: Envelope,
    timestamp: i64,
    enqueued_at: Instant,
    /// Its place among the records the loop took in: a flush covers those before its own.
    arrival: u64,
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

/// A batch hitting OUT_OF_ORDER_SEQUENCE_NUMBER this often with nothing before it in flight
/// means the broker lost track of the producer's sequence: bump the epoch.
const OUT_OF_ORDER_LIMIT: u32 = 3;

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
    /// Partitions that stalled and have not had a batch acknowledged since.
    recovering: std::collections::HashSet<TopicPartition>,
    /// Resolves in a row while partitions keep failing to recover (a leader still down): the
    /// wait between them doubles from `retry.backoff.ms` up to `retry.backoff.max.ms`.
    resolve_streak: u32,
    resolving: bool,
    resolve_after: Option<Instant>,
    retry_at: HashMap<TopicPartition, Instant>,
    out_of_order: HashMap<TopicPartition, u32>,
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
    bump_epoch: bool,
    bumping: bool,
    next_expiry: Instant,
    stats: Arc<Stats>,
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
            match first_producer_id(&cluster, &config).await {
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
        Ok(FlushLoop {
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
            retry_at: HashMap::new(),
            out_of_order: HashMap::new(),
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
            bump_epoch: false,
            bumping: false,
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
            self.maybe_bump_epoch();
            self.dispatch(now);
            self.maybe_resolve(now);
            self.check_flushes();
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
        let mut wake =
            if self.bumping { None } else { self.acc.next_ready_at(now, |tp| leader(snapshot, retry_at, now, tp)) };
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
            }
        };
        consider(self.retry_at.values().copied().filter(|t| *t > now).min());
        consider(Some(self.next_expiry));
        consider(self.closing.as_ref().map(|(d, _)| *d));
        if !self.resolving && self.wants_resolve() {
            consider(Some(self.resolve_after.unwrap_or(now)));
        }
        wake
    }

    // ---------------------------------------------------------------------------------------
    // Commands
    // ---------------------------------------------------------------------------------------

    #[inline(always)]
    fn on_command(&mut self, command: Command, clock: Clock) {
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

    fn begin_close(&mut self, deadline: Instant, done: Option<oneshot::Sender<usize>>) {
        self.acc.seal_all();
        let (tx, _rx) = oneshot::channel::<usize>();
        self.closing = Some((deadline, done.unwrap_or(tx)));
        self.inbox.close();
    }

    #[inline(always)]
    fn accept(&mut self, env: Envelope, clock: Clock) {
        let timestamp = env.timestamp.unwrap_or(clock.wall_ms);
        let record = Accepted { env, timestamp, enqueued_at: clock.now, arrival: self.arrivals, stale: None };
        self.arrivals += 1;
        // A topic with records still waiting for metadata queues behind them, whatever the
        // snapshot says now: records of one partition must reach the buffer in send order.
        let behind = !self.waiting.is_empty() && self.waiting.contains_key(&record.env.topic);
        if !behind && self.cache_topic(&record.env.topic) {
            self.append(record, clock.now);
        } else {
            // Waiting records keep asking for metadata (see `maybe_resolve`) until the topic is
            // usable or `max.block.ms` passes.
            self.waiting.entry(record.env.topic.clone()).or_default().push(record);
        }
    }

    /// Points the topic cache at `topic`; false if the snapshot has no usable partitions for it.
    #[inline(always)]
    fn cache_topic(&mut self, topic: &Arc<str>) -> bool {
        match &self.topic_cache {
            Some(c) if Arc::ptr_eq(&c.topic, topic) || *c.topic == **topic => true,
            _ => self.cache_new_topic(topic),
        }
    }

    fn cache_new_topic(&mut self, topic: &Arc<str>) -> bool {
        let count = match self.snapshot.topic(topic) {
            Some(t) if t.error.is_ok() && !t.partitions.is_empty() => t.partitions.len(),
            _ => return false,
        };
        self.drop_topic_cache();
        self.topic_cache = Some(TopicCache {
            topic: topic.clone(),
            count: count as i32,
            available: None,
            queues: vec![None; count],
            filled: {
                // A topic that grew keeps its counts for the partitions it had.
                let mut filled = self.filled.remove(topic).unwrap_or_default();
                filled.resize(count, 0);
                filled
            },
        });
        true
    }

    fn drop_topic_cache(&mut self) {
        if let Some(c) = self.topic_cache.take() {
            if c.filled.iter().any(|&n| n > 0) {
                self.filled.insert(c.topic, c.filled);
            }
        }
    }

    fn available(&mut self, topic: &Arc<str>) -> Arc<[i32]> {
        if let Some(a) = self.available.get(topic) {
            return a.clone();
        }
        let list: Arc<[i32]> = match self.snapshot.topic(topic) {
            Some(t) => t
                .partitions
                .iter()
                .filter(|p| {
                    p.leader.is_some()
                        && self.acc.state(&TopicPartition { topic: topic.clone(), partition: p.partition })
                            == krab_buffer::PartitionState::Ready
                })
                .map(|p| p.partition)
                .collect(),
            None => Arc::from(Vec::new()),
        };
        self.available.insert(topic.clone(), list.clone());
        list
    }

    /// Appends a record of the cached topic (see [`cache_topic`](Self::cache_topic)).
    #[inline(always)]
    fn append(&mut self, mut record: Accepted, now: Instant) {
        let count = self.topic_cache.as_ref().map_or(0, |c| c.count);
        if let Some(p) = record.env.partition.filter(|p| !(0..count).contains(p)) {
            let refreshed = record.stale.is_some_and(|g| self.refreshed.is_some_and(|r| r >= g));
            if p < 0 || refreshed {
                let after = if refreshed { " (after a metadata refresh)" } else { "" };
                let topic = &record.env.topic;
                record.env.reply.send(Err(Error::new(
                    ErrorKind::InvalidPartition,
                    format!("topic {topic} has {count} partitions; partition {p} does not exist{after}"),
                )));
                return;
            }
            // The topic may have grown since this snapshot: wait (in order, at most
            // `max.block.ms`) for a refresh, as Kafka's `send` does.
            let stale = *record.stale.get_or_insert(self.snapshot.generation);
            self.refresh = Some(self.refresh.map_or(stale, |r| r.max(stale)));
            self.waiting.entry(record.env.topic.clone()).or_default().push(record);
            return;
        }
        let Accepted { env, timestamp, enqueued_at, .. } = record;
        let partition = match env.partition {
            Some(p) => p,
            None => {
                let available = match self.topic_cache.as_ref().and_then(|c| c.available.clone()) {
                    Some(a) => a,
                    None => {
                        let a = self.available(&env.topic);
                        if let Some(c) = &mut self.topic_cache {
                            c.available = Some(a.clone());
                        }
                        a
                    }
                };
                let info = PartitionInfo { count, available: &available };
                match self.partitioner.place(&env.topic, env.key.as_deref(), env.value.as_deref(), &info) {
                    Ok(p) => p,
                    Err(e) => {
                        env.reply.send(Err(e));
                        return;
                    }
                }
            }
        };
        let Some(cache) = self.topic_cache.as_mut() else { return };
        let queue = match cache.queues[partition as usize] {
            Some(q) => q,
            None => {
                let q = self.acc.queue_id(&TopicPartition { topic: env.topic.clone(), partition });
                cache.queues[partition as usize] = Some(q);
                q
            }
        };
        // Every record the partitioner placed counts towards its partition's batch, keyed or
        // not: `uniform_sticky` places keyed records too, and must move on as their batch fills.
        let placed = env.partition.is_none();
        let size = env.reservation.bytes();
        let headers = if env.headers.is_empty() {
            Vec::new()
        } else {
            env.headers.into_iter().map(|(k, v)| RecordHeader { key: Bytes::from(k), value: v }).collect()
        };
        let record = PendingRecord {
            key: env.key,
            value: env.value,
            headers,
            timestamp,
            token: env.reply,
            reservation: env.reservation,
            enqueued_at,
        };
        if let Err((e, record)) = self.acc.append_to(queue, record, now) {
            record.token.send(Err(Error::with_source(ErrorKind::Encode, "the record cannot be encoded", e)));
            return;
        }
        if placed {
            let filled = &mut cache.filled[partition as usize];
            *filled += size;
            if *filled >= self.config.batch_size {
                *filled = 0;
                self.partitioner.on_new_batch(&env.topic, partition);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Sending
    // ---------------------------------------------------------------------------------------

    fn dispatch(&mut self, now: Instant) {
        if self.bumping || self.bump_epoch {
            return;
        }
        loop {
            let snapshot = &self.snapshot;
            let retry_at = &self.retry_at;
            let drained = self.acc.drain(now, |tp| leader(snapshot, retry_at, now, tp));
            if drained.is_empty() {
                return;
            }
            for (broker, batches) in drained {
                self.send_job(broker, batches);
            }
        }
    }

    fn send_job(&mut self, broker: i32, mut batches: Vec<ProducerBatch<DeliverySender>>) {
        let id = self.next_job;
        self.next_job += 1;
        // The sender encodes the payloads; the outcome brings back the bytes each was sent as.
        let payloads = batches
            .iter_mut()
            .map(|b| (b.tp.clone(), std::mem::replace(&mut b.payload, Payload::Encoded(Bytes::new()))))
            .collect();
        self.jobs.insert(id, Job { broker, generation: self.snapshot.generation, batches });
        let job = ProduceJob { id, batches: payloads };
        let spawn = |this: &Self| {
            sender::spawn(broker, this.cluster.clone(), this.settings, this.offload.clone(), this.events_tx.clone())
        };
        if !self.senders.contains_key(&broker) {
            let sender = spawn(self);
            self.senders.insert(broker, sender);
        }
        let sender = self.senders.get(&broker).expect("inserted above");
        if sender.send(job).is_err() {
            // The sender task is gone (a bug: it never ends while we hold its channel). The jobs
            // it held will never be answered and their bytes went with it: fail their records
            // now rather than wait forever (with idempotence this bumps the epoch, closing the
            // gap in sequence numbers), and start a fresh sender for what comes next.
            tracing::error!(broker, "a sender task stopped; failing the batches it held");
            self.senders.remove(&broker);
            let lost: Vec<u64> = self.jobs.iter().filter(|(_, j)| j.broker == broker).map(|(id, _)| *id).collect();
            for id in lost {
                let Some(job) = self.jobs.remove(&id) else { continue };
                for batch in job.batches {
                    let error = Error::new(
                        ErrorKind::Cluster,
                        format!("{}: the sender task of broker {broker} stopped", batch.tp),
                    );
                    self.fail_batch(batch, error);
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Outcomes
    // ---------------------------------------------------------------------------------------

    fn on_event(&mut self, event: Event) {
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
            Event::ProducerId(result) => {
                self.bumping = false;
                match result.and_then(|(pid, epoch)| {
                    self.acc
                        .reset_sequences(pid, epoch)
                        .map(|()| (pid, epoch))
                        .map_err(|e| Error::with_source(ErrorKind::Encode, "restamping batches failed", e))
                }) {
                    Ok((pid, epoch)) => {
                        tracing::info!(producer_id = pid, epoch, "producer epoch bumped");
                        self.out_of_order.clear();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "epoch bump failed; retrying");
                        self.bump_epoch = true;
                    }
                }
            }
        }
    }

    fn on_produced(&mut self, outcome: JobOutcome) {
        let Some(mut job) = self.jobs.remove(&outcome.id) else { return };
        let now = now();
        for spare in outcome.spares {
            self.acc.recycle_buffer(spare);
        }
        // Each batch gets back the bytes it was sent as (a retry resends them); one that could
        // not be encoded was not sent, and its records fail.
        let mut encoded = outcome.encoded.into_iter();
        let mut sent = Vec::with_capacity(job.batches.len());
        for mut batch in job.batches.drain(..) {
            match encoded.next() {
                Some(Ok(bytes)) => {
                    batch.payload = Payload::Encoded(bytes);
                    sent.push(batch);
                }
                Some(Err(e)) => self.fail_batch(batch, e),
                None => {
                    let e = Error::new(ErrorKind::Encode, format!("{}: the sender lost the batch", batch.tp));
                    self.fail_batch(batch, e);
                }
            }
        }
        job.batches = sent;
        match outcome.result {
            Ok(None) => {
                for batch in job.batches {
                    self.succeed(batch, -1, -1);
                }
            }
            Ok(Some(response)) => {
                for batch in job.batches {
                    match find(&response, &batch.tp) {
                        Some((code, base_offset, append_time)) => {
                            self.on_batch(batch, code, base_offset, append_time, job.generation, now)
                        }
                        None => {
                            tracing::warn!(partition = %batch.tp, broker = job.broker, "no result for a partition; retrying");
                            let cause = Error::new(
                                ErrorKind::Cluster,
                                format!("{}: the broker's response left the partition out", batch.tp),
                            );
                            self.retry(batch, now, cause);
                        }
                    }
                }
            }
            Err(e) => {
                let recovery = classify(&e);
                tracing::debug!(broker = job.broker, error = %e, ?recovery, "produce request failed");
                let error = Error::from(e);
                for batch in job.batches {
                    match recovery {
                        Recovery::Reresolve | Recovery::ReresolveBounded => {
                            self.reresolve(batch, job.generation, now, error.clone())
                        }
                        Recovery::Retry => self.retry(batch, now, error.clone()),
                        Recovery::Fail => self.fail_batch(batch, error.clone()),
                    }
                }
            }
        }
    }

    fn on_batch(
        &mut self,
        batch: ProducerBatch<DeliverySender>,
        code: ErrorCode,
        base_offset: i64,
        append_time: i64,
        routed_with: u64,
        now: Instant,
    ) {
        match code {
            ErrorCode::None => self.succeed(batch, base_offset, append_time),
            // A retry of a batch the broker had already written: it is in the log once.
            ErrorCode::DuplicateSequenceNumber => self.succeed(batch, base_offset, append_time),
            ErrorCode::OutOfOrderSequenceNumber if self.idempotent => {
                let n = self.out_of_order.entry(batch.tp.clone()).or_default();
                *n += 1;
                if *n >= OUT_OF_ORDER_LIMIT {
                    self.bump_epoch = true;
                }
                let cause = broker_error(&batch.tp, code);
                self.retry(batch, now, cause);
            }
            ErrorCode::UnknownProducerId | ErrorCode::InvalidProducerEpoch if self.idempotent => {
                self.bump_epoch = true;
                let cause = broker_error(&batch.tp, code);
                self.retry(batch, now, cause);
            }
            code => match classify_code(code) {
                Recovery::Reresolve | Recovery::ReresolveBounded => {
                    let cause = broker_error(&batch.tp, code);
                    self.reresolve(batch, routed_with, now, cause)
                }
                Recovery::Retry => {
                    let cause = broker_error(&batch.tp, code);
                    self.retry(batch, now, cause)
                }
                Recovery::Fail => {
                    let error = broker_error(&batch.tp, code);
                    self.fail_batch(batch, error)
                }
            },
        }
    }

    fn succeed(&mut self, batch: ProducerBatch<DeliverySender>, base_offset: i64, append_time: i64) {
        self.acc.complete(&batch.tp);
        self.acc.confirm(&batch.tp);
        if self.recovering.remove(&batch.tp) && self.recovering.is_empty() {
            self.resolve_streak = 0;
        }
        self.out_of_order.remove(&batch.tp);
        self.stats.acked(&batch.tp, batch.records.len() as u64);
        let topic = batch.tp.topic.clone();
        let mut records = batch.records;
        for (i, slot) in records.drain(..).enumerate() {
            let RecordSlot { token, timestamp, .. } = slot;
            if token.is_closed() {
                continue; // its DeliveryFuture was dropped: nobody to tell
            }
            token.send(Ok(RecordMetadata {
                topic: topic.clone(),
                partition: batch.tp.partition,
                offset: if base_offset >= 0 { base_offset + i as i64 } else { -1 },
                timestamp: if append_time >= 0 { append_time } else { timestamp },
            }));
        }
        // The batch is done with: its buffers serve the next batches.
        self.acc.recycle_records(records);
        if let Payload::Encoded(bytes) = batch.payload {
            self.acc.recycle(bytes);
        }
    }

    fn fail_records(records: Vec<RecordSlot<DeliverySender>>, error: &Error) {
        for slot in records {
            slot.token.send(Err(error.clone()));
        }
    }

    fn fail_batch(&mut self, batch: ProducerBatch<DeliverySender>, error: Error) {
        self.acc.complete(&batch.tp);
        self.stats.failed(&batch.tp, batch.records.len() as u64);
        if self.idempotent {
            // Its sequence numbers were used: later batches would be out of order.
            self.bump_epoch = true;
        }
        Self::fail_records(batch.records, &error);
    }

    /// Fails `batch` if its oldest record is past the delivery timeout, or if it used up its
    /// `retries` (then with `cause`, the error of its last attempt); otherwise hands it back.
    fn unless_timed_out(
        &mut self,
        batch: ProducerBatch<DeliverySender>,
        now: Instant,
        cause: Error,
    ) -> Option<ProducerBatch<DeliverySender>> {
        if batch.attempts > self.config.retries {
            self.fail_batch(batch, cause);
            return None;
        }
        let timeout = self.config.effective_delivery_timeout();
        if batch.records.first().is_none_or(|r| now < add(r.enqueued_at, timeout)) {
            return Some(batch);
        }
        let error = Error::new(
            ErrorKind::DeliveryTimeout,
            format!("{}: not acknowledged within delivery.timeout.ms", batch.tp),
        );
        self.fail_batch(batch, error);
        None
    }

    fn retry(&mut self, batch: ProducerBatch<DeliverySender>, now: Instant, cause: Error) {
        let Some(batch) = self.unless_timed_out(batch, now, cause) else { return };
        let backoff =
            self.config.retry_backoff.saturating_mul(1 << batch.attempts.min(10)).min(self.config.retry_backoff_max);
        self.retry_at.insert(batch.tp.clone(), add(now, backoff));
        self.acc.requeue(batch);
    }

    /// A rebalancing error on a batch routed with snapshot `routed_with`: stall this partition
    /// only and ask for metadata newer than that snapshot.
    fn reresolve(&mut self, batch: ProducerBatch<DeliverySender>, routed_with: u64, now: Instant, cause: Error) {
        let Some(batch) = self.unless_timed_out(batch, now, cause) else { return };
        let generation = self.snapshot.generation;
        if routed_with < generation {
            // Newer metadata arrived while the batch was in flight (typically the refresh another
            // partition's failure asked for): it is what the resolver would answer, so retry with
            // it, in order. Were it stale too, the retry fails against the current generation and
            // that asks for fresher metadata.
            self.acc.requeue(batch);
            return;
        }
        if self.acc.state(&batch.tp) == krab_buffer::PartitionState::Ready {
            self.stats.stalled(&batch.tp);
        }
        self.acc.stall(&batch.tp, generation);
        self.available.remove(&batch.tp.topic);
        self.drop_topic_cache();
        self.recovering.insert(batch.tp.clone());
        let g = self.stalled.entry(batch.tp.clone()).or_insert(generation);
        *g = (*g).max(generation);
        self.acc.requeue(batch);
    }

    // ---------------------------------------------------------------------------------------
    // Metadata
    // ---------------------------------------------------------------------------------------

    /// Whether the loop needs metadata: records wait for a topic, or partitions are stalled.
    /// Derived from that state alone, so a resolve that fails or answers with nothing new is
    /// simply asked again after backoff.
    fn wants_resolve(&self) -> bool {
        !self.waiting.is_empty() || !self.stalled.is_empty()
    }

    fn maybe_resolve(&mut self, now: Instant) {
        if self.resolving || !self.wants_resolve() || self.resolve_after.is_some_and(|t| now < t) {
            return;
        }
        self.resolving = true;
        let mut topics: BTreeSet<String> = self.waiting.keys().map(|t| t.to_string()).collect();
        topics.extend(self.stalled.keys().map(|tp| tp.topic.to_string()));
        let refreshed = self.refreshed;
        self.refresh_asked = self.refresh.filter(|g| refreshed.is_none_or(|r| r < *g));
        let request = ResolveRequest {
            topics: topics.into_iter().collect(),
            stale_generation: self.stalled.values().copied().chain(self.refresh_asked).max(),
        };
        let resolver = self.resolver.clone();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let result = resolver.oneshot(request).await;
            let _ = events.send(Event::Resolved(result));
        });
    }

    fn on_snapshot(&mut self, snapshot: Arc<ClusterSnapshot>) {
        if snapshot.generation <= self.snapshot.generation {
            return;
        }
        self.snapshot = snapshot;
        self.available.clear();
        self.drop_topic_cache();
        for tp in self.acc.unstall(self.snapshot.generation) {
            tracing::debug!(partition = %tp, generation = self.snapshot.generation, "partition resumes");
            self.stalled.remove(&tp);
        }
        self.stall_leaderless();
        self.drain_waiting();
    }

    /// Appends the waiting records of every topic the snapshot makes usable, and fails those of
    /// topics it refuses for good.
    fn drain_waiting(&mut self) {
        let topics: Vec<Arc<str>> = self.waiting.keys().cloned().collect();
        let now = now();
        // The earliest arrival among the records appended here.
        let mut appended: Option<u64> = None;
        for topic in topics {
            let state = self.snapshot.topic(&topic).map(|t| (t.error, t.partitions.len()));
            match state {
                Some((error, n)) if error.is_ok() && n > 0 && self.cache_topic(&topic) => {
                    for record in self.waiting.remove(&topic).unwrap_or_default() {
                        appended = Some(appended.map_or(record.arrival, |a| a.min(record.arrival)));
                        match self.waiting.get_mut(&topic) {
                            // A record before it went back to waiting: keep the order.
                            Some(behind) => behind.push(record),
                            None => self.append(record, now),
                        }
                    }
                }
                Some((error, _)) if !error.is_ok() && !error.is_retriable() => {
                    let e = Error::new(ErrorKind::Broker(error), format!("topic {topic}: {error}"));
                    for record in self.waiting.remove(&topic).unwrap_or_default() {
                        record.env.reply.send(Err(e.clone()));
                    }
                }
                // Unknown, or a retriable topic error (LEADER_NOT_AVAILABLE while Kafka creates
                // it): the records keep waiting, and asking, until `max.block.ms` (see `expire`).
                _ => {}
            }
        }
        // Records sent before a pending flush just got their batches: that flush covers those
        // batches too (and whatever else is buffered now, a bounded set), not later ones.
        if let Some(first) = appended {
            if self.flushes.iter().any(|f| f.arrival_mark > first) {
                self.acc.seal_all();
                let mark = self.acc.next_batch_id();
                for f in self.flushes.iter_mut().filter(|f| f.arrival_mark > first) {
                    f.batch_mark = f.batch_mark.max(mark);
                }
            }
        }
    }

    /// Stalls every partition holding unsent batches that the current snapshot gives no leader
    /// (a leader election in progress, an RF=1 broker restarting): stalled, they keep the loop
    /// asking for newer metadata with backoff until a leader appears, and then drain to it.
    fn stall_leaderless(&mut self) {
        let generation = self.snapshot.generation;
        let snapshot = &self.snapshot;
        let acc = &self.acc;
        let leaderless: Vec<TopicPartition> = acc
            .partitions_with_data()
            .filter(|tp| acc.state(tp) == krab_buffer::PartitionState::Ready)
            .filter(|tp| snapshot.topic(&tp.topic).is_some())
            .filter(|tp| snapshot.partition(&tp.topic, tp.partition).is_none_or(|p| p.leader.is_none()))
            .cloned()
            .collect();
        for tp in leaderless {
            tracing::debug!(partition = %tp, generation, "no leader; polling metadata until one appears");
            self.stats.stalled(&tp);
            self.acc.stall(&tp, generation);
            self.available.remove(&tp.topic);
            self.drop_topic_cache();
            self.recovering.insert(tp.clone());
            self.stalled.insert(tp, generation);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Idempotence
    // ---------------------------------------------------------------------------------------

    /// Bumps the producer epoch once nothing is in flight (KIP-360): sequence numbers restart at
    /// 0 for every partition, so a gap left by a failed batch no longer blocks the ones after it.
    fn maybe_bump_epoch(&mut self) {
        if !self.bump_epoch || self.bumping || !self.jobs.is_empty() {
            return;
        }
        self.bump_epoch = false;
        self.bumping = true;
        let cluster = self.cluster.clone();
        let current = self.acc.producer();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let result = match init_producer_id(&cluster, current).await {
                Ok(Some(id)) => Ok(id),
                Ok(None) => Err(Error::new(ErrorKind::Cluster, "InitProducerId is no longer supported")),
                Err(e) => Err(e),
            };
            let _ = events.send(Event::ProducerId(result));
        });
    }

    // ---------------------------------------------------------------------------------------
    // Expiry, flush, close
    // ---------------------------------------------------------------------------------------

    fn expire(&mut self, now: Instant) {
        // Records appended since the last snapshot to a partition it gives no leader.
        self.stall_leaderless();
        let timeout = self.config.effective_delivery_timeout();
        let error = || Error::new(ErrorKind::DeliveryTimeout, "not delivered within delivery.timeout.ms");
        for FailedBatch { tp, records, was_sent, .. } in self.acc.expire(now) {
            self.stats.failed(&tp, records.len() as u64);
            if was_sent && self.idempotent {
                self.bump_epoch = true;
            }
            Self::fail_records(records, &error());
        }
        // A record waits for its topic's metadata at most `max.block.ms` (and never past its
        // delivery timeout), as Kafka's `send` does.
        let block = self.config.max_block.min(timeout);
        for (topic, envs) in &mut self.waiting {
            if envs.first().is_none_or(|e| now < add(e.enqueued_at, block)) {
                continue; // oldest first: nothing has expired
            }
            let (expired, keep): (Vec<_>, Vec<_>) = envs.drain(..).partition(|e| now >= add(e.enqueued_at, block));
            *envs = keep;
            let e = match self.snapshot.topic(topic).map(|t| t.error) {
                None | Some(ErrorCode::UnknownTopicOrPartition) => Error::new(
                    ErrorKind::UnknownTopic,
                    format!("topic {topic} not present in metadata after {} ms (max.block.ms)", block.as_millis()),
                ),
                // Usable: the records wait for a refresh naming their partition (or behind one).
                Some(code) if code.is_ok() => Error::new(
                    ErrorKind::DeliveryTimeout,
                    format!(
                        "topic {topic}: no metadata naming the partition after {} ms (max.block.ms)",
                        block.as_millis()
                    ),
                ),
                Some(code) => Error::new(
                    ErrorKind::DeliveryTimeout,
                    format!("topic {topic} not usable after {} ms (max.block.ms): {code}", block.as_millis()),
                ),
            };
            for record in expired {
                record.env.reply.send(Err(e.clone()));
            }
        }
        self.waiting.retain(|_, v| !v.is_empty());
    }

    fn oldest_outstanding(&self) -> Option<u64> {
        let in_flight = self.jobs.values().flat_map(|j| j.batches.iter().map(|b| b.id)).min();
        match (self.acc.oldest_batch_id(), in_flight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let oldest = self.oldest_outstanding();
        // Each topic's waiting records are in arrival order.
        let oldest_waiting = self.waiting.values().filter_map(|records| records.first()).map(|r| r.arrival).min();
        let (done, pending): (Vec<_>, Vec<_>) = self.flushes.drain(..).partition(|f| {
            oldest.is_none_or(|o| o >= f.batch_mark) && oldest_waiting.is_none_or(|w| w >= f.arrival_mark)
        });
        self.flushes = pending;
        for flush in done {
            let _ = flush.done.send(());
        }
    }

    /// Whether the loop should stop: closing, and everything delivered or the deadline passed.
    fn check_close(&mut self, now: Instant) -> bool {
        let Some((deadline, _)) = &self.closing else { return false };
        let idle = self.acc.is_idle() && self.jobs.is_empty() && self.waiting.is_empty();
        if !idle && now < *deadline {
            return false;
        }
        let error = Error::new(ErrorKind::Closed, "the producer was closed before the record was delivered");
        let mut abandoned = 0;
        for b in self.acc.take_all() {
            abandoned += b.records.len();
            Self::fail_records(b.records, &error);
        }
        // Batches in flight may still be written by their broker; their records fail all the same.
        for (_, job) in self.jobs.drain() {
            for b in job.batches {
                abandoned += b.records.len();
                Self::fail_records(b.records, &error);
            }
        }
        for (_, records) in self.waiting.drain() {
            abandoned += records.len();
            for record in records {
                record.env.reply.send(Err(error.clone()));
            }
        }
        for PendingFlush { done: tx, .. } in self.flushes.drain(..) {
            let _ = tx.send(());
        }
        self.memory.close();
        if let Some((_, done)) = self.closing.take() {
            let _ = done.send(abandoned);
        }
        true
    }
}

/// `at + d`, saturating far in the future: `Duration::MAX` means "never", not a panic.
pub(crate) fn add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 86_400))
}

fn broker_error(tp: &TopicPartition, code: ErrorCode) -> Error {
    Error::new(ErrorKind::Broker(code), format!("{tp} refused by the broker: {code}"))
}

/// The leader to send a partition's batches to, unless it is backing off after an error.
fn leader(
    snapshot: &ClusterSnapshot,
    retry_at: &HashMap<TopicPartition, Instant>,
    now: Instant,
    tp: &TopicPartition,
) -> Option<i32> {
    if retry_at.get(tp).is_some_and(|t| now < *t) {
        return None;
    }
    snapshot.partition(&tp.topic, tp.partition)?.leader
}

fn find(response: &ProduceResponse, tp: &TopicPartition) -> Option<(ErrorCode, i64, i64)> {
    response
        .responses
        .iter()
        .filter(|t| *t.name == *tp.topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == tp.partition)
        .map(|p| (ErrorCode::from_code(p.error_code), p.base_offset, p.log_append_time_ms))
}

/// The time: tokio's clock, so that tests with paused time drive every deadline of the loop.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The producer's first id. Right after a cluster starts, the transaction coordinator is still
/// being created or loaded (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, ...): a
/// retriable answer is asked again after `retry.backoff.ms`, doubling up to
/// `retry.backoff.max.ms`, for at most the delivery timeout; anything else fails at once.
async fn first_producer_id(cluster: &Cluster, config: &ProducerConfig) -> Result<Option<(i64, i16)>, Error> {
    let give_up = tokio::time::Instant::now() + config.effective_delivery_timeout().min(Duration::from_secs(600));
    let mut backoff = config.retry_backoff;
    loop {
        match init_producer_id(cluster, None).await {
            Err(e) if e.is_retriable() && tokio::time::Instant::now() + backoff < give_up => {
                tracing::debug!(error = %e, ?backoff, "InitProducerId failed; asking again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.retry_backoff_max.max(config.retry_backoff));
            }
            other => return other,
        }
    }
}

/// Gets a producer id (and epoch) for idempotence from any broker; with `current`, bumps that
/// producer's epoch (KIP-360, InitProducerId v3+). `Ok(None)`: the cluster does not support it.
pub(crate) async fn init_producer_id(
    cluster: &Cluster,
    current: Option<(i64, i16)>,
) -> Result<Option<(i64, i16)>, Error> {
    let broker = cluster.any_broker().await?;
    let versions = broker.versions();
    if versions.broker_range(krab_protocol::ApiKey::InitProducerId).is_none()
        || versions.version_for(krab_protocol::ApiKey::Produce).is_ok_and(|v| v < 3)
    {
        return Ok(None);
    }
    let response = broker
        .call(|version| {
            let (producer_id, producer_epoch) = match current {
                Some(c) if version >= 3 => c,
                _ => (-1, -1),
            };
            InitProducerIdRequest {
                transactional_id: None,
                transaction_timeout_ms: i32::MAX,
                producer_id,
                producer_epoch,
                ..Default::default()
            }
        })
        .await?;
    let code = ErrorCode::from_code(response.error_code);
    if !code.is_ok() {
        return Err(Error::new(ErrorKind::Broker(code), format!("InitProducerId failed: {code}")));
    }
    Ok(Some((response.producer_id, response.producer_epoch)))
}
