//! Hermetic tests of the record accumulator: linger, batch size, stall, retries, in-flight and
//! request limits, expiry, idempotent sequence numbers, compression. Time is `t0` plus offsets.

mod common;

use bytes::Bytes;
use common::*;
use krab_buffer::{Accumulator, AccumulatorConfig, PartitionState, PendingRecord, Reservation, TopicPartition};
use krab_protocol::records::Compression;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[test]
fn linger_holds_an_open_batch_until_it_runs_out() {
    let t0 = Instant::now();
    let linger = ms(10);
    let mut recs = Records::new();
    let mut acc = Accumulator::new(config(1 << 20, linger));
    assert_eq!(acc.next_ready_at(t0, on_one), None, "nothing waiting");

    append(&mut acc, &mut recs, 0, [1], t0);
    // Joins the open batch; linger counts from the batch's creation, not the last record.
    append(&mut acc, &mut recs, 0, [2], t0 + ms(6));
    assert_eq!(acc.next_ready_at(t0 + ms(6), on_one), Some(t0 + linger));
    assert_eq!(acc.next_ready_at(t0, |_| None), None, "unknown leaders are not counted");
    assert!(drain(&mut acc, t0 + ms(9)).is_empty(), "drained before linger");
    assert_eq!(acc.buffered_records(), 2);

    let out = drain(&mut acc, t0 + linger);
    assert_eq!(out.len(), 1);
    let b = &out[0];
    assert_eq!(tokens(b), [1, 2]);
    assert_eq!((b.attempts, b.base_sequence, b.created_at), (0, -1, t0));
    let decoded = recs.check(b);
    assert_eq!((decoded.producer_id, decoded.producer_epoch), (-1, -1), "no idempotence: no producer");
    assert_eq!((acc.buffered_records(), acc.in_flight()), (0, 1));
    assert_eq!(acc.next_ready_at(t0 + linger, on_one), None);

    // An open batch reports its linger deadline; once sealed it is ready now.
    append(&mut acc, &mut recs, 0, [3], t0 + ms(20));
    assert_eq!(acc.next_ready_at(t0 + ms(21), on_one), Some(t0 + ms(30)));
    acc.seal_all();
    assert_eq!(acc.next_ready_at(t0 + ms(21), on_one), Some(t0 + ms(21)));
    let out = drain(&mut acc, t0 + ms(21));
    assert_eq!(out.iter().map(tokens).collect::<Vec<_>>(), [vec![3]]);

    // The earliest deadline over all partitions wins.
    append(&mut acc, &mut recs, 1, [4], t0 + ms(40));
    append(&mut acc, &mut recs, 2, [5], t0 + ms(35));
    assert_eq!(acc.next_ready_at(t0 + ms(41), on_one), Some(t0 + ms(45)));
    let out = drain_by_partition(&mut acc, t0 + ms(45));
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), [2], "only the lingered batch");
    assert_eq!(acc.next_ready_at(t0 + ms(45), on_one), Some(t0 + ms(50)));
}

