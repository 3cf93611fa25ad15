//! The protocol's primitive types, as generated code reads and writes them.
//!
//! Decoding uses `nom` *complete* parsers over a whole frame: running out of bytes is corruption,
//! never "wait for more". Every length read off the wire is checked against the bytes that remain
//! before anything is allocated, so a garbage length fails at once instead of reserving memory.
//! Byte fields are zero-copy: they are [`Bytes`] slices of the frame being decoded.
//!
//! Encoding writes into any [`BufMut`]; each writer has a `*_len` twin so that
//! `encoded_len(version)` is exact.

use bytes::{BufMut, Bytes};
use nom::Parser;
use nom::bytes::complete::take;
use nom::number::complete::{be_f64, be_i8, be_i16, be_i32, be_i64, be_u8, be_u16, be_u32};
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The frame ended in the middle of a value.
    Truncated,
    /// A length prefix was negative where null is not allowed (or below -1).
    InvalidLength(i64),
    /// A length prefix claims more bytes or elements than remain in the frame.
    LengthExceedsFrame {
        /// The length read off the wire.
        length: u64,
        /// Bytes left in the frame at that point.
        remaining: usize,
    },
    /// A null value in a field (or version) that is not nullable.
    UnexpectedNull,
    /// An unsigned varint longer than 5 bytes, or a varlong longer than 10.
    InvalidVarint,
    /// A string that is not valid UTF-8.
    InvalidUtf8,
    /// A boolean byte other than 0 or 1.
    InvalidBool(u8),
    /// A known tagged field whose value did not fill exactly its declared size.
    TaggedFieldSize {
        /// The tag.
        tag: u32,
    },
    /// Tagged fields out of ascending tag order, or a tag repeated.
    TagOrder {
        /// The tag read.
        tag: u32,
        /// The tag before it.
        previous: u32,
    },
    /// The message type does not exist at this version.
    UnsupportedVersion {
        /// The message.
        message: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// The API key is not one krab knows.
    UnknownApiKey(i16),
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("frame ends inside a value"),
            Self::InvalidLength(n) => write!(f, "invalid length {n}"),
            Self::LengthExceedsFrame { length, remaining } => {
                write!(f, "length {length} exceeds the {remaining} bytes left in the frame")
            }
            Self::UnexpectedNull => f.write_str("null in a non-nullable field"),
            Self::InvalidVarint => f.write_str("varint too long"),
            Self::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            Self::InvalidBool(b) => write!(f, "boolean byte {b:#04x} is neither 0 nor 1"),
            Self::TaggedFieldSize { tag } => {
                write!(f, "tagged field {tag} does not fill its declared size")
            }
            Self::TagOrder { tag, previous } => {
                write!(f, "tagged field {tag} follows tag {previous}: tags must be strictly increasing")
            }
            Self::UnsupportedVersion { message, version } => {
                write!(f, "{message} has no version {version}")
            }
            Self::UnknownApiKey(k) => write!(f, "unknown API key {k}"),
        }
    }
}

/// One step of the path to the value that failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// A named field.
    Field(&'static str),
    /// An array element.
    Index(usize),
}

/// A frame could not be decoded: what, where (byte offset into the decoded buffer) and in which
/// field (for example `topics[2].partitions[0].error_code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decode error at byte {offset} in `{}`: {kind}", self.path_string())]
pub struct DecodeError {
    /// What went wrong.
    pub kind: DecodeErrorKind,
    /// Byte offset, from the start of the decoded buffer, of the value that failed.
    pub offset: usize,
    /// The fields leading to the failing value, outermost first.
    pub path: Vec<PathSegment>,
}

impl DecodeError {
    /// A decode error with no location (for errors found before parsing starts).
    pub fn new(kind: DecodeErrorKind) -> Self {
        Self { kind, offset: 0, path: Vec::new() }
    }

    /// The field path as a dotted string (`topics[2].name`).
    pub fn path_string(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                PathSegment::Field(name) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(name);
                }
                PathSegment::Index(i) => {
                    s.push('[');
                    s.push_str(&i.to_string());
                    s.push(']');
                }
            }
        }
        if s.is_empty() {
            s.push('.');
        }
        s
    }
}

