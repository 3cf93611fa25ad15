//! The byte bound on buffered records (`buffer.memory`), with async backpressure.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// A pool of bytes shared by every record waiting in the buffer. Sending a record reserves its
/// size; the reservation travels with the record and is released when the record is delivered
/// or failed, so the bound always covers exactly the records the producer still holds.
#[derive(Debug, Clone)]
pub struct MemoryPool {
    sem: Arc<Semaphore>,
    total: usize,
}

/// Room for one record in the [`MemoryPool`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Reservation {
    /// A reservation that holds nothing (for records accounted elsewhere, and tests).
    pub fn none() -> Self {
        Self { _permit: None, bytes: 0 }
    }

    /// The bytes reserved.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `other` into this reservation: one reservation for both, released at once. A batch
    /// holds its records' reservations merged, so that the pool is touched once per batch on
    /// release instead of once per record. Both must come from the same pool (or be
    /// [`Reservation::none`]).
    pub fn merge(&mut self, other: Reservation) {
        self.bytes += other.bytes;
        match (&mut self._permit, other._permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

/// Why a reservation was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReserveError {
    /// The record alone is larger than the whole pool: it can never fit.
    #[error("a record of {size} bytes exceeds buffer.memory ({total} bytes)")]
    TooLarge {
        /// The record's size.
        size: usize,
        /// The pool's size.
        total: usize,
    },
    /// The pool is full right now (only from [`MemoryPool::try_reserve`]).
    #[error("the send buffer is full")]
    Full,
    /// The pool was closed (the producer shut down).
    #[error("the producer is closed")]
    Closed,
}

impl MemoryPool {
    /// A pool of `total` bytes (at most `u32::MAX`; larger values are capped).
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, u32::MAX as usize);
        Self { sem: Arc::new(Semaphore::new(total)), total }
    }

    /// The pool's size.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes free right now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    /// Reserves `bytes`, waiting for room.
    pub async fn reserve(&self, bytes: usize) -> Result<Reservation, ReserveError> {
        let n = self.permits(bytes)?;
        // The common case, room now, without building the waiting future. It cannot jump the
        // queue: while anyone waits, released permits go to the waiters, never back to the pool.
        let permit = match self.sem.clone().try_acquire_many_owned(n) {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(ReserveError::Closed),
            Err(TryAcquireError::NoPermits) => {
                self.sem.clone().acquire_many_owned(n).await.map_err(|_| ReserveError::Closed)?
            }
        };
        Ok(Reservation { _permit: Some(permit), bytes })
    }

    /// Reserves `bytes` if there is room now.
    pub fn try_reserve(&self, bytes: usize) -> Result<Reservation, ReserveError> {
        let n = self.permits(bytes)?;
        match self.sem.clone().try_acquire_many_owned(n) {
            Ok(permit) => Ok(Reservation { _permit: Some(permit), bytes }),
            Err(TryAcquireError::NoPermits) => Err(ReserveError::Full),
            Err(TryAcquireError::Closed) => Err(ReserveError::Closed),
        }
    }

    /// Fails every waiting and future reservation with [`ReserveError::Closed`].
    pub fn close(&self) {
        self.sem.close();
    }

    fn permits(&self, bytes: usize) -> Result<u32, ReserveError> {
        if bytes > self.total {
            return Err(ReserveError::TooLarge { size: bytes, total: self.total });
        }
        // A zero-byte reservation still takes one unit so that it waits its turn.
        Ok(bytes.max(1) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reserve_waits_for_room_and_release_frees_it() {
        let pool = MemoryPool::new(100);
        let a = pool.reserve(60).await.unwrap();
        assert_eq!(pool.available(), 40);
        assert_eq!(pool.try_reserve(50).unwrap_err(), ReserveError::Full);
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.reserve(50).await.map(|r| r.bytes()) })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits while the buffer is full");
        drop(a);
        assert_eq!(waiter.await.unwrap().unwrap(), 50);
        assert_eq!(pool.available(), 100);
    }

    #[tokio::test]
    async fn merged_reservations_release_together() {
        let pool = MemoryPool::new(100);
        let mut batch = Reservation::none();
        for _ in 0..3 {
            batch.merge(pool.reserve(20).await.unwrap());
        }
        batch.merge(Reservation::none());
        assert_eq!((batch.bytes(), pool.available()), (60, 40));
        drop(batch);
        assert_eq!(pool.available(), 100);
    }

    #[tokio::test]
    async fn oversized_and_closed_are_typed() {
        let pool = MemoryPool::new(10);
        assert_eq!(pool.try_reserve(11).unwrap_err(), ReserveError::TooLarge { size: 11, total: 10 });
        assert!(matches!(pool.reserve(11).await, Err(ReserveError::TooLarge { .. })));
        pool.close();
        assert!(matches!(pool.reserve(1).await, Err(ReserveError::Closed)));
    }
}
