//! Test support: arbitrary values of every generated message, valid for a given version.
//!
//! Generated code implements [`Arbitrary`] for each struct, filling exactly the fields that exist
//! at the version (others keep their defaults) and drawing null only where that version allows it.
//! The values come from a seeded generator, so a proptest seed reproduces a failing case.

use crate::message::Message;
use crate::primitives::{RawTaggedField, Uuid};
use bytes::{Bytes, BytesMut};
use proptest::test_runner::{RngAlgorithm, TestCaseError, TestRng};
use rand::Rng;

/// A seeded source of protocol values, kept small so that nested arrays stay cheap.
pub(crate) struct Gen {
    rng: TestRng,
    depth: u32,
}

impl Gen {
    pub(crate) fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Self { rng: TestRng::from_seed(RngAlgorithm::ChaCha, &bytes), depth: 0 }
    }

    /// Interesting integers: edges more often than uniform draws would give them.
    fn int(&mut self, min: i64, max: i64) -> i64 {
        match self.rng.random_range(0..8) {
            0 => min,
            1 => max,
            2 => 0,
            3 => -1i64.clamp(min, max),
            _ => self.rng.random_range(min..=max),
        }
    }

    pub(crate) fn bool(&mut self) -> bool {
        self.rng.random()
    }
    pub(crate) fn i8(&mut self) -> i8 {
        self.int(i8::MIN.into(), i8::MAX.into()) as i8
    }
    pub(crate) fn i16(&mut self) -> i16 {
        self.int(i16::MIN.into(), i16::MAX.into()) as i16
    }
    #[allow(dead_code)] // only some specs have this type
    pub(crate) fn u16(&mut self) -> u16 {
        self.int(0, u16::MAX.into()) as u16
    }
    pub(crate) fn i32(&mut self) -> i32 {
        self.int(i32::MIN.into(), i32::MAX.into()) as i32
    }
    #[allow(dead_code)] // only some specs have this type
    pub(crate) fn u32(&mut self) -> u32 {
        self.int(0, u32::MAX.into()) as u32
    }
    pub(crate) fn i64(&mut self) -> i64 {
        self.int(i64::MIN, i64::MAX)
    }
    #[allow(dead_code)] // only some specs have this type
    pub(crate) fn f64(&mut self) -> f64 {
        // Finite values only: NaN never equals itself.
        self.rng.random_range(-1.0e9..1.0e9)
    }
    pub(crate) fn uuid(&mut self) -> Uuid {
        if self.rng.random_range(0..4) == 0 { Uuid::ZERO } else { Uuid(self.rng.random()) }
    }
    pub(crate) fn string(&mut self) -> String {
        const ALPHABET: &[&str] = &["a", "Z", "0", "-", "_", ".", " ", "é", "日", "🦀"];
        let n = self.rng.random_range(0..8);
        (0..n).map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())]).collect()
    }
    pub(crate) fn bytes(&mut self) -> Bytes {
        let n = self.rng.random_range(0..12);
        let mut b = BytesMut::with_capacity(n);
        for _ in 0..n {
            b.extend_from_slice(&[self.rng.random()]);
        }
        b.freeze()
    }
    pub(crate) fn nullable<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.rng.random_range(0..5) == 0 { None } else { Some(f(self)) }
    }
    pub(crate) fn vec<T>(&mut self, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let max = if self.depth > 2 { 1 } else { 4 };
        let n = self.rng.random_range(0..max);
        self.depth += 1;
        let v = (0..n).map(|_| f(self)).collect();
        self.depth -= 1;
        v
    }
    /// Unknown tagged fields with tags from `first_free` up, in increasing order.
    pub(crate) fn unknown_tagged_fields(&mut self, first_free: u32) -> Vec<RawTaggedField> {
        let mut tag = first_free;
        let n = self.rng.random_range(0..3);
        (0..n)
            .map(|_| {
                tag += self.rng.random_range(0..300);
                let f = RawTaggedField { tag, data: self.bytes() };
                tag += 1;
                f
            })
            .collect()
    }
}

/// Arbitrary values valid for a version.
pub(crate) trait Arbitrary: Sized {
    fn arbitrary(g: &mut Gen, version: i16) -> Self;
}

/// For every version of `T`: arbitrary value → encode → decode → equal, and `encoded_len` is exact.
pub(crate) fn check_round_trip<T>(seed: u64) -> Result<(), TestCaseError>
where
    T: Message + Arbitrary + PartialEq + std::fmt::Debug,
{
    for version in T::VERSIONS.min..=T::VERSIONS.max {
        let mut g = Gen::new(seed ^ (version as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let value = T::arbitrary(&mut g, version);
        let mut buf = BytesMut::new();
        value
            .encode(&mut buf, version)
            .map_err(|e| TestCaseError::fail(format!("{} v{version}: encode failed: {e}", T::NAME)))?;
        proptest::prop_assert_eq!(buf.len(), value.encoded_len(version), "{} v{}: encoded_len", T::NAME, version);
        let frame = buf.freeze();
        let decoded = T::decode(&frame, version)
            .map_err(|e| TestCaseError::fail(format!("{} v{version}: decode failed: {e}", T::NAME)))?;
        proptest::prop_assert_eq!(&decoded, &value, "{} v{}", T::NAME, version);
    }
    Ok(())
}