/// The parser-internal error: carries the address where parsing failed (turned into an offset
/// once the base of the buffer is known) and the field path, innermost first.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    at: usize,
    kind: DecodeErrorKind,
    path: Vec<PathSegment>,
}

impl Failure {
    fn new(input: &[u8], kind: DecodeErrorKind) -> Self {
        Self { at: input.as_ptr() as usize, kind, path: Vec::new() }
    }

    fn into_decode_error(mut self, base: &[u8]) -> DecodeError {
        self.path.reverse();
        DecodeError { kind: self.kind, offset: self.at.saturating_sub(base.as_ptr() as usize), path: self.path }
    }
}

impl nom::error::ParseError<&[u8]> for Failure {
    fn from_error_kind(input: &[u8], _kind: nom::error::ErrorKind) -> Self {
        // The complete parsers used here fail only by running out of input.
        Self::new(input, DecodeErrorKind::Truncated)
    }

    fn append(_input: &[u8], _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// The result type of every parser in this crate.
#[doc(hidden)]
pub type PResult<'a, T> = nom::IResult<&'a [u8], T, Failure>;

/// Fails parsing at `input` with `kind`.
#[doc(hidden)]
pub fn fail<T>(input: &[u8], kind: DecodeErrorKind) -> PResult<'_, T> {
    Err(nom::Err::Failure(Failure::new(input, kind)))
}

/// Adds a field name to the path of a failure passing through.
#[doc(hidden)]
pub fn in_field(name: &'static str) -> impl Fn(nom::Err<Failure>) -> nom::Err<Failure> {
    move |e| {
        e.map(|mut f| {
            f.path.push(PathSegment::Field(name));
            f
        })
    }
}

/// Adds an array index to the path of a failure passing through.
fn in_index(index: usize) -> impl Fn(nom::Err<Failure>) -> nom::Err<Failure> {
    move |e| {
        e.map(|mut f| {
            f.path.push(PathSegment::Index(index));
            f
        })
    }
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeErrorKind {
    /// The message does not exist at the requested version.
    UnsupportedVersion {
        /// Lowest version krab knows for the message.
        min: i16,
        /// Highest version krab knows for the message.
        max: i16,
    },
    /// The field has a non-default value but does not exist at the requested version.
    FieldNotInVersion,
    /// The field is null but is not nullable at the requested version.
    NullNotAllowed,
    /// A string, byte string or array is longer than its length prefix can express.
    TooLong {
        /// The length that did not fit.
        length: usize,
    },
}

/// A message could not be encoded at the requested version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {message}.{field} at version {version}: {kind:?}")]
pub struct EncodeError {
    /// The struct the field belongs to.
    pub message: &'static str,
    /// The field (empty for errors about the whole message).
    pub field: &'static str,
    /// The version being encoded.
    pub version: i16,
    /// What is wrong.
    pub kind: EncodeErrorKind,
}

impl EncodeError {
    /// An error about `message.field` at `version`.
    pub fn new(message: &'static str, field: &'static str, version: i16, kind: EncodeErrorKind) -> Self {
        Self { message, field, version, kind }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding context
// ---------------------------------------------------------------------------------------------

/// What every parser can see besides its input: the whole buffer being decoded, so byte fields
/// become zero-copy slices of it.
#[doc(hidden)]
#[derive(Debug)]
pub struct Cx<'b> {
    buf: &'b Bytes,
}

impl<'b> Cx<'b> {
    /// A context over `buf`.
    pub fn new(buf: &'b Bytes) -> Self {
        Self { buf }
    }

    /// A zero-copy `Bytes` for `sub`, which must be a slice of this context's buffer.
    pub fn slice(&self, sub: &[u8]) -> Bytes {
        if sub.is_empty() { Bytes::new() } else { self.buf.slice_ref(sub) }
    }

    /// Runs `parse` over the whole buffer and converts a failure into a located [`DecodeError`].
    /// Bytes left over after a complete value are tolerated (real brokers send them) and traced.
    pub fn run<T>(
        &self,
        what: &'static str,
        parse: impl FnOnce(&Self, &'b [u8]) -> PResult<'b, T>,
    ) -> Result<T, DecodeError> {
        let base: &'b [u8] = self.buf;
        match parse(self, base) {
            Ok((rest, value)) => {
                if !rest.is_empty() {
                    tracing::trace!(message = what, trailing = rest.len(), "ignoring bytes after a complete value");
                }
                Ok(value)
            }
            Err(nom::Err::Error(f) | nom::Err::Failure(f)) => Err(f.into_decode_error(base)),
            Err(nom::Err::Incomplete(_)) => {
                Err(DecodeError { kind: DecodeErrorKind::Truncated, offset: base.len(), path: Vec::new() })
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed-width values
// ---------------------------------------------------------------------------------------------

macro_rules! fixed {
    ($read:ident, $write:ident, $t:ty, $nom:ident, $put:ident) => {
        #[doc(hidden)]
        #[inline]
        pub fn $read(i: &[u8]) -> PResult<'_, $t> {
            $nom(i)
        }

        #[doc(hidden)]
        #[inline]
        pub fn $write<B: BufMut>(buf: &mut B, v: $t) {
            buf.$put(v)
        }
    };
}

fixed!(read_i8, write_i8, i8, be_i8, put_i8);
fixed!(read_i16, write_i16, i16, be_i16, put_i16);
fixed!(read_u16, write_u16, u16, be_u16, put_u16);
fixed!(read_i32, write_i32, i32, be_i32, put_i32);
fixed!(read_u32, write_u32, u32, be_u32, put_u32);
fixed!(read_i64, write_i64, i64, be_i64, put_i64);
fixed!(read_f64, write_f64, f64, be_f64, put_f64);

/// Reads a boolean: exactly 0 or 1.
#[doc(hidden)]
pub fn read_bool(i: &[u8]) -> PResult<'_, bool> {
    let (rest, b) = be_u8(i)?;
    match b {
        0 => Ok((rest, false)),
        1 => Ok((rest, true)),
        other => fail(i, DecodeErrorKind::InvalidBool(other)),
    }
}

/// Writes a boolean as one byte.
#[doc(hidden)]
pub fn write_bool<B: BufMut>(buf: &mut B, v: bool) {
    buf.put_u8(u8::from(v))
}

/// A 128-bit UUID as Kafka sends it (16 bytes, big-endian). The all-zero UUID means "none".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID (Kafka's `ZERO_UUID`).
    pub const ZERO: Uuid = Uuid([0; 16]);
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, b) in self.0.iter().enumerate() {
            if matches!(n, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Reads a UUID.
#[doc(hidden)]
pub fn read_uuid(i: &[u8]) -> PResult<'_, Uuid> {
    let (rest, b) = take(16usize).parse(i)?;
    let mut out = [0u8; 16];
    out.copy_from_slice(b);
    Ok((rest, Uuid(out)))
}

/// Writes a UUID.
#[doc(hidden)]
pub fn write_uuid<B: BufMut>(buf: &mut B, v: &Uuid) {
    buf.put_slice(&v.0)
}

// ---------------------------------------------------------------------------------------------
// Varints (protocol UNSIGNED_VARINT: not zig-zag)
// ---------------------------------------------------------------------------------------------

/// Reads an unsigned varint of at most 5 bytes (32 bits).
#[doc(hidden)]
pub fn read_uvarint(i: &[u8]) -> PResult<'_, u32> {
    let mut value: u32 = 0;
    for (n, &b) in i.iter().enumerate().take(5) {
        if n == 4 && b > 0x0f {
            return fail(i, DecodeErrorKind::InvalidVarint);
        }
        value |= u32::from(b & 0x7f) << (7 * n);
        if b & 0x80 == 0 {
            return Ok((&i[n + 1..], value));
        }
    }
    if i.len() < 5 { fail(i, DecodeErrorKind::Truncated) } else { fail(i, DecodeErrorKind::InvalidVarint) }
}

/// Writes an unsigned varint.
#[doc(hidden)]
pub fn write_uvarint<B: BufMut>(buf: &mut B, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// The encoded size of an unsigned varint.
#[doc(hidden)]
#[inline]
pub fn uvarint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        _ => 5,
    }
}

// ---------------------------------------------------------------------------------------------
// Lengths
// ---------------------------------------------------------------------------------------------

/// Reads a length prefix: INT16/INT32 (`-1` = null) or a compact UNSIGNED_VARINT N+1 (`0` = null).
/// Returns `None` for null. A length larger than what remains fails here, before any allocation,
/// when `min_elem_size` > 0 (each element takes at least that many bytes).
fn read_len(i: &[u8], compact: bool, wide: bool, min_elem_size: usize) -> PResult<'_, Option<usize>> {
    let (rest, raw): (&[u8], i64) = if compact {
        let (rest, n) = read_uvarint(i)?;
        (rest, i64::from(n) - 1)
    } else if wide {
        let (rest, n) = be_i32(i)?;
        (rest, i64::from(n))
    } else {
        let (rest, n) = be_i16(i)?;
        (rest, i64::from(n))
    };
    if raw == -1 {
        return Ok((rest, None));
    }
    if raw < 0 {
        return fail(i, DecodeErrorKind::InvalidLength(raw));
    }
    let len = raw as u64;
    if min_elem_size > 0 && len.saturating_mul(min_elem_size as u64) > rest.len() as u64 {
        return fail(i, DecodeErrorKind::LengthExceedsFrame { length: len, remaining: rest.len() });
    }
    Ok((rest, Some(len as usize)))
}

fn write_len<B: BufMut>(buf: &mut B, len: Option<usize>, compact: bool, wide: bool) -> Result<(), EncodeErrorKind> {
    match (len, compact) {
        (None, true) => buf.put_u8(0),
        (None, false) if wide => buf.put_i32(-1),
        (None, false) => buf.put_i16(-1),
        (Some(n), true) => {
            let v =
                u32::try_from(n).ok().filter(|&v| v < i32::MAX as u32).ok_or(EncodeErrorKind::TooLong { length: n })?;
            write_uvarint(buf, v + 1)
        }
        (Some(n), false) if wide => buf.put_i32(i32::try_from(n).map_err(|_| EncodeErrorKind::TooLong { length: n })?),
        (Some(n), false) => buf.put_i16(i16::try_from(n).map_err(|_| EncodeErrorKind::TooLong { length: n })?),
    }
    Ok(())
}

fn len_len(len: Option<usize>, compact: bool, wide: bool) -> usize {
    match (len, compact) {
        (None, true) => 1,
        (Some(n), true) => uvarint_len((n as u32).saturating_add(1)),
        (_, false) if wide => 4,
        (_, false) => 2,
    }
}

// ---------------------------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------------------------

/// Reads a nullable string (STRING/COMPACT_STRING with null).
#[doc(hidden)]
pub fn read_nullable_string(i: &[u8], compact: bool) -> PResult<'_, Option<String>> {
    let (rest, len) = read_len(i, compact, false, 1)?;
    let Some(len) = len else { return Ok((rest, None)) };
    let (rest, b) = take(len).parse(rest)?;
    match std::str::from_utf8(b) {
        Ok(s) => Ok((rest, Some(s.to_owned()))),
        Err(_) => fail(i, DecodeErrorKind::InvalidUtf8),
    }
}

/// Reads a non-nullable string.
#[doc(hidden)]
pub fn read_string(i: &[u8], compact: bool) -> PResult<'_, String> {
    match read_nullable_string(i, compact)? {
        (rest, Some(s)) => Ok((rest, s)),
        (_, None) => fail(i, DecodeErrorKind::UnexpectedNull),
    }
}

/// Writes a nullable string.
#[doc(hidden)]
pub fn write_nullable_string<B: BufMut>(buf: &mut B, v: Option<&str>, compact: bool) -> Result<(), EncodeErrorKind> {
    write_len(buf, v.map(str::len), compact, false)?;
    if let Some(s) = v {
        buf.put_slice(s.as_bytes());
    }
    Ok(())
}

/// The encoded size of a nullable string.
#[doc(hidden)]
pub fn nullable_string_len(v: Option<&str>, compact: bool) -> usize {
    len_len(v.map(str::len), compact, false) + v.map_or(0, str::len)
}

// ---------------------------------------------------------------------------------------------
// Byte strings (BYTES, COMPACT_BYTES, RECORDS)
// ---------------------------------------------------------------------------------------------

/// Reads nullable bytes as a zero-copy slice of the frame.
#[doc(hidden)]
pub fn read_nullable_bytes<'a>(cx: &Cx<'_>, i: &'a [u8], compact: bool) -> PResult<'a, Option<Bytes>> {
    let (rest, len) = read_len(i, compact, true, 1)?;
    let Some(len) = len else { return Ok((rest, None)) };
    let (rest, b) = take(len).parse(rest)?;
    Ok((rest, Some(cx.slice(b))))
}

/// Reads non-nullable bytes as a zero-copy slice of the frame.
#[doc(hidden)]
pub fn read_bytes<'a>(cx: &Cx<'_>, i: &'a [u8], compact: bool) -> PResult<'a, Bytes> {
    match read_nullable_bytes(cx, i, compact)? {
        (rest, Some(b)) => Ok((rest, b)),
        (_, None) => fail(i, DecodeErrorKind::UnexpectedNull),
    }
}

/// Writes nullable bytes.
#[doc(hidden)]
pub fn write_nullable_bytes<B: BufMut>(buf: &mut B, v: Option<&[u8]>, compact: bool) -> Result<(), EncodeErrorKind> {
    write_len(buf, v.map(<[u8]>::len), compact, true)?;
    if let Some(b) = v {
        buf.put_slice(b);
    }
    Ok(())
}

/// The encoded size of nullable bytes.
#[doc(hidden)]
pub fn nullable_bytes_len(v: Option<&[u8]>, compact: bool) -> usize {
    len_len(v.map(<[u8]>::len), compact, true) + v.map_or(0, <[u8]>::len)
}

// ---------------------------------------------------------------------------------------------
// Arrays
// ---------------------------------------------------------------------------------------------

/// The most bytes a decoder reserves ahead for a collection before its elements decode.
pub const MAX_PRESIZE_BYTES: usize = 1 << 20;

/// How many elements of `T` to reserve for a collection whose length prefix says `len`, with
/// `bytes_left` bytes of input left: never more memory than the bytes left, nor than
/// [`MAX_PRESIZE_BYTES`]. A length read off the wire is a claim, not a fact: a 100 MiB frame
/// may claim 100 million elements of 200 bytes each.
#[doc(hidden)]
pub fn presize<T>(len: usize, bytes_left: usize) -> usize {
    let size = std::mem::size_of::<T>().max(1);
    len.min(bytes_left.min(MAX_PRESIZE_BYTES) / size)
}

/// Reads a nullable array whose elements each take at least one byte.
#[doc(hidden)]
pub fn read_nullable_array<'a, T>(
    i: &'a [u8],
    compact: bool,
    mut elem: impl FnMut(&'a [u8]) -> PResult<'a, T>,
) -> PResult<'a, Option<Vec<T>>> {
    let (mut rest, len) = read_len(i, compact, true, 1)?;
    let Some(len) = len else { return Ok((rest, None)) };
    // `len` is at most the number of bytes left, but an element takes far more memory than its
    // one-byte minimum on the wire: reserve by bytes, and let the vector grow past that only as
    // elements actually decode.
    let mut out = Vec::with_capacity(presize::<T>(len, rest.len()));
    for n in 0..len {
        let (r, v) = elem(rest).map_err(in_index(n))?;
        rest = r;
        out.push(v);
    }
    Ok((rest, Some(out)))
}

