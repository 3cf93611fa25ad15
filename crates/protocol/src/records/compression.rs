//! Compression codecs for record batches.
//!
//! | codec  | written as                                   | read                                  |
//! |--------|----------------------------------------------|---------------------------------------|
//! | gzip   | one gzip member (flate2, level 6 by default)  | gzip, several members allowed          |
//! | snappy | one raw snappy block (as librdkafka writes)   | raw snappy, or the xerial framing Kafka's Java producer writes |
//! | lz4    | LZ4 frame, independent 64 KiB blocks          | any LZ4 frame; the header checksum is not checked, so magic-0 frames with Kafka's historical wrong checksum read too |
//! | zstd   | one zstd frame with content size (level 3)    | zstd frames                            |
//!
//! Raw snappy is written because every consumer reads it (Java's reader falls back to raw when
//! the xerial header is absent, and librdkafka detects both) and it avoids a framing pass.
//!
//! Decompression never produces more than a caller-given limit: sizes announced by the
//! payload are checked before allocating, and streaming codecs stop one byte past the limit.

#[cfg(any(feature = "gzip", feature = "zstd"))]
use std::io::Read;

use bytes::BytesMut;

use super::RecordsError;

/// Compression codec of a record batch: the low three bits of its attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No compression (code 0).
    #[default]
    None,
    /// Gzip (code 1), feature `gzip`.
    Gzip,
    /// Snappy (code 2), feature `snappy`.
    Snappy,
    /// LZ4 frame format (code 3), feature `lz4`.
    Lz4,
    /// Zstandard (code 4), feature `zstd`. Kafka allows it in v2 batches only.
    Zstd,
}

