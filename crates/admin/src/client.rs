//! The [`Admin`] handle, and what every call shares: its deadline, retries with backoff, and
//! routing to the broker that owns a request (the controller, a group's coordinator, a
//! partition's leader, one given broker).

use crate::config::AdminConfig;
use crate::error::AdminError;
use crate::resource::{Results, TopicPartition};
use krab_cluster::{Broker, Cluster, ClusterError};
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// An admin client: cheap to clone, shareable across tasks.
///
/// Every call is bounded by one timeout (`default.api.timeout.ms`, or
/// [`Admin::with_timeout`]); within it, retriable failures (a moved controller or coordinator, a
/// leader election, a lost connection) are retried with `retry.backoff.ms` …
/// `retry.backoff.max.ms` after re-resolving where the request must go. Calls about several
/// resources return one result per resource ([`Results`]), so one refused topic does not hide
/// what happened to the others; the outer `Err` is for failures of the whole call.
#[derive(Clone)]
pub struct Admin {
    pub(crate) cluster: Cluster,
    timeout: Duration,
    backoff: Duration,
    backoff_max: Duration,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin").field("cluster", &self.cluster).field("timeout", &self.timeout).finish()
    }
}

impl Admin {
    /// Connects to the cluster `config` names (bootstrap, security) and reads its metadata.
    pub async fn connect(config: AdminConfig) -> Result<Admin, AdminError> {
        config.validate()?;
        let cluster = Cluster::connect(config.cluster_config()).await?;
        Ok(Self::with_cluster(cluster, &config))
    }

    /// An admin client over a cluster handle made elsewhere (shared with a producer or a
    /// consumer, or over a custom transport); timeouts and backoffs come from `config`.
    pub fn with_cluster(cluster: Cluster, config: &AdminConfig) -> Admin {
        Admin {
            cluster,
            timeout: config.api_timeout,
            backoff: config.retry_backoff,
            backoff_max: config.retry_backoff_max.max(config.retry_backoff),
        }
    }

    /// The same client with another timeout for each call.
    pub fn with_timeout(&self, timeout: Duration) -> Admin {
        Admin { timeout, ..self.clone() }
    }

