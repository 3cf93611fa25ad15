//! The record path, sans I/O: one partition's `records` bytes from a Fetch response become the
//! records the application may see.
//!
//! Rules, in the order they apply to each batch of the set:
//!
//! - The set is walked batch by batch from its own length fields, so one partition's bytes never
//!   spill into another's; an incomplete trailing batch (a broker cuts the set at its size limit)
//!   ends the data.
//! - Headers are read before anything is decompressed: a batch wholly below the fetch offset, a
//!   control batch, or a batch of an aborted transaction (`read_committed`) is stepped over
//!   without decompressing it. Its CRC is still checked (with `check.crcs`), since its header
//!   decides how far the position moves.
//! - Aborted transactions come as `(producer id, first offset)` pairs in any order; they are
//!   sorted by first offset here, and a producer's transaction counts as aborted from its first
//!   offset until that producer's ABORT marker.
//! - Under `read_committed`, nothing at or past the last stable offset is returned.
//! - Records below the fetch offset (the start of a batch fetched mid-way) are dropped.
//! - The first malformed batch stops the walk: the records before it are returned, with the
//!   error, and the next offset is that batch's base offset, so nothing is skipped silently.

use bytes::Bytes;
use krab_protocol::messages::fetch::AbortedTransaction;
use krab_protocol::records::{
    BATCH_HEADER_LEN, Compression, ControlRecord, ControlRecordType, DecodeOptions, Record, RecordBatches,
    RecordsError, TimestampType,
};
use std::collections::HashSet;

/// Bytes before every batch's payload length is known: base offset and batch length.
const LOG_OVERHEAD: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const PRODUCER_ID_OFFSET: usize = 43;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// Which records a consumer may read (`isolation.level`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IsolationLevel {
    /// `read_uncommitted`: every record, aborted transactions included (Kafka's default).
    #[default]
    ReadUncommitted,
    /// `read_committed`: records of committed transactions and non-transactional records, up to
    /// the last stable offset.
    ReadCommitted,
}

impl IsolationLevel {
    /// The value of the Fetch and ListOffsets `IsolationLevel` field.
    pub fn as_i8(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// What one partition's fetched bytes are decoded against.
#[derive(Debug, Clone)]
pub(crate) struct PartitionInput<'a> {
    /// The offset the request asked for: records below it are dropped.
    pub(crate) fetch_offset: i64,
    /// The partition's `records` field.
    pub(crate) records: Bytes,
    /// The isolation level the request used.
    pub(crate) isolation: IsolationLevel,
    /// The response's last stable offset (-1: unknown).
    pub(crate) last_stable_offset: i64,
    /// The response's aborted transactions, in any order.
    pub(crate) aborted: &'a [AbortedTransaction],
    /// CRC and decompression settings.
    pub(crate) options: &'a DecodeOptions,
}

/// Records of one batch, in offset order, with what the batch says about all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// The batch's partition leader epoch; `None` for legacy batches and `-1`.
    pub(crate) leader_epoch: Option<i32>,
    /// What the timestamps mean.
    pub(crate) timestamp_type: TimestampType,
    /// The records to deliver (never empty).
    pub(crate) records: Vec<Record>,
    /// Bytes this chunk holds in memory (decompressed size for compressed batches).
    pub(crate) bytes: usize,
    /// The offset after this chunk's batch: where the position goes once the chunk is drained.
    pub(crate) next_offset: i64,
}

/// The outcome of decoding one partition's bytes.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// Deliverable records, batch by batch.
    pub(crate) chunks: Vec<Chunk>,
    /// The offset to fetch next: after the last batch consumed or stepped over.
    pub(crate) next_offset: i64,
    /// The leader epoch of the last batch consumed or stepped over, if it had one.
    pub(crate) last_epoch: Option<i32>,
    /// The first malformed batch, if any (the walk stopped there).
    pub(crate) error: Option<RecordsError>,
    /// Whether the set ended with an incomplete batch.
    pub(crate) partial: bool,
}