impl Compression {
    /// The codec for a 3-bit attributes code, or `None` for the undefined codes 5, 6 and 7
    /// (and anything larger).
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    /// The attributes code of this codec.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Lower-case name, as in Kafka's `compression.type` (and this crate's feature names).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Whether this build can compress and decompress with this codec.
    pub fn is_available(self) -> bool {
        match self {
            Compression::None => true,
            Compression::Gzip => cfg!(feature = "gzip"),
            Compression::Snappy => cfg!(feature = "snappy"),
            Compression::Lz4 => cfg!(feature = "lz4"),
            Compression::Zstd => cfg!(feature = "zstd"),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[allow(dead_code)] // used only by some feature combinations
fn unavailable(compression: Compression) -> RecordsError {
    RecordsError::CompressionUnavailable { compression }
}

#[allow(dead_code)] // used only by some feature combinations
fn codec_error(compression: Compression, offset: usize, source: impl Into<super::error::CodecError>) -> RecordsError {
    RecordsError::Decompress { compression, offset, source: source.into() }
}

#[allow(dead_code)] // used only by some feature combinations
fn too_large(compression: Compression, limit: usize, offset: usize) -> RecordsError {
    RecordsError::DecompressedTooLarge { compression, limit, offset }
}

/// Appends `input` compressed with `compression` to `out`. `level` is codec-specific
/// (gzip 0..=9, zstd 1..=22); `None` picks the default and LZ4/snappy ignore it.
pub(crate) fn compress(
    compression: Compression,
    level: Option<i32>,
    input: &[u8],
    out: &mut BytesMut,
) -> Result<(), RecordsError> {
    let _ = level;
    match compression {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        #[cfg(feature = "gzip")]
        Compression::Gzip => gzip_compress(input, level, out),
        #[cfg(feature = "snappy")]
        Compression::Snappy => snappy_compress(input, out),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => {
            lz4_compress(input, out);
            Ok(())
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => zstd_compress(input, level, out),
        #[allow(unreachable_patterns)]
        other => Err(unavailable(other)),
    }
}

/// The most bytes [`compress`] can append for `len` input bytes: a bound that holds for any
/// input, so a caller can size a request before compressing.
pub(crate) fn max_compressed_len(compression: Compression, len: usize) -> usize {
    match compression {
        Compression::None => len,
        // zlib's conservative deflateBound (any level, any strategy) plus gzip's header and
        // trailer: fast levels can emit Huffman blocks larger than stored ones.
        Compression::Gzip => len + len.div_ceil(8) + len.div_ceil(64) + 5 + 64,
        // Raw snappy's own bound (snap::raw::max_compress_len).
        Compression::Snappy => 32 + len + len / 6,
        // Frame header, a size word per block (incompressible blocks are stored), end mark.
        Compression::Lz4 => LZ4_HEADER.len() + len + 4 * (len.div_ceil(LZ4_BLOCK) + 1),
        // ZSTD_compressBound.
        Compression::Zstd => len + (len >> 8) + if len < (128 << 10) { ((128 << 10) - len) >> 11 } else { 0 },
    }
}

/// Decompresses a whole payload. `offset` is where `input` starts in the record set (for
/// errors); at most `limit` bytes are produced.
pub(crate) fn decompress(
    compression: Compression,
    input: &[u8],
    limit: usize,
    offset: usize,
) -> Result<Vec<u8>, RecordsError> {
    let _ = (input, limit, offset);
    match compression {
        Compression::None => {
            if input.len() > limit {
                return Err(too_large(compression, limit, offset));
            }
            Ok(input.to_vec())
        }
        #[cfg(feature = "gzip")]
        Compression::Gzip => gzip_decompress(input, limit, offset),
        #[cfg(feature = "snappy")]
        Compression::Snappy => snappy_decompress(input, limit, offset),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => lz4_decompress(input, limit, offset),
        #[cfg(feature = "zstd")]
        Compression::Zstd => zstd_decompress(input, limit, offset),
        #[allow(unreachable_patterns)]
        other => Err(unavailable(other)),
    }
}

/// What is left of a record set's decompression budget while its batches decode.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    left: usize,
    total: usize,
    per_batch: usize,
}

impl Budget {
    /// `total` for the whole record set, at most `per_batch` for any one batch.
    pub(crate) fn new(total: usize, per_batch: usize) -> Self {
        Budget { left: total, total, per_batch }
    }

    /// Decompresses one batch's payload within both the per-batch bound and what is left of the
    /// record set's budget, and charges the budget for it. `batch_at` locates the batch in
    /// errors about the budget.
    pub(crate) fn decompress(
        &mut self,
        compression: Compression,
        input: &[u8],
        offset: usize,
        batch_at: usize,
    ) -> Result<Vec<u8>, RecordsError> {
        let limit = self.per_batch.min(self.left);
        match decompress(compression, input, limit, offset) {
            Ok(plain) => {
                self.left -= plain.len();
                Ok(plain)
            }
            Err(RecordsError::DecompressedTooLarge { .. }) if limit < self.per_batch => {
                Err(RecordsError::RecordSetTooLarge { limit: self.total, offset: batch_at })
            }
            Err(e) => Err(e),
        }
    }
}

/// A first guess at the decompressed size, to limit reallocations.
#[allow(dead_code)] // used only by some feature combinations
fn capacity_hint(input_len: usize, limit: usize) -> usize {
    input_len.saturating_mul(4).clamp(64, limit.max(64))
}

/// Reads `reader` to its end into a `Vec`, failing once more than `limit` bytes come out.
#[cfg(any(feature = "gzip", feature = "zstd"))]
fn read_bounded(
    reader: impl Read,
    capacity: usize,
    compression: Compression,
    limit: usize,
    offset: usize,
) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::with_capacity(capacity.min(limit));
    reader
        .take((limit as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| codec_error(compression, offset, e))?;
    if out.len() > limit {
        return Err(too_large(compression, limit, offset));
    }
    Ok(out)
}

// --- gzip -------------------------------------------------------------------------------------

#[cfg(feature = "gzip")]
fn gzip_compress(input: &[u8], level: Option<i32>, out: &mut BytesMut) -> Result<(), RecordsError> {
    use bytes::BufMut;
    use std::io::Write;
    let level = level.map_or(6, |l| l.clamp(0, 9) as u32);
    out.reserve(input.len() / 2 + 64);
    let mut enc = flate2::write::GzEncoder::new(out.writer(), flate2::Compression::new(level));
    enc.write_all(input)
        .and_then(|()| enc.finish().map(drop))
        .map_err(|e| RecordsError::Compress { compression: Compression::Gzip, source: e.into() })
}

#[cfg(feature = "gzip")]
fn gzip_decompress(input: &[u8], limit: usize, offset: usize) -> Result<Vec<u8>, RecordsError> {
    read_bounded(
        flate2::read::MultiGzDecoder::new(input),
        capacity_hint(input.len(), limit),
        Compression::Gzip,
        limit,
        offset,
    )
}

// --- snappy -----------------------------------------------------------------------------------

/// The 8-byte magic that opens snappy-java's (xerial) stream framing.
#[cfg(feature = "snappy")]
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

#[cfg(feature = "snappy")]
fn snappy_compress(input: &[u8], out: &mut BytesMut) -> Result<(), RecordsError> {
    let max = snap::raw::max_compress_len(input.len());
    if max == 0 && !input.is_empty() {
        return Err(RecordsError::InvalidInput { reason: "payload too large for snappy" });
    }
    let start = out.len();
    out.resize(start + max, 0);
    match snap::raw::Encoder::new().compress(input, &mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(RecordsError::Compress { compression: Compression::Snappy, source: e.into() })
        }
    }
}

/// Appends one raw snappy block to `out`, checking its announced size against `limit` first.
#[cfg(feature = "snappy")]
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize, offset: usize) -> Result<(), RecordsError> {
    let c = Compression::Snappy;
    let len = snap::raw::decompress_len(block).map_err(|e| codec_error(c, offset, e))?;
    if len > limit - out.len() {
        return Err(too_large(c, limit, offset));
    }
    let start = out.len();
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(|e| codec_error(c, offset, e))?;
    out.truncate(start + n);
    Ok(())
}

#[cfg(feature = "snappy")]
fn snappy_decompress(input: &[u8], limit: usize, offset: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    if !input.starts_with(&XERIAL_MAGIC) {
        snappy_block(input, &mut out, limit, offset)?;
        return Ok(out);
    }
    // xerial: magic, BE i32 version, BE i32 minimum compatible version, then blocks of
    // [BE i32 length][raw snappy block].
    let mut pos = XERIAL_MAGIC.len() + 8;
    if input.len() < pos {
        return Err(RecordsError::truncated("xerial snappy header", offset, pos, input.len()));
    }
    out.reserve(capacity_hint(input.len(), limit));
    while pos < input.len() {
        let Some(len_bytes) = input.get(pos..pos + 4) else {
            return Err(RecordsError::truncated("xerial snappy block length", offset + pos, 4, input.len() - pos));
        };
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        if len < 0 {
            return Err(RecordsError::invalid_length("xerial snappy block length", i64::from(len), offset + pos));
        }
        pos += 4;
        let len = len as usize;
        if len > input.len() - pos {
            return Err(RecordsError::truncated("xerial snappy block", offset + pos, len, input.len() - pos));
        }
        snappy_block(&input[pos..pos + len], &mut out, limit, offset + pos)?;
        pos += len;
    }
    Ok(out)
}

// --- lz4 --------------------------------------------------------------------------------------

#[allow(dead_code)] // used only by some feature combinations
const LZ4_MAGIC: u32 = 0x184D_2204;
#[allow(dead_code)] // used only by some feature combinations
const LZ4_BLOCK: usize = 64 * 1024;
/// LZ4 frame header written by this crate: magic, FLG = version 01 + independent blocks,
/// BD = 64 KiB max block size, and the header checksum byte for those two bytes
/// (second byte of xxHash32 over FLG and BD).
#[allow(dead_code)] // used only by some feature combinations
const LZ4_HEADER: [u8; 7] = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82];

