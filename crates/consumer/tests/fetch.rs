//! The consumer end to end against in-memory fake brokers (krab-testkit) that serve Fetch and
//! ListOffsets from per-partition logs, with KIP-227 sessions, leadership checks and long polls.

use bytes::Bytes;
use futures_util::StreamExt;
use krab_cluster::{BoxResolver, Cluster, MetadataResolver, ResolverConfig};
use krab_consumer::{AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, ErrorKind, Offset, TopicPartition};
use krab_protocol::Uuid;
use krab_protocol::messages::fetch::{FetchableTopicResponse, PartitionData};
use krab_protocol::messages::list_offsets::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use krab_protocol::messages::offset_for_leader_epoch::{EpochEndOffset, OffsetForLeaderTopicResult};
use krab_protocol::messages::{
    AnyRequest, AnyResponse, FetchRequest, FetchResponse, ListOffsetsResponse, OffsetForLeaderEpochResponse,
    SaslAuthenticateResponse, SaslHandshakeResponse,
};
use krab_protocol::records::{Compression, RecordBatchEncoder};
use krab_testkit::{FakeCluster, Reply};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A stored batch: base offset, last offset, bytes.
type Stored = (i64, i64, Bytes);
/// A partition of a fetch session: fetch offset and byte limit, by topic and partition.
type SessionParts = BTreeMap<(String, i32), (i64, i32)>;

/// Records of every partition, as stored batches.
#[derive(Default)]
struct Logs {
    batches: HashMap<(String, i32), Vec<Stored>>,
    /// Where each leader epoch ended, by topic, partition and epoch, once a newer one began.
    epoch_ends: HashMap<(String, i32, i32), i64>,
    /// The leader epoch new batches are written in.
    epoch: i32,
}

impl Logs {
    fn end(&self, topic: &str, p: i32) -> i64 {
        self.batches.get(&(topic.to_string(), p)).and_then(|b| b.last()).map_or(0, |(_, last, _)| last + 1)
    }

    /// Appends `n` records `"{topic}-{p}-{offset}"` as one batch; timestamps are 10 × offset.
    fn append(&mut self, topic: &str, p: i32, n: i64) {
        let base = self.end(topic, p);
        let mut enc = RecordBatchEncoder::new(Compression::None).base_offset(base).partition_leader_epoch(self.epoch);
        for o in base..base + n {
            enc.append(o * 10, None, Some(format!("{topic}-{p}-{o}").as_bytes()), &[]).unwrap();
        }
        let batch = enc.finish().unwrap();
        self.batches.entry((topic.to_string(), p)).or_default().push((base, base + n - 1, batch));
    }

    /// A new leader without the records from `keep` on: the old epoch ends at `keep`.
    fn truncate(&mut self, topic: &str, p: i32, keep: i64) {
        let batches = self.batches.entry((topic.to_string(), p)).or_default();
        batches.retain(|(_, last, _)| *last < keep);
        assert_eq!(batches.last().map_or(0, |b| b.1 + 1), keep, "truncate at a batch boundary");
        self.epoch_ends.insert((topic.to_string(), p, self.epoch), keep);
        self.epoch += 1;
    }

    /// OffsetForLeaderEpoch: the end of `epoch` (the log end for the current one).
    fn epoch_end(&self, topic: &str, p: i32, epoch: i32) -> i64 {
        self.epoch_ends.get(&(topic.to_string(), p, epoch)).copied().unwrap_or_else(|| self.end(topic, p))
    }

