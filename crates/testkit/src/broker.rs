//! One fake broker: serves connections, decodes requests, answers through the test's handler
//! or the cluster state's defaults.

use crate::FAKE_PORT;
use crate::lock;
use crate::reply::{Held, Reply};
use crate::state::ClusterState;
use crate::transport::FakeTransport;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use krab_cluster::{BrokerAddr, BrokerClient, ConnectionConfig, DisconnectReason};
use krab_protocol::frame::FrameCodec;
use krab_protocol::messages::{AnyRequest, AnyResponse, RequestHeader, ResponseHeader};
use krab_protocol::{ApiKey, Message};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

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

pub(crate) type Handler = Arc<dyn Fn(RequestHeader, AnyRequest) -> Reply + Send + Sync>;

pub(crate) struct BrokerShared {
    id: i32,
    state: Arc<Mutex<ClusterState>>,
    pub(crate) handler: Mutex<Option<Handler>>,
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
pub(crate) struct Ctx {
    pub(crate) broker: Arc<BrokerShared>,
    out: mpsc::UnboundedSender<Out>,
    pub(crate) header: RequestHeader,
    pub(crate) request: AnyRequest,
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

pub(crate) fn dispatch(ctx: Ctx, reply: Reply) {
    match reply {
        Reply::Default => {
            let reply = lock(&ctx.broker.state).default_reply(ctx.broker.id, &ctx.header, &ctx.request);
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
    pub(crate) shared: Arc<BrokerShared>,
}

impl FakeBroker {
    /// A stand-alone broker: id 1 at `broker-1:9092`, alone in its cluster, no topics.
    pub fn new() -> Self {
        let brokers = BTreeMap::from([(1, BrokerAddr::new("broker-1", FAKE_PORT))]);
        Self::in_cluster(1, Arc::new(Mutex::new(ClusterState::new(brokers))), None)
    }

    pub(crate) fn in_cluster(id: i32, state: Arc<Mutex<ClusterState>>, cluster_stats: Option<Arc<Stats>>) -> Self {
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