#[test]
fn batch_size_seals_batches_and_payloads_hold_exactly_the_records() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let p = tp(0);

    // batch_size is exactly five records: the fifth seals the batch, which drains at once.
    let first: Vec<_> = (0..5).map(|t| recs.record(t, 100, t0)).collect();
    let five = recs.encoded_size(&[0, 1, 2, 3, 4]);
    let mut acc = Accumulator::new(config(five, LONG));
    for (i, r) in first.into_iter().enumerate() {
        acc.append(&p, r, t0).unwrap();
        let out = drain(&mut acc, t0);
        if i < 4 {
            assert!(out.is_empty(), "sealed after {} records", i + 1);
        } else {
            assert_eq!(out.len(), 1);
            assert_eq!(tokens(&out[0]), [0, 1, 2, 3, 4]);
            assert_eq!(bytes(&out[0]).len(), five, "uncompressed payload is exactly batch.size");
            recs.check(&out[0]);
        }
    }
    assert_eq!(acc.buffered_records(), 0);
    // The next record opens a new batch, which lingers.
    acc.append(&p, recs.record(5, 100, t0), t0).unwrap();
    assert!(drain(&mut acc, t0).is_empty());
    assert_eq!(acc.buffered_records(), 1);
    let out = drain(&mut acc, t0 + LONG);
    assert_eq!(out.iter().map(tokens).collect::<Vec<_>>(), [vec![5]]);

    // One byte more room: five records fit, the sixth would overflow, so it seals the five
    // and opens a new batch for itself.
    let next: Vec<_> = (10..16).map(|t| recs.record(t, 100, t0)).collect();
    let limit = recs.encoded_size(&[10, 11, 12, 13, 14]) + 1;
    let mut acc = Accumulator::new(config(limit, LONG));
    for r in next {
        acc.append(&p, r, t0).unwrap();
    }
    let out = drain(&mut acc, t0);
    assert_eq!(out.len(), 1);
    assert_eq!(tokens(&out[0]), [10, 11, 12, 13, 14]);
    assert!(bytes(&out[0]).len() <= limit);
    recs.check(&out[0]);
    assert_eq!(acc.buffered_records(), 1, "the sixth record waits in a new open batch");
    assert!(drain(&mut acc, t0).is_empty());

    // A record larger than batch.size seals the open batch and gets a batch of its own.
    acc.append(&p, recs.record(16, 3 * limit, t0), t0).unwrap();
    let a = drain(&mut acc, t0);
    let b = drain(&mut acc, t0);
    assert_eq!(a.iter().map(tokens).collect::<Vec<_>>(), [vec![15]]);
    assert_eq!(b.iter().map(tokens).collect::<Vec<_>>(), [vec![16]]);
    assert!(bytes(&b[0]).len() > limit);
    recs.check(&a[0]);
    recs.check(&b[0]);
    assert!(a[0].id < b[0].id);
    // ...and the record after it opens a new one.
    acc.append(&p, recs.record(17, 8, t0), t0).unwrap();
    assert!(drain(&mut acc, t0).is_empty());
    let c = drain(&mut acc, t0 + LONG);
    assert_eq!(c.iter().map(tokens).collect::<Vec<_>>(), [vec![17]]);
    recs.check(&c[0]);

    // Many records of varied shapes over several partitions: every payload decodes to exactly
    // the records appended, in order.
    let mut acc = Accumulator::new(config(700, LONG));
    let mut want: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    for t in 100..400u64 {
        let p = (t % 3) as i32;
        acc.append(&tp(p), recs.record(t, (t % 13) as usize * 11, t0), t0).unwrap();
        want.entry(p).or_default().push(t);
    }
    acc.seal_all();
    let mut got: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    while !acc.is_idle() {
        for b in drain(&mut acc, t0) {
            recs.check(&b);
            assert!(bytes(&b).len() <= 700 || b.records.len() == 1);
            got.entry(b.tp.partition).or_default().extend(tokens(&b));
            acc.complete(&b.tp);
        }
    }
    assert_eq!(got, want);
}

#[test]
fn stalled_partitions_keep_buffering_but_do_not_drain() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let mut acc = Accumulator::new(config(1 << 20, LONG));
    for p in 0..3 {
        append(&mut acc, &mut recs, p, [p as u64 * 10], t0);
    }
    acc.stall(&tp(1), 5);
    assert_eq!(acc.state(&tp(1)), PartitionState::Stalled { generation: 5 });
    assert_eq!(acc.state(&tp(0)), PartitionState::Ready);
    assert_eq!(acc.stalled(), [(tp(1), 5)]);
    acc.seal_all();
    let out = drain_by_partition(&mut acc, t0);
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), [0, 2], "only the stalled partition waits");

    // Still accepts records.
    append(&mut acc, &mut recs, 1, [11, 12], t0);
    append(&mut acc, &mut recs, 2, [21], t0);
    acc.seal_all();
    assert_eq!(acc.buffered_records(), 4);
    acc.stall(&tp(1), 3); // an older generation does not lower the bar
    assert_eq!(acc.state(&tp(1)), PartitionState::Stalled { generation: 5 });
    acc.stall(&tp(2), 7);
    assert_eq!(acc.next_ready_at(t0, on_one), None, "stalled partitions are not counted");
    assert!(drain(&mut acc, t0).is_empty());

    assert!(acc.unstall(5).is_empty(), "a snapshot of the same generation is not newer");
    assert_eq!(acc.unstall(6), [tp(1)]);
    assert_eq!(acc.state(&tp(1)), PartitionState::Ready);
    assert_eq!(acc.state(&tp(2)), PartitionState::Stalled { generation: 7 });
    let out = drain_by_partition(&mut acc, t0);
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(tokens(&out[&1]), [10]);
    let out = drain_by_partition(&mut acc, t0);
    assert_eq!(tokens(&out[&1]), [11, 12]);
    assert_eq!(acc.buffered_records(), 1);

    assert_eq!(acc.unstall(8), [tp(2)]);
    assert!(acc.stalled().is_empty());
    let out = drain_by_partition(&mut acc, t0);
    assert_eq!(tokens(&out[&2]), [21]);
}

