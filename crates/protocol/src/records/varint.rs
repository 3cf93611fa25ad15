//! Zig-zag varints as used inside v2 records: `varint` (an `i32`, at most 5 bytes) and
//! `varlong` (an `i64`, at most 10 bytes), little-endian base-128 groups.

use bytes::BytesMut;

use super::RecordsError;

/// Why a varint could not be read; the caller adds the field name and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ended before the last byte of the varint.
    Truncated,
    /// More bytes than the type allows, or bits beyond its width.
    TooLong,
}

impl VarintError {
    /// Turns this into a [`RecordsError`] for field `what` starting at `offset` with
    /// `available` bytes left.
    #[cold]
    pub(crate) fn at(self, what: &'static str, offset: usize, available: usize) -> RecordsError {
        match self {
            VarintError::Truncated => RecordsError::truncated(what, offset, available + 1, available),
            VarintError::TooLong => RecordsError::InvalidVarint { what, offset },
        }
    }
}

#[inline(always)]
const fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline(always)]
const fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline(always)]
const fn unzigzag32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

#[inline(always)]
const fn unzigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encoded size in bytes of `v` as a zig-zag varint (1..=5).
#[inline(always)]
pub(crate) const fn varint_len(v: i32) -> usize {
    let bits = 32 - (zigzag32(v) | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Encoded size in bytes of `v` as a zig-zag varlong (1..=10).
#[inline(always)]
pub(crate) const fn varlong_len(v: i64) -> usize {
    let bits = 64 - (zigzag64(v) | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Base-128 encodes `u` (below 2^56, so at most 8 groups) into the low bytes of a `u64`, first
/// group lowest; returns the bits and the byte count.
#[inline(always)]
fn groups(mut u: u64) -> (u64, usize) {
    let mut bits = 0u64;
    let mut n = 0;
    while u >= 0x80 {
        bits |= ((u & 0x7f) | 0x80) << (8 * n);
        u >>= 7;
        n += 1;
    }
    (bits | (u << (8 * n)), n + 1)
}

/// Appends the first `n` bytes of `bits` (little-endian) with one fixed-size 8-byte copy,
/// then cuts the excess off: no `memcpy` call and no byte-by-byte buffer.
#[inline(always)]
fn put_groups(out: &mut BytesMut, bits: u64, n: usize) {
    let end = out.len() + n;
    out.extend_from_slice(&bits.to_le_bytes());
    out.truncate(end);
}

/// Appends `v` as a zig-zag varint.
#[inline(always)]
pub(crate) fn put_varint(out: &mut BytesMut, v: i32) {
    let u = zigzag32(v);
    if u < 0x80 {
        out.extend_from_slice(&[u as u8]);
    } else {
        let (bits, n) = groups(u64::from(u));
        put_groups(out, bits, n);
    }
}

/// Appends `v` as a zig-zag varlong.
#[inline(always)]
pub(crate) fn put_varlong(out: &mut BytesMut, v: i64) {
    let u = zigzag64(v);
    if u < 0x80 {
        out.extend_from_slice(&[u as u8]);
    } else if u < 1 << 56 {
        let (bits, n) = groups(u);
        put_groups(out, bits, n);
    } else {
        // 9 or 10 bytes: the low 56 bits as 8 continued groups, then the rest.
        let (bits, _) = groups(u & ((1 << 56) - 1));
        put_groups(out, bits | 0x80 << 56, 8);
        let (bits, n) = groups(u >> 56);
        put_groups(out, bits, n);
    }
}

/// Reads a zig-zag varint from `buf` at `*pos`, advancing `*pos` past it.
#[inline(always)]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    match buf.get(*pos) {
        Some(&b) if b < 0x80 => {
            *pos += 1;
            Ok(unzigzag32(u32::from(b)))
        }
        Some(_) => read_varint_slow(buf, pos),
        None => Err(VarintError::Truncated),
    }
}

#[inline(never)]
fn read_varint_slow(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let mut value: u32 = 0;
    let mut p = *pos;
    for i in 0..5 {
        let b = *buf.get(p).ok_or(VarintError::Truncated)?;
        p += 1;
        if i == 4 && b > 0x0f {
            // A 5th byte may only carry the top 4 bits and no continuation.
            return Err(VarintError::TooLong);
        }
        value |= u32::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pos = p;
            return Ok(unzigzag32(value));
        }
    }
    Err(VarintError::TooLong)
}

/// Reads a zig-zag varlong from `buf` at `*pos`, advancing `*pos` past it.
#[inline(always)]
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    match buf.get(*pos) {
        Some(&b) if b < 0x80 => {
            *pos += 1;
            Ok(unzigzag64(u64::from(b)))
        }
        Some(_) => read_varlong_slow(buf, pos),
        None => Err(VarintError::Truncated),
    }
}

#[inline(never)]
fn read_varlong_slow(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    let mut value: u64 = 0;
    let mut p = *pos;
    for i in 0..10 {
        let b = *buf.get(p).ok_or(VarintError::Truncated)?;
        p += 1;
        if i == 9 && b > 0x01 {
            // A 10th byte may only carry the top bit and no continuation.
            return Err(VarintError::TooLong);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pos = p;
            return Ok(unzigzag64(value));
        }
    }
    Err(VarintError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc32(v: i32) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_varint(&mut out, v);
        out.to_vec()
    }

    fn enc64(v: i64) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_varlong(&mut out, v);
        out.to_vec()
    }

    #[test]
    fn known_encodings() {
        assert_eq!(enc32(0), [0x00]);
        assert_eq!(enc32(-1), [0x01]);
        assert_eq!(enc32(1), [0x02]);
        assert_eq!(enc32(-64), [0x7f]);
        assert_eq!(enc32(64), [0x80, 0x01]);
        assert_eq!(enc32(150), [0xac, 0x02]);
        assert_eq!(enc32(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc32(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc64(i64::MIN).len(), 10);
        assert_eq!(*enc64(i64::MIN).last().unwrap(), 0x01);
    }

    #[test]
    fn rejects_overlong_and_truncated() {
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut pos),
            Err(VarintError::TooLong)
        );
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos),
            Err(VarintError::TooLong)
        );
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), Err(VarintError::Truncated));
        let mut pos = 0;
        assert_eq!(read_varint(&[], &mut pos), Err(VarintError::Truncated));
        let mut pos = 0;
        assert_eq!(read_varlong(&[0xff; 11], &mut pos), Err(VarintError::TooLong));
        let mut pos = 0;
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02;
        assert_eq!(read_varlong(&ten, &mut pos), Err(VarintError::TooLong));
        assert_eq!(pos, 0, "position untouched on error");
    }

    proptest! {
        #[test]
        fn varint_round_trip(v: i32) {
            let bytes = enc32(v);
            prop_assert_eq!(bytes.len(), varint_len(v));
            let mut pos = 0;
            prop_assert_eq!(read_varint(&bytes, &mut pos), Ok(v));
            prop_assert_eq!(pos, bytes.len());
        }

        #[test]
        fn varlong_round_trip(v: i64) {
            let bytes = enc64(v);
            prop_assert_eq!(bytes.len(), varlong_len(v));
            let mut pos = 0;
            prop_assert_eq!(read_varlong(&bytes, &mut pos), Ok(v));
            prop_assert_eq!(pos, bytes.len());
        }
    }
}
