//! `cargo xtask capture --broker kafka`: golden traffic between Kafka's Java client and Apache
//! Kafka itself.
//!
//! A 3-node cluster starts with a [`FaultProxy`] in front of every broker (the brokers advertise
//! the proxies, so every client connection crosses one); every proxy records while the Java
//! reference client (`tools/java-client`) runs its `workload` (Admin, one producer per codec, a
//! group consumer, offsets). Frames are paired per connection (connection numbers made unique
//! across proxies: node N's connection c is `N * 1000 + c`), and a bounded, deduplicated set of
//! exchanges is written to `crates/protocol/tests/fixtures/golden/kafka/`.
//!
//! Only exchanges krab can decode are kept: an API krab does not generate, or a version outside
//! krab's range, is skipped and counted; so is an exchange whose decode → re-encode is not byte
//! for byte the same (the README written beside the fixtures lists each, so a codec gap shows).

use super::{
    Exchange, MAX_PER_VERSION, api_name, batch_info, clean_out_dir, pair, parse_fetch_response, parse_produce,
};
use super::{metadata_request_kind, request_shape, snake, top_error_code, utc_date};
use crate::brokers::kafka::{KafkaCluster, KafkaOptions};
use crate::it::java_client::JavaClient;
use crate::proxy::Frame;
use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use krab_protocol::messages::{AnyRequest, AnyResponse, RequestHeader, ResponseHeader};
use krab_protocol::{ApiKey, Message};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The workload's topic (it creates and deletes it itself).
const TOPIC: &str = "golden-java";
/// How long the Java workload may run.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(180);
const NODES: usize = 3;

