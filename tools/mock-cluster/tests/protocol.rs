//! End-to-end checks of the `krab-mock-cluster` binary: its stdin/stdout
//! protocol, and what real clients (rdkafka, raw TCP) see of the commands.

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const METADATA: i16 = 3;
const API_VERSIONS: i16 = 18;

/// The binary under test, killed on drop.
struct Mock {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    bootstrap: String,
}

impl Mock {
    fn start(brokers: usize) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_krab-mock-cluster"))
            .args(["--brokers", &brokers.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn krab-mock-cluster");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let bootstrap = first.trim_end().strip_prefix("BOOTSTRAP ").expect("BOOTSTRAP line").to_owned();
        Self { child, stdin: Some(stdin), stdout, bootstrap }
    }

    fn send(&mut self, line: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        reply.trim_end().to_owned()
    }

    fn ok(&mut self, line: &str) {
        assert_eq!(self.send(line), "OK", "{line}");
    }

    fn count(&mut self, api_key: i16) -> u64 {
        let reply = self.send(&format!("count {api_key}"));
        reply.strip_prefix("OK ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("count: {reply}"))
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.bootstrap.split(',').map(|a| a.parse().unwrap()).collect()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one ApiVersions request (v0, or v3 with its flexible header) and
/// returns (error code, whole response body after the correlation id).
fn api_versions(addr: SocketAddr, version: i16) -> (i16, Vec<u8>) {
    let mut req = Vec::new();
    req.extend_from_slice(&API_VERSIONS.to_be_bytes());
    req.extend_from_slice(&version.to_be_bytes());
    req.extend_from_slice(&7i32.to_be_bytes());
    req.extend_from_slice(&4i16.to_be_bytes());
    req.extend_from_slice(b"test");
    if version >= 3 {
        // header tagged fields; body: software name + version (compact), tags
        req.push(0);
        req.extend_from_slice(&[5, b'k', b'r', b'a', b'b', 2, b'0', 0]);
    }
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&(req.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&req).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).unwrap();
    assert_eq!(&resp[..4], &7i32.to_be_bytes(), "correlation id");
    let body = resp[4..].to_vec();
    (i16::from_be_bytes([body[0], body[1]]), body)
}

#[test]
fn drives_the_cluster_and_real_clients_see_it() {
    let mut mock = Mock::start(3);
    let addrs = mock.addrs();
    assert_eq!(addrs.len(), 3);
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    assert_eq!(mock.send("bootstrap"), format!("OK {}", mock.bootstrap));

    mock.ok("create t12 12 3");
    mock.ok("leader t12 0 2");
    mock.ok("track start");
    assert_eq!(mock.send("counts"), "OK");

    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &mock.bootstrap).create().unwrap();
    let md = consumer.fetch_metadata(Some("t12"), Duration::from_secs(10)).unwrap();
    let mut ids: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3]);
    let topic = &md.topics()[0];
    assert_eq!(topic.name(), "t12");
    assert_eq!(topic.partitions().len(), 12);
    let p0 = topic.partitions().iter().find(|p| p.id() == 0).unwrap();
    assert_eq!(p0.leader(), 2);
    assert!(topic.partitions().iter().all(|p| p.replicas().len() == 3));
    drop(consumer);

    let metadata = mock.count(METADATA);
    assert!(metadata > 0, "no Metadata request tracked");
    assert!(mock.count(API_VERSIONS) > 0);
    let counts = mock.send("counts");
    assert!(counts.contains(&format!("3:{metadata}")), "{counts}");
    mock.ok("track reset");
    assert_eq!(mock.count(METADATA), 0);

    // down refuses connections on that broker's port; up reopens the same port.
    mock.ok("down 1");
    assert!(TcpStream::connect_timeout(&addrs[0], Duration::from_secs(2)).is_err(), "broker 1 still accepts");
    assert!(TcpStream::connect_timeout(&addrs[1], Duration::from_secs(2)).is_ok());
    mock.ok("up 1");
    assert!(TcpStream::connect_timeout(&addrs[0], Duration::from_secs(2)).is_ok(), "broker 1 did not come back");

    // A pushed cluster error answers the next request of that key, once.
    mock.ok("err 18 31 1");
    assert_eq!(api_versions(addrs[2], 0).0, 31);
    assert_eq!(api_versions(addrs[2], 0).0, 0);

    // Per-broker error with a delay.
    mock.ok("brokererr 2 18 7 1 300");
    let t = Instant::now();
    assert_eq!(api_versions(addrs[1], 0).0, 7);
    assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());

    // RTT delays every response of that broker.
    mock.ok("rtt 3 300");
    let t = Instant::now();
    assert_eq!(api_versions(addrs[2], 0).0, 0);
    assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
    mock.ok("rtt 3 0");

    // ApiVersions v3: UNSUPPORTED_VERSION (35); the mock advertises v0..=2.
    let (code, body) = api_versions(addrs[0], 3);
    assert_eq!(code, 35, "body {body:02x?}");
    eprintln!("ApiVersions v3 response body: {body:02x?}");

    // Tracking: counted per broker, cleared by stop.
    mock.ok("track start");
    api_versions(addrs[0], 0);
    api_versions(addrs[1], 0);
    api_versions(addrs[1], 0);
    assert_eq!(mock.send("count 18 2"), "OK 2");
    assert_eq!(mock.send("counts 1"), "OK 18:1");
    mock.ok("track stop");
    assert_eq!(mock.count(API_VERSIONS), 0);

    assert_eq!(mock.send("quit"), "OK");
    let status = mock.child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn bad_commands_get_err_and_the_process_survives() {
    let mut mock = Mock::start(1);
    assert_eq!(mock.addrs().len(), 1);
    for line in [
        "",
        "nope",
        "create",
        "create t 0 1",
        "create t 1 x",
        // (`leader` on an unknown topic auto-creates it, 4 partitions, before failing)
        "leader other 0 9",
        "down 5",
        "up 5",
        "rtt 5 10",
        "err 3 9999 1",
        "err 3 6 0",
        "brokererr 9 3 6 1",
        "count",
        "track maybe",
        "quit now",
    ] {
        let reply = mock.send(line);
        assert!(reply.starts_with("ERR "), "{line:?} -> {reply}");
    }
    mock.ok("create t 1 1");
    assert!(mock.send("create t 1 1").starts_with("ERR "), "duplicate topic");
    // stdin EOF ends the process cleanly.
    mock.stdin = None;
    let status = mock.child.wait().unwrap();
    assert!(status.success());
}
