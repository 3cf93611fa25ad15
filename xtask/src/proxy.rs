//! A Kafka-aware TCP proxy: one per broker, so that every client connection to broker N crosses
//! proxy N (the brokers advertise the proxies).
//!
//! It splits both directions into Kafka frames (4-byte length prefix), counts requests per API
//! key at the wire — the independent count that every "exactly one Metadata request" claim is
//! checked against — and, on command, injects faults:
//!
//! - [`Fault::Pass`]: forwards everything (the default);
//! - [`Fault::Blackhole`]: accepts connections and reads requests but forwards nothing either way,
//!   as a network partition would; when the blackhole ends, the connections it held are cut;
//! - [`Fault::Delay`]: holds every response frame for the given time before forwarding it;
//! - [`FaultProxy::cut`]: closes every open connection at once (both sides).
//!
//! [`FaultProxy::record`] also keeps every frame in arrival order (the golden-traffic capture, and
//! scenarios that decode what a client sent).

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The largest frame the proxy accepts (Kafka's default `socket.request.max.bytes` is 100 MiB).
pub(crate) const MAX_FRAME: usize = 128 << 20;

/// Splits a byte stream into Kafka frames (the 4-byte big-endian length prefix removed).
#[derive(Default)]
pub(crate) struct FrameSplitter {
    pending: Vec<u8>,
}

impl FrameSplitter {
    /// Appends bytes read off the wire.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete frame, if one has arrived. A negative or oversized length is an error:
    /// the stream is not Kafka (or is corrupt) from here on.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Vec<u8>>> {
        if self.pending.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes(self.pending[..4].try_into().expect("4 bytes"));
        let len =
            usize::try_from(len).ok().filter(|&l| l <= MAX_FRAME).with_context(|| format!("frame length {len}"))?;
        if self.pending.len() < 4 + len {
            return Ok(None);
        }
        let frame = self.pending[4..4 + len].to_vec();
        self.pending.drain(..4 + len);
        Ok(Some(frame))
    }

    /// Bytes of an incomplete frame still held.
    pub(crate) fn buffered(&self) -> usize {
        self.pending.len()
    }
}

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Forward everything.
    Pass,
    /// Accept, read, never forward (either way).
    Blackhole,
    /// Forward requests at once, each response after this delay.
    Delay(Duration),
}

/// Which way a frame went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dir {
    Request,
    Response,
}

/// One frame as the proxy saw it (recording on).
#[derive(Clone)]
pub(crate) struct Frame {
    /// The proxy's connection number (1, 2, ...).
    pub(crate) conn: u32,
    pub(crate) dir: Dir,
    pub(crate) bytes: Vec<u8>,
}

struct State {
    fault: watch::Sender<Fault>,
    /// Bumped by `cut`: every connection task watches it and closes both sides.
    cut: watch::Sender<u64>,
    counts: Mutex<BTreeMap<i16, u64>>,
    record: Mutex<Option<Vec<Frame>>>,
    errors: Mutex<Vec<String>>,
    next_conn: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running proxy; it stops when the runtime it was started on shuts down.
#[derive(Clone)]
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl FaultProxy {
    /// Binds `listen` (port 0: any) and forwards each connection to `upstream`. Must be called
    /// inside a tokio runtime, which runs the proxy.
    pub(crate) async fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(listen).await.with_context(|| format!("proxy: binding {listen}"))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            fault: watch::channel(Fault::Pass).0,
            cut: watch::channel(0).0,
            counts: Mutex::default(),
            record: Mutex::default(),
            errors: Mutex::default(),
            next_conn: AtomicU32::new(0),
        });
        tokio::spawn(accept_loop(listener, upstream, state.clone()));
        Ok(Self { addr, state })
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the fault; leaving a blackhole cuts the connections it held.
    pub(crate) fn set_fault(&self, fault: Fault) {
        let before = self.state.fault.send_replace(fault);
        if before == Fault::Blackhole && fault != Fault::Blackhole {
            self.cut();
        }
    }

    /// Closes every open connection (both sides).
    pub(crate) fn cut(&self) {
        self.state.cut.send_modify(|g| *g += 1);
    }

    /// Requests seen per API key since start (or the last reset).
    pub(crate) fn counts(&self) -> BTreeMap<i16, u64> {
        lock(&self.state.counts).clone()
    }

    /// Requests of one API key seen since start (or the last reset).
    pub(crate) fn count(&self, api_key: i16) -> u64 {
        lock(&self.state.counts).get(&api_key).copied().unwrap_or(0)
    }

    /// Starts keeping every frame (both directions) in arrival order.
    pub(crate) fn record(&self) {
        *lock(&self.state.record) = Some(Vec::new());
    }

    /// A copy of the frames kept since `record`; recording goes on.
    pub(crate) fn recorded(&self) -> Vec<Frame> {
        lock(&self.state.record).clone().unwrap_or_default()
    }

    /// The frames kept since `record`, and recording stops.
    pub(crate) fn take_recording(&self) -> Vec<Frame> {
        lock(&self.state.record).take().unwrap_or_default()
    }

    /// Stream errors seen (non-Kafka bytes, upstream refusing, ...).
    pub(crate) fn errors(&self) -> Vec<String> {
        lock(&self.state.errors).clone()
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: Arc<State>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                lock(&state.errors).push(format!("accept: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let conn = state.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(client, upstream, conn, &state).await {
                lock(&state.errors).push(format!("connection {conn} from {peer}: {e:#}"));
            }
        });
    }
}

