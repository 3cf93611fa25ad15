//! Idempotence: the producer id and epoch from the cluster (InitProducerId).

use crate::config::ProducerConfig;
use crate::error::{Error, ErrorKind};
use krab_cluster::Cluster;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::InitProducerIdRequest;
use std::time::Duration;

/// A batch hitting OUT_OF_ORDER_SEQUENCE_NUMBER this often with nothing before it in flight
/// means the broker lost track of the producer's sequence: bump the epoch.
pub(super) const OUT_OF_ORDER_LIMIT: u32 = 3;

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
