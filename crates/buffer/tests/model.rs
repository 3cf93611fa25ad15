//! Model-based property test: random interleavings of every accumulator operation, checked
//! against a model of where each record (token) must be. Retries are modelled as Kafka does with
//! idempotence: a failed batch fails every later batch of its partition that is in flight, so all
//! of them are requeued (in a scrambled order) and must go out again in their original order.

mod common;

use bytes::Bytes;
use common::*;
use krab_buffer::{Accumulator, AccumulatorConfig, PartitionState, ProducerBatch, TopicPartition};
use krab_protocol::records::Compression;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const PARTS: usize = 3;

#[derive(Debug, Clone)]
struct Setup {
    batch_size: usize,
    linger_ms: u64,
    max_request_size: usize,
    max_in_flight: usize,
    idempotent: bool,
    compression: Compression,
    flush_at_end: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        p: usize,
        pad: usize,
        dt: u64,
    },
    /// `known`: bitmask of partitions whose leader (broker `p % 2`) is known.
    Drain {
        dt: u64,
        known: u8,
    },
    /// The oldest in-flight batch of `p` is acknowledged.
    Complete {
        p: usize,
    },
    /// Every in-flight batch of `p` fails and is requeued, in an order scrambled by `scramble`.
    Fail {
        p: usize,
        scramble: u64,
    },
    Stall {
        p: usize,
        generation: u64,
    },
    Unstall {
        generation: u64,
    },
    Expire {
        dt: u64,
    },
    SealAll,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        100..800usize,
        0..20u64,
        150..1500usize,
        1..=5usize,
        any::<bool>(),
        prop_oneof![3 => Just(Compression::None), 1 => Just(Compression::Lz4)],
        any::<bool>(),
    )
        .prop_map(
            |(batch_size, linger_ms, max_request_size, max_in_flight, idempotent, compression, flush_at_end)| Setup {
                batch_size,
                linger_ms,
                max_request_size,
                max_in_flight,
                idempotent,
                compression,
                flush_at_end,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..PARTS, 0..120usize, 0..8u64).prop_map(|(p, pad, dt)| Op::Append { p, pad, dt }),
        4 => (0..8u64, prop_oneof![3 => Just(0b111u8), 1 => 0..8u8]).prop_map(|(dt, known)| Op::Drain { dt, known }),
        3 => (0..PARTS).prop_map(|p| Op::Complete { p }),
        1 => (0..PARTS, any::<u64>()).prop_map(|(p, scramble)| Op::Fail { p, scramble }),
        1 => (0..PARTS, 0..6u64).prop_map(|(p, generation)| Op::Stall { p, generation }),
        1 => (0..8u64).prop_map(|generation| Op::Unstall { generation }),
        1 => (0..50u64).prop_map(|dt| Op::Expire { dt }),
        1 => Just(Op::SealAll),
    ]
}

struct Model {
    setup: Setup,
    acc: Accumulator<u64>,
    recs: Records,
    now: Instant,
    next_token: u64,
    appended: Vec<Vec<u64>>,
    completed: Vec<Vec<u64>>,
    last_completed: Vec<Option<u64>>,
    in_flight: Vec<Vec<ProducerBatch<u64>>>,
    /// Payload and base sequence of each batch's first send.
    first_send: HashMap<u64, (Bytes, i32)>,
    requeues: HashMap<u64, u32>,
    stalled: BTreeMap<usize, u64>,
}