    fn read(&self, topic: &str, p: i32, from: i64, max_bytes: usize) -> Bytes {
        let mut out = Vec::new();
        for (_, last, batch) in self.batches.get(&(topic.to_string(), p)).into_iter().flatten() {
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

/// One fetch request as the broker saw it.
#[derive(Debug, Clone)]
struct SeenFetch {
    session_id: i32,
    session_epoch: i32,
    sent: usize,
    forgotten: usize,
}

#[derive(Default)]
struct Sessions {
    next_id: i32,
    open: HashMap<i32, (i32, SessionParts)>,
}

struct Fake {
    cluster: FakeCluster,
    /// Whether Metadata gives topic ids (then Fetch v13+ names topics by id).
    topic_ids: bool,
    /// The preferred read replica the leaders name to consumers with a rack.
    preferred: Mutex<Option<i32>>,
    /// Answer ListOffsets with bytes that do not decode.
    garbage_list_offsets: std::sync::atomic::AtomicBool,
    /// ListOffsets requests answered.
    list_offsets: std::sync::atomic::AtomicU64,
    /// OffsetForLeaderEpoch requests answered.
    validations: std::sync::atomic::AtomicU64,
    logs: Arc<Mutex<Logs>>,
    seen: Arc<Mutex<Vec<(i32, SeenFetch)>>>,
    /// The broker that refuses SASL credentials (0: none); the others accept any.
    refusing: std::sync::atomic::AtomicI32,
}

fn fetch_reply(
    me: i32,
    preferred: Option<i32>,
    cluster: &FakeCluster,
    logs: &Mutex<Logs>,
    sessions: &Mutex<Sessions>,
    seen: &Mutex<Vec<(i32, SeenFetch)>>,
    req: &FetchRequest,
) -> Reply {
    let sent: Vec<((String, i32), (i64, i32))> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| ((t.topic.clone(), p.partition), (p.fetch_offset, p.partition_max_bytes)))
        })
        .collect();
    let forgotten: Vec<(String, i32)> =
        req.forgotten_topics_data.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic.clone(), *p))).collect();
    seen.lock().unwrap().push((
        me,
        SeenFetch {
            session_id: req.session_id,
            session_epoch: req.session_epoch,
            sent: sent.len(),
            forgotten: forgotten.len(),
        },
    ));
    let mut sessions = sessions.lock().unwrap();
    let (session_id, parts, full): (i32, SessionParts, bool) = match req.session_epoch {
        -1 if req.session_id != 0 => {
            sessions.open.remove(&req.session_id);
            return Reply::respond_fetch(FetchResponse::default());
        }
        -1 => (0, sent.into_iter().collect(), true),
        0 => {
            sessions.open.remove(&req.session_id);
            sessions.next_id += 1;
            let id = sessions.next_id + me * 1000;
            let parts: BTreeMap<_, _> = sent.into_iter().collect();
            sessions.open.insert(id, (1, parts.clone()));
            (id, parts, true)
        }
        epoch => {
            let Some((expected, parts)) = sessions.open.get_mut(&req.session_id) else {
                return Reply::respond_fetch(FetchResponse { error_code: 70, ..Default::default() });
            };
            if *expected != epoch {
                return Reply::respond_fetch(FetchResponse { error_code: 71, ..Default::default() });
            }
            *expected = if epoch == i32::MAX { 1 } else { epoch + 1 };
            for (k, v) in sent {
                parts.insert(k, v);
            }
            for k in forgotten {
                parts.remove(&k);
            }
            (req.session_id, parts.clone(), false)
        }
    };
    drop(sessions);
    let logs = logs.lock().unwrap();
    let mut topics: BTreeMap<String, Vec<PartitionData>> = BTreeMap::new();
    let mut any = false;
    for ((topic, p), (offset, max)) in parts {
        let leader = cluster.partition(&topic, p).leader;
        let end = logs.end(&topic, p);
        let mut data =
            PartitionData { partition_index: p, high_watermark: end, last_stable_offset: end, ..Default::default() };
        if leader == me && preferred.is_some_and(|r| r != me) && !req.rack_id.is_empty() {
            // KIP-392: the leader sends the consumer to its rack's replica, with no data.
            data.preferred_read_replica = preferred.unwrap();
            data.records = Some(Bytes::new());
            any = true;
        } else if leader != me && preferred != Some(me) {
            data.error_code = 6;
        } else if offset > end || offset < 0 {
            data.error_code = 1;
        } else {
            let records = logs.read(&topic, p, offset, max as usize);
            if records.is_empty() && !full {
                continue;
            }
            data.records = Some(records);
        }
        any |= data.error_code != 0 || data.records.as_ref().is_some_and(|r| !r.is_empty());
        topics.entry(topic).or_default().push(data);
    }
    let response = FetchResponse {
        session_id,
        responses: topics
            .into_iter()
            .map(|(topic, partitions)| FetchableTopicResponse { topic, partitions, ..Default::default() })
            .collect(),
        ..Default::default()
    };
    if any {
        Reply::respond_fetch(response)
    } else {
        // A long poll: nothing to send until max_wait_ms passes.
        Reply::after(Duration::from_millis(req.max_wait_ms as u64), Reply::respond_fetch(response))
    }
}

fn topic_id(name: &str) -> Uuid {
    let mut id = [7u8; 16];
    for (n, b) in name.bytes().take(16).enumerate() {
        id[n] = b;
    }
    Uuid(id)
}

fn name_of(id: Uuid) -> String {
    assert_ne!(id, Uuid::ZERO, "a topic id is required at Fetch v13+");
    String::from_utf8(id.0.iter().copied().take_while(|b| *b != 7).collect()).unwrap()
}

/// Rewrites a Fetch reply to name topics by id, as Fetch v13+ does.
fn by_id(reply: Reply) -> Reply {
    fn fix(r: &mut FetchResponse) {
        for t in &mut r.responses {
            t.topic_id = topic_id(&t.topic);
            t.topic.clear();
        }
    }
    match reply {
        Reply::Respond(AnyResponse::Fetch(mut r)) => {
            fix(&mut r);
            Reply::Respond(AnyResponse::Fetch(r))
        }
        Reply::Later(later) => Reply::Later(Box::pin(async move { by_id(later.await) })),
        other => other,
    }
}

trait RespondFetch {
    fn respond_fetch(r: FetchResponse) -> Reply;
}

impl RespondFetch for Reply {
    fn respond_fetch(r: FetchResponse) -> Reply {
        Reply::Respond(AnyResponse::Fetch(Box::new(r)))
    }
}

impl Fake {
    fn new(brokers: i32, partitions: i32) -> Fake {
        let cluster = FakeCluster::new(brokers);
        cluster.create_topic("t", partitions);
        Fake {
            cluster,
            topic_ids: false,
            preferred: Mutex::new(None),
            validations: Default::default(),
            garbage_list_offsets: Default::default(),
            list_offsets: Default::default(),
            logs: Arc::default(),
            seen: Arc::default(),
            refusing: Default::default(),
        }
    }

