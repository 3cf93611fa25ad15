//! The properties the fuzz targets check, shared with the tests that replay fuzz regressions
//! (`fuzz/fuzz_targets/*.rs` include this file by path).

use bytes::{Bytes, BytesMut};
use krab_protocol::ApiKey;
use krab_protocol::messages::{AnyRequest, AnyResponse};
use krab_protocol::records::{DecodeOptions, decode_batches_with};

/// The decode options of the record-batch property, from the input's first byte: CRC checks on
/// when its low bit is set (off, the fuzzer reaches the record parsers behind them), 1 MiB per
/// batch and 4 MiB per record set.
#[allow(dead_code)]
pub(crate) fn record_batch_options(flags: u8) -> DecodeOptions {
    DecodeOptions::new()
        .with_verify_crc(flags & 1 == 1)
        .with_max_decompressed_size(1 << 20)
        .with_max_total_decompressed_size(4 << 20)
}

/// Record-set decoding over arbitrary bytes (after a flags byte, see [`record_batch_options`]):
/// a typed error or batches; every decoded v2 batch re-encodes to bytes that decode to the same
/// batch.
#[allow(dead_code)]
pub(crate) fn record_batch_round_trip(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else { return };
    let input = Bytes::copy_from_slice(data);
    let Ok(set) = decode_batches_with(&input, &record_batch_options(flags)) else { return };
    for batch in set.batches.iter().filter(|b| b.magic == 2) {
        let mut out = BytesMut::new();
        if batch.encode(&mut out).is_err() {
            // Only inputs whose records cannot be re-expressed (e.g. a codec level) may refuse.
            continue;
        }
        let again = decode_batches_with(&out.freeze(), &DecodeOptions::new()).expect("re-encoded batch decodes");
        assert_eq!(again.batches.len(), 1);
        assert_eq!(again.batches[0].records, batch.records);
    }
}

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
