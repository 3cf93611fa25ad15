//! librdkafka's mock cluster (librdkafka 2.12.1 via the `rdkafka` crate) in
//! the `krab-mock-cluster` process, driven over its stdin/stdout line
//! protocol (see `tools/mock-cluster/src/main.rs`): multi-broker topologies,
//! leader moves, brokers going down, injected errors and delays, and counts
//! of the requests that reached the cluster.
//!
//! Quirks to design tests around (see shared/brokers/README.md): broker ids
//! are `1..=N`; `down` refuses connections but does not move leaders; unknown
//! topics are auto-created with 4 partitions (also by `set_leader`); a
//! replication factor above the broker count is capped; ApiVersions v3 is
//! answered with UNSUPPORTED_VERSION (35) and a body whose only meaningful
//! field is that error code (the mock supports ApiVersions v0..=2).

// The typed client is for the integration suite and benchmarks; xtask's
// own `broker mock` task uses only part of it.
#![allow(dead_code, reason = "client API for other xtask code")]

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

/// The cargo package of the mock-cluster binary.
const PACKAGE: &str = "krab-mock-cluster";

/// Builds `krab-mock-cluster` (debug profile: librdkafka's C code is
/// optimised by its own configure/make either way, and `cargo test -p
/// krab-mock-cluster` shares the artifacts) and returns the executable.
pub(crate) fn build() -> Result<PathBuf> {
    crate::binaries::build(PACKAGE, PACKAGE, &["--quiet"])
}

/// The child's pipes; one command/reply exchange at a time.
struct Io {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// A running mock cluster process; killed when dropped.
pub(crate) struct MockCluster {
    child: Child,
    io: Mutex<Io>,
    bootstrap: String,
}

impl MockCluster {
    /// Builds the binary if needed and starts a cluster of `brokers` brokers
    /// (ids `1..=brokers`) on ephemeral 127.0.0.1 ports.
    pub(crate) fn start(brokers: usize) -> Result<Self> {
        let exe = build()?;
        Self::start_exe(&exe, brokers)
    }

