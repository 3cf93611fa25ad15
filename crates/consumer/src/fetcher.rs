//! One fetch task per broker: looks up start offsets (ListOffsets), then sends one Fetch for
//! every partition the broker leads that may fetch now (KIP-227 session where the broker has
//! them), decodes the response itself (on the blocking pool when it is large, so brokers decode
//! in parallel) and hands each partition's records to the partition table.

use crate::config::ConsumerConfig;
use crate::error::{Error, ErrorKind};
use crate::records::{PartitionInput, decode_partition};
use crate::session::{FetchSession, Outcome, Wanted};
use crate::shared::Shared;
use crate::state::{FetchItem, FetchResult, Offset, OffsetItem, Redirect, ValidateItem};
use krab_cluster::rebalance::{Recovery, classify, classify_code};
use krab_cluster::{Broker, Cluster, ClusterError};
use krab_protocol::Uuid;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::fetch::{FetchPartition, FetchTopic, ForgottenTopic};
use krab_protocol::messages::list_offsets::{ListOffsetsPartition, ListOffsetsTopic};
use krab_protocol::messages::offset_for_leader_epoch::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use krab_protocol::messages::{FetchRequest, FetchResponse, ListOffsetsRequest, OffsetForLeaderEpochRequest};
use krab_protocol::records::{DEFAULT_MAX_DECOMPRESSED_SIZE, DecodeOptions};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Responses with at least this many record bytes are decoded on the blocking pool.
const OFFLOAD_BYTES: usize = 1 << 20;
/// The longest a request that leaves out a partition held back by its budget waits at the
/// broker. Its partitions may all be idle, and a long poll of theirs would keep the drained
/// partition out for fetch.max.wait.ms (a hot partition beside idle ones would get one budget
/// per long poll); the cost is at most one such request per broker per this interval while the
/// application does not drain.
const HELD_BACK_MAX_WAIT: Duration = Duration::from_millis(10);

/// The highest Fetch version that names topics (13+ use topic ids).
const LAST_NAMED_FETCH_VERSION: i16 = 12;

pub(crate) struct Fetcher {
    pub(crate) id: i32,
    pub(crate) shared: Arc<Shared>,
    pub(crate) cluster: Cluster,
    pub(crate) config: Arc<ConsumerConfig>,
    pub(crate) notify: Arc<Notify>,
    /// `krab_consumer_fetch_session_resets_total` for this broker.
    resets: metrics::Counter,
}

impl Fetcher {
    /// Starts broker `id`'s fetch task unless it runs already.
    pub(crate) fn spawn(shared: &Arc<Shared>, cluster: &Cluster, config: &Arc<ConsumerConfig>, id: i32) {
        if let Some(notify) = shared.register_fetcher(id) {
            let resets = crate::telemetry::session_resets(&config.client_id, id);
            let fetcher = Fetcher {
                id,
                shared: shared.clone(),
                cluster: cluster.clone(),
                config: config.clone(),
                notify,
                resets,
            };
            tokio::spawn(fetcher.run());
        }
    }

