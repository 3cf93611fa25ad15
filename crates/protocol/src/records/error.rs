//! The error type of record-set encoding and decoding.

use super::Compression;

/// A boxed error from a compression library, kept as the `source` of a [`RecordsError`].
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a record set, batch or record could not be decoded or encoded.
///
/// Every decoding variant carries `offset`: the position of the offending field in the buffer
/// being parsed. That is the record set handed to [`decode_batches`](super::decode_batches), or,
/// for errors wrapped in [`RecordsError::InCompressedBatch`], the decompressed records of that
/// batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// A field runs past the end of the bytes that enclose it (its record, its batch, or the
    /// decompressed payload).
    #[error("truncated {what} at byte {offset}: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where the field starts.
        offset: usize,
        /// How many bytes the field needs.
        needed: usize,
        /// How many bytes were left in the enclosing structure.
        available: usize,
    },

    /// A length or count is negative (other than `-1` for null where null is allowed), too
    /// small to be valid, or larger than the bytes that could hold it.
    #[error("invalid {what} {value} at byte {offset}")]
    InvalidLength {
        /// The length or count field.
        what: &'static str,
        /// The value that was read.
        value: i64,
        /// Where the field starts.
        offset: usize,
    },

    /// A zig-zag varint is longer than 5 bytes (varlong: 10 bytes) or overflows its width.
    #[error("invalid varint for {what} at byte {offset}")]
    InvalidVarint {
        /// The field being read.
        what: &'static str,
        /// Where the varint starts.
        offset: usize,
    },

    /// A record's fields do not add up to its declared length.
    #[error("record at byte {offset} declares {declared} bytes after its length but its fields use {actual}")]
    RecordSizeMismatch {
        /// Where the record (its length varint) starts.
        offset: usize,
        /// The length the record declares.
        declared: usize,
        /// The bytes its fields actually took.
        actual: usize,
    },

    /// Bytes are left over after the declared number of records or fields.
    #[error("{count} unexpected trailing bytes after {what} at byte {offset}")]
    TrailingBytes {
        /// What was complete before the extra bytes.
        what: &'static str,
        /// Where the extra bytes start.
        offset: usize,
        /// How many extra bytes there are.
        count: usize,
    },

    /// The checksum stored in a batch (CRC-32C) or legacy message (CRC-32) does not match its
    /// contents.
    #[error("CRC mismatch in batch at byte {offset}: stored {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch {
        /// The checksum stored in the header.
        expected: u32,
        /// The checksum computed over the bytes.
        actual: u32,
        /// Where the batch or message starts.
        offset: usize,
    },

    /// The magic byte names a format this crate does not know (known: 0, 1, 2), or a legacy
    /// format was asked to be encoded.
    #[error("unsupported magic byte {magic} at byte {offset}")]
    UnsupportedMagic {
        /// The magic value.
        magic: i8,
        /// Where the batch or message starts.
        offset: usize,
    },

    /// The compression bits of the attributes hold a code Kafka does not define (5, 6 or 7).
    #[error("unknown compression code {code} at byte {offset}")]
    UnknownCompression {
        /// The 3-bit code.
        code: u8,
        /// Where the attributes field is.
        offset: usize,
    },

    /// The codec is known but this build of `krab-protocol` was compiled without its cargo
    /// feature.
    #[error("{compression} compression unavailable: krab-protocol was built without feature `{compression}`")]
    CompressionUnavailable {
        /// The codec asked for.
        compression: Compression,
    },

    /// The codec rejected a compressed payload.
    #[error("{compression} payload at byte {offset} failed to decompress: {source}")]
    Decompress {
        /// The codec.
        compression: Compression,
        /// Where the compressed payload starts.
        offset: usize,
        /// The codec's error.
        #[source]
        source: CodecError,
    },

    /// A compressed payload inflates past the configured limit
    /// ([`DecodeOptions::max_decompressed_size`](super::DecodeOptions)).
    #[error("{compression} payload at byte {offset} decompresses to more than {limit} bytes")]
    DecompressedTooLarge {
        /// The codec.
        compression: Compression,
        /// The limit in force.
        limit: usize,
        /// Where the compressed payload starts.
        offset: usize,
    },

    /// The batches of one record set together inflate past the configured budget
    /// ([`DecodeOptions::max_total_decompressed_size`](super::DecodeOptions)).
    #[error(
        "the record set's compressed batches decompress to more than {limit} bytes in all (at the batch at byte {offset})"
    )]
    RecordSetTooLarge {
        /// The budget in force.
        limit: usize,
        /// Where the batch that exceeded it starts.
        offset: usize,
    },

    /// An error inside the decompressed records of a compressed batch or legacy wrapper
    /// message; offsets in `source` are positions in the decompressed bytes.
    #[error("in {compression} batch at byte {batch_offset}: {source}")]
    InCompressedBatch {
        /// The codec of the batch.
        compression: Compression,
        /// Where the batch (or wrapper message) starts in the record set.
        batch_offset: usize,
        /// The error, with offsets relative to the decompressed bytes.
        #[source]
        source: Box<RecordsError>,
    },

    /// A structural rule of the format is broken (for example a null header key, a compressed
    /// legacy message nested inside another, or a control record key shorter than 4 bytes).
    #[error("malformed {what} at byte {offset}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
        /// Where it is.
        offset: usize,
    },

    /// The codec failed while compressing.
    #[error("{compression} compression failed: {source}")]
    Compress {
        /// The codec.
        compression: Compression,
        /// The codec's error.
        #[source]
        source: CodecError,
    },

    /// The batch or records handed to the encoder cannot be represented in the format (for
    /// example an offset more than `i32::MAX` past the base offset, or a key longer than
    /// `i32::MAX` bytes).
    #[error("cannot encode: {reason}")]
    InvalidInput {
        /// What is out of range.
        reason: &'static str,
    },
}

impl RecordsError {
    /// Wraps an error found in the decompressed payload of a compressed batch.
    pub(crate) fn in_compressed(self, compression: Compression, batch_offset: usize) -> Self {
        RecordsError::InCompressedBatch { compression, batch_offset, source: Box::new(self) }
    }

    /// Shorthand for [`RecordsError::Truncated`].
    #[cold]
    pub(crate) fn truncated(what: &'static str, offset: usize, needed: usize, available: usize) -> Self {
        RecordsError::Truncated { what, offset, needed, available }
    }

    /// Shorthand for [`RecordsError::InvalidLength`].
    #[cold]
    pub(crate) fn invalid_length(what: &'static str, value: i64, offset: usize) -> Self {
        RecordsError::InvalidLength { what, value, offset }
    }
}
