//! Behaviour of the generated codec beyond round trips: version rules, nullability, tagged
//! fields, header quirks, and a table of malformed inputs that must fail with typed errors.

use bytes::{BufMut, Bytes, BytesMut};
use krab_protocol::messages::{
    AnyResponse, ApiVersionsRequest, ApiVersionsResponse, FetchResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader, api_versions, fetch, metadata,
};
use krab_protocol::{
    ApiKey, DecodeErrorKind, EncodeErrorKind, Message, RawTaggedField, Request, decode_response, encode_request,
    request_len,
};

fn encode<M: Message>(m: &M, version: i16) -> Bytes {
    let mut b = BytesMut::new();
    m.encode(&mut b, version).unwrap();
    assert_eq!(b.len(), m.encoded_len(version));
    b.freeze()
}

/// A small Metadata response using only the fields `version` has.
fn sample_metadata_response(version: i16) -> MetadataResponse {
    MetadataResponse {
        brokers: vec![metadata::MetadataResponseBroker {
            node_id: 1,
            host: "b1".into(),
            port: 9092,
            rack: None,
            ..Default::default()
        }],
        cluster_id: if version >= 2 { Some("c".into()) } else { None },
        controller_id: if version >= 1 { 1 } else { -1 },
        topics: vec![metadata::MetadataResponseTopic {
            name: Some("t".into()),
            partitions: (0..3)
                .map(|p| metadata::MetadataResponsePartition {
                    partition_index: p,
                    leader_id: 1,
                    leader_epoch: if version >= 7 { 5 } else { -1 },
                    replica_nodes: vec![1],
                    isr_nodes: vec![1],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn a_non_default_value_in_a_field_the_version_lacks_is_an_error() {
    // AllowAutoTopicCreation exists from v4 (default true).
    let req = MetadataRequest { topics: Some(vec![]), allow_auto_topic_creation: false, ..Default::default() };
    let err = req.encode(&mut BytesMut::new(), 3).unwrap_err();
    assert_eq!(err.kind, EncodeErrorKind::FieldNotInVersion);
    assert_eq!(err.field, "allow_auto_topic_creation");
    assert_eq!(err.version, 3);
    // At its default it is simply not sent.
    let req = MetadataRequest { topics: Some(vec![]), ..Default::default() };
    assert_eq!(encode(&req, 3).len(), 4);
    // And from v4 on it is sent.
    let req = MetadataRequest { topics: Some(vec![]), allow_auto_topic_creation: false, ..Default::default() };
    assert_eq!(&encode(&req, 4)[..], &[0, 0, 0, 0, 0]);
}

#[test]
fn null_where_the_version_forbids_it_is_an_error() {
    // Topics is nullable only from v1.
    let req = MetadataRequest { topics: None, ..Default::default() };
    let err = req.encode(&mut BytesMut::new(), 0).unwrap_err();
    assert_eq!(err.kind, EncodeErrorKind::NullNotAllowed);
    assert_eq!(&encode(&req, 1)[..], &[0xff, 0xff, 0xff, 0xff]);
    // Flexible versions: compact null is a single zero byte (then three booleans and no tags).
    assert_eq!(&encode(&req, 9)[..], &[0, 1, 0, 0, 0]);
}

#[test]
fn versions_outside_the_spec_are_refused_both_ways() {
    let err = MetadataRequest::default().encode(&mut BytesMut::new(), 13).unwrap_err();
    assert_eq!(err.kind, EncodeErrorKind::UnsupportedVersion { min: 0, max: 12 });
    let err = MetadataResponse::decode(&Bytes::from_static(&[0; 16]), -1).unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::UnsupportedVersion { version: -1, .. }));
}

#[test]
fn client_id_keeps_its_two_byte_length_in_flexible_headers() {
    let h = RequestHeader {
        request_api_key: 18,
        request_api_version: 3,
        correlation_id: 7,
        client_id: Some("ab".into()),
        ..Default::default()
    };
    let v2 = encode(&h, 2);
    assert_eq!(&v2[..], &[0, 18, 0, 3, 0, 0, 0, 7, 0, 2, b'a', b'b', 0]);
    assert_eq!(RequestHeader::decode(&v2, 2).unwrap(), h);
}

#[test]
fn api_versions_response_header_is_always_v0() {
    assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
    assert_eq!(ApiKey::Metadata.response_header_version(9), 1);
    assert_eq!(ApiKey::Metadata.response_header_version(8), 0);
    assert_eq!(ApiKey::Metadata.request_header_version(9), 2);
    assert_eq!(ApiKey::Metadata.request_header_version(8), 1);

    let resp = ApiVersionsResponse {
        api_keys: vec![api_versions::ApiVersion { api_key: 3, min_version: 0, max_version: 12, ..Default::default() }],
        ..Default::default()
    };
    let mut frame = BytesMut::new();
    frame.put_i32(42); // header v0: correlation id only, no tagged fields
    resp.encode(&mut frame, 3).unwrap();
    let (header, decoded) = decode_response::<ApiVersionsRequest>(&frame.freeze(), 3).unwrap();
    assert_eq!(header, ResponseHeader { correlation_id: 42, ..Default::default() });
    assert_eq!(decoded, resp);
}

#[test]
fn request_frames_carry_the_right_header() {
    let req = MetadataRequest { topics: None, ..Default::default() };
    let mut out = BytesMut::new();
    encode_request(&mut out, 9, Some("krab"), &req, 12).unwrap();
    assert_eq!(out.len(), request_len(9, Some("krab"), &req, 12));
    let out = out.freeze();
    let header = RequestHeader::decode(&out, MetadataRequest::request_header_version(12)).unwrap();
    assert_eq!((header.request_api_key, header.request_api_version, header.correlation_id), (3, 12, 9));
    assert_eq!(header.client_id.as_deref(), Some("krab"));
}

#[test]
fn unknown_tagged_fields_survive_a_round_trip() {
    // ApiVersionsRequest v3 with an unknown tag 9 appended.
    let mut body = BytesMut::new();
    body.put_slice(&[5, b'k', b'r', b'a', b'b', 2, b'1', 1]); // names, then 1 tagged field
    body.put_slice(&[9, 3, 0xaa, 0xbb, 0xcc]);
    let body = body.freeze();
    let req = ApiVersionsRequest::decode(&body, 3).unwrap();
    assert_eq!(req.client_software_name, "krab");
    assert_eq!(req.raw_tagged_fields, vec![RawTaggedField { tag: 9, data: Bytes::from_static(&[0xaa, 0xbb, 0xcc]) }]);
    assert_eq!(encode(&req, 3), body);
}

#[test]
fn known_tagged_fields_sent_at_their_default_are_kept_verbatim_and_never_doubled() {
    // FinalizedFeaturesEpoch (tag 1) sent explicitly with its default -1, as some brokers do.
    let mut body = BytesMut::new();
    body.put_slice(&[0, 0, 1, 0, 0, 0, 0]); // error 0, empty api_keys, throttle 0
    body.put_slice(&[1, 1, 8]); // one tagged field: tag 1, 8 bytes
    body.put_i64(-1);
    let body = body.freeze();
    let mut resp = ApiVersionsResponse::decode(&body, 3).unwrap();
    assert_eq!(resp.finalized_features_epoch, -1);
    assert_eq!(encode(&resp, 3), body, "re-encodes byte for byte");
    // Once the field holds a value, that value is written, once.
    resp.finalized_features_epoch = 7;
    let again = ApiVersionsResponse::decode(&encode(&resp, 3), 3).unwrap();
    assert_eq!(again.finalized_features_epoch, 7);
    assert!(again.raw_tagged_fields.is_empty());
}

#[test]
fn bytes_left_after_a_complete_response_are_tolerated() {
    // librdkafka's mock cluster ends Metadata responses with one extra zero byte.
    for version in [1, 9, 12] {
        let resp = sample_metadata_response(version);
        let mut body = BytesMut::from(&encode(&resp, version)[..]);
        body.put_u8(0);
        assert_eq!(MetadataResponse::decode(&body.freeze(), version).unwrap(), resp, "v{version}");
    }
}

#[test]
fn record_bytes_are_zero_copy_slices_of_the_frame() {
    let resp = FetchResponse {
        responses: vec![fetch::FetchableTopicResponse {
            topic: "t".into(),
            partitions: vec![fetch::PartitionData {
                records: Some(Bytes::from_static(b"0123456789")),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let frame = encode(&resp, 12);
    let decoded = FetchResponse::decode(&frame, 12).unwrap();
    let records = decoded.responses[0].partitions[0].records.as_ref().unwrap();
    let start = records.as_ptr() as usize - frame.as_ptr() as usize;
    assert_eq!(&frame[start..start + 10], b"0123456789");
}

#[test]
fn truncation_at_every_byte_is_a_typed_error() {
    for version in [0, 5, 9, 12] {
        let resp = sample_metadata_response(version);
        let full = encode(&resp, version);
        for cut in 0..full.len() {
            let err = MetadataResponse::decode(&full.slice(..cut), version)
                .expect_err(&format!("v{version} cut at {cut} must not decode"));
            assert!(err.offset <= cut, "v{version} cut {cut}: offset {} past the end", err.offset);
            assert!(
                matches!(err.kind, DecodeErrorKind::Truncated | DecodeErrorKind::LengthExceedsFrame { .. }),
                "v{version} cut {cut}: {err}"
            );
        }
    }
}

#[test]
fn malformed_inputs_yield_the_expected_errors() {
    // Metadata v1 body: brokers array, then the rest.
    struct Case {
        name: &'static str,
        version: i16,
        bytes: Vec<u8>,
        kind: DecodeErrorKind,
        path: &'static str,
        offset: usize,
    }
    let cases = [
        Case {
            name: "negative array length",
            version: 1,
            bytes: vec![0xff, 0xff, 0xff, 0xfe],
            kind: DecodeErrorKind::InvalidLength(-2),
            path: "brokers",
            offset: 0,
        },
        Case {
            name: "null where not nullable",
            version: 1,
            bytes: vec![0xff, 0xff, 0xff, 0xff],
            kind: DecodeErrorKind::UnexpectedNull,
            path: "brokers",
            offset: 0,
        },
        Case {
            name: "2^31-1 brokers in a tiny frame",
            version: 1,
            bytes: vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0],
            kind: DecodeErrorKind::LengthExceedsFrame { length: i32::MAX as u64, remaining: 4 },
            path: "brokers",
            offset: 0,
        },
        Case {
            name: "as many brokers as bytes left, the first malformed (reserves by bytes)",
            version: 1,
            bytes: [&[0u8, 0, 0, 8][..], &[0xff; 8]].concat(),
            kind: DecodeErrorKind::UnexpectedNull,
            path: "brokers[0].host",
            offset: 8,
        },
        Case {
            name: "host string longer than the frame",
            version: 1,
            bytes: vec![0, 0, 0, 1, 0, 0, 0, 1, 0x7f, 0xff, b'h'],
            kind: DecodeErrorKind::LengthExceedsFrame { length: 32767, remaining: 1 },
            path: "brokers[0].host",
            offset: 8,
        },
        Case {
            name: "host string of invalid UTF-8",
            version: 1,
            bytes: vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0xff],
            kind: DecodeErrorKind::InvalidUtf8,
            path: "brokers[0].host",
            offset: 8,
        },
        Case {
            name: "overlong compact length varint",
            version: 9,
            bytes: vec![0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            kind: DecodeErrorKind::InvalidVarint,
            path: "brokers",
            offset: 4,
        },
        Case {
            name: "too many tagged fields for the frame",
            version: 9,
            bytes: vec![0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 100],
            kind: DecodeErrorKind::LengthExceedsFrame { length: 100, remaining: 0 },
            path: ".",
            offset: 15,
        },
    ];
    for c in cases {
        let err = MetadataResponse::decode(&Bytes::from(c.bytes), c.version).unwrap_err();
        assert_eq!(err.kind, c.kind, "{}: {err}", c.name);
        assert_eq!(err.path_string(), c.path, "{}", c.name);
        assert_eq!(err.offset, c.offset, "{}", c.name);
    }
}

#[test]
fn a_known_tagged_field_that_does_not_fill_its_size_is_an_error() {
    // ApiVersionsResponse v3, tag 1 (an int64) declared with 9 bytes.
    let mut body = BytesMut::new();
    body.put_slice(&[0, 0, 1, 0, 0, 0, 0, 1, 1, 9]);
    body.put_i64(3);
    body.put_u8(0);
    let err = ApiVersionsResponse::decode(&body.freeze(), 3).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::TaggedFieldSize { tag: 1 });
    assert_eq!(err.path_string(), "finalized_features_epoch");
}

#[test]
fn repeated_or_unordered_tags_are_rejected() {
    // Found by fuzzing: ZkMigrationReady (tag 3) sent twice, once at its default and once set.
    // Accepting it made the decoded value depend on which copy came last.
    let base = [0u8, 0, 1, 0, 0, 0, 0];
    for (tags, previous, tag) in
        [(&[2u8, 3, 1, 0, 3, 1, 1][..], 3, 3), (&[2, 3, 1, 1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 1][..], 3, 1)]
    {
        let mut body = BytesMut::from(&base[..]);
        body.put_slice(tags);
        let err = ApiVersionsResponse::decode(&body.freeze(), 3).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TagOrder { tag, previous }, "{err}");
    }
}

#[test]
fn decoding_by_api_key_rejects_unknown_keys() {
    let err = AnyResponse::decode(999, &Bytes::new(), 0).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::UnknownApiKey(999));
}