#[test]
fn requeued_batches_go_out_again_in_their_original_order() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let mut acc = Accumulator::new(config(1 << 20, LONG));
    assert_eq!(acc.config().max_in_flight_per_partition, 5);
    acc.set_producer(77, 1);
    for toks in [vec![1, 2], vec![3], vec![4, 5, 6], vec![7]] {
        append(&mut acc, &mut recs, 0, toks, t0);
        acc.seal_all();
    }
    // The broker already holds this producer's state for the partition.
    acc.confirm(&tp(0));
    let mut sent = Vec::new();
    for _ in 0..3 {
        let mut out = drain_by_partition(&mut acc, t0);
        sent.push(out.remove(&0).unwrap());
    }
    assert_eq!(sent.iter().map(tokens).collect::<Vec<_>>(), [vec![1, 2], vec![3], vec![4, 5, 6]]);
    assert_eq!(sent.iter().map(|b| b.base_sequence).collect::<Vec<_>>(), [0, 2, 3]);
    let first: Vec<_> = sent.iter().map(|b| (b.id, bytes(b).clone(), b.base_sequence)).collect();
    assert!(first.windows(2).all(|w| w[0].0 < w[1].0));
    let [b1, b2, b3]: [_; 3] = sent.try_into().unwrap();

    // Batch 2 fails while 1 and 3 are out: nothing of the partition drains (not batch 2, and
    // not the new batch 4) until everything in flight has come back.
    acc.requeue(b2);
    assert_eq!((acc.in_flight(), acc.buffered_records()), (2, 2));
    assert!(drain(&mut acc, t0).is_empty());
    // Other partitions are unaffected.
    append(&mut acc, &mut recs, 1, [100], t0);
    acc.seal_all();
    let other = drain_by_partition(&mut acc, t0);
    assert_eq!(other.keys().copied().collect::<Vec<_>>(), [1]);
    acc.complete(&tp(1));
    acc.requeue(b3);
    assert!(drain(&mut acc, t0).is_empty());
    acc.requeue(b1);
    assert_eq!((acc.in_flight(), acc.buffered_records()), (0, 7));

    // One retry at a time, in the original order, with the very same bytes.
    for (i, (id, payload, seq)) in first.iter().enumerate() {
        let mut out = drain_by_partition(&mut acc, t0);
        let b = out.remove(&0).unwrap_or_else(|| panic!("retry {i} did not drain"));
        assert_eq!((b.id, b.attempts, b.base_sequence), (*id, 1, *seq));
        assert_eq!(bytes(&b), payload, "retried payload is byte-identical");
        recs.check(&b);
        if i < 2 {
            assert!(drain(&mut acc, t0).is_empty(), "next retry waits for this one");
            assert_eq!(acc.next_ready_at(t0, on_one), None);
        }
        acc.complete(&tp(0));
    }
    // Then the new batch, numbered after them.
    let mut out = drain_by_partition(&mut acc, t0);
    let b4 = out.remove(&0).unwrap();
    assert_eq!((tokens(&b4), b4.attempts, b4.base_sequence), (vec![7], 0, 6));
    recs.check(&b4);

    // A batch retried twice counts its attempts.
    acc.requeue(b4);
    let again = drain(&mut acc, t0).pop().unwrap();
    assert_eq!(again.attempts, 1);
    acc.requeue(again);
    let again = drain(&mut acc, t0).pop().unwrap();
    assert_eq!((again.attempts, again.base_sequence), (2, 6));
}

