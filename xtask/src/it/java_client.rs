//! Kafka's Java client as a reference reader and partitioner (`tools/java-client`), compiled with
//! `javac` against the Kafka jars the suite downloaded, into `target/brokers/java-client`.

use super::support::{Consumed, Extent, parse_consumed_lines};
use crate::brokers::kafka::KafkaDist;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

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
        let out = self.command(args).output().await.context("running the Java client")?;
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

    /// Runs the short golden-traffic workload (topics, every codec, a group, offsets).
    pub(crate) async fn workload(&self, bootstrap: &str, topic: &str) -> Result<String> {
        self.run(&["workload", bootstrap, topic]).await
    }
}
