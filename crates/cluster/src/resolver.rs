//! The topic resolver: a `tower::Service<ResolveRequest>` answering with a metadata snapshot,
//! that coalesces callers so that a burst of failing partitions costs one Metadata request.
//!
//! How the default [`MetadataResolver`] coalesces:
//! - A request the current snapshot already satisfies is answered at once, with no I/O.
//! - Otherwise it waits in a short *pile-on window* so that callers failing together (many
//!   partitions of a broker that just lost leadership) share one request for the union of their
//!   topics. Never more than one Metadata request is in flight, and two requests are at least
//!   the *minimum interval* apart.
//! - A caller arriving while a request is in flight shares its result when that request covers
//!   its topics, and otherwise joins the next one.
//! - Every call has a deadline.
//!
//! Users may swap the resolver for their own (anything implementing the service, e.g. a static
//! table; see `examples/static_resolver.rs`) and wrap it in tower layers (timeout, rate limit).

use crate::cluster::Cluster;
use crate::error::ClusterError;
use crate::snapshot::ClusterSnapshot;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// What a caller needs resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    /// Topics whose partition leaders are needed.
    pub topics: Vec<String>,
    /// The generation of a snapshot the caller found out of date (it hit a rebalancing error
    /// using it): the answer will be a newer snapshot. `None`: any snapshot that knows the topics.
    pub stale_generation: Option<u64>,
}

impl ResolveRequest {
    /// Metadata for `topics`, from the current snapshot if it has them.
    pub fn topics<I, S>(topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { topics: topics.into_iter().map(Into::into).collect(), stale_generation: None }
    }

    /// Metadata for `topics` newer than snapshot `generation`, which proved stale.
    pub fn refresh<I, S>(topics: I, generation: u64) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { topics: topics.into_iter().map(Into::into).collect(), stale_generation: Some(generation) }
    }

    /// Whether `snapshot` answers this request: newer than the stale generation, and settled on
    /// every topic: usable (no error, partitions known) or refused for good (a non-retriable
    /// error such as TOPIC_AUTHORIZATION_FAILED). A topic missing, or carrying a retriable error
    /// (LEADER_NOT_AVAILABLE while Kafka auto-creates it, UNKNOWN_TOPIC_OR_PARTITION while
    /// metadata lags its creation), needs a fresh Metadata request.
    pub fn is_satisfied_by(&self, snapshot: &ClusterSnapshot) -> bool {
        self.stale_generation.is_none_or(|g| snapshot.generation > g)
            && self.topics.iter().all(|t| {
                snapshot.topics.get(t).is_some_and(|info| {
                    if info.error.is_ok() { !info.partitions.is_empty() } else { !info.error.is_retriable() }
                })
            })
    }
}

/// Why a resolve failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The Metadata request failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// No answer before the deadline.
    #[error("metadata not resolved within {0:?}")]
    DeadlineExceeded(Duration),
    /// The resolver has stopped.
    #[error("the resolver has shut down")]
    Shutdown,
    /// An error from a tower layer wrapped around the resolver.
    #[error("{0}")]
    Layer(Arc<dyn std::error::Error + Send + Sync>),
}

impl From<Box<dyn std::error::Error + Send + Sync>> for ResolveError {
    /// Recovers the typed error from a layer's boxed error (`tower::timeout` and friends).
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        match e.downcast::<ResolveError>() {
            Ok(r) => *r,
            Err(e) => match e.downcast::<ClusterError>() {
                Ok(c) => ResolveError::Cluster(*c),
                Err(e) => ResolveError::Layer(Arc::from(e)),
            },
        }
    }
}

/// Settings of the [`MetadataResolver`].
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// How long the first caller waits for others to pile on before the request goes out.
    pub pile_on: Duration,
    /// The minimum time between two Metadata requests (`retry.backoff.ms` for metadata).
    pub min_interval: Duration,
    /// The deadline of every call.
    pub deadline: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            pile_on: Duration::from_millis(10),
            min_interval: Duration::from_millis(100),
            deadline: Duration::from_secs(30),
        }
    }
}

type Reply = oneshot::Sender<Result<Arc<ClusterSnapshot>, ResolveError>>;

struct Job {
    request: ResolveRequest,
    reply: Reply,
}

/// The default resolver: coalescing, single-flight, over a [`Cluster`]. Cheap to clone.
#[derive(Clone)]
pub struct MetadataResolver {
    cluster: Cluster,
    jobs: mpsc::UnboundedSender<Job>,
    sent: Arc<AtomicU64>,
    deadline: Duration,
}

impl std::fmt::Debug for MetadataResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataResolver").field("requests_sent", &self.requests_sent()).finish()
    }
}

