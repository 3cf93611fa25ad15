//! The producer's one user-facing error: opaque, cheap to clone (one failure may fail many
//! records), with a [`kind`](Error::kind) to match on and [`is_retriable`](Error::is_retriable).

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
    /// The broker refused the records with this error code.
    Broker(ErrorCode),
    /// The record was not acknowledged within `delivery.timeout.ms`.
    DeliveryTimeout,
    /// The send buffer is full (only from [`Producer::try_send`](crate::Producer::try_send)).
    BufferFull,
    /// The record is larger than `max.request.size` or `buffer.memory` allows.
    RecordTooLarge,
    /// The topic does not exist (and was not auto-created).
    UnknownTopic,
    /// The record names a partition the topic does not have.
    InvalidPartition,
    /// The producer was closed before the record was delivered.
    Closed,
    /// The record could not be encoded.
    Encode,
    /// A wait bounded by the caller or by `max.block.ms` ran out (buffer room, a flush).
    Timeout,
}

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// Set when the source knows better than the kind (a cluster error decides for itself).
    retriable: Option<bool>,
}

/// A producer error.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { inner: Arc::new(Inner { kind, message: message.into(), source: None, retriable: None }) }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Inner { kind, message: message.into(), source: Some(Box::new(source)), retriable: None }),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    fn retriable(mut self, retriable: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.retriable = Some(retriable);
        }
        self
    }

    /// Whether sending the record again may succeed. An error from the cluster layer answers as
    /// that error does: a version mismatch, a missing API or a bad setting is not retriable.
    pub fn is_retriable(&self) -> bool {
        if let Some(r) = self.inner.retriable {
            return r;
        }
        match self.inner.kind {
            ErrorKind::Broker(code) => code.is_retriable(),
            ErrorKind::DeliveryTimeout | ErrorKind::BufferFull | ErrorKind::Cluster => true,
            _ => false,
        }
    }

    /// Whether this is a delivery timeout.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::DeliveryTimeout
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        let retriable = e.is_retriable();
        if let Some(tls) = e.tls_failure() {
            return Error::with_source(ErrorKind::Tls(tls.kind), "TLS failed", e).retriable(false);
        }
        if let Some(auth) = e.auth_failure() {
            let kind = ErrorKind::Authentication(auth.mechanism);
            return Error::with_source(kind, "authentication failed", e).retriable(false);
        }
        let error = match e.error_code() {
            Some(code) => Error::with_source(ErrorKind::Broker(code), "the broker refused the request", e),
            None => Error::with_source(ErrorKind::Cluster, "cluster error", e),
        };
        error.retriable(retriable)
    }
}

impl From<ResolveError> for Error {
    fn from(e: ResolveError) -> Self {
        let retriable = match &e {
            ResolveError::Cluster(c) => c.is_retriable(),
            ResolveError::Shutdown => false,
            _ => true,
        };
        if let ResolveError::Cluster(c) = e {
            if c.tls_failure().is_some() || c.auth_failure().is_some() {
                return Error::from(c);
            }
            return Error::with_source(ErrorKind::Cluster, "metadata could not be resolved", ResolveError::Cluster(c))
                .retriable(retriable);
        }
        Error::with_source(ErrorKind::Cluster, "metadata could not be resolved", e).retriable(retriable)
    }
}
