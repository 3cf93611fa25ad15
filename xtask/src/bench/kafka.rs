//! `bench produce --broker kafka`: the producers against one 3-node Apache Kafka cluster that the
//! bench starts (each client connects to the brokers' INTERNAL listeners, never through the fault
//! proxies), one client per process, one after another:
//!
//! - krab and librdkafka's BaseProducer (`krab-bench`), rskafka (`krab-bench`; always acks=-1);
//! - Kafka's Java producer (`org.apache.kafka.tools.ProducerPerformance` in its own JVM, payloads
//!   from a file of krab-bench's values; its CPU and peak RSS are read from `/proc`);
//! - franz-go (`tools/franz-bench`, built with the local Go toolchain).
//!
//! Workloads: 1M x 100 B and 100k x 1 KiB, none and lz4, acks=1 (idempotence off) and acks=all
//! (idempotence as each client's default has it), each on a fresh topic of 6 partitions, RF 3.
//! Every run also reports the CPU the broker JVMs used (utime + stime of every JVM, before and
//! after the process).

use super::{BOOTSTRAP, Broker, Case, Lease, Output, ProduceSettings, Results, Sample, median, thousands};
use crate::brokers::kafka::{KafkaCluster, KafkaOptions};
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The clients of the Kafka bench, in run order.
pub(super) const CLIENTS: &[&str] = &["krab", "rdkafka-base", "java", "franz", "rskafka"];
/// The references of the ratio columns.
const RDKAFKA: &str = "rdkafka-base";
const JAVA: &str = "java";
const PARTITIONS: i32 = 6;
const NODES: usize = 3;
/// Distinct payloads in the Java producer's payload file (it picks one at random per record).
const PAYLOADS: u64 = 1000;

/// One Kafka workload.
struct Workload {
    records: u64,
    warmup: u64,
    size: usize,
    compression: &'static str,
    acks: &'static str,
}

impl Workload {
    fn title(&self) -> String {
        format!("{} x {} B, {}, acks={}", thousands(self.records), self.size, self.compression, self.acks)
    }
}

fn workloads(s: &ProduceSettings) -> Vec<Workload> {
    let mut out = Vec::new();
    for (records, size) in [(1_000_000u64, 100usize), (100_000, 1024)] {
        for compression in ["none", "lz4"] {
            for acks in ["1", "all"] {
                let wanted = s.size.is_none_or(|z| z == size)
                    && s.compression.as_deref().is_none_or(|c| c == compression)
                    && s.acks.as_deref().is_none_or(|a| a == acks);
                if wanted {
                    let records = ((records as f64 * s.scale) as u64).max(1000);
                    let warmup = ((20_000.0 * s.scale) as u64).clamp(1000, 20_000);
                    out.push(Workload { records, warmup, size, compression, acks });
                }
            }
        }
    }
    out
}

/// `bench produce --broker kafka`.
pub(super) fn produce(s: &ProduceSettings) -> Result<()> {
    for c in &s.clients {
        ensure!(CLIENTS.contains(&c.as_str()) || c == "rdkafka-future", "unknown client `{c}` (known: {CLIENTS:?})");
    }
    let workloads = workloads(s);
    if workloads.is_empty() {
        bail!("no workload left after --size/--compression/--acks");
    }
    let exe = super::build()?;
    let franz = if s.clients.iter().any(|c| c == "franz") { Some(build_franz()?) } else { None };
    let work = crate::project_root().join("target").join("bench");
    std::fs::create_dir_all(&work)?;

    eprintln!("starting Apache Kafka ({NODES} nodes)...");
    let cluster = KafkaCluster::start(&KafkaOptions::new(NODES))?;
    let bootstrap = cluster.direct_bootstrap();
    println!(
        "bench produce --broker kafka: {} ({NODES} nodes, 127.0.0.1, clients on the INTERNAL listeners {bootstrap}); \
         {} run(s) per client, one client at a time; a fresh topic of {PARTITIONS} partitions, RF {NODES}, \
         min.insync.replicas 2 per workload; linger.ms {}, batch.size {} for every client; warm-up not counted",
        cluster.version(),
        s.runs,
        s.linger_ms,
        s.batch_size
    );
    let mut summary = Vec::new();
    for (i, w) in workloads.iter().enumerate() {
        let topic = format!("krab-bench-kafka-{i}");
        cluster.create_topic(&topic, PARTITIONS, NODES as i16, &[])?;
        println!("\n== {} (topic {topic}, warm-up {} records) ==", w.title(), w.warmup);
        let payload = payload_file(&exe, &work, w.size)?;
        let cases: Vec<Case> =
            s.clients.iter().map(|c| case(c, w, s, &topic, &cluster, franz.as_deref(), &payload)).collect();
        let mut lease = || -> Result<Lease> {
            Ok(Lease {
                bootstrap: bootstrap.clone(),
                broker: Broker { label: format!("kafka x{NODES}"), pids: cluster.pids() },
                _guard: None,
            })
        };
        let timeout = Duration::from_secs(600);
        let results = super::run_cases(&exe, &cases, s.runs, timeout, &mut lease, &super::produce_line)?;
        print_table(&results);
        summary.push((w.title(), results));
        if let Err(e) = delete_topic(&bootstrap, &topic) {
            eprintln!("note: deleting {topic} failed ({e:#}); its data stays until the cluster stops");
        }
    }
    drop(cluster);
    print_summary(&summary, s.runs);
    Ok(())
}

