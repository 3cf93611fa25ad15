//! Single records inside a v2 batch, their headers, and control records.
//!
//! A v2 record on the wire (all varints zig-zag):
//!
//! ```text
//! length: varint            bytes after this field
//! attributes: i8            unused, written as 0
//! timestampDelta: varlong   relative to the batch's base timestamp
//! offsetDelta: varint       relative to the batch's base offset
//! keyLength: varint         -1 = null
//! key: bytes
//! valueLength: varint       -1 = null
//! value: bytes
//! headerCount: varint
//! headers: [headerKeyLength: varint, headerKey, headerValueLength: varint (-1 = null), value]
//! ```

use bytes::Bytes;

use super::RecordsError;
use super::varint::{Encoded, SliceWriter, read_varint, read_varlong, varint_len, varlong_len};

/// One record: absolute offset and timestamp, optional key and value, and headers.
///
/// Decoded keys, values and header fields are slices of the input buffer (uncompressed
/// batches) or of the batch's decompressed bytes: no copy is made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Record {
    /// Absolute offset of the record in its partition (base offset + offset delta).
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch. For batches with
    /// [`TimestampType::LogAppendTime`](super::TimestampType::LogAppendTime) this is the
    /// batch's max timestamp, as the broker assigned it; `-1` when the format has none
    /// (legacy magic 0).
    pub timestamp: i64,
    /// The key; `None` is a null key (distinct from an empty one).
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers in wire order; an empty `Vec` does not allocate.
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// A record with the given offset, timestamp, key and value and no headers.
    pub fn new(offset: i64, timestamp: i64, key: Option<Bytes>, value: Option<Bytes>) -> Self {
        Record { offset, timestamp, key, value, headers: Vec::new() }
    }
}

/// A record header. Kafka defines header keys as UTF-8 strings; they are kept as raw bytes here
/// so decoding stays zero-copy and never rejects a batch for a bad key. See
/// [`RecordHeader::key_str`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    /// The header key (UTF-8 by convention; never null on the wire).
    pub key: Bytes,
    /// The header value; `None` is null.
    pub value: Option<Bytes>,
}

impl RecordHeader {
    /// A header from a key and an optional value.
    pub fn new(key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        RecordHeader { key: key.into(), value }
    }

    /// The key as a string, or `None` if it is not valid UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key).ok()
    }
}

/// The type of a control record, from the `type` field of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ControlRecordType {
    /// Transaction aborted (type 0).
    Abort,
    /// Transaction committed (type 1).
    Commit,
    /// Any other type (KRaft uses further types for its metadata log).
    Other(i16),
}

impl ControlRecordType {
    /// The wire code of this type.
    pub fn code(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
            ControlRecordType::Other(code) => code,
        }
    }

    /// The type for a wire code.
    pub fn from_code(code: i16) -> Self {
        match code {
            0 => ControlRecordType::Abort,
            1 => ControlRecordType::Commit,
            other => ControlRecordType::Other(other),
        }
    }
}

/// The key of a control record (a record in a batch whose `is_control` attribute is set):
/// `version: i16, type: i16`, big-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlRecord {
    /// Key schema version (0 today; later versions may append fields, which are ignored).
    pub version: i16,
    /// The control record type.
    pub kind: ControlRecordType,
}

impl ControlRecord {
    /// Parses a control record key. Needs at least 4 bytes and a non-negative version; bytes
    /// after the type (from a newer key version) are ignored.
    pub fn parse(key: &[u8]) -> Result<Self, RecordsError> {
        let (Some(v), Some(t)) = (key.get(0..2), key.get(2..4)) else {
            return Err(RecordsError::truncated("control record key", 0, 4, key.len()));
        };
        let version = i16::from_be_bytes([v[0], v[1]]);
        if version < 0 {
            return Err(RecordsError::invalid_length("control record key version", i64::from(version), 0));
        }
        let kind = ControlRecordType::from_code(i16::from_be_bytes([t[0], t[1]]));
        Ok(ControlRecord { version, kind })
    }

    /// The 4-byte key for this control record.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(4);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.kind.code().to_be_bytes());
        Bytes::from(out)
    }
}

/// The value of an ABORT or COMMIT control record: `version: i16, coordinator_epoch: i32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndTxnMarker {
    /// Value schema version (0 today).
    pub version: i16,
    /// Epoch of the transaction coordinator that wrote the marker.
    pub coordinator_epoch: i32,
}