#[cfg(test)]
impl Decoded {
    /// Bytes held by the chunks.
    pub(crate) fn bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.bytes).sum()
    }

    /// Records across the chunks.
    pub(crate) fn record_count(&self) -> usize {
        self.chunks.iter().map(|c| c.records.len()).sum()
    }
}

/// The aborted-transaction index: pending transactions sorted by first offset, and the producers
/// whose transaction is currently aborted.
struct Aborted {
    pending: Vec<(i64, i64)>,
    next: usize,
    active: HashSet<i64>,
}

impl Aborted {
    fn new(list: &[AbortedTransaction]) -> Self {
        let mut pending: Vec<(i64, i64)> = list.iter().map(|t| (t.first_offset, t.producer_id)).collect();
        pending.sort_unstable();
        Aborted { pending, next: 0, active: HashSet::new() }
    }

    /// Activates every transaction starting at or before `last_offset`.
    fn advance_to(&mut self, last_offset: i64) {
        while let Some(&(first, pid)) = self.pending.get(self.next) {
            if first > last_offset {
                break;
            }
            self.active.insert(pid);
            self.next += 1;
        }
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Decodes one partition's records (see the module docs for the rules).
pub(crate) fn decode_partition(input: &PartitionInput<'_>) -> Decoded {
    let data = &input.records;
    let read_committed = input.isolation == IsolationLevel::ReadCommitted;
    let stable_end = if read_committed && input.last_stable_offset >= 0 { input.last_stable_offset } else { i64::MAX };
    let mut aborted = Aborted::new(if read_committed { input.aborted } else { &[] });
    let mut out =
        Decoded { chunks: Vec::new(), next_offset: input.fetch_offset, last_epoch: None, error: None, partial: false };
    let mut pos = 0usize;
    while pos < data.len() {
        let left = data.len() - pos;
        if left < LOG_OVERHEAD {
            out.partial = true;
            break;
        }
        let base_offset = be_i64(data, pos);
        let length = be_i32(data, pos + 8);
        if length < 0 {
            out.error =
                Some(RecordsError::InvalidLength { what: "batch length", value: i64::from(length), offset: pos + 8 });
            break;
        }
        let total = LOG_OVERHEAD + length as usize;
        if total > left {
            out.partial = true;
            break;
        }
        if base_offset >= stable_end {
            break;
        }
        let batch = data.slice(pos..pos + total);
        let end = pos + total;
        if total > MAGIC_OFFSET && batch[MAGIC_OFFSET] == 2 && total >= BATCH_HEADER_LEN {
            let attributes = be_i16(&batch, ATTRIBUTES_OFFSET);
            let last_offset = base_offset.saturating_add(i64::from(be_i32(&batch, LAST_OFFSET_DELTA_OFFSET)));
            let producer_id = be_i64(&batch, PRODUCER_ID_OFFSET);
            let epoch = be_i32(&batch, LOG_OVERHEAD);
            let transactional = attributes & TRANSACTIONAL_BIT != 0;
            let control = attributes & CONTROL_BIT != 0;
            if transactional {
                aborted.advance_to(last_offset);
            }
            let below = last_offset < input.fetch_offset;
            let aborted_data = transactional && !control && aborted.active.contains(&producer_id);
            if below || aborted_data || control {
                if input.options.verify_crc {
                    let expected = be_i32(&batch, CRC_OFFSET) as u32;
                    let actual = crc32c_of(&batch[ATTRIBUTES_OFFSET..]);
                    if actual != expected {
                        out.error = Some(RecordsError::CrcMismatch { expected, actual, offset: pos });
                        break;
                    }
                }
                if control && !below && transactional && is_abort_marker(&batch, input.options) {
                    aborted.active.remove(&producer_id);
                }
                if last_offset < base_offset {
                    out.error = Some(RecordsError::InvalidLength {
                        what: "last offset delta",
                        value: last_offset - base_offset,
                        offset: pos + LAST_OFFSET_DELTA_OFFSET,
                    });
                    break;
                }
                out.next_offset = out.next_offset.max(last_offset.saturating_add(1).min(stable_end));
                out.last_epoch = (epoch >= 0).then_some(epoch).or(out.last_epoch);
                pos = end;
                continue;
            }
        }
        // A batch to deliver (v2 data, or a legacy message): decode it whole.
        let mut batches = RecordBatches::with_options(batch.clone(), input.options.clone());
        let decoded = match batches.next() {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                out.error = Some(e.at_offset_shift(pos));
                break;
            }
            None => {
                out.partial = true;
                break;
            }
        };
        // What the chunk pins in memory: the batch (or its decompressed payload) and the
        // record structs pointing into it.
        let payload =
            if decoded.compression == Compression::None { total } else { decoded.uncompressed_size().unwrap_or(total) };
        let bytes = payload + decoded.records.len() * std::mem::size_of::<Record>();
        let next_offset = decoded.next_offset().min(stable_end);
        let leader_epoch =
            (decoded.magic >= 2 && decoded.partition_leader_epoch >= 0).then_some(decoded.partition_leader_epoch);
        let records: Vec<Record> =
            decoded.records.into_iter().filter(|r| r.offset >= input.fetch_offset && r.offset < stable_end).collect();
        if !records.is_empty() {
            out.chunks.push(Chunk {
                leader_epoch,
                timestamp_type: decoded.timestamp_type,
                records,
                bytes,
                next_offset,
            });
        }
        out.next_offset = out.next_offset.max(next_offset);
        out.last_epoch = leader_epoch.or(out.last_epoch);
        pos = end;
    }
    out
}

/// Whether a control batch carries an ABORT marker (its first record's key says so).
fn is_abort_marker(batch: &Bytes, options: &DecodeOptions) -> bool {
    let mut it = RecordBatches::with_options(batch.clone(), options.clone());
    match it.next() {
        Some(Ok(b)) => b
            .records
            .first()
            .and_then(|r| r.key.as_deref())
            .and_then(|k| ControlRecord::parse(k).ok())
            .is_some_and(|c| c.kind == ControlRecordType::Abort),
        _ => false,
    }
}

fn crc32c_of(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Shifting the byte offset of an error found in a sub-slice, so that it points into the whole
/// partition's record set.
trait ShiftOffset {
    fn at_offset_shift(self, by: usize) -> Self;
}

impl ShiftOffset for RecordsError {
    fn at_offset_shift(self, by: usize) -> Self {
        match self {
            RecordsError::CrcMismatch { expected, actual, offset } => {
                RecordsError::CrcMismatch { expected, actual, offset: offset + by }
            }
            RecordsError::InvalidLength { what, value, offset } => {
                RecordsError::InvalidLength { what, value, offset: offset + by }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use krab_protocol::records::{EndTxnMarker, RecordBatchEncoder};

    fn encoder(base: i64, epoch: i32, compression: Compression) -> RecordBatchEncoder {
        RecordBatchEncoder::new(compression).base_offset(base).partition_leader_epoch(epoch)
    }

    fn fill(mut enc: RecordBatchEncoder, base: i64, n: i64) -> Bytes {
        for o in base..base + n {
            enc.append(1_000 + o, Some(format!("k{o}").as_bytes()), Some(format!("v{o}").as_bytes()), &[]).unwrap();
        }
        enc.finish().unwrap()
    }

    /// A plain batch of `n` records from `base`.
    fn data(base: i64, n: i64) -> Bytes {
        fill(encoder(base, 3, Compression::None), base, n)
    }

    /// A transactional batch of producer `pid`.
    fn txn(base: i64, n: i64, pid: i64) -> Bytes {
        fill(encoder(base, 3, Compression::None).producer(pid, 0, 0).transactional(true), base, n)
    }

    /// A COMMIT or ABORT marker of producer `pid` at `offset`.
    fn marker(offset: i64, pid: i64, kind: ControlRecordType) -> Bytes {
        let mut enc = encoder(offset, 3, Compression::None).producer(pid, 0, 0).transactional(true).control(true);
        let key = ControlRecord { version: 0, kind }.to_bytes();
        let value = EndTxnMarker { version: 0, coordinator_epoch: 1 }.to_bytes();
        enc.append(5, Some(&key), Some(&value), &[]).unwrap();
        enc.finish().unwrap()
    }

    fn set(parts: &[Bytes]) -> Bytes {
        let mut out = BytesMut::new();
        for p in parts {
            out.extend_from_slice(p);
        }
        out.freeze()
    }

    fn aborted(list: &[(i64, i64)]) -> Vec<AbortedTransaction> {
        list.iter()
            .map(|&(producer_id, first_offset)| AbortedTransaction { producer_id, first_offset, ..Default::default() })
            .collect()
    }

    fn run(
        records: Bytes,
        fetch_offset: i64,
        isolation: IsolationLevel,
        lso: i64,
        ab: &[AbortedTransaction],
    ) -> Decoded {
        let options = DecodeOptions::default();
        decode_partition(&PartitionInput {
            fetch_offset,
            records,
            isolation,
            last_stable_offset: lso,
            aborted: ab,
            options: &options,
        })
    }

    fn offsets(d: &Decoded) -> Vec<i64> {
        d.chunks.iter().flat_map(|c| c.records.iter().map(|r| r.offset)).collect()
    }

    #[test]
    fn records_below_the_fetch_offset_are_skipped() {
        let d = run(set(&[data(0, 5), data(5, 5)]), 7, IsolationLevel::ReadUncommitted, -1, &[]);
        assert_eq!(offsets(&d), vec![7, 8, 9]);
        assert_eq!(d.next_offset, 10);
        assert!(d.error.is_none() && !d.partial);
        // Mid-batch: the first batch starts before the fetch offset.
        let d = run(data(0, 10), 4, IsolationLevel::ReadUncommitted, -1, &[]);
        assert_eq!(offsets(&d), (4..10).collect::<Vec<_>>());
        let r = &d.chunks[0].records[0];
        assert_eq!((r.key.as_deref(), r.value.as_deref()), (Some(&b"k4"[..]), Some(&b"v4"[..])));
        assert_eq!(d.chunks[0].next_offset, 10);
    }

    #[test]
    fn values_are_slices_of_the_fetched_bytes() {
        let bytes = data(0, 3);
        let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        let d = run(bytes.clone(), 0, IsolationLevel::ReadUncommitted, -1, &[]);
        for r in &d.chunks[0].records {
            assert!(range.contains(&(r.value.as_ref().unwrap().as_ptr() as usize)), "value was copied");
        }
    }

    #[test]
    fn a_partial_trailing_batch_ends_the_data() {
        let second = data(3, 3);
        let cut = second.slice(..second.len() - 4);
        let d = run(set(&[data(0, 3), cut.clone()]), 0, IsolationLevel::ReadUncommitted, -1, &[]);
        assert_eq!(offsets(&d), vec![0, 1, 2]);
        assert_eq!(d.next_offset, 3);
        assert!(d.partial && d.error.is_none());
        // Fewer bytes than a batch length field: still partial, not corruption.
        let d = run(set(&[data(0, 3), cut.slice(..7)]), 0, IsolationLevel::ReadUncommitted, -1, &[]);
        assert!(d.partial && d.error.is_none());
        assert_eq!(d.next_offset, 3);
    }

    #[test]
    fn control_batches_are_hidden_and_stepped_over() {
        let records = set(&[txn(0, 3, 9), marker(3, 9, ControlRecordType::Commit), data(4, 2)]);
        for isolation in [IsolationLevel::ReadUncommitted, IsolationLevel::ReadCommitted] {
            let d = run(records.clone(), 0, isolation, -1, &[]);
            assert_eq!(offsets(&d), vec![0, 1, 2, 4, 5], "{isolation:?}");
            assert_eq!(d.next_offset, 6);
        }
        // A response holding only a marker still moves the position past it.
        let d = run(marker(3, 9, ControlRecordType::Commit), 3, IsolationLevel::ReadCommitted, -1, &[]);
        assert!(d.chunks.is_empty());
        assert_eq!(d.next_offset, 4);
    }

    #[test]
    fn read_committed_drops_aborted_transactions_from_an_unsorted_list() {
        // pid 1 aborts 0..2; pid 2 commits 3..4 (marker 5) interleaved with pid 3 aborting 6..7
        // (marker 8); pid 1 commits a later transaction at 9..10 (marker 11); plain record 12.
        let records = set(&[
            txn(0, 2, 1),
            marker(2, 1, ControlRecordType::Abort),
            txn(3, 2, 2),
            marker(5, 2, ControlRecordType::Commit),
            txn(6, 2, 3),
            marker(8, 3, ControlRecordType::Abort),
            txn(9, 2, 1),
            marker(11, 1, ControlRecordType::Commit),
            data(12, 1),
        ]);
        // Unsorted, as Redpanda sends them.
        let list = aborted(&[(3, 6), (1, 0)]);
        let d = run(records.clone(), 0, IsolationLevel::ReadCommitted, 13, &list);
        assert_eq!(offsets(&d), vec![3, 4, 9, 10, 12]);
        assert_eq!(d.next_offset, 13);
        // The same list sorted gives the same answer.
        let sorted = aborted(&[(1, 0), (3, 6)]);
        assert_eq!(
            offsets(&run(records.clone(), 0, IsolationLevel::ReadCommitted, 13, &sorted)),
            vec![3, 4, 9, 10, 12]
        );
        // read_uncommitted ignores the list.
        let d = run(records, 0, IsolationLevel::ReadUncommitted, 13, &list);
        assert_eq!(offsets(&d), vec![0, 1, 3, 4, 6, 7, 9, 10, 12]);
    }

    #[test]
    fn read_committed_stops_at_the_last_stable_offset() {
        let d = run(set(&[data(0, 5), data(5, 5)]), 0, IsolationLevel::ReadCommitted, 5, &[]);
        assert_eq!(offsets(&d), (0..5).collect::<Vec<_>>());
        assert_eq!(d.next_offset, 5);
        // A batch straddling the LSO is cut there.
        let d = run(data(0, 10), 2, IsolationLevel::ReadCommitted, 6, &[]);
        assert_eq!(offsets(&d), vec![2, 3, 4, 5]);
        assert_eq!(d.next_offset, 6);
        assert_eq!(d.chunks[0].next_offset, 6);
    }

    fn flip_last_value_byte(batch: &Bytes) -> Bytes {
        let mut b = BytesMut::from(&batch[..]);
        let n = b.len();
        b[n - 2] ^= 0x55;
        b.freeze()
    }

    #[test]
    fn a_bad_crc_is_a_typed_error_after_the_good_batches() {
        let records = set(&[data(0, 3), flip_last_value_byte(&data(3, 3)), data(6, 3)]);
        let d = run(records.clone(), 0, IsolationLevel::ReadUncommitted, -1, &[]);
        assert_eq!(offsets(&d), vec![0, 1, 2]);
        assert_eq!(d.next_offset, 3, "the position stays at the bad batch");
        assert!(matches!(d.error, Some(RecordsError::CrcMismatch { .. })), "{:?}", d.error);
        // check.crcs=false lets the batch through.
        let options = DecodeOptions::default().with_verify_crc(false);
        let d = decode_partition(&PartitionInput {
            fetch_offset: 0,
            records,
            isolation: IsolationLevel::ReadUncommitted,
            last_stable_offset: -1,
            aborted: &[],
            options: &options,
        });
        assert!(d.error.is_none());
        assert_eq!(d.record_count(), 9);
    }

    #[test]
    fn a_corrupt_batch_that_would_be_stepped_over_is_still_an_error() {
        let bad_marker = flip_last_value_byte(&marker(3, 9, ControlRecordType::Commit));
        let d = run(set(&[txn(0, 3, 9), bad_marker]), 0, IsolationLevel::ReadCommitted, -1, &[]);
        assert_eq!(offsets(&d), vec![0, 1, 2]);
        assert_eq!(d.next_offset, 3);
        assert!(matches!(d.error, Some(RecordsError::CrcMismatch { .. })));
    }

    fn reseal(mut b: BytesMut) -> Bytes {
        let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn hostile_record_counts_and_lengths_are_errors_not_allocations() {
        let mut b = BytesMut::from(&data(0, 3)[..]);
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let d = run(reseal(b), 0, IsolationLevel::ReadUncommitted, -1, &[]);
        assert!(matches!(d.error, Some(RecordsError::InvalidLength { what: "record count", .. })), "{:?}", d.error);
        let mut b = BytesMut::from(&data(0, 3)[..]);
        b[57..61].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(run(reseal(b), 0, IsolationLevel::ReadUncommitted, -1, &[]).error.is_some());
        // A negative batch length.
        let mut b = BytesMut::from(&data(0, 3)[..]);
        b[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        let d = run(b.freeze(), 0, IsolationLevel::ReadUncommitted, -1, &[]);
        assert!(matches!(d.error, Some(RecordsError::InvalidLength { what: "batch length", .. })));
        // A tiny batch length.
        let mut b = BytesMut::from(&data(0, 3)[..]);
        b[8..12].copy_from_slice(&5i32.to_be_bytes());
        assert!(run(b.freeze(), 0, IsolationLevel::ReadUncommitted, -1, &[]).error.is_some());
        // A negative last offset delta on a batch that would be stepped over.
        let mut b = BytesMut::from(&marker(3, 9, ControlRecordType::Commit)[..]);
        b[23..27].copy_from_slice(&(-10i32).to_be_bytes());
        let d = run(reseal(b), 0, IsolationLevel::ReadCommitted, -1, &[]);
        assert!(d.error.is_some());
        assert_eq!(d.next_offset, 0);
    }

    #[test]
    fn a_decompression_bomb_is_refused_within_the_bound() {
        let mut enc = encoder(0, 3, Compression::Gzip);
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..4 {
            enc.append(1, None, Some(&zeros), &[]).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 64 << 10, "compresses well: {}", bomb.len());
        let options = DecodeOptions::default().with_max_decompressed_size(1 << 20);
        let d = decode_partition(&PartitionInput {
            fetch_offset: 0,
            records: bomb,
            isolation: IsolationLevel::ReadUncommitted,
            last_stable_offset: -1,
            aborted: &[],
            options: &options,
        });
        assert!(matches!(d.error, Some(RecordsError::DecompressedTooLarge { .. })), "{:?}", d.error);
        assert!(d.chunks.is_empty());
    }

    #[test]
    fn compressed_batches_count_their_decompressed_size_and_keep_the_epoch() {
        let batch = fill(encoder(10, 7, Compression::Gzip), 10, 50);
        let d = run(batch.clone(), 10, IsolationLevel::ReadUncommitted, -1, &[]);
        assert_eq!(d.record_count(), 50);
        assert!(d.bytes() > batch.len(), "{} vs {}", d.bytes(), batch.len());
        assert_eq!(d.chunks[0].leader_epoch, Some(7));
        assert_eq!(d.last_epoch, Some(7));
        assert_eq!(d.next_offset, 60);
    }
}