/// Reads a non-nullable array.
#[doc(hidden)]
pub fn read_array<'a, T>(
    i: &'a [u8],
    compact: bool,
    elem: impl FnMut(&'a [u8]) -> PResult<'a, T>,
) -> PResult<'a, Vec<T>> {
    match read_nullable_array(i, compact, elem)? {
        (rest, Some(v)) => Ok((rest, v)),
        (_, None) => fail(i, DecodeErrorKind::UnexpectedNull),
    }
}

/// Writes an array length prefix (`None` = null).
#[doc(hidden)]
pub fn write_array_len<B: BufMut>(buf: &mut B, len: Option<usize>, compact: bool) -> Result<(), EncodeErrorKind> {
    write_len(buf, len, compact, true)
}

/// The encoded size of an array length prefix.
#[doc(hidden)]
pub fn array_len_len(len: Option<usize>, compact: bool) -> usize {
    len_len(len, compact, true)
}

// ---------------------------------------------------------------------------------------------
// Nullable structs (a signed byte: -1 = null, 1 = present)
// ---------------------------------------------------------------------------------------------

/// Reads the presence marker of a nullable struct.
#[doc(hidden)]
pub fn read_struct_marker(i: &[u8]) -> PResult<'_, bool> {
    let (rest, b) = be_i8(i)?;
    match b {
        -1 => Ok((rest, false)),
        1 => Ok((rest, true)),
        other => fail(i, DecodeErrorKind::InvalidLength(i64::from(other))),
    }
}

