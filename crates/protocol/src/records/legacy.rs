//! Legacy message sets (magic 0 and 1), decoded read-only so old topics still consume.
//!
//! ```text
//! offset: i64
//! messageSize: i32        bytes after this field
//! crc: u32                CRC-32 (IEEE) of magic..end
//! magic: i8               0 or 1
//! attributes: i8          bits 0-2 codec, bit 3 timestamp type (magic 1)
//! timestamp: i64          magic 1 only
//! key: i32 length (-1 = null) + bytes
//! value: i32 length (-1 = null) + bytes
//! ```
//!
//! A compressed message (a "wrapper") holds a whole inner message set, compressed, as its
//! value. For magic 1 wrappers the inner offsets are relative (0, 1, ...) and the wrapper's
//! offset is the absolute offset of the last inner message; for magic 0 they are absolute.

use bytes::Bytes;
use nom::Parser;
use nom::number::complete::{be_i8, be_i32, be_i64, be_u32};

use super::batch::{LOG_OVERHEAD, TimestampType};
use super::compression::Budget;
use super::{Compression, DecodeOptions, Record, RecordBatch, RecordsError};

/// Smallest message after `offset` and `messageSize`: crc, magic, attributes, key and value
/// lengths (magic 0).
pub(crate) const MIN_MESSAGE_SIZE_V0: usize = 14;
const MIN_MESSAGE_SIZE_V1: usize = MIN_MESSAGE_SIZE_V0 + 8;
const TIMESTAMP_TYPE_BIT: i8 = 1 << 3;

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) lookup table.
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE), as legacy messages use.
pub(crate) fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

