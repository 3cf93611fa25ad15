//! Kafka record sets: RecordBatch v2 (KIP-98) encoding and decoding, plus read-only legacy
//! message sets (magic 0 and 1).
//!
//! A record set (the `records` field of Produce and Fetch) is a concatenation of batches. Each
//! starts with `baseOffset: i64, batchLength: i32` and has its magic byte at offset 16, which
//! picks the format. Brokers may cut the last batch of a Fetch response short; decoding stops
//! there and reports the set as partial rather than failing.
//!
//! - Decode: [`decode_batches`] / [`decode_batches_with`], or iterate with [`RecordBatches`].
//!   Keys, values and header fields are zero-copy slices of the input [`Bytes`] (of the
//!   decompressed buffer for compressed batches). CRCs are verified by default.
//! - Encode: [`RecordBatch::encode`] for a whole batch, or [`RecordBatchEncoder`] to append
//!   records one by one into a growing buffer.
//! - Control batches: parse their records' keys with [`ControlRecord::parse`].
//!
//! Decoding never panics on malformed input and never allocates more than the input
//! justifies: lengths and counts are checked against the bytes left first, and decompression
//! is bounded per batch by [`DecodeOptions::max_decompressed_size`] and per record set by
//! [`DecodeOptions::max_total_decompressed_size`].

mod batch;
mod compression;
mod error;
mod legacy;
mod record;
mod varint;

use bytes::Bytes;

pub use batch::{BATCH_HEADER_LEN, RecordBatch, RecordBatchEncoder, TimestampType, restamp_producer};
pub use compression::Compression;
pub use error::{CodecError, RecordsError};
pub use record::{ControlRecord, ControlRecordType, EndTxnMarker, Record, RecordHeader};

use batch::LOG_OVERHEAD;
use compression::Budget;

/// Offset of the magic byte in every batch or legacy message.
const MAGIC_OFFSET: usize = 16;

/// Default bound on one batch's decompressed size: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_SIZE: usize = 64 << 20;

/// Default bound on the decompressed size of all batches of one record set together: 256 MiB.
pub const DEFAULT_MAX_TOTAL_DECOMPRESSED_SIZE: usize = 256 << 20;

/// Knobs for decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// Check each batch's CRC-32C (legacy messages: CRC-32). Default `true`.
    pub verify_crc: bool,
    /// Largest decompressed payload accepted for one batch (or legacy wrapper message);
    /// larger ones fail with [`RecordsError::DecompressedTooLarge`] before using more memory
    /// than this (plus at most one codec block). Default [`DEFAULT_MAX_DECOMPRESSED_SIZE`].
    pub max_decompressed_size: usize,
    /// Largest decompressed payload accepted for all the batches of one record set (one
    /// [`decode_batches_with`] call or one [`RecordBatches`] iteration) together: a record set
    /// of many small batches that each inflate to just under
    /// [`max_decompressed_size`](Self::max_decompressed_size) fails with
    /// [`RecordsError::RecordSetTooLarge`] once the sum would exceed this. Uncompressed batches
    /// do not count (their records are slices of the input). Default
    /// [`DEFAULT_MAX_TOTAL_DECOMPRESSED_SIZE`].
    pub max_total_decompressed_size: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            verify_crc: true,
            max_decompressed_size: DEFAULT_MAX_DECOMPRESSED_SIZE,
            max_total_decompressed_size: DEFAULT_MAX_TOTAL_DECOMPRESSED_SIZE,
        }
    }
}

impl DecodeOptions {
    /// The defaults: verify CRCs, 64 MiB decompression bound per batch, 256 MiB per record set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`verify_crc`](Self::verify_crc).
    pub fn with_verify_crc(mut self, verify_crc: bool) -> Self {
        self.verify_crc = verify_crc;
        self
    }

    /// Sets [`max_decompressed_size`](Self::max_decompressed_size).
    pub fn with_max_decompressed_size(mut self, bytes: usize) -> Self {
        self.max_decompressed_size = bytes;
        self
    }

