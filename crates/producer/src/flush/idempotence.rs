//! Idempotence: the producer id and epoch. The producer bumps its epoch itself (epoch + 1, which
//! a broker accepts from an idempotent producer when the new epoch starts at sequence 0) and
//! asks the cluster (InitProducerId) only for its first id and when the epoch is used up.
//! A failed request is asked again after `retry.backoff.ms`, doubling up to
//! `retry.backoff.max.ms`; a non-retriable answer is fatal to the producer.

use crate::config::ProducerConfig;
use crate::error::{Error, ErrorKind};
use krab_cluster::Cluster;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::InitProducerIdRequest;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A batch hitting OUT_OF_ORDER_SEQUENCE_NUMBER this often while it is the partition's next
/// sequence (right after the last acknowledged one) with nothing before it in flight means the
/// broker lost track of the producer's sequence: bump the epoch.
pub(super) const OUT_OF_ORDER_LIMIT: u32 = 3;

/// `seq + count`, wrapping from i32::MAX to 0 as Kafka's sequence numbers do.
pub(super) fn sequence_after(seq: i32, count: usize) -> i32 {
    ((i64::from(seq) + count as i64) % (i64::from(i32::MAX) + 1)) as i32
}

/// One partition's sequence bookkeeping under its current producer id and epoch, and what it
/// takes to move it to a new epoch without writing anything twice.
///
/// A batch is *of unknown outcome* once an attempt may have been written without an answer
/// saying so (the request timed out, the connection was lost after the write,
/// REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND). Such a batch is never numbered again:
/// it is retried with its first stamp until the broker settles it (acknowledged, or a
/// duplicate; OUT_OF_ORDER_SEQUENCE_NUMBER says it was not written, since at most 5 batches
/// are in flight and the broker remembers 5), or it fails. A batch that fails while of unknown
/// outcome is *unresolved*: a later batch of the partition being acknowledged proves it was
/// written (no gap); if none is, once nothing of the partition is in flight or of unknown
/// outcome, it was not (a gap). A *gap* (a sequence used by a batch that will never be written)
/// is closed by moving this partition, alone, to a new epoch, and only when nothing of it is in
/// flight or of unknown outcome: every batch then numbered again is known not to be in the log.
#[derive(Debug, Default)]
pub(super) struct PartitionSequences {
    /// The sequence the broker expects next: right after the last acknowledged batch.
    next_expected: i32,
    /// The newest batch acknowledged.
    last_acked: Option<u64>,
    /// OUT_OF_ORDER_SEQUENCE_NUMBER answers to the partition's next sequence, in a row.
    out_of_order: u32,
    /// Batches of unknown outcome, by batch id.
    unknown: BTreeSet<u64>,
    /// Batches that failed while of unknown outcome, by batch id.
    unresolved: BTreeSet<u64>,
    /// A sequence number was used by a batch that will never be written.
    gap: bool,
}

impl PartitionSequences {
    /// An attempt of batch `id` may have been written, with no answer saying so.
    pub(super) fn may_be_written(&mut self, id: u64) {
        self.unknown.insert(id);
    }

    /// A batch starting at `base` with `count` records was acknowledged (or was a duplicate).
    /// Batches older than it that failed unresolved were written, then.
    pub(super) fn acked(&mut self, id: u64, base: i32, count: usize) {
        if base >= 0 {
            self.next_expected = sequence_after(base, count);
        }
        self.out_of_order = 0;
        self.unknown.remove(&id);
        self.unresolved.retain(|u| *u > id);
        self.last_acked = Some(self.last_acked.map_or(id, |l| l.max(id)));
    }

    /// Batch `id` starting at `base` was answered OUT_OF_ORDER_SEQUENCE_NUMBER with nothing older
    /// of the partition in flight (`older_in_flight` false): it was not written. Only the
    /// partition's next sequence counts towards the limit: a batch behind it is the cascade of
    /// an earlier failure, and just goes again in order. At the limit the broker has lost the
    /// producer's state: a gap.
    pub(super) fn out_of_order(&mut self, id: u64, base: i32, older_in_flight: bool) {
        self.unknown.remove(&id);
        if older_in_flight || base != self.next_expected {
            return;
        }
        self.out_of_order += 1;
        if self.out_of_order >= OUT_OF_ORDER_LIMIT {
            self.gap = true;
        }
    }

    /// The broker no longer knows the producer id or epoch for this partition
    /// (UNKNOWN_PRODUCER_ID, INVALID_PRODUCER_EPOCH): batch `id` was not written, and the
    /// partition needs a new epoch.
    pub(super) fn lost_state(&mut self, id: u64) {
        self.unknown.remove(&id);
        self.gap = true;
    }

    /// Batch `id` (numbered from `base`, -1: never numbered) failed for good.
    pub(super) fn failed(&mut self, id: u64, base: i32) {
        if base < 0 {
            return; // never numbered: no sequence used
        }
        if self.unknown.remove(&id) {
            if self.last_acked.is_none_or(|l| l < id) {
                self.unresolved.insert(id);
            }
            // else: a later batch was acknowledged, so this one was written.
        } else {
            self.gap = true;
        }
    }

    /// Whether the partition waits for a new epoch: a gap, or failures not resolved yet.
    pub(super) fn wants_bump(&self) -> bool {
        self.gap || !self.unresolved.is_empty()
    }

