//! Request and response frames: a request header plus request body, a response header plus
//! response body, and the correlation id that pairs them. Above the generated messages (it
//! uses their headers), below the connection code that moves frames.

use crate::message::{Message, Request};
use crate::messages::{RequestHeader, ResponseHeader};
use crate::primitives::{Cx, DecodeError, EncodeError};
use bytes::{BufMut, Bytes};

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
