//! The consumer's metrics (names in [`krab_cluster::telemetry`]): handles registered once per
//! consumer, fetch task, group member or partition and kept; updated per chunk, fetch response
//! or rebalance, never per record.

use krab_buffer::TopicPartition;
use krab_cluster::telemetry as names;
use metrics::{Gauge, Histogram, Label, SharedString};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn client(client_id: &str) -> Label {
    names::client_label(Some(client_id))
}

/// `krab_consumer_e2e_latency_seconds` of a consumer.
pub(crate) fn e2e_latency(client_id: &str) -> Histogram {
    metrics::histogram!(names::CONSUMER_E2E_LATENCY, vec![client(client_id)])
}

/// Records the time from `timestamp` (ms since the epoch; negative: none) to now: once per chunk
/// handed out, for its first record. One clock read.
pub(crate) fn sample_e2e(histogram: &Histogram, timestamp: i64) {
    if timestamp < 0 {
        return;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    histogram.record((now - timestamp).max(0) as f64 / 1000.0);
}

/// `krab_consumer_lag` of one partition.
pub(crate) fn lag(client_id: &str, tp: &TopicPartition) -> Gauge {
    metrics::gauge!(
        names::CONSUMER_LAG,
        vec![
            client(client_id),
            Label::new("topic", SharedString::from(Arc::<str>::from(&*tp.topic))),
            Label::new("partition", tp.partition.to_string()),
        ]
    )
}

/// `krab_consumer_stalled_partitions` of a consumer.
pub(crate) fn stalled(client_id: &str) -> Gauge {
    metrics::gauge!(names::CONSUMER_STALLED, vec![client(client_id)])
}

/// `krab_consumer_fetch_session_resets_total` of one broker's fetch task.
pub(crate) fn session_resets(client_id: &str, broker: i32) -> metrics::Counter {
    metrics::counter!(names::CONSUMER_SESSION_RESETS, vec![client(client_id), Label::new("broker", broker.to_string())])
}

/// `krab_consumer_rebalances_total` of a group member, for `event` (`assigned`, `revoked`,
/// `lost`).
pub(crate) fn rebalances(client_id: &str, group: &str, event: &'static str) -> metrics::Counter {
    metrics::counter!(
        names::CONSUMER_REBALANCES,
        vec![client(client_id), Label::new("group", group.to_string()), Label::from_static_parts("event", event)]
    )
}
