//! A user-supplied topic resolver: a fixed leader table instead of Metadata requests.
//!
//! Anything implementing `tower::Service<ResolveRequest, Response = Arc<ClusterSnapshot>,
//! Error = ResolveError>` (cloneable, `Send + Sync`) can replace krab's coalescing
//! [`MetadataResolver`](krab_cluster::MetadataResolver): boxed into [`BoxResolver`], it is what
//! code taking "whatever resolver the user supplies" works with. A static table suits tests,
//! benchmarks or a deployment whose partition layout never changes.
//!
//! Runs without a broker: `cargo run -p krab-cluster --example static_resolver`.

use krab_cluster::{BoxResolver, ClusterError, ClusterSnapshot, ResolveError, ResolveRequest};
use krab_protocol::messages::MetadataResponse;
use krab_protocol::messages::metadata::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use std::sync::Arc;
use tower::ServiceExt;

/// The brokers: id, host, port.
const BROKERS: &[(i32, &str, u16)] = &[(1, "kafka-1.internal", 9092), (2, "kafka-2.internal", 9092)];

/// The partitions: topic, partition, leader id, leader epoch.
const LEADERS: &[(&str, i32, i32, i32)] =
    &[("orders", 0, 1, 4), ("orders", 1, 2, 7), ("orders", 2, 1, 4), ("audit", 0, 2, 1)];

/// Builds a snapshot from the table, by merging it as if it were a Metadata response (the one
/// way snapshots are made, so every invariant of [`ClusterSnapshot`] holds).
fn snapshot_from_table() -> ClusterSnapshot {
    let mut topics: Vec<MetadataResponseTopic> = Vec::new();
    for &(topic, partition, leader, epoch) in LEADERS {
        let partition = MetadataResponsePartition {
            partition_index: partition,
            leader_id: leader,
            leader_epoch: epoch,
            replica_nodes: vec![leader],
            isr_nodes: vec![leader],
            ..Default::default()
        };
        match topics.iter_mut().find(|t| t.name.as_deref() == Some(topic)) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(MetadataResponseTopic {
                name: Some(topic.to_string()),
                partitions: vec![partition],
                ..Default::default()
            }),
        }
    }
    let response = MetadataResponse {
        brokers: BROKERS
            .iter()
            .map(|&(id, host, port)| MetadataResponseBroker {
                node_id: id,
                host: host.to_string(),
                port: i32::from(port),
                ..Default::default()
            })
            .collect(),
        topics,
        ..Default::default()
    };
    ClusterSnapshot::default().merge(&response, true)
}

/// The static resolver: answers every request with the same snapshot, or fails for a topic the
/// table does not have (a stale generation cannot be refreshed: the table is all there is).
fn static_resolver(snapshot: Arc<ClusterSnapshot>) -> BoxResolver {
    let service = tower::service_fn(move |request: ResolveRequest| {
        let snapshot = snapshot.clone();
        async move {
            match request.topics.iter().find(|t| snapshot.topic(t).is_none()) {
                None => Ok(snapshot),
                Some(missing) => {
                    Err(ResolveError::Cluster(ClusterError::UnknownPartition { topic: missing.clone(), partition: 0 }))
                }
            }
        }
    });
    BoxResolver::new(service)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ResolveError> {
    let resolver = static_resolver(Arc::new(snapshot_from_table()));
    let snapshot = resolver.oneshot(ResolveRequest::topics(["orders"])).await?;
    let orders = snapshot.topic("orders").expect("in the table");
    for p in &orders.partitions {
        let leader = snapshot.leader("orders", p.partition).expect("leader in the table");
        println!("orders-{} -> broker {} at {} (epoch {})", p.partition, leader.id, leader.addr, p.leader_epoch);
    }
    Ok(())
}
