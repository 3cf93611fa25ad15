//! Decoders reserve memory by the bytes they were given, never by the element counts the input
//! claims.
//!
//! Each case builds a 100 MiB input whose length prefix claims as many elements as the bytes
//! allow (one byte each for arrays, seven for records) and whose first element is malformed. A
//! decoder that reserves `count × size_of::<T>()` up front asks for gigabytes; one that
//! reserves by bytes stays near the input's size. The case runs in a child process whose
//! address space is limited (`ulimit -v`) to a few times the input, so an over-reservation
//! aborts the child and fails the test, whatever the machine's overcommit policy.
#![cfg(target_os = "linux")]

use bytes::{BufMut, Bytes, BytesMut};
use krab_protocol::Message;
use krab_protocol::messages::{FetchResponse, ProduceResponse};
use krab_protocol::records::{self, DecodeOptions, RecordsError};
use std::process::Command;

const INPUT: usize = 100 << 20;
/// Address space for the child: the input, the test harness, the allocator's arenas and slack.
const LIMIT_KIB: usize = 640 << 10;
const CHILD: &str = "KRAB_BOUNDED_MEMORY_CHILD";

/// Runs test `name` again in a child limited to `LIMIT_KIB`; returns true in the child.
fn in_limited_child(name: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{name} under a {LIMIT_KIB} KiB address-space limit: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// A ProduceResponse v0 whose topic array claims one element per byte left; every byte after
/// the count is 0xff, so the first topic name has length -1 (null, not allowed).
#[test]
fn an_array_claiming_every_byte_reserves_by_bytes() {
    if !in_limited_child("an_array_claiming_every_byte_reserves_by_bytes") {
        return;
    }
    let mut frame = BytesMut::with_capacity(INPUT);
    frame.put_i32((INPUT - 4) as i32);
    frame.put_bytes(0xff, INPUT - 4);
    let frame = frame.freeze();
    let err = ProduceResponse::decode(&frame, 0).expect_err("the first topic is malformed");
    assert!(err.to_string().contains("responses[0]"), "{err}");
}

/// The same attack on a compact array (flexible versions): FetchResponse v12's responses.
#[test]
fn a_compact_array_claiming_every_byte_reserves_by_bytes() {
    if !in_limited_child("a_compact_array_claiming_every_byte_reserves_by_bytes") {
        return;
    }
    let mut frame = BytesMut::with_capacity(INPUT);
    frame.put_i32(0); // throttle_time_ms
    frame.put_i16(0); // error_code
    frame.put_i32(0); // session_id
    // responses: compact length N+1 as an unsigned varint, N = the bytes that follow.
    let n = (INPUT - 10 - 5) as u32 + 1;
    let mut v = n;
    for _ in 0..4 {
        frame.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    frame.put_u8(v as u8);
    frame.resize(INPUT, 0xff);
    let frame = frame.freeze();
    let err = FetchResponse::decode(&frame, 12).expect_err("the first topic is malformed");
    assert!(err.to_string().contains("responses[0]"), "{err}");
}

/// An uncompressed record batch of 100 MiB claiming the most records its bytes allow (one per
/// 7 bytes); the first record is malformed.
#[test]
fn a_record_batch_claiming_every_record_reserves_by_bytes() {
    if !in_limited_child("a_record_batch_claiming_every_record_reserves_by_bytes") {
        return;
    }
    let mut batch = BytesMut::with_capacity(INPUT);
    batch.put_i64(0); // base offset
    batch.put_i32((INPUT - 12) as i32); // batch length
    batch.put_i32(0); // partition leader epoch
    batch.put_i8(2); // magic
    batch.put_u32(0); // crc (not checked here)
    batch.put_i16(0); // attributes: uncompressed
    batch.put_i32(0); // last offset delta
    batch.put_i64(0); // base timestamp
    batch.put_i64(0); // max timestamp
    batch.put_i64(-1); // producer id
    batch.put_i16(-1); // producer epoch
    batch.put_i32(-1); // base sequence
    let count = (INPUT - records::BATCH_HEADER_LEN) / 7;
    batch.put_i32(count as i32); // record count
    assert_eq!(batch.len(), records::BATCH_HEADER_LEN);
    // Record length 0: the first record has no attributes byte.
    batch.resize(INPUT, 0);
    let batch: Bytes = batch.freeze();
    let options = DecodeOptions::new().with_verify_crc(false);
    let err = records::decode_batches_with(&batch, &options).expect_err("the first record is malformed");
    assert!(matches!(err, RecordsError::Truncated { .. }), "{err:?}");
}
