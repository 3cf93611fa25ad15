//! `bench consume [--broker tansu|kafka]`: the consumers reading one pre-filled topic from the
//! beginning, one client per process, alternating order per run (like `bench produce`).
//!
//! The topic (6 partitions; RF 3 on Kafka) is filled once per broker by krab's producer, record
//! `i` to partition `i % 6`, and never written again; every process then reads all of it:
//!
//! - krab as a `Stream` and through `poll_batch`, librdkafka's BaseConsumer and StreamConsumer
//!   (`fetch.queue.backoff.ms=10`), rskafka (all `krab-bench consume`);
//! - franz-go (`tools/franz-bench consume`);
//! - Kafka's Java consumer through `org.apache.kafka.tools.ConsumerPerformance` (it joins a group
//!   and forces `check.crcs=false`; its rate is the `fetch.nMsg.sec` column, which leaves the
//!   group join out; CPU and peak RSS are the JVM's, read from `/proc`).
//!
//! Workloads: 1M x 100 B, or 100k x 1 KiB, uncompressed or lz4 (`--size`, `--compression`;
//! default 100 B, none). Every other client checks CRCs. Peak RSS of krab is checked against its
//! buffer budget plus one Fetch response per broker.
//!
//! `--group` (Kafka only): consumer groups instead. Each process runs one group of its client
//! (krab `krab-bench consume-group`, librdkafka the same, Java `KrabJavaClient group-consume`),
//! classic protocol, `range`, auto-commit for all three: one member subscribes and reads the
//! topic (records/s and CPU per record over that backlog); then records are written at 20,000/s
//! and a second member joins: the rebalance time runs from its start until it has yielded
//! records of every partition it was assigned.

use super::{BOOTSTRAP, Broker, Case, Lease, Output, Results, Sample, median, thousands};
use crate::brokers::kafka::{KafkaCluster, KafkaDist, KafkaOptions};
use crate::brokers::tansu::{Options, Tansu};
use crate::brokers::{Venv, free_port};
use anyhow::{Context, Result, bail, ensure};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The clients, in run order.
pub(super) const CLIENTS: &[&str] =
    &["krab-stream", "krab-batch", "rdkafka-base", "rdkafka-stream", "rskafka", "franz", "java"];
const REFERENCE: &str = "rdkafka-base";
const STREAM: &str = "krab-stream";
const BATCH: &str = "krab-batch";
const PARTITIONS: i32 = 6;
/// The Kafka release whose request versions franz-go may use against tansu.
const TANSU_FRANZ_VERSIONS: &str = "3.6.0";
/// Issue #10's targets: krab at least this many times rdkafka's BaseConsumer's records/s ...
const TARGET_RATE: f64 = 1.5;
/// ... at no more than this many CPU µs per record (100 B on tansu) ...
const TARGET_CPU_US: f64 = 0.3;
/// ... and the Stream at least this share of poll_batch's records/s.
const TARGET_STREAM: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerKind {
    Tansu,
    Kafka,
}

struct Settings {
    broker: BrokerKind,
    runs: usize,
    size: usize,
    compression: String,
    scale: f64,
    clients: Vec<String>,
    max_poll: usize,
    group: bool,
}

/// The `--group` clients, in run order.
const GROUP_CLIENTS: &[&str] = &["krab-group", "rdkafka-group", "java-group"];

