//! Errors of the cluster layer. Every variant carries the context a caller needs to act: which
//! broker, which API, and whether a failed request may have reached the broker.

use crate::sasl::AuthFailure;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::{ApiKey, DecodeError, EncodeError, VersionRange};
use std::sync::Arc;
use std::time::Duration;

/// Why a connection stopped. Shared by every request that was in flight on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    Eof,
    /// Reading or writing the socket failed.
    #[error("I/O error ({kind:?}): {message}")]
    Io {
        /// The error's kind (refused, reset, ...).
        kind: std::io::ErrorKind,
        /// The error's text.
        message: Arc<str>,
    },
    /// A response announced a size above the configured maximum; it was refused before being
    /// buffered, and the stream cannot be resynchronised.
    #[error("a response of {size} bytes exceeds the {max}-byte limit")]
    ResponseTooLarge {
        /// The announced size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A frame announced a negative length.
    #[error("a response frame announced a negative length ({0})")]
    NegativeFrameLength(i32),
    /// A response arrived for a correlation id no request is waiting for.
    #[error("a response arrived for unknown correlation id {0}")]
    UnexpectedCorrelationId(i32),
    /// A request timed out; like Kafka's own clients, the connection is then closed, since the
    /// broker answers requests in order and a stuck response blocks all that follow it.
    #[error("a request timed out after {0:?}")]
    RequestTimedOut(Duration),
    /// Closed on purpose (idle, or the cluster shut down).
    #[error("closed by the client")]
    ClosedByClient,
    /// The TLS layer failed: a certificate was refused by either side, or the broker aborted the
    /// handshake. No retry can fix it.
    #[error("TLS failed: {0}")]
    Tls(TlsFailure),
    /// SASL authentication was refused (wrong credentials, a mechanism the broker does not
    /// enable). No retry can fix it.
    #[error("{0}")]
    Authentication(AuthFailure),
}

/// What a TLS failure was, to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailureKind {
    /// The broker's certificate chain does not lead to a trusted CA (`ssl.ca.location`, or the
    /// system roots).
    UnknownCa,
    /// The broker's certificate is not valid for the host name (or IP) krab connected to.
    HostNameMismatch,
    /// The broker's certificate is otherwise unusable (expired, not yet valid, wrong usage, revoked,
    /// malformed).
    BadCertificate,
    /// The broker asked for a client certificate and krab had none to give
    /// (`ssl.certificate.location`), or the broker refused the one it got.
    ClientCertificateRejected,
    /// The handshake failed otherwise (no common protocol version or cipher suite, an alert from the
    /// broker, a peer that does not speak TLS).
    Handshake,
}

impl std::fmt::Display for TlsFailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsFailureKind::UnknownCa => "the broker's certificate is not signed by a trusted CA",
            TlsFailureKind::HostNameMismatch => "the broker's certificate does not match its host name",
            TlsFailureKind::BadCertificate => "the broker's certificate is invalid",
            TlsFailureKind::ClientCertificateRejected => "the broker requires a client certificate and refused krab's",
            TlsFailureKind::Handshake => "the TLS handshake failed",
        })
    }
}

/// A TLS failure: its kind and the TLS library's own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} ({detail})")]
pub struct TlsFailure {
    /// What went wrong.
    pub kind: TlsFailureKind,
    /// The details, for people.
    pub detail: Arc<str>,
}

impl TlsFailure {
    /// A failure of `kind`.
    pub fn new(kind: TlsFailureKind, detail: impl Into<Arc<str>>) -> Self {
        Self { kind, detail: detail.into() }
    }

    /// The TLS failure an I/O error carries, if it carries one (TLS streams report their failures
    /// as I/O errors wrapping a [`TlsFailure`]).
    pub fn from_io(e: &std::io::Error) -> Option<TlsFailure> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<TlsFailure>()).cloned()
    }
}

impl From<std::io::Error> for DisconnectReason {
    fn from(e: std::io::Error) -> Self {
        if let Some(tls) = TlsFailure::from_io(&e) {
            return DisconnectReason::Tls(tls);
        }
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return DisconnectReason::Eof;
        }
        DisconnectReason::Io { kind: e.kind(), message: e.to_string().into() }
    }
}

