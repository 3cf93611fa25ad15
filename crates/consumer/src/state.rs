//! The consumer's partition table, sans I/O: assignment, positions, buffered records and the
//! byte budgets. Fetch tasks take work from it and hand results back; the application takes
//! records from it. Every method is a few map operations under the caller's short lock; nothing
//! here awaits.
//!
//! Invariants:
//! - The *position* (the next offset the application gets) moves only when records are handed
//!   out by [`State::take`], so a caller that drops a pending poll loses nothing.
//! - Every seek or reassignment bumps the partition's *version*; a fetch or offset result carries
//!   the version it was asked under and is dropped if it no longer matches (no stale records
//!   after a seek), and a fetch result is used only if its fetch offset is still the partition's.
//! - A partition holding `partition_budget` bytes or more, or any partition while the whole
//!   buffer holds `buffer_budget` bytes or more, is left out of the next request; it re-enters
//!   as soon as the application drains a chunk (the fetch task is woken, no timer).

use crate::config::AutoOffsetReset;
use crate::error::{Error, ErrorKind};
use crate::records::{Chunk, Decoded};
use bytes::Bytes;
use krab_buffer::TopicPartition;
use krab_cluster::ClusterSnapshot;
use krab_protocol::records::{RecordHeader, TimestampType};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::Waker;

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offset {
    /// The log start offset.
    Earliest,
    /// The log end offset (the last stable offset under `read_committed`): only new records.
    Latest,
    /// The first offset whose timestamp is at or after this many milliseconds since the epoch
    /// (ListOffsets by time); the log end if there is none.
    Timestamp(i64),
    /// This exact offset.
    At(i64),
}

/// A record as the application sees it. Key, value and headers are zero-copy slices of the
/// fetched (or decompressed) bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The leader epoch of the batch, when the broker wrote one (KIP-101).
    pub leader_epoch: Option<i32>,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// What the timestamp means.
    pub timestamp_type: TimestampType,
    /// The key; `None` is null.
    pub key: Option<Bytes>,
    /// The value; `None` is null (a tombstone).
    pub value: Option<Bytes>,
    /// The headers, in order.
    pub headers: Vec<RecordHeader>,
}

/// The records of one partition returned by one call, in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRecords {
    /// The partition.
    pub partition: TopicPartition,
    /// Its records.
    pub records: Vec<ConsumerRecord>,
}

/// What the fetch side must do next for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// Look up the offset first (ListOffsets).
    Start(Offset),
    /// Fetch from this offset.
    At(i64),
    /// Stopped at this offset after an error, until a seek.
    Stopped(i64),
    /// The leader changed: check with OffsetForLeaderEpoch that the log still holds `offset`,
    /// reached in leader epoch `epoch` (KIP-320), before fetching from it.
    Validate { offset: i64, epoch: i32 },
}

impl From<Offset> for Fetch {
    /// An exact offset is fetched from at once; the others are looked up first.
    fn from(start: Offset) -> Self {
        match start {
            Offset::At(o) => Fetch::At(o),
            other => Fetch::Start(other),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) version: u64,
    pub(crate) fetch: Fetch,
    /// The next offset the application gets, once known.
    position: Option<i64>,
    /// The leader epoch of the last batch consumed from the log (fetch side).
    pub(crate) last_epoch: Option<i32>,
    pub(crate) leader: Option<i32>,
    pub(crate) leader_epoch: i32,
    /// The preferred read replica the leader named (KIP-392), fetched from instead of it.
    replica: Option<i32>,
    /// A preferred replica that failed; not followed again until the leader changes or the
    /// leader names it once more after a wait.
    banned_replica: Option<i32>,
    /// Sitting out of requests after its preferred replica failed.
    replica_wait: bool,
    /// Waiting for metadata newer than this generation.
    pub(crate) stale: Option<u64>,
    /// Stale after it had a leader (not merely looked up for the first time): "stalled" in
    /// events and in the `krab_consumer_stalled_partitions` gauge.
    stalled: bool,
    /// Times metadata did not know the partition, in a row.
    missing: u32,
    paused: bool,
    in_flight: bool,
    /// Listed in `State::ready`.
    queued: bool,
    chunks: VecDeque<Chunk>,
    cursor: usize,
    bytes: usize,
    error: Option<Error>,
    /// The version of the partition when its front chunk was lent as a [`Run`] (the run is out
    /// while this is the current version): the position must not move past it meanwhile.
    lent: Option<u64>,
    /// While a run is out: the offset after the last record it handed out, which the run
    /// stores (no lock) and commits read.
    handed: Arc<AtomicI64>,
    /// `krab_consumer_lag` of this partition, registered on its first fetch response.
    lag: Option<metrics::Gauge>,
    /// Where the log ends for the consumer, as the last fetch response naming it said.
    log_end: Option<i64>,
}

impl Part {
    fn new(fetch: Fetch, version: u64, in_flight: bool) -> Self {
        let position = match fetch {
            Fetch::At(o) | Fetch::Stopped(o) | Fetch::Validate { offset: o, .. } => Some(o),
            Fetch::Start(_) => None,
        };
        Part {
            version,
            fetch,
            position,
            last_epoch: None,
            leader: None,
            leader_epoch: -1,
            replica: None,
            banned_replica: None,
            replica_wait: false,
            stale: None,
            stalled: false,
            missing: 0,
            paused: false,
            in_flight,
            queued: false,
            chunks: VecDeque::new(),
            cursor: 0,
            bytes: 0,
            error: None,
            lent: None,
            handed: Arc::new(AtomicI64::new(-1)),
            lag: None,
            log_end: None,
        }
    }

    fn fetch_position(&self) -> Option<i64> {
        match self.fetch {
            Fetch::At(o) | Fetch::Stopped(o) | Fetch::Validate { offset: o, .. } => Some(o),
            Fetch::Start(_) => None,
        }
    }
}

/// A partition to fetch, as a fetch task takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchItem {
    pub(crate) tp: TopicPartition,
    pub(crate) version: u64,
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) last_epoch: Option<i32>,
    /// Whether this fetch goes to a preferred read replica rather than the leader.
    pub(crate) from_replica: bool,
}

/// What to do with a preferred-read-replica hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// Fetch the partition from this broker from now on.
    To(i32),
    /// The named replica failed last time: the partition sits out of requests until
    /// [`State::end_replica_wait`], so that it does not spin between leader and replica.
    Failed,
    /// Nothing changes.
    Ignored,
}

/// A partition whose offset must be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetItem {
    pub(crate) tp: TopicPartition,
    pub(crate) version: u64,
    pub(crate) spec: Offset,
    pub(crate) leader_epoch: i32,
}

/// A position to validate after a leader change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidateItem {
    pub(crate) tp: TopicPartition,
    pub(crate) version: u64,
    pub(crate) offset: i64,
    pub(crate) epoch: i32,
    pub(crate) leader_epoch: i32,
}

/// What a fetch brought for one partition.
#[derive(Debug)]
pub(crate) enum FetchResult {
    /// Records (possibly none) and where to fetch next.
    Records(Decoded),
    /// OFFSET_OUT_OF_RANGE, with what the broker said about the log.
    OutOfRange { log_start: i64, high_watermark: i64 },
    /// A rebalancing error or a failed leader: wait for metadata newer than this generation.
    Reresolve(u64),
    /// A failure to surface; the partition keeps its position and is fetched again.
    Retry(Error),
    /// A failure to surface; the partition stops until a seek.
    Stop(Error),
}

/// One partition's front chunk lent to the application handle by [`State::take_run`], so that
/// the `Stream` hands its records out one by one without the lock. The partition table still
/// counts the chunk's bytes and keeps the partition's position at the run's start until the run
/// comes back ([`State::finish_run`] once drained, [`State::give_back`] otherwise); meanwhile the
/// handle answers `position` from the run ([`State::holds`]). A run outlives no seek or
/// reassignment of its partition (its version no longer matches and it is dropped), and every
/// such change and every pause bumps [`State::changes`], which the handle checks before each
/// record. While a run is out, the handle takes nothing else.
#[derive(Debug)]
pub(crate) struct Run {
    tp: TopicPartition,
    version: u64,
    chunk: Chunk,
    /// The next record to hand out; always within the chunk while the run is out.
    cursor: usize,
    /// The partition's [`Part::handed`].
    handed: Arc<AtomicI64>,
}

impl Run {
    /// The timestamp of the next record of the run (-1: none).
    pub(crate) fn next_timestamp(&self) -> i64 {
        self.chunk.records.get(self.cursor).map_or(-1, |r| r.timestamp)
    }