/// One client connection: forwards until either side closes, a cut, or a blackhole ends.
async fn connection(client: TcpStream, upstream: SocketAddr, conn: u32, state: &State) -> Result<()> {
    let mut cut = state.cut.subscribe();
    let mut fault = state.fault.subscribe();
    client.set_nodelay(true)?;
    // A blackholed broker accepts but never answers: do not even reach upstream.
    if *fault.borrow_and_update() == Fault::Blackhole {
        return blackholed(client, &mut cut, &mut fault).await;
    }
    let server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        // The broker is down (killed): the client sees its connection closed, as it would if the
        // broker's port refused it.
        Err(_) => return Ok(()),
    };
    server.set_nodelay(true)?;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let forward = async {
        tokio::select! {
            r = pump(cr, Sink::Socket(sw), conn, Dir::Request, state) => r,
            r = pump(sr, Sink::Queue(&tx), conn, Dir::Response, state) => r,
            r = delayed_writer(rx, cw) => r,
        }
    };
    tokio::select! {
        r = forward => r,
        _ = cut.changed() => Ok(()),
    }
}

/// Where a pump writes what it forwards: requests straight to the broker, responses through the
/// delayed writer (which applies `Fault::Delay`).
enum Sink<'a> {
    Socket(tokio::net::tcp::OwnedWriteHalf),
    Queue(&'a mpsc::UnboundedSender<(Instant, Vec<u8>)>),
}

/// Writes response frames to the client, each no earlier than its due time.
async fn delayed_writer(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) -> Result<()> {
    while let Some((due, bytes)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    Ok(())
}

/// Reads and discards until the client goes away, the blackhole ends or a cut.
async fn blackholed(
    mut client: TcpStream,
    cut: &mut watch::Receiver<u64>,
    fault: &mut watch::Receiver<Fault>,
) -> Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = client.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => {}
            },
            _ = cut.changed() => return Ok(()),
            r = fault.changed() => {
                if r.is_err() || *fault.borrow_and_update() != Fault::Blackhole {
                    return Ok(());
                }
            }
        }
    }
}

/// Copies one direction frame by frame, counting requests and applying the fault in force.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: Sink<'_>,
    conn: u32,
    dir: Dir,
    state: &State,
) -> Result<()> {
    let mut fault = state.fault.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    let mut frames = FrameSplitter::default();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        frames.push(&buf[..n]);
        while let Some(frame) = frames.next_frame().with_context(|| format!("{dir:?} stream"))? {
            let now = *fault.borrow_and_update();
            if dir == Dir::Request && frame.len() >= 2 {
                let api_key = i16::from_be_bytes([frame[0], frame[1]]);
                *lock(&state.counts).entry(api_key).or_default() += 1;
            }
            if let Some(rec) = lock(&state.record).as_mut() {
                rec.push(Frame { conn, dir, bytes: frame.clone() });
            }
            if now == Fault::Blackhole {
                // Swallowed, as a partitioned network would; the connection is cut when the
                // blackhole ends.
                continue;
            }
            let mut wire = Vec::with_capacity(4 + frame.len());
            wire.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            wire.extend_from_slice(&frame);
            match &mut to {
                Sink::Socket(w) => {
                    if w.write_all(&wire).await.is_err() {
                        return Ok(());
                    }
                }
                Sink::Queue(q) => {
                    let delay = match now {
                        Fault::Delay(d) => d,
                        _ => Duration::ZERO,
                    };
                    if q.send((Instant::now() + delay, wire)).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    if frames.buffered() > 0 {
        bail!("{dir:?} stream of connection {conn} ended inside a frame ({} bytes)", frames.buffered());
    }
    if let Sink::Socket(mut w) = to {
        let _ = w.shutdown().await;
    }
    Ok(())
}