impl EndTxnMarker {
    /// Parses an end-transaction marker value (at least 6 bytes; later bytes are ignored).
    pub fn parse(value: &[u8]) -> Result<Self, RecordsError> {
        let Some(b) = value.get(0..6) else {
            return Err(RecordsError::truncated("end transaction marker", 0, 6, value.len()));
        };
        let version = i16::from_be_bytes([b[0], b[1]]);
        if version < 0 {
            return Err(RecordsError::invalid_length("end transaction marker version", i64::from(version), 0));
        }
        Ok(EndTxnMarker { version, coordinator_epoch: i32::from_be_bytes([b[2], b[3], b[4], b[5]]) })
    }

    /// The 6-byte value for this marker.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(6);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        Bytes::from(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Size of a nullable byte field: its varint length plus its bytes.
#[inline(always)]
fn nullable_len(field: Option<&[u8]>) -> usize {
    match field {
        // Lengths are checked against i32::MAX by `record_bound` before encoding.
        Some(b) => varint_len(b.len() as i32) + b.len(),
        None => 1,
    }
}

/// An upper bound of a record's framed size (every varint counted at its widest), failing if
/// the record could not be represented: every length on the wire is an `i32`, and a record
/// whose bound fits `i32` has all its lengths and its own size within range.
#[inline(always)]
pub(crate) fn record_bound(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[RecordHeader],
) -> Result<usize, RecordsError> {
    // length 5, attributes 1, timestamp delta 10, offset delta 5, key and value lengths 5 + 5,
    // header count 5
    let mut n = 36usize.saturating_add(key.map_or(0, <[u8]>::len)).saturating_add(value.map_or(0, <[u8]>::len));
    for h in headers {
        n = n.saturating_add(10 + h.key.len()).saturating_add(h.value.as_ref().map_or(0, Bytes::len));
    }
    if n > i32::MAX as usize {
        return Err(RecordsError::InvalidInput { reason: "record larger than i32::MAX bytes" });
    }
    Ok(n)
}

/// Size of the record body (everything after the length varint).
#[inline(always)]
pub(crate) fn body_len(
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[RecordHeader],
) -> usize {
    let mut n = 1
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + nullable_len(key)
        + nullable_len(value)
        + varint_len(headers.len() as i32);
    for h in headers {
        n += varint_len(h.key.len() as i32) + h.key.len() + nullable_len(h.value.as_deref());
    }
    n
}

/// Size of the whole record on the wire (length varint included), given its body size.
#[inline(always)]
pub(crate) fn framed_len(body_len: usize) -> usize {
    varint_len(body_len as i32) + body_len
}

#[inline(always)]
fn put_nullable(w: &mut SliceWriter<'_>, field: Option<&[u8]>) {
    match field {
        Some(b) => {
            w.varint(b.len() as i32);
            w.bytes(b);
        }
        None => w.byte(1), // -1
    }
}

#[inline(always)]
fn nullable_encoded(field: Option<&[u8]>) -> (Encoded, usize) {
    match field {
        Some(b) => (Encoded::varint(b.len() as i32), b.len()),
        None => (Encoded::MINUS_ONE, 0),
    }
}

/// Writes one record into a writer with room for [`record_bound`] bytes plus
/// [`SliceWriter::SLACK`]; every varint is encoded once and its size feeds the record length.
#[inline(always)]
pub(crate) fn write_record(
    w: &mut SliceWriter<'_>,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[RecordHeader],
) {
    let Some(ts) = Encoded::varlong(timestamp_delta).filter(|ts| ts.len() < 8) else {
        return write_record_wide(w, offset_delta, timestamp_delta, key, value, headers);
    };
    let od = Encoded::varint(offset_delta);
    let (k, key_len) = nullable_encoded(key);
    let (v, value_len) = nullable_encoded(value);
    let hc = Encoded::varint(headers.len() as i32);
    let mut body = 1 + ts.len() + od.len() + k.len() + key_len + v.len() + value_len + hc.len();
    for h in headers {
        body += varint_len(h.key.len() as i32) + h.key.len() + nullable_len(h.value.as_deref());
    }
    // length, attributes (0) and timestamp delta; then offset delta and key length
    w.put2(Encoded::varint(body as i32), ts.after_zero_byte());
    w.put2(od, k);
    if let Some(key) = key {
        w.bytes(key);
    }
    w.put(v);
    if let Some(value) = value {
        w.bytes(value);
    }
    w.put(hc);
    for h in headers {
        w.varint(h.key.len() as i32);
        w.bytes(&h.key);
        put_nullable(w, h.value.as_deref());
    }
}

/// [`write_record`] for timestamp deltas that need 8 to 10 bytes.
#[cold]
fn write_record_wide(
    w: &mut SliceWriter<'_>,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[RecordHeader],
) {
    w.varint(body_len(offset_delta, timestamp_delta, key, value, headers) as i32);
    w.byte(0); // attributes
    w.varlong(timestamp_delta);
    w.varint(offset_delta);
    put_nullable(w, key);
    put_nullable(w, value);
    w.varint(headers.len() as i32);
    for h in headers {
        w.varint(h.key.len() as i32);
        w.bytes(&h.key);
        put_nullable(w, h.value.as_deref());
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// The smallest possible record: length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, one byte each.
pub(crate) const MIN_RECORD_SIZE: usize = 7;

/// What records need from their batch header to become absolute.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordContext {
    pub(crate) base_offset: i64,
    pub(crate) base_timestamp: i64,
    /// `Some(max_timestamp)` for log-append-time batches: every record gets it.
    pub(crate) log_append_time: Option<i64>,
}

/// A cursor over a record's bytes: `buf` ends where the record ends, so no field can read past
/// it; `src` is the buffer `buf` was cut from, used to make zero-copy slices.
struct Cursor<'a> {
    src: &'a Bytes,
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn varint(&mut self, what: &'static str) -> Result<i32, RecordsError> {
        let start = self.pos;
        read_varint(self.buf, &mut self.pos).map_err(|e| e.at(what, start, self.buf.len().saturating_sub(start)))
    }

    #[inline(always)]
    fn varlong(&mut self, what: &'static str) -> Result<i64, RecordsError> {
        let start = self.pos;
        read_varlong(self.buf, &mut self.pos).map_err(|e| e.at(what, start, self.buf.len().saturating_sub(start)))
    }

    /// Reads `len` bytes as a zero-copy slice.
    #[inline(always)]
    fn bytes(&mut self, len: usize, what: &'static str) -> Result<Bytes, RecordsError> {
        let start = self.pos;
        let available = self.buf.len() - start;
        if len > available {
            return Err(RecordsError::truncated(what, start, len, available));
        }
        self.pos = start + len;
        if len == 0 { Ok(Bytes::new()) } else { Ok(self.src.slice(start..start + len)) }
    }

    /// Reads a varint length then that many bytes; `-1` is null.
    #[inline(always)]
    fn nullable(&mut self, len_what: &'static str, what: &'static str) -> Result<Option<Bytes>, RecordsError> {
        let at = self.pos;
        let len = self.varint(len_what)?;
        if len < 0 {
            if len == -1 {
                return Ok(None);
            }
            return Err(RecordsError::invalid_length(len_what, i64::from(len), at));
        }
        self.bytes(len as usize, what).map(Some)
    }
}

/// Decodes `count` records occupying exactly `src[start..end]`.
///
/// `count` must already be bounded by `(end - start) / MIN_RECORD_SIZE`; the `Vec` is presized
/// by bytes, never by `count` alone.
pub(crate) fn decode_records(
    src: &Bytes,
    start: usize,
    end: usize,
    count: usize,
    ctx: RecordContext,
) -> Result<Vec<Record>, RecordsError> {
    debug_assert!(count <= (end - start) / MIN_RECORD_SIZE);
    let all = &src[..end];
    // `count` is bounded by the bytes, but a `Record` is much larger than its 7-byte minimum on
    // the wire: reserve by bytes and grow as records decode.
    let mut records = Vec::with_capacity(crate::primitives::presize::<Record>(count, end - start));
    let mut pos = start;
    for _ in 0..count {
        let record_start = pos;
        let len = read_varint(all, &mut pos).map_err(|e| e.at("record length", record_start, end - record_start))?;
        let available = end - pos;
        if len < 0 {
            return Err(RecordsError::invalid_length("record length", i64::from(len), record_start));
        }
        let len = len as usize;
        if len > available {
            return Err(RecordsError::truncated(
                "record",
                record_start,
                len + (pos - record_start),
                end - record_start,
            ));
        }
        let body_end = pos + len;
        let mut c = Cursor { src, buf: &all[..body_end], pos };
        // attributes: unused
        if c.pos >= body_end {
            return Err(RecordsError::truncated("record attributes", c.pos, 1, 0));
        }
        c.pos += 1;
        let timestamp_delta = c.varlong("record timestamp delta")?;
        let offset_delta = c.varint("record offset delta")?;
        let key = c.nullable("record key length", "record key")?;
        let value = c.nullable("record value length", "record value")?;
        let header_count_at = c.pos;
        let header_count = c.varint("record header count")?;
        let headers = if header_count == 0 {
            Vec::new()
        } else {
            // Each header needs at least two bytes (key length, value length).
            if header_count < 0 || header_count as usize > (body_end - c.pos) / 2 {
                return Err(RecordsError::invalid_length(
                    "record header count",
                    i64::from(header_count),
                    header_count_at,
                ));
            }
            let mut headers =
                Vec::with_capacity(crate::primitives::presize::<RecordHeader>(header_count as usize, body_end - c.pos));
            for _ in 0..header_count {
                let key_at = c.pos;
                let key_len = c.varint("header key length")?;
                if key_len < 0 {
                    if key_len == -1 {
                        return Err(RecordsError::Malformed { what: "record header: null key", offset: key_at });
                    }
                    return Err(RecordsError::invalid_length("header key length", i64::from(key_len), key_at));
                }
                let key = c.bytes(key_len as usize, "header key")?;
                let value = c.nullable("header value length", "header value")?;
                headers.push(RecordHeader { key, value });
            }
            headers
        };
        if c.pos != body_end {
            return Err(RecordsError::RecordSizeMismatch { offset: record_start, declared: len, actual: c.pos - pos });
        }
        pos = body_end;
        records.push(Record {
            offset: ctx.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: match ctx.log_append_time {
                Some(t) => t,
                None => ctx.base_timestamp.wrapping_add(timestamp_delta),
            },
            key,
            value,
            headers,
        });
    }
    if pos != end {
        return Err(RecordsError::TrailingBytes {
            what: "the batch's declared record count",
            offset: pos,
            count: end - pos,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_one(
        offset_delta: i32,
        ts_delta: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Bytes {
        let body = body_len(offset_delta, ts_delta, key, value, headers);
        let bound = record_bound(key, value, headers).unwrap();
        assert!(framed_len(body) <= bound);
        let mut buf = vec![0u8; bound + SliceWriter::SLACK];
        let mut w = SliceWriter::new(&mut buf);
        write_record(&mut w, offset_delta, ts_delta, key, value, headers);
        assert_eq!(w.position(), framed_len(body));
        buf.truncate(framed_len(body));
        Bytes::from(buf)
    }

    const CTX: RecordContext = RecordContext { base_offset: 100, base_timestamp: 1_000, log_append_time: None };

    #[test]
    fn known_bytes() {
        // offset delta 1, timestamp delta 2, key "k", null value, one header ("h", null).
        let headers = [RecordHeader::new(&b"h"[..], None)];
        let bytes = encode_one(1, 2, Some(b"k"), None, &headers);
        assert_eq!(
            &bytes[..],
            &[
                0x14, // length 10
                0x00, // attributes
                0x04, // timestamp delta 2
                0x02, // offset delta 1
                0x02, b'k', // key
                0x01, // null value
                0x02, // 1 header
                0x02, b'h', 0x01, // header "h" = null
            ]
        );
        let recs = decode_records(&bytes, 0, bytes.len(), 1, CTX).unwrap();
        assert_eq!(
            recs,
            vec![Record {
                offset: 101,
                timestamp: 1_002,
                key: Some(Bytes::from_static(b"k")),
                value: None,
                headers: headers.to_vec(),
            }]
        );
    }

    #[test]
    fn decoded_fields_are_slices_of_the_input() {
        let bytes = encode_one(0, 0, Some(b"key"), Some(b"value"), &[]);
        let recs = decode_records(&bytes, 0, bytes.len(), 1, CTX).unwrap();
        let value = recs[0].value.as_ref().unwrap();
        let range = bytes.as_ptr_range();
        assert!(range.contains(&value.as_ptr()));
        assert!(range.contains(&recs[0].key.as_ref().unwrap().as_ptr()));
    }

    #[test]
    fn log_append_time_overrides_record_timestamps() {
        let bytes = encode_one(0, 5, None, None, &[]);
        let ctx = RecordContext { log_append_time: Some(42), ..CTX };
        assert_eq!(decode_records(&bytes, 0, bytes.len(), 1, ctx).unwrap()[0].timestamp, 42);
    }

    fn err_of(bytes: &[u8], count: usize) -> RecordsError {
        let b = Bytes::copy_from_slice(bytes);
        decode_records(&b, 0, b.len(), count, CTX).unwrap_err()
    }

    #[test]
    fn malformed_records() {
        // negative record length
        assert!(matches!(
            err_of(&[0x03, 0, 0, 0, 1, 1, 0], 1),
            RecordsError::InvalidLength { what: "record length", value: -2, offset: 0 }
        ));
        // record length past the end
        assert!(matches!(err_of(&[0x7e, 0, 0, 0, 1, 1, 0], 1), RecordsError::Truncated { what: "record", .. }));
        // key length -2
        assert!(matches!(
            err_of(&[0x0c, 0, 0, 0, 0x03, 1, 0], 1),
            RecordsError::InvalidLength { what: "record key length", value: -2, offset: 4 }
        ));
        // key longer than the record
        assert!(matches!(
            err_of(&[0x0c, 0, 0, 0, 0x20, 1, 0], 1),
            RecordsError::Truncated { what: "record key", offset: 5, needed: 16, .. }
        ));
        // overlong varint as the offset delta
        assert!(matches!(
            err_of(&[0x14, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 1, 0], 1),
            RecordsError::InvalidVarint { what: "record offset delta", offset: 3 }
        ));
        // header count far beyond the bytes left
        assert!(matches!(
            err_of(&[0x0c, 0, 0, 0, 1, 1, 0x7e], 1),
            RecordsError::InvalidLength { what: "record header count", value: 63, .. }
        ));
        // negative header count
        assert!(matches!(
            err_of(&[0x0e, 0, 0, 0, 1, 1, 0x03, 0], 1),
            RecordsError::InvalidLength { what: "record header count", value: -2, .. }
        ));
        // null header key
        assert!(matches!(
            err_of(&[0x10, 0, 0, 0, 1, 1, 0x02, 0x01, 0x01], 1),
            RecordsError::Malformed { offset: 7, .. }
        ));
        // declared length longer than the fields
        assert!(matches!(
            err_of(&[0x0e, 0, 0, 0, 1, 1, 0, 0xaa], 1),
            RecordsError::RecordSizeMismatch { declared: 7, actual: 6, .. }
        ));
        // trailing bytes after the declared records
        assert!(matches!(
            err_of(&[0x0c, 0, 0, 0, 1, 1, 0, 0xaa], 1),
            RecordsError::TrailingBytes { offset: 7, count: 1, .. }
        ));
        // the record's own length cuts a field short
        assert!(matches!(
            err_of(&[0x08, 0, 0, 0, 1, 1, 0], 1),
            RecordsError::Truncated { what: "record value length", .. }
        ));
    }

    #[test]
    fn control_record_keys() {
        let key = ControlRecord { version: 0, kind: ControlRecordType::Commit };
        assert_eq!(&key.to_bytes()[..], &[0, 0, 0, 1]);
        assert_eq!(ControlRecord::parse(&[0, 0, 0, 1]).unwrap(), key);
        assert_eq!(ControlRecord::parse(&[0, 0, 0, 0, 9]).unwrap().kind, ControlRecordType::Abort);
        assert_eq!(ControlRecord::parse(&[0, 1, 0, 5]).unwrap().kind, ControlRecordType::Other(5));
        assert!(matches!(
            ControlRecord::parse(&[0, 0, 0]),
            Err(RecordsError::Truncated { needed: 4, available: 3, .. })
        ));
        assert!(matches!(
            ControlRecord::parse(&[0xff, 0xff, 0, 0]),
            Err(RecordsError::InvalidLength { value: -1, .. })
        ));
        let marker = EndTxnMarker { version: 0, coordinator_epoch: 7 };
        assert_eq!(EndTxnMarker::parse(&marker.to_bytes()).unwrap(), marker);
        assert!(EndTxnMarker::parse(&[0, 0, 0]).is_err());
    }
}
