//! A negotiated broker connection: a [`BrokerClient`] plus the versions agreed with the broker.

use crate::connection::{BrokerClient, ConnectionConfig, handshake_to};
use crate::error::{ClusterError, DisconnectReason};
use crate::sasl::{Reauth, authenticate};
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
    /// With SASL: the session's re-authentication.
    sasl: Option<Arc<Reauth>>,
}

impl Broker {
    /// Connects to `addr` through `transport`, spawns the connection driver on the current tokio
    /// runtime, and negotiates API versions. `id` is the broker id when known (not for bootstrap).
    ///
    /// With `config.sasl`, it then authenticates (SaslHandshake, SaslAuthenticate): a refusal is
    /// [`ClusterError::Authentication`]. When the broker gives the session a lifetime (KIP-368),
    /// the first request sent after 85-95% of it re-authenticates on the same connection first.
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
        let sasl_config = config.sasl.clone();
        let peer = crate::telemetry::Peer::new(id, &addr.to_string(), config.client_id.as_deref());
        let (client, connection) = handshake_to(io, config, peer);
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
        let sasl = match sasl_config {
            None => None,
            Some(sasl) => {
                let lifetime = match authenticate(&client, &versions, &sasl, &broker_name(), &addr.to_string()).await {
                    Ok(lifetime) => lifetime,
                    Err(e) => {
                        client.close();
                        return Err(e);
                    }
                };
                tracing::debug!(broker = %label, mechanism = %sasl.mechanism, ?lifetime, "authenticated");
                Some(Arc::new(Reauth::new(sasl, lifetime)))
            }
        };
        tracing::debug!(broker = %label, api_versions = versions.negotiated_with, "connected");
        Ok(Broker { id, addr, label, client, versions: Arc::new(versions), sasl })
    }

    /// Re-authenticates first if the SASL session is due, then holds the session's gate shared
    /// while `f` runs.
    async fn gated<T>(
        &self,
        f: impl Future<Output = Result<T, crate::error::RequestError>>,
        api: krab_protocol::ApiKey,
    ) -> Result<T, ClusterError> {
        let to_cluster = |source| ClusterError::Request { broker: self.label.to_string(), api, source };
        match &self.sasl {
            None => f.await.map_err(to_cluster),
            Some(reauth) => {
                let broker = self.id.map_or_else(|| "bootstrap".to_string(), |i| i.to_string());
                reauth.run_if_due(&self.client, &self.versions, &broker, &self.addr.to_string()).await?;
                let _shared = reauth.gate.read().await;
                f.await.map_err(to_cluster)
            }
        }
    }

    /// How many times this connection re-authenticated its SASL session (KIP-368); 0 without
    /// SASL or while the first session lasts.
    pub fn reauthentications(&self) -> u64 {
        self.sasl.as_ref().map_or(0, |r| r.done.load(std::sync::atomic::Ordering::Relaxed))
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
        self.gated(self.client.send(request, version), R::KEY).await
    }

    /// Sends a request that gets no response (a produce with acks=0); resolves once written.
    pub async fn send_no_response<R: Request>(&self, request: &R, version: i16) -> Result<(), ClusterError> {
        self.gated(self.client.send_no_response(request, version), R::KEY).await
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
