//! The consumer protocol's embedded messages: a member's subscription (JoinGroup's protocol
//! metadata) and its assignment (SyncGroup's), each an `i16` version then the body at that
//! version (`ConsumerProtocolSubscription`, `ConsumerProtocolAssignment`, versions 0-3).
//!
//! Decoding is as lenient as Kafka's clients: a version newer than ours is read at our highest
//! (later versions only append fields), bytes after the body are ignored, and an empty
//! assignment byte string (what the coordinator sends a member the leader gave nothing) is an
//! empty assignment. Garbage is an error, never a panic.

use crate::group::assignor::MemberSubscription;
use bytes::{BufMut, Bytes, BytesMut};
use krab_buffer::TopicPartition;
use krab_protocol::Message;
use krab_protocol::messages::consumer_protocol_subscription;
use krab_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, consumer_protocol_assignment};
use std::collections::BTreeMap;

/// The highest version of both messages this crate knows.
const MAX_VERSION: i16 = 3;

/// The longest string the protocol can carry (an `i16` length). No topic is that long (Kafka
/// allows 249 characters), so a longer name can only be a mistake; it is left out rather than
/// failing the whole subscription.
const MAX_STRING: usize = i16::MAX as usize;

/// A member's subscription at `version` (clamped to 0..=3): its topics, from v1 the partitions
/// it owns (grouped by topic), from v2 the generation they are from; no user data, no rack.
pub(crate) fn encode_subscription(topics: &[String], owned: &[TopicPartition], generation: i32, version: i16) -> Bytes {
    let version = version.clamp(0, MAX_VERSION);
    let message = ConsumerProtocolSubscription {
        topics: topics.iter().filter(|t| t.len() <= MAX_STRING).cloned().collect(),
        user_data: None,
        owned_partitions: if version >= 1 {
            group_by_topic(owned)
                .map(|(topic, partitions)| consumer_protocol_subscription::TopicPartition { topic, partitions })
                .collect()
        } else {
            Vec::new()
        },
        generation_id: if version >= 2 { generation } else { -1 },
        rack_id: None,
    };
    let mut buf = BytesMut::with_capacity(2 + message.encoded_len(version));
    buf.put_i16(version);
    message.encode(&mut buf, version).expect("a subscription of encodable strings at a known version encodes");
    buf.freeze()
}

/// Decodes the subscription `member_id` (`group_instance_id`) sent in JoinGroup.
///
/// When the generation is not in the subscription (before v2, or -1), it is read, as Java's
/// `CooperativeStickyAssignor` reads it, from the user data's first four bytes when there are
/// that many (Java's cooperative-sticky members put it there too), else it is unknown (-1).
pub(crate) fn decode_subscription(
    member_id: &str,
    group_instance_id: Option<String>,
    bytes: &Bytes,
) -> Result<MemberSubscription, String> {
    let (version, body) = split_version(bytes, "subscription")?;
    let message = ConsumerProtocolSubscription::decode(&body, version.min(MAX_VERSION))
        .map_err(|e| format!("subscription v{version} of member {member_id}: {e}"))?;
    let generation = match (message.generation_id, message.user_data.as_deref()) {
        (generation, _) if generation >= 0 => generation,
        (_, Some([a, b, c, d, ..])) => i32::from_be_bytes([*a, *b, *c, *d]),
        _ => -1,
    };
    let owned = message
        .owned_partitions
        .into_iter()
        .flat_map(|t| {
            let topic: std::sync::Arc<str> = t.topic.into();
            t.partitions.into_iter().map(move |p| TopicPartition::new(topic.clone(), p))
        })
        .collect();
    Ok(MemberSubscription {
        member_id: member_id.to_owned(),
        group_instance_id,
        topics: message.topics,
        owned,
        generation,
    })
}

/// A member's assignment at `version` (clamped to 0..=3; every version has the same body):
/// its partitions grouped by topic, no user data.
pub(crate) fn encode_assignment(partitions: &[TopicPartition], version: i16) -> Bytes {
    let version = version.clamp(0, MAX_VERSION);
    let message = ConsumerProtocolAssignment {
        assigned_partitions: group_by_topic(partitions)
            .map(|(topic, partitions)| consumer_protocol_assignment::TopicPartition { topic, partitions })
            .collect(),
        user_data: None,
    };
    let mut buf = BytesMut::with_capacity(2 + message.encoded_len(version));
    buf.put_i16(version);
    message.encode(&mut buf, version).expect("an assignment of encodable topics at a known version encodes");
    buf.freeze()
}