#[test]
fn in_flight_limit_per_partition() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let cfg = AccumulatorConfig { max_in_flight_per_partition: 2, ..config(1 << 20, LONG) };
    let mut acc = Accumulator::new(cfg);
    for t in 0..4 {
        append(&mut acc, &mut recs, 0, [t], t0);
        acc.seal_all();
    }
    append(&mut acc, &mut recs, 1, [10], t0);
    acc.seal_all();
    let keys = |m: &BTreeMap<i32, _>| m.keys().copied().collect::<Vec<_>>();
    let d1 = drain_by_partition(&mut acc, t0);
    assert_eq!(keys(&d1), [0, 1], "one batch per partition per drain");
    let d2 = drain_by_partition(&mut acc, t0);
    assert_eq!(keys(&d2), [0]);
    assert!(drain(&mut acc, t0).is_empty(), "two of partition 0 are out");
    assert_eq!(acc.next_ready_at(t0, on_one), None);
    assert_eq!(acc.in_flight(), 3);

    acc.complete(&tp(0));
    let d3 = drain_by_partition(&mut acc, t0);
    assert_eq!(tokens(&d3[&0]), [2]);
    assert!(drain(&mut acc, t0).is_empty());
    acc.complete(&tp(0));
    acc.complete(&tp(0));
    let d4 = drain_by_partition(&mut acc, t0);
    assert_eq!(tokens(&d4[&0]), [3]);
    assert!([&d1[&0], &d2[&0], &d3[&0], &d4[&0]].windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn drain_respects_max_request_size_per_broker() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let max = 700;
    let cfg = AccumulatorConfig { max_request_size: max, ..config(1 << 20, LONG) };
    let mut acc = Accumulator::new(cfg);
    for p in 0..8 {
        acc.append(&tp(p), recs.record(p as u64, 200, t0), t0).unwrap(); // about 290 bytes each
    }
    acc.append(&tp(8), recs.record(8, 2000, t0), t0).unwrap(); // alone exceeds the limit
    acc.seal_all();
    let mut drained = Vec::new();
    let mut grouped = false;
    for _ in 0..20 {
        let out = drain(&mut acc, t0);
        let total: usize = out.iter().map(|b| bytes(b).len()).sum();
        assert!(total <= max || out.len() == 1, "{} batches, {total} bytes in one request", out.len());
        grouped |= out.len() > 1;
        for b in out {
            assert!(!drained.contains(&b.tp.partition));
            drained.push(b.tp.partition);
            recs.check(&b);
            acc.complete(&b.tp);
        }
    }
    assert!(grouped, "small batches share a request");
    drained.sort();
    assert_eq!(drained, (0..9).collect::<Vec<_>>(), "the oversized batch goes out alone");
    assert!(acc.is_idle());
}

#[test]
fn drain_groups_by_leader_and_leaves_unknown_leaders_alone() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let mut acc = Accumulator::new(config(1 << 20, LONG));
    let leader = |tp: &TopicPartition| (tp.partition != 5).then_some(tp.partition % 3);
    for round in 0..2 {
        for p in 0..6 {
            append(&mut acc, &mut recs, p, [round * 10 + p as u64], t0);
        }
        acc.seal_all();
    }
    for round in 0..2u64 {
        let out = acc.drain(t0, leader);
        assert_eq!(out.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
        let mut parts = Vec::new();
        for (broker, list) in &out {
            for b in list {
                assert_eq!(leader(&b.tp), Some(*broker), "{} sent to broker {broker}", b.tp);
                assert_eq!(tokens(b), [round * 10 + b.tp.partition as u64]);
                parts.push(b.tp.partition);
            }
        }
        parts.sort();
        assert_eq!(parts, [0, 1, 2, 3, 4]);
    }
    assert!(acc.drain(t0, leader).is_empty());
    assert_eq!(acc.buffered_records(), 2, "partition 5 keeps its batches");
    assert_eq!(acc.next_ready_at(t0, leader), None);
    assert_eq!(acc.next_ready_at(t0, on_one), Some(t0));
    // Its leader becomes known: it drains, in order.
    let out = drain(&mut acc, t0);
    assert_eq!(out.iter().map(|b| (b.tp.partition, tokens(b))).collect::<Vec<_>>(), [(5, vec![5])]);
    let out = drain(&mut acc, t0);
    assert_eq!(out.iter().map(|b| (b.tp.partition, tokens(b))).collect::<Vec<_>>(), [(5, vec![15])]);
}