impl Settings {
    fn parse(args: &[String]) -> Result<Self> {
        let mut s = Settings {
            broker: BrokerKind::Tansu,
            runs: 3,
            size: 100,
            compression: "none".into(),
            scale: 1.0,
            clients: Vec::new(),
            max_poll: 500,
            group: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--broker" => {
                    s.broker = match value()?.as_str() {
                        "tansu" => BrokerKind::Tansu,
                        "kafka" => BrokerKind::Kafka,
                        other => bail!("--broker tansu|kafka, not {other}"),
                    }
                }
                "--runs" => s.runs = value()?.parse().context("--runs")?,
                "--size" => {
                    s.size = match value()?.as_str() {
                        "100" => 100,
                        "1024" => 1024,
                        other => bail!("--size 100|1024, not {other}"),
                    }
                }
                "--compression" => {
                    s.compression = match value()?.as_str() {
                        c @ ("none" | "lz4") => c.to_owned(),
                        other => bail!("--compression none|lz4, not {other}"),
                    }
                }
                "--scale" => s.scale = value()?.parse().context("--scale")?,
                "--clients" => s.clients = value()?.split(',').map(str::to_owned).collect(),
                "--max-poll" => s.max_poll = value()?.parse().context("--max-poll")?,
                "--group" => s.group = true,
                other => bail!("unknown option `{other}`\n{}", super::USAGE),
            }
        }
        if s.group {
            ensure!(s.broker == BrokerKind::Kafka, "--group needs --broker kafka");
            if s.clients.is_empty() {
                s.clients = GROUP_CLIENTS.iter().map(|c| c.to_string()).collect();
            }
            for c in &s.clients {
                ensure!(GROUP_CLIENTS.contains(&c.as_str()), "unknown group client `{c}` (known: {GROUP_CLIENTS:?})");
            }
            ensure!(s.runs > 0 && s.scale > 0.0, "--runs and --scale must be positive");
            return Ok(s);
        }
        if s.clients.is_empty() {
            // tansu 0.6 closes the connection on the Java 4.4 client's ApiVersions request (it
            // answers no UNSUPPORTED_VERSION to fall back on): Java runs on Kafka only.
            let java = s.broker == BrokerKind::Kafka;
            s.clients = CLIENTS.iter().filter(|c| java || **c != "java").map(|c| c.to_string()).collect();
        }
        ensure!(s.runs > 0 && s.scale > 0.0 && s.max_poll > 0, "--runs, --scale and --max-poll must be positive");
        for c in &s.clients {
            ensure!(CLIENTS.contains(&c.as_str()), "unknown client `{c}` (known: {CLIENTS:?})");
        }
        Ok(s)
    }

    fn records(&self) -> u64 {
        let base = if self.size == 100 { 1_000_000.0 } else { 100_000.0 };
        ((base * self.scale) as u64).max(1000)
    }
}

/// The broker the whole bench reads from, kept alive until the end.
enum Running {
    Tansu(Tansu),
    Kafka(KafkaCluster),
}

/// `bench consume`.
pub(super) fn consume(args: &[String]) -> Result<()> {
    let s = Settings::parse(args)?;
    let records = s.records();
    let exe = super::build()?;
    let franz = if s.clients.iter().any(|c| c == "franz") { Some(super::kafka::build_franz()?) } else { None };
    let java = s.clients.iter().any(|c| c == "java");
    let topic = "krab-bench-consume";
    let running = match s.broker {
        BrokerKind::Tansu => {
            let venv = Venv::ensure()?;
            let tansu = Tansu::start(&venv, Options::new(free_port()?))?;
            tansu.create_topic(topic, PARTITIONS as u32)?;
            Running::Tansu(tansu)
        }
        BrokerKind::Kafka => {
            eprintln!("starting Apache Kafka (3 nodes)...");
            let cluster = KafkaCluster::start(&KafkaOptions::new(3))?;
            cluster.create_topic(topic, PARTITIONS, 3, &[])?;
            Running::Kafka(cluster)
        }
    };
    let (bootstrap, broker_label, pids) = match &running {
        Running::Tansu(t) => {
            (t.bootstrap(), "tansu".to_string(), super::pid_listening_on(&t.bootstrap()).into_iter().collect())
        }
        Running::Kafka(k) => (k.direct_bootstrap(), "kafka x3".to_string(), k.pids()),
    };
    let dist = match (&running, java) {
        (Running::Kafka(k), _) => Some(k.dist().clone()),
        (Running::Tansu(_), true) => Some(KafkaDist::ensure().context("the java client needs Kafka's jars")?),
        (Running::Tansu(_), false) => None,
    };
    fill(&exe, &bootstrap, topic, records, &s)?;
    println!(
        "bench consume: {} x {} B, {}, {broker_label} at {bootstrap}; topic {topic} of {PARTITIONS} partitions \
         filled once by krab's producer; {} run(s) per client, alternating; each process reads all {} records \
         from the beginning (clock and CPU from client creation)",
        thousands(records),
        s.size,
        s.compression,
        s.runs,
        thousands(records),
    );
    let java_client = match (&dist, s.group && s.clients.iter().any(|c| c == "java-group")) {
        (Some(d), true) => Some(crate::it::java_client::JavaClient::ensure(d)?),
        _ => None,
    };
    let cases: Vec<Case> = s
        .clients
        .iter()
        .map(|c| match java_client.as_ref().filter(|_| c == "java-group") {
            Some(j) => java_group_case(j, topic, records),
            None if s.group => group_case(c, topic, records),
            None => case(c, &s, records, topic, franz.as_deref(), dist.as_ref()),
        })
        .collect();
    let mut lease = || -> Result<Lease> {
        Ok(Lease {
            bootstrap: bootstrap.clone(),
            broker: Broker { label: broker_label.clone(), pids: pids.clone() },
            _guard: None,
        })
    };
    let results = super::run_cases(&exe, &cases, s.runs, Duration::from_secs(600), &mut lease, &super::produce_line)?;
    drop(running);
    if s.group {
        print_group_table(&results, &s, records);
    } else {
        print_table(&results, &s, records);
    }
    Ok(())
}

