//! krab's consumer: one fetch task per broker, a bounded prefetch buffer, and records delivered
//! through a cancel-safe `Stream`.
#![forbid(unsafe_code)]

// The record path is used by the fetch task.
mod config;
#[allow(dead_code)]
mod error;
#[allow(dead_code)]
mod records;
#[allow(dead_code)]
mod session;

pub use config::{AutoOffsetReset, ConfigError, ConsumerConfig};
pub use error::{Error, ErrorKind};
pub use krab_buffer::TopicPartition;
pub use records::IsolationLevel;