#[test]
fn expire_fails_old_buffered_records_but_not_in_flight_ones() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let cfg = AccumulatorConfig { delivery_timeout: ms(100), ..config(1 << 20, LONG) };
    let mut acc = Accumulator::new(cfg);
    let only_p0 = |tp: &TopicPartition| (tp.partition == 0).then_some(1);
    append(&mut acc, &mut recs, 0, [1], t0); // A: will be in flight
    append(&mut acc, &mut recs, 1, [4, 5], t0); // D: sealed, never sent
    acc.seal_all();
    append(&mut acc, &mut recs, 0, [2, 3], t0); // C: sent, then requeued
    acc.seal_all();
    append(&mut acc, &mut recs, 1, [6], t0 + ms(50)); // E: open, younger
    append(&mut acc, &mut recs, 2, [7], t0); // F: open
    let a = acc.drain(t0, only_p0).remove(&1).unwrap().remove(0);
    let c = acc.drain(t0, only_p0).remove(&1).unwrap().remove(0);
    assert_eq!((tokens(&a), tokens(&c)), (vec![1], vec![2, 3]));
    acc.requeue(c);
    assert_eq!((acc.buffered_records(), acc.in_flight()), (6, 1));

    assert!(acc.expire(t0 + ms(99)).is_empty());
    let mut gone = acc.expire(t0 + ms(100));
    gone.sort_by_key(|b| b.id);
    let summary: Vec<_> = gone.iter().map(|b| (b.tp.partition, failed_tokens(b), b.was_sent)).collect();
    assert_eq!(summary, [(1, vec![4, 5], false), (0, vec![2, 3], true), (2, vec![7], false)]);
    assert_eq!((acc.buffered_records(), acc.in_flight()), (1, 1), "E is left; A is still in flight");

    // The expired retry no longer holds partition 0 back.
    append(&mut acc, &mut recs, 0, [8], t0 + ms(100));
    acc.seal_all();
    let out = drain_by_partition(&mut acc, t0 + ms(100));
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(tokens(&out[&0]), [8]);
    assert_eq!(tokens(&out[&1]), [6]);
    assert_eq!((acc.buffered_records(), acc.in_flight()), (0, 3));
    assert!(acc.expire(t0 + ms(1000)).is_empty(), "in-flight batches never expire here");
    for b in [&a, &out[&0], &out[&1]] {
        acc.complete(&b.tp);
    }
    assert!(acc.is_idle());

    // An open batch expires by its oldest record.
    append(&mut acc, &mut recs, 3, [30], t0 + ms(200));
    append(&mut acc, &mut recs, 3, [31], t0 + ms(290));
    assert!(acc.expire(t0 + ms(299)).is_empty());
    let gone = acc.expire(t0 + ms(300));
    assert_eq!(gone.iter().map(|b| (failed_tokens(b), b.was_sent)).collect::<Vec<_>>(), [(vec![30, 31], false)]);
    assert_eq!(acc.buffered_records(), 0);
}

#[test]
fn idempotent_batches_are_numbered_per_partition_at_first_drain() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let cfg = AccumulatorConfig { delivery_timeout: ms(100), ..config(1 << 20, LONG) };
    let mut acc = Accumulator::new(cfg);
    // Appended before the producer id is known: numbered when drained.
    append(&mut acc, &mut recs, 2, [20, 21], t0); // expires before it is ever sent
    append(&mut acc, &mut recs, 0, [1, 2, 3], t0 + ms(60));
    append(&mut acc, &mut recs, 1, 10..15, t0 + ms(60));
    acc.seal_all();
    acc.set_producer(4242, 7);
    assert_eq!(acc.producer(), Some((4242, 7)));
    append(&mut acc, &mut recs, 0, [4, 5], t0 + ms(60));
    append(&mut acc, &mut recs, 1, [15], t0 + ms(60));
    append(&mut acc, &mut recs, 2, [22, 23, 24], t0 + ms(60));
    acc.seal_all();
    append(&mut acc, &mut recs, 0, 6..10, t0 + ms(60));
    acc.seal_all();
    let gone = acc.expire(t0 + ms(100));
    assert_eq!(gone.iter().map(|b| (failed_tokens(b), b.was_sent)).collect::<Vec<_>>(), [(vec![20, 21], false)]);

    let mut seqs: BTreeMap<i32, Vec<(i32, Vec<u64>)>> = BTreeMap::new();
    while !acc.is_idle() {
        for b in drain(&mut acc, t0 + ms(100)) {
            let d = recs.check(&b);
            assert_eq!((d.producer_id, d.producer_epoch, d.base_sequence), (4242, 7, b.base_sequence));
            seqs.entry(b.tp.partition).or_default().push((b.base_sequence, tokens(&b)));
            acc.complete(&b.tp);
        }
    }
    let want = BTreeMap::from([
        (0, vec![(0, vec![1, 2, 3]), (3, vec![4, 5]), (5, vec![6, 7, 8, 9])]),
        (1, vec![(0, vec![10, 11, 12, 13, 14]), (5, vec![15])]),
        (2, vec![(0, vec![22, 23, 24])]), // no gap for the expired, never-sent batch
    ]);
    assert_eq!(seqs, want);
}

