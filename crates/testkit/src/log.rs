//! The fake broker's partition logs: appends with producer-state checks as a real broker does
//! them, and the per-partition scripts that make a Produce answer go wrong on purpose.

use bytes::Bytes;
use krab_protocol::records::{Record, decode_batches};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// What the fake broker does with the next Produce batch of one partition (a script is a queue
/// of steps, one per batch received; an empty script appends and answers normally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceStep {
    /// Answer this partition with the error code; append nothing.
    Error(i16),
    /// Append the batch, answer normally after `delay` (tokio time).
    Delay(Duration),
    /// Append the batch, then never answer the request (a hung broker: the client times out).
    AppendThenHang,
    /// Append the batch, then close the connection without answering.
    AppendThenDrop,
    /// Append nothing and close the connection without answering.
    Drop,
}

/// One batch as appended to a partition's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// Offset of its first record.
    pub base_offset: i64,
    /// Producer id (-1: not idempotent).
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Base sequence number.
    pub base_sequence: i32,
    /// The records, with their offsets in this log.
    pub records: Vec<Record>,
}

/// Idempotence state of one producer id on one partition.
#[derive(Debug, Clone, Default)]
struct ProducerState {
    epoch: i16,
    /// (base sequence, last sequence, base offset) of the last batches appended (5, as Kafka).
    recent: VecDeque<(i32, i32, i64)>,
}

/// How many appended batches per producer a broker remembers for duplicate detection.
const RECENT_BATCHES: usize = 5;

/// One partition's log.
#[derive(Debug, Clone, Default)]
pub struct PartitionLog {
    batches: Vec<StoredBatch>,
    next_offset: i64,
    producers: HashMap<i64, ProducerState>,
    pub(crate) script: VecDeque<ProduceStep>,
}

/// What an append came to: the partition's error code and base offset.
pub(crate) type AppendResult = (i16, i64);

/// Error codes the log answers with.
const CORRUPT_MESSAGE: i16 = 2;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const INVALID_PRODUCER_EPOCH: i16 = 47;

