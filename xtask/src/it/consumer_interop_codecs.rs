//! `consumer/interop-codecs`: records written by librdkafka (confluent-kafka,
//! `scripts/produce_interop.py`) and by Kafka's Java client (`produce`), with every codec (none,
//! gzip, snappy, lz4, zstd), null and empty keys and values, headers (null-valued, empty,
//! repeated, non-ASCII names) and CreateTime timestamps out of order within a batch, read back by
//! krab's consumer: every field of every record equal to what was written, at the offset the
//! writer was acknowledged, each exactly once. On the 3-node Apache Kafka (both writers) and on
//! tansu (librdkafka; tansu starts in a few milliseconds).
//!
//! Legacy message sets: Kafka 4.x accepts Produce v3+ only (KIP-896), i.e. record batch v2.
//! librdkafka is made to write MessageSet v0 (magic 0: `api.version.request=false`,
//! `broker.version.fallback=0.9.0`, so Produce v1; a fallback of 0.10.0, which would give magic
//! 1, makes librdkafka 2.16 send ApiVersions anyway and write v2) to Apache Kafka (the proxies'
//! recording shows the Produce version and magic it sent), to tansu, and to librdkafka's own mock
//! cluster (in the writer's process, serving until krab has read). Whatever a broker accepts is
//! read back exactly (magic 0 has no timestamp and no headers: krab must give timestamp -1 and
//! none), and the PASS line says which broker took or refused what, per codec for the mock.
//! No reference writer here produces magic 1, so behind the uncompressed v0 records the test
//! puts a MessageSet v1 it builds itself (CRC-32, CreateTime timestamps) into the mock with
//! Produce v2, and krab reads both back in one pass.

use super::consume_support::{ToWrite, consumed, decode_request, parse_deliveries, read_to_ends};
use super::kafka_support::{KafkaCtx, kctl};
use super::support::Consumed;
use crate::brokers::tansu::{Options, Tansu};
use anyhow::{Context, Result, bail, ensure};
use krab_consumer::{Consumer, ConsumerConfig};
use krab_protocol::messages::ProduceRequest;
use std::collections::BTreeMap;
use std::time::Duration;

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const PARTITIONS: i32 = 3;
const RECORDS: i64 = 150;
const BASE_TS: i64 = 1_700_000_000_000;

