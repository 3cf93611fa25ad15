//! RecordBatch v2 (magic 2, KIP-98): encoding and decoding.
//!
//! ```text
//! offset  field
//!  0      baseOffset: i64
//!  8      batchLength: i32          bytes after this field
//! 12      partitionLeaderEpoch: i32
//! 16      magic: i8 (= 2)
//! 17      crc: u32                  CRC-32C of bytes 21..end
//! 21      attributes: i16
//! 23      lastOffsetDelta: i32
//! 27      baseTimestamp: i64
//! 35      maxTimestamp: i64
//! 43      producerId: i64
//! 51      producerEpoch: i16
//! 53      baseSequence: i32
//! 57      recordCount: i32
//! 61      records (compressed as a whole when the codec is not none)
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use nom::Parser;
use nom::number::complete::{be_i8, be_i16, be_i32, be_i64, be_u32};

use super::compression::{compress, decompress};
use super::record::{
    MIN_RECORD_SIZE, RecordContext, body_len, check_lengths, decode_records, framed_len,
    write_record,
};
use super::{Compression, DecodeOptions, Record, RecordHeader, RecordsError};

/// Size of the v2 batch header, up to and including `recordCount`.
pub const BATCH_HEADER_LEN: usize = 61;
/// Size of `baseOffset` + `batchLength`, which frame every batch and legacy message.
pub(crate) const LOG_OVERHEAD: usize = 12;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const RECORD_COUNT_OFFSET: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// Meaning of the timestamps in a batch (attributes bit 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer when the record was created.
    #[default]
    CreateTime,
    /// Set by the broker when it appended the batch; every record's timestamp is the batch's
    /// `max_timestamp`.
    LogAppendTime,
}

/// A decoded record batch: the v2 header with its attributes unpacked, plus its records.
///
/// Legacy (magic 0/1) message sets decode into this shape too, one batch per top-level
/// message, with `magic` 0 or 1 and the producer fields at -1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordBatch {
    /// Offset of the first record slot of the batch.
    pub base_offset: i64,
    /// Leader epoch of the partition when the batch was appended (-1 from producers).
    pub partition_leader_epoch: i32,
    /// Format version: 2, or 0/1 for legacy messages (encoding supports 2 only).
    pub magic: i8,
    /// Codec the records were compressed with.
    pub compression: Compression,
    /// What the timestamps mean.
    pub timestamp_type: TimestampType,
    /// Part of a transaction.
    pub is_transactional: bool,
    /// Holds control records (transaction markers); see
    /// [`ControlRecord`](super::ControlRecord).
    pub is_control: bool,
    /// `base_timestamp` holds the delete horizon set by the log cleaner (KIP-534).
    pub has_delete_horizon: bool,
    /// Offset of the last record slot relative to `base_offset` (compaction can remove records
    /// and leave it larger than `records.len() - 1`).
    pub last_offset_delta: i32,
    /// Timestamp of the first record; record timestamps are deltas from it on the wire.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id for idempotence/transactions, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// The records, with absolute offsets and timestamps.
    pub records: Vec<Record>,
}

impl Default for RecordBatch {
    fn default() -> Self {
        RecordBatch {
            base_offset: 0,
            partition_leader_epoch: -1,
            magic: 2,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            is_transactional: false,
            is_control: false,
            has_delete_horizon: false,
            last_offset_delta: -1,
            base_timestamp: -1,
            max_timestamp: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
        }
    }
}

/// The header fields that are written verbatim.
#[derive(Clone, Copy, Debug)]
struct Header {
    base_offset: i64,
    partition_leader_epoch: i32,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
}

impl Header {
    /// The 61 header bytes, with batch length and CRC zero (see [`seal`]).
    fn to_bytes(self) -> [u8; BATCH_HEADER_LEN] {
        let mut out = [0u8; BATCH_HEADER_LEN];
        let mut w = &mut out[..];
        w.put_i64(self.base_offset);
        w.put_i32(0); // batch length, patched by `seal`
        w.put_i32(self.partition_leader_epoch);
        w.put_i8(2);
        w.put_u32(0); // crc, patched by `seal`
        w.put_i16(self.attributes);
        w.put_i32(self.last_offset_delta);
        w.put_i64(self.base_timestamp);
        w.put_i64(self.max_timestamp);
        w.put_i64(self.producer_id);
        w.put_i16(self.producer_epoch);
        w.put_i32(self.base_sequence);
        w.put_i32(self.record_count);
        out
    }
}

fn attributes(
    compression: Compression,
    timestamp_type: TimestampType,
    transactional: bool,
    control: bool,
    delete_horizon: bool,
) -> i16 {
    let mut a = i16::from(compression.code());
    if timestamp_type == TimestampType::LogAppendTime {
        a |= TIMESTAMP_TYPE_BIT;
    }
    if transactional {
        a |= TRANSACTIONAL_BIT;
    }
    if control {
        a |= CONTROL_BIT;
    }
    if delete_horizon {
        a |= DELETE_HORIZON_BIT;
    }
    a
}

