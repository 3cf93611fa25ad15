//! The commands producer handles send the flush loop through the inbox.

use crate::record::{DeliverySender, Record};
use bytes::Bytes;
use krab_buffer::Reservation;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

pub(crate) enum Command {
    Send(Envelope),
    Flush(oneshot::Sender<()>),
    /// `done` learns how many records were abandoned (failed with `Closed`) at the deadline.
    Close {
        deadline: Instant,
        done: oneshot::Sender<usize>,
    },
}

/// A record on its way from a producer handle to the flush loop. It carries no clock reading:
/// the flush loop stamps records when it takes them in (see [`Clock`]), so that `send` reads no
/// clock per record.
pub(crate) struct Envelope {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<(String, Option<Bytes>)>,
    /// As the user gave it; `None`: the time the flush loop takes the record in.
    pub(crate) timestamp: Option<i64>,
    pub(crate) reply: DeliverySender,
    pub(crate) reservation: Reservation,
}

impl Envelope {
    pub(crate) fn new(record: Record, reservation: Reservation, reply: DeliverySender) -> Self {
        Envelope {
            topic: record.topic,
            partition: record.partition,
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp,
            reply,
            reservation,
        }
    }
}