    /// The offset of the next record of the run.
    pub(crate) fn next_offset(&self) -> i64 {
        self.chunk.records[self.cursor].offset
    }

    /// The run's partition.
    pub(crate) fn partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// Whether every record was handed out (the run must then go back by `finish_run`).
    pub(crate) fn is_drained(&self) -> bool {
        self.cursor >= self.chunk.records.len()
    }

    /// Records left to hand out.
    pub(crate) fn remaining(&self) -> usize {
        self.chunk.records.len().saturating_sub(self.cursor)
    }

    /// Moves the next record out (key, value and headers are taken, not cloned). `None` once
    /// drained.
    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<ConsumerRecord> {
        let r = self.chunk.records.get_mut(self.cursor)?;
        self.cursor += 1;
        self.handed.store(r.offset + 1, Ordering::Relaxed);
        Some(ConsumerRecord {
            topic: self.tp.topic.clone(),
            partition: self.tp.partition,
            offset: r.offset,
            leader_epoch: self.chunk.leader_epoch,
            timestamp: r.timestamp,
            timestamp_type: self.chunk.timestamp_type,
            key: r.key.take(),
            value: r.value.take(),
            headers: std::mem::take(&mut r.headers),
        })
    }
}

/// Byte budgets for buffered records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budgets {
    pub(crate) partition: usize,
    pub(crate) total: usize,
}

/// Wakers the caller must wake after releasing the lock.
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct Wake {
    /// Brokers whose fetch task has new work.
    pub(crate) brokers: BTreeSet<i32>,
    /// Every fetch task (the global budget freed up, or the assignment changed).
    pub(crate) all_brokers: bool,
    /// The metadata task (partitions need leaders).
    pub(crate) metadata: bool,
    /// The application (records or an error arrived).
    pub(crate) consumer: Option<Waker>,
}

impl Wake {
    fn merge(&mut self, other: Wake) {
        self.brokers.extend(other.brokers);
        self.all_brokers |= other.all_brokers;
        self.metadata |= other.metadata;
        if other.consumer.is_some() {
            self.consumer = other.consumer;
        }
    }
}

/// How often in a row metadata may miss a partition before it is reported unknown.
const MAX_MISSING: u32 = 5;

/// `part` waits for metadata newer than `generation`. If it had a leader (it was fetching, not
/// being looked up for the first time), it is stalled: a "partition stalled" event says why.
fn stall(tp: &TopicPartition, part: &mut Part, generation: u64, reason: &'static str) {
    if part.stale.is_none() && part.leader.is_some() && !part.stalled {
        tracing::debug!(partition = %tp, generation, leader = part.leader, reason, "partition stalled");
        part.stalled = true;
    }
    part.stale = Some(generation);
}

/// A partition that leaves the assignment reports no lag any more.
fn zero_lag(part: &Part) {
    if let Some(lag) = &part.lag {
        lag.set(0.0);
    }
}

/// The partition table.
#[derive(Debug)]
pub(crate) struct State {
    parts: BTreeMap<TopicPartition, Part>,
    budgets: Budgets,
    reset: AutoOffsetReset,
    bytes: usize,
    next_version: u64,
    /// Partitions with records or an error to hand out, in round-robin order.
    ready: VecDeque<TopicPartition>,
    waker: Option<Waker>,
    /// Bumped by every version change and every pause: what may invalidate a lent [`Run`].
    changes: Arc<AtomicU64>,
    /// A group-level failure for the application, before any record.
    group_error: Option<Error>,
}

impl State {
    pub(crate) fn new(budgets: Budgets, reset: AutoOffsetReset) -> Self {
        State {
            parts: BTreeMap::new(),
            budgets,
            reset,
            bytes: 0,
            next_version: 1,
            ready: VecDeque::new(),
            waker: None,
            changes: Arc::new(AtomicU64::new(0)),
            group_error: None,
        }
    }

    fn version(&mut self) -> u64 {
        self.changes.fetch_add(1, Ordering::Release);
        self.next_version += 1;
        self.next_version
    }

    /// The counter of changes that may invalidate a lent [`Run`] (seeks, reassignments, pauses),
    /// readable without the lock.
    pub(crate) fn changes(&self) -> Arc<AtomicU64> {
        self.changes.clone()
    }

    /// Replaces the assignment. Partitions no longer assigned drop their buffers; partitions
    /// that stay are repositioned to their new start.
    pub(crate) fn assign(&mut self, assignment: Vec<(TopicPartition, Offset)>) -> Wake {
        let mut old = std::mem::take(&mut self.parts);
        self.bytes = 0;
        self.ready.clear();
        for (tp, start) in assignment {
            let version = self.version();
            let fetch = Fetch::from(start);
            let prev = old.remove(&tp);
            let mut part = Part::new(fetch, version, prev.as_ref().is_some_and(|p| p.in_flight));
            if let Some(prev) = prev {
                part.leader = prev.leader;
                part.leader_epoch = prev.leader_epoch;
                part.stale = prev.stale;
                part.stalled = prev.stalled;
            }
            self.parts.insert(tp, part);
        }
        for part in old.values() {
            zero_lag(part);
        }
        Wake { all_brokers: true, metadata: true, ..Wake::default() }
    }

    /// Adds partitions at their start positions; every other partition stays as it is (a
    /// group's incremental assignment).
    pub(crate) fn add(&mut self, partitions: Vec<(TopicPartition, Offset)>) -> Wake {
        for (tp, start) in partitions {
            let version = self.version();
            let fetch = Fetch::from(start);
            let in_flight = self.parts.get(&tp).is_some_and(|p| p.in_flight);
            let mut lag = None;
            if let Some(old) = self.parts.get_mut(&tp) {
                self.bytes -= old.bytes;
                lag = old.lag.take();
            }
            let mut part = Part::new(fetch, version, in_flight);
            part.lag = lag;
            self.parts.insert(tp, part);
        }
        Wake { all_brokers: true, metadata: true, ..Wake::default() }
    }

    /// Removes partitions, dropping only what they buffered (a group's revocation): every other
    /// partition keeps its records.
    pub(crate) fn remove(&mut self, partitions: &[TopicPartition]) -> Wake {
        self.changes.fetch_add(1, Ordering::Release);
        for tp in partitions {
            if let Some(part) = self.parts.remove(tp) {
                self.bytes -= part.bytes;
                zero_lag(&part);
            }
        }
        self.ready.retain(|tp| !partitions.contains(tp));
        Wake { all_brokers: true, ..Wake::default() }
    }

    /// The positions to commit (offset and the leader epoch of the last record consumed) of
    /// these partitions (`None`: all), skipping those whose position is not known yet.
    pub(crate) fn committable(&self, partitions: Option<&[TopicPartition]>) -> Vec<(TopicPartition, i64, Option<i32>)> {
        self.parts
            .iter()
            .filter(|(tp, _)| partitions.is_none_or(|ps| ps.contains(tp)))
            .filter_map(|(tp, p)| {
                // A run out has handed records past the position the table keeps for it.
                let position =
                    if p.lent == Some(p.version) { Some(p.handed.load(Ordering::Relaxed)) } else { p.position };
                Some((tp.clone(), position?, p.last_epoch))
            })
            .collect()
    }

    /// A group-level failure (a fatal coordinator answer), handed to the application next.
    pub(crate) fn fail_group(&mut self, error: Error) -> Wake {
        self.group_error = Some(error);
        Wake { consumer: self.waker.take(), ..Wake::default() }
    }

    /// The assigned partitions, sorted.
    pub(crate) fn assignment(&self) -> Vec<TopicPartition> {
        self.parts.keys().cloned().collect()
    }

    fn part_mut(&mut self, tp: &TopicPartition) -> Result<&mut Part, Error> {
        self.parts
            .get_mut(tp)
            .ok_or_else(|| Error::new(ErrorKind::NotAssigned, "the partition is not assigned").for_partition(tp))
    }

    /// Moves a partition to `start`, dropping what it buffered and any pending error.
    pub(crate) fn seek(&mut self, tp: &TopicPartition, start: Offset) -> Result<Wake, Error> {
        let version = self.version();
        let part = self.part_mut(tp)?;
        let freed = part.bytes;
        let in_flight = part.in_flight;
        let queued = part.queued;
        let (leader, leader_epoch, stale, paused) = (part.leader, part.leader_epoch, part.stale, part.paused);
        let stalled = part.stalled;
        let lag = part.lag.take();
        let fetch = Fetch::from(start);
        *part = Part::new(fetch, version, in_flight);
        part.lag = lag;
        part.leader = leader;
        part.leader_epoch = leader_epoch;
        part.stale = stale;
        part.stalled = stalled;
        part.paused = paused;
        part.queued = queued;
        self.bytes -= freed;
        let mut wake = Wake::default();
        wake.brokers.extend(leader);
        Ok(wake)
    }

