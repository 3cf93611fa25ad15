//! Finding a consumer group's coordinator (FindCoordinator), shared by the consumer's group
//! member and the admin client.

use crate::cluster::Cluster;
use crate::error::ClusterError;
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::FindCoordinatorRequest;

impl Cluster {
    /// The broker id of `group`'s coordinator, asked of any broker (v4+ batches keys; older
    /// versions take one). A refusal (COORDINATOR_NOT_AVAILABLE, GROUP_AUTHORIZATION_FAILED, ...)
    /// is [`ClusterError::Broker`] with its code.
    pub async fn find_coordinator(&self, group: &str) -> Result<i32, ClusterError> {
        let broker = self.any_broker().await?;
        let response = broker
            .call(|version| {
                if version >= 4 {
                    FindCoordinatorRequest {
                        key_type: 0,
                        coordinator_keys: vec![group.to_string()],
                        ..Default::default()
                    }
                } else {
                    FindCoordinatorRequest { key: group.to_string(), key_type: 0, ..Default::default() }
                }
            })
            .await?;
        let (code, message, node) = match response.coordinators.first() {
            Some(c) => (c.error_code, c.error_message.clone(), c.node_id),
            None => (response.error_code, response.error_message, response.node_id),
        };
        let code = ErrorCode::from_code(code);
        if code.is_err() {
            return Err(ClusterError::Broker {
                broker: broker.label().to_string(),
                api: ApiKey::FindCoordinator,
                code,
                message: message.filter(|m| !m.is_empty()),
            });
        }
        Ok(node)
    }
}
