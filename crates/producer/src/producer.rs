//! The user's handle: `Clone + Send + Sync`, talks to the flush loop over channels only.

use crate::command::Command;
use crate::config::ProducerConfig;
use crate::error::{Error, ErrorKind};
use crate::flush::FlushLoop;
use crate::inbox::{Handles, Inbox, Refused};
use crate::partitioner::Partitioner;
use crate::record::{DeliveryFuture, Record};
use crate::stats::{PartitionStats, Stats};
use krab_buffer::TopicPartition;
use krab_buffer::{MemoryPool, ReserveError};
use krab_cluster::{BoxResolver, Cluster, ClusterConfig, MetadataResolver, ResolverConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// The producer. Cheap to clone; every clone feeds the same flush loop.
///
/// `send` never waits on the network: it reserves the record's bytes in the buffer (waiting only
/// while the buffer is full) and hands the record to the flush loop over a channel. The flush
/// loop alone owns the send buffer; per-broker sender tasks do the I/O.
#[derive(Clone, Debug)]
pub struct Producer {
    commands: Arc<Handles>,
    memory: MemoryPool,
    max_request_size: usize,
    cluster: Cluster,
    stats: Arc<Stats>,
    max_block: Duration,
    /// Becomes true when the flush loop has stopped, however it stopped.
    stopped: watch::Receiver<bool>,
}

/// Whatever way the flush loop ends (done, or a panic in a user partitioner or a bug), this
/// guard, dropped as it ends, refuses later commands, drops the queued ones (their delivery
/// futures fail with `Closed`, a pending flush or close returns an error), closes the memory pool
/// (senders waiting for room get an error) and tells the handles the loop is gone.
struct StopGuard {
    inbox: Arc<Inbox>,
    memory: MemoryPool,
    stopped: watch::Sender<bool>,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the producer's flush loop panicked; failing every pending record");
        }
        self.inbox.close();
        let mut queued = Vec::new();
        self.inbox.take(&mut queued);
        drop(queued);
        self.memory.close();
        self.stopped.send_replace(true);
    }
}

/// Why a record was not accepted by [`Producer::try_send`]; the record is handed back.
#[derive(Debug)]
pub struct TrySendError {
    /// Why.
    pub error: Error,
    /// The record, untouched.
    pub record: Box<Record>,
}

impl std::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for TrySendError {}

impl Producer {
    /// Connects to the cluster and starts the flush loop, with the default coalescing resolver
    /// and the partitioner the configuration names.
    ///
    /// The transport follows `security.protocol`: TCP, or TLS over TCP with the `ssl.*` settings.
    pub async fn connect(config: ProducerConfig) -> Result<Producer, Error> {
        config.validate().map_err(|e| Error::with_source(ErrorKind::Config, "invalid producer configuration", e))?;
        let transport = Cluster::transport(&cluster_config(&config)?)?;
        Self::connect_with(config, transport).await
    }

    /// [`connect`](Self::connect) through a custom transport (TLS, SASL, in-memory test brokers):
    /// any `tower::Service<BrokerAddr>` yielding a byte stream.
    pub async fn connect_with<T>(config: ProducerConfig, transport: T) -> Result<Producer, Error>
    where
        T: tower::Service<krab_cluster::BrokerAddr> + Clone + Send + Sync + 'static,
        T::Response: krab_cluster::transport::Stream,
        T::Error: Into<krab_cluster::transport::BoxError>,
        T::Future: Send + 'static,
    {
        config.validate().map_err(|e| Error::with_source(ErrorKind::Config, "invalid producer configuration", e))?;
        let cluster = Cluster::connect_with(cluster_config(&config)?, transport).await?;
        let resolver = MetadataResolver::new(
            cluster.clone(),
            ResolverConfig { deadline: config.request_timeout, ..ResolverConfig::default() },
        );
        let partitioner = config.partitioner.build();
        Self::with_parts(config, cluster, BoxResolver::new(resolver), partitioner).await
    }

