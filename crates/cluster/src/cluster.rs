//! The cluster: bootstrap, broker registry, lazy connection pool, metadata snapshots.

use crate::broker::Broker;
use crate::connection::ConnectionConfig;
use crate::error::{ClusterError, DisconnectReason};
use crate::security::SecurityConfig;
use crate::snapshot::ClusterSnapshot;
use crate::transport::{BrokerAddr, TcpTransport};
use arc_swap::ArcSwap;
use krab_protocol::messages::{MetadataRequest, metadata::MetadataRequestTopic};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
// tokio's clock: the same as std's at run time, and paused with the runtime in tests, so backoffs
// measured here agree with the timers that wait them out.
use tokio::sync::{OnceCell, watch};
use tokio::time::Instant;

/// Settings of a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where to start (`bootstrap.servers`), tried in order.
    pub bootstrap: Vec<BrokerAddr>,
    /// Per-connection settings (client id, in-flight bound, timeouts, max response size).
    pub connection: ConnectionConfig,
    /// Metadata older than this is refreshed in the background (`metadata.max.age.ms`).
    pub metadata_max_age: Duration,
    /// First reconnect delay after a failure (`reconnect.backoff.ms`).
    pub reconnect_backoff: Duration,
    /// Largest reconnect delay (`reconnect.backoff.max.ms`).
    pub reconnect_backoff_max: Duration,
    /// Connections unused this long are closed (`connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// Whether Metadata requests may auto-create topics (`allow.auto.create.topics`).
    pub allow_auto_topic_creation: bool,
    /// How many rounds over the bootstrap list before giving up.
    pub bootstrap_rounds: u32,
    /// `security.protocol` and `ssl.*`: the transport [`Cluster::connect`] makes.
    pub security: SecurityConfig,
}

impl ClusterConfig {
    /// Defaults (Kafka's where Kafka has one) for the given bootstrap servers.
    pub fn new(bootstrap: Vec<BrokerAddr>) -> Self {
        Self {
            bootstrap,
            connection: ConnectionConfig::default(),
            metadata_max_age: Duration::from_secs(300),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(540),
            allow_auto_topic_creation: false,
            bootstrap_rounds: 3,
            security: SecurityConfig::default(),
        }
    }
}

enum Slot {
    Connecting(Arc<OnceCell<Result<Broker, ClusterError>>>),
    /// `failures`: the unhealthy connection attempts in a row before this one, carried over in
    /// case this connection dies young too.
    Ready {
        broker: Broker,
        last_used: Instant,
        connected_at: Instant,
        failures: u32,
    },
    Backoff {
        until: Instant,
        failures: u32,
        reason: DisconnectReason,
    },
}

/// A type-erased transport, as [`Cluster::transport`] makes it.
pub type BoxTransport =
    tower::util::BoxCloneSyncService<BrokerAddr, Box<dyn crate::transport::Stream>, crate::transport::BoxError>;

struct Inner {
    config: ClusterConfig,
    transport: BoxTransport,
    snapshot: ArcSwap<ClusterSnapshot>,
    changed: watch::Sender<u64>,
    pool: Mutex<HashMap<i32, Slot>>,
    /// The bootstrap connection and when it was last used (closed when idle, like the pool's).
    bootstrap: Mutex<Option<(Broker, Instant)>>,
    metadata_requests: AtomicU64,
    /// Serialises merges (load, merge, publish) so that no response's merge is lost to a
    /// concurrent one. Held for the merge only, never across I/O: requests go out in parallel.
    merge: Mutex<()>,
}

/// A handle to a Kafka cluster: cheap to clone, shareable across tasks.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("Cluster")
            .field("cluster_id", &s.cluster_id)
            .field("brokers", &s.brokers.len())
            .field("generation", &s.generation)
            .finish()
    }
}

impl Cluster {
    /// Connects over the transport `config.security` asks for (TCP, or TLS over TCP; SASL on top
    /// for `SASL_*`): bootstraps and fetches the broker list.
    pub async fn connect(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let transport = Self::transport(&config)?;
        Self::connect_with(config, transport).await
    }

