//! Moving partitions to new epochs (idempotence): the loop's side of `idempotence`'s
//! per-partition bookkeeping. A partition with a gap in its sequence numbers moves to a new
//! epoch on its own, once nothing of it is in flight or of unknown outcome; every other
//! partition keeps its batches, in flight or queued, with their stamps.

use super::idempotence::{PartitionSequences, init_producer_id, next_epoch};
use super::{Event, FlushLoop};
use crate::error::{Error, ErrorKind};
use krab_buffer::TopicPartition;
use std::time::Instant;

impl FlushLoop {
    /// Applies `f` to `tp`'s sequence bookkeeping (idempotent producers only), then records
    /// whether the partition waits for a new epoch, and whether it may send meanwhile: only to
    /// settle batches of unknown outcome, with their first stamps.
    pub(super) fn sequences_of(&mut self, tp: &TopicPartition, f: impl FnOnce(&mut PartitionSequences)) {
        if !self.idempotent {
            return;
        }
        let s = match self.sequences.get_mut(tp) {
            Some(s) => s,
            None => self.sequences.entry(tp.clone()).or_default(),
        };
        f(s);
        let (wants, hold) = (s.wants_bump(), s.bump_now());
        if wants {
            if !self.bumps.contains(tp) {
                self.bumps.insert(tp.clone());
            }
        } else if !self.bumps.is_empty() {
            self.bumps.remove(tp);
        }
        if hold {
            if !self.held.contains(tp) {
                self.held.insert(tp.clone());
            }
        } else if !self.held.is_empty() {
            self.held.remove(tp);
        }
    }

    /// Moves each partition waiting for a new epoch whose batches are all settled (none in
    /// flight, none of unknown outcome) to its next epoch, locally; a partition whose epochs are
    /// used up takes a new producer id, asked of the cluster (paced after failures).
    pub(super) fn maybe_bump_epochs(&mut self, now: Instant) {
        self.need_id = false;
        if self.held.is_empty() {
            return;
        }
        let ready: Vec<TopicPartition> =
            self.held.iter().filter(|tp| self.acc.in_flight_of(tp) == 0).cloned().collect();
        for tp in ready {
            let Some(stamp) = self.acc.stamp(&tp) else { continue };
            let fresh = self.acc.producer().filter(|p| p.0 != stamp.0);
            match next_epoch(stamp).or(fresh) {
                Some(next) => self.bump_partition(&tp, next),
                None => self.need_id = true,
            }
        }
        if !self.need_id || !self.ids.may_ask(now) {
            return;
        }
        self.ids.asked();
        let cluster = self.cluster.clone();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            // A fresh producer id: its epochs start again at 0.
            let result = match init_producer_id(&cluster, None).await {
                Ok(Some(id)) => Ok(id),
                Ok(None) => Err(Error::new(ErrorKind::Cluster, "InitProducerId is no longer supported")),
                Err(e) => Err(e),
            };
            let _ = events.send(Event::ProducerId(result));
        });
    }

    /// A new producer id arrived (or the cluster refused one for good).
    pub(super) fn on_producer_id(&mut self, result: Result<(i64, i16), Error>, now: Instant) {
        match self.ids.answered(result, now, &self.config) {
            // Partitions seen from now on start with it; those waiting take it next turn.
            Some((pid, epoch)) => self.acc.set_producer(pid, epoch),
            None => {
                if let Some(fatal) = self.ids.fatal().cloned() {
                    self.fail_everything(&fatal);
                }
            }
        }
    }

    /// Moves `tp` to `stamp`: its queued batches, all known not to be in the log, are numbered
    /// again from 0.
    fn bump_partition(&mut self, tp: &TopicPartition, stamp: (i64, i16)) {
        match self.acc.restamp_partition(tp, stamp) {
            Ok(()) => {
                tracing::info!(partition = %tp, producer_id = stamp.0, epoch = stamp.1, "partition moved to a new epoch");
                self.metrics.epoch_bumped();
                self.sequences_of(tp, PartitionSequences::bumped);
            }
            Err(e) => {
                // Bytes the accumulator encoded itself could not be read back: a bug. The
                // producer cannot number batches safely any more.
                let e = Error::with_source(ErrorKind::Encode, "restamping batches failed", e);
                self.fail_everything(&e);
            }
        }
    }

    /// The producer cannot produce any more: fails everything buffered or waiting with `error`
    /// (later records fail with it in `accept`).
    pub(super) fn fail_everything(&mut self, error: &Error) {
        for b in self.acc.take_all() {
            self.stats.failed(&b.tp, b.records.len() as u64);
            Self::fail_records(b.records, error);
        }
        for (_, records) in self.waiting.drain() {
            for record in records {
                record.env.reply.send(Err(error.clone()));
            }
        }
        self.bumps.clear();
        self.held.clear();
    }
}
