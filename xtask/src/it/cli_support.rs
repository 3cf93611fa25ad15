//! What the `krab` CLI scenarios share: the binary (built with cargo, like the mock cluster's)
//! and running it against the suite's cluster, its output checked and its failures explained.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

/// The cargo package and binary of the CLI.
const PACKAGE: &str = "krab-cli";
const BINARY: &str = "krab";

/// Builds `krab` (debug profile, sharing the suite's build) and returns the executable.
pub(super) fn build() -> Result<PathBuf> {
    crate::binaries::build(PACKAGE, BINARY, &["--quiet"])
}

/// The `krab` binary, pointed at one cluster.
pub(super) struct Krab {
    pub(super) exe: PathBuf,
    pub(super) bootstrap: String,
}

/// What one run printed.
pub(super) struct Ran {
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Krab {
    /// Builds the binary (off the runtime: cargo may take a while).
    pub(super) async fn build(bootstrap: &str) -> Result<Krab> {
        let exe = tokio::task::spawn_blocking(build).await??;
        Ok(Krab { exe, bootstrap: bootstrap.to_string() })
    }

    /// Runs `krab -b <bootstrap> ARGS` with `stdin`, at most `timeout`.
    pub(super) async fn output(&self, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<Output> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(&self.exe)
            .args(["-b", &self.bootstrap])
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", self.exe.display()))?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().context("stdin")?;
            pipe.write_all(input).await.context("writing krab's stdin")?;
            drop(pipe);
        }
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(out) => Ok(out?),
            Err(_) => bail!("`krab {}` did not finish within {timeout:?}", args.join(" ")),
        }
    }

    /// Runs `krab ARGS`, which must succeed; its output as text.
    pub(super) async fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Ran> {
        let out = self.output(args, stdin, Duration::from_secs(180)).await?;
        let ran = Ran {
            stdout: String::from_utf8(out.stdout).context("krab's stdout")?,
            stderr: String::from_utf8(out.stderr).context("krab's stderr")?,
        };
        if !out.status.success() {
            bail!("`krab {}` failed ({}): {}", args.join(" "), out.status, ran.stderr.trim());
        }
        Ok(ran)
    }

    /// `krab topic create` with partitions, replication factor and configs, then waits until
    /// `krab topic describe --json` shows every partition with a leader and a full ISR; returns
    /// that description.
    pub(super) async fn create_topic(
        &self,
        topic: &str,
        partitions: usize,
        replicas: usize,
        configs: &[&str],
    ) -> Result<serde_json::Value> {
        let (p, r) = (partitions.to_string(), replicas.to_string());
        let mut args = vec!["topic", "create", topic, "--partitions", &p, "--replication-factor", &r];
        for c in configs {
            args.extend(["--config", c]);
        }
        self.ok(&args, None).await?;
        let (described, _) =
            super::admin_support::eventually(&format!("{topic} described"), Duration::from_secs(20), || async {
                let ran = self.ok(&["topic", "describe", topic, "--json"], None).await?;
                let v: serde_json::Value = serde_json::from_str(ran.stdout.trim()).context("describe --json")?;
                let settled = v["partitions"].as_array().is_some_and(|ps| {
                    ps.len() == partitions
                        && ps
                            .iter()
                            .all(|p| p["leader"].is_i64() && p["isr"].as_array().is_some_and(|i| i.len() == replicas))
                });
                Ok(settled.then_some(v))
            })
            .await?;
        Ok(described)
    }
}
