//! Fake brokers for the group tests: the group APIs answered by a `FakeCoordinator`, and
//! records served from per-partition logs (Fetch without sessions, ListOffsets,
//! OffsetForLeaderEpoch), with leadership checked against the fake cluster's metadata.

use bytes::Bytes;
use krab_cluster::{BoxResolver, Cluster, MetadataResolver, ResolverConfig};
use krab_consumer::{Consumer, ConsumerConfig};
use krab_protocol::messages::fetch::{FetchableTopicResponse, PartitionData};
use krab_protocol::messages::list_offsets::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use krab_protocol::messages::offset_for_leader_epoch::{EpochEndOffset, OffsetForLeaderTopicResult};
use krab_protocol::messages::{
    AnyRequest, AnyResponse, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use krab_protocol::records::{Compression, RecordBatchEncoder};
use krab_testkit::{FakeCluster, FakeCoordinator, Reply};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The topic every test reads.
pub(crate) const TOPIC: &str = "t";

/// Record batches by partition: (base offset, last offset, bytes).
#[derive(Default)]
struct Logs {
    batches: HashMap<i32, Vec<(i64, i64, Bytes)>>,
}

impl Logs {
    fn end(&self, p: i32) -> i64 {
        self.batches.get(&p).and_then(|b| b.last()).map_or(0, |(_, last, _)| last + 1)
    }

    /// Batches holding `from` and after, at least one, then up to `max_bytes`.
    fn read(&self, p: i32, from: i64, max_bytes: usize) -> Bytes {
        let mut out = Vec::new();
        for (_, last, batch) in self.batches.get(&p).into_iter().flatten() {
            if *last < from {
                continue;
            }
            if !out.is_empty() && out.len() + batch.len() > max_bytes {
                break;
            }
            out.extend_from_slice(batch);
        }
        Bytes::from(out)
    }
}

/// A fake cluster whose brokers answer the group APIs through [`Fake::coord`] and serve the
/// records of [`TOPIC`].
pub(crate) struct Fake {
    pub(crate) cluster: FakeCluster,
    pub(crate) coord: FakeCoordinator,
    logs: Mutex<Logs>,
    /// Delays for the answers to the next OffsetCommit requests, one each.
    commit_delays: Mutex<VecDeque<Duration>>,
}

impl Fake {
    /// `brokers` brokers, the coordinator on broker 1, [`TOPIC`] with `partitions` partitions
    /// (leaders round-robin); the handlers are installed.
    pub(crate) fn new(brokers: i32, partitions: i32) -> Arc<Fake> {
        let cluster = FakeCluster::new(brokers);
        cluster.create_topic(TOPIC, partitions);
        let coord = FakeCoordinator::for_cluster(&cluster, 1);
        let fake = Arc::new(Fake { cluster, coord, logs: Mutex::default(), commit_delays: Mutex::default() });
        for id in 1..=brokers {
            let weak = Arc::downgrade(&fake);
            fake.cluster.broker(id).set_handler(move |header, request| {
                let Some(fake) = weak.upgrade() else { return Reply::Close };
                if let Some(reply) = fake.coord.handle(id, &header, &request) {
                    if matches!(request, AnyRequest::OffsetCommit(_)) {
                        if let Some(delay) = fake.commit_delays.lock().unwrap().pop_front() {
                            return Reply::after(delay, reply);
                        }
                    }
                    return reply;
                }
                match &request {
                    AnyRequest::Fetch(r) => fake.fetch(id, r),
                    AnyRequest::ListOffsets(r) => fake.list_offsets(r),
                    AnyRequest::OffsetForLeaderEpoch(r) => fake.epoch_ends(r),
                    _ => Reply::Default,
                }
            });
        }
        fake
    }

    /// Appends `n` records to partition `p` as one batch; each record's value is
    /// `"{p}-{offset}"`.
    pub(crate) fn append(&self, p: i32, n: i64) {
        let mut logs = self.logs.lock().unwrap();
        let base = logs.end(p);
        let mut enc = RecordBatchEncoder::new(Compression::None).base_offset(base);
        for o in base..base + n {
            enc.append(o * 10, None, Some(format!("{p}-{o}").as_bytes()), &[]).unwrap();
        }
        let batch = enc.finish().unwrap();
        logs.batches.entry(p).or_default().push((base, base + n - 1, batch));
    }

    /// Appends `n` records to every partition.
    pub(crate) fn append_all(&self, n: i64) {
        for p in 0..self.cluster.state().topics[TOPIC].len() as i32 {
            self.append(p, n);
        }
    }

    /// Delays the answer to the next OffsetCommit by `delay` (the commit is stored at once).
    pub(crate) fn delay_next_commit(&self, delay: Duration) {
        self.commit_delays.lock().unwrap().push_back(delay);
    }

    /// A consumer over its own connections to the fake cluster.
    pub(crate) async fn consumer(&self, config: ConsumerConfig) -> Consumer {
        let cluster: Cluster = self.cluster.connect(self.cluster.config()).await.unwrap();
        let resolver = MetadataResolver::new(cluster.clone(), ResolverConfig::default());
        Consumer::with_parts(config, cluster, BoxResolver::new(resolver)).unwrap()
    }

    /// Full fetches only (session id 0 in every answer); a long poll when nothing is new.
    fn fetch(&self, me: i32, r: &FetchRequest) -> Reply {
        let logs = self.logs.lock().unwrap();
        let mut any = false;
        let responses = r
            .topics
            .iter()
            .map(|t| FetchableTopicResponse {
                topic: t.topic.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        let end = logs.end(p.partition);
                        let mut data = PartitionData {
                            partition_index: p.partition,
                            high_watermark: end,
                            last_stable_offset: end,
                            ..Default::default()
                        };
                        if self.cluster.partition(&t.topic, p.partition).leader != me {
                            data.error_code = 6;
                        } else if p.fetch_offset > end || p.fetch_offset < 0 {
                            data.error_code = 1;
                        } else {
                            let records = logs.read(p.partition, p.fetch_offset, p.partition_max_bytes as usize);
                            any |= !records.is_empty();
                            data.records = Some(records);
                        }
                        any |= data.error_code != 0;
                        data
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        let reply = Reply::Respond(AnyResponse::Fetch(Box::new(FetchResponse { responses, ..Default::default() })));
        if any { reply } else { Reply::after(Duration::from_millis(r.max_wait_ms as u64), reply) }
    }

    fn list_offsets(&self, r: &ListOffsetsRequest) -> Reply {
        let logs = self.logs.lock().unwrap();
        let topics = r
            .topics
            .iter()
            .map(|t| ListOffsetsTopicResponse {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| ListOffsetsPartitionResponse {
                        partition_index: p.partition_index,
                        offset: if p.timestamp == -2 { 0 } else { logs.end(p.partition_index) },
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        Reply::Respond(AnyResponse::ListOffsets(Box::new(ListOffsetsResponse { topics, ..Default::default() })))
    }

    /// One leader epoch for ever: every epoch ends at the log end.
    fn epoch_ends(&self, r: &OffsetForLeaderEpochRequest) -> Reply {
        let logs = self.logs.lock().unwrap();
        let topics = r
            .topics
            .iter()
            .map(|t| OffsetForLeaderTopicResult {
                topic: t.topic.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| EpochEndOffset {
                        partition: p.partition,
                        leader_epoch: p.leader_epoch,
                        end_offset: logs.end(p.partition),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        Reply::Respond(AnyResponse::OffsetForLeaderEpoch(Box::new(OffsetForLeaderEpochResponse {
            topics,
            ..Default::default()
        })))
    }
}
