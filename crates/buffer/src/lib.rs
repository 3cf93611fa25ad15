//! krab's send buffer: the record accumulator a producer's flush loop owns.
//!
//! - [`Accumulator`]: per-partition queues of record batches being filled (batch size, linger),
//!   per-partition state (ready / in flight / stalled until a newer metadata snapshot), draining
//!   ready batches grouped by leader broker within `max.request.size` and the per-partition
//!   in-flight limit, requeueing failed batches at their place so retries never reorder, and
//!   expiring records past their delivery timeout.
//! - [`MemoryPool`]: the byte bound on everything buffered (`buffer.memory`), with async
//!   backpressure: a sender waits for room, or gets "full" back at once.
//!
//! No I/O and no clock reads: callers pass the time in, so behaviour is deterministic and tests
//! need no runtime tricks.
#![forbid(unsafe_code)]

mod accumulator;
mod memory;

pub use accumulator::{
    Accumulator, AccumulatorConfig, FailedBatch, PartitionState, Payload, PendingBatch, PendingRecord, ProducerBatch,
    QueueId, RecordSlot, TopicPartition,
};
pub use memory::{MemoryPool, Reservation, ReserveError};