    /// Installs the Fetch and ListOffsets handlers (after the cluster handle exists, since the
    /// handlers read leadership from it).
    fn serve(self: &Arc<Self>) {
        for id in 1..=self.cluster.state().brokers.len() as i32 {
            let fake = Arc::downgrade(self);
            let sessions = Arc::new(Mutex::new(Sessions::default()));
            self.cluster.broker(id).set_handler(move |header, request| {
                let Some(fake) = fake.upgrade() else { return Reply::Close };
                match request {
                    AnyRequest::SaslHandshake(_) => {
                        Reply::Respond(AnyResponse::SaslHandshake(Box::new(SaslHandshakeResponse {
                            error_code: 0,
                            mechanisms: vec!["PLAIN".into()],
                        })))
                    }
                    AnyRequest::SaslAuthenticate(_) => {
                        let refuse = fake.refusing.load(std::sync::atomic::Ordering::SeqCst) == id;
                        Reply::Respond(AnyResponse::SaslAuthenticate(Box::new(SaslAuthenticateResponse {
                            error_code: if refuse { 58 } else { 0 },
                            error_message: refuse.then(|| "Authentication failed".into()),
                            ..Default::default()
                        })))
                    }
                    AnyRequest::Metadata(req) if fake.topic_ids => {
                        let mut response = fake.cluster.state().metadata_response(&req, header.request_api_version);
                        for t in &mut response.topics {
                            t.topic_id = topic_id(t.name.as_deref().unwrap_or_default());
                        }
                        Reply::Respond(AnyResponse::Metadata(Box::new(response)))
                    }
                    AnyRequest::Fetch(mut req) => {
                        assert_eq!(
                            header.request_api_version >= 13,
                            fake.topic_ids,
                            "Fetch v{}",
                            header.request_api_version
                        );
                        if fake.topic_ids {
                            // Serve by name, answer by id.
                            for t in &mut req.topics {
                                t.topic = name_of(t.topic_id);
                            }
                            for t in &mut req.forgotten_topics_data {
                                t.topic = name_of(t.topic_id);
                            }
                        }
                        let preferred = *fake.preferred.lock().unwrap();
                        let reply = fetch_reply(id, preferred, &fake.cluster, &fake.logs, &sessions, &fake.seen, &req);
                        if fake.topic_ids { by_id(reply) } else { reply }
                    }
                    AnyRequest::OffsetForLeaderEpoch(req) => {
                        let logs = fake.logs.lock().unwrap();
                        let topics = req
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
                                        end_offset: logs.epoch_end(&t.topic, p.partition, p.leader_epoch),
                                        ..Default::default()
                                    })
                                    .collect(),
                                ..Default::default()
                            })
                            .collect();
                        fake.validations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let response = OffsetForLeaderEpochResponse { topics, ..Default::default() };
                        Reply::Respond(AnyResponse::OffsetForLeaderEpoch(Box::new(response)))
                    }
                    AnyRequest::ListOffsets(_)
                        if fake.garbage_list_offsets.load(std::sync::atomic::Ordering::Relaxed) =>
                    {
                        fake.list_offsets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Reply::RawBody(Bytes::from_static(&[0xff; 3]))
                    }
                    AnyRequest::ListOffsets(req) => {
                        fake.list_offsets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let logs = fake.logs.lock().unwrap();
                        let topics = req
                            .topics
                            .iter()
                            .map(|t| ListOffsetsTopicResponse {
                                name: t.name.clone(),
                                partitions: t
                                    .partitions
                                    .iter()
                                    .map(|p| {
                                        let end = logs.end(&t.name, p.partition_index);
                                        let offset = match p.timestamp {
                                            -2 => 0,
                                            -1 => end,
                                            ts => {
                                                let o = (ts + 9) / 10;
                                                if o < end { o } else { -1 }
                                            }
                                        };
                                        ListOffsetsPartitionResponse {
                                            partition_index: p.partition_index,
                                            offset,
                                            ..Default::default()
                                        }
                                    })
                                    .collect(),
                                ..Default::default()
                            })
                            .collect();
                        Reply::Respond(AnyResponse::ListOffsets(Box::new(ListOffsetsResponse {
                            topics,
                            ..Default::default()
                        })))
                    }
                    _ => Reply::Default,
                }
            });
        }
    }

    fn append(&self, p: i32, n: i64) {
        self.logs.lock().unwrap().append("t", p, n);
    }

    async fn consumer(self: &Arc<Self>, config: ConsumerConfig) -> Consumer {
        self.serve();
        let cluster: Cluster = self.cluster.connect(self.cluster.config()).await.unwrap();
        let resolver = MetadataResolver::new(cluster.clone(), ResolverConfig::default());
        Consumer::with_parts(config, cluster, BoxResolver::new(resolver)).unwrap()
    }

    fn config(&self) -> ConsumerConfig {
        ConsumerConfig::default().bootstrap_servers([self.cluster.addr(1)])
    }
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

async fn read(consumer: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = tokio::time::timeout(Duration::from_secs(60), consumer.next()).await.expect("records in time");
        out.push(r.expect("stream continues").expect("no error"));
    }
    out
}

fn values(records: &[ConsumerRecord], p: i32) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.partition == p)
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

fn expected(p: i32, range: std::ops::Range<i64>) -> Vec<String> {
    range.map(|o| format!("t-{p}-{o}")).collect()
}

#[tokio::test(start_paused = true)]
async fn reads_every_partition_from_every_broker_in_order() {
    let fake = Arc::new(Fake::new(2, 2));
    fake.append(0, 3);
    fake.append(0, 2);
    fake.append(1, 4);
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::Earliest), (tp(1), Offset::Earliest)]);
    let records = read(&mut consumer, 9).await;
    assert_eq!(values(&records, 0), expected(0, 0..5));
    assert_eq!(values(&records, 1), expected(1, 0..4));
    assert_eq!(consumer.position(&tp(0)).unwrap(), Some(5));
    assert_eq!(consumer.position(&tp(1)).unwrap(), Some(4));
    // Both brokers were fetched from.
    let seen = fake.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(b, _)| *b == 1) && seen.iter().any(|(b, _)| *b == 2));
}