/// Patches batch length and CRC of the batch that starts at `start` and ends at `out`'s end.
fn seal(out: &mut BytesMut, start: usize) -> Result<(), RecordsError> {
    let length = out.len() - start - LOG_OVERHEAD;
    let length = i32::try_from(length).map_err(|_| RecordsError::InvalidInput {
        reason: "batch larger than i32::MAX bytes",
    })?;
    out[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + ATTRIBUTES_OFFSET..]);
    out[start + CRC_OFFSET..start + CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn offset_delta(offset: i64, base_offset: i64) -> Result<i32, RecordsError> {
    offset
        .checked_sub(base_offset)
        .and_then(|d| i32::try_from(d).ok())
        .ok_or(RecordsError::InvalidInput {
            reason: "record offset not within i32 of the batch's base offset",
        })
}

impl RecordBatch {
    /// A v2 batch holding `records`, with header fields derived from them: `base_offset` is
    /// the first record's offset, `last_offset_delta` the last's delta, `base_timestamp` the
    /// first record's timestamp and `max_timestamp` the largest; no compression, no producer.
    pub fn new(records: Vec<Record>) -> Self {
        let base_offset = records.first().map_or(0, |r| r.offset);
        let last_offset_delta = records.last().map_or(-1, |r| {
            i32::try_from(r.offset.wrapping_sub(base_offset)).unwrap_or(i32::MAX)
        });
        RecordBatch {
            base_offset,
            last_offset_delta,
            base_timestamp: records.first().map_or(-1, |r| r.timestamp),
            max_timestamp: records.iter().map(|r| r.timestamp).max().unwrap_or(-1),
            records,
            ..RecordBatch::default()
        }
    }

    /// Offset of the last record slot (`base_offset + last_offset_delta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset to fetch after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// The attributes field as written on the wire.
    pub fn attributes(&self) -> i16 {
        attributes(
            self.compression,
            self.timestamp_type,
            self.is_transactional,
            self.is_control,
            self.has_delete_horizon,
        )
    }

    /// Exact encoded size of this batch without compression (with compression, the size of
    /// the header plus the uncompressed records the codec will be handed).
    pub fn uncompressed_size(&self) -> Result<usize, RecordsError> {
        let mut n = BATCH_HEADER_LEN;
        for r in &self.records {
            n += self.record_size(r)?;
        }
        Ok(n)
    }

    fn record_size(&self, r: &Record) -> Result<usize, RecordsError> {
        let delta = offset_delta(r.offset, self.base_offset)?;
        check_lengths(r.key.as_deref(), r.value.as_deref(), &r.headers)?;
        Ok(framed_len(body_len(
            delta,
            r.timestamp.wrapping_sub(self.base_timestamp),
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        )))
    }

    fn write_records(&self, out: &mut BytesMut) {
        for r in &self.records {
            // Deltas were validated by `uncompressed_size`.
            let delta = (r.offset.wrapping_sub(self.base_offset)) as i32;
            let ts = r.timestamp.wrapping_sub(self.base_timestamp);
            let (key, value) = (r.key.as_deref(), r.value.as_deref());
            let body = body_len(delta, ts, key, value, &r.headers);
            write_record(out, body, delta, ts, key, value, &r.headers);
        }
    }

    /// Appends this batch to `out` in the v2 format, with the header fields written as they
    /// are (the caller keeps `last_offset_delta`, `base_timestamp` and `max_timestamp`
    /// consistent, as [`RecordBatch::new`] does) and each record's offset and timestamp
    /// written as deltas from `base_offset` and `base_timestamp`. Uses the codec's default
    /// level; see [`RecordBatchEncoder`] to choose one.
    ///
    /// On error nothing is appended.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), RecordsError> {
        if self.magic != 2 {
            return Err(RecordsError::InvalidInput {
                reason: "only magic 2 batches can be encoded",
            });
        }
        let count = i32::try_from(self.records.len()).map_err(|_| RecordsError::InvalidInput {
            reason: "more than i32::MAX records",
        })?;
        let size = self.uncompressed_size()?;
        let header = Header {
            base_offset: self.base_offset,
            partition_leader_epoch: self.partition_leader_epoch,
            attributes: self.attributes(),
            last_offset_delta: self.last_offset_delta,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: count,
        };
        let start = out.len();
        if self.compression == Compression::None {
            out.reserve(size);
            out.extend_from_slice(&header.to_bytes());
            self.write_records(out);
            debug_assert_eq!(out.len() - start, size);
        } else {
            let mut plain = BytesMut::with_capacity(size - BATCH_HEADER_LEN);
            self.write_records(&mut plain);
            out.reserve(BATCH_HEADER_LEN + plain.len() / 2 + 64);
            out.extend_from_slice(&header.to_bytes());
            if let Err(e) = compress(self.compression, None, &plain, out) {
                out.truncate(start);
                return Err(e);
            }
        }
        seal(out, start).inspect_err(|_| out.truncate(start))
    }

    /// [`RecordBatch::encode`] into a new buffer.
    pub fn to_bytes(&self) -> Result<Bytes, RecordsError> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

/// Builds one v2 batch record by record, writing each record to its buffer as it is appended
/// (the shape a producer's accumulator wants): offsets are assigned 0, 1, 2... from
/// `base_offset`, the first record's timestamp becomes the base timestamp, and the header is
/// filled in by [`finish`](RecordBatchEncoder::finish).
///
/// ```
/// use krab_protocol::records::{Compression, RecordBatchEncoder, decode_batches};
///
/// let mut enc = RecordBatchEncoder::new(Compression::None).producer(42, 0, 7);
/// enc.append(1_700_000_000_000, Some(b"key"), Some(b"value"), &[]).unwrap();
/// let bytes = enc.finish().unwrap();
/// let set = decode_batches(&bytes).unwrap();
/// assert_eq!(set.batches[0].producer_id, 42);
/// assert_eq!(set.batches[0].records[0].value.as_deref(), Some(&b"value"[..]));
/// ```
#[derive(Debug)]
pub struct RecordBatchEncoder {
    compression: Compression,
    level: Option<i32>,
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    timestamp_type: TimestampType,
    transactional: bool,
    control: bool,
    /// Uncompressed: header placeholder then records. Compressed: records only.
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl RecordBatchEncoder {
    /// An empty batch with the given codec, base offset 0, no producer (-1), CreateTime.
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 0)
    }

    /// Like [`new`](Self::new), reserving room for `capacity` bytes of records.
    pub fn with_capacity(compression: Compression, capacity: usize) -> Self {
        let mut buf;
        if compression == Compression::None {
            buf = BytesMut::with_capacity(BATCH_HEADER_LEN + capacity);
            buf.extend_from_slice(&[0u8; BATCH_HEADER_LEN]);
        } else {
            buf = BytesMut::with_capacity(capacity);
        }
        RecordBatchEncoder {
            compression,
            level: None,
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            control: false,
            buf,
            count: 0,
            base_timestamp: -1,
            max_timestamp: -1,
        }
    }

    /// Codec-specific compression level (gzip 0..=9, zstd 1..=22); ignored by snappy and lz4.
    pub fn compression_level(mut self, level: i32) -> Self {
        self.level = Some(level);
        self
    }

    /// Offset of the first record (0 for produce requests; the broker assigns offsets).
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    /// Partition leader epoch (-1 for produce requests).
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Idempotent/transactional producer identity and the sequence number of the first record.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as part of a transaction.
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Marks the batch as holding control records.
    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    /// Sets the timestamp type attribute.
    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }

    /// Number of records appended.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Exact size the batch would have if finished now without compression (header included).
    /// With compression this is an upper bound in practice, not a promise.
    pub fn uncompressed_size(&self) -> usize {
        if self.compression == Compression::None {
            self.buf.len()
        } else {
            BATCH_HEADER_LEN + self.buf.len()
        }
    }

    /// Bytes [`append`](Self::append) with these arguments would add to
    /// [`uncompressed_size`](Self::uncompressed_size).
    pub fn record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> usize {
        let ts = if self.count == 0 {
            0
        } else {
            timestamp.wrapping_sub(self.base_timestamp)
        };
        framed_len(body_len(self.count, ts, key, value, headers))
    }

    /// Appends a record with the next offset.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Result<(), RecordsError> {
        check_lengths(key, value, headers)?;
        if self.count == i32::MAX {
            return Err(RecordsError::InvalidInput {
                reason: "more than i32::MAX records",
            });
        }
        if self.count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        } else if timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
        }
        let ts = timestamp.wrapping_sub(self.base_timestamp);
        let body = body_len(self.count, ts, key, value, headers);
        self.buf.reserve(framed_len(body));
        write_record(&mut self.buf, body, self.count, ts, key, value, headers);
        self.count += 1;
        Ok(())
    }

    /// Appends `record`'s timestamp, key, value and headers (its offset is ignored: the
    /// encoder assigns the next one).
    pub fn append_record(&mut self, record: &Record) -> Result<(), RecordsError> {
        self.append(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        )
    }

    fn header(&self) -> Header {
        Header {
            base_offset: self.base_offset,
            partition_leader_epoch: self.partition_leader_epoch,
            attributes: attributes(
                self.compression,
                self.timestamp_type,
                self.transactional,
                self.control,
                false,
            ),
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.count,
        }
    }

    /// Writes the header (compressing the records first if needed) and returns the batch.
    /// Without compression this hands back the encoder's own buffer: no copy.
    pub fn finish(mut self) -> Result<Bytes, RecordsError> {
        let header = self.header().to_bytes();
        if self.compression == Compression::None {
            self.buf[..BATCH_HEADER_LEN].copy_from_slice(&header);
            seal(&mut self.buf, 0)?;
            return Ok(self.buf.freeze());
        }
        let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + self.buf.len() / 2 + 64);
        out.extend_from_slice(&header);
        compress(self.compression, self.level, &self.buf, &mut out)?;
        seal(&mut out, 0)?;
        Ok(out.freeze())
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

