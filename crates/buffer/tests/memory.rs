//! The memory bound: records hold their reservations from send until their batch is done with,
//! and senders wait (or get `Full`) while the pool is used up.

mod common;

use common::*;
use krab_buffer::{Accumulator, MemoryPool, ReserveError};
use std::time::{Duration, Instant};
use tokio::time::timeout;

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn reservations_travel_with_records_and_backpressure_waits_for_them() {
    let t0 = Instant::now();
    let pool = MemoryPool::new(1000);
    assert_eq!((pool.total(), pool.available()), (1000, 1000));
    let mut recs = Records::new();
    let mut acc = Accumulator::new(config(1 << 20, LONG));
    for t in 0..4 {
        let mut r = recs.record(t, 10, t0);
        r.reservation = pool.try_reserve(250).unwrap();
        assert_eq!(r.reservation.bytes(), 250);
        acc.append(&tp(0), r, t0).unwrap();
    }
    assert_eq!(pool.available(), 0);
    assert_eq!(pool.try_reserve(1).unwrap_err(), ReserveError::Full);
    assert_eq!(pool.try_reserve(0).unwrap_err(), ReserveError::Full, "zero bytes still wait their turn");

    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.reserve(300).await }
    });
    settle().await;
    assert!(!waiter.is_finished(), "waits while the pool is full");

    // Draining does not release memory: the records are still held, now by the batch.
    acc.seal_all();
    let batch = drain(&mut acc, t0).pop().unwrap();
    assert_eq!(tokens(&batch), [0, 1, 2, 3]);
    settle().await;
    assert!(!waiter.is_finished());
    acc.complete(&batch.tp);
    settle().await;
    assert!(!waiter.is_finished(), "complete frees the in-flight slot, not the records");

    // The batch's records are done with: their reservations go back to the pool.
    drop(batch);
    let got = timeout(Duration::from_secs(5), waiter).await.expect("waiter woke").unwrap().unwrap();
    assert_eq!(got.bytes(), 300);
    assert_eq!(pool.available(), 700);

    // Larger than the whole pool: refused at once, even by the waiting call.
    let too_large = ReserveError::TooLarge { size: 1001, total: 1000 };
    assert_eq!(pool.try_reserve(1001).unwrap_err(), too_large);
    let r = timeout(Duration::from_secs(5), pool.reserve(1001)).await.expect("returned at once");
    assert_eq!(r.unwrap_err(), too_large);
    assert_eq!(pool.available(), 700);

    // Expired records release their memory too.
    let mut r = recs.record(10, 10, t0);
    r.reservation = pool.try_reserve(700).unwrap();
    acc.append(&tp(1), r, t0).unwrap();
    assert_eq!(pool.available(), 0);
    let timeout_at = t0 + acc.config().delivery_timeout;
    let gone = acc.expire(timeout_at);
    assert_eq!(gone.iter().map(failed_tokens).collect::<Vec<_>>(), [vec![10]]);
    assert_eq!(pool.available(), 0, "the failed records still hold their memory");
    drop(gone);
    assert_eq!(pool.available(), 700);

    // Close: a waiting sender and every later one get Closed.
    let _hold = pool.try_reserve(700).unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.reserve(10).await }
    });
    settle().await;
    assert!(!waiter.is_finished());
    pool.close();
    let r = timeout(Duration::from_secs(5), waiter).await.expect("woken by close").unwrap();
    assert_eq!(r.unwrap_err(), ReserveError::Closed);
    assert_eq!(pool.reserve(1).await.unwrap_err(), ReserveError::Closed);
    drop(got);
    assert_eq!(pool.try_reserve(1).unwrap_err(), ReserveError::Closed);
}
