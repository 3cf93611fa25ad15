//! Kafka's wire protocol for krab: sans-I/O.
//!
//! - [`messages`]: every request and response type, generated from Kafka's JSON message specs by
//!   `cargo xtask codegen` (never edited by hand).
//! - [`primitives`]: the protocol's building blocks (ints, varints, compact strings/arrays, UUIDs,
//!   tagged fields), decoded with `nom` *complete* parsers and encoded into [`bytes::BufMut`].
//!
//! This crate never touches a socket, a clock or a runtime.
#![forbid(unsafe_code)]

pub mod error_code;
pub mod frame;
pub mod framing;
pub mod message;
pub mod messages;
pub mod primitives;
pub mod records;
#[cfg(test)]
mod testing;
mod version;

pub use framing::{decode_response, encode_request, peek_correlation_id, request_len};
pub use message::{Message, Request, VersionRange};
pub use messages::ApiKey;
pub use primitives::{DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, RawTaggedField, Uuid};
