//! An in-memory fake Kafka broker for krab-cluster's hermetic tests.
//!
//! - [`FakeBroker`] serves the broker side of a `tokio::io::duplex` (or of loopback TCP
//!   connections): it reads frames with krab's `FrameCodec`, decodes the request header and body,
//!   and answers through a per-test handler `Fn(RequestHeader, AnyRequest) -> Reply`. Replies can
//!   be sent at once, later, out of order ([`Reply::Hold`] hands the request to the test, which
//!   answers it whenever it likes), as raw bytes, never, or by closing the connection.
//! - Default handlers answer ApiVersions (every `ApiKey::ALL` at `api.versions()`, with the
//!   KIP-511 fallback answer when asked a version above the advertised one), Metadata (from a
//!   configurable cluster), CreateTopics, DeleteTopics and acks=0 Produce (no answer).
//! - [`FakeCluster`] is a set of fake brokers sharing one metadata state, and [`FakeTransport`]
//!   is a `tower::Service<BrokerAddr>` for `Cluster::connect_with` that maps broker addresses to
//!   them in memory, with per-broker "down" (connection refused) and "hang" switches.
#![allow(dead_code, unreachable_pub)]

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use krab_cluster::{
    BrokerAddr, BrokerClient, Cluster, ClusterConfig, ClusterError, ConnectionConfig, DisconnectReason,
};
use krab_protocol::frame::FrameCodec;
use krab_protocol::messages::api_versions::ApiVersion;
use krab_protocol::messages::create_topics::CreatableTopicResult;
use krab_protocol::messages::delete_topics::DeletableTopicResult;
use krab_protocol::messages::metadata::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use krab_protocol::messages::{
    AnyRequest, AnyResponse, ApiVersionsResponse, CreateTopicsResponse, DeleteTopicsResponse, MetadataRequest,
    MetadataResponse, ProduceResponse, RequestHeader, ResponseHeader,
};
use krab_protocol::{ApiKey, Message};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

/// The port every in-memory fake broker advertises (hosts differ: `broker-<id>`).
pub const FAKE_PORT: u16 = 9092;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

/// How the fake broker answers one request.
pub enum Reply {
    /// Whatever the default handler does for this request.
    Default,
    /// This response, encoded at the request's version, with the right response header.
    Respond(AnyResponse),
    /// This response body encoded at another version (e.g. the v0 body of an ApiVersions
    /// UNSUPPORTED_VERSION answer); the header still follows the request's version.
    RespondAt(AnyResponse, i16),
    /// A frame whose header is the request's correlation id (header v0) and whose body is these
    /// bytes, verbatim.
    RawBody(Bytes),
    /// Bytes written to the socket verbatim (no size prefix added).
    RawFrame(Bytes),
    /// The reply this future yields, once it does (delays, gates).
    Later(Pin<Box<dyn Future<Output = Reply> + Send>>),
    /// Hands the request to the test as a [`Held`]: the test answers it when it likes, in any
    /// order relative to other requests.
    Hold(mpsc::UnboundedSender<Held>),
    /// No answer, ever.
    Never,
    /// Closes the connection (after writing whatever was answered before).
    Close,
}

impl Reply {
    /// Answers with a response.
    pub fn respond(response: impl IntoAny) -> Reply {
        Reply::Respond(response.into_any())
    }

    /// Answers with `reply` after `delay` (tokio time: works with a paused clock).
    pub fn after(delay: Duration, reply: Reply) -> Reply {
        Reply::Later(Box::pin(async move {
            tokio::time::sleep(delay).await;
            reply
        }))
    }

    /// Sends only a 4-byte size prefix announcing a frame of `len` bytes, and nothing else.
    pub fn huge_prefix(len: u32) -> Reply {
        Reply::RawFrame(Bytes::copy_from_slice(&len.to_be_bytes()))
    }
}

/// Typed responses the fake can send.
pub trait IntoAny {
    /// Wraps `self` into an [`AnyResponse`].
    fn into_any(self) -> AnyResponse;
}

macro_rules! into_any {
    ($($ty:ident => $variant:ident),* $(,)?) => {$(
        impl IntoAny for $ty {
            fn into_any(self) -> AnyResponse {
                AnyResponse::$variant(Box::new(self))
            }
        }
    )*};
}

into_any!(
    MetadataResponse => Metadata,
    ApiVersionsResponse => ApiVersions,
    ProduceResponse => Produce,
    CreateTopicsResponse => CreateTopics,
    DeleteTopicsResponse => DeleteTopics,
);