    /// [`State::seek`], unless the partition was repositioned since `version`.
    pub(crate) fn seek_if_version(&mut self, tp: &TopicPartition, version: u64, start: Offset) -> Result<Wake, Error> {
        if self.part_mut(tp)?.version != version {
            return Ok(Wake::default());
        }
        self.seek(tp, start)
    }

    /// Pauses or resumes fetching a partition. A paused partition keeps what it buffered, and
    /// [`State::take`] returns nothing of it until it is resumed.
    pub(crate) fn set_paused(&mut self, tp: &TopicPartition, paused: bool) -> Result<Wake, Error> {
        if paused {
            // Before the lookup, for the borrow; a bump for an unknown partition is harmless.
            self.changes.fetch_add(1, Ordering::Release);
        }
        let part = self.part_mut(tp)?;
        part.paused = paused;
        let mut wake = Wake::default();
        if !paused {
            wake.brokers.extend(part.leader);
            self.ready(tp, &mut wake);
        }
        Ok(wake)
    }

    /// The next offset the application will get from `tp` (`None` while the start offset is
    /// being looked up).
    pub(crate) fn position(&self, tp: &TopicPartition) -> Result<Option<i64>, Error> {
        let part = self
            .parts
            .get(tp)
            .ok_or_else(|| Error::new(ErrorKind::NotAssigned, "the partition is not assigned").for_partition(tp))?;
        Ok(part.position)
    }

    /// Whether `tp` is paused (`false` if it is not assigned).
    pub(crate) fn is_paused(&self, tp: &TopicPartition) -> bool {
        self.parts.get(tp).is_some_and(|p| p.paused)
    }

    /// Bytes buffered in total.
    pub(crate) fn buffered(&self) -> usize {
        self.bytes
    }

    fn fetchable(&self, part: &Part, broker: i32) -> bool {
        part.replica.or(part.leader) == Some(broker) && part.stale.is_none() && !part.in_flight && !part.replica_wait
    }

    /// Ends the pause of a partition whose preferred replica failed (see [`Redirect::Failed`]).
    pub(crate) fn end_replica_wait(&mut self, tp: &TopicPartition) -> Wake {
        let mut wake = Wake::default();
        if let Some(part) = self.parts.get_mut(tp) {
            part.replica_wait = false;
            wake.brokers.extend(part.leader);
        }
        wake
    }

    /// KIP-392: the leader named `replica` as the partition's preferred read replica.
    pub(crate) fn set_replica(&mut self, item: &FetchItem, replica: i32) -> Redirect {
        let Some(part) = self.parts.get_mut(&item.tp) else { return Redirect::Ignored };
        if part.version != item.version || part.leader == Some(replica) || part.replica == Some(replica) {
            return Redirect::Ignored;
        }
        if part.banned_replica == Some(replica) {
            // It failed last time, and the leader serves no data while it names it: this
            // partition sits out until the caller ends the wait, then tries the replica again.
            part.banned_replica = None;
            part.replica_wait = true;
            return Redirect::Failed;
        }
        tracing::debug!(partition = %item.tp, replica, "fetching from the preferred read replica");
        part.replica = Some(replica);
        Redirect::To(replica)
    }

    /// Takes the positions broker `broker` should validate (KIP-320), marking them in flight.
    pub(crate) fn take_validate_work(&mut self, broker: i32) -> Vec<ValidateItem> {
        let mut out = Vec::new();
        for (tp, part) in &mut self.parts {
            let Fetch::Validate { offset, epoch } = part.fetch else { continue };
            if part.leader == Some(broker) && part.stale.is_none() && !part.in_flight {
                part.in_flight = true;
                out.push(ValidateItem {
                    tp: tp.clone(),
                    version: part.version,
                    offset,
                    epoch,
                    leader_epoch: part.leader_epoch,
                });
            }
        }
        out
    }

    /// Applies an OffsetForLeaderEpoch answer: `Ok(Some((epoch, end_offset)))` is the end of
    /// the validated epoch on the leader; `Ok(None)` means validation is not possible (the broker
    /// lacks the API), and fetching goes on.
    pub(crate) fn apply_validation(
        &mut self,
        item: &ValidateItem,
        result: Result<Option<(i32, i64)>, FetchResult>,
    ) -> Wake {
        let mut wake = Wake::default();
        let reset = self.reset;
        let Some(part) = self.parts.get_mut(&item.tp) else { return wake };
        part.in_flight = false;
        if part.version != item.version || part.fetch != (Fetch::Validate { offset: item.offset, epoch: item.epoch }) {
            wake.brokers.extend(part.leader);
            return wake;
        }
        wake.brokers.extend(part.leader);
        match result {
            Ok(None) => part.fetch = Fetch::At(item.offset),
            Ok(Some((_, end_offset))) if end_offset >= item.offset => part.fetch = Fetch::At(item.offset),
            Ok(Some((end_epoch, end_offset))) => {
                let what = if end_offset < 0 {
                    format!("the leader knows no offsets of leader epoch {}", item.epoch)
                } else {
                    format!(
                        "the log was truncated: position {} (leader epoch {}) is past the end of epoch {end_epoch} at {end_offset}",
                        item.offset, item.epoch
                    )
                };
                match (reset, end_offset) {
                    (AutoOffsetReset::None, _) => {
                        let e = Error::new(
                            ErrorKind::LogTruncation,
                            format!("{what}; auto.offset.reset is none: seek to continue"),
                        );
                        part.fetch = Fetch::Stopped(item.offset);
                        part.error = Some(e.for_partition(&item.tp));
                    }
                    (_, o) if o >= 0 => {
                        tracing::warn!(partition = %item.tp, "{what}; resuming at {o}");
                        part.fetch = Fetch::At(o);
                        if part.chunks.is_empty() {
                            part.position = Some(o);
                        }
                    }
                    (policy, _) => {
                        let spec = if policy == AutoOffsetReset::Earliest { Offset::Earliest } else { Offset::Latest };
                        tracing::warn!(partition = %item.tp, "{what}; resetting to {spec:?}");
                        part.fetch = Fetch::Start(spec);
                    }
                }
            }
            Err(FetchResult::Reresolve(generation)) => {
                stall(&item.tp, part, generation, "OffsetForLeaderEpoch failed");
                wake.metadata = true;
            }
            Err(FetchResult::Retry(e)) => part.error = Some(e.for_partition(&item.tp)),
            Err(FetchResult::Stop(e)) => {
                part.fetch = Fetch::Stopped(item.offset);
                part.error = Some(e.for_partition(&item.tp));
            }
            Err(FetchResult::Records(_) | FetchResult::OutOfRange { .. }) => {}
        }
        self.ready(&item.tp, &mut wake);
        wake
    }

    /// Takes the offset lookups broker `broker` should do, marking them in flight.
    pub(crate) fn take_offset_work(&mut self, broker: i32) -> Vec<OffsetItem> {
        let mut out = Vec::new();
        for (tp, part) in &mut self.parts {
            let Fetch::Start(spec) = part.fetch else { continue };
            if part.leader == Some(broker) && part.stale.is_none() && !part.in_flight {
                part.in_flight = true;
                out.push(OffsetItem { tp: tp.clone(), version: part.version, spec, leader_epoch: part.leader_epoch });
            }
        }
        out
    }