#[tokio::test(start_paused = true)]
async fn latest_reads_only_new_records_and_an_offset_or_timestamp_starts_there() {
    let fake = Arc::new(Fake::new(1, 2));
    fake.append(0, 5);
    fake.append(1, 5);
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::Latest), (tp(1), Offset::At(3))]);
    let records = read(&mut consumer, 2).await;
    assert_eq!(values(&records, 1), expected(1, 3..5));
    while consumer.position(&tp(0)).unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(consumer.position(&tp(0)).unwrap(), Some(5));
    fake.append(0, 2);
    let records = read(&mut consumer, 2).await;
    assert_eq!(values(&records, 0), expected(0, 5..7));
    // By timestamp: records are stamped 10 × offset, so 21 ms is offset 3.
    consumer.seek(&tp(0), Offset::Timestamp(21)).unwrap();
    let records = read(&mut consumer, 4).await;
    assert_eq!(values(&records, 0), expected(0, 3..7));
}

#[tokio::test(start_paused = true)]
async fn fetches_use_incremental_sessions() {
    let fake = Arc::new(Fake::new(1, 3));
    for p in 0..3 {
        fake.append(p, 2);
    }
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign((0..3).map(|p| (tp(p), Offset::At(0))));
    read(&mut consumer, 6).await;
    fake.append(1, 2);
    let records = read(&mut consumer, 2).await;
    assert_eq!(values(&records, 1), expected(1, 2..4));
    let seen: Vec<SeenFetch> = fake.seen.lock().unwrap().iter().map(|(_, s)| s.clone()).collect();
    assert_eq!((seen[0].session_id, seen[0].session_epoch, seen[0].sent), (0, 0, 3), "{seen:?}");
    let id = seen[1].session_id;
    assert!(id != 0, "{seen:?}");
    for (n, s) in seen.iter().enumerate().skip(1) {
        assert_eq!((s.session_id, s.session_epoch), (id, n as i32), "{seen:?}");
    }
    // After the first response every partition moved: all three are re-sent once; after that,
    // only the partition that got new records is.
    assert_eq!(seen[1].sent, 3, "{seen:?}");
    assert!(seen.iter().skip(2).all(|s| s.sent <= 1), "{seen:?}");
    assert!(seen.iter().all(|s| s.forgotten == 0), "nothing went over budget: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn a_leader_move_re_resolves_and_continues_without_loss_or_duplicates() {
    let fake = Arc::new(Fake::new(2, 2));
    fake.append(0, 3);
    fake.append(1, 3);
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::Earliest), (tp(1), Offset::Earliest)]);
    let mut records = read(&mut consumer, 6).await;
    let metadata_before = consumer.cluster().metadata_requests();
    // Partition 0 moves from broker 1 to broker 2.
    fake.cluster.move_leader("t", 0, 2);
    fake.append(0, 3);
    fake.append(1, 3);
    records.extend(read(&mut consumer, 6).await);
    assert_eq!(values(&records, 0), expected(0, 0..6));
    assert_eq!(values(&records, 1), expected(1, 0..6));
    // Broker 1 answered NOT_LEADER_OR_FOLLOWER; the re-resolve cost one Metadata request; the
    // position was validated with the new leader (KIP-320) before fetching from it.
    assert_eq!(consumer.cluster().metadata_requests(), metadata_before + 1);
    assert_eq!(fake.validations.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_pending_next_loses_no_record() {
    let fake = Arc::new(Fake::new(1, 1));
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::At(0))]);
    for _ in 0..3 {
        // Nothing to read: the pending next() is dropped by the timeout.
        assert!(tokio::time::timeout(Duration::from_millis(700), consumer.next()).await.is_err());
    }
    fake.append(0, 4);
    let records = read(&mut consumer, 4).await;
    assert_eq!(values(&records, 0), expected(0, 0..4));
    // And a batch call dropped mid-wait as well.
    assert!(tokio::time::timeout(Duration::from_millis(700), consumer.poll_batch(10)).await.is_err());
    fake.append(0, 2);
    let batch = tokio::time::timeout(Duration::from_secs(60), consumer.poll_batch(10)).await.unwrap().unwrap();
    let offsets: Vec<i64> = batch.iter().flat_map(|p| p.records.iter().map(|r| r.offset)).collect();
    assert_eq!(offsets, vec![4, 5]);
}