impl Model {
    fn new(setup: Setup) -> Self {
        let config = AccumulatorConfig {
            batch_size: setup.batch_size,
            linger: ms(setup.linger_ms),
            max_request_size: setup.max_request_size,
            compression: setup.compression,
            max_in_flight_per_partition: setup.max_in_flight,
            delivery_timeout: Duration::from_secs(10 * 86_400),
            ..AccumulatorConfig::default()
        };
        let mut acc = Accumulator::new(config);
        if setup.idempotent {
            acc.set_producer(1234, 5);
        }
        Self {
            setup,
            acc,
            recs: Records::new(),
            now: Instant::now(),
            next_token: 0,
            appended: vec![Vec::new(); PARTS],
            completed: vec![Vec::new(); PARTS],
            last_completed: vec![None; PARTS],
            in_flight: (0..PARTS).map(|_| Vec::new()).collect(),
            first_send: HashMap::new(),
            requeues: HashMap::new(),
            stalled: BTreeMap::new(),
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append { p, pad, dt } => {
                self.now += ms(dt);
                let token = self.next_token;
                self.next_token += 1;
                let record = self.recs.record(token, pad, self.now);
                self.acc.append(&tp(p as i32), record, self.now).unwrap();
                self.appended[p].push(token);
            }
            Op::Drain { dt, known } => {
                self.now += ms(dt);
                self.drain(known);
            }
            Op::Complete { p } => {
                if !self.in_flight[p].is_empty() {
                    let b = self.in_flight[p].remove(0);
                    self.acc.complete(&b.tp);
                    self.last_completed[p] = Some(b.id);
                    self.completed[p].extend(tokens(&b));
                }
            }
            Op::Fail { p, scramble } => {
                let mut failed = std::mem::take(&mut self.in_flight[p]);
                failed.sort_by_key(|b| (b.id ^ scramble).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                for b in failed {
                    *self.requeues.entry(b.id).or_default() += 1;
                    self.acc.requeue(b);
                }
            }
            Op::Stall { p, generation } => {
                self.acc.stall(&tp(p as i32), generation);
                let g = self.stalled.entry(p).or_insert(generation);
                *g = (*g).max(generation);
            }
            Op::Unstall { generation } => {
                let mut resumed: Vec<usize> =
                    self.acc.unstall(generation).iter().map(|tp| tp.partition as usize).collect();
                resumed.sort_unstable();
                let want: Vec<usize> = self.stalled.iter().filter(|(_, g)| **g < generation).map(|(p, _)| *p).collect();
                assert_eq!(resumed, want, "unstall({generation})");
                self.stalled.retain(|_, g| *g >= generation);
            }
            Op::Expire { dt } => {
                self.now += ms(dt);
                assert!(self.acc.expire(self.now).is_empty(), "nothing is older than the delivery timeout");
            }
            Op::SealAll => self.acc.seal_all(),
        }
    }

    fn drain(&mut self, known: u8) {
        let leader = |tp: &TopicPartition| ((known >> tp.partition) & 1 == 1).then_some(tp.partition % 2);
        let before: Vec<usize> = self.in_flight.iter().map(Vec::len).collect();
        let out = self.acc.drain(self.now, leader);
        let mut seen = [false; PARTS];
        for (broker, list) in out {
            assert!(!list.is_empty());
            let total: usize = list.iter().map(|b| b.payload.max_len()).sum();
            assert!(
                total <= self.setup.max_request_size || list.len() == 1,
                "{} batches, {total} bytes for one broker",
                list.len()
            );
            for mut b in list {
                encode(&mut b);
                let p = b.tp.partition as usize;
                assert_eq!(leader(&b.tp), Some(broker), "grouped by leader");
                assert!(!self.stalled.contains_key(&p), "stalled partition {p} drained");
                assert!(!seen[p], "two batches of partition {p} in one drain");
                seen[p] = true;
                assert!(before[p] < self.setup.max_in_flight, "in-flight limit of partition {p}");
                if let Some(last) = self.in_flight[p].last() {
                    assert!(b.id > last.id, "batch {} overtakes in-flight batch {}", b.id, last.id);
                }
                if let Some(last) = self.last_completed[p] {
                    assert!(b.id > last, "batch {} after completed batch {last}", b.id);
                }
                let attempts = self.requeues.get(&b.id).copied().unwrap_or(0);
                assert_eq!(b.attempts, attempts);
                if attempts > 0 {
                    assert_eq!(before[p], 0, "a retry waits until nothing of its partition is in flight");
                }
                self.recs.check(&b);
                match self.first_send.get(&b.id) {
                    Some((payload, seq)) => {
                        assert_eq!(bytes(&b), payload, "retried bytes differ");
                        assert_eq!(b.base_sequence, *seq);
                    }
                    None => {
                        assert_eq!(attempts, 0);
                        let want = if self.setup.idempotent {
                            self.appended[p].iter().position(|&t| t == b.records[0].token).unwrap() as i32
                        } else {
                            -1
                        };
                        assert_eq!(b.base_sequence, want, "base sequence of batch {}", b.id);
                        self.first_send.insert(b.id, (bytes(&b).clone(), b.base_sequence));
                    }
                }
                self.in_flight[p].push(b);
            }
        }
    }

    /// Completed then in-flight records of `p`, in order.
    fn sent(&self, p: usize) -> Vec<u64> {
        self.completed[p].iter().copied().chain(self.in_flight[p].iter().flat_map(tokens)).collect()
    }

    fn check(&self) {
        let mut buffered = 0;
        for p in 0..PARTS {
            let sent = self.sent(p);
            assert!(
                self.appended[p].starts_with(&sent),
                "partition {p}: sent {sent:?}, appended {:?}",
                self.appended[p]
            );
            buffered += self.appended[p].len() - sent.len();
            let state = match self.stalled.get(&p) {
                Some(&generation) => PartitionState::Stalled { generation },
                None => PartitionState::Ready,
            };
            assert_eq!(self.acc.state(&tp(p as i32)), state);
        }
        assert_eq!(self.acc.buffered_records(), buffered);
        assert_eq!(self.acc.in_flight(), self.in_flight.iter().map(Vec::len).sum::<usize>());
    }

    fn finish(mut self) {
        if self.setup.flush_at_end {
            // Everything still goes out, exactly once and in order.
            self.acc.unstall(u64::MAX);
            self.stalled.clear();
            self.acc.seal_all();
            for _ in 0..10_000 {
                for p in 0..PARTS {
                    while !self.in_flight[p].is_empty() {
                        self.apply(Op::Complete { p });
                    }
                }
                if self.acc.is_idle() {
                    break;
                }
                self.drain(0b111);
                self.check();
            }
            assert!(self.acc.is_idle());
            assert_eq!(self.completed, self.appended);
        } else {
            let rest = self.acc.take_all();
            assert!(rest.windows(2).all(|w| w[0].id < w[1].id), "take_all in batch order");
            let mut rest_by_p = vec![Vec::new(); PARTS];
            for b in &rest {
                assert_eq!(b.was_sent, self.first_send.contains_key(&b.id), "was_sent of batch {}", b.id);
                rest_by_p[b.tp.partition as usize].extend(failed_tokens(b));
            }
            for (p, rest) in rest_by_p.into_iter().enumerate() {
                let mut all = self.sent(p);
                all.extend(rest);
                assert_eq!(all, self.appended[p], "partition {p}: each record exactly once, in order");
            }
            assert_eq!(self.acc.buffered_records(), 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn no_record_is_lost_duplicated_or_reordered(setup in setup(), ops in prop::collection::vec(op(), 1..150)) {
        let mut model = Model::new(setup);
        for op in ops {
            model.apply(op);
            model.check();
        }
        model.finish();
    }
}
