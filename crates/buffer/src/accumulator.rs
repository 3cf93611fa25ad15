//! The record accumulator: per-partition queues of batches, filled record by record.
//!
//! Lifecycle of a batch: **open** (records appended into a `RecordBatchEncoder`) → **sealed**
//! (full, lingered long enough, or flushed; waiting its turn) → **drained** (handed to a sender,
//! with producer id/epoch/sequence stamped on first send, as a [`Payload::Pending`] the caller
//! encodes wherever it likes: compression is the costly part of a batch, and it need not run
//! where the buffer lives) → completed by the caller, or **requeued** at its place in the
//! partition's order for a retry, with the bytes it was sent as.
//!
//! Per-partition state: *ready*, or *stalled* until a metadata snapshot newer than a given
//! generation arrives (its leader moved). A stalled partition keeps accepting records but drains
//! nothing; every other partition is unaffected.
//!
//! Time is passed in by the caller; this module never reads a clock and does no I/O.

use crate::memory::Reservation;
use bytes::{Bytes, BytesMut};
use krab_protocol::records::{Compression, RecordBatchEncoder, RecordHeader, RecordsError, restamp_producer};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Settings of the accumulator.
#[derive(Debug, Clone)]
pub struct AccumulatorConfig {
    /// A batch is sealed once its records take this many bytes (`batch.size`).
    pub batch_size: usize,
    /// How long an open batch may wait for more records (`linger.ms`).
    pub linger: Duration,
    /// The largest Produce request; a drain never groups more than this per broker
    /// (`max.request.size`).
    pub max_request_size: usize,
    /// The codec batches are compressed with (`compression.type`).
    pub compression: Compression,
    /// The codec's level (`compression.level`, KIP-390); `None`: the codec's default.
    pub compression_level: Option<i32>,
    /// Batches of one partition in flight at once (`max.in.flight.requests.per.connection`).
    pub max_in_flight_per_partition: usize,
    /// A record not acknowledged this long after it was sent fails (`delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// The most bytes of buffers of finished batches kept for the next batches to write into, so
    /// that a busy producer does not free memory only to fault it in again. They are idle memory
    /// on top of what `buffer.memory` bounds (the producer keeps a quarter of it).
    pub spare_bytes: usize,
}

impl Default for AccumulatorConfig {
    fn default() -> Self {
        Self {
            batch_size: 16 * 1024,
            linger: Duration::from_millis(5),
            max_request_size: 1024 * 1024,
            compression: Compression::None,
            compression_level: None,
            max_in_flight_per_partition: 5,
            delivery_timeout: Duration::from_secs(120),
            spare_bytes: 4 << 20,
        }
    }
}

/// A record handed to the accumulator.
#[derive(Debug)]
pub struct PendingRecord<T> {
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// The headers.
    pub headers: Vec<RecordHeader>,
    /// The timestamp (ms since the epoch).
    pub timestamp: i64,
    /// What the caller needs to complete the record (e.g. the sender of its delivery result).
    pub token: T,
    /// Its share of `buffer.memory`, released when the record leaves the producer.
    pub reservation: Reservation,
    /// When it was sent, for the delivery timeout.
    pub enqueued_at: Instant,
}

/// A record inside a batch: what is needed to complete it. (Its share of `buffer.memory` is
/// merged into its batch's [`Reservation`].)
#[derive(Debug)]
pub struct RecordSlot<T> {
    /// The caller's token.
    pub token: T,
    /// The record's timestamp.
    pub timestamp: i64,
    /// When it was sent.
    pub enqueued_at: Instant,
}

enum Body {
    Open(RecordBatchEncoder),
    /// Drained at least once: numbered, and encoded unless the caller handed it back unsent.
    Drained(Payload),
}

/// A drained batch's bytes.
#[derive(Debug)]
pub enum Payload {
    /// Numbered but not encoded yet: [`PendingBatch::encode`] compresses it and writes its header
    /// and CRC.
    Pending(PendingBatch),
    /// An encoded RecordBatch v2. A retry resends these very bytes.
    Encoded(Bytes),
}

impl Payload {
    /// The most bytes the encoded batch takes (exact once encoded, a bound before).
    pub fn max_len(&self) -> usize {
        match self {
            Payload::Pending(p) => p.max_len(),
            Payload::Encoded(b) => b.len(),
        }
    }

    /// The encoded bytes, encoding first if needed.
    pub fn into_bytes(self) -> Result<Bytes, RecordsError> {
        match self {
            Payload::Pending(p) => p.encode().map(|(bytes, _)| bytes),
            Payload::Encoded(b) => Ok(b),
        }
    }
}

