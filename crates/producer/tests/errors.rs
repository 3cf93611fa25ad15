//! `Error::is_retriable` follows the cluster error it came from: a version mismatch or a bad
//! setting does not get better by sending again.

use krab_cluster::{ClusterError, DisconnectReason, RequestError, ResolveError};
use krab_producer::{Error, ErrorKind};
use krab_protocol::ApiKey;
use krab_protocol::VersionRange;
use krab_protocol::error_code::ErrorCode;

fn range(min: i16, max: i16) -> VersionRange {
    VersionRange { min, max }
}

#[test]
fn cluster_errors_keep_their_own_retriability() {
    let not_retriable = [
        ClusterError::NoCommonVersion {
            broker: "1".into(),
            api: ApiKey::Produce,
            theirs: range(0, 2),
            ours: range(3, 11),
        },
        ClusterError::UnsupportedApi { broker: "1".into(), api: ApiKey::InitProducerId },
        ClusterError::Config { key: "bootstrap.servers", message: "empty".into() },
        ClusterError::Shutdown,
        ClusterError::Request {
            broker: "1".into(),
            api: ApiKey::Produce,
            source: RequestError::ResponseTooLarge { size: 1 << 30, max: 1 << 20 },
        },
    ];
    for e in not_retriable {
        let shown = e.to_string();
        let error = Error::from(e);
        assert_eq!(error.kind(), ErrorKind::Cluster, "{shown}");
        assert!(!error.is_retriable(), "not retriable: {shown}");
    }
    let retriable = [
        ClusterError::UnknownBroker(7),
        ClusterError::Request {
            broker: "1".into(),
            api: ApiKey::Produce,
            source: RequestError::ConnectionLost { reason: DisconnectReason::Eof, sent: true },
        },
        ClusterError::NoLeader { topic: "t".into(), partition: 0 },
    ];
    for e in retriable {
        let shown = e.to_string();
        assert!(Error::from(e).is_retriable(), "retriable: {shown}");
    }
    // Through the resolver, too.
    let e = ResolveError::Cluster(ClusterError::UnsupportedApi { broker: "1".into(), api: ApiKey::Metadata });
    assert!(!Error::from(e).is_retriable());
    assert!(Error::from(ResolveError::DeadlineExceeded(std::time::Duration::from_secs(1))).is_retriable());
    // A broker's code decides for itself.
    let e = ClusterError::Broker {
        broker: "1".into(),
        api: ApiKey::InitProducerId,
        code: ErrorCode::ClusterAuthorizationFailed,
        message: None,
    };
    assert!(!Error::from(e).is_retriable());
}