    /// The transport `config.security` asks for: TCP for `PLAINTEXT` and `SASL_PLAINTEXT`,
    /// [`TlsTransport`] for `SSL` and `SASL_SSL`
    /// (PEM files are read now: a bad one is a [`ClusterError::Config`] naming it). Connecting,
    /// and the TLS handshake, are bounded by the request timeout.
    ///
    /// [`TlsTransport`]: crate::TlsTransport
    pub fn transport(config: &ClusterConfig) -> Result<BoxTransport, ClusterError> {
        let timeout = config.connection.request_timeout;
        let security = &config.security;
        security.validate().map_err(|e| ClusterError::Config { key: e.key, message: e.reason })?;
        match security.protocol {
            p if !p.is_tls() => Ok(BoxTransport::new(crate::transport::boxed(TcpTransport::new(timeout)))),
            #[cfg(feature = "tls")]
            _ => {
                let tls = crate::tls::TlsTransport::new(&security.tls, timeout)?;
                Ok(BoxTransport::new(crate::transport::boxed(tls)))
            }
            #[cfg(not(feature = "tls"))]
            _ => Err(ClusterError::Config {
                key: "security.protocol",
                message: "SSL needs krab-cluster's `tls` feature, which this build lacks".into(),
            }),
        }
    }

    /// Connects through a custom transport (TLS, SASL, in-memory test brokers, ...).
    pub async fn connect_with<T>(config: ClusterConfig, transport: T) -> Result<Cluster, ClusterError>
    where
        T: tower::Service<BrokerAddr> + Clone + Send + Sync + 'static,
        T::Response: crate::transport::Stream,
        T::Error: Into<crate::transport::BoxError>,
        T::Future: Send + 'static,
    {
        if config.bootstrap.is_empty() {
            return Err(ClusterError::Config { key: "bootstrap.servers", message: "no servers given".into() });
        }
        let mut config = config;
        if config.connection.sasl.is_none() {
            config.connection.sasl =
                config.security.sasl_config().map_err(|e| ClusterError::Config { key: e.key, message: e.reason })?;
        }
        let transport = BoxTransport::new(crate::transport::boxed(transport));
        let (changed, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            config,
            transport,
            snapshot: ArcSwap::from_pointee(ClusterSnapshot::default()),
            changed,
            pool: Mutex::new(HashMap::new()),
            bootstrap: Mutex::new(None),
            metadata_requests: AtomicU64::new(0),
            merge: Mutex::new(()),
        });
        let cluster = Cluster { inner };
        cluster.bootstrap().await?;
        cluster.fetch_metadata_for(Some(&[]), "bootstrap").await?;
        tokio::spawn(maintain(Arc::downgrade(&cluster.inner)));
        Ok(cluster)
    }

    /// The current metadata. Lock-free: an atomic load of an `Arc`.
    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.inner.snapshot.load_full()
    }

    /// Notifies on every new snapshot (the value is its generation).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// Metadata requests this cluster handle has sent so far.
    pub fn metadata_requests(&self) -> u64 {
        self.inner.metadata_requests.load(Ordering::Relaxed)
    }

    async fn bootstrap(&self) -> Result<Broker, ClusterError> {
        let cfg = &self.inner.config;
        let mut last = None;
        for round in 0..cfg.bootstrap_rounds.max(1) {
            if round > 0 {
                tokio::time::sleep(backoff(cfg.reconnect_backoff, cfg.reconnect_backoff_max, round)).await;
            }
            for addr in &cfg.bootstrap {
                match Broker::connect(self.inner.transport.clone(), addr.clone(), None, cfg.connection.clone()).await {
                    Ok(b) => {
                        *lock(&self.inner.bootstrap) = Some((b.clone(), Instant::now()));
                        return Ok(b);
                    }
                    // A TLS or authentication failure is no outage: trying again, or other
                    // servers of the same cluster with the same settings, cannot help. It is
                    // returned at once.
                    Err(e @ (ClusterError::Tls { .. } | ClusterError::Authentication { .. })) => return Err(e),
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "bootstrap server failed");
                        last = Some(e);
                    }
                }
            }
        }
        Err(ClusterError::NoBootstrap {
            tried: cfg.bootstrap.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            last: Box::new(last.unwrap_or(ClusterError::Shutdown)),
        })
    }

    /// A connection to broker `id`, made on first use. Fails fast while the broker is in reconnect
    /// backoff, so that a dead broker never blocks callers that need other brokers.
    pub async fn broker(&self, id: i32) -> Result<Broker, ClusterError> {
        enum Next {
            Join(Arc<OnceCell<Result<Broker, ClusterError>>>),
            Connect(Arc<OnceCell<Result<Broker, ClusterError>>>, u32),
        }
        let next = {
            let mut pool = lock(&self.inner.pool);
            let cfg = &self.inner.config;
            let failures = match pool.get_mut(&id) {
                Some(Slot::Ready { broker, last_used, .. }) if broker.is_connected() => {
                    *last_used = Instant::now();
                    return Ok(broker.clone());
                }
                Some(Slot::Ready { broker, connected_at, failures, .. }) => {
                    // The connection died. One that lived long was healthy: reconnect at once.
                    // One that died young (a broker that accepts and then drops connections)
                    // counts as a failed attempt: the next one waits the backoff, measured from
                    // this connection's attempt, as after a refused connect.
                    let now = Instant::now();
                    if now.duration_since(*connected_at) >= cfg.reconnect_backoff_max {
                        Ok(0)
                    } else {
                        let until =
                            *connected_at + backoff(cfg.reconnect_backoff, cfg.reconnect_backoff_max, *failures);
                        let failures = *failures + 1;
                        if now < until {
                            let reason = broker.client().close_reason().unwrap_or(DisconnectReason::Eof);
                            tracing::debug!(broker = id, error = %reason, "connection died young; backing off");
                            pool.insert(id, Slot::Backoff { until, failures, reason: reason.clone() });
                            return Err(ClusterError::BrokerUnavailable { broker: id, retry_in: until - now, reason });
                        }
                        Ok(failures)
                    }
                }
                Some(Slot::Connecting(cell)) => Err(cell.clone()),
                Some(Slot::Backoff { until, failures, reason }) => {
                    let now = Instant::now();
                    if now < *until {
                        return Err(ClusterError::BrokerUnavailable {
                            broker: id,
                            retry_in: *until - now,
                            reason: reason.clone(),
                        });
                    }
                    Ok(*failures)
                }
                // Never connected: try at once.
                None => Ok(0),
            };
            match failures {
                Err(cell) => Next::Join(cell),
                Ok(failures) => {
                    let cell = Arc::new(OnceCell::new());
                    pool.insert(id, Slot::Connecting(cell.clone()));
                    Next::Connect(cell, failures)
                }
            }
        };
        let (cell, failures) = match next {
            // Another caller is connecting: share its outcome. Should that caller give up (its
            // future dropped mid-connect), the cell is left empty and this caller connects.
            Next::Join(cell) => (cell, 0),
            Next::Connect(cell, failures) => (cell, failures),
        };
        let this = self.clone();
        cell.get_or_init(|| async move { this.connect_broker(id, failures).await }).await.clone()
    }

    async fn connect_broker(&self, id: i32, failures: u32) -> Result<Broker, ClusterError> {
        let attempt = Instant::now();
        let snapshot = self.snapshot();
        let result = match snapshot.brokers.get(&id) {
            None => Err(ClusterError::UnknownBroker(id)),
            Some(info) => {
                let cfg = &self.inner.config;
                Broker::connect(self.inner.transport.clone(), info.addr.clone(), Some(id), cfg.connection.clone()).await
            }
        };
        let cfg = &self.inner.config;
        let mut pool = lock(&self.inner.pool);
        match &result {
            Ok(broker) => {
                let slot =
                    Slot::Ready { broker: broker.clone(), last_used: Instant::now(), connected_at: attempt, failures };
                pool.insert(id, slot);
            }
            Err(e) => {
                let reason = match e {
                    ClusterError::Connect { reason, .. } => reason.clone(),
                    ClusterError::Tls { failure, .. } => DisconnectReason::Tls(failure.clone()),
                    ClusterError::Authentication { failure, .. } => DisconnectReason::Authentication(failure.clone()),
                    other => {
                        DisconnectReason::Io { kind: std::io::ErrorKind::Other, message: other.to_string().into() }
                    }
                };
                let delay = backoff(cfg.reconnect_backoff, cfg.reconnect_backoff_max, failures);
                tracing::debug!(broker = id, ?delay, error = %e, "broker connection failed; backing off");
                pool.insert(id, Slot::Backoff { until: Instant::now() + delay, failures: failures + 1, reason });
            }
        }
        result
    }

    /// A connection to broker `id` of its own, outside the pool and its backoff, with this
    /// request timeout: a group coordinator may hold a JoinGroup for a whole rebalance timeout,
    /// longer than `request.timeout.ms`. The caller owns it; it closes when dropped.
    pub async fn dedicated(&self, id: i32, request_timeout: Duration) -> Result<Broker, ClusterError> {
        let addr = match self.snapshot().brokers.get(&id) {
            Some(info) => info.addr.clone(),
            None => return Err(ClusterError::UnknownBroker(id)),
        };
        let mut config = self.inner.config.connection.clone();
        config.request_timeout = request_timeout;
        Broker::connect(self.inner.transport.clone(), addr, Some(id), config).await
    }

    /// A connection to any broker: one already open if possible, else a known broker, else the
    /// bootstrap servers again.
    pub async fn any_broker(&self) -> Result<Broker, ClusterError> {
        let open = {
            let pool = lock(&self.inner.pool);
            let mut ready: Vec<&Broker> = pool
                .values()
                .filter_map(|s| match s {
                    Slot::Ready { broker, .. } if broker.is_connected() => Some(broker),
                    _ => None,
                })
                .collect();
            ready.sort_by_key(|b| b.client().in_flight());
            ready.first().map(|b| (*b).clone())
        };
        if let Some(b) = open {
            return Ok(b);
        }
        let bootstrap = {
            let mut bootstrap = lock(&self.inner.bootstrap);
            match &mut *bootstrap {
                Some((b, last_used)) if b.is_connected() => {
                    *last_used = Instant::now();
                    Some(b.clone())
                }
                _ => None,
            }
        };
        if let Some(b) = bootstrap {
            return Ok(b);
        }
        let ids: Vec<i32> = self.snapshot().brokers.keys().copied().collect();
        let start = if ids.is_empty() { 0 } else { fastrand::usize(..ids.len()) };
        let mut last = None;
        for n in 0..ids.len() {
            match self.broker(ids[(start + n) % ids.len()]).await {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        match self.bootstrap().await {
            Ok(b) => Ok(b),
            Err(e) => Err(last.unwrap_or(e)),
        }
    }

    /// Fetches metadata for `topics` (`None`: every topic) from any broker, merges it into the
    /// snapshot and publishes the result. Every call sends exactly one Metadata request; use the
    /// [`MetadataResolver`](crate::MetadataResolver) to coalesce callers.
    pub async fn fetch_metadata(&self, topics: Option<&[String]>) -> Result<Arc<ClusterSnapshot>, ClusterError> {
        self.fetch_metadata_for(topics, "explicit").await
    }

    /// [`fetch_metadata`](Self::fetch_metadata), saying why (`reason`, a metric label and an
    /// event field): `bootstrap`, `periodic`, `resolve` (topics not known yet), `stale` (a
    /// partition's leader failed) or `explicit`.
    pub(crate) async fn fetch_metadata_for(
        &self,
        topics: Option<&[String]>,
        reason: &'static str,
    ) -> Result<Arc<ClusterSnapshot>, ClusterError> {
        let started = Instant::now();
        let result = self.fetch_metadata_once(topics, reason).await;
        match &result {
            Ok((next, answered)) => tracing::debug!(
                reason,
                requested = topics.map_or(-1, |t| t.len() as i64),
                topics = *answered,
                brokers = next.brokers.len(),
                generation = next.generation,
                took_us = started.elapsed().as_micros() as u64,
                "metadata refreshed"
            ),
            Err(e) => tracing::debug!(reason, error = %e, "metadata refresh failed"),
        }
        result.map(|(next, _)| next)
    }

    async fn fetch_metadata_once(
        &self,
        topics: Option<&[String]>,
        reason: &'static str,
    ) -> Result<(Arc<ClusterSnapshot>, usize), ClusterError> {
        let broker = self.any_broker().await?;
        let allow = self.inner.config.allow_auto_topic_creation;
        self.inner.metadata_requests.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::metadata_refresh(self.inner.config.connection.client_id.as_deref(), reason);
        let response = broker
            .call(|version| MetadataRequest {
                topics: match topics {
                    None if version >= 1 => None,
                    // Version 0 has no "all topics" null: an empty list meant all.
                    None => Some(Vec::new()),
                    Some(names) => Some(
                        names
                            .iter()
                            .map(|n| MetadataRequestTopic { name: Some(n.clone()), ..Default::default() })
                            .collect(),
                    ),
                },
                allow_auto_topic_creation: if version >= 4 { allow } else { true },
                ..Default::default()
            })
            .await?;
        // Responses may come back in any order (a hung broker must not delay a refresh sent to a
        // healthy one); the merge keeps every partition at its newest leader epoch whatever the
        // order, so only the merge itself is serialised.
        let next = {
            let _merge = lock(&self.inner.merge);
            let next = Arc::new(self.snapshot().merge(&response, topics.is_none()));
            self.inner.snapshot.store(next.clone());
            self.inner.changed.send_replace(next.generation);
            next
        };
        // Connections to brokers that left the cluster are closed.
        lock(&self.inner.pool).retain(|id, _| next.brokers.contains_key(id));
        Ok((next, response.topics.len()))
    }

    /// Broker-level view for tests and metrics: the ids with an open connection.
    pub fn connected_brokers(&self) -> Vec<i32> {
        let pool = lock(&self.inner.pool);
        let mut ids: Vec<i32> = pool
            .iter()
            .filter_map(|(id, s)| match s {
                Slot::Ready { broker, .. } if broker.is_connected() => Some(*id),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The connection to a partition's leader and the leader epoch it was resolved at, from the
    /// current snapshot. Fails fast when the partition has no leader or the leader is in
    /// reconnect backoff, so one unreachable broker never holds up partitions led by others.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<(Broker, i32), ClusterError> {
        let snapshot = self.snapshot();
        let p = snapshot
            .partition(topic, partition)
            .ok_or_else(|| ClusterError::UnknownPartition { topic: topic.to_string(), partition })?;
        let leader = p.leader.ok_or_else(|| ClusterError::NoLeader { topic: topic.to_string(), partition })?;
        let epoch = p.leader_epoch;
        Ok((self.broker(leader).await?, epoch))
    }

    fn close_idle(&self) {
        let idle = self.inner.config.idle_timeout;
        let now = Instant::now();
        let mut pool = lock(&self.inner.pool);
        pool.retain(|id, slot| match slot {
            Slot::Ready { broker, last_used, .. }
                if now.duration_since(*last_used) >= idle && broker.client().in_flight() == 0 =>
            {
                tracing::debug!(broker = id, "closing idle connection");
                broker.client().close();
                false
            }
            _ => true,
        });
        drop(pool);
        let mut bootstrap = lock(&self.inner.bootstrap);
        if let Some((b, last_used)) = &*bootstrap {
            if !b.is_connected() || (now.duration_since(*last_used) >= idle && b.client().in_flight() == 0) {
                tracing::debug!(broker = %b.label(), "closing the idle bootstrap connection");
                b.client().close();
                *bootstrap = None;
            }
        }
    }
}

/// Background upkeep: refresh metadata at max age, close idle connections. Ends when the last
/// cluster handle is dropped.
async fn maintain(weak: Weak<Inner>) {
    let (age, idle) = match weak.upgrade() {
        Some(inner) => (inner.config.metadata_max_age, inner.config.idle_timeout),
        None => return,
    };
    let tick = age.min(idle / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = weak.upgrade() else { return };
        let cluster = Cluster { inner };
        cluster.close_idle();
        let snapshot = cluster.snapshot();
        if snapshot.updated_at.elapsed() >= age {
            let known: Vec<String> = snapshot.topics.keys().cloned().collect();
            // A failure is traced by the fetch itself ("metadata refresh failed").
            let _ = cluster.fetch_metadata_for(Some(&known), "periodic").await;
        }
    }
}

/// Exponential backoff with ±20 % jitter: `base * 2^failures`, at most `max`.
pub(crate) fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.min(16)).min(max);
    let jitter = 0.8 + fastrand::f64() * 0.4;
    exp.mul_f64(jitter)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps_with_jitter() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for failures in 0..20 {
            let d = backoff(base, max, failures);
            let nominal = base.saturating_mul(1 << failures.min(16)).min(max);
            assert!(d >= nominal.mul_f64(0.8) && d <= nominal.mul_f64(1.2), "{failures}: {d:?}");
        }
    }
}