/// A drained batch whose records are written and numbered, with compression, header and CRC
/// still to do: pure CPU work on the batch alone, which can run on any thread.
#[derive(Debug)]
pub struct PendingBatch {
    encoder: RecordBatchEncoder,
    /// A recycled buffer for the compressed bytes.
    spare: Option<BytesMut>,
}

impl PendingBatch {
    /// The codec it is compressed with.
    pub fn compression(&self) -> Compression {
        self.encoder.compression()
    }

    /// Its size before compression, header included.
    pub fn uncompressed_size(&self) -> usize {
        self.encoder.uncompressed_size()
    }

    /// The most bytes [`encode`](Self::encode) can return.
    pub fn max_len(&self) -> usize {
        self.encoder.max_encoded_len()
    }

    /// Encodes the batch. Also returns a buffer it no longer needs, for
    /// [`Accumulator::recycle_buffer`].
    pub fn encode(self) -> Result<(Bytes, Option<BytesMut>), RecordsError> {
        self.encoder.finish_reusing(self.spare)
    }
}

struct Sealed<T> {
    id: u64,
    body: Body,
    records: Vec<RecordSlot<T>>,
    /// The records' reservations, merged: released together when the batch is dropped.
    reservation: Reservation,
    created_at: Instant,
    attempts: u32,
    base_sequence: i32,
    size: usize,
}

/// A batch drained for sending: its bytes (to encode, or encoded) and the records it completes.
#[derive(Debug)]
pub struct ProducerBatch<T> {
    /// The partition.
    pub tp: TopicPartition,
    /// Unique and increasing across the accumulator: the order batches were created in.
    pub id: u64,
    /// The RecordBatch v2, encoded or still to encode.
    pub payload: Payload,
    /// The records, in offset order.
    pub records: Vec<RecordSlot<T>>,
    /// When the batch was opened.
    pub created_at: Instant,
    /// How many times it was sent before this drain (0 on the first send).
    pub attempts: u32,
    /// Its first record's sequence number (-1 without idempotence).
    pub base_sequence: i32,
    /// Its records' share of `buffer.memory`, released when the batch is dropped.
    pub reservation: Reservation,
}

/// Records the accumulator gave up on (expired, or left over at close), to be failed.
#[derive(Debug)]
pub struct FailedBatch<T> {
    /// The partition.
    pub tp: TopicPartition,
    /// The batch id.
    pub id: u64,
    /// The records.
    pub records: Vec<RecordSlot<T>>,
    /// Whether it had been sent (with a sequence number) before: dropping it leaves a gap in the
    /// partition's sequence numbers, which only an epoch bump can close.
    pub was_sent: bool,
    /// Its first record's sequence number (-1 if it was never numbered).
    pub base_sequence: i32,
    /// Its records' share of `buffer.memory`, released when this is dropped.
    pub reservation: Reservation,
}

/// A partition's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionState {
    /// Batches drain normally.
    Ready,
    /// Its leader moved: nothing drains until a snapshot newer than `generation` arrives.
    Stalled {
        /// The generation of the snapshot found out of date.
        generation: u64,
    },
}

struct Queue<T> {
    tp: TopicPartition,
    open: Option<(Sealed<T>, usize)>,
    sealed: VecDeque<Sealed<T>>,
    in_flight: usize,
    state: PartitionState,
    /// The producer id and epoch this partition's batches are numbered under (idempotence):
    /// each partition moves to a new epoch on its own (see [`Accumulator::restamp_partition`]).
    stamp: Option<(i64, i16)>,
    next_sequence: i32,
    /// A retried batch waits at the head until every batch in flight has come back, so that
    /// retries go out in their original order.
    retry_pending: bool,
    /// The broker acknowledged a batch of this partition under the current producer id, so it
    /// holds sequence state for it. Until then an idempotent partition sends one batch at a
    /// time: Kafka accepts any first sequence from a producer it has no state for, so a second
    /// batch overtaking the first (whose request failed before reaching the broker) would be
    /// written ahead of it, and the first one after it.
    confirmed: bool,
}

impl<T> Queue<T> {
    fn new(tp: TopicPartition, stamp: Option<(i64, i16)>) -> Self {
        Self {
            tp,
            open: None,
            sealed: VecDeque::new(),
            in_flight: 0,
            state: PartitionState::Ready,
            stamp,
            next_sequence: 0,
            confirmed: false,
            retry_pending: false,
        }
    }
}

