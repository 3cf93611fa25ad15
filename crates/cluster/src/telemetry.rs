//! Observability: the names of krab's metrics, recorded through the [`metrics`] facade so that
//! any exporter can be plugged in, and the handles this crate keeps for them.
//!
//! Every metric is named `krab_...` and labelled with bounded values only: `client_id`,
//! `broker` (an id, or `bootstrap`), `api` (a Kafka API name), and a few fixed words. Nothing is
//! recorded per record or per offset. Handles are registered once (per connection and API, per
//! producer, per consumer) and kept, so the hot paths never look a metric up; install your
//! recorder before connecting (a handle registered while no recorder is installed stays a no-op
//! for the life of its connection or client).
//!
//! See the "Observability" section of ARCHITECTURE.md for the spans, events and metrics of every
//! crate; [`describe`] gives an installed recorder the units and help texts.

use metrics::{Counter, Histogram, Label, SharedString, Unit};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Counter: requests sent, by `client_id`, `broker` and `api`.
pub const REQUESTS: &str = "krab_requests_total";
/// Counter: requests that got no response (timed out, connection lost), by `client_id`,
/// `broker` and `api`. A response carrying error codes is not counted here.
pub const REQUEST_ERRORS: &str = "krab_request_errors_total";
/// Counter: bytes of requests written (frames with their size prefix), by `client_id`, `broker`
/// and `api`.
pub const BYTES_SENT: &str = "krab_request_bytes_sent_total";
/// Counter: bytes of responses received, by `client_id`, `broker` and `api`.
pub const BYTES_RECEIVED: &str = "krab_response_bytes_received_total";
/// Histogram: seconds from handing a request to the connection to its response, by `client_id`,
/// `broker` and `api`.
pub const REQUEST_LATENCY: &str = "krab_request_latency_seconds";
/// Counter: Metadata requests sent, by `client_id` and `reason` (`bootstrap`, `periodic`,
/// `resolve`, `stale`, `explicit`).
pub const METADATA_REFRESHES: &str = "krab_metadata_refreshes_total";

/// Counter: records acknowledged, by `client_id`.
pub const PRODUCER_RECORDS_ACKED: &str = "krab_producer_records_acked_total";
/// Counter: records failed (their delivery futures got an error), by `client_id`.
pub const PRODUCER_RECORDS_FAILED: &str = "krab_producer_records_failed_total";
/// Histogram: bytes of each acknowledged batch as sent (compressed), by `client_id`.
pub const PRODUCER_BATCH_BYTES: &str = "krab_producer_batch_size_bytes";
/// Histogram: records in each acknowledged batch, by `client_id`.
pub const PRODUCER_BATCH_RECORDS: &str = "krab_producer_batch_records";
/// Histogram: seconds from a batch's first record entering the producer to its acknowledgement,
/// by `client_id`.
pub const PRODUCER_LATENCY: &str = "krab_producer_produce_latency_seconds";
/// Gauge: bytes of `buffer.memory` held by buffered and in-flight records, by `client_id`.
pub const PRODUCER_BUFFER_BYTES: &str = "krab_producer_buffer_memory_bytes";
/// Gauge: partitions stalled waiting for newer metadata, by `client_id`.
pub const PRODUCER_STALLED: &str = "krab_producer_stalled_partitions";
/// Counter: batches retried after a retriable error (not counting re-resolves), by `client_id`.
pub const PRODUCER_RETRIES: &str = "krab_producer_retries_total";
/// Counter: partitions moved to a new producer epoch (idempotence), by `client_id`.
pub const PRODUCER_EPOCH_BUMPS: &str = "krab_producer_epoch_bumps_total";

/// Histogram: seconds from a record's timestamp to its hand-out to the application, sampled
/// once per chunk (the chunk's first record), by `client_id`.
pub const CONSUMER_E2E_LATENCY: &str = "krab_consumer_e2e_latency_seconds";
/// Gauge: records between a partition's position and the log's end (the high watermark, or the
/// last stable offset under `read_committed`), updated on each fetch response, by `client_id`,
/// `topic` and `partition`; set to 0 when the partition leaves the assignment.
pub const CONSUMER_LAG: &str = "krab_consumer_lag";
/// Gauge: assigned partitions paused waiting for newer metadata (a leader change), by
/// `client_id`.
pub const CONSUMER_STALLED: &str = "krab_consumer_stalled_partitions";
/// Counter: KIP-227 fetch sessions lost (the next Fetch is full), by `client_id` and `broker`.
pub const CONSUMER_SESSION_RESETS: &str = "krab_consumer_fetch_session_resets_total";
/// Counter: rebalance events of a group member, by `client_id`, `group` and `event`
/// (`assigned`, `revoked`, `lost`).
pub const CONSUMER_REBALANCES: &str = "krab_consumer_rebalances_total";