    /// Starts a producer over an existing cluster handle, with a resolver and partitioner of the
    /// caller's choosing (any `tower::Service<ResolveRequest>`, boxed).
    pub async fn with_parts(
        config: ProducerConfig,
        cluster: Cluster,
        resolver: BoxResolver,
        partitioner: Arc<dyn Partitioner>,
    ) -> Result<Producer, Error> {
        config.validate().map_err(|e| Error::with_source(ErrorKind::Config, "invalid producer configuration", e))?;
        let memory = MemoryPool::new(config.buffer_memory);
        let inbox = Inbox::new(QUEUE_CAPACITY);
        let max_request_size = config.max_request_size;
        let max_block = config.max_block;
        let stats = Arc::new(Stats::new(&config.client_id));
        let flush = FlushLoop::start(
            config,
            cluster.clone(),
            resolver,
            partitioner,
            inbox.clone(),
            memory.clone(),
            stats.clone(),
        )
        .await?;
        let (stopped_tx, stopped) = watch::channel(false);
        let guard = StopGuard { inbox: inbox.clone(), memory: memory.clone(), stopped: stopped_tx };
        tokio::spawn(async move {
            let _guard = guard;
            flush.run().await;
        });
        Ok(Producer {
            commands: Arc::new(Handles(inbox)),
            memory,
            max_request_size,
            cluster,
            stats,
            max_block,
            stopped,
        })
    }

    fn inbox(&self) -> &Inbox {
        &self.commands.0
    }

    /// The cluster this producer writes to.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Per-partition delivery counters.
    pub fn stats(&self) -> BTreeMap<TopicPartition, PartitionStats> {
        self.stats.snapshot()
    }

    /// Metadata requests sent by this producer's cluster handle.
    pub fn metadata_requests(&self) -> u64 {
        self.cluster.metadata_requests()
    }

    fn check_size(&self, record: &Record) -> Result<usize, Error> {
        let size = record.size();
        if size > self.max_request_size {
            return Err(Error::new(
                ErrorKind::RecordTooLarge,
                format!("a record of {size} bytes exceeds max.request.size ({})", self.max_request_size),
            ));
        }
        Ok(size)
    }