/// A partition's queue in one [`Accumulator`], from [`Accumulator::queue_id`]: appending by id
/// skips the partition lookup (a hash of the topic name) that [`Accumulator::append`] does.
/// Valid for the accumulator that handed it out, for as long as that accumulator lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueId(usize);

/// The record accumulator. `T` is the caller's per-record completion token.
pub struct Accumulator<T> {
    config: AccumulatorConfig,
    /// Every partition's queue, in the order partitions were first seen (the drain order).
    queues: Vec<Queue<T>>,
    index: HashMap<TopicPartition, usize>,
    drain_from: usize,
    next_id: u64,
    producer: Option<(i64, i16)>,
    records: usize,
    /// Buffers of batches that are done with, for the next batches to write into (see
    /// [`Accumulator::recycle`]): no allocation, page fault or zeroing per batch.
    spare_buffers: Vec<BytesMut>,
    /// Their capacities, summed.
    spare_bytes: usize,
    /// Emptied record vectors of batches that are done with.
    spare_records: Vec<Vec<RecordSlot<T>>>,
}

/// Spare record vectors kept for reuse, at most (and at least this many buffers, whatever
/// `spare_bytes` says).
const SPARES: usize = 16;

impl<T> std::fmt::Debug for Accumulator<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accumulator")
            .field("partitions", &self.queues.len())
            .field("records", &self.records)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

fn drainable<T>(q: &Queue<T>, max_in_flight: usize, idempotent: bool) -> bool {
    let limit = if idempotent && !q.confirmed { 1 } else { max_in_flight.max(1) };
    q.state == PartitionState::Ready && q.in_flight < limit && !(q.retry_pending && q.in_flight > 0)
}

/// A spare buffer, if one is kept (`held`: the spares' capacities, summed).
fn take_spare(spares: &mut Vec<BytesMut>, held: &mut usize) -> Option<BytesMut> {
    let buf = spares.pop()?;
    *held -= buf.capacity();
    Some(buf)
}

fn sequence_after(seq: i32, count: usize) -> i32 {
    // Sequence numbers wrap from i32::MAX to 0.
    ((i64::from(seq) + count as i64) % (i64::from(i32::MAX) + 1)) as i32
}

impl<T> Accumulator<T> {
    /// An empty accumulator.
    pub fn new(config: AccumulatorConfig) -> Self {
        Self {
            config,
            queues: Vec::new(),
            index: HashMap::new(),
            drain_from: 0,
            next_id: 0,
            producer: None,
            records: 0,
            spare_buffers: Vec::new(),
            spare_bytes: 0,
            spare_records: Vec::new(),
        }
    }

    /// Takes back the bytes of a batch that is done with (acknowledged, or failed for good), to
    /// be the buffer of a later batch. Kept only if `payload` is their last handle, is not
    /// oversized, and fits within `spare_bytes`.
    pub fn recycle(&mut self, payload: Bytes) {
        if let Ok(buf) = payload.try_into_mut() {
            self.recycle_buffer(buf);
        }
    }

    /// Takes back a buffer [`PendingBatch::encode`] no longer needed, for a later batch (under
    /// the same conditions as [`recycle`](Self::recycle)).
    pub fn recycle_buffer(&mut self, buf: BytesMut) {
        let capacity = buf.capacity();
        let room = self.spare_bytes + capacity <= self.config.spare_bytes || self.spare_buffers.len() < SPARES;
        if capacity <= self.max_spare_capacity() && room {
            self.spare_bytes += capacity;
            self.spare_buffers.push(buf);
        }
    }

    /// Buffers larger than this (a batch that took one oversized record) are not kept.
    fn max_spare_capacity(&self) -> usize {
        2 * self.config.batch_size.min(1 << 20) + 4096
    }

    /// Takes back the record vector of a batch that is done with, emptied, for a later batch.
    pub fn recycle_records(&mut self, mut records: Vec<RecordSlot<T>>) {
        let most = (self.config.spare_bytes / self.config.batch_size.max(1)).clamp(SPARES, 1024);
        if self.spare_records.len() < most && records.capacity() > 0 {
            records.clear();
            self.spare_records.push(records);
        }
    }

    /// The settings.
    pub fn config(&self) -> &AccumulatorConfig {
        &self.config
    }