fn last_sequence(base: i32, records: usize) -> i32 {
    // Sequences wrap at i32::MAX, as Kafka's do.
    let span = i32::try_from(records.saturating_sub(1)).unwrap_or(i32::MAX);
    if base > i32::MAX - span { span - (i32::MAX - base) - 1 } else { base + span }
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

impl PartitionLog {
    /// Every batch appended, in log order.
    pub fn batches(&self) -> &[StoredBatch] {
        &self.batches
    }

    /// The values of every record appended, in log order (`None` for null values).
    pub fn values(&self) -> Vec<Option<Bytes>> {
        self.batches.iter().flat_map(|b| b.records.iter().map(|r| r.value.clone())).collect()
    }

    /// The offset the next record will get.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Appends the record set of one Produce partition, checking producer state as a broker
    /// does; returns the error code and the base offset (-1 unless appended or duplicate).
    pub(crate) fn append(&mut self, records: Option<&Bytes>) -> AppendResult {
        let Some(bytes) = records else { return (CORRUPT_MESSAGE, -1) };
        let set = match decode_batches(bytes) {
            Ok(set) if !set.batches.is_empty() && !set.is_partial() => set,
            _ => return (CORRUPT_MESSAGE, -1),
        };
        // Producers send one batch per partition; each batch is checked, then appended.
        let mut first_offset = None;
        for batch in set.batches {
            let n = batch.records.len();
            if batch.producer_id >= 0 {
                let last = last_sequence(batch.base_sequence, n);
                match self.producers.get(&batch.producer_id) {
                    Some(p) if batch.producer_epoch < p.epoch => return (INVALID_PRODUCER_EPOCH, -1),
                    Some(p) if batch.producer_epoch == p.epoch => {
                        if let Some(&(_, _, offset)) =
                            p.recent.iter().find(|(b, l, _)| *b == batch.base_sequence && *l == last)
                        {
                            return (DUPLICATE_SEQUENCE_NUMBER, offset);
                        }
                        let expected = p.recent.back().map_or(0, |(_, l, _)| next_sequence(*l));
                        if batch.base_sequence != expected {
                            return (OUT_OF_ORDER_SEQUENCE_NUMBER, -1);
                        }
                    }
                    // A newer epoch: sequences start over at 0.
                    Some(_) if batch.base_sequence != 0 => return (OUT_OF_ORDER_SEQUENCE_NUMBER, -1),
                    // A producer id with no state on this partition: Kafka takes any first
                    // sequence (its state may have expired, or been truncated away).
                    _ => {}
                }
                let state = self.producers.entry(batch.producer_id).or_default();
                if batch.producer_epoch > state.epoch || state.recent.is_empty() {
                    state.epoch = batch.producer_epoch;
                    state.recent.clear();
                }
                state.recent.push_back((batch.base_sequence, last, self.next_offset));
                if state.recent.len() > RECENT_BATCHES {
                    state.recent.pop_front();
                }
            }
            let base_offset = self.next_offset;
            first_offset.get_or_insert(base_offset);
            let records = batch
                .records
                .into_iter()
                .enumerate()
                .map(|(i, mut r)| {
                    r.offset = base_offset + i as i64;
                    r
                })
                .collect();
            self.batches.push(StoredBatch {
                base_offset,
                producer_id: batch.producer_id,
                producer_epoch: batch.producer_epoch,
                base_sequence: batch.base_sequence,
                records,
            });
            self.next_offset += n as i64;
        }
        (0, first_offset.unwrap_or(-1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use krab_protocol::records::{Compression, RecordBatchEncoder};

    fn batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
        let mut e = RecordBatchEncoder::new(Compression::None).producer(pid, epoch, seq);
        for v in values {
            e.append(0, None, Some(v.as_bytes()), &[]).unwrap();
        }
        e.finish().unwrap()
    }

    #[test]
    fn in_order_batches_append_with_consecutive_offsets() {
        let mut log = PartitionLog::default();
        assert_eq!(log.append(Some(&batch(7, 0, 0, &["a", "b"]))), (0, 0));
        assert_eq!(log.append(Some(&batch(7, 0, 2, &["c"]))), (0, 2));
        assert_eq!(log.values(), vec![Some("a".into()), Some("b".into()), Some("c".into())]);
        assert_eq!(log.next_offset(), 3);
    }

    #[test]
    fn a_resent_batch_is_a_duplicate_and_is_not_appended_twice() {
        let mut log = PartitionLog::default();
        let b = batch(7, 0, 0, &["a", "b"]);
        assert_eq!(log.append(Some(&b)), (0, 0));
        assert_eq!(log.append(Some(&batch(7, 0, 2, &["c"]))), (0, 2));
        assert_eq!(log.append(Some(&b)), (DUPLICATE_SEQUENCE_NUMBER, 0));
        assert_eq!(log.values().len(), 3);
    }

    #[test]
    fn an_unknown_producer_may_start_at_any_sequence() {
        let mut log = PartitionLog::default();
        assert_eq!(log.append(Some(&batch(9, 0, 5, &["late"]))).0, 0);
        assert_eq!(log.append(Some(&batch(9, 0, 0, &["early"]))).0, OUT_OF_ORDER_SEQUENCE_NUMBER);
    }

    #[test]
    fn a_gap_is_out_of_order_and_a_new_epoch_must_start_at_zero() {
        let mut log = PartitionLog::default();
        assert_eq!(log.append(Some(&batch(7, 0, 0, &["a"]))).0, 0);
        assert_eq!(log.append(Some(&batch(7, 0, 2, &["c"]))).0, OUT_OF_ORDER_SEQUENCE_NUMBER);
        assert_eq!(log.append(Some(&batch(7, 1, 3, &["c"]))).0, OUT_OF_ORDER_SEQUENCE_NUMBER);
        assert_eq!(log.append(Some(&batch(7, 1, 0, &["c"]))).0, 0);
        // The old epoch is fenced now.
        assert_eq!(log.append(Some(&batch(7, 0, 1, &["d"]))).0, INVALID_PRODUCER_EPOCH);
        assert_eq!(log.values(), vec![Some("a".into()), Some("c".into())]);
    }

    #[test]
    fn non_idempotent_batches_are_never_deduplicated_and_garbage_is_corrupt() {
        let mut log = PartitionLog::default();
        let b = batch(-1, -1, -1, &["a"]);
        assert_eq!(log.append(Some(&b)).0, 0);
        assert_eq!(log.append(Some(&b)).0, 0);
        assert_eq!(log.values().len(), 2);
        assert_eq!(log.append(Some(&Bytes::from_static(b"garbage"))).0, CORRUPT_MESSAGE);
        assert_eq!(log.append(None).0, CORRUPT_MESSAGE);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(last_sequence(i32::MAX, 1), i32::MAX);
        assert_eq!(last_sequence(i32::MAX, 2), 0);
        assert_eq!(last_sequence(i32::MAX - 1, 4), 1);
        assert_eq!(next_sequence(i32::MAX), 0);
    }
}