    /// Accepts a record into the buffer, waiting while the buffer is full, at most
    /// `max.block.ms` (then [`ErrorKind::Timeout`]). Resolves to the record's [`DeliveryFuture`].
    pub async fn send(&self, record: Record) -> Result<DeliveryFuture, Error> {
        match tokio::time::timeout(self.max_block, self.send_waiting(record)).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no room in the buffer within max.block.ms ({} ms)", self.max_block.as_millis()),
            )),
        }
    }

    async fn send_waiting(&self, record: Record) -> Result<DeliveryFuture, Error> {
        let size = self.check_size(&record)?;
        // Room in the buffer and in the queue to the flush loop: no waiting future is built and
        // the record is moved once. (Both bounds keep this from hogging a runtime thread: a task
        // sending in a loop waits, and so yields, once the flush loop's queue is full.)
        let reservation = match self.memory.try_reserve(size) {
            Ok(r) => r,
            Err(ReserveError::Full) => self.memory.reserve(size).await.map_err(reserve_error)?,
            Err(e) => return Err(reserve_error(e)),
        };
        // No clock read here: the flush loop stamps records as it takes them in.
        match self.inbox().try_push_record(record, reservation) {
            Ok(future) => Ok(future),
            Err(refused) if refused.full => {
                self.inbox().push_record(refused.record, refused.reservation).await.map_err(|_| closed())
            }
            Err(_) => Err(closed()),
        }
    }

    /// Accepts a record if the buffer has room now; otherwise hands it back.
    pub fn try_send(&self, record: Record) -> Result<DeliveryFuture, TrySendError> {
        let size = match self.check_size(&record) {
            Ok(s) => s,
            Err(error) => return Err(TrySendError { error, record: Box::new(record) }),
        };
        let reservation = match self.memory.try_reserve(size) {
            Ok(r) => r,
            Err(e) => return Err(TrySendError { error: reserve_error(e), record: Box::new(record) }),
        };
        match self.inbox().try_push_record(record, reservation) {
            Ok(future) => Ok(future),
            Err(Refused { full, record, .. }) => {
                let error = if full {
                    Error::new(ErrorKind::BufferFull, "the producer's queue is full")
                } else {
                    Error::new(ErrorKind::Closed, "the producer is closed")
                };
                Err(TrySendError { error, record: Box::new(record) })
            }
        }
    }

    /// Sends everything buffered now and waits until every record sent before this call is
    /// acknowledged or failed.
    pub async fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.inbox().push(Command::Flush(tx)).await.map_err(|_| closed())?;
        rx.await.map_err(|_| Error::new(ErrorKind::Closed, "the producer stopped during flush"))
    }

    /// [`flush`](Self::flush), giving up after `timeout` with [`ErrorKind::Timeout`] (the records
    /// stay buffered and keep their delivery futures).
    pub async fn flush_within(&self, timeout: Duration) -> Result<(), Error> {
        match tokio::time::timeout(timeout, self.flush()).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(ErrorKind::Timeout, format!("flush not done within {} ms", timeout.as_millis()))),
        }
    }

    /// Stops accepting records, delivers what is buffered for up to `timeout`, then fails what
    /// remains with [`ErrorKind::Closed`] (records in flight too, although their broker may
    /// still write them). Other clones of the handle can no longer send. Returns an error naming
    /// how many records were abandoned, if any; if another clone is already closing, waits (at
    /// most `timeout`) for that close to finish. `Duration::MAX` waits as long as it takes.
    pub async fn close(&self, timeout: Duration) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let deadline = crate::time::add(crate::time::now(), timeout);
        if self.inbox().push(Command::Close { deadline, done: tx }).await.is_err() {
            // Closing already (or stopped): wait for the flush loop to end.
            let mut stopped = self.stopped.clone();
            return match tokio::time::timeout(timeout, stopped.wait_for(|s| *s)).await {
                Ok(_) => Ok(()),
                Err(_) => Err(Error::new(ErrorKind::Timeout, "another close did not finish in time")),
            };
        }
        let result = match rx.await {
            Ok(0) => Ok(()),
            Ok(n) => Err(Error::new(
                ErrorKind::Closed,
                format!("close abandoned {n} undelivered records at its deadline (they failed with Closed)"),
            )),
            Err(_) => Err(Error::new(ErrorKind::Closed, "the producer's flush loop stopped before the close finished")),
        };
        self.memory.close();
        result
    }
}

/// Commands (records, mostly) queued for the flush loop at most; past that `send` waits.
const QUEUE_CAPACITY: usize = 4096;

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "the producer is closed")
}

fn reserve_error(e: ReserveError) -> Error {
    match e {
        ReserveError::TooLarge { .. } => Error::with_source(ErrorKind::RecordTooLarge, "record too large", e),
        ReserveError::Full => Error::with_source(ErrorKind::BufferFull, "buffer full", e),
        _ => Error::with_source(ErrorKind::Closed, "the producer is closed", e),
    }
}

fn cluster_config(config: &ProducerConfig) -> Result<ClusterConfig, Error> {
    let mut c = ClusterConfig::new(config.bootstrap_servers.clone());
    c.connection.client_id = Some(config.client_id.clone());
    c.connection.request_timeout = config.request_timeout;
    // Enough slots for every partition's pipelined batches on one connection.
    c.connection.max_in_flight = (config.max_in_flight * 16).max(32);
    c.metadata_max_age = config.metadata_max_age;
    c.reconnect_backoff = config.reconnect_backoff;
    c.reconnect_backoff_max = config.reconnect_backoff_max;
    c.allow_auto_topic_creation = config.allow_auto_create_topics;
    c.security = config.security.clone();
    Ok(c)
}