#[test]
fn reset_sequences_restamps_queued_batches_from_zero() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let mut acc = Accumulator::new(config(1 << 20, LONG));
    acc.set_producer(9, 0);
    for toks in [vec![1, 2], vec![3, 4, 5], vec![6, 7], vec![8]] {
        append(&mut acc, &mut recs, 0, toks, t0);
        acc.seal_all();
    }
    let b0 = drain(&mut acc, t0).pop().unwrap();
    assert_eq!(b0.base_sequence, 0);
    acc.complete(&b0.tp);
    acc.confirm(&b0.tp);
    let b1 = drain(&mut acc, t0).pop().unwrap();
    let b2 = drain(&mut acc, t0).pop().unwrap();
    assert_eq!((b1.base_sequence, b2.base_sequence), (2, 5));
    let old = [bytes(&b1).clone(), bytes(&b2).clone()];
    acc.requeue(b2);
    acc.requeue(b1);
    acc.reset_sequences(9, 1).unwrap();
    assert_eq!(acc.producer(), Some((9, 1)));

    for (i, (want_tokens, want_seq, want_attempts)) in
        [(vec![3, 4, 5], 0, 1), (vec![6, 7], 3, 1), (vec![8], 5, 0)].into_iter().enumerate()
    {
        let b = drain(&mut acc, t0).pop().unwrap();
        assert_eq!((tokens(&b), b.base_sequence, b.attempts), (want_tokens, want_seq, want_attempts));
        let d = recs.check(&b); // decoding verifies the recomputed CRC
        assert_eq!((d.producer_id, d.producer_epoch), (9, 1));
        if i < 2 {
            assert_ne!(bytes(&b), &old[i]);
            assert_eq!(bytes(&b).len(), old[i].len());
        }
        acc.complete(&b.tp);
    }
    assert!(acc.is_idle());
}

#[test]
fn compressed_batches_decode_to_the_same_records() {
    for codec in [Compression::Gzip, Compression::Lz4, Compression::Snappy, Compression::Zstd] {
        let t0 = Instant::now();
        let mut recs = Records::new();
        let cfg = AccumulatorConfig { compression: codec, ..config(600, LONG) };
        let mut acc = Accumulator::new(cfg);
        acc.set_producer(5, 0);
        for t in 0..60u64 {
            acc.append(&tp((t % 2) as i32), recs.record(t, (t % 5) as usize * 40, t0), t0).unwrap();
        }
        acc.seal_all();
        // A compressed batch survives a retry and an epoch bump, whether it was encoded (sent)
        // or handed back before it was encoded.
        let mut out = acc.drain(t0, |tp| Some(tp.partition)).into_values().flatten();
        let (mut sent, unsent) = (out.next().unwrap(), out.next().unwrap());
        assert_eq!((sent.tp.partition, unsent.tp.partition), (0, 1));
        encode(&mut sent);
        assert_eq!(recs.check(&sent).compression, codec);
        assert!(matches!(unsent.payload, krab_buffer::Payload::Pending(_)));
        acc.requeue(sent);
        acc.requeue(unsent);
        acc.reset_sequences(5, 1).unwrap();
        let mut got: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
        let mut batches = 0;
        while !acc.is_idle() {
            for b in drain(&mut acc, t0) {
                let d = recs.check(&b);
                assert_eq!((d.compression, d.producer_epoch), (codec, 1));
                batches += 1;
                got.entry(b.tp.partition).or_default().extend(tokens(&b));
                acc.complete(&b.tp);
            }
        }
        assert!(batches > 4, "{codec:?}: {batches} batches");
        assert_eq!(got[&0], (0..60).step_by(2).collect::<Vec<_>>(), "{codec:?}");
        assert_eq!(got[&1], (1..60).step_by(2).collect::<Vec<_>>(), "{codec:?}");
    }
}

#[test]
fn a_record_that_cannot_be_encoded_is_handed_back_and_leaves_nothing_behind() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let mut acc = Accumulator::new(config(1 << 20, ms(10)));
    // Zeroed allocations are mapped lazily: this costs no real memory.
    let huge = Bytes::from(vec![0u8; i32::MAX as usize + 1]);
    let record = PendingRecord {
        key: Some(huge),
        value: None,
        headers: Vec::new(),
        timestamp: TS0,
        token: 99u64,
        reservation: Reservation::none(),
        enqueued_at: t0,
    };
    let (_, back) = acc.append(&tp(0), record, t0).unwrap_err();
    assert_eq!(back.token, 99);
    drop(back);
    assert_eq!(acc.buffered_records(), 0);
    assert_eq!(acc.next_ready_at(t0, on_one), None, "no empty batch lingers");
    assert_eq!(acc.oldest_batch_id(), None);

    // Batch ids stay unique.
    append(&mut acc, &mut recs, 1, [1], t0);
    append(&mut acc, &mut recs, 0, [2], t0);
    let ids: Vec<_> = acc.take_all().iter().map(|b| (b.id, failed_tokens(b))).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0].0 < ids[1].0, "{ids:?}");
    assert_eq!((&ids[0].1, &ids[1].1), (&vec![1], &vec![2]));
    assert_eq!(acc.next_batch_id(), ids[1].0 + 1);
}

