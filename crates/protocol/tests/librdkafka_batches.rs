//! Decodes record sets that librdkafka (confluent-kafka) wrote into real Produce requests, one
//! capture per compression codec, and checks them against the records that were sent.
//!
//! Fixtures, in `tests/fixtures/golden/`:
//! - `produce_<codec>.records.bin`: the raw `records` bytes of one partition of a captured
//!   Produce request (one or more v2 batches), codec ∈ none, gzip, snappy, lz4, zstd;
//! - `produce_<codec>.expected.json`: a JSON array of the records sent, in order, each
//!   `{"key": hex|null, "value": hex|null, "headers": [[utf8 key, hex|null], ...]}`, and
//!   optionally `"timestamp"` (ms), checked when present.
//!
//! The test fails (rather than passing vacuously) unless all five codecs are present.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use krab_protocol::records::{Compression, Record, decode_batches};
use serde_json::Value;

fn codec_named(name: &str) -> Option<Compression> {
    Some(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => return None,
    })
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd-length hex string {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("hex {s:?}: {e}")))
        .collect()
}

fn nullable_hex(v: Option<&Value>, what: &str) -> Option<Vec<u8>> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(unhex(s)),
        Some(other) => panic!("{what}: expected a hex string or null, got {other}"),
    }
}

/// An expected record: key, value, headers.
type Expected = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);

fn expected_records(path: &Path) -> Vec<(Expected, Option<i64>)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    let Value::Array(items) = json else {
        panic!("{}: expected a JSON array", path.display());
    };
    items
        .iter()
        .map(|item| {
            let headers = match item.get("headers") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(hs)) => hs
                    .iter()
                    .map(|h| {
                        let key =
                            h.get(0).and_then(Value::as_str).unwrap_or_else(|| panic!("header key in {h}")).to_owned();
                        (key, nullable_hex(h.get(1), "header value"))
                    })
                    .collect(),
                Some(other) => panic!("headers: expected an array, got {other}"),
            };
            let record = (nullable_hex(item.get("key"), "key"), nullable_hex(item.get("value"), "value"), headers);
            (record, item.get("timestamp").and_then(Value::as_i64))
        })
        .collect()
}

fn actual(record: &Record) -> Expected {
    (
        record.key.as_ref().map(|b| b.to_vec()),
        record.value.as_ref().map(|b| b.to_vec()),
        record
            .headers
            .iter()
            .map(|h| {
                let key = h.key_str().unwrap_or_else(|| panic!("header key {:?} is not UTF-8", h.key)).to_owned();
                (key, h.value.as_ref().map(|v| v.to_vec()))
            })
            .collect(),
    )
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// `(codec name, codec, records.bin path)` for every capture present.
fn captures() -> Vec<(String, Compression, PathBuf)> {
    let dir = fixtures_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let file = path.file_name()?.to_str()?.to_owned();
            let name = file.strip_prefix("produce_")?.strip_suffix(".records.bin")?.to_owned();
            let codec = codec_named(&name).unwrap_or_else(|| panic!("{file}: unknown codec name {name:?}"));
            Some((name, codec, path))
        })
        .collect();
    found.sort_by_key(|(_, codec, _)| codec.code());
    found
}

fn check_capture(name: &str, codec: Compression, bin: &Path) {
    let input = Bytes::from(std::fs::read(bin).unwrap_or_else(|e| panic!("reading {}: {e}", bin.display())));
    let expected = expected_records(&bin.with_file_name(format!("produce_{name}.expected.json")));
    let set = decode_batches(&input).unwrap_or_else(|e| panic!("{name}: decode failed: {e}"));
    assert!(!set.is_partial(), "{name}: a Produce request holds whole batches");
    assert!(!set.batches.is_empty(), "{name}: no batch decoded");
    for batch in &set.batches {
        assert_eq!(batch.magic, 2, "{name}: magic");
        assert_eq!(batch.compression, codec, "{name}: compression attribute");
        assert!(!batch.is_control, "{name}: control batch in a Produce request");
        assert_eq!(
            i64::from(batch.last_offset_delta) + 1,
            batch.records.len() as i64,
            "{name}: last offset delta vs record count"
        );
        for (i, r) in batch.records.iter().enumerate() {
            assert_eq!(r.offset, batch.base_offset + i as i64, "{name}: offset of record {i}");
            assert!(r.timestamp <= batch.max_timestamp, "{name}: max timestamp");
        }
    }
    let got: Vec<&Record> = set.records().collect();
    assert_eq!(got.len(), expected.len(), "{name}: record count");
    for (i, (g, (e, timestamp))) in got.iter().zip(&expected).enumerate() {
        assert_eq!(&actual(g), e, "{name}: record {i}");
        if let Some(ts) = timestamp {
            assert_eq!(g.timestamp, *ts, "{name}: timestamp of record {i}");
        }
    }

    // Our encoder reproduces the batches: byte for byte without compression (varints are
    // canonical), and record for record with it.
    let mut reencoded = BytesMut::new();
    for batch in &set.batches {
        batch.encode(&mut reencoded).unwrap_or_else(|e| panic!("{name}: re-encode failed: {e}"));
    }
    let reencoded = reencoded.freeze();
    if codec == Compression::None {
        assert_eq!(reencoded, input, "{name}: re-encoded bytes differ from librdkafka's");
    }
    let again = decode_batches(&reencoded).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(again.batches, set.batches, "{name}: re-encoded batches differ");
}

#[test]
fn librdkafka_records_decode_for_every_codec() {
    let found = captures();
    for (name, codec, bin) in &found {
        check_capture(name, *codec, bin);
    }
    let names: Vec<&str> = found.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(
        found.len() >= 5,
        "expected captures for all 5 codecs (none, gzip, snappy, lz4, zstd) in {}, found {names:?}",
        fixtures_dir().display()
    );
}
