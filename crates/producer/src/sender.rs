//! One sender task per broker: encodes the drained batches of each job, pipelines Produce
//! requests on that broker's connection in job order, and sends each outcome back to the flush
//! loop as a message. It holds no batch state: the flush loop keeps the batches; a job carries
//! only their payloads, and the outcome brings back the bytes each was sent as.
//!
//! Encoding is where a batch is compressed, the costliest step of producing. It happens here,
//! not in the flush loop, so that the loop keeps accepting records meanwhile; a job with enough
//! bytes to compress is encoded on tokio's blocking pool (at most one job per core at a time),
//! so that compression runs beside the runtime's threads, and for several brokers in parallel,
//! even on a current-thread runtime.

use crate::error::{Error, ErrorKind};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use krab_buffer::{Payload, TopicPartition};
use krab_cluster::{Cluster, ClusterError};
use krab_protocol::messages::produce::{PartitionProduceData, TopicProduceData};
use krab_protocol::messages::{ProduceRequest, ProduceResponse};
use krab_protocol::records::{Compression, RecordsError};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

/// A job with fewer bytes than this to compress is encoded on the sender task itself: below it,
/// handing the work to another thread costs more than it saves.
const OFFLOAD_MIN: usize = 32 * 1024;

/// One Produce request's worth of batches for one broker.
pub(crate) struct ProduceJob {
    pub(crate) id: u64,
    pub(crate) batches: Vec<(TopicPartition, Payload)>,
}

/// What came of a job.
pub(crate) struct JobOutcome {
    pub(crate) id: u64,
    /// Per batch, in job order: the bytes it was sent as, or why it could not be encoded (then it
    /// was not sent).
    pub(crate) encoded: Vec<Result<Bytes, Error>>,
    /// Buffers that encoding freed, for the accumulator to reuse.
    pub(crate) spares: Vec<BytesMut>,
    /// The request's result. `Ok(None)`: nothing to wait for (acks=0, or no batch to send).
    pub(crate) result: Result<Option<ProduceResponse>, ClusterError>,
}

#[derive(Clone, Copy)]
pub(crate) struct SendSettings {
    pub(crate) acks: i16,
    pub(crate) timeout_ms: i32,
}

/// A job after encoding.
struct EncodedJob {
    id: u64,
    batches: Vec<(TopicPartition, Result<Bytes, Error>)>,
    spares: Vec<BytesMut>,
    /// Whether it was encoded on the blocking pool.
    offloaded: bool,
}

/// The encoding stage of a sender: jobs are encoded concurrently (small ones at once, large ones
/// on the blocking pool) but leave in the order they came, since batches of one partition in
/// successive jobs must reach the broker in order.
struct EncodeStage {
    jobs: FuturesOrdered<futures_util::future::BoxFuture<'static, EncodedJob>>,
    offload: Arc<Semaphore>,
}

impl EncodeStage {
    fn new(offload: Arc<Semaphore>) -> Self {
        Self { jobs: FuturesOrdered::new(), offload }
    }

    fn push(&mut self, job: ProduceJob) {
        self.jobs.push_back(Box::pin(encode(job, self.offload.clone())));
    }

    /// The next job in arrival order, once it is encoded; `None` when none is queued.
    async fn next(&mut self) -> Option<EncodedJob> {
        self.jobs.next().await
    }
}

/// The permits for encoding on the blocking pool, shared by a producer's senders: one per core.
pub(crate) fn offload_permits() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from)))
}

/// Starts the sender task of broker `id`; `report` hands each outcome to the flush loop (false:
/// the loop is gone). The task ends when the flush loop drops the job sender and its last
/// request has completed, or when `report` fails.
pub(crate) fn spawn(
    id: i32,
    cluster: Cluster,
    settings: SendSettings,
    offload: Arc<Semaphore>,
    report: impl Fn(JobOutcome) -> bool + Send + 'static,
) -> mpsc::UnboundedSender<ProduceJob> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ProduceJob>();
    tokio::spawn(async move {
        let mut encoding = EncodeStage::new(offload);
        let mut pending = FuturesUnordered::new();
        let mut open = true;
        loop {
            tokio::select! {
                job = rx.recv(), if open => match job {
                    Some(job) => encoding.push(job),
                    None => open = false,
                },
                Some(job) = encoding.next() => pending.push(run(id, cluster.clone(), settings, job)),
                Some(outcome) = pending.next() => {
                    if !report(outcome) {
                        return;
                    }
                }
                else => return,
            }
        }
    });
    tx
}

