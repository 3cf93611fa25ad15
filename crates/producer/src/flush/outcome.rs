//! What came of a Produce request: acknowledgements, and each failure classified (retry,
//! re-resolve, fail).

use super::FlushLoop;
use crate::error::{Error, ErrorKind};
use crate::record::{DeliverySender, RecordMetadata};
use crate::sender::JobOutcome;
use crate::time::{add, now};
use krab_buffer::{Payload, ProducerBatch, RecordSlot, TopicPartition};
use krab_cluster::ClusterError;
use krab_cluster::rebalance::{Recovery, classify, classify_code};
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::ProduceResponse;
use std::time::Instant;

impl FlushLoop {
    pub(super) fn on_produced(&mut self, outcome: JobOutcome) {
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
                            self.sequences_of(&batch.tp, |s| s.may_be_written(batch.id));
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
                // A request that may have reached the broker may have been written.
                let written = matches!(&e, ClusterError::Request { source, .. } if source.may_have_reached_broker());
                tracing::debug!(broker = job.broker, error = %e, ?recovery, "produce request failed");
                let error = Error::from(e);
                for batch in job.batches {
                    if written {
                        self.sequences_of(&batch.tp, |s| s.may_be_written(batch.id));
                    }
                    match recovery {
                        Recovery::Reresolve => self.reresolve(batch, job.generation, now, error.clone()),
                        Recovery::ReresolveBounded => self.reresolve_bounded(batch, job.generation, now, error.clone()),
                        Recovery::Retry => self.retry(batch, now, error.clone()),
                        Recovery::Fail => self.fail_batch(batch, error.clone()),
                    }
                }
            }
        }
    }

    pub(super) fn on_batch(
        &mut self,
        batch: ProducerBatch<DeliverySender>,
        code: ErrorCode,
        base_offset: i64,
        append_time: i64,
        routed_with: u64,
        now: Instant,
    ) {
        if matches!(code, ErrorCode::RequestTimedOut | ErrorCode::NotEnoughReplicasAfterAppend) {
            // The broker may have written the batch before answering so: it is of unknown
            // outcome, and its retries keep its stamp.
            self.sequences_of(&batch.tp, |s| s.may_be_written(batch.id));
        }
        match code {
            ErrorCode::None => self.succeed(batch, base_offset, append_time),
            // A retry of a batch the broker had already written: it is in the log once.
            ErrorCode::DuplicateSequenceNumber => self.succeed(batch, base_offset, append_time),
            ErrorCode::OutOfOrderSequenceNumber if self.idempotent => {
                let (id, base) = (batch.id, batch.base_sequence);
                let older_in_flight =
                    self.jobs.values().flat_map(|j| &j.batches).any(|b| b.tp == batch.tp && b.id < id);
                self.sequences_of(&batch.tp, |s| s.out_of_order(id, base, older_in_flight));
                let cause = broker_error(&batch.tp, code);
                self.retry(batch, now, cause);
            }
            ErrorCode::UnknownProducerId | ErrorCode::InvalidProducerEpoch if self.idempotent => {
                self.sequences_of(&batch.tp, |s| s.lost_state(batch.id));
                let cause = broker_error(&batch.tp, code);
                self.retry(batch, now, cause);
            }
            code => match classify_code(code) {
                Recovery::Reresolve => {
                    let cause = broker_error(&batch.tp, code);
                    self.reresolve(batch, routed_with, now, cause)
                }
                Recovery::ReresolveBounded => {
                    let cause = broker_error(&batch.tp, code);
                    self.reresolve_bounded(batch, routed_with, now, cause)
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

    pub(super) fn succeed(&mut self, batch: ProducerBatch<DeliverySender>, base_offset: i64, append_time: i64) {
        self.acc.complete(&batch.tp);
        self.acc.confirm(&batch.tp);
        if self.recovering.remove(&batch.tp) && self.recovering.is_empty() {
            self.resolve_streak = 0;
        }
        let (id, base, count) = (batch.id, batch.base_sequence, batch.records.len());
        self.sequences_of(&batch.tp, |s| s.acked(id, base, count));
        self.unknown_rounds.remove(&batch.tp);
        self.stats.acked(&batch.tp, batch.records.len() as u64);
        let sent_bytes = match &batch.payload {
            Payload::Encoded(bytes) => bytes.len(),
            Payload::Pending(_) => 0,
        };
        let latency = batch.records.first().map(|r| now().saturating_duration_since(r.enqueued_at));
        self.metrics.acked_batch(sent_bytes, batch.records.len(), latency);
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

    pub(super) fn fail_records(records: Vec<RecordSlot<DeliverySender>>, error: &Error) {
        for slot in records {
            slot.token.send(Err(error.clone()));
        }
    }

    pub(super) fn fail_batch(&mut self, batch: ProducerBatch<DeliverySender>, error: Error) {
        self.acc.complete(&batch.tp);
        self.stats.failed(&batch.tp, batch.records.len() as u64);
        // Its sequence numbers were used: a gap, unless it may have been written.
        let (id, base) = (batch.id, batch.base_sequence);
        self.sequences_of(&batch.tp, |s| s.failed(id, base));
        let tp = batch.tp.clone();
        Self::fail_records(batch.records, &error);
        self.forget_if_drained(&tp);
    }

    /// Fails `batch` if its oldest record is past the delivery timeout, or if it used up its
    /// `retries` (then with `cause`, the error of its last attempt); otherwise hands it back.
    pub(super) fn unless_timed_out(
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
}

fn broker_error(tp: &TopicPartition, code: ErrorCode) -> Error {
    Error::new(ErrorKind::Broker(code), format!("{tp} refused by the broker: {code}"))
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
