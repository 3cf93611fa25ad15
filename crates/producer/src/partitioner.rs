//! Choosing a partition for a record.
//!
//! krab's [`DefaultPartitioner`] places records exactly where Kafka's Java producer (and
//! librdkafka's `murmur2_random`) would: a keyed record goes to
//! `toPositive(murmur2(key)) % partition_count`, computed over *all* partitions of the topic, so
//! that every client agrees on where a key lives. Records without a key are spread with the
//! "sticky" strategy of KIP-480 / KIP-794: they all go to one partition of the topic until the
//! producer reports that the batch for it is complete ([`Partitioner::on_new_batch`]), then to
//! another partition chosen uniformly at random among those currently available.
//!
//! A custom strategy implements [`Partitioner`]; returning `None` from
//! [`Partitioner::partition`] defers to the default.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::error::{Error, ErrorKind};

/// What a partitioner knows about a topic's partitions when placing a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo<'a> {
    /// The topic's partition count: partitions are numbered `0..count`.
    pub count: i32,
    /// The partitions whose leader is known and not stalled, in any order. May be empty, when
    /// no partition currently qualifies (a strategy then falls back to all partitions).
    pub available: &'a [i32],
}

impl<'a> PartitionInfo<'a> {
    /// The partitions of a topic with `count` partitions, of which `available` can take records.
    pub fn new(count: i32, available: &'a [i32]) -> Self {
        Self { count, available }
    }
}

/// A strategy that places records on partitions.
///
/// Called by the producer for every record sent without an explicit partition, from any thread;
/// implementations must be cheap and must not block.
pub trait Partitioner: Send + Sync + 'static {
    /// The partition for a record of `topic`, in `0..partitions.count`, or `None` for "no
    /// opinion": the producer then uses the [`DefaultPartitioner`]. The producer rejects a
    /// partition outside `0..partitions.count`.
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: &PartitionInfo<'_>,
    ) -> Option<i32>;

    /// Called by the producer when the batch it was filling for `prev_partition` of `topic` is
    /// complete (full or sealed for sending); sticky strategies move on to another partition.
    fn on_new_batch(&self, topic: &str, prev_partition: i32) {
        let _ = (topic, prev_partition);
    }
}

/// Kafka's 32-bit murmur2 hash, bit for bit as the Java client's `Utils.murmur2` computes it
/// (seed `0x9747b28c`, little-endian 4-byte words), as a Java `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java hashes `int length`; Kafka keys never come near 2^31 bytes.
    let mut h = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java producer picks for `key` in a topic with `count` partitions:
/// `(murmur2(key) & 0x7fffffff) % count`. `count` must be positive.
pub fn java_default_partition(key: &[u8], count: i32) -> i32 {
    assert!(count > 0, "partition count must be positive, got {count}");
    (murmur2(key) & 0x7fff_ffff) % count
}

/// The sticky state of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sticky {
    /// Records without a key go to this partition.
    On(i32),
    /// The batch for this partition is complete: pick another one on the next record.
    Leaving(i32),
}

/// Per-topic sticky partitions, shared by all threads. The lock is held for a map lookup (and, on
/// a switch, a pick among the available partitions), never across I/O.
#[derive(Debug, Default)]
struct StickyMap {
    topics: Mutex<HashMap<Box<str>, Sticky>>,
}

impl StickyMap {
    fn partition(&self, topic: &str, partitions: &PartitionInfo<'_>) -> Option<i32> {
        if partitions.count <= 0 {
            return None;
        }
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let avoid = match topics.get(topic) {
            Some(&Sticky::On(p)) if usable(p, partitions) => return Some(p),
            Some(&(Sticky::On(p) | Sticky::Leaving(p))) => Some(p),
            None => None,
        };
        let chosen = pick_uniform(partitions, avoid);
        match topics.get_mut(topic) {
            Some(state) => *state = Sticky::On(chosen),
            None => {
                topics.insert(topic.into(), Sticky::On(chosen));
            }
        }
        Some(chosen)
    }

