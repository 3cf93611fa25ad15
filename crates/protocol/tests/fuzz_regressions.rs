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

/// The fuzz targets' seed inputs (`fuzz/seeds/`, the known attacks) hold the same properties.
fn replay_seeds(target: &str, property: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        property(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn response_seeds_hold() {
    replay_seeds("response", fuzz_props::response_round_trip);
}

#[test]
fn record_batch_seeds_hold() {
    replay_seeds("record_batch", fuzz_props::record_batch_round_trip);
}

/// The record-set attacks among the seeds, each failing with the error it must.
#[test]
fn record_set_attacks_yield_the_expected_errors() {
    use bytes::Bytes;
    use krab_protocol::records::{Compression, RecordsError, decode_batches_with};
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/record_batch");
    type Expected = fn(&RecordsError) -> bool;
    let cases: [(&str, Expected); 4] = [
        // 4 KiB claiming 585 records: fails at the first, having reserved by bytes.
        ("uncompressed-claiming-every-record", |e| {
            matches!(e, RecordsError::Truncated { what: "record attributes", .. })
        }),
        // 500 one-byte blocks in a frame claiming 4 MiB blocks: cheap, then not records.
        ("lz4-tiny-blocks-claiming-4mib", |e| {
            matches!(e, RecordsError::InCompressedBatch { compression: Compression::Lz4, .. })
        }),
        // A content size of 64 MiB claimed by a frame holding one byte: over the 1 MiB bound.
        ("lz4-content-size-claiming-64mib", |e| {
            matches!(e, RecordsError::DecompressedTooLarge { compression: Compression::Lz4, limit: 0x10_0000, .. })
        }),
        // Six batches of ~1 MB each against a 4 MiB record-set budget: the fifth fails.
        ("gzip-batches-over-the-record-set-budget", |e| {
            matches!(e, RecordsError::RecordSetTooLarge { limit: 0x40_0000, .. })
        }),
    ];
    for (name, expected) in cases {
        let data = std::fs::read(seeds.join(name)).unwrap();
        let (&flags, body) = data.split_first().unwrap();
        let err = decode_batches_with(&Bytes::copy_from_slice(body), &fuzz_props::record_batch_options(flags))
            .expect_err(name);
        assert!(expected(&err), "{name}: {err:?}");
    }
}
