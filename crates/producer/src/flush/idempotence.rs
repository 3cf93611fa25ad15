//! Idempotence: the producer id and epoch. The producer bumps its epoch itself (epoch + 1, which
//! a broker accepts from an idempotent producer when the new epoch starts at sequence 0) and
//! asks the cluster (InitProducerId) only for its first id and when the epoch is used up.
//! A failed request is asked again after `retry.backoff.ms`, doubling up to
//! `retry.backoff.max.ms`; a non-retriable answer is fatal to the producer.

use crate::config::ProducerConfig;
use crate::error::{Error, ErrorKind};
use krab_cluster::Cluster;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::InitProducerIdRequest;
use std::time::{Duration, Instant};

/// A batch hitting OUT_OF_ORDER_SEQUENCE_NUMBER this often with nothing before it in flight
/// means the broker lost track of the producer's sequence: bump the epoch.
pub(super) const OUT_OF_ORDER_LIMIT: u32 = 3;

/// The epoch after `current`'s, if it is not used up (then only a new producer id will do).
pub(super) fn next_epoch((producer_id, epoch): (i64, i16)) -> Option<(i64, i16)> {
    (epoch < i16::MAX).then(|| (producer_id, epoch + 1))
}

/// Asking the cluster for a new producer id, paced after failures.
#[derive(Debug)]
pub(super) struct ProducerIds {
    /// A request is in flight.
    asking: bool,
    /// The wait after the next failure.
    backoff: Duration,
    /// No request before this (after a failure).
    not_before: Option<Instant>,
    /// A non-retriable answer: the producer cannot produce any more.
    fatal: Option<Error>,
}

impl ProducerIds {
    pub(super) fn new(config: &ProducerConfig) -> Self {
        Self { asking: false, backoff: config.retry_backoff, not_before: None, fatal: None }
    }

    /// Whether a request may go out now.
    pub(super) fn may_ask(&self, now: Instant) -> bool {
        !self.asking && self.fatal.is_none() && self.not_before.is_none_or(|t| now >= t)
    }

    pub(super) fn asked(&mut self) {
        self.asking = true;
    }

    /// When the next request may go out, if one is waiting for its backoff.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        if self.asking || self.fatal.is_some() { None } else { self.not_before }
    }

    /// The error every record fails with from now on, if the cluster refused for good.
    pub(super) fn fatal(&self) -> Option<&Error> {
        self.fatal.as_ref()
    }

    /// The answer arrived: a new id to use, or `None` (asked again after backoff, or fatal).
    pub(super) fn answered(
        &mut self,
        result: Result<(i64, i16), Error>,
        now: Instant,
        config: &ProducerConfig,
    ) -> Option<(i64, i16)> {
        self.asking = false;
        match result {
            Ok(id) => {
                self.backoff = config.retry_backoff;
                self.not_before = None;
                Some(id)
            }
            Err(e) if e.is_retriable() => {
                tracing::warn!(error = %e, backoff = ?self.backoff, "InitProducerId failed; asking again after backoff");
                self.not_before = Some(crate::time::add(now, self.backoff));
                self.backoff = self.backoff.saturating_mul(2).min(config.retry_backoff_max.max(config.retry_backoff));
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "InitProducerId refused; the producer cannot produce");
                self.fatal = Some(e);
                None
            }
        }
    }
}

/// The producer's first id. Right after a cluster starts, the transaction coordinator is still
/// being created or loaded (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, ...): a
/// retriable answer is asked again after `retry.backoff.ms`, doubling up to
/// `retry.backoff.max.ms`, for at most the delivery timeout; anything else fails at once.
pub(super) async fn first_producer_id(cluster: &Cluster, config: &ProducerConfig) -> Result<Option<(i64, i16)>, Error> {
    let give_up = tokio::time::Instant::now() + config.effective_delivery_timeout().min(Duration::from_secs(600));
    let mut backoff = config.retry_backoff;
    loop {
        match init_producer_id(cluster, None).await {
            Err(e) if e.is_retriable() && tokio::time::Instant::now() + backoff < give_up => {
                tracing::debug!(error = %e, ?backoff, "InitProducerId failed; asking again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.retry_backoff_max.max(config.retry_backoff));
            }
            other => return other,
        }
    }
}

/// Gets a producer id (and epoch) for idempotence from any broker; with `current`, bumps that
/// producer's epoch (KIP-360, InitProducerId v3+). `Ok(None)`: the cluster does not support it.
pub(super) async fn init_producer_id(
    cluster: &Cluster,
    current: Option<(i64, i16)>,
) -> Result<Option<(i64, i16)>, Error> {
    let broker = cluster.any_broker().await?;
    let versions = broker.versions();
    if versions.broker_range(krab_protocol::ApiKey::InitProducerId).is_none()
        || versions.version_for(krab_protocol::ApiKey::Produce).is_ok_and(|v| v < 3)
    {
        return Ok(None);
    }
    let response = broker
        .call(|version| {
            let (producer_id, producer_epoch) = match current {
                Some(c) if version >= 3 => c,
                _ => (-1, -1),
            };
            InitProducerIdRequest {
                transactional_id: None,
                transaction_timeout_ms: i32::MAX,
                producer_id,
                producer_epoch,
                ..Default::default()
            }
        })
        .await?;
    let code = ErrorCode::from_code(response.error_code);
    if !code.is_ok() {
        return Err(Error::new(ErrorKind::Broker(code), format!("InitProducerId failed: {code}")));
    }
    Ok(Some((response.producer_id, response.producer_epoch)))
}
