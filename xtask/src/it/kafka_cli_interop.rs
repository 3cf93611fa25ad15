//! `kafka/cli-interop`: what the `krab` CLI writes, reference clients read identically, and what
//! a reference client writes, the CLI prints identically.
//!
//! - `krab produce` 3,000 keyed lines with two headers; confluent-kafka (librdkafka) reads every
//!   record with the key, value and headers of its line, and exactly what `krab consume -e
//!   --json` prints (partition, offset, timestamp and its type, key, value, headers). With
//!   Debian's `kcat` on the machine, kcat's `-f` output and `krab consume -f` with the same
//!   format string are identical line for line (the PASS line says when kcat is missing).
//! - confluent-kafka writes 600 records of every shape (null, empty and binary keys and values,
//!   null-valued, empty, repeated and non-ASCII headers, chosen timestamps); `krab consume -e
//!   --json` prints each field of each record as written, at its acknowledged offset.

use super::cli_support::Krab;
use super::consume_support::{ToWrite, parse_deliveries};
use super::consumer_interop_codecs::librdkafka_write;
use super::kafka_support::KafkaCtx;
use super::support::{Consumed, consume_all};
use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use serde_json::Value;

const FROM_KRAB: &str = "cli-interop-krab";
const FROM_LIBRDKAFKA: &str = "cli-interop-librdkafka";
const RECORDS: usize = 3_000;
const WRITTEN: i64 = 600;
const BASE_TS: i64 = 1_700_000_000_000;

fn bytes_of(v: &Value) -> Result<Option<Vec<u8>>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.as_bytes().to_vec())),
        Value::Object(o) => {
            let b64 = o.get("base64").and_then(Value::as_str).with_context(|| format!("bytes as {v}"))?;
            Ok(Some(base64::engine::general_purpose::STANDARD.decode(b64)?))
        }
        other => bail!("bytes as {other}"),
    }
}

/// `krab consume --json` output, record by record.
fn parse_json_lines(text: &str) -> Result<Vec<Consumed>> {
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).with_context(|| format!("JSON line {l:?}"))?;
            let int = |k: &str| v[k].as_i64().with_context(|| format!("{k} in {l}"));
            let headers = v["headers"]
                .as_array()
                .context("headers")?
                .iter()
                .map(|h| Ok((h["key"].as_str().context("header key")?.to_string(), bytes_of(&h["value"])?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(Consumed {
                partition: i32::try_from(int("partition")?)?,
                offset: int("offset")?,
                timestamp: int("timestamp")?,
                timestamp_type: match v["timestamp_type"].as_str() {
                    Some("create") => 1,
                    Some("log_append") => 2,
                    other => bail!("timestamp_type {other:?}"),
                },
                key: bytes_of(&v["key"])?,
                value: bytes_of(&v["value"])?,
                headers,
            })
        })
        .collect()
}

fn sorted(mut v: Vec<Consumed>) -> Vec<Consumed> {
    v.sort_by_key(|r| (r.partition, r.offset));
    v
}

fn first_difference(a: &[Consumed], b: &[Consumed]) -> String {
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    format!("{} vs {} records; first difference at #{i}: {:?} vs {:?}", a.len(), b.len(), a.get(i), b.get(i))
}

