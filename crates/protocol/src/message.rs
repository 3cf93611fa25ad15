//! The traits every generated message implements, and the request/response framing helpers.

use crate::messages::{ApiKey, RequestHeader, ResponseHeader};
use crate::primitives::{Cx, DecodeError, DecodeErrorKind, EncodeError, PResult};
use bytes::{BufMut, Bytes};

/// An inclusive range of message versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// Lowest version.
    pub min: i16,
    /// Highest version.
    pub max: i16,
}

impl VersionRange {
    /// `min..=max`.
    pub const fn new(min: i16, max: i16) -> Self {
        Self { min, max }
    }

    /// Whether `version` lies in the range.
    pub const fn contains(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }

    /// The highest version in both ranges, if they overlap.
    pub fn highest_common(&self, other: &VersionRange) -> Option<i16> {
        let max = self.max.min(other.max);
        (max >= self.min.max(other.min)).then_some(max)
    }
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

/// A protocol structure that can be encoded and decoded at any of its versions: every request,
/// response, header and nested struct.
pub trait Message: Sized {
    /// The name used in errors (`MetadataRequest`, `MetadataResponseTopic`, ...).
    const NAME: &'static str;
    /// The versions this structure exists at.
    const VERSIONS: VersionRange;

    /// Writes `self` at `version`. On error the buffer holds a partial write.
    ///
    /// Fails if the version is out of range, if a field that `version` does not have holds a
    /// non-default value, or if a field that `version` cannot send as null is null.
    fn encode<B: BufMut>(&self, buf: &mut B, version: i16) -> Result<(), EncodeError>;

    /// The exact number of bytes [`Message::encode`] writes at `version`.
    fn encoded_len(&self, version: i16) -> usize;

    /// Parses `self` from the front of `input` (a slice of the buffer `cx` was made from).
    #[doc(hidden)]
    fn read<'a>(cx: &Cx<'_>, input: &'a [u8], version: i16) -> PResult<'a, Self>;

    /// Decodes a complete buffer at `version`. Keys, values and byte fields are zero-copy slices
    /// of `buf`. Bytes left over after the value are ignored (and traced): real brokers send them.
    fn decode(buf: &Bytes, version: i16) -> Result<Self, DecodeError> {
        if !Self::VERSIONS.contains(version) {
            return Err(DecodeError::new(DecodeErrorKind::UnsupportedVersion { message: Self::NAME, version }));
        }
        Cx::new(buf).run(Self::NAME, |cx, i| Self::read(cx, i, version))
    }
}

/// A request: its API key, the header versions it travels with, and the response it gets.
pub trait Request: Message {
    /// The API key.
    const KEY: ApiKey;
    /// The first flexible version, if any (`None`: never flexible).
    const FLEXIBLE_FROM: Option<i16>;
    /// The response to this request.
    type Response: Message;

    /// The request header version used with this request at `version`.
    fn request_header_version(version: i16) -> i16 {
        Self::KEY.request_header_version(version)
    }

    /// The response header version used with the response at `version`.
    fn response_header_version(version: i16) -> i16 {
        Self::KEY.response_header_version(version)
    }
}

/// Encodes a request frame body (header + request, without the 4-byte size prefix).
pub fn encode_request<R: Request, B: BufMut>(
    buf: &mut B,
    correlation_id: i32,
    client_id: Option<&str>,
    request: &R,
    version: i16,
) -> Result<(), EncodeError> {
    let header = request_header::<R>(correlation_id, client_id, version);
    header.encode(buf, R::request_header_version(version))?;
    request.encode(buf, version)
}

/// The size of the frame body [`encode_request`] writes.
pub fn request_len<R: Request>(correlation_id: i32, client_id: Option<&str>, request: &R, version: i16) -> usize {
    let header = request_header::<R>(correlation_id, client_id, version);
    header.encoded_len(R::request_header_version(version)) + request.encoded_len(version)
}

fn request_header<R: Request>(correlation_id: i32, client_id: Option<&str>, version: i16) -> RequestHeader {
    RequestHeader {
        request_api_key: R::KEY as i16,
        request_api_version: version,
        correlation_id,
        client_id: client_id.map(str::to_owned),
        ..Default::default()
    }
}

/// Decodes a response frame body (header + response) for request type `R` at `version`.
pub fn decode_response<R: Request>(frame: &Bytes, version: i16) -> Result<(ResponseHeader, R::Response), DecodeError> {
    let header_version = R::response_header_version(version);
    let cx = Cx::new(frame);
    let (header, body_at) = cx.run(ResponseHeader::NAME, |cx, i| {
        let (rest, h) = ResponseHeader::read(cx, i, header_version)?;
        Ok((rest, (h, i.len() - rest.len())))
    })?;
    let body = frame.slice(body_at..);
    let response = R::Response::decode(&body, version).map_err(|mut e| {
        e.offset += body_at;
        e
    })?;
    Ok((header, response))
}

/// Reads the correlation id at the front of a response frame body, to route it to its request.
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    frame.get(..4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}
