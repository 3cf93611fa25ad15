//! Per-partition delivery counters, for metrics, the demo and tests. Updated by the flush loop
//! once per batch under a short lock that is never held across I/O.

use krab_buffer::TopicPartition;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counters of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Records acknowledged.
    pub acked: u64,
    /// Records failed.
    pub failed: u64,
    /// Times the partition stalled on a rebalancing error.
    pub stalls: u64,
    /// When the last acknowledgement arrived.
    pub last_ack: Option<Instant>,
    /// The longest time between two acknowledgements.
    pub longest_ack_gap: Duration,
}

#[derive(Debug)]
pub(crate) struct Stats {
    partitions: Mutex<BTreeMap<TopicPartition, PartitionStats>>,
    /// `krab_producer_records_acked_total` and `..._failed_total`, counted per batch here.
    acked_total: metrics::Counter,
    failed_total: metrics::Counter,
}

impl Stats {
    pub(crate) fn new(client_id: &str) -> Self {
        let labels = || crate::telemetry::client_labels(client_id);
        Stats {
            partitions: Mutex::default(),
            acked_total: metrics::counter!(krab_cluster::telemetry::PRODUCER_RECORDS_ACKED, labels()),
            failed_total: metrics::counter!(krab_cluster::telemetry::PRODUCER_RECORDS_FAILED, labels()),
        }
    }

    fn with(&self, tp: &TopicPartition, f: impl FnOnce(&mut PartitionStats)) {
        let mut map = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(tp) {
            Some(s) => f(s),
            None => f(map.entry(tp.clone()).or_default()),
        }
    }

    pub(crate) fn acked(&self, tp: &TopicPartition, n: u64) {
        let now = Instant::now();
        self.acked_total.increment(n);
        self.with(tp, |s| {
            s.acked += n;
            if let Some(last) = s.last_ack {
                s.longest_ack_gap = s.longest_ack_gap.max(now.duration_since(last));
            }
            s.last_ack = Some(now);
        });
    }

    pub(crate) fn failed(&self, tp: &TopicPartition, n: u64) {
        self.failed_total.increment(n);
        self.with(tp, |s| s.failed += n);
    }

    pub(crate) fn stalled(&self, tp: &TopicPartition) {
        self.with(tp, |s| s.stalls += 1);
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<TopicPartition, PartitionStats> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
