//! What ends records besides an acknowledgement: delivery timeouts, flush barriers, close.

use super::{FlushLoop, PendingFlush};
use crate::error::{Error, ErrorKind};
use crate::time::add;
use krab_buffer::FailedBatch;
use krab_protocol::error_code::ErrorCode;
use std::time::Instant;

impl FlushLoop {
    pub(super) fn expire(&mut self, now: Instant) {
        // Records appended since the last snapshot to a partition it gives no leader.
        self.stall_leaderless();
        let timeout = self.config.effective_delivery_timeout();
        let error = || Error::new(ErrorKind::DeliveryTimeout, "not delivered within delivery.timeout.ms");
        for FailedBatch { tp, id, records, base_sequence, .. } in self.acc.expire(now) {
            self.stats.failed(&tp, records.len() as u64);
            // A sent batch expiring: a gap, unless it may have been written (then resolved).
            self.sequences_of(&tp, |s| s.failed(id, base_sequence));
            Self::fail_records(records, &error());
            self.forget_if_drained(&tp);
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

    pub(super) fn oldest_outstanding(&self) -> Option<u64> {
        let in_flight = self.jobs.values().flat_map(|j| j.batches.iter().map(|b| b.id)).min();
        match (self.acc.oldest_batch_id(), in_flight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn check_flushes(&mut self) {
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
    pub(super) fn check_close(&mut self, now: Instant) -> bool {
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