fn encode_error(tp: &TopicPartition, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::Encode, format!("{tp}: the batch could not be encoded"), e)
}

/// A job's payloads encoded, in order, and the buffers that freed; `None` if encoding panicked
/// (a bug), caught so that it fails the job's batches instead of taking the sender task, and the
/// jobs queued behind it, down.
type Encoded = Option<(Vec<Result<Bytes, RecordsError>>, Vec<BytesMut>)>;

fn encode_payloads(payloads: Vec<Payload>) -> Encoded {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut spares = Vec::new();
        let results = payloads
            .into_iter()
            .map(|payload| match payload {
                Payload::Encoded(bytes) => Ok(bytes),
                Payload::Pending(pending) => pending.encode().map(|(bytes, spare)| {
                    spares.extend(spare);
                    bytes
                }),
            })
            .collect();
        (results, spares)
    }))
    .ok()
}

/// A job whose batches all failed to encode.
fn failed(id: u64, partitions: Vec<TopicPartition>, why: &str, offloaded: bool) -> EncodedJob {
    let batches = partitions
        .into_iter()
        .map(|tp| {
            let error = Error::new(ErrorKind::Encode, format!("{tp}: {why}"));
            (tp, Err(error))
        })
        .collect();
    EncodedJob { id, batches, spares: Vec::new(), offloaded }
}

async fn encode(job: ProduceJob, offload: Arc<Semaphore>) -> EncodedJob {
    let to_compress: usize = job
        .batches
        .iter()
        .map(|(_, payload)| match payload {
            Payload::Pending(p) if p.compression() != Compression::None => p.uncompressed_size(),
            _ => 0,
        })
        .sum();
    let ProduceJob { id, batches } = job;
    let (partitions, payloads): (Vec<TopicPartition>, Vec<Payload>) = batches.into_iter().unzip();
    let offloaded = to_compress >= OFFLOAD_MIN;
    let encoded = if offloaded {
        // The semaphore is never closed.
        let permit = offload.acquire_owned().await.ok();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            encode_payloads(payloads)
        })
        .await
        // The runtime is shutting down: the payloads went with the task. Their records still
        // get an error each, not silence.
        .map_err(|e| format!("encoding the batch did not finish: {e}"))
    } else {
        Ok(encode_payloads(payloads))
    };
    match encoded {
        Ok(Some((results, spares))) => {
            let batches = partitions
                .into_iter()
                .zip(results)
                .map(|(tp, result)| {
                    let result = result.map_err(|e| encode_error(&tp, e));
                    (tp, result)
                })
                .collect();
            EncodedJob { id, batches, spares, offloaded }
        }
        Ok(None) => failed(id, partitions, "encoding the batch panicked", offloaded),
        Err(why) => failed(id, partitions, &why, offloaded),
    }
}

async fn run(broker_id: i32, cluster: Cluster, settings: SendSettings, job: EncodedJob) -> JobOutcome {
    let EncodedJob { id, batches, spares, offloaded } = job;
    tracing::trace!(broker = broker_id, job = id, offloaded, "job encoded");
    let result = async {
        let Some(request) = build(&batches, settings) else { return Ok(None) };
        let broker = cluster.broker(broker_id).await?;
        let version = broker.version_of::<ProduceRequest>()?;
        if settings.acks == 0 {
            broker.send_no_response(&request, version).await?;
            Ok(None)
        } else {
            broker.send(&request, version).await.map(Some)
        }
    }
    .await;
    JobOutcome { id, encoded: batches.into_iter().map(|(_, bytes)| bytes).collect(), spares, result }
}

