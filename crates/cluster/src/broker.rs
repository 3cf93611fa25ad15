//! A negotiated broker connection: a [`BrokerClient`] plus the versions agreed with the broker.

use crate::connection::{BrokerClient, ConnectionConfig, handshake};
use crate::error::{ClusterError, DisconnectReason};
use crate::transport::{BoxError, BrokerAddr, Stream};
use crate::versions::{ApiVersions, negotiate};
use krab_protocol::Request;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::ServiceExt;

/// A connected broker whose API versions are known. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Broker {
    id: Option<i32>,
    addr: BrokerAddr,
    label: Arc<str>,
    client: BrokerClient,
    versions: Arc<ApiVersions>,
}

impl Broker {
    /// Connects to `addr` through `transport`, spawns the connection driver on the current tokio
    /// runtime, and negotiates API versions. `id` is the broker id when known (not for bootstrap).
    pub async fn connect<T>(
        transport: T,
        addr: BrokerAddr,
        id: Option<i32>,
        config: ConnectionConfig,
    ) -> Result<Broker, ClusterError>
    where
        T: tower::Service<BrokerAddr> + Send,
        T::Response: Stream,
        T::Error: Into<BoxError>,
        T::Future: Send,
    {
        let label: Arc<str> = match id {
            Some(id) => format!("{id} ({addr})").into(),
            None => format!("bootstrap {addr}").into(),
        };
        let broker_name = || id.map_or_else(|| "bootstrap".to_string(), |i| i.to_string());
        let connect_err = |reason: DisconnectReason| match reason {
            DisconnectReason::Tls(failure) => {
                ClusterError::Tls { broker: broker_name(), addr: addr.to_string(), failure }
            }
            reason => ClusterError::Connect { broker: broker_name(), addr: addr.to_string(), reason },
        };
        let mut transport = transport;
        let io = match transport.ready().await {
            Ok(t) => t.call(addr.clone()).await,
            Err(e) => Err(e),
        }
        .map_err(|e| connect_err(io_reason(e.into())))?;
        let (client, connection) = handshake(io, config);
        let broker_label = label.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(broker = %broker_label, error = %e, "broker connection closed");
            }
        });
        // A broker that refuses the TLS handshake late (TLS 1.3: a client certificate it wants is
        // missing) fails the first request: that is still a TLS failure of connecting.
        let versions = negotiate(&client, &label).await.map_err(|e| match e {
            ClusterError::Request {
                source: crate::error::RequestError::ConnectionLost { reason: DisconnectReason::Tls(failure), .. },
                ..
            } => ClusterError::Tls { broker: broker_name(), addr: addr.to_string(), failure },
            other => other,
        })?;
        tracing::debug!(broker = %label, api_versions = versions.negotiated_with, "connected");
        Ok(Broker { id, addr, label, client, versions: Arc::new(versions) })
    }

    /// The broker id, if known.
    pub fn id(&self) -> Option<i32> {
        self.id
    }

    /// The broker's address.
    pub fn addr(&self) -> &BrokerAddr {
        &self.addr
    }

    /// The underlying connection handle.
    pub fn client(&self) -> &BrokerClient {
        &self.client
    }

    /// The negotiated versions.
    pub fn versions(&self) -> &ApiVersions {
        &self.versions
    }

    /// Whether the connection is still usable.
    pub fn is_connected(&self) -> bool {
        !self.client.is_closed()
    }

    /// The version to use for request type `R`.
    pub fn version_of<R: Request>(&self) -> Result<i16, ClusterError> {
        self.versions.version_for(R::KEY)
    }

    /// Sends `request` at `version`.
    pub async fn send<R: Request>(&self, request: &R, version: i16) -> Result<R::Response, ClusterError> {
        self.client.send(request, version).await.map_err(|source| ClusterError::Request {
            broker: self.label.to_string(),
            api: R::KEY,
            source,
        })
    }

    /// Builds the request for the negotiated version and sends it.
    pub async fn call<R: Request>(&self, build: impl FnOnce(i16) -> R) -> Result<R::Response, ClusterError> {
        let version = self.version_of::<R>()?;
        self.send(&build(version), version).await
    }

    /// A label for logs and errors: `id (host:port)`.
    pub fn label(&self) -> &str {
        &self.label
    }
}

fn io_reason(e: BoxError) -> DisconnectReason {
    match e.downcast::<std::io::Error>() {
        Ok(io) => DisconnectReason::from(*io),
        Err(other) => DisconnectReason::Io { kind: std::io::ErrorKind::Other, message: other.to_string().into() },
    }
}

/// Sends any request at the highest version both sides support.
impl<R> tower::Service<R> for Broker
where
    R: Request + Send + Sync + 'static,
    R::Response: Send,
{
    type Response = R::Response;
    type Error = ClusterError;
    type Future = Pin<Box<dyn Future<Output = Result<R::Response, ClusterError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ClusterError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let version = this.version_of::<R>()?;
            this.send(&request, version).await
        })
    }
}