    /// Turns on idempotence: batches are stamped with this producer id and epoch and numbered
    /// per partition from their first send on. Partitions seen from now on start with it;
    /// partitions already seen keep their own stamp (see
    /// [`restamp_partition`](Self::restamp_partition)), unless they had none.
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16) {
        self.producer = Some((producer_id, producer_epoch));
        for q in &mut self.queues {
            q.stamp.get_or_insert((producer_id, producer_epoch));
        }
    }

    /// The producer id and epoch new partitions are stamped with, if idempotent.
    pub fn producer(&self) -> Option<(i64, i16)> {
        self.producer
    }

    /// The producer id and epoch `tp`'s batches are numbered under, if idempotent.
    pub fn stamp(&self, tp: &TopicPartition) -> Option<(i64, i16)> {
        self.existing(tp).map_or(self.producer, |q| q.stamp)
    }

    /// Batches of `tp` in flight.
    pub fn in_flight_of(&self, tp: &TopicPartition) -> usize {
        self.existing(tp).map_or(0, |q| q.in_flight)
    }

    /// Moves one partition to a new producer id or epoch: its sequence numbers start again from
    /// 0, and its queued batches that were already numbered are numbered again, in order. Call
    /// only with none of its batches in flight, and only when none of its queued batches may
    /// have been written by the broker (a renumbered batch would be written twice).
    pub fn restamp_partition(&mut self, tp: &TopicPartition, stamp: (i64, i16)) -> Result<(), RecordsError> {
        let q = self.queue(tp);
        q.stamp = Some(stamp);
        Self::renumber(q)
    }

    fn renumber(q: &mut Queue<T>) -> Result<(), RecordsError> {
        let Some((producer_id, producer_epoch)) = q.stamp else { return Ok(()) };
        q.next_sequence = 0;
        // The broker holds no sequence state for the new epoch yet: one batch at a time until
        // it has acknowledged one.
        q.confirmed = false;
        for b in q.sealed.iter_mut() {
            match &mut b.body {
                Body::Open(_) => {}
                Body::Drained(Payload::Encoded(bytes)) => {
                    let mut owned = bytes.to_vec();
                    b.base_sequence = q.next_sequence;
                    restamp_producer(&mut owned, producer_id, producer_epoch, b.base_sequence)?;
                    q.next_sequence = sequence_after(q.next_sequence, b.records.len());
                    b.body = Body::Drained(Payload::Encoded(Bytes::from(owned)));
                }
                Body::Drained(Payload::Pending(pending)) => {
                    b.base_sequence = q.next_sequence;
                    pending.encoder.set_producer(producer_id, producer_epoch, b.base_sequence);
                    q.next_sequence = sequence_after(q.next_sequence, b.records.len());
                }
            }
        }
        Ok(())
    }

    /// The id of `tp`'s queue (created empty if the partition is new), for
    /// [`append_to`](Self::append_to).
    pub fn queue_id(&mut self, tp: &TopicPartition) -> QueueId {
        if let Some(&i) = self.index.get(tp) {
            return QueueId(i);
        }
        let i = self.queues.len();
        self.queues.push(Queue::new(tp.clone(), self.producer));
        self.index.insert(tp.clone(), i);
        QueueId(i)
    }

    /// The partition of a queue id.
    pub fn queue_partition(&self, id: QueueId) -> &TopicPartition {
        &self.queues[id.0].tp
    }

    fn queue(&mut self, tp: &TopicPartition) -> &mut Queue<T> {
        let QueueId(i) = self.queue_id(tp);
        &mut self.queues[i]
    }

    fn existing(&self, tp: &TopicPartition) -> Option<&Queue<T>> {
        self.index.get(tp).map(|&i| &self.queues[i])
    }

    /// Appends a record to its partition's open batch, sealing the batch first if the record
    /// would overflow it and sealing it after if it is now full. On error (the record cannot be
    /// encoded) the record is handed back.
    // The error hands the record itself back, so that the caller can fail its token.
    #[allow(clippy::result_large_err)]
    pub fn append(
        &mut self,
        tp: &TopicPartition,
        record: PendingRecord<T>,
        now: Instant,
    ) -> Result<(), (RecordsError, PendingRecord<T>)> {
        let id = self.queue_id(tp);
        self.append_to(id, record, now)
    }

    /// [`append`](Self::append) to the queue `id` (from [`queue_id`](Self::queue_id)).
    // The error hands the record itself back, so that the caller can fail its token.
    #[allow(clippy::result_large_err)]
    #[inline]
    pub fn append_to(
        &mut self,
        id: QueueId,
        record: PendingRecord<T>,
        now: Instant,
    ) -> Result<(), (RecordsError, PendingRecord<T>)> {
        let batch_size = self.config.batch_size;
        let compression = self.config.compression;
        let compression_level = self.config.compression_level;
        let mut next_id = self.next_id;
        let q = &mut self.queues[id.0];
        if let Some((open, size)) = &q.open {
            let Body::Open(enc) = &open.body else { unreachable!("open batches hold an encoder") };
            let add =
                enc.record_size(record.timestamp, record.key.as_deref(), record.value.as_deref(), &record.headers);
            if *size + add > batch_size && !open.records.is_empty() {
                Self::seal(q);
            }
        }
        if q.open.is_none() {
            let buf = take_spare(&mut self.spare_buffers, &mut self.spare_bytes).unwrap_or_default();
            let mut enc = RecordBatchEncoder::with_buffer(compression, buf, batch_size.min(1 << 20));
            if let Some(level) = compression_level {
                enc = enc.compression_level(level);
            }
            // Room for a batch of records like this one, so that the vector rarely regrows.
            let add =
                enc.record_size(record.timestamp, record.key.as_deref(), record.value.as_deref(), &record.headers);
            let expect = (batch_size / add.max(1)).clamp(1, 4096);
            let mut records = self.spare_records.pop().unwrap_or_default();
            records.reserve(expect);
            let sealed = Sealed {
                id: next_id,
                body: Body::Open(enc),
                records,
                reservation: Reservation::none(),
                created_at: now,
                attempts: 0,
                base_sequence: -1,
                size: 0,
            };
            next_id += 1;
            q.open = Some((sealed, 0));
        }
        let (open, size) = q.open.as_mut().expect("opened above");
        let Body::Open(enc) = &mut open.body else { unreachable!("open batches hold an encoder") };
        if let Err(e) = enc.append(record.timestamp, record.key.as_deref(), record.value.as_deref(), &record.headers) {
            // Nothing was written for this record. Drop a batch opened just for it: an empty
            // open batch would hold an id that `next_id` never moved past, and linger for nothing.
            if open.records.is_empty() {
                q.open = None;
            }
            return Err((e, record));
        }
        *size = enc.uncompressed_size();
        open.size = *size;
        open.records.push(RecordSlot {
            token: record.token,
            timestamp: record.timestamp,
            enqueued_at: record.enqueued_at,
        });
        open.reservation.merge(record.reservation);
        if *size >= batch_size {
            Self::seal(q);
        }
        self.next_id = next_id;
        self.records += 1;
        Ok(())
    }

    fn seal(q: &mut Queue<T>) {
        if let Some((mut batch, _)) = q.open.take() {
            if batch.records.is_empty() {
                return;
            }
            if let Body::Open(enc) = &batch.body {
                // What it can take in a request, whatever it compresses to.
                batch.size = enc.max_encoded_len();
            }
            q.sealed.push_back(batch);
        }
    }

    /// Seals every open batch now (`flush()`): everything buffered becomes ready to drain.
    pub fn seal_all(&mut self) {
        for q in &mut self.queues {
            Self::seal(q);
        }
    }

    /// The id the next batch will get: every batch created before this call has a smaller id.
    pub fn next_batch_id(&self) -> u64 {
        self.next_id
    }

    /// The smallest id of any batch still in the accumulator (open or sealed; not counting
    /// batches in flight, which the caller holds).
    pub fn oldest_batch_id(&self) -> Option<u64> {
        self.queues.iter().flat_map(|q| q.sealed.iter().map(|b| b.id).chain(q.open.as_ref().map(|(b, _)| b.id))).min()
    }

    fn drainable(&self, q: &Queue<T>) -> bool {
        drainable(q, self.config.max_in_flight_per_partition, self.producer.is_some())
    }

    /// Takes, for each broker, at most one ready batch per partition and no more than
    /// `max.request.size` bytes in all (counting a batch not yet encoded at the most it can
    /// compress to): the contents of one Produce request per broker. `leader_of` maps a
    /// partition to its leader's broker id (`None`: unknown, skip it). Call again to pipeline
    /// more batches of the same partitions.
    ///
    /// A batch drained for the first time is numbered (with idempotence) and comes out as a
    /// [`Payload::Pending`]; the caller encodes it and, for a retry, requeues it encoded.
    pub fn drain(
        &mut self,
        now: Instant,
        mut leader_of: impl FnMut(&TopicPartition) -> Option<i32>,
    ) -> BTreeMap<i32, Vec<ProducerBatch<T>>> {
        let mut out: BTreeMap<i32, (usize, Vec<ProducerBatch<T>>)> = BTreeMap::new();
        let n = self.queues.len();
        let linger = self.config.linger;
        let max_request = self.config.max_request_size;
        let max_in_flight = self.config.max_in_flight_per_partition;
        let idempotent = self.producer.is_some();
        let enc_compressed = self.config.compression != Compression::None;
        for k in 0..n {
            let q = &mut self.queues[(self.drain_from + k) % n];
            if !drainable(q, max_in_flight, idempotent) {
                continue;
            }
            // A linger too large for `Instant` never runs out.
            let lingered = |b: &Sealed<T>| b.created_at.checked_add(linger).is_some_and(|t| now >= t);
            if q.sealed.is_empty() && q.open.as_ref().is_some_and(|(b, _)| lingered(b)) {
                Self::seal(q);
            }
            let Some(front) = q.sealed.front() else { continue };
            let Some(leader) = leader_of(&q.tp) else { continue };
            let (bytes, batches) = out.entry(leader).or_default();
            if !batches.is_empty() && *bytes + front.size > max_request {
                continue;
            }
            let mut batch = q.sealed.pop_front().expect("front exists");
            let payload = match std::mem::replace(&mut batch.body, Body::Drained(Payload::Encoded(Bytes::new()))) {
                Body::Drained(payload) => payload,
                Body::Open(enc) => {
                    let enc = match q.stamp {
                        Some((pid, epoch)) => {
                            batch.base_sequence = q.next_sequence;
                            q.next_sequence = sequence_after(q.next_sequence, batch.records.len());
                            enc.producer(pid, epoch, batch.base_sequence)
                        }
                        None => enc,
                    };
                    let spare =
                        if enc_compressed { take_spare(&mut self.spare_buffers, &mut self.spare_bytes) } else { None };
                    Payload::Pending(PendingBatch { encoder: enc, spare })
                }
            };
            if batch.attempts > 0 && q.sealed.front().is_none_or(|b| b.attempts == 0) {
                q.retry_pending = false;
            }
            q.in_flight += 1;
            *bytes += batch.size;
            self.records -= batch.records.len();
            batches.push(ProducerBatch {
                tp: q.tp.clone(),
                id: batch.id,
                payload,
                records: batch.records,
                created_at: batch.created_at,
                attempts: batch.attempts,
                base_sequence: batch.base_sequence,
                reservation: batch.reservation,
            });
        }
        if n > 0 {
            self.drain_from = (self.drain_from + 1) % n;
        }
        out.into_iter().map(|(b, (_, v))| (b, v)).collect()
    }

    /// When the next drain can make progress without new records: now if a batch is ready to
    /// go, else when the oldest open batch's linger runs out; `None` if nothing is waiting.
    /// Partitions whose leader is unknown (`leader_of` is `None`) are not counted.
    pub fn next_ready_at(
        &self,
        now: Instant,
        mut leader_of: impl FnMut(&TopicPartition) -> Option<i32>,
    ) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        for q in &self.queues {
            if !self.drainable(q) || leader_of(&q.tp).is_none() {
                continue;
            }
            let t = if !q.sealed.is_empty() {
                now
            } else if let Some(t) = q.open.as_ref().and_then(|(b, _)| b.created_at.checked_add(self.config.linger)) {
                t
            } else {
                continue;
            };
            at = Some(at.map_or(t, |a| a.min(t)));
        }
        at
    }

    /// The broker acknowledged a batch of `tp`: it now holds sequence state for this producer,
    /// and the partition may have up to `max_in_flight_per_partition` batches in flight.
    pub fn confirm(&mut self, tp: &TopicPartition) {
        if let Some(&i) = self.index.get(tp) {
            self.queues[i].confirmed = true;
        }
    }

    /// A drained batch finished (acknowledged, or failed for good): frees its in-flight slot.
    pub fn complete(&mut self, tp: &TopicPartition) {
        if let Some(&i) = self.index.get(tp) {
            let q = &mut self.queues[i];
            q.in_flight = q.in_flight.saturating_sub(1);
        }
    }

    /// Puts a drained batch back for a retry, at its place in the partition's order (ahead of
    /// everything created after it), and frees its in-flight slot. A batch that was sent comes
    /// back [`Payload::Encoded`] with the bytes it was sent as, so that a retry is identical.
    pub fn requeue(&mut self, batch: ProducerBatch<T>) {
        debug_assert!(
            !matches!(&batch.payload, Payload::Encoded(b) if b.is_empty()),
            "batch {} requeued without its bytes",
            batch.id
        );
        let records = batch.records.len();
        let q = self.queue(&batch.tp);
        q.in_flight = q.in_flight.saturating_sub(1);
        q.retry_pending = true;
        let size = batch.payload.max_len();
        let sealed = Sealed {
            id: batch.id,
            body: Body::Drained(batch.payload),
            records: batch.records,
            created_at: batch.created_at,
            attempts: batch.attempts + 1,
            base_sequence: batch.base_sequence,
            reservation: batch.reservation,
            size,
        };
        let at = q.sealed.iter().position(|b| b.id > sealed.id).unwrap_or(q.sealed.len());
        q.sealed.insert(at, sealed);
        self.records += records;
    }

    /// Stalls a partition until a snapshot newer than `generation` arrives.
    pub fn stall(&mut self, tp: &TopicPartition, generation: u64) {
        let q = self.queue(tp);
        q.state = match q.state {
            PartitionState::Stalled { generation: g } => PartitionState::Stalled { generation: g.max(generation) },
            PartitionState::Ready => PartitionState::Stalled { generation },
        };
    }

    /// A snapshot of `generation` arrived: partitions stalled on an older one resume. Returns them.
    pub fn unstall(&mut self, generation: u64) -> Vec<TopicPartition> {
        let mut resumed = Vec::new();
        for q in &mut self.queues {
            if let PartitionState::Stalled { generation: g } = q.state {
                if generation > g {
                    q.state = PartitionState::Ready;
                    resumed.push(q.tp.clone());
                }
            }
        }
        resumed
    }

    /// A partition's state.
    pub fn state(&self, tp: &TopicPartition) -> PartitionState {
        self.existing(tp).map_or(PartitionState::Ready, |q| q.state)
    }

    /// Stalled partitions and the generation each waits past.
    pub fn stalled(&self) -> Vec<(TopicPartition, u64)> {
        self.queues
            .iter()
            .filter_map(|q| match q.state {
                PartitionState::Stalled { generation } => Some((q.tp.clone(), generation)),
                PartitionState::Ready => None,
            })
            .collect()
    }

    /// Removes every batch (not in flight) holding a record older than the delivery timeout.
    pub fn expire(&mut self, now: Instant) -> Vec<FailedBatch<T>> {
        let timeout = self.config.delivery_timeout;
        let mut out = Vec::new();
        for q in &mut self.queues {
            let tp = &q.tp;
            let expired = |b: &Sealed<T>| {
                b.records.first().is_some_and(|r| r.enqueued_at.checked_add(timeout).is_some_and(|t| now >= t))
            };
            let mut keep = VecDeque::with_capacity(q.sealed.len());
            for b in q.sealed.drain(..) {
                if expired(&b) {
                    out.push(FailedBatch {
                        tp: tp.clone(),
                        id: b.id,
                        was_sent: b.attempts > 0,
                        base_sequence: b.base_sequence,
                        records: b.records,
                        reservation: b.reservation,
                    });
                } else {
                    keep.push_back(b);
                }
            }
            q.sealed = keep;
            if q.open.as_ref().is_some_and(|(b, _)| expired(b)) {
                let (b, _) = q.open.take().expect("checked");
                out.push(FailedBatch {
                    tp: q.tp.clone(),
                    id: b.id,
                    was_sent: false,
                    base_sequence: b.base_sequence,
                    records: b.records,
                    reservation: b.reservation,
                });
            }
            if q.sealed.front().is_none_or(|b| b.attempts == 0) {
                q.retry_pending = false;
            }
        }
        self.records -= out.iter().map(|b| b.records.len()).sum::<usize>();
        out
    }

    /// Removes everything still buffered (for close or a fatal error), in batch order.
    pub fn take_all(&mut self) -> Vec<FailedBatch<T>> {
        let mut out = Vec::new();
        for q in &mut self.queues {
            for b in q.sealed.drain(..).chain(q.open.take().map(|(b, _)| b)) {
                out.push(FailedBatch {
                    tp: q.tp.clone(),
                    id: b.id,
                    was_sent: b.attempts > 0,
                    base_sequence: b.base_sequence,
                    records: b.records,
                    reservation: b.reservation,
                });
            }
            q.retry_pending = false;
        }
        out.sort_by_key(|b| b.id);
        self.records = 0;
        out
    }

    /// Starts every partition's sequence numbers again from 0 under a new producer id or epoch
    /// and renumbers queued batches that were already numbered. Call only with nothing in
    /// flight (see [`restamp_partition`](Self::restamp_partition) for one partition).
    pub fn reset_sequences(&mut self, producer_id: i64, producer_epoch: i16) -> Result<(), RecordsError> {
        self.producer = Some((producer_id, producer_epoch));
        for q in &mut self.queues {
            q.stamp = Some((producer_id, producer_epoch));
            Self::renumber(q)?;
        }
        Ok(())
    }

    /// Partitions holding batches not sent yet (open or sealed), in any state.
    pub fn partitions_with_data(&self) -> impl Iterator<Item = &TopicPartition> + '_ {
        self.queues.iter().filter(|q| q.open.is_some() || !q.sealed.is_empty()).map(|q| &q.tp)
    }

    /// Whether `tp` holds nothing: no batch buffered and none in flight.
    pub fn is_drained(&self, tp: &TopicPartition) -> bool {
        self.existing(tp).is_none_or(|q| q.open.is_none() && q.sealed.is_empty() && q.in_flight == 0)
    }

    /// Records buffered (open or sealed; not in flight).
    pub fn buffered_records(&self) -> usize {
        self.records
    }

    /// Batches in flight, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.queues.iter().map(|q| q.in_flight).sum()
    }

    /// Whether nothing is buffered and nothing is in flight.
    pub fn is_idle(&self) -> bool {
        self.records == 0 && self.in_flight() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPool;
    use krab_protocol::records::decode_batches;

    fn record(pool: &MemoryPool, token: u32, now: Instant) -> PendingRecord<u32> {
        let value = Bytes::from(format!("value-{token}-{}", "x".repeat(token as usize % 200)));
        PendingRecord {
            key: None,
            value: Some(value),
            headers: Vec::new(),
            timestamp: 1_000 + i64::from(token),
            token,
            reservation: pool.try_reserve(100).unwrap(),
            enqueued_at: now,
        }
    }

    /// Batches written into recycled buffers and record vectors hold exactly their records, and
    /// a batch's merged reservation returns every record's bytes to the pool when it is dropped.
    #[test]
    fn recycled_buffers_and_merged_reservations() {
        for compression in [Compression::None, Compression::Lz4] {
            let now = Instant::now();
            let pool = MemoryPool::new(1 << 20);
            let config = AccumulatorConfig {
                batch_size: 4096,
                linger: Duration::ZERO,
                compression,
                ..AccumulatorConfig::default()
            };
            let mut acc = Accumulator::new(config);
            let queues = [acc.queue_id(&TopicPartition::new("t", 0)), acc.queue_id(&TopicPartition::new("t", 1))];
            assert_eq!(acc.queue_id(&TopicPartition::new("t", 1)), queues[1], "one queue per partition");
            let mut token = 0;
            for round in 0..5 {
                for _ in 0..120 {
                    acc.append_to(queues[token as usize % 2], record(&pool, token, now), now).unwrap();
                    token += 1;
                }
                acc.seal_all();
                let mut seen = 0;
                loop {
                    let drained = acc.drain(now, |_| Some(1));
                    if drained.is_empty() {
                        break;
                    }
                    for batch in drained.into_values().flatten() {
                        let ProducerBatch { payload, records, reservation, tp, .. } = batch;
                        let Payload::Pending(pending) = payload else { panic!("a first drain is not encoded") };
                        let max = pending.max_len();
                        let (bytes, spare) = pending.encode().unwrap();
                        assert!(bytes.len() <= max, "{compression}: {} > bound {max}", bytes.len());
                        let decoded = decode_batches(&bytes).unwrap().batches.remove(0);
                        let tokens: Vec<u32> = records.iter().map(|r| r.token).collect();
                        assert_eq!(decoded.records.len(), tokens.len(), "round {round}");
                        for (r, t) in decoded.records.iter().zip(&tokens) {
                            assert_eq!(r.value.as_deref(), record(&pool, *t, now).value.as_deref());
                            assert_eq!(r.timestamp, 1_000 + i64::from(*t));
                        }
                        // Decoded values are slices of the payload: let them go before recycling it.
                        drop(decoded);
                        assert_eq!(reservation.bytes(), 100 * tokens.len());
                        seen += tokens.len();
                        acc.complete(&tp);
                        acc.recycle_records(records);
                        acc.recycle(bytes);
                        if let Some(spare) = spare {
                            acc.recycle_buffer(spare);
                        }
                    }
                }
                assert_eq!(seen, 120);
                assert_eq!(pool.available(), 1 << 20, "every reservation went back with its batch");
                assert!(!acc.spare_buffers.is_empty() && !acc.spare_records.is_empty(), "buffers came back");
            }
        }
    }
}