/// The records every writer writes (`tag` makes each topic's values distinct): every shape that
/// matters to a reader, record i on partition i % 3.
fn records(tag: &str, count: i64) -> Vec<ToWrite> {
    let filler = format!("{tag} compressible payload ").repeat(12);
    (0..count)
        .map(|i| {
            let key = match i % 5 {
                0 => None,
                1 => Some(format!("key-{i}").into_bytes()),
                2 => Some(Vec::new()),
                _ => Some(format!("k{}", i % 7).into_bytes()),
            };
            let value = match i % 4 {
                0 => Some(format!("{i}: {filler}").into_bytes()),
                1 => None,
                2 => Some(Vec::new()),
                _ => Some(vec![i as u8, 0, 255, 7]),
            };
            let headers: Vec<(String, Option<Vec<u8>>)> = match i % 3 {
                0 => Vec::new(),
                1 => vec![("trace".into(), Some(format!("{tag}-{i}").into_bytes())), ("null-header".into(), None)],
                _ => vec![
                    ("empty".into(), Some(Vec::new())),
                    ("dup".into(), Some(b"first".to_vec())),
                    ("dup".into(), Some(b"second".to_vec())),
                    ("ünïcode".into(), None),
                ],
            };
            ToWrite { partition: (i % 3) as i32, timestamp: BASE_TS + (i * 37) % 1000, key, value, headers }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Writer {
    Librdkafka,
    Java,
}

impl Writer {
    fn name(self) -> &'static str {
        match self {
            Writer::Librdkafka => "librdkafka",
            Writer::Java => "java",
        }
    }
}

/// Runs `scripts/produce_interop.py` with `flags`; its delivery lines.
pub(super) async fn librdkafka_write(
    venv: &crate::brokers::Venv,
    bootstrap: &str,
    topic: &str,
    codec: &str,
    flags: &[&str],
    input: &str,
) -> Result<String> {
    use tokio::io::AsyncWriteExt;
    let script = crate::project_root().join("xtask").join("scripts").join("produce_interop.py");
    let mut child = tokio::process::Command::new(venv.python())
        .arg(&script)
        .args([bootstrap, topic, codec])
        .args(flags)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", script.display()))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!("produce_interop.py {topic} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// What a reader must see for `sent` acknowledged at `delivered`. `magic0`: the records went out
/// as MessageSet v0, which has no timestamps (-1 is read).
fn expectations(topic: &str, sent: &[ToWrite], delivered: &[(i32, i64)], magic0: bool) -> Result<Vec<Consumed>> {
    ensure!(sent.len() == delivered.len(), "{topic}: {} records, {} acknowledged", sent.len(), delivered.len());
    let mut out = Vec::new();
    for (r, &(p, o)) in sent.iter().zip(delivered) {
        ensure!(p == r.partition, "{topic}: a record for partition {} acknowledged on {p}", r.partition);
        let mut expected = r.expected(o);
        if magic0 {
            expected.timestamp = -1;
        }
        out.push(expected);
    }
    Ok(out)
}

/// Reads `topic` with krab's consumer up to the last offset expected and compares every record;
/// returns how many were identical.
async fn read_back(bootstrap: &str, topic: &str, expected: Vec<Consumed>) -> Result<usize> {
    let mut want: BTreeMap<(i32, i64), Consumed> = BTreeMap::new();
    let mut ends: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    for e in expected {
        let (p, o) = (e.partition, e.offset);
        ensure!(want.insert((p, o), e).is_none(), "{topic}: offset {p}@{o} acknowledged twice");
        let end = ends.entry(p).or_default();
        *end = (*end).max(o + 1);
    }
    let config = ConsumerConfig::new(bootstrap)?.client_id("krab-it-interop").request_timeout(Duration::from_secs(10));
    let mut consumer = Consumer::connect(config).await?;
    let read = read_to_ends(&mut consumer, topic, &ends, Duration::from_secs(60)).await?;
    let mut problems = Vec::new();
    let mut identical = 0;
    for r in &read {
        let got = consumed(r);
        match want.remove(&(got.partition, got.offset)) {
            Some(w) if w == got => identical += 1,
            Some(w) => problems.push(format!("{}@{}: wrote {w:?}, read {got:?}", got.partition, got.offset)),
            None => {
                problems.push(format!("{}@{}: read {got:?}, never written (or read twice)", got.partition, got.offset))
            }
        }
    }
    if !want.is_empty() {
        problems.push(format!("{} written records never read, first {:?}", want.len(), want.keys().next()));
    }
    if !problems.is_empty() {
        bail!(
            "{topic}: {} problems: {}",
            problems.len(),
            problems.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        );
    }
    Ok(identical)
}

/// Writes every codec with `writer` to `bootstrap` and reads each topic back; the records
/// compared.
async fn every_codec(
    ctx: &KafkaCtx<'_>,
    bootstrap: &str,
    broker: &str,
    writer: Writer,
    create: &(dyn Fn(String) -> Result<()> + Sync),
) -> Result<usize> {
    let mut total = 0;
    for codec in CODECS {
        let topic = format!("krab-it-interop-{broker}-{}-{codec}", writer.name());
        create(topic.clone())?;
        let sent = records(&format!("{}-{codec}", writer.name()), RECORDS);
        let input: String = sent.iter().map(|r| r.line() + "\n").collect();
        let text = match writer {
            Writer::Librdkafka => librdkafka_write(ctx.venv, bootstrap, &topic, codec, &[], &input).await?,
            Writer::Java => ctx.java.produce(bootstrap, &topic, codec, &input).await?,
        };
        let delivered: Vec<(i32, i64)> = parse_deliveries(&text, sent.len())?
            .into_iter()
            .enumerate()
            .map(|(i, d)| d.map_err(|e| anyhow::anyhow!("{topic}: record {i} not delivered: {e}")))
            .collect::<Result<_>>()?;
        let n = read_back(bootstrap, &topic, expectations(&topic, &sent, &delivered, false)?).await?;
        println!("  {broker}, {} {codec}: {n} of {} records identical", writer.name(), sent.len());
        total += n;
    }
    Ok(total)
}

/// Records for MessageSet v0 (which has no headers).
fn legacy_records(tag: &str) -> Vec<ToWrite> {
    let mut r = records(tag, 12);
    r.iter_mut().for_each(|r| r.headers.clear());
    r
}

/// Counts delivery errors by name.
fn error_names(deliveries: &[Result<(i32, i64), String>]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in deliveries.iter().filter_map(|d| d.as_ref().err()) {
        *m.entry(e.split(':').next().unwrap_or(e).to_string()).or_default() += 1;
    }
    m
}

/// What a broker made of librdkafka's MessageSet v0 records; whatever it accepted is read back.
async fn legacy(ctx: &KafkaCtx<'_>, bootstrap: &str, broker: &str, topic: &str) -> Result<String> {
    let sent = legacy_records("legacy");
    let input: String = sent.iter().map(|r| r.line() + "\n").collect();
    let text = librdkafka_write(ctx.venv, bootstrap, topic, "gzip", &["legacy"], &input).await?;
    let deliveries = parse_deliveries(&text, sent.len())?;
    let delivered: Vec<(i32, i64)> = deliveries.iter().filter_map(|d| d.as_ref().ok().copied()).collect();
    if delivered.is_empty() {
        return Ok(format!("{broker} refused all {} ({:?})", sent.len(), error_names(&deliveries)));
    }
    ensure!(
        delivered.len() == sent.len(),
        "{broker}: {} of {} legacy records delivered, the others failed: {:?}",
        delivered.len(),
        sent.len(),
        error_names(&deliveries)
    );
    let n = read_back(bootstrap, topic, expectations(topic, &sent, &delivered, true)?).await?;
    Ok(format!("{broker} accepted all {} and krab read {n} back identically", sent.len()))
}

/// MessageSet v0 with `codec` into librdkafka's in-process mock cluster, read back by krab while
/// the writer's process serves it. Returns the records read identically (0: the mock refused).
async fn legacy_mock(ctx: &KafkaCtx<'_>, codec: &str) -> Result<(usize, String)> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let topic = format!("krab-it-interop-legacy-{codec}");
    let sent = legacy_records(&format!("legacy-{codec}"));
    let input: String = sent.iter().map(|r| r.line() + "\n").collect::<String>() + ".\n";
    let script = crate::project_root().join("xtask").join("scripts").join("produce_interop.py");
    let mut child = tokio::process::Command::new(ctx.venv.python())
        .arg(&script)
        .args(["127.0.0.1:1", &topic, codec, "legacy", "mock"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", script.display()))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(input.as_bytes()).await?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut text = String::new();
    let serving = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the mock writer printed nothing for 60 s")??
            .context("the mock writer ended before serving")?;
        if let Some(at) =
            serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| v["serving"].as_str().map(str::to_owned))
        {
            break at;
        }
        text.push_str(&line);
        text.push('\n');
    };
    let deliveries = parse_deliveries(&text, sent.len())?;
    let delivered: Vec<(i32, i64)> = deliveries.iter().filter_map(|d| d.as_ref().ok().copied()).collect();
    let outcome = if delivered.is_empty() {
        (0, format!("{codec} refused ({:?})", error_names(&deliveries)))
    } else {
        ensure!(
            delivered.len() == sent.len(),
            "mock, {codec}: {} of {} legacy records delivered: {:?}",
            delivered.len(),
            sent.len(),
            error_names(&deliveries)
        );
        let mut want = expectations(&topic, &sent, &delivered, true)?;
        let mut what = format!("{codec} {}", sent.len());
        if codec == "none" {
            // Then MessageSet v1 behind them, built here (no reference writer here writes it).
            let v1 = legacy_records("legacy-v1");
            let at = produce_v1(&serving, &topic, &v1).await?;
            want.extend(expectations(&topic, &v1, &at, false)?);
            what = format!("{what} + {} hand-built magic 1", v1.len());
        }
        let n = read_back(&serving, &topic, want).await?;
        (n, format!("{what}: {n} identical"))
    };
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    Ok(outcome)
}

/// CRC-32 (IEEE), the checksum of legacy messages.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// A MessageSet v1 (magic 1, uncompressed, CreateTime) holding `records` in order.
fn message_set_v1(records: &[&ToWrite]) -> Vec<u8> {
    let bytes = |out: &mut Vec<u8>, b: &Option<Vec<u8>>| match b {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
    };
    let mut set = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut body = vec![1u8, 0];
        body.extend_from_slice(&r.timestamp.to_be_bytes());
        bytes(&mut body, &r.key);
        bytes(&mut body, &r.value);
        set.extend_from_slice(&(i as i64).to_be_bytes());
        set.extend_from_slice(&(4 + body.len() as i32).to_be_bytes());
        set.extend_from_slice(&crc32(&body).to_be_bytes());
        set.extend_from_slice(&body);
    }
    set
}

/// Produces `records` as MessageSet v1 with Produce v2, one set per partition; returns where
/// each went.
async fn produce_v1(bootstrap: &str, topic: &str, records: &[ToWrite]) -> Result<Vec<(i32, i64)>> {
    use krab_cluster::{Cluster, ClusterConfig, transport::parse_bootstrap};
    use krab_protocol::messages::produce::{PartitionProduceData, TopicProduceData};
    let mut config = ClusterConfig::new(parse_bootstrap(bootstrap)?);
    config.connection.client_id = Some("krab-it-magic1".into());
    let cluster = Cluster::connect(config).await?;
    cluster.fetch_metadata(Some(&[topic.to_string()])).await?;
    let mut out = vec![(0, 0); records.len()];
    for p in 0..PARTITIONS {
        let mine: Vec<(usize, &ToWrite)> = records.iter().enumerate().filter(|(_, r)| r.partition == p).collect();
        let set = message_set_v1(&mine.iter().map(|(_, r)| *r).collect::<Vec<_>>());
        let (broker, _) = cluster.leader(topic, p).await?;
        let request = ProduceRequest {
            acks: -1,
            timeout_ms: 10_000,
            topic_data: vec![TopicProduceData {
                name: topic.to_string(),
                partition_data: vec![PartitionProduceData {
                    index: p,
                    records: Some(set.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let response = broker.send(&request, 2).await?;
        let r = response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|r| r.index == p)
            .with_context(|| format!("no Produce v2 answer for {topic}-{p}"))?;
        ensure!(r.error_code == 0, "Produce v2 (magic 1) to {topic}-{p}: error {}", r.error_code);
        for (n, (i, _)) in mine.iter().enumerate() {
            out[*i] = (p, r.base_offset + n as i64);
        }
    }
    Ok(out)
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    let kafka = ctx.kafka.clone();
    let bootstrap = kafka.bootstrap();
    let create_kafka = |topic: String| -> Result<()> {
        tokio::task::block_in_place(|| kafka.create_topic(&topic, PARTITIONS, 3, &[])).map(drop)
    };
    let kafka_rdk = every_codec(ctx, &bootstrap, "kafka", Writer::Librdkafka, &create_kafka).await?;
    let kafka_java = every_codec(ctx, &bootstrap, "kafka", Writer::Java, &create_kafka).await?;

    let tansu = tokio::task::block_in_place(|| Tansu::start(ctx.venv, Options::new(crate::brokers::free_port()?)))?;
    let create_tansu =
        |topic: String| -> Result<()> { tokio::task::block_in_place(|| tansu.create_topic(&topic, PARTITIONS as u32)) };
    let tansu_rdk = every_codec(ctx, &tansu.bootstrap(), "tansu", Writer::Librdkafka, &create_tansu).await?;

    // MessageSet v0 through the proxies, recorded to show what librdkafka sent.
    let legacy_topic = "krab-it-interop-legacy-kafka";
    kctl(&ctx.kafka, move |k| k.create_topic(legacy_topic, PARTITIONS, 3, &[])).await?;
    for p in ctx.kafka.proxies() {
        p.record();
    }
    let kafka_legacy = legacy(ctx, &bootstrap, "Kafka 4.4", legacy_topic).await?;
    let mut produce_versions: BTreeMap<(i16, i8), usize> = BTreeMap::new();
    for p in ctx.kafka.proxies() {
        for f in p.take_recording() {
            if f.dir != crate::proxy::Dir::Request || f.bytes.len() < 4 || f.bytes[..2] != [0, 0] {
                continue;
            }
            let version = i16::from_be_bytes([f.bytes[2], f.bytes[3]]);
            // The magic byte of the first message set (offset 16 of a batch or a legacy message).
            let magic = match decode_request::<ProduceRequest>(&f.bytes) {
                Ok(Some((_, r))) => r
                    .topic_data
                    .iter()
                    .flat_map(|t| &t.partition_data)
                    .find_map(|d| d.records.as_ref().and_then(|b| b.get(16).map(|m| *m as i8)))
                    .unwrap_or(-1),
                _ => -1,
            };
            *produce_versions.entry((version, magic)).or_default() += 1;
        }
    }
    ensure!(
        produce_versions.keys().any(|(v, m)| *v <= 2 && *m == 0),
        "librdkafka did not send MessageSet v0 to Kafka: Produce (version, magic) seen {produce_versions:?}"
    );
    tokio::task::block_in_place(|| tansu.create_topic("krab-it-interop-legacy-tansu", PARTITIONS as u32))?;
    let tansu_legacy = legacy(ctx, &tansu.bootstrap(), "tansu", "krab-it-interop-legacy-tansu").await?;
    drop(tansu);
    let mut mock = Vec::new();
    let mut mock_read = 0;
    for codec in CODECS {
        let (n, what) = legacy_mock(ctx, codec).await?;
        mock_read += n;
        mock.push(what);
    }
    ensure!(mock_read > 0, "librdkafka's mock took no MessageSet v0 at all: {mock:?}");

    let sent_by = |n: usize| n / RECORDS as usize;
    Ok(format!(
        "Kafka: librdkafka {kafka_rdk} and Java {kafka_java} records identical over {} topics; tansu: librdkafka \
         {tansu_rdk} over {}; legacy MessageSet v0 from librdkafka (Produce (version, magic) at Kafka: \
         {produce_versions:?}): {kafka_legacy}; {tansu_legacy}; librdkafka's mock served it back, krab read \
         {mock_read} legacy records identically ({}); MessageSet v1 from no reference writer (librdkafka sends \
         ApiVersions for any fallback from 0.10.0 on, then writes v2), only the hand-built set",
        sent_by(kafka_rdk + kafka_java),
        sent_by(tansu_rdk),
        mock.join(", "),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_is_the_ieee_checksum() {
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(super::crc32(b""), 0);
    }
}