/// A `--group` case of krab-bench.
fn group_case(client: &str, topic: &str, records: u64) -> Case {
    let mut args: Vec<String> = vec!["consume-group".into(), "--client".into(), client.into()];
    args.extend(["--bootstrap".into(), BOOTSTRAP.into(), "--topic".into(), topic.into()]);
    args.extend(["--records".into(), records.to_string(), "--partitions".into(), PARTITIONS.to_string()]);
    Case::bench(client, args)
}

/// The Java `--group` case: `KrabJavaClient group-consume` in its own JVM.
fn java_group_case(java: &crate::it::java_client::JavaClient, topic: &str, records: u64) -> Case {
    let log = crate::project_root().join("xtask").join("kafka").join("tools-log4j2.yaml");
    let mut args: Vec<String> = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC"].map(str::to_owned).to_vec();
    args.push(format!("-Dlog4j2.configurationFile={}", log.display()));
    args.extend(["-cp".into(), java.classpath().to_string(), "KrabJavaClient".into(), "group-consume".into()]);
    args.extend([BOOTSTRAP.into(), topic.into(), PARTITIONS.to_string(), records.to_string(), "300".into()]);
    Case { label: "java-group".into(), args, exe: Some("java".into()), output: Output::JsonLine }
}

fn print_group_table(results: &Results, s: &Settings, records: u64) {
    const REF: &str = "rdkafka-group";
    println!(
        "\n== consume --group {} x {} B, {}: medians of {} run(s); then a second member joins ==",
        thousands(records),
        s.size,
        s.compression,
        s.runs
    );
    println!(
        "{:<14} {:>11} {:>22} {:>11} {:>13} {:>8} {:>10} {:>10} {:>12}",
        "client",
        "rec/s",
        "rec/s (min..max)",
        "CPU µs/rec",
        "rebalance ms",
        "moved",
        "x rdk r/s",
        "x rdk cpu",
        "x rdk rebal"
    );
    for (label, samples) in &results.cases {
        let m = |key: &str| results.median(label, key);
        let rps: Vec<f64> = samples.iter().map(|s| s.num("records_per_s")).collect();
        let lo = rps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{:<14} {:>11.0} {:>22} {:>11.3} {:>13.1} {:>8.0} {:>9.2}x {:>9.2}x {:>11.2}x",
            label,
            m("records_per_s"),
            format!("{lo:.0}..{hi:.0}"),
            m("cpu_us_per_record"),
            m("rebalance_ms"),
            m("moved"),
            m("records_per_s") / results.median(REF, "records_per_s"),
            m("cpu_us_per_record") / results.median(REF, "cpu_us_per_record"),
            m("rebalance_ms") / results.median(REF, "rebalance_ms"),
        );
    }
    println!(
        "(rec/s and CPU: one member reading the backlog; rebalance: from the second member's start, while records \
         are written, until it has yielded records of each of the `moved` partitions it was assigned)"
    );
}