#[test]
fn huge_linger_and_delivery_timeout_mean_never() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let cfg = AccumulatorConfig { delivery_timeout: Duration::MAX, ..config(1 << 20, Duration::MAX) };
    let mut acc = Accumulator::new(cfg);
    append(&mut acc, &mut recs, 0, [1], t0);
    assert!(drain(&mut acc, t0 + LONG).is_empty());
    assert_eq!(acc.next_ready_at(t0, on_one), None);
    assert!(acc.expire(t0 + LONG).is_empty());
    acc.seal_all();
    assert_eq!(acc.next_ready_at(t0, on_one), Some(t0));
    assert_eq!(drain(&mut acc, t0).iter().map(tokens).collect::<Vec<_>>(), [vec![1]]);
}

#[test]
fn take_all_returns_everything_buffered_in_batch_order() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let mut acc = Accumulator::new(config(1 << 20, LONG));
    append(&mut acc, &mut recs, 2, [1], t0);
    append(&mut acc, &mut recs, 0, [2], t0);
    acc.seal_all();
    append(&mut acc, &mut recs, 1, [3], t0);
    append(&mut acc, &mut recs, 2, [4], t0);
    append(&mut acc, &mut recs, 0, [5], t0);
    let sent = acc.drain(t0, |tp| (tp.partition == 0).then_some(1)).remove(&1).unwrap().remove(0);
    assert_eq!(tokens(&sent), [2]);
    acc.requeue(sent);
    assert_eq!(acc.oldest_batch_id(), Some(0));
    let all = acc.take_all();
    let got: Vec<_> = all.iter().map(|b| (b.tp.partition, failed_tokens(b), b.was_sent)).collect();
    assert_eq!(
        got,
        [(2, vec![1], false), (0, vec![2], true), (1, vec![3], false), (2, vec![4], false), (0, vec![5], false)]
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert!(acc.is_idle());
    assert_eq!(acc.oldest_batch_id(), None);
}

#[test]
fn compressed_batches_respect_max_request_size_too() {
    // Tiny batches do not compress: their payload outgrows the uncompressed size the drain
    // plans with. Every request still fits, whatever the limit.
    let t0 = Instant::now();
    for max in (250..700).step_by(3) {
        let mut recs = Records::new();
        let cfg = AccumulatorConfig { max_request_size: max, compression: Compression::Lz4, ..config(1 << 20, LONG) };
        let mut acc = Accumulator::new(cfg);
        acc.set_producer(1, 0);
        for p in 0..8 {
            append(&mut acc, &mut recs, p, [p as u64], t0);
        }
        acc.seal_all();
        let mut drained = 0;
        for _ in 0..32 {
            let out = drain(&mut acc, t0);
            let total: usize = out.iter().map(|b| bytes(b).len()).sum();
            assert!(total <= max || out.len() == 1, "max {max}: {} batches, {total} bytes", out.len());
            for b in out {
                assert_eq!(b.base_sequence, 0);
                recs.check(&b);
                acc.complete(&b.tp);
                drained += 1;
            }
        }
        assert_eq!(drained, 8);
        assert!(acc.is_idle());
    }
}

#[test]
fn compressed_batches_are_planned_at_their_worst_case_size_and_numbered_only_when_they_leave() {
    let t0 = Instant::now();
    let build = |recs: &mut Records, max_request_size: usize| {
        let cfg = AccumulatorConfig { max_request_size, compression: Compression::Lz4, ..config(1 << 20, LONG) };
        let mut acc = Accumulator::new(cfg);
        acc.set_producer(3, 0);
        append(&mut acc, recs, 1, [1], t0); // drained first: partition 1 was seen first
        append(&mut acc, recs, 0, [2], t0);
        acc.seal_all();
        append(&mut acc, recs, 0, [3], t0);
        acc.seal_all();
        acc
    };
    let mut recs = Records::new();
    let mut probe = build(&mut recs, 1 << 20);
    let planned: BTreeMap<i32, usize> =
        probe.drain(t0, on_one).remove(&1).unwrap().iter().map(|b| (b.tp.partition, b.payload.max_len())).collect();
    let estimate = recs.encoded_size(&[2]);
    assert!(planned[&0] > estimate, "planned above the uncompressed size: a one-record lz4 batch grows");

    // One byte short of room for both: partition 0's batch waits for the next request, and is
    // numbered only then, so no number is ever handed out to a batch that did not leave.
    let mut recs = Records::new();
    let mut acc = build(&mut recs, planned[&1] + planned[&0] - 1);
    let out = drain(&mut acc, t0);
    assert_eq!(out.iter().map(|b| b.tp.partition).collect::<Vec<_>>(), [1]);
    assert_eq!(acc.buffered_records(), 2);
    let mut seqs = Vec::new();
    while !acc.is_idle() {
        for b in drain(&mut acc, t0) {
            recs.check(&b);
            assert_eq!(b.attempts, 0);
            seqs.push((b.tp.partition, tokens(&b), b.base_sequence));
            acc.complete(&b.tp);
        }
        acc.complete(&tp(1));
    }
    assert_eq!(seqs, [(0, vec![2], 0), (0, vec![3], 1)]);

    // Exactly room for both: they share the request.
    let mut recs = Records::new();
    let mut acc = build(&mut recs, planned[&1] + planned[&0]);
    assert_eq!(drain(&mut acc, t0).iter().map(|b| b.tp.partition).collect::<Vec<_>>(), [1, 0]);
}

