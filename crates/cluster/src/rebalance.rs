//! Which failures mean "the cluster moved this partition: re-resolve its leader".
//!
//! One function decides, for broker error codes and for connection failures alike, so that the
//! producer and the consumer react the same way. The table is documented in ARCHITECTURE.md.

use crate::error::{ClusterError, DisconnectReason, RequestError};
use krab_protocol::error_code::ErrorCode;

/// What to do after a failure on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The partition's leader moved or its connection failed: pause this partition only, ask the
    /// resolver for a newer snapshot, then resume against the new leader.
    Reresolve,
    /// Like [`Recovery::Reresolve`], but the topic or partition may genuinely not exist: re-resolve
    /// a bounded number of times (metadata can lag topic creation), then fail.
    ReresolveBounded,
    /// A transient error on the same leader: retry after backoff, no metadata needed.
    Retry,
    /// Not recoverable by retrying: fail the affected records.
    Fail,
}

/// Classifies a broker error code found on a partition (produce, fetch, list offsets, ...).
pub fn classify_code(code: ErrorCode) -> Recovery {
    use ErrorCode as E;
    match code {
        E::NotLeaderOrFollower
        | E::LeaderNotAvailable
        | E::FencedLeaderEpoch
        | E::UnknownLeaderEpoch
        | E::KafkaStorageError
        | E::NotCoordinator
        | E::CoordinatorNotAvailable
        | E::ReplicaNotAvailable
        | E::OffsetNotAvailable => Recovery::Reresolve,
        E::UnknownTopicOrPartition | E::UnknownTopicId | E::InconsistentTopicId => Recovery::ReresolveBounded,
        code if code.is_retriable() => Recovery::Retry,
        _ => Recovery::Fail,
    }
}

/// Classifies a failed request to a partition's leader.
///
/// A connection to the leader that cannot be made (refused, reset, timed out, broker in backoff)
/// or that dies under the request means the leader may be gone: re-resolve. A malformed response
/// or a request krab cannot encode is not fixed by new metadata: fail.
pub fn classify(error: &ClusterError) -> Recovery {
    match error {
        ClusterError::Broker { code, .. } => classify_code(*code),
        // A certificate refused by either side is no leader move and no outage: no metadata or
        // retry fixes it (a broker in backoff after a TLS failure, likewise).
        // Authentication refused likewise.
        ClusterError::Tls { .. }
        | ClusterError::Authentication { .. }
        | ClusterError::BrokerUnavailable {
            reason: DisconnectReason::Tls(_) | DisconnectReason::Authentication(_),
            ..
        }
        | ClusterError::Request {
            source:
                RequestError::ConnectionLost {
                    reason: DisconnectReason::Tls(_) | DisconnectReason::Authentication(_), ..
                },
            ..
        } => Recovery::Fail,
        ClusterError::Connect { .. }
        | ClusterError::BrokerUnavailable { .. }
        | ClusterError::UnknownBroker(_)
        | ClusterError::NoLeader { .. } => Recovery::Reresolve,
        ClusterError::UnknownPartition { .. } => Recovery::ReresolveBounded,
        ClusterError::Request { source, .. } => match source {
            // Another request's response was over the size limit and took the connection down:
            // this request did nothing wrong, and the leader has not moved. Retry it on a new
            // connection (the oversized one itself fails as `RequestError::ResponseTooLarge`).
            RequestError::ConnectionLost { reason: DisconnectReason::ResponseTooLarge { .. }, .. } => Recovery::Retry,
            RequestError::ConnectionLost { .. } => Recovery::Reresolve,
            RequestError::TimedOut(_) => Recovery::Reresolve,
            RequestError::ResponseTooLarge { .. } | RequestError::Encode(_) | RequestError::Decode(_) => Recovery::Fail,
        },
        ClusterError::NoBootstrap { .. } => Recovery::Retry,
        _ => Recovery::Fail,
    }
}