#[cfg(feature = "lz4")]
fn lz4_compress(input: &[u8], out: &mut BytesMut) {
    use bytes::BufMut;
    let blocks = input.len().div_ceil(LZ4_BLOCK);
    out.reserve(LZ4_HEADER.len() + 4 + input.len() / 2 + blocks * 4);
    out.extend_from_slice(&LZ4_HEADER);
    for chunk in input.chunks(LZ4_BLOCK) {
        let start = out.len();
        let max = lz4_flex::block::get_maximum_output_size(chunk.len());
        out.resize(start + 4 + max, 0);
        // Cannot fail: the output holds the worst case.
        let n = lz4_flex::block::compress_into(chunk, &mut out[start + 4..]).unwrap_or(usize::MAX);
        if n < chunk.len() {
            out.truncate(start + 4 + n);
            out[start..start + 4].copy_from_slice(&(n as u32).to_le_bytes());
        } else {
            // Incompressible: store it, flagged by the high bit of the size.
            out.truncate(start);
            out.put_u32_le(chunk.len() as u32 | 0x8000_0000);
            out.extend_from_slice(chunk);
        }
    }
    out.put_u32_le(0); // end mark
}

/// The most bytes an LZ4 block of `len` compressed bytes can decode to. A sequence's token and
/// match offset take 3 bytes for at most 19 bytes out, each extra length byte adds at most 255,
/// and literals come out 1:1, so no byte of input yields more than 255 bytes of output.
#[cfg(feature = "lz4")]
fn lz4_max_output(len: usize) -> usize {
    len.saturating_mul(255).saturating_add(64)
}