/// Records of every shape for confluent-kafka to write, record i on partition i % 3.
fn shapes() -> Vec<ToWrite> {
    (0..WRITTEN)
        .map(|i| {
            let key = match i % 5 {
                0 => None,
                1 => Some(format!("key-{i}").into_bytes()),
                2 => Some(Vec::new()),
                3 => Some(vec![0xff, 0x00, i as u8]),
                _ => Some(format!("ключ-{}", i % 7).into_bytes()),
            };
            let value = match i % 4 {
                0 => Some(format!("value {i}: librdkafka wrote this").into_bytes()),
                1 => None,
                2 => Some(Vec::new()),
                _ => Some(vec![i as u8, 0, 255, 7, 0x80]),
            };
            let headers: Vec<(String, Option<Vec<u8>>)> = match i % 3 {
                0 => Vec::new(),
                1 => vec![("trace".into(), Some(format!("t-{i}").into_bytes())), ("null-header".into(), None)],
                _ => vec![
                    ("empty".into(), Some(Vec::new())),
                    ("dup".into(), Some(b"first".to_vec())),
                    ("dup".into(), Some(vec![0xfe, 0x01])),
                    ("ünïcode".into(), None),
                ],
            };
            ToWrite { partition: (i % 3) as i32, timestamp: BASE_TS + (i * 37) % 1000, key, value, headers }
        })
        .collect()
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    let bootstrap = ctx.kafka.bootstrap();
    let krab = Krab::build(&bootstrap).await?;
    let mut notes = Vec::new();

    // krab writes; confluent-kafka, krab --json and kcat read.
    krab.create_topic(FROM_KRAB, 3, 3, &[]).await?;
    let lines: Vec<String> = (0..RECORDS).map(|i| format!("k{}:line {i}: written by krab produce", i % 50)).collect();
    let input = lines.join("\n") + "\n";
    let produced = krab
        .ok(&["produce", "-t", FROM_KRAB, "-K", ":", "-H", "origin=krab", "-H", "kind=interop"], Some(input.as_bytes()))
        .await?;
    ensure!(produced.stderr.contains(&format!("{RECORDS} delivered")), "produce: {}", produced.stderr.trim());
    let (rdk, _) = consume_all(ctx.venv, &bootstrap, FROM_KRAB, 3).await?;
    let rdk = sorted(rdk);
    ensure!(rdk.len() == RECORDS, "confluent-kafka read {} records of {RECORDS}", rdk.len());
    let headers = vec![("origin".to_string(), Some(b"krab".to_vec())), ("kind".to_string(), Some(b"interop".to_vec()))];
    let mut read_lines = Vec::new();
    for r in &rdk {
        ensure!(r.headers == headers, "{}@{}: headers {:?}", r.partition, r.offset, r.headers);
        ensure!(r.timestamp_type == 1, "{}@{}: timestamp type {}", r.partition, r.offset, r.timestamp_type);
        let key = String::from_utf8(r.key.clone().context("a record without key")?)?;
        let value = String::from_utf8(r.value.clone().context("a record without value")?)?;
        read_lines.push(format!("{key}:{value}"));
    }
    let mut want = lines.clone();
    want.sort();
    read_lines.sort();
    ensure!(want == read_lines, "confluent-kafka read other lines than krab produced");
    let as_json =
        sorted(parse_json_lines(&krab.ok(&["consume", "-t", FROM_KRAB, "-e", "--json"], None).await?.stdout)?);
    ensure!(as_json == rdk, "krab consume --json and confluent-kafka differ: {}", first_difference(&as_json, &rdk));
    notes.push(format!("{RECORDS} records from krab produce read identically by confluent-kafka and krab --json"));

    let kcat = which("kcat");
    match kcat {
        Some(kcat) => {
            let format = "%p\\t%o\\t%T\\t%k\\t%s\\t%h\\t%K\\t%S\\n";
            let out = tokio::process::Command::new(&kcat)
                .args(["-b", &bootstrap, "-C", "-t", FROM_KRAB, "-e", "-q", "-f", format])
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .context("running kcat")?;
            ensure!(
                out.status.success(),
                "kcat failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            let theirs = String::from_utf8(out.stdout)?;
            let ours = krab.ok(&["consume", "-t", FROM_KRAB, "-e", "-f", format], None).await?.stdout;
            let (mut a, mut b): (Vec<&str>, Vec<&str>) = (theirs.lines().collect(), ours.lines().collect());
            a.sort_unstable();
            b.sort_unstable();
            ensure!(a.len() == RECORDS, "kcat printed {} records of {RECORDS}", a.len());
            if a != b {
                let i = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(0);
                bail!("kcat and krab consume print differently: {:?} vs {:?}", a.get(i), b.get(i));
            }
            notes.push(format!("kcat -f prints the same {} lines as krab consume -f", a.len()));
        }
        None => notes.push("kcat not installed: its check skipped".into()),
    }

    // confluent-kafka writes; krab --json reads.
    krab.create_topic(FROM_LIBRDKAFKA, 3, 3, &[]).await?;
    let sent = shapes();
    let input: String = sent.iter().map(|r| r.line() + "\n").collect::<String>() + ".\n";
    let reports = librdkafka_write(ctx.venv, &bootstrap, FROM_LIBRDKAFKA, "lz4", &[], &input).await?;
    let delivered = parse_deliveries(&reports, sent.len())?;
    let mut expected = Vec::new();
    for (r, d) in sent.iter().zip(delivered) {
        let (p, o) = d.map_err(|e| anyhow::anyhow!("confluent-kafka could not write a record: {e}"))?;
        ensure!(p == r.partition, "a record for partition {} acknowledged on {p}", r.partition);
        expected.push(r.expected(o));
    }
    let expected = sorted(expected);
    let printed =
        sorted(parse_json_lines(&krab.ok(&["consume", "-t", FROM_LIBRDKAFKA, "-e", "--json"], None).await?.stdout)?);
    ensure!(
        printed == expected,
        "krab consume --json vs what confluent-kafka wrote: {}",
        first_difference(&printed, &expected)
    );
    notes.push(format!("{WRITTEN} confluent-kafka records (null, empty, binary keys/values; 0-4 headers) printed exactly by krab consume --json"));
    Ok(notes.join("; "))
}

/// The program's path on `$PATH`, if it is there.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|p| p.is_file())
}
