//! `kafka/cli-roundtrip`: the `krab` CLI against the 3-node Apache Kafka, every step checked
//! against what the cluster then holds.
//!
//! - `krab topic create` (3 partitions, RF 3, two configs); `krab topic describe` (JSON and
//!   text) shows exactly that.
//! - `krab produce --file` 10,000 lines with keys (`-K '\t'`, values holding tabs and
//!   non-ASCII text) and two headers (`-H`); `krab consume -e` with a format string of
//!   partition, offset, key, value and headers prints every line back byte for byte, each once,
//!   offsets contiguous from 0 per partition and lines in file order within a partition.
//! - A group read of 4,000 records (`consume -G -c 4000`) commits exactly what it printed:
//!   `krab group lag` (JSON and text) shows per partition committed = records printed from it,
//!   end = the partition's end, and the total lag = 10,000 - 4,000; krab-admin agrees.

use super::admin_support::admin;
use super::cli_support::Krab;
use super::kafka_support::KafkaCtx;
use super::support::ms;
use anyhow::{Context, Result, ensure};
use std::collections::BTreeMap;
use std::time::Instant;

const TOPIC: &str = "cli-roundtrip";
const GROUP: &str = "cli-roundtrip-group";
const RECORDS: usize = 10_000;
const GROUP_READ: usize = 4_000;
const HEADERS: &str = "source=krab-cli,run=roundtrip";

/// The input file's line `i`: key, a tab, then a value (some with tabs of their own).
fn line(i: usize) -> String {
    let extra = if i.is_multiple_of(10) { "\twith a tab" } else { "" };
    format!("user-{}\tvalue {i} ünïcödé {}{extra}", i % 97, i * 7)
}

