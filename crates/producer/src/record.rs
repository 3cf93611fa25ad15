//! What users send and what they get back.

use crate::error::{Error, ErrorKind};
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

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
    /// The timestamp in ms since the epoch; `None`: the time of sending.
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

pub(crate) type DeliverySender = oneshot::Sender<Result<RecordMetadata, Error>>;

/// Resolves when the record is acknowledged (or fails). Dropping it does not cancel the send.
#[derive(Debug)]
#[must_use = "the delivery result is only known by awaiting this future"]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata, Error>>,
}

impl DeliveryFuture {
    pub(crate) fn new() -> (DeliverySender, DeliveryFuture) {
        let (tx, rx) = oneshot::channel();
        (tx, DeliveryFuture { rx })
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| match r {
            Ok(r) => r,
            Err(_) => Err(Error::new(ErrorKind::Closed, "the producer stopped before the record was delivered")),
        })
    }
}
