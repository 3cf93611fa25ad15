//! What users send and what they get back.

use crate::error::{Error, ErrorKind};
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The topic. An `Arc<str>` so that producing many records to one topic costs no allocation
    /// per record: keep one and clone it.
    pub topic: Arc<str>,
    /// An explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// The key (`None`: null).
    pub key: Option<Bytes>,
    /// The value (`None`: null, a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// The timestamp in ms since the epoch; `None`: the time of sending (read by the producer as it
    /// takes the record in, within a fraction of a millisecond of the `send` call).
    pub timestamp: Option<i64>,
}

impl Default for Record {
    fn default() -> Self {
        Self { topic: Arc::from(""), partition: None, key: None, value: None, headers: Vec::new(), timestamp: None }
    }
}

impl Record {
    /// A record for `topic` with the given value.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
        Self { topic: topic.into(), value: Some(value.into()), ..Default::default() }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets an explicit partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    /// Sets the timestamp (ms since the epoch).
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    /// Bytes the record takes in the buffer (what `buffer.memory` counts).
    pub fn size(&self) -> usize {
        const OVERHEAD: usize = 24;
        OVERHEAD
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 8).sum::<usize>()
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset (-1 with acks=0, where the broker says nothing).
    pub offset: i64,
    /// The record's timestamp: the create time sent, or the broker's log-append time.
    pub timestamp: i64,
}

type Outcome = Result<RecordMetadata, Error>;

// A delivery slot's states.
const PENDING: u8 = 0;
/// The outcome is in the slot.
const DONE: u8 = 1;
/// The DeliveryFuture was dropped: nobody wants the outcome.
const GONE: u8 = 2;
/// The sender was dropped without an outcome (the producer stopped).
const CLOSED: u8 = 3;

/// Records whose outcomes share one allocation.
const GROUP: usize = 64;

/// One record's outcome, handed from the flush loop to its [`DeliveryFuture`].
struct Slot {
    /// Read without the lock, so that the flush loop skips records nobody awaits.
    state: AtomicU8,
    inner: Mutex<SlotInner>,
}

#[derive(Default)]
struct SlotInner {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

/// The delivery slots of [`GROUP`] records sent one after another: one allocation per group
/// instead of a channel per record.
struct Group {
    slots: Vec<Slot>,
}

impl Group {
    fn slot(&self, index: u32) -> &Slot {
        &self.slots[index as usize]
    }
}

/// Hands out delivery slots, a group at a time. Used under the lock of the producer's queue,
/// which serializes every handle's sends anyway.
#[derive(Default)]
pub(crate) struct Slots {
    group: Option<Arc<Group>>,
    next: u32,
}

impl Slots {
    /// A fresh slot: the flush loop's end and the user's end.
    pub(crate) fn take(&mut self) -> (DeliverySender, DeliveryFuture) {
        let group = match &self.group {
            Some(g) if (self.next as usize) < GROUP => g.clone(),
            _ => {
                let slots = (0..GROUP).map(|_| Slot { state: AtomicU8::new(PENDING), inner: Mutex::default() });
                let g = Arc::new(Group { slots: slots.collect() });
                self.group = Some(g.clone());
                self.next = 0;
                g
            }
        };
        let index = self.next;
        self.next += 1;
        (DeliverySender { group: group.clone(), index, done: false }, DeliveryFuture { group, index })
    }
}

fn lock(slot: &Slot) -> MutexGuard<'_, SlotInner> {
    slot.inner.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The flush loop's end of a record's delivery slot. Dropped without [`send`](Self::send), the
/// record's future resolves to [`ErrorKind::Closed`].
pub(crate) struct DeliverySender {
    group: Arc<Group>,
    index: u32,
    done: bool,
}

impl DeliverySender {
    /// Whether the record's [`DeliveryFuture`] was dropped (nobody wants the outcome).
    pub(crate) fn is_closed(&self) -> bool {
        self.group.slot(self.index).state.load(Ordering::Acquire) == GONE
    }

    /// Delivers the outcome (dropped if nobody awaits it).
    pub(crate) fn send(mut self, outcome: Outcome) {
        self.finish(Some(outcome));
    }