    fn on_new_batch(&self, topic: &str, prev_partition: i32) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may already have moved on: only the current sticky partition's batch
        // completing makes us switch.
        if let Some(state) = topics.get_mut(topic).filter(|state| **state == Sticky::On(prev_partition)) {
            *state = Sticky::Leaving(prev_partition);
        }
    }
}

/// Whether the sticky partition `p` can still take records: in range and, when any partition in
/// range is available, one of the available ones (as [`pick_uniform`] chooses).
fn usable(p: i32, partitions: &PartitionInfo<'_>) -> bool {
    let valid = |p: &i32| (0..partitions.count).contains(p);
    valid(&p) && (partitions.available.contains(&p) || !partitions.available.iter().any(valid))
}

/// A partition chosen uniformly at random among the available ones (all partitions when none is
/// available), other than `avoid` when there is another choice. `partitions.count` is positive;
/// listed partitions outside `0..count` are ignored.
fn pick_uniform(partitions: &PartitionInfo<'_>, avoid: Option<i32>) -> i32 {
    let count = partitions.count;
    let valid = |p: &i32| (0..count).contains(p);
    if !partitions.available.iter().any(valid) {
        return match avoid {
            Some(a) if count > 1 && valid(&a) => {
                let r = fastrand::i32(0..count - 1);
                if r >= a { r + 1 } else { r }
            }
            _ => fastrand::i32(0..count),
        };
    }
    let excluded = avoid.filter(|&a| partitions.available.iter().any(|p| valid(p) && *p != a));
    let candidates = || partitions.available.iter().copied().filter(move |p| valid(p) && Some(*p) != excluded);
    let n = candidates().count();
    candidates().nth(fastrand::usize(..n)).expect("n counts the candidates, and there is at least one")
}

/// The producer's side of the [`Partitioner`] contract: the strategy's answer when it gives one
/// in range, Kafka's default (a [`DefaultPartitioner`] of its own, made on first need) when it
/// has no opinion, and [`ErrorKind::InvalidPartition`] for a partition the topic does not have.
pub(crate) struct Placement {
    strategy: Arc<dyn Partitioner>,
    fallback: OnceLock<DefaultPartitioner>,
}

impl Placement {
    pub(crate) fn new(strategy: Arc<dyn Partitioner>) -> Self {
        Self { strategy, fallback: OnceLock::new() }
    }

    /// The partition for a record of `topic`, which has `partitions.count > 0` partitions.
    #[inline]
    pub(crate) fn place(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: &PartitionInfo<'_>,
    ) -> Result<i32, Error> {
        let chosen = match self.strategy.partition(topic, key, value, partitions) {
            Some(p) => p,
            None => match self.fallback.get_or_init(DefaultPartitioner::new).partition(topic, key, value, partitions) {
                Some(p) => p,
                None => {
                    return Err(Error::new(ErrorKind::InvalidPartition, format!("topic {topic} has no partitions")));
                }
            },
        };
        if (0..partitions.count).contains(&chosen) {
            Ok(chosen)
        } else {
            Err(Error::new(
                ErrorKind::InvalidPartition,
                format!(
                    "the partitioner chose partition {chosen} of topic {topic}, which has {} partitions",
                    partitions.count
                ),
            ))
        }
    }

    /// Tells the strategy, and the fallback if it placed records, that the batch for
    /// `prev_partition` of `topic` is complete.
    pub(crate) fn on_new_batch(&self, topic: &str, prev_partition: i32) {
        self.strategy.on_new_batch(topic, prev_partition);
        if let Some(fallback) = self.fallback.get() {
            fallback.on_new_batch(topic, prev_partition);
        }
    }
}

/// Kafka's default strategy: Java-compatible murmur2 for keyed records, sticky for the rest.
///
/// - A record with a key (even an empty one) goes to [`java_default_partition`] over **all**
///   partitions, available or not, exactly as the Java producer and librdkafka's
///   `murmur2_random` place it.
/// - Records without a key stick to one partition per topic until [`Partitioner::on_new_batch`]
///   reports that partition's batch complete; the next one is chosen uniformly at random among
///   `available` (all partitions when none is available), avoiding the previous one when
///   there is another choice. A sticky partition that stops being available is left at once:
///   an unkeyed record has no ordering to keep.
///
/// [`DefaultPartitioner::ignoring_keys`] makes every record sticky (`uniform_sticky`).
#[derive(Debug, Default)]
pub struct DefaultPartitioner {
    ignore_keys: bool,
    sticky: StickyMap,
}

