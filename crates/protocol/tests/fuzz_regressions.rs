//! Inputs the fuzzers once found failing, replayed through the same properties the fuzz targets
//! check.

#[path = "support/fuzz_props.rs"]
mod fuzz_props;

use std::path::PathBuf;

fn replay(target: &str, property: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        property(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}

#[test]
fn response_regressions_hold() {
    replay("response", fuzz_props::response_round_trip);
}