    /// Takes the partitions broker `broker` should fetch now, marking them in flight: those it
    /// leads, positioned, not paused, under the partition budget, while the total is under the
    /// global budget.
    pub(crate) fn take_fetch_work(&mut self, broker: i32) -> Vec<FetchItem> {
        if self.bytes >= self.budgets.total {
            return Vec::new();
        }
        let budget = self.budgets.partition;
        let mut out = Vec::new();
        let ids: Vec<TopicPartition> = self
            .parts
            .iter()
            .filter(|(_, p)| {
                self.fetchable(p, broker) && !p.paused && p.bytes < budget && matches!(p.fetch, Fetch::At(_))
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in ids {
            let part = self.parts.get_mut(&tp).expect("listed above");
            let Fetch::At(offset) = part.fetch else { continue };
            part.in_flight = true;
            out.push(FetchItem {
                tp,
                version: part.version,
                offset,
                leader_epoch: part.leader_epoch,
                last_epoch: part.last_epoch,
                from_replica: part.replica.is_some(),
            });
        }
        out
    }

    /// Whether broker `broker` would fetch a partition now but for the bytes it holds: one the
    /// application is draining, that rejoins the requests once under its budget.
    pub(crate) fn holds_back(&self, broker: i32) -> bool {
        let budget = self.budgets.partition;
        self.parts
            .values()
            .any(|p| self.fetchable(p, broker) && !p.paused && p.bytes >= budget && matches!(p.fetch, Fetch::At(_)))
    }

    /// Releases work taken but not answered (the response did not mention the partition, or
    /// the request was never sent).
    pub(crate) fn release(&mut self, tp: &TopicPartition) {
        if let Some(p) = self.parts.get_mut(tp) {
            p.in_flight = false;
        }
    }

    fn set_error(part: &mut Part, tp: &TopicPartition, error: Error) -> Wake {
        part.error = Some(error.for_partition(tp));
        Wake::default()
    }

    /// Applies an offset lookup.
    pub(crate) fn apply_offset(&mut self, item: &OffsetItem, result: Result<i64, FetchResult>) -> Wake {
        let mut wake = Wake::default();
        let Some(part) = self.parts.get_mut(&item.tp) else { return wake };
        part.in_flight = false;
        if part.version != item.version {
            wake.brokers.extend(part.leader);
            return wake;
        }
        match result {
            Ok(offset) => {
                part.fetch = Fetch::At(offset);
                if part.chunks.is_empty() {
                    part.position = Some(offset);
                }
                wake.brokers.extend(part.leader);
            }
            Err(FetchResult::Reresolve(generation)) => {
                stall(&item.tp, part, generation, "ListOffsets failed");
                wake.metadata = true;
            }
            Err(FetchResult::Retry(e)) => {
                wake.merge(Self::set_error(part, &item.tp, e));
                wake.consumer = self.waker.take();
            }
            Err(FetchResult::Stop(e)) => {
                part.fetch = Fetch::Stopped(part.position.unwrap_or(-1));
                wake.merge(Self::set_error(part, &item.tp, e));
                wake.consumer = self.waker.take();
            }
            Err(FetchResult::Records(_) | FetchResult::OutOfRange { .. }) => {}
        }
        self.ready(&item.tp, &mut wake);
        wake
    }

    /// Applies what a fetch brought for one partition.
    pub(crate) fn apply_fetch(&mut self, item: &FetchItem, result: FetchResult) -> Wake {
        let mut wake = Wake::default();
        let reset = self.reset;
        let Some(part) = self.parts.get_mut(&item.tp) else { return wake };
        part.in_flight = false;
        if part.version != item.version || part.fetch != Fetch::At(item.offset) {
            // Sought or reassigned meanwhile: the data is stale.
            wake.brokers.extend(part.leader);
            return wake;
        }
        if item.from_replica && !matches!(result, FetchResult::Records(_)) {
            // The follower failed (or does not have the offset yet): back to the leader.
            tracing::debug!(partition = %item.tp, replica = ?part.replica, "preferred replica failed; fetching from the leader");
            part.banned_replica = part.replica.take();
            wake.brokers.extend(part.leader);
            return wake;
        }
        match result {
            FetchResult::Records(decoded) => {
                let stop = decoded.error.map(|e| {
                    Error::with_source(
                        ErrorKind::CorruptRecords,
                        format!("malformed records at offset {}", decoded.next_offset),
                        e,
                    )
                });
                let added: usize = decoded.chunks.iter().map(|c| c.bytes).sum();
                let had_records = !decoded.chunks.is_empty();
                part.chunks.extend(decoded.chunks);
                part.bytes += added;
                self.bytes += added;
                part.last_epoch = decoded.last_epoch.or(part.last_epoch);
                part.fetch = Fetch::At(decoded.next_offset);
                // Nothing buffered and nothing lent: the position follows the log (past control
                // batches and aborted records). A run out holds the position at its start.
                if part.chunks.is_empty() && part.lent != Some(part.version) {
                    part.position = Some(decoded.next_offset);
                }
                if let Some(e) = stop {
                    part.fetch = Fetch::Stopped(decoded.next_offset);
                    wake.merge(Self::set_error(part, &item.tp, e));
                }
                if had_records || part.error.is_some() {
                    wake.consumer = self.waker.take();
                }
                wake.brokers.extend(part.leader);
            }
            FetchResult::OutOfRange { log_start, high_watermark } => match reset {
                AutoOffsetReset::Earliest | AutoOffsetReset::Latest => {
                    let spec = if reset == AutoOffsetReset::Earliest { Offset::Earliest } else { Offset::Latest };
                    tracing::info!(partition = %item.tp, offset = item.offset, ?spec, "offset out of range; resetting");
                    part.fetch = Fetch::Start(spec);
                    if part.chunks.is_empty() {
                        part.position = None;
                    }
                    wake.brokers.extend(part.leader);
                }
                AutoOffsetReset::None => {
                    let range = match (log_start, high_watermark) {
                        (s, h) if s >= 0 && h >= 0 => format!(" (the log holds offsets {s} to {h})"),
                        _ => String::new(),
                    };
                    let e = Error::new(
                        ErrorKind::OffsetOutOfRange,
                        format!(
                            "fetch offset {} is out of range{range} and auto.offset.reset is none; seek to continue",
                            item.offset
                        ),
                    );
                    part.fetch = Fetch::Stopped(item.offset);
                    wake.merge(Self::set_error(part, &item.tp, e));
                    wake.consumer = self.waker.take();
                }
            },
            FetchResult::Reresolve(generation) => {
                stall(&item.tp, part, generation, "fetch failed");
                wake.metadata = true;
            }
            FetchResult::Retry(e) => {
                wake.merge(Self::set_error(part, &item.tp, e));
                wake.consumer = self.waker.take();
            }
            FetchResult::Stop(e) => {
                part.fetch = Fetch::Stopped(item.offset);
                wake.merge(Self::set_error(part, &item.tp, e));
                wake.consumer = self.waker.take();
            }
        }
        self.ready(&item.tp, &mut wake);
        wake
    }

    /// Broker `broker` refused the connection for good (TLS, authentication): every partition it
    /// serves gets `error`, for the application to see, and a positioned one stops there until
    /// a seek, as for any fatal fetch error. New metadata would not help, so none is asked for.
    pub(crate) fn broker_refused(&mut self, broker: i32, error: &Error) -> Wake {
        let mut wake = Wake::default();
        let tps: Vec<TopicPartition> = self
            .parts
            .iter()
            .filter(|(_, p)| p.replica.or(p.leader) == Some(broker) && p.error.is_none() && !p.paused)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in tps {
            let part = self.parts.get_mut(&tp).expect("listed above");
            if let Fetch::At(offset) = part.fetch {
                part.fetch = Fetch::Stopped(offset);
            }
            wake.merge(Self::set_error(part, &tp, error.clone()));
            self.ready(&tp, &mut wake);
        }
        wake
    }

    /// Marks every partition broker `broker` leads as needing metadata newer than `generation`
    /// (its connection failed).
    pub(crate) fn broker_failed(&mut self, broker: i32, generation: u64) -> Wake {
        let mut wake = Wake { metadata: true, ..Wake::default() };
        for (tp, part) in &mut self.parts {
            if part.replica == Some(broker) {
                part.banned_replica = part.replica.take();
                wake.brokers.extend(part.leader);
            } else if part.leader == Some(broker) && part.stale.is_none() {
                stall(tp, part, generation, "leader unreachable");
            }
        }
        wake
    }

    /// The topics the metadata task must resolve, and the oldest stale generation among them
    /// (`None`: any snapshot that knows the topics will do).
    pub(crate) fn metadata_needed(&self) -> Option<(Vec<String>, Option<u64>)> {
        let mut topics = BTreeSet::new();
        let mut stale: Option<u64> = None;
        let mut any_unknown = false;
        for (tp, part) in &self.parts {
            if let Some(g) = part.stale {
                topics.insert(tp.topic.to_string());
                stale = Some(stale.map_or(g, |s| s.min(g)));
            } else if part.leader.is_none() && part.missing < MAX_MISSING {
                topics.insert(tp.topic.to_string());
                any_unknown = true;
            }
        }
        if topics.is_empty() {
            return None;
        }
        Some((topics.into_iter().collect(), if any_unknown { None } else { stale }))
    }

    /// Partitions waiting for newer metadata (the `krab_consumer_stalled_partitions` gauge).
    pub(crate) fn stalled(&self) -> usize {
        self.parts.values().filter(|p| p.stalled).count()
    }

    /// A fetch response came for a request carrying `tp`, saying where its log ends (`None`: the
    /// response left it out, the end is the last one known): its lag gauge (registered by
    /// `register` on first use) becomes the end − the position (what the application has been
    /// handed, a lent run included).
    pub(crate) fn record_lag(
        &mut self,
        tp: &TopicPartition,
        end: Option<i64>,
        register: impl FnOnce() -> metrics::Gauge,
    ) {
        let Some(part) = self.parts.get_mut(tp) else { return };
        if end.is_some() {
            part.log_end = end;
        }
        let Some(end) = part.log_end else { return };
        let position = if part.lent == Some(part.version) {
            Some(part.handed.load(Ordering::Relaxed))
        } else {
            part.position.or_else(|| part.fetch_position())
        };
        let Some(position) = position.filter(|p| *p >= 0) else { return };
        part.lag.get_or_insert_with(register).set((end - position).max(0) as f64);
    }

    /// Takes leaders from `snapshot`. Returns the brokers that now lead assigned partitions.
    pub(crate) fn apply_snapshot(&mut self, snapshot: &ClusterSnapshot) -> (BTreeSet<i32>, Wake) {
        let mut leaders = BTreeSet::new();
        let mut wake = Wake::default();
        let mut unknown = Vec::new();
        for (tp, part) in &mut self.parts {
            if part.stale.is_some_and(|g| snapshot.generation <= g) {
                continue;
            }
            match snapshot.partition(&tp.topic, tp.partition) {
                Some(info) => {
                    part.missing = 0;
                    match info.leader.filter(|id| snapshot.brokers.contains_key(id)) {
                        Some(leader) => {
                            if part.leader != Some(leader) || part.stale.is_some() {
                                wake.brokers.insert(leader);
                            }
                            let moved = part.leader.is_some_and(|old| old != leader)
                                || (part.leader_epoch >= 0 && info.leader_epoch > part.leader_epoch);
                            if let (true, Fetch::At(offset), Some(epoch)) = (moved, part.fetch, part.last_epoch) {
                                part.fetch = Fetch::Validate { offset, epoch };
                            }
                            if part.leader != Some(leader) {
                                part.replica = None;
                                part.banned_replica = None;
                            }
                            if std::mem::take(&mut part.stalled) {
                                tracing::debug!(
                                    partition = %tp,
                                    leader,
                                    leader_epoch = info.leader_epoch,
                                    generation = snapshot.generation,
                                    "partition resumed"
                                );
                            }
                            part.leader = Some(leader);
                            part.leader_epoch = info.leader_epoch;
                            part.stale = None;
                            leaders.insert(leader);
                        }
                        None => {
                            stall(tp, part, snapshot.generation, "no leader");
                            part.leader = None;
                            wake.metadata = true;
                        }
                    }
                }
                None => {
                    let had_leader = part.leader.take();
                    // A topic the broker refuses for good (TOPIC_AUTHORIZATION_FAILED, ...) is
                    // not missing: its error is handed out at once, with its code.
                    let refused =
                        snapshot.topic(&tp.topic).map(|t| t.error).filter(|e| e.is_err() && !e.is_retriable());
                    if let Some(code) = refused {
                        if part.missing < MAX_MISSING {
                            part.missing = MAX_MISSING;
                            part.error = Some(
                                Error::new(ErrorKind::Broker(code), format!("topic {}: {code}", tp.topic))
                                    .for_partition(tp),
                            );
                            unknown.push(tp.clone());
                        }
                        continue;
                    }
                    part.missing += 1;
                    if part.missing == MAX_MISSING {
                        part.error = Some(
                            Error::new(ErrorKind::UnknownPartition, "the partition is not in the cluster's metadata")
                                .for_partition(tp),
                        );
                        unknown.push(tp.clone());
                    }
                    if part.missing < MAX_MISSING {
                        // Stalled if it was fetching (the event names the leader it had).
                        part.leader = had_leader;
                        stall(tp, part, snapshot.generation, "not in metadata");
                        part.leader = None;
                        wake.metadata = true;
                    }
                }
            }
        }
        for tp in unknown {
            self.ready(&tp, &mut wake);
        }
        (leaders, wake)
    }

    /// Queues `tp` for [`State::take`] if it has records or an error to hand out.
    fn mark_ready(&mut self, tp: &TopicPartition) -> bool {
        match self.parts.get_mut(tp) {
            Some(part) if !part.queued && !part.paused && (!part.chunks.is_empty() || part.error.is_some()) => {
                part.queued = true;
                self.ready.push_back(tp.clone());
                true
            }
            _ => false,
        }
    }

    /// Queues `tp` and wakes the application if it has something new to hand out.
    fn ready(&mut self, tp: &TopicPartition, wake: &mut Wake) {
        if self.mark_ready(tp) {
            wake.consumer = self.waker.take().or(wake.consumer.take());
        }
    }

    /// Moves `part`'s next record out of its front chunk (the chunk keeps no copy: key, value
    /// and headers are taken, not cloned) and advances its position. A drained chunk leaves
    /// the partition; its bytes are freed here and returned, and the partition's broker is
    /// woken if that brings it under its budget.
    #[inline(always)]
    fn pop_record(
        tp: &TopicPartition,
        part: &mut Part,
        partition_budget: usize,
        wake: &mut Wake,
    ) -> Option<(ConsumerRecord, usize)> {
        let chunk = part.chunks.front_mut()?;
        let r = &mut chunk.records[part.cursor];
        let record = ConsumerRecord {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: r.offset,
            leader_epoch: chunk.leader_epoch,
            timestamp: r.timestamp,
            timestamp_type: chunk.timestamp_type,
            key: r.key.take(),
            value: r.value.take(),
            headers: std::mem::take(&mut r.headers),
        };
        part.position = Some(record.offset + 1);
        part.cursor += 1;
        let mut freed = 0;
        if part.cursor == chunk.records.len() {
            let done = part.chunks.pop_front().expect("front exists");
            part.cursor = 0;
            part.bytes -= done.bytes;
            freed = done.bytes;
            part.position = Some(done.next_offset);
            if part.bytes < partition_budget {
                wake.brokers.extend(part.leader);
            }
        }
        if part.chunks.is_empty() {
            if let Some(p) = part.fetch_position() {
                part.position = Some(p);
            }
        }
        Some((record, freed))
    }

    /// Hands out up to `max` records (at least one per call when any is buffered), grouped by
    /// partition and taken round robin, or the next error if no record comes before it.
    /// Registers `waker` when there is nothing. Positions move past what is returned, and only
    /// that.
    pub(crate) fn take(
        &mut self,
        max: usize,
        waker: Option<&Waker>,
    ) -> (Option<Result<Vec<PartitionRecords>, Error>>, Wake) {
        let mut wake = Wake::default();
        if let Some(e) = self.group_error.take() {
            return (Some(Err(e)), wake);
        }
        let max = max.max(1);
        let mut out: Vec<PartitionRecords> = Vec::new();
        let mut taken = 0usize;
        let over_before = self.bytes >= self.budgets.total;
        let mut error = None;
        let mut rounds = self.ready.len();
        let budget = self.budgets.partition;
        while taken < max && rounds > 0 {
            rounds -= 1;
            let Some(tp) = self.ready.pop_front() else { break };
            let Some(part) = self.parts.get_mut(&tp) else { continue };
            part.queued = false;
            if part.paused {
                continue;
            }
            let mut records = Vec::new();
            while taken < max {
                let Some((record, freed)) = Self::pop_record(&tp, part, budget, &mut wake) else { break };
                records.push(record);
                taken += 1;
                self.bytes -= freed;
            }
            if !records.is_empty() {
                out.push(PartitionRecords { partition: tp.clone(), records });
                self.mark_ready(&tp);
            } else {
                error = part.error.take();
                if error.is_some() {
                    break;
                }
            }
        }
        if over_before && self.bytes < self.budgets.total {
            wake.all_brokers = true;
        }
        if !out.is_empty() {
            if let Some(e) = error {
                // Records came first; the error waits for the next call.
                let tp = e.partition().cloned();
                if let Some(part) = tp.as_ref().and_then(|tp| self.parts.get_mut(tp)) {
                    part.error = Some(e);
                }
                if let Some(tp) = tp {
                    self.mark_ready(&tp);
                }
            }
            return (Some(Ok(out)), wake);
        }
        if let Some(e) = error {
            return (Some(Err(e)), wake);
        }
        self.waker = waker.cloned();
        (None, wake)
    }

    /// Lends the next ready partition's front chunk as a [`Run`] (round robin, as `take`), or
    /// hands out its error when it has no records left. Registers `waker` when there is nothing.
    /// Nothing moves: the position stays at the run's start and the bytes stay counted until
    /// the run comes back.
    pub(crate) fn take_run(&mut self, waker: Option<&Waker>) -> Option<Result<Run, Error>> {
        if let Some(e) = self.group_error.take() {
            return Some(Err(e));
        }
        let mut rounds = self.ready.len();
        while rounds > 0 {
            rounds -= 1;
            let Some(tp) = self.ready.pop_front() else { break };
            let Some(part) = self.parts.get_mut(&tp) else { continue };
            part.queued = false;
            if part.paused {
                continue;
            }
            if let Some(chunk) = part.chunks.pop_front() {
                let cursor = std::mem::take(&mut part.cursor);
                let version = part.version;
                part.lent = Some(version);
                let next = chunk.records.get(cursor).map_or(chunk.next_offset, |r| r.offset);
                part.handed.store(next, Ordering::Relaxed);
                let handed = Arc::clone(&part.handed);
                if !part.chunks.is_empty() || part.error.is_some() {
                    // Back of the queue, as `mark_ready` would put it.
                    part.queued = true;
                    self.ready.push_back(tp.clone());
                }
                return Some(Ok(Run { tp, version, chunk, cursor, handed }));
            }
            if let Some(e) = part.error.take() {
                return Some(Err(e));
            }
        }
        self.waker = waker.cloned();
        None
    }

    /// Whether `run` still belongs to its partition (no seek or reassignment since it was lent),
    /// so that its next record is the partition's position.
    pub(crate) fn holds(&self, run: &Run) -> bool {
        self.parts.get(&run.tp).is_some_and(|p| p.version == run.version)
    }

    /// A drained run comes back: its bytes are freed, the position moves past its batch, and the
    /// broker is woken if that brings the partition under its budget (every broker if the whole
    /// buffer comes under its own). A run of a sought or reassigned partition was freed then.
    pub(crate) fn finish_run(&mut self, run: Run) -> Wake {
        let mut wake = Wake::default();
        let over_before = self.bytes >= self.budgets.total;
        let budget = self.budgets.partition;
        let Some(part) = self.parts.get_mut(&run.tp) else { return wake };
        if part.version != run.version {
            return wake;
        }
        part.lent = None;
        part.bytes -= run.chunk.bytes;
        self.bytes -= run.chunk.bytes;
        part.position = Some(run.chunk.next_offset);
        if part.chunks.is_empty() {
            if let Some(p) = part.fetch_position() {
                part.position = Some(p);
            }
        }
        if part.bytes < budget {
            wake.brokers.extend(part.leader);
        }
        if over_before && self.bytes < self.budgets.total {
            wake.all_brokers = true;
        }
        wake
    }

    /// A run not drained comes back: what it did not hand out becomes the partition's front
    /// chunk again and the position its next record, or it is dropped if its partition was
    /// sought or reassigned since (those freed its bytes already).
    pub(crate) fn give_back(&mut self, run: Run) -> Wake {
        let mut wake = Wake::default();
        if run.is_drained() {
            return self.finish_run(run);
        }
        let Some(part) = self.parts.get_mut(&run.tp) else { return wake };
        if part.version != run.version {
            return wake;
        }
        part.lent = None;
        part.position = Some(run.next_offset());
        // The chunk behind it was not touched while the run was out.
        debug_assert_eq!(part.cursor, 0);
        part.cursor = run.cursor;
        part.chunks.push_front(run.chunk);
        self.ready(&run.tp, &mut wake);
        wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use krab_protocol::messages::MetadataResponse;
    use krab_protocol::messages::metadata::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
    use krab_protocol::records::{Record, RecordsError};

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    /// A snapshot after `merges` merges, with `leaders[p]` leading partition p.
    fn snapshot(leaders: &[i32], merges: u64) -> ClusterSnapshot {
        let response = MetadataResponse {
            brokers: (1..=3)
                .map(|id| MetadataResponseBroker {
                    node_id: id,
                    host: "h".into(),
                    port: 9000 + id,
                    ..Default::default()
                })
                .collect(),
            topics: vec![MetadataResponseTopic {
                name: Some("t".into()),
                partitions: leaders
                    .iter()
                    .enumerate()
                    .map(|(p, &leader)| MetadataResponsePartition {
                        partition_index: p as i32,
                        leader_id: leader,
                        leader_epoch: merges as i32,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut s = ClusterSnapshot::default();
        for _ in 0..merges {
            s = s.merge(&response, false);
        }
        s
    }

    fn chunk(from: i64, n: i64, bytes: usize, next_offset: i64) -> Chunk {
        Chunk {
            leader_epoch: Some(1),
            timestamp_type: TimestampType::CreateTime,
            records: (from..from + n).map(|o| Record::new(o, 0, None, Some(Bytes::from(format!("v{o}"))))).collect(),
            bytes,
            next_offset,
        }
    }

    fn records(chunks: Vec<Chunk>, next_offset: i64) -> FetchResult {
        FetchResult::Records(Decoded { chunks, next_offset, last_epoch: Some(1), error: None, partial: false })
    }

    /// Two partitions at offset 0, both led by broker 1.
    fn state(partition_budget: usize, total: usize, reset: AutoOffsetReset) -> State {
        let mut s = State::new(Budgets { partition: partition_budget, total }, reset);
        let _ = s.assign(vec![(tp(0), Offset::At(0)), (tp(1), Offset::At(0))]);
        let _ = s.apply_snapshot(&snapshot(&[1, 1], 1));
        s
    }

    fn taken_offsets(s: &mut State, max: usize) -> Vec<(i32, i64)> {
        match s.take(max, None).0 {
            Some(Ok(batch)) => batch.iter().flat_map(|p| p.records.iter().map(|r| (r.partition, r.offset))).collect(),
            Some(Err(e)) => panic!("unexpected error {e}"),
            None => Vec::new(),
        }
    }

    fn work_partitions(s: &mut State, broker: i32) -> Vec<i32> {
        s.take_fetch_work(broker).iter().map(|i| i.tp.partition).collect()
    }

    #[test]
    fn a_partition_over_its_budget_leaves_the_request_and_reenters_when_drained() {
        let mut s = state(100, 10_000, AutoOffsetReset::Latest);
        let work = s.take_fetch_work(1);
        assert_eq!(work.len(), 2);
        let _ = s.apply_fetch(&work[0], records(vec![chunk(0, 3, 150, 3)], 3));
        s.release(&work[1].tp);
        // Partition 0 holds 150 bytes over a 100-byte budget: only its sibling is fetched.
        assert_eq!(work_partitions(&mut s, 1), vec![1]);
        s.release(&tp(1));
        // Draining partition 0 wakes its broker and makes it fetchable again, without any timer.
        let (_, wake) = s.take(10, None);
        assert!(wake.brokers.contains(&1));
        assert_eq!(s.buffered(), 0);
        assert_eq!(work_partitions(&mut s, 1), vec![0, 1]);
    }

    #[test]
    fn the_global_budget_stops_every_fetch_until_the_application_drains() {
        let mut s = state(1_000, 200, AutoOffsetReset::Latest);
        let work = s.take_fetch_work(1);
        let _ = s.apply_fetch(&work[0], records(vec![chunk(0, 2, 150, 2)], 2));
        let _ = s.apply_fetch(&work[1], records(vec![chunk(0, 2, 60, 2)], 2));
        assert_eq!(s.buffered(), 210);
        assert!(s.take_fetch_work(1).is_empty());
        let (_, wake) = s.take(4, None);
        assert!(wake.all_brokers, "freeing the global budget wakes every fetch task");
        assert_eq!(work_partitions(&mut s, 1), vec![0, 1]);
    }

    #[test]
    fn positions_move_only_when_records_are_handed_out() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::Latest);
        let work = s.take_fetch_work(1);
        // Offsets 0..3, then a control batch at 3 stepped over (chunk ends at 4), then 4..6.
        let _ = s.apply_fetch(&work[0], records(vec![chunk(0, 3, 10, 4), chunk(4, 2, 10, 6)], 6));
        assert_eq!(s.position(&tp(0)).unwrap(), Some(0), "fetched is not consumed");
        assert_eq!(taken_offsets(&mut s, 2), vec![(0, 0), (0, 1)]);
        assert_eq!(s.position(&tp(0)).unwrap(), Some(2));
        assert_eq!(taken_offsets(&mut s, 1), vec![(0, 2)]);
        assert_eq!(s.position(&tp(0)).unwrap(), Some(4), "past the stepped-over control offset");
        assert_eq!(taken_offsets(&mut s, 10), vec![(0, 4), (0, 5)]);
        assert_eq!(s.position(&tp(0)).unwrap(), Some(6));
        // Nothing left: take registers the waker and moves nothing.
        assert!(s.take(10, None).0.is_none());
        assert_eq!(s.position(&tp(0)).unwrap(), Some(6));
    }

    /// Two partitions with records (one with a stepped-over control offset and an error after
    /// its records), a third with only an error, partition 1 paused for a while.
    fn mixed_state() -> State {
        let mut s = State::new(Budgets { partition: 25, total: 60 }, AutoOffsetReset::Latest);
        let _ = s.assign(vec![(tp(0), Offset::At(0)), (tp(1), Offset::At(0)), (tp(2), Offset::At(0))]);
        let _ = s.apply_snapshot(&snapshot(&[1, 2, 1], 1));
        let work = s.take_fetch_work(1);
        let bad = Decoded {
            chunks: vec![chunk(0, 2, 20, 3), chunk(3, 2, 20, 5)],
            next_offset: 5,
            last_epoch: None,
            error: Some(RecordsError::CrcMismatch { expected: 1, actual: 2, offset: 0 }),
            partial: false,
        };
        let _ = s.apply_fetch(&work[0], FetchResult::Records(bad));
        let _ = s.apply_fetch(&work[1], FetchResult::Stop(Error::new(ErrorKind::CorruptRecords, "x")));
        let work = s.take_fetch_work(2);
        let _ = s.apply_fetch(&work[0], records(vec![chunk(0, 3, 30, 3)], 3));
        s
    }

    /// What the `Stream` does with the table: lend a run, hand its records out one by one, give
    /// it back drained. `pause_at` pauses partition 1 while its run is out after that many
    /// records (the run goes back undrained, as `Consumer::check_run` does), and resumes it two
    /// steps later. Each step: the record or error, the brokers woken, the global wake.
    type Step = (Result<(i32, i64), (ErrorKind, i32)>, Vec<i32>, bool);

    fn stream(s: &mut State, pause_at: Option<usize>) -> (Vec<Step>, bool) {
        let mut steps = Vec::new();
        let mut paused = false;
        let mut resume_at = None;
        loop {
            if resume_at.is_some_and(|r| steps.len() >= r) {
                let _ = s.set_paused(&tp(1), false).unwrap();
                resume_at = None;
            }
            match s.take_run(None) {
                Some(Ok(run)) => {
                    let mut run = Some(run);
                    while let Some(r) = run.as_mut() {
                        if !paused && pause_at == Some(steps.len()) && r.partition() == &tp(1) {
                            paused = true;
                            let r = run.take().unwrap();
                            let next = r.next_offset();
                            let _ = s.set_paused(&tp(1), true).unwrap();
                            let _ = s.give_back(r);
                            assert_eq!(s.position(&tp(1)).unwrap(), Some(next), "lent records are not consumed");
                            resume_at = Some(steps.len() + 2);
                            break;
                        }
                        let record = r.pop().expect("a lent run is never empty");
                        let (brokers, all) = if r.is_drained() {
                            let wake = s.finish_run(run.take().unwrap());
                            (wake.brokers.into_iter().collect(), wake.all_brokers)
                        } else {
                            (Vec::new(), false)
                        };
                        steps.push((Ok((record.partition, record.offset)), brokers, all));
                    }
                }
                Some(Err(e)) => {
                    steps.push((Err((e.kind(), e.partition().map_or(-1, |tp| tp.partition))), Vec::new(), false))
                }
                // Nothing else to hand out while partition 1 is paused: resume it now.
                None if resume_at.is_some() => resume_at = Some(0),
                None => return (steps, paused),
            }
        }
    }

    #[test]
    fn the_stream_hands_out_every_record_once_through_runs() {
        let mut pauses = 0;
        for pause_at in [None, Some(0), Some(1), Some(2), Some(3), Some(4)] {
            let mut s = mixed_state();
            let (steps, paused) = stream(&mut s, pause_at);
            pauses += usize::from(paused);
            // Every record once, in offset order per partition, the errors after their
            // partition's records, and the budgets freed as runs drain.
            let mut per: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
            steps.iter().filter_map(|s| s.0.ok()).for_each(|(p, o)| per.entry(p).or_default().push(o));
            assert_eq!(per, BTreeMap::from([(0, vec![0, 1, 3, 4]), (1, vec![0, 1, 2])]), "pause at {pause_at:?}");
            let errors: Vec<(ErrorKind, i32)> = steps.iter().filter_map(|s| s.0.err()).collect();
            assert_eq!(errors, vec![(ErrorKind::CorruptRecords, 2), (ErrorKind::CorruptRecords, 0)]);
            let last_record_of_0 = steps.iter().rposition(|s| s.0 == Ok((0, 4))).unwrap();
            let error_of_0 = steps.iter().position(|s| s.0 == Err((ErrorKind::CorruptRecords, 0))).unwrap();
            assert!(error_of_0 > last_record_of_0, "an error comes after its partition's records");
            assert_eq!((s.position(&tp(0)).unwrap(), s.position(&tp(1)).unwrap(), s.buffered()), (Some(5), Some(3), 0));
            assert!(steps.iter().any(|s| s.1 == vec![1]) && steps.iter().any(|s| s.1 == vec![2]), "drained runs wake");
            assert!(steps.iter().any(|s| s.2), "freeing the global budget wakes every broker");
        }
        assert!(pauses >= 2, "the pause hit a lent run of partition 1");
    }

    #[test]
    fn a_run_lent_before_a_seek_or_reassignment_is_dropped() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::Latest);
        let work = s.take_fetch_work(1);
        let _ = s.apply_fetch(&work[0], records(vec![chunk(0, 3, 10, 3)], 3));
        let _ = s.apply_fetch(&work[1], records(vec![chunk(0, 3, 10, 3)], 3));
        let changes = s.changes();
        let seen = changes.load(Ordering::Acquire);
        let mut run = s.take_run(None).unwrap().unwrap();
        assert_eq!(run.pop().map(|r| r.offset), Some(0));
        let tp0 = run.partition().clone();
        let _ = s.seek(&tp0, Offset::At(40)).unwrap();
        assert_ne!(changes.load(Ordering::Acquire), seen, "a seek tells the handle");
        assert!(!s.holds(&run));
        let _ = s.give_back(run);
        assert_eq!(s.position(&tp0).unwrap(), Some(40));
        assert_eq!(s.buffered(), 10, "the seek freed the lent run's bytes; the other partition's stay");
        // The other partition's run is reassigned away while out: dropped, nothing freed twice.
        let mut run = s.take_run(None).unwrap().unwrap();
        assert_ne!(run.partition(), &tp0);
        let _ = run.pop();
        let _ = s.assign(vec![(tp0.clone(), Offset::At(40))]);
        assert!(!s.holds(&run));
        let _ = s.finish_run(run);
        assert_eq!(s.buffered(), 0);
        assert!(s.take_run(None).is_none());
    }

    #[test]
    fn an_empty_answer_while_a_run_is_lent_leaves_the_position_at_the_run_and_commits_take_what_it_handed_out() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::Latest);
        let work = s.take_fetch_work(1);
        let _ = s.apply_fetch(&work[0], records(vec![chunk(0, 5, 10, 5)], 5));
        let mut run = s.take_run(None).unwrap().unwrap();
        let tp0 = run.partition().clone();
        for _ in 0..3 {
            let _ = run.pop();
        }
        // The next fetch of the partition answers nothing new while the run is out: the
        // position (what a commit takes) stays where the application is, not at the log's end.
        let work = s.take_fetch_work(1);
        let again = work.iter().find(|w| w.tp == tp0).expect("fetched again");
        let _ = s.apply_fetch(again, records(Vec::new(), 5));
        assert_eq!(s.position(&tp0).unwrap(), Some(0), "held at the run's start while it is out");
        assert_eq!(s.committable(Some(std::slice::from_ref(&tp0)))[0].1, 3, "commits take what the run handed out");
        let _ = s.give_back(run);
        assert_eq!(s.position(&tp0).unwrap(), Some(3), "the run's next record");
        let mut run = s.take_run(None).unwrap().unwrap();
        while run.pop().is_some() {}
        let _ = s.finish_run(run);
        assert_eq!(s.position(&tp0).unwrap(), Some(5));
    }

    #[test]
    fn batches_alternate_between_partitions() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::Latest);
        let work = s.take_fetch_work(1);
        let _ = s.apply_fetch(&work[0], records(vec![chunk(0, 4, 10, 4)], 4));
        let _ = s.apply_fetch(&work[1], records(vec![chunk(0, 4, 10, 4)], 4));
        let batch = s.take(6, None).0.unwrap().unwrap();
        let counts: Vec<(i32, usize)> = batch.iter().map(|p| (p.partition.partition, p.records.len())).collect();
        assert_eq!(counts, vec![(0, 4), (1, 2)]);
        assert_eq!(taken_offsets(&mut s, 1), vec![(1, 2)]);
    }