#[tokio::test(start_paused = true)]
async fn draining_a_full_buffer_lets_the_tasks_on_its_thread_run() {
    let fake = Arc::new(Fake::new(1, 1));
    for _ in 0..20 {
        fake.append(0, 100);
    }
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::At(0))]);
    let mut records = read(&mut consumer, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(consumer.buffered_bytes() > 0);
    // A neighbour on the same (current-thread) runtime: it runs only when the test task yields.
    let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = ticks.clone();
    let neighbour = tokio::spawn(async move {
        loop {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    });
    // Every record is buffered, so each next() is ready at once; without the cooperative
    // budget the loop would never yield and the neighbour (or a fetch task) would wait for it.
    while records.len() < 1000 {
        records.push(consumer.next().await.expect("stream continues").expect("no error"));
    }
    let during_stream = ticks.load(std::sync::atomic::Ordering::Relaxed);
    let mut taken = records.len();
    while taken < 2000 {
        taken += consumer.poll_batch(10).await.unwrap().iter().map(|p| p.records.len()).sum::<usize>();
    }
    let during_batches = ticks.load(std::sync::atomic::Ordering::Relaxed) - during_stream;
    neighbour.abort();
    assert!(during_stream >= 3, "the neighbour ran {during_stream} times while the Stream drained 999 records");
    assert!(during_batches >= 1, "the neighbour ran {during_batches} times during 100 poll_batch calls");
    assert_eq!(values(&records, 0), expected(0, 0..1000));
}

#[tokio::test(start_paused = true)]
async fn buffered_records_stay_within_the_budget_until_drained() {
    let fake = Arc::new(Fake::new(1, 1));
    for _ in 0..50 {
        fake.append(0, 20);
    }
    // One 20-record batch is well under 4 KiB; the partition may hold 2 × 4 KiB.
    let config = fake.config().max_partition_fetch_bytes(4096);
    let mut consumer = fake.consumer(config).await;
    consumer.assign([(tp(0), Offset::At(0))]);
    let first = read(&mut consumer, 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fetches = fake.seen.lock().unwrap().len();
    let buffered = consumer.buffered_bytes();
    // The bound: just under the partition budget, plus one response (as many whole batches as
    // fit in max.partition.fetch.bytes), each counted with its record structs.
    let batch_len = fake.logs.lock().unwrap().read("t", 0, 0, 1).len();
    let per_batch = batch_len + 20 * std::mem::size_of::<krab_protocol::records::Record>();
    let bound = 2 * 4096 - 1 + (4096 / batch_len).max(1) * per_batch;
    assert!(buffered > 2 * 4096 && buffered <= bound, "buffered {buffered}, bound {bound}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.seen.lock().unwrap().len(), fetches, "no fetch while over budget");
    let mut records = first;
    records.extend(read(&mut consumer, 999).await);
    assert_eq!(values(&records, 0), expected(0, 0..1000));
}

/// A partition held back by its budget rejoins the next request as soon as it is drained, not
/// after a long poll of its idle neighbours on the same broker: the request that leaves it out
/// waits briefly at the broker (a skewed topic's hot partition would otherwise get at most one
/// partition budget per fetch.max.wait.ms).
#[tokio::test(start_paused = true)]
async fn a_partition_held_back_by_its_budget_is_not_stalled_by_a_long_poll_of_idle_neighbours() {
    let fake = Arc::new(Fake::new(1, 2));
    for _ in 0..50 {
        fake.append(0, 20);
    }
    // Partition 1 stays empty: a request with only it waits at the broker.
    let config = fake.config().max_partition_fetch_bytes(4096).fetch_max_wait(Duration::from_millis(500));
    let mut consumer = fake.consumer(config).await;
    consumer.assign([(tp(0), Offset::At(0)), (tp(1), Offset::At(0))]);
    let started = tokio::time::Instant::now();
    let records = read(&mut consumer, 1000).await;
    let took = started.elapsed();
    assert_eq!(values(&records, 0), expected(0, 0..1000));
    let fetches = fake.seen.lock().unwrap().len();
    // Before: every time partition 0 was drained, it waited out a 500 ms long poll (2 s in all here).
    assert!(took < Duration::from_millis(500), "1000 records took {took:?} of broker time ({fetches} fetches)");
}

#[tokio::test(start_paused = true)]
async fn topics_go_by_id_when_metadata_has_ids() {
    let mut fake = Fake::new(2, 2);
    fake.topic_ids = true;
    let fake = Arc::new(fake);
    fake.append(0, 3);
    fake.append(1, 2);
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::Earliest), (tp(1), Offset::At(1))]);
    let records = read(&mut consumer, 4).await;
    assert_eq!(values(&records, 0), expected(0, 0..3));
    assert_eq!(values(&records, 1), expected(1, 1..2));
    fake.append(0, 1);
    let records = read(&mut consumer, 1).await;
    assert_eq!(values(&records, 0), expected(0, 3..4));
}

/// Partition 0 holds 6 records in epoch 0; the consumer reads them all; then a new leader takes
/// over without records 3..6 (epoch 0 ends at 3 there) and writes two new ones.
async fn truncated_after_reading(reset: AutoOffsetReset) -> (Arc<Fake>, Consumer) {
    let fake = Arc::new(Fake::new(2, 1));
    fake.append(0, 3);
    fake.append(0, 3);
    let mut consumer = fake.consumer(fake.config().auto_offset_reset(reset)).await;
    consumer.assign([(tp(0), Offset::Earliest)]);
    let records = read(&mut consumer, 6).await;
    assert_eq!(values(&records, 0), expected(0, 0..6));
    fake.logs.lock().unwrap().truncate("t", 0, 3);
    fake.cluster.move_leader("t", 0, 2);
    fake.append(0, 2);
    (fake, consumer)
}