    pub(crate) async fn run(self) {
        let mut session: Option<FetchSession> = None;
        let mut failures = 0u32;
        let mut last: Option<Broker> = None;
        while !self.shared.is_closed() {
            let broker = match self.cluster.broker(self.id).await {
                Ok(b) => {
                    last = Some(b.clone());
                    b
                }
                Err(e) if classify(&e) == Recovery::Fail => {
                    // A certificate or credentials refused: no metadata or redial fixes that.
                    tracing::debug!(broker = self.id, error = %e, "fetch leader refused the connection");
                    let wake = self.shared.lock().broker_refused(self.id, &Error::from(e));
                    self.shared.wake(wake);
                    session = None;
                    failures += 1;
                    self.backoff(failures).await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(broker = self.id, error = %e, "fetch leader unreachable");
                    let generation = self.cluster.snapshot().generation;
                    let wake = self.shared.lock().broker_failed(self.id, generation);
                    self.shared.wake(wake);
                    session = None;
                    failures += 1;
                    self.backoff(failures).await;
                    continue;
                }
            };
            let validate = self.shared.lock().take_validate_work(self.id);
            if !validate.is_empty() {
                if self.validate(&broker, validate).await.is_err() {
                    failures += 1;
                    self.backoff(failures).await;
                }
                continue;
            }
            let offsets = self.shared.lock().take_offset_work(self.id);
            if !offsets.is_empty() {
                if self.list_offsets(&broker, offsets).await.is_err() {
                    failures += 1;
                    self.backoff(failures).await;
                }
                continue;
            }
            let (work, held_back) = {
                let mut state = self.shared.lock();
                let work = state.take_fetch_work(self.id);
                let held_back = !work.is_empty() && state.holds_back(self.id);
                (work, held_back)
            };
            if work.is_empty() {
                self.notify.notified().await;
                continue;
            }
            // A request leaving out a partition the application is draining must not park at the
            // broker for fetch.max.wait.ms: that partition rejoins the next request once drained.
            let max_wait =
                if held_back { self.config.fetch_max_wait.min(HELD_BACK_MAX_WAIT) } else { self.config.fetch_max_wait };
            match self.fetch(&broker, &mut session, work, max_wait).await {
                Ok(()) => failures = 0,
                Err(()) => {
                    failures += 1;
                    self.backoff(failures).await;
                }
            }
        }
        self.shared.unregister_fetcher(self.id);
        // Let the broker free the session slot (KIP-227: epoch -1 closes it).
        if let (Some((session_id, session_epoch)), Some(broker)) = (session.and_then(|s| s.close()), last) {
            if let Ok(version) = broker.version_of::<FetchRequest>() {
                let request = FetchRequest { session_id, session_epoch, ..Default::default() };
                tokio::spawn(async move {
                    let _ = broker.send(&request, version).await;
                });
            }
        }
    }