impl DefaultPartitioner {
    /// Java's default: keyed records by murmur2, unkeyed ones sticky.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record sticky, keys ignored (Java's `partitioner.ignore.keys=true`, or its former
    /// `UniformStickyPartitioner`). Records with the same key no longer share a partition.
    pub fn ignoring_keys() -> Self {
        Self { ignore_keys: true, sticky: StickyMap::default() }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        _value: Option<&[u8]>,
        partitions: &PartitionInfo<'_>,
    ) -> Option<i32> {
        if partitions.count <= 0 {
            return None;
        }
        match key {
            Some(key) if !self.ignore_keys => Some(java_default_partition(key, partitions.count)),
            _ => self.sticky.partition(topic, partitions),
        }
    }

    fn on_new_batch(&self, topic: &str, prev_partition: i32) {
        self.sticky.on_new_batch(topic, prev_partition);
    }
}

/// Each record of a topic to the next partition in turn, keys ignored: the available
/// partitions in the order listed (all partitions, ascending, when none is available).
///
/// Unlike Java's `RoundRobinPartitioner`, batch completion does not advance the turn, so no
/// partition is skipped.
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    next: Mutex<HashMap<Box<str>, u32>>,
}

impl RoundRobinPartitioner {
    /// A round-robin partitioner; every topic starts at its first partition.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(
        &self,
        topic: &str,
        _key: Option<&[u8]>,
        _value: Option<&[u8]>,
        partitions: &PartitionInfo<'_>,
    ) -> Option<i32> {
        if partitions.count <= 0 {
            return None;
        }
        let turn = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let counter = match next.get_mut(topic) {
                Some(counter) => counter,
                None => next.entry(topic.into()).or_insert(0),
            };
            let turn = *counter;
            *counter = counter.wrapping_add(1);
            turn
        };
        let count = partitions.count;
        let available = || partitions.available.iter().copied().filter(move |p| (0..count).contains(p));
        Some(match available().count() {
            0 => (turn % count as u32) as i32,
            n => available().nth(turn as usize % n).expect("n counts the available partitions"),
        })
    }
}

/// The built-in strategies, by the name the `partitioner` setting uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PartitionerKind {
    /// `default` or `murmur2_random`: [`DefaultPartitioner::new`].
    #[default]
    Default,
    /// `uniform_sticky`: [`DefaultPartitioner::ignoring_keys`], sticky for every record.
    UniformSticky,
    /// `round_robin`: [`RoundRobinPartitioner`].
    RoundRobin,
}

impl PartitionerKind {
    /// Every accepted name, canonical names first.
    pub const NAMES: &'static [&'static str] = &["default", "uniform_sticky", "round_robin", "murmur2_random"];

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            PartitionerKind::Default => "default",
            PartitionerKind::UniformSticky => "uniform_sticky",
            PartitionerKind::RoundRobin => "round_robin",
        }
    }

    /// A new partitioner of this kind.
    pub fn build(self) -> Arc<dyn Partitioner> {
        match self {
            PartitionerKind::Default => Arc::new(DefaultPartitioner::new()),
            PartitionerKind::UniformSticky => Arc::new(DefaultPartitioner::ignoring_keys()),
            PartitionerKind::RoundRobin => Arc::new(RoundRobinPartitioner::new()),
        }
    }
}

