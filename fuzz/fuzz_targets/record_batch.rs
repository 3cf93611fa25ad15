//! Record-set decoding over arbitrary bytes: a typed error or batches; every decoded v2 batch
//! re-encodes to bytes that decode to the same batch.
#![no_main]

use bytes::{Bytes, BytesMut};
use krab_protocol::records::{DecodeOptions, decode_batches_with};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else { return };
    // Half the inputs skip CRC checks so that the fuzzer reaches the record parsers behind them.
    let options =
        DecodeOptions::new().with_verify_crc(flags & 1 == 1).with_max_decompressed_size(1 << 20);
    let input = Bytes::copy_from_slice(data);
    let Ok(set) = decode_batches_with(&input, &options) else { return };
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
});
