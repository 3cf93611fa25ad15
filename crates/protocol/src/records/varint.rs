//! Zig-zag varints as used inside v2 records: `varint` (an `i32`, at most 5 bytes) and
//! `varlong` (an `i64`, at most 10 bytes), little-endian base-128 groups.

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

/// Varint size by the leading zeros of a non-zero `u64`: `ceil(significant bits / 7)`.
const LEN_BY_LEADING_ZEROS: [u8; 64] = {
    let mut table = [0u8; 64];
    let mut lz = 0;
    while lz < 64 {
        table[lz] = (64 - lz).div_ceil(7) as u8;
        lz += 1;
    }
    table
};

/// Encoded size in bytes of `v` as a zig-zag varint (1..=5).
#[inline(always)]
pub(crate) const fn varint_len(v: i32) -> usize {
    let lz = (zigzag32(v) as u64 | 1).leading_zeros();
    LEN_BY_LEADING_ZEROS[(lz & 63) as usize] as usize
}

/// Encoded size in bytes of `v` as a zig-zag varlong (1..=10).
#[inline(always)]
pub(crate) const fn varlong_len(v: i64) -> usize {
    let lz = (zigzag64(v) | 1).leading_zeros();
    LEN_BY_LEADING_ZEROS[(lz & 63) as usize] as usize
}

/// Base-128 encodes `u` (below 2^56) in `n` groups (its varint size, 1..=8) into the low
/// bytes of a `u64`, first group lowest, without branches: the seven-bit groups are spread
/// one per byte and the continuation bits of all but the last byte set by a mask.
#[inline(always)]
fn groups(u: u64, n: usize) -> u64 {
    let mut spread = 0u64;
    let mut i = 0;
    while i < 8 {
        spread |= ((u >> (7 * i)) & 0x7f) << (8 * i);
        i += 1;
    }
    let continuation = 0x8080_8080_8080_8080u64 & ((1u64 << (8 * (n - 1))) - 1);
    spread | continuation
}

/// Varint size of a zig-zagged value.
#[inline(always)]
fn groups_len(u: u64) -> usize {
    LEN_BY_LEADING_ZEROS[((u | 1).leading_zeros() & 63) as usize] as usize
}

/// A varint already encoded: its bytes in the low end of `bits`, and how many there are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Encoded {
    bits: u64,
    len: usize,
}

impl Encoded {
    /// The encoding of `-1` (null lengths).
    pub(crate) const MINUS_ONE: Encoded = Encoded { bits: 1, len: 1 };

    /// Encodes `v` as a zig-zag varint.
    #[inline(always)]
    pub(crate) fn varint(v: i32) -> Self {
        let u = zigzag32(v);
        if u < 0x80 {
            return Encoded { bits: u64::from(u), len: 1 };
        }
        let u = u64::from(u);
        if u < 0x4000 {
            return Encoded { bits: (u & 0x7f) | 0x80 | (u >> 7) << 8, len: 2 };
        }
        let len = groups_len(u);
        // Five seven-bit groups spread one per byte, then the continuation bits.
        let spread = (u & 0x7f)
            | ((u << 1) & 0x7f00)
            | ((u << 2) & 0x7f_0000)
            | ((u << 3) & 0x7f00_0000)
            | ((u << 4) & 0x7f_0000_0000);
        let continuation = 0x8080_8080_8080_8080u64 & ((1u64 << (8 * (len - 1))) - 1);
        Encoded { bits: spread | continuation, len }
    }

    /// Encodes `v` as a zig-zag varlong if it takes at most 8 bytes.
    #[inline(always)]
    pub(crate) fn varlong(v: i64) -> Option<Self> {
        let u = zigzag64(v);
        if u < 0x80 {
            return Some(Encoded { bits: u, len: 1 });
        }
        if u < 0x4000 {
            return Some(Encoded { bits: (u & 0x7f) | 0x80 | (u >> 7) << 8, len: 2 });
        }
        if u >= 1 << 56 {
            return None;
        }
        let len = groups_len(u);
        Some(Encoded { bits: groups(u, len), len })
    }

    /// Encoded size in bytes.
    #[inline(always)]
    pub(crate) fn len(self) -> usize {
        self.len
    }

    /// A zero byte followed by `self` (which must be at most 7 bytes long).
    #[inline(always)]
    pub(crate) fn after_zero_byte(self) -> Self {
        debug_assert!(self.len < 8);
        Encoded { bits: self.bits << 8, len: self.len + 1 }
    }

    /// `self` followed by `next` as one write, if both fit in 8 bytes.
    #[inline(always)]
    pub(crate) fn then(self, next: Encoded) -> Option<Self> {
        let len = self.len + next.len;
        (len <= 8).then(|| Encoded { bits: self.bits | next.bits << (8 * self.len), len })
    }
}

