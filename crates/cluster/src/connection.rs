//! One broker connection: `handshake(io, config) -> (BrokerClient, Connection)`.
//!
//! [`BrokerClient`] is the cheap-to-clone handle that many tasks send requests through.
//! [`Connection`] is the driver future that owns the socket: spawn it. Requests are pipelined:
//! each gets a correlation id, is written as soon as the writer gets to it, and its response is
//! matched by id whatever order responses arrive in. The number of requests in flight is bounded;
//! every request has a timeout; a response larger than the limit is refused from its size prefix
//! alone. When the connection stops, every request still waiting fails with the reason and with
//! whether it may have reached the broker.
//!
//! Locking: one short `std::sync::Mutex` guards the table of waiting requests. It is never held
//! across an `.await` or any I/O.

use crate::error::{DisconnectReason, RequestError};
use crate::telemetry::{Peer, RequestMetrics};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use krab_protocol::frame::{FrameCodec, FrameError};
use krab_protocol::{Request, decode_response, encode_request, request_len};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tracing::Instrument;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// The `client.id` sent in every request header.
    pub client_id: Option<String>,
    /// Requests awaiting a response at once; further requests wait for a slot.
    pub max_in_flight: usize,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// The largest response accepted, in bytes (refused from the size prefix, before buffering).
    pub max_response_size: usize,
    /// SASL authentication right after ApiVersions, and again before the broker's session ends
    /// (see [`Broker::connect`](crate::Broker::connect)); `None`: none.
    pub sasl: Option<crate::sasl::SaslConfig>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: Some("krab".to_string()),
            max_in_flight: 32,
            request_timeout: Duration::from_secs(30),
            max_response_size: krab_protocol::frame::DEFAULT_MAX_FRAME_SIZE,
            sasl: None,
        }
    }
}

/// Responses no request waits for that are still expected (acks=0 produce answered anyway by
/// some brokers): remembered so that they are skipped, not treated as protocol errors.
const MAX_UNANSWERED: usize = 1024;

struct Waiting {
    tx: oneshot::Sender<Result<Bytes, RequestError>>,
    sent: bool,
    /// The in-flight slot, held until the entry leaves the table (answered, timed out, or the
    /// connection stopped), so that a caller giving up does not free a slot the broker still
    /// occupies.
    _permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct Table {
    waiting: HashMap<i32, Waiting>,
    /// Correlation ids in the order they were written: the broker answers in this order.
    order: VecDeque<i32>,
    unanswered: HashSet<i32>,
    unanswered_order: VecDeque<i32>,
    closed: Option<DisconnectReason>,
}

struct Shared {
    table: Mutex<Table>,
    kill: Notify,
    kill_reason: Mutex<Option<DisconnectReason>>,
    permits: Arc<Semaphore>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding this lock cannot leave the table inconsistent in a way that
        // matters more than losing the connection, so poisoning is ignored.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the driver to stop with `reason`.
    fn kill(&self, reason: DisconnectReason) {
        let mut r = self.kill_reason.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert(reason);
        drop(r);
        self.kill.notify_one();
    }

    /// Fails every waiting request and refuses new ones.
    fn close(&self, reason: &DisconnectReason) {
        let mut t = self.table();
        if t.closed.is_some() {
            return;
        }
        t.closed = Some(reason.clone());
        let front = t.order.front().copied();
        let waiting = std::mem::take(&mut t.waiting);
        t.order.clear();
        drop(t);
        self.permits.close();
        for (id, w) in waiting {
            let err = match reason {
                // The response refused for its size is the oldest one written.
                DisconnectReason::ResponseTooLarge { size, max } if Some(id) == front => {
                    RequestError::ResponseTooLarge { size: *size, max: *max }
                }
                DisconnectReason::RequestTimedOut(d) if !w.sent => {
                    RequestError::ConnectionLost { reason: DisconnectReason::RequestTimedOut(*d), sent: false }
                }
                _ => RequestError::ConnectionLost { reason: reason.clone(), sent: w.sent },
            };
            let _ = w.tx.send(Err(err));
        }
    }
}

struct Outgoing {
    frame: Bytes,
    correlation_id: i32,
    /// For requests that expect no response: told once the frame is flushed.
    flushed: Option<oneshot::Sender<()>>,
}

struct ClientInner {
    shared: Arc<Shared>,
    writer: mpsc::UnboundedSender<Outgoing>,
    next_id: AtomicI32,
    config: ConnectionConfig,
    /// Who the connection talks to, and its per-API metric handles.
    metrics: RequestMetrics,
}

/// A handle to one broker connection, cheap to clone and usable from many tasks at once.
#[derive(Clone)]
pub struct BrokerClient {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for BrokerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerClient").field("closed", &self.is_closed()).field("in_flight", &self.in_flight()).finish()
    }
}