    #[test]
    fn a_result_from_before_a_seek_is_dropped() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::Latest);
        let work = s.take_fetch_work(1);
        let _ = s.seek(&tp(0), Offset::At(50)).unwrap();
        let _ = s.apply_fetch(&work[0], records(vec![chunk(0, 3, 10, 3)], 3));
        assert_eq!(s.buffered(), 0);
        assert!(taken_offsets(&mut s, 10).is_empty());
        assert_eq!(s.position(&tp(0)).unwrap(), Some(50));
        let next = s.take_fetch_work(1);
        assert_eq!(next.iter().find(|i| i.tp == tp(0)).map(|i| i.offset), Some(50));
        // Seeking drops buffered records and frees their budget.
        let _ = s.apply_fetch(&next[0], records(vec![chunk(50, 3, 10, 53)], 53));
        assert_eq!(s.buffered(), 10);
        let _ = s.seek(&tp(0), Offset::At(0)).unwrap();
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn out_of_range_with_reset_none_is_a_typed_error_that_stops_the_partition() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::None);
        let work = s.take_fetch_work(1);
        let _ = s.apply_fetch(&work[0], FetchResult::OutOfRange { log_start: 10, high_watermark: 20 });
        let e = match s.take(10, None).0 {
            Some(Err(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(e.kind(), ErrorKind::OffsetOutOfRange);
        assert_eq!(e.partition(), Some(&tp(0)));
        let text = e.to_string();
        assert!(text.contains("t-0") && text.contains("offset 0") && text.contains("10 to 20"), "{text}");
        s.release(&tp(1));
        assert_eq!(work_partitions(&mut s, 1), vec![1], "stopped until a seek");
        s.release(&tp(1));
        let _ = s.seek(&tp(0), Offset::At(10)).unwrap();
        assert_eq!(work_partitions(&mut s, 1), vec![0, 1]);
    }

    #[test]
    fn out_of_range_with_reset_earliest_looks_the_offset_up() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::Earliest);
        let work = s.take_fetch_work(1);
        let _ = s.apply_fetch(&work[0], FetchResult::OutOfRange { log_start: 10, high_watermark: 20 });
        assert!(s.take(10, None).0.is_none(), "no error surfaces");
        let lookups = s.take_offset_work(1);
        assert_eq!(lookups.len(), 1);
        assert_eq!(lookups[0].spec, Offset::Earliest);
        let _ = s.apply_offset(&lookups[0], Ok(10));
        assert_eq!(s.position(&tp(0)).unwrap(), Some(10));
    }

    #[test]
    fn paused_partitions_are_neither_fetched_nor_returned() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::Latest);
        let work = s.take_fetch_work(1);
        let _ = s.apply_fetch(&work[0], records(vec![chunk(0, 2, 10, 2)], 2));
        s.release(&tp(1));
        let _ = s.set_paused(&tp(0), true).unwrap();
        assert!(taken_offsets(&mut s, 10).is_empty());
        assert_eq!(work_partitions(&mut s, 1), vec![1]);
        let wake = s.set_paused(&tp(0), false).unwrap();
        assert!(wake.brokers.contains(&1));
        assert_eq!(taken_offsets(&mut s, 10), vec![(0, 0), (0, 1)]);
    }

    #[test]
    fn a_rebalancing_error_pauses_only_its_partition_until_newer_metadata() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::Latest);
        let work = s.take_fetch_work(1);
        let wake = s.apply_fetch(&work[0], FetchResult::Reresolve(1));
        assert!(wake.metadata);
        let _ = s.apply_fetch(&work[1], records(vec![chunk(0, 1, 10, 1)], 1));
        assert_eq!(s.metadata_needed(), Some((vec!["t".to_string()], Some(1))));
        // The sibling keeps fetching.
        assert_eq!(work_partitions(&mut s, 1), vec![1]);
        s.release(&tp(1));
        // A snapshot no newer than the failing one changes nothing.
        let _ = s.apply_snapshot(&snapshot(&[2, 1], 1));
        assert!(s.take_fetch_work(2).is_empty());
        // A newer one moves partition 0 to broker 2.
        let (leaders, wake) = s.apply_snapshot(&snapshot(&[2, 1], 2));
        assert!(leaders.contains(&2) && wake.brokers.contains(&2));
        assert_eq!(work_partitions(&mut s, 2), vec![0]);
        assert_eq!(s.metadata_needed(), None);
    }

    #[test]
    fn records_before_a_corrupt_batch_come_first_then_the_error() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::Latest);
        let work = s.take_fetch_work(1);
        let decoded = Decoded {
            chunks: vec![chunk(0, 2, 10, 2)],
            next_offset: 2,
            last_epoch: None,
            error: Some(RecordsError::CrcMismatch { expected: 1, actual: 2, offset: 0 }),
            partial: false,
        };
        let _ = s.apply_fetch(&work[0], FetchResult::Records(decoded));
        assert_eq!(taken_offsets(&mut s, 10), vec![(0, 0), (0, 1)]);
        match s.take(10, None).0 {
            Some(Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::CorruptRecords);
                assert_eq!(e.partition(), Some(&tp(0)));
            }
            other => panic!("expected the error, got {other:?}"),
        }
        assert_eq!(s.position(&tp(0)).unwrap(), Some(2));
        s.release(&tp(1));
        assert_eq!(work_partitions(&mut s, 1), vec![1], "stopped at the bad batch");
    }

    #[test]
    fn unassigned_partitions_are_a_typed_error() {
        let mut s = state(1_000, 10_000, AutoOffsetReset::Latest);
        assert_eq!(s.seek(&tp(9), Offset::At(0)).unwrap_err().kind(), ErrorKind::NotAssigned);
        assert_eq!(s.position(&tp(9)).unwrap_err().kind(), ErrorKind::NotAssigned);
    }

    /// Partition 0 read up to offset 2 in epoch 1 from broker 1, then metadata moves it to broker 2.
    fn moved(reset: AutoOffsetReset) -> (State, ValidateItem) {
        let mut s = state(1_000, 10_000, reset);
        let work = s.take_fetch_work(1);
        let _ = s.apply_fetch(&work[0], records(vec![chunk(0, 2, 10, 2)], 2));
        s.release(&tp(1));
        assert!(s.take_validate_work(1).is_empty(), "no leader change yet");
        let _ = s.apply_snapshot(&snapshot(&[2, 1], 2));
        assert!(s.take_fetch_work(2).is_empty(), "validation comes first");
        let items = s.take_validate_work(2);
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].offset, items[0].epoch, items[0].leader_epoch), (2, 1, 2));
        (s, items[0].clone())
    }

    #[test]
    fn a_position_the_new_leader_holds_fetches_on() {
        let (mut s, item) = moved(AutoOffsetReset::None);
        let _ = s.apply_validation(&item, Ok(Some((1, 2))));
        assert_eq!(s.take_fetch_work(2).iter().map(|i| i.offset).collect::<Vec<_>>(), vec![2]);
        assert_eq!(taken_offsets(&mut s, 10), vec![(0, 0), (0, 1)], "buffered records survive validation");
    }

    #[test]
    fn an_unknown_epoch_applies_the_reset_policy() {
        let (mut s, item) = moved(AutoOffsetReset::Latest);
        let _ = s.apply_validation(&item, Ok(Some((-1, -1))));
        let lookups = s.take_offset_work(2);
        assert_eq!(lookups.iter().map(|l| l.spec).collect::<Vec<_>>(), vec![Offset::Latest]);
        let (mut s, item) = moved(AutoOffsetReset::None);
        let _ = s.apply_validation(&item, Ok(Some((-1, -1))));
        let _ = taken_offsets(&mut s, 10);
        match s.take(10, None).0 {
            Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::LogTruncation),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