    /// Starts an already built `krab-mock-cluster` executable.
    pub(crate) fn start_exe(exe: &std::path::Path, brokers: usize) -> Result<Self> {
        let mut child = Command::new(exe)
            .args(["--brokers", &brokers.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {}", exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("child pipes missing");
        };
        let mut io = Io { stdin, stdout: BufReader::new(stdout) };
        let mut first = String::new();
        let read = io.stdout.read_line(&mut first);
        let bootstrap = match read.ok().and_then(|_| first.trim_end().strip_prefix("BOOTSTRAP ")) {
            Some(b) => b.to_owned(),
            None => {
                let _ = child.kill();
                let status = child.wait()?;
                bail!("{PACKAGE} did not start ({status}); first line: {first:?}");
            }
        };
        Ok(Self { child, io: Mutex::new(io), bootstrap })
    }

    /// `127.0.0.1:P1,127.0.0.1:P2,...`, broker 1 first.
    pub(crate) fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The mock cluster's process id (e.g. to watch its CPU use).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one protocol line and returns the whole reply line (`OK ...` or
    /// `ERR ...`), trailing newline removed.
    pub(crate) fn raw(&self, line: &str) -> Result<String> {
        if line.contains(['\n', '\r']) {
            bail!("a command is one line: {line:?}");
        }
        let mut io = self.io.lock().map_err(|_| anyhow::anyhow!("mock cluster I/O lock poisoned"))?;
        writeln!(io.stdin, "{line}").and_then(|()| io.stdin.flush()).context("writing to the mock cluster")?;
        let mut reply = String::new();
        let n = io.stdout.read_line(&mut reply).context("reading from the mock cluster")?;
        if n == 0 {
            bail!("the mock cluster exited (command {line:?})");
        }
        Ok(reply.trim_end().to_owned())
    }

    /// Runs one command; `Ok` holds the data after `OK` (empty if none).
    pub(crate) fn command(&self, line: &str) -> Result<String> {
        let reply = self.raw(line)?;
        if reply == "OK" {
            return Ok(String::new());
        }
        if let Some(data) = reply.strip_prefix("OK ") {
            return Ok(data.to_owned());
        }
        match reply.strip_prefix("ERR ") {
            Some(msg) => bail!("mock cluster: `{line}`: {msg}"),
            None => bail!("mock cluster: `{line}`: unexpected reply {reply:?}"),
        }
    }

    /// Creates a topic (fails if it exists).
    pub(crate) fn create_topic(&self, name: &str, partitions: u32, rf: u32) -> Result<()> {
        self.command(&format!("create {name} {partitions} {rf}")).map(drop)
    }

    /// Moves a partition's leader (`broker` -1: no leader).
    pub(crate) fn set_leader(&self, topic: &str, partition: i32, broker: i32) -> Result<()> {
        self.command(&format!("leader {topic} {partition} {broker}")).map(drop)
    }

    /// Takes a broker down (-1: all): it refuses connections, leaders stay.
    pub(crate) fn broker_down(&self, id: i32) -> Result<()> {
        self.command(&format!("down {id}")).map(drop)
    }

    /// Brings a broker back up on the same port (-1: all).
    pub(crate) fn broker_up(&self, id: i32) -> Result<()> {
        self.command(&format!("up {id}")).map(drop)
    }

    /// The next `count` requests of `api_key` (to any broker) fail with `code`.
    /// librdkafka's `-195` (`_TRANSPORT`) closes the connection instead.
    pub(crate) fn push_errors(&self, api_key: i16, code: i16, count: u32) -> Result<()> {
        self.command(&format!("err {api_key} {code} {count}")).map(drop)
    }

    /// The next `count` requests of `api_key` to `broker` fail with `code`,
    /// each answered after `rtt_ms`.
    pub(crate) fn push_broker_errors(
        &self,
        broker: i32,
        api_key: i16,
        code: i16,
        count: u32,
        rtt_ms: u32,
    ) -> Result<()> {
        self.command(&format!("brokererr {broker} {api_key} {code} {count} {rtt_ms}")).map(drop)
    }

    /// Delays every response of `broker` (-1: all) by `ms`.
    pub(crate) fn set_rtt(&self, broker: i32, ms: u32) -> Result<()> {
        self.command(&format!("rtt {broker} {ms}")).map(drop)
    }

    /// Starts (or restarts, clearing) request tracking.
    pub(crate) fn start_tracking(&self) -> Result<()> {
        self.command("track start").map(drop)
    }

    /// Clears the tracked requests; tracking goes on.
    pub(crate) fn reset_tracking(&self) -> Result<()> {
        self.command("track reset").map(drop)
    }

    /// Stops tracking (and clears).
    pub(crate) fn stop_tracking(&self) -> Result<()> {
        self.command("track stop").map(drop)
    }

    /// How many requests of `api_key` reached the cluster since tracking (re)started.
    pub(crate) fn request_count(&self, api_key: i16) -> Result<u64> {
        let data = self.command(&format!("count {api_key}"))?;
        data.parse().with_context(|| format!("count reply {data:?}"))
    }

    /// Tracked request counts of every api key seen.
    pub(crate) fn request_counts(&self) -> Result<BTreeMap<i16, u64>> {
        let data = self.command("counts")?;
        data.split_whitespace()
            .map(|kv| {
                let (k, v) = kv.split_once(':').with_context(|| format!("counts entry {kv:?}"))?;
                Ok((k.parse()?, v.parse()?))
            })
            .collect()
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cargo xtask broker mock [--brokers N]`: start a cluster, print its
/// `BOOTSTRAP` line, then forward each stdin line as a command and print the
/// reply, until stdin closes or `quit`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut brokers = 3;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--brokers" => {
                let v = it.next().context("--brokers needs a value")?;
                brokers = v.parse::<usize>().context("--brokers")?;
            }
            other => bail!("unknown option `{other}` (usage: broker mock [--brokers N])"),
        }
    }
    let cluster = MockCluster::start(brokers)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "BOOTSTRAP {}", cluster.bootstrap())?;
    out.flush()?;
    eprintln!(
        "mock cluster running (broker ids 1..={brokers}); commands: create T P RF | leader T P B | down B | up B | \
         err KEY CODE N | brokererr B KEY CODE N [MS] | rtt B MS | track start|stop|reset | count KEY [B] | \
         counts [B] | quit"
    );
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let reply = cluster.raw(&line)?;
        writeln!(out, "{reply}")?;
        out.flush()?;
        if line.trim() == "quit" && reply == "OK" {
            break;
        }
    }
    drop(cluster);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MockCluster;
    use crate::brokers::Venv;
    use std::net::{SocketAddr, TcpStream};
    use std::process::Command;
    use std::time::Duration;

    const METADATA: i16 = 3;

    /// Lists topic `name` with the reference client (confluent-kafka from
    /// the broker venv); returns "partition:leader" pairs and the broker ids.
    fn describe(venv: &Venv, bootstrap: &str, name: &str) -> (Vec<String>, Vec<i32>) {
        let code = "import sys\n\
            from confluent_kafka.admin import AdminClient\n\
            md = AdminClient({'bootstrap.servers': sys.argv[1]}).list_topics(sys.argv[2], timeout=10)\n\
            t = md.topics[sys.argv[2]]\n\
            print(' '.join(f'{p.id}:{p.leader}' for p in sorted(t.partitions.values(), key=lambda p: p.id)))\n\
            print(' '.join(str(b) for b in sorted(md.brokers)))\n";
        let out = Command::new(venv.python()).args(["-c", code, bootstrap, name]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let parts = lines.next().unwrap().split_whitespace().map(str::to_owned).collect();
        let ids = lines.next().unwrap().split_whitespace().map(|s| s.parse().unwrap()).collect();
        (parts, ids)
    }

    /// Builds and drives the real mock cluster; needs the broker venv
    /// (`cargo test -p xtask -- --ignored mock`).
    #[test]
    #[ignore = "builds krab-mock-cluster (librdkafka) and needs the broker venv"]
    fn mock_cluster_end_to_end() {
        let venv = Venv::ensure().unwrap();
        let mc = MockCluster::start(3).unwrap();
        let addrs: Vec<SocketAddr> = mc.bootstrap().split(',').map(|a| a.parse().unwrap()).collect();
        assert_eq!(addrs.len(), 3);
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));

        mc.create_topic("t12", 12, 3).unwrap();
        assert!(mc.create_topic("t12", 12, 3).is_err());
        mc.set_leader("t12", 5, 3).unwrap();
        assert!(mc.set_leader("t12", 5, 4).is_err());
        mc.broker_down(2).unwrap();
        assert!(TcpStream::connect_timeout(&addrs[1], Duration::from_secs(2)).is_err());
        mc.broker_up(2).unwrap();
        assert!(TcpStream::connect_timeout(&addrs[1], Duration::from_secs(2)).is_ok());
        mc.push_errors(METADATA, 6, 1).unwrap();
        assert!(mc.push_errors(METADATA, 9999, 1).is_err());
        mc.set_rtt(1, 20).unwrap();
        mc.start_tracking().unwrap();
        assert_eq!(mc.request_count(METADATA).unwrap(), 0);

        let (parts, ids) = describe(&venv, mc.bootstrap(), "t12");
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(parts.len(), 12);
        assert_eq!(parts[5], "5:3");
        let n = mc.request_count(METADATA).unwrap();
        assert!(n > 0, "no Metadata request counted");
        let counts = mc.request_counts().unwrap();
        assert_eq!(counts.get(&METADATA), Some(&n));
        eprintln!("tracked after one list_topics: {counts:?}");
        mc.reset_tracking().unwrap();
        assert_eq!(mc.request_count(METADATA).unwrap(), 0);
        mc.stop_tracking().unwrap();
    }
}
