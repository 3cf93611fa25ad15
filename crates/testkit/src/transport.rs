//! The in-memory transport: broker addresses mapped to fake brokers, with down and hang switches.

use crate::broker::FakeBroker;
use crate::lock;
use krab_cluster::BrokerAddr;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::DuplexStream;

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