#[tokio::test(start_paused = true)]
async fn log_truncation_after_a_leader_change_is_a_typed_error_with_reset_none() {
    let (_fake, mut consumer) = truncated_after_reading(AutoOffsetReset::None).await;
    let e = tokio::time::timeout(Duration::from_secs(60), consumer.next()).await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogTruncation);
    assert_eq!(e.partition(), Some(&tp(0)));
    assert!(e.to_string().contains("position 6") && e.to_string().contains("at 3"), "{e}");
    // Nothing is re-read or skipped silently: the partition waits for a seek.
    assert!(tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.is_err());
    consumer.seek(&tp(0), Offset::At(3)).unwrap();
    let records = read(&mut consumer, 2).await;
    assert_eq!(
        records.iter().map(|r| (r.offset, r.leader_epoch)).collect::<Vec<_>>(),
        vec![(3, Some(1)), (4, Some(1))]
    );
}

#[tokio::test(start_paused = true)]
async fn log_truncation_with_a_reset_policy_resumes_at_the_divergence() {
    let (_fake, mut consumer) = truncated_after_reading(AutoOffsetReset::Earliest).await;
    let records = read(&mut consumer, 2).await;
    assert_eq!(
        records.iter().map(|r| (r.offset, r.leader_epoch)).collect::<Vec<_>>(),
        vec![(3, Some(1)), (4, Some(1))]
    );
}

#[tokio::test(start_paused = true)]
async fn with_client_rack_records_come_from_the_preferred_replica_and_from_the_leader_when_it_fails() {
    let fake = Arc::new(Fake::new(2, 1));
    *fake.preferred.lock().unwrap() = Some(2);
    fake.append(0, 3);
    let mut consumer = fake.consumer(fake.config().client_rack("r2")).await;
    consumer.assign([(tp(0), Offset::Earliest)]);
    let mut records = read(&mut consumer, 3).await;
    let from = |b: i32| fake.seen.lock().unwrap().iter().filter(|(id, s)| *id == b && s.sent > 0).count();
    assert!(from(2) >= 1, "the replica served the fetch");
    // The replica dies, and the leader stops naming it.
    fake.cluster.set_down(2, true);
    fake.cluster.broker(2).kill_connections();
    *fake.preferred.lock().unwrap() = None;
    fake.append(0, 3);
    let leader_before = from(1);
    records.extend(read(&mut consumer, 3).await);
    assert_eq!(values(&records, 0), expected(0, 0..6));
    assert!(from(1) > leader_before, "the leader served the rest");
}

#[tokio::test(start_paused = true)]
async fn without_client_rack_the_leader_serves() {
    let fake = Arc::new(Fake::new(2, 1));
    *fake.preferred.lock().unwrap() = Some(2);
    fake.append(0, 3);
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::Earliest)]);
    let records = read(&mut consumer, 3).await;
    assert_eq!(values(&records, 0), expected(0, 0..3));
    assert!(fake.seen.lock().unwrap().iter().all(|(id, _)| *id == 1));
}

#[tokio::test(start_paused = true)]
async fn a_leader_naming_a_dead_replica_is_asked_at_backoff_pace_not_in_a_loop() {
    let fake = Arc::new(Fake::new(2, 1));
    *fake.preferred.lock().unwrap() = Some(2);
    fake.cluster.set_down(2, true);
    fake.append(0, 3);
    let mut consumer = fake.consumer(fake.config().client_rack("r2")).await;
    consumer.assign([(tp(0), Offset::Earliest)]);
    // The leader serves no data while it names the replica (as Kafka does).
    assert!(tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.is_err());
    let asked = fake.seen.lock().unwrap().iter().filter(|(id, _)| *id == 1).count();
    assert!(asked <= 40, "{asked} fetches to the leader in 10 s");
    // Once the leader stops naming it, records flow.
    *fake.preferred.lock().unwrap() = None;
    let records = read(&mut consumer, 3).await;
    assert_eq!(values(&records, 0), expected(0, 0..3));
}

#[tokio::test(start_paused = true)]
async fn a_malformed_list_offsets_response_is_an_error_retried_at_backoff_pace() {
    let fake = Arc::new(Fake::new(1, 1));
    fake.garbage_list_offsets.store(true, std::sync::atomic::Ordering::Relaxed);
    fake.append(0, 2);
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::Earliest)]);
    let e = tokio::time::timeout(Duration::from_secs(60), consumer.next()).await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.partition(), Some(&tp(0)));
    assert!(e.is_retriable() || e.kind() == krab_consumer::ErrorKind::Cluster, "{e:?}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let asked = fake.list_offsets.load(std::sync::atomic::Ordering::Relaxed);
    assert!(asked <= 20, "{asked} ListOffsets requests in 10 s");
    fake.garbage_list_offsets.store(false, std::sync::atomic::Ordering::Relaxed);
    // Errors surfaced meanwhile, then the records.
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(60), consumer.next()).await.unwrap().unwrap() {
            got.push(r);
        }
    }
    assert_eq!(values(&got, 0), expected(0, 0..2));
}