/// `capture --broker kafka [--out DIR] [--verbose]`.
pub(super) fn run(out: Option<PathBuf>, verbose: bool) -> Result<()> {
    let started = Instant::now();
    let out = out.unwrap_or_else(|| crate::project_root().join("crates/protocol/tests/fixtures/golden/kafka"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;

    let cluster = KafkaCluster::start(&KafkaOptions::new(NODES))?;
    let java = JavaClient::ensure(cluster.dist())?;
    for p in cluster.proxies() {
        p.record();
    }
    let summary = run_workload(&java, &cluster.bootstrap())?;
    // Let the last frames of closing connections drain through.
    std::thread::sleep(Duration::from_millis(500));
    let mut frames = Vec::new();
    for (i, p) in cluster.proxies().iter().enumerate() {
        if let Some(err) = p.errors().first() {
            bail!("proxy {} error: {err}", i + 1);
        }
        let node = i as u32 + 1;
        for f in p.take_recording() {
            frames.push(Frame { conn: node * 1000 + f.conn, dir: f.dir, bytes: f.bytes });
        }
    }
    let version = cluster.version().to_owned();
    drop(cluster);

    let exchanges = pair(&frames)?;
    clean_out_dir(&out)?;
    let report = select_and_write(&exchanges, &out)?;
    if verbose {
        for (ex, verdict) in exchanges.iter().zip(&report.verdicts) {
            eprintln!(
                "{verdict:<28} #{:<4} conn {:<5} {:>3} {:<26} v{:<2} corr {:<4} {}",
                ex.seq,
                ex.conn,
                ex.api_key,
                api_name(ex.api_key),
                ex.api_version,
                ex.correlation_id,
                ex.client_id.as_deref().unwrap_or("-"),
            );
        }
    }
    write_readme(&out, &version, &summary, exchanges.len(), &report)?;
    eprintln!(
        "captured {} frames, {} exchanges; kept {}, skipped {} krab cannot decode, {} whose round trip differs \
         ({} in {}, {:.1}s)",
        frames.len(),
        exchanges.len(),
        report.kept.len(),
        report.undecodable.values().sum::<usize>(),
        report.mismatched.len(),
        report.kept.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the Java client's golden-traffic workload (bounded by `WORKLOAD_TIMEOUT`); its summary line.
fn run_workload(java: &JavaClient, bootstrap: &str) -> Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let text = rt
        .block_on(tokio::time::timeout(WORKLOAD_TIMEOUT, java.workload(bootstrap, TOPIC)))
        .map_err(|_| anyhow::anyhow!("the Java workload still ran after {WORKLOAD_TIMEOUT:?}"))??;
    Ok(text.lines().rev().find(|l| l.contains("\"topic\"")).unwrap_or("").trim().to_owned())
}

/// Decodes a request and its response with krab and re-encodes both; Err says what differs.
fn round_trip(api: ApiKey, version: i16, request: &[u8], response: Option<&[u8]>) -> Result<()> {
    let request = Bytes::copy_from_slice(request);
    let hv = api.request_header_version(version);
    let header = RequestHeader::decode(&request, hv).context("request header")?;
    let body = request.slice(header.encoded_len(hv)..);
    let req = AnyRequest::decode(api as i16, &body, version).context("request body")?;
    let mut out = BytesMut::new();
    header.encode(&mut out, hv)?;
    req.encode(&mut out, version)?;
    if out[..] != request[..] {
        bail!("request re-encodes to {} bytes, {} captured", out.len(), request.len());
    }
    let Some(response) = response else { return Ok(()) };
    let response = Bytes::copy_from_slice(response);
    let hv = api.response_header_version(version);
    let header = ResponseHeader::decode(&response, hv).context("response header")?;
    let body = response.slice(header.encoded_len(hv)..);
    let resp = AnyResponse::decode(api as i16, &body, version).context("response body")?;
    let mut out = BytesMut::new();
    header.encode(&mut out, hv)?;
    resp.encode(&mut out, version)?;
    if out[..] != response[..] {
        bail!("response re-encodes to {} bytes, {} captured", out.len(), response.len());
    }
    Ok(())
}

/// What the selection did.
struct Report {
    /// (api_key, api_version) of every kept exchange, in file order.
    kept: Vec<(i16, i16)>,
    /// (API name, version, why) → exchanges skipped because krab cannot decode them.
    undecodable: BTreeMap<(String, i16, String), usize>,
    /// Exchanges krab decodes but does not re-encode byte for byte: "API vN: why".
    mismatched: Vec<String>,
    /// Per exchange (capture order), what became of it.
    verdicts: Vec<String>,
}

fn select_and_write(exchanges: &[Exchange<'_>], out: &Path) -> Result<Report> {
    let mut report =
        Report { kept: Vec::new(), undecodable: BTreeMap::new(), mismatched: Vec::new(), verdicts: Vec::new() };
    let mut manifest = Vec::new();
    let mut per_version: HashMap<(i16, i16), usize> = HashMap::new();
    let mut seen_requests: HashSet<Vec<u8>> = HashSet::new();
    let mut codecs_done: HashSet<&str> = HashSet::new();
    let mut fetch_counts: HashMap<(i16, bool), usize> = HashMap::new();
    for ex in exchanges {
        let name = api_name(ex.api_key);
        let verdict = (|| -> Result<String> {
            let Some(api) = ApiKey::from_i16(ex.api_key) else {
                *report
                    .undecodable
                    .entry((name.to_owned(), ex.api_version, "API not generated".into()))
                    .or_default() += 1;
                return Ok("skipped: API not generated".into());
            };
            let range = api.versions();
            if !range.contains(ex.api_version) {
                let why = format!("version outside krab's {}..={}", range.min, range.max);
                *report.undecodable.entry((name.to_owned(), ex.api_version, why)).or_default() += 1;
                return Ok("skipped: version".into());
            }
            if ex.response.is_none() {
                return Ok("skipped: no response".into());
            }
            if let Err(e) = round_trip(api, ex.api_version, ex.request, ex.response) {
                report.mismatched.push(format!("{name} v{} (capture #{}): {e:#}", ex.api_version, ex.seq));
                return Ok("skipped: round trip differs".into());
            }
            let client = ex.client_id.as_deref().unwrap_or("-");
            let mut note = format!("capture #{} on connection {}, client_id {client}", ex.seq, ex.conn);
            match ex.api_key {
                0 => {
                    let produce = parse_produce(ex.request)?;
                    let Some((topic, partition, Some(records))) = produce.partitions.first() else {
                        return Ok("skipped: no records".into());
                    };
                    let info = batch_info(records)?;
                    if !codecs_done.insert(info.codec) {
                        return Ok("dropped: codec seen".into());
                    }
                    note = format!(
                        "{note}; acks {}; {topic}/{partition}; one batch of {} records, codec {}, producer id {}",
                        produce.acks, info.count, info.codec, info.producer_id
                    );
                }
                1 => {
                    let summary = parse_fetch_response(ex.api_version, ex.response.unwrap_or_default());
                    let non_empty = summary.as_ref().map_or(true, |b| *b > 0);
                    let count = fetch_counts.entry((ex.api_version, non_empty)).or_default();
                    if *count >= if non_empty { MAX_PER_VERSION } else { 1 } {
                        return Ok("dropped: enough fetches".into());
                    }
                    *count += 1;
                    note = match summary {
                        Ok(0) => format!("{note}; empty result (long poll)"),
                        Ok(b) => format!("{note}; {b} bytes of records"),
                        Err(e) => format!("{note}; response not summarized: {e:#}"),
                    };
                }
                _ => {
                    let key = (ex.api_key, ex.api_version);
                    let metadata = (ex.api_key == 3).then(|| metadata_request_kind(ex.request).ok()).flatten();
                    let limit = if metadata.is_some() { 4 } else { MAX_PER_VERSION };
                    if per_version.get(&key).copied().unwrap_or(0) >= limit {
                        return Ok("dropped: enough of this version".into());
                    }
                    let shape = match &metadata {
                        Some(kind) => [&ex.request[..4], kind.as_bytes()].concat(),
                        None => request_shape(ex.request)?,
                    };
                    if !seen_requests.insert(shape) {
                        return Ok("dropped: same request kept".into());
                    }
                    *per_version.entry(key).or_default() += 1;
                    if let Some(kind) = metadata {
                        note = format!("{note}; {kind}");
                    }
                    if let Some(code) = ex.response.and_then(|r| top_error_code(ex.api_key, ex.api_version, r)) {
                        note = format!("{note}; error_code {code}");
                    }
                }
            }
            let seq = report.kept.len() + 1;
            let stem = format!("{seq:03}_{}_v{}", snake(name), ex.api_version);
            let req_file = format!("{stem}.req.bin");
            std::fs::write(out.join(&req_file), ex.request)?;
            let resp_file = format!("{stem}.resp.bin");
            std::fs::write(out.join(&resp_file), ex.response.unwrap_or_default())?;
            manifest.push(json!({
                "seq": seq,
                "api_key": ex.api_key,
                "api_name": name,
                "api_version": ex.api_version,
                "correlation_id": ex.correlation_id,
                "request": req_file,
                "response": resp_file,
                "note": note,
            }));
            report.kept.push((ex.api_key, ex.api_version));
            Ok("kept".into())
        })()
        .with_context(|| format!("exchange #{} ({name} v{})", ex.seq, ex.api_version))?;
        report.verdicts.push(verdict);
    }
    if report.kept.is_empty() {
        bail!("no exchange krab can decode was captured");
    }
    let mut text = serde_json::to_string_pretty(&Value::Array(manifest))?;
    text.push('\n');
    std::fs::write(out.join("manifest.json"), text)?;
    Ok(report)
}

fn write_readme(out: &Path, version: &str, summary: &str, total: usize, report: &Report) -> Result<()> {
    let mut pairs: BTreeMap<(i16, i16), usize> = BTreeMap::new();
    for k in &report.kept {
        *pairs.entry(*k).or_default() += 1;
    }
    let mut table = String::new();
    for ((key, ver), n) in &pairs {
        table.push_str(&format!("| {key} | {} | {ver} | {n} |\n", api_name(*key)));
    }
    let mut skipped = String::new();
    for ((name, ver, why), n) in &report.undecodable {
        skipped.push_str(&format!("| {name} | {ver} | {why} | {n} |\n"));
    }
    if skipped.is_empty() {
        skipped.push_str("| - | - | none | 0 |\n");
    }
    let mismatched = if report.mismatched.is_empty() {
        "none.".to_owned()
    } else {
        report.mismatched.iter().map(|m| format!("\n- {m}")).collect::<String>()
    };
    let text = format!(
        r#"# Golden Kafka traffic: Java client ↔ Apache Kafka

Real request/response frames between Kafka's own Java client and Apache Kafka, written by
`cargo xtask capture --broker kafka` (xtask/src/capture/kafka.rs). Re-create them with that one
command (it needs Java 17+ and Maven, and downloads Kafka's jars under target/brokers). Unlike
the librdkafka ↔ tansu fixtures one directory up, these differ between captures (the Java
producers are idempotent, with fresh producer ids; timestamps are the time of the capture), so
nothing compares them with a fresh capture: `crates/protocol/tests/golden.rs` decodes and
re-encodes each, byte for byte.

- Client: the Java client (kafka-clients) of {version}, `tools/java-client` `workload`: Admin
  creates `{TOPIC}` (3 partitions, RF 1), one producer per codec (none, gzip, snappy, lz4, zstd;
  acks=all, idempotent) sends 4 records one at a time, a classic-protocol group consumer reads
  them back and commits, Admin lists offsets, describes the group, deletes group and topic.
- Broker: {version}, 3 KRaft nodes (combined broker+controller) on 127.0.0.1, each behind a
  recording proxy that it advertises, so every client connection crosses one. Connection
  numbers are node × 1000 + the proxy's own number.
- Captured: {date} (UTC); {total} exchanges seen, {nkept} kept. The workload printed:
  `{summary}`

## Files

Named and laid out as one directory up: `NNN_<api>_v<version>.req.bin` / `.resp.bin` (one frame
each, without the length prefix) and `manifest.json`. Kept: one Produce per codec; Fetch: at most
{MAX_PER_VERSION} with records and one empty per version; Metadata: one per request shape, at most
4 per version; others: at most {MAX_PER_VERSION} distinct requests per (api_key, api_version).

| api_key | api | version | exchanges |
|---|---|---|---|
{table}
## Skipped: exchanges krab cannot decode

| api | version | why | exchanges |
|---|---|---|---|
{skipped}
Decoded by krab but not re-encoded byte for byte (not kept): {mismatched}
"#,
        date = utc_date(),
        nkept = report.kept.len(),
    );
    std::fs::write(out.join("README.md"), text)?;
    Ok(())
}
