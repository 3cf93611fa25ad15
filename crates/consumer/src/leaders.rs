//! The metadata task: finds the leader of every assigned partition through the resolver the
//! producer uses too, starts a fetch task for each broker that leads one, and re-resolves
//! partitions that hit a rebalancing error or lost their leader. All partitions needing metadata
//! at once share one resolve call (and the resolver coalesces further); partitions that need
//! nothing keep fetching meanwhile.
//!
//! Resolves are paced: when partitions need metadata again soon after a resolve (a dead broker
//! that metadata still names leader until the controller fences it; a partition without a
//! leader), the next resolve waits `retry.backoff.ms`, doubling up to `retry.backoff.max.ms`. A
//! need arising after a quiet `retry.backoff.max.ms` is resolved at once.

use crate::config::ConsumerConfig;
use crate::fetcher::Fetcher;
use crate::shared::Shared;
use krab_cluster::{BoxResolver, Cluster, ClusterSnapshot, ResolveRequest};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

pub(crate) async fn run(shared: Arc<Shared>, cluster: Cluster, resolver: BoxResolver, config: Arc<ConsumerConfig>) {
    let mut changes = cluster.subscribe();
    let mut pacing = Pacing::new(config.retry_backoff, config.retry_backoff_max);
    // Every wake-up of this task follows a change in what needs metadata, so the gauge is
    // brought up to date here.
    let stalled_gauge = crate::telemetry::stalled(&config.client_id);
    apply(&shared, &cluster, &config, &cluster.snapshot());
    while !shared.is_closed() {
        let (needed, stalled) = {
            let state = shared.lock();
            (state.metadata_needed(), state.stalled())
        };
        stalled_gauge.set(stalled as f64);
        let Some((topics, stale)) = needed else {
            tokio::select! {
                () = shared.metadata.notified() => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    apply(&shared, &cluster, &config, &cluster.snapshot());
                }
            }
            continue;
        };
        if let Some(at) = pacing.next_at(Instant::now()) {
            // Metadata was asked for recently and is needed again: wait out the backoff (more
            // partitions needing it meanwhile join this resolve). A wake-up meanwhile (close,
            // more partitions) re-checks and keeps the same deadline.
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = shared.metadata.notified() => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    apply(&shared, &cluster, &config, &cluster.snapshot());
                }
            }
            continue;
        }
        pacing.resolving(Instant::now());
        let request = match stale {
            Some(generation) => ResolveRequest::refresh(topics, generation),
            None => ResolveRequest::topics(topics),
        };
        match resolver.clone().oneshot(request).await {
            Ok(snapshot) => apply(&shared, &cluster, &config, &snapshot),
            Err(e) => tracing::debug!(error = %e, "resolving partition leaders failed"),
        }
    }
}

/// When the next resolve may go: `step` after the previous one, `step` doubling from `base` up to
/// `max` while needs keep coming back; at once when the need arises after a further quiet `max`.
struct Pacing {
    base: Duration,
    max: Duration,
    step: Duration,
    last: Option<Instant>,
}

impl Pacing {
    fn new(base: Duration, max: Duration) -> Self {
        Pacing { base, max: max.max(base), step: Duration::ZERO, last: None }
    }

    /// `None`: resolve now; otherwise the instant to wait for.
    fn next_at(&mut self, now: Instant) -> Option<Instant> {
        let last = self.last?;
        let since = now.saturating_duration_since(last);
        if since >= self.step.saturating_add(self.max) {
            self.step = Duration::ZERO;
        }
        (since < self.step).then(|| last + self.step)
    }

    /// A resolve goes at `now`.
    fn resolving(&mut self, now: Instant) {
        self.step = if self.step.is_zero() { self.base } else { self.step.saturating_mul(2).min(self.max) };
        self.last = Some(now);
    }
}

fn apply(shared: &Arc<Shared>, cluster: &Cluster, config: &Arc<ConsumerConfig>, snapshot: &ClusterSnapshot) {
    let (leaders, wake) = shared.lock().apply_snapshot(snapshot);
    for id in leaders {
        Fetcher::spawn(shared, cluster, config, id);
    }
    shared.wake(wake);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_back_off_while_needed_and_reset_after_a_quiet_spell() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut p = Pacing::new(ms(100), ms(1000));
        assert_eq!(p.next_at(t0), None);
        let mut at = t0;
        let mut times = vec![];
        for _ in 0..7 {
            p.resolving(at);
            times.push((at - t0).as_millis());
            // Needed again right away: wait for the step.
            at = p.next_at(at + ms(1)).expect("backs off");
            assert_eq!(p.next_at(at), None);
        }
        assert_eq!(times, [0, 100, 300, 700, 1500, 2500, 3500]);
        // Quiet for longer than step + max: the next need goes at once, and the schedule restarts.
        p.resolving(at);
        let later = at + ms(2001);
        assert_eq!(p.next_at(later), None);
        p.resolving(later);
        assert_eq!(p.next_at(later + ms(1)), Some(later + ms(100)));
    }
}