/// Fills the topic with `records` records of `size` bytes by krab's producer (one process, acks=1).
fn fill(exe: &Path, bootstrap: &str, topic: &str, records: u64, s: &Settings) -> Result<()> {
    eprintln!("filling {topic} with {records} records of {} B ({})", s.size, s.compression);
    let out = Command::new(exe)
        .args(["produce", "--client", "krab", "--bootstrap", bootstrap, "--topic", topic])
        .args(["--records", &records.to_string(), "--size", &s.size.to_string()])
        .args(["--compression", &s.compression, "--partitions", &PARTITIONS.to_string()])
        .args(["--warmup-records", "0"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("krab-bench produce (fill)")?;
    ensure!(out.status.success(), "filling {topic} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// The case of one client.
fn case(client: &str, s: &Settings, records: u64, topic: &str, franz: Option<&Path>, dist: Option<&KafkaDist>) -> Case {
    match client {
        "franz" => {
            let mut args: Vec<String> = vec!["consume".into(), "-bootstrap".into(), BOOTSTRAP.into()];
            args.extend(["-topic".into(), topic.into(), "-records".into(), records.to_string()]);
            args.extend(["-partitions".into(), PARTITIONS.to_string()]);
            if s.broker == BrokerKind::Tansu {
                // tansu closes the connection on an ApiVersions version it does not know, where
                // Kafka answers UNSUPPORTED_VERSION (franz-go then retries lower).
                args.extend(["-max-version".into(), TANSU_FRANZ_VERSIONS.into()]);
            }
            Case { label: client.into(), args, exe: franz.map(Path::to_path_buf), output: Output::JsonLine }
        }
        "java" => {
            let log = crate::project_root().join("xtask").join("kafka").join("tools-log4j2.yaml");
            let mut args: Vec<String> = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC"].map(str::to_owned).to_vec();
            args.push(format!("-Dlog4j2.configurationFile={}", log.display()));
            args.extend(["-cp".into(), dist.map(KafkaDist::classpath).unwrap_or_default()]);
            args.push("org.apache.kafka.tools.ConsumerPerformance".into());
            args.extend(["--bootstrap-server".into(), BOOTSTRAP.into(), "--topic".into(), topic.into()]);
            args.extend(["--num-records".into(), records.to_string(), "--timeout".into(), "60000".into()]);
            // tansu holds a JoinGroup for half the session timeout: keep that short.
            args.extend(["--command-property".into(), "session.timeout.ms=6000".into()]);
            args.push("client.id=java-bench".into());
            Case {
                label: client.into(),
                args,
                exe: Some("java".into()),
                output: Output::ConsumerPerformance { records, size: s.size },
            }
        }
        other => {
            let mut args: Vec<String> = vec!["consume".into(), "--client".into(), other.into()];
            args.extend(["--bootstrap".into(), BOOTSTRAP.into(), "--topic".into(), topic.into()]);
            args.extend(["--records".into(), records.to_string(), "--partitions".into(), PARTITIONS.to_string()]);
            args.extend(["--size".into(), s.size.to_string()]);
            if other == BATCH {
                args.extend(["--max-poll".into(), s.max_poll.to_string()]);
            }
            Case::bench(other, args)
        }
    }
}

/// `ConsumerPerformance`'s CSV line: (records consumed, fetch.nMsg.sec, fetch.MB.sec as MiB/s).
/// The header is `start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg,
/// nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec`.
pub(super) fn parse_consumer_performance(stdout: &str) -> Result<(u64, f64)> {
    if let Some(warning) = stdout.lines().find(|l| l.starts_with("WARNING: Exiting before")) {
        bail!("ConsumerPerformance: {warning}");
    }
    let mut lines = stdout.lines().skip_while(|l| !l.trim_start().starts_with("start.time"));
    let header = lines.next().context(format!("no ConsumerPerformance header in its output: {stdout}"))?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let line = lines.find(|l| !l.trim().is_empty()).context("no ConsumerPerformance result line")?;
    let values: Vec<&str> = line.split(',').map(str::trim).collect();
    ensure!(values.len() == names.len(), "ConsumerPerformance line `{line}` does not match its header `{header}`");
    let field = |name: &str| -> Result<&str> {
        let i = names.iter().position(|n| *n == name).with_context(|| format!("no {name} column in `{header}`"))?;
        Ok(values[i])
    };
    let n: u64 = field("data.consumed.in.nMsg")?.parse().context("data.consumed.in.nMsg")?;
    let per_s: f64 = field("fetch.nMsg.sec")?.parse().context("fetch.nMsg.sec")?;
    Ok((n, per_s))
}

/// The JSON report of a ConsumerPerformance run.
pub(super) fn java_sample(
    stdout: &str,
    records: u64,
    size: usize,
    cpu_s: f64,
    peak_kb: u64,
) -> Result<serde_json::Value> {
    let (n, per_s) = parse_consumer_performance(stdout)?;
    ensure!(n >= records, "ConsumerPerformance consumed {n} records, {records} expected");
    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    Ok(serde_json::json!({
        "records_per_s": per_s,
        "mb_per_s": round(per_s * size as f64 / 1e6, 2),
        "cpu_s": round(cpu_s, 2),
        "cpu_us_per_record": round(cpu_s * 1e6 / n as f64, 3),
        "peak_rss_mb": round(peak_kb as f64 / 1024.0, 1),
        "threads": f64::NAN,
        "note": "org.apache.kafka.tools.ConsumerPerformance in its own JVM (G1, C2), group join (a random group), \
                 check.crcs forced off by the tool; records/s is its fetch.nMsg.sec (the group join left out); \
                 CPU is the whole JVM's, start-up, JIT and group join included (sampled from /proc)",
    }))
}

fn print_table(results: &Results, s: &Settings, records: u64) {
    println!("\n== consume {} x {} B, {}: medians of {} run(s) ==", thousands(records), s.size, s.compression, s.runs);
    println!(
        "{:<15} {:>11} {:>22} {:>8} {:>11} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "client",
        "rec/s",
        "rec/s (min..max)",
        "MB/s",
        "CPU µs/rec",
        "RSS MB",
        "threads",
        "broker",
        "x rdk r/s",
        "x rdk cpu"
    );
    for (label, samples) in &results.cases {
        let m = |key: &str| results.median(label, key);
        let rps: Vec<f64> = samples.iter().map(|s| s.num("records_per_s")).collect();
        let lo = rps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{:<15} {:>11.0} {:>22} {:>8.1} {:>11.3} {:>8.1} {:>8} {:>8.2} {:>8.2}x {:>8.2}x",
            label,
            m("records_per_s"),
            format!("{lo:.0}..{hi:.0}"),
            m("mb_per_s"),
            m("cpu_us_per_record"),
            m("peak_rss_mb"),
            m("threads"),
            median(samples.iter().map(|s: &Sample| s.broker_cores).collect()),
            m("records_per_s") / results.median(REFERENCE, "records_per_s"),
            m("cpu_us_per_record") / results.median(REFERENCE, "cpu_us_per_record"),
        );
    }
    let rate = |l: &str| results.median(l, "records_per_s");
    let cpu = |l: &str| results.median(l, "cpu_us_per_record");
    let verdict = |ok: bool, x: f64| {
        if !x.is_finite() {
            "-"
        } else if ok {
            "met"
        } else {
            "missed"
        }
    };
    let target = s.size == 100 && s.compression == "none" && s.broker == BrokerKind::Tansu;
    for label in [STREAM, BATCH] {
        let (rx, c) = (rate(label) / rate(REFERENCE), cpu(label));
        println!(
            "{label:<15} {rx:>6.2}x rdkafka-base rec/s at {c:.3} CPU µs/rec ({:.2}x){}",
            c / cpu(REFERENCE),
            if target {
                format!(
                    "  target >= {TARGET_RATE}x at <= {TARGET_CPU_US} µs: {}",
                    verdict(rx >= TARGET_RATE && c <= TARGET_CPU_US, rx * c)
                )
            } else {
                String::new()
            }
        );
    }
    let sx = rate(STREAM) / rate(BATCH);
    println!(
        "Stream/batch    {sx:>6.2}x rec/s, {:.2}x CPU µs/rec  target >= {TARGET_STREAM}x: {}",
        cpu(STREAM) / cpu(BATCH),
        verdict(sx >= TARGET_STREAM, sx)
    );
    for label in [STREAM, BATCH] {
        let Some((_, samples)) = results.cases.iter().find(|(l, _)| l == label) else { continue };
        let Some(first) = samples.first() else { continue };
        let (budget, response) = (first.num("budget_mb"), first.num("response_mb"));
        // Compressed: the response's wire bytes too, while it is decompressed.
        let wire = if s.compression == "none" { 0.0 } else { first.num("wire_mb") };
        let max = |key: &str| samples.iter().map(|s| s.num(key)).fold(f64::NEG_INFINITY, f64::max);
        let (start, peak, buffered) = (max("start_rss_mb"), max("peak_rss_mb"), max("peak_buffered_mb"));
        let bound = start + budget + response + wire;
        let wire_note = if wire > 0.0 { format!(" + its wire bytes {wire:.1}") } else { String::new() };
        println!(
            "{label:<15} peak RSS {peak:.1} MB (max of runs; buffered at most {buffered:.1} MiB as counted) vs \
             {bound:.1} = {start:.1} at start + budget {budget:.1} + one response per broker {response:.1}{wire_note}: {}",
            if peak <= bound { "within" } else { "OVER" }
        );
    }
    println!(
        "(krab's budget: queued.max.messages.kbytes 65536 and 2 x max.partition.fetch.bytes (1 MiB) per \
         partition, the smaller counts, as decoded bytes plus record structs; a response counts the same way; \
         every client but java checks CRCs)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_performance_csv_is_parsed_by_its_header() {
        let out = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, \
                   rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                   2026-12-03 07:40:01:123, 2026-12-03 07:40:06:456, 95.3674, 17.8826, 1000000, 187512.7, \
                   3012, 2321, 41.0889, 430848.8\n";
        assert_eq!(parse_consumer_performance(out).unwrap(), (1_000_000, 430848.8));
        assert!(parse_consumer_performance("nothing\n").is_err());
        let early = "WARNING: Exiting before consuming the expected number of records: timeout (60000 ms) exceeded.\n\
                     start.time, fetch.nMsg.sec\n1, 2\n";
        assert!(parse_consumer_performance(early).unwrap_err().to_string().contains("timeout"));
        assert!(parse_consumer_performance("start.time, fetch.nMsg.sec\n1, 2, 3\n").is_err());
    }
}