/// The driver of one connection: owns the socket. Spawn it (`tokio::spawn(connection)`); it
/// resolves when the connection stops, with the reason, or `Ok(())` once every client handle is
/// dropped.
#[must_use = "a connection does nothing unless polled (spawn it)"]
pub struct Connection {
    fut: Pin<Box<dyn Future<Output = Result<(), DisconnectReason>> + Send>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl Future for Connection {
    type Output = Result<(), DisconnectReason>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

/// Sets up a connection over an established transport.
///
/// Its requests' spans and metrics name the broker `unknown`; [`Broker::connect`](crate::Broker::connect)
/// names it by id (or address, for a bootstrap connection).
pub fn handshake<IO>(io: IO, config: ConnectionConfig) -> (BrokerClient, Connection)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let peer = Peer::unknown(config.client_id.as_deref());
    handshake_to(io, config, peer)
}

/// [`handshake`] for a connection to `peer`.
pub(crate) fn handshake_to<IO>(io: IO, config: ConnectionConfig, peer: Peer) -> (BrokerClient, Connection)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let shared = Arc::new(Shared {
        table: Mutex::new(Table::default()),
        kill: Notify::new(),
        kill_reason: Mutex::new(None),
        permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let (read_half, write_half) = tokio::io::split(io);
    let reader = FramedRead::new(read_half, FrameCodec::new(config.max_response_size));
    let driver = drive(shared.clone(), reader, BufWriter::with_capacity(64 * 1024, write_half), rx);
    let metrics = RequestMetrics::new(peer);
    let client = BrokerClient {
        inner: Arc::new(ClientInner { shared, writer: tx, next_id: AtomicI32::new(1), config, metrics }),
    };
    (client, Connection { fut: Box::pin(driver) })
}

async fn drive<R, W>(
    shared: Arc<Shared>,
    reader: FramedRead<R, FrameCodec>,
    writer: BufWriter<W>,
    rx: mpsc::UnboundedReceiver<Outgoing>,
) -> Result<(), DisconnectReason>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin,
{
    let result = tokio::select! {
        r = read_loop(&shared, reader) => r,
        r = write_loop(&shared, writer, rx) => r,
        () = shared.kill.notified() => {
            Err(shared.kill_reason.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or(DisconnectReason::ClosedByClient))
        }
    };
    let reason = result.clone().err().unwrap_or(DisconnectReason::ClosedByClient);
    if let Err(e) = &result {
        tracing::debug!(error = %e, "connection stopped");
    }
    shared.close(&reason);
    result
}

async fn read_loop<R: AsyncRead + Send + Unpin>(
    shared: &Shared,
    mut reader: FramedRead<R, FrameCodec>,
) -> Result<(), DisconnectReason> {
    loop {
        let frame = match reader.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(FrameError::TooLarge { size, max })) => {
                return Err(DisconnectReason::ResponseTooLarge { size, max });
            }
            Some(Err(FrameError::NegativeLength(n))) => return Err(DisconnectReason::NegativeFrameLength(n)),
            Some(Err(FrameError::Io(e))) => return Err(e.into()),
            Some(Err(e)) => {
                return Err(DisconnectReason::Io {
                    kind: std::io::ErrorKind::InvalidData,
                    message: e.to_string().into(),
                });
            }
            None => return Err(DisconnectReason::Eof),
        };
        let Some(id) = krab_protocol::framing::peek_correlation_id(&frame) else {
            return Err(DisconnectReason::Io {
                kind: std::io::ErrorKind::InvalidData,
                message: "response frame shorter than a correlation id".into(),
            });
        };
        let mut t = shared.table();
        match t.waiting.remove(&id) {
            Some(w) => {
                if t.order.front() == Some(&id) {
                    t.order.pop_front();
                } else {
                    t.order.retain(|x| *x != id);
                }
                drop(t);
                // The receiver may be gone (caller gave up): the response is dropped.
                let _ = w.tx.send(Ok(frame));
            }
            None if t.unanswered.remove(&id) => {
                tracing::trace!(correlation_id = id, "skipping a response to a request that expected none");
            }
            None => return Err(DisconnectReason::UnexpectedCorrelationId(id)),
        }
    }
}

