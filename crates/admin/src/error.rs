//! The admin client's error: a broker's per-resource refusal by name, a call's timeout, or the
//! cluster layer's failure.

use krab_cluster::ClusterError;
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use std::time::Duration;

/// Why an admin call, or one resource of it, failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The broker refused this resource (a topic, group, partition, config resource, user, ACL)
    /// with an error code.
    #[error("{api} failed for {resource}: {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        /// The resource, e.g. `topic orders`, `group billing`, `partition orders-3`.
        resource: String,
        /// The API that answered.
        api: ApiKey,
        /// The error code.
        code: ErrorCode,
        /// The broker's message, if it sent one.
        message: Option<String>,
    },
    /// The call did not complete within its timeout (`default.api.timeout.ms`, or
    /// [`Admin::with_timeout`](crate::Admin::with_timeout)). `last` is the retriable failure seen
    /// last, if any.
    #[error("{api} did not complete within {after:?}{}", last.as_ref().map(|l| format!("; last failure: {l}")).unwrap_or_default())]
    Timeout {
        /// The API.
        api: ApiKey,
        /// The call's timeout.
        after: Duration,
        /// The last retriable failure before the deadline.
        last: Option<Box<AdminError>>,
    },
    /// Connecting to or talking with a broker failed (TLS, authentication, a lost connection,
    /// no common API version, ...).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A setting that was unknown or invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// An argument the call cannot send (an empty name, a count out of range, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A response that does not answer what was asked (a resource missing from it).
    #[error("{api} response: {detail}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// What is wrong.
        detail: String,
    },
}

impl AdminError {
    /// The broker's error code, when the failure is one (also through a timeout's last failure).
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            AdminError::Broker { code, .. } => Some(*code),
            AdminError::Timeout { last: Some(last), .. } => last.error_code(),
            AdminError::Cluster(e) => e.error_code(),
            _ => None,
        }
    }

    /// Whether trying the same call again may succeed. The client already retries these until
    /// the call's timeout; a caller sees them only inside [`AdminError::Timeout`].
    pub fn is_retriable(&self) -> bool {
        match self {
            AdminError::Broker { code, .. } => code.is_retriable(),
            AdminError::Timeout { .. } => true,
            AdminError::Cluster(e) => e.is_retriable(),
            AdminError::Config(_) | AdminError::InvalidArgument(_) | AdminError::Malformed { .. } => false,
        }
    }

    pub(crate) fn broker(resource: impl Into<String>, api: ApiKey, code: ErrorCode, message: Option<String>) -> Self {
        AdminError::Broker { resource: resource.into(), api, code, message: message.filter(|m| !m.is_empty()) }
    }

    pub(crate) fn missing(api: ApiKey, resource: impl std::fmt::Display) -> Self {
        AdminError::Malformed { api, detail: format!("no result for {resource}") }
    }
}

/// `Ok` for a zero code, else the per-resource error.
pub(crate) fn check(
    api: ApiKey,
    resource: impl FnOnce() -> String,
    code: i16,
    message: Option<&String>,
) -> Result<(), AdminError> {
    let code = ErrorCode::from_code(code);
    if code.is_ok() { Ok(()) } else { Err(AdminError::broker(resource(), api, code, message.cloned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_resource_and_the_code() {
        let e = AdminError::broker("topic orders", ApiKey::CreateTopics, ErrorCode::TopicAlreadyExists, None);
        assert_eq!(e.to_string(), "CreateTopics failed for topic orders: TOPIC_ALREADY_EXISTS (36)");
        assert_eq!(e.error_code(), Some(ErrorCode::TopicAlreadyExists));
        assert!(!e.is_retriable());
        let t = AdminError::Timeout {
            api: ApiKey::DeleteRecords,
            after: Duration::from_secs(1),
            last: Some(Box::new(AdminError::broker(
                "partition t-0",
                ApiKey::DeleteRecords,
                ErrorCode::NotLeaderOrFollower,
                Some(String::new()),
            ))),
        };
        assert_eq!(t.error_code(), Some(ErrorCode::NotLeaderOrFollower));
        assert!(
            t.to_string().contains("last failure: DeleteRecords failed for partition t-0: NOT_LEADER_OR_FOLLOWER (6)"),
            "{t}"
        );
        assert!(check(ApiKey::DeleteGroups, || unreachable!(), 0, None).is_ok());
    }
}