impl MetadataResolver {
    /// A resolver over `cluster`; spawns its loop on the current tokio runtime. The loop ends when
    /// the last clone of the resolver is dropped.
    pub fn new(cluster: Cluster, config: ResolverConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let sent = Arc::new(AtomicU64::new(0));
        let deadline = config.deadline;
        tokio::spawn(run(cluster.clone(), rx, config, sent.clone()));
        Self { cluster, jobs: tx, sent, deadline }
    }

    /// How many Metadata requests this resolver has sent.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The cluster it resolves against.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}

impl tower::Service<ResolveRequest> for MetadataResolver {
    type Response = Arc<ClusterSnapshot>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Arc<ClusterSnapshot>, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ResolveRequest) -> Self::Future {
        let current = self.cluster.snapshot();
        if request.is_satisfied_by(&current) {
            return Box::pin(async move { Ok(current) });
        }
        let (reply, rx) = oneshot::channel();
        let queued = self.jobs.send(Job { request, reply }).is_ok();
        let deadline = self.deadline;
        // The loop ends when its last sender is dropped: the call holds one, so that it is
        // answered even if the caller drops its resolver handle meanwhile (`oneshot` does).
        let keep_alive = self.jobs.clone();
        Box::pin(async move {
            let _keep_alive = keep_alive;
            if !queued {
                return Err(ResolveError::Shutdown);
            }
            match tokio::time::timeout(deadline, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(ResolveError::Shutdown),
                Err(_) => Err(ResolveError::DeadlineExceeded(deadline)),
            }
        })
    }
}

type Fetch = Pin<Box<dyn Future<Output = Result<Arc<ClusterSnapshot>, ClusterError>> + Send>>;

async fn run(cluster: Cluster, mut rx: mpsc::UnboundedReceiver<Job>, config: ResolverConfig, sent: Arc<AtomicU64>) {
    let mut waiting: Vec<Job> = Vec::new();
    let mut fetch: Option<Fetch> = None;
    let mut riders: Vec<Job> = Vec::new();
    let mut fetch_topics: BTreeSet<String> = BTreeSet::new();
    let mut send_at: Option<Instant> = None;
    let mut last_sent: Option<Instant> = None;
    let next_slot = |last_sent: Option<Instant>| {
        let earliest = Instant::now() + config.pile_on;
        last_sent.map_or(earliest, |l| earliest.max(l + config.min_interval))
    };
    loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(job) = job else { break };
                if job.request.is_satisfied_by(&cluster.snapshot()) {
                    let _ = job.reply.send(Ok(cluster.snapshot()));
                } else if fetch.is_some() && job.request.topics.iter().all(|t| fetch_topics.contains(t)) {
                    riders.push(job);
                } else {
                    waiting.push(job);
                    if fetch.is_none() && send_at.is_none() {
                        send_at = Some(next_slot(last_sent));
                    }
                }
            }
            () = sleep_until(send_at), if send_at.is_some() && fetch.is_none() => {
                send_at = None;
                let snapshot = cluster.snapshot();
                waiting.retain(|j| !j.reply.is_closed());
                let (done, pending): (Vec<Job>, Vec<Job>) =
                    waiting.drain(..).partition(|j| j.request.is_satisfied_by(&snapshot));
                for j in done {
                    let _ = j.reply.send(Ok(snapshot.clone()));
                }
                if pending.is_empty() {
                    continue;
                }
                fetch_topics = pending.iter().flat_map(|j| j.request.topics.iter().cloned()).collect();
                riders = pending;
                let topics: Vec<String> = fetch_topics.iter().cloned().collect();
                let c = cluster.clone();
                sent.fetch_add(1, Ordering::Relaxed);
                last_sent = Some(Instant::now());
                // `stale`: some caller hit a rebalancing error; `resolve`: topics not known yet.
                let reason =
                    if riders.iter().any(|j| j.request.stale_generation.is_some()) { "stale" } else { "resolve" };
                tracing::debug!(topics = ?topics, callers = riders.len(), reason, "resolving metadata");
                fetch = Some(Box::pin(async move { c.fetch_metadata_for(Some(&topics), reason).await }));
            }
            result = poll_fetch(&mut fetch), if fetch.is_some() => {
                fetch = None;
                fetch_topics.clear();
                for j in riders.drain(..) {
                    let _ = j.reply.send(result.clone().map_err(ResolveError::Cluster));
                }
                if !waiting.is_empty() {
                    send_at = Some(next_slot(last_sent));
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn poll_fetch(fetch: &mut Option<Fetch>) -> Result<Arc<ClusterSnapshot>, ClusterError> {
    match fetch {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}