#[cfg(all(feature = "lz4", test))]
thread_local! {
    /// Bytes `zero_fill` has written, for the tests that bound the decoder's work.
    static ZEROED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Grows `out` to `len` bytes with zeros (the decoders' output window).
#[cfg(feature = "lz4")]
fn zero_fill(out: &mut Vec<u8>, len: usize) {
    #[cfg(test)]
    ZEROED.with(|z| z.set(z.get() + len.saturating_sub(out.len())));
    out.resize(len, 0);
}

#[cfg(feature = "lz4")]
fn lz4_decompress(input: &[u8], limit: usize, offset: usize) -> Result<Vec<u8>, RecordsError> {
    let c = Compression::Lz4;
    let trunc =
        |what, pos: usize, needed| RecordsError::truncated(what, offset + pos, needed, input.len().saturating_sub(pos));
    let le32 =
        |pos: usize| -> Option<u32> { input.get(pos..pos + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])) };
    let mut out: Vec<u8> = Vec::new();
    let mut pos = 0;
    // Frames may be concatenated; read until the input is used up.
    while pos < input.len() {
        let magic = le32(pos).ok_or_else(|| trunc("lz4 frame magic", pos, 4))?;
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            // Skippable frame.
            let len = le32(pos + 4).ok_or_else(|| trunc("lz4 skippable frame", pos + 4, 4))?;
            let end = (pos + 8).saturating_add(len as usize);
            if end > input.len() {
                return Err(trunc("lz4 skippable frame", pos + 8, len as usize));
            }
            pos = end;
            continue;
        }
        if magic != LZ4_MAGIC {
            return Err(RecordsError::Malformed { what: "lz4 frame magic", offset: offset + pos });
        }
        pos += 4;
        let (Some(&flg), Some(&bd)) = (input.get(pos), input.get(pos + 1)) else {
            return Err(trunc("lz4 frame descriptor", pos, 2));
        };
        if flg >> 6 != 0b01 || flg & 0b10 != 0 || bd & 0x8F != 0 {
            return Err(RecordsError::Malformed { what: "lz4 frame descriptor", offset: offset + pos });
        }
        if flg & 0b1 != 0 {
            return Err(codec_error(c, offset + pos, "lz4 dictionaries are not supported"));
        }
        let independent = flg & 0b0010_0000 != 0;
        let block_checksums = flg & 0b0001_0000 != 0;
        let has_content_size = flg & 0b0000_1000 != 0;
        let content_checksum = flg & 0b0000_0100 != 0;
        let block_max = match (bd >> 4) & 0x7 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            _ => {
                return Err(RecordsError::Malformed { what: "lz4 block size", offset: offset + pos + 1 });
            }
        };
        pos += 2;
        if has_content_size {
            let b = input.get(pos..pos + 8).ok_or_else(|| trunc("lz4 content size", pos, 8))?;
            let size = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            if size > (limit - out.len()) as u64 {
                return Err(too_large(c, limit, offset));
            }
            // A claim, not a fact: reserve no more than the rest of the input can expand to.
            out.reserve((size as usize).min(lz4_max_output(input.len() - pos)));
            pos += 8;
        } else {
            out.reserve(capacity_hint(input.len(), limit).min(limit - out.len()));
        }
        // Header checksum: deliberately not checked (see the module docs).
        if pos >= input.len() {
            return Err(trunc("lz4 header checksum", pos, 1));
        }
        pos += 1;
        let frame_start = out.len();
        loop {
            let size = le32(pos).ok_or_else(|| trunc("lz4 block size", pos, 4))?;
            pos += 4;
            if size == 0 {
                break; // end mark
            }
            let stored = size & 0x8000_0000 != 0;
            let len = (size & 0x7FFF_FFFF) as usize;
            if len > block_max {
                return Err(RecordsError::invalid_length("lz4 block size", len as i64, offset + pos - 4));
            }
            if len > input.len() - pos {
                return Err(trunc("lz4 block", pos, len));
            }
            let block = &input[pos..pos + len];
            let start = out.len();
            if stored {
                if len > limit - start {
                    return Err(too_large(c, limit, offset));
                }
                out.extend_from_slice(block);
            } else {
                // Room for what this block can expand to: at most a whole block, at most what
                // LZ4's format lets `len` bytes produce, and at most one byte past the limit.
                // The safe decoder writes into initialised memory only, so the window is
                // zero-filled first: sizing it by the block's own length keeps that work
                // proportional to the input (a frame of tiny blocks claiming 4 MiB each must
                // not cost 4 MiB of zeroing per block).
                let room = limit - start + 1;
                let window = block_max.min(lz4_max_output(len)).min(room);
                zero_fill(&mut out, start + window);
                let result = if independent || start == frame_start {
                    lz4_flex::block::decompress_into(block, &mut out[start..])
                } else {
                    let (prev, rest) = out.split_at_mut(start);
                    let dict_from = frame_start.max(start.saturating_sub(64 << 10));
                    lz4_flex::block::decompress_into_with_dict(block, rest, &prev[dict_from..])
                };
                let n = match result {
                    Ok(n) => n,
                    // The window was cut at the limit and the block needs more: too large.
                    Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) if window == room => {
                        return Err(too_large(c, limit, offset));
                    }
                    Err(e) => return Err(codec_error(c, offset + pos, e)),
                };
                out.truncate(start + n);
                if out.len() > limit {
                    return Err(too_large(c, limit, offset));
                }
            }
            pos += len;
            if block_checksums {
                if input.len() - pos < 4 {
                    return Err(trunc("lz4 block checksum", pos, 4));
                }
                pos += 4;
            }
        }
        if content_checksum {
            if input.len() - pos < 4 {
                return Err(trunc("lz4 content checksum", pos, 4));
            }
            pos += 4;
        }
    }
    Ok(out)
}

