//! A safe owner of a librdkafka mock cluster, over rdkafka-sys's raw C API.
//!
//! Every `unsafe` block of the crate lives here. They all rely on one
//! invariant of [`MockCluster`]: `mcluster` came non-null from
//! `rd_kafka_mock_cluster_new` and stays valid until `Drop` destroys it, and
//! the `rd_kafka_t` it was created on (`_client`) outlives it (struct fields
//! drop after `Drop::drop` has run).

use rdkafka::ClientConfig;
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::types::RDKafkaType;
use rdkafka_sys as sys;
use rdkafka_sys::types::{RDKafkaErrorCode, RDKafkaRespErr};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_int};
use std::ptr::NonNull;

/// Most brokers a cluster may have (the mock creates ids `1..=n`).
pub(crate) const MAX_BROKERS: i32 = 64;

/// A running mock cluster; destroyed (listeners closed, thread joined) on drop.
pub(crate) struct MockCluster {
    mcluster: NonNull<sys::rd_kafka_mock_cluster_t>,
    bootstrap: String,
    /// The idle client handle the mock cluster hangs off. It has no bootstrap
    /// servers, so it never connects anywhere and adds no tracked requests.
    _client: Client<DefaultClientContext>,
}

/// The error of a mock operation, as librdkafka reported it.
#[derive(Debug)]
pub(crate) struct MockError(String);

impl std::fmt::Display for MockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MockError {}

/// Converts a librdkafka return code into a result.
fn check(err: RDKafkaRespErr) -> Result<(), MockError> {
    if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Ok(());
    }
    let code = RDKafkaErrorCode::from(err);
    Err(MockError(format!("{code} [code {}]", err as i32)))
}

/// A Kafka (or librdkafka-internal) error code librdkafka knows.
pub(crate) fn error_code(code: i32) -> Result<RDKafkaRespErr, MockError> {
    RDKafkaRespErr::try_from(code).map_err(|_| MockError(format!("error code {code} is unknown to librdkafka 2.12")))
}

fn c_string(s: &str) -> Result<CString, MockError> {
    CString::new(s).map_err(|_| MockError("NUL byte in argument".to_owned()))
}

impl MockCluster {
    /// Starts a mock cluster with brokers `1..=brokers`, each listening on
    /// its own ephemeral 127.0.0.1 port.
    pub(crate) fn new(brokers: i32) -> Result<Self, MockError> {
        if !(1..=MAX_BROKERS).contains(&brokers) {
            return Err(MockError(format!("broker count must be 1..={MAX_BROKERS}, got {brokers}")));
        }
        let config = ClientConfig::new();
        let native = config.create_native_config().map_err(|e| MockError(format!("client config: {e}")))?;
        let client = Client::new(&config, native, RDKafkaType::RD_KAFKA_PRODUCER, DefaultClientContext)
            .map_err(|e| MockError(format!("creating the client handle: {e}")))?;
        // SAFETY: `client.native_ptr()` is a live rd_kafka_t owned by `client`,
        // which the returned struct keeps alive for as long as the mock cluster.
        let raw = unsafe { sys::rd_kafka_mock_cluster_new(client.native_ptr(), brokers) };
        let mcluster = NonNull::new(raw).ok_or_else(|| MockError("rd_kafka_mock_cluster_new failed".to_owned()))?;
        // SAFETY: valid cluster (just created); the returned string is owned
        // by the cluster and outlives this call, we copy it right away.
        let bootstrap = unsafe { CStr::from_ptr(sys::rd_kafka_mock_cluster_bootstraps(mcluster.as_ptr())) };
        let bootstrap = bootstrap.to_string_lossy().into_owned();
        Ok(Self { mcluster, bootstrap, _client: client })
    }

    fn ptr(&self) -> *mut sys::rd_kafka_mock_cluster_t {
        self.mcluster.as_ptr()
    }

    /// `host:port,host:port,...` of all brokers.
    pub(crate) fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic; fails if it exists. A replication factor above the
    /// broker count is silently capped by the mock.
    pub(crate) fn create_topic(&self, topic: &str, partitions: i32, rf: i32) -> Result<(), MockError> {
        let topic = c_string(topic)?;
        // SAFETY: valid cluster (struct invariant); `topic` is a NUL-terminated
        // string that lives across the call (librdkafka copies it).
        check(unsafe { sys::rd_kafka_mock_topic_create(self.ptr(), topic.as_ptr(), partitions, rf) })
    }

    /// Moves a partition's leader to `broker` (-1: no leader).
    pub(crate) fn set_leader(&self, topic: &str, partition: i32, broker: i32) -> Result<(), MockError> {
        let topic = c_string(topic)?;
        // SAFETY: as in `create_topic`.
        check(unsafe { sys::rd_kafka_mock_partition_set_leader(self.ptr(), topic.as_ptr(), partition, broker) })
    }