/// The request for the batches that encoded; `None` if none did.
fn build(batches: &[(TopicPartition, Result<Bytes, Error>)], settings: SendSettings) -> Option<ProduceRequest> {
    // Each topic appears once, each partition once within it (the accumulator drains at most one
    // batch per partition per request).
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (tp, payload) in batches {
        let Ok(payload) = payload else { continue };
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
    if topics.is_empty() {
        return None;
    }
    Some(ProduceRequest {
        transactional_id: None,
        acks: settings.acks,
        timeout_ms: settings.timeout_ms,
        topic_data: topics,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use krab_buffer::{Accumulator, AccumulatorConfig, MemoryPool, PendingRecord};
    use krab_protocol::records::decode_batches;
    use std::time::{Duration, Instant};

    /// Drains one lz4 batch per partition, each holding `n` records of 1 KiB.
    fn drained(partitions: i32, n: usize) -> Vec<(TopicPartition, Payload)> {
        let now = Instant::now();
        let pool = MemoryPool::new(64 << 20);
        let config = AccumulatorConfig {
            batch_size: 1 << 20,
            linger: Duration::ZERO,
            compression: Compression::Lz4,
            ..AccumulatorConfig::default()
        };
        let mut acc: Accumulator<()> = Accumulator::new(config);
        for p in 0..partitions {
            for i in 0..n {
                let value = Bytes::from(format!("{p}-{i}-{}", "abcdefgh".repeat(128)));
                let record = PendingRecord {
                    key: None,
                    value: Some(value),
                    headers: Vec::new(),
                    timestamp: 0,
                    token: (),
                    reservation: pool.try_reserve(1).unwrap(),
                    enqueued_at: now,
                };
                acc.append(&TopicPartition::new("t", p), record, now).unwrap();
            }
        }
        acc.seal_all();
        acc.drain(now, |_| Some(1)).remove(&1).unwrap().into_iter().map(|b| (b.tp, b.payload)).collect()
    }

    fn check(job: &EncodedJob, partitions: i32, records: usize) {
        assert_eq!(job.batches.len(), partitions as usize);
        assert_eq!(job.spares.len(), partitions as usize, "each compressed batch frees its uncompressed buffer");
        for (i, (tp, bytes)) in job.batches.iter().enumerate() {
            assert_eq!(tp.partition, i as i32);
            let set = decode_batches(bytes.as_ref().unwrap()).unwrap();
            assert_eq!(set.batches[0].compression, Compression::Lz4);
            assert_eq!(set.batches[0].records.len(), records);
        }
    }

    #[tokio::test]
    async fn large_jobs_encode_on_the_blocking_pool_small_ones_inline_and_they_leave_in_order() {
        let mut stage = EncodeStage::new(offload_permits());
        // A large job (4 x 64 KiB to compress), then small ones that are ready at once.
        stage.push(ProduceJob { id: 1, batches: drained(4, 64) });
        stage.push(ProduceJob { id: 2, batches: drained(1, 2) });
        stage.push(ProduceJob { id: 3, batches: drained(2, 1) });
        let first = stage.next().await.unwrap();
        assert_eq!((first.id, first.offloaded), (1, true));
        check(&first, 4, 64);
        let second = stage.next().await.unwrap();
        assert_eq!((second.id, second.offloaded), (2, false));
        check(&second, 1, 2);
        let third = stage.next().await.unwrap();
        assert_eq!((third.id, third.offloaded), (3, false));
        check(&third, 2, 1);
        assert!(stage.next().await.is_none());
    }

    #[test]
    fn batches_that_failed_to_encode_stay_out_of_the_request() {
        let settings = SendSettings { acks: -1, timeout_ms: 1000 };
        let failed = || Err(Error::new(ErrorKind::Encode, "no"));
        let ok = |b: &'static [u8]| Ok(Bytes::from_static(b));
        let batches = vec![
            (TopicPartition::new("a", 0), failed()),
            (TopicPartition::new("a", 1), ok(b"x")),
            (TopicPartition::new("b", 0), ok(b"y")),
        ];
        let request = build(&batches, settings).unwrap();
        let sent: Vec<(String, Vec<i32>)> = request
            .topic_data
            .iter()
            .map(|t| (t.name.to_string(), t.partition_data.iter().map(|p| p.index).collect()))
            .collect();
        assert_eq!(sent, [("a".to_string(), vec![1]), ("b".to_string(), vec![0])]);
        assert_eq!(request.acks, -1);
        let none = vec![(TopicPartition::new("a", 0), failed())];
        assert!(build(&none, settings).is_none(), "nothing to send: no request");
    }
}
