//! Recovery: retries after backoff, stalled partitions and the metadata they wait for, and the
//! epoch bump.

use super::{Event, FlushLoop, UNKNOWN_PARTITION_ROUNDS};
use crate::error::Error;
use crate::record::DeliverySender;
use crate::time::add;
use krab_buffer::{ProducerBatch, TopicPartition};
use krab_cluster::{ClusterSnapshot, ResolveRequest};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

impl FlushLoop {
    pub(super) fn retry(&mut self, batch: ProducerBatch<DeliverySender>, now: Instant, cause: Error) {
        let why = tracing::enabled!(tracing::Level::DEBUG).then(|| cause.to_string());
        let Some(batch) = self.unless_timed_out(batch, now, cause) else { return };
        let backoff =
            self.config.retry_backoff.saturating_mul(1 << batch.attempts.min(10)).min(self.config.retry_backoff_max);
        tracing::debug!(
            partition = %batch.tp,
            attempt = batch.attempts,
            backoff_ms = backoff.as_millis() as u64,
            error = why,
            "retrying batch"
        );
        self.metrics.retried();
        self.retry_at.set(batch.tp.clone(), add(now, backoff));
        self.acc.requeue(batch);
    }

    /// UNKNOWN_TOPIC_OR_PARTITION on produce: metadata may lag the topic's creation, so
    /// re-resolve, but only [`UNKNOWN_PARTITION_ROUNDS`] times in a row for the partition; then
    /// the batch fails with that error.
    pub(super) fn reresolve_bounded(
        &mut self,
        batch: ProducerBatch<DeliverySender>,
        routed_with: u64,
        now: Instant,
        cause: Error,
    ) {
        let rounds = self.unknown_rounds.entry(batch.tp.clone()).or_default();
        *rounds += 1;
        if *rounds >= UNKNOWN_PARTITION_ROUNDS {
            self.unknown_rounds.remove(&batch.tp);
            self.fail_batch(batch, cause);
            return;
        }
        self.reresolve(batch, routed_with, now, cause);
    }

    /// A partition that holds nothing any more (its batches delivered, failed or expired) stops
    /// counting as recovering and loses its retry timer and counters.
    pub(super) fn forget_if_drained(&mut self, tp: &TopicPartition) {
        if !self.acc.is_drained(tp) {
            return;
        }
        if self.recovering.remove(tp) && self.recovering.is_empty() {
            self.resolve_streak = 0;
        }
        self.retry_at.forget(tp);
        self.unknown_rounds.remove(tp);
    }

    /// A rebalancing error on a batch routed with snapshot `routed_with`: stall this partition
    /// only and ask for metadata newer than that snapshot.
    pub(super) fn reresolve(
        &mut self,
        batch: ProducerBatch<DeliverySender>,
        routed_with: u64,
        now: Instant,
        cause: Error,
    ) {
        let why = tracing::enabled!(tracing::Level::DEBUG).then(|| cause.to_string());
        let Some(batch) = self.unless_timed_out(batch, now, cause) else { return };
        let generation = self.snapshot.generation;
        if routed_with < generation {
            // Newer metadata arrived while the batch was in flight (typically the refresh another
            // partition's failure asked for): it is what the resolver would answer, so retry with
            // it, in order. Were it stale too, the retry fails against the current generation and
            // that asks for fresher metadata.
            self.acc.requeue(batch);
            return;
        }
        if self.acc.state(&batch.tp) == krab_buffer::PartitionState::Ready {
            tracing::debug!(partition = %batch.tp, generation, reason = why, "partition stalled");
            self.stats.stalled(&batch.tp);
            self.stalled_since.insert(batch.tp.clone(), now);
        }
        self.acc.stall(&batch.tp, generation);
        self.available.remove(&batch.tp.topic);
        self.drop_topic_cache();
        self.recovering.insert(batch.tp.clone());
        let g = self.stalled.entry(batch.tp.clone()).or_insert(generation);
        *g = (*g).max(generation);
        self.metrics.stalled(self.stalled.len());
        self.acc.requeue(batch);
    }

    /// Whether the loop needs metadata: records wait for a topic, or partitions are stalled.
    /// Derived from that state alone, so a resolve that fails or answers with nothing new is
    /// simply asked again after backoff.
    pub(super) fn wants_resolve(&self) -> bool {
        !self.waiting.is_empty() || !self.stalled.is_empty()
    }

    pub(super) fn maybe_resolve(&mut self, now: Instant) {
        if self.resolving || !self.wants_resolve() || self.resolve_after.is_some_and(|t| now < t) {
            return;
        }
        self.resolving = true;
        let mut topics: BTreeSet<String> = self.waiting.keys().map(|t| t.to_string()).collect();
        topics.extend(self.stalled.keys().map(|tp| tp.topic.to_string()));
        let refreshed = self.refreshed;
        self.refresh_asked = self.refresh.filter(|g| refreshed.is_none_or(|r| r < *g));
        let request = ResolveRequest {
            topics: topics.into_iter().collect(),
            stale_generation: self.stalled.values().copied().chain(self.refresh_asked).max(),
        };
        let resolver = self.resolver.clone();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let result = resolver.oneshot(request).await;
            let _ = events.send(Event::Resolved(result));
        });
    }

    pub(super) fn on_snapshot(&mut self, snapshot: Arc<ClusterSnapshot>) {
        if snapshot.generation <= self.snapshot.generation {
            return;
        }
        self.snapshot = snapshot;
        self.available.clear();
        self.drop_topic_cache();
        let resumed = self.acc.unstall(self.snapshot.generation);
        let any = !resumed.is_empty();
        for tp in resumed {
            let stalled_ms = self.stalled_since.remove(&tp).map(|t| crate::time::now().saturating_duration_since(t));
            tracing::debug!(
                partition = %tp,
                generation = self.snapshot.generation,
                stalled_ms = stalled_ms.map(|d| d.as_millis() as u64),
                "partition resumed"
            );
            self.stalled.remove(&tp);
        }
        if any {
            self.metrics.stalled(self.stalled.len());
        }
        self.stall_leaderless();
        self.drain_waiting();
    }

    /// Stalls every partition holding unsent batches that the current snapshot gives no leader
    /// (a leader election in progress, an RF=1 broker restarting): stalled, they keep the loop
    /// asking for newer metadata with backoff until a leader appears, and then drain to it.
    pub(super) fn stall_leaderless(&mut self) {
        let generation = self.snapshot.generation;
        let snapshot = &self.snapshot;
        let acc = &self.acc;
        let leaderless: Vec<TopicPartition> = acc
            .partitions_with_data()
            .filter(|tp| acc.state(tp) == krab_buffer::PartitionState::Ready)
            .filter(|tp| snapshot.topic(&tp.topic).is_some())
            .filter(|tp| snapshot.partition(&tp.topic, tp.partition).is_none_or(|p| p.leader.is_none()))
            .cloned()
            .collect();
        let any = !leaderless.is_empty();
        for tp in leaderless {
            // Metadata is polled (with backoff) until a leader appears.
            tracing::debug!(partition = %tp, generation, reason = "no leader", "partition stalled");
            self.stats.stalled(&tp);
            self.stalled_since.insert(tp.clone(), crate::time::now());
            self.acc.stall(&tp, generation);
            self.available.remove(&tp.topic);
            self.drop_topic_cache();
            self.recovering.insert(tp.clone());
            self.stalled.insert(tp, generation);
        }
        if any {
            self.metrics.stalled(self.stalled.len());
        }
    }
}
