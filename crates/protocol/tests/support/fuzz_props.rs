//! The properties the fuzz targets check, shared with the tests that replay fuzz regressions
//! (`fuzz/fuzz_targets/*.rs` include this file by path).

use bytes::{Bytes, BytesMut};
use krab_protocol::ApiKey;
use krab_protocol::messages::{AnyRequest, AnyResponse};

/// Picks an API and a version from the first two bytes; the rest is the body.
fn split(data: &[u8]) -> Option<(ApiKey, i16, Bytes)> {
    if data.len() < 2 {
        return None;
    }
    let api = ApiKey::ALL[usize::from(data[0]) % ApiKey::ALL.len()];
    let range = api.versions();
    let span = (range.max - range.min + 1) as u8;
    let version = range.min + i16::from(data[1] % span);
    Some((api, version, Bytes::copy_from_slice(&data[2..])))
}

macro_rules! round_trip {
    ($name:ident, $any:ident) => {
        /// Arbitrary bytes decode to a typed error, or to a value that re-encodes (exact
        /// `encoded_len`) to bytes that decode to the same value.
        #[allow(dead_code)]
        pub(crate) fn $name(data: &[u8]) {
            let Some((api, version, body)) = split(data) else { return };
            let Ok(decoded) = $any::decode(api as i16, &body, version) else { return };
            let mut out = BytesMut::new();
            decoded.encode(&mut out, version).expect("a decoded message re-encodes");
            assert_eq!(out.len(), decoded.encoded_len(version));
            let again = $any::decode(api as i16, &out.freeze(), version).expect("re-encoded bytes decode");
            assert_eq!(again, decoded);
        }
    };
}

round_trip!(response_round_trip, AnyResponse);
round_trip!(request_round_trip, AnyRequest);