/// Whether the failure is a *rebalancing error*: one that new metadata resolves.
pub fn is_rebalancing(error: &ClusterError) -> bool {
    matches!(classify(error), Recovery::Reresolve | Recovery::ReresolveBounded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use krab_protocol::ApiKey;
    use std::time::Duration;

    #[test]
    fn leadership_errors_reresolve() {
        for code in [6, 5, 74, 75, 56, 16] {
            assert_eq!(classify_code(ErrorCode::from_code(code)), Recovery::Reresolve, "code {code}");
        }
        assert_eq!(classify_code(ErrorCode::UnknownTopicOrPartition), Recovery::ReresolveBounded);
        assert_eq!(classify_code(ErrorCode::RequestTimedOut), Recovery::Retry);
        assert_eq!(classify_code(ErrorCode::NotEnoughReplicas), Recovery::Retry);
        assert_eq!(classify_code(ErrorCode::TopicAuthorizationFailed), Recovery::Fail);
        assert_eq!(classify_code(ErrorCode::MessageTooLarge), Recovery::Fail);
    }

    #[test]
    fn connection_failures_to_the_leader_reresolve() {
        let refused = ClusterError::Connect {
            broker: "2".into(),
            addr: "h:1".into(),
            reason: DisconnectReason::Io { kind: std::io::ErrorKind::ConnectionRefused, message: "refused".into() },
        };
        assert!(is_rebalancing(&refused));
        let reset = ClusterError::Request {
            broker: "2".into(),
            api: ApiKey::Produce,
            source: RequestError::ConnectionLost {
                reason: DisconnectReason::Io { kind: std::io::ErrorKind::ConnectionReset, message: "reset".into() },
                sent: true,
            },
        };
        assert!(is_rebalancing(&reset));
        let timeout = ClusterError::Request {
            broker: "2".into(),
            api: ApiKey::Produce,
            source: RequestError::TimedOut(Duration::from_secs(1)),
        };
        assert!(is_rebalancing(&timeout));
        let backoff =
            ClusterError::BrokerUnavailable { broker: 2, retry_in: Duration::ZERO, reason: DisconnectReason::Eof };
        assert!(is_rebalancing(&backoff));
        let too_large = ClusterError::Request {
            broker: "2".into(),
            api: ApiKey::Fetch,
            source: RequestError::ResponseTooLarge { size: 10, max: 1 },
        };
        assert_eq!(classify(&too_large), Recovery::Fail);
        // The other requests on that connection are innocent: retried, not failed.
        let lost_with_it = ClusterError::Request {
            broker: "2".into(),
            api: ApiKey::Produce,
            source: RequestError::ConnectionLost {
                reason: DisconnectReason::ResponseTooLarge { size: 10, max: 1 },
                sent: true,
            },
        };
        assert_eq!(classify(&lost_with_it), Recovery::Retry);
        assert!(!is_rebalancing(&lost_with_it));
    }

    #[test]
    fn tls_failures_fail_instead_of_re_resolving() {
        use crate::error::{TlsFailure, TlsFailureKind};
        let failure = TlsFailure::new(TlsFailureKind::UnknownCa, "UnknownIssuer");
        let tls = ClusterError::Tls { broker: "2".into(), addr: "b:9093".into(), failure: failure.clone() };
        let backoff = ClusterError::BrokerUnavailable {
            broker: 2,
            retry_in: Duration::from_millis(10),
            reason: DisconnectReason::Tls(failure.clone()),
        };
        let lost = ClusterError::Request {
            broker: "2".into(),
            api: ApiKey::Produce,
            source: RequestError::ConnectionLost { reason: DisconnectReason::Tls(failure), sent: false },
        };
        for e in [tls, backoff, lost] {
            assert_eq!(classify(&e), Recovery::Fail, "{e}");
            assert!(!e.is_retriable(), "{e}");
        }
    }
}
