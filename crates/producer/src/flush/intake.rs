//! Taking records in: the topic cache, partitioning, appending to the accumulator, and records
//! waiting for their topic's metadata.

use super::{Accepted, FlushLoop, TopicCache};
use crate::command::Envelope;
use crate::error::{Error, ErrorKind};
use crate::partitioner::PartitionInfo;
use crate::time::{Clock, now};
use bytes::Bytes;
use krab_buffer::{PendingRecord, TopicPartition};
use krab_protocol::records::RecordHeader;
use std::sync::Arc;
use std::time::Instant;

impl FlushLoop {
    #[inline(always)]
    pub(super) fn accept(&mut self, env: Envelope, clock: Clock) {
        if let Some(fatal) = self.ids.fatal() {
            env.reply.send(Err(fatal.clone()));
            return;
        }
        let timestamp = env.timestamp.unwrap_or(clock.wall_ms);
        let seen = self.snapshot.generation;
        let mut record = Accepted { env, timestamp, enqueued_at: clock.now, arrival: self.arrivals, seen, stale: None };
        self.arrivals += 1;
        // A topic with records still waiting for metadata queues behind them, whatever the
        // snapshot says now: records of one partition must reach the buffer in send order.
        let behind = !self.waiting.is_empty() && self.waiting.contains_key(&record.env.topic);
        if !behind && self.cache_topic(&record.env.topic) {
            self.append(record, clock.now);
        } else {
            // A topic the snapshot shows refused for good (TOPIC_AUTHORIZATION_FAILED, ...) may
            // be allowed by now (an ACL added since): the record waits for newer metadata, which
            // decides, as Kafka's `send` asks again for a topic it was refused.
            let refused =
                self.snapshot.topic(&record.env.topic).is_some_and(|t| t.error.is_err() && !t.error.is_retriable());
            if refused && !behind {
                let generation = self.snapshot.generation;
                record.stale = Some(generation);
                self.refresh = Some(self.refresh.map_or(generation, |r| r.max(generation)));
            }
            // Waiting records keep asking for metadata (see `maybe_resolve`) until the topic is
            // usable or `max.block.ms` passes.
            self.waiting.entry(record.env.topic.clone()).or_default().push(record);
        }
    }

    /// Points the topic cache at `topic`; false if the snapshot has no usable partitions for it.
    #[inline(always)]
    pub(super) fn cache_topic(&mut self, topic: &Arc<str>) -> bool {
        match &self.topic_cache {
            Some(c) if Arc::ptr_eq(&c.topic, topic) || *c.topic == **topic => true,
            _ => self.cache_new_topic(topic),
        }
    }

    pub(super) fn cache_new_topic(&mut self, topic: &Arc<str>) -> bool {
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

    pub(super) fn drop_topic_cache(&mut self) {
        if let Some(c) = self.topic_cache.take() {
            if c.filled.iter().any(|&n| n > 0) {
                self.filled.insert(c.topic, c.filled);
            }
        }
    }

    pub(super) fn available(&mut self, topic: &Arc<str>) -> Arc<[i32]> {
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
    pub(super) fn append(&mut self, mut record: Accepted, now: Instant) {
        let count = self.topic_cache.as_ref().map_or(0, |c| c.count);
        if let Some(p) = record.env.partition.filter(|p| !(0..count).contains(p)) {
            // A record that waited behind others may have arrived before a refresh that has
            // answered since: its partition was then looked for in newer metadata already.
            let lacked_in = record.stale.unwrap_or(record.seen);
            let refreshed = self.refreshed.is_some_and(|r| r >= lacked_in);
            if p < 0 || refreshed {
                let after = if refreshed { " (after a metadata refresh)" } else { "" };
                let topic = &record.env.topic;
                self.stats.failed(&TopicPartition { topic: topic.clone(), partition: p }, 1);
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

    /// Appends the waiting records of every topic the snapshot makes usable, and fails those of
    /// topics it refuses for good.
    pub(super) fn drain_waiting(&mut self) {
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
                    // Records that arrived when the snapshot already showed the refusal wait for
                    // a refresh newer than it (and so do those behind them, to keep their order).
                    let e = Error::new(ErrorKind::Broker(error), format!("topic {topic}: {error}"));
                    let refreshed = self.refreshed;
                    let records = self.waiting.remove(&topic).unwrap_or_default();
                    let mut keep = Vec::new();
                    for record in records {
                        let answered = record.stale.is_none_or(|g| refreshed.is_some_and(|r| r >= g));
                        if keep.is_empty() && answered {
                            record.env.reply.send(Err(e.clone()));
                        } else {
                            keep.push(record);
                        }
                    }
                    if !keep.is_empty() {
                        self.waiting.insert(topic, keep);
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
}
