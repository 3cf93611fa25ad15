//! The producer's metrics (names in [`krab_cluster::telemetry`]): handles registered once when
//! the producer starts and kept by the flush loop, updated per batch or per loop turn, never per
//! record.

use krab_cluster::telemetry as names;
use metrics::{Counter, Gauge, Histogram, Label};
use std::time::Duration;

/// The flush loop's handles.
pub(crate) struct ProducerMetrics {
    batch_bytes: Histogram,
    batch_records: Histogram,
    latency: Histogram,
    buffer: Gauge,
    stalled: Gauge,
    retries: Counter,
    bumps: Counter,
    /// The buffer memory last reported, so that an idle loop turn sets nothing.
    buffer_reported: Option<usize>,
}

pub(crate) fn client_labels(client_id: &str) -> Vec<Label> {
    vec![names::client_label(Some(client_id))]
}

impl ProducerMetrics {
    pub(crate) fn new(client_id: &str) -> Self {
        let labels = || client_labels(client_id);
        ProducerMetrics {
            batch_bytes: metrics::histogram!(names::PRODUCER_BATCH_BYTES, labels()),
            batch_records: metrics::histogram!(names::PRODUCER_BATCH_RECORDS, labels()),
            latency: metrics::histogram!(names::PRODUCER_LATENCY, labels()),
            buffer: metrics::gauge!(names::PRODUCER_BUFFER_BYTES, labels()),
            stalled: metrics::gauge!(names::PRODUCER_STALLED, labels()),
            retries: metrics::counter!(names::PRODUCER_RETRIES, labels()),
            bumps: metrics::counter!(names::PRODUCER_EPOCH_BUMPS, labels()),
            buffer_reported: None,
        }
    }

    /// A batch of `records` sent as `bytes` was acknowledged `latency` after its first record
    /// came in.
    pub(crate) fn acked_batch(&self, bytes: usize, records: usize, latency: Option<Duration>) {
        self.batch_bytes.record(bytes as f64);
        self.batch_records.record(records as f64);
        if let Some(latency) = latency {
            self.latency.record(latency.as_secs_f64());
        }
    }

    pub(crate) fn buffer_in_use(&mut self, bytes: usize) {
        if self.buffer_reported != Some(bytes) {
            self.buffer_reported = Some(bytes);
            self.buffer.set(bytes as f64);
        }
    }

    pub(crate) fn stalled(&self, partitions: usize) {
        self.stalled.set(partitions as f64);
    }

    pub(crate) fn retried(&self) {
        self.retries.increment(1);
    }

    pub(crate) fn epoch_bumped(&self) {
        self.bumps.increment(1);
    }
}