// --- zstd -------------------------------------------------------------------------------------

#[cfg(feature = "zstd")]
fn zstd_compress(input: &[u8], level: Option<i32>, out: &mut BytesMut) -> Result<(), RecordsError> {
    let start = out.len();
    let max = zstd::zstd_safe::compress_bound(input.len());
    out.resize(start + max, 0);
    match zstd::bulk::compress_to_buffer(input, &mut out[start..], level.unwrap_or(3)) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(RecordsError::Compress { compression: Compression::Zstd, source: e.into() })
        }
    }
}

#[cfg(feature = "zstd")]
fn zstd_decompress(input: &[u8], limit: usize, offset: usize) -> Result<Vec<u8>, RecordsError> {
    let c = Compression::Zstd;
    let capacity = match zstd::zstd_safe::get_frame_content_size(input) {
        Ok(Some(size)) if size > limit as u64 => return Err(too_large(c, limit, offset)),
        Ok(Some(size)) => size as usize,
        _ => capacity_hint(input.len(), limit),
    };
    let decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(|e| codec_error(c, offset, e))?;
    read_bounded(decoder, capacity, c, limit, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivially so.
        (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] % 16).collect()
    }

    fn all() -> [Compression; 5] {
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
    }

    #[test]
    fn codes() {
        for c in all() {
            assert_eq!(Compression::from_code(c.code()), Some(c));
        }
        for code in 5..=7 {
            assert_eq!(Compression::from_code(code), None);
        }
    }

    #[test]
    fn round_trip_every_codec() {
        for c in all() {
            if !c.is_available() {
                continue;
            }
            for len in [0, 1, 100, LZ4_BLOCK - 1, LZ4_BLOCK, 3 * LZ4_BLOCK + 17] {
                let input = sample(len);
                let mut out = BytesMut::from(&b"prefix"[..]);
                compress(c, None, &input, &mut out).unwrap();
                assert_eq!(&out[..6], b"prefix");
                let back = decompress(c, &out[6..], LIMIT, 0).unwrap();
                assert_eq!(back, input, "{c} {len}");
            }
        }
    }

    /// Pseudo-random bytes: incompressible, the worst case for every codec's output size.
    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn max_compressed_len_bounds_every_codec() {
        for c in all() {
            if !c.is_available() {
                continue;
            }
            for len in [0, 1, 15, 100, 16_383, 16_384, LZ4_BLOCK - 1, LZ4_BLOCK, LZ4_BLOCK + 1, 3 * LZ4_BLOCK + 17] {
                for (kind, input) in [("noise", noise(len)), ("sample", sample(len)), ("zeros", vec![0; len])] {
                    for level in [None, Some(0), Some(1), Some(9)] {
                        let mut out = BytesMut::new();
                        compress(c, level, &input, &mut out).unwrap();
                        let bound = max_compressed_len(c, len);
                        assert!(out.len() <= bound, "{c} {kind} {len} {level:?}: {} > {bound}", out.len());
                    }
                }
            }
        }
    }

    /// xxHash32 for inputs shorter than 16 bytes (enough for an LZ4 frame descriptor).
    #[cfg(feature = "lz4")]
    fn xxh32_short(input: &[u8], seed: u32) -> u32 {
        const P1: u32 = 0x9E37_79B1;
        const P2: u32 = 0x85EB_CA77;
        const P3: u32 = 0xC2B2_AE3D;
        const P4: u32 = 0x27D4_EB2F;
        const P5: u32 = 0x1656_67B1;
        assert!(input.len() < 16);
        let mut h = seed.wrapping_add(P5).wrapping_add(input.len() as u32);
        let mut chunks = input.chunks_exact(4);
        for c in chunks.by_ref() {
            let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            h = h.wrapping_add(v.wrapping_mul(P3)).rotate_left(17).wrapping_mul(P4);
        }
        for &b in chunks.remainder() {
            h = h.wrapping_add(u32::from(b).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
        }
        h ^= h >> 15;
        h = h.wrapping_mul(P2);
        h ^= h >> 13;
        h = h.wrapping_mul(P3);
        h ^ (h >> 16)
    }

    #[cfg(feature = "lz4")]
    #[test]
    fn lz4_frames_are_standard() {
        // The header checksum byte we write is the one the LZ4 frame spec asks for.
        assert_eq!(xxh32_short(b"", 0), 0x02CC_5D05);
        assert_eq!(((xxh32_short(&LZ4_HEADER[4..6], 0) >> 8) & 0xff) as u8, LZ4_HEADER[6]);

        let input = sample(200_000);
        let mut ours = BytesMut::new();
        lz4_compress(&input, &mut ours);
        assert_eq!(&ours[..7], &LZ4_HEADER);
        assert_eq!(lz4_decompress(&ours, LIMIT, 0).unwrap(), input);

        // A frame with linked blocks, block and content checksums and a content size, as
        // other writers may produce, built by hand around lz4_flex blocks.
        let flg = 0b0100_0000 | 0b1_0000 | 0b1000 | 0b100;
        let mut frame = vec![0x04, 0x22, 0x4D, 0x18, flg, 0x40];
        frame.extend_from_slice(&(input.len() as u64).to_le_bytes());
        let hc = ((xxh32_short(&frame[4..], 0) >> 8) & 0xff) as u8;
        frame.push(hc);
        for (i, chunk) in input.chunks(LZ4_BLOCK).enumerate() {
            let start = i * LZ4_BLOCK;
            let dict = &input[start.saturating_sub(LZ4_BLOCK)..start];
            let block = lz4_flex::block::compress_with_dict(chunk, dict);
            frame.extend_from_slice(&(block.len() as u32).to_le_bytes());
            frame.extend_from_slice(&block);
            frame.extend_from_slice(&[0xAA; 4]); // block checksum (not verified)
        }
        frame.extend_from_slice(&0u32.to_le_bytes());
        frame.extend_from_slice(&[0xBB; 4]); // content checksum (not verified)
        assert_eq!(lz4_decompress(&frame, LIMIT, 0).unwrap(), input);
        // Two frames back to back, with a skippable frame between them.
        let mut two = ours.to_vec();
        two.extend_from_slice(&[0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        two.extend_from_slice(&frame);
        assert_eq!(lz4_decompress(&two, LIMIT, 0).unwrap(), [&input[..], &input[..]].concat());

        // Incompressible data is stored.
        let noise: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut stored = BytesMut::new();
        lz4_compress(&noise, &mut stored);
        assert_eq!(lz4_decompress(&stored, LIMIT, 0).unwrap(), noise);

        // Truncated frames are typed errors at every cut.
        let n = ours.len();
        for cut in (1..n).filter(|&c| c < 64 || c % 997 == 0 || c > n - 16) {
            assert!(lz4_decompress(&ours[..cut], LIMIT, 0).is_err(), "{cut}");
        }
    }

    /// An LZ4 frame header (no checksums, no content size) with block size `bd` (4..=7).
    #[cfg(feature = "lz4")]
    fn lz4_header(bd: u8, independent: bool) -> Vec<u8> {
        let flg = 0b0100_0000 | if independent { 0b0010_0000 } else { 0 };
        let mut frame = vec![0x04, 0x22, 0x4D, 0x18, flg, bd << 4];
        frame.push(((xxh32_short(&frame[4..], 0) >> 8) & 0xff) as u8);
        frame
    }

    /// A frame of many tiny blocks, each claiming the 4 MiB block size (BD=7), costs work in
    /// proportion to its input: the decoder zero-fills a window sized by each block's length,
    /// not a whole block buffer per block.
    #[cfg(feature = "lz4")]
    #[test]
    fn lz4_tiny_blocks_cost_work_in_proportion_to_the_input() {
        const BLOCKS: usize = 1000;
        for independent in [true, false] {
            let mut frame = lz4_header(7, independent);
            for i in 0..BLOCKS {
                // A literal-only block: token "1 literal", then the literal.
                frame.extend_from_slice(&2u32.to_le_bytes());
                frame.extend_from_slice(&[0x10, i as u8]);
            }
            frame.extend_from_slice(&0u32.to_le_bytes());
            ZEROED.with(|z| z.set(0));
            let out = lz4_decompress(&frame, 64 << 20, 0).unwrap();
            assert_eq!(out, (0..BLOCKS).map(|i| i as u8).collect::<Vec<_>>());
            let zeroed = ZEROED.with(std::cell::Cell::get);
            // Each 2-byte block zero-fills at most `lz4_max_output(2)` bytes (574), against 4 MiB
            // each (4 GiB in all) when the window was a whole block.
            assert!(zeroed <= BLOCKS * lz4_max_output(2), "zeroed {zeroed} bytes for {} bytes of input", frame.len());
            assert!(out.capacity() < 1 << 20, "capacity {}", out.capacity());
        }
    }

    /// The window bound holds at LZ4's highest ratio: one 4 MiB block of zeros (BD=7) decodes,
    /// and cut one byte short of it by the limit it is too large, not corrupt.
    #[cfg(feature = "lz4")]
    #[test]
    fn lz4_blocks_at_the_highest_ratio_fit_their_window() {
        let zeros = vec![0u8; 4 << 20];
        let block = lz4_flex::block::compress(&zeros);
        assert!(zeros.len() <= lz4_max_output(block.len()), "{} from {}", zeros.len(), block.len());
        let mut frame = lz4_header(7, true);
        frame.extend_from_slice(&(block.len() as u32).to_le_bytes());
        frame.extend_from_slice(&block);
        frame.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(lz4_decompress(&frame, zeros.len(), 0).unwrap(), zeros);
        assert!(matches!(
            lz4_decompress(&frame, zeros.len() - 1, 3),
            Err(RecordsError::DecompressedTooLarge { offset: 3, .. })
        ));
        // A content size claiming more than the input can expand to reserves no more than that.
        let mut claiming = vec![0x04, 0x22, 0x4D, 0x18, 0b0110_1000, 0x70];
        claiming.extend_from_slice(&(64u64 << 20).to_le_bytes());
        claiming.push(((xxh32_short(&claiming[4..], 0) >> 8) & 0xff) as u8);
        claiming.extend_from_slice(&2u32.to_le_bytes());
        claiming.extend_from_slice(&[0x10, 7]);
        claiming.extend_from_slice(&0u32.to_le_bytes());
        let out = lz4_decompress(&claiming, 64 << 20, 0).unwrap();
        assert_eq!(out, [7]);
        assert!(out.capacity() <= lz4_max_output(claiming.len()), "capacity {}", out.capacity());
    }

    #[cfg(feature = "snappy")]
    #[test]
    fn snappy_xerial_framing() {
        let a = sample(5000);
        let b = sample(300);
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1i32.to_be_bytes());
        framed.extend_from_slice(&1i32.to_be_bytes());
        for part in [&a, &b] {
            let block = snap::raw::Encoder::new().compress_vec(part).unwrap();
            framed.extend_from_slice(&(block.len() as i32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        let back = decompress(Compression::Snappy, &framed, LIMIT, 0).unwrap();
        assert_eq!(back, [a, b].concat());
        // A block length running past the end.
        let cut = &framed[..framed.len() - 1];
        assert!(matches!(
            decompress(Compression::Snappy, cut, LIMIT, 0),
            Err(RecordsError::Truncated { what: "xerial snappy block", .. })
        ));
    }

    #[test]
    fn zip_bombs_hit_the_limit() {
        let zeros = vec![0u8; 4 << 20];
        for c in all() {
            if !c.is_available() {
                continue;
            }
            let mut out = BytesMut::new();
            compress(c, None, &zeros, &mut out).unwrap();
            assert!(
                matches!(
                    decompress(c, &out, LIMIT, 9),
                    Err(RecordsError::DecompressedTooLarge { limit: LIMIT, offset: 9, .. })
                ),
                "{c}"
            );
            // Exactly at the limit is fine.
            assert_eq!(decompress(c, &out, zeros.len(), 0).unwrap().len(), zeros.len());
        }
    }

    proptest::proptest! {
        #[test]
        fn corrupted_payloads_never_panic(
            codec in 1u8..5,
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..6),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let c = Compression::from_code(codec).unwrap();
            if c.is_available() {
                let mut out = BytesMut::new();
                compress(c, None, &sample(3000), &mut out).unwrap();
                let mut bytes = out.to_vec();
                for (i, v) in edits {
                    let i = i.index(bytes.len());
                    bytes[i] = v;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                if let Ok(plain) = decompress(c, &bytes, LIMIT, 0) {
                    proptest::prop_assert!(plain.len() <= LIMIT);
                }
            }
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let garbage = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03];
        for c in all() {
            if c == Compression::None || !c.is_available() {
                continue;
            }
            let err = decompress(c, &garbage, LIMIT, 3).unwrap_err();
            assert!(
                matches!(
                    err,
                    RecordsError::Decompress { offset: 3, .. }
                        | RecordsError::Malformed { offset: 3, .. }
                        | RecordsError::DecompressedTooLarge { offset: 3, .. }
                        | RecordsError::Truncated { .. }
                ),
                "{c}: {err:?}"
            );
        }
    }
}
