//! One sender task per broker: pipelines Produce requests on that broker's connection and sends
//! each outcome back to the flush loop as a message. It holds no batch state: the flush loop
//! keeps the batches; a job carries only their encoded bytes.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use krab_buffer::TopicPartition;
use krab_cluster::{Cluster, ClusterError};
use krab_protocol::messages::produce::{PartitionProduceData, TopicProduceData};
use krab_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::sync::mpsc;

/// One Produce request's worth of batches for one broker.
pub(crate) struct ProduceJob {
    pub(crate) id: u64,
    pub(crate) batches: Vec<(TopicPartition, Bytes)>,
}

/// What came of a job. `Ok(None)`: sent with acks=0, no response expected.
pub(crate) struct JobOutcome {
    pub(crate) id: u64,
    pub(crate) result: Result<Option<ProduceResponse>, ClusterError>,
}

#[derive(Clone, Copy)]
pub(crate) struct SendSettings {
    pub(crate) acks: i16,
    pub(crate) timeout_ms: i32,
}

/// Starts the sender task of broker `id`. It ends when the flush loop drops the job sender and
/// its last request has completed.
pub(crate) fn spawn(
    id: i32,
    cluster: Cluster,
    settings: SendSettings,
    outcomes: mpsc::UnboundedSender<crate::flush::Event>,
) -> mpsc::UnboundedSender<ProduceJob> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ProduceJob>();
    tokio::spawn(async move {
        let mut pending = FuturesUnordered::new();
        let mut open = true;
        loop {
            tokio::select! {
                job = rx.recv(), if open => match job {
                    Some(job) => pending.push(run(id, cluster.clone(), settings, job)),
                    None => open = false,
                },
                Some(outcome) = pending.next() => {
                    if outcomes.send(crate::flush::Event::Produced(outcome)).is_err() {
                        return;
                    }
                }
                else => return,
            }
        }
    });
    tx
}

async fn run(broker_id: i32, cluster: Cluster, settings: SendSettings, job: ProduceJob) -> JobOutcome {
    let result = async {
        let broker = cluster.broker(broker_id).await?;
        let version = broker.version_of::<ProduceRequest>()?;
        let request = build(&job, settings);
        if settings.acks == 0 {
            broker.client().send_no_response(&request, version).await.map_err(|source| ClusterError::Request {
                broker: broker.label().to_string(),
                api: krab_protocol::ApiKey::Produce,
                source,
            })?;
            Ok(None)
        } else {
            broker.send(&request, version).await.map(Some)
        }
    }
    .await;
    JobOutcome { id: job.id, result }
}

fn build(job: &ProduceJob, settings: SendSettings) -> ProduceRequest {
    // Each topic appears once, each partition once within it (the accumulator drains at most one
    // batch per partition per request).
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (tp, payload) in &job.batches {
        let data = PartitionProduceData { index: tp.partition, records: Some(payload.clone()), ..Default::default() };
        match topics.iter_mut().find(|t| *t.name == *tp.topic) {
            Some(td) => td.partition_data.push(data),
            None => topics.push(TopicProduceData {
                name: tp.topic.to_string(),
                partition_data: vec![data],
                ..Default::default()
            }),
        }
    }
    ProduceRequest {
        transactional_id: None,
        acks: settings.acks,
        timeout_ms: settings.timeout_ms,
        topic_data: topics,
        ..Default::default()
    }
}
