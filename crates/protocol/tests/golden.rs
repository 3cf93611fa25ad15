//! Golden bytes from real traffic: frames exchanged between librdkafka (confluent-kafka 2.16) and
//! tansu, captured by `cargo xtask capture`, and (in `kafka/`) between Kafka's Java client and
//! Apache Kafka, captured by `cargo xtask capture --broker kafka`. Every frame must decode, and
//! re-encode to the very same bytes.

use bytes::{Bytes, BytesMut};
use krab_protocol::messages::{AnyRequest, AnyResponse, RequestHeader, ResponseHeader};
use krab_protocol::{ApiKey, Message};
use serde_json::Value;
use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

struct Exchange {
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    request: Bytes,
    response: Option<Bytes>,
    name: String,
}

/// The librdkafka ↔ tansu exchanges first, then the Java client ↔ Kafka ones.
fn exchanges() -> Vec<Exchange> {
    let mut all = exchanges_in(golden_dir(), "");
    all.extend(exchanges_in(golden_dir().join("kafka"), "kafka/"));
    all
}

fn exchanges_in(dir: PathBuf, prefix: &str) -> Vec<Exchange> {
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let read = |f: &str| Bytes::from(std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")));
    manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let key = e["api_key"].as_i64().unwrap() as i16;
            Exchange {
                api: ApiKey::from_i16(key).unwrap_or_else(|| panic!("captured API key {key} is not generated")),
                version: e["api_version"].as_i64().unwrap() as i16,
                correlation_id: e["correlation_id"].as_i64().unwrap() as i32,
                request: read(e["request"].as_str().unwrap()),
                response: e["response"].as_str().map(read),
                name: format!("{prefix}{}", e["request"].as_str().unwrap().trim_end_matches(".req.bin")),
            }
        })
        .collect()
}

/// Decodes a header at `header_version`, then the body, from one frame; returns both and the
/// offset where the body starts.
fn split<H: Message>(frame: &Bytes, header_version: i16) -> (H, Bytes) {
    let mut len = 0;
    let header = {
        let h = H::decode(frame, header_version).expect("header decodes");
        len += h.encoded_len(header_version);
        h
    };
    (header, frame.slice(len..))
}

#[test]
fn every_captured_request_decodes_and_reencodes_byte_identically() {
    let all = exchanges();
    for x in &all {
        let hv = x.api.request_header_version(x.version);
        let (header, body) = split::<RequestHeader>(&x.request, hv);
        assert_eq!(header.request_api_key, x.api as i16, "{}", x.name);
        assert_eq!(header.request_api_version, x.version, "{}", x.name);
        assert_eq!(header.correlation_id, x.correlation_id, "{}", x.name);

        let req = AnyRequest::decode(x.api as i16, &body, x.version)
            .unwrap_or_else(|e| panic!("{}: request decode failed: {e}", x.name));
        let mut out = BytesMut::new();
        header.encode(&mut out, hv).unwrap();
        req.encode(&mut out, x.version).unwrap();
        assert_eq!(out.len(), header.encoded_len(hv) + req.encoded_len(x.version));

        if out[..] != x.request[..] {
            // librdkafka writes an "all topics" Metadata request (v9+) with a 4-byte zero where the
            // 1-byte compact topic array belongs. Brokers read a null array (all topics) and
            // ignore the 3 bytes left over; so do we, and then re-encode the canonical form.
            let AnyRequest::Metadata(m) = &req else { panic!("{}: re-encoding differs", x.name) };
            assert_eq!(m.topics, None, "{}", x.name);
            assert_eq!(&x.request[..out.len()], &out[..], "{}: canonical prefix", x.name);
            assert_eq!(x.request.len() - out.len(), 3, "{}: only the known quirk differs", x.name);
        }
    }
}

#[test]
fn every_captured_response_decodes_and_reencodes_byte_identically() {
    let all = exchanges();
    let mut seen = std::collections::BTreeSet::new();
    for x in &all {
        let Some(frame) = &x.response else { continue };
        let hv = x.api.response_header_version(x.version);
        let (header, body) = split::<ResponseHeader>(frame, hv);
        assert_eq!(header.correlation_id, x.correlation_id, "{}", x.name);
        let resp = AnyResponse::decode(x.api as i16, &body, x.version)
            .unwrap_or_else(|e| panic!("{}: response decode failed: {e}", x.name));
        let mut out = BytesMut::new();
        header.encode(&mut out, hv).unwrap();
        resp.encode(&mut out, x.version).unwrap();
        assert_eq!(&out[..], &frame[..], "{}: re-encoding differs", x.name);
        seen.insert(x.api);
    }
    // The capture must keep covering what a client exchanges most.
    for api in [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::OffsetCommit,
    ] {
        assert!(seen.contains(&api), "no golden response for {api}");
    }
}

#[test]
fn golden_values_are_what_the_broker_said() {
    // Spot checks that decoding reads the right fields, not merely something self-consistent.
    let all = exchanges();
    let api_versions = all.iter().find(|x| x.api == ApiKey::ApiVersions).unwrap();
    let frame = api_versions.response.as_ref().unwrap();
    // ApiVersions responses always use header v0, whatever the version.
    assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
    let (_, body) = split::<ResponseHeader>(frame, 0);
    let AnyResponse::ApiVersions(r) = AnyResponse::decode(18, &body, 3).unwrap() else { unreachable!() };
    assert_eq!(r.error_code, 0);
    let produce = r.api_keys.iter().find(|k| k.api_key == 0).expect("tansu advertises Produce");
    assert_eq!((produce.min_version, produce.max_version), (0, 11));
    let metadata = r.api_keys.iter().find(|k| k.api_key == 3).expect("tansu advertises Metadata");
    assert_eq!((metadata.min_version, metadata.max_version), (0, 12));

    let meta = all.iter().find(|x| x.api == ApiKey::Metadata).unwrap();
    let (_, body) = split::<ResponseHeader>(meta.response.as_ref().unwrap(), 1);
    let AnyResponse::Metadata(m) = AnyResponse::decode(3, &body, 12).unwrap() else { unreachable!() };
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.brokers[0].node_id, 111, "tansu's single broker id");
    assert_eq!(m.brokers[0].host, "127.0.0.1");
}