    /// Takes a broker down (-1: all): its listener stops accepting and its
    /// open connections are closed. Leaders do not move.
    pub(crate) fn broker_down(&self, broker: i32) -> Result<(), MockError> {
        // SAFETY: valid cluster (struct invariant); plain integer argument.
        check(unsafe { sys::rd_kafka_mock_broker_set_down(self.ptr(), broker) })
    }

    /// Brings a broker back up (-1: all) on the same port.
    pub(crate) fn broker_up(&self, broker: i32) -> Result<(), MockError> {
        // SAFETY: valid cluster (struct invariant); plain integer argument.
        check(unsafe { sys::rd_kafka_mock_broker_set_up(self.ptr(), broker) })
    }

    /// Delays every response of a broker (-1: all) by `ms`.
    pub(crate) fn set_rtt(&self, broker: i32, ms: i32) -> Result<(), MockError> {
        // SAFETY: valid cluster (struct invariant); plain integer arguments.
        check(unsafe { sys::rd_kafka_mock_broker_set_rtt(self.ptr(), broker, ms) })
    }

    /// Makes the next `count` requests of `api_key` to any broker fail with `err`.
    pub(crate) fn push_errors(&self, api_key: i16, err: RDKafkaRespErr, count: usize) {
        let errs = vec![err; count];
        // SAFETY: valid cluster (struct invariant); `errs` holds exactly
        // `count` initialised error codes and librdkafka copies them.
        unsafe { sys::rd_kafka_mock_push_request_errors_array(self.ptr(), api_key, errs.len(), errs.as_ptr()) }
    }

    /// Makes the next `count` requests of `api_key` to `broker` fail with
    /// `err`, each answered after `rtt_ms`.
    pub(crate) fn push_broker_errors(
        &self,
        broker: i32,
        api_key: i16,
        err: RDKafkaRespErr,
        count: usize,
        rtt_ms: i32,
    ) -> Result<(), MockError> {
        for _ in 0..count {
            // SAFETY: valid cluster (struct invariant). The variadic part is
            // `cnt` = 1 pair read back as (rd_kafka_resp_err_t, int): both are
            // C ints, which is what we pass.
            let res = unsafe {
                sys::rd_kafka_mock_broker_push_request_error_rtts(
                    self.ptr(),
                    broker,
                    api_key,
                    1,
                    err as c_int,
                    rtt_ms as c_int,
                )
            };
            check(res)?;
        }
        Ok(())
    }

    /// Drops all errors still queued for `api_key` on the cluster level.
    pub(crate) fn clear_errors(&self, api_key: i16) {
        // SAFETY: valid cluster (struct invariant); plain integer argument.
        unsafe { sys::rd_kafka_mock_clear_request_errors(self.ptr(), api_key) }
    }

    /// Starts recording every request that reaches a broker (clears the record).
    pub(crate) fn start_tracking(&self) {
        // SAFETY: valid cluster (struct invariant).
        unsafe { sys::rd_kafka_mock_start_request_tracking(self.ptr()) }
    }

    /// Stops recording (clears the record).
    pub(crate) fn stop_tracking(&self) {
        // SAFETY: valid cluster (struct invariant).
        unsafe { sys::rd_kafka_mock_stop_request_tracking(self.ptr()) }
    }

    /// Clears the record, tracking goes on (or stays off).
    pub(crate) fn reset_tracking(&self) {
        // SAFETY: valid cluster (struct invariant).
        unsafe { sys::rd_kafka_mock_clear_requests(self.ptr()) }
    }

    /// The recorded requests as (broker id, api key), oldest first.
    pub(crate) fn requests(&self) -> Vec<(i32, i16)> {
        let mut cnt: usize = 0;
        // SAFETY: valid cluster (struct invariant); `cnt` is a valid out pointer.
        let reqs = unsafe { sys::rd_kafka_mock_get_requests(self.ptr(), &mut cnt) };
        if reqs.is_null() || cnt == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(cnt);
        for i in 0..cnt {
            // SAFETY: librdkafka returned an array of `cnt` valid request copies.
            let req = unsafe { *reqs.add(i) };
            // SAFETY: `req` is one of those valid copies, not yet freed.
            let (id, key) = unsafe { (sys::rd_kafka_mock_request_id(req), sys::rd_kafka_mock_request_api_key(req)) };
            out.push((id, key));
        }
        // SAFETY: frees exactly the array (and its `cnt` copies) that
        // rd_kafka_mock_get_requests returned; nothing uses them afterwards.
        unsafe { sys::rd_kafka_mock_request_destroy_array(reqs, cnt) };
        out
    }

    /// Recorded requests per api key, optionally only those to one broker.
    pub(crate) fn request_counts(&self, broker: Option<i32>) -> BTreeMap<i16, u64> {
        let mut counts = BTreeMap::new();
        for (id, key) in self.requests() {
            if broker.is_none_or(|b| b == id) {
                *counts.entry(key).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        // SAFETY: valid cluster (struct invariant), destroyed exactly once,
        // before `_client` (its rd_kafka_t) is dropped.
        unsafe { sys::rd_kafka_mock_cluster_destroy(self.ptr()) }
    }
}