    /// With nothing of the partition in flight: whether to move it to a new epoch now. Failed
    /// batches still unresolved were not written (nothing later was acknowledged).
    pub(super) fn bump_now(&self) -> bool {
        self.wants_bump() && self.unknown.is_empty()
    }

    /// The partition moved to a new epoch: sequences start again at 0.
    pub(super) fn bumped(&mut self) {
        *self = Self::default();
    }
}

/// The epoch after `current`'s, if it is not used up (then only a new producer id will do).
pub(super) fn next_epoch((producer_id, epoch): (i64, i16)) -> Option<(i64, i16)> {
    (epoch < i16::MAX).then(|| (producer_id, epoch + 1))
}

/// Asking the cluster for a new producer id, paced after failures.
#[derive(Debug)]
pub(super) struct ProducerIds {
    /// A request is in flight.
    asking: bool,
    /// The wait after the next failure.
    backoff: Duration,
    /// No request before this (after a failure).
    not_before: Option<Instant>,
    /// A non-retriable answer: the producer cannot produce any more.
    fatal: Option<Error>,
}

impl ProducerIds {
    pub(super) fn new(config: &ProducerConfig) -> Self {
        Self { asking: false, backoff: config.retry_backoff, not_before: None, fatal: None }
    }

    /// Whether a request may go out now.
    pub(super) fn may_ask(&self, now: Instant) -> bool {
        !self.asking && self.fatal.is_none() && self.not_before.is_none_or(|t| now >= t)
    }

    pub(super) fn asked(&mut self) {
        self.asking = true;
    }

    /// When the next request may go out, if one is waiting for its backoff.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        if self.asking || self.fatal.is_some() { None } else { self.not_before }
    }

    /// The error every record fails with from now on, if the cluster refused for good.
    pub(super) fn fatal(&self) -> Option<&Error> {
        self.fatal.as_ref()
    }

    /// The answer arrived: a new id to use, or `None` (asked again after backoff, or fatal).
    pub(super) fn answered(
        &mut self,
        result: Result<(i64, i16), Error>,
        now: Instant,
        config: &ProducerConfig,
    ) -> Option<(i64, i16)> {
        self.asking = false;
        match result {
            Ok(id) => {
                self.backoff = config.retry_backoff;
                self.not_before = None;
                Some(id)
            }
            Err(e) if e.is_retriable() => {
                tracing::warn!(error = %e, backoff = ?self.backoff, "InitProducerId failed; asking again after backoff");
                self.not_before = Some(crate::time::add(now, self.backoff));
                self.backoff = self.backoff.saturating_mul(2).min(config.retry_backoff_max.max(config.retry_backoff));
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "InitProducerId refused; the producer cannot produce");
                self.fatal = Some(e);
                None
            }
        }
    }
}

/// The producer's first id. Right after a cluster starts, the transaction coordinator is still
/// being created or loaded (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, ...): a
/// retriable answer is asked again after `retry.backoff.ms`, doubling up to
/// `retry.backoff.max.ms`, for at most the delivery timeout; anything else fails at once.
pub(super) async fn first_producer_id(cluster: &Cluster, config: &ProducerConfig) -> Result<Option<(i64, i16)>, Error> {
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
pub(super) async fn init_producer_id(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_next_sequence_counts_towards_the_out_of_order_limit() {
        let mut p = PartitionSequences::default();
        p.acked(1, 0, 3); // the broker expects 3 next
        for id in 0..10 {
            p.out_of_order(10 + id, 5, false); // behind a failed batch: the cascade
            p.out_of_order(10 + id, 3, true); // an older batch is still in flight
        }
        assert!(!p.wants_bump());
        p.out_of_order(2, 3, false);
        p.out_of_order(2, 3, false);
        assert!(!p.wants_bump());
        p.out_of_order(2, 3, false);
        assert!(p.bump_now(), "the third time in a row");
        p.bumped();
        assert!(!p.wants_bump());
    }

    #[test]
    fn a_failed_batch_of_unknown_outcome_is_resolved_before_any_bump() {
        // b1 and b2 may be in the log; b1 fails (delivery timeout).
        let mut p = PartitionSequences::default();
        p.may_be_written(1);
        p.may_be_written(2);
        p.failed(1, 0);
        assert!(p.wants_bump() && !p.bump_now(), "b2 is of unknown outcome: no bump yet");
        // b2's retry is a duplicate: b1 was written too.
        p.acked(2, 1, 1);
        assert!(!p.wants_bump());

        // This time b2's retry is out of order: neither was written.
        let mut p = PartitionSequences::default();
        p.may_be_written(1);
        p.may_be_written(2);
        p.failed(1, 0);
        p.out_of_order(2, 1, false);
        assert!(p.bump_now());

        // A batch known not written (a fatal code) leaves a gap at once; one never numbered none.
        let mut p = PartitionSequences::default();
        p.failed(3, -1);
        assert!(!p.wants_bump());
        p.failed(4, 0);
        assert!(p.bump_now());

        // A batch failing after a later one was acknowledged was written.
        let mut p = PartitionSequences::default();
        p.may_be_written(1);
        p.acked(2, 1, 1);
        p.failed(1, 0);
        assert!(!p.wants_bump());
    }

    #[test]
    fn sequences_wrap_and_epochs_run_out() {
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
        assert_eq!(next_epoch((7, 0)), Some((7, 1)));
        assert_eq!(next_epoch((7, i16::MAX)), None);
    }
}