/// A request sent on one connection failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The connection stopped before the response arrived.
    #[error("connection lost: {reason}; the request {}", if *sent { "may have reached the broker" } else { "was never sent" })]
    ConnectionLost {
        /// Why the connection stopped.
        reason: DisconnectReason,
        /// Whether any byte of the request had been written: if so, the broker may have applied
        /// it, and retrying a produce is safe only with idempotence.
        sent: bool,
    },
    /// No response within the request timeout. The request may have reached the broker.
    #[error("no response within {0:?}; the request may have reached the broker")]
    TimedOut(Duration),
    /// The response to this request was larger than the configured maximum.
    #[error("the response ({size} bytes) exceeds the {max}-byte limit")]
    ResponseTooLarge {
        /// The announced size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The request could not be encoded at the chosen version.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The response could not be decoded.
    #[error("malformed response: {0}")]
    Decode(#[from] DecodeError),
}

impl RequestError {
    /// Whether the broker may have received (and applied) the request.
    pub fn may_have_reached_broker(&self) -> bool {
        match self {
            RequestError::ConnectionLost { sent, .. } => *sent,
            RequestError::TimedOut(_) | RequestError::ResponseTooLarge { .. } | RequestError::Decode(_) => true,
            RequestError::Encode(_) => false,
        }
    }
}

/// The cluster layer's error: connecting, negotiating, talking to brokers, reading metadata.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A request to a broker failed.
    #[error("{api} request to broker {broker} failed: {source}")]
    Request {
        /// The broker (its id, or its address before metadata is known).
        broker: String,
        /// The API.
        api: ApiKey,
        /// What went wrong.
        source: RequestError,
    },
    /// Connecting to a broker failed.
    #[error("cannot connect to broker {broker} at {addr}: {reason}")]
    Connect {
        /// The broker (its id, or "bootstrap").
        broker: String,
        /// The address tried.
        addr: String,
        /// Why.
        reason: DisconnectReason,
    },
    /// TLS with a broker failed: a certificate refused by either side, or a handshake the broker
    /// aborted. Not retriable: `connect` returns it after one attempt.
    #[error("TLS with broker {broker} at {addr} failed: {failure}")]
    Tls {
        /// The broker (its id, or "bootstrap").
        broker: String,
        /// The address tried.
        addr: String,
        /// What failed.
        failure: TlsFailure,
    },
    /// SASL authentication with a broker was refused: wrong credentials, a mechanism it does not
    /// enable, an expired token. Not retriable: `connect` returns it after one round trip.
    #[error("broker {broker} at {addr} refused authentication: {failure}")]
    Authentication {
        /// The broker (its id, or "bootstrap").
        broker: String,
        /// The address tried.
        addr: String,
        /// What was refused, and the mechanism.
        failure: AuthFailure,
    },
    /// The broker is in reconnect backoff after a failure; try again later.
    #[error("broker {broker} is unavailable (retry in {retry_in:?}): {reason}")]
    BrokerUnavailable {
        /// The broker id.
        broker: i32,
        /// Time left until the next connection attempt.
        retry_in: Duration,
        /// The last failure.
        reason: DisconnectReason,
    },
    /// No bootstrap server could be reached.
    #[error("no bootstrap server reachable (tried {tried}): {last}")]
    NoBootstrap {
        /// The servers tried, comma-separated.
        tried: String,
        /// The last failure.
        last: Box<ClusterError>,
    },
    /// The broker and krab have no version of an API in common.
    #[error("broker {broker} supports {api} versions {theirs}, krab supports {ours}: no common version")]
    NoCommonVersion {
        /// The broker.
        broker: String,
        /// The API.
        api: ApiKey,
        /// The broker's range.
        theirs: VersionRange,
        /// krab's range.
        ours: VersionRange,
    },
    /// The broker does not offer the API at all.
    #[error("broker {broker} does not support {api}")]
    UnsupportedApi {
        /// The broker.
        broker: String,
        /// The API.
        api: ApiKey,
    },
    /// The broker answered with an error code.
    #[error("{api} failed on broker {broker}: {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        /// The broker.
        broker: String,
        /// The API.
        api: ApiKey,
        /// The error code.
        code: ErrorCode,
        /// The broker's message, if any.
        message: Option<String>,
    },
    /// The partition is not in the current metadata.
    #[error("partition {topic}-{partition} is not in the metadata")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The partition has no leader right now (election in progress, or its leader is gone).
    #[error("partition {topic}-{partition} has no leader")]
    NoLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A broker id not present in the current metadata.
    #[error("unknown broker id {0}")]
    UnknownBroker(i32),
    /// A configuration value is invalid.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The setting.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The cluster handle was shut down.
    #[error("the cluster was shut down")]
    Shutdown,
}

impl ClusterError {
    /// The TLS failure, if this is one.
    pub fn tls_failure(&self) -> Option<&TlsFailure> {
        match self {
            ClusterError::Tls { failure, .. } => Some(failure),
            ClusterError::NoBootstrap { last, .. } => last.tls_failure(),
            _ => None,
        }
    }

    /// The SASL authentication failure, if this is one (also for a broker in backoff after one).
    pub fn auth_failure(&self) -> Option<&AuthFailure> {
        match self {
            ClusterError::Authentication { failure, .. } => Some(failure),
            ClusterError::BrokerUnavailable { reason: DisconnectReason::Authentication(failure), .. } => Some(failure),
            ClusterError::Request {
                source: RequestError::ConnectionLost { reason: DisconnectReason::Authentication(failure), .. },
                ..
            } => Some(failure),
            ClusterError::NoBootstrap { last, .. } => last.auth_failure(),
            _ => None,
        }
    }

