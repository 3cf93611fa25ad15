//! The consumer's one user-facing error: opaque, cheap to clone, with a [`kind`](Error::kind) to
//! match on, [`is_retriable`](Error::is_retriable), and the partition it concerns, if any.

use krab_buffer::TopicPartition;
use krab_cluster::{ClusterError, ResolveError};
use krab_protocol::error_code::ErrorCode;
use std::fmt;
use std::sync::Arc;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Invalid configuration.
    Config,
    /// The cluster could not be reached or spoke something unexpected.
    Cluster,
    /// TLS with a broker failed (a certificate refused by either side); not retriable. The
    /// source is the [`krab_cluster::ClusterError::Tls`] naming the broker and the reason.
    Tls(krab_cluster::TlsFailureKind),
    /// SASL authentication with a broker was refused (wrong credentials, a mechanism the broker
    /// does not enable); not retriable. The source is the
    /// [`krab_cluster::ClusterError::Authentication`] naming the broker, the mechanism and the
    /// broker's reason.
    Authentication(krab_cluster::SaslMechanism),
    /// The broker answered with this error code for the partition.
    Broker(ErrorCode),
    /// The position is outside the partition's log and `auto.offset.reset` is `none`; the
    /// partition stops until [`Consumer::seek`](crate::Consumer::seek).
    OffsetOutOfRange,
    /// The leader's log no longer holds the position (KIP-320: it was truncated after a leader
    /// change) and `auto.offset.reset` is `none`; the partition stops until a seek.
    LogTruncation,
    /// The fetched records were malformed (bad CRC, bad lengths, decompression over the bound);
    /// the partition stops at the bad batch until [`Consumer::seek`](crate::Consumer::seek).
    CorruptRecords,
    /// A batch is larger than `max.partition.fetch.bytes` on a broker that cuts it (Fetch
    /// before v3); the partition stops until a seek or a larger setting.
    RecordTooLarge,
    /// The topic or partition does not exist.
    UnknownPartition,
    /// The call named a partition that is not assigned.
    NotAssigned,
    /// The consumer was closed.
    Closed,
}

#[derive(Debug, Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    partition: Option<TopicPartition>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// A consumer error.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { inner: Arc::new(Inner { kind, message: message.into(), partition: None, source: None }) }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Inner { kind, message: message.into(), partition: None, source: Some(Arc::new(source)) }),
        }
    }

    /// The same error, about `partition`.
    pub(crate) fn for_partition(self, partition: &TopicPartition) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.partition = Some(partition.clone());
        Self { inner: Arc::new(inner) }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The partition the error concerns, for per-partition errors.
    pub fn partition(&self) -> Option<&TopicPartition> {
        self.inner.partition.as_ref()
    }

    /// Whether trying again (after a seek, for partition errors that stop the partition) may
    /// succeed.
    pub fn is_retriable(&self) -> bool {
        match self.inner.kind {
            ErrorKind::Broker(code) => code.is_retriable(),
            ErrorKind::Cluster => true,
            _ => false,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message)
            .field("partition", &self.inner.partition)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.inner.partition {
            write!(f, "{p}: ")?;
        }
        f.write_str(&self.inner.message)?;
        if let Some(s) = &self.inner.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<ClusterError> for Error {
    fn from(e: ClusterError) -> Self {
        if let Some(tls) = e.tls_failure() {
            return Error::with_source(ErrorKind::Tls(tls.kind), "TLS failed", e);
        }
        if let Some(auth) = e.auth_failure() {
            return Error::with_source(ErrorKind::Authentication(auth.mechanism), "authentication failed", e);
        }
        match e.error_code() {
            Some(code) => Error::with_source(ErrorKind::Broker(code), "the broker refused the request", e),
            None => Error::with_source(ErrorKind::Cluster, "cluster error", e),
        }
    }
}

impl From<ResolveError> for Error {
    fn from(e: ResolveError) -> Self {
        if let ResolveError::Cluster(c) = e {
            if c.tls_failure().is_some() || c.auth_failure().is_some() {
                return Error::from(c);
            }
            return Error::with_source(ErrorKind::Cluster, "metadata could not be resolved", ResolveError::Cluster(c));
        }
        Error::with_source(ErrorKind::Cluster, "metadata could not be resolved", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_errors_name_the_partition() {
        let e = Error::new(ErrorKind::OffsetOutOfRange, "offset 7 out of range")
            .for_partition(&TopicPartition::new("t", 3));
        assert_eq!(e.to_string(), "t-3: offset 7 out of range");
        assert_eq!(e.partition(), Some(&TopicPartition::new("t", 3)));
        assert!(!e.is_retriable());
        let shared = Error::new(ErrorKind::Cluster, "down");
        let copy = shared.clone().for_partition(&TopicPartition::new("u", 0));
        assert_eq!(copy.kind(), ErrorKind::Cluster);
        assert!(copy.is_retriable());
        assert_eq!(shared.partition(), None);
    }
}