/// Writes into a pre-sized buffer at a moving position: the encoder's hot path. Callers size
/// the buffer from an upper bound of what they write plus [`SliceWriter::SLACK`] bytes, as
/// multi-byte varints are stored with one 8-byte write.
pub(crate) struct SliceWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> SliceWriter<'a> {
    /// Spare room the buffer needs past the last byte written.
    pub(crate) const SLACK: usize = 8;

    #[inline(always)]
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        SliceWriter { buf, pos: 0 }
    }

    /// Bytes written so far.
    #[inline(always)]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    pub(crate) fn byte(&mut self, b: u8) {
        self.buf[self.pos] = b;
        self.pos += 1;
    }

    #[inline(always)]
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        let n = b.len();
        let dst = &mut self.buf[self.pos..self.pos + n];
        if (8..=16).contains(&n) {
            // Two overlapping fixed-size copies: no `memcpy` call for short keys.
            dst[..8].copy_from_slice(&b[..8]);
            dst[n - 8..].copy_from_slice(&b[n - 8..]);
        } else {
            dst.copy_from_slice(b);
        }
        self.pos += n;
    }

    /// Writes `a` then `b`, in one store when they fit together.
    #[inline(always)]
    pub(crate) fn put2(&mut self, a: Encoded, b: Encoded) {
        match a.then(b) {
            Some(ab) => self.put(ab),
            None => {
                self.put(a);
                self.put(b);
            }
        }
    }

    /// Stores the first `n` bytes of `bits` with one fixed-size write.
    #[inline(always)]
    fn groups(&mut self, bits: u64, n: usize) {
        self.buf[self.pos..self.pos + 8].copy_from_slice(&bits.to_le_bytes());
        self.pos += n;
    }

    /// Writes an encoded varint.
    #[inline(always)]
    pub(crate) fn put(&mut self, e: Encoded) {
        self.groups(e.bits, e.len);
    }

    /// Writes `v` as a zig-zag varint.
    #[inline(always)]
    pub(crate) fn varint(&mut self, v: i32) {
        self.put(Encoded::varint(v));
    }

    /// Writes `v` as a zig-zag varlong.
    #[inline(always)]
    pub(crate) fn varlong(&mut self, v: i64) {
        if let Some(e) = Encoded::varlong(v) {
            return self.put(e);
        }
        // 9 or 10 bytes: the low 56 bits as 8 continued groups, then the rest.
        let u = zigzag64(v);
        self.groups(groups(u & ((1 << 56) - 1), 8) | 1 << 63, 8);
        let rest = u >> 56;
        let n = groups_len(rest);
        self.groups(groups(rest, n), n);
    }
}

/// Reads a zig-zag varint from `buf` at `*pos`, advancing `*pos` past it.
#[inline(always)]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let Some(&b0) = buf.get(*pos) else {
        return Err(VarintError::Truncated);
    };
    if b0 < 0x80 {
        *pos += 1;
        return Ok(unzigzag32(u32::from(b0)));
    }
    match buf.get(*pos + 1) {
        Some(&b1) if b1 < 0x80 => {
            *pos += 2;
            Ok(unzigzag32(u32::from(b0 & 0x7f) | u32::from(b1) << 7))
        }
        _ => read_varint_slow(buf, pos),
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
    let Some(&b0) = buf.get(*pos) else {
        return Err(VarintError::Truncated);
    };
    if b0 < 0x80 {
        *pos += 1;
        return Ok(unzigzag64(u64::from(b0)));
    }
    match buf.get(*pos + 1) {
        Some(&b1) if b1 < 0x80 => {
            *pos += 2;
            Ok(unzigzag64(u64::from(b0 & 0x7f) | u64::from(b1) << 7))
        }
        _ => read_varlong_slow(buf, pos),
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
        let mut buf = [0u8; 5 + SliceWriter::SLACK];
        let mut w = SliceWriter::new(&mut buf);
        w.varint(v);
        let n = w.position();
        buf[..n].to_vec()
    }

    fn enc64(v: i64) -> Vec<u8> {
        let mut buf = [0u8; 10 + SliceWriter::SLACK];
        let mut w = SliceWriter::new(&mut buf);
        w.varlong(v);
        let n = w.position();
        buf[..n].to_vec()
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
        assert_eq!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut pos), Err(VarintError::TooLong));
        let mut pos = 0;
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos), Err(VarintError::TooLong));
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

    #[test]
    fn boundaries_round_trip() {
        for k in 0..64 {
            for base in [1i64 << k, (1i64 << k).wrapping_neg()] {
                for v in [base.wrapping_sub(1), base, base.wrapping_add(1)] {
                    let bytes = enc64(v);
                    assert_eq!(bytes.len(), varlong_len(v), "{v}");
                    let mut pos = 0;
                    assert_eq!(read_varlong(&bytes, &mut pos), Ok(v));
                    assert_eq!(pos, bytes.len());
                    if let Ok(v) = i32::try_from(v) {
                        let bytes = enc32(v);
                        assert_eq!(bytes.len(), varint_len(v), "{v}");
                        let mut pos = 0;
                        assert_eq!(read_varint(&bytes, &mut pos), Ok(v));
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn small_varints_round_trip(v in -100_000i32..100_000) {
            let bytes = enc32(v);
            prop_assert_eq!(bytes.len(), varint_len(v));
            let mut pos = 0;
            prop_assert_eq!(read_varint(&bytes, &mut pos), Ok(v));
            let bytes = enc64(i64::from(v));
            let mut pos = 0;
            prop_assert_eq!(read_varlong(&bytes, &mut pos), Ok(i64::from(v)));
        }

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