struct RawHeader {
    base_offset: i64,
    partition_leader_epoch: i32,
    magic: i8,
    crc: u32,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
}

fn parse_header(input: &[u8]) -> nom::IResult<&[u8], RawHeader> {
    let (
        rest,
        (
            base_offset,
            _batch_length,
            partition_leader_epoch,
            magic,
            crc,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        ),
    ) = (
        be_i64, be_i32, be_i32, be_i8, be_u32, be_i16, be_i32, be_i64, be_i64, be_i64, be_i16,
        be_i32, be_i32,
    )
        .parse(input)?;
    Ok((
        rest,
        RawHeader {
            base_offset,
            partition_leader_epoch,
            magic,
            crc,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        },
    ))
}

/// Decodes the v2 batch occupying exactly `src[start..end]`.
pub(crate) fn decode_v2(
    src: &Bytes,
    start: usize,
    end: usize,
    opts: &DecodeOptions,
) -> Result<RecordBatch, RecordsError> {
    let batch = &src[start..end];
    let Ok((_, h)) = parse_header(batch) else {
        return Err(RecordsError::invalid_length(
            "batch length (v2 needs at least 49)",
            batch.len() as i64 - LOG_OVERHEAD as i64,
            start + 8,
        ));
    };
    debug_assert_eq!(h.magic, 2);
    if opts.verify_crc {
        let actual = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
        if actual != h.crc {
            return Err(RecordsError::CrcMismatch {
                expected: h.crc,
                actual,
                offset: start,
            });
        }
    }
    let code = (h.attributes & 0x7) as u8;
    let compression =
        Compression::from_code(code).ok_or(RecordsError::UnknownCompression {
            code,
            offset: start + ATTRIBUTES_OFFSET,
        })?;
    let timestamp_type = if h.attributes & TIMESTAMP_TYPE_BIT != 0 {
        TimestampType::LogAppendTime
    } else {
        TimestampType::CreateTime
    };
    if h.record_count < 0 {
        return Err(RecordsError::invalid_length(
            "record count",
            i64::from(h.record_count),
            start + RECORD_COUNT_OFFSET,
        ));
    }
    let count = h.record_count as usize;
    let ctx = RecordContext {
        base_offset: h.base_offset,
        base_timestamp: h.base_timestamp,
        log_append_time: (timestamp_type == TimestampType::LogAppendTime)
            .then_some(h.max_timestamp),
    };
    let records_start = start + BATCH_HEADER_LEN;
    let too_many = |available: usize| {
        (count > available / MIN_RECORD_SIZE).then(|| {
            RecordsError::invalid_length(
                "record count",
                i64::from(h.record_count),
                start + RECORD_COUNT_OFFSET,
            )
        })
    };
    let records = if compression == Compression::None {
        if let Some(e) = too_many(end - records_start) {
            return Err(e);
        }
        decode_records(src, records_start, end, count, ctx)?
    } else {
        let plain = decompress(
            compression,
            &src[records_start..end],
            opts.max_decompressed_size,
            records_start,
        )?;
        let plain = Bytes::from(plain);
        if let Some(e) = too_many(plain.len()) {
            return Err(e);
        }
        decode_records(&plain, 0, plain.len(), count, ctx)
            .map_err(|e| e.in_compressed(compression, start))?
    };
    Ok(RecordBatch {
        base_offset: h.base_offset,
        partition_leader_epoch: h.partition_leader_epoch,
        magic: 2,
        compression,
        timestamp_type,
        is_transactional: h.attributes & TRANSACTIONAL_BIT != 0,
        is_control: h.attributes & CONTROL_BIT != 0,
        has_delete_horizon: h.attributes & DELETE_HORIZON_BIT != 0,
        last_offset_delta: h.last_offset_delta,
        base_timestamp: h.base_timestamp,
        max_timestamp: h.max_timestamp,
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        base_sequence: h.base_sequence,
        records,
    })
}
