//! Every request decoder: arbitrary bytes decode to a typed error or to a value that re-encodes
//! (at the same version) to bytes that decode to the same value.
#![no_main]

#[path = "../../crates/protocol/tests/support/fuzz_props.rs"]
mod fuzz_props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_props::request_round_trip(data));