/// A dead broker that metadata still names leader (as Kafka does until the controller fences it)
/// costs Metadata requests at the backoff pace, not at the pace connection attempts fail; the
/// partitions it does not lead keep yielding meanwhile, and its own resume exactly where they
/// stopped once it is back.
#[tokio::test(start_paused = true)]
async fn a_dead_leader_still_in_metadata_is_re_resolved_at_the_backoff_pace() {
    let fake = Arc::new(Fake::new(2, 2));
    fake.append(0, 3);
    fake.append(1, 3);
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::Earliest), (tp(1), Offset::Earliest)]);
    let mut records = read(&mut consumer, 6).await;
    let metadata_before = consumer.cluster().metadata_requests();
    // Broker 2 leads partition 1; it goes away but stays leader in metadata for 3 s.
    fake.cluster.set_down(2, true);
    let started = tokio::time::Instant::now();
    let mut appended = 0;
    while started.elapsed() < Duration::from_secs(3) {
        fake.append(0, 1);
        appended += 1;
        records.extend(read(&mut consumer, 1).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during = consumer.cluster().metadata_requests() - metadata_before;
    // retry.backoff.ms 100 doubling to retry.backoff.max.ms 1000: requests at about 0, 0.1, 0.3,
    // 0.7, 1.5, 2.5 s.
    assert!((1..=7).contains(&during), "{during} Metadata requests in 3 s with a dead leader");
    fake.cluster.set_down(2, false);
    fake.append(1, 2);
    records.extend(read(&mut consumer, 2).await);
    assert_eq!(values(&records, 0), expected(0, 0..3 + appended));
    assert_eq!(values(&records, 1), expected(1, 0..5));
}

#[tokio::test(start_paused = true)]
async fn the_stream_mid_batch_holds_through_position_batch_calls_pauses_and_seeks() {
    let fake = Arc::new(Fake::new(1, 2));
    fake.append(0, 6);
    fake.append(1, 6);
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::At(0)), (tp(1), Offset::At(0))]);
    // Two records of one batch: the Stream is in the middle of it.
    let first = read(&mut consumer, 2).await;
    let (p, q) = (first[0].partition, 1 - first[0].partition);
    assert_eq!(values(&first, p), expected(p, 0..2));
    assert_eq!(consumer.position(&tp(p)).unwrap(), Some(2), "what the Stream returned, and only that");
    // The batch call continues exactly there.
    let batch = tokio::time::timeout(Duration::from_secs(60), consumer.poll_batch(100)).await.unwrap().unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(values(&batch[0].records, p), expected(p, 2..6));
    // A pause mid-batch stops the partition at once; resuming continues without loss.
    let some = read(&mut consumer, 1).await;
    assert_eq!(values(&some, q), expected(q, 0..1));
    consumer.pause([&tp(q)]).unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(700), consumer.next()).await.is_err(), "paused");
    assert_eq!(consumer.position(&tp(q)).unwrap(), Some(1));
    consumer.resume([&tp(q)]).unwrap();
    let rest = read(&mut consumer, 5).await;
    assert_eq!(values(&rest, q), expected(q, 1..6));
    // A seek mid-batch: the rest of the batch is dropped and reading starts at the target.
    fake.append(p, 4);
    let one = read(&mut consumer, 1).await;
    assert_eq!(values(&one, p), expected(p, 6..7));
    consumer.seek(&tp(p), Offset::At(3)).unwrap();
    assert_eq!(consumer.position(&tp(p)).unwrap(), Some(3));
    let again = read(&mut consumer, 7).await;
    assert_eq!(values(&again, p), expected(p, 3..10));
    assert_eq!(consumer.buffered_bytes(), 0);
}

/// A leader that refuses the consumer's SASL credentials: its partitions yield the typed
/// authentication error through the stream (once, not a retry storm of redials), while the
/// partitions of a broker that accepts keep yielding.
#[tokio::test(start_paused = true)]
async fn a_leader_refusing_the_credentials_surfaces_the_typed_error_through_the_stream() {
    let fake = Arc::new(Fake::new(2, 2));
    fake.cluster.set_partition("t", 0, 1, 0);
    fake.cluster.set_partition("t", 1, 2, 0);
    fake.append(0, 5);
    fake.append(1, 5);
    fake.refusing.store(2, std::sync::atomic::Ordering::SeqCst);
    fake.serve();
    let sasl = krab_consumer::SecurityConfig::sasl(krab_consumer::SaslConfig::plain("alice", "secret"), None);
    let mut cluster_config = fake.cluster.config();
    cluster_config.security = sasl.clone();
    let cluster: Cluster = fake.cluster.connect(cluster_config).await.expect("broker 1 accepts");
    let resolver = MetadataResolver::new(cluster.clone(), ResolverConfig::default());
    let config = fake.config().security(sasl);
    let mut consumer = Consumer::with_parts(config, cluster, BoxResolver::new(resolver)).unwrap();
    consumer.assign([(tp(0), Offset::At(0)), (tp(1), Offset::At(0))]);
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while records.len() < 5 || errors.is_empty() {
        match tokio::time::timeout_at(deadline, consumer.next()).await.expect("records and the error in time") {
            Some(Ok(r)) => records.push(r),
            Some(Err(e)) => errors.push(e),
            None => panic!("the stream ended"),
        }
    }
    assert_eq!(values(&records, 0), expected(0, 0..5));
    let e = &errors[0];
    assert_eq!(e.kind(), ErrorKind::Authentication(krab_consumer::SaslMechanism::Plain), "{e:#}");
    assert!(!e.is_retriable());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = fake.cluster.broker(2).requests(krab_protocol::ApiKey::SaslAuthenticate);
    assert!(attempts <= 8, "{attempts} authentication attempts at the refusing broker in 15 s: paced by backoff");
}