async fn write_loop<W: AsyncWrite + Send + Unpin>(
    shared: &Shared,
    mut writer: BufWriter<W>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) -> Result<(), DisconnectReason> {
    let mut flushed_waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            {
                let mut t = shared.table();
                if let Some(w) = t.waiting.get_mut(&out.correlation_id) {
                    w.sent = true;
                    t.order.push_back(out.correlation_id);
                } else if out.flushed.is_some() {
                    t.unanswered.insert(out.correlation_id);
                    t.unanswered_order.push_back(out.correlation_id);
                    if t.unanswered_order.len() > MAX_UNANSWERED {
                        if let Some(old) = t.unanswered_order.pop_front() {
                            t.unanswered.remove(&old);
                        }
                    }
                } else {
                    // The request timed out (its entry left the table) before the frame was
                    // written: don't send it. A caller that merely drops its future leaves the
                    // entry in place, so its frame is still written and its slot held.
                    continue;
                }
            }
            writer.write_all(&out.frame).await?;
            if let Some(f) = out.flushed {
                flushed_waiters.push(f);
            }
            next = rx.try_recv().ok();
        }
        writer.flush().await?;
        for f in flushed_waiters.drain(..) {
            let _ = f.send(());
        }
    }
    // Every client handle is gone: nothing can wait for a response any more.
    Ok(())
}