    /// Each call's timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The cluster handle underneath.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub(crate) fn call(&self, api: ApiKey) -> Call {
        Call {
            api,
            timeout: self.timeout,
            deadline: Instant::now().checked_add(self.timeout).unwrap_or_else(far_future),
            backoff: self.backoff,
            backoff_max: self.backoff_max,
            tries: 0,
            last: None,
        }
    }

    /// Runs `round` until it succeeds, fails for good, or the call's time is up. `round` gets
    /// the attempt number (0 first: re-resolve routing when above) and the milliseconds left.
    pub(crate) async fn whole<T, F, Fut>(&self, api: ApiKey, mut round: F) -> Result<T, AdminError>
    where
        F: FnMut(u32, i32) -> Fut,
        Fut: Future<Output = Result<T, AdminError>>,
    {
        let mut call = self.call(api);
        loop {
            match call.bounded(round(call.tries, call.remaining_ms())).await {
                Ok(v) => return Ok(v),
                Err(e @ AdminError::Timeout { .. }) => return Err(e),
                Err(e) if retried(&e) => call.backoff(e).await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `round` over the resources still pending until each has a final result or the
    /// call's time is up; a resource whose result is retriable (by `retry`) goes to the next
    /// round, the others are settled. A failure of a whole round is retried for all of them
    /// (when retriable) or becomes each one's result.
    pub(crate) async fn each<K, T, F, Fut>(
        &self,
        api: ApiKey,
        keys: Vec<K>,
        retry: fn(&AdminError) -> bool,
        mut round: F,
    ) -> Results<K, T>
    where
        K: Ord + Clone + fmt::Display,
        F: FnMut(Vec<K>, u32, i32) -> Fut,
        Fut: Future<Output = Result<Vec<(K, Result<T, AdminError>)>, AdminError>>,
    {
        let mut call = self.call(api);
        let mut done: Results<K, T> = BTreeMap::new();
        let mut todo: Vec<K> = keys;
        todo.sort();
        todo.dedup();
        let mut last: BTreeMap<K, AdminError> = BTreeMap::new();
        while !todo.is_empty() {
            let asked = std::mem::take(&mut todo);
            let retry_with = match call.bounded(round(asked.clone(), call.tries, call.remaining_ms())).await {
                Ok(results) => {
                    let mut answered: BTreeMap<K, Result<T, AdminError>> = results.into_iter().collect();
                    let mut first = None;
                    for k in asked {
                        match answered.remove(&k) {
                            // A part of the round that did not answer by the deadline.
                            Some(Err(AdminError::Timeout { .. })) => {
                                let e = with_last(&call.timeout_error(), last.remove(&k));
                                done.insert(k, Err(e));
                            }
                            Some(Err(e)) if retry(&e) => {
                                first.get_or_insert_with(|| e.clone());
                                last.insert(k.clone(), e);
                                todo.push(k);
                            }
                            Some(r) => {
                                done.insert(k, r);
                            }
                            None => {
                                let e = AdminError::missing(api, &k);
                                done.insert(k, Err(e));
                            }
                        }
                    }
                    first
                }
                Err(e @ AdminError::Timeout { .. }) => {
                    for k in asked {
                        let e = with_last(&e, last.remove(&k));
                        done.insert(k, Err(e));
                    }
                    break;
                }
                Err(e) if retried(&e) => {
                    // The whole round's failure is now each resource's last one (not a code an
                    // earlier round answered for it).
                    for k in &asked {
                        last.insert(k.clone(), e.clone());
                    }
                    todo = asked;
                    Some(e)
                }
                Err(e) => {
                    for k in asked {
                        done.insert(k, Err(e.clone()));
                    }
                    break;
                }
            };
            if let Some(e) = retry_with.filter(|_| !todo.is_empty()) {
                tracing::debug!(%api, error = %e, pending = todo.len(), "admin call: retrying");
                if let Err(timeout) = call.backoff(e).await {
                    for k in std::mem::take(&mut todo) {
                        let e = with_last(&timeout, last.remove(&k));
                        done.insert(k, Err(e));
                    }
                }
            }
        }
        done
    }

    /// Bounds one part of a round (one broker's resources, one group at its coordinator) by
    /// `deadline` ([`round_deadline`]): a part not answered in time fails alone, with the call's
    /// timeout, and the answers the round's other parts got are kept. (The whole round is cut
    /// off at the call's deadline too; this bound is never later, and fires first.)
    pub(crate) async fn part<T>(
        &self,
        api: ApiKey,
        deadline: Instant,
        f: impl Future<Output = Result<T, AdminError>>,
    ) -> Result<T, AdminError> {
        match tokio::time::timeout_at(deadline, f).await {
            Ok(r) => r,
            Err(_) => Err(AdminError::Timeout { api, after: self.timeout, last: None }),
        }
    }

    /// The broker that takes controller requests (KRaft brokers forward them to the active
    /// controller); `refresh` re-reads metadata first, after NOT_CONTROLLER or a lost broker.
    pub(crate) async fn controller(&self, refresh: bool) -> Result<Broker, AdminError> {
        let snapshot = if refresh || self.cluster.snapshot().controller.is_none() {
            self.cluster.fetch_metadata(Some(&[])).await?
        } else {
            self.cluster.snapshot()
        };
        match snapshot.controller {
            Some(id) => Ok(self.broker(id).await?),
            None => Ok(self.cluster.any_broker().await?),
        }
    }

    /// Broker `id`, reading metadata once if the snapshot does not know it yet.
    pub(crate) async fn broker(&self, id: i32) -> Result<Broker, AdminError> {
        match self.cluster.broker(id).await {
            Err(ClusterError::UnknownBroker(_)) => {
                self.cluster.fetch_metadata(Some(&[])).await?;
                Ok(self.cluster.broker(id).await?)
            }
            r => Ok(r?),
        }
    }

    /// Any broker (least loaded open connection first).
    pub(crate) async fn any(&self) -> Result<Broker, AdminError> {
        Ok(self.cluster.any_broker().await?)
    }

    /// The coordinator of `group`, found afresh (FindCoordinator).
    pub(crate) async fn coordinator(&self, group: &str) -> Result<Broker, AdminError> {
        let node = match self.cluster.find_coordinator(group).await {
            Ok(node) => node,
            Err(ClusterError::Broker { code, message, .. }) => {
                return Err(AdminError::broker(format!("group {group}"), ApiKey::FindCoordinator, code, message));
            }
            Err(e) => return Err(e.into()),
        };
        self.broker(node).await
    }

    /// Fresh metadata for the partitions' topics, and the partitions grouped by leader; a
    /// partition that has no leader or is not in the metadata comes back with its error.
    pub(crate) async fn by_leader(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<(BTreeMap<i32, Vec<TopicPartition>>, Vec<(TopicPartition, AdminError)>), AdminError> {
        let mut topics: Vec<String> = partitions.iter().map(|p| p.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        let snapshot = self.cluster.fetch_metadata(Some(&topics)).await?;
        let mut leaders: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        let mut failed = Vec::new();
        for tp in partitions {
            let unknown = |code| AdminError::broker(format!("partition {tp}"), ApiKey::Metadata, code, None);
            match snapshot.topic(&tp.topic) {
                None => failed.push((tp.clone(), unknown(ErrorCode::UnknownTopicOrPartition))),
                Some(t) if t.error.is_err() => failed.push((tp.clone(), unknown(t.error))),
                Some(t) => match t.partition(tp.partition) {
                    None => failed.push((tp.clone(), unknown(ErrorCode::UnknownTopicOrPartition))),
                    Some(p) => match p.leader {
                        Some(leader) => leaders.entry(leader).or_default().push(tp.clone()),
                        None => failed.push((tp.clone(), unknown(ErrorCode::LeaderNotAvailable))),
                    },
                },
            }
        }
        Ok((leaders, failed))
    }
}

/// What one call carries through its retries.
pub(crate) struct Call {
    api: ApiKey,
    timeout: Duration,
    deadline: Instant,
    backoff: Duration,
    backoff_max: Duration,
    tries: u32,
    last: Option<AdminError>,
}

impl Call {
    /// Milliseconds left, for requests that carry a timeout (CreateTopics, DeleteRecords, ...).
    pub(crate) fn remaining_ms(&self) -> i32 {
        let left = self.deadline.saturating_duration_since(Instant::now());
        i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1)
    }

    fn timeout_error(&self) -> AdminError {
        AdminError::Timeout { api: self.api, after: self.timeout, last: self.last.clone().map(Box::new) }
    }

    async fn bounded<T>(&self, f: impl Future<Output = Result<T, AdminError>>) -> Result<T, AdminError> {
        match tokio::time::timeout_at(self.deadline, f).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error()),
        }
    }

    /// After a retriable failure: waits the backoff if the deadline leaves room for another
    /// try, else returns the timeout (naming this failure as the last).
    async fn backoff(&mut self, failure: AdminError) -> Result<(), AdminError> {
        self.last = Some(failure);
        let exp = self.backoff.saturating_mul(1u32 << self.tries.min(16)).min(self.backoff_max);
        let wait = exp.mul_f64(0.8 + fastrand::f64() * 0.4);
        self.tries += 1;
        if Instant::now() + wait >= self.deadline {
            return Err(self.timeout_error());
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// The deadline of a round's parts ([`Admin::part`]): the milliseconds the call had left when
/// the round started (rounded down: never after the call's own deadline) from now. Take it
/// before the round's first await.
pub(crate) fn round_deadline(timeout_ms: i32) -> Instant {
    Instant::now() + Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// A timeout naming the resource's own last failure, when it had one.
fn with_last(timeout: &AdminError, last: Option<AdminError>) -> AdminError {
    match (timeout, last) {
        (AdminError::Timeout { api, after, .. }, Some(l)) => {
            AdminError::Timeout { api: *api, after: *after, last: Some(Box::new(l)) }
        }
        (t, _) => t.clone(),
    }
}

/// Codes Kafka classifies retriable that are an admin call's answer, not a passing state: an
/// unknown topic (a caller asking about a topic that is not there wants to know at once) and
/// an election's outcome (not needed, no preferred or eligible leader).
const ANSWERS: [ErrorCode; 5] = [
    ErrorCode::UnknownTopicOrPartition,
    ErrorCode::UnknownTopicId,
    ErrorCode::ElectionNotNeeded,
    ErrorCode::PreferredLeaderNotAvailable,
    ErrorCode::EligibleLeadersNotAvailable,
];

/// Whether a failure is worth another round: retriable broker codes except [`ANSWERS`], and
/// connection-level failures.
pub(crate) fn retried(e: &AdminError) -> bool {
    match e {
        AdminError::Broker { code, .. } if ANSWERS.contains(code) => false,
        AdminError::Broker { code, .. } => code.is_retriable(),
        AdminError::Cluster(c) => c.is_retriable(),
        _ => false,
    }
}

/// For requests a partition's leader answers: an unknown partition answered by a broker means
/// stale metadata and is retried too; one the metadata itself does not know is not.
pub(crate) fn retried_at_leader(e: &AdminError) -> bool {
    match e {
        AdminError::Broker { api: ApiKey::Metadata, code: ErrorCode::UnknownTopicOrPartition, .. } => false,
        AdminError::Broker { code, .. } => code.is_retriable(),
        AdminError::Cluster(c) => c.is_retriable(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(code: ErrorCode, api: ApiKey) -> AdminError {
        AdminError::broker("partition t-0", api, code, None)
    }

    #[test]
    fn answers_are_final_and_passing_states_are_retried() {
        for c in ANSWERS {
            assert!(c.is_retriable(), "{c}: Kafka calls it retriable, so it must be listed here to be final");
            assert!(!retried(&code(c, ApiKey::ElectLeaders)), "{c}");
        }
        assert!(retried(&code(ErrorCode::NotController, ApiKey::CreateTopics)));
        assert!(retried(&code(ErrorCode::CoordinatorLoadInProgress, ApiKey::DescribeGroups)));
        assert!(!retried(&code(ErrorCode::TopicAuthorizationFailed, ApiKey::DeleteTopics)));
        assert!(!retried(&AdminError::InvalidArgument("x".into())));
        // At a leader, an unknown partition answered by the broker is stale metadata; one the
        // metadata does not know is an answer.
        assert!(retried_at_leader(&code(ErrorCode::UnknownTopicOrPartition, ApiKey::DeleteRecords)));
        assert!(!retried_at_leader(&code(ErrorCode::UnknownTopicOrPartition, ApiKey::Metadata)));
        assert!(retried_at_leader(&code(ErrorCode::NotLeaderOrFollower, ApiKey::ListOffsets)));
    }
}