// ---------------------------------------------------------------------------------------------
// Tagged fields
// ---------------------------------------------------------------------------------------------

/// A tagged field this version of krab does not know: kept so re-encoding loses nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTaggedField {
    /// The tag.
    pub tag: u32,
    /// The field's bytes, exactly as received.
    pub data: Bytes,
}

/// Reads one tagged field header and its data: `(tag, data)`.
#[doc(hidden)]
pub fn read_tagged_field(i: &[u8]) -> PResult<'_, (u32, &[u8])> {
    let (rest, tag) = read_uvarint(i)?;
    let (rest, size) = read_uvarint(rest)?;
    let size = size as usize;
    if size > rest.len() {
        return fail(i, DecodeErrorKind::LengthExceedsFrame { length: size as u64, remaining: rest.len() });
    }
    let (rest, data) = take(size).parse(rest)?;
    Ok((rest, (tag, data)))
}

/// Reads one tagged field, checking that tags come in strictly increasing order (KIP-482): a
/// repeated or out-of-order tag is malformed, and accepting it would make a known field's value
/// depend on which copy came last.
#[doc(hidden)]
pub fn read_tagged_field_after<'a>(i: &'a [u8], previous: &mut Option<u32>) -> PResult<'a, (u32, &'a [u8])> {
    let (rest, (tag, data)) = read_tagged_field(i)?;
    if let Some(p) = *previous {
        if tag <= p {
            return fail(i, DecodeErrorKind::TagOrder { tag, previous: p });
        }
    }
    *previous = Some(tag);
    Ok((rest, (tag, data)))
}

