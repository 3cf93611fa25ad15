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

use super::compression::{Budget, compress};
use super::record::{MIN_RECORD_SIZE, RecordContext, body_len, decode_records, framed_len, record_bound, write_record};
use super::varint::SliceWriter;
use super::{Compression, DecodeOptions, Record, RecordHeader, RecordsError};

/// Size of the v2 batch header, up to and including `recordCount`.
pub const BATCH_HEADER_LEN: usize = 61;
/// How far ahead of the records [`RecordBatchEncoder`] initializes its buffer.
const GROW_STEP: usize = 16 * 1024;
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
    let length =
        i32::try_from(length).map_err(|_| RecordsError::InvalidInput { reason: "batch larger than i32::MAX bytes" })?;
    out[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + ATTRIBUTES_OFFSET..]);
    out[start + CRC_OFFSET..start + CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Rewrites the producer id, epoch and base sequence of one encoded v2 batch in place and
/// recomputes its CRC: a producer whose epoch was bumped resends queued batches under new
/// sequence numbers without re-encoding their records.
pub fn restamp_producer(
    batch: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<(), RecordsError> {
    if batch.len() < BATCH_HEADER_LEN || batch[16] != 2 {
        return Err(RecordsError::InvalidInput { reason: "not an encoded v2 record batch" });
    }
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn offset_delta(offset: i64, base_offset: i64) -> Result<i32, RecordsError> {
    offset
        .checked_sub(base_offset)
        .and_then(|d| i32::try_from(d).ok())
        .ok_or_else(|| RecordsError::InvalidInput { reason: "record offset not within i32 of the batch's base offset" })
}

impl RecordBatch {
    /// A v2 batch holding `records`, with header fields derived from them: `base_offset` is
    /// the first record's offset, `last_offset_delta` the last's delta, `base_timestamp` the
    /// first record's timestamp and `max_timestamp` the largest; no compression, no producer.
    pub fn new(records: Vec<Record>) -> Self {
        let base_offset = records.first().map_or(0, |r| r.offset);
        let last_offset_delta =
            records.last().map_or(-1, |r| i32::try_from(r.offset.wrapping_sub(base_offset)).unwrap_or(i32::MAX));
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
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
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
            let (key, value) = (r.key.as_deref(), r.value.as_deref());
            record_bound(key, value, &r.headers)?;
            let delta = offset_delta(r.offset, self.base_offset)?;
            let ts = r.timestamp.wrapping_sub(self.base_timestamp);
            n += framed_len(body_len(delta, ts, key, value, &r.headers));
        }
        Ok(n)
    }

    /// An upper bound of the records' encoded size; checks every record is representable.
    fn records_bound(&self) -> Result<usize, RecordsError> {
        let mut n = 0usize;
        for r in &self.records {
            n = n.saturating_add(record_bound(r.key.as_deref(), r.value.as_deref(), &r.headers)?);
        }
        Ok(n)
    }

    /// Writes the records into `buf`, sized `records_bound() + SliceWriter::SLACK`, and
    /// returns the bytes written. Lengths were checked by `records_bound`, offsets are checked
    /// here.
    fn write_records(&self, buf: &mut [u8]) -> Result<usize, RecordsError> {
        let mut w = SliceWriter::new(buf);
        for r in &self.records {
            let delta = offset_delta(r.offset, self.base_offset)?;
            let ts = r.timestamp.wrapping_sub(self.base_timestamp);
            write_record(&mut w, delta, ts, r.key.as_deref(), r.value.as_deref(), &r.headers);
        }
        Ok(w.position())
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
            return Err(RecordsError::InvalidInput { reason: "only magic 2 batches can be encoded" });
        }
        let count = i32::try_from(self.records.len())
            .map_err(|_| RecordsError::InvalidInput { reason: "more than i32::MAX records" })?;
        // One cheap pass for an upper bound, so the buffer never grows while writing.
        let bound = self.records_bound()?;
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
        }
        .to_bytes();
        let start = out.len();
        let room = bound.saturating_add(SliceWriter::SLACK);
        let written = if self.compression == Compression::None {
            // Size the buffer once and write records straight into it.
            out.resize(start + BATCH_HEADER_LEN + room, 0);
            out[start..start + BATCH_HEADER_LEN].copy_from_slice(&header);
            self.write_records(&mut out[start + BATCH_HEADER_LEN..]).map(|n| out.truncate(start + BATCH_HEADER_LEN + n))
        } else {
            let mut plain = vec![0u8; room];
            self.write_records(&mut plain).and_then(|n| {
                out.reserve(BATCH_HEADER_LEN + n / 2 + 64);
                out.extend_from_slice(&header);
                compress(self.compression, None, &plain[..n], out)
            })
        };
        written.and_then(|()| seal(out, start)).inspect_err(|_| out.truncate(start))
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
    /// Uncompressed: header placeholder then records. Compressed: records only. Only the first
    /// `written` bytes are used; the rest of its length is initialized room for the next records
    /// (zeros, or old bytes of a reused buffer: every byte is overwritten before it counts).
    buf: BytesMut,
    written: usize,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl RecordBatchEncoder {
    /// An empty batch with the given codec, base offset 0, no producer (-1), CreateTime.
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 0)
    }

    /// Like [`new`](Self::new), reserving room for `capacity` bytes of records. The room is
    /// allocated, not touched: it is initialized a little at a time as records need it.
    pub fn with_capacity(compression: Compression, capacity: usize) -> Self {
        Self::with_buffer(compression, BytesMut::new(), capacity)
    }

    /// Like [`with_capacity`](Self::with_capacity), writing into `buf`, a buffer to reuse (e.g.
    /// the bytes of a batch that was sent and is done with, or the spare that
    /// [`finish_reusing`](Self::finish_reusing) hands back): its contents are discarded, its
    /// allocation and its initialized length are reused, so a producer that recycles buffers
    /// allocates and zeroes nothing per batch.
    pub fn with_buffer(compression: Compression, mut buf: BytesMut, capacity: usize) -> Self {
        let written = if compression == Compression::None { BATCH_HEADER_LEN } else { 0 };
        if buf.capacity() < written + capacity {
            buf.reserve(written + capacity - buf.len());
        }
        if buf.len() < written {
            buf.resize(written, 0);
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
            written,
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
        self.set_producer(producer_id, producer_epoch, base_sequence);
        self
    }

    /// [`producer`](Self::producer) in place, e.g. to renumber a batch after an epoch bump.
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
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
        if self.compression == Compression::None { self.written } else { BATCH_HEADER_LEN + self.written }
    }

    /// The most bytes [`finish`](Self::finish) can return for the records appended so far,
    /// whatever they compress to: exact without compression.
    pub fn max_encoded_len(&self) -> usize {
        if self.compression == Compression::None {
            self.written
        } else {
            BATCH_HEADER_LEN + super::compression::max_compressed_len(self.compression, self.written)
        }
    }

    /// The codec the batch is compressed with when finished.
    pub fn compression(&self) -> Compression {
        self.compression
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
        let ts = if self.count == 0 { 0 } else { timestamp.wrapping_sub(self.base_timestamp) };
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
        let room = record_bound(key, value, headers)? + SliceWriter::SLACK;
        if self.count == i32::MAX {
            return Err(RecordsError::InvalidInput { reason: "more than i32::MAX records" });
        }
        if self.count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        } else if timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
        }
        let ts = timestamp.wrapping_sub(self.base_timestamp);
        if self.buf.len() - self.written < room {
            // Initialize room a step ahead of the records, within the reserved capacity (BytesMut
            // regrows geometrically past it): each byte is zeroed once, just before it is
            // written, while it is in cache.
            let new_len = (self.written + room).max(self.buf.len() + GROW_STEP);
            let new_len = if new_len > self.buf.capacity() { self.written + room } else { new_len };
            self.buf.resize(new_len, 0);
        }
        let mut w = SliceWriter::new(&mut self.buf[self.written..]);
        write_record(&mut w, self.count, ts, key, value, headers);
        self.written += w.position();
        self.count += 1;
        Ok(())
    }

    /// Appends `record`'s timestamp, key, value and headers (its offset is ignored: the
    /// encoder assigns the next one).
    pub fn append_record(&mut self, record: &Record) -> Result<(), RecordsError> {
        self.append(record.timestamp, record.key.as_deref(), record.value.as_deref(), &record.headers)
    }

    fn header(&self) -> Header {
        Header {
            base_offset: self.base_offset,
            partition_leader_epoch: self.partition_leader_epoch,
            attributes: attributes(self.compression, self.timestamp_type, self.transactional, self.control, false),
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
    pub fn finish(self) -> Result<Bytes, RecordsError> {
        self.finish_reusing(None).map(|(batch, _)| batch)
    }

    /// [`finish`](Self::finish), for producers that recycle buffers: a compressed batch is
    /// written into `spare` (if given; its contents are discarded), and the buffer the encoder
    /// no longer needs comes back for reuse: with compression, its own buffer of uncompressed
    /// records; without, `spare` untouched.
    pub fn finish_reusing(mut self, spare: Option<BytesMut>) -> Result<(Bytes, Option<BytesMut>), RecordsError> {
        let header = self.header().to_bytes();
        self.buf.truncate(self.written);
        if self.compression == Compression::None {
            self.buf[..BATCH_HEADER_LEN].copy_from_slice(&header);
            seal(&mut self.buf, 0)?;
            return Ok((self.buf.freeze(), spare));
        }
        let mut out = spare.unwrap_or_default();
        out.clear();
        out.reserve(BATCH_HEADER_LEN + self.buf.len() / 2 + 64);
        out.extend_from_slice(&header);
        compress(self.compression, self.level, &self.buf, &mut out)?;
        seal(&mut out, 0)?;
        Ok((out.freeze(), Some(self.buf)))
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
    ) = (be_i64, be_i32, be_i32, be_i8, be_u32, be_i16, be_i32, be_i64, be_i64, be_i64, be_i16, be_i32, be_i32)
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
    budget: &mut Budget,
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
            return Err(RecordsError::CrcMismatch { expected: h.crc, actual, offset: start });
        }
    }
    let code = (h.attributes & 0x7) as u8;
    let compression = Compression::from_code(code)
        .ok_or_else(|| RecordsError::UnknownCompression { code, offset: start + ATTRIBUTES_OFFSET })?;
    let timestamp_type =
        if h.attributes & TIMESTAMP_TYPE_BIT != 0 { TimestampType::LogAppendTime } else { TimestampType::CreateTime };
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
        log_append_time: (timestamp_type == TimestampType::LogAppendTime).then_some(h.max_timestamp),
    };
    let records_start = start + BATCH_HEADER_LEN;
    let too_many = |available: usize| {
        (count > available / MIN_RECORD_SIZE).then(|| {
            RecordsError::invalid_length("record count", i64::from(h.record_count), start + RECORD_COUNT_OFFSET)
        })
    };
    let records = if compression == Compression::None {
        if let Some(e) = too_many(end - records_start) {
            return Err(e);
        }
        decode_records(src, records_start, end, count, ctx)?
    } else {
        let plain = budget.decompress(compression, &src[records_start..end], records_start, start)?;
        let plain = Bytes::from(plain);
        if let Some(e) = too_many(plain.len()) {
            return Err(e);
        }
        decode_records(&plain, 0, plain.len(), count, ctx).map_err(|e| e.in_compressed(compression, start))?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{
        ControlRecord, ControlRecordType, EndTxnMarker, RecordSet, decode_batches, decode_batches_with,
    };
    use proptest::prelude::*;

    const CODECS: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// The codecs this build supports.
    fn codecs() -> Vec<Compression> {
        CODECS.into_iter().filter(|c| c.is_available()).collect()
    }

    /// Batches written into reused buffers (old bytes left in them, and spares handed back by
    /// `finish_reusing`) decode exactly like batches written into fresh ones.
    #[test]
    fn reused_buffers_encode_like_fresh_ones() {
        for compression in codecs() {
            let mut spare: Option<BytesMut> = None;
            let mut recycled = BytesMut::new();
            for round in 0..4u8 {
                let values: Vec<Vec<u8>> =
                    (0..50 + 40 * usize::from(round)).map(|i| vec![b'a' + round; 1 + (i * 7) % 300]).collect();
                let mut enc = RecordBatchEncoder::with_buffer(compression, std::mem::take(&mut recycled), 4096);
                let mut fresh = RecordBatchEncoder::new(compression);
                for (i, v) in values.iter().enumerate() {
                    let key = (i % 3 == 0).then_some(&b"k"[..]);
                    enc.append(1_000 + i as i64, key, Some(v), &[]).unwrap();
                    fresh.append(1_000 + i as i64, key, Some(v), &[]).unwrap();
                }
                let (bytes, back) = enc.finish_reusing(spare.take()).unwrap();
                let expected = fresh.finish().unwrap();
                assert_eq!(decode(&bytes).unwrap(), decode(&expected).unwrap(), "{compression} round {round}");
                if compression == Compression::None {
                    assert_eq!(bytes, expected, "uncompressed batches are byte-identical");
                }
                spare = back;
                // What a producer does with a batch that is done with: reuse its bytes.
                recycled = bytes.try_into_mut().expect("the only handle");
            }
        }
    }

    fn decode(bytes: &[u8]) -> Result<RecordSet, RecordsError> {
        decode_batches(&Bytes::copy_from_slice(bytes))
    }

    /// Recomputes batch length and CRC after a test edited the bytes of a single batch.
    fn reseal(batch: &mut [u8]) {
        let len = (batch.len() - LOG_OVERHEAD) as i32;
        batch[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
        batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }

    fn sample_records(n: usize, base_offset: i64) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                offset: base_offset + i as i64,
                timestamp: 1_700_000_000_000 + (i as i64 % 7) * 13,
                key: (i % 3 != 0).then(|| Bytes::from(format!("key-{i}"))),
                value: (i % 5 != 4).then(|| Bytes::from(vec![b'a' + (i % 26) as u8; 100])),
                headers: if i % 4 == 0 {
                    vec![
                        RecordHeader::new(&b"trace"[..], Some(Bytes::from(format!("t{i}")))),
                        RecordHeader::new(&b"empty"[..], None),
                    ]
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    /// One batch with two small records, built byte by byte.
    fn golden_bytes() -> Vec<u8> {
        let records: &[u8] = &[
            // record 0: offset delta 0, timestamp delta 0, key "k", value "v1", no headers
            0x12, 0x00, 0x00, 0x00, 0x02, b'k', 0x04, b'v', b'1', 0x00,
            // record 1: offset delta 1, timestamp delta 5, null key, value "", 1 header h=null
            0x12, 0x00, 0x0a, 0x02, 0x01, 0x00, 0x02, 0x02, b'h', 0x01,
        ];
        let mut b = Vec::new();
        b.extend_from_slice(&1000i64.to_be_bytes()); // base offset
        b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes()); // batch length
        b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        b.push(2); // magic
        b.extend_from_slice(&[0; 4]); // crc, filled below
        b.extend_from_slice(&0x0010i16.to_be_bytes()); // attributes: transactional
        b.extend_from_slice(&1i32.to_be_bytes()); // last offset delta
        b.extend_from_slice(&5000i64.to_be_bytes()); // base timestamp
        b.extend_from_slice(&5005i64.to_be_bytes()); // max timestamp
        b.extend_from_slice(&77i64.to_be_bytes()); // producer id
        b.extend_from_slice(&3i16.to_be_bytes()); // producer epoch
        b.extend_from_slice(&40i32.to_be_bytes()); // base sequence
        b.extend_from_slice(&2i32.to_be_bytes()); // record count
        assert_eq!(b.len(), BATCH_HEADER_LEN);
        b.extend_from_slice(records);
        b
    }

    fn golden_batch() -> RecordBatch {
        RecordBatch {
            base_offset: 1000,
            is_transactional: true,
            last_offset_delta: 1,
            base_timestamp: 5000,
            max_timestamp: 5005,
            producer_id: 77,
            producer_epoch: 3,
            base_sequence: 40,
            records: vec![
                Record::new(1000, 5000, Some(Bytes::from_static(b"k")), Some(Bytes::from_static(b"v1"))),
                Record {
                    offset: 1001,
                    timestamp: 5005,
                    key: None,
                    value: Some(Bytes::new()),
                    headers: vec![RecordHeader::new(&b"h"[..], None)],
                },
            ],
            ..RecordBatch::default()
        }
    }

    #[test]
    fn crc32c_is_castagnoli() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn golden_batch_bytes_and_crc() {
        let mut expected = golden_bytes();
        // The CRC covers attributes (offset 21) to the end, not the partition leader epoch.
        let crc = crc32c::crc32c(&expected[21..]);
        expected[17..21].copy_from_slice(&crc.to_be_bytes());

        let encoded = golden_batch().to_bytes().unwrap();
        assert_eq!(&encoded[..], &expected[..]);
        assert_eq!(u32::from_be_bytes(encoded[17..21].try_into().unwrap()), crc, "header CRC field");
        // Changing the partition leader epoch keeps the CRC valid.
        let mut epoch_changed = expected.clone();
        epoch_changed[12..16].copy_from_slice(&9i32.to_be_bytes());
        let set = decode(&epoch_changed).unwrap();
        assert_eq!(set.batches[0].partition_leader_epoch, 9);

        let set = decode(&expected).unwrap();
        assert!(!set.is_partial());
        assert_eq!(set.batches, vec![golden_batch()]);

        // The streaming encoder writes the same bytes.
        let mut enc =
            RecordBatchEncoder::new(Compression::None).base_offset(1000).producer(77, 3, 40).transactional(true);
        enc.append(5000, Some(b"k"), Some(b"v1"), &[]).unwrap();
        enc.append(5005, None, Some(b""), &[RecordHeader::new(&b"h"[..], None)]).unwrap();
        assert_eq!(enc.uncompressed_size(), expected.len());
        assert_eq!(&enc.finish().unwrap()[..], &expected[..]);
    }

    #[test]
    fn uncompressed_decode_is_zero_copy() {
        let bytes = RecordBatch::new(sample_records(20, 0)).to_bytes().unwrap();
        let range = bytes.as_ptr_range();
        let set = decode_batches(&bytes).unwrap();
        for r in set.records() {
            for field in [&r.key, &r.value].into_iter().flatten() {
                assert!(field.is_empty() || range.contains(&field.as_ptr()));
            }
            for h in &r.headers {
                assert!(range.contains(&h.key.as_ptr()));
            }
        }
    }

    #[test]
    fn round_trip_every_codec_and_flag() {
        for compression in codecs() {
            for (ts_type, control) in [
                (TimestampType::CreateTime, false),
                (TimestampType::LogAppendTime, false),
                (TimestampType::CreateTime, true),
            ] {
                let mut batch = RecordBatch::new(sample_records(300, 12_345));
                batch.compression = compression;
                batch.timestamp_type = ts_type;
                batch.is_control = control;
                batch.has_delete_horizon = control;
                batch.partition_leader_epoch = 4;
                let bytes = batch.to_bytes().unwrap();
                let mut set = decode_batches(&bytes).unwrap();
                assert_eq!(set.batches.len(), 1);
                if ts_type == TimestampType::LogAppendTime {
                    for r in &mut batch.records {
                        r.timestamp = batch.max_timestamp;
                    }
                }
                assert_eq!(set.batches.pop().unwrap(), batch, "{compression} {ts_type:?}");
            }
        }
    }

    #[test]
    fn encoder_matches_batch_encode() {
        let records = sample_records(500, 0);
        for compression in codecs() {
            let mut enc = RecordBatchEncoder::new(compression);
            let mut size = BATCH_HEADER_LEN;
            for r in &records {
                size += enc.record_size(r.timestamp, r.key.as_deref(), r.value.as_deref(), &r.headers);
                enc.append_record(r).unwrap();
                assert_eq!(enc.uncompressed_size(), size);
            }
            assert_eq!(enc.len(), 500);
            let streamed = enc.finish().unwrap();
            let mut batch = RecordBatch::new(records.clone());
            batch.compression = compression;
            assert_eq!(batch.uncompressed_size().unwrap(), size);
            if compression == Compression::None {
                assert_eq!(streamed, batch.to_bytes().unwrap());
                assert_eq!(streamed.len(), size);
            }
            assert_eq!(decode_batches(&streamed).unwrap().batches, vec![batch]);
        }
    }

    #[test]
    fn compression_levels_are_used() {
        let records = sample_records(200, 0);
        for (compression, level) in [(Compression::Gzip, 1), (Compression::Zstd, 19)] {
            if !compression.is_available() {
                continue;
            }
            let mut enc = RecordBatchEncoder::new(compression).compression_level(level);
            for r in &records {
                enc.append_record(r).unwrap();
            }
            let set = decode_batches(&enc.finish().unwrap()).unwrap();
            assert_eq!(set.batches[0].records, records);
        }
    }

    #[test]
    fn empty_batch() {
        for compression in codecs() {
            let bytes = RecordBatchEncoder::new(compression).finish().unwrap();
            let b = &decode_batches(&bytes).unwrap().batches[0];
            assert!(b.records.is_empty());
            assert_eq!((b.last_offset_delta, b.base_timestamp), (-1, -1));
        }
    }

    #[test]
    fn unavailable_codecs_are_typed_errors() {
        for compression in CODECS.into_iter().filter(|c| !c.is_available()) {
            let mut batch = golden_batch();
            batch.compression = compression;
            assert!(matches!(
                batch.to_bytes(),
                Err(RecordsError::CompressionUnavailable { compression: c }) if c == compression
            ));
            let mut b = golden_bytes();
            b[22] |= compression.code();
            reseal(&mut b);
            assert!(matches!(
                decode(&b),
                Err(RecordsError::CompressionUnavailable { compression: c }) if c == compression
            ));
        }
    }

    #[test]
    fn control_batch_markers() {
        let mut enc = RecordBatchEncoder::new(Compression::None).producer(5, 1, -1).transactional(true).control(true);
        let key = ControlRecord { version: 0, kind: ControlRecordType::Abort };
        let value = EndTxnMarker { version: 0, coordinator_epoch: 12 };
        enc.append(1, Some(&key.to_bytes()), Some(&value.to_bytes()), &[]).unwrap();
        let set = decode_batches(&enc.finish().unwrap()).unwrap();
        let b = &set.batches[0];
        assert!(b.is_control && b.is_transactional);
        let r = &b.records[0];
        assert_eq!(ControlRecord::parse(r.key.as_ref().unwrap()).unwrap(), key);
        assert_eq!(EndTxnMarker::parse(r.value.as_ref().unwrap()).unwrap(), value);
    }

    #[test]
    fn many_batches_and_legacy_in_one_set() {
        let mut set = BytesMut::new();
        let n = codecs().len();
        for (i, c) in codecs().into_iter().enumerate() {
            let mut b = RecordBatch::new(sample_records(10, i as i64 * 10));
            b.compression = c;
            b.encode(&mut set).unwrap();
        }
        set.extend_from_slice(&crate::records::legacy::tests::message(n as i64 * 10, 1, 0, 9, None, Some(b"old")));
        let out = decode_batches(&set.freeze()).unwrap();
        assert_eq!(out.batches.len(), n + 1);
        let offsets: Vec<i64> = out.records().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..=n as i64 * 10).collect::<Vec<_>>());
        assert_eq!(out.batches[n].magic, 1);
        let got: Vec<Compression> = out.batches[..n].iter().map(|b| b.compression).collect();
        assert_eq!(got, codecs());
    }

    #[test]
    fn truncation_at_every_byte_is_a_clean_partial() {
        let mut whole = golden_batch().to_bytes().unwrap().to_vec();
        let first_len = whole.len();
        let mut second = golden_batch();
        second.compression = *codecs().last().unwrap();
        whole.extend_from_slice(&second.to_bytes().unwrap());
        for cut in 0..whole.len() {
            let set = decode(&whole[..cut]).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            let complete = usize::from(cut >= first_len);
            assert_eq!(set.batches.len(), complete, "cut {cut}");
            let expected_partial = cut - if complete == 1 { first_len } else { 0 };
            assert_eq!(set.partial_bytes, expected_partial, "cut {cut}");
        }
        assert_eq!(decode(&whole).unwrap().batches.len(), 2);
    }

    #[test]
    fn truncated_records_inside_a_complete_batch_are_errors() {
        let whole = golden_batch().to_bytes().unwrap().to_vec();
        // Cut the records section at every byte but keep the header self-consistent.
        for cut in BATCH_HEADER_LEN..whole.len() {
            let mut b = whole[..cut].to_vec();
            reseal(&mut b);
            let err = decode(&b).expect_err(&format!("cut {cut}"));
            assert!(
                matches!(
                    err,
                    RecordsError::Truncated { .. }
                        | RecordsError::InvalidLength { what: "record count", .. }
                        | RecordsError::RecordSizeMismatch { .. }
                ),
                "cut {cut}: {err:?}"
            );
        }
        // Header shorter than 61 bytes, length consistent.
        let mut short = whole[..40].to_vec();
        reseal(&mut short);
        assert!(matches!(decode(&short), Err(RecordsError::InvalidLength { offset: 8, .. })));
    }

    #[test]
    fn malformed_batches() {
        let good = golden_batch().to_bytes().unwrap().to_vec();

        // Bad CRC: typed error, and accepted when verification is off.
        let mut bad = good.clone();
        bad[68] ^= 0x40; // inside the first record's value
        let stored = u32::from_be_bytes(bad[17..21].try_into().unwrap());
        let actual = crc32c::crc32c(&bad[21..]);
        match decode(&bad) {
            Err(RecordsError::CrcMismatch { expected, actual: a, offset: 0 }) => {
                assert_eq!((expected, a), (stored, actual))
            }
            other => panic!("{other:?}"),
        }
        let lenient = DecodeOptions::default().with_verify_crc(false);
        assert!(decode_batches_with(&Bytes::from(bad), &lenient).is_ok());

        // Batch length negative or too small: error, even as the last batch.
        for len in [-1i32, 0, 13, i32::MIN] {
            let mut b = good.clone();
            b[8..12].copy_from_slice(&len.to_be_bytes());
            assert!(
                matches!(decode(&b), Err(RecordsError::InvalidLength { what: "batch length", offset: 8, .. })),
                "{len}"
            );
        }
        // Batch length huge: the broker cut it, a partial set.
        let mut b = good.clone();
        b[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode(&b).unwrap().partial_bytes, good.len());

        // Record count negative or beyond what the bytes can hold.
        for count in [-1i32, 3, 1000, i32::MAX] {
            let mut b = good.clone();
            b[57..61].copy_from_slice(&count.to_be_bytes());
            reseal(&mut b);
            let err = decode(&b).unwrap_err();
            assert!(
                matches!(
                    err,
                    RecordsError::InvalidLength { what: "record count", offset: 57, .. }
                        | RecordsError::Truncated { .. }
                ),
                "{count}: {err:?}"
            );
        }
        // Fewer records than present: trailing bytes.
        let mut b = good.clone();
        b[57..61].copy_from_slice(&1i32.to_be_bytes());
        reseal(&mut b);
        assert!(matches!(decode(&b), Err(RecordsError::TrailingBytes { offset: 71, count: 10, .. })));

        // Unknown compression codes.
        for code in 5u8..=7 {
            let mut b = good.clone();
            b[22] = (b[22] & !0x07) | code;
            reseal(&mut b);
            assert!(matches!(
                decode(&b),
                Err(RecordsError::UnknownCompression { code: c, offset: 21 }) if c == code
            ));
        }

        // Unknown magic.
        let mut b = good.clone();
        b[16] = 3;
        assert!(matches!(decode(&b), Err(RecordsError::UnsupportedMagic { magic: 3, offset: 0 })));

        // Bad varint: the first record's timestamp delta made 11 bytes long.
        let mut b = good[..BATCH_HEADER_LEN].to_vec();
        b.extend_from_slice(&[0x20, 0x00]);
        b.extend_from_slice(&[0xff; 11]);
        b.extend_from_slice(&[0x00; 4]);
        b[57..61].copy_from_slice(&1i32.to_be_bytes());
        reseal(&mut b);
        assert!(matches!(decode(&b), Err(RecordsError::InvalidVarint { what: "record timestamp delta", offset: 63 })));

        // Negative record length.
        let mut b = good.clone();
        b[61] = 0x03;
        reseal(&mut b);
        assert!(matches!(
            decode(&b),
            Err(RecordsError::InvalidLength { what: "record length", value: -2, offset: 61 })
        ));

        // An error after the first batch still fails the set, but the iterator keeps the
        // batches before it.
        let mut two = good.clone();
        let mut broken = good.clone();
        broken[61] = 0x03;
        reseal(&mut broken);
        two.extend_from_slice(&broken);
        let two = Bytes::from(two);
        assert!(decode_batches(&two).is_err());
        let mut it = crate::records::RecordBatches::new(two);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[cfg(all(feature = "lz4", feature = "zstd"))]
    #[test]
    fn compressed_batch_errors() {
        // A corrupt record inside a valid lz4 payload is reported with its batch.
        let plain = &golden_bytes()[BATCH_HEADER_LEN..];
        let mut corrupted = plain.to_vec();
        corrupted[0] = 0x03; // record length -2
        let mut b = golden_bytes()[..BATCH_HEADER_LEN].to_vec();
        b[22] |= Compression::Lz4.code();
        let mut payload = BytesMut::new();
        compress(Compression::Lz4, None, &corrupted, &mut payload).unwrap();
        b.extend_from_slice(&payload);
        reseal(&mut b);
        match decode(&b) {
            Err(RecordsError::InCompressedBatch { compression: Compression::Lz4, batch_offset: 0, source }) => {
                assert!(matches!(*source, RecordsError::InvalidLength { what: "record length", offset: 0, .. }))
            }
            other => panic!("{other:?}"),
        }

        // A batch inflating past the limit.
        let mut big = RecordBatch::new(vec![Record::new(0, 0, None, Some(Bytes::from(vec![0u8; 1 << 20])))]);
        big.compression = Compression::Zstd;
        let bytes = big.to_bytes().unwrap();
        let opts = DecodeOptions::default().with_max_decompressed_size(64 << 10);
        assert!(matches!(
            decode_batches_with(&bytes, &opts),
            Err(RecordsError::DecompressedTooLarge { limit: 65536, offset: 61, .. })
        ));
        assert!(decode_batches(&bytes).is_ok());
    }

    /// Many small batches that each inflate within the per-batch bound are still bounded all
    /// together: once a record set's decompressed total would pass its budget, decoding fails
    /// with a typed error naming the batch, after decompressing no more than the budget.
    #[test]
    fn a_record_set_is_bounded_across_its_batches() {
        const VALUE: usize = 100 << 10;
        for compression in codecs().into_iter().filter(|&c| c != Compression::None) {
            let mut set = BytesMut::new();
            let mut starts = Vec::new();
            for i in 0..20 {
                let mut b = RecordBatch::new(vec![Record::new(i * 10, 0, None, Some(Bytes::from(vec![0u8; VALUE])))]);
                b.base_offset = i * 10;
                b.compression = compression;
                starts.push(set.len());
                b.encode(&mut set).unwrap();
            }
            let set = set.freeze();
            assert!(set.len() < 20 * VALUE / 10, "{compression}: zeros compress well");
            // Each batch fits the per-batch bound; five of them fit the total, the sixth does not.
            let opts = DecodeOptions::new()
                .with_max_decompressed_size(VALUE + 1024)
                .with_max_total_decompressed_size(5 * (VALUE + 200));
            match decode_batches_with(&set, &opts) {
                Err(RecordsError::RecordSetTooLarge { limit, offset }) => {
                    assert_eq!((limit, offset), (5 * (VALUE + 200), starts[5]), "{compression}");
                }
                other => panic!("{compression}: expected RecordSetTooLarge, got {other:?}"),
            }
            let mut iter = crate::records::RecordBatches::with_options(set.clone(), opts.clone());
            assert_eq!(iter.by_ref().take_while(Result::is_ok).count(), 5, "{compression}");
            // A fresh call has a fresh budget; with room for all, everything decodes.
            let all = decode_batches_with(&set, &opts.with_max_total_decompressed_size(20 * (VALUE + 200))).unwrap();
            assert_eq!(all.batches.len(), 20);
            // The per-batch bound still reports itself as such.
            let tight = DecodeOptions::new().with_max_decompressed_size(VALUE / 2);
            assert!(matches!(decode_batches_with(&set, &tight), Err(RecordsError::DecompressedTooLarge { .. })));
        }
        // Uncompressed batches are slices of the input and do not count.
        let mut plain = BytesMut::new();
        for i in 0..4 {
            let mut b = RecordBatch::new(vec![Record::new(i, 0, None, Some(Bytes::from(vec![1u8; VALUE])))]);
            b.base_offset = i;
            b.encode(&mut plain).unwrap();
        }
        let opts = DecodeOptions::new().with_max_total_decompressed_size(VALUE);
        assert_eq!(decode_batches_with(&plain.freeze(), &opts).unwrap().batches.len(), 4);
    }

    #[test]
    fn encode_rejects_unrepresentable_batches() {
        let mut b = RecordBatch::new(vec![Record::new(0, 0, None, None)]);
        b.records.push(Record::new(i64::from(i32::MAX) + 1, 0, None, None));
        let mut out = BytesMut::from(&b"keep"[..]);
        assert!(matches!(b.encode(&mut out), Err(RecordsError::InvalidInput { .. })));
        assert_eq!(&out[..], b"keep");
        let legacy = RecordBatch { magic: 1, ..RecordBatch::default() };
        assert!(legacy.to_bytes().is_err());
    }

    fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from))
    }

    fn arb_record() -> impl Strategy<Value = (i64, Option<Bytes>, Option<Bytes>, Vec<RecordHeader>)> {
        let header =
            (proptest::collection::vec(any::<u8>(), 0..20), arb_bytes()).prop_map(|(k, v)| RecordHeader::new(k, v));
        (any::<i64>(), arb_bytes(), arb_bytes(), proptest::collection::vec(header, 0..4))
    }

    proptest! {
        // 64 cases by default; PROPTEST_CASES raises it for a longer fuzzing run.
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
        ))]

        #[test]
        fn prop_round_trip(
            raw in proptest::collection::vec(arb_record(), 0..40),
            codec in 0usize..5,
            base_offset in 0i64..(1 << 40),
            gaps in proptest::collection::vec(0i64..1000, 40),
            producer in any::<(i64, i16, i32)>(),
        ) {
            let mut offset = base_offset;
            let records: Vec<Record> = raw
                .into_iter()
                .zip(gaps)
                .map(|((timestamp, key, value, headers), gap)| {
                    offset += gap; // compaction leaves gaps
                    Record { offset, timestamp, key, value, headers }
                })
                .collect();
            let mut batch = RecordBatch::new(records);
            let codecs = codecs();
            batch.compression = codecs[codec % codecs.len()];
            (batch.producer_id, batch.producer_epoch, batch.base_sequence) = producer;
            let bytes = batch.to_bytes().unwrap();
            if batch.compression == Compression::None {
                prop_assert_eq!(bytes.len(), batch.uncompressed_size().unwrap());
            }
            let set = decode_batches(&bytes).unwrap();
            prop_assert!(!set.is_partial());
            prop_assert_eq!(set.batches, vec![batch]);
        }

        #[test]
        fn prop_corrupted_input_never_panics(
            codec in 0usize..5,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut batch = RecordBatch::new(sample_records(8, 0));
            let codecs = codecs();
            batch.compression = codecs[codec % codecs.len()];
            let mut bytes = batch.to_bytes().unwrap().to_vec();
            for (i, v) in edits {
                let i = i.index(bytes.len());
                bytes[i] = v;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            if bytes.len() > LOG_OVERHEAD {
                // Keep the header self-consistent so the decoder gets past the CRC.
                let len = (bytes.len() - LOG_OVERHEAD) as i32;
                bytes[8..12].copy_from_slice(&len.to_be_bytes());
            }
            let opts = DecodeOptions::default().with_verify_crc(false);
            let _ = decode_batches_with(&Bytes::from(bytes), &opts);
        }
    }
}
