//! Record-set decoding over arbitrary bytes: a typed error or batches; every decoded v2 batch
//! re-encodes to bytes that decode to the same batch.
#![no_main]

#[path = "../../crates/protocol/tests/support/fuzz_props.rs"]
mod fuzz_props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_props::record_batch_round_trip(data));