#[tokio::test(start_paused = true)]
async fn a_topic_the_broker_refuses_fails_at_once_with_its_code() {
    let fake = Arc::new(Fake::new(2, 2));
    fake.append(0, 3);
    // TOPIC_AUTHORIZATION_FAILED: Kafka's answer to a principal without Describe on the topic.
    fake.cluster.set_topic_error("t", Some(29));
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::Earliest)]);
    let started = tokio::time::Instant::now();
    let item = tokio::time::timeout(Duration::from_secs(60), consumer.next()).await.expect("an error, not a hang");
    let err = item.expect("an item").expect_err("the partition must fail");
    assert_eq!(err.kind(), ErrorKind::Broker(krab_protocol::error_code::ErrorCode::TopicAuthorizationFailed), "{err}");
    assert!(!err.is_retriable(), "{err}");
    assert_eq!(err.partition(), Some(&tp(0)));
    assert!(err.to_string().contains("TOPIC_AUTHORIZATION_FAILED"), "{err}");
    // One resolve is enough to know: no round of retries first.
    assert!(started.elapsed() < Duration::from_millis(100), "took {:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn lag_is_the_log_end_minus_the_position() {
    let fake = Arc::new(Fake::new(2, 2));
    fake.append(0, 5);
    fake.append(1, 3);
    let mut consumer = fake.consumer(fake.config()).await;
    consumer.assign([(tp(0), Offset::Earliest), (tp(1), Offset::At(1))]);
    let _ = read(&mut consumer, 5 + 2).await;
    let lag = consumer.lag().await.unwrap();
    assert_eq!(lag.get(&tp(0)), Some(&0));
    assert_eq!(lag.get(&tp(1)), Some(&0));
    fake.append(0, 4);
    let lag = consumer.lag().await.unwrap();
    assert_eq!(lag.get(&tp(0)), Some(&4), "{lag:?}");
}

#[tokio::test(start_paused = true)]
async fn group_calls_without_a_group_id_are_a_typed_config_error() {
    let fake = Arc::new(Fake::new(1, 1));
    let consumer = fake.consumer(fake.config()).await;
    for e in [
        consumer.subscribe(["t"]).unwrap_err(),
        consumer.subscribe_pattern("t.*").unwrap_err(),
        consumer.commit_async().await.unwrap_err(),
        consumer.commit().await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("group.id"), "{e}");
    }
}

/// Telemetry of a leader move: the partition stalls and resumes (events, and the
/// stalled-partitions gauge up then back to 0), the refresh says why, lag gauges follow the
/// high watermark, end-to-end latency is sampled per chunk, and a lost fetch session is counted.
#[tokio::test(start_paused = true)]
async fn a_leader_move_and_a_lost_session_are_traced_and_measured() {
    use krab_cluster::telemetry as names;
    use krab_testkit::observe::{EventLog, TestRecorder};
    let recorder = TestRecorder::new();
    let _metrics = recorder.set_default();
    let log = EventLog::new();
    let _tracing = log.set_default();
    let client = [("client_id", "consumer-telemetry")];
    let lag = |p: &str| recorder.gauge(names::CONSUMER_LAG, &[client[0], ("topic", "t"), ("partition", p)]);

    let fake = Arc::new(Fake::new(2, 2));
    fake.append(0, 3);
    fake.append(1, 3);
    let mut consumer = fake.consumer(fake.config().client_id("consumer-telemetry")).await;
    consumer.assign([(tp(0), Offset::Earliest), (tp(1), Offset::Earliest)]);
    read(&mut consumer, 6).await;
    // The next responses (long polls) see the positions at the log's end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for p in ["0", "1"] {
        let g = lag(p).expect("a lag gauge per partition");
        assert_eq!((g.max, g.current), (3.0, 0.0), "partition {p}: {g:?}");
    }
    assert!(log.with_message("partition stalled").is_empty(), "{:?}", log.with_message("partition stalled"));
    assert!(log.at_least(tracing::Level::INFO).is_empty(), "{:?}", log.at_least(tracing::Level::INFO));

    fake.cluster.move_leader("t", 0, 2);
    fake.append(0, 3);
    fake.append(1, 3);
    read(&mut consumer, 6).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalled = log.with_message("partition stalled");
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert_eq!((stalled[0].field("partition"), stalled[0].field("reason")), (Some("t-0"), Some("fetch failed")));
    let resumed = log.with_message("partition resumed");
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!((resumed[0].field("partition"), resumed[0].field("leader")), (Some("t-0"), Some("2")));
    assert!(
        log.with_message("metadata refreshed").iter().any(|e| e.field("reason") == Some("stale")),
        "{:?}",
        log.with_message("metadata refreshed")
    );
    let gauge = recorder.gauge(names::CONSUMER_STALLED, &client).expect("stalled-partitions gauge");
    assert_eq!((gauge.max, gauge.current), (1.0, 0.0), "{gauge:?}");
    assert_eq!(lag("0").unwrap().current, 0.0);
    // One sample per chunk handed out (each fetch brought one batch per partition), not per record.
    let e2e = recorder.histogram(names::CONSUMER_E2E_LATENCY, &client);
    assert!((4..=6).contains(&e2e.len()), "{} samples for 12 records in 4 batches", e2e.len());

    // Broker 2's connections drop mid long poll: its session is lost, and the next Fetch is full.
    assert_eq!(recorder.counter(names::CONSUMER_SESSION_RESETS, &client), 0);
    // Mid long poll (they end on whole half seconds here).
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.cluster.broker(2).kill_connections();
    fake.append(0, 1);
    read(&mut consumer, 1).await;
    let resets = log.with_message("fetch session reset");
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert_eq!((resets[0].field("broker"), resets[0].field("reason")), (Some("2"), Some("no response")));
    assert_eq!(recorder.counter(names::CONSUMER_SESSION_RESETS, &[client[0], ("broker", "2")]), 1);
}