/// Reads the number of tagged fields; each takes at least two bytes.
#[doc(hidden)]
pub fn read_tagged_count(i: &[u8]) -> PResult<'_, u32> {
    let (rest, n) = read_uvarint(i)?;
    if u64::from(n) * 2 > rest.len() as u64 {
        return fail(i, DecodeErrorKind::LengthExceedsFrame { length: u64::from(n), remaining: rest.len() });
    }
    Ok((rest, n))
}

/// Checks that a known tagged field's parser consumed exactly its data.
#[doc(hidden)]
pub fn finish_tagged<'a, T>(tag: u32, data: &'a [u8], r: PResult<'a, T>) -> Result<T, nom::Err<Failure>> {
    let (rest, v) = r?;
    if rest.is_empty() {
        Ok(v)
    } else {
        Err(nom::Err::Failure(Failure::new(data, DecodeErrorKind::TaggedFieldSize { tag })))
    }
}

/// Writes an unknown tagged field back as it came.
#[doc(hidden)]
pub fn write_raw_tagged<B: BufMut>(buf: &mut B, f: &RawTaggedField) -> Result<(), EncodeErrorKind> {
    write_uvarint(buf, f.tag);
    let n = u32::try_from(f.data.len()).map_err(|_| EncodeErrorKind::TooLong { length: f.data.len() })?;
    write_uvarint(buf, n);
    buf.put_slice(&f.data);
    Ok(())
}