    fn finish(&mut self, outcome: Option<Outcome>) {
        self.done = true;
        let slot = self.group.slot(self.index);
        if slot.state.load(Ordering::Acquire) == GONE {
            return;
        }
        let waker = {
            let mut inner = lock(slot);
            let state = match outcome {
                Some(o) => {
                    inner.outcome = Some(o);
                    DONE
                }
                None => CLOSED,
            };
            slot.state.store(state, Ordering::Release);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for DeliverySender {
    fn drop(&mut self) {
        if !self.done {
            self.finish(None);
        }
    }
}

impl std::fmt::Debug for DeliverySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverySender").field("index", &self.index).finish_non_exhaustive()
    }
}

/// Resolves when the record is acknowledged (or fails). Dropping it does not cancel the send.
#[must_use = "the delivery result is only known by awaiting this future"]
pub struct DeliveryFuture {
    group: Arc<Group>,
    index: u32,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.group.slot(self.index).state.load(Ordering::Acquire);
        f.debug_struct("DeliveryFuture").field("done", &(state == DONE || state == CLOSED)).finish()
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = self.group.slot(self.index);
        let mut inner = lock(slot);
        match slot.state.load(Ordering::Acquire) {
            DONE => Poll::Ready(inner.outcome.take().unwrap_or_else(|| Err(stopped()))),
            CLOSED => Poll::Ready(Err(stopped())),
            _ => {
                match &mut inner.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for DeliveryFuture {
    fn drop(&mut self) {
        let slot = self.group.slot(self.index);
        if slot.state.compare_exchange(PENDING, GONE, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // Already resolved: free the outcome now rather than with the group.
            lock(slot).outcome = None;
        }
    }
}

fn stopped() -> Error {
    Error::new(ErrorKind::Closed, "the producer stopped before the record was delivered")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn poll(f: &mut DeliveryFuture, flag: &Arc<Flag>) -> Poll<Outcome> {
        let waker = Waker::from(flag.clone());
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    fn metadata(offset: i64) -> RecordMetadata {
        RecordMetadata { topic: Arc::from("t"), partition: 0, offset, timestamp: 7 }
    }

    #[test]
    fn outcomes_reach_their_own_futures_and_wake_them() {
        let mut slots = Slots::default();
        let pairs: Vec<_> = (0..GROUP * 2 + 3).map(|_| slots.take()).collect();
        let flag = Arc::new(Flag(Default::default()));
        let mut futures = Vec::new();
        for (i, (tx, mut fut)) in pairs.into_iter().enumerate() {
            assert!(poll(&mut fut, &flag).is_pending());
            assert!(!tx.is_closed());
            tx.send(Ok(metadata(i as i64)));
            futures.push(fut);
        }
        assert!(flag.0.load(Ordering::SeqCst), "a pending future was woken");
        for (i, mut fut) in futures.into_iter().enumerate() {
            match poll(&mut fut, &flag) {
                Poll::Ready(Ok(m)) => assert_eq!(m.offset, i as i64),
                other => panic!("record {i}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_dropped_sender_fails_its_future_and_a_dropped_future_is_seen() {
        let mut slots = Slots::default();
        let (tx, mut fut) = slots.take();
        let flag = Arc::new(Flag(Default::default()));
        assert!(poll(&mut fut, &flag).is_pending());
        drop(tx);
        assert!(flag.0.load(Ordering::SeqCst));
        match poll(&mut fut, &flag) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), ErrorKind::Closed),
            other => panic!("{other:?}"),
        }
        let (tx, fut) = slots.take();
        drop(fut);
        assert!(tx.is_closed());
        tx.send(Ok(metadata(1))); // nobody listens: dropped
        let (tx, fut) = slots.take();
        tx.send(Err(Error::new(ErrorKind::DeliveryTimeout, "late")));
        let out = futures_util::FutureExt::now_or_never(fut).expect("ready");
        assert_eq!(out.unwrap_err().kind(), ErrorKind::DeliveryTimeout);
    }
}
