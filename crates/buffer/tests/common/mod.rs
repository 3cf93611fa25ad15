//! Helpers shared by the krab-buffer integration tests: records whose contents are derived from
//! their token and remembered, so every drained payload can be decoded and checked exactly.
#![allow(dead_code)]

use bytes::Bytes;
use krab_buffer::{
    Accumulator, AccumulatorConfig, FailedBatch, Payload, PendingRecord, ProducerBatch, Reservation, TopicPartition,
};
use krab_protocol::records::{Compression, RecordBatch, RecordBatchEncoder, RecordHeader, decode_batches};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Base timestamp (ms) of generated records.
pub(crate) const TS0: i64 = 1_700_000_000_000;

/// A long linger: batches only go out when full or sealed explicitly.
pub(crate) const LONG: Duration = Duration::from_secs(3600);

pub(crate) fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("topic", p)
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn config(batch_size: usize, linger: Duration) -> AccumulatorConfig {
    AccumulatorConfig { batch_size, linger, ..AccumulatorConfig::default() }
}

/// Every broker leads every partition: broker 1.
pub(crate) fn on_one(_: &TopicPartition) -> Option<i32> {
    Some(1)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expected {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<RecordHeader>,
    pub(crate) timestamp: i64,
}

/// Makes records and remembers what each token's record holds.
#[derive(Default)]
pub(crate) struct Records {
    expected: HashMap<u64, Expected>,
}

impl Records {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A record of varied shape (null keys and values, 0..=2 headers one with a null value,
    /// timestamps going backwards now and then) with `pad` extra value bytes.
    pub(crate) fn record(&mut self, token: u64, pad: usize, now: Instant) -> PendingRecord<u64> {
        let key = (token % 5 != 4).then(|| Bytes::from(format!("key-{token}")));
        let value = (pad > 0 || token % 7 != 6).then(|| {
            let mut v = format!("value-{token}-").into_bytes();
            v.extend(std::iter::repeat_n(b'a' + (token % 26) as u8, pad));
            Bytes::from(v)
        });
        let headers = (0..token % 3)
            .map(|i| RecordHeader::new(format!("h{i}"), (i == 0).then(|| Bytes::from(token.to_be_bytes().to_vec()))))
            .collect::<Vec<_>>();
        let timestamp = TS0 + token as i64 * 10 - (token % 3) as i64 * 25;
        let e = Expected { key, value, headers, timestamp };
        assert!(self.expected.insert(token, e.clone()).is_none(), "token {token} used twice");
        PendingRecord {
            key: e.key,
            value: e.value,
            headers: e.headers,
            timestamp: e.timestamp,
            token,
            reservation: Reservation::none(),
            enqueued_at: now,
        }
    }

    /// The exact uncompressed size of one batch holding these tokens' records.
    pub(crate) fn encoded_size(&self, tokens: &[u64]) -> usize {
        let mut enc = RecordBatchEncoder::new(Compression::None);
        for t in tokens {
            let e = &self.expected[t];
            enc.append(e.timestamp, e.key.as_deref(), e.value.as_deref(), &e.headers).unwrap();
        }
        enc.uncompressed_size()
    }

    /// Decodes the batch's payload (verifying its CRC), checks it holds exactly one batch whose
    /// records are those of the batch's tokens, in order, and returns the decoded batch.
    pub(crate) fn check(&self, batch: &ProducerBatch<u64>) -> RecordBatch {
        let mut set =
            decode_batches(bytes(batch)).unwrap_or_else(|e| panic!("batch {} does not decode: {e}", batch.id));
        assert!(!set.is_partial());
        assert_eq!(set.batches.len(), 1, "one RecordBatch per payload");
        let decoded = set.batches.remove(0);
        assert_eq!(decoded.records.len(), batch.records.len(), "record count of batch {}", batch.id);
        assert_eq!(decoded.base_sequence, batch.base_sequence, "base sequence in the header of batch {}", batch.id);
        assert_eq!(decoded.base_offset, 0);
        for (i, (r, slot)) in decoded.records.iter().zip(&batch.records).enumerate() {
            let e = &self.expected[&slot.token];
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.key, e.key, "key of token {}", slot.token);
            assert_eq!(r.value, e.value, "value of token {}", slot.token);
            assert_eq!(r.headers, e.headers, "headers of token {}", slot.token);
            assert_eq!(r.timestamp, e.timestamp, "timestamp of token {}", slot.token);
            assert_eq!(slot.timestamp, e.timestamp);
        }
        decoded
    }
}

pub(crate) fn tokens(batch: &ProducerBatch<u64>) -> Vec<u64> {
    batch.records.iter().map(|r| r.token).collect()
}

pub(crate) fn failed_tokens(batch: &FailedBatch<u64>) -> Vec<u64> {
    batch.records.iter().map(|r| r.token).collect()
}

/// Appends `tokens` (pad 8) to partition `p`; panics on error.
pub(crate) fn append(
    acc: &mut Accumulator<u64>,
    recs: &mut Records,
    p: i32,
    tokens: impl IntoIterator<Item = u64>,
    now: Instant,
) {
    for t in tokens {
        acc.append(&tp(p), recs.record(t, 8, now), now).unwrap();
    }
}

/// Encodes a drained batch's payload in place (as a sender would before sending it), checking
/// that it fits the size the drain planned with.
pub(crate) fn encode(batch: &mut ProducerBatch<u64>) {
    let payload = std::mem::replace(&mut batch.payload, Payload::Encoded(Bytes::new()));
    let max = payload.max_len();
    let bytes = payload.into_bytes().unwrap_or_else(|e| panic!("batch {} does not encode: {e}", batch.id));
    assert!(bytes.len() <= max, "batch {}: {} bytes, planned as at most {max}", batch.id, bytes.len());
    batch.payload = Payload::Encoded(bytes);
}

/// The bytes of an encoded batch.
pub(crate) fn bytes(batch: &ProducerBatch<u64>) -> &Bytes {
    match &batch.payload {
        Payload::Encoded(b) => b,
        Payload::Pending(_) => panic!("batch {} is not encoded", batch.id),
    }
}

/// One drain with every partition on broker 1, flattened, each batch encoded.
pub(crate) fn drain(acc: &mut Accumulator<u64>, now: Instant) -> Vec<ProducerBatch<u64>> {
    let mut map = acc.drain(now, on_one);
    assert!(map.keys().all(|&b| b == 1));
    let mut out = map.remove(&1).unwrap_or_default();
    out.iter_mut().for_each(encode);
    out
}

/// One drain, keyed by partition (asserting at most one batch per partition).
pub(crate) fn drain_by_partition(acc: &mut Accumulator<u64>, now: Instant) -> BTreeMap<i32, ProducerBatch<u64>> {
    let mut out = BTreeMap::new();
    for b in drain(acc, now) {
        let p = b.tp.partition;
        assert!(out.insert(p, b).is_none(), "two batches of partition {p} in one drain");
    }
    out
}