/// The encoded size of an unknown tagged field.
#[doc(hidden)]
pub fn raw_tagged_len(f: &RawTaggedField) -> usize {
    uvarint_len(f.tag) + uvarint_len(f.data.len() as u32) + f.data.len()
}

/// Writes a known tagged field's header (tag and size).
#[doc(hidden)]
pub fn write_tag_header<B: BufMut>(buf: &mut B, tag: u32, size: usize) -> Result<(), EncodeErrorKind> {
    write_uvarint(buf, tag);
    write_uvarint(buf, u32::try_from(size).map_err(|_| EncodeErrorKind::TooLong { length: size })?);
    Ok(())
}

/// The size of a known tagged field: header plus value.
#[doc(hidden)]
pub fn tagged_len(tag: u32, size: usize) -> usize {
    uvarint_len(tag) + uvarint_len(size as u32) + size
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(bytes: &[u8], f: impl for<'a> FnOnce(&Cx<'a>, &'a [u8]) -> PResult<'a, T>) -> Result<T, DecodeError> {
        let b = Bytes::copy_from_slice(bytes);
        let cx = Cx::new(&b);
        cx.run("test", |cx, i| f(cx, i))
    }

    #[test]
    fn uvarint_round_trips_at_every_width() {
        for v in [0u32, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455, 268_435_456, u32::MAX] {
            let mut buf = Vec::new();
            write_uvarint(&mut buf, v);
            assert_eq!(buf.len(), uvarint_len(v), "{v}");
            assert_eq!(run(&buf, |_, i| read_uvarint(i)).unwrap(), v);
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let err = run(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], |_, i| read_uvarint(i)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidVarint);
        let err = run(&[0xff, 0xff, 0xff, 0xff, 0x10], |_, i| read_uvarint(i)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidVarint);
        let err = run(&[0xff, 0xff], |_, i| read_uvarint(i)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Truncated);
    }

    #[test]
    fn huge_array_length_fails_before_allocating() {
        // 2^31 - 1 elements claimed by a 100-byte frame.
        let mut frame = vec![0x7f, 0xff, 0xff, 0xff];
        frame.resize(100, 0);
        let err = run(&frame, |_, i| read_array(i, false, read_i32)).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::LengthExceedsFrame { length: 2_147_483_647, remaining: 96 }));
        assert_eq!(err.offset, 0);
        // The same through a compact length.
        let mut frame = vec![0xff, 0xff, 0xff, 0xff, 0x07];
        frame.resize(100, 0);
        let err = run(&frame, |_, i| read_array(i, true, read_i32)).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::LengthExceedsFrame { .. }));
    }

    #[test]
    fn negative_lengths_other_than_null_are_rejected() {
        let err = run(&[0xff, 0xfe, b'a'], |_, i| read_nullable_string(i, false)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidLength(-2));
        assert_eq!(run(&[0xff, 0xff], |_, i| read_nullable_string(i, false)).unwrap(), None);
        let err = run(&[0xff, 0xff], |_, i| read_string(i, false)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnexpectedNull);
    }

    #[test]
    fn compact_lengths_are_n_plus_one() {
        assert_eq!(run(&[0x00], |_, i| read_nullable_string(i, true)).unwrap(), None);
        assert_eq!(run(&[0x01], |_, i| read_nullable_string(i, true)).unwrap(), Some(String::new()));
        assert_eq!(run(&[0x03, b'h', b'i'], |_, i| read_string(i, true)).unwrap(), "hi");
    }

    #[test]
    fn bytes_are_zero_copy_slices_of_the_frame() {
        let frame = Bytes::from_static(&[0, 0, 0, 3, 7, 8, 9]);
        let cx = Cx::new(&frame);
        let b = cx.run("t", |cx, i| read_bytes(cx, i, false)).unwrap();
        assert_eq!(&b[..], &[7, 8, 9]);
        assert_eq!(b.as_ptr(), frame[4..].as_ptr());
    }

    #[test]
    fn errors_carry_offset_and_path() {
        let frame = [0, 0, 0, 2, 0, 0, 0, 1, 0, 0];
        let err = run(&frame, |_, i| read_array(i, false, read_i32).map_err(in_field("ids"))).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Truncated);
        assert_eq!(err.offset, 8);
        assert_eq!(err.path_string(), "ids[1]");
    }

    #[test]
    fn invalid_utf8_and_bools_are_typed_errors() {
        let err = run(&[0, 2, 0xc3, 0x28], |_, i| read_string(i, false)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidUtf8);
        let err = run(&[2], |_, i| read_bool(i)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidBool(2));
    }

    #[test]
    fn string_longer_than_i16_cannot_be_encoded() {
        let s = "x".repeat(40_000);
        let mut buf = Vec::new();
        assert_eq!(write_nullable_string(&mut buf, Some(&s), false), Err(EncodeErrorKind::TooLong { length: 40_000 }));
        assert!(write_nullable_string(&mut buf, Some(&s), true).is_ok());
        assert_eq!(buf.len(), nullable_string_len(Some(&s), true));
    }
}