    /// Sets [`max_total_decompressed_size`](Self::max_total_decompressed_size).
    pub fn with_max_total_decompressed_size(mut self, bytes: usize) -> Self {
        self.max_total_decompressed_size = bytes;
        self
    }
}

/// A decoded record set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordSet {
    /// The complete batches, in order.
    pub batches: Vec<RecordBatch>,
    /// Bytes at the end that hold an incomplete batch (a broker cut the response at its size
    /// limit); 0 when the set ended on a batch boundary.
    pub partial_bytes: usize,
}

impl RecordSet {
    /// Whether the set ended with an incomplete batch.
    pub fn is_partial(&self) -> bool {
        self.partial_bytes > 0
    }

    /// All records of all batches, in order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.batches.iter().flat_map(|b| b.records.iter())
    }
}

/// Decodes every complete batch of a record set with default [`DecodeOptions`].
///
/// An incomplete last batch is not an error: see [`RecordSet::partial_bytes`]. Any malformed
/// batch is.
pub fn decode_batches(input: &Bytes) -> Result<RecordSet, RecordsError> {
    decode_batches_with(input, &DecodeOptions::default())
}

/// [`decode_batches`] with explicit options.
pub fn decode_batches_with(input: &Bytes, options: &DecodeOptions) -> Result<RecordSet, RecordsError> {
    let mut iter = RecordBatches::with_options(input.clone(), options.clone());
    let batches = iter.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok(RecordSet { batches, partial_bytes: iter.partial_bytes() })
}

/// An iterator over the batches of a record set, decoding each as it goes.
///
/// It yields `Ok(batch)` per complete batch, ends quietly at an incomplete last batch (then
/// [`is_partial`](Self::is_partial) is true), and ends after yielding the first error.
#[derive(Debug, Clone)]
pub struct RecordBatches {
    input: Bytes,
    pos: usize,
    options: DecodeOptions,
    budget: Budget,
    partial_bytes: usize,
    done: bool,
}

impl RecordBatches {
    /// Iterates over `input` with default options.
    pub fn new(input: Bytes) -> Self {
        Self::with_options(input, DecodeOptions::default())
    }

    /// Iterates over `input` with `options`.
    pub fn with_options(input: Bytes, options: DecodeOptions) -> Self {
        let budget = Budget::new(options.max_total_decompressed_size, options.max_decompressed_size);
        RecordBatches { input, pos: 0, options, budget, partial_bytes: 0, done: false }
    }

    /// Byte position of the next batch in the input.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether iteration stopped at an incomplete batch.
    pub fn is_partial(&self) -> bool {
        self.partial_bytes > 0
    }

    /// Size of the incomplete batch at the end, once iteration reached it (else 0).
    pub fn partial_bytes(&self) -> usize {
        self.partial_bytes
    }

    fn next_batch(&mut self) -> Option<Result<RecordBatch, RecordsError>> {
        let start = self.pos;
        let left = self.input.len() - start;
        if left == 0 {
            return None;
        }
        let Some(len) = self.input.get(start + 8..start + LOG_OVERHEAD) else {
            self.partial_bytes = left;
            return None;
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        if len < legacy::MIN_MESSAGE_SIZE_V0 as i32 {
            return Some(Err(RecordsError::invalid_length("batch length", i64::from(len), start + 8)));
        }
        let total = LOG_OVERHEAD + len as usize;
        if total > left {
            self.partial_bytes = left;
            return None;
        }
        let end = start + total;
        self.pos = end;
        let magic = self.input[start + MAGIC_OFFSET] as i8;
        Some(match magic {
            2 => batch::decode_v2(&self.input, start, end, &self.options, &mut self.budget),
            0 | 1 => legacy::decode_message(&self.input, start, end, &self.options, &mut self.budget),
            _ => Err(RecordsError::UnsupportedMagic { magic, offset: start }),
        })
    }
}

impl Iterator for RecordBatches {
    type Item = Result<RecordBatch, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_batch();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

impl std::iter::FusedIterator for RecordBatches {}