/// The sequence number a value carries.
fn seq_of(value: &str) -> Result<usize> {
    value.split(' ').nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("no sequence in {value:?}"))
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    let bootstrap = ctx.kafka.bootstrap();
    let krab = Krab::build(&bootstrap).await?;

    // Topic create and describe.
    let d = krab
        .create_topic(TOPIC, 3, 3, &["retention.ms=7200000", "max.message.bytes=300000"])
        .await
        .context("topic create")?;
    ensure!(d["partition_count"] == 3 && d["replication_factor"] == 3, "described as {d}");
    ensure!(d["configs"]["retention.ms"] == "7200000", "retention.ms described as {}", d["configs"]["retention.ms"]);
    ensure!(d["configs"]["max.message.bytes"] == "300000", "max.message.bytes: {}", d["configs"]["max.message.bytes"]);
    let text = krab.ok(&["topic", "describe", TOPIC], None).await?.stdout;
    for want in
        ["3 partitions, replication factor 3", "retention.ms=7200000 (topic)", "max.message.bytes=300000 (topic)"]
    {
        ensure!(text.contains(want), "`topic describe` does not say {want:?}:\n{text}");
    }

    // Produce a file, consume it back.
    let input: Vec<String> = (0..RECORDS).map(line).collect();
    let path = std::env::temp_dir().join(format!("krab-it-cli-roundtrip-{}.txt", std::process::id()));
    std::fs::write(&path, input.join("\n") + "\n").context("writing the input file")?;
    let file = path.to_string_lossy().to_string();
    let t = Instant::now();
    let produced = krab
        .ok(
            &["produce", "-t", TOPIC, "--file", &file, "-K", "\\t", "-H", "source=krab-cli", "-H", "run=roundtrip"],
            None,
        )
        .await;
    let _ = std::fs::remove_file(&path);
    let produced = produced?;
    let produce_took = t.elapsed();
    ensure!(
        produced.stderr.contains(&format!("{RECORDS} delivered")) && produced.stderr.contains(" 0 failed"),
        "produce reported: {}",
        produced.stderr.trim()
    );
    let t = Instant::now();
    let consumed = krab.ok(&["consume", "-t", TOPIC, "-e", "-f", "%p\\t%o\\t%k\\t%s\\t%h\\n"], None).await?;
    let consume_took = t.elapsed();
    let mut back: Vec<String> = Vec::new();
    let mut by_partition: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for l in consumed.stdout.lines() {
        let mut f = l.splitn(4, '\t');
        let (p, o, key, rest) = (f.next(), f.next(), f.next(), f.next());
        let (Some(p), Some(o), Some(key), Some(rest)) = (p, o, key, rest) else { anyhow::bail!("output line {l:?}") };
        let (value, headers) = rest.rsplit_once('\t').with_context(|| format!("no headers in {l:?}"))?;
        ensure!(headers == HEADERS, "headers {headers:?} in {l:?}");
        by_partition.entry(p.parse()?).or_default().push((o.parse()?, seq_of(value)?));
        back.push(format!("{key}\t{value}"));
    }
    ensure!(back.len() == RECORDS, "consume -e printed {} records of {RECORDS}", back.len());
    let (mut want, mut got) = (input.clone(), back.clone());
    want.sort();
    got.sort();
    if want != got {
        let first = want.iter().zip(&got).position(|(a, b)| a != b).unwrap_or(0);
        anyhow::bail!("the records read differ from the file's lines: first {:?} vs {:?}", want[first], got[first]);
    }
    let mut ends = BTreeMap::new();
    for (p, seen) in &by_partition {
        for (i, (o, _)) in seen.iter().enumerate() {
            ensure!(*o == i as i64, "partition {p}: record #{i} at offset {o}");
        }
        ensure!(seen.windows(2).all(|w| w[0].1 < w[1].1), "partition {p}: lines out of file order");
        ends.insert(*p, seen.len() as i64);
    }

    // A partial group read, then its lag.
    let read = krab
        .ok(
            &["consume", "-t", TOPIC, "-G", GROUP, "-o", "beginning", "-c", &GROUP_READ.to_string(), "-f", "%p %o\\n"],
            None,
        )
        .await?;
    let mut read_from: BTreeMap<i32, i64> = BTreeMap::new();
    for l in read.stdout.lines() {
        let (p, o) = l.split_once(' ').with_context(|| format!("group read line {l:?}"))?;
        let (p, o): (i32, i64) = (p.parse()?, o.parse()?);
        let n = read_from.entry(p).or_default();
        ensure!(o == *n, "group read: partition {p} offset {o} after {n} records");
        *n += 1;
    }
    ensure!(
        read.stdout.lines().count() == GROUP_READ,
        "the group read printed {} records",
        read.stdout.lines().count()
    );
    let lag: serde_json::Value =
        serde_json::from_str(krab.ok(&["group", "lag", "-G", GROUP, "--json"], None).await?.stdout.trim())?;
    let rows = lag["partitions"].as_array().context("lag partitions")?;
    ensure!(rows.len() >= 2, "lag over {} partitions: {lag}", rows.len());
    let mut total = 0;
    for r in rows {
        let p = r["partition"].as_i64().context("partition")? as i32;
        let (committed, end, l) = (r["committed"].as_i64(), r["end"].as_i64(), r["lag"].as_i64());
        let read = read_from.get(&p).copied().unwrap_or(0);
        ensure!(committed == Some(read), "partition {p}: committed {committed:?}, {read} records printed");
        ensure!(end == ends.get(&p).copied(), "partition {p}: end {end:?}, {:?} records in it", ends.get(&p));
        ensure!(l == Some(ends[&p] - read), "partition {p}: lag {l:?}");
        total += ends[&p] - read;
    }
    // A partition missing from the lag has no commit: it must not have been read.
    for (p, n) in &read_from {
        ensure!(rows.iter().any(|r| r["partition"] == *p), "partition {p}: {n} records read, no committed offset");
    }
    ensure!(lag["total"].as_i64() == Some(total), "total lag {} vs {total}", lag["total"]);
    let uncommitted: i64 =
        ends.iter().filter(|(p, _)| !rows.iter().any(|r| r["partition"] == **p)).map(|(_, n)| n).sum();
    ensure!(
        total + uncommitted == (RECORDS - GROUP_READ) as i64,
        "lag {total} (+{uncommitted} never committed) for {} unread records",
        RECORDS - GROUP_READ
    );
    let text = krab.ok(&["group", "lag", "-G", GROUP], None).await?.stdout;
    ensure!(text.contains(&format!("total lag {total} over {} partitions", rows.len())), "group lag printed:\n{text}");
    let admin = admin(&bootstrap).await?;
    let from_admin: i64 = admin.group_lag(GROUP).await?.values().map(|r| r.as_ref().map_or(0, |l| l.lag)).sum();
    ensure!(from_admin == total, "krab-admin says lag {from_admin}, the CLI {total}");

    Ok(format!(
        "topic {TOPIC} created and described (3 partitions, RF 3, 2 configs); {RECORDS} lines with keys and 2 headers \
         produced in {} and consumed back identically in {} ({} per partition); group read {GROUP_READ}, lag {total} \
         over {} partitions",
        ms(produce_took),
        ms(consume_took),
        ends.values().map(i64::to_string).collect::<Vec<_>>().join("/"),
        rows.len()
    ))
}