    async fn backoff(&self, failures: u32) {
        let base = self.config.retry_backoff;
        let delay = base.saturating_mul(1u32 << failures.min(10)).min(self.config.retry_backoff_max);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.notify.notified() => {}
        }
    }

    /// The result for partitions of a request that failed as a whole.
    fn request_failed(&self, error: &ClusterError) -> FetchResult {
        match classify(error) {
            Recovery::Reresolve | Recovery::ReresolveBounded => {
                FetchResult::Reresolve(self.cluster.snapshot().generation)
            }
            Recovery::Retry | Recovery::Fail => FetchResult::Retry(Error::from(error.clone())),
        }
    }

    fn partition_error(&self, code: ErrorCode) -> FetchResult {
        match classify_code(code) {
            Recovery::Reresolve | Recovery::ReresolveBounded => {
                FetchResult::Reresolve(self.cluster.snapshot().generation)
            }
            Recovery::Retry => FetchResult::Reresolve(self.cluster.snapshot().generation),
            Recovery::Fail => FetchResult::Stop(Error::new(ErrorKind::Broker(code), format!("fetch failed: {code}"))),
        }
    }

    /// `Err` when the request failed as a whole (the caller backs off).
    async fn list_offsets(&self, broker: &Broker, items: Vec<OffsetItem>) -> Result<(), ()> {
        let isolation = self.config.isolation_level.as_i8();
        let version = match broker.version_of::<ListOffsetsRequest>() {
            Ok(v) => v,
            Err(e) => {
                let mut state = self.shared.lock();
                let wakes: Vec<_> = items
                    .iter()
                    .map(|i| state.apply_offset(i, Err(FetchResult::Stop(Error::from(e.clone())))))
                    .collect();
                drop(state);
                wakes.into_iter().for_each(|w| self.shared.wake(w));
                return Err(());
            }
        };
        let mut topics: BTreeMap<Arc<str>, Vec<ListOffsetsPartition>> = BTreeMap::new();
        for item in &items {
            let timestamp = match item.spec {
                Offset::Earliest => -2,
                Offset::Latest | Offset::At(_) => -1,
                Offset::Timestamp(ts) => ts,
            };
            topics.entry(item.tp.topic.clone()).or_default().push(ListOffsetsPartition {
                partition_index: item.tp.partition,
                current_leader_epoch: if version >= 4 { item.leader_epoch } else { -1 },
                timestamp,
                max_num_offsets: if version == 0 { 1 } else { ListOffsetsPartition::default().max_num_offsets },
                ..Default::default()
            });
        }
        let request = ListOffsetsRequest {
            replica_id: -1,
            isolation_level: if version >= 2 { isolation } else { 0 },
            topics: topics
                .into_iter()
                .map(|(name, partitions)| ListOffsetsTopic { name: name.to_string(), partitions, ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let response = broker.send(&request, version).await;
        let mut results: Vec<(usize, Result<i64, FetchResult>)> = Vec::new();
        let mut retry_latest = Vec::new();
        let failed = response.is_err();
        match response {
            Err(e) => {
                for n in 0..items.len() {
                    results.push((n, Err(self.request_failed(&e))));
                }
            }
            Ok(resp) => {
                let mut found: HashMap<(&str, i32), (i16, i64)> = HashMap::new();
                for t in &resp.topics {
                    for p in &t.partitions {
                        let offset =
                            if version == 0 { p.old_style_offsets.first().copied().unwrap_or(-1) } else { p.offset };
                        found.insert((t.name.as_str(), p.partition_index), (p.error_code, offset));
                    }
                }
                for (n, item) in items.iter().enumerate() {
                    let r = match found.get(&(&*item.tp.topic, item.tp.partition)) {
                        None => Err(FetchResult::Reresolve(self.cluster.snapshot().generation)),
                        Some(&(0, offset)) if offset >= 0 => Ok(offset),
                        Some(&(0, _)) => {
                            // No record at or after the timestamp: start at the log end.
                            retry_latest.push(n);
                            continue;
                        }
                        Some(&(code, _)) => Err(self.partition_error(ErrorCode::from_code(code))),
                    };
                    results.push((n, r));
                }
            }
        }
        let mut state = self.shared.lock();
        let mut wakes = Vec::new();
        for (n, r) in results {
            wakes.push(state.apply_offset(&items[n], r));
        }
        for n in retry_latest {
            state.release(&items[n].tp);
            if let Ok(w) = state.seek_if_version(&items[n].tp, items[n].version, Offset::Latest) {
                wakes.push(w);
            }
        }
        drop(state);
        wakes.into_iter().for_each(|w| self.shared.wake(w));
        if failed { Err(()) } else { Ok(()) }
    }

    /// KIP-320: asks the leader where each position's leader epoch ends.
    /// `Err` when the request failed as a whole (the caller backs off).
    async fn validate(&self, broker: &Broker, items: Vec<ValidateItem>) -> Result<(), ()> {
        let mut failed = false;
        let results: Vec<Result<Option<(i32, i64)>, FetchResult>> =
            match broker.version_of::<OffsetForLeaderEpochRequest>() {
                // Before v2 there is no CurrentLeaderEpoch to fence a stale leader: skip validation.
                Err(_) => items.iter().map(|_| Ok(None)).collect(),
                Ok(version) if version < 2 => items.iter().map(|_| Ok(None)).collect(),
                Ok(version) => {
                    let mut topics: BTreeMap<Arc<str>, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
                    for item in &items {
                        topics.entry(item.tp.topic.clone()).or_default().push(OffsetForLeaderPartition {
                            partition: item.tp.partition,
                            current_leader_epoch: item.leader_epoch,
                            leader_epoch: item.epoch,
                            ..Default::default()
                        });
                    }
                    let request = OffsetForLeaderEpochRequest {
                        replica_id: if version >= 3 { -1 } else { OffsetForLeaderEpochRequest::default().replica_id },
                        topics: topics
                            .into_iter()
                            .map(|(topic, partitions)| OffsetForLeaderTopic {
                                topic: topic.to_string(),
                                partitions,
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    };
                    match broker.send(&request, version).await {
                        Err(e) => {
                            failed = true;
                            items.iter().map(|_| Err(self.request_failed(&e))).collect()
                        }
                        Ok(resp) => {
                            let mut found: HashMap<(&str, i32), (i16, i32, i64)> = HashMap::new();
                            for t in &resp.topics {
                                for p in &t.partitions {
                                    found.insert(
                                        (t.topic.as_str(), p.partition),
                                        (p.error_code, p.leader_epoch, p.end_offset),
                                    );
                                }
                            }
                            items
                                .iter()
                                .map(|item| match found.get(&(&*item.tp.topic, item.tp.partition)) {
                                    None => Err(FetchResult::Reresolve(self.cluster.snapshot().generation)),
                                    Some(&(0, epoch, end)) => Ok(Some((epoch, end))),
                                    Some(&(code, _, _)) => Err(self.partition_error(ErrorCode::from_code(code))),
                                })
                                .collect()
                        }
                    }
                }
            };
        let mut state = self.shared.lock();
        let wakes: Vec<_> = items.iter().zip(results).map(|(item, r)| state.apply_validation(item, r)).collect();
        drop(state);
        wakes.into_iter().for_each(|w| self.shared.wake(w));
        if failed { Err(()) } else { Ok(()) }
    }

    /// One Fetch round. `Err` asks the caller to back off.
    async fn fetch(
        &self,
        broker: &Broker,
        session: &mut Option<FetchSession>,
        work: Vec<FetchItem>,
        max_wait: Duration,
    ) -> Result<(), ()> {
        let snapshot = self.cluster.snapshot();
        let mut version = match broker.version_of::<FetchRequest>() {
            Ok(v) => v,
            Err(e) => {
                let mut state = self.shared.lock();
                let wakes: Vec<_> =
                    work.iter().map(|i| state.apply_fetch(i, FetchResult::Stop(Error::from(e.clone())))).collect();
                drop(state);
                wakes.into_iter().for_each(|w| self.shared.wake(w));
                return Err(());
            }
        };
        let ids: HashMap<Arc<str>, Uuid> = work
            .iter()
            .map(|i| (i.tp.topic.clone(), snapshot.topic(&i.tp.topic).map_or(Uuid::ZERO, |t| t.id)))
            .collect();
        if version > LAST_NAMED_FETCH_VERSION && ids.values().any(|id| *id == Uuid::ZERO) {
            version = LAST_NAMED_FETCH_VERSION;
        }
        let by_id = version > LAST_NAMED_FETCH_VERSION;
        let sess = session.get_or_insert_with(|| FetchSession::new(version));
        let wanted: Vec<Wanted> = work
            .iter()
            .map(|i| Wanted {
                topic: i.tp.topic.clone(),
                topic_id: if by_id { ids[&i.tp.topic] } else { Uuid::ZERO },
                partition: i.tp.partition,
                fetch_offset: i.offset,
                current_leader_epoch: if version >= 9 { i.leader_epoch } else { -1 },
                max_bytes: self.config.max_partition_fetch_bytes,
            })
            .collect();
        let plan = sess.plan(&wanted);
        let mut topics: Vec<FetchTopic> = Vec::new();
        for w in &plan.send {
            let partition = FetchPartition {
                partition: w.partition,
                current_leader_epoch: w.current_leader_epoch,
                fetch_offset: w.fetch_offset,
                partition_max_bytes: w.max_bytes,
                ..Default::default()
            };
            match topics.last_mut() {
                Some(t) if (by_id && t.topic_id == w.topic_id) || (!by_id && *t.topic == *w.topic) => {
                    t.partitions.push(partition);
                }
                _ => topics.push(FetchTopic {
                    topic: if by_id { String::new() } else { w.topic.to_string() },
                    topic_id: w.topic_id,
                    partitions: vec![partition],
                    ..Default::default()
                }),
            }
        }
        let mut forgotten: Vec<ForgottenTopic> = Vec::new();
        for f in &plan.forget {
            match forgotten.last_mut() {
                Some(t) if (by_id && t.topic_id == f.topic_id) || (!by_id && *t.topic == *f.topic) => {
                    t.partitions.push(f.partition);
                }
                _ => forgotten.push(ForgottenTopic {
                    topic: if by_id { String::new() } else { f.topic.to_string() },
                    topic_id: f.topic_id,
                    partitions: vec![f.partition],
                    ..Default::default()
                }),
            }
        }
        let request = FetchRequest {
            max_wait_ms: i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: if version >= 3 { self.config.fetch_max_bytes } else { FetchRequest::default().max_bytes },
            isolation_level: if version >= 4 { self.config.isolation_level.as_i8() } else { 0 },
            session_id: plan.session_id,
            session_epoch: plan.session_epoch,
            topics,
            forgotten_topics_data: forgotten,
            rack_id: if version >= 11 { self.config.client_rack.clone() } else { String::new() },
            ..Default::default()
        };
        let response = broker.send(&request, version).await;
        let session_id = plan.session_id;
        let response = match response {
            Err(e) => {
                sess.complete(plan, Outcome::Failed);
                self.session_lost(sess, session_id);
                let result = self.request_failed(&e);
                tracing::debug!(broker = self.id, error = %e, "fetch failed");
                let mut state = self.shared.lock();
                let mut wakes = Vec::new();
                for item in &work {
                    let r = match &result {
                        FetchResult::Reresolve(g) => FetchResult::Reresolve(*g),
                        FetchResult::Retry(err) => FetchResult::Retry(err.clone()),
                        _ => FetchResult::Retry(Error::from(e.clone())),
                    };
                    wakes.push(state.apply_fetch(item, r));
                }
                drop(state);
                wakes.into_iter().for_each(|w| self.shared.wake(w));
                return Err(());
            }
            Ok(r) => r,
        };
        let names: HashMap<Uuid, Arc<str>> = ids.iter().map(|(name, id)| (*id, name.clone())).collect();
        let topic_name = |t: &krab_protocol::messages::fetch::FetchableTopicResponse| -> Option<Arc<str>> {
            if by_id { names.get(&t.topic_id).cloned() } else { Some(Arc::from(t.topic.as_str())) }
        };
        let listed: Vec<(Arc<str>, i32)> = response
            .responses
            .iter()
            .flat_map(|t| {
                let name = topic_name(t).unwrap_or_else(|| Arc::from(""));
                t.partitions.iter().map(move |p| (name.clone(), p.partition_index))
            })
            .collect();
        let listed_refs: Vec<(&str, i32)> = listed.iter().map(|(t, p)| (&**t, *p)).collect();
        let top = ErrorCode::from_code(response.error_code);
        let was_full = plan.is_full();
        let usable = sess.complete(
            plan,
            Outcome::Response { error: top, session_id: response.session_id, partitions: &listed_refs },
        );
        self.session_lost(sess, session_id);
        if !usable {
            let session_error = matches!(top, ErrorCode::FetchSessionIdNotFound | ErrorCode::InvalidFetchSessionEpoch);
            let mut state = self.shared.lock();
            let mut wakes = Vec::new();
            for item in &work {
                if session_error || top == ErrorCode::None {
                    state.release(&item.tp);
                } else {
                    wakes.push(state.apply_fetch(item, self.partition_error(top)));
                }
            }
            drop(state);
            wakes.into_iter().for_each(|w| self.shared.wake(w));
            // An evicted session is retried at once with a full request; a full request that
            // fails, or any other failure, backs off first.
            return if session_error && !was_full { Ok(()) } else { Err(()) };
        }
        let (results, replicas, ends) = self.decode(response, &work, by_id, &names).await;
        let mut state = self.shared.lock();
        let mut wakes = Vec::new();
        let mut answered = vec![false; work.len()];
        for (n, result) in results {
            answered[n] = true;
            wakes.push(state.apply_fetch(&work[n], result));
        }
        // Every partition of the request: an incremental response leaves out those whose log
        // end did not move, but their positions may have.
        let mut end_of = vec![None; work.len()];
        for (n, end) in ends {
            end_of[n] = Some(end);
        }
        for (item, end) in work.iter().zip(end_of) {
            let tp = &item.tp;
            state.record_lag(tp, end, || crate::telemetry::lag(&self.config.client_id, tp));
        }
        let mut followers = Vec::new();
        let mut waiting = Vec::new();
        for (n, replica) in replicas {
            match state.set_replica(&work[n], replica) {
                Redirect::To(id) => followers.push(id),
                Redirect::Failed => waiting.push(work[n].tp.clone()),
                Redirect::Ignored => {}
            }
        }
        for (n, item) in work.iter().enumerate() {
            if !answered[n] {
                // Left out of an incremental response: nothing new.
                state.release(&item.tp);
            }
        }
        drop(state);
        for id in followers {
            Fetcher::spawn(&self.shared, &self.cluster, &self.config, id);
            let mut wake = crate::state::Wake::default();
            wake.brokers.insert(id);
            self.shared.wake(wake);
        }
        wakes.into_iter().for_each(|w| self.shared.wake(w));
        // The leader still names a replica that just failed: only those partitions wait (the
        // leader serves them no data meanwhile), then follow it again.
        for tp in waiting {
            let shared = self.shared.clone();
            let delay = self.config.retry_backoff_max;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let wake = shared.lock().end_replica_wait(&tp);
                shared.wake(wake);
            });
        }
        Ok(())
    }

    /// The session with the broker was lost by the request just completed: say so and count it.
    fn session_lost(&self, session: &mut FetchSession, session_id: i32) {
        if let Some(reason) = session.take_lost() {
            tracing::debug!(broker = self.id, session_id, reason, "fetch session reset");
            self.resets.increment(1);
        }
    }

    /// Decodes every partition of a response (on the blocking pool when large). Also returns,
    /// per partition answered without error, where its log ends for the consumer (the high
    /// watermark, or the last stable offset under `read_committed`): its lag.
    async fn decode(
        &self,
        response: FetchResponse,
        work: &[FetchItem],
        by_id: bool,
        names: &HashMap<Uuid, Arc<str>>,
    ) -> (Vec<(usize, FetchResult)>, Vec<(usize, i32)>, Vec<(usize, i64)>) {
        let snapshot = self.cluster.snapshot();
        let mut replicas = Vec::new();
        let index: HashMap<(Arc<str>, i32), usize> =
            work.iter().enumerate().map(|(n, i)| ((i.tp.topic.clone(), i.tp.partition), n)).collect();
        let generation = self.cluster.snapshot().generation;
        let options = DecodeOptions::default()
            .with_verify_crc(self.config.check_crcs)
            .with_max_decompressed_size(self.config.partition_budget().max(DEFAULT_MAX_DECOMPRESSED_SIZE));
        let isolation = self.config.isolation_level;
        let mut jobs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<(usize, FetchResult)> = Vec::new();
        let mut ends: Vec<(usize, i64)> = Vec::new();
        let read_committed = isolation == crate::records::IsolationLevel::ReadCommitted;
        let mut total = 0usize;
        for t in response.responses {
            let name: Arc<str> = if by_id {
                match names.get(&t.topic_id) {
                    Some(n) => n.clone(),
                    None => continue,
                }
            } else {
                Arc::from(t.topic.as_str())
            };
            for p in t.partitions {
                let Some(&n) = index.get(&(name.clone(), p.partition_index)) else { continue };
                if !seen.insert(n) {
                    // A partition listed twice: the first answer counts.
                    continue;
                }
                let code = ErrorCode::from_code(p.error_code);
                let replica = p.preferred_read_replica;
                if !self.config.client_rack.is_empty()
                    && replica >= 0
                    && replica != self.id
                    && snapshot.brokers.contains_key(&replica)
                {
                    replicas.push((n, replica));
                }
                match code {
                    ErrorCode::None => {
                        let end = if read_committed && p.last_stable_offset >= 0 {
                            p.last_stable_offset
                        } else {
                            p.high_watermark
                        };
                        if end >= 0 {
                            ends.push((n, end));
                        }
                        let records = p.records.unwrap_or_default();
                        total += records.len();
                        jobs.push((
                            n,
                            work[n].offset,
                            records,
                            p.last_stable_offset,
                            p.aborted_transactions.unwrap_or_default(),
                        ));
                    }
                    ErrorCode::OffsetOutOfRange => out.push((
                        n,
                        FetchResult::OutOfRange { log_start: p.log_start_offset, high_watermark: p.high_watermark },
                    )),
                    code => {
                        let r = match classify_code(code) {
                            Recovery::Fail => {
                                FetchResult::Stop(Error::new(ErrorKind::Broker(code), format!("fetch failed: {code}")))
                            }
                            _ => FetchResult::Reresolve(generation),
                        };
                        out.push((n, r));
                    }
                }
            }
        }
        let run = move |jobs: Vec<(usize, i64, bytes::Bytes, i64, Vec<_>)>| {
            jobs.into_iter()
                .map(|(n, fetch_offset, records, lso, aborted)| {
                    let decoded = decode_partition(&PartitionInput {
                        fetch_offset,
                        records,
                        isolation,
                        last_stable_offset: lso,
                        aborted: &aborted,
                        options: &options,
                    });
                    if decoded.partial
                        && decoded.chunks.is_empty()
                        && decoded.error.is_none()
                        && decoded.next_offset == fetch_offset
                    {
                        // Nothing whole fits: refetching the same bytes would never progress.
                        let e = Error::new(
                            ErrorKind::RecordTooLarge,
                            format!("the batch at offset {fetch_offset} does not fit in max.partition.fetch.bytes"),
                        );
                        return (n, FetchResult::Stop(e));
                    }
                    (n, FetchResult::Records(decoded))
                })
                .collect::<Vec<_>>()
        };
        let decoded = if total >= OFFLOAD_BYTES {
            match tokio::task::spawn_blocking(move || run(jobs)).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "decoding a fetch response panicked");
                    let failed = work
                        .iter()
                        .enumerate()
                        .map(|(n, _)| (n, FetchResult::Retry(Error::new(ErrorKind::CorruptRecords, "decoding failed"))))
                        .collect();
                    return (failed, Vec::new(), Vec::new());
                }
            }
        } else {
            run(jobs)
        };
        out.extend(decoded);
        (out, replicas, ends)
    }
}