impl BrokerClient {
    /// Whether the connection has stopped.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.table().closed.is_some()
    }

    /// Why the connection stopped, if it has.
    pub fn close_reason(&self) -> Option<DisconnectReason> {
        self.inner.shared.table().closed.clone()
    }

    /// Requests currently awaiting a response.
    pub fn in_flight(&self) -> usize {
        self.inner.shared.table().waiting.len()
    }

    /// This connection's settings.
    pub fn config(&self) -> &ConnectionConfig {
        &self.inner.config
    }

    /// Stops the connection; requests in flight fail with [`DisconnectReason::ClosedByClient`].
    pub fn close(&self) {
        self.inner.shared.kill(DisconnectReason::ClosedByClient);
    }

    fn encode<R: Request>(&self, request: &R, version: i16) -> Result<(i32, Bytes), RequestError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let client_id = self.inner.config.client_id.as_deref();
        let len = request_len(id, client_id, request, version);
        let mut buf = BytesMut::with_capacity(4 + len);
        buf.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
        encode_request(&mut buf, id, client_id, request, version)?;
        Ok((id, buf.freeze()))
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, RequestError> {
        self.inner.shared.permits.clone().acquire_owned().await.map_err(|_| RequestError::ConnectionLost {
            reason: self.close_reason().unwrap_or(DisconnectReason::ClosedByClient),
            sent: false,
        })
    }

    /// Sends `request` at `version` and returns the raw response frame (header + body).
    ///
    /// Each request runs in a DEBUG span `krab.request` (fields `api`, `version`, `broker`,
    /// `correlation_id`; `latency_us` and `error` recorded when it ends) and counts towards the
    /// connection's request metrics (see [`telemetry`](crate::telemetry)).
    pub async fn send_raw<R: Request>(&self, request: &R, version: i16) -> Result<Bytes, RequestError> {
        let (id, frame) = self.encode(request, version)?;
        let span = request_span(R::KEY, version, self.inner.metrics.peer(), id);
        // tokio's clock: std's at run time, and paused with the runtime in tests.
        let started = tokio::time::Instant::now();
        let metrics = &self.inner.metrics;
        metrics.sent(R::KEY, frame.len());
        let result = self.round_trip(id, frame).instrument(span.clone()).await;
        let latency = started.elapsed();
        match &result {
            Ok(response) => {
                metrics.answered(R::KEY, response.len(), latency);
                span.record("latency_us", latency.as_micros() as u64);
                tracing::trace!(parent: &span, latency_us = latency.as_micros() as u64, bytes = response.len(), "response");
            }
            Err(e) => {
                metrics.failed(R::KEY);
                span.record("latency_us", latency.as_micros() as u64);
                span.record("error", tracing::field::display(e));
                tracing::debug!(parent: &span, latency_us = latency.as_micros() as u64, error = %e, "request failed");
            }
        }
        result
    }

    async fn round_trip(&self, id: i32, frame: Bytes) -> Result<Bytes, RequestError> {
        let permit = self.permit().await?;
        let (tx, rx) = oneshot::channel();
        {
            let mut t = self.inner.shared.table();
            if let Some(reason) = &t.closed {
                return Err(RequestError::ConnectionLost { reason: reason.clone(), sent: false });
            }
            t.waiting.insert(id, Waiting { tx, sent: false, _permit: permit });
        }
        if self.inner.writer.send(Outgoing { frame, correlation_id: id, flushed: None }).is_err() {
            self.inner.shared.table().waiting.remove(&id);
            return Err(RequestError::ConnectionLost {
                reason: self.close_reason().unwrap_or(DisconnectReason::ClosedByClient),
                sent: false,
            });
        }
        let timeout = self.inner.config.request_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(RequestError::ConnectionLost {
                reason: self.close_reason().unwrap_or(DisconnectReason::ClosedByClient),
                sent: true,
            }),
            Err(_) => {
                let sent = self.inner.shared.table().waiting.remove(&id).is_none_or(|w| w.sent);
                self.inner.shared.kill(DisconnectReason::RequestTimedOut(timeout));
                if sent {
                    Err(RequestError::TimedOut(timeout))
                } else {
                    Err(RequestError::ConnectionLost {
                        reason: DisconnectReason::RequestTimedOut(timeout),
                        sent: false,
                    })
                }
            }
        }
    }

    /// Sends `request` at `version` and decodes its response.
    pub async fn send<R: Request>(&self, request: &R, version: i16) -> Result<R::Response, RequestError> {
        let frame = self.send_raw(request, version).await?;
        let (_header, response) = decode_response::<R>(&frame, version)?;
        Ok(response)
    }

    /// Sends a request that gets no response (a produce with acks=0); resolves once written.
    /// Spanned and counted as [`send_raw`](Self::send_raw) is (no latency: there is no answer).
    pub async fn send_no_response<R: Request>(&self, request: &R, version: i16) -> Result<(), RequestError> {
        let (id, frame) = self.encode(request, version)?;
        let span = request_span(R::KEY, version, self.inner.metrics.peer(), id);
        self.inner.metrics.sent(R::KEY, frame.len());
        let result = self.write_only(id, frame).instrument(span.clone()).await;
        if let Err(e) = &result {
            self.inner.metrics.failed(R::KEY);
            span.record("error", tracing::field::display(e));
            tracing::debug!(parent: &span, error = %e, "request failed");
        }
        result
    }

    async fn write_only(&self, id: i32, frame: Bytes) -> Result<(), RequestError> {
        let (tx, rx) = oneshot::channel();
        if self.is_closed()
            || self.inner.writer.send(Outgoing { frame, correlation_id: id, flushed: Some(tx) }).is_err()
        {
            return Err(RequestError::ConnectionLost {
                reason: self.close_reason().unwrap_or(DisconnectReason::ClosedByClient),
                sent: false,
            });
        }
        let timeout = self.inner.config.request_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(RequestError::ConnectionLost {
                reason: self.close_reason().unwrap_or(DisconnectReason::ClosedByClient),
                sent: true,
            }),
            Err(_) => {
                self.inner.shared.kill(DisconnectReason::RequestTimedOut(timeout));
                Err(RequestError::TimedOut(timeout))
            }
        }
    }
}

/// The span of one request: DEBUG, so that it costs a level check (no allocation, no
/// formatting) unless a subscriber wants it.
fn request_span(api: krab_protocol::ApiKey, version: i16, peer: &Peer, correlation_id: i32) -> tracing::Span {
    tracing::debug_span!(
        "krab.request",
        api = api.name(),
        version,
        broker = %peer,
        correlation_id,
        latency_us = tracing::field::Empty,
        error = tracing::field::Empty,
    )
}
