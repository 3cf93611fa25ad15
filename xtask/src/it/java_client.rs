//! Kafka's Java client as a reference reader and partitioner (`tools/java-client`), compiled with
//! `javac` against the Kafka jars the suite downloaded, into `target/brokers/java-client`.

use super::support::{Consumed, Extent, parse_consumed_lines};
use crate::brokers::kafka::KafkaDist;
use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The compiled client.
pub(crate) struct JavaClient {
    classes: PathBuf,
    classpath: String,
}

impl JavaClient {
    /// Compiles `tools/java-client` (its `build.sh` is idempotent).
    pub(crate) fn ensure(dist: &KafkaDist) -> Result<Self> {
        let src = crate::project_root().join("tools").join("java-client");
        let classes = crate::brokers::brokers_dir().join("java-client");
        let status = std::process::Command::new("bash")
            .arg(src.join("build.sh"))
            .arg(dist.lib())
            .arg(&classes)
            .stdin(Stdio::null())
            .status()
            .context("running tools/java-client/build.sh")?;
        if !status.success() {
            bail!("compiling tools/java-client failed ({status})");
        }
        let classpath = format!("{}:{}", classes.display(), dist.classpath());
        Ok(Self { classes, classpath })
    }

    /// The classpath that runs `KrabJavaClient` (its classes and Kafka's jars).
    pub(crate) fn classpath(&self) -> &str {
        &self.classpath
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let log = crate::project_root().join("xtask").join("kafka").join("tools-log4j2.yaml");
        let mut cmd = tokio::process::Command::new("java");
        cmd.args(["-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
            .arg(format!("-Dlog4j2.configurationFile={}", log.display()))
            .arg("-cp")
            .arg(&self.classpath)
            .arg("KrabJavaClient")
            .args(args)
            .current_dir(&self.classes)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Result<String> {
        self.run_with(args, &[], None).await
    }

    /// Runs a subcommand with `env` set and `input` on its stdin (closed after it).
    async fn run_with(&self, args: &[&str], env: &[(&str, &str)], input: Option<&str>) -> Result<String> {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().context("running the Java client")?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes()).await.context("writing to the Java client")?;
        }
        let out = child.wait_with_output().await.context("running the Java client")?;
        if !out.status.success() {
            bail!(
                "KrabJavaClient {} failed ({}): {}",
                args.first().copied().unwrap_or_default(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).context("Java client output")
    }

    /// Reads every partition from the beginning to its end offset (high watermark, or the last
    /// stable offset under `read_committed`).
    pub(super) async fn consume(
        &self,
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        isolation: &str,
    ) -> Result<(Vec<Consumed>, BTreeMap<i32, Extent>)> {
        let text = self.run(&["consume", bootstrap, topic, &partitions.to_string(), "120", isolation]).await?;
        parse_consumed_lines(&text, partitions)
    }

    /// Where the Java producer's default partitioner puts each key (key → partition).
    pub(super) async fn key_partitions(
        &self,
        bootstrap: &str,
        topic: &str,
        keys: &[&str],
    ) -> Result<BTreeMap<String, i32>> {
        let mut args = vec!["key-partitions", bootstrap, topic];
        args.extend_from_slice(keys);
        let text = self.run(&args).await?;
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("line {line:?}"))?;
            let k = v["k"].as_str().context("k")?.to_owned();
            let p = v["p"].as_i64().context("p")? as i32;
            out.insert(k, p);
        }
        Ok(out)
    }

    /// Writes the records of `input` (the `produce` subcommand's line format) with compression
    /// `codec`; returns the delivery lines.
    pub(super) async fn produce(&self, bootstrap: &str, topic: &str, codec: &str, input: &str) -> Result<String> {
        self.run_with(&["produce", bootstrap, topic, codec], &[], Some(input)).await
    }

    /// Runs `transactions` (N transactions, even ones committed, odd ones aborted, plain records
    /// amid them) with the given transactional id; returns its summary line.
    pub(super) async fn transactions(
        &self,
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        n: u32,
        transactional_id: &str,
    ) -> Result<serde_json::Value> {
        let text = self
            .run_with(
                &["transactions", bootstrap, topic, &partitions.to_string(), &n.to_string()],
                &[("KRAB_TRANSACTIONAL_ID", transactional_id)],
                None,
            )
            .await?;
        serde_json::from_str(text.trim()).with_context(|| format!("transactions printed {text:?}"))
    }

    /// Runs `transactions` with KRAB_LEAVE_OPEN=1: N resolved transactions, then one left open.
    /// Returns once the open transaction's records are acknowledged, with its summary line; the
    /// transaction stays open while the returned process lives.
    pub(super) async fn transactions_left_open(
        &self,
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        n: u32,
        transactional_id: &str,
    ) -> Result<(OpenTransaction, serde_json::Value)> {
        let mut child = self
            .command(&["transactions", bootstrap, topic, &partitions.to_string(), &n.to_string()])
            .envs([("KRAB_TRANSACTIONAL_ID", transactional_id), ("KRAB_LEAVE_OPEN", "1")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running the Java client")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        // Its log (retries are normal while transactions end), kept for the error below.
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let keep = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let mut log = keep.lock().unwrap();
                if log.len() == 20 {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        let mut line = String::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await;
        ensure!(
            matches!(read, Ok(Ok(n)) if n > 0),
            "transactions (left open) printed nothing ({read:?}; exit {:?}); its log ends: {:?}",
            child.try_wait(),
            log.lock().unwrap()
        );
        let summary = serde_json::from_str(line.trim()).with_context(|| format!("transactions printed {line:?}"))?;
        Ok((OpenTransaction { child, stdin: Some(stdin) }, summary))
    }

    /// Runs the short golden-traffic workload (topics, every codec, a group, offsets).
    pub(crate) async fn workload(&self, bootstrap: &str, topic: &str) -> Result<String> {
        self.run(&["workload", bootstrap, topic]).await
    }
}

/// A Java producer holding a transaction open (see [`JavaClient::transactions_left_open`]); the
/// process is killed on drop.
pub(super) struct OpenTransaction {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
}

impl OpenTransaction {
    /// Closes the process's stdin: it halts without resolving the transaction.
    pub(super) async fn halt(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait())
            .await
            .context("the Java producer did not halt")??;
        ensure!(status.success(), "the Java producer holding the transaction exited with {status}");
        Ok(())
    }
}