struct Message {
    offset: i64,
    magic: i8,
    compression: Compression,
    timestamp_type: TimestampType,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

/// Reads an i32-length-prefixed nullable byte field of `src[..end]` at `*pos`.
fn nullable_bytes(src: &Bytes, end: usize, pos: &mut usize, what: &'static str) -> Result<Option<Bytes>, RecordsError> {
    let at = *pos;
    let Some(b) = src.get(at..at + 4).filter(|_| at + 4 <= end) else {
        return Err(RecordsError::truncated(what, at, 4, end.saturating_sub(at)));
    };
    let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    *pos = at + 4;
    if len < 0 {
        if len == -1 {
            return Ok(None);
        }
        return Err(RecordsError::invalid_length(what, i64::from(len), at));
    }
    let len = len as usize;
    if len > end - *pos {
        return Err(RecordsError::truncated(what, *pos, len, end - *pos));
    }
    let field = src.slice(*pos..*pos + len);
    *pos += len;
    Ok(Some(field))
}

/// Parses the single message occupying exactly `src[start..end]`.
fn parse_message(src: &Bytes, start: usize, end: usize, verify_crc: bool) -> Result<Message, RecordsError> {
    let bytes = &src[start..end];
    let parsed: nom::IResult<&[u8], _> = (be_i64, be_i32, be_u32, be_i8, be_i8).parse(bytes);
    let Ok((_, (offset, size, crc, magic, attributes))) = parsed else {
        return Err(RecordsError::invalid_length(
            "legacy message size",
            bytes.len() as i64 - LOG_OVERHEAD as i64,
            start + 8,
        ));
    };
    if !(0..=1).contains(&magic) {
        return Err(RecordsError::UnsupportedMagic { magic, offset: start });
    }
    let min = if magic == 0 { MIN_MESSAGE_SIZE_V0 } else { MIN_MESSAGE_SIZE_V1 };
    if usize::try_from(size).map_or(true, |s| s < min) {
        return Err(RecordsError::invalid_length("legacy message size", i64::from(size), start + 8));
    }
    if verify_crc {
        let actual = crc32_ieee(&bytes[16..]);
        if actual != crc {
            return Err(RecordsError::CrcMismatch { expected: crc, actual, offset: start });
        }
    }
    let code = (attributes & 0x7) as u8;
    let compression =
        Compression::from_code(code).ok_or_else(|| RecordsError::UnknownCompression { code, offset: start + 17 })?;
    let mut pos = start + 18;
    let (timestamp, timestamp_type) = if magic == 0 {
        (-1, TimestampType::CreateTime)
    } else {
        let b = &src[pos..pos + 8];
        pos += 8;
        let ts = i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let tt =
            if attributes & TIMESTAMP_TYPE_BIT != 0 { TimestampType::LogAppendTime } else { TimestampType::CreateTime };
        (ts, tt)
    };
    let key = nullable_bytes(src, end, &mut pos, "legacy message key")?;
    let value = nullable_bytes(src, end, &mut pos, "legacy message value")?;
    if pos != end {
        return Err(RecordsError::TrailingBytes { what: "legacy message", offset: pos, count: end - pos });
    }
    Ok(Message { offset, magic, compression, timestamp_type, timestamp, key, value })
}

/// Decodes the top-level legacy message occupying exactly `src[start..end]` into a batch:
/// one record, or the inner messages of a compressed wrapper.
pub(crate) fn decode_message(
    src: &Bytes,
    start: usize,
    end: usize,
    opts: &DecodeOptions,
    budget: &mut Budget,
) -> Result<RecordBatch, RecordsError> {
    let m = parse_message(src, start, end, opts.verify_crc)?;
    let mut batch = RecordBatch {
        base_offset: m.offset,
        partition_leader_epoch: -1,
        magic: m.magic,
        compression: m.compression,
        timestamp_type: m.timestamp_type,
        last_offset_delta: 0,
        base_timestamp: m.timestamp,
        max_timestamp: m.timestamp,
        ..RecordBatch::default()
    };
    if m.compression == Compression::None {
        batch.records.push(Record {
            offset: m.offset,
            timestamp: m.timestamp,
            key: m.key,
            value: m.value,
            headers: Vec::new(),
        });
        return Ok(batch);
    }
    let Some(payload) = m.value else {
        return Err(RecordsError::Malformed { what: "compressed legacy message with a null value", offset: start });
    };
    let payload_at = end - payload.len();
    let inner = Bytes::from(budget.decompress(m.compression, &payload, payload_at, start)?);
    let inner_messages = parse_inner(&inner, opts.verify_crc).map_err(|e| e.in_compressed(m.compression, start))?;
    let (Some(first), Some(last)) = (inner_messages.first(), inner_messages.last()) else {
        return Ok(batch);
    };
    // Magic 1 wrappers: inner offsets are relative and the wrapper holds the last one's
    // absolute offset.
    let base = if m.magic >= 1 { m.offset.wrapping_sub(last.offset) } else { 0 };
    let first_offset = base.wrapping_add(first.offset);
    let last_offset = base.wrapping_add(last.offset);
    batch.base_offset = first_offset;
    batch.last_offset_delta = i32::try_from(last_offset.wrapping_sub(first_offset)).unwrap_or(i32::MAX);
    let log_append = m.magic >= 1 && m.timestamp_type == TimestampType::LogAppendTime;
    batch.records = inner_messages
        .into_iter()
        .map(|i| Record {
            offset: base.wrapping_add(i.offset),
            timestamp: if log_append {
                m.timestamp
            } else if i.magic >= 1 {
                i.timestamp
            } else {
                -1
            },
            key: i.key,
            value: i.value,
            headers: Vec::new(),
        })
        .collect();
    batch.base_timestamp = batch.records[0].timestamp;
    if m.magic == 0 {
        batch.max_timestamp = batch.records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    }
    Ok(batch)
}

/// Parses a decompressed inner message set; every message must be complete and uncompressed.
fn parse_inner(inner: &Bytes, verify_crc: bool) -> Result<Vec<Message>, RecordsError> {
    let mut messages = Vec::new();
    let mut pos = 0;
    while pos < inner.len() {
        let left = inner.len() - pos;
        let Some(b) = inner.get(pos + 8..pos + 12) else {
            return Err(RecordsError::truncated("inner legacy message", pos, LOG_OVERHEAD, left));
        };
        let size = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if size < MIN_MESSAGE_SIZE_V0 as i32 {
            return Err(RecordsError::invalid_length("legacy message size", i64::from(size), pos + 8));
        }
        let total = LOG_OVERHEAD + size as usize;
        if total > left {
            return Err(RecordsError::truncated("inner legacy message", pos, total, left));
        }
        let m = parse_message(inner, pos, pos + total, verify_crc)?;
        if m.compression != Compression::None {
            return Err(RecordsError::Malformed {
                what: "compressed legacy message nested in a compressed message",
                offset: pos,
            });
        }
        messages.push(m);
        pos += total;
    }
    Ok(messages)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::records::decode_batches;

    /// Builds one legacy message (test helper, also used by the batch tests).
    pub(crate) fn message(
        offset: i64,
        magic: i8,
        attributes: i8,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut body = vec![magic as u8, attributes as u8];
        if magic == 1 {
            body.extend_from_slice(&timestamp.to_be_bytes());
        }
        for field in [key, value] {
            match field {
                Some(b) => {
                    body.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    body.extend_from_slice(b);
                }
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        let mut out = offset.to_be_bytes().to_vec();
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&crc32_ieee(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn magic_0_uncompressed() {
        let mut set = message(5, 0, 0, 0, Some(b"k"), Some(b"v0"));
        set.extend(message(6, 0, 0, 0, None, None));
        let input = Bytes::from(set);
        let out = decode_batches(&input).unwrap();
        assert!(!out.is_partial());
        assert_eq!(out.batches.len(), 2);
        let r0 = &out.batches[0].records[0];
        assert_eq!(out.batches[0].magic, 0);
        assert_eq!((r0.offset, r0.timestamp), (5, -1));
        assert_eq!(r0.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r0.value.as_deref(), Some(&b"v0"[..]));
        assert!(input.as_ptr_range().contains(&r0.value.as_ref().unwrap().as_ptr()));
        let r1 = &out.batches[1].records[0];
        assert_eq!((r1.offset, r1.key.clone(), r1.value.clone()), (6, None, None));
    }

    #[test]
    fn magic_1_uncompressed_with_timestamps() {
        let input = Bytes::from(message(9, 1, 0, 1234, None, Some(b"x")));
        let b = &decode_batches(&input).unwrap().batches[0];
        assert_eq!((b.magic, b.timestamp_type), (1, TimestampType::CreateTime));
        assert_eq!((b.records[0].offset, b.records[0].timestamp), (9, 1234));
        let input = Bytes::from(message(9, 1, TIMESTAMP_TYPE_BIT, 77, None, Some(b"x")));
        let b = &decode_batches(&input).unwrap().batches[0];
        assert_eq!(b.timestamp_type, TimestampType::LogAppendTime);
    }

    #[cfg(feature = "gzip")]
    #[test]
    fn magic_1_compressed_wrapper_uses_relative_offsets() {
        let mut inner = Vec::new();
        for (i, ts) in [(0i64, 100i64), (1, 300), (2, 200)] {
            inner.extend(message(i, 1, 0, ts, None, Some(format!("v{i}").as_bytes())));
        }
        let mut payload = bytes::BytesMut::new();
        super::super::compression::compress(Compression::Gzip, None, &inner, &mut payload).unwrap();
        // Wrapper offset = absolute offset of the last inner message.
        let input = Bytes::from(message(52, 1, 1, 300, None, Some(&payload)));
        let b = &decode_batches(&input).unwrap().batches[0];
        assert_eq!(b.compression, Compression::Gzip);
        assert_eq!(b.base_offset, 50);
        assert_eq!(b.last_offset_delta, 2);
        let got: Vec<_> = b.records.iter().map(|r| (r.offset, r.timestamp)).collect();
        assert_eq!(got, [(50, 100), (51, 300), (52, 200)]);
        assert_eq!(b.records[2].value.as_deref(), Some(&b"v2"[..]));

        // LogAppendTime wrapper: every record takes the wrapper's timestamp.
        let input = Bytes::from(message(52, 1, 1 | TIMESTAMP_TYPE_BIT, 999, None, Some(&payload)));
        let b = &decode_batches(&input).unwrap().batches[0];
        assert!(b.records.iter().all(|r| r.timestamp == 999));
    }

    #[cfg(feature = "snappy")]
    #[test]
    fn magic_0_compressed_wrapper_uses_absolute_offsets() {
        let mut inner = message(10, 0, 0, 0, Some(b"a"), Some(b"1"));
        inner.extend(message(11, 0, 0, 0, Some(b"b"), Some(b"2")));
        let payload = snap::raw::Encoder::new().compress_vec(&inner).unwrap();
        let input = Bytes::from(message(11, 0, 2, 0, None, Some(&payload)));
        let b = &decode_batches(&input).unwrap().batches[0];
        let got: Vec<_> = b.records.iter().map(|r| r.offset).collect();
        assert_eq!(got, [10, 11]);
        assert_eq!(b.records[1].key.as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn malformed_legacy_messages() {
        // Bad CRC.
        let mut m = message(0, 0, 0, 0, None, Some(b"v"));
        *m.last_mut().unwrap() ^= 1;
        assert!(matches!(decode_batches(&Bytes::from(m)), Err(RecordsError::CrcMismatch { offset: 0, .. })));
        // Key length -2.
        let mut m = message(0, 0, 0, 0, Some(b""), None);
        m[18..22].copy_from_slice(&(-2i32).to_be_bytes());
        let crc = crc32_ieee(&m[16..]);
        m[12..16].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_batches(&Bytes::from(m)),
            Err(RecordsError::InvalidLength { value: -2, offset: 18, .. })
        ));
        // Value length past the message end.
        let mut m = message(0, 0, 0, 0, None, Some(b"abc"));
        m[22..26].copy_from_slice(&100i32.to_be_bytes());
        let crc = crc32_ieee(&m[16..]);
        m[12..16].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_batches(&Bytes::from(m)),
            Err(RecordsError::Truncated { what: "legacy message value", .. })
        ));
        // Unknown codec 6.
        let m = message(0, 1, 6, 0, None, Some(b"v"));
        assert!(matches!(
            decode_batches(&Bytes::from(m)),
            Err(RecordsError::UnknownCompression { code: 6, offset: 17 })
        ));
        // Magic 1 message too short for its timestamp.
        let mut m = message(0, 0, 0, 0, None, None);
        m[16] = 1;
        let crc = crc32_ieee(&m[16..]);
        m[12..16].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode_batches(&Bytes::from(m)), Err(RecordsError::InvalidLength { value: 14, .. })));
    }
}