/// An idempotent partition sends one batch at a time until the broker has acknowledged one
/// (Kafka takes any first sequence from a producer it holds no state for, so a second batch must
/// not be able to overtake the first); then up to `max_in_flight_per_partition`. A new producer
/// id starts over; a new epoch of the same id does not.
#[test]
fn an_unconfirmed_idempotent_partition_has_one_batch_in_flight() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let mut acc = Accumulator::new(config(1 << 20, LONG));
    acc.set_producer(5, 0);
    for toks in [vec![1], vec![2], vec![3], vec![4]] {
        append(&mut acc, &mut recs, 0, toks, t0);
        acc.seal_all();
    }
    let first = drain(&mut acc, t0);
    assert_eq!(first.len(), 1);
    assert!(drain(&mut acc, t0).is_empty(), "a second batch before the first is acknowledged");
    acc.complete(&tp(0));
    acc.confirm(&tp(0));
    assert_eq!(drain(&mut acc, t0).len(), 1);
    assert_eq!(drain(&mut acc, t0).len(), 1, "pipelined once confirmed");
    acc.complete(&tp(0));
    acc.complete(&tp(0));
    acc.reset_sequences(5, 1).unwrap();
    assert_eq!(drain(&mut acc, t0).len(), 1, "a new epoch of the same id keeps the partition confirmed");
    acc.complete(&tp(0));
    for toks in [vec![5], vec![6]] {
        append(&mut acc, &mut recs, 0, toks, t0);
        acc.seal_all();
    }
    acc.reset_sequences(6, 0).unwrap();
    assert_eq!(drain(&mut acc, t0).len(), 1);
    assert!(drain(&mut acc, t0).is_empty(), "a new producer id has no state on the broker yet");
}

/// One partition moves to a new epoch on its own: its queued batches are numbered again from 0,
/// while another partition's queued retry keeps its stamp and sequence; partitions seen first
/// later start with the producer's stamp.
#[test]
fn restamp_partition_moves_one_partition_only() {
    let t0 = Instant::now();
    let mut recs = Records::new();
    let mut acc = Accumulator::new(config(1 << 20, LONG));
    acc.set_producer(9, 0);
    for p in [0, 1] {
        append(&mut acc, &mut recs, p, [p as u64 * 10 + 1], t0);
    }
    acc.seal_all();
    let first = drain(&mut acc, t0);
    assert_eq!(first.len(), 2);
    for b in first {
        assert_eq!(b.base_sequence, 0);
        acc.requeue(b);
    }
    let (a, b) = (tp(0), tp(1));
    assert_eq!(acc.in_flight_of(&a), 0);
    // Partition 0's batch is known unwritten; partition 1's may have been written.
    acc.restamp_partition(&a, (9, 1)).unwrap();
    assert_eq!((acc.stamp(&a), acc.stamp(&b)), (Some((9, 1)), Some((9, 0))));
    let again = drain(&mut acc, t0);
    let mut stamps: Vec<(i32, i64, i16, i32)> = again
        .iter()
        .map(|x| {
            let d = recs.check(x);
            (x.tp.partition, d.producer_id, d.producer_epoch, x.base_sequence)
        })
        .collect();
    stamps.sort();
    assert_eq!(stamps, vec![(0, 9, 1, 0), (1, 9, 0, 0)]);
    assert_eq!(acc.stamp(&TopicPartition::new("u", 0)), Some((9, 0)), "a new partition starts at the producer's stamp");
}