    /// The broker error code, if the broker answered with one.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ClusterError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again (later, or after new metadata) may succeed.
    ///
    /// False for what no retry can fix: a TLS failure, no common API version, an API the broker lacks, invalid
    /// configuration, a shut-down cluster, a request krab cannot encode, a malformed or oversized
    /// response, and broker error codes Kafka marks non-retriable. True for lost connections,
    /// timeouts, brokers in backoff, missing leaders and partitions (metadata may lag), and
    /// retriable broker codes.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClusterError::BrokerUnavailable {
                reason: DisconnectReason::Tls(_) | DisconnectReason::Authentication(_),
                ..
            } => false,
            ClusterError::Request { source, .. } => match source {
                RequestError::ConnectionLost {
                    reason: DisconnectReason::Tls(_) | DisconnectReason::Authentication(_),
                    ..
                } => false,
                RequestError::ConnectionLost { .. } | RequestError::TimedOut(_) => true,
                RequestError::ResponseTooLarge { .. } | RequestError::Encode(_) | RequestError::Decode(_) => false,
            },
            ClusterError::Connect { .. }
            | ClusterError::BrokerUnavailable { .. }
            | ClusterError::UnknownPartition { .. }
            | ClusterError::NoLeader { .. }
            | ClusterError::UnknownBroker(_) => true,
            ClusterError::NoBootstrap { last, .. } => last.is_retriable(),
            ClusterError::Broker { code, .. } => code.is_retriable(),
            ClusterError::NoCommonVersion { .. }
            | ClusterError::Tls { .. }
            | ClusterError::Authentication { .. }
            | ClusterError::UnsupportedApi { .. }
            | ClusterError::Config { .. }
            | ClusterError::Shutdown => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(source: RequestError) -> ClusterError {
        ClusterError::Request { broker: "1".into(), api: ApiKey::Produce, source }
    }

    #[test]
    fn retriable_only_when_a_retry_can_help() {
        let range = VersionRange { min: 0, max: 3 };
        let never = [
            ClusterError::NoCommonVersion { broker: "1".into(), api: ApiKey::Produce, theirs: range, ours: range },
            ClusterError::UnsupportedApi { broker: "1".into(), api: ApiKey::InitProducerId },
            ClusterError::Config { key: "bootstrap.servers", message: "no servers given".into() },
            ClusterError::Shutdown,
            ClusterError::Tls {
                broker: "bootstrap".into(),
                addr: "a:1".into(),
                failure: TlsFailure::new(TlsFailureKind::UnknownCa, "UnknownIssuer"),
            },
            ClusterError::Broker {
                broker: "1".into(),
                api: ApiKey::Produce,
                code: ErrorCode::TopicAuthorizationFailed,
                message: None,
            },
            request(RequestError::ResponseTooLarge { size: 2, max: 1 }),
            ClusterError::NoBootstrap {
                tried: "a:1".into(),
                last: Box::new(ClusterError::UnsupportedApi { broker: "bootstrap".into(), api: ApiKey::Metadata }),
            },
        ];
        for e in &never {
            assert!(!e.is_retriable(), "{e}");
        }
        let eof = DisconnectReason::Eof;
        let may = [
            request(RequestError::ConnectionLost { reason: eof.clone(), sent: true }),
            request(RequestError::TimedOut(Duration::from_secs(1))),
            ClusterError::Connect { broker: "1".into(), addr: "a:1".into(), reason: eof.clone() },
            ClusterError::BrokerUnavailable { broker: 1, retry_in: Duration::ZERO, reason: eof.clone() },
            ClusterError::NoLeader { topic: "t".into(), partition: 0 },
            ClusterError::Broker {
                broker: "1".into(),
                api: ApiKey::Produce,
                code: ErrorCode::NotLeaderOrFollower,
                message: None,
            },
            ClusterError::NoBootstrap {
                tried: "a:1".into(),
                last: Box::new(ClusterError::Connect { broker: "bootstrap".into(), addr: "a:1".into(), reason: eof }),
            },
        ];
        for e in &may {
            assert!(e.is_retriable(), "{e}");
        }
    }

    #[test]
    fn an_io_error_wrapping_a_tls_failure_becomes_a_tls_disconnect() {
        let failure = TlsFailure::new(TlsFailureKind::ClientCertificateRejected, "CertificateRequired");
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, failure.clone());
        assert_eq!(DisconnectReason::from(io), DisconnectReason::Tls(failure));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(matches!(DisconnectReason::from(plain), DisconnectReason::Io { .. }));
    }
}