impl IntoAny for AnyResponse {
    fn into_any(self) -> AnyResponse {
        self
    }
}

/// A request the handler handed to the test ([`Reply::Hold`]); answer it with one of its
/// methods. Dropping it means the request is never answered.
pub struct Held {
    ctx: Ctx,
}

impl Held {
    /// The request header.
    pub fn header(&self) -> &RequestHeader {
        &self.ctx.header
    }

    /// The request.
    pub fn request(&self) -> &AnyRequest {
        &self.ctx.request
    }

    /// The topics a Metadata request asks for (empty for other requests or "all topics").
    pub fn metadata_topics(&self) -> Vec<String> {
        match &self.ctx.request {
            AnyRequest::Metadata(m) => m.topics.iter().flatten().filter_map(|t| t.name.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// Answers with `reply`. The answer is queued on the connection before this returns, so
    /// answers given one after the other are written in that order.
    pub fn reply(self, reply: Reply) {
        dispatch(self.ctx, reply);
    }

    /// Answers with a response.
    pub fn respond(self, response: impl IntoAny) {
        self.reply(Reply::respond(response));
    }

    /// Answers as the default handler would (from the state at this moment).
    pub fn respond_default(self) {
        self.reply(Reply::Default);
    }

    /// Closes the connection the request came on.
    pub fn close(self) {
        self.reply(Reply::Close);
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

/// One partition as the fake cluster's metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePartition {
    /// Leader broker id (-1: none).
    pub leader: i32,
    /// Leader epoch.
    pub epoch: i32,
    /// Replicas (also reported as the ISR).
    pub replicas: Vec<i32>,
}

/// The metadata every broker of a fake cluster serves.
#[derive(Debug, Clone)]
pub struct ClusterState {
    /// Brokers: id and advertised address.
    pub brokers: BTreeMap<i32, BrokerAddr>,
    /// The controller id.
    pub controller: i32,
    /// The cluster id.
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, Vec<FakePartition>>,
    /// The version ranges advertised in ApiVersions, by API key.
    pub api_ranges: BTreeMap<i16, (i16, i16)>,
}

impl ClusterState {
    fn new(brokers: BTreeMap<i32, BrokerAddr>) -> Self {
        Self {
            controller: brokers.keys().next().copied().unwrap_or(-1),
            brokers,
            cluster_id: "fake-cluster".into(),
            topics: BTreeMap::new(),
            api_ranges: ApiKey::ALL.iter().map(|k| (*k as i16, (k.versions().min, k.versions().max))).collect(),
        }
    }

    /// Adds (or replaces) a topic whose leaders are spread round-robin over the brokers, epoch 0.
    pub fn create_topic(&mut self, name: &str, partitions: i32) {
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        let parts = (0..partitions.max(1))
            .map(|p| {
                let leader = ids[p as usize % ids.len()];
                FakePartition { leader, epoch: 0, replicas: vec![leader] }
            })
            .collect();
        self.topics.insert(name.to_string(), parts);
    }

    /// The Metadata response a broker of this cluster gives at `version`.
    pub fn metadata_response(&self, request: &MetadataRequest, version: i16) -> MetadataResponse {
        let names: Vec<String> = match &request.topics {
            None => self.topics.keys().cloned().collect(),
            Some(list) if list.is_empty() && version == 0 => self.topics.keys().cloned().collect(),
            Some(list) => list.iter().filter_map(|t| t.name.clone()).collect(),
        };
        let topics = names
            .into_iter()
            .map(|name| match self.topics.get(&name) {
                Some(parts) => MetadataResponseTopic {
                    name: Some(name),
                    partitions: parts
                        .iter()
                        .enumerate()
                        .map(|(i, p)| MetadataResponsePartition {
                            error_code: if p.leader < 0 { 5 } else { 0 },
                            partition_index: i as i32,
                            leader_id: p.leader,
                            leader_epoch: if version >= 7 { p.epoch } else { -1 },
                            replica_nodes: p.replicas.clone(),
                            isr_nodes: p.replicas.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
                None => MetadataResponseTopic { error_code: 3, name: Some(name), ..Default::default() },
            })
            .collect();
        MetadataResponse {
            brokers: self
                .brokers
                .iter()
                .map(|(id, addr)| MetadataResponseBroker {
                    node_id: *id,
                    host: addr.host.clone(),
                    port: i32::from(addr.port),
                    ..Default::default()
                })
                .collect(),
            cluster_id: (version >= 2).then(|| self.cluster_id.clone()),
            controller_id: if version >= 1 { self.controller } else { -1 },
            topics,
            ..Default::default()
        }
    }

    fn api_versions_reply(&self, version: i16) -> Reply {
        let key = ApiKey::ApiVersions as i16;
        let (min, max) = self.api_ranges.get(&key).copied().unwrap_or((0, 0));
        if version > max {
            // KIP-511: UNSUPPORTED_VERSION with a version-0 body listing the ApiVersions versions
            // this broker supports.
            let body = ApiVersionsResponse {
                error_code: 35,
                api_keys: vec![ApiVersion { api_key: key, min_version: min, max_version: max, ..Default::default() }],
                ..Default::default()
            };
            return Reply::RespondAt(body.into_any(), 0);
        }
        Reply::respond(ApiVersionsResponse {
            api_keys: self
                .api_ranges
                .iter()
                .map(|(&api_key, &(min_version, max_version))| ApiVersion {
                    api_key,
                    min_version,
                    max_version,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn default_reply(&mut self, header: &RequestHeader, request: &AnyRequest) -> Reply {
        let version = header.request_api_version;
        match request {
            AnyRequest::ApiVersions(_) => self.api_versions_reply(version),
            AnyRequest::Metadata(m) => Reply::respond(self.metadata_response(m, version)),
            AnyRequest::CreateTopics(c) => {
                let mut topics = Vec::new();
                for t in &c.topics {
                    let error_code = if self.topics.contains_key(&t.name) {
                        36
                    } else {
                        if !c.validate_only {
                            self.create_topic(&t.name, t.num_partitions);
                        }
                        0
                    };
                    topics.push(CreatableTopicResult { name: t.name.clone(), error_code, ..Default::default() });
                }
                Reply::respond(CreateTopicsResponse { topics, ..Default::default() })
            }
            AnyRequest::DeleteTopics(d) => {
                let names: Vec<String> = if version >= 6 {
                    d.topics.iter().filter_map(|t| t.name.clone()).collect()
                } else {
                    d.topic_names.clone()
                };
                let responses = names
                    .into_iter()
                    .map(|name| {
                        let error_code = if self.topics.remove(&name).is_some() { 0 } else { 3 };
                        DeletableTopicResult { name: Some(name), error_code, ..Default::default() }
                    })
                    .collect();
                Reply::respond(DeleteTopicsResponse { responses, ..Default::default() })
            }
            AnyRequest::Produce(p) if p.acks == 0 => Reply::Never,
            AnyRequest::Produce(_) => Reply::respond(ProduceResponse::default()),
            _ => Reply::Close,
        }
    }
}

/// Counts of requests received, by API key, with a way to wait for a count.
#[derive(Default)]
pub struct Stats {
    counts: Mutex<HashMap<i16, u64>>,
    changed: Notify,
}

impl Stats {
    fn record(&self, key: i16) {
        *lock(&self.counts).entry(key).or_default() += 1;
        self.changed.notify_waiters();
    }

    /// Requests of `api` received so far.
    pub fn count(&self, api: ApiKey) -> u64 {
        self.count_key(api as i16)
    }

    fn count_key(&self, key: i16) -> u64 {
        lock(&self.counts).get(&key).copied().unwrap_or(0)
    }

    /// Waits until at least `n` requests of `api` have been received.
    pub async fn wait_for(&self, api: ApiKey, n: u64) {
        self.wait_key(api as i16, n).await;
    }

    async fn wait_key(&self, key: i16, n: u64) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count_key(key) >= n {
                return;
            }
            notified.await;
        }
    }
}

type Handler = Arc<dyn Fn(RequestHeader, AnyRequest) -> Reply + Send + Sync>;

struct BrokerShared {
    id: i32,
    state: Arc<Mutex<ClusterState>>,
    handler: Mutex<Option<Handler>>,
    stats: Stats,
    cluster_stats: Option<Arc<Stats>>,
    received: Mutex<Vec<(RequestHeader, AnyRequest)>>,
    errors: Mutex<Vec<String>>,
    /// Bumped to drop every open connection.
    kill: watch::Sender<u64>,
    /// Connections ended (by either side), counted under key 0.
    closed: Stats,
}

#[derive(Clone)]
struct Ctx {
    broker: Arc<BrokerShared>,
    out: mpsc::UnboundedSender<Out>,
    header: RequestHeader,
    request: AnyRequest,
}

enum Out {
    Bytes(Bytes),
    Close,
}

fn encode_response(header: &RequestHeader, response: &AnyResponse, body_version: i16) -> Bytes {
    let api = ApiKey::from_i16(header.request_api_key).expect("known API");
    let header_version = api.response_header_version(header.request_api_version);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    ResponseHeader { correlation_id: header.correlation_id, ..Default::default() }
        .encode(&mut frame, header_version)
        .expect("response header encodes");
    response
        .encode(&mut frame, body_version)
        .unwrap_or_else(|e| panic!("fake broker cannot encode {api} response at v{body_version}: {e}"));
    let len = i32::try_from(frame.len() - 4).expect("small frame");
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame.freeze()
}

fn dispatch(ctx: Ctx, reply: Reply) {
    match reply {
        Reply::Default => {
            let reply = lock(&ctx.broker.state).default_reply(&ctx.header, &ctx.request);
            dispatch(ctx, reply);
        }
        Reply::Respond(r) => {
            let frame = encode_response(&ctx.header, &r, ctx.header.request_api_version);
            let _ = ctx.out.send(Out::Bytes(frame));
        }
        Reply::RespondAt(r, version) => {
            let frame = encode_response(&ctx.header, &r, version);
            let _ = ctx.out.send(Out::Bytes(frame));
        }
        Reply::RawBody(body) => {
            let mut frame = BytesMut::new();
            frame.put_i32(i32::try_from(body.len() + 4).expect("small frame"));
            frame.put_i32(ctx.header.correlation_id);
            frame.put_slice(&body);
            let _ = ctx.out.send(Out::Bytes(frame.freeze()));
        }
        Reply::RawFrame(bytes) => {
            let _ = ctx.out.send(Out::Bytes(bytes));
        }
        Reply::Later(fut) => {
            tokio::spawn(async move {
                let reply = fut.await;
                dispatch(ctx, reply);
            });
        }
        Reply::Hold(tx) => {
            let _ = tx.send(Held { ctx });
        }
        Reply::Never => {}
        Reply::Close => {
            let _ = ctx.out.send(Out::Close);
        }
    }
}

impl BrokerShared {
    fn handle(self: &Arc<Self>, frame: Bytes, out: &mpsc::UnboundedSender<Out>) -> Result<(), String> {
        let (Some(key), Some(version)) = (frame.get(0..2), frame.get(2..4)) else {
            return Err("request frame too short".into());
        };
        let key = i16::from_be_bytes([key[0], key[1]]);
        let version = i16::from_be_bytes([version[0], version[1]]);
        let api = ApiKey::from_i16(key).ok_or_else(|| format!("unknown API key {key}"))?;
        let header_version = api.request_header_version(version);
        let header = RequestHeader::decode(&frame, header_version).map_err(|e| format!("{api} header: {e}"))?;
        let body = frame.slice(header.encoded_len(header_version)..);
        let request = AnyRequest::decode(key, &body, version).map_err(|e| format!("{api} v{version}: {e}"))?;
        lock(&self.received).push((header.clone(), request.clone()));
        self.stats.record(key);
        if let Some(c) = &self.cluster_stats {
            c.record(key);
        }
        let handler = lock(&self.handler).clone();
        let reply = match handler {
            Some(h) => h(header.clone(), request.clone()),
            None => Reply::Default,
        };
        dispatch(Ctx { broker: self.clone(), out: out.clone(), header, request }, reply);
        Ok(())
    }

    async fn serve<S>(self: Arc<Self>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, mut write) = tokio::io::split(stream);
        let mut frames = FramedRead::new(read, FrameCodec::new(64 << 20));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut kill = self.kill.subscribe();
        loop {
            tokio::select! {
                biased;
                out = rx.recv() => match out {
                    Some(Out::Bytes(b)) => {
                        if write.write_all(&b).await.is_err() || write.flush().await.is_err() {
                            break;
                        }
                    }
                    Some(Out::Close) | None => break,
                },
                _ = kill.changed() => break,
                frame = frames.next() => match frame {
                    Some(Ok(frame)) => {
                        if let Err(e) = self.handle(frame, &tx) {
                            lock(&self.errors).push(e);
                            break;
                        }
                    }
                    _ => break,
                },
            }
        }
        // Dropping both halves closes the stream: the client reads EOF.
        drop((frames, write));
        self.closed.record(0);
    }
}

// ---------------------------------------------------------------------------------------------
// One broker
// ---------------------------------------------------------------------------------------------

/// A fake broker. Cheap to clone (a handle).
#[derive(Clone)]
pub struct FakeBroker {
    shared: Arc<BrokerShared>,
}

impl FakeBroker {
    /// A stand-alone broker: id 1 at `broker-1:9092`, alone in its cluster, no topics.
    pub fn new() -> Self {
        let brokers = BTreeMap::from([(1, BrokerAddr::new("broker-1", FAKE_PORT))]);
        Self::in_cluster(1, Arc::new(Mutex::new(ClusterState::new(brokers))), None)
    }

    fn in_cluster(id: i32, state: Arc<Mutex<ClusterState>>, cluster_stats: Option<Arc<Stats>>) -> Self {
        Self {
            shared: Arc::new(BrokerShared {
                id,
                state,
                handler: Mutex::new(None),
                stats: Stats::default(),
                cluster_stats,
                received: Mutex::new(Vec::new()),
                errors: Mutex::new(Vec::new()),
                kill: watch::channel(0).0,
                closed: Stats::default(),
            }),
        }
    }

    /// The broker id.
    pub fn id(&self) -> i32 {
        self.shared.id
    }

    /// Answers every request through `handler` (return [`Reply::Default`] for the default).
    pub fn set_handler<F>(&self, handler: F)
    where
        F: Fn(RequestHeader, AnyRequest) -> Reply + Send + Sync + 'static,
    {
        *lock(&self.shared.handler) = Some(Arc::new(handler));
    }

    /// Back to the default handlers.
    pub fn clear_handler(&self) {
        *lock(&self.shared.handler) = None;
    }

    /// The metadata state (shared with the other brokers of its cluster).
    pub fn state(&self) -> MutexGuard<'_, ClusterState> {
        lock(&self.shared.state)
    }

    /// Sets the version range advertised for `api` in ApiVersions.
    pub fn set_api_range(&self, api: ApiKey, min: i16, max: i16) {
        self.state().api_ranges.insert(api as i16, (min, max));
    }

    /// Requests of `api` this broker received.
    pub fn requests(&self, api: ApiKey) -> u64 {
        self.shared.stats.count(api)
    }

    /// Waits until this broker has received `n` requests of `api`.
    pub async fn wait_requests(&self, api: ApiKey, n: u64) {
        self.shared.stats.wait_for(api, n).await;
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<(RequestHeader, AnyRequest)> {
        lock(&self.shared.received).clone()
    }

    /// The versions of the `api` requests received so far, in order.
    pub fn versions_received(&self, api: ApiKey) -> Vec<i16> {
        self.received()
            .iter()
            .filter(|(h, _)| h.request_api_key == api as i16)
            .map(|(h, _)| h.request_api_version)
            .collect()
    }

    /// Requests the broker could not decode.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.shared.errors).clone()
    }

    /// Connections to this broker that have ended.
    pub fn disconnects(&self) -> u64 {
        self.shared.closed.count_key(0)
    }

    /// Waits until `n` connections to this broker have ended.
    pub async fn wait_disconnects(&self, n: u64) {
        self.shared.closed.wait_key(0, n).await;
    }

    /// Drops every open connection to this broker.
    pub fn kill_connections(&self) {
        self.shared.kill.send_modify(|n| *n += 1);
    }

    /// Serves one connection over `stream` (spawned).
    pub fn serve<S>(&self, stream: S) -> JoinHandle<()>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        tokio::spawn(self.shared.clone().serve(stream))
    }

    /// A fresh in-memory connection to this broker: the client side of a duplex stream.
    pub fn connect_io(&self) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        self.serve(server);
        client
    }

    /// A connected [`BrokerClient`] (no version negotiation) and its spawned driver.
    pub fn connect(&self, config: ConnectionConfig) -> (BrokerClient, JoinHandle<Result<(), DisconnectReason>>) {
        let (client, connection) = krab_cluster::handshake(self.connect_io(), config);
        (client, tokio::spawn(connection))
    }

    /// A transport that reaches this broker (only) at `broker-1:9092`.
    pub fn transport(&self) -> FakeTransport {
        let transport = FakeTransport::default();
        transport.add(BrokerAddr::new("broker-1", FAKE_PORT), self.clone());
        transport
    }

    /// Accepts connections on `listener` and serves them, until the returned task is aborted
    /// (which closes the listener: connecting is then refused).
    pub fn serve_tcp(&self, listener: tokio::net::TcpListener) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                conns.spawn(this.shared.clone().serve(stream));
            }
        })
    }
}

impl Default for FakeBroker {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct TransportInner {
    brokers: Mutex<HashMap<BrokerAddr, FakeBroker>>,
    down: Mutex<HashSet<BrokerAddr>>,
    hang: Mutex<HashSet<BrokerAddr>>,
    connects: Mutex<HashMap<BrokerAddr, u64>>,
}

/// An in-memory transport for `Cluster::connect_with`: each connect makes a duplex stream served
/// by the fake broker at that address. Cloning shares the state.
#[derive(Clone, Default)]
pub struct FakeTransport {
    inner: Arc<TransportInner>,
}

impl FakeTransport {
    /// Makes `broker` reachable at `addr`.
    pub fn add(&self, addr: BrokerAddr, broker: FakeBroker) {
        lock(&self.inner.brokers).insert(addr, broker);
    }

    /// While down, connecting to `addr` fails with `ConnectionRefused`.
    pub fn set_down(&self, addr: &BrokerAddr, down: bool) {
        let mut set = lock(&self.inner.down);
        if down {
            set.insert(addr.clone());
        } else {
            set.remove(addr);
        }
    }

    /// While hung, connecting to `addr` never completes.
    pub fn set_hang(&self, addr: &BrokerAddr, hang: bool) {
        let mut set = lock(&self.inner.hang);
        if hang {
            set.insert(addr.clone());
        } else {
            set.remove(addr);
        }
    }

    /// Connection attempts made to `addr` (refused ones included).
    pub fn connects(&self, addr: &BrokerAddr) -> u64 {
        lock(&self.inner.connects).get(addr).copied().unwrap_or(0)
    }

    fn open(&self, addr: &BrokerAddr) -> Result<Option<DuplexStream>, io::Error> {
        *lock(&self.inner.connects).entry(addr.clone()).or_default() += 1;
        if lock(&self.inner.down).contains(addr) {
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, format!("{addr} is down")));
        }
        if lock(&self.inner.hang).contains(addr) {
            return Ok(None);
        }
        let broker = lock(&self.inner.brokers).get(addr).cloned();
        match broker {
            Some(b) => Ok(Some(b.connect_io())),
            None => Err(io::Error::new(io::ErrorKind::ConnectionRefused, format!("no fake broker at {addr}"))),
        }
    }
}

impl tower::Service<BrokerAddr> for FakeTransport {
    type Response = DuplexStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<DuplexStream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, addr: BrokerAddr) -> Self::Future {
        let opened = self.open(&addr);
        Box::pin(async move {
            match opened? {
                Some(io) => Ok(io),
                None => std::future::pending().await,
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// A cluster of fake brokers
// ---------------------------------------------------------------------------------------------

/// Fake brokers `1..=n` sharing one metadata state, reachable through [`FakeCluster::transport`].
pub struct FakeCluster {
    state: Arc<Mutex<ClusterState>>,
    brokers: BTreeMap<i32, FakeBroker>,
    transport: FakeTransport,
    stats: Arc<Stats>,
    listeners: Mutex<HashMap<i32, JoinHandle<()>>>,
}

impl FakeCluster {
    /// `n` in-memory brokers, `broker-<id>:9092`.
    pub fn new(n: i32) -> Self {
        let addrs = (1..=n).map(|id| (id, BrokerAddr::new(format!("broker-{id}"), FAKE_PORT))).collect();
        let cluster = Self::with_addrs(addrs);
        for (id, b) in &cluster.brokers {
            cluster.transport.add(cluster.addr(*id), b.clone());
        }
        cluster
    }

    /// `n` brokers listening on loopback TCP ports (use `Cluster::connect`).
    pub async fn new_tcp(n: i32) -> Self {
        let mut listeners = Vec::new();
        let mut addrs = BTreeMap::new();
        for id in 1..=n {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
            let port = l.local_addr().expect("local addr").port();
            addrs.insert(id, BrokerAddr::new("127.0.0.1", port));
            listeners.push((id, l));
        }
        let cluster = Self::with_addrs(addrs);
        for (id, l) in listeners {
            let task = cluster.brokers[&id].serve_tcp(l);
            lock(&cluster.listeners).insert(id, task);
        }
        cluster
    }

    fn with_addrs(addrs: BTreeMap<i32, BrokerAddr>) -> Self {
        let state = Arc::new(Mutex::new(ClusterState::new(addrs.clone())));
        let stats = Arc::new(Stats::default());
        let brokers =
            addrs.keys().map(|&id| (id, FakeBroker::in_cluster(id, state.clone(), Some(stats.clone())))).collect();
        Self { state, brokers, transport: FakeTransport::default(), stats, listeners: Mutex::new(HashMap::new()) }
    }

    /// Broker `id`.
    pub fn broker(&self, id: i32) -> &FakeBroker {
        &self.brokers[&id]
    }

    /// Broker `id`'s advertised address.
    pub fn addr(&self, id: i32) -> BrokerAddr {
        self.state().brokers[&id].clone()
    }

    /// The in-memory transport reaching every broker.
    pub fn transport(&self) -> FakeTransport {
        self.transport.clone()
    }

    /// A cluster config bootstrapping from broker 1.
    pub fn config(&self) -> ClusterConfig {
        ClusterConfig::new(vec![self.addr(1)])
    }

    /// `Cluster::connect_with` over the in-memory transport.
    pub async fn connect(&self, config: ClusterConfig) -> Result<Cluster, ClusterError> {
        Cluster::connect_with(config, self.transport()).await
    }

    /// The shared metadata state.
    pub fn state(&self) -> MutexGuard<'_, ClusterState> {
        lock(&self.state)
    }

    /// Sets the same handler on every broker.
    pub fn set_handler<F>(&self, handler: F)
    where
        F: Fn(RequestHeader, AnyRequest) -> Reply + Send + Sync + 'static,
    {
        let handler: Handler = Arc::new(handler);
        for b in self.brokers.values() {
            *lock(&b.shared.handler) = Some(handler.clone());
        }
    }

    /// Back to the default handlers on every broker.
    pub fn clear_handler(&self) {
        for b in self.brokers.values() {
            b.clear_handler();
        }
    }

    /// Requests of `api` received by all brokers together.
    pub fn requests(&self, api: ApiKey) -> u64 {
        self.stats.count(api)
    }

    /// Waits until all brokers together have received `n` requests of `api`.
    pub async fn wait_requests(&self, api: ApiKey, n: u64) {
        self.stats.wait_for(api, n).await;
    }

    /// Creates a topic with leaders round-robin over the brokers (partition `p` on broker
    /// `p % n + 1`), epoch 0.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.state().create_topic(name, partitions);
    }

    /// Sets a partition's leader and epoch as the brokers will report them.
    pub fn set_partition(&self, topic: &str, partition: i32, leader: i32, epoch: i32) {
        let mut s = self.state();
        let p = &mut s.topics.get_mut(topic).expect("topic")[partition as usize];
        p.leader = leader;
        p.epoch = epoch;
        p.replicas = vec![leader];
    }

    /// Moves a partition's leadership to `leader`, bumping its epoch; returns the new epoch.
    pub fn move_leader(&self, topic: &str, partition: i32, leader: i32) -> i32 {
        let epoch = self.partition(topic, partition).epoch + 1;
        self.set_partition(topic, partition, leader, epoch);
        epoch
    }

    /// A partition as the brokers report it.
    pub fn partition(&self, topic: &str, partition: i32) -> FakePartition {
        self.state().topics[topic][partition as usize].clone()
    }

    /// While down, connecting to broker `id` is refused (existing connections are dropped).
    pub fn set_down(&self, id: i32, down: bool) {
        self.transport.set_down(&self.addr(id), down);
        if down {
            self.broker(id).kill_connections();
        }
    }

    /// While hung, connecting to broker `id` never completes.
    pub fn set_hang(&self, id: i32, hang: bool) {
        self.transport.set_hang(&self.addr(id), hang);
    }

    /// Connection attempts made to broker `id` through the in-memory transport.
    pub fn connects(&self, id: i32) -> u64 {
        self.transport.connects(&self.addr(id))
    }

    /// TCP clusters: closes broker `id`'s listener, so that connecting to it is refused.
    pub async fn stop_listening(&self, id: i32) {
        let task = lock(&self.listeners).remove(&id);
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for task in lock(&self.listeners).values() {
            task.abort();
        }
    }
}