/// The case of one client on one workload.
fn case(
    client: &str,
    w: &Workload,
    s: &ProduceSettings,
    topic: &str,
    cluster: &KafkaCluster,
    franz: Option<&Path>,
    payload: &Path,
) -> Case {
    let records = w.records.to_string();
    let warmup = w.warmup.to_string();
    match client {
        JAVA => {
            let log = crate::project_root().join("xtask").join("kafka").join("tools-log4j2.yaml");
            let mut args: Vec<String> = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC"].map(str::to_owned).to_vec();
            args.push(format!("-Dlog4j2.configurationFile={}", log.display()));
            args.extend([
                "-cp".into(),
                cluster.dist().classpath(),
                "org.apache.kafka.tools.ProducerPerformance".into(),
            ]);
            args.extend(["--bootstrap-server".into(), BOOTSTRAP.into(), "--topic".into(), topic.into()]);
            args.extend(["--num-records".into(), (w.records + w.warmup).to_string()]);
            args.extend(["--warmup-records".into(), warmup, "--throughput".into(), "-1".into()]);
            args.extend(["--payload-file".into(), payload.display().to_string()]);
            args.push("--command-property".into());
            args.push(format!("acks={}", w.acks));
            if w.acks == "1" {
                args.push("enable.idempotence=false".into());
            }
            args.extend([
                format!("linger.ms={}", s.linger_ms),
                format!("batch.size={}", s.batch_size),
                format!("buffer.memory={}", 64 << 20),
                format!("max.request.size={}", s.batch_size.max(1 << 20)),
                format!("compression.type={}", w.compression),
                "client.id=java-bench".into(),
            ]);
            Case {
                label: JAVA.into(),
                args,
                exe: Some("java".into()),
                output: Output::ProducerPerformance { records: w.records, total: w.records + w.warmup, size: w.size },
            }
        }
        "franz" => {
            let mut args: Vec<String> = vec!["produce".into(), "-bootstrap".into(), BOOTSTRAP.into()];
            args.extend(["-topic".into(), topic.into(), "-records".into(), records]);
            args.extend(["-size".into(), w.size.to_string(), "-partitions".into(), PARTITIONS.to_string()]);
            args.extend(["-compression".into(), w.compression.into(), "-acks".into(), w.acks.into()]);
            args.extend([
                "-linger-ms".into(),
                s.linger_ms.to_string(),
                "-batch-bytes".into(),
                s.batch_size.to_string(),
            ]);
            args.extend(["-buffer-bytes".into(), (64 << 20).to_string()]);
            Case { label: "franz".into(), args, exe: franz.map(Path::to_path_buf), output: Output::JsonLine }
        }
        other => {
            let mut args: Vec<String> = vec!["produce".into(), "--client".into(), other.into()];
            args.extend(["--bootstrap".into(), BOOTSTRAP.into(), "--topic".into(), topic.into()]);
            args.extend(["--records".into(), records, "--size".into(), w.size.to_string()]);
            args.extend(["--compression".into(), w.compression.into(), "--acks".into(), w.acks.into()]);
            args.extend(["--partitions".into(), PARTITIONS.to_string(), "--warmup-records".into(), warmup]);
            args.extend(["--batch-size".into(), s.batch_size.to_string()]);
            args.extend(["--linger-ms".into(), s.linger_ms.to_string()]);
            if other == "krab" {
                args.extend(["--threads".into(), s.krab_threads.to_string()]);
            }
            Case::bench(other, args)
        }
    }
}

