//! The transport seam: how a byte stream to a broker is made.
//!
//! Anything implementing `tower::Service<BrokerAddr>` whose response is an
//! `AsyncRead + AsyncWrite` stream is a transport (that is tower's `MakeConnection`). krab ships
//! [`TcpTransport`]; TLS, SASL or an in-memory `tokio::io::duplex` test broker plug in the same
//! way, without touching the rest.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tower::ServiceExt;

/// A connected byte stream to a broker.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A boxed error from a transport.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Erases a transport's types, so that the cluster is not generic over it.
pub(crate) fn boxed<T>(
    transport: T,
) -> impl tower::Service<BrokerAddr, Response = Box<dyn Stream>, Error = BoxError, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static
where
    T: tower::Service<BrokerAddr> + Clone + Send + Sync + 'static,
    T::Response: Stream,
    T::Error: Into<BoxError>,
    T::Future: Send + 'static,
{
    transport.map_response(|io| Box::new(io) as Box<dyn Stream>).map_err(Into::into)
}

/// A broker's address: a host name or IP literal, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerAddr {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BrokerAddr {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self { host: host.into(), port }
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A `host:port` that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid broker address `{0}`: expected host:port")]
pub struct InvalidAddr(pub String);

impl FromStr for BrokerAddr {
    type Err = InvalidAddr;
    fn from_str(s: &str) -> Result<Self, InvalidAddr> {
        let bad = || InvalidAddr(s.to_string());
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, rest) = rest.split_once(']').ok_or_else(bad)?;
            (host, rest.strip_prefix(':').ok_or_else(bad)?)
        } else {
            s.rsplit_once(':').ok_or_else(bad)?
        };
        if host.is_empty() || host.contains(':') && !s.starts_with('[') {
            return Err(bad());
        }
        let port = port.parse().map_err(|_| bad())?;
        Ok(BrokerAddr::new(host, port))
    }
}

/// Parses a `bootstrap.servers` list: comma-separated `host:port`.
pub fn parse_bootstrap(list: &str) -> Result<Vec<BrokerAddr>, InvalidAddr> {
    let addrs: Vec<BrokerAddr> =
        list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err(InvalidAddr(list.to_string()));
    }
    Ok(addrs)
}

/// Plain TCP with `TCP_NODELAY`: resolves the host name (every address it resolves to is tried in
/// order) and connects within a timeout.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    connect_timeout: Duration,
}

impl TcpTransport {
    /// A TCP transport whose connection attempts give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        Self { connect_timeout }
    }
}

impl Default for TcpTransport {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl tower::Service<BrokerAddr> for TcpTransport {
    type Response = TcpStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, addr: BrokerAddr) -> Self::Future {
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolved to no address"));
            for sock in tokio::net::lookup_host((addr.host.as_str(), addr.port)).await? {
                match tokio::time::timeout(timeout, TcpStream::connect(sock)).await {
                    Ok(Ok(stream)) => {
                        stream.set_nodelay(true)?;
                        return Ok(stream);
                    }
                    Ok(Err(e)) => last = e,
                    Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {sock} timed out")),
                }
            }
            Err(last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!("localhost:9092".parse::<BrokerAddr>().unwrap(), BrokerAddr::new("localhost", 9092));
        assert_eq!("[::1]:19092".parse::<BrokerAddr>().unwrap(), BrokerAddr::new("::1", 19092));
        assert_eq!(BrokerAddr::new("::1", 1).to_string(), "[::1]:1");
        for bad in ["localhost", ":9092", "host:port", "host:70000", "::1:9092", ""] {
            assert!(bad.parse::<BrokerAddr>().is_err(), "{bad}");
        }
        assert_eq!(parse_bootstrap(" a:1, b:2 ,").unwrap().len(), 2);
        assert!(parse_bootstrap(" , ").is_err());
    }
}
