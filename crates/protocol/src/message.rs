//! The traits every generated message implements: [`Message`] and [`Request`].
//!
//! This file sits below the generated code (`messages/`), which implements these traits; it
//! depends only on primitives, [`VersionRange`] and the generated [`ApiKey`] enum (a leaf that
//! depends on nothing generated). The request/response framing helpers, which use the
//! generated headers, live above it in [`crate::framing`].

use crate::messages::api_key::ApiKey;
use crate::primitives::{Cx, DecodeError, DecodeErrorKind, EncodeError, PResult};
use bytes::{BufMut, Bytes};

pub use crate::version::VersionRange;

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