/// Decodes the assignment SyncGroup returned. An empty byte string is an empty assignment.
pub(crate) fn decode_assignment(bytes: &Bytes) -> Result<Vec<TopicPartition>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (version, body) = split_version(bytes, "assignment")?;
    let message = ConsumerProtocolAssignment::decode(&body, version.min(MAX_VERSION))
        .map_err(|e| format!("assignment v{version}: {e}"))?;
    Ok(message
        .assigned_partitions
        .into_iter()
        .flat_map(|t| {
            let topic: std::sync::Arc<str> = t.topic.into();
            t.partitions.into_iter().map(move |p| TopicPartition::new(topic.clone(), p))
        })
        .collect())
}

/// The version prefix and the body after it.
fn split_version(bytes: &Bytes, what: &str) -> Result<(i16, Bytes), String> {
    let [a, b, ..] = bytes[..] else {
        return Err(format!("{what} of {} bytes has no version", bytes.len()));
    };
    let version = i16::from_be_bytes([a, b]);
    if version < 0 {
        return Err(format!("{what} has an invalid version {version}"));
    }
    Ok((version, bytes.slice(2..)))
}

/// Partitions grouped by topic, topics sorted, each topic's partitions sorted and deduplicated;
/// topics whose name cannot be encoded are left out.
fn group_by_topic(partitions: &[TopicPartition]) -> impl Iterator<Item = (String, Vec<i32>)> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions.iter().filter(|tp| tp.topic.len() <= MAX_STRING) {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic.into_iter().map(|(topic, mut parts)| {
        parts.sort_unstable();
        parts.dedup();
        (topic.to_owned(), parts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp(topic: &str, p: i32) -> TopicPartition {
        TopicPartition::new(topic, p)
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn v0_subscription_bytes() {
        let bytes = encode_subscription(&strings(&["t"]), &[], 7, 0);
        let expected = [0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x74, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(&bytes[..], &expected[..]);
        let sub = decode_subscription("m", None, &Bytes::copy_from_slice(&expected)).unwrap();
        assert_eq!(
            sub,
            MemberSubscription {
                member_id: "m".into(),
                group_instance_id: None,
                topics: strings(&["t"]),
                owned: vec![],
                generation: -1,
            }
        );
    }

    #[test]
    fn v3_subscription_bytes() {
        let bytes = encode_subscription(&strings(&["t"]), &[tp("t", 1), tp("t", 0)], 5, 3);
        #[rustfmt::skip]
        let expected = [
            0x00, 0x03,                                     // version
            0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x74,       // topics ["t"]
            0xff, 0xff, 0xff, 0xff,                         // user data null
            0x00, 0x00, 0x00, 0x01,                         // owned: one topic
            0x00, 0x01, 0x74,                               //   "t"
            0x00, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 1, //   [0, 1]
            0x00, 0x00, 0x00, 0x05,                         // generation 5
            0xff, 0xff,                                     // rack null
        ];
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn subscription_round_trips_at_every_version() {
        let topics = strings(&["b", "a", "c"]);
        let owned = vec![tp("b", 2), tp("a", 0), tp("b", 0), tp("a", 3)];
        for version in 0..=MAX_VERSION {
            let bytes = encode_subscription(&topics, &owned, 9, version);
            assert_eq!(i16::from_be_bytes([bytes[0], bytes[1]]), version);
            let sub = decode_subscription("m-1", Some("i-1".into()), &bytes).unwrap();
            assert_eq!(sub.member_id, "m-1");
            assert_eq!(sub.group_instance_id.as_deref(), Some("i-1"));
            assert_eq!(sub.topics, topics, "v{version}");
            let expected_owned =
                if version >= 1 { vec![tp("a", 0), tp("a", 3), tp("b", 0), tp("b", 2)] } else { vec![] };
            assert_eq!(sub.owned, expected_owned, "v{version}: owned, grouped by topic");
            assert_eq!(sub.generation, if version >= 2 { 9 } else { -1 }, "v{version}");
        }
    }

    #[test]
    fn out_of_range_encode_versions_clamp() {
        assert_eq!(&encode_subscription(&strings(&["t"]), &[], 1, -4)[..2], &[0, 0]);
        assert_eq!(&encode_subscription(&strings(&["t"]), &[], 1, 12)[..2], &[0, 3]);
        assert_eq!(&encode_assignment(&[tp("t", 0)], 12)[..2], &[0, 3]);
    }

    #[test]
    fn newer_subscription_versions_decode_at_ours() {
        // A v7 subscription: our v3 body, then fields we do not know.
        let mut bytes = BytesMut::from(&encode_subscription(&strings(&["t"]), &[tp("t", 4)], 3, 3)[..]);
        bytes[1] = 7;
        bytes.put_slice(b"future fields");
        let sub = decode_subscription("m", None, &bytes.freeze()).unwrap();
        assert_eq!((sub.topics, sub.owned, sub.generation), (strings(&["t"]), vec![tp("t", 4)], 3));
    }

    #[test]
    fn old_subscription_generation_from_user_data() {
        // A v1 subscription as older Java cooperative-sticky members send it: the generation
        // is the user data.
        let message = ConsumerProtocolSubscription {
            topics: strings(&["t"]),
            user_data: Some(Bytes::from_static(&[0, 0, 0, 42])),
            owned_partitions: vec![consumer_protocol_subscription::TopicPartition {
                topic: "t".into(),
                partitions: vec![1],
            }],
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        message.encode(&mut buf, 1).unwrap();
        let sub = decode_subscription("m", None, &buf.freeze()).unwrap();
        assert_eq!((sub.owned, sub.generation), (vec![tp("t", 1)], 42));
    }

    #[test]
    fn bad_subscriptions_are_errors() {
        for bytes in [&[][..], &[0], &[0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], &[0, 0], &[0, 1, 0, 0, 0, 5]] {
            assert!(decode_subscription("m", None, &Bytes::copy_from_slice(bytes)).is_err(), "{bytes:?}");
        }
        // A v1 body cut short of its owned partitions.
        let full = encode_subscription(&strings(&["t"]), &[tp("t", 0)], 1, 1);
        assert!(decode_subscription("m", None, &full.slice(..full.len() - 2)).is_err());
    }

    #[test]
    fn assignment_round_trips_at_every_version() {
        let parts = vec![tp("y", 1), tp("x", 0), tp("y", 0)];
        for version in 0..=MAX_VERSION {
            let bytes = encode_assignment(&parts, version);
            assert_eq!(i16::from_be_bytes([bytes[0], bytes[1]]), version);
            assert_eq!(decode_assignment(&bytes).unwrap(), vec![tp("x", 0), tp("y", 0), tp("y", 1)], "v{version}");
            assert_eq!(decode_assignment(&encode_assignment(&[], version)).unwrap(), vec![]);
        }
    }

    #[test]
    fn assignment_bytes() {
        #[rustfmt::skip]
        let expected = [
            0x00, 0x00,                         // version
            0x00, 0x00, 0x00, 0x01,             // one topic
            0x00, 0x01, 0x74,                   //   "t"
            0x00, 0x00, 0x00, 0x01, 0, 0, 0, 2, //   [2]
            0xff, 0xff, 0xff, 0xff,             // user data null
        ];
        assert_eq!(&encode_assignment(&[tp("t", 2)], 0)[..], &expected[..]);
    }

    #[test]
    fn assignments_empty_newer_and_bad() {
        assert_eq!(decode_assignment(&Bytes::new()).unwrap(), vec![]);
        let mut newer = BytesMut::from(&encode_assignment(&[tp("t", 1)], 3)[..]);
        newer[1] = 9;
        newer.put_slice(&[1, 2, 3]);
        assert_eq!(decode_assignment(&newer.freeze()).unwrap(), vec![tp("t", 1)]);
        for bytes in [&[0][..], &[0x80, 0x00], &[0, 0], &[0, 0, 0, 0, 0, 1, 0, 9, b't']] {
            assert!(decode_assignment(&Bytes::copy_from_slice(bytes)).is_err(), "{bytes:?}");
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let bytes = Bytes::from(bytes);
            let _ = decode_subscription("m", None, &bytes);
            let _ = decode_assignment(&bytes);
        }

        #[test]
        fn truncations_never_panic(cut in 0usize..64, version in 0i16..=3) {
            let sub = encode_subscription(&strings(&["alpha", "b"]), &[tp("alpha", 3), tp("b", 0)], 4, version);
            let _ = decode_subscription("m", None, &sub.slice(..cut.min(sub.len())));
            let assignment = encode_assignment(&[tp("alpha", 3), tp("b", 0)], version);
            let _ = decode_assignment(&assignment.slice(..cut.min(assignment.len())));
        }

        #[test]
        fn round_trips(
            topics in proptest::collection::vec("[a-z]{1,5}", 0..4),
            owned in proptest::collection::btree_set(("[a-z]{1,3}", 0i32..100), 0..8),
            generation in any::<i32>(),
            version in 0i16..=3,
        ) {
            let owned: Vec<TopicPartition> = owned.into_iter().map(|(t, p)| tp(&t, p)).collect();
            let sub = decode_subscription("m", None, &encode_subscription(&topics, &owned, generation, version)).unwrap();
            prop_assert_eq!(&sub.topics, &topics);
            prop_assert_eq!(&sub.owned, if version >= 1 { &owned } else { &Vec::new() as &Vec<_> });
            // A negative generation is unknown, whatever its value.
            prop_assert_eq!(sub.generation, if version >= 2 && generation >= 0 { generation } else { -1 });
            prop_assert_eq!(decode_assignment(&encode_assignment(&owned, version)).unwrap(), owned);
        }
    }
}