/// Gives the installed recorder the unit and a short description of every krab metric. Optional:
/// exporters show the metrics without it, only with less help text.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, Unit::Count, "Kafka requests sent");
    describe_counter!(REQUEST_ERRORS, Unit::Count, "Kafka requests that got no response");
    describe_counter!(BYTES_SENT, Unit::Bytes, "bytes of Kafka requests written");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "bytes of Kafka responses received");
    describe_histogram!(REQUEST_LATENCY, Unit::Seconds, "time from sending a request to its response");
    describe_counter!(METADATA_REFRESHES, Unit::Count, "Metadata requests sent, by reason");
    describe_counter!(PRODUCER_RECORDS_ACKED, Unit::Count, "records acknowledged");
    describe_counter!(PRODUCER_RECORDS_FAILED, Unit::Count, "records failed");
    describe_histogram!(PRODUCER_BATCH_BYTES, Unit::Bytes, "bytes of each acknowledged batch");
    describe_histogram!(PRODUCER_BATCH_RECORDS, Unit::Count, "records in each acknowledged batch");
    describe_histogram!(PRODUCER_LATENCY, Unit::Seconds, "time from a batch's first record to its acknowledgement");
    describe_gauge!(PRODUCER_BUFFER_BYTES, Unit::Bytes, "buffer.memory held by buffered and in-flight records");
    describe_gauge!(PRODUCER_STALLED, Unit::Count, "partitions stalled waiting for newer metadata");
    describe_counter!(PRODUCER_RETRIES, Unit::Count, "batches retried after a retriable error");
    describe_counter!(PRODUCER_EPOCH_BUMPS, Unit::Count, "partitions moved to a new producer epoch");
    describe_histogram!(CONSUMER_E2E_LATENCY, Unit::Seconds, "time from a record's timestamp to its hand-out");
    describe_gauge!(CONSUMER_LAG, Unit::Count, "records between the position and the end of the log");
    describe_gauge!(CONSUMER_STALLED, Unit::Count, "partitions paused waiting for newer metadata");
    describe_counter!(CONSUMER_SESSION_RESETS, Unit::Count, "fetch sessions lost");
    describe_counter!(CONSUMER_REBALANCES, Unit::Count, "rebalance events (assigned, revoked, lost)");
}

/// A `client_id` label (empty when the connection sends none).
pub fn client_label(client_id: Option<&str>) -> Label {
    Label::new("client_id", SharedString::from(Arc::<str>::from(client_id.unwrap_or(""))))
}

/// The per-API handles of one connection.
struct ApiHandles {
    requests: Counter,
    errors: Counter,
    sent: Counter,
    received: Counter,
    latency: Histogram,
}

/// Who a connection talks to, for spans and metric labels.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The broker id, or the address for a bootstrap connection (which has no id yet).
    display: Arc<str>,
    broker: SharedString,
    client: Label,
}

impl Peer {
    pub(crate) fn new(id: Option<i32>, addr: &str, client_id: Option<&str>) -> Self {
        let (display, broker): (Arc<str>, Arc<str>) = match id {
            Some(id) => {
                let s: Arc<str> = id.to_string().into();
                (s.clone(), s)
            }
            None => (addr.into(), "bootstrap".into()),
        };
        Peer { display, broker: SharedString::from(broker), client: client_label(client_id) }
    }

    /// A connection made with [`handshake`](crate::handshake) alone: nobody said where it goes.
    pub(crate) fn unknown(client_id: Option<&str>) -> Self {
        Peer { display: "unknown".into(), broker: SharedString::const_str("unknown"), client: client_label(client_id) }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// One connection's request metrics: handles registered on the first request of each API and
/// kept, so a request costs a few atomic operations (none without a recorder).
pub(crate) struct RequestMetrics {
    peer: Peer,
    apis: Box<[OnceLock<ApiHandles>]>,
}

impl RequestMetrics {
    pub(crate) fn new(peer: Peer) -> Self {
        let slots = krab_protocol::ApiKey::ALL.iter().map(|k| *k as usize + 1).max().unwrap_or(0);
        RequestMetrics { peer, apis: (0..slots).map(|_| OnceLock::new()).collect() }
    }

    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }

    fn handles(&self, api: krab_protocol::ApiKey) -> Option<&ApiHandles> {
        let slot = self.apis.get(api as usize)?;
        Some(slot.get_or_init(|| {
            let labels = || {
                vec![
                    self.peer.client.clone(),
                    Label::new("broker", self.peer.broker.clone()),
                    Label::from_static_parts("api", api.name()),
                ]
            };
            ApiHandles {
                requests: metrics::counter!(REQUESTS, labels()),
                errors: metrics::counter!(REQUEST_ERRORS, labels()),
                sent: metrics::counter!(BYTES_SENT, labels()),
                received: metrics::counter!(BYTES_RECEIVED, labels()),
                latency: metrics::histogram!(REQUEST_LATENCY, labels()),
            }
        }))
    }

    /// A request of `bytes` was handed to the connection.
    pub(crate) fn sent(&self, api: krab_protocol::ApiKey, bytes: usize) {
        if let Some(h) = self.handles(api) {
            h.requests.increment(1);
            h.sent.increment(bytes as u64);
        }
    }

    /// Its response of `bytes` arrived after `latency`.
    pub(crate) fn answered(&self, api: krab_protocol::ApiKey, bytes: usize, latency: Duration) {
        if let Some(h) = self.handles(api) {
            h.received.increment(bytes as u64);
            h.latency.record(latency.as_secs_f64());
        }
    }

    /// It got no response.
    pub(crate) fn failed(&self, api: krab_protocol::ApiKey) {
        if let Some(h) = self.handles(api) {
            h.errors.increment(1);
        }
    }
}

/// A Metadata request was sent for `reason`.
pub(crate) fn metadata_refresh(client_id: Option<&str>, reason: &'static str) {
    metrics::counter!(METADATA_REFRESHES, vec![client_label(client_id), Label::from_static_parts("reason", reason)])
        .increment(1);
}
