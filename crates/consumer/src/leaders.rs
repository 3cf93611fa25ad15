//! The metadata task: finds the leader of every assigned partition through the resolver the
//! producer uses too, starts a fetch task for each broker that leads one, and re-resolves
//! partitions that hit a rebalancing error or lost their leader. All partitions needing metadata
//! at once share one resolve call (and the resolver coalesces further); partitions that need
//! nothing keep fetching meanwhile.

use crate::config::ConsumerConfig;
use crate::fetcher::Fetcher;
use crate::shared::Shared;
use krab_cluster::{BoxResolver, Cluster, ClusterSnapshot, ResolveRequest};
use std::sync::Arc;
use tower::ServiceExt;

pub(crate) async fn run(shared: Arc<Shared>, cluster: Cluster, resolver: BoxResolver, config: Arc<ConsumerConfig>) {
    let mut changes = cluster.subscribe();
    apply(&shared, &cluster, &config, &cluster.snapshot());
    while !shared.is_closed() {
        let needed = shared.lock().metadata_needed();
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
        let request = match stale {
            Some(generation) => ResolveRequest::refresh(topics, generation),
            None => ResolveRequest::topics(topics),
        };
        match resolver.clone().oneshot(request).await {
            Ok(snapshot) => apply(&shared, &cluster, &config, &snapshot),
            Err(e) => tracing::debug!(error = %e, "resolving partition leaders failed"),
        }
        if shared.lock().metadata_needed().is_some() {
            // Still unresolved (no leader yet, topic not created yet): wait before asking again.
            tokio::select! {
                () = tokio::time::sleep(config.retry_backoff) => {}
                () = shared.metadata.notified() => {}
            }
        }
    }
}

fn apply(shared: &Arc<Shared>, cluster: &Cluster, config: &Arc<ConsumerConfig>, snapshot: &ClusterSnapshot) {
    let (leaders, wake) = shared.lock().apply_snapshot(snapshot);
    for id in leaders {
        Fetcher::spawn(shared, cluster, config, id);
    }
    shared.wake(wake);
}