/// Builds `tools/franz-bench` with the local Go toolchain into `target/bench/franz-bench`.
pub(super) fn build_franz() -> Result<PathBuf> {
    let out = crate::project_root().join("target").join("bench").join("franz-bench");
    let dir = crate::project_root().join("tools").join("franz-bench");
    eprintln!("building tools/franz-bench (go build)");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .env("GOTOOLCHAIN", "local")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .status()
        .context("running `go build` for tools/franz-bench (is Go installed?)")?;
    ensure!(status.success(), "go build of tools/franz-bench failed ({status})");
    Ok(out)
}

/// `target/bench/payload-SIZE.txt`: [`PAYLOADS`] of krab-bench's values of `size` bytes, one per
/// line (the Java producer's `--payload-file`).
fn payload_file(exe: &Path, dir: &Path, size: usize) -> Result<PathBuf> {
    let path = dir.join(format!("payload-{size}.txt"));
    let out = Command::new(exe)
        .args(["payload", "--size", &size.to_string(), "--records", &PAYLOADS.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("krab-bench payload")?;
    ensure!(out.status.success(), "krab-bench payload failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&path, &out.stdout)?;
    Ok(path)
}

/// Deletes a workload's topic (its 3 replicas of data) straight on the brokers.
fn delete_topic(bootstrap: &str, topic: &str) -> Result<()> {
    use krab_cluster::{Cluster, ClusterConfig, transport::parse_bootstrap};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let cluster = Cluster::connect(ClusterConfig::new(parse_bootstrap(bootstrap)?)).await?;
        cluster.delete_topics(&[topic.to_string()], Duration::from_secs(30)).await?;
        anyhow::Ok(())
    })
}

fn broker_cpu(results: &Results, label: &str) -> f64 {
    results
        .cases
        .iter()
        .find(|(l, _)| l == label)
        .map_or(f64::NAN, |(_, samples)| median(samples.iter().map(|s: &Sample| s.broker_cpu_s).collect()))
}

/// Medians per client for one workload, with the ratios to rdkafka and to Java.
fn print_table(results: &Results) {
    println!(
        "{:<13} {:>10} {:>8} {:>11} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "client",
        "rec/s",
        "MB/s",
        "CPU µs/rec",
        "RSS MB",
        "broker s",
        "x rdk r/s",
        "x rdk cpu",
        "x java r/s",
        "x java cpu"
    );
    for (label, _) in &results.cases {
        let m = |key: &str| results.median(label, key);
        let vs = |reference: &str, key: &str| m(key) / results.median(reference, key);
        println!(
            "{:<13} {:>10.0} {:>8.1} {:>11.3} {:>8.1} {:>10.2} {:>8.2}x {:>8.2}x {:>9.2}x {:>9.2}x",
            label,
            m("records_per_s"),
            m("mb_per_s"),
            m("cpu_us_per_record"),
            m("peak_rss_mb"),
            broker_cpu(results, label),
            vs(RDKAFKA, "records_per_s"),
            vs(RDKAFKA, "cpu_us_per_record"),
            vs(JAVA, "records_per_s"),
            vs(JAVA, "cpu_us_per_record"),
        );
    }
}

fn print_summary(summary: &[(String, Results)], runs: usize) {
    println!("\n== summary: krab's medians and ratios (rec/s: higher is better; CPU µs/record: lower is better) ==");
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "workload", "krab rec/s", "rdkafka", "java", "franz", "rskafka", "x rdk r/s", "x rdk cpu", "x java r/s"
    );
    for (title, r) in summary {
        let rate = |l: &str| r.median(l, "records_per_s");
        let cpu = |l: &str| r.median(l, "cpu_us_per_record");
        println!(
            "{:<32} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>9.2}x {:>9.2}x {:>9.2}x",
            title,
            rate("krab"),
            rate(RDKAFKA),
            rate(JAVA),
            rate("franz"),
            rate("rskafka"),
            rate("krab") / rate(RDKAFKA),
            cpu("krab") / cpu(RDKAFKA),
            rate("krab") / rate(JAVA),
        );
    }
    println!(
        "(medians of {runs} run(s); java's CPU includes its JVM's start-up and JIT; rskafka always sends acks=-1; \
         the machine is shared: compare ratios)"
    );
}
