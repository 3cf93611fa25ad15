//! Every response decoder: arbitrary bytes decode to a typed error or to a value that re-encodes
//! (at the same version) to bytes that decode to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use krab_protocol::ApiKey;
use krab_protocol::messages::AnyResponse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let api = ApiKey::ALL[usize::from(data[0]) % ApiKey::ALL.len()];
    let range = api.versions();
    let span = (range.max - range.min + 1) as u8;
    let version = range.min + i16::from(data[1] % span);
    let body = Bytes::copy_from_slice(&data[2..]);
    let Ok(decoded) = AnyResponse::decode(api as i16, &body, version) else { return };
    let mut out = BytesMut::new();
    decoded.encode(&mut out, version).expect("a decoded response re-encodes");
    assert_eq!(out.len(), decoded.encoded_len(version));
    let again = AnyResponse::decode(api as i16, &out.freeze(), version).expect("re-encoded bytes decode");
    assert_eq!(again, decoded);
});