impl fmt::Display for PartitionerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A partitioner name that is not one of [`PartitionerKind::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown partitioner `{0}`: expected one of default, murmur2_random, uniform_sticky, round_robin")]
pub struct UnknownPartitioner(pub String);

impl FromStr for PartitionerKind {
    type Err = UnknownPartitioner;

    /// Names are matched ignoring ASCII case and surrounding blanks.
    fn from_str(s: &str) -> Result<Self, UnknownPartitioner> {
        let name = s.trim();
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("default") || is("murmur2_random") {
            Ok(PartitionerKind::Default)
        } else if is("uniform_sticky") {
            Ok(PartitionerKind::UniformSticky)
        } else if is("round_robin") {
            Ok(PartitionerKind::RoundRobin)
        } else {
            Err(UnknownPartitioner(s.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Kafka's `UtilsTest.testMurmur2` (clients/src/test/java/org/apache/kafka/common/utils).
    const JAVA_VECTORS: &[(&[u8], i32)] = &[
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
        (b"abc", 479_470_107),
    ];

    fn all(count: i32) -> PartitionInfo<'static> {
        PartitionInfo::new(count, &[])
    }

    #[test]
    fn murmur2_matches_the_java_client() {
        for &(data, want) in JAVA_VECTORS {
            assert_eq!(murmur2(data), want, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn murmur2_covers_every_tail_length() {
        // Lengths 0..=7 exercise the empty input and each tail case, with and without a word.
        let hashes: HashSet<i32> = (0..8).map(|n| murmur2(&b"abcdefgh"[..n])).collect();
        assert_eq!(hashes.len(), 8);
        // High bytes must be taken unsigned, as Java's `& 0xff` does.
        assert_ne!(murmur2(&[0xff]), murmur2(&[0x7f]));
    }

    #[test]
    fn java_partition_is_the_positive_hash_modulo_count() {
        for &(data, hash) in JAVA_VECTORS {
            for count in [1, 2, 3, 6, 7, 12, 100, i32::MAX] {
                assert_eq!(java_default_partition(data, count), (hash & 0x7fff_ffff) % count);
            }
        }
    }

    #[test]
    fn letters_land_where_java_and_librdkafka_put_them() {
        // Cross-checked against librdkafka 2.0.2's `rd_kafka_msg_partitioner_murmur2`.
        let twelve = [4, 8, 10, 5, 2, 3, 3, 1, 2, 2, 8, 4, 8, 9, 11, 2, 3, 9, 11, 1, 3, 5, 6, 10, 0, 2];
        let six = [4, 2, 4, 5, 2, 3, 3, 1, 2, 2, 2, 4, 2, 3, 5, 2, 3, 3, 5, 1, 3, 5, 0, 4, 0, 2];
        for (i, letter) in (b'a'..=b'z').enumerate() {
            assert_eq!(java_default_partition(&[letter], 12), twelve[i], "{}", letter as char);
            assert_eq!(java_default_partition(&[letter], 6), six[i], "{}", letter as char);
        }
    }

    #[test]
    fn keyed_records_ignore_availability() {
        let p = DefaultPartitioner::new();
        let only_zero = PartitionInfo::new(12, &[0]);
        let nothing = PartitionInfo::new(12, &[]);
        for (i, letter) in (b'a'..=b'z').enumerate() {
            let want = java_default_partition(&[letter], 12);
            assert_eq!(p.partition("t", Some(&[letter]), None, &only_zero), Some(want), "key #{i}");
            assert_eq!(p.partition("t", Some(&[letter]), Some(b"v"), &nothing), Some(want));
        }
        // An empty key is still a key, hashed like Java does.
        assert_eq!(p.partition("t", Some(b""), None, &only_zero), Some(java_default_partition(b"", 12)));
    }

    #[test]
    fn unkeyed_records_stick_until_the_batch_is_complete() {
        let p = DefaultPartitioner::new();
        let info = all(8);
        let first = p.partition("t", None, Some(b"v"), &info).unwrap();
        assert!((0..8).contains(&first));
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, Some(b"v"), &info), Some(first));
        }
        // A batch completing on another partition (e.g. a keyed record's) changes nothing.
        p.on_new_batch("t", (first + 1) % 8);
        p.on_new_batch("other", first);
        assert_eq!(p.partition("t", None, None, &info), Some(first));

        p.on_new_batch("t", first);
        let second = p.partition("t", None, None, &info).unwrap();
        assert_ne!(second, first, "the previous partition is avoided when there is a choice");
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, None, &info), Some(second));
        }
        // A late report about the old partition does not move the new sticky one.
        p.on_new_batch("t", first);
        assert_eq!(p.partition("t", None, None, &info), Some(second));
    }

    #[test]
    fn topics_stick_independently() {
        let p = DefaultPartitioner::new();
        let a = p.partition("a", None, None, &all(1000)).unwrap();
        let b = p.partition("b", None, None, &all(1000)).unwrap();
        p.on_new_batch("a", a);
        assert_eq!(p.partition("b", None, None, &all(1000)), Some(b));
    }

    #[test]
    fn switches_only_among_available_partitions() {
        let p = DefaultPartitioner::new();
        let available = [1, 4, 6];
        let info = PartitionInfo::new(8, &available);
        let mut seen = HashSet::new();
        let mut prev = p.partition("t", None, None, &info).unwrap();
        for _ in 0..300 {
            assert!(available.contains(&prev));
            seen.insert(prev);
            p.on_new_batch("t", prev);
            let next = p.partition("t", None, None, &info).unwrap();
            assert_ne!(next, prev);
            prev = next;
        }
        assert_eq!(seen.len(), 3, "every available partition is used: {seen:?}");
    }

    #[test]
    fn a_single_choice_is_reused_and_no_choice_means_all() {
        let p = DefaultPartitioner::new();
        let info = PartitionInfo::new(8, &[5]);
        for _ in 0..20 {
            assert_eq!(p.partition("t", None, None, &info), Some(5));
            p.on_new_batch("t", 5);
        }
        let one = all(1);
        assert_eq!(p.partition("u", None, None, &one), Some(0));
        p.on_new_batch("u", 0);
        assert_eq!(p.partition("u", None, None, &one), Some(0));

        // Nothing available: uniform over every partition, still avoiding the previous one.
        let mut seen = HashSet::new();
        let mut prev = p.partition("v", None, None, &all(4)).unwrap();
        for _ in 0..200 {
            seen.insert(prev);
            p.on_new_batch("v", prev);
            let next = p.partition("v", None, None, &all(4)).unwrap();
            assert_ne!(next, prev);
            prev = next;
        }
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn a_sticky_partition_that_becomes_unavailable_is_left() {
        let p = DefaultPartitioner::new();
        let first = p.partition("t", None, None, &PartitionInfo::new(4, &[2])).unwrap();
        assert_eq!(first, 2);
        let moved = p.partition("t", None, None, &PartitionInfo::new(4, &[1, 3])).unwrap();
        assert!(moved == 1 || moved == 3);
        // Stale entries (out of range, duplicates) are tolerated.
        let odd = PartitionInfo::new(2, &[7, -1, 1, 1]);
        assert_eq!(p.partition("w", None, None, &odd), Some(1));
        p.on_new_batch("w", 1);
        assert_eq!(p.partition("w", None, None, &odd), Some(1));
        // Only stale entries: as if none were available, and still sticky.
        let stale = PartitionInfo::new(4, &[7, 9]);
        let x = p.partition("x", None, None, &stale).unwrap();
        assert!((0..4).contains(&x));
        for _ in 0..50 {
            assert_eq!(p.partition("x", None, None, &stale), Some(x));
        }
    }

    #[test]
    fn no_partitions_means_no_opinion() {
        let p = DefaultPartitioner::new();
        assert_eq!(p.partition("t", Some(b"k"), None, &all(0)), None);
        assert_eq!(p.partition("t", None, None, &all(0)), None);
        assert_eq!(RoundRobinPartitioner::new().partition("t", None, None, &all(0)), None);
    }

    #[test]
    fn uniform_sticky_ignores_keys() {
        let p = DefaultPartitioner::ignoring_keys();
        let info = all(64);
        let first = p.partition("t", Some(b"a"), None, &info).unwrap();
        for key in [&b"b"[..], b"c", b"zz"] {
            assert_eq!(p.partition("t", Some(key), None, &info), Some(first));
        }
        p.on_new_batch("t", first);
        assert_ne!(p.partition("t", Some(b"a"), None, &info), Some(first));
    }

    #[test]
    fn round_robin_cycles_per_topic() {
        let p = RoundRobinPartitioner::new();
        let got: Vec<i32> = (0..7).map(|_| p.partition("t", Some(b"k"), None, &all(3)).unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(p.partition("u", None, None, &all(3)), Some(0));
        p.on_new_batch("t", 0);
        assert_eq!(p.partition("t", None, None, &all(3)), Some(1), "batch completion does not skip");
        let info = PartitionInfo::new(8, &[7, 2]);
        let got: Vec<i32> = (0..4).map(|_| p.partition("v", None, None, &info).unwrap()).collect();
        assert_eq!(got, [7, 2, 7, 2]);
    }

    #[test]
    fn sticky_state_is_shared_across_threads() {
        let p = Arc::new(DefaultPartitioner::new());
        let first = p.partition("t", None, None, &all(16)).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = Arc::clone(&p);
                std::thread::spawn(move || (0..1000).all(|_| p.partition("t", None, None, &all(16)) == Some(first)))
            })
            .collect();
        for handle in handles {
            assert!(handle.join().unwrap());
        }
    }

    /// Keys `one` to partition 1, `far` to 99, `minus` to -1; no opinion otherwise.
    struct Routes;

    impl Partitioner for Routes {
        fn partition(&self, _: &str, key: Option<&[u8]>, _: Option<&[u8]>, _: &PartitionInfo<'_>) -> Option<i32> {
            match key {
                Some(b"one") => Some(1),
                Some(b"far") => Some(99),
                Some(b"minus") => Some(-1),
                _ => None,
            }
        }
    }

    #[test]
    fn placement_falls_back_to_the_default_and_rejects_out_of_range() {
        let placement = Placement::new(Arc::new(Routes));
        let info = all(12);
        assert_eq!(placement.place("t", Some(b"one"), None, &info).unwrap(), 1);
        for letter in b'a'..=b'z' {
            let want = java_default_partition(&[letter], 12);
            assert_eq!(placement.place("t", Some(&[letter]), None, &info).unwrap(), want);
        }
        for key in [&b"far"[..], b"minus"] {
            let e = placement.place("t", Some(key), None, &info).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidPartition, "{e}");
        }
        // Unkeyed records the strategy leaves alone stick, and move on when the batch completes.
        let first = placement.place("t", None, None, &info).unwrap();
        assert_eq!(placement.place("t", None, None, &info).unwrap(), first);
        placement.on_new_batch("t", first);
        assert_ne!(placement.place("t", None, None, &info).unwrap(), first);
        assert_eq!(placement.place("t", None, None, &all(0)).unwrap_err().kind(), ErrorKind::InvalidPartition);
    }

    #[test]
    fn kinds_by_name() {
        for (name, kind) in [
            ("default", PartitionerKind::Default),
            ("murmur2_random", PartitionerKind::Default),
            ("uniform_sticky", PartitionerKind::UniformSticky),
            (" Round_Robin ", PartitionerKind::RoundRobin),
        ] {
            assert_eq!(name.parse::<PartitionerKind>(), Ok(kind));
        }
        for name in PartitionerKind::NAMES {
            assert!(name.parse::<PartitionerKind>().is_ok());
        }
        assert_eq!(PartitionerKind::default().to_string(), "default");
        let err = "murmur2".parse::<PartitionerKind>().unwrap_err();
        assert!(err.to_string().contains("`murmur2`"));

        let keyed = PartitionerKind::Default.build();
        assert_eq!(keyed.partition("t", Some(b"a"), None, &all(12)), Some(4));
        let rr = PartitionerKind::RoundRobin.build();
        assert_eq!(rr.partition("t", Some(b"a"), None, &all(12)), Some(0));
        let sticky = PartitionerKind::UniformSticky.build();
        let p = sticky.partition("t", Some(b"a"), None, &all(12));
        assert_eq!(sticky.partition("t", Some(b"b"), None, &all(12)), p);
    }
}
